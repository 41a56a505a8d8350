"""Reading which certificate files nginx serves for which name from ``nginx -T`` output, and
Caddy's JSON configuration: includes, inheritance, several names, and the names lkchaos must
leave alone, with why."""

from __future__ import annotations

import json

import pytest

from lkchaos.tls import caddy, nginx

#: ``nginx -T`` of a Debian nginx in front of LiveKit, as it prints it: the checker's lines,
#: then each file it read after a ``# configuration file`` line, includes left as written.
DUMP = r"""nginx: the configuration file /etc/nginx/nginx.conf syntax is ok
nginx: configuration file /etc/nginx/nginx.conf test is successful
# configuration file /etc/nginx/nginx.conf:
user www-data;
worker_processes auto;
pid /run/nginx.pid;
include /etc/nginx/modules-enabled/*.conf;

events {
	worker_connections 768;
}

http {
	sendfile on;
	include mime.types;
	default_type application/octet-stream;
	ssl_protocols TLSv1.2 TLSv1.3;
	ssl_certificate /etc/nginx/certs/default.crt;
	ssl_certificate_key /etc/nginx/certs/default.key;
	access_log /var/log/nginx/access.log;
	include /etc/nginx/conf.d/*.conf;
	include /etc/nginx/sites-enabled/*;
}

stream {
	server {
		listen 5349 ssl;
		ssl_certificate /etc/nginx/certs/turn.crt;
		ssl_certificate_key /etc/nginx/certs/turn.key;
		proxy_pass 10.0.0.11:5349;
	}
}

# configuration file /etc/nginx/modules-enabled/50-mod-stream.conf:
load_module modules/ngx_stream_module.so;

# configuration file /etc/nginx/mime.types:

types {
    text/html                             html htm shtml;
    application/javascript                js;
}

# configuration file /etc/nginx/conf.d/livekit.conf:
upstream livekit {
    server lk-server:7880;
}

map $http_upgrade $connection_upgrade {
    default upgrade;
    '' close;
}

server {
    listen 80;
    server_name rtc.example.org;
    return 301 https://$host$request_uri;
}

server {
    listen 443 ssl http2;
    listen [::]:443 ssl http2;
    server_name rtc.example.org RTC-Alt.example.org.;
    ssl_certificate     "/etc/nginx/certs/rtc.example.org.crt";
    ssl_certificate_key /etc/nginx/certs/rtc.example.org.key;  # a comment { with a brace
    location / {
        proxy_pass http://livekit;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $connection_upgrade;
    }
}

# configuration file /etc/nginx/sites-enabled/default:
server {
	listen 443 ssl default_server;
	server_name _ *.example.org ~^(?<sub>.+)\.example\.net$ .example.com "";
}

server {
	listen 8443 ssl;
	server_name whip.example.org;
	ssl_certificate /etc/nginx/certs/$ssl_server_name.crt;
	ssl_certificate_key /etc/nginx/certs/$ssl_server_name.key;
}

server {
	listen 443 ssl;
	server_name dual.example.org;
	ssl_certificate certs/dual-rsa.crt;
	ssl_certificate_key certs/dual-rsa.key;
	ssl_certificate certs/dual-ecdsa.crt;
	ssl_certificate_key certs/dual-ecdsa.key;
}

server {
	listen 443;
	ssl on;
	server_name old.example.org;
	ssl_certificate certs/old.crt;
	ssl_certificate_key certs/old.key;
}

server {
	listen 443 ssl;
	server_name twice.example.org;
	ssl_certificate certs/twice-a.crt;
	ssl_certificate_key certs/twice-a.key;
}

server {
	listen 8443 ssl;
	server_name twice.example.org;
	ssl_certificate certs/twice-b.crt;
	ssl_certificate_key certs/twice-b.key;
}
"""


def test_split_dump_keeps_each_file_and_drops_the_checker_lines() -> None:
    files = nginx.split_dump(DUMP)
    assert list(files) == [
        "/etc/nginx/nginx.conf", "/etc/nginx/modules-enabled/50-mod-stream.conf",
        "/etc/nginx/mime.types", "/etc/nginx/conf.d/livekit.conf",
        "/etc/nginx/sites-enabled/default",
    ]
    assert files["/etc/nginx/nginx.conf"].startswith("user www-data;")
    assert "syntax is ok" not in "".join(files.values())


def test_parse_reads_blocks_quotes_and_comments() -> None:
    parsed = nginx.parse('a "x y" \'z\';\nb { c 1; # d { }\n e "q\\"r"; }\n')
    assert parsed == (
        nginx.Directive("a", ("x y", "z")),
        nginx.Directive("b", (), (nginx.Directive("c", ("1",)),
                                  nginx.Directive("e", ('q"r',)))),
    )


