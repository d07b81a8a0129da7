#!/usr/bin/env bash
# Makes sure Redis and MySQL/MariaDB answer on the configured addresses.
# When one does not, it starts a private one from the installed binaries,
# with its data under .data/ (PUSHDESK_DATA_DIR). Missing binaries are
# installed on Debian when running as root; otherwise it names the packages.
# The servers it starts run detached from the terminal (Ctrl-C does not
# reach them) with pid files in .data/: `go tool task stop` (scripts/stop.sh)
# stops them. With PUSHDESK_SERVICES_STARTED set to a file, it appends the
# name (redis, mysql) of each server it started there, for `task run`.
set -euo pipefail

DATA=${PUSHDESK_DATA_DIR:-$PWD/.data}
REDIS_URL=${PUSHDESK_REDIS_URL:-redis://127.0.0.1:6379/0}
MYSQL_DSN=${PUSHDESK_MYSQL_DSN:-root@tcp(127.0.0.1:3306)/pushdesk}

# redis://[user:pass@]host:port/db → host, port
redis_hostport=${REDIS_URL#*://}; redis_hostport=${redis_hostport##*@}; redis_hostport=${redis_hostport%%/*}
REDIS_HOST=${redis_hostport%%:*}; REDIS_PORT=${redis_hostport##*:}
[ "$REDIS_PORT" = "$redis_hostport" ] && REDIS_PORT=6379
# user[:pass]@tcp(host:port)/db → host, port
mysql_hostport=$(sed -n 's/.*tcp(\([^)]*\)).*/\1/p' <<<"$MYSQL_DSN")
mysql_hostport=${mysql_hostport:-127.0.0.1:3306}
MYSQL_HOST=${mysql_hostport%%:*}; MYSQL_PORT=${mysql_hostport##*:}

answers() { timeout 1 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

wait_for() { # name host port seconds
  for _ in $(seq 1 $(($4 * 5))); do answers "$2" "$3" && return 0; sleep 0.2; done
  echo "services: $1 did not start on $2:$3; see $DATA/$1.log" >&2; exit 1
}

local_only() { # name host
  case "$2" in 127.0.0.1|localhost|::1) ;; *)
    echo "services: $1 at $2 does not answer and is not local: start it, or point the URL elsewhere" >&2; exit 1 ;;
  esac
}

find_bin() { for b in "$@"; do command -v "$b" 2>/dev/null && return 0; [ -x "/usr/sbin/$b" ] && { echo "/usr/sbin/$b"; return 0; }; done; return 1; }

need_packages() { # packages...
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "services: installing $* with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  else
    echo "services: not installed: $*. Install the Debian/Ubuntu packages ($*), e.g. sudo apt-get install $*, or point PUSHDESK_REDIS_URL / PUSHDESK_MYSQL_DSN at running servers" >&2
    exit 1
  fi
}

started() { [ -z "${PUSHDESK_SERVICES_STARTED:-}" ] || echo "$1" >>"$PUSHDESK_SERVICES_STARTED"; }

mkdir -p "$DATA"

if answers "$REDIS_HOST" "$REDIS_PORT"; then
  echo "services: Redis answers on $REDIS_HOST:$REDIS_PORT"
else
  local_only redis "$REDIS_HOST"
  find_bin redis-server >/dev/null || need_packages redis-server
  mkdir -p "$DATA/redis"
  "$(find_bin redis-server)" --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$DATA/redis" \
    --daemonize yes --pidfile "$DATA/redis.pid" --logfile "$DATA/redis.log" --appendonly yes --save "60 1"
  started redis
  wait_for redis "$REDIS_HOST" "$REDIS_PORT" 15
  echo "services: started Redis on $REDIS_HOST:$REDIS_PORT (data in $DATA/redis)"
fi

if answers "$MYSQL_HOST" "$MYSQL_PORT"; then
  echo "services: MySQL answers on $MYSQL_HOST:$MYSQL_PORT"
else
  local_only mysql "$MYSQL_HOST"
  find_bin mariadbd mysqld >/dev/null || need_packages mariadb-server
  MYSQLD=$(find_bin mariadbd mysqld)
  user_opt=(); [ "$(id -u)" = 0 ] && user_opt=(--user=root)
  if [ ! -d "$DATA/mysql/mysql" ]; then
    INSTALL_DB=$(find_bin mariadb-install-db mysql_install_db)
    "$INSTALL_DB" --no-defaults --datadir="$DATA/mysql" --auth-root-authentication-method=normal "${user_opt[@]}" \
      --skip-test-db >"$DATA/mysql-install.log" 2>&1 || { echo "services: mariadb-install-db failed, see $DATA/mysql-install.log" >&2; exit 1; }
  fi
  detach=(); command -v setsid >/dev/null && detach=(setsid) # its own session: no Ctrl-C
  "${detach[@]}" nohup "$MYSQLD" --no-defaults --datadir="$DATA/mysql" --port="$MYSQL_PORT" --bind-address=127.0.0.1 \
    --socket="$DATA/mysql.sock" --pid-file="$DATA/mysql.pid" --log-error="$DATA/mysql.log" \
    --innodb-flush-log-at-trx-commit=2 "${user_opt[@]}" >/dev/null 2>&1 &
  started mysql
  wait_for mysql "$MYSQL_HOST" "$MYSQL_PORT" 60
  echo "services: started MariaDB on $MYSQL_HOST:$MYSQL_PORT (data in $DATA/mysql)"
fi
