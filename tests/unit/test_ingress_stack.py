"""LiveKit Ingress in the reference stack: its rendered config, LiveKit's ingress block, the
DNS name, and the CGO build of its binary (with a fake Go and pkg-config)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from lkchaos.errors import PrerequisiteError
from lkchaos.stack import build, layout, render

INGRESS = next(b for b in build.GO_BINARIES if b.name == "ingress")
CFG = render.StackConfig(domain="example.test", net_prefix="10.9.8")


def test_ingress_reaches_redis_through_the_same_sentinels_as_livekit() -> None:
    ingress = yaml.safe_load(render.ingress_yaml(CFG))
    livekit = yaml.safe_load(render.livekit_yaml(CFG, "key"))
    assert ingress["redis"] == livekit["redis"]
    assert ingress["redis"]["sentinel_master_name"] == layout.SENTINEL_MASTER


def test_ingress_reaches_livekit_through_caddy_and_holds_no_key() -> None:
    text = render.ingress_yaml(CFG)
    config = yaml.safe_load(text)
    assert config["ws_url"] == f"ws://caddy:{render.INTERNAL_HTTP_PORT}"
    assert "api_key" not in config and "api_secret" not in config
    assert render.ingress_yaml(CFG, ws_url="ws://livekit-1:7880").count("livekit-1:7880") == 1


def test_whip_webrtc_uses_the_ingress_address_and_no_stun_server() -> None:
    rtc = yaml.safe_load(render.ingress_yaml(CFG))["rtc_config"]
    assert rtc["node_ip"] == f"10.9.8.{layout.HOST_OCTET['ingress']}"
    assert rtc["use_external_ip"] is False and "stun_servers" not in rtc
    assert rtc["udp_port"] == render.INGRESS_WEBRTC_PORT


def test_cpu_costs_fit_a_two_core_machine() -> None:
    costs = yaml.safe_load(render.ingress_yaml(CFG))["cpu_cost"]
    # Ingress refuses a session unless idle CPUs exceed its cost: its defaults (2.0) never
    # fit a 2-core machine that also runs the rest of the stack.
    assert all(0 < costs[k] < 1 for k in ("rtmp_cpu_cost", "whip_cpu_cost", "url_cpu_cost"))
    assert costs["whip_bypass_transcoding_cpu_cost"] >= 0.05  # Ingress's minimum


def test_livekit_announces_the_urls_clients_push_to() -> None:
    block = yaml.safe_load(render.livekit_yaml(CFG, "key"))["ingress"]
    assert block == {"rtmp_base_url": "rtmp://rtmp.example.test:1935/x",
                     "whip_base_url": "https://whip.example.test/w"}  # fmt: skip
    config = yaml.safe_load(render.ingress_yaml(CFG))
    assert block["rtmp_base_url"].endswith(f":{config['rtmp_port']}/x")
    # Caddy proxies whip.<domain> to the port the ingress serves WHIP on.
    assert render.WHIP_UPSTREAM == f"ingress:{config['whip_port']}"
    assert "whip.example.test" in CFG.tls_names


def test_the_stack_dns_names_the_rtmp_host() -> None:
    hosts = render.dns_hosts(CFG).splitlines()
    octet = layout.HOST_OCTET["ingress"]
    assert f"10.9.8.{octet} rtmp.example.test" in hosts


def test_ingress_yaml_is_rendered_with_the_other_configs() -> None:
    configs = render.render_configs(CFG, "key")
    assert configs["ingress.yaml"] == render.ingress_yaml(CFG)


# --- the CGO build -----------------------------------------------------------------------------

FAKE_GO = """#!/bin/sh
{ echo "ARGS $*"; echo "ENV CGO_ENABLED=$CGO_ENABLED"; } >> "$LOG"
if [ "$1 $2" = "mod download" ]; then echo '{"Dir": "'"$MODULE_DIR"'"}'; exit 0; fi
if [ "$1" = build ]; then
  while [ $# -gt 0 ]; do [ "$1" = -o ] && echo built > "$2"; shift; done
fi
exit 0
"""
FAKE_PKG_CONFIG = """#!/bin/sh
for m in "$@"; do case "$m" in --*) ;; *) grep -qx "$m" "$HAVE" || {
  echo "Package $m was not found in the pkg-config search path." >&2; exit 1; } ;; esac; done
