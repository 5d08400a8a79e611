# loadtests/lib/common.sh: helpers shared by every scenario of `loadtests/run`.
# shellcheck shell=bash
#
# Sourced (never executed) by loadtests/run. Owns: logging, dependency installation (apt-get),
# the release build, the per-run temp folder and the cleanup of the processes a scenario started,
# free ports, waiting for an HTTP endpoint, and running + parsing wrk.
# Scenarios live in loadtests/scenarios/<name>.sh and only use the functions below.

# ---------------------------------------------------------------- logging

log() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'loadtests: %s\n' "$*" >&2
    exit 1
}

# ---------------------------------------------------------------- dependencies

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

# Path of the nginx binary (Debian installs it in /usr/sbin, often not on a user's PATH).
nginx_bin() {
    command -v nginx 2>/dev/null || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true
}

# ensure_tools TOOL...: installs the Debian packages that provide the missing tools.
# Known tools: nginx, wrk, curl, cc (build-essential).
ensure_tools() {
    local tool packages=()
    for tool in "$@"; do
        case "$tool" in
        nginx) [ -n "$(nginx_bin)" ] || packages+=(nginx) ;;
        cc) command -v cc >/dev/null 2>&1 || packages+=(build-essential) ;;
        *) command -v "$tool" >/dev/null 2>&1 || packages+=("$tool") ;;
        esac
    done
    [ "${#packages[@]}" -eq 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 || die "missing ${packages[*]} and no apt-get to install them"
    log "Installing ${packages[*]} with apt-get"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
    for tool in "$@"; do
        case "$tool" in
        nginx) [ -n "$(nginx_bin)" ] || die "nginx still missing after apt-get install" ;;
        *) command -v "$tool" >/dev/null 2>&1 || die "$tool still missing after apt-get install" ;;
        esac
    done
}

# Cargo is not installed from apt: Debian's rustc is too old for this workspace (edition 2024).
ensure_cargo() {
    if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    command -v cargo >/dev/null 2>&1 ||
        die "cargo not found: install Rust with rustup (https://rustup.rs), Rust >= 1.85"
}

# Builds the gateway and the loadtests helper in release, once per run. SKIP_BUILD=1 reuses the
# binaries already in target/release (for re-runs; the results then say so).
build_release() {
    if [ "${SKIP_BUILD:-0}" = 1 ]; then
        log "SKIP_BUILD=1: using the existing release binaries"
    else
        ensure_cargo
        log "Building osb-gateway and osb-loadtests (release)"
        (cd "$REPO" && cargo build --release --quiet -p osb-gateway -p osb-loadtests) ||
            die "cargo build failed"
    fi
    local target="${CARGO_TARGET_DIR:-$REPO/target}"
    GATEWAY_BIN="$target/release/osb-gateway"
    LOADTESTS_BIN="$target/release/osb-loadtests"
    if ! [ -x "$GATEWAY_BIN" ] || ! [ -x "$LOADTESTS_BIN" ]; then
        die "release binaries missing under $target/release"
    fi
}

# ---------------------------------------------------------------- temp folder, processes, cleanup

RUN_TMP=""
STARTED_PIDS=()

# Creates the run's temp folder ($RUN_TMP) and arms the cleanup.
make_run_tmp() {
    RUN_TMP="$(mktemp -d "${TMPDIR:-/tmp}/osb-loadtests.XXXXXX")"
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# Remembers a pid this run started, so cleanup stops it (and only it).
track_pid() { STARTED_PIDS+=("$1"); }

# stop_pid PID: TERM, wait up to 10 s, then KILL. Only ever called with pids we started.
stop_pid() {
    local pid="$1" _
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        warn "pid $pid did not stop on TERM; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$? pid
    for pid in "${STARTED_PIDS[@]}"; do
        stop_pid "$pid"
    done
    if [ -n "$RUN_TMP" ] && [ -d "$RUN_TMP" ]; then
        if [ "$status" -ne 0 ] || [ "${KEEP_TMP:-0}" = 1 ]; then
            log "Kept $RUN_TMP (logs, configs, raw wrk output)"
        else
            rm -rf "$RUN_TMP"
        fi
    fi
}

# ---------------------------------------------------------------- ports and HTTP

# free_ports N: N distinct free loopback ports (bind to port 0), space-separated.
free_ports() {
    "$LOADTESTS_BIN" free-ports "$1" | tr '\n' ' '
}

# wait_http URL SECONDS PID PATTERN [CURL_ARG...]: waits until URL answers 2xx with a body matching
# PATTERN (a grep pattern), failing early if PID has exited.
wait_http() {
    local url="$1" seconds="$2" pid="$3" pattern="$4" deadline body
    shift 4
    deadline=$(($(date +%s) + seconds))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        kill -0 "$pid" 2>/dev/null || return 1
        if body="$(curl -fsS --max-time 5 "$@" "$url" 2>/dev/null)" && grep -q -- "$pattern" <<<"$body"; then
            return 0
        fi
        sleep 0.2
    done
    return 1
}

# cpu_seconds PID...: user + system CPU seconds used so far by these processes (all their threads).
cpu_seconds() {
    local pid ticks=0 stat rest
    for pid in "$@"; do
        stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || continue
        rest="${stat##*) }" # fields after the command name: state ppid ... utime(12th) stime(13th)
        ticks=$((ticks + $(awk '{ print $12 + $13 }' <<<"$rest")))
    done
    awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }'
}

