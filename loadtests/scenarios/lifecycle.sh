# loadtests/scenarios/lifecycle.sh: the lifecycle benchmark (issue 3), run by `loadtests/run lifecycle`.
# shellcheck shell=bash disable=SC2016 # backticks in single quotes are Markdown, not expansions
# summary: provision/bind/unbind/deprovision via the gateway vs direct calls to a fast stub upstream
#
# Owns the whole scenario: starts `osb-loadtests stub` (a fast, synchronous DemoBroker answering Answers::Fast
# serving the AWS catalog, in its own process), loads it directly with `osb-loadtests lifecycle`
# (closed loop: provision → bind → unbind → deprovision with fresh ids), then starts
# `osb-gateway serve` with the stub as its only broker and runs the same load through it. Reads the
# gateway's registry counts and the stub's leftovers at the end, then prints a table and writes
# loadtests/results/lifecycle-<date>.md.
# Sourced by loadtests/run, which provides REPO, LOADTESTS, RESULTS and lib/common.sh.

# Knobs of this scenario (environment overrides; see loadtests/README.md).
: "${LIFECYCLE_CONCURRENCY:=16}" # closed-loop workers, each with one cycle in flight
: "${LIFECYCLE_DURATION:=15s}"   # measured window of each run
: "${LIFECYCLE_WARMUP:=5s}"      # unmeasured run before each measurement
: "${LIFECYCLE_THREADS:=2}"      # the driver's runtime threads
: "${LIFECYCLE_TIMEOUT:=10s}"    # per-request timeout (slower answers count as errors)
: "${LIFECYCLE_SERVICE:=sqs}"   # a bindable service and plan of the AWS catalog, by name
: "${LIFECYCLE_PLAN:=standard}"
DEFAULT_PARAMETERS='{"DelaySeconds": 0, "MaximumMessageSize": 262144}' # valid for sqs/standard's schema
: "${LIFECYCLE_PARAMETERS:=$DEFAULT_PARAMETERS}" # provision parameters (a JSON object)
: "${STUB_WORKERS:=}" # actix workers of the stub; empty: the stub's default (1)
: "${READY_TIMEOUT:=60}"

LIFECYCLE_BROKER=aws # the stub's name, and the broker name in the gateway's config
LIFECYCLE_CATALOG=aws-servicebroker-catalog.json
PLATFORM_USER=loadtests

