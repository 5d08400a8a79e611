//! Traces, rate limits and secrets, with the real binary, a real OTLP receiver and scripted brokers.

use std::process::Stdio;
use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::certs::TestCa;
use crate::support::fake_broker::{FakeBroker, Reply};
use crate::support::gateway::{BEARER_TOKEN, TestGateway, platforms_yaml};
use crate::support::osb::{OsbClient, OsbResponse, Query, instance_path, service};
use crate::support::otlp::OtlpReceiver;
use crate::support::small_catalog::small_catalog;
use crate::support::{eventually, http};

/// The gateway binary on a config in `dir`, exporting traces to `otlp`; stderr goes to
/// `dir/stderr.log`. Returns the process and its (OSB, admin) base URLs.
async fn spawn_traced(dir: &std::path::Path, yaml: &str, otlp: &OtlpReceiver) -> (Child, String, String) {
    spawn_exporting(dir, yaml, &otlp.endpoint()).await
}

/// [`spawn_traced`] to the OTLP endpoint `endpoint`.
async fn spawn_exporting(dir: &std::path::Path, yaml: &str, endpoint: &str) -> (Child, String, String) {
    let config = dir.join("gateway.yaml");
    std::fs::write(
        &config,
        format!("listen: \"127.0.0.1:0\"\nadmin:\n  listen: \"127.0.0.1:0\"\nstore:\n  path: store\n{yaml}"),
    )
    .unwrap();
    let stderr = std::fs::File::create(dir.join("stderr.log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_osb-gateway"))
        .args([
            "--log-format",
            "json",
            "serve",
            "--config",
            config.to_str().unwrap(),
        ])
        .env("RUST_LOG", "debug")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env("OTEL_SERVICE_NAME", "osb-gateway-under-test")
        .env("OTEL_BSP_SCHEDULE_DELAY", "50")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let osb = lines
        .next_line()
        .await
        .unwrap()
        .unwrap()
        .strip_prefix("osb-gateway listening on ")
        .unwrap()
        .to_owned();
    let admin = lines
        .next_line()
        .await
        .unwrap()
        .unwrap()
        .strip_prefix("osb-gateway admin on ")
        .unwrap()
        .to_owned();
    (child, osb, admin)
}

const USER: &str = "k8s";
const PASSWORD: &str = "plat-pw-ZX81";

/// An OSB client as the platform of [`yaml`].
fn platform(url: &str) -> OsbClient {
    OsbClient::new(url).basic(USER, PASSWORD)
}

async fn ids(url: &str) -> (String, String) {
    let catalog = platform(url).ready_catalog().await.body;
    let service = &catalog["services"][0];
    (
        service["id"].as_str().unwrap().to_owned(),
        service["plans"][0]["id"].as_str().unwrap().to_owned(),
    )
}

fn yaml(broker: &FakeBroker) -> String {
    format!(
        "platforms:\n  - name: k8s-prod\n    username: {USER}\n    password: {PASSWORD}\nbrokers:\n  - name: fb\n    url: {}\n    username: upstream\n    password: up-pw-QL42\n",
        broker.url()
    )
}

