# shellcheck shell=bash
# Shared by the benchmark scripts (sourced): stopping the servers they started and cleaning
# up on every exit. The caller defines the associative array PID (name -> pid), the array
# RUNNING (names up now), TMP (its scratch directory) and log().

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
