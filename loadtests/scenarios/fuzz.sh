# loadtests/scenarios/fuzz.sh: long fuzzing runs (issue 7), run by `loadtests/run fuzz [TARGET...]`.
# shellcheck shell=bash
# summary: libFuzzer on every fuzz target (catalog, merge, request, policy, config), FUZZ_SECS each
#
# Owns the long runs of the fuzz targets in gateway/tests/fuzz/targets (CI runs the same code for a
# few seconds each from gateway/tests/fuzz.rs). Builds the cargo-fuzz crate gateway/fuzz with
# AddressSanitizer on the stable toolchain (RUSTC_BOOTSTRAP=1 unlocks the -Z flags cargo-fuzz
# passes; cargo-fuzz is installed from crates.io when missing), then runs each target with libFuzzer
# for FUZZ_SECS seconds, starting from the regression inputs. The corpus grows in
# target/fuzz/corpus/<target> (kept between runs); a crash is saved as target/fuzz/artifacts/
# <target>/crash-… and the scenario fails naming it: copy it to gateway/tests/fuzz/regressions/
# <target>/ with a name that says what it was, fix the bug, and CI replays it from then on.
# Sourced by loadtests/run, which provides REPO, LOADTESTS, RESULTS and lib/common.sh.

# Knobs of this scenario (environment overrides).
: "${FUZZ_SECS:=300}"        # seconds per target
: "${FUZZ_JOBS:=1}"          # parallel libFuzzer jobs per target (one per core at most)
: "${FUZZ_RSS_LIMIT_MB:=4096}"
: "${FUZZ_SANITIZER:=address}" # address | none (none builds faster and runs about twice as fast)

FUZZ_TARGETS=(catalog merge request policy config)

scenario_fuzz() {
    local targets=("$@") target
    [ "${#targets[@]}" -gt 0 ] || targets=("${FUZZ_TARGETS[@]}")
    for target in "${targets[@]}"; do
        [ -f "$REPO/gateway/fuzz/fuzz_targets/$target.rs" ] ||
            die "unknown fuzz target $target (known: ${FUZZ_TARGETS[*]})"
    done
    ensure_tools cc
    ensure_cargo
    if ! cargo fuzz --version >/dev/null 2>&1; then
        log "Installing cargo-fuzz from crates.io"
        cargo install --locked cargo-fuzz || die "cargo install cargo-fuzz failed"
    fi

    local work="${CARGO_TARGET_DIR:-$REPO/target}/fuzz"
    local fuzz=(cargo fuzz)
    local common=(--fuzz-dir "$REPO/gateway/fuzz" --target-dir "$work" -O -a -s "$FUZZ_SANITIZER")
    export RUSTC_BOOTSTRAP=1
    log "Building the fuzz targets (libFuzzer, sanitizer $FUZZ_SANITIZER, release + debug assertions)"
    (cd "$REPO" && "${fuzz[@]}" build "${common[@]}") || die "cargo fuzz build failed"

    local failed=() started
    for target in "${targets[@]}"; do
        local corpus="$work/corpus/$target" artifacts="$work/artifacts/$target"
        local regressions="$REPO/gateway/tests/fuzz/regressions/$target"
        mkdir -p "$corpus" "$artifacts"
        local seeds=()
        [ -d "$regressions" ] && seeds=("$regressions")
        log "Fuzzing $target for ${FUZZ_SECS}s ($FUZZ_JOBS job(s)); corpus $corpus"
        started="$(date +%s)"
        local options=(-max_total_time="$FUZZ_SECS" -rss_limit_mb="$FUZZ_RSS_LIMIT_MB"
            -artifact_prefix="$artifacts/" -print_final_stats=1)
        # Several jobs: libFuzzer forks them and writes their output to fuzz-<n>.log in $artifacts.
        [ "$FUZZ_JOBS" -gt 1 ] && options+=(-jobs="$FUZZ_JOBS" -workers="$FUZZ_JOBS")
        if (cd "$artifacts" && "${fuzz[@]}" run "${common[@]}" "$target" "$corpus" "${seeds[@]}" -- \
            "${options[@]}"); then
            log "$target: no crash in $(($(date +%s) - started))s; corpus $(find "$corpus" -type f | wc -l) inputs"
        else
            warn "$target: crashed; inputs in $artifacts (copy to gateway/tests/fuzz/regressions/$target/)"
            failed+=("$target")
        fi
    done
    [ "${#failed[@]}" -eq 0 ] || die "fuzz targets that crashed: ${failed[*]}"
    log "Every target ran ${FUZZ_SECS}s without a crash: ${targets[*]}"
}
