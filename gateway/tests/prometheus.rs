//! The operations material in `deploy/` against the real gateway: promtool accepts the alerting
//! rules (and their unit tests pass), a real Prometheus scrapes `GET /metrics` on the admin listener
//! and sees the request counter move, every dashboard and alert query runs on that Prometheus, and
//! every metric name the dashboard and the rules use is one the gateway exports.
//!
//! Needs `prometheus` and `promtool` on the PATH (Debian package `prometheus`; `.ci/run` installs it).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::fake_broker::{FakeBroker, Reply};
use crate::support::gateway::{BEARER_TOKEN, TestGateway, platforms_yaml};
use crate::support::osb::Query;
use crate::support::ports::on_a_free_port;
use crate::support::small_catalog::small_catalog;
use crate::support::{eventually, fixture, http};

/// Every metric the gateway exports, as Prometheus names it (histograms without `_bucket`,
/// `_count`, `_sum`; counters with `_total`). The dashboard charts all of them.
const METRICS: &[&str] = &[
    "http_server_request_duration_seconds",
    "http_server_active_requests",
    "http_client_request_duration_seconds",
    "osb_gateway_catalog_refreshes_total",
    "osb_gateway_catalog_age_seconds",
    "osb_gateway_catalog_stale",
    "osb_gateway_upstream_up",
    "osb_gateway_catalog_cache_requests_total",
    "osb_gateway_rate_limit_rejections_total",
    "osb_gateway_policy_decisions_total",
    "osb_gateway_policy_reloads_total",
    "osb_gateway_config_reloads_total",
    "osb_gateway_registry_operation_duration_seconds",
    "osb_gateway_instances",
    "osb_gateway_bindings",
    "osb_gateway_mitigation_queue_depth",
    "osb_gateway_catalog_held_entries",
    "osb_gateway_audit_records_total",
    "osb_gateway_audit_write_failures_total",
    "osb_gateway_upstream_breaker_state",
    "osb_gateway_store_up",
    "osb_gateway_trace_export_failures_total",
    "osb_gateway_build_info",
    "osb_gateway_quota_limit",
    "osb_gateway_quota_usage",
    "osb_gateway_quota_fullest",
    "osb_gateway_quota_refusals_total",
    "process_resident_memory_bytes",
    "process_cpu_seconds_total",
];

/// Prefixes of the gateway's metric names (anything else in the queries is Prometheus's, like `up`).
const PREFIXES: &[&str] = &["http_server_", "http_client_", "osb_gateway_", "process_"];

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy").join(path)
}

fn read_deploy(path: &str) -> String {
    std::fs::read_to_string(deploy(path)).unwrap_or_else(|e| panic!("deploy/{path}: {e}"))
}

/// The Prometheus tool `program` (`promtool`, `prometheus`), failing the test if it is not installed.
fn installed(program: &str) -> PathBuf {
    match std::process::Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => PathBuf::from(program),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`{program}` is not installed: these tests need the Debian package `prometheus` \
             (`apt-get install prometheus`; .ci/run installs it)"
        ),
        Err(e) => panic!("cannot run `{program}`: {e}"),
    }
}

