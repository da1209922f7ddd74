#!/usr/bin/env bash
# stress.sh: K concurrent curl loops for T seconds against a server on this machine, then a
# summary: total requests, requests per second, and how many of each HTTP status and curl error.
#
# Every request is a separate curl process and so a separate connection: the point is
# connect/close churn, not throughput. Only loopback URLs are accepted. Each loop writes one
# line per request ("<http_code> <curl_exit>") to its own file in a temporary directory.
set -euo pipefail

readonly MAX_CONCURRENCY=256   # hard cap on loops: each one is a curl process at a time
readonly MAX_DURATION=3600     # hard cap on seconds
readonly MAX_TIME=10           # curl --max-time: no request outlives this
readonly CONNECT_TIMEOUT=5     # curl --connect-timeout
readonly DEFAULT_URL=http://127.0.0.1:8000/

prog=${0##*/}

usage() {
    cat <<EOF
Usage: $prog [-c K] [-d SECONDS] [-p PATH] [URL]

Run K concurrent curl loops for SECONDS against URL (a server on this machine), one new
connection per request, then print the request count, the rate and a histogram of HTTP
status codes and curl errors.

  -c K        concurrent loops, 1..$MAX_CONCURRENCY [default: \$CONCURRENCY or 8]
  -d SECONDS  how long to run, 1..$MAX_DURATION [default: \$DURATION or 10]
  -p PATH     request PATH on URL's host instead of URL's own path (e.g. /docs/)
  -h          print this help and exit
  URL         http:// URL on 127.0.0.0/8, localhost or [::1] [default: $DEFAULT_URL]

Each request: curl --max-time $MAX_TIME --connect-timeout $CONNECT_TIMEOUT, no proxy.
Exit status: 0 after a run (whatever the statuses), 2 on bad usage, 130/143 if interrupted.
EOF
}

die_usage() {
    echo "$prog: $*" >&2
    exit 2
}

# A whole number in 1..max, without arithmetic on over-long input.
check_count() {
    local name=$1 value=$2 max=$3
    if [[ ! $value =~ ^[1-9][0-9]{0,5}$ ]] || ((value > max)); then
        die_usage "$name must be a whole number from 1 to $max, got '$value'"
    fi
}

# 127.a.b.c in plain decimal, localhost, or [::1]. Strict on purpose: curl would read
# "0177.0.0.1" as octal and "127.1" as shorthand; neither is accepted here.
is_loopback_host() {
    local host=$1 octet='(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])'
    [[ $host == "[::1]" ]] && return 0
    [[ $host =~ ^[Ll][Oo][Cc][Aa][Ll][Hh][Oo][Ss][Tt]$ ]] && return 0
    [[ $host =~ ^127\.$octet\.$octet\.$octet$ ]]
}

concurrency=${CONCURRENCY:-8}
duration=${DURATION:-10}
path=
while getopts ':c:d:p:h' opt; do
    case $opt in
        c) concurrency=$OPTARG ;;
        d) duration=$OPTARG ;;
        p) path=$OPTARG ;;
        h) usage; exit 0 ;;
        :) die_usage "-$OPTARG needs a value (see -h)" ;;
        *) die_usage "unknown option -$OPTARG (see -h)" ;;
    esac
