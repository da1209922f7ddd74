#!/usr/bin/env bash
# bench/run.sh: poolserve vs nginx vs nginx+open_file_cache vs lighttpd, side by side (issue 7).
#
# What: builds poolserve (release), generates one document root (2 KiB and 1 MiB files of random
# bytes) in a temp dir, starts every server on its own 127.0.0.1 port pinned to CPU 1
# (taskset -c 1) and drives it with `wrk -t1 --latency` pinned to CPU 0, in rounds interleaved
# A B C D A B C D so slow drift on a shared machine hits every server alike. Per scenario it
# reports the median req/s with its min-max spread, the ratio to lighttpd, p50/p99, the
# server's CPU microseconds per request, wrk's own CPU %, the server's peak RSS and errors.
# Why: one core for the server and one for the client is the "per core" comparison of issue 7;
# nginx and lighttpd get the same settings (bench/nginx.conf, bench/nginx-cache.conf,
# bench/lighttpd.conf: one worker, no access log, sendfile, 100000 keep-alive requests).
#
# Usage: bench/run.sh                 (env: DURATION=10 ROUNDS=3 WARMUP=1 OUT=/tmp/bench-results.md
#                                      SCENARIOS="S1 S2 S3 S4 S5 S6" PORT_BASE=18400 BASELINE_BIN=)
#        BASELINE_BIN=/path/to/poolserve bench/run.sh
#                                     also runs that binary as "poolserve-base" (same flags as
#                                     poolserve) in S1-S5, side by side with this checkout's build,
#                                     e.g. a release build of the previous commit, to spot regressions
# Needs 2+ CPUs, cargo, python3; installs nginx-light, lighttpd, wrk, time with apt-get when missing.
# Measuring notes:
# - Each scenario starts its servers fresh and stops them after its last round, so peak RSS
#   (VmHWM, read after the last round) belongs to that scenario. For nginx it is the worker's
#   (the process that serves; the master only waits); CPU sums master and worker.
# - CPU per request = utime+stime delta of the server's processes (/proc/PID/stat, all threads)
#   over the wrk run, divided by the requests wrk counted. Clock ticks are 10 ms, so short
#   DURATIONs give coarse numbers. Client CPU % = wrk's (user+sys)/wall from /usr/bin/time.
# - poolserve runs with --max-requests 100000 to match the others' keep-alive request limit.
set -euo pipefail

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-1}
OUT=${OUT:-/tmp/bench-results.md}
SCENARIOS=${SCENARIOS:-"S1 S2 S3 S4 S5 S6"}
PORT_BASE=${PORT_BASE:-18400}
BASELINE_BIN=${BASELINE_BIN:-}
SERVER_CPU=1
CLIENT_CPU=0

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH")
COMMAND="DURATION=$DURATION ROUNDS=$ROUNDS WARMUP=$WARMUP SCENARIOS=\"$SCENARIOS\" bench/run.sh"
[[ -n $BASELINE_BIN ]] && COMMAND="BASELINE_BIN=$BASELINE_BIN $COMMAND"

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