/// Runs `promtool ARGS` in `deploy/prometheus/` and fails the test with its output unless it succeeds.
fn promtool(args: &[&str]) -> String {
    let output = std::process::Command::new(installed("promtool"))
        .args(args)
        .current_dir(deploy("prometheus"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "promtool {}: {}\n{text}",
        args.join(" "),
        output.status
    );
    text
}

#[test]
fn promtool_accepts_the_rules_the_example_config_and_the_rule_unit_tests() {
    let checked = promtool(&["check", "rules", "rules.yaml"]);
    assert!(checked.contains("SUCCESS"), "{checked}");
    promtool(&["check", "config", "prometheus.yml"]);
    promtool(&["test", "rules", "rules_test.yaml"]);
}

#[test]
fn the_rules_carry_for_severity_summary_and_description() {
    let rules = read_deploy("prometheus/rules.yaml");
    let alerts = rules.matches("- alert:").count();
    assert!(alerts >= 6, "expected at least six alerts, found {alerts}");
    for key in ["for:", "severity:", "summary:", "description:"] {
        assert_eq!(rules.matches(key).count(), alerts, "every alert needs `{key}`");
    }
    for alert in [
        "OsbGatewayUpstreamDown",
        "OsbGatewayCatalogStale",
        "OsbGatewayHighErrorRatio",
        "OsbGatewayLatencyHigh",
        "OsbGatewayMitigationBacklog",
        "OsbGatewayPolicyReloadFailing",
        "OsbGatewayCatalogPlansHeld",
        "OsbGatewayAuditWriteFailing",
    ] {
        assert!(
            rules.contains(&format!("- alert: {alert}\n")),
            "missing alert {alert}"
        );
    }
}

/// A Prometheus server run for one test, on a free loopback port (see [`on_a_free_port`]), with its
/// data in a temp folder.
/// Killed when dropped.
struct Prometheus {
    child: tokio::process::Child,
    url: String,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `target`'s `/metrics` every second, with `deploy/prometheus/rules.yaml`
    /// loaded (evaluated every second), and waits until it is ready. Prometheus must be told its
    /// port: [`on_a_free_port`] starts it again on a fresh port if it exits before it is ready (the
    /// port taken in the meantime).
    async fn start(target: SocketAddr) -> Prometheus {
        let program = installed("prometheus");
        let rules = deploy("prometheus/rules.yaml").canonicalize().unwrap();
        on_a_free_port("prometheus", |port| {
            Prometheus::start_on(&program, &rules, target, port)
        })
        .await
    }

    /// One attempt at [`Prometheus::start`] on `port`: `Err` with its log when it exits before it is
    /// ready (dropping the child kills nothing left running).
    async fn start_on(
        program: &Path,
        rules: &Path,
        target: SocketAddr,
        port: u16,
    ) -> Result<Prometheus, String> {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules:?}\n\
             scrape_configs:\n  - job_name: osb-gateway\n    scrape_interval: 1s\n    scrape_timeout: 1s\n    \
             metrics_path: /metrics\n    static_configs:\n      - targets: [\"{target}\"]\n",
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = tokio::process::Command::new(program)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut prometheus = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = prometheus.child.try_wait().unwrap() {
                return Err(format!("prometheus exited ({status}):\n{}", prometheus.log()));
            }
            let ready = http().get(format!("{}/-/ready", prometheus.url)).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return Ok(prometheus);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "prometheus not ready after 30 s:\n{}",
                prometheus.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `GET /api/v1/PATH?QUERY`, expecting `"status": "success"`; the `data`.
    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, String> {
        let response = http()
            .get(format!("{}/api/v1/{path}", self.url))
            .query(query)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|e| e.to_string())?;
        if status == 200 && body["status"] == "success" {
            Ok(body["data"].clone())
        } else {
            Err(format!("{path} {query:?}: {status} {body}"))
        }
    }

    /// An instant query's result vector.
    async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let data = self.api("query", &[("query", expr)]).await?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// The value of a query that returns one sample (`sum(...)`), if it returned one.
    async fn scalar(&self, expr: &str) -> Option<f64> {
        let result = self.query(expr).await.ok()?;
        result.first()?["value"][1].as_str()?.parse().ok()
    }

    /// Waits until the gateway's target is scraped successfully, failing with the last scrape error.
    async fn wait_for_target_up(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let targets = self.api("targets", &[]).await;
            let target = targets
                .as_ref()
                .ok()
                .and_then(|t| t["activeTargets"].get(0).cloned());
            if target.as_ref().is_some_and(|t| t["health"] == "up") {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "Prometheus never scraped the gateway's /metrics; last target state: {}\n{}",
                target.map_or_else(|| format!("{targets:?}"), |t| t.to_string()),
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A gateway in front of one broker serving the OSB spec's example catalog.
async fn catalog_gateway() -> (FakeBroker, TestGateway) {
    let broker = FakeBroker::with_catalog(fixture("osbapi-spec-example-catalog.json")).await;
    let yaml = format!(
        "{}brokers:\n  - name: spec\n    url: {}\n    refresh_interval_secs: 3600\n",
        platforms_yaml(),
        broker.url()
    );
    let gateway = TestGateway::start(&yaml).await;
    gateway.ready_catalog().await;
    (broker, gateway)
}

async fn get_catalogs(gateway: &TestGateway, times: usize) {
    for _ in 0..times {
        assert_eq!(gateway.catalog().await.status(), 200);
    }
}

#[tokio::test]
async fn a_real_prometheus_scrapes_the_admin_listener_and_sees_catalog_requests_counted() {
    let (_broker, gateway) = catalog_gateway().await;
    let prometheus = Prometheus::start(gateway.admin_addr).await;
    prometheus.wait_for_target_up().await;

    get_catalogs(&gateway, 5).await;
    let count = r#"sum(http_server_request_duration_seconds_count{job="osb-gateway", route="/v2/catalog"})"#;
    let first = eventually(
        "Prometheus sees catalog requests counted",
        Duration::from_secs(30),
        || async { prometheus.scalar(count).await.filter(|v| *v > 0.0) },
    )
    .await;

    get_catalogs(&gateway, 10).await;
    let second = eventually(
        "Prometheus sees the catalog request counter move by 10",
        Duration::from_secs(30),
        || async { prometheus.scalar(count).await.filter(|v| *v >= first + 10.0) },
    )
    .await;
    assert!(second >= first + 10.0, "{first} → {second}");

    // The labels the dashboard groups by arrive with the catalog requests.
    let by_operation = prometheus
        .query(r#"sum by (operation, status_class, platform, method) (http_server_request_duration_seconds_count{route="/v2/catalog"})"#)
        .await
        .unwrap();
    assert!(
        by_operation.iter().any(|s| s["metric"]
            == json!({"operation": "catalog", "status_class": "2xx", "platform": "k8s-prod", "method": "GET"})),
        "{by_operation:?}"
    );
}

/// The PromQL of every dashboard panel and template variable, with Grafana's variables replaced by
/// values Prometheus accepts.
fn dashboard_queries(dashboard: &Value) -> Vec<String> {
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        // `label_values(SELECTOR, label)`: the selector is PromQL.
        let definition = variable["definition"].as_str().unwrap();
        let inner = definition
            .strip_prefix("label_values(")
            .and_then(|rest| rest.rsplit_once(','))
            .map(|(selector, _)| selector.to_owned())
            .unwrap_or_else(|| panic!("unexpected variable query {definition}"));
        queries.push(inner);
    }
    queries
        .into_iter()
        .map(|q| {
            q.replace("$__rate_interval", "1m")
                .replace("$job", "osb-gateway")
                .replace("$instance", ".*")
                .replace("$broker", ".*")
        })
        .collect()
}

#[tokio::test]
async fn every_dashboard_query_and_alert_rule_runs_on_prometheus() {
    let (_broker, gateway) = catalog_gateway().await;
    let prometheus = Prometheus::start(gateway.admin_addr).await;
    prometheus.wait_for_target_up().await;
    get_catalogs(&gateway, 3).await;

    let dashboard: Value = serde_json::from_str(&read_deploy("grafana/osb-gateway.json")).unwrap();
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() > 20, "{} queries", queries.len());
    for query in &queries {
        if let Err(e) = prometheus.query(query).await {
            panic!("dashboard query rejected by Prometheus:\n{query}\n{e}");
        }
    }

    // The traffic panel shows the catalog requests once two scrapes are in.
    let traffic = dashboard_queries(&dashboard)[0].clone();
    assert!(traffic.contains("sum by (operation)"), "{traffic}");
    eventually(
        "the traffic panel shows catalog requests",
        Duration::from_secs(30),
        || async {
            let series = prometheus.query(&traffic).await.ok()?;
            series
                .iter()
                .any(|s| s["metric"]["operation"] == "catalog")
                .then_some(())
        },
    )
    .await;

    // Every alerting rule of rules.yaml is loaded and evaluates without error.
    let rules = eventually("every rule evaluated", Duration::from_secs(30), || async {
        let groups = prometheus.api("rules", &[]).await.ok()?;
        let rules: Vec<Value> = groups["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        (!rules.is_empty() && rules.iter().all(|r| r["health"] != "unknown")).then_some(rules)
    })
    .await;
    assert!(rules.len() >= 6, "{rules:?}");
    for rule in &rules {
        assert_eq!(
            rule["health"], "ok",
            "rule {} fails: {}",
            rule["name"], rule["lastError"]
        );
    }
    // With a healthy upstream and no traffic errors, nothing fires.
    let firing: Vec<&Value> = rules.iter().filter(|r| r["state"] == "firing").collect();
    assert!(firing.is_empty(), "{firing:?}");
}

/// Identifiers in `text` that look like the gateway's metric names, with the histogram series
/// suffixes stripped.
fn gateway_metric_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|token| PREFIXES.iter().any(|p| token.starts_with(p)))
        .map(|token| {
            ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| token.strip_suffix(suffix))
                .unwrap_or(token)
                .to_owned()
        })
        .collect()
}

/// The metric names an exposition (Prometheus text or OpenMetrics) declares or has samples of:
/// `# TYPE` names (and `NAME_total` for counters) and sample names without histogram suffixes.
fn exposed_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        if let Some(declaration) = line.strip_prefix("# TYPE ") {
            let mut words = declaration.split_whitespace();
            let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                continue;
            };
            names.insert(name.to_owned());
            if kind == "counter" && !name.ends_with("_total") {
                names.insert(format!("{name}_total"));
            }
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            names.insert(name.to_owned());
            for suffix in ["_bucket", "_count", "_sum", "_created"] {
                if let Some(base) = name.strip_suffix(suffix) {
                    names.insert(base.to_owned());
                }
            }
        }
    }
    names
}