def test_every_tls_name_with_its_files_or_why_not() -> None:
    sites = nginx.parse_dump(DUMP)
    assert set(sites) == {"rtc.example.org", "rtc-alt.example.org", "example.com",
                          "whip.example.org", "dual.example.org", "old.example.org",
                          "twice.example.org"}
    # several names of one block share its files; quotes are removed
    for name in ("rtc.example.org", "rtc-alt.example.org"):
        assert sites[name] == nginx.NginxSite(name, "/etc/nginx/certs/rtc.example.org.crt",
                                              "/etc/nginx/certs/rtc.example.org.key")
    # a block without its own files takes the http context's (through the include)
    assert (sites["example.com"].cert, sites["example.com"].key) == (
        "/etc/nginx/certs/default.crt", "/etc/nginx/certs/default.key")
    # relative paths are relative to the main file's folder; the old `ssl on` counts
    assert sites["old.example.org"].cert == "/etc/nginx/certs/old.crt"
    assert not sites["old.example.org"].problem
    assert "chosen at run time" in sites["whip.example.org"].problem
    assert "2 certificates" in sites["dual.example.org"].problem
    assert "several nginx server blocks" in sites["twice.example.org"].problem
    assert all(s.problem == "" or (s.cert, s.key) == ("", "") for s in sites.values())


def test_the_port_80_block_and_stream_servers_do_not_count() -> None:
    plain = "# configuration file /etc/nginx/nginx.conf:\nhttp {\n server {\n  listen 80;\n" \
            "  server_name a.test;\n  ssl_certificate /c.crt;\n  ssl_certificate_key /c.key;\n" \
            " }\n}\nstream { server { listen 443 ssl; ssl_certificate /s.crt; " \
            "ssl_certificate_key /s.key; } }\n"
    assert nginx.parse_dump(plain) == {}


def test_a_tls_block_without_files_is_reported() -> None:
    text = ("# configuration file /etc/nginx/nginx.conf:\nhttp { server { listen 443 ssl; "
            "server_name a.test; } }\n")
    assert "names no ssl_certificate" in nginx.parse_dump(text)["a.test"].problem


def test_a_file_the_main_one_does_not_include_is_read_on_its_own() -> None:
    text = ("# configuration file /etc/nginx/nginx.conf:\nevents {}\n"
            "# configuration file /etc/nginx/conf.d/lk.conf:\n"
            "server { listen 443 ssl; server_name lk.test; ssl_certificate /c/lk.crt; "
            "ssl_certificate_key /c/lk.key; }\n")
    assert nginx.parse_dump(text) == {"lk.test": nginx.NginxSite("lk.test", "/c/lk.crt",
                                                                 "/c/lk.key")}


def test_an_include_loop_ends() -> None:
    text = ("# configuration file /etc/nginx/nginx.conf:\nhttp { include /etc/nginx/loop; }\n"
            "# configuration file /etc/nginx/loop:\ninclude /etc/nginx/loop;\n"
            "server { listen 443 ssl; server_name a.test; ssl_certificate /a.crt; "
            "ssl_certificate_key /a.key; }\n")
    assert nginx.parse_dump(text)["a.test"].cert == "/a.crt"


def test_no_dump_no_names() -> None:
    assert nginx.parse_dump("nginx: [emerg] unknown directive\n") == {}


#: What Caddy's Caddyfile adapter makes of two sites with `tls <cert> <key>` (trimmed).
CADDY_JSON = {
    "apps": {
        "http": {"servers": {"srv0": {
            "listen": [":443"],
            "routes": [{"match": [{"host": ["lk.example.org"]}]}],
            "tls_connection_policies": [
                {"match": {"sni": ["lk.example.org", "*.example.org"]},
                 "certificate_selection": {"any_tag": ["cert0"]}},
                {"match": {"sni": ["whip.example.org"]},
                 "certificate_selection": {"any_tag": ["cert1"]}},
                {"match": {"sni": ["unknown.example.org"]},
                 "certificate_selection": {"any_tag": ["nope"]}},
                {},
            ],
        }}},
        "tls": {"certificates": {"load_files": [
            {"certificate": "/certs/lk.crt", "key": "/certs/lk.key", "tags": ["cert0"]},
            {"certificate": "/certs/whip.crt", "key": "/certs/whip.key", "tags": ["cert1"]},
        ]}},
    }
}


def test_caddy_json_names_and_files() -> None:
    assert caddy.config_files(CADDY_JSON) == {
        "lk.example.org": ("/certs/lk.crt", "/certs/lk.key"),
        "whip.example.org": ("/certs/whip.crt", "/certs/whip.key"),
    }
    assert caddy.read_config(json.dumps(CADDY_JSON)) == caddy.config_files(CADDY_JSON)
    assert caddy.config_files({"apps": {"http": "odd"}}) == {}


@pytest.mark.parametrize("text", [
    "{\n\temail ops@example.org\n}\n\nlk.example.org {\n\ttls /c/lk.crt /c/lk.key\n}\n",
    "LK.example.org:443 {\n\ttls /c/lk.crt /c/lk.key\n\treverse_proxy lk:7880\n}\n",
])
def test_a_caddyfile_is_read_as_one_even_with_a_global_block(text: str) -> None:
    assert caddy.read_config(text) == {"lk.example.org": ("/c/lk.crt", "/c/lk.key")}
