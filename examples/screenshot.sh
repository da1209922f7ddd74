#!/usr/bin/env bash
# Regenerates examples/listing.png, the --list-dirs page as a browser shows it: builds
# poolserve (release), lays out a demo "shared folder" in a temp dir, serves it with
# --list-dirs on a free loopback port, and has headless Chromium (Debian's `chromium`)
# screenshot the listing, then stops the server.
#
#   examples/screenshot.sh [OUT.png] [WIDTH,HEIGHT] [extra chromium flags...]
#
# Defaults: examples/listing.png at 900,560. A phone or dark-mode look, not committed:
#   examples/screenshot.sh /tmp/phone.png 390,844
#   examples/screenshot.sh /tmp/dark.png 900,560 --blink-settings=preferredColorScheme=0
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-examples/listing.png}
size=${2:-900,560}
shift $(($# < 2 ? $# : 2))
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac

browser=$(command -v chromium || true)
[ -n "$browser" ] || { echo "screenshot: chromium not installed (apt-get install chromium)" >&2; exit 1; }

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --quiet
bin=$CARGO_TARGET_DIR/release/poolserve

tmp=$(mktemp -d)
pid=""
cleanup() {
    [ -z "$pid" ] || kill -TERM "$pid" 2>/dev/null || true
    [ -z "$pid" ] || wait "$pid" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

# The demo folder: what a shared folder on a home server might hold. Sizes are real
# (sparse files, so they cost no disk), times spread over a few months (in UTC, as the
# page shows them).
export TZ=UTC
root=$tmp/shared
mkdir -p "$root"/{photos,docs,"old projects"}
stamp() { touch -d "$2" "$root/$1"; }
mkfile() { truncate -s "$2" "$root/$1"; stamp "$1" "$3"; }
mkfile report-2026.pdf 2457600 "2026-03-14 09:12"
printf 'Call the plumber on Monday.\nBring the spare keys.\n' >"$root/notes.txt"
stamp notes.txt "2026-04-01 08:05"
mkfile track01.mp3 7340032 "2025-12-20 21:33"
mkfile track02.mp3 6920601 "2025-12-20 21:35"
mkfile track10.mp3 8126464 "2025-12-20 21:58"
mkfile "Holiday video.mp4" 734003200 "2025-08-19 19:02"
mkfile debian-12.9.0-amd64-netinst.iso 661651456 "2025-11-02 10:15"
stamp photos "2025-08-19 19:10"
stamp docs "2026-03-14 09:12"
stamp "old projects" "2024-06-30 16:45"

# The server prints its bound address as the first line on stdout; no access log, so
# nothing else is written to the pipe nobody reads after that line.
exec 3< <(exec "$bin" --list-dirs --access-log off --port 0 --root "$root" 2>"$tmp/server.log")
pid=$!
read -r -t 30 line <&3 || { echo "screenshot: server did not start" >&2; cat "$tmp/server.log" >&2; exit 1; }
url=$(grep -o 'http://[^ ]*' <<<"$line")

timeout 60 "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$tmp/profile" --hide-scrollbars --window-size="$size" "$@" \
    --screenshot="$out" "$url" 2>/dev/null
echo "screenshot: $out ($(stat -c %s "$out") bytes) of $url"
