"""Checks of the security items: tokens LiveKit must refuse, input validation, CORS, secrets
in logs and in the containers' environment, and the containers' privileges.

Each flawed token (wrong signature, unknown API key, LiveKit's development key pair,
expired, not yet valid, issued in the future, for another room, without the grant, unsigned)
is tried on every node twice: on ``/rtc/validate`` (what a join checks) and on a RoomService
Twirp call. A token the server accepts that it should refuse is a ``fail`` whose evidence
names it plainly. The API secret is never written into evidence: a leak is reported by
container and line number only.
"""

from __future__ import annotations

import re
import time
import warnings
from typing import Any
from urllib.parse import urlsplit

import jwt
import jwt.warnings

from lkchaos.httpclient import shared_client
from lkchaos.livekit import client as lk
from lkchaos.settings import Settings
from lkchaos.validate.checks.livekit import guarded, invalid_requests, nodes, twirp
from lkchaos.validate.model import Context, Finding, check

#: How far in the past or future the time-flawed tokens are: well beyond LiveKit's minute
#: of leeway.
SHIFT_S = 3600
ROOM_A, ROOM_B = "lkchaos-validate-room-a", "lkchaos-validate-room-b"
#: LiveKit's development key pair: what `livekit-server --dev` accepts, and what a deployment
#: started from a quick-start configuration may still accept.
DEV_KEY, DEV_SECRET = "devkey", "secret"
#: flaw -> (what the token is, items it belongs to).
FLAWS: dict[str, tuple[str, tuple[str, ...]]] = {
    "wrong signature": ("signed with another secret", ("api-keys", "jwt")),
    "unknown API key": ("naming an API key the server does not have", ("api-keys",)),
    "development key": ("signed with LiveKit's development key pair (devkey/secret, what "
                        "`livekit-server --dev` accepts)", ("api-keys",)),
    "expired": (f"expired {SHIFT_S} s ago", ("jwt",)),
    "not yet valid": (f"valid only {SHIFT_S} s from now (nbf)", ("jwt",)),
    "issued in the future": (f"issued {SHIFT_S} s from now (iat)", ("jwt",)),
    "unsigned": ("alg none, no signature", ("jwt",)),
    "other room": (f"for room {ROOM_A}, used on {ROOM_B}", ("rbac",)),
    "no grant": ("without the join or admin grant", ("rbac",)),
}


def _claims(settings: Settings, grants: dict[str, Any]) -> dict[str, Any]:
    key, _ = settings.require_keys()
    now = int(time.time())
    return {"iss": key, "sub": "lkchaos-validate-auth", "nbf": now - 10, "exp": now + 600,
            "video": grants}  # fmt: skip


def flawed_tokens(settings: Settings, purpose: str) -> dict[str, str]:
    """``purpose`` ``join`` (room join grant on :data:`ROOM_B`) or ``admin`` (room admin on
    :data:`ROOM_B`): one token per flaw of :data:`FLAWS`, plus ``valid``."""
    _, secret = settings.require_keys()
    grants = ({"roomJoin": True, "room": ROOM_B} if purpose == "join"
              else {"roomAdmin": True, "room": ROOM_B})  # fmt: skip
    now = int(time.time())

    def sign(claims: dict[str, Any], key: str = secret) -> str:
        return jwt.encode(claims, key, algorithm="HS256")

    base = _claims(settings, grants)
    other_room = dict(grants, room=ROOM_A)
    no_grant = {"room": ROOM_B}
    return {
        "valid": sign(base),
        "wrong signature": sign(base, "not-the-secret-" + "x" * 32),
        "unknown API key": sign(dict(base, iss="lkchaos-no-such-key")),
        "development key": _dev_signed(dict(base, iss=DEV_KEY)),
        "expired": sign(dict(base, nbf=now - 2 * SHIFT_S, exp=now - SHIFT_S)),
        "not yet valid": sign(dict(base, nbf=now + SHIFT_S, exp=now + 2 * SHIFT_S)),
        "issued in the future": sign(dict(base, iat=now + SHIFT_S)),
        "unsigned": jwt.encode(base, None, algorithm="none"),  # type: ignore[arg-type]
        "other room": sign(dict(base, video=other_room)),
        "no grant": sign(dict(base, video=no_grant)),
    }


