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
#                                      SCENARIOS="S1 S2 S3 S4 S5 S6" PORT_BASE=18400 BASELINE_BIN=
#                                      SYSCALLS=1 SYSCALL_DURATION=3 SYSCALL_TOOL=auto
#                                      SYSCALL_NAMES="futex accept4 ..." (perf: counted by name))
#        BASELINE_BIN=/path/to/poolserve bench/run.sh
#                                     also runs that binary as "poolserve-base" (same flags as
#                                     poolserve) in S1-S5, side by side with this checkout's build,
#                                     e.g. a release build of the previous commit, to spot regressions
#        SYSCALLS=0 bench/run.sh      skips the separate system-call runs (see below)
#        RULES=1 bench/run.sh         also runs "poolserve-rules" in S1 and S5: the same binary and
#                                     files under a root that also holds a _redirects of 2000 static
#                                     and 100 dynamic rules and a _headers of 100 blocks (issue 17;
#                                     the bar is CPU per request within 1.05 x poolserve's)
#        SYSCALL_TOOL=strace bench/run.sh
#                                     counts system calls with strace even where perf works
# Needs 2+ CPUs, cargo, python3; installs nginx-light, lighttpd, wrk, time with apt-get when missing
# (and strace when the system-call runs need it because perf's syscall tracepoints are unusable).
# S2 also runs "nginx-deferred" (bench/nginx-deferred.conf: `listen ... deferred`) and
# "lighttpd-deferred" (bench/lighttpd-deferred.conf: server.defer-accept = 1), the fairness rows
# of issue 16: poolserve defers accept by default (--defer-accept 1, left at its default here).
# Measuring notes:
# - Each scenario starts its servers fresh and stops them after its last round, so peak RSS
#   (VmHWM, read after the last round) belongs to that scenario. For nginx it is the worker's
#   (the process that serves; the master only waits); CPU sums master and worker.
# - CPU per request = utime+stime delta of the server's processes (/proc/PID/stat, all threads)
#   over the wrk run, divided by the requests wrk counted. Clock ticks are 10 ms, so short
#   DURATIONs give coarse numbers. Client CPU % = wrk's (user+sys)/wall from /usr/bin/time.
# - poolserve runs with --max-requests 100000 to match the others' keep-alive request limit.
# - System calls per request (issue 16): after a scenario's timed rounds (and its peak RSS
#   reading), each server gets one more, separate wrk run of SYSCALL_DURATION seconds with the
#   same path, connections and headers, counted by
#   `perf stat -e raw_syscalls:sys_enter,syscalls:sys_enter_<name>,... -p <server pids> -- wrk ...`
#   (every call, plus the usual names one by one; SYSCALL_TOOL=perf), or when perf's syscall
#   tracepoints are unusable by `strace -c -f -p <server pids>` around the wrk run
#   (SYSCALL_TOOL=strace; it slows the server down a lot, so the counts stay but the rate drops).
#   Counts are divided by the requests wrk counted in that run; in S2 that is also per connection.
#   The timed rounds never run under perf or strace. SYSCALLS=0 skips these runs.
# - poolserve's CPU share by thread kind (issue 16): around each timed round of a poolserve
#   server, every thread's CPU time is read from /proc/PID/task/TID/schedstat (first field, ns on
#   CPU; /proc/PID/task/TID/stat utime+stime ticks if schedstat is missing). Threads are grouped
#   by name (worker-N -> workers; the main thread, which runs the accept loop in the poolserve
#   binary, counts as the acceptor unless a thread named acceptor exists) and summed over rounds.
set -euo pipefail

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-1}
OUT=${OUT:-/tmp/bench-results.md}
SCENARIOS=${SCENARIOS:-"S1 S2 S3 S4 S5 S6"}
PORT_BASE=${PORT_BASE:-18400}
BASELINE_BIN=${BASELINE_BIN:-}
RULES=${RULES:-0}
SYSCALLS=${SYSCALLS:-1}
SYSCALL_DURATION=${SYSCALL_DURATION:-3}
SYSCALL_TOOL=${SYSCALL_TOOL:-auto}
SERVER_CPU=1
CLIENT_CPU=0

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH")
COMMAND="DURATION=$DURATION ROUNDS=$ROUNDS WARMUP=$WARMUP SCENARIOS=\"$SCENARIOS\""
COMMAND+=" SYSCALLS=$SYSCALLS SYSCALL_DURATION=$SYSCALL_DURATION"
[[ $SYSCALL_TOOL != auto ]] && COMMAND+=" SYSCALL_TOOL=$SYSCALL_TOOL"
[[ -n ${SYSCALL_NAMES:-} ]] && COMMAND+=" SYSCALL_NAMES=\"$SYSCALL_NAMES\""
COMMAND+=" bench/run.sh"
[[ -n $BASELINE_BIN ]] && COMMAND="BASELINE_BIN=$BASELINE_BIN $COMMAND"
[[ $RULES == 1 ]] && COMMAND="RULES=1 $COMMAND"

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

