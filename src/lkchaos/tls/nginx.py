"""Which certificate files nginx serves for which name, read from ``nginx -T``.

``nginx -T`` checks the configuration and prints every file it read, each after a line
``# configuration file /etc/nginx/conf.d/lk.conf:``. :func:`parse_dump` puts the files back
together as nginx does (each ``include`` replaced by the printed files its pattern matches,
in name order), then reads every ``server`` block of the ``http`` context that listens with
TLS (``listen ... ssl``, ``listen ... quic`` or the old ``ssl on``): its ``server_name``
names and its ``ssl_certificate`` / ``ssl_certificate_key`` files, those of the ``http``
context when the block has none. A name lkchaos cannot swap the file of is kept with the
reason (:attr:`NginxSite.problem`): a variable in the path, several certificates for one
name (RSA and ECDSA), or two blocks serving one name from different files. Wildcard and
regular-expression names, ``_`` and ``""`` name no host and are left out; ``.example.com``
counts as ``example.com``. ``stream`` servers are not read.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import PurePosixPath

HEADER = "# configuration file "
#: How deep includes may nest before the dump is taken as looping.
MAX_INCLUDE_DEPTH = 16


@dataclass(frozen=True)
class Directive:
    """One directive: its name, arguments (quotes removed) and block (None: ``;``-ended)."""

    name: str
    args: tuple[str, ...] = ()
    block: tuple[Directive, ...] | None = None


@dataclass(frozen=True)
class NginxSite:
    """The certificate and key nginx serves for one name (paths inside its container), or
    why lkchaos cannot swap them (``problem``)."""

    name: str
    cert: str = ""
    key: str = ""
    problem: str = ""


def split_dump(text: str) -> dict[str, str]:
    """``nginx -T`` output -> file path -> its text, in the printed order (the main file
    first); the checker's own lines before the first file are dropped."""
    files: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith(HEADER) and line.rstrip().endswith(":"):
            current = files.setdefault(line[len(HEADER):].rstrip()[:-1], [])
            continue
        if current is not None:
            current.append(line)
    return {path: "\n".join(lines) for path, lines in files.items()}


def _tokens(text: str) -> list[str]:
    """Words (quotes removed, escapes kept as nginx reads them), ``{``, ``}`` and ``;``."""
    tokens: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char.isspace():
            i += 1
        elif char == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif char in "{};":
            tokens.append(char)
            i += 1
        elif char in "\"'":
            word, i = [], i + 1
            while i < n and text[i] != char:
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                word.append(text[i])
                i += 1
            tokens.append("".join(word))
            i += 1
        else:
            start = i
            while i < n and not text[i].isspace() and text[i] not in "{};#\"'":
                i += 1
            tokens.append(text[start:i])
    return tokens


def parse(text: str) -> tuple[Directive, ...]:
    """One configuration file's directives (a brace left open is closed at the end)."""
    stack: list[list[Directive]] = [[]]
    heads: list[tuple[str, tuple[str, ...]]] = []
    words: list[str] = []
    for token in _tokens(text):
        if token == ";":
            if words:
                stack[-1].append(Directive(words[0], tuple(words[1:])))
            words = []
        elif token == "{":
            heads.append((words[0] if words else "", tuple(words[1:])))
            stack.append([])
            words = []
        elif token == "}":
            if len(stack) > 1:
                block = tuple(stack.pop())
                name, args = heads.pop()
                stack[-1].append(Directive(name, args, block))
            words = []
        else:
            words.append(token)
    while len(stack) > 1:
        block = tuple(stack.pop())
        name, args = heads.pop()
        stack[-1].append(Directive(name, args, block))
    return tuple(stack[0])


@dataclass
class _Dump:
    files: dict[str, tuple[Directive, ...]]
    prefix: PurePosixPath
    included: set[str] = field(default_factory=set)

    def expand(self, directives: tuple[Directive, ...], depth: int = 0) -> tuple[Directive, ...]:
        """``directives`` with every ``include`` replaced by the files it names."""
        out: list[Directive] = []
        for item in directives:
            if item.name == "include" and item.block is None and item.args:
                if depth < MAX_INCLUDE_DEPTH:
                    for path in self.matching(item.args[0]):
                        self.included.add(path)
                        out.extend(self.expand(self.files[path], depth + 1))
            elif item.block is not None:
                out.append(Directive(item.name, item.args, self.expand(item.block, depth)))
            else:
                out.append(item)
        return tuple(out)

    def matching(self, pattern: str) -> list[str]:
        full = pattern if pattern.startswith("/") else str(self.prefix / pattern)
        return sorted(path for path in self.files if fnmatch.fnmatchcase(path, full))