#[tokio::test]
async fn a_provision_is_one_trace_from_the_platform_through_the_gateway_to_the_upstream() {
    let otlp = OtlpReceiver::start().await;
    let broker = FakeBroker::with_catalog(small_catalog()).await;
    broker.on("PUT", "/v2/service_instances/*", Reply::new(201, "{}"));
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url, _) = spawn_traced(dir.path(), &yaml(&broker), &otlp).await;
    let (service, plan) = ids(&url).await;

    let (trace_id, platform_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let response = OsbResponse::send(
        platform(&url)
            .request(Method::PUT, &instance_path("traced-1"))
            .header("traceparent", format!("00-{trace_id}-{platform_span}-01"))
            .json(&json!({"service_id": service, "plan_id": plan})),
    )
    .await;
    assert_eq!(response.status, 201);

    let (server, client) = eventually(
        "server and client spans exported",
        Duration::from_secs(20),
        || async {
            let spans = otlp.spans();
            let server = spans
                .iter()
                .find(|s| s.trace_id == trace_id && s.name == "PUT /v2/service_instances/{instance_id}")?;
            let client = spans
                .iter()
                .find(|s| s.trace_id == trace_id && s.parent_span_id == server.span_id)?;
            Some((server.clone(), client.clone()))
        },
    )
    .await;
    // The platform's trace is continued: same trace, the platform's span is the parent.
    assert_eq!(server.parent_span_id, platform_span);
    assert_eq!(server.service, "osb-gateway-under-test");
    assert_eq!(server.kind, 2, "SERVER");
    assert_eq!(
        server.attribute("http.route"),
        Some("/v2/service_instances/{instance_id}")
    );
    assert_eq!(server.attribute("http.request.method"), Some("PUT"));
    assert_eq!(server.attribute("http.response.status_code"), Some("201"));
    assert_eq!(server.attribute("osb.platform"), Some("k8s-prod"));
    assert_eq!(server.attribute("osb.operation"), Some("provision"));
    assert!(server.attribute("osb.request_identity").is_some());
    // One client span per upstream call, child of the server span.
    assert_eq!((client.name.as_str(), client.kind), ("PUT", 3), "CLIENT");
    assert_eq!(client.attribute("osb.broker.name"), Some("fb"));
    assert_eq!(client.attribute("server.address"), Some("127.0.0.1"));
    assert_eq!(client.attribute("http.response.status_code"), Some("201"));
    // The upstream received a traceparent of the same trace, the client span as its parent.
    let put = &broker.received("PUT", "/v2/service_instances/traced-1")[0];
    let traceparent = put.header("traceparent").unwrap();
    assert_eq!(traceparent, format!("00-{trace_id}-{}-01", client.span_id));

    // Without a traceparent the gateway starts a trace of its own.
    let response = platform(&url).catalog().await;
    assert_eq!(response.status, 200);
    eventually(
        "a fresh trace for the catalog",
        Duration::from_secs(20),
        || async {
            otlp.spans().into_iter().find(|s| {
                s.name == "GET /v2/catalog" && s.trace_id != trace_id && s.parent_span_id.is_empty()
            })
        },
    )
    .await;
    child.kill().await.unwrap();
    otlp.stop().await;
}