[[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "DURATION must be whole seconds, got '$DURATION'"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, got '$ROUNDS'"
[[ $WARMUP =~ ^[0-9]+$ ]] || die "WARMUP must be whole seconds (0 = none), got '$WARMUP'"
[[ $RULES =~ ^[01]$ ]] || die "RULES must be 1 (add poolserve-rules) or 0, got '$RULES'"
[[ $SYSCALLS =~ ^[01]$ ]] || die "SYSCALLS must be 1 (count system calls) or 0 (skip), got '$SYSCALLS'"
[[ $SYSCALL_DURATION =~ ^[1-9][0-9]*$ ]] \
    || die "SYSCALL_DURATION must be whole seconds, got '$SYSCALL_DURATION'"
[[ $SYSCALL_TOOL =~ ^(auto|perf|strace)$ ]] \
    || die "SYSCALL_TOOL must be auto, perf or strace, got '$SYSCALL_TOOL'"
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

# System-call counting (issue 16): perf's syscall tracepoints when they work here (root, or
# kernel.perf_event_paranoid <= -1; tracefs mounted), else strace, which slows the server a lot.
# raw_syscalls:sys_enter counts every call; each name in SYSCALL_NAMES is counted on its own
# (names this kernel lacks are dropped); the report shows the rest as "other". The list is short
# on purpose: perf switches every per-thread event in and out with its thread, so each extra
# name costs a thread-switching server like poolserve CPU (measured in S2: about +4 µs/request
# with 10 names, +10 with 22, +20 with 55, on 23 µs untraced) and perturbs its futex counts.
# The default named all but at most 0.11% of each server's calls in every scenario of a full run.
SYSCALL_NAMES_DEFAULT="futex accept4 recvfrom read pread64 writev sendto sendfile64 epoll_wait"
SYSCALL_NAMES_DEFAULT+=" epoll_ctl close shutdown setsockopt ioctl openat newfstatat statx readlink"
SYSCALL_NAMES_DEFAULT+=" sched_yield"
read -r -a SYSCALL_NAMES <<<"${SYSCALL_NAMES:-$SYSCALL_NAMES_DEFAULT}"
for n in "${SYSCALL_NAMES[@]}"; do
    [[ $n =~ ^[a-z0-9_]+$ ]] || die "SYSCALL_NAMES: '$n' is not a system call name"
done
PERF=$(find_bin perf)
PERF_EVENTS=""   # perf stat -e list: raw_syscalls:sys_enter, then syscalls:sys_enter_<name>...
PERF_NAMES=""    # the names in it, for the report
perf_syscalls_usable() {
    [[ -n $PERF ]] || return 1
    "$PERF" stat -x, -o /dev/null -e raw_syscalls:sys_enter,syscalls:sys_enter_futex -- true \
        >/dev/null 2>&1 || return 1
    local have n
    have=$("$PERF" list 'syscalls:sys_enter_*' 2>/dev/null | grep -o 'syscalls:sys_enter_[a-z0-9_]*' || true)
    PERF_EVENTS=raw_syscalls:sys_enter
    for n in "${SYSCALL_NAMES[@]}"; do
        if grep -qx "syscalls:sys_enter_$n" <<<"$have"; then
            PERF_EVENTS+=",syscalls:sys_enter_$n"; PERF_NAMES+="${PERF_NAMES:+, }$n"
        fi
    done
}
if (( SYSCALLS )); then
    if [[ $SYSCALL_TOOL != strace ]] && perf_syscalls_usable; then
        SYSCALL_TOOL=perf
    elif [[ $SYSCALL_TOOL == perf ]]; then
        die "SYSCALL_TOOL=perf, but \`perf stat -e raw_syscalls:sys_enter,syscalls:sys_enter_futex\` fails here"
    else
        [[ $SYSCALL_TOOL == auto ]] \
            && log "perf's syscall tracepoints are unusable here: counting system calls with strace"
        SYSCALL_TOOL=strace
        [[ -n $(find_bin strace) ]] || missing+=(strace)
    fi
fi
if (( ${#missing[@]} )); then
    sudo=(); (( EUID == 0 )) || sudo=(sudo)
    log "installing ${missing[*]} with apt-get"
    "${sudo[@]}" apt-get update -q >&2 || die "apt-get update failed"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2 \
        || die "apt-get install ${missing[*]} failed"
fi
NGINX=$(find_bin nginx); LIGHTTPD=$(find_bin lighttpd); WRK=$(find_bin wrk)
[[ -n $NGINX && -n $LIGHTTPD && -n $WRK ]] || die "nginx, lighttpd or wrk still missing"
STRACE=$(find_bin strace)
[[ $SYSCALL_TOOL != strace || -n $STRACE ]] || die "strace still missing"

log "building poolserve (cargo build --release)"
(cd "$REPO" && cargo build --release --quiet) || die "cargo build --release failed"
POOLSERVE=$(cd "$REPO" && realpath "${CARGO_TARGET_DIR:-target}")/release/poolserve
[[ -x $POOLSERVE ]] || die "no binary at $POOLSERVE"

# ---- temp dir, doc root, cleanup ----------------------------------------------------------
TMP=$(mktemp -d /tmp/poolserve-bench.XXXXXX)
ROOT=$TMP/root
mkdir -p "$ROOT" "$TMP/wrk" "$TMP/sys"
head -c 2048 /dev/urandom >"$ROOT/2k.bin"
head -c 1048576 /dev/urandom >"$ROOT/1m.bin"
# The site-rules root (RULES=1): the same files, plus rule files sized at Cloudflare's limits.
# Header blocks: one for every path, 49 by first segment, 49 static pages and one by suffix
# (/*.bin), so a request for /2k.bin meets two blocks. Redirects: 2000 static, 90 dynamic
# rules indexed by their first segment and 10 that are tried on every miss (/*.phpN).
if [[ $RULES == 1 ]]; then
    RULES_ROOT=$TMP/rules-root
    mkdir -p "$RULES_ROOT"
    ln "$ROOT/2k.bin" "$ROOT/1m.bin" "$RULES_ROOT/"
    {
        printf '/*\n  X-Frame-Options: DENY\n  Referrer-Policy: no-referrer\n'
        for ((i = 1; i < 50; i++)); do printf '/section-%d/*\n  Cache-Control: max-age=%d\n' "$i" "$i"; done
        for ((i = 50; i < 99; i++)); do printf '/page-%d.html\n  X-Page: %d\n' "$i" "$i"; done
        printf '/*.bin\n  Cache-Control: public, max-age=60\n'
    } >"$RULES_ROOT/_headers"
    {
        for ((i = 0; i < 2000; i++)); do printf '/old-%d /new-%d 301\n' "$i" "$i"; done
        for ((i = 0; i < 90; i++)); do printf '/blog-%d/:slug /posts-%d/:slug 301\n' "$i" "$i"; done
        for ((i = 0; i < 10; i++)); do printf '/*.php%d /index.html 301\n' "$i"; done
    } >"$RULES_ROOT/_redirects"
fi
: >"$TMP/runs.tsv"; : >"$TMP/rss.tsv"; : >"$TMP/syscalls.tsv"; : >"$TMP/threads.tsv"

declare -A PID=()      # server name -> pid we started (nginx: the master)
declare -A WORKER=()   # server name -> pid that serves (for VmHWM)
declare -A PORT=()     # server name -> port
RUNNING=()             # names of the servers up right now
POOLSERVE_INFO=""      # "N workers, queue M" as the default-config poolserve reported it

# shellcheck source=bench/lib.sh disable=SC1091
source "$BENCH/lib.sh"

# ---- servers ------------------------------------------------------------------------------
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

render() {  # render TEMPLATE DEST DIR PORT: fill the @...@ placeholders of a committed config
    sed -e "s|@ROOT@|$ROOT|g" -e "s|@DIR@|$3|g" -e "s|@PORT@|$4|g" -e "s|@USER@|$(id -un)|g" \
        "$1" >"$2"
}

# start_server NAME PORT: NAME is poolserve, poolserve-wN, poolserve-base (BASELINE_BIN), nginx,
# nginx-cache, nginx-deferred, lighttpd or lighttpd-deferred (each nginx*/lighttpd* NAME renders
# bench/NAME.conf)
start_server() {
    local name=$1 port=$2 dir=$TMP/$1 pid i errlog
    mkdir -p "$dir"
    port_open "$port" && die "port $port is already in use (set PORT_BASE to a free range)"
    case $name in
        poolserve | poolserve-w* | poolserve-base | poolserve-rules)
            local workers=() bin=$POOLSERVE root=$ROOT
            [[ $name == poolserve-w* ]] && workers=(--workers "${name#poolserve-w}")
            [[ $name == poolserve-base ]] && bin=$BASELINE_BIN
            [[ $name == poolserve-rules ]] && root=$RULES_ROOT
            errlog=$dir/stderr.log
            RUST_LOG=warn taskset -c "$SERVER_CPU" "$bin" --root "$root" --access-log off \
                --addr "127.0.0.1:$port" --max-requests 100000 "${workers[@]}" \
                >"$dir/stdout.log" 2>"$errlog" &
            ;;
        nginx | nginx-cache | nginx-deferred)
            render "$BENCH/$name.conf" "$dir/nginx.conf" "$dir" "$port"
            errlog=$dir/nginx.error.log
            taskset -c "$SERVER_CPU" "$NGINX" -p "$dir/" -c "$dir/nginx.conf" -e "$errlog" \
                >"$dir/stdout.log" 2>&1 &
            ;;
        lighttpd | lighttpd-deferred)
            render "$BENCH/$name.conf" "$dir/lighttpd.conf" "$dir" "$port"
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

if [[ -r /proc/self/schedstat ]]; then THREAD_CPU_SRC=schedstat; else THREAD_CPU_SRC=stat; fi
thread_cpu() {  # thread_cpu PID: one "tid<TAB>name<TAB>ns on CPU" line per thread of PID
    local pid=$1 t comm ns line f
    for t in "/proc/$pid/task/"*; do
        { read -r comm <"$t/comm"; } 2>/dev/null || continue  # the thread may just have exited
        if [[ $THREAD_CPU_SRC == schedstat ]]; then  # field 1: ns on CPU, not rounded to ticks
            { read -r ns _ <"$t/schedstat"; } 2>/dev/null || continue
        else
            { read -r line <"$t/stat"; } 2>/dev/null || continue
            read -r -a f <<<"${line##*) }"
            ns=$(((f[11] + f[12]) * 1000000000 / CLK_TCK))
        fi
        printf '%s\t%s\t%s\n' "${t##*/}" "$comm" "$ns"
    done
}

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

# count_syscalls ID NAME PATH CONNS [wrk header args...]: one extra SYSCALL_DURATION-second wrk
# run against NAME (already up) with the system calls of all its processes and threads counted;
# appends "scenario server tool wrk_output counts_file" to syscalls.tsv, where counts_file holds
# "name<TAB>calls" lines and "TOTAL<TAB>calls". A failure only warns: the timed results stand.
count_syscalls() {
    local id=$1 name=$2 path=$3 conns=$4 pids=() out spid p i attached
    shift 4
    pids=("${PID[$name]}")
    [[ ${WORKER[$name]} != "${PID[$name]}" ]] && pids+=("${WORKER[$name]}")
    out=$TMP/sys/$id.$name
    local wrk_cmd=("$WRK" -t1 -c "$conns" -d "${SYSCALL_DURATION}s" --latency "$@"
        "http://127.0.0.1:${PORT[$name]}$path")
    if [[ $SYSCALL_TOOL == perf ]]; then
        # with -p, perf counts the server's threads only; wrk is just the timer
        echo "taskset -c $CLIENT_CPU $PERF stat -x, -o $out.perf -e $PERF_EVENTS" \
            "-p $(IFS=,; echo "${pids[*]}") -- ${wrk_cmd[*]}" >"$out.cmd"
        if ! taskset -c "$CLIENT_CPU" "$PERF" stat -x, -o "$out.perf" -e "$PERF_EVENTS" \
            -p "$(IFS=,; echo "${pids[*]}")" -- "${wrk_cmd[@]}" >"$out.wrk" 2>&1; then
            log "  warning: $id $name: perf stat or wrk failed, no system-call counts"
            tail -n 5 "$out.wrk" >&2 || true
            return 0
        fi
        # -x, lines: count,unit,event,...; "<not counted>": the threads never ran, so 0 calls
        awk -F, '$3 == "raw_syscalls:sys_enter" { print "TOTAL\t" ($1 ~ /^[0-9]+$/ ? $1 : 0) }
            $3 ~ /^syscalls:sys_enter_/ { n = substr($3, 20); if (n == "sendfile64") n = "sendfile"
                                          print n "\t" ($1 ~ /^[0-9]+$/ ? $1 : 0) }' \
            "$out.perf" >"$out.counts"
    else
        local targs=()
        for p in "${pids[@]}"; do targs+=(-p "$p"); done
        echo "taskset -c $CLIENT_CPU $STRACE -c -f -qq -o $out.strace ${targs[*]} &" \
            "${wrk_cmd[*]}; kill -INT <strace>" >"$out.cmd"
        taskset -c "$CLIENT_CPU" "$STRACE" -c -f -qq -o "$out.strace" "${targs[@]}" 2>"$out.strace.err" &
        spid=$!
        for ((i = 0; i < 100; i++)); do  # up to 10 s until every thread is traced
            attached=1
            for p in "${pids[@]}"; do
                if grep -q '^TracerPid:[[:space:]]*0$' "/proc/$p/task/"*/status 2>/dev/null; then
                    attached=0
                fi
            done
            ((attached)) && break
            kill -0 "$spid" 2>/dev/null || break
            sleep 0.1
        done
        if ! ((attached)) || ! run_wrk_plain "$out.wrk" "${wrk_cmd[@]}"; then
            log "  warning: $id $name: strace did not attach or wrk failed, no system-call counts"
            kill -INT "$spid" 2>/dev/null || true; wait "$spid" 2>/dev/null || true
            return 0
        fi
        kill -INT "$spid" 2>/dev/null || true
        wait "$spid" 2>/dev/null || true
        # strace -c: "% time seconds usecs/call calls [errors] syscall", then a "total" line
        awk '$NF == "total" { print "TOTAL\t" $4; next }
             $1 ~ /^[0-9.]+$/ && $4 ~ /^[0-9]+$/ { print $NF "\t" $4 }' "$out.strace" >"$out.counts"
    fi
    printf '%s\t%s\t%s\t%s\t%s\n' "$id" "$name" "$SYSCALL_TOOL" "$out.wrk" "$out.counts" \
        >>"$TMP/syscalls.tsv"
    log "  $id syscalls $name: $(awk -F'\t' '$1 == "TOTAL" { print $2 }' "$out.counts") calls," \
        "$(awk '/ requests in / { print $1 }' "$out.wrk") requests"
}
run_wrk_plain() {  # run_wrk_plain OUTFILE WRK-COMMAND...: wrk on the client CPU, no timing
    local out=$1
    shift
    taskset -c "$CLIENT_CPU" "$@" >"$out" 2>&1
}

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
            # poolserve: per-thread CPU around the round (issue 16), read outside the wrk run
            [[ $name == poolserve* ]] && thread_cpu "${PID[$name]}" >"$out.threads.before"
            before=$(cpu_ticks "$name")
            run_wrk "$name" "$path" "$conns" "$DURATION" "$out.txt" "$out.time" "$@"
            after=$(cpu_ticks "$name")
            if [[ $name == poolserve* ]]; then
                thread_cpu "${PID[$name]}" >"$out.threads.after"
                printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$id" "$name" "$round" "${PID[$name]}" \
                    "$out.threads.before" "$out.threads.after" >>"$TMP/threads.tsv"
            fi
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$id" "$name" "$round" "$out.txt" "$out.time" \
                $((after - before)) "$CLK_TCK" >>"$TMP/runs.tsv"
            log "  $id round $round $name: $(awk '/^Requests\/sec/ { print $2 }' "$out.txt") req/s"
        done
    done
    for name in "${servers[@]}"; do
        printf '%s\t%s\t%s\n' "$id" "$name" "$(vmhwm_kib "${WORKER[$name]}")" >>"$TMP/rss.tsv"
    done
    if ((SYSCALLS)); then  # after the peak RSS reading, so these runs cannot touch it
        for name in "${servers[@]}"; do
            count_syscalls "$id" "$name" "$path" "$conns" "$@"
        done
    fi
    stop_all
}

MAIN="poolserve nginx nginx-cache lighttpd"
[[ -n $BASELINE_BIN ]] && MAIN="poolserve poolserve-base nginx nginx-cache lighttpd"
# S2 adds the TCP_DEFER_ACCEPT fairness rows, each next to its plain sibling (issue 16)
S2SET=${MAIN/nginx nginx-cache lighttpd/nginx nginx-deferred nginx-cache lighttpd lighttpd-deferred}
# S1 and S5 add the site-rules row next to poolserve (issue 17)
RULESET=$MAIN
[[ $RULES == 1 ]] && RULESET=${MAIN/poolserve /poolserve poolserve-rules }
for id in $SCENARIOS; do
    case $id in
        S1) scenario S1 /2k.bin 64 "$RULESET" ;;
        S2) scenario S2 /2k.bin 32 "$S2SET" -H "Connection: close" ;;
        S3) scenario S3 /1m.bin 8 "$MAIN" ;;
        S4) scenario S4 /2k.bin 512 "$MAIN" ;;
        S5) scenario S5 /missing.bin 64 "$RULESET" ;;
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
    echo "poolserve: default options (${POOLSERVE_INFO:-see --help}; --defer-accept 1, TCP_DEFER_ACCEPT" \
        "as with nginx's \`deferred\`) plus --max-requests 100000, the keep-alive request limit" \
        "nginx and lighttpd get; S6 sets --workers 1 and 2."
    if [[ " $SCENARIOS " == *" S2 "* ]]; then
        echo "S2 fairness rows (issue 16): nginx-deferred is bench/nginx-deferred.conf" \
            "(\`listen ... deferred\`), lighttpd-deferred is bench/lighttpd-deferred.conf" \
            "(\`server.defer-accept = 1\`); otherwise identical to nginx and lighttpd."
    fi
    if [[ -n $BASELINE_BIN ]]; then
        base_rev=$(git -C "$(dirname "$BASELINE_BIN")" rev-parse --short HEAD 2>/dev/null || echo unknown)
        echo "poolserve-base: $BASELINE_BIN (checkout at $base_rev), same options as poolserve (S1-S5)."
    fi
    echo
    echo "### Throughput, latency, server CPU and memory (timed rounds)"
    echo
    python3 "$BENCH/report.py" table "$TMP/runs.tsv" "$TMP/rss.tsv"
    if ((SYSCALLS)); then
        echo
        echo "### System calls per request (a separate ${SYSCALL_DURATION}s run per server and scenario)"
        echo
        echo "Produced by \`$COMMAND\`: after each scenario's timed rounds, one more wrk run per server" \
            "(same path, connections and headers as the timed rounds, ${SYSCALL_DURATION}s, no warm-up)" \
            "with the server's system calls counted; per request = calls / requests wrk counted in" \
            "that run (in S2 every request has its own connection). The timed rounds above ran" \
            "without any tracing."
        if [[ $SYSCALL_TOOL == perf ]]; then
            echo "Tool: perf's syscall tracepoints, \`taskset -c $CLIENT_CPU perf stat -x, -e" \
                "raw_syscalls:sys_enter,syscalls:sys_enter_NAME,... -p SERVER_PIDS -- wrk -t1 -c CONNS" \
                "-d ${SYSCALL_DURATION}s --latency [HEADERS] URL\`; -p names the server's processes" \
                "(nginx: master and worker) and perf counts all their threads, not wrk, which only" \
                "times the count. raw_syscalls:sys_enter gives the total; NAME runs over: $PERF_NAMES" \
                "(sendfile64 shown as sendfile); \"other\" is the total minus those." \
                "perf costs a server CPU at each thread switch (per event counted), so the counted" \
                "run's request rate is below the timed rounds' (most for multi-threaded poolserve);" \
                "wake-up calls such as futex depend on load and vary between runs."
        else
            echo "Tool: strace (perf's syscall tracepoints were not used), \`taskset -c $CLIENT_CPU" \
                "strace -c -f -qq -p SERVER_PID [-p PID...]\` attached to every thread of the server's" \
                "processes (nginx: master and worker) around \`wrk -t1 -c CONNS -d ${SYSCALL_DURATION}s" \
                "--latency [HEADERS] URL\`, stopped with SIGINT after wrk. strace slows the server" \
                "down a lot: the counts per request hold, the request rate under it does not."
        fi
        first=$(awk -F'\t' 'NR == 1 { print $4 }' "$TMP/syscalls.tsv")
        if [[ -n $first && -f ${first%.wrk}.cmd ]]; then
            echo "First run's exact command: \`$(<"${first%.wrk}.cmd")\`"
        fi
        echo
        python3 "$BENCH/report.py" syscalls "$TMP/syscalls.tsv"
    fi
    if [[ -s $TMP/threads.tsv ]]; then
        echo
        echo "### poolserve CPU share by thread kind (timed rounds)"
        echo
        echo "Produced by \`$COMMAND\` during the timed rounds above: before and after each round" \
            "every poolserve thread's CPU time is read from" \
            "$([[ $THREAD_CPU_SRC == schedstat ]] && echo "/proc/PID/task/TID/schedstat (first field, ns on CPU)" \
                || echo "/proc/PID/task/TID/stat (utime+stime, ${CLK_TCK} ticks/s: coarse)")," \
            "the deltas are summed over all rounds per thread name (thread names from" \
            "/proc/PID/task/TID/comm; worker-N grouped as workers). Share = the kind's CPU / the" \
            "process's CPU (all its threads); saturates at = 1 / share, the core count at which" \
            "that one thread would be busy all the time if the load kept its shape."
        echo
        python3 "$BENCH/report.py" threads "$TMP/threads.tsv"
    fi
} >"$OUT.tmp" || die "report failed"
mv "$OUT.tmp" "$OUT"
cat "$OUT"
log "written to $OUT"
