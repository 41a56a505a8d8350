#!/usr/bin/env bash
# Bring the reference stack up from an empty state: containers and volumes of the compose
# project removed first, images kept. LiveKit never removes the rooms of a node that is gone
# (the node-loss experiment kills one), so the state one run leaves would fail the next run's
# room-state checks of the steady state.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/lkchaos stack down --take-over >/dev/null 2>&1 || true  # whichever checkout started it
project=com.docker.compose.project=lkchaos  # whatever compose could not take down
docker ps -aq --filter "label=$project" | xargs -r docker rm -f >/dev/null
docker volume ls -q --filter "label=$project" | xargs -r docker volume rm -f >/dev/null
.venv/bin/lkchaos stack up
