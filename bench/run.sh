#!/usr/bin/env bash
# bench/run.sh - a quick, reproducible local benchmark (not a test, not in CI).
#
# The same wrk load (GET / = 100 bytes, GET /64k = 65536 bytes) against a local
# upstream directly, through twistgate and, when nginx is installed, through
# nginx as a reference reverse proxy.  Prints a markdown table: requests/s,
# p50/p99 latency and the ratio to direct (and to nginx).
#
#   bench/run.sh [--duration S] [--warmup S] [--connections N] [--base-port P]
#                [--skip-gateway] [--skip-nginx] [--no-pin] [--keep]
#
# Everything listens on 127.0.0.1, ports base+1 (upstream), base+2 (twistgate),
# base+3 (nginx proxy); base defaults to 27500.  Every process started here is
# stopped on exit, Ctrl-C included.  Environment: TWISTD (default
# .venv/bin/twistd), PYTHON (default .venv/bin/python, for the fallback upstream).
# Details: docs/benchmarks.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DURATION=10 WARMUP=2 CONNS=50 BASE=27500 SKIP_GW=0 SKIP_NGINX=0 PIN=1 KEEP=0
TWISTD="${TWISTD:-$ROOT/.venv/bin/twistd}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --duration) DURATION="$2"; shift 2 ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    --connections) CONNS="$2"; shift 2 ;;
    --base-port) BASE="$2"; shift 2 ;;
    --skip-gateway) SKIP_GW=1; shift ;;
    --skip-nginx) SKIP_NGINX=1; shift ;;
    --no-pin) PIN=0; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; usage 2 ;;
  esac
done

UP_PORT=$((BASE + 1)) GW_PORT=$((BASE + 2)) NGINX_PORT=$((BASE + 3))
for tool in wrk curl; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool not found (apt-get install $tool)" >&2; exit 2; }
done
HAVE_NGINX=0
command -v nginx >/dev/null && HAVE_NGINX=1

# CPU layout on 2+ cores (as bench/compare.py): the proxy under test alone on
# CPU 0, wrk and the upstream on CPU 1.
PROXY_CPU=() LOAD_CPU=()
if [[ $PIN -eq 1 ]] && command -v taskset >/dev/null && [[ $(nproc) -ge 2 ]]; then
  PROXY_CPU=(taskset -c 0) LOAD_CPU=(taskset -c 1)
fi

WORK="$(mktemp -d /tmp/twistgate-bench.XXXXXX)"
chmod 755 "$WORK"  # nginx workers may run as another user
PIDS=()

cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  [[ -n "${WRK_PID:-}" ]] && kill -TERM "$WRK_PID" 2>/dev/null || true
  for pid in ${PIDS[@]+"${PIDS[@]}"}; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in ${PIDS[@]+"${PIDS[@]}"}; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [[ $KEEP -eq 1 ]]; then echo "run.sh: logs and configs kept in $WORK" >&2; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "[bench] $*" >&2; }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start NAME CMD...: run in the background, output to $WORK/NAME.log
start() {
  local name="$1"; shift
  "$@" >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  eval "PID_${name//-/_}=$!"
}

# forget PID: a server that has exited; its pid may be reused, so never signal it
forget() {
  local keep=() pid
  for pid in ${PIDS[@]+"${PIDS[@]}"}; do [[ "$pid" == "$1" ]] || keep+=("$pid"); done
  PIDS=(${keep[@]+"${keep[@]}"})
}

# wait_ready NAME PORT: until GET / answers 200 (or the process dies, or 20 s)
wait_ready() {
  local name="$1" port="$2" pidvar="PID_${1//-/_}" i
  for i in $(seq 200); do
    if ! kill -0 "${!pidvar}" 2>/dev/null; then
      forget "${!pidvar}"
      log "$name exited early; last lines of its log:"; tail -n 20 "$WORK/$name.log" >&2; return 1
    fi
    [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/" || true)" == 200 ]] && return 0
    sleep 0.1
  done
  log "$name is not answering on port $port after 20 s; last lines of its log:"
  tail -n 20 "$WORK/$name.log" >&2
  return 1
}

