#!/usr/bin/env bash
# bench/listing.sh: how long a big directory listing takes, and what it costs (issue 18).
#
# What: builds poolserve (release), makes a document root in a temp dir with directories of
# 100,000 and 10,000 entries (10 subdirectories, the rest empty files named f000003.txt,
# f4.txt, F5.txt: real files, one inode each), and lists each directory with poolserve
# --list-dirs (HTML, and JSON with ?format=json), python3 -m http.server (what users
# compare with), nginx with `autoindex on` (HTML and `autoindex_format json`) and lighttpd
# with `dir-listing.activate = "enable"` (bench/nginx-autoindex.conf,
# bench/lighttpd-dirlisting.conf). Every server is pinned to CPU 1 (taskset -c 1), curl to
# CPU 0, on 127.0.0.1; for each directory size the servers start fresh, get WARMUP listings
# each (which fill the kernel's dentry and inode caches, and are checked: status 200, every
# file named on the page), then REPS rounds interleaved A B C ... A B C ... so slow drift
# on a shared machine hits every server alike.
# Reported per server and size: wall time of one listing (curl's time_total, median of
# REPS), time to its first byte (median), server CPU per listing (utime+stime of the
# server's processes from /proc/PID/stat, all threads, around each timed listing; mean over
# REPS: clock ticks are 10 ms), peak RSS (VmHWM of the serving process after start, after its
# first listing and after all of them), page bytes, and ratios of time and CPU to nginx's (same format) and
# lighttpd's.
#
# Usage: bench/listing.sh            (env: REPS=7 WARMUP=1 SIZES="100000 10000" PORT_BASE=18600
#                                     SERVERS="poolserve poolserve-json python nginx nginx-json lighttpd"
#                                     KEEP_TMP=1 keeps the temp dir; TMPDIR picks where it goes)
# Needs 2+ CPUs, cargo, python3, curl, taskset. Installs nginx-light and lighttpd with apt-get
# when missing (and possible); without them their rows are left out. A bench, not a test:
# the house rule is that speed is measured here, never by a timed test.
set -euo pipefail

REPS=${REPS:-7}
WARMUP=${WARMUP:-1}
SIZES=${SIZES:-"100000 10000"}
PORT_BASE=${PORT_BASE:-18600}
SERVERS=${SERVERS:-"poolserve poolserve-json python nginx nginx-json lighttpd"}
SERVER_CPU=1
CLIENT_CPU=0
DIRS=10   # subdirectories in each listed directory

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH")

log() { printf '[listing] %s\n' "$*" >&2; }
die() { printf '[listing] error: %s\n' "$*" >&2; exit 1; }

[[ $REPS =~ ^[1-9][0-9]*$ ]] || die "REPS must be a positive integer, got '$REPS'"
[[ $WARMUP =~ ^[1-9][0-9]*$ ]] || die "WARMUP must be 1 or more (the warm-up listing is checked), got '$WARMUP'"
for n in $SIZES; do
    if ! [[ $n =~ ^[0-9]+$ ]] || ((n <= DIRS)); then
        die "SIZES: '$n' is not a number of entries above $DIRS"
    fi
done
(($(nproc) >= 2)) || die "needs at least 2 CPUs (server on CPU $SERVER_CPU, curl on CPU $CLIENT_CPU)"

# ---- tools -------------------------------------------------------------------------------
find_bin() {  # /usr/sbin is not on every user's PATH
    command -v "$1" 2>/dev/null || { [[ -x /usr/sbin/$1 ]] && echo "/usr/sbin/$1"; } || true
}
for tool in cargo python3 curl taskset; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
missing=()
[[ $SERVERS == *nginx* && -z $(find_bin nginx) ]] && missing+=(nginx-light)
[[ $SERVERS == *lighttpd* && -z $(find_bin lighttpd) ]] && missing+=(lighttpd)
if ((${#missing[@]})); then
    sudo=(); ((EUID == 0)) || sudo=(sudo)
    log "installing ${missing[*]} with apt-get"
    if ! { "${sudo[@]}" apt-get update -q >&2 \
        && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2; }; then
        log "could not install ${missing[*]}: their rows are left out"
    fi
fi
NGINX=$(find_bin nginx); LIGHTTPD=$(find_bin lighttpd)
wanted=()
for s in $SERVERS; do
    case $s in
        poolserve | poolserve-json | python) wanted+=("$s") ;;
        nginx | nginx-json) if [[ -n $NGINX ]]; then wanted+=("$s"); else log "no nginx: $s left out"; fi ;;
        lighttpd) if [[ -n $LIGHTTPD ]]; then wanted+=("$s"); else log "no lighttpd: $s left out"; fi ;;
        *) die "SERVERS: unknown server '$s'" ;;
    esac
