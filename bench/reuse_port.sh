#!/usr/bin/env bash
# Stopping one of two poolserve processes that share a port with --reuse-port, under a
# connection-per-request load: how many requests fail, with net.ipv4.tcp_migrate_req at 0
# (the kernel's default: connections queued on the closing listener are reset) and at 1
# (Linux 5.14+: they move to the other listener). Needs root to set the sysctl; puts it
# back as it found it. Loopback only.
#
#   bench/reuse_port.sh            (env: CLIENTS=8 SECONDS_RUN=4 STOP_AT=1.5 ROUNDS=3)
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${CLIENTS:-8}
SECONDS_RUN=${SECONDS_RUN:-4}
STOP_AT=${STOP_AT:-1.5}
ROUNDS=${ROUNDS:-3}
SYSCTL=/proc/sys/net/ipv4/tcp_migrate_req

cargo build --release --quiet
bin=target/release/poolserve
tmp=$(mktemp -d)
before=$(cat "$SYSCTL")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    echo "$before" > "$SYSCTL" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
head -c 100000 /dev/urandom > "$tmp/f.bin"

one_round() {
    local migrate=$1 out=$tmp/out.$1
    echo "$migrate" > "$SYSCTL"
    : > "$out"
    "$bin" "$tmp" -p 0 --reuse-port --access-log off > "$tmp/a.out" 2>/dev/null &
    local a=$!
    pids+=("$a")
    local port=""
    for _ in $(seq 200); do
        port=$(sed -n 's|.*http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$tmp/a.out")
        [ -n "$port" ] && break
        sleep 0.01
    done
    "$bin" "$tmp" -p "$port" --reuse-port --access-log off > /dev/null 2>&1 &
    local b=$!
    pids+=("$b")
    sleep 0.2
    local end=$((SECONDS + SECONDS_RUN))
    for _ in $(seq "$CLIENTS"); do
        (while [ $SECONDS -lt $end ]; do
            curl -s -o /dev/null -w '%{http_code} %{size_download}\n' --max-time 5 \
                "http://127.0.0.1:$port/f.bin" >> "$out" 2>/dev/null || echo "000 fail" >> "$out"
        done) &
    done
    sleep "$STOP_AT"
    kill -TERM "$a"
    wait "$a" || true
    wait $(jobs -p | grep -v "^$b$") 2>/dev/null || true
    kill -TERM "$b"
    wait "$b" || true
    local total ok
    total=$(wc -l < "$out")
    ok=$(grep -c '^200 100000$' "$out" || true)
    echo "tcp_migrate_req=$migrate: $total requests, $((total - ok)) failed"
}

echo "CLIENTS=$CLIENTS SECONDS_RUN=$SECONDS_RUN STOP_AT=$STOP_AT, poolserve $(git rev-parse --short HEAD)"
for round in $(seq "$ROUNDS"); do
    one_round 0
    one_round 1
done
