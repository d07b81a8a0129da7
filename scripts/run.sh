#!/usr/bin/env bash
# go tool task run: start Redis/MariaDB if none answer, build, migrate,
# serve, and print how to try it. Ctrl-C (or SIGTERM) stops Pushdesk and
# the private Redis/MariaDB this run started, and nothing else.
set -euo pipefail

if [ -t 0 ] && [ -t 2 ] && [ -z "${PUSHDESK_RUN_JOB:-}" ]; then
  # In a terminal, run the rest as a job of its own in the foreground, so
  # that Ctrl-C reaches it alone: Task, and `go tool`, which relays signals
  # to Task, would each report it. (Bash's job control needs stderr on the
  # terminal; elsewhere the signal reaches everyone and the cleanup below
  # runs all the same.)
  set -m
  PUSHDESK_RUN_JOB=1 bash "$0" "$@" &
  fg %1 >/dev/null
  exit $?
fi

export PUSHDESK_JWT_SECRET=${PUSHDESK_JWT_SECRET:-dev-jwt-secret}
export PUSHDESK_INGEST_KEY=${PUSHDESK_INGEST_KEY:-dev-ingest-key}
export PUSHDESK_ADDR=${PUSHDESK_ADDR:-:8080}

# With the output piped (`task run | grep …`), Ctrl-C ends the reader too:
# later writes must fail quietly, not kill Pushdesk or the cleanup midway.
trap '' PIPE
started=$(mktemp)
pid=
cleanup() {
  trap '' INT TERM HUP
  if [ -n "$pid" ]; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  if [ -s "$started" ]; then
    # shellcheck disable=SC2046 # one name a line
    bash scripts/stop.sh $(cat "$started")
  fi
  rm -f "$started"
}
trap cleanup EXIT
trap 'exit 0' INT TERM HUP

PUSHDESK_SERVICES_STARTED=$started bash scripts/services.sh
mkdir -p bin
go build -o bin/pushdesk .
./bin/pushdesk migrate
./bin/pushdesk serve &
pid=$!
port=${PUSHDESK_ADDR##*:}
base="http://127.0.0.1:$port"
iport=${PUSHDESK_INTERNAL_ADDR:+${PUSHDESK_INTERNAL_ADDR##*:}}
ibase="http://127.0.0.1:${iport:-$port}"
for _ in $(seq 1 100); do curl -fs "$base/readyz" >/dev/null 2>&1 && break; kill -0 $pid 2>/dev/null || exit 1; sleep 0.1; done
token=$(./bin/pushdesk token 42)
stops="Pushdesk"
[ -s "$started" ] && stops="Pushdesk and the $(paste -sd' ' "$started" | sed 's/mysql/MariaDB/; s/redis/Redis/; s/ / and /') this run started"
cat <<MSG

Pushdesk is up.
  demo client   $base/demo/   (WebSocket: ws://127.0.0.1:$port/ws, SSE: $base/sse)
  agent console $base/console/   (make a login: ./bin/pushdesk agent add --email you@example.com --name You)
  health        $base/healthz  $base/readyz
  dev token for user 42 (valid 24h):
    $token

Watch user 42's stream:
  curl -N "$base/sse?token=$token"
Send user 42 a message:
  curl -X POST $ibase/internal/v1/messages -H "Authorization: Bearer $PUSHDESK_INGEST_KEY" \\
       -d '{"to_uid":42,"kind":"comment","body":{"text":"hello"}}'
Ctrl-C stops $stops.
MSG
wait $pid