#[tokio::test]
async fn secrets_appear_in_no_log_span_or_metric() {
    let otlp = OtlpReceiver::start().await;
    let broker = FakeBroker::with_catalog(small_catalog()).await;
    broker.on("PUT", "/v2/service_instances/s1", Reply::new(201, "{}"));
    let credentials =
        r#"{"credentials":{"username":"svc","password":"cred-pw-KV77","uri":"db://svc:cred-pw-KV77@host"}}"#;
    broker.on(
        "PUT",
        "/v2/service_instances/s1/service_bindings/b1",
        Reply::new(201, credentials),
    );
    broker.on(
        "GET",
        "/v2/service_instances/s1/service_bindings/b1",
        Reply::new(200, credentials),
    );
    broker.on("DELETE", "/v2/service_instances/*", Reply::new(200, "{}"));
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url, admin) = spawn_traced(dir.path(), &yaml(&broker), &otlp).await;
    let (service, plan) = ids(&url).await;
    // base64 of {"username":"user-secret-MM99","uid":"1"}
    let identity = "kubernetes eyJ1c2VybmFtZSI6InVzZXItc2VjcmV0LU1NOTkiLCJ1aWQiOiIxIn0=";

    let q = Query::ids(&service, &plan).render();
    let steps = [
        (
            Method::PUT,
            "/v2/service_instances/s1".to_owned(),
            Some(
                json!({"service_id": service, "plan_id": plan, "parameters": {"db_password": "param-pw-JH63"}}),
            ),
        ),
        (
            Method::PUT,
            "/v2/service_instances/s1/service_bindings/b1".to_owned(),
            Some(json!({"service_id": service, "plan_id": plan, "parameters": {"token": "param-pw-JH63"}})),
        ),
        (
            Method::GET,
            "/v2/service_instances/s1/service_bindings/b1".to_owned(),
            None,
        ),
        (
            Method::DELETE,
            format!("/v2/service_instances/s1/service_bindings/b1{q}"),
            None,
        ),
        (Method::DELETE, format!("/v2/service_instances/s1{q}"), None),
    ];
    for (method, path, body) in steps {
        let mut request = platform(&url)
            .request(method.clone(), &path)
            .header("X-Broker-API-Originating-Identity", identity);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = OsbResponse::send(request).await;
        assert!(
            response.status.is_success(),
            "{method} {path}: {}",
            response.status
        );
    }
    // The upstream did get what it needs: its credentials, the parameters, the identity.
    let bind = &broker.received("PUT", "/v2/service_instances/s1/service_bindings/b1")[0];
    assert!(
        bind.header("authorization")
            .is_some_and(|a| a.starts_with("Basic "))
    );
    assert_eq!(bind.header("x-broker-api-originating-identity"), Some(identity));

    eventually(
        "spans of the lifecycle exported",
        Duration::from_secs(20),
        || async {
            (otlp
                .spans()
                .iter()
                .filter(|s| s.name.starts_with("DELETE"))
                .count()
                >= 2)
                .then_some(())
        },
    )
    .await;
    let metrics = http()
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("http_server_request_duration_seconds_count"),
        "metrics were read"
    );
    child.kill().await.unwrap();
    let logs = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap();
    assert!(
        logs.contains("request") && logs.lines().count() > 10,
        "logs were captured at debug level"
    );
    let spans = otlp.raw_text();
    for secret in [
        PASSWORD,
        "up-pw-QL42",
        "cred-pw-KV77",
        "param-pw-JH63",
        "user-secret-MM99",
        "eyJ1c2VybmFtZSI6InVzZXItc2VjcmV0LU1NOTkiLCJ1aWQiOiIxIn0",
    ] {
        assert!(!logs.contains(secret), "{secret} in the logs");
        assert!(!spans.contains(secret), "{secret} in an exported span");
        assert!(!metrics.contains(secret), "{secret} in /metrics");
    }
    // Every log line of a request carries its trace id.
    assert!(
        logs.lines().any(|l| l.contains("\"trace_id\"")),
        "trace ids in the logs"
    );
    otlp.stop().await;
}