[[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "DURATION must be whole seconds, got '$DURATION'"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, got '$ROUNDS'"
[[ $WARMUP =~ ^[0-9]+$ ]] || die "WARMUP must be whole seconds (0 = none), got '$WARMUP'"
(( ROUNDS >= 3 )) || log "warning: ROUNDS=$ROUNDS; the issue asks for at least 3 for a report"
if [[ -n $BASELINE_BIN ]]; then
    [[ -x $BASELINE_BIN && -f $BASELINE_BIN ]] || die "BASELINE_BIN=$BASELINE_BIN is not an executable file"
    BASELINE_BIN=$(realpath "$BASELINE_BIN")
fi
(( $(nproc) >= 2 )) || die "needs at least 2 CPUs (server on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU)"

# ---- tools -------------------------------------------------------------------------------
find_bin() {  # /usr/sbin is not on every user's PATH
    command -v "$1" 2>/dev/null || { [[ -x /usr/sbin/$1 ]] && echo "/usr/sbin/$1"; } || true
}
command -v cargo >/dev/null || die "cargo not found (install the Rust toolchain)"
command -v python3 >/dev/null || die "python3 not found"
missing=()
[[ -n $(find_bin nginx) ]] || missing+=(nginx-light)
[[ -n $(find_bin lighttpd) ]] || missing+=(lighttpd)
[[ -n $(find_bin wrk) ]] || missing+=(wrk)
[[ -n $(find_bin taskset) ]] || missing+=(util-linux)
[[ -x /usr/bin/time ]] || missing+=(time)
if (( ${#missing[@]} )); then
    sudo=(); (( EUID == 0 )) || sudo=(sudo)
    log "installing ${missing[*]} with apt-get"
    "${sudo[@]}" apt-get update -q >&2 || die "apt-get update failed"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2 \
        || die "apt-get install ${missing[*]} failed"
fi
NGINX=$(find_bin nginx); LIGHTTPD=$(find_bin lighttpd); WRK=$(find_bin wrk)
[[ -n $NGINX && -n $LIGHTTPD && -n $WRK ]] || die "nginx, lighttpd or wrk still missing"

log "building poolserve (cargo build --release)"
(cd "$REPO" && cargo build --release --quiet) || die "cargo build --release failed"
POOLSERVE=$(cd "$REPO" && realpath "${CARGO_TARGET_DIR:-target}")/release/poolserve
[[ -x $POOLSERVE ]] || die "no binary at $POOLSERVE"

# ---- temp dir, doc root, cleanup ----------------------------------------------------------
TMP=$(mktemp -d /tmp/poolserve-bench.XXXXXX)
ROOT=$TMP/root
mkdir -p "$ROOT" "$TMP/wrk"
head -c 2048 /dev/urandom >"$ROOT/2k.bin"
head -c 1048576 /dev/urandom >"$ROOT/1m.bin"
: >"$TMP/runs.tsv"; : >"$TMP/rss.tsv"

declare -A PID=()      # server name -> pid we started (nginx: the master)
declare -A WORKER=()   # server name -> pid that serves (for VmHWM)
declare -A PORT=()     # server name -> port
RUNNING=()             # names of the servers up right now
POOLSERVE_INFO=""      # "N workers, queue M" as the default-config poolserve reported it

stop_server() {
    local name=$1 pid=${PID[$1]:-} i
    [[ -n $pid ]] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset 'PID[$name]'
}
stop_all() {
    local name
    for name in "${RUNNING[@]}"; do stop_server "$name"; done
    RUNNING=()
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_all
    if [[ -n ${KEEP_TMP:-} ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- servers ------------------------------------------------------------------------------
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

render() {  # render TEMPLATE DEST DIR PORT: fill the @...@ placeholders of a committed config
    sed -e "s|@ROOT@|$ROOT|g" -e "s|@DIR@|$3|g" -e "s|@PORT@|$4|g" -e "s|@USER@|$(id -un)|g" \
        "$1" >"$2"
}

# start_server NAME PORT: NAME is poolserve, poolserve-wN, poolserve-base (BASELINE_BIN), nginx,
# nginx-cache or lighttpd
start_server() {
    local name=$1 port=$2 dir=$TMP/$1 pid i errlog
    mkdir -p "$dir"
    port_open "$port" && die "port $port is already in use (set PORT_BASE to a free range)"
    case $name in
        poolserve | poolserve-w* | poolserve-base)
            local workers=() bin=$POOLSERVE
            [[ $name == poolserve-w* ]] && workers=(--workers "${name#poolserve-w}")
            [[ $name == poolserve-base ]] && bin=$BASELINE_BIN
            errlog=$dir/stderr.log
            RUST_LOG=warn taskset -c "$SERVER_CPU" "$bin" --root "$ROOT" --access-log off \
                --addr "127.0.0.1:$port" --max-requests 100000 "${workers[@]}" \
                >"$dir/stdout.log" 2>"$errlog" &
            ;;
        nginx | nginx-cache)
            render "$BENCH/$name.conf" "$dir/nginx.conf" "$dir" "$port"
            errlog=$dir/nginx.error.log
            taskset -c "$SERVER_CPU" "$NGINX" -p "$dir/" -c "$dir/nginx.conf" -e "$errlog" \
                >"$dir/stdout.log" 2>&1 &
            ;;
        lighttpd)
            render "$BENCH/lighttpd.conf" "$dir/lighttpd.conf" "$dir" "$port"
            errlog=$dir/lighttpd.error.log
            taskset -c "$SERVER_CPU" "$LIGHTTPD" -D -f "$dir/lighttpd.conf" >"$dir/stdout.log" 2>&1 &
            ;;
        *) die "unknown server $name" ;;
    esac
    pid=$!
    PID[$name]=$pid; PORT[$name]=$port; RUNNING+=("$name")
    for ((i = 0; i < 100; i++)); do  # up to 10 s for the port to accept
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$errlog" "$dir/stdout.log" >&2 2>/dev/null || true
            die "$name exited during start-up (log tails above; KEEP_TMP=1 keeps $dir)"
        fi
        port_open "$port" && break
        sleep 0.1
    done
    if ! port_open "$port"; then
        tail -n 20 "$errlog" "$dir/stdout.log" >&2 2>/dev/null || true
        die "$name did not accept on 127.0.0.1:$port within 10 s (KEEP_TMP=1 keeps $dir)"
    fi
    WORKER[$name]=$pid
    if [[ $name == poolserve && -z $POOLSERVE_INFO ]]; then  # its start-up line: workers, queue
        POOLSERVE_INFO=$(grep -o '[0-9]* workers, queue [0-9]*' "$dir/stdout.log" || true)
    fi
    if [[ $name == nginx* ]]; then  # the one worker process is the master's only child
        for ((i = 0; i < 50; i++)); do
            WORKER[$name]=$(pgrep -P "$pid" | head -n 1 || true)
            [[ -n ${WORKER[$name]} ]] && break
            sleep 0.1
        done
        [[ -n ${WORKER[$name]} ]] || die "$name: no worker process under master $pid"
    fi
    python3 "$BENCH/report.py" check "http://127.0.0.1:$port/2k.bin" 200 2048 \
        || die "$name does not serve /2k.bin correctly"
    python3 "$BENCH/report.py" check "http://127.0.0.1:$port/missing.bin" 404 \
        || die "$name does not answer 404 for a missing path"
}

cpu_ticks() {  # utime+stime (clock ticks) of the server's processes, all threads included
    local name=$1 total=0 p line f
    local pids=("${PID[$name]}")
    [[ ${WORKER[$name]} != "${PID[$name]}" ]] && pids+=("${WORKER[$name]}")
    for p in "${pids[@]}"; do
        read -r line <"/proc/$p/stat" || die "$name (pid $p) is gone"
        read -r -a f <<<"${line##*) }"  # fields from 3 (state) on; comm may hold spaces
        total=$((total + f[11] + f[12]))   # fields 14 utime, 15 stime
    done
    echo "$total"
}

vmhwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

# ---- scenarios ----------------------------------------------------------------------------
# run_wrk NAME PATH CONNS SECONDS OUTFILE TIMEFILE [wrk header args...]
run_wrk() {
    local name=$1 path=$2 conns=$3 secs=$4 out=$5 timef=$6
    shift 6
    taskset -c "$CLIENT_CPU" /usr/bin/time -f '%U %S %e' -o "$timef" \
        "$WRK" -t1 -c "$conns" -d "${secs}s" --latency "$@" \
        "http://127.0.0.1:${PORT[$name]}$path" >"$out" 2>&1 \
        || { cat "$out" >&2; die "wrk failed against $name"; }
}

CLK_TCK=$(getconf CLK_TCK)

# scenario ID PATH CONNS "SERVERS" [wrk header args...]
scenario() {
    local id=$1 path=$2 conns=$3 servers=() name round i=0 before after out
    read -r -a servers <<<"$4"
    shift 4
    log "$id: $path, $conns connections${*:+, $*}; servers: ${servers[*]}"
    for name in "${servers[@]}"; do
        start_server "$name" $((PORT_BASE + i))
        i=$((i + 1))
    done
    if (( WARMUP > 0 )); then
        for name in "${servers[@]}"; do
            run_wrk "$name" "$path" "$conns" "$WARMUP" "$TMP/wrk/warmup.txt" "$TMP/wrk/warmup.time" "$@"
        done
    fi
    for ((round = 1; round <= ROUNDS; round++)); do
        for name in "${servers[@]}"; do
            out=$TMP/wrk/$id.$name.$round
            before=$(cpu_ticks "$name")
            run_wrk "$name" "$path" "$conns" "$DURATION" "$out.txt" "$out.time" "$@"
            after=$(cpu_ticks "$name")
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$id" "$name" "$round" "$out.txt" "$out.time" \
                $((after - before)) "$CLK_TCK" >>"$TMP/runs.tsv"
            log "  $id round $round $name: $(awk '/^Requests\/sec/ { print $2 }' "$out.txt") req/s"
        done
    done
    for name in "${servers[@]}"; do
        printf '%s\t%s\t%s\n' "$id" "$name" "$(vmhwm_kib "${WORKER[$name]}")" >>"$TMP/rss.tsv"
    done
    stop_all
}

MAIN="poolserve nginx nginx-cache lighttpd"
[[ -n $BASELINE_BIN ]] && MAIN="poolserve poolserve-base nginx nginx-cache lighttpd"
for id in $SCENARIOS; do
    case $id in
        S1) scenario S1 /2k.bin 64 "$MAIN" ;;
        S2) scenario S2 /2k.bin 32 "$MAIN" -H "Connection: close" ;;
        S3) scenario S3 /1m.bin 8 "$MAIN" ;;
        S4) scenario S4 /2k.bin 512 "$MAIN" ;;
        S5) scenario S5 /missing.bin 64 "$MAIN" ;;
        S6) scenario S6 /2k.bin 64 "poolserve-w1 poolserve-w2 lighttpd" ;;
        *) die "unknown scenario $id (known: S1 S2 S3 S4 S5 S6)" ;;
    esac
