"""Find a secret in files: the check that a run left the API secret nowhere it should not be.

``scan(paths, secret)`` reads every file under ``paths`` (folders are walked) and reports each
place the secret appears, as it is or encoded: base64 (standard and URL-safe, at each of the
three alignments it can have inside a longer base64 text), hex (either case) and
percent-encoded. An integration test scans every file a run produced::

    findings = scan([journal, state_dir / "audit.jsonl", state_dir / "faults.json"], secret)
    assert not findings, findings
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

#: Secrets shorter than this would match by chance; scanning for them is refused.
MIN_LENGTH = 8
#: Files larger than this are read in part only (their first bytes).
MAX_FILE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Finding:
    """The secret, in ``form``, in ``path`` at byte ``offset`` (line ``line``, from 1)."""

    path: str
    form: str
    offset: int
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: the secret ({self.form})"


def _base64_forms(raw: bytes) -> dict[str, bytes]:
    """Base64 of the secret as it appears inside any longer base64 text: for each of the three
    alignments, the characters that depend on the secret's bytes only."""
    forms: dict[str, bytes] = {}
    for pad in range(3):
        encoded = base64.b64encode(b"\0" * pad + raw)
        # Drop the characters mixing in the padding bytes before and the unknown bytes after.
        start = {0: 0, 1: 2, 2: 3}[pad]
        usable = (len(raw) + pad) // 3 * 4
        core = encoded[start:usable]
        if len(core) >= MIN_LENGTH:
            forms[f"base64 (offset {pad})"] = core
            forms[f"base64url (offset {pad})"] = core.replace(b"+", b"-").replace(b"/", b"_")
    return forms


def forms_of(secret: str) -> dict[str, bytes]:
    """Every encoding of ``secret`` :func:`scan` looks for, by name."""
    raw = secret.encode()
    forms = {"raw": raw, "hex": binascii.hexlify(raw), "HEX": binascii.hexlify(raw).upper()}
    quoted = quote(secret, safe="").encode()
    if quoted != raw:
        forms["percent-encoded"] = quoted
    forms.update(_base64_forms(raw))
    unique: dict[str, bytes] = {}
    for name, data in forms.items():
        if data not in unique.values():
            unique[name] = data
    return unique


def _files(paths: Iterable[str | Path]) -> Iterable[Path]:
    for entry in paths:
        path = Path(entry)
        if path.is_dir():
            for root, _dirs, names in os.walk(path):
                for name in sorted(names):
                    yield Path(root) / name
        elif path.is_file():
            yield path


def scan(paths: Iterable[str | Path], secret: str) -> list[Finding]:
    """Every place ``secret`` appears in the files under ``paths`` (see the module doc)."""
    if len(secret) < MIN_LENGTH:
        raise ValueError(
            f"a secret of {len(secret)} characters would match by chance; scan for one of at "
            f"least {MIN_LENGTH}"
        )
    forms = forms_of(secret)
    findings: list[Finding] = []
    for path in _files(paths):
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_FILE_BYTES)
        except OSError:
            continue
        for form, needle in forms.items():
            start = data.find(needle)
            while start != -1:
                findings.append(Finding(str(path), form, start, data.count(b"\n", 0, start) + 1))
                start = data.find(needle, start + 1)
    return findings