#[tokio::test]
async fn every_metric_the_dashboard_and_the_rules_use_is_exported_by_the_gateway() {
    // Names used by the deploy material: all of them known, and the dashboard charts every one.
    let dashboard: Value = serde_json::from_str(&read_deploy("grafana/osb-gateway.json")).unwrap();
    let in_dashboard = gateway_metric_names(&dashboard_queries(&dashboard).join("\n"));
    let in_rules = gateway_metric_names(&read_deploy("prometheus/rules.yaml"));
    let used: BTreeSet<String> = in_dashboard.union(&in_rules).cloned().collect();
    let known: BTreeSet<String> = METRICS.iter().map(|m| (*m).to_owned()).collect();
    let unknown: Vec<&String> = used.difference(&known).collect();
    assert!(
        unknown.is_empty(),
        "deploy/ uses names the gateway does not define: {unknown:?}"
    );
    let uncharted: Vec<&String> = known.difference(&in_dashboard).collect();
    assert!(uncharted.is_empty(), "the dashboard does not chart {uncharted:?}");

    // A gateway with a policy, after traffic of every kind that labels a series: catalog, a
    // provision and a bind forwarded upstream, a rate-limited catalog read, a policy reload.
    let broker = FakeBroker::with_catalog(small_catalog()).await;
    broker.on("PUT", "/v2/service_instances/*", Reply::new(201, "{}"));
    let policy = "deny:\n  - {name: never, platforms: [cf], operations: [provision], reason: cf never provisions here}\n\
                  limits:\n  platforms:\n    - {name: cf, catalog_per_sec: 1, catalog_burst: 1}\n\
                  quotas:\n  - {name: few, per: [context.namespace], limit: 1, reason: one each}\n";
    let yaml = format!(
        "{}policy_file: policy.yaml\nbrokers:\n  - name: fb\n    url: {}\n    refresh_interval_secs: 3600\n",
        platforms_yaml(),
        broker.url()
    );
    let gateway = TestGateway::start_with_files(&yaml, &[("policy.yaml", policy)]).await;
    let catalog = gateway.ready_catalog().await;
    let service = &catalog["services"][0];
    let plan = service["plans"][0]["id"].clone();
    let instance = "metrics-instance-7f3a9c";
    let binding = "metrics-binding-2d4e8b";
    let osb = gateway.osb();
    let provision = osb
        .provision(
            instance,
            Query::none(),
            &json!({"service_id": service["id"], "plan_id": plan, "context": {"platform": "kubernetes"}}),
        )
        .await;
    assert_eq!(provision.status, 201);
    let bind = osb
        .bind(
            instance,
            binding,
            Query::none(),
            &json!({"service_id": service["id"], "plan_id": plan}),
        )
        .await;
    assert_eq!(bind.status, 201);
    let cf = osb.bearer(BEARER_TOKEN);
    let mut limited = false;
    for _ in 0..5 {
        limited |= cf.catalog().await.status == 429;
    }
    assert!(
        limited,
        "five catalog reads at once as cf (1/s, burst 1): none refused"
    );
    let reload = http()
        .post(gateway.admin_url("/admin/policy/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status(), 200);

    let response = http().get(gateway.admin_url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200, "GET /metrics on the admin listener");
    let exposition = response.text().await.unwrap();
    let exposed = exposed_names(&exposition);
    let missing: Vec<&String> = used.iter().filter(|name| !exposed.contains(*name)).collect();
    let gateway_names: Vec<&String> = exposed
        .iter()
        .filter(|name| PREFIXES.iter().any(|p| name.starts_with(p)))
        .collect();
    assert!(
        missing.is_empty(),
        "metrics used by deploy/ but not in the gateway's /metrics: {missing:?}\n\
         the gateway exports: {gateway_names:?}"
    );

    // Ids go on spans only, never on metrics.
    for id in [instance, binding] {
        assert!(!exposition.contains(id), "/metrics carries the id {id}");
    }
}

/// The value of the series `series` (name and labels exactly as exposed) in `exposition`.
fn value_of(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test]
async fn a_fresh_gateway_exposes_every_per_broker_series_and_its_own_at_the_first_scrape() {
    let broker = FakeBroker::with_catalog(small_catalog()).await;
    let yaml = format!(
        "{}brokers:\n  - name: fb\n    url: {}\n    refresh_interval_secs: 3600\n",
        platforms_yaml(),
        broker.url()
    );
    let gateway = TestGateway::start(&yaml).await;
    // No platform call yet: the series are there, at zero.
    let exposition = http()
        .get(gateway.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (series, expected) in [
        (r#"osb_gateway_instances{broker="fb"}"#, 0.0),
        (r#"osb_gateway_bindings{broker="fb"}"#, 0.0),
        (r#"osb_gateway_catalog_held_entries{broker="fb"}"#, 0.0),
        (
            r#"osb_gateway_rate_limit_rejections_total{scope="platform",name="k8s-prod",class="catalog"}"#,
            0.0,
        ),
        (
            r#"osb_gateway_rate_limit_rejections_total{scope="platform",name="cf",class="calls"}"#,
            0.0,
        ),
        (
            r#"osb_gateway_rate_limit_rejections_total{scope="broker",name="fb",class="calls"}"#,
            0.0,
        ),
        (r#"osb_gateway_upstream_breaker_state{broker="fb"}"#, 0.0),
        ("osb_gateway_store_up", 1.0),
        ("osb_gateway_trace_export_failures_total", 0.0),
    ] {
        assert_eq!(
            value_of(&exposition, series),
            Some(expected),
            "{series} in:\n{exposition}"
        );
    }
    let build = exposition
        .lines()
        .find(|l| l.starts_with("osb_gateway_build_info{"))
        .unwrap_or_else(|| panic!("no build info in:\n{exposition}"));
    assert!(
        build.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))),
        "{build}"
    );
    assert!(build.contains("commit=\"") && build.ends_with(" 1"), "{build}");
    for series in [
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_threads",
        "process_start_time_seconds",
    ] {
        assert!(
            value_of(&exposition, series).is_some_and(|v| v > 0.0),
            "{series} in:\n{exposition}"
        );
    }
    assert!(
        value_of(&exposition, "process_cpu_seconds_total").is_some(),
        "{exposition}"
    );

    // `--version` names the commit as the build info does.
    let version = std::process::Command::new(env!("CARGO_BIN_EXE_osb-gateway"))
        .arg("--version")
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&version.stdout);
    let commit = build
        .split("commit=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap();
    assert_eq!(
        version.trim(),
        format!("osb-gateway {} (commit {commit})", env!("CARGO_PKG_VERSION"))
    );
}