def _dev_signed(claims: dict[str, Any]) -> str:
    """``claims`` signed with the development secret (short on purpose: PyJWT warns)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return jwt.encode(claims, DEV_SECRET, algorithm="HS256")


def _verdicts(ctx: Context) -> dict[str, Any]:
    """Per node, per flaw: the status ``/rtc/validate`` and ``ListParticipants`` answered."""
    out: dict[str, Any] = {}
    for url in nodes(ctx):
        created = twirp(url, "CreateRoom", _admin(ctx.settings), ctx.timeout_s,
                        json={"name": ROOM_B, "empty_timeout": 10})  # fmt: skip
        if created.status_code != 200:
            raise RuntimeError(f"CreateRoom {ROOM_B} on {url} answered {created.status_code}")
        joins = flawed_tokens(ctx.settings, "join")
        admins = flawed_tokens(ctx.settings, "admin")
        node: dict[str, Any] = {}
        try:
            for flaw in ("valid", *FLAWS):
                answer = shared_client().get(lk.http_url(url).rstrip("/") + "/rtc/validate",
                                             params={"access_token": joins[flaw],
                                                     "room": ROOM_B},
                                             timeout=ctx.timeout_s)  # fmt: skip
                call = twirp(url, "ListParticipants", admins[flaw], ctx.timeout_s,
                             json={"room": ROOM_B})  # fmt: skip
                node[flaw] = {"validate": answer.status_code, "twirp": call.status_code}
        finally:
            twirp(url, "DeleteRoom", _admin(ctx.settings), ctx.timeout_s, json={"room": ROOM_B})
        out[url] = node
    return out


def _admin(settings: Settings) -> str:
    from lkchaos.validate.checks.livekit import admin_token

    return admin_token(settings)


def verdicts(ctx: Context) -> dict[str, Any]:
    result: dict[str, Any] = ctx.fact("auth.tokens", lambda: _verdicts(ctx))
    return result


def _judge(ctx: Context, group: str) -> Finding:
    seen = verdicts(ctx)
    flaws = [f for f, (_, groups) in FLAWS.items() if group in groups]
    control = [f"{u}: valid token got {v['valid']}" for u, v in seen.items()
               if v["valid"]["validate"] != 200 or v["valid"]["twirp"] != 200]  # fmt: skip
    if control:
        return Finding("error", "a valid token was refused, so refusals prove nothing: "
                       + "; ".join(control), seen)  # fmt: skip
    accepted = []
    for url, node in seen.items():
        for flaw in flaws:
            # A join always enters the room its token names (/rtc/validate ignores another
            # room asked for), so "other room" is judged on the admin call alone.
            paths = ("twirp",) if flaw == "other room" else ("validate", "twirp")
            where = [k for k in paths if node[flaw][k] == 200]
            if where:
                path = " and ".join("/rtc/validate" if k == "validate" else "ListParticipants"
                                    for k in where)  # fmt: skip
                accepted.append(f"{url} ACCEPTED a token {FLAWS[flaw][0]} ({flaw}) on {path}")
    data = {"flaws": flaws, "nodes": seen}
    if accepted:
        return Finding("fail", "; ".join(accepted), data)
    return Finding("pass", f"every node refused each token ({', '.join(flaws)}) on "
                   "/rtc/validate and ListParticipants; a valid one was accepted", data)


@check("auth.api-keys-validated")
@guarded
def api_keys(ctx: Context) -> Finding:
    """Tokens with a wrong signature or an unknown API key are refused."""
    return _judge(ctx, "api-keys")


@check("auth.jwt-tokens-verified")
@guarded
def jwt_tokens(ctx: Context) -> Finding:
    """Expired, not-yet-valid, future-issued, unsigned and wrongly signed tokens are refused."""
    return _judge(ctx, "jwt")


@check("auth.role-based-access")
@guarded
def role_based(ctx: Context) -> Finding:
    """A token for room A is refused on room B; a token without the grant is refused."""
    return _judge(ctx, "rbac")


@check("auth.input-validation-comprehensive")
@guarded
def input_validation(ctx: Context) -> Finding:
    """Malformed JSON, wrong types, unknown methods, bad content types and garbage tokens
    are refused with a 4xx (the same requests as livekit.graceful-handling-invalid)."""
    seen = invalid_requests(ctx)
    bad = {n: a["status"] for n, a in seen["answers"].items() if not 400 <= a["status"] < 500}
    listing = ", ".join(f"{n} {a['status']}" for n, a in seen["answers"].items())
    if bad:
        return Finding("fail", f"accepted or failed on invalid input: {bad} ({listing})", seen)
    return Finding("pass", f"every invalid input refused with a 4xx: {listing}", seen)


# --- CORS ---------------------------------------------------------------------------------

ORIGIN = "https://lkchaos-validate.invalid"


@check("vuln.web-application-security")
@guarded
def cors(ctx: Context) -> Finding:
    """CORS of LiveKit's API: a preflight from a foreign origin. Allowing any origin with
    credentials is a fail; allowing any origin without them (LiveKit's API takes bearer
    tokens, not cookies) is a warning."""
    seen: dict[str, Any] = {}
    for url in nodes(ctx):
        answer = shared_client().options(
            lk.http_url(url).rstrip("/") + "/twirp/livekit.RoomService/ListRooms",
            headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization,content-type"},
            timeout=ctx.timeout_s)  # fmt: skip
        seen[url] = {"status": answer.status_code,
                     "allow_origin": answer.headers.get("access-control-allow-origin", ""),
                     "allow_credentials": answer.headers.get(
                         "access-control-allow-credentials", "")}  # fmt: skip
    open_to_all = {u: s for u, s in seen.items() if s["allow_origin"] in ("*", ORIGIN)}
    with_credentials = [u for u, s in open_to_all.items()
                        if s["allow_credentials"].lower() == "true"]  # fmt: skip
    text = "; ".join(f"{u}: Access-Control-Allow-Origin {s['allow_origin'] or '(none)'}"
                     f"{', with credentials' if s['allow_credentials'] else ''}"
                     for u, s in seen.items())  # fmt: skip
    if with_credentials:
        return Finding("fail", f"CORS allows any origin WITH credentials: {text}", seen)
    if open_to_all:
        return Finding("warn", f"CORS: a preflight from {ORIGIN} is allowed ({text}); no "
                       "credentials are allowed and every call needs a bearer token, but "
                       "restrict origins at the proxy if only your own pages call the API",
                       seen)  # fmt: skip
    return Finding("pass", f"CORS refuses a foreign origin: {text}", seen)


# --- transport, secrets, containers -------------------------------------------------------

_PLAIN = {"ws", "http", "rtmp", "redis"}


def _local(host: str) -> bool:
    import ipaddress

    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@check("auth.communications-encrypted")
@guarded
def encrypted(ctx: Context) -> Finding:
    """Every URL callers use by a public name is TLS (wss, https, rtmps); plain URLs are
    allowed on loopback only (lkchaos's own view of a local deployment)."""
    s = ctx.settings
    urls = {"livekit_url": s.livekit_url, "ingress_rtmp_url": s.ingress_rtmp_url,
            "ingress_whip_url": s.ingress_whip_url}  # fmt: skip
    plain = {k: v for k, v in urls.items() if v and urlsplit(v).scheme in _PLAIN
             and not _local(urlsplit(v).hostname or "")}  # fmt: skip
    shown = ", ".join(f"{k} {urlsplit(v).scheme}://{urlsplit(v).hostname}"
                      for k, v in urls.items() if v)  # fmt: skip
    if plain:
        return Finding("fail", f"public names without TLS: {plain}", {"urls": urls})
    redis_note = "" if s.redis_tls else "; Redis is plain (inside the deployment's network)"
    return Finding("pass", f"no public name without TLS: {shown}{redis_note}", {"urls": urls})


def _containers(ctx: Context) -> dict[str, Any]:
    """name -> container.attrs of every container of the target (through the engine)."""

    def compute() -> dict[str, Any]:
        from lkchaos.docker.client import deployment_containers, docker_session

        with docker_session() as client:
            return {n: c.attrs for n, c in deployment_containers(client, ctx.settings).items()}

    result: dict[str, Any] = ctx.fact("containers.attrs", compute)
    return result


#: Environment variable names whose inline value is a credential to look for in the logs:
#: secrets, passwords, tokens and third-party API keys (a voice agent's speech-to-text, LLM
#: and text-to-speech providers'). ``*_FILE`` names hold a path, not the secret.
_LOGGED_SECRET_NAME = re.compile(
    r"(SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIAL|PRIVATE_KEY|API_KEY$|AUTH_KEY$)", re.I)
#: Named like secrets but identifiers: LiveKit's API key is the key's id (every token carries
#: it as its issuer), not the secret that signs them.
_NOT_SECRET = {"LIVEKIT_API_KEY", "LK_API_KEY"}
#: Shorter values are too common to be told from ordinary log text.
MIN_SECRET_LEN = 8
#: A JSON Web Token: a LiveKit access token, or a webhook's Authorization header. One in a
#: log is a credential anyone who reads the log can use until it expires.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}")
#: A URL with a password in it (``redis://:pw@host``, ``https://user:pw@host``); a masked
#: one (``***``, ``xxx``, ``<password>``, ``%s``, ``${VAR}``) is not a leak.
_URL_PASSWORD = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s/:@\"']*:([^\s/@\"']+)@", re.I)
_MASKED = re.compile(r"^(\*+|x+|X+|<[^>]*>|%s|\$\{?[A-Za-z_][A-Za-z0-9_]*\}?|redacted|"
                     r"REDACTED|\[redacted\]|\[REDACTED\]|\.{3})$")


