#!/usr/bin/env bash
# bench/workers.sh - worker processes on this host (not a test, not in CI).
#
#   bench/workers.sh [--duration S] [--connections N] [--base-port P] [--keep]
#
# Against nginx as the upstream (bench/upstream.py without nginx), with wrk:
#   1. requests/s with workers: 1 and workers: 2 (GET / through a catch-all route),
#      and through a route whose memory rate limit is decided by the supervisor;
#      the supervisor's CPU per limited request; the RSS of every process;
#   2. workers: 2, five POST /admin/reload during a run: failed requests (want 0);
#   3. workers: 2, one worker SIGKILLed mid-run: failed requests, and that
#      worker's requests in flight and open connections just before.
# Nothing is pinned: the gateway's workers, wrk and the upstream share the
# machine's cores (see docs/benchmarks.md).  127.0.0.1 only, ports base+1..9
# (base 27600).  Every process started here is stopped on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DURATION=10 CONNS=50 BASE=27600 KEEP=0
TWISTD="${TWISTD:-$ROOT/.venv/bin/twistd}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --duration) DURATION="$2"; shift 2 ;;
    --connections) CONNS="$2"; shift 2 ;;
    --base-port) BASE="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "workers.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
for tool in wrk curl; do command -v "$tool" >/dev/null || { echo "workers.sh: $tool not found" >&2; exit 2; }; done
UP=$((BASE + 1)) GW=$((BASE + 2)) ADMIN=$((BASE + 9))
WORK="$(mktemp -d /tmp/twistgate-workers-bench.XXXXXX)"; chmod 755 "$WORK"
PIDS=()
cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  for pid in ${PIDS[@]+"${PIDS[@]}"}; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in ${PIDS[@]+"${PIDS[@]}"}; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  [[ $KEEP -eq 1 ]] && echo "workers.sh: logs kept in $WORK" >&2 || rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
log() { echo "[bench] $*" >&2; }

if command -v nginx >/dev/null; then
  SMALL_BODY="hello from the bench upstream $(printf '%.0s.' $(seq 69))"
  cat > "$WORK/up.conf" <<NGINX
worker_processes 1; daemon off; pid $WORK/up.pid; error_log $WORK/up.err;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 100000000; keepalive_timeout 300s;
  client_body_temp_path $WORK; proxy_temp_path $WORK; fastcgi_temp_path $WORK; uwsgi_temp_path $WORK; scgi_temp_path $WORK;
  server { listen 127.0.0.1:$UP backlog=4096; location / { default_type text/plain; return 200 "$SMALL_BODY\n"; } } }
NGINX
  nginx -c "$WORK/up.conf" -e "$WORK/up.err" >"$WORK/up.log" 2>&1 & PIDS+=($!)
else
  "$PYTHON" "$ROOT/bench/upstream.py" "$UP" >"$WORK/up.log" 2>&1 & PIDS+=($!)
fi
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$UP/" && break; sleep 0.1; done

