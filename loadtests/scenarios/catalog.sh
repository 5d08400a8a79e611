# loadtests/scenarios/catalog.sh: the catalog benchmark (issue 2), run by `loadtests/run catalog`.
# shellcheck shell=bash disable=SC2016 # backticks in single quotes are Markdown, not expansions
# summary: cached GET /v2/catalog via the gateway vs nginx (same bytes), 304 path, cold merge
#
# Owns the whole scenario: starts `osb-gateway demo` (three built-in upstream brokers serving the
# real OSBA, AWS and GCP catalogs) and an nginx serving the same merged bytes from a file, loads both
# with identical wrk settings, loads the gateway's If-None-Match (304) path, times the cold merge
# with `osb-loadtests merge`, then prints a table and writes loadtests/results/catalog-<date>.md.
# Sourced by loadtests/run, which provides REPO, LOADTESTS, RESULTS, WRK_* and lib/common.sh.

# Knobs of this scenario (environment overrides; see loadtests/README.md).
: "${NOT_MODIFIED_DURATION:=5s}"
: "${NGINX_AUTH:=basic}"   # basic | off
: "${NGINX_SENDFILE:=off}" # off: read into one body-sized buffer (faster on loopback) | on
: "${NGINX_EXTRA:=}"       # extra directives for nginx's http block, e.g. "open_file_cache max=16;"
: "${MERGE_ITERATIONS:=30}"
: "${READY_TIMEOUT:=60}"

CATALOG_USER=demo
CATALOG_PASSWORD=demo
AUTH_HEADER="Authorization: Basic $(printf '%s:%s' "$CATALOG_USER" "$CATALOG_PASSWORD" | base64)"
API_HEADER="X-Broker-API-Version: 2.17"