def _config_secrets(config: Any, under: str = "") -> list[tuple[str, str]]:
    """(where, value) of the secrets in a parsed LiveKit configuration: the API key pairs'
    secrets (``keys``), and every string under a key named like a secret or password
    (``redis.password``, ``rtc.turn_servers[].credential``, ...)."""
    found: list[tuple[str, str]] = []
    if isinstance(config, dict):
        for key, value in config.items():
            where = f"{under}.{key}" if under else str(key)
            if key == "keys" and isinstance(value, dict):
                found += [(f"{where} (the secret of {k})", str(v)) for k, v in value.items()
                          if isinstance(v, str | int)]  # fmt: skip
            elif isinstance(value, str | int) and _LOGGED_SECRET_NAME.search(str(key)) \
                    and not str(key).lower().endswith("_file"):
                found.append((where, str(value)))
            else:
                found += _config_secrets(value, where)
    elif isinstance(config, list):
        for i, value in enumerate(config):
            found += _config_secrets(value, f"{under}[{i}]")
    return found


def _keys_entries(value: str) -> list[tuple[str, str]]:
    """``LIVEKIT_KEYS``' ``key: secret`` pairs (one per line or comma), stripped."""
    pairs = []
    for pair in re.split(r"[\n,]", value):
        name, sep, secret = pair.partition(":")
        if sep:
            pairs.append((name.strip(), secret.strip()))
    return pairs


