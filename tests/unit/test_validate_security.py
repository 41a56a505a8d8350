"""The security checks: flawed tokens judged by a real livekit-server (the fixture of
test_validate_livekit), CORS, transport, and the container judgements on inspected data."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import jwt
import jwt.warnings
import pytest

from lkchaos.settings import Settings
from lkchaos.validate.checks import security
from lkchaos.validate.model import CHECKS, Context
from tests.unit.livekit_dev import KEY, SECRET, dev_server
from tests.unit.test_validate_livekit import Local, local, no_engine  # noqa: F401


def test_each_flawed_token_carries_its_flaw(local: Local) -> None:  # noqa: F811
    tokens = security.flawed_tokens(local.settings(), "join")
    assert set(tokens) == {"valid", *security.FLAWS}
    options: Any = {"verify_exp": False, "verify_nbf": False, "verify_iat": False}

    def claims(flaw: str, key: str = SECRET) -> dict[str, object]:
        with warnings.catch_warnings():  # the development secret is short on purpose
            warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
            decoded: dict[str, object] = jwt.decode(tokens[flaw], key, algorithms=["HS256"],
                                                    options=options)  # fmt: skip
        return decoded

    now = time.time()
    assert claims("valid")["video"] == {"roomJoin": True, "room": security.ROOM_B}
    with pytest.raises(jwt.InvalidSignatureError):
        claims("wrong signature")
    assert claims("unknown API key")["iss"] != KEY
    assert claims("development key", security.DEV_SECRET)["iss"] == security.DEV_KEY
    assert int(claims("expired")["exp"]) < now - security.SHIFT_S + 5  # type: ignore[call-overload]
    assert int(claims("not yet valid")["nbf"]) > now + 60  # type: ignore[call-overload]
    assert int(claims("issued in the future")["iat"]) > now + 60  # type: ignore[call-overload]
    assert jwt.get_unverified_header(tokens["unsigned"])["alg"] == "none"
    assert claims("other room")["video"] == {"roomJoin": True, "room": security.ROOM_A}
    assert claims("no grant")["video"] == {"room": security.ROOM_B}


def test_livekit_refuses_bad_keys_and_foreign_rooms(local: Local) -> None:  # noqa: F811
    ctx = Context(local.settings(), timeout_s=5.0)
    keys = CHECKS["auth.api-keys-validated"](ctx)
    assert keys.status == "pass", keys.evidence
    rbac = CHECKS["auth.role-based-access"](ctx)
    assert rbac.status == "pass", rbac.evidence
    node = rbac.data["nodes"][local.url]
    assert node["valid"] == {"validate": 200, "twirp": 200}
    assert node["no grant"] == {"validate": 401, "twirp": 401}
    assert node["other room"]["twirp"] == 401


def test_a_token_accepted_that_should_be_refused_is_a_plain_fail(local: Local) -> None:  # noqa: F811
    """The pinned LiveKit does not check ``iat`` (livekit/protocol#1710): a token issued in
    the future is accepted, and the finding says so by name."""
    ctx = Context(local.settings(), timeout_s=5.0)
    found = CHECKS["auth.jwt-tokens-verified"](ctx)
    node = found.data["nodes"][local.url]
    accepted = sorted(f for f in found.data["flaws"] if 200 in node[f].values())
    refused = sorted(set(found.data["flaws"]) - set(accepted))
    assert {"expired", "not yet valid", "unsigned", "wrong signature"} <= set(refused)
    if accepted:
        assert found.status == "fail"
        for flaw in accepted:
            assert f"ACCEPTED a token {security.FLAWS[flaw][0]} ({flaw})" in found.evidence
    else:
        assert found.status == "pass"
    assert not [f for f in refused if f"({f})" in found.evidence]


def test_input_validation_uses_the_invalid_requests(local: Local) -> None:  # noqa: F811
    found = CHECKS["auth.input-validation-comprehensive"](Context(local.settings()))
    assert found.status == "pass" and "malformed JSON 400" in found.evidence


def test_cors_reflecting_any_origin_warns(local: Local) -> None:  # noqa: F811
    found = CHECKS["vuln.web-application-security"](Context(local.settings()))
    seen = found.data[local.url]
    assert seen["allow_origin"] in ("*", security.ORIGIN)
    assert found.status == "warn" and f"a preflight from {security.ORIGIN} is allowed" in \
        found.evidence


def test_public_names_must_use_tls(local: Local) -> None:  # noqa: F811
    loopback = CHECKS["auth.communications-encrypted"](Context(local.settings()))
    assert loopback.status == "pass"
    public = local.settings(livekit_url="ws://lk.example.com",
                            ingress_whip_url="https://whip.example.com/w")
    found = CHECKS["auth.communications-encrypted"](Context(public))
    assert found.status == "fail" and "livekit_url" in found.evidence
    assert "ingress_whip_url" not in found.evidence


def test_secret_hits_name_lines_not_values() -> None:
    logs = {"livekit-1": "start\nkeys: abc: s3cr3t-value-long\nok", "redis": "ready"}
    assert security.secret_hits(logs, ["s3cr3t-value-long"]) == {"livekit-1": [2]}
    assert security.secret_hits(logs, ["absent-secret"]) == {}


#: A LiveKit access token's shape (header.claims.signature), made up: never a real one.
JWT_LIKE = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJjYWxsZXIiLCJ2aWRlbyI6e319."
            "c2lnbmF0dXJlLW5vdC1yZWFsLXh5eg")


def test_every_inline_credential_of_a_container_is_found_by_name() -> None:
    config = ("keys:\n  APIkey1: livekit-secret-one\nredis:\n  address: redis:6379\n"
              "  password: redis-password-1\nrtc:\n  turn_servers:\n    - host: turn.example.com\n"
              "      username: caller\n      credential: turn-credential-1\n")
    attrs = {"Config": {"Env": [
        "OPENAI_API_KEY=sk-provider-key-123", "DEEPGRAM_API_KEY_FILE=/run/secrets/deepgram",
        "LIVEKIT_API_KEY=APIidentifier1", "LIVEKIT_API_SECRET=livekit-secret-one",
        "LIVEKIT_KEYS=k1: keys-secret-one,k2: keys-secret-two", "HF_TOKEN=short",
        "PATH=/usr/local/bin:/usr/bin", "LIVEKIT_CONFIG=" + config, "REDIS_PASSWORD=",
    ]}}
    assert sorted(security.container_secrets(attrs)) == [
        ("LIVEKIT_API_SECRET", "livekit-secret-one"),
        ("LIVEKIT_CONFIG keys (the secret of APIkey1)", "livekit-secret-one"),
        ("LIVEKIT_CONFIG redis.password", "redis-password-1"),
        ("LIVEKIT_CONFIG rtc.turn_servers[0].credential", "turn-credential-1"),
        ("LIVEKIT_KEYS (the secret of k1)", "keys-secret-one"),
        ("LIVEKIT_KEYS (the secret of k2)", "keys-secret-two"),
        ("OPENAI_API_KEY", "sk-provider-key-123"),
    ]  # the key's id, a path to a file, a short value and an empty one are not secrets
    assert security.container_secrets({"Config": {"Env": ["LIVEKIT_CONFIG=keys: [unclosed"]}}) \
        == []


def test_leaks_name_what_leaked_and_never_a_value() -> None:
    logs = {
        "agent": "\n".join([
            "starting worker",
            "calling provider with key sk-provider-key-123",
            f"GET /rtc?access_token={JWT_LIKE}&auto_subscribe=1 101",
            "connecting to redis://:redis-password-1@redis:6379/0",
            "connecting to redis://:***@redis:6379/0 (password masked)",
            "connecting to rediss://default:<password>@redis:6380",
            "mail me at caller@example.com, see https://example.com/a@b",
        ]),
        "caddy": "served /rtc 101",
    }
    found = security.leaks(logs, [("OPENAI_API_KEY of agent", "sk-provider-key-123")])
    assert found == {"agent": ([2, 3, 4], ["OPENAI_API_KEY of agent", "a password in a URL",
                                           "an access token (JWT)"])}
    # A token cut short by the log's line length is not a token.
    assert security.leaks({"a": JWT_LIKE[:40]}, []) == {}


def test_only_a_token_someone_could_use_is_a_leaked_token() -> None:
    keys = {"APIkey1": "the-deployments-secret-0123456789abcdef"}

    def token(iss: str, secret: str, exp_in: float) -> str:
        return jwt.encode({"iss": iss, "sub": "caller", "exp": int(time.time() + exp_in),
                           "video": {"roomJoin": True}}, secret, algorithm="HS256")

    valid = token("APIkey1", keys["APIkey1"], 600)
    assert security.usable_token(valid, f"GET /rtc?access_token={valid}", keys)
    # Expired, or not signed by its key's secret: LiveKit refuses it, nobody can use it.
    assert not security.usable_token(token("APIkey1", keys["APIkey1"], -60), "", keys)
    forged = token("APIkey1", "another-secret-0123456789abcdefghij", 600)
    assert not security.usable_token(forged, "anywhere", keys)
    # An issuer no key is known for: a leak, unless LiveKit logged it as refused.
    foreign = token("other-service", "their-secret-0123456789abcdefghijkl", 600)
    assert security.usable_token(foreign, f"Authorization: Bearer {foreign}", keys)
    assert not security.usable_token(
        foreign, f'error handling request {{"status": 401, "error": "invalid token: {foreign}, '
        'error: go-jose/go-jose: error in cryptographic primitive"}}', keys)
    assert not security.usable_token("eyJnot.eyJa.token", "", keys)
    # LiveKit's own log of the refused tokens of `validate`'s token checks is no leak, even
    # one that is only not valid yet.
    line = f'WARN livekit error handling request {{"error": "invalid token: {forged}, error"}}'
    assert security.leaks({"livekit-1": line}, [], keys) == {}
    later = jwt.encode({"iss": "APIkey1", "nbf": int(time.time() + 7200),
                        "exp": int(time.time() + 9000)}, keys["APIkey1"], algorithm="HS256")
    assert not security.usable_token(later, f'"error": "invalid token: {later}, error: token '
                                     'has invalid claims: token is not valid yet"', keys)
    assert security.leaks({"caddy": f"GET /rtc?access_token={valid}"}, [], keys) == {
        "caddy": ([1], ["an access token (JWT)"])}


def test_key_pairs_come_from_every_way_livekit_is_given_them() -> None:
    attrs = {"Config": {"Env": ["LIVEKIT_KEYS=k1: s1,k2: s2", "LIVEKIT_CONFIG=keys:\n  k3: s3\n",
                                "LIVEKIT_API_KEY=k4", "LIVEKIT_API_SECRET=s4", "PATH=/bin"]}}
    assert security.key_pairs(attrs) == {"k1": "s1", "k2": "s2", "k3": "s3", "k4": "s4"}


def test_the_logs_check_reports_a_providers_key_and_a_token_by_name(
    local: Local, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    from contextlib import nullcontext

    from lkchaos.docker import client as docker

    class Container:
        def __init__(self, env: list[str], log: str) -> None:
            self.attrs = {"Config": {"Env": env}}
            self.log = log

        def logs(self, tail: int) -> bytes:
            return self.log.encode()

    containers = {
        "agent": Container(["OPENAI_API_KEY=sk-provider-key-123"],
                           "ready\nusing key sk-provider-key-123\n"),
        "caddy": Container([], f"GET /rtc?access_token={JWT_LIKE}\n"),
        "livekit-1": Container([f"LIVEKIT_KEYS={KEY}: {SECRET}"], "node started\n"),
    }
    monkeypatch.setattr(docker, "docker_session", lambda **_: nullcontext(object()))
    monkeypatch.setattr(docker, "deployment_containers", lambda client, settings: containers)
    found = CHECKS["auth.sensitive-data-logs"](Context(local.settings()))
    assert found.status == "fail", found
    assert "agent line(s) 2 (OPENAI_API_KEY of agent)" in found.evidence
    assert "caddy line(s) 1 (an access token (JWT))" in found.evidence
    assert "sk-provider-key-123" not in found.evidence and JWT_LIKE not in found.evidence
    assert "livekit-1" not in found.evidence
    containers.pop("agent"), containers.pop("caddy")
    found = CHECKS["auth.sensitive-data-logs"](Context(local.settings()))
    assert found.status == "pass", found
    # livekit-1's secret is the one lkchaos was given: looked for once.
    assert "no credential in the logs of 1 container (1 secret," in found.evidence


def test_the_logs_check_needs_the_engine(local: Local) -> None:  # noqa: F811
    found = CHECKS["auth.sensitive-data-logs"](Context(local.settings()))
    assert found.status == "error" and SECRET not in found.evidence


def test_secret_like_environment_variables_are_listed_by_name() -> None:
    attrs = {"Config": {"Env": ["LIVEKIT_KEYS=k: s", "PATH=/usr/bin", "REDIS_PASSWORD_FILE=/x",
                                "API_TOKEN=", "LIVEKIT_CONFIG=keys:\n  k: s\n"]}}
    assert security.env_secrets(attrs) == ["LIVEKIT_CONFIG (keys inline)", "LIVEKIT_KEYS"]


def test_privileges_against_least_privilege() -> None:
    hardened = {"Config": {"User": "1000"}, "HostConfig": {
        "CapDrop": ["ALL"], "ReadonlyRootfs": True, "SecurityOpt": ["no-new-privileges:true"]}}
    assert security.privileges(hardened) == []
    loose = {"Config": {"User": ""}, "HostConfig": {"Privileged": True, "CapAdd": ["NET_ADMIN"]}}
    assert security.privileges(loose) == ["runs as root", "privileged", "adds NET_ADMIN",
                                          "keeps default capabilities", "writable root",
                                          "no no-new-privileges"]  # fmt: skip


def test_container_security_judges_what_it_inspected(local: Local) -> None:  # noqa: F811
    hardened = {"Config": {"User": "1000"}, "HostConfig": {
        "CapDrop": ["ALL"], "ReadonlyRootfs": True, "SecurityOpt": ["no-new-privileges"]}}
    ctx = Context(local.settings())
    ctx.cache["containers.attrs"] = ("ok", {"a": hardened, "b": {"Config": {"User": "app"},
                                                               "HostConfig": {}}})
    found = CHECKS["vuln.container-security-validated"](ctx)
    assert found.status == "warn" and found.evidence.startswith("beyond least privilege: b:")
    ctx.cache["containers.attrs"] = ("ok", {"a": {"HostConfig": {"Privileged": True}}})
    assert CHECKS["vuln.container-security-validated"](ctx).status == "fail"
    ctx.cache["containers.attrs"] = ("ok", {"a": hardened})
    assert CHECKS["vuln.container-security-validated"](ctx).status == "pass"
    managed = CHECKS["auth.secrets-properly-managed"](ctx)
    assert managed.status == "pass"


def test_internal_services_must_not_be_published_everywhere(local: Local) -> None:  # noqa: F811
    loopback = {"HostConfig": {"PortBindings": {"6379/tcp": [{"HostIp": "127.0.0.1",
                                                               "HostPort": "27379"}]}}}
    everywhere = {"HostConfig": {"PortBindings": {"9090/tcp": [{"HostIp": "",
                                                                 "HostPort": "9090"}]}}}
    assert security.exposed_ports(loopback) == []
    assert security.exposed_ports(everywhere) == ["9090/tcp on 0.0.0.0:9090"]
    settings = local.settings(roles={"redis_primary": ("redis",), "prometheus": ("prom",),
                                     "livekit_node": ("lk",)})
    ctx = Context(settings)
    ctx.cache["containers.attrs"] = ("ok", {"redis": loopback, "prom": everywhere,
                                            "lk": everywhere})
    found = CHECKS["auth.network-segmentation-enforced"](ctx)
    assert found.status == "fail" and found.evidence.endswith("prom: 9090/tcp on 0.0.0.0:9090")
    ctx.cache["containers.attrs"] = ("ok", {"redis": loopback, "lk": everywhere})
    assert CHECKS["auth.network-segmentation-enforced"](ctx).status == "pass"


def test_a_node_that_accepts_the_development_keys_fails_the_api_key_item(
        tmp_path: Path) -> None:  # fmt: skip
    """A deployment that kept the quick-start key pair beside its own accepts tokens signed
    with it: the finding names it."""
    keys = {KEY: SECRET, security.DEV_KEY: security.DEV_SECRET}
    with dev_server(tmp_path, keys=keys) as url:
        settings = Settings(livekit_node_urls=(url,), livekit_url=url.replace("http", "ws"),
                            livekit_api_key=KEY, livekit_api_secret=SECRET)  # fmt: skip
        found = CHECKS["auth.api-keys-validated"](Context(settings, timeout_s=5.0))
    assert found.status == "fail", found.evidence
    assert f"ACCEPTED a token {security.FLAWS['development key'][0]} (development key)" \
        in found.evidence
    assert "(wrong signature)" not in found.evidence and "(unknown API key)" not in found.evidence


def test_a_deployment_with_no_container_is_not_judged_secure(
    local: Local, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    # A deployment that is down has no container: "0 containers run with least privilege"
    # was a pass.
    from contextlib import nullcontext

    from lkchaos.docker import client as docker

    monkeypatch.setattr(docker, "docker_session", lambda **_: nullcontext(object()))
    monkeypatch.setattr(docker, "runtime_containers", lambda client, settings: {})
    ctx = Context(local.settings(roles={"redis_primary": ("redis",), "livekit_node": ("lk",)}))
    for item in ("vuln.container-security-validated", "auth.network-segmentation-enforced",
                 "auth.secrets-properly-managed", "auth.sensitive-data-logs"):
        found = CHECKS[item](ctx)
        assert found.status == "error", (item, found)
        assert "no container found" in found.evidence and "is the deployment up?" in \
            found.evidence, (item, found)
    # Containers, but none of the internal services': nothing to judge either.
    ctx.cache["containers.attrs"] = ("ok", {"lk": {"HostConfig": {}}})
    found = CHECKS["auth.network-segmentation-enforced"](ctx)
    assert found.status == "error" and "none of the internal services' containers" in \
        found.evidence
