#!/usr/bin/env bash
# The second deployment (stack/second: compose project "voiceprod"), unlike the reference stack.
#
#   bash scripts/second-stack.sh up       # write secrets/certs/configs, start, wait until healthy
#   bash scripts/second-stack.sh down     # remove its containers, network and Redis volume
#   bash scripts/second-stack.sh status   # its containers and their health
#
# Idempotent: `up` on a running deployment changes nothing that is already right, `down` on a
# stopped one does nothing. Its state (API keys, Redis password, CA, certificates, configs)
# lives in lkchaos's state folder under voiceprod/ and is kept by `down`. It uses the reference
# stack's images (`lkchaos stack build` makes them when one is missing) and builds only its own
# nginx image. lkchaos reaches it through stack/second/target.yaml alone:
#   LKCHAOS_TARGET=stack/second/target.yaml .venv/bin/chaos run experiments/steady-state.json
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m[second-stack]\033[0m %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

PY=.venv/bin/python
COMPOSE_FILE=stack/second/compose.yaml
PROJECT=voiceprod
WAIT_S=${VOICEPROD_WAIT_S:-240}
export VOICEPROD_NET_PREFIX=${VOICEPROD_NET_PREFIX:-172.29.88}
# The reference stack's images this deployment runs (stack/second/compose.yaml names them).
REUSED_IMAGES=(livekit/livekit-server:v1.13.5 redis:7.0-bookworm lkchaos/voice:0.1.0
               lkchaos/prober:0.1.0)

[ -x "$PY" ] || die "no .venv here: run bash scripts/bootstrap.sh first"
docker info >/dev/null 2>&1 || die "the Docker engine does not answer: run bash scripts/bootstrap.sh"
docker compose version >/dev/null 2>&1 || die "Docker Compose v2 is missing: run bash scripts/bootstrap.sh"

state_dir() {
  "$PY" -c 'from lkchaos.settings import default_state_dir; print(default_state_dir())'
}
export VOICEPROD_STATE_DIR="${VOICEPROD_STATE_DIR:-$(state_dir)/voiceprod}"

compose() { docker compose -p "$PROJECT" -f "$COMPOSE_FILE" "$@"; }

up() {
  local started
  started=$(date +%s)
  "$PY" stack/second/render.py "$VOICEPROD_STATE_DIR" --net-prefix "$VOICEPROD_NET_PREFIX"
  local missing=()
  for image in "${REUSED_IMAGES[@]}"; do
    docker image inspect "$image" >/dev/null 2>&1 || missing+=("$image")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "building the reference stack's images (missing: ${missing[*]})"
    .venv/bin/lkchaos stack build
  fi
  if ! docker image inspect voiceprod/nginx:1.22 >/dev/null 2>&1; then
    log "building voiceprod/nginx:1.22"
    compose build nginx
  fi
  log "starting (state in $VOICEPROD_STATE_DIR)"
  if ! compose up -d --pull never --wait --wait-timeout "$WAIT_S"; then
    compose ps -a >&2 || true
    die "not healthy within ${WAIT_S} s: see bash $0 status and docker logs <container>"
  fi
  log "up and healthy in $(( $(date +%s) - started )) s"
}

down() {
  compose down --volumes --remove-orphans --timeout 5
  # Fixed container names: remove any left by a compose run that could not finish.
  local name
  for name in redis lk-server nginx stt tools voice-agent voice-prober; do
    if [ "$(docker inspect -f '{{index .Config.Labels "com.docker.compose.project"}}' "$name" 2>/dev/null)" = "$PROJECT" ]; then
      docker rm -f "$name" >/dev/null
    fi
  done
  log "down"
}

status() {
  compose ps -a --format 'table {{.Name}}\t{{.State}}\t{{.Status}}\t{{.Ports}}'
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) die "usage: bash $0 up|down|status" ;;
esac
