#!/usr/bin/env bash
# CI smoke run of examples/stress.sh against the real binary (debug build from `cargo test`):
# start poolserve on an ephemeral loopback port, run 4 curl loops for 2 s, require 200s and no
# 5xx, then Ctrl-C it and require exit status 0. Skips (exit 0) when curl is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v curl >/dev/null 2>&1; then
    echo "ci-smoke: curl not installed, skipping"
    exit 0
fi
bin=target/debug/poolserve
[ -x "$bin" ] || cargo build --quiet
out=$(mktemp)
log=$(mktemp)
trap 'kill "$pid" 2>/dev/null || true; rm -f "$out" "$log"' EXIT
RUST_LOG=warn "$bin" --root html --port 0 >"$out" 2>"$log" &
pid=$!
for _ in $(seq 100); do
    grep -q 'http://' "$out" && break
    sleep 0.05
done
url=$(grep -o 'http://[^ ]*' "$out" | head -n1)
[ -n "$url" ] || { echo "ci-smoke: server did not start"; cat "$log"; exit 1; }
report=$(bash examples/stress.sh -c 4 -d 2 "$url")
echo "$report"
echo "$report" | grep -Eq '^ *200 +[1-9]' || { echo "ci-smoke: no 200 responses"; exit 1; }
if echo "$report" | grep -Eq '^ *5[0-9][0-9] +[1-9]'; then echo "ci-smoke: 5xx responses"; exit 1; fi
kill -INT "$pid"
status=0
wait "$pid" || status=$?
[ "$status" -eq 0 ] || { echo "ci-smoke: exit status $status after SIGINT"; cat "$log"; exit 1; }
echo "ci-smoke: ok (clean exit after SIGINT)"