scenario_catalog() {
    [ "$#" -eq 0 ] || die "catalog takes no arguments (use the environment knobs, see loadtests/README.md)"
    case "$NGINX_AUTH" in basic | off) ;; *) die "NGINX_AUTH must be basic or off" ;; esac
    case "$NGINX_SENDFILE" in on | off) ;; *) die "NGINX_SENDFILE must be on or off" ;; esac

    ensure_tools curl nginx wrk cc
    build_release
    local idle_busy
    idle_busy="$(host_busy_percent 2)"
    if [ "$idle_busy" -gt 20 ]; then
        warn "the host is already ${idle_busy}% busy before the load starts: expect noisy numbers"
    fi
    make_run_tmp
    chmod 711 "$RUN_TMP" # nginx workers may run as another user: let them reach $RUN_TMP/nginx

    local cores workers
    cores="$(nproc)"
    workers=$((cores < 8 ? cores : 8)) # the gateway's own rule: min(available cores, 8)
    : "${NGINX_WORKERS:=$workers}"

    local osb_port admin_port nginx_port
    read -r osb_port admin_port nginx_port <<<"$(free_ports 3)"
    local gateway_url="http://127.0.0.1:$osb_port/v2/catalog"
    local nginx_url="http://127.0.0.1:$nginx_port/v2/catalog"

    # ---- 1. the gateway, on its demo brokers
    log "Starting osb-gateway demo on 127.0.0.1:$osb_port (admin $admin_port)"
    "$GATEWAY_BIN" demo --listen "127.0.0.1:$osb_port" --admin-listen "127.0.0.1:$admin_port" \
        --store "$RUN_TMP/store" >"$RUN_TMP/gateway.log" 2>&1 &
    local gateway_pid=$!
    track_pid "$gateway_pid"
    wait_http "http://127.0.0.1:$admin_port/readyz" "$READY_TIMEOUT" "$gateway_pid" '"ready"' || {
        tail -n 30 "$RUN_TMP/gateway.log" >&2
        die "the gateway did not become ready within ${READY_TIMEOUT}s"
    }

    local status
    status="$(curl -sS -o "$RUN_TMP/catalog.json" -D "$RUN_TMP/gateway-headers.txt" -w '%{http_code}' \
        -H "$AUTH_HEADER" -H "$API_HEADER" "$gateway_url")"
    [ "$status" = 200 ] || die "GET /v2/catalog through the gateway answered $status"
    local body_bytes etag
    body_bytes="$(wc -c <"$RUN_TMP/catalog.json" | tr -d ' ')"
    etag="$(awk 'tolower($1) == "etag:" { sub(/\r$/, ""); print $2 }' "$RUN_TMP/gateway-headers.txt")"
    [ -n "$etag" ] || die "the gateway sent no ETag"
    status="$(curl -sS -o /dev/null -w '%{http_code}' -H "$AUTH_HEADER" -H "$API_HEADER" \
        -H "If-None-Match: $etag" "$gateway_url")"
    [ "$status" = 304 ] || die "If-None-Match: $etag answered $status, expected 304"
    log "Merged catalog: $body_bytes bytes, ETag $etag"

    # ---- 2. nginx serving the same bytes
    local ngx
    ngx="$(nginx_bin)"
    mkdir -p "$RUN_TMP/nginx/www"
    cp "$RUN_TMP/catalog.json" "$RUN_TMP/nginx/www/catalog.json"
    printf '%s:{PLAIN}%s\n' "$CATALOG_USER" "$CATALOG_PASSWORD" >"$RUN_TMP/nginx/htpasswd"
    local auth_conf="auth_basic off;"
    if [ "$NGINX_AUTH" = basic ]; then
        auth_conf="auth_basic \"osb\"; auth_basic_user_file $RUN_TMP/nginx/htpasswd;"
    fi
    write_nginx_conf "$RUN_TMP/nginx" "$nginx_port" "$NGINX_WORKERS" "$auth_conf" \
        "$(((body_bytes + 1023) / 1024))"
    chmod -R a+rX "$RUN_TMP/nginx"
    "$ngx" -t -q -e "$RUN_TMP/nginx/error.log" -p "$RUN_TMP/nginx" -c "$RUN_TMP/nginx/nginx.conf" ||
        die "nginx rejected $RUN_TMP/nginx/nginx.conf"
    log "Starting nginx on 127.0.0.1:$nginx_port ($NGINX_WORKERS workers, auth $NGINX_AUTH)"
    "$ngx" -e "$RUN_TMP/nginx/error.log" -p "$RUN_TMP/nginx" -c "$RUN_TMP/nginx/nginx.conf" &
    local nginx_pid=$!
    track_pid "$nginx_pid"
    wait_http "$nginx_url" 20 "$nginx_pid" '"services"' -H "$AUTH_HEADER" -H "$API_HEADER" || {
        cat "$RUN_TMP/nginx/error.log" >&2
        die "nginx did not answer on $nginx_url"
    }
    curl -sS -o "$RUN_TMP/nginx-body.json" -D "$RUN_TMP/nginx-headers.txt" \
        -H "$AUTH_HEADER" -H "$API_HEADER" "$nginx_url"
    cmp -s "$RUN_TMP/catalog.json" "$RUN_TMP/nginx-body.json" || die "nginx does not serve the gateway's bytes"
    local nginx_pids
    nginx_pids="$nginx_pid $(children_of "$nginx_pid" | tr '\n' ' ')"

    # ---- 3. load: same wrk settings for both, warm-up first
    local g n nm
    g="$(measure gateway "$gateway_url" "$WRK_DURATION" "$gateway_pid")"
    n="$(measure nginx "$nginx_url" "$WRK_DURATION" "$nginx_pids")"
    nm="$(measure gateway-304 "$gateway_url" "$NOT_MODIFIED_DURATION" "$gateway_pid" "If-None-Match: $etag")"
    local gateway_rss nginx_rss
    gateway_rss="$(rss_mb "$gateway_pid")"
    # shellcheck disable=SC2086 # word splitting of the pid list is wanted
    nginx_rss="$(rss_mb $nginx_pids)"

    # Servers off before the CPU-bound merge timing.
    stop_pid "$nginx_pid"
    stop_pid "$gateway_pid"

    # ---- 4. cold merge of the three real catalogs
    log "Timing the cold merge ($MERGE_ITERATIONS iterations)"
    local merge_out
    merge_out="$(MERGE_ITERATIONS="$MERGE_ITERATIONS" "$LOADTESTS_BIN" merge)" || die "osb-loadtests merge failed"
    local merge_etag same_bytes=no
    merge_etag="$(sed -n 's/.*ETag \("[0-9a-f]*"\).*/\1/p' <<<"$merge_out" | head -n1)"
    [ "$merge_etag" = "$etag" ] && same_bytes=yes

    # ---- report
    local g_rps g_mbs g_p50 g_p99 g_req g_err g_cpu g_srv g_wrk g_oth
    local n_rps n_mbs n_p50 n_p99 n_req n_err n_cpu n_srv n_wrk n_oth
    local m_rps m_mbs m_p50 m_p99 m_req m_err m_cpu m_srv m_wrk m_oth
    read -r g_rps g_mbs g_p50 g_p99 g_req g_err g_cpu g_srv g_wrk g_oth <<<"$g"
    read -r n_rps n_mbs n_p50 n_p99 n_req n_err n_cpu n_srv n_wrk n_oth <<<"$n"
    read -r m_rps m_mbs m_p50 m_p99 m_req m_err m_cpu m_srv m_wrk m_oth <<<"$nm"

    local noisy="" worst
    worst="$(printf '%s\n' "$g_oth" "$n_oth" "$m_oth" | sort -n | tail -n1)"
    if [ "$worst" != n/a ] && [ "$worst" -gt "${NOISE_LIMIT:-10}" ]; then
        noisy="**Noisy run:** up to $worst% of the host's CPU went to other processes during a measurement; re-run on an idle host before comparing."
        warn "other processes used up to $worst% of the CPU during the measurements: numbers are noisy"
    fi

    local stamp result_file
    stamp="$(date -u +%Y-%m-%d-%H%M)"
    mkdir -p "$RESULTS"
    result_file="$RESULTS/catalog-$stamp.md"

    local report
    report="$(
        cat <<EOF
