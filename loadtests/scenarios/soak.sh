# loadtests/scenarios/soak.sh: the soak (issue 7), run by `loadtests/run soak`.
# shellcheck shell=bash
# summary: 10 minutes of mixed load with the GCP upstream flapping; errors per broker, RSS start/end
#
# Owns the long reliability run: builds the release binaries, then `osb-loadtests soak` starts
# three in-process demo brokers (the real OSBA, AWS and GCP catalogs; GCP behind a fault proxy that
# alternates healthy and faulty phases: hang, reset, 500, garbage, slow) and the gateway as its own
# process on an embedded store, runs provision → bind → unbind → deprovision loops and catalog reads
# on all three, samples the gateway's RSS, then deletes what failed calls left, waits for the
# mitigation queue to drain, stops the gateway with SIGTERM and writes
# loadtests/results/soak-<timestamp>.md. Fails when a healthy broker or the catalog saw an error, or
# when any instance is left upstream (the report then holds its audit trail). SOAK_GATEWAY_LOG sets
# the gateway's RUST_LOG (default: errors and mitigation steps).
# Sourced by loadtests/run, which provides REPO, LOADTESTS, RESULTS and lib/common.sh.

# Knobs of this scenario (environment overrides).
: "${SOAK_SECONDS:=600}"      # load duration
: "${SOAK_WORKERS:=12}"       # lifecycle workers, a third per broker
: "${SOAK_HEALTHY_SECS:=20}"  # GCP's healthy phase
: "${SOAK_FAULTY_SECS:=10}"   # GCP's faulty phase

scenario_soak() {
    [ "$#" -eq 0 ] || die "soak takes no arguments (use the environment knobs SOAK_*)"
    build_release
    "$LOADTESTS_BIN" soak --seconds "$SOAK_SECONDS" --workers "$SOAK_WORKERS" \
        --healthy-secs "$SOAK_HEALTHY_SECS" --faulty-secs "$SOAK_FAULTY_SECS" \
        --gateway "$GATEWAY_BIN" --results "$RESULTS"
}