def _inline_config(value: str) -> Any:
    """An inline ``LIVEKIT_CONFIG`` parsed as YAML, or None when it is not YAML."""
    import yaml

    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return None


def container_secrets(attrs: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, value) of the credentials one container is given inline: secret-like
    environment variables (:data:`_LOGGED_SECRET_NAME`), ``LIVEKIT_KEYS``' secrets and the
    secrets of an inline ``LIVEKIT_CONFIG``. ``where`` names the variable, never the value;
    values shorter than :data:`MIN_SECRET_LEN` are left out."""
    found: list[tuple[str, str]] = []
    for entry in (attrs.get("Config") or {}).get("Env") or []:
        key, _, value = str(entry).partition("=")
        if not value or key.upper().endswith("_FILE") or key.upper() in _NOT_SECRET:
            continue
        if key == "LIVEKIT_KEYS":
            found += [(f"LIVEKIT_KEYS (the secret of {name})", secret)
                      for name, secret in _keys_entries(value)]  # fmt: skip
        elif key == "LIVEKIT_CONFIG":
            found += [(f"LIVEKIT_CONFIG {where}", v)
                      for where, v in _config_secrets(_inline_config(value))]  # fmt: skip
        elif _LOGGED_SECRET_NAME.search(key):
            found.append((key, value))
    return [(where, v.strip()) for where, v in found if len(v.strip()) >= MIN_SECRET_LEN]


def secret_hits(logs: dict[str, str], secrets: list[str]) -> dict[str, list[int]]:
    """Per container, the line numbers (1-based) of its logs holding any of ``secrets``."""
    return {name: lines for name, (lines, _) in leaks(logs, [(s, s) for s in secrets]).items()}


#: How LiveKit logs a token it refused (``invalid token: <jwt>, error: ...``).
REFUSED_TOKEN = "invalid token"


def usable_token(token: str, line: str, keys: dict[str, str], now: float | None = None) -> bool:
    """Whether a JWT found in a log ``line`` is a credential someone could use: not one the
    line says the server refused (LiveKit logs every token it refuses, :data:`REFUSED_TOKEN`,
    `validate`'s own flawed tokens among them), not expired, and, when its issuer is an API
    key of ``keys`` (key -> secret), signed by that key's secret. A token that cannot be
    decoded is no credential."""
    if REFUSED_TOKEN in line:
        return False
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return False
    exp = claims.get("exp")
    if isinstance(exp, int | float) and exp < (time.time() if now is None else now):
        return False
    secret = keys.get(str(claims.get("iss", "")))
    if secret is None:
        return True
    try:
        with warnings.catch_warnings():  # a short secret is the deployment's to fix elsewhere
            warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
            jwt.decode(token, secret, algorithms=["HS256"],
                       options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                                "verify_aud": False})  # fmt: skip
    except jwt.PyJWTError:
        return False
    return True


def key_pairs(attrs: dict[str, Any]) -> dict[str, str]:
    """LiveKit API key -> secret pairs one container is given inline: ``LIVEKIT_KEYS``, an
    inline ``LIVEKIT_CONFIG``'s ``keys``, ``LIVEKIT_API_KEY`` with ``LIVEKIT_API_SECRET``."""
    env = dict(str(e).partition("=")[::2] for e in (attrs.get("Config") or {}).get("Env") or [])
    pairs = {key: secret for key, secret in _keys_entries(env.get("LIVEKIT_KEYS", ""))
             if key and secret}  # fmt: skip
    config = _inline_config(env.get("LIVEKIT_CONFIG", ""))
    if isinstance(config, dict) and isinstance(config.get("keys"), dict):
        pairs.update({str(k): str(v) for k, v in config["keys"].items()})
    if env.get("LIVEKIT_API_KEY") and env.get("LIVEKIT_API_SECRET"):
        pairs[env["LIVEKIT_API_KEY"]] = env["LIVEKIT_API_SECRET"]
    return pairs


def leaks(logs: dict[str, str], secrets: list[tuple[str, str]],
          keys: dict[str, str] | None = None) -> dict[str, tuple[list[int], list[str]]]:
    """Per container, the line numbers (1-based) of its logs that leak a credential and what
    leaked (sorted, never a value): one of ``secrets`` ((where, value) pairs: ``where`` is
    reported), an access token (a JWT :func:`usable_token` judges usable with ``keys``, API
    key -> secret), or a password in a URL."""
    found: dict[str, tuple[list[int], list[str]]] = {}
    now = time.time()
    for name, text in logs.items():
        lines: list[int] = []
        kinds: set[str] = set()
        for i, line in enumerate(text.splitlines(), 1):
            hit = {where for where, value in secrets if value in line}
            if "eyJ" in line and any(usable_token(m.group(0), line, keys or {}, now)
                                     for m in _JWT.finditer(line)):  # fmt: skip
                hit.add("an access token (JWT)")
            if "@" in line:
                for match in _URL_PASSWORD.finditer(line):
                    if not _MASKED.match(match.group(1)):
                        hit.add("a password in a URL")
                        break
            if hit:
                lines.append(i)
                kinds |= hit
        if lines:
            found[name] = (lines, sorted(kinds))
    return found


@check("auth.sensitive-data-logs")
@guarded
def sensitive_logs(ctx: Context) -> Finding:
    """No credential appears in any container's logs (read through the container engine, the
    last 20,000 lines of each): not the LiveKit API secret or the Redis password lkchaos was
    given, not a credential any container of the deployment is given inline (a secret-like
    environment variable such as a provider's API key, ``LIVEKIT_KEYS``, the secrets of an
    inline ``LIVEKIT_CONFIG``: :func:`container_secrets`), no access token anyone could use
    (a JWT, as a ``?access_token=`` in a proxy's access log; not one expired, signed with
    another secret than its API key's, or refused by LiveKit, which logs those:
    :func:`usable_token`) and no password in a URL. The evidence names
    the container, the lines and what leaked, never a value."""
    from lkchaos.docker.client import deployment_containers, docker_session

    secrets = [(where, v) for where, v in (("the LiveKit API secret",
                                            ctx.settings.livekit_api_secret),
                                           ("the Redis password", ctx.settings.redis_password))
               if len(v) >= MIN_SECRET_LEN]  # fmt: skip
    if not secrets:
        return Finding("error", "no API secret known to look for: set LIVEKIT_API_SECRET")
    logs: dict[str, str] = {}
    keys = {ctx.settings.livekit_api_key: ctx.settings.livekit_api_secret}
    with docker_session() as client:
        for name, container in deployment_containers(client, ctx.settings).items():
            logs[name] = container.logs(tail=20000).decode("utf-8", "replace")
            known = {v for _, v in secrets}
            secrets += [(f"{where} of {name}", v) for where, v in container_secrets(
                container.attrs) if v not in known]  # fmt: skip
            keys.update(key_pairs(container.attrs))
    found = leaks(logs, secrets, keys)
    data = {"containers": sorted(logs), "hits": {n: ls for n, (ls, _) in found.items()},
            "leaked": {n: kinds for n, (_, kinds) in found.items()},
            "looked_for": sorted({where for where, _ in secrets})}
    if found:
        where = "; ".join(f"{n} line(s) {', '.join(map(str, ls[:5]))} ({', '.join(kinds)})"
                          for n, (ls, kinds) in found.items())
        return Finding("fail", f"a credential appears in the logs of {where} (values not "
                       "shown): rotate it, and stop the service logging it", data)
    n, m = len(logs), len(data["looked_for"])
    return Finding("pass", f"no credential in the logs of {n} container{'s' * (n != 1)} "
                   f"({m} secret{'s' * (m != 1)}, access tokens and passwords in URLs looked "
                   "for)", data)


_SECRET_NAME = re.compile(r"(SECRET|PASSWORD|PASSWD|TOKEN|KEYS?$|_KEY|CREDENTIAL)", re.I)


def env_secrets(attrs: dict[str, Any]) -> list[str]:
    """Names of environment variables of one container that look like secrets and hold a
    value inline (``*_FILE`` references to a file are fine)."""
    names = []
    for entry in (attrs.get("Config") or {}).get("Env") or []:
        key, _, value = str(entry).partition("=")
        if value and _SECRET_NAME.search(key) and not key.endswith("_FILE"):
            names.append(key)
        elif key == "LIVEKIT_CONFIG" and re.search(r"^\s*keys\s*:", value, re.M):
            names.append("LIVEKIT_CONFIG (keys inline)")
    return sorted(names)


@check("auth.secrets-properly-managed")
@guarded
def secrets_managed(ctx: Context) -> Finding:
    """Secrets handed to containers as plain environment variables (visible to anyone who can
    inspect the container) rather than files or a secret store: a warning listing them."""
    found = {n: env_secrets(a) for n, a in _containers(ctx).items()}
    found = {n: v for n, v in found.items() if v}
    if found:
        listing = "; ".join(f"{n}: {', '.join(v)}" for n, v in sorted(found.items()))
        return Finding("warn", f"secrets in plain environment variables (names only): {listing}"
                       "; prefer files mounted read-only (*_FILE, key_file) or a secret store",
                       {"env": found})  # fmt: skip
    return Finding("pass", "no secret-like environment variable holds a value inline",
                   {"env": {}})  # fmt: skip


def privileges(attrs: dict[str, Any]) -> list[str]:
    """What one container has beyond least privilege."""
    config, host = attrs.get("Config") or {}, attrs.get("HostConfig") or {}
    out = []
    if str(config.get("User") or "") in ("", "0", "root", "0:0", "root:root"):
        out.append("runs as root")
    if host.get("Privileged"):
        out.append("privileged")
    caps = [str(c) for c in host.get("CapAdd") or []]
    if caps:
        out.append("adds " + "+".join(sorted(caps)))
    if "ALL" not in [str(c) for c in host.get("CapDrop") or []]:
        out.append("keeps default capabilities")
    if not host.get("ReadonlyRootfs"):
        out.append("writable root")
    if not any("no-new-privileges" in str(o) for o in host.get("SecurityOpt") or []):
        out.append("no no-new-privileges")
    return out


@check("vuln.container-security-validated")
@guarded
def container_security(ctx: Context) -> Finding:
    """Each container's user, privileged flag, capabilities, read-only root and
    no-new-privileges, against least privilege: a warning listing what exceeds it (a
    privileged container is a fail)."""
    found = {n: privileges(a) for n, a in _containers(ctx).items()}
    privileged = sorted(n for n, p in found.items() if "privileged" in p)
    excess = {n: p for n, p in found.items() if p}
    listing = "; ".join(f"{n}: {', '.join(p)}" for n, p in sorted(excess.items()))
    if privileged:
        return Finding("fail", f"privileged containers: {', '.join(privileged)}; {listing}",
                       {"containers": found})  # fmt: skip
    if excess:
        return Finding("warn", f"beyond least privilege: {listing}", {"containers": found})
    return Finding("pass", f"{len(found)} containers run with least privilege",
                   {"containers": found})  # fmt: skip


#: Roles whose services only the deployment itself should reach.
INTERNAL_ROLES = ("redis_primary", "redis_replica", "sentinel", "prometheus", "alertmanager",
                  "pushgateway", "metrics_exporter", "toxiproxy", "webhook_receiver")  # fmt: skip


def exposed_ports(attrs: dict[str, Any]) -> list[str]:
    """Ports of one container published on every interface (not bound to loopback)."""
    bindings = (attrs.get("HostConfig") or {}).get("PortBindings") or {}
    out = []
    for port, hosts in sorted(bindings.items()):
        for host in hosts or []:
            ip = str(host.get("HostIp") or "")
            if not _local(ip) or ip == "":
                out.append(f"{port} on {ip or '0.0.0.0'}:{host.get('HostPort')}")
    return out


@check("auth.network-segmentation-enforced")
@guarded
def segmentation(ctx: Context) -> Finding:
    """Internal services (Redis, Sentinel, monitoring, exporters, Toxiproxy, the webhook
    receiver) are not published beyond loopback on the host."""
    containers = _containers(ctx)
    internal = {n for role in INTERNAL_ROLES for n in ctx.settings.roles.get(role, ())}
    exposed = {n: exposed_ports(a) for n, a in containers.items() if n in internal}
    exposed = {n: p for n, p in exposed.items() if p}
    checked = sorted(internal & set(containers))
    if internal and not checked:
        return Finding("error", f"none of the internal services' containers "
                                f"({', '.join(sorted(internal))}) found among "
                                f"{', '.join(sorted(containers))}: nothing to judge")
    if exposed:
        listing = "; ".join(f"{n}: {', '.join(p)}" for n, p in sorted(exposed.items()))
        return Finding("fail", f"internal services published on every interface: {listing}",
                       {"exposed": exposed, "checked": checked})  # fmt: skip
    return Finding("pass", f"{len(checked)} internal services published on loopback only or "
                   f"not at all ({', '.join(checked)})", {"checked": checked})
