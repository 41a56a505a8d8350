#!/usr/bin/env bash
# The Docker health check of a voicestack service and of the prober: GET
# http://127.0.0.1:PORT/PATH answers 2xx within 2 s, and, when FILE is given, FILE exists and
# is not empty (the agent writes it once its worker has registered with LiveKit). Bash and
# its /dev/tcp rather than Python: Docker runs it every few seconds in each service, and
# Python's start-up would cost about ten times more CPU. Prints why when it fails.
# Usage: health.sh PORT PATH [FILE]
set -u
port=$1 path=$2 file=${3:-}
if [ -n "$file" ] && [ ! -s "$file" ]; then
  echo "not ready: $file is missing or empty"
  exit 1
fi
if ! exec 3<>"/dev/tcp/127.0.0.1/$port"; then
  echo "nothing listens on 127.0.0.1:$port"
  exit 1
fi
printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$path" >&3
if ! IFS= read -r -t 2 status <&3; then
  echo "GET $path on :$port: no answer within 2 s"
  exit 1
fi
case "$status" in
  "HTTP/1."?" 2"*) exit 0 ;;
esac
echo "GET $path on :$port: $status"
exit 1
