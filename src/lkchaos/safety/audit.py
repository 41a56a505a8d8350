"""The audit log: one JSON line per fault injected or undone, appended, never rewritten.

The file is ``audit.jsonl`` in the stack's state folder, created private (0600) and written
under an exclusive file lock, one ``write`` per line. The ledger writes to it on every
``record`` (outcome ``injected``), on every ``forget`` and successful undo (``undone``) and on
every failed undo (``undo failed``), and ``not injected`` when a fault recorded before its
injection is withdrawn because the injection changed nothing (its request never reached the
service, or was refused), so every lkchaos action is covered. An entry::

    {"time": "2026-01-01T10:00:00.123456+00:00", "run": "3f2a...", "experiment": "redis failover",
     "target": "redis-primary", "kind": "stopped", "outcome": "injected", "fault_id": "...",
     "activity": "kill-the-primary", "arguments": {"service": "redis-primary"},
     "undo": {"module": "lkchaos.docker.actions", "func": "start_service",
              "arguments": {"service": "redis-primary"}},
     "error": null, "deployment": "/srv/lk/target.yaml", "user": "ci", "host": "runner-1",
     "pid": 4242}

``deployment`` is the target file the fault was made on (null for the built-in defaults and
entries written before it was recorded): several deployments may share one state folder.

Arguments are masked: the value of any key that names secret material (secret, password,
token, key, credential, auth) becomes ``"***"``, and so does any text that holds a known API
secret. ``lkchaos audit`` prints the log.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import getpass
import json
import logging
import os
import re
import socket
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from lkchaos.errors import ConfigError

logger = logging.getLogger("chaostoolkit")

MASK = "***"
SECRET_KEY = re.compile(r"secret|passw|token|key|credential|auth", re.IGNORECASE)
#: Secrets shorter than this are not searched for in text (too many false matches).
MIN_SECRET_LEN = 8

_known_secrets: set[str] = set()
_activity = threading.local()


def audit_path(state_dir: str | Path) -> Path:
    return Path(state_dir) / "audit.jsonl"


def register_secret(value: str | None) -> None:
    """Mask ``value`` wherever it appears in what the audit log and the journal get."""
    if value and len(value) >= MIN_SECRET_LEN:
        _known_secrets.add(value)


def register_settings(settings: Any) -> None:
    """Register the secrets a target's settings hold: LiveKit's API secret, the Redis and
    the Sentinels' passwords (:class:`lkchaos.settings.Settings`)."""
    for value in (settings.livekit_api_secret, settings.redis_password,
                  settings.sentinel_password):  # fmt: skip
        register_secret(value)


def known_secrets(state_dir: str | Path | None = None) -> set[str]:
    """Secrets to mask: those registered, ``LIVEKIT_API_SECRET``, and the stack's own key."""
    found = set(_known_secrets)
    env = os.environ.get("LIVEKIT_API_SECRET", "")
    if len(env) >= MIN_SECRET_LEN:
        found.add(env)
    if state_dir is not None:
        stack_env = Path(state_dir) / "stack.env"
        try:
            for line in stack_env.read_text().splitlines():
                key, sep, value = line.partition("=")
                if sep and key.strip() == "LIVEKIT_API_SECRET" and len(value.strip()) >= 8:
                    found.add(value.strip())
        except OSError:
            pass
    return found


#: A signed JSON Web Token (LiveKit's access tokens and those signed with its key): header
#: and claims are base64url JSON objects, so both begin ``eyJ``. Masked wherever text is
#: scrubbed, since tokens are minted at run time and were never registered as secrets.
JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+")


def scrub(value: Any, secrets: Iterable[str]) -> Any:
    """``value`` with every occurrence of a secret, and every signed token (:data:`JWT`), in
    its text replaced by ``***``."""
    secrets = [s for s in secrets if s]
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, MASK)
        return JWT.sub(MASK, value)
    if isinstance(value, Mapping):
        return {scrub(k, secrets): scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v, secrets) for v in value]
    return value


