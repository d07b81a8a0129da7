#!/usr/bin/env bash
# go tool task stop: stops the private Redis and MariaDB that `task run` or
# `task test` started under .data/ (PUSHDESK_DATA_DIR), and nothing else: a
# server counts as theirs only if the pid file there names a live process
# working in that data directory. Harmless when none runs.
#   stop.sh [redis] [mysql]   (both by default)
set -euo pipefail

DATA=${PUSHDESK_DATA_DIR:-$PWD/.data}
[ -d "$DATA" ] && DATA=$(cd "$DATA" && pwd -P)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(redis mysql)

# Messages may go to a pipe that is gone (`task run | grep` after Ctrl-C):
# that must not stop the stopping.
say() { echo "$@" 2>/dev/null || true; }

ours() { # pid dir: is pid alive and working in dir?
  kill -0 "$1" 2>/dev/null || return 1
  if [ -d /proc ]; then
    [ "$(readlink "/proc/$1/cwd" 2>/dev/null)" = "$2" ]
  else # no /proc (macOS): at least the right program
    ps -o command= -p "$1" | grep -qE 'redis-server|mariadbd|mysqld'
  fi
}

stopped=0
for name in "${names[@]}"; do
  case "$name" in redis | mysql) ;; *) say "stop: unknown service $name (want redis or mysql)" >&2; exit 2 ;; esac
  label=Redis; [ "$name" = mysql ] && label=MariaDB
  pidfile="$DATA/$name.pid"
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile" 2>/dev/null || true)
  if [ -n "$pid" ] && ours "$pid" "$DATA/$name"; then
    kill -TERM "$pid"
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      say "stop: the private $label (pid $pid) is still running after 30 s" >&2
      exit 1
    fi
    say "stop: stopped the private $label (pid $pid, data kept in $DATA/$name)"
    stopped=$((stopped + 1))
  fi
  rm -f "$pidfile" # a stale one, or what the server left
done
[ "$stopped" -gt 0 ] || say "stop: no private Redis or MariaDB of $DATA is running"