done

# ---- report -------------------------------------------------------------------------------
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
rev=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
{
    echo "## poolserve benchmark ($(date -u '+%Y-%m-%d %H:%M UTC'))"
    echo
    echo "Machine: $(nproc) CPUs, ${cpu_model:-unknown CPU}, Linux $(uname -r)." \
        "Server on CPU $SERVER_CPU, wrk -t1 on CPU $CLIENT_CPU."
    echo "Command: \`$COMMAND\` (poolserve $rev; $("$NGINX" -v 2>&1 | sed 's/.*version: //');" \
        "$("$LIGHTTPD" -v 2>&1 | awk '{ print $1; exit }'); $("$WRK" -v 2>&1 | awk '{ print "wrk " $2; exit }'))."
    echo "Medians over $ROUNDS interleaved rounds of ${DURATION}s each, after a ${WARMUP}s warm-up;" \
        "peak RSS is VmHWM of the serving process (nginx: its one worker; CPU counts master + worker)."
    echo "poolserve: default options (${POOLSERVE_INFO:-see --help}) plus --max-requests 100000," \
        "the keep-alive request limit nginx and lighttpd get; S6 sets --workers 1 and 2."
    if [[ -n $BASELINE_BIN ]]; then
        base_rev=$(git -C "$(dirname "$BASELINE_BIN")" rev-parse --short HEAD 2>/dev/null || echo unknown)
        echo "poolserve-base: $BASELINE_BIN (checkout at $base_rev), same options as poolserve (S1-S5)."
    fi
    echo
    python3 "$BENCH/report.py" table "$TMP/runs.tsv" "$TMP/rss.tsv"
} >"$OUT.tmp" || die "report failed"
mv "$OUT.tmp" "$OUT"
cat "$OUT"
log "written to $OUT"
