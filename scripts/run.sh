#!/usr/bin/env bash
# go tool task run: build, migrate, serve, and print how to try it.
set -euo pipefail
export PUSHDESK_JWT_SECRET=${PUSHDESK_JWT_SECRET:-dev-jwt-secret}
export PUSHDESK_INGEST_KEY=${PUSHDESK_INGEST_KEY:-dev-ingest-key}
export PUSHDESK_ADDR=${PUSHDESK_ADDR:-:8080}
mkdir -p bin
go build -o bin/pushdesk .
./bin/pushdesk migrate
./bin/pushdesk serve &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid; exit 0' INT TERM
port=${PUSHDESK_ADDR##*:}
base="http://127.0.0.1:$port"
iport=${PUSHDESK_INTERNAL_ADDR:+${PUSHDESK_INTERNAL_ADDR##*:}}
ibase="http://127.0.0.1:${iport:-$port}"
for _ in $(seq 1 100); do curl -fs "$base/readyz" >/dev/null 2>&1 && break; kill -0 $pid 2>/dev/null || exit 1; sleep 0.1; done
token=$(./bin/pushdesk token 42)
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
Ctrl-C stops it.
MSG
wait $pid