# check_bodies NAME PORT: both paths answer 200 with the right size
check_bodies() {
  local got
  got="$(curl -s -o /dev/null -w '%{http_code} %{size_download}' "http://127.0.0.1:$2/")"
  [[ "$got" == "200 100" ]] || { log "$1: GET / gave '$got', want '200 100'"; return 1; }
  got="$(curl -s -o /dev/null -w '%{http_code} %{size_download}' "http://127.0.0.1:$2/64k")"
  [[ "$got" == "200 65536" ]] || { log "$1: GET /64k gave '$got', want '200 65536'"; return 1; }
}

for port in "$UP_PORT" "$GW_PORT" "$NGINX_PORT"; do
  if port_in_use "$port"; then log "port $port is in use; pick another --base-port"; exit 2; fi
done

# -- the upstream ---------------------------------------------------------------
SMALL_BODY="hello from the bench upstream $(printf '%.0s.' $(seq 69))"  # 99 chars + \n = 100 bytes
head -c 65536 < <(yes 0123456789abcdef | tr -d '\n') > "$WORK/64k.bin"
chmod 644 "$WORK/64k.bin"
mkdir -p "$WORK/tmp"

nginx_common() {  # $1 = name
  cat <<EOF
worker_processes 1;
daemon off;
pid $WORK/$1.pid;
error_log $WORK/$1.err;
events { worker_connections 8192; }
http {
    access_log off;
    server_tokens off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_temp_path $WORK/tmp/$1-body;
    proxy_temp_path $WORK/tmp/$1-proxy;
    fastcgi_temp_path $WORK/tmp/$1-fastcgi;
    uwsgi_temp_path $WORK/tmp/$1-uwsgi;
    scgi_temp_path $WORK/tmp/$1-scgi;
EOF
}

if [[ $HAVE_NGINX -eq 1 ]]; then
  UPSTREAM_KIND="nginx $(nginx -v 2>&1 | sed 's|.*/||'), 1 worker"
  { nginx_common upstream; cat <<EOF
    sendfile on;
    open_file_cache max=16 inactive=300s;
    server {
        listen 127.0.0.1:$UP_PORT backlog=4096;
        location = /64k { default_type application/octet-stream; alias $WORK/64k.bin; }
        location / { default_type text/plain; return 200 "$SMALL_BODY\n"; }
    }
}
EOF
  } > "$WORK/upstream.conf"
  start upstream ${LOAD_CPU[@]+"${LOAD_CPU[@]}"} nginx -p "$WORK/" -e "$WORK/upstream.err" -c "$WORK/upstream.conf"
else
  UPSTREAM_KIND="bench/upstream.py (Twisted; nginx not installed)"
  start upstream ${LOAD_CPU[@]+"${LOAD_CPU[@]}"} "$PYTHON" "$ROOT/bench/upstream.py" "$UP_PORT"
fi
wait_ready upstream "$UP_PORT"
check_bodies upstream "$UP_PORT"
TARGETS=("direct:$UP_PORT")

# -- nginx as the reference proxy -------------------------------------------------
if [[ $HAVE_NGINX -eq 1 && $SKIP_NGINX -eq 0 ]]; then
  { nginx_common nginx-proxy; cat <<EOF
    upstream bench_up {
        server 127.0.0.1:$UP_PORT;
        keepalive 256;
        keepalive_requests 100000000;
        keepalive_timeout 300s;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT backlog=4096;
        location / {
            proxy_pass http://bench_up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffers 8 16k;        # hold a 64 KiB body in memory, no temp file
            proxy_buffer_size 16k;
        }
    }
}
EOF
  } > "$WORK/nginx-proxy.conf"
  start nginx-proxy ${PROXY_CPU[@]+"${PROXY_CPU[@]}"} \
    nginx -p "$WORK/" -e "$WORK/nginx-proxy.err" -c "$WORK/nginx-proxy.conf"
  if wait_ready nginx-proxy "$NGINX_PORT" && check_bodies nginx-proxy "$NGINX_PORT"; then
    TARGETS+=("nginx:$NGINX_PORT")
  else
    log "nginx is left out of this run (see above)"
  fi
fi