scenario_lifecycle() {
    [ "$#" -eq 0 ] || die "lifecycle takes no arguments (use the environment knobs, see loadtests/README.md)"

    ensure_tools curl cc
    build_release
    local idle_busy
    idle_busy="$(host_busy_percent 2)"
    if [ "$idle_busy" -gt 20 ]; then
        warn "the host is already ${idle_busy}% busy before the load starts: expect noisy numbers"
    fi
    make_run_tmp

    local cores workers
    cores="$(nproc)"
    workers=$((cores < 8 ? cores : 8)) # the gateway's own rule: min(available cores, 8)

    # ---- what a durable commit costs on the store's filesystem (the gateway's store lives here)
    local store_fs dsync_ms
    store_fs="$({ findmnt -n -o FSTYPE -T "$RUN_TMP" 2>/dev/null || stat -f -c %T "$RUN_TMP"; } | head -n1)"
    dsync_ms="$(dsync_write_ms "$RUN_TMP/dsync-probe" 200)"
    log "Store filesystem: $store_fs; a 4 KiB O_DSYNC write takes $dsync_ms ms"

    # ---- 1. the stub upstream, in its own process
    log "Starting the stub upstream (osb-loadtests stub, $LIFECYCLE_CATALOG)"
    "$LOADTESTS_BIN" stub --catalog "$REPO/fixtures/catalogs/$LIFECYCLE_CATALOG" --name "$LIFECYCLE_BROKER" \
        ${STUB_WORKERS:+--workers "$STUB_WORKERS"} >"$RUN_TMP/stub.out" 2>"$RUN_TMP/stub.log" &
    local stub_pid=$!
    track_pid "$stub_pid"
    local stub_line="" _
    for _ in $(seq 1 100); do
        stub_line="$(sed -n '/^stub url=/p' "$RUN_TMP/stub.out")"
        [ -n "$stub_line" ] && break
        kill -0 "$stub_pid" 2>/dev/null || break
        sleep 0.1
    done
    [ -n "$stub_line" ] || {
        cat "$RUN_TMP/stub.log" >&2
        die "the stub did not start"
    }
    local stub_url stub_user stub_password stub_workers
    stub_url="$(field url "$stub_line")"
    stub_user="$(field username "$stub_line")"
    stub_password="$(field password "$stub_line")"
    stub_workers="$(field workers "$stub_line")"
    log "Stub at $stub_url ($stub_workers workers)"

    local upstream_ids service_id plan_id
    upstream_ids="$("$LOADTESTS_BIN" plan-ids --target "$stub_url" --user "$stub_user" --password "$stub_password" \
        --service "$LIFECYCLE_SERVICE" --plan "$LIFECYCLE_PLAN")" || die "no bindable $LIFECYCLE_SERVICE/$LIFECYCLE_PLAN in the stub's catalog"
    read -r service_id plan_id <<<"$upstream_ids"

    # ---- 2. direct: driver → stub
    local d
    d="$(measure_lifecycle direct "$stub_url" "$stub_user" "$stub_password" "$service_id" "$plan_id" "$stub_pid" "")"

    # ---- 3. the gateway, with the stub as its only broker
    local osb_port admin_port platform_password
    read -r osb_port admin_port <<<"$(free_ports 2)"
    platform_password="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
    # The store: embedded in the temp folder, or PostgreSQL at LIFECYCLE_STORE_URL (its database
    # should be empty); a policy file at LIFECYCLE_POLICY (quotas, rules) when given.
    local store_yaml="store:
  kind: embedded
  path: \"$RUN_TMP/store\""
    local store_text="embedded store on $store_fs in the run's temp folder"
    if [ -n "${LIFECYCLE_STORE_URL:-}" ]; then
        store_yaml="store:
  kind: postgres
  url: \"$LIFECYCLE_STORE_URL\""
        store_text="PostgreSQL store ($(printf '%s' "$LIFECYCLE_STORE_URL" | sed -e 's|//[^@]*@|//|'))"
    fi
    local policy_yaml="" policy_text="no policy file"
    if [ -n "${LIFECYCLE_POLICY:-}" ]; then
        cp "$LIFECYCLE_POLICY" "$RUN_TMP/policy.yaml"
        policy_yaml="policy_file: \"$RUN_TMP/policy.yaml\""
        policy_text="policy file \`$(basename "$LIFECYCLE_POLICY")\` ($(grep -c '^  - name:' "$LIFECYCLE_POLICY") rules)"
    fi
    cat >"$RUN_TMP/gateway.yaml" <<EOF
# Generated by loadtests/run lifecycle: one platform, the stub as the only broker.
listen: "127.0.0.1:$osb_port"
admin:
  listen: "127.0.0.1:$admin_port"
$store_yaml
$policy_yaml
shutdown_grace_secs: 5
platforms:
  - name: loadtests
    username: $PLATFORM_USER
    password: $platform_password
brokers:
  - name: $LIFECYCLE_BROKER
    url: $stub_url
    username: $stub_user
    password: $stub_password
EOF
    log "Starting osb-gateway serve on 127.0.0.1:$osb_port (admin $admin_port)"
    "$GATEWAY_BIN" serve --config "$RUN_TMP/gateway.yaml" >"$RUN_TMP/gateway.out" 2>"$RUN_TMP/gateway.log" &
    local gateway_pid=$!
    track_pid "$gateway_pid"
    wait_http "http://127.0.0.1:$admin_port/readyz" "$READY_TIMEOUT" "$gateway_pid" '"ready"' || {
        tail -n 30 "$RUN_TMP/gateway.log" >&2
        die "the gateway did not become ready within ${READY_TIMEOUT}s"
    }
    local gateway_url="http://127.0.0.1:$osb_port" gateway_ids g_service_id g_plan_id
    gateway_ids="$("$LOADTESTS_BIN" plan-ids --target "$gateway_url" --user "$PLATFORM_USER" \
        --password "$platform_password" --service "$LIFECYCLE_BROKER.$LIFECYCLE_SERVICE" --plan "$LIFECYCLE_PLAN")" ||
        die "no $LIFECYCLE_BROKER.$LIFECYCLE_SERVICE/$LIFECYCLE_PLAN in the gateway's catalog"
    read -r g_service_id g_plan_id <<<"$gateway_ids"
    log "Gateway ids of $LIFECYCLE_BROKER.$LIFECYCLE_SERVICE/$LIFECYCLE_PLAN: $g_service_id $g_plan_id"

    # ---- 4. gateway: driver → gateway → stub
    local g
    g="$(measure_lifecycle gateway "$gateway_url" "$PLATFORM_USER" "$platform_password" "$g_service_id" "$g_plan_id" \
        "$stub_pid" "$gateway_pid")"

    # ---- 5. what is left: the gateway's registry, the stub's resources
    local registry registry_line store_kb gateway_rss stub_rss
    registry="$(curl -fsS --max-time 10 "http://127.0.0.1:$admin_port/admin/registry")" ||
        die "GET /admin/registry failed"
    registry_line="$(json_counts "$registry" instances bindings orphans pending)"
    store_kb=$((($( (du -sb "$RUN_TMP/store" 2>/dev/null || echo 0) | cut -f1) + 1023) / 1024))
    gateway_rss="$(rss_mb "$gateway_pid")"
    stub_rss="$(rss_mb "$stub_pid")"
    stop_pid "$gateway_pid"
    stop_pid "$stub_pid"
    local stub_stopped
    stub_stopped="$(sed -n 's/^stub stopped //p' "$RUN_TMP/stub.out")"
    [ -n "$stub_stopped" ] || warn "the stub did not report what it holds at exit"

    # ---- report
    local d_sec d_stub d_gw d_drv d_host g_sec g_stub g_gw g_drv g_host
    read -r d_sec d_stub d_gw d_drv d_host <<<"$d"
    read -r g_sec g_stub g_gw g_drv g_host <<<"$g"
    local d_cpu g_cpu d_cycles g_cycles
    d_cycles="$(op_field direct cycle count)"
    g_cycles="$(op_field gateway cycle count)"
    d_cpu="$(cpu_line "$d_cycles" "$d_sec" "$d_stub" "$d_gw" "$d_drv" "$d_host")"
    g_cpu="$(cpu_line "$g_cycles" "$g_sec" "$g_stub" "$g_gw" "$g_drv" "$g_host")"
    local d_oth g_oth
    d_oth="$(awk '{ print $NF }' <<<"$d_cpu")"
    g_oth="$(awk '{ print $NF }' <<<"$g_cpu")"

    local noisy="" worst
    worst="$(printf '%s\n' "$d_oth" "$g_oth" | sort -n | tail -n1)"
    if [ "$worst" != n/a ] && [ "$worst" -gt "${NOISE_LIMIT:-10}" ]; then
        noisy="**Noisy run:** up to $worst% of the host's CPU went to other processes during a measurement; re-run on an idle host before comparing."
        warn "other processes used up to $worst% of the CPU during the measurements: numbers are noisy"
    fi
    local errors
    errors="$(awk '$1 == "op" { e += $7 } END { print e + 0 }' "$RUN_TMP/lifecycle-direct.txt" "$RUN_TMP/lifecycle-gateway.txt")"
    [ "$errors" = 0 ] || warn "$errors calls failed during the measurements (see the errors columns)"

    local stamp result_file
    stamp="$(date -u +%Y-%m-%d-%H%M)"
    mkdir -p "$RESULTS"
    result_file="$RESULTS/lifecycle-$stamp.md"

    local tmpfs_note=""
    if [ "$store_fs" = tmpfs ]; then
        tmpfs_note=" On tmpfs \`fdatasync\` returns at once: this run shows the gateway without the disk's cost, for comparison only."
    fi

    local report
    report="$(
        cat <<EOF
# Lifecycle benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')

Command: \`loadtests/run lifecycle\` · commit \`$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)\`$([ "${SKIP_BUILD:-0}" = 1 ] && echo ' (SKIP_BUILD=1: binaries not rebuilt for this run)')
Host: $cores cores ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(uname -sr)
Tools: $(rustc -V 2>/dev/null | awk '{ print $1, $2 }'), $(curl -V | head -n1 | awk '{ print $1, $2 }')
Host CPU busy before the run (2 s sample, all cores): $idle_busy%
Load: \`osb-loadtests lifecycle -c $LIFECYCLE_CONCURRENCY -d $LIFECYCLE_DURATION --threads $LIFECYCLE_THREADS --timeout $LIFECYCLE_TIMEOUT\`, each after a $LIFECYCLE_WARMUP warm-up run; every worker loops provision (PUT, synchronous) → bind (PUT) → unbind (DELETE) → deprovision (DELETE) with fresh UUIDs, one call in flight; the driver runs on the same host.
Upstream: \`osb-loadtests stub\` (a DemoBroker answering \`Answers::Fast\`: synchronous, no latency, fixed answers, $stub_workers actix workers) serving the AWS Service Broker catalog; service \`$LIFECYCLE_SERVICE\`, plan \`$LIFECYCLE_PLAN\` (at the gateway: \`$LIFECYCLE_BROKER.$LIFECYCLE_SERVICE\`, rewritten ids), provision parameters \`$LIFECYCLE_PARAMETERS\`.
Gateway: \`osb-gateway serve\`, $workers workers (min(cores, 8)), one platform (basic auth), the stub as its only broker, $store_text, $policy_text.
Durability baseline: one 4 KiB write with O_DSYNC on that filesystem takes $dsync_ms ms (dd, 200 writes).

## Direct: driver → stub

$(op_table direct)

## Gateway: driver → gateway → stub

$(op_table gateway)

Throughput counts successful calls completed inside the measured window, divided by its length; p50/p99/max are exact
(nearest rank over every successful call). A cycle is the four calls of one worker back to back. An error is any answer
other than 201 (provision, bind) or 200 (unbind, deprovision), a transport error or a timeout.

## CPU

| target | cycles/s | CPU ms per cycle: stub / gateway / driver | CPU % stub / gateway / driver / other | RSS MB stub / gateway |
|---|---:|---:|---:|---:|
| direct | $(op_field direct cycle ops_per_s) | $(cpu_col "$d_cpu" 1 3) | $(cpu_col "$d_cpu" 4 7) | |
| gateway | $(op_field gateway cycle ops_per_s) | $(cpu_col "$g_cpu" 1 3) | $(cpu_col "$g_cpu" 4 7) | $stub_rss / $gateway_rss |

CPU % is of all $cores cores over the measured run's wall time; "other" is everything else on the host (kernel threads,
other processes): more than a few percent means the numbers are noisy.${noisy:+

$noisy}

## Ratios gateway / direct

| operation | throughput | p50 | p99 |
|---|---:|---:|---:|
$(ratio_rows)

Throughput ratio below 1 means the gateway is slower; latency ratios above 1 mean it is slower.

The ratio includes durability: every gateway mutation (provision, bind, unbind, deprovision) makes two durable writes
to its redb store, the write-ahead intent before the upstream call and the outcome after it, and answers only once both
are committed (\`fdatasync\` of the store's journal on $store_fs). A cycle is 8 such writes, two after another for each call;
the store's writer thread group-commits the writes waiting together (one transaction and one \`fdatasync\` per batch).
The direct path writes nothing to disk.$tmpfs_note

## Left behind

- Gateway registry after the load (\`GET /admin/registry\`): $registry_line. Store file: $store_kb KB.
- Stub at exit (both runs and their warm-ups): ${stub_stopped:-not reported}.
EOF
    )"

    printf '\n%s\n\n' "$report"
    {
        printf '%s\n\n' "$report"
        printf '## Raw driver output\n'
        local name
        for name in direct gateway; do
            printf '\n<details><summary>%s</summary>\n\n```\n%s\n```\n</details>\n' \
                "$name" "$(cat "$RUN_TMP/lifecycle-$name.txt")"
        done
    } >"$result_file"
    log "Wrote ${result_file#"$REPO"/}"
}

# measure_lifecycle NAME URL USER PASSWORD SERVICE_ID PLAN_ID STUB_PID GATEWAY_PID: a warm-up run, then
# the measured run of `osb-loadtests lifecycle`, whose output goes to $RUN_TMP/lifecycle-NAME.txt.
# Prints `wall_s stub_cpu_s gateway_cpu_s driver_cpu_s host_busy_s` of the measured run (GATEWAY_PID
# empty: no gateway, its CPU is `-`).
measure_lifecycle() {
    local name="$1" url="$2" user="$3" password="$4" service_id="$5" plan_id="$6" stub_pid="$7" gateway_pid="$8"
    local args=(--target "$url" --user "$user" --password "$password" --service-id "$service_id"
        --plan-id "$plan_id" --concurrency "$LIFECYCLE_CONCURRENCY" --threads "$LIFECYCLE_THREADS"
        --timeout "$LIFECYCLE_TIMEOUT" --parameters "$LIFECYCLE_PARAMETERS")
    local out="$RUN_TMP/lifecycle-$name.txt"
    log "Warm-up $name ($LIFECYCLE_WARMUP)"
    "$LOADTESTS_BIN" lifecycle "${args[@]}" --duration "$LIFECYCLE_WARMUP" >"$out.warmup" 2>&1 || {
        cat "$out.warmup" >&2
        die "the $name warm-up failed"
    }
    log "Measuring $name (-c $LIFECYCLE_CONCURRENCY -d $LIFECYCLE_DURATION)"
    local stub_before gateway_before=0 host_before start end
    stub_before="$(cpu_seconds "$stub_pid")"
    [ -n "$gateway_pid" ] && gateway_before="$(cpu_seconds "$gateway_pid")"
    host_before="$(host_busy_seconds)"
    start="$(date +%s.%N)"
    local TIMEFORMAT='%U %S'
    { time "$LOADTESTS_BIN" lifecycle "${args[@]}" --duration "$LIFECYCLE_DURATION" >"$out" 2>"$out.err"; } \
        2>"$out.cpu" || {
        cat "$out" "$out.err" >&2
        die "the $name run failed"
    }
    end="$(date +%s.%N)"
    local stub_after gateway_after=0 host_after
    stub_after="$(cpu_seconds "$stub_pid")"
    [ -n "$gateway_pid" ] && gateway_after="$(cpu_seconds "$gateway_pid")"
    host_after="$(host_busy_seconds)"
    [ -s "$out.err" ] && sed 's/^/  /' "$out.err" >&2
    awk -v s="$start" -v e="$end" -v sb="$stub_before" -v sa="$stub_after" -v gb="$gateway_before" \
        -v ga="$gateway_after" -v hb="$host_before" -v ha="$host_after" -v gw="${gateway_pid:+yes}" '{
        gateway = (gw == "yes") ? sprintf("%.2f", ga - gb) : "-"
        printf "%.2f %.2f %s %.2f %.2f\n", e - s, sa - sb, gateway, $1 + $2, ha - hb
    }' "$out.cpu"
}

# dsync_write_ms FILE COUNT: ms per 4 KiB write with O_DSYNC to FILE (then removed): what one durable
# write costs on that filesystem.
dsync_write_ms() {
    local seconds
    seconds="$(LC_ALL=C dd if=/dev/zero of="$1" bs=4k count="$2" oflag=dsync 2>&1 |
        awk '/copied/ { for (i = 1; i < NF; i++) if ($(i + 1) == "s,") print $i }')"
    rm -f "$1"
    awk -v s="${seconds:-0}" -v n="$2" 'BEGIN { if (s + 0 == 0) print "n/a"; else printf "%.2f", s * 1000 / n }'
}

# field NAME LINE: the value of NAME=value in a `key=value key=value` line.
field() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p" | head -n1; }

# json_counts JSON KEY...: `key N, key N` from a flat JSON object of numbers.
json_counts() {
    local json="$1" key out=""
    shift
    for key in "$@"; do
        out="$out${out:+, }$key $(sed -n "s/.*\"$key\":\([0-9]*\).*/\1/p" <<<"$json")"
    done
    printf '%s\n' "$out"
}

# op_field NAME OP COLUMN: one value of the driver's `op OP ops_per_s p50_ms p99_ms count errors max_ms`
# line in $RUN_TMP/lifecycle-NAME.txt.
op_field() {
    awk -v op="$2" -v col="$3" '
        BEGIN { split("ops_per_s p50_ms p99_ms count errors max_ms", names, " "); for (i in names) at[names[i]] = i + 2 }
        $1 == "op" && $2 == op { print $(at[col]); exit }' "$RUN_TMP/lifecycle-$1.txt"
}

# op_table NAME: the Markdown table of one run.
op_table() {
    printf '| operation | ops/s | p50 ms | p99 ms | max ms | count | errors |\n|---|---:|---:|---:|---:|---:|---:|\n'
    awk '$1 == "op" {
        label = ($2 == "cycle") ? "cycle (4 calls)" : $2
        printf "| %s | %s | %s | %s | %s | %s | %s |\n", label, $3, $4, $5, $8, $6, $7
    }' "$RUN_TMP/lifecycle-$1.txt"
}

# ratio_rows: gateway/direct throughput, p50 and p99 per operation and for the cycle.
ratio_rows() {
    local op label
    for op in provision bind unbind deprovision cycle; do
        label="$op"
        [ "$op" = cycle ] && label="cycle (4 calls)"
        printf '| %s | %s | %s | %s |\n' "$label" \
            "$(ratio "$(op_field gateway "$op" ops_per_s)" "$(op_field direct "$op" ops_per_s)")" \
            "$(ratio "$(op_field gateway "$op" p50_ms)" "$(op_field direct "$op" p50_ms)")" \
            "$(ratio "$(op_field gateway "$op" p99_ms)" "$(op_field direct "$op" p99_ms)")"
    done
}

# cpu_line CYCLES WALL STUB GATEWAY DRIVER HOST: `stub_ms gateway_ms driver_ms stub% gateway% driver% other%`
# (CPU ms per cycle, then percent of all cores over the wall time; GATEWAY `-`: no gateway).
cpu_line() {
    awk -v n="$1" -v wall="$2" -v stub="$3" -v gw="$4" -v drv="$5" -v host="$6" -v cores="$(nproc)" 'BEGIN {
        capacity = wall * cores
        if (n + 0 == 0 || capacity == 0) { print "n/a n/a n/a n/a n/a n/a n/a"; exit }
        other = host - stub - gw - drv; if (other < 0) other = 0
        gw_ms = (gw == "-") ? "-" : sprintf("%.3f", gw * 1000 / n)
        gw_pct = (gw == "-") ? "-" : sprintf("%.0f", gw * 100 / capacity)
        printf "%.3f %s %.3f %.0f %s %.0f %.0f\n", stub * 1000 / n, gw_ms, drv * 1000 / n,
            stub * 100 / capacity, gw_pct, drv * 100 / capacity, other * 100 / capacity
    }'
}

# cpu_col LINE FROM TO: fields FROM..TO of a cpu_line, joined with " / ".
cpu_col() {
    awk -v a="$2" -v b="$3" '{ s = $a; for (i = a + 1; i <= b; i++) s = s " / " $i; print s }' <<<"$1"
}
