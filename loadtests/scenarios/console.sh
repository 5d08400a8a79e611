# loadtests/scenarios/console.sh: the console's pages with a large registry (issue 21), run by
# `loadtests/run console`.
# summary: console pages with 100k instances: bytes transferred and latency per page vs /healthz
#
# Owns the scenario: builds the release binaries and runs `osb-loadtests console`, which seeds an
# embedded store with CONSOLE_INSTANCES instances and 100,000 audit records, starts the three demo
# brokers and the gateway in one process, and fetches each console page CONSOLE_REQUESTS times, one
# at a time, as a browser does (gzip accepted, Basic credentials). Prints the table and writes
# loadtests/results/console-<date>.md. Sourced by loadtests/run (REPO, LOADTESTS, RESULTS,
# lib/common.sh).

: "${CONSOLE_INSTANCES:=100000}"
: "${CONSOLE_REQUESTS:=200}"

scenario_console() {
    [ "$#" -eq 0 ] || die "console takes no arguments (CONSOLE_INSTANCES, CONSOLE_REQUESTS)"
    build_release
    mkdir -p "$RESULTS"
    local out
    out="$RESULTS/console-$(date -u +%Y-%m-%d-%H%M%S).md"
    "$LOADTESTS_BIN" console --instances "$CONSOLE_INSTANCES" --requests "$CONSOLE_REQUESTS" | tee "$out"
    log "Wrote $out"
}
