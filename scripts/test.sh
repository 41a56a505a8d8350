#!/usr/bin/env bash
# Run every check: lint, types, unit tests, then the integration tests against the live
# reference stack (brought up first, built if missing). Installs what it needs.
#   scripts/test.sh            everything
#   scripts/test.sh --unit     lint, types and unit tests only (no Docker)
#   scripts/test.sh --catalogue  everything, with every experiment of the catalogue run (CI
#                              runs all but those marked catalogue: about 15 min more)
# Extra arguments after -- go to pytest, e.g. scripts/test.sh -- -k sentinel
set -euo pipefail
cd "$(dirname "$0")/.."
# Bytecode is written for this run even where the environment says not to: without it every
# `chaos`/`lkchaos` process the tests start compiles lkchaos again (about 1.3 s each on two
# cores), and each pytest session rewrites the asserts of all test modules (10-20 s). The
# image build contexts leave __pycache__ out (.dockerignore, stack/.dockerignore).
unset PYTHONDONTWRITEBYTECODE

unit_only=0
integration="integration and not catalogue"
pytest_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --unit) unit_only=1 ;;
    --catalogue) integration="integration" ;;
    --) shift; pytest_args=("$@"); break ;;
    *) echo "unknown option $1 (use --unit, --catalogue, or -- followed by pytest arguments)" >&2; exit 2 ;;
  esac
  shift
done

bash scripts/bootstrap.sh
# A real PostgreSQL server for the history tests (started if it is not running).
LKCHAOS_TEST_POSTGRES_URL=${LKCHAOS_TEST_POSTGRES_URL:-$(bash scripts/postgres.sh)}
export LKCHAOS_TEST_POSTGRES_URL
# Short fault windows in CI: the same experiments, a smaller knob. In CI nothing may be
# skipped, so the images (and the pinned servers the unit tests run for real: LiveKit, Caddy
# with layer 4, Ingress) are built before the unit tests.
if [ "${CI:-}" = true ]; then
  export LKCHAOS_FAULT_S=${LKCHAOS_FAULT_S:-8}
  export LKCHAOS_NO_SKIPS=1
fi

# pytest exits 5 when it collected nothing: that is a failure here, never a pass.
run_pytest() {
  set +e
  .venv/bin/pytest "$@"
  rc=$?
  set -e
  if [ "$rc" = 5 ]; then echo "pytest collected no tests for: $*" >&2; exit 1; fi
  [ "$rc" = 0 ] || exit "$rc"
}

.venv/bin/ruff check src tests stack/voice stack/second
.venv/bin/mypy
if [ "${CI:-}" = true ] && [ "$unit_only" = 0 ]; then .venv/bin/lkchaos stack build; fi
# The unit tests are independent (free ports, their own schemas and folders): one worker
# per core, at most four (LKCHAOS_TEST_WORKERS overrides; 0 runs them in this process).
workers=${LKCHAOS_TEST_WORKERS:-$(n=$(nproc); echo $(( n < 4 ? n : 4 )))}
run_pytest -m "not integration" -n "$workers" "${pytest_args[@]}"
[ "$unit_only" = 1 ] && exit 0

# The integration tests start from an empty stack (Redis included), every time.
if [ "${CI:-}" = true ]; then
  trap '.venv/bin/lkchaos stack down || true' EXIT
fi
bash scripts/fresh-stack.sh
run_pytest -m "$integration" --durations=80 --durations-min=1 "${pytest_args[@]}"