done
shift $((OPTIND - 1))
(($# <= 1)) || die_usage "expected at most one URL, got $# arguments (see -h)"
url=${1:-$DEFAULT_URL}

check_count "-c (CONCURRENCY)" "$concurrency" "$MAX_CONCURRENCY"
check_count "-d (DURATION)" "$duration" "$MAX_DURATION"

# Split the URL: scheme, host (no user info), optional port, optional path/query.
url_re='^[hH][tT][tT][pP]://(\[[^]/]*\]|[^]/?#@:[]*)(:[0-9]{1,5})?([/?#].*)?$'
[[ $url =~ $url_re ]] ||
    die_usage "refusing '$url': only http://HOST[:PORT]/... URLs on this machine (127.0.0.0/8, localhost, [::1])"
host=${BASH_REMATCH[1]}
port=${BASH_REMATCH[2]}
rest=${BASH_REMATCH[3]}
is_loopback_host "$host" ||
    die_usage "refusing '$url': host '$host' is not loopback (127.0.0.0/8, localhost, [::1])"
if [[ -n $path ]]; then
    [[ $path == /* ]] || path=/$path
    [[ $path != *[[:space:]]* ]] || die_usage "-p PATH must not contain spaces"
    rest=$path
fi
url="http://$host$port${rest:-/}"

command -v curl >/dev/null 2>&1 || { echo "$prog: curl is not installed" >&2; exit 1; }

workdir=$(mktemp -d "${TMPDIR:-/tmp}/stress.XXXXXX")
stopfile=$workdir/stop
pids=()
interrupted=0

# shellcheck disable=SC2317  # reached through a trap
stop_loops() {
    : >"$stopfile"
    local pid
    for pid in ${pids[@]+"${pids[@]}"}; do
        kill -TERM "$pid" 2>/dev/null || true
    done
}

# shellcheck disable=SC2317  # reached through a trap
on_signal() {
    interrupted=$1
    stop_loops
}

# shellcheck disable=SC2317  # reached through a trap
cleanup() {
    stop_loops
    rm -rf -- "$workdir"
}
trap cleanup EXIT
trap 'on_signal 130' INT
trap 'on_signal 143' TERM

# Microseconds since the epoch (bash 5's EPOCHREALTIME; whole seconds from date otherwise).
now_us() {
    if [[ -n ${EPOCHREALTIME:-} ]]; then
        echo "${EPOCHREALTIME//[!0-9]/}"
    else
        echo "$(($(date +%s) * 1000000))"
    fi
}

# One loop: a fresh curl per request until the stop file appears (or the work directory is
# gone, or its own clock runs out: so a loop ends even if the parent was SIGKILLed). curl runs
# in the background and is waited for, so that a TERM from the parent interrupts the wait and
# kills it at once. INT is left to the parent (a terminal's Ctrl-C reaches the whole process
# group), which then TERMs the loops.
run_loop() {
    local cpid='' rc
    trap '' INT
    trap '[[ -z $cpid ]] || { kill -TERM "$cpid" 2>/dev/null; wait "$cpid" 2>/dev/null; }; exit 0' TERM
    SECONDS=0
    while [[ -d $workdir && ! -e $stopfile ]] && ((SECONDS <= duration)); do
        curl -q -s -g -o /dev/null -w '%{http_code}' --noproxy '*' \
            --max-time "$MAX_TIME" --connect-timeout "$CONNECT_TIMEOUT" "$url" 2>/dev/null &
        cpid=$!
        rc=0
        wait "$cpid" || rc=$?
        cpid=''
        printf ' %d\n' "$rc"
    done
}

echo "stress: $concurrency loops x $duration s against $url"
start=$(now_us)
for ((i = 0; i < concurrency; i++)); do
    run_loop >"$workdir/loop.$i" &
    pids+=("$!")
done

sleep "$duration" &
sleeper=$!
wait "$sleeper" 2>/dev/null || kill "$sleeper" 2>/dev/null || true
: >"$stopfile"
# A loop finishes its request in flight (at most --max-time) and then sees the stop file.
for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
done
# A signal may have cut a wait short: wait once more for whatever was TERMed.
wait 2>/dev/null || true
end=$(now_us)

# Lines are "<http_code> <curl_exit>"; a loop killed mid-request may leave a partial line,
# which the pattern skips. Exit 0 counts under its status; any curl error counts under the
# error, with the status curl saw (if any), so that the rows add up to the total.
cat "$workdir"/loop.* | awk -v elapsed_us="$((end - start))" -v interrupted="$interrupted" '
    function curl_error(rc) {
        if (rc == 6)  return "couldn'\''t resolve host"
        if (rc == 7)  return "couldn'\''t connect"
        if (rc == 18) return "partial file"
        if (rc == 28) return "timeout"
        if (rc == 52) return "empty reply"
        if (rc == 55) return "send failure"
        if (rc == 56) return "recv failure"
        return ""
    }
    /^[0-9][0-9][0-9] [0-9]+$/ {
        total++
        if ($2 == 0) {
            key = $1
        } else {
            name = curl_error($2)
            key = "curl " $2 (name != "" ? " (" name ")" : "") ($1 != "000" ? ", got " $1 : "")
        }
        if (!(key in count)) {
            order[++n] = key
            # Statuses first in numeric order, then curl errors by exit code.
            rank[key] = ($2 == 0) ? sprintf("0 %s", $1) : sprintf("1 %03d %s", $2, $1)
        }
        count[key]++
    }
    END {
        secs = elapsed_us / 1e6
        if (secs <= 0) secs = 1e-6
        printf "requests: %d in %.1f s  (%.1f req/s)%s\n", total, secs, total / secs,
            (interrupted ? "  [interrupted]" : "")
        for (i = 2; i <= n; i++) {
            for (j = i; j > 1 && rank[order[j]] < rank[order[j - 1]]; j--) {
                t = order[j]; order[j] = order[j - 1]; order[j - 1] = t
            }
        }
        width = 3
        for (i = 1; i <= n; i++) if (length(order[i]) > width) width = length(order[i])
        for (i = 1; i <= n; i++) printf "  %-" width "s  %8d\n", order[i], count[order[i]]
        if (n == 0) print "  (no requests completed)"
    }
'

if ((interrupted)); then
    exit "$interrupted"
fi
exit 0