# -- twistgate --------------------------------------------------------------------
GW_FAILED=0
if [[ $SKIP_GW -eq 0 ]]; then
  cd "$ROOT"
  start twistgate ${PROXY_CPU[@]+"${PROXY_CPU[@]}"} env BENCH_PORT="$GW_PORT" BENCH_UPSTREAM_PORT="$UP_PORT" \
    "$TWISTD" -n --pidfile= twistgate --config bench/gw-bench.yaml
  if wait_ready twistgate "$GW_PORT" && check_bodies twistgate "$GW_PORT"; then
    TARGETS+=("twistgate:$GW_PORT")
  else
    GW_FAILED=1
    log "twistgate is left out of this run (see above)"
  fi
fi

# -- load -------------------------------------------------------------------------
# run_wrk PORT PATH: sets STATS="rps p50 p99 socket_errors bad_status requests".
# wrk runs in the background so that a signal interrupts `wait` at once.
WRK_PID=""
run_wrk() {
  local url="http://127.0.0.1:$1$2"
  ${LOAD_CPU[@]+"${LOAD_CPU[@]}"} wrk -t1 -c"$CONNS" -d"${WARMUP}s" --timeout 5s "$url" >/dev/null 2>&1 &
  WRK_PID=$!; wait "$WRK_PID" || true; WRK_PID=""
  ${LOAD_CPU[@]+"${LOAD_CPU[@]}"} wrk -t1 -c"$CONNS" -d"${DURATION}s" --timeout 5s --latency \
    -s "$ROOT/bench/report.lua" "$url" >"$WORK/wrk.out" 2>&1 &
  WRK_PID=$!; wait "$WRK_PID" || true; WRK_PID=""
  STATS="$(grep '^BENCH ' "$WORK/wrk.out" | cut -d' ' -f2- || true)"
  if [[ -z "$STATS" ]]; then
    log "no result from wrk against $url:"; cat "$WORK/wrk.out" >&2
    STATS="0 0 0 0 0 0"
  fi
}

CONTEXT="$(date -u +%FT%TZ); commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo none); \
upstream $UPSTREAM_KIND; wrk -t1 -c$CONNS -d${DURATION}s after ${WARMUP}s warm-up; \
$([[ ${#PROXY_CPU[@]} -gt 0 ]] && echo "proxies on CPU 0, wrk + upstream on CPU 1" || echo "not pinned"); \
load average $(cut -d' ' -f1-3 /proc/loadavg)"
log "$CONTEXT"
ROWS=()
for body in "100 B:/" "64 KiB:/64k"; do
  label="${body%%:*}" path="${body#*:}"
  for target in "${TARGETS[@]}"; do
    name="${target%%:*}" port="${target#*:}"
    log "$label via $name ..."
    run_wrk "$port" "$path"
    ROWS+=("$label|$name|$STATS")
  done
done

# -- table ------------------------------------------------------------------------
printf '\n%s\n\n| body | path | requests/s | p50 ms | p99 ms | errors | x direct | x nginx |\n' "$CONTEXT"
printf '|---|---|---:|---:|---:|---:|---:|---:|\n'
for row in "${ROWS[@]}"; do
  IFS='|' read -r label name stats <<<"$row"
  read -r rps p50 p99 sockerr badstatus _ <<<"$stats"
  direct="" nginx_rps=""
  for other in "${ROWS[@]}"; do
    IFS='|' read -r l2 n2 s2 <<<"$other"
    [[ "$l2" == "$label" && "$n2" == direct ]] && direct="${s2%% *}"
    [[ "$l2" == "$label" && "$n2" == nginx ]] && nginx_rps="${s2%% *}"
  done
  awk -v label="$label" -v name="$name" -v rps="$rps" -v p50="$p50" -v p99="$p99" \
      -v err=$((sockerr + badstatus)) -v direct="$direct" -v ngx="$nginx_rps" 'BEGIN {
    xd = (direct > 0) ? sprintf("%.3f", rps / direct) : "-"
    xn = (ngx > 0) ? sprintf("%.3f", rps / ngx) : "-"
    printf "| %s | %s | %.0f | %.2f | %.2f | %d | %s | %s |\n", label, name, rps, p50, p99, err, xd, xn
  }'
done
echo
if [[ $GW_FAILED -eq 1 ]]; then
  log "twistgate did not start or answered wrongly; its log is in the output above"
  exit 1
fi