exit 0
"""


@pytest.fixture
def toolchain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    for name, text in (("go", FAKE_GO), ("pkg-config", FAKE_PKG_CONFIG),
                       ("gcc", "#!/bin/sh\nexit 0\n")):  # fmt: skip
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    module = tmp_path / "module"
    (module / "cmd" / "server").mkdir(parents=True)
    (module / "go.mod").write_text("module github.com/livekit/ingress\n")
    (tmp_path / "have").write_text("\n".join(build.INGRESS_PKG_CONFIG) + "\n")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin")
    monkeypatch.setenv("LOG", str(tmp_path / "go.log"))
    monkeypatch.setenv("HAVE", str(tmp_path / "have"))
    monkeypatch.setenv("MODULE_DIR", str(module))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


def test_ingress_is_built_with_cgo_from_its_own_module_once(toolchain: Path) -> None:
    said: list[str] = []
    target = build.build_go_binary(INGRESS, said.append)
    assert target == build.cache_dir() / "bin" / f"ingress-{build.INGRESS_VERSION}"
    calls = (toolchain / "go.log").read_text().split("ARGS ")[1:]
    assert calls[0].startswith(f"mod download -json github.com/livekit/ingress@"
                               f"{build.INGRESS_VERSION}")  # fmt: skip
    # Built as the main module (its replace directive applies), with CGO.
    assert calls[1].startswith("build -trimpath -o ") and calls[1].split("\n")[0].endswith(
        " ./cmd/server")
    assert "CGO_ENABLED=1" in calls[1]
    assert said == [f"building ingress from github.com/livekit/ingress@{build.INGRESS_VERSION} "
                    "with Go (a few minutes, once)"]
    (toolchain / "go.log").unlink()
    assert build.build_go_binary(INGRESS, said.append) == target
    assert not (toolchain / "go.log").exists()


def test_the_other_servers_stay_static(toolchain: Path) -> None:
    livekit = next(b for b in build.GO_BINARIES if b.name == "livekit-server")
    assert not livekit.cgo_pkg_config
    build.build_go_binary(livekit, lambda _: None)
    assert "CGO_ENABLED=0" in (toolchain / "go.log").read_text()


def test_missing_gstreamer_dev_files_name_the_debian_packages(toolchain: Path) -> None:
    (toolchain / "have").write_text("gstreamer-1.0\n")
    with pytest.raises(PrerequisiteError) as caught:
        build.build_go_binary(INGRESS, lambda _: None)
    message = str(caught.value)
    assert "gstreamer-app-1.0" in message and "was not found" in message
    assert "apt-get install gcc pkg-config libgstreamer1.0-dev " in message
    assert "libgstreamer-plugins-bad1.0-dev" in message
    assert not (toolchain / "go.log").exists()  # nothing was fetched or built


def test_the_ingress_image_puts_the_binary_on_path_with_gstreamers_plugins() -> None:
    dockerfile = (Path(__file__).resolve().parents[2] / "stack/images/ingress/Dockerfile")
    text = dockerfile.read_text()
    assert "COPY bin/ingress /usr/local/bin/ingress" in text  # children are spawned as `ingress`
    for package in ("gstreamer1.0-plugins-base", "gstreamer1.0-plugins-good",
                    "gstreamer1.0-plugins-bad", "gstreamer1.0-plugins-ugly",
                    "gstreamer1.0-libav"):  # fmt: skip
        assert package in text
    assert INGRESS.image == dockerfile.parent.name