def _names(server: tuple[Directive, ...]) -> list[str]:
    found: list[str] = []
    for item in server:
        if item.name != "server_name" or item.block is not None:
            continue
        for name in item.args:
            name = name.lower().rstrip(".")
            if name.startswith(".") and "*" not in name:
                name = name[1:]
            if name and name != "_" and "*" not in name and not name.startswith("~") and (
                    "$" not in name):  # fmt: skip
                found.append(name)
    return found


def _is_tls(server: tuple[Directive, ...]) -> bool:
    for item in server:
        if item.name == "listen" and ({"ssl", "quic"} & set(item.args[1:])):
            return True
        if item.name == "ssl" and item.args[:1] == ("on",):
            return True
    return False


def _files(block: tuple[Directive, ...], name: str) -> list[str]:
    return [item.args[0] for item in block if item.name == name and item.block is None
            and item.args]  # fmt: skip


def _site(name: str, certs: list[str], keys: list[str], prefix: PurePosixPath) -> NginxSite:
    if not certs or not keys:
        return NginxSite(name, problem=f"nginx's server block for {name} listens with TLS but "
                         "names no ssl_certificate and ssl_certificate_key")  # fmt: skip
    if len(certs) > 1 or len(keys) > 1:
        return NginxSite(name, problem=f"nginx serves {len(certs)} certificates for {name} "
                         "(RSA and ECDSA?): lkchaos swaps one pair, so it leaves this name "
                         "alone")  # fmt: skip
    cert, key = certs[0], keys[0]
    for path in (cert, key):
        if "$" in path or path.startswith(("data:", "engine:")):
            return NginxSite(name, problem=f"nginx's file for {name} is {path!r}, chosen at "
                             "run time: lkchaos swaps only files named outright")  # fmt: skip
    return NginxSite(name, str(prefix / cert), str(prefix / key))


def _http_sites(http: tuple[Directive, ...], prefix: PurePosixPath) -> dict[str, NginxSite]:
    certs, keys = _files(http, "ssl_certificate"), _files(http, "ssl_certificate_key")
    sites: dict[str, NginxSite] = {}
    for item in http:
        if item.name != "server" or item.block is None or not _is_tls(item.block):
            continue
        own_certs = _files(item.block, "ssl_certificate")
        own_keys = _files(item.block, "ssl_certificate_key")
        for name in _names(item.block):
            site = _site(name, own_certs or certs, own_keys or keys, prefix)
            seen = sites.get(name)
            if seen is not None and (seen.cert, seen.key) != (site.cert, site.key):
                site = NginxSite(name, problem=f"several nginx server blocks serve {name} from "
                                 "different files: lkchaos cannot tell which one clients "
                                 "reach")  # fmt: skip
            if seen is None or not seen.problem:
                sites[name] = site
    return sites


def parse_dump(text: str) -> dict[str, NginxSite]:
    """Every name nginx serves over TLS in ``http`` (see the module docstring)."""
    files = {path: parse(body) for path, body in split_dump(text).items()}
    if not files:
        return {}
    main = next(iter(files))
    dump = _Dump(files, PurePosixPath(main).parent)
    roots = [dump.expand(files[main])]
    # A file the main one does not include (a dump cut short) is read on its own.
    roots += [dump.expand(files[path]) for path in files if path != main
              and path not in dump.included]  # fmt: skip
    sites: dict[str, NginxSite] = {}
    for root in roots:
        https = [item.block for item in root if item.name == "http" and item.block is not None]
        if not https and any(item.name == "server" for item in root):
            https = [root]
        for http in https:
            for name, site in _http_sites(http, dump.prefix).items():
                sites.setdefault(name, site)
    return sites