#[tokio::test]
async fn rate_limits_refuse_before_anything_is_forwarded() {
    let limited = FakeBroker::with_catalog(small_catalog()).await;
    limited.on("PUT", "/v2/service_instances/*", Reply::new(201, "{}"));
    let policy = "limits:\n  platforms:\n    - {name: k8s-prod, calls_per_sec: 1, calls_burst: 3}\n  brokers:\n    - {name: fb, calls_per_sec: 1, calls_burst: 5}\n";
    let yaml = format!(
        "{}policy_file: policy.yaml\nbrokers:\n  - name: fb\n    url: {}\n",
        platforms_yaml(),
        limited.url()
    );
    let gateway = TestGateway::start_with_files(&yaml, &[("policy.yaml", policy)]).await;
    let catalog = gateway.ready_catalog().await;
    let (service, plan) = (
        catalog["services"][0]["id"].clone(),
        catalog["services"][0]["plans"][0]["id"].clone(),
    );

    // k8s-prod: a burst of 3, then 429 with Retry-After; the upstream sees only the 3.
    let body = json!({"service_id": service, "plan_id": plan});
    let osb = gateway.osb();
    let mut statuses = Vec::new();
    for i in 0..6 {
        let response = osb.provision(&format!("p-{i}"), Query::none(), &body).await;
        statuses.push(response.status.as_u16());
        if response.status == 429 {
            let retry_after: u64 = response.header("retry-after").unwrap().parse().unwrap();
            assert!((1..=2).contains(&retry_after), "{retry_after}");
            assert_eq!(response.body["error"], "RateLimited");
            assert!(response.description().unwrap().contains("k8s-prod"));
        }
    }
    assert_eq!(statuses, [201, 201, 201, 429, 429, 429]);
    assert_eq!(limited.received("PUT", "/v2/service_instances/").len(), 3);
    // Catalog reads have their own quota (none here): still served.
    assert_eq!(gateway.catalog().await.status(), 200);

    // cf has no platform limit, but the broker's outbound limit (burst 5, 3 used) protects it.
    let cf = osb.clone().bearer(BEARER_TOKEN);
    let mut statuses = Vec::new();
    for i in 0..4 {
        let response = cf.provision(&format!("c-{i}"), Query::none(), &body).await;
        statuses.push(response.status.as_u16());
    }
    assert_eq!(statuses, [201, 201, 429, 429]);
    assert_eq!(
        limited.received("PUT", "/v2/service_instances/").len(),
        5,
        "nothing sent past the limit"
    );
    // Nothing was recorded for the refused calls either.
    let counts = gateway.registry().await;
    assert_eq!(counts["instances"], 5);
    let metrics = gateway.metrics().await;
    assert!(
        metrics.contains(
            r#"osb_gateway_rate_limit_rejections_total{scope="platform",name="k8s-prod",class="calls"} 3"#
        ),
        "{metrics}"
    );
    assert!(
        metrics
            .contains(r#"osb_gateway_rate_limit_rejections_total{scope="broker",name="fb",class="calls"} 2"#)
    );
}

#[tokio::test]
async fn an_outbound_limit_on_one_broker_leaves_the_others_alone() {
    let slow = FakeBroker::with_catalog(small_catalog()).await;
    let fast = FakeBroker::with_catalog(small_catalog()).await;
    for broker in [&slow, &fast] {
        broker.on("PUT", "/v2/service_instances/*", Reply::new(201, "{}"));
    }
    // The same catalog under two namespaces; only `slow` is limited.
    let policy = "limits:\n  brokers:\n    - {name: slow, calls_per_sec: 1, calls_burst: 1}\n";
    let yaml = format!(
        "{}policy_file: policy.yaml\nbrokers:\n  - name: slow\n    url: {}\n  - name: fast\n    url: {}\n",
        platforms_yaml(),
        slow.url(),
        fast.url()
    );
    let gateway = TestGateway::start_with_files(&yaml, &[("policy.yaml", policy)]).await;
    let catalog = gateway.ready_catalog().await;
    let find = |name: &str| {
        let s = service(&catalog, name);
        json!({"service_id": s["id"], "plan_id": s["plans"][0]["id"]})
    };
    let (on_slow, on_fast) = (find("slow.db"), find("fast.db"));
    let osb = gateway.osb();
    assert_eq!(osb.provision("s-0", Query::none(), &on_slow).await.status, 201);
    assert_eq!(osb.provision("s-1", Query::none(), &on_slow).await.status, 429);
    for i in 0..5 {
        assert_eq!(
            osb.provision(&format!("f-{i}"), Query::none(), &on_fast)
                .await
                .status,
            201,
            "fast is unaffected"
        );
    }
    assert_eq!(slow.received("PUT", "/v2/service_instances/").len(), 1);
    assert_eq!(fast.received("PUT", "/v2/service_instances/").len(), 5);
}

/// A few platform calls that make spans: catalog reads and a provision.
async fn make_spans(url: &str) {
    let (service, plan) = ids(url).await;
    for n in 0..5 {
        let instance = format!("tls-{n}");
        let response = platform(url)
            .provision(
                &instance,
                Query::none(),
                &json!({"service_id": service, "plan_id": plan}),
            )
            .await;
        assert!(response.status.is_success(), "{}", response.text());
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
}

#[tokio::test]
async fn traces_go_over_https_to_a_receiver_behind_a_private_ca_and_failures_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "otel");
    let receiver_cert = ca.server("collector");
    let client = ca.client("gateway");
    let otlp = OtlpReceiver::start().await;
    // The collector asks for a client certificate signed by its CA.
    let https = otlp.start_tls(&receiver_cert, Some(&ca.ca_file()));
    let broker = FakeBroker::with_catalog(small_catalog()).await;
    broker.on("PUT", "/v2/service_instances/*", Reply::new(201, "{}"));

    // Trusting the private CA and presenting the client certificate: spans arrive.
    let tls_keys = format!(
        "telemetry:\n  tls_ca_file: {}\n  tls_client_cert_file: {}\n  tls_client_key_file: {}\n",
        ca.ca_file().display(),
        client.cert.display(),
        client.key.display()
    );
    let good = dir.path().join("good");
    std::fs::create_dir(&good).unwrap();
    let yaml_with_keys = format!("{}{tls_keys}", yaml(&broker));
    let (mut child, url, admin) = spawn_exporting(&good, &yaml_with_keys, &https).await;
    make_spans(&url).await;
    eventually("spans arrive over https", Duration::from_secs(20), || async {
        otlp.spans()
            .iter()
            .any(|s| s.name == "PUT /v2/service_instances/{instance_id}")
            .then_some(())
    })
    .await;
    let metrics = http()
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("osb_gateway_trace_export_failures_total 0"),
        "no failure counted: {}",
        metrics
            .lines()
            .filter(|l| l.contains("trace_export"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    child.kill().await.unwrap();

    // Without the CA the receiver is broken for the gateway: failures are counted and logged,
    // at a bounded rate.
    let bad = dir.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    let spans_before = otlp.spans().len();
    let (mut child, url, admin) = spawn_exporting(&bad, &yaml(&broker), &https).await;
    make_spans(&url).await;
    let failures = eventually("export failures counted", Duration::from_secs(20), || async {
        let metrics = http()
            .get(format!("{admin}/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let failures: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("osb_gateway_trace_export_failures_total "))?
            .trim()
            .parse()
            .ok()?;
        (failures >= 3).then_some(failures)
    })
    .await;
    child.kill().await.unwrap();
    let log = std::fs::read_to_string(bad.join("stderr.log")).unwrap();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Trace export failed"))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "{failures} failures, logged once a minute at most: {lines:?}"
    );
    assert!(
        lines[0].contains("certificate") || lines[0].contains("UnknownIssuer"),
        "{}",
        lines[0]
    );
    assert_eq!(otlp.spans().len(), spans_before, "nothing arrived without the CA");
    otlp.stop().await;
}

#[tokio::test]
async fn a_failed_call_logs_its_ids_without_colours_and_the_access_log_has_every_call() {
    let otlp = OtlpReceiver::start().await;
    let broker = FakeBroker::with_catalog(small_catalog()).await;
    broker.on("PUT", "/v2/service_instances/*", Reply::new(500, "{}"));
    let dir = tempfile::tempdir().unwrap();
    let with_access_log = format!("{}telemetry:\n  access_log: true\n", yaml(&broker));
    let (mut child, url, _) = spawn_traced(dir.path(), &with_access_log, &otlp).await;
    let (service, plan) = ids(&url).await;
    let failed = platform(&url)
        .provision(
            "failing-instance-5c1e",
            Query::none(),
            &json!({"service_id": service, "plan_id": plan}),
        )
        .await;
    assert_eq!(failed.status, 502, "{}", failed.text());
    let log = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap();
    let line = eventually("the failure is logged", Duration::from_secs(10), || async {
        std::fs::read_to_string(dir.path().join("stderr.log"))
            .unwrap()
            .lines()
            .find(|l| l.contains("Request failed."))
            .map(str::to_owned)
    })
    .await;
    assert!(line.contains("\"level\":\"ERROR\""), "{line}");
    assert!(
        line.contains("failing-instance-5c1e"),
        "the ERROR line names the instance: {line}"
    );
    assert!(!log.contains('\u{1b}'), "no ANSI escapes in a log file");
    let access = eventually("the access log has the call", Duration::from_secs(10), || async {
        std::fs::read_to_string(dir.path().join("stderr.log"))
            .unwrap()
            .lines()
            .find(|l| l.contains("\"target\":\"osb_gateway::access\"") && l.contains("\"status\":502"))
            .map(str::to_owned)
    })
    .await;
    for part in [
        "\"route\":\"/v2/service_instances/{instance_id}\"",
        "\"method\":\"PUT\"",
        "\"platform\":\"k8s-prod\"",
        "failing-instance-5c1e",
    ] {
        assert!(access.contains(part), "{part} in {access}");
    }
    child.kill().await.unwrap();
    otlp.stop().await;
}