# children_of PID: the pids whose parent is PID (e.g. nginx workers of their master).
children_of() {
    local stat rest
    for stat in /proc/[0-9]*/stat; do
        rest="$(cat "$stat" 2>/dev/null)" || continue
        rest="${rest##*) }"
        [ "$(awk '{ print $2 }' <<<"$rest")" = "$1" ] && basename "$(dirname "$stat")"
    done
    return 0
}

# rss_mb PID...: resident memory of these processes, MB.
rss_mb() {
    local pid kb=0 v
    for pid in "$@"; do
        v="$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)" || continue
        kb=$((kb + ${v:-0}))
    done
    awk -v k="$kb" 'BEGIN { printf "%.1f", k / 1024 }'
}

# ---------------------------------------------------------------- wrk

# run_wrk NAME URL DURATION [HEADER...]: runs wrk with the run's threads/connections and --latency,
# saves the raw output to $RUN_TMP/wrk-NAME.txt, and prints
# `rps mb_per_s p50_ms p99_ms requests errors seconds wrk_cpu_s host_busy_s`: parse_wrk's fields, then
# the CPU seconds wrk itself used and the CPU seconds the whole host was busy during the run.
run_wrk() {
    local name="$1" url="$2" duration="$3" out args=() header host_before host_after wrk_cpu
    shift 3
    for header in "$@"; do args+=(-H "$header"); done
    out="$RUN_TMP/wrk-$name.txt"
    host_before="$(host_busy_seconds)"
    local TIMEFORMAT='%U %S'
    { time wrk -t"$WRK_THREADS" -c"$WRK_CONNECTIONS" -d"$duration" --timeout "$WRK_TIMEOUT" --latency \
        "${args[@]}" "$url" >"$out" 2>&1; } 2>"$out.cpu" || {
        cat "$out" >&2
        die "wrk $name failed"
    }
    host_after="$(host_busy_seconds)"
    wrk_cpu="$(awk '{ printf "%.2f", $1 + $2 }' "$out.cpu")"
    printf '%s %s %s\n' "$(parse_wrk "$out")" "$wrk_cpu" \
        "$(awk -v a="$host_after" -v b="$host_before" 'BEGIN { printf "%.2f", a - b }')"
}

# host_busy_seconds: CPU seconds all cores have spent busy since boot (/proc/stat: everything but
# idle and iowait).
host_busy_seconds() {
    awk -v hz="$(getconf CLK_TCK)" '/^cpu / { print ($2 + $3 + $4 + $7 + $8 + $9) / hz; exit }' /proc/stat
}

# host_busy_percent SECONDS: how busy the host is (all cores, %) over the next SECONDS.
host_busy_percent() {
    local before after
    before="$(host_busy_seconds)"
    sleep "$1"
    after="$(host_busy_seconds)"
    awk -v a="$after" -v b="$before" -v s="$1" -v c="$(nproc)" 'BEGIN { printf "%.0f", (a - b) * 100 / (s * c) }'
}

# parse_wrk FILE: one line `rps mb_per_s p50_ms p99_ms requests errors seconds` from wrk's text output.
# Latencies come from the "Latency Distribution" block (--latency); errors are socket errors plus
# "Non-2xx or 3xx responses".
parse_wrk() {
    awk '
    function ms(v,   n, u) {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") return n / 1000
        if (u == "ms") return n
        if (u == "s")  return n * 1000
        if (u == "m")  return n * 60000
        if (u == "h")  return n * 3600000
        return -1
    }
    function mb(v,   n, u) {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u); sub(/B$/, "", u)
        if (u == "")  return n / 1048576
        if (u == "K") return n / 1024
        if (u == "M") return n
        if (u == "G") return n * 1024
        if (u == "T") return n * 1048576
        return -1
    }
    /^ +50%/               { p50 = ms($2) }
    /^ +99%/               { p99 = ms($2) }
    /requests in/          { requests = $1; seconds = $4 + 0 }
    /^Requests\/sec:/      { rps = $2 }
    /^Transfer\/sec:/      { mbs = mb($2) }
    /Non-2xx or 3xx/       { errors += $NF }
    /Socket errors:/       { gsub(/,/, ""); errors += $4 + $6 + $8 + $10 }
    END {
        if (rps == "" || p50 == "" || p99 == "") exit 1
        printf "%.1f %.1f %.3f %.3f %d %d %.2f\n", rps, mbs, p50, p99, requests, errors, seconds
    }' "$1" || die "cannot parse wrk output $1"
}

# ratio A B: A/B with two decimals ("n/a" when B is 0).
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "n/a"; else printf "%.2f", a / b }'; }
