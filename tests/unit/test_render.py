"""Rendering of the stack's configs and state: pure functions plus the files they write."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import yaml

from lkchaos.errors import ConfigError
from lkchaos.stack import layout, render
from lkchaos.stack.render import StackConfig

KEY = "lkchaos-0a1b2c3d"


@pytest.fixture
def cfg() -> StackConfig:
    return StackConfig(net_prefix="10.123.45")


def test_livekit_config_uses_sentinel_and_never_holds_keys(cfg: StackConfig) -> None:
    config = yaml.safe_load(render.livekit_yaml(cfg, KEY))
    assert "keys" not in config and "key_file" not in config
    assert "address" not in config["redis"]
    assert config["redis"]["sentinel_master_name"] == layout.SENTINEL_MASTER
    assert config["redis"]["sentinel_addresses"] == [
        "sentinel-1:26379", "sentinel-2:26379", "sentinel-3:26379"
    ]
    assert config["prometheus"]["port"] == 6789


def test_livekit_config_reaches_nothing_outside_the_stack(cfg: StackConfig) -> None:
    config = yaml.safe_load(render.livekit_yaml(cfg, KEY))
    assert config["rtc"]["use_external_ip"] is False
    assert config["rtc"]["stun_servers"] == ["10.123.45.11:3478"]
    assert config["webhook"]["urls"] == ["http://toxiproxy:18300/livekit"]


def test_livekit_turn_tls_is_plain_tcp_behind_caddy(cfg: StackConfig) -> None:
    turn = yaml.safe_load(render.livekit_yaml(cfg, KEY))["turn"]
    assert turn["enabled"] is True and turn["domain"] == "turn.chaos.test"
    # LiveKit listens without TLS on tls_port and tells clients turns:<domain>:443.
    assert turn["external_tls"] is True and turn["tls_port"] == 5349
    assert "cert_file" not in turn and "key_file" not in turn
    # The nodes are on the stack's private network: TURN must be allowed to relay there.
    assert turn["allow_restricted_peer_cidrs"] == [f"{cfg.net_prefix}.0/24"]


def test_livekit_webhooks_go_through_the_toxiproxy_link_signed_with_the_stack_key(
    cfg: StackConfig,
) -> None:
    webhook = yaml.safe_load(render.livekit_yaml(cfg, KEY))["webhook"]
    port, upstream = layout.TOXIPROXY_LINKS["livekit_hooks"]
    assert webhook == {"api_key": KEY, "urls": [f"http://toxiproxy:{port}/livekit"]}
    assert upstream.startswith("hooks:")
    with pytest.raises(ConfigError, match="needs the stack's API key"):
        render.livekit_yaml(cfg, "")


def site_blocks(text: str) -> dict[str, str]:
    """Top-level blocks of a Caddyfile: the line that opens each -> its body (indented)."""
    blocks: dict[str, str] = {}
    head, depth = "", 0
    body: list[str] = []
    for line in text.splitlines():
        if depth == 0 and line.endswith("{"):
            head, body = line[:-1].strip(), []
        elif depth > 0 and not (depth == 1 and line == "}"):
            body.append(line)
        depth += line.count("{") - line.count("}")
        if depth == 0 and line == "}":
            blocks[head] = "\n".join(body)
    return blocks


def test_caddyfile_routes_each_name_with_the_stack_certificates(cfg: StackConfig) -> None:
    blocks = site_blocks(render.caddyfile(cfg))
    assert set(blocks) == {"", "lk.chaos.test", "turn.chaos.test", "whip.chaos.test",
                           "http://:7880", "http://:9180"}
    for name in ("lk.chaos.test", "turn.chaos.test", "whip.chaos.test"):
        assert f"\ttls /certs/{name}.crt /certs/{name}.key" in blocks[name]
    for name in ("lk.chaos.test", "whip.chaos.test"):
        assert '\theader Strict-Transport-Security "max-age=31536000"' in blocks[name]
    assert "\treverse_proxy ingress:8080 {" in blocks["whip.chaos.test"]
    assert "dial_timeout 2s" in blocks["whip.chaos.test"]
    assert "handle_errors" in blocks["whip.chaos.test"]
    assert blocks["http://:9180"].strip() == "metrics /metrics"


def test_lk_and_the_internal_listener_balance_both_nodes_with_health_checks(
    cfg: StackConfig,
) -> None:
    blocks = site_blocks(render.caddyfile(cfg))
    assert blocks["lk.chaos.test"].endswith(blocks["http://:7880"])
    proxy = blocks["http://:7880"].splitlines()
    assert proxy[0] == "\treverse_proxy livekit-1:7880 livekit-2:7880 {"
    options = {line.split()[0]: line.split()[1:] for line in proxy[1:-1]}
    assert options["health_uri"] == ["/"] and options["health_interval"] == ["2s"]
    assert options["lb_policy"] == ["round_robin"] and options["lb_try_duration"] == ["2s"]
    assert "tls" not in blocks["http://:7880"]


def test_one_tls_listener_routes_turn_by_sni_to_both_nodes_turn_ports(cfg: StackConfig) -> None:
    global_options = site_blocks(render.caddyfile(cfg))[""]
    for line in ("auto_https disable_certs", "ocsp_stapling off", "skip_install_trust"):
        assert f"\t{line}" in global_options.splitlines()  # never ACME, OCSP or trust store
    wrappers = global_options.split("listener_wrappers {", 1)[1]
    assert wrappers.index("layer4 {") < wrappers.index("\n\t\t\ttls\n")  # SNI first, then TLS
    route = wrappers.split("@turn tls sni turn.chaos.test\n", 1)[1]
    lines = [line.strip() for line in route.splitlines()]
    assert lines[:3] == ["route @turn {", "tls", "proxy {"]
    assert [line for line in lines if line.startswith("upstream ")] == [
        "upstream tcp/livekit-1:5349", "upstream tcp/livekit-2:5349"
    ]
    assert "acme" not in render.caddyfile(cfg).lower()


def test_dnsmasq_forwards_nothing_and_answers_the_domain(cfg: StackConfig) -> None:
    conf = render.dnsmasq_conf(cfg)
    assert "no-resolv" in conf.splitlines()
    assert not any(line.startswith("server=") for line in conf.splitlines())
    assert "local=/chaos.test/" in conf
    hosts = dict(reversed(line.split()) for line in render.dns_hosts(cfg).splitlines())
    assert hosts["lk.chaos.test"] == "10.123.45.10"
    assert hosts["whip.chaos.test"] == "10.123.45.10"
    assert hosts["turn.chaos.test"] == "10.123.45.10"  # Caddy terminates TURN/TLS


def test_sentinel_quorum_and_quick_failover() -> None:
    conf = render.sentinel_conf(StackConfig())
    assert "sentinel monitor lkchaos redis-primary 6379 2" in conf
    assert "sentinel down-after-milliseconds lkchaos 2000" in conf
    assert "sentinel resolve-hostnames yes" in conf


def test_toxiproxy_links_match_the_layout() -> None:
    proxies = json.loads(render.toxiproxy_json())
    assert {p["name"]: p["upstream"] for p in proxies} == {
        name: upstream for name, (_, upstream) in layout.TOXIPROXY_LINKS.items()
    }
    assert all(p["listen"].startswith("0.0.0.0:") and p["enabled"] for p in proxies)


@pytest.mark.parametrize("prefix", ["172.29", "172.29.77.0", "300.1.1", "a.b.c", ""])
def test_bad_network_prefix_is_refused(monkeypatch: pytest.MonkeyPatch, prefix: str) -> None:
    monkeypatch.setenv("LKCHAOS_NET_PREFIX", prefix)
    with pytest.raises(ConfigError, match="LKCHAOS_NET_PREFIX"):
        StackConfig.from_env()


def test_unknown_service_address_names_the_known_ones(cfg: StackConfig) -> None:
    with pytest.raises(ConfigError, match=r"known services: agent, (\S+, )*caddy, "):
        cfg.address("nginx")


def test_write_state_generates_keys_once_and_keeps_them(tmp_path: Path, cfg: StackConfig) -> None:
    first = render.write_state(tmp_path, cfg)
    second = render.write_state(tmp_path, cfg)
    assert first["LIVEKIT_API_KEY"] == second["LIVEKIT_API_KEY"]
    assert first["LIVEKIT_API_SECRET"] == second["LIVEKIT_API_SECRET"]
    assert len(first["LIVEKIT_API_SECRET"]) >= 32
    env_file = tmp_path / "stack.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert render.read_env_file(env_file)["LKCHAOS_NET_PREFIX"] == "10.123.45"
    for name in render.render_configs(cfg, KEY):
        assert (tmp_path / "config" / name).is_file()
    livekit = yaml.safe_load((tmp_path / "config" / "livekit.yaml").read_text())
    assert livekit["webhook"]["api_key"] == first["LIVEKIT_API_KEY"]
    for name in ("ca.crt", "lk.chaos.test.crt", "turn.chaos.test.key", "whip.chaos.test.crt"):
        assert (tmp_path / "certs" / name).is_file()


def test_malformed_env_file_says_where(tmp_path: Path) -> None:
    env_file = tmp_path / "stack.env"
    env_file.write_text("LIVEKIT_API_KEY=abc\nthis line is wrong\n")
    with pytest.raises(ConfigError, match=r"stack.env:2: expected KEY=VALUE"):
        render.read_env_file(env_file)


def test_a_rewritten_config_names_the_services_that_must_read_it_again(tmp_path: Path) -> None:
    first: list[str] = []
    render.write_state(tmp_path, StackConfig(), first)
    assert first == []  # written for the first time: nothing running read an older one
    again: list[str] = []
    render.write_state(tmp_path, StackConfig(), again)
    assert again == []
    (tmp_path / "config" / "alertmanager.yml").write_text("# an older rendering\n")
    (tmp_path / "config" / "livekit.yaml").write_text("# an older rendering\n")
    changed: list[str] = []
    render.write_state(tmp_path, StackConfig(), changed)
    assert sorted(changed) == ["alertmanager.yml", "livekit.yaml"]
    assert render.services_reading(changed) == ["alertmanager", "livekit-1", "livekit-2"]
    assert set(render.CONFIG_USERS) <= set(render.render_configs(StackConfig(), "k"))