done
((${#wanted[@]})) || die "no server to run"

log "building poolserve (cargo build --release)"
(cd "$REPO" && cargo build --release --quiet) || die "cargo build --release failed"
POOLSERVE=$(cd "$REPO" && realpath "${CARGO_TARGET_DIR:-target}")/release/poolserve
[[ -x $POOLSERVE ]] || die "no binary at $POOLSERVE"
CLK_TCK=$(getconf CLK_TCK)

# ---- temp dir, cleanup --------------------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/poolserve-listing.XXXXXX")
ROOT=$TMP/root
declare -A PID=()     # server name -> pid we started (nginx: the master)
declare -A SERVE=()   # server name -> the process that serves (nginx: its worker), for VmHWM
declare -A PORT=()
RUNNING=()

# shellcheck source=bench/lib.sh disable=SC1091
source "$BENCH/lib.sh"

# ---- the directories ----------------------------------------------------------------------
mkdir -p "$ROOT"
for n in $SIZES; do
    log "making $ROOT/n$n/ ($n entries)"
    start=$(date +%s.%N)
    python3 - "$ROOT/n$n" "$n" "$DIRS" <<'EOF'
import os, sys
path, n, dirs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.mkdir(path)
for i in range(1, dirs + 1):
    os.mkdir(f"{path}/d{i}")
for i in range(n - dirs):
    name = (f"f{i:06}.txt", f"f{i}.txt", f"F{i}.txt")[i % 3]
    os.close(os.open(f"{path}/{name}", os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644))
EOF
    log "  made in $(python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')") s"
done

# ---- servers ------------------------------------------------------------------------------
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

render() {  # render TEMPLATE DEST DIR PORT FORMAT: fill the @...@ placeholders of a committed config
    sed -e "s|@ROOT@|$ROOT|g" -e "s|@DIR@|$3|g" -e "s|@PORT@|$4|g" -e "s|@USER@|$(id -un)|g" \
        -e "s|@FORMAT@|$5|g" "$1" >"$2"
}

start_server() {  # start_server NAME PORT
    local name=$1 port=$2 dir=$TMP/$1 pid i
    rm -rf "$dir"; mkdir -p "$dir"
    port_open "$port" && die "port $port is already in use (set PORT_BASE to a free range)"
    case $name in
        poolserve | poolserve-json)
            RUST_LOG=warn taskset -c "$SERVER_CPU" "$POOLSERVE" --root "$ROOT" --list-dirs \
                --access-log off --addr "127.0.0.1:$port" >"$dir/stdout.log" 2>"$dir/stderr.log" &
            ;;
        python)
            taskset -c "$SERVER_CPU" python3 -m http.server --bind 127.0.0.1 --directory "$ROOT" \
                "$port" >"$dir/stdout.log" 2>"$dir/stderr.log" &
            ;;
        nginx | nginx-json)
            local format=html; [[ $name == nginx-json ]] && format=json
            render "$BENCH/nginx-autoindex.conf" "$dir/nginx.conf" "$dir" "$port" "$format"
            taskset -c "$SERVER_CPU" "$NGINX" -p "$dir/" -c "$dir/nginx.conf" \
                -e "$dir/nginx.error.log" >"$dir/stdout.log" 2>"$dir/stderr.log" &
            ;;
        lighttpd)
            render "$BENCH/lighttpd-dirlisting.conf" "$dir/lighttpd.conf" "$dir" "$port" html
            taskset -c "$SERVER_CPU" "$LIGHTTPD" -D -f "$dir/lighttpd.conf" \
                >"$dir/stdout.log" 2>"$dir/stderr.log" &
            ;;
    esac
    pid=$!
    PID[$name]=$pid; SERVE[$name]=$pid; PORT[$name]=$port; RUNNING+=("$name")
    for ((i = 0; i < 100; i++)); do  # up to 10 s for the port to accept
        kill -0 "$pid" 2>/dev/null || { tail -n 20 "$dir"/*.log >&2 || true; die "$name exited during start-up"; }
        port_open "$port" && break
        sleep 0.1
    done
    port_open "$port" || die "$name did not accept on 127.0.0.1:$port within 10 s"
    if [[ $name == nginx* ]]; then  # the one worker process is the master's only child
        for ((i = 0; i < 50; i++)); do
            SERVE[$name]=$(pgrep -P "$pid" | head -n 1 || true)
            [[ -n ${SERVE[$name]} ]] && break
            sleep 0.1
        done
        [[ -n ${SERVE[$name]} ]] || die "$name: no worker process under master $pid"
    fi
}

cpu_ticks() {  # utime+stime of a server's processes (nginx: master and its worker)
    local pid=${PID[$1]} total=0 p f
    for p in "$pid" $(pgrep -P "$pid" || true); do
        [[ -r /proc/$p/stat ]] || continue
        read -r -a f < <(sed 's/^.*) //' "/proc/$p/stat")  # fields from 3 on: state is f[0]
        total=$((total + f[11] + f[12]))                  # utime (14) and stime (15)
    done
    echo "$total"
}
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/${SERVE[$1]}/status"; }

url() {  # url NAME SIZE
    local query=""; [[ $1 == poolserve-json ]] && query="?format=json"
    echo "http://127.0.0.1:${PORT[$1]}/n$2/$query"
}

# ---- runs ---------------------------------------------------------------------------------
RESULTS=$TMP/results.tsv   # size server metric value
: >"$RESULTS"
for size in $SIZES; do
    log "n=$size: starting ${wanted[*]}"
    i=0
    for name in "${wanted[@]}"; do start_server "$name" $((PORT_BASE + i)); i=$((i + 1)); done
    for name in "${wanted[@]}"; do printf '%s\t%s\thwm_before\t%s\n' "$size" "$name" "$(hwm_kib "$name")" >>"$RESULTS"; done
    for name in "${wanted[@]}"; do
        for ((w = 0; w < WARMUP; w++)); do
            code=$(taskset -c "$CLIENT_CPU" curl -s -o "$TMP/page" -w '%{http_code}' "$(url "$name" "$size")")
            [[ $code == 200 ]] || die "$name: listing of n$size answered $code"
            ((w > 0)) || printf '%s\t%s\thwm_first\t%s\n' "$size" "$name" "$(hwm_kib "$name")" >>"$RESULTS"
        done
        # Every file named on the page (each name is plain ASCII, so it shows as it is).
        files=$(python3 -c 'import re, sys; print(len(set(re.findall(rb"[fF]\d+\.txt", open(sys.argv[1], "rb").read()))))' "$TMP/page")
        printf '%s\t%s\tfiles\t%s\n' "$size" "$name" "$files" >>"$RESULTS"
        ((files == size - DIRS)) || log "warning: $name named $files files of $((size - DIRS))"
    done
    log "n=$size: $REPS rounds"
    for ((r = 0; r < REPS; r++)); do
        for name in "${wanted[@]}"; do
            before=$(cpu_ticks "$name")
            out=$(taskset -c "$CLIENT_CPU" curl -s -o /dev/null \
                -w '%{http_code} %{time_total} %{time_starttransfer} %{size_download}' "$(url "$name" "$size")")
            after=$(cpu_ticks "$name")
            read -r code total ttfb bytes <<<"$out"
            [[ $code == 200 ]] || die "$name: listing of n$size answered $code"
            {
                printf '%s\t%s\tms\t%s\n' "$size" "$name" "$(python3 -c "print($total * 1000)")"
                printf '%s\t%s\tttfb_ms\t%s\n' "$size" "$name" "$(python3 -c "print($ttfb * 1000)")"
                printf '%s\t%s\tcpu_ms\t%s\n' "$size" "$name" "$(((after - before) * 1000 / CLK_TCK))"
                printf '%s\t%s\tbytes\t%s\n' "$size" "$name" "$bytes"
            } >>"$RESULTS"
        done
    done
    for name in "${wanted[@]}"; do printf '%s\t%s\thwm_after\t%s\n' "$size" "$name" "$(hwm_kib "$name")" >>"$RESULTS"; done
    stop_all
done

# ---- report -------------------------------------------------------------------------------
rev=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
versions="poolserve $rev; $(python3 --version 2>&1)"
[[ -n $NGINX ]] && versions+="; $("$NGINX" -v 2>&1 | sed 's/.*version: //')"
[[ -n $LIGHTTPD ]] && versions+="; $("$LIGHTTPD" -v 2>&1 | sed 's/ .*//')"
echo
echo "Command: \`REPS=$REPS WARMUP=$WARMUP SIZES=\"$SIZES\" bench/listing.sh\` ($versions; $(nproc) CPUs, $(uname -sr))"
echo "Server on CPU $SERVER_CPU, curl on CPU $CLIENT_CPU. ms and first byte: medians of $REPS; CPU: mean of $REPS"
echo "(clock ticks of $((1000 / CLK_TCK)) ms); peak RSS: VmHWM of the serving process after start, after its first"
echo "listing, and after all $((WARMUP + REPS)) listings."
echo
python3 - "$RESULTS" <<'EOF'
import collections, statistics, sys
data = collections.defaultdict(list)
order = []
for line in open(sys.argv[1]):
    size, name, metric, value = line.rstrip("\n").split("\t")
    if (int(size), name) not in order:
        order.append((int(size), name))
    data[(int(size), name, metric)].append(float(value))
def med(size, name, metric):
    v = data.get((size, name, metric))
    return statistics.median(v) if v else None
def mean(size, name, metric):
    v = data.get((size, name, metric))
    return statistics.mean(v) if v else None
def ratio(a, b):
    return f"{a / b:.2f}" if a is not None and b else "-"
print("| entries | server | ms/listing | first byte ms | CPU ms/listing | peak RSS MiB: start / 1st / all | page bytes | files named "
      "| ms vs nginx | ms vs lighttpd | CPU vs nginx | CPU vs lighttpd |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for size, name in order:
    ms, ttfb, cpu = med(size, name, "ms"), med(size, name, "ttfb_ms"), mean(size, name, "cpu_ms")
    nginx = "nginx-json" if name.endswith("json") else "nginx"
    n_ms, n_cpu = med(size, nginx, "ms"), mean(size, nginx, "cpu_ms")
    l_ms, l_cpu = med(size, "lighttpd", "ms"), mean(size, "lighttpd", "cpu_ms")
    before = data[(size, name, "hwm_before")][0] / 1024
    first = data[(size, name, "hwm_first")][0] / 1024
    after = data[(size, name, "hwm_after")][0] / 1024
    page = int(med(size, name, "bytes"))
    files = int(data[(size, name, "files")][0])
    print(f"| {size:,} | {name} | {ms:.0f} | {ttfb:.0f} | {cpu:.0f} | {before:.1f} / {first:.1f} / {after:.1f} "
          f"| {page:,} | {files:,} | {ratio(ms, n_ms)} | {ratio(ms, l_ms)} | {ratio(cpu, n_cpu)} "
          f"| {ratio(cpu, l_cpu)} |")
EOF
echo
echo "poolserve-json and nginx-json list the same directories as JSON (?format=json, autoindex_format"
echo "json); their 'vs nginx' ratios are to nginx-json. python3 -m http.server shows names only (no"
echo "sizes or times). Order: poolserve natural, ignoring case; python lower-cased names; nginx and"
echo "lighttpd bytes. All put directories first but python."