GW_PID=""
start_gateway() {  # $1 = workers
  BENCH_WORKERS="$1" BENCH_PORT="$GW" BENCH_ADMIN_PORT="$ADMIN" BENCH_UPSTREAM_PORT="$UP" \
    "$TWISTD" -n --pidfile= --logfile="$WORK/gw-$1.log" twistgate --config "$ROOT/bench/gw-workers.yaml" & GW_PID=$!
  PIDS+=("$GW_PID")
  for _ in $(seq 300); do
    [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN/readyz" || true)" == 200 ]] && return 0
    sleep 0.1
  done
  log "the gateway did not become ready"; tail -20 "$WORK/gw-$1.log" >&2; exit 1
}
stop_gateway() { kill -TERM "$GW_PID"; wait "$GW_PID" 2>/dev/null || true; }
health() { curl -s -H "Authorization: Bearer bench" "http://127.0.0.1:$ADMIN/admin/health"; }
worker_pids() {  # the workers' pids, or the single process's
  health | "$PYTHON" -c 'import json,sys; b=json.load(sys.stdin); print(" ".join(str(w["pid"]) for w in b.get("workers", [])))'
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_mib() { awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
run_wrk() {  # $1 = path, $2 = seconds -> "BENCH rps p50 p99 errors non2xx requests"
  wrk -t1 -c"$CONNS" -d"$2"s --latency -s "$ROOT/bench/report.lua" "http://127.0.0.1:$GW$1" | grep '^BENCH'
}

echo "# bench/workers.sh $(date -u +%FT%TZ) commit $(git -C "$ROOT" rev-parse --short HEAD) cpus $(nproc) load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# wrk -t1 -c$CONNS -d${DURATION}s; nothing pinned; upstream: $(command -v nginx >/dev/null && echo nginx || echo bench/upstream.py)"
echo
echo "| workers | route | requests/s | p50 ms | p99 ms | errors | supervisor CPU µs/request | RSS MiB (supervisor; workers) | connections per worker (mid-run) |"
echo "|---|---|---|---|---|---|---|---|---|"
for workers in 1 2; do
  start_gateway "$workers"
  run_wrk / 2 >/dev/null  # warm-up
  ( sleep "$(awk "BEGIN {print $DURATION / 2}")"; health | "$PYTHON" -c '
import json, sys
body = json.load(sys.stdin)
print(" / ".join(str(w["open_connections"]) for w in body.get("workers", [])) or "-")' > "$WORK/spread" ) & SAMPLER=$!
  read -r _ rps p50 p99 errs non2xx _ <<<"$(run_wrk / "$DURATION")"
  wait "$SAMPLER"
  pids="$(worker_pids)"
  rss="$(rss_mib "$GW_PID"); $(for p in $pids; do printf '%s ' "$(rss_mib "$p")"; done)"
  echo "| $workers | catch-all | $rps | $p50 | $p99 | $((errs + non2xx)) | - | $rss | $(cat "$WORK/spread") |"
  before="$(cpu_ticks "$GW_PID")"
  read -r _ rps p50 p99 errs non2xx requests <<<"$(run_wrk /limited "$DURATION")"
  after="$(cpu_ticks "$GW_PID")"
  hz="$(getconf CLK_TCK)"
  if [[ "$workers" -gt 1 ]]; then per="$(( (after - before) * 1000000 / hz / requests ))"; else per="- (in process)"; fi
  echo "| $workers | memory rate limit | $rps | $p50 | $p99 | $((errs + non2xx)) | $per | | |"
  stop_gateway
done

echo
start_gateway 2
run_wrk / 2 >/dev/null
( sleep 1; for i in 1 2 3 4 5; do
    curl -s -o /dev/null -w '%{http_code}\n' -X POST -H "Authorization: Bearer bench" "http://127.0.0.1:$ADMIN/admin/reload" >> "$WORK/reloads"
    sleep "$(awk "BEGIN {print ($DURATION - 2) / 5}")"
  done ) & RELOADER=$!
read -r _ rps _ _ errs non2xx requests <<<"$(run_wrk / "$DURATION")"
wait "$RELOADER"
echo "Reload under load (workers: 2, 5 reloads, answers: $(sort "$WORK/reloads" | uniq -c | tr -s ' \n' ' ')): $requests requests, $((errs + non2xx)) failed, $rps requests/s"

( sleep "$(awk "BEGIN {print $DURATION / 2}")"
  health > "$WORK/before-kill.json"
  victim="$("$PYTHON" -c 'import json,sys; w=json.load(open(sys.argv[1]))["workers"][0]; print(w["pid"], w["in_flight"], w["open_connections"])' "$WORK/before-kill.json")"
  kill -KILL "${victim%% *}"
  echo "$victim" > "$WORK/victim" ) & KILLER=$!
read -r _ rps _ _ errs non2xx requests <<<"$(run_wrk / "$DURATION")"
wait "$KILLER"
read -r vpid vinflight vconns < "$WORK/victim"
echo "Worker killed under load (workers: 2, pid $vpid SIGKILLed mid-run with $vinflight requests in flight on $vconns open connections): $requests requests, $((errs + non2xx)) failed"
sleep 1
echo "After: $(health | "$PYTHON" -c '
import json, sys
body = json.load(sys.stdin)
print(", ".join("worker %(index)s: pid %(pid)s ready %(ready)s restarts %(restarts)s" % w for w in body["workers"]))')"
stop_gateway