# Catalog benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')

Command: \`loadtests/run catalog\` · commit \`$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)\`$([ "${SKIP_BUILD:-0}" = 1 ] && echo ' (SKIP_BUILD=1: binaries not rebuilt for this run)')
Host: $cores cores ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(uname -sr)
Tools: $(wrk -v 2>&1 | head -n1 | awk '{ print $1, $2 }'), $("$ngx" -v 2>&1 | sed 's/^nginx version: //'), $(rustc -V 2>/dev/null | awk '{ print $1, $2 }')
Host CPU busy before the run (2 s sample, all cores): $idle_busy%
Load: wrk -t$WRK_THREADS -c$WRK_CONNECTIONS -d$WRK_DURATION --latency (304: -d$NOT_MODIFIED_DURATION), each after a $WRK_WARMUP warm-up; wrk runs on the same host.
Servers: gateway $workers workers (min(cores, 8)); nginx $NGINX_WORKERS workers, keepalive, access_log off, sendfile $NGINX_SENDFILE (output_buffers 1 $(((body_bytes + 1023) / 1024))k), basic auth: $NGINX_AUTH$([ -n "$NGINX_EXTRA" ] && printf ', extra: `%s`' "$NGINX_EXTRA").
Body: $body_bytes bytes of merged OSBA + AWS + GCP catalog, ETag $etag; nginx serves byte-identical content.

## GET /v2/catalog

| target | req/s | MB/s | p50 ms | p99 ms | requests | errors | server CPU ms/req | CPU % server / wrk / other | RSS MB |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|
| gateway 200 (cached) | $g_rps | $g_mbs | $g_p50 | $g_p99 | $g_req | $g_err | $g_cpu | $g_srv / $g_wrk / $g_oth | $gateway_rss |
| nginx 200 (static file) | $n_rps | $n_mbs | $n_p50 | $n_p99 | $n_req | $n_err | $n_cpu | $n_srv / $n_wrk / $n_oth | $nginx_rss |
| gateway 304 (If-None-Match) | $m_rps | $m_mbs | $m_p50 | $m_p99 | $m_req | $m_err | $m_cpu | $m_srv / $m_wrk / $m_oth | |

CPU % is of all $cores cores during the measured run; "other" is everything else on the host
(kernel threads, other processes): more than a few percent means the numbers are noisy.${noisy:+

$noisy}

| gateway / nginx | throughput | p50 | p99 | CPU per request |
|---|---:|---:|---:|---:|
| ratio | $(ratio "$g_rps" "$n_rps") | $(ratio "$g_p50" "$n_p50") | $(ratio "$g_p99" "$n_p99") | $(ratio "$g_cpu" "$n_cpu") |

Throughput ratio below 1 means the gateway is slower; latency ratios above 1 mean it is slower.

## Cold merge (osb-loadtests merge)

$merge_out

Cold merge output identical to the bytes the gateway serves (same ETag): $same_bytes.
EOF
    )"

    printf '\n%s\n\n' "$report"
    {
        printf '%s\n\n' "$report"
        printf '## Raw wrk output\n'
        local name
        for name in gateway nginx gateway-304; do
            printf '\n<details><summary>%s</summary>\n\n```\n%s\n```\n</details>\n' \
                "$name" "$(cat "$RUN_TMP/wrk-$name.txt")"
        done
    } >"$result_file"
    log "Wrote ${result_file#"$REPO"/}"
}

# measure NAME URL DURATION "PIDS" [HEADER...]: warm-up, then the measured wrk run. Prints
# `rps mb_per_s p50_ms p99_ms requests errors cpu_ms_per_request server% wrk% other%`: the CPU the
# server processes PIDS used per request, then how the host's cores were shared during the run
# (percent of all cores; `other` is everything else on the host: the noise indicator).
measure() {
    local name="$1" url="$2" duration="$3" pids="$4" before after line
    shift 4
    log "Warm-up $name ($WRK_WARMUP)"
    run_wrk "$name-warmup" "$url" "$WRK_WARMUP" "$AUTH_HEADER" "$API_HEADER" "$@" >/dev/null
    log "Measuring $name (-t$WRK_THREADS -c$WRK_CONNECTIONS -d$duration)"
    # shellcheck disable=SC2086 # word splitting of the pid list is wanted
    before="$(cpu_seconds $pids)"
    line="$(run_wrk "$name" "$url" "$duration" "$AUTH_HEADER" "$API_HEADER" "$@")"
    # shellcheck disable=SC2086
    after="$(cpu_seconds $pids)"
    awk -v b="$before" -v a="$after" -v cores="$(nproc)" '{
        server = a - b; capacity = $7 * cores
        if ($5 + 0 == 0 || capacity == 0) { print $1, $2, $3, $4, $5, $6, "n/a n/a n/a n/a"; exit }
        other = $9 - server - $8; if (other < 0) other = 0
        printf "%s %s %s %s %s %s %.3f %.0f %.0f %.0f\n", $1, $2, $3, $4, $5, $6,
            server * 1000 / $5, server * 100 / capacity, $8 * 100 / capacity, other * 100 / capacity
    }' <<<"$line"
}

# write_nginx_conf DIR PORT WORKERS AUTH_DIRECTIVES BODY_KB: a self-contained nginx.conf in DIR that
# serves DIR/www/catalog.json at /v2/catalog as application/json. Every path is inside DIR, so it
# runs next to (not instead of) any system nginx, as any user. Without sendfile, the file is read
# into one buffer of BODY_KB (the whole body), like the gateway's single in-memory buffer.
write_nginx_conf() {
    local dir="$1" port="$2" workers="$3" auth="$4" body_kb="$5"
    cat >"$dir/nginx.conf" <<EOF
# Temporary nginx for loadtests/run catalog: the static baseline of GET /v2/catalog.
daemon off;
worker_processes $workers;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile $NGINX_SENDFILE;
    output_buffers 1 ${body_kb}k;
    tcp_nopush on;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    client_body_temp_path $dir/tmp-body;
    proxy_temp_path $dir/tmp-proxy;
    fastcgi_temp_path $dir/tmp-fastcgi;
    uwsgi_temp_path $dir/tmp-uwsgi;
    scgi_temp_path $dir/tmp-scgi;
    $NGINX_EXTRA
    server {
        listen 127.0.0.1:$port;
        location = /v2/catalog {
            $auth
            types { }
            default_type application/json;
            alias $dir/www/catalog.json;
        }
    }
}
EOF
}