class TokenFilter(logging.Filter):
    """Masks signed tokens (:data:`JWT`) in a logger's records, whatever logs them: an
    activity's error that quotes a join URL reaches the terminal and ``chaostoolkit.log``."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a record that cannot be formatted is left to its handler
            return True
        if JWT.search(text):
            record.msg, record.args = JWT.sub(MASK, text), None
        return True


def mask_tokens_in_log(name: str = "chaostoolkit") -> None:
    """Install :class:`TokenFilter` on logger ``name`` once."""
    target = logging.getLogger(name)
    if not any(isinstance(f, TokenFilter) for f in target.filters):
        target.addFilter(TokenFilter())


def mask(value: Any, secrets: Iterable[str] = ()) -> Any:
    """Like :func:`scrub`, and the value of every key that names secret material is hidden."""
    secrets = list(secrets)
    if isinstance(value, Mapping):
        return {
            str(k): MASK if SECRET_KEY.search(str(k)) and v not in (None, "") else mask(v, secrets)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [mask(v, secrets) for v in value]
    return scrub(value, secrets)


def set_activity(name: str | None, arguments: Mapping[str, Any] | None) -> None:
    """The activity running in this thread, named in the entries its faults produce."""
    _activity.current = (name, dict(arguments or {}))


def clear_activity() -> None:
    _activity.current = None


def _who() -> dict[str, Any]:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return {"user": user, "host": socket.gethostname(), "pid": os.getpid()}


def entry(fault: Mapping[str, Any], outcome: str, error: str | None = None,
          secrets: Iterable[str] = ()) -> dict[str, Any]:  # fmt: skip
    """The audit line for one ledger entry (a ``Fault`` as a dict) and what happened to it."""
    current = getattr(_activity, "current", None)
    activity, arguments = current if current else (None, None)
    secrets = list(secrets)
    line = {
        "time": dt.datetime.now(dt.UTC).isoformat(),
        "run": fault.get("run_id") or None,
        "experiment": fault.get("experiment") or None,
        "target": fault.get("target"),
        "kind": fault.get("kind"),
        "outcome": outcome,
        "fault_id": fault.get("id"),
        "activity": activity,
        "arguments": mask(arguments, secrets) if arguments is not None else None,
        "undo": {
            "module": fault.get("undo_module"),
            "func": fault.get("undo_func"),
            "arguments": mask(fault.get("undo_arguments") or {}, secrets),
        },
        "error": scrub(error, secrets) if error else None,
        "deployment": fault.get("deployment") or None,
        **_who(),
    }
    return line


def append(state_dir: str | Path, line: Mapping[str, Any]) -> None:
    """Append one line under an exclusive lock; the file is created 0600."""
    path = audit_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(line, sort_keys=False, default=str) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.fstat(fd).st_mode & 0o077:
                os.fchmod(fd, 0o600)
            os.write(fd, data)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def write(state_dir: str | Path, fault: Mapping[str, Any], outcome: str,
          error: str | None = None, strict: bool = False) -> None:  # fmt: skip
    """Audit what happened to one fault. ``strict`` raises when the log cannot be written
    (before a fault is injected); otherwise a failure to write is only logged."""
    try:
        append(state_dir, entry(fault, outcome, error, known_secrets(state_dir)))
    except OSError as exc:
        message = (f"could not write the audit log {audit_path(state_dir)}: {exc}; make the "
                   "state folder writable for this user")
        if strict:
            raise ConfigError(message) from exc
        logger.warning(message)


def _entries(state_dir: str | Path) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """Each non-blank line of the log, numbered from 1, with the JSON object it holds, or
    None when it holds none."""
    path = audit_path(state_dir)
    if not path.is_file():
        return
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
        except ValueError:
            item = None
        yield number, item if isinstance(item, dict) else None


def unreadable(state_dir: str | Path) -> list[int]:
    """Line numbers (1-based) of the log that are not audit entries (not a JSON object with a
    ``time``): the log was edited, cut short by a full disk, or written by something else.
    :func:`read` skips them; ``lkchaos audit`` says so."""
    return [number for number, item in _entries(state_dir) if item is None or "time" not in item]


def read(state_dir: str | Path, run: str | None = None,
         since: dt.datetime | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """The log's entries, oldest first, of one run (a prefix of its id is enough) and since
    a moment; lines that cannot be parsed are skipped."""
    entries = []
    for _, item in _entries(state_dir):
        if item is None:
            continue
        if run and not str(item.get("run") or "").startswith(run):
            continue
        if since is not None:
            try:
                when = dt.datetime.fromisoformat(str(item.get("time")))
            except ValueError:
                continue
            if when < since:
                continue
        entries.append(item)
    return entries


_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """``90s``, ``30m``, ``2h``, ``7d``, ``2w`` (that long ago), or an ISO date or time (UTC
    unless it says); a ConfigError saying what is accepted otherwise. Every ``--since`` of the
    command line (``lkchaos audit``, ``lkchaos history``) reads it here."""
    now = now or dt.datetime.now(dt.UTC)
    match = _RELATIVE.match(text)
    if match:
        try:
            return now - dt.timedelta(seconds=float(match[1]) * _UNITS[match[2]])
        except (OverflowError, ValueError) as exc:
            raise ConfigError(
                f"--since {text!r} reaches back too far (before the year 1): give a shorter "
                "duration (30m, 2h, 7d, 2w) or an ISO date (2026-01-31)"
            ) from exc
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ConfigError(
            f"--since {text!r} is neither a duration (30m, 2h, 7d, 2w) nor an ISO date or "
            "time (2026-01-31 or 2026-01-31T10:00:00)"
        ) from exc
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def format_line(item: Mapping[str, Any]) -> str:
    """One entry as a line of text for ``lkchaos audit``: time, run, outcome, what and its
    arguments, then ``[experiment; target file (when recorded); user@host pid]``."""
    when = str(item.get("time", ""))[:19].replace("T", " ")
    run = str(item.get("run") or "-")[:12]
    what = f"{item.get('kind')} on {item.get('target')}"
    args = json.dumps(item.get("arguments") if item.get("arguments") is not None
                      else (item.get("undo") or {}).get("arguments") or {})  # fmt: skip
    who = f"{item.get('user')}@{item.get('host')}"
    where = f"; target {item['deployment']}" if item.get("deployment") else ""
    text = (f"{when}  {run:<12}  {item.get('outcome', ''):<11}  {what}  {args}  "
            f"[{item.get('experiment') or '-'}{where}; {who} pid {item.get('pid')}]")
    if item.get("error"):
        text += f"  error: {item['error']}"
    return text
