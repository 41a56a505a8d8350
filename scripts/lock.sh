#!/usr/bin/env bash
# Refresh constraints.txt: the newest versions pyproject.toml's ranges allow today, every
# extra included, for the virtualenv's Python. Then run scripts/test.sh (a new version may
# fail lint, types or tests) and commit both together.
#   scripts/lock.sh                  re-resolve everything
#   scripts/lock.sh -P redis         move one package only (uv's --upgrade-package)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/uv ] || bash scripts/bootstrap.sh
header=$(sed -n '/^# /!q;p' constraints.txt)
args=(--upgrade)
[ $# -gt 0 ] && args=("$@")
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
# Without --upgrade uv keeps the versions already in the output file: copy it there first.
cp constraints.txt "$tmp"
UV_NATIVE_TLS=${UV_NATIVE_TLS:-1} UV_INDEX_URL=${UV_INDEX_URL:-${PIP_INDEX_URL:-}} \
  .venv/bin/uv pip compile -q pyproject.toml --python .venv/bin/python --no-header \
  --extra dev --extra voice --extra stack --extra ingress --extra load "${args[@]}" -o "$tmp"
{ printf '%s\n' "$header"; grep -v '^# ' "$tmp"; } > constraints.txt
git diff --stat -- constraints.txt
