#!/usr/bin/env bash
# deploy/rolling-restart.sh: three poolserve replicas behind HAProxy on loopback; concurrent
# curl loops run the whole time while each replica in turn gets SIGTERM and is started again.
# Reports requests sent, failed (non-200 or curl error) and truncated (short body); exits 1
# unless both are zero. Everything listens on 127.0.0.1; the run is bounded in time.
#
# Why it works: on SIGTERM poolserve keeps serving for --drain-delay with /health at 503;
# HAProxy's health check (every 100 ms, one failure marks it down) stops sending it new
# requests well inside that delay; then poolserve drains what it has and exits 0. A request
# racing the close is retried by HAProxy on another replica (retry-on conn-failure,
# empty-response), which is safe for GET.
#
# Usage: deploy/rolling-restart.sh   (env: POOLSERVE_BIN=path, LOOPS=8, SETTLE=1.5 seconds
#        between steps, PORTS="front r0 r1 r2", default "18700 18701 18702 18703").
#        Needs haproxy and curl.
set -euo pipefail

LOOPS=${LOOPS:-8}
SETTLE=${SETTLE:-1.5}
read -r front port0 port1 port2 <<<"${PORTS:-18700 18701 18702 18703}"
ports=("$port0" "$port1" "$port2")
DEADLINE_SECS=${DEADLINE_SECS:-120}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
bin=${POOLSERVE_BIN:-$repo/target/release/poolserve}

die() { echo "rolling-restart: $*" >&2; exit 2; }
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || die "haproxy not installed"
haproxy_bin=$(command -v haproxy || echo /usr/sbin/haproxy)
command -v curl >/dev/null 2>&1 || die "curl not installed"
if [ ! -x "$bin" ]; then
    (cd "$repo" && cargo build --release --quiet) || die "cannot build poolserve"
fi

work=$(mktemp -d /tmp/poolserve-rolling.XXXXXX)
declare -a pids=()
hapid=""
cleanup() {
    touch "$work/stop" 2>/dev/null || true
    for p in "${pids[@]}" $hapid; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

# One document root, as replicas would share an image: a 64 KiB file big enough that a cut
# connection shows up as a short body.
mkdir -p "$work/root"
head -c 65536 /dev/urandom >"$work/root/blob.bin"
size=65536

start_replica() { # index
    local i=$1 port=${ports[$1]}
    "$bin" --root "$work/root" --addr "127.0.0.1:$port" --drain-delay 1 \
        --shutdown-timeout 5 --access-log off >"$work/replica$i.out" 2>"$work/replica$i.err" &
    pids[i]=$!
    for _ in $(seq 200); do
        curl -fs -o /dev/null "http://127.0.0.1:$port/health" && return 0
        kill -0 "${pids[i]}" 2>/dev/null || break
        sleep 0.05
    done
    cat "$work/replica$i.err" >&2
    die "replica $i did not come up on port $port"
}

cat >"$work/haproxy.cfg" <<CFG
global
    maxconn 1024
defaults
    mode http
    timeout connect 1s
    timeout client 10s
    timeout server 10s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response response-timeout
    option http-server-close
frontend web
    bind 127.0.0.1:$front
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /health
    default-server inter 100ms fall 1 rise 2
    server r0 127.0.0.1:$port0 check
    server r1 127.0.0.1:$port1 check
    server r2 127.0.0.1:$port2 check
CFG
"$haproxy_bin" -c -q -f "$work/haproxy.cfg" || die "bad haproxy config"

for i in 0 1 2; do start_replica "$i"; done
"$haproxy_bin" -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
hapid=$!
for _ in $(seq 200); do
    curl -fs -o /dev/null "http://127.0.0.1:$front/blob.bin" && break
    sleep 0.05
done
sleep 0.5 # let every replica pass its "rise 2" health checks

# The client loops: one result line per request, "code bytes".
loop() {
    local n=$1
    while [ ! -e "$work/stop" ]; do
        curl -s -o /dev/null --max-time 10 -w '%{http_code} %{size_download}\n' \
            "http://127.0.0.1:$front/blob.bin" >>"$work/loop$n.log" || echo "curl-error 0" >>"$work/loop$n.log"
    done
}
declare -a loops=()
for n in $(seq "$LOOPS"); do loop "$n" & loops+=($!); done

started=$SECONDS
sleep "$SETTLE"
for i in 0 1 2; do
    echo "rolling-restart: SIGTERM to replica $i (pid ${pids[i]})"
    kill -TERM "${pids[i]}"
    status=0
    wait "${pids[i]}" || status=$?
    [ "$status" -eq 0 ] || { cat "$work/replica$i.err" >&2; die "replica $i exited with $status after SIGTERM"; }
    start_replica "$i"
    sleep "$SETTLE"
    (( SECONDS - started < DEADLINE_SECS )) || die "took longer than ${DEADLINE_SECS}s"
done
touch "$work/stop"
wait "${loops[@]}" 2>/dev/null || true

cat "$work"/loop*.log >"$work/all.log"
sent=$(wc -l <"$work/all.log")
failed=$(awk '$1 != "200"' "$work/all.log" | wc -l)
truncated=$(awk -v size="$size" '$1 == "200" && $2 != size' "$work/all.log" | wc -l)
echo "rolling-restart: sent=$sent failed=$failed truncated=$truncated (3 replicas restarted, $LOOPS curl loops)"
if [ "$failed" -gt 0 ] || [ "$truncated" -gt 0 ]; then
    awk '$1 != "200" || $2 != '"$size"'' "$work/all.log" | sort | uniq -c | head >&2
    exit 1
fi
[ "$sent" -gt 0 ] || die "no requests were sent"
