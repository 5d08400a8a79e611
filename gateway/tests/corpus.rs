//! A corpus of malformed requests: every one gets a 4xx with an OSB error body, none reaches an
//! upstream, none takes the gateway down.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::fake_broker::{FakeBroker, Reply};
use crate::support::gateway::{PLATFORM_PASSWORD, PLATFORM_USER, TestGateway, platforms_yaml};
use crate::support::osb::Query;
use crate::support::raw;
use crate::support::small_catalog::{Ids, gateway_for, small_catalog};

/// One malformed request: method, path (with query), headers, body.
struct Case {
    what: String,
    method: Method,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    /// Send without the platform's credentials and version header (to test those).
    bare: bool,
}

fn case(what: impl Into<String>, method: Method, path: impl Into<String>, body: Option<Vec<u8>>) -> Case {
    Case {
        what: what.into(),
        method,
        path: path.into(),
        headers: Vec::new(),
        body,
        bare: false,
    }
}

fn corpus(service: &str, plan: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    let instance = "/v2/service_instances/ok";
    let binding = "/v2/service_instances/ok/service_bindings/b";
    let body_endpoints = [
        (Method::PUT, "/v2/service_instances/new-1"),
        (Method::PATCH, instance),
        (Method::PUT, binding),
    ];

    // Not JSON at all, or not an object.
    let not_json: [&[u8]; 14] = [
        b"",
        b"{",
        b"}",
        b"{\"service_id\":",
        b"[1,2",
        b"null",
        b"true",
        b"42",
        b"\"text\"",
        b"[]",
        b"{\"a\":1,}",
        b"{'service_id':'x'}",
        b"\xff\xfe\x00",
        b"{\"service_id\":\"\\ud800\"}",
    ];
    for (method, path) in &body_endpoints {
        for (i, body) in not_json.iter().enumerate() {
            cases.push(case(
                format!("not a JSON object #{i} on {method} {path}"),
                method.clone(),
                *path,
                Some(body.to_vec()),
            ));
        }
    }
    // Wrong types for every field OSB defines.
    let wrong_types = [
        ("service_id", json!(7)),
        ("service_id", json!(["x"])),
        ("service_id", json!({"a": 1})),
        ("service_id", json!("")),
        ("plan_id", json!(false)),
        ("plan_id", json!(null)),
        ("plan_id", json!("")),
        ("parameters", json!("a=1")),
        ("parameters", json!([1, 2])),
        ("parameters", json!(3)),
        ("context", json!("kubernetes")),
        ("context", json!({"platform": 1})),
        ("context", json!({"platform": ""})),
        ("organization_guid", json!(1)),
        ("organization_guid", json!("")),
        ("space_guid", json!([])),
        ("maintenance_info", json!("1.0")),
        ("previous_values", json!([])),
        ("previous_values", json!({"plan_id": 3})),
        ("bind_resource", json!("app")),
        ("app_guid", json!("")),
    ];
    for (method, path) in &body_endpoints {
        for (field, value) in &wrong_types {
            let mut body = json!({"service_id": service, "plan_id": plan});
            body[*field] = value.clone();
            cases.push(case(
                format!("{field}={value} on {method} {path}"),
                method.clone(),
                *path,
                Some(serde_json::to_vec(&body).unwrap()),
            ));
        }
    }
    // Missing required fields; unknown or mismatched ids.
    for (what, body) in [
        ("no service_id", json!({"plan_id": plan})),
        ("no plan_id", json!({"service_id": service})),
        (
            "unknown plan",
            json!({"service_id": service, "plan_id": "no-such-plan"}),
        ),
        (
            "unknown service",
            json!({"service_id": "no-such-service", "plan_id": plan}),
        ),
        ("empty object", json!({})),
    ] {
        cases.push(case(
            format!("provision: {what}"),
            Method::PUT,
            "/v2/service_instances/new-2",
            Some(serde_json::to_vec(&body).unwrap()),
        ));
        cases.push(case(
            format!("bind: {what}"),
            Method::PUT,
            binding,
            Some(serde_json::to_vec(&body).unwrap()),
        ));
    }
    // Huge bodies.
    for size in [1024 * 1024 + 1, 4 * 1024 * 1024] {
        let blob = format!(
            "{{\"service_id\":\"{service}\",\"plan_id\":\"{plan}\",\"parameters\":{{\"x\":\"{}\"}}}}",
            "y".repeat(size)
        );
        for (method, path) in &body_endpoints {
            cases.push(case(
                format!("{size}-byte body on {method} {path}"),
                method.clone(),
                *path,
                Some(blob.clone().into_bytes()),
            ));
        }
    }
    // Bad ids in the path.
    let bad_ids = [
        "a%20b",
        "%00",
        "a%2Fb",
        "..",
        "%2e%2e",
        "%C3%A9t%C3%A9",
        "a%3Cb%3E",
        "a%22b",
        "a;b",
        "a,b",
        "a%25",
        "a@b",
        "a+b",
        "a=b",
        "a!b",
        "a*b",
        "(x)",
        "%7Ba%7D",
        &"x".repeat(256),
    ];
    for id in bad_ids {
        let body = serde_json::to_vec(&json!({"service_id": service, "plan_id": plan})).unwrap();
        cases.push(case(
            format!("instance id {id:.20}"),
            Method::PUT,
            format!("/v2/service_instances/{id}"),
            Some(body.clone()),
        ));
        cases.push(case(
            format!("binding id {id:.20}"),
            Method::PUT,
            format!("{instance}/service_bindings/{id}"),
            Some(body),
        ));
        cases.push(case(
            format!("fetch id {id:.20}"),
            Method::GET,
            format!("/v2/service_instances/{id}"),
            None,
        ));
    }
    // Bad query strings.
    for query in [
        "accepts_incomplete=yes",
        "accepts_incomplete=1",
        "accepts_incomplete=",
        "accepts_incomplete=%zz",
        "service_id=&plan_id=x",
        "service_id=x&plan_id=",
        "operation=",
        "service_id",
        "plan_id=%",
    ] {
        let body = serde_json::to_vec(&json!({"service_id": service, "plan_id": plan})).unwrap();
        cases.push(case(
            format!("provision ?{query}"),
            Method::PUT,
            format!("/v2/service_instances/q-1?{query}"),
            Some(body),
        ));
        cases.push(case(
            format!("deprovision ?{query}"),
            Method::DELETE,
            format!("{instance}?{query}"),
            None,
        ));
    }
    cases.push(case("deprovision without ids", Method::DELETE, instance, None));
    cases.push(case("unbind without ids", Method::DELETE, binding, None));
    cases.push(case(
        "deprovision with another service",
        Method::DELETE,
        format!("{instance}?service_id=other&plan_id={plan}"),
        None,
    ));
    // Header abuse.
    for (name, value) in [
        ("X-Broker-API-Version", "3.0"),
        ("X-Broker-API-Version", "two"),
        ("X-Broker-API-Version", ""),
        ("X-Broker-API-Version", "1.13"),
        ("X-Broker-API-Version", "2."),
    ] {
        let mut c = case(format!("{name}: {value:?}"), Method::GET, "/v2/catalog", None);
        c.bare = true;
        c.headers.push((
            "Authorization".into(),
            format!(
                "Basic {}",
                base64(&format!("{PLATFORM_USER}:{PLATFORM_PASSWORD}"))
            ),
        ));
        c.headers.push((name.into(), value.into()));
        cases.push(c);
    }
    for authorization in [
        "",
        "Basic",
        "Basic !!!",
        "Basic Zm9v",
        "Bearer",
        "Bearer ",
        "Negotiate abc",
        &format!("Basic {}", "A".repeat(20_000)),
        &format!("Basic {}", base64("k8s:wrong")),
        &format!("Basic {}", base64(":")),
        "Basic w6nDqQ==",
    ] {
        let mut c = case(
            format!("Authorization: {authorization:.30}"),
            Method::PUT,
            "/v2/service_instances/auth-1",
            Some(b"{}".to_vec()),
        );
        c.bare = true;
        c.headers.push(("X-Broker-API-Version".into(), "2.17".into()));
        c.headers.push(("Authorization".into(), authorization.into()));
        cases.push(c);
    }
    // Wrong methods and unknown routes.
    for (method, path) in [
        (Method::POST, "/v2/catalog"),
        (Method::PUT, "/v2/catalog"),
        (Method::DELETE, "/v2/catalog"),
        (Method::POST, instance),
        (Method::POST, binding),
        (Method::PATCH, binding),
        (Method::PUT, "/v2/service_instances/ok/last_operation"),
        (
            Method::DELETE,
            "/v2/service_instances/ok/service_bindings/b/last_operation",
        ),
        (Method::GET, "/v2"),
        (Method::GET, "/v2/"),
        (Method::GET, "/v3/catalog"),
        (Method::GET, "/v2/service_instances"),
        (Method::GET, "/v2/service_instances/"),
        (Method::GET, "/v2/service_instances/ok/service_bindings"),
        (Method::GET, "/v2/service_instances/ok/other"),
        (Method::GET, "/"),
        (Method::GET, "/admin/brokers"),
        (Method::GET, "/metrics"),
    ] {
        cases.push(case(format!("{method} {path}"), method, path, None));
    }
    cases
}

/// Provisions instance `ok` and binds `b` to it (the broker must answer both 201), for the
/// malformed requests to aim at.
async fn instance_ok_with_binding_b(gateway: &TestGateway, ids: &Ids) {
    let osb = gateway.osb();
    let response = osb.provision("ok", Query::none(), &ids.provision()).await;
    assert_eq!(response.status, 201);
    let response = osb.bind("ok", "b", Query::none(), &ids.small_body()).await;
    assert_eq!(response.status, 201);
}

fn base64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[tokio::test]
async fn two_hundred_malformed_requests_get_osb_4xx_and_reach_nothing() {
    let broker = FakeBroker::with_catalog(small_catalog()).await;
    broker.on("PUT", "/v2/service_instances/ok", Reply::new(201, "{}"));
    broker.on(
        "PUT",
        "/v2/service_instances/ok/service_bindings/b",
        Reply::new(201, "{}"),
    );
    let (gateway, ids) = gateway_for(&broker).await;
    // Something real to aim at.
    instance_ok_with_binding_b(&gateway, &ids).await;
    let forwarded = |b: &FakeBroker| b.recorded().iter().filter(|r| r.path != "/v2/catalog").count();
    let before = forwarded(&broker);

    let cases = corpus(&ids.service, &ids.small);
    assert!(cases.len() >= 200, "{} cases", cases.len());
    // The platform's client, and one without credentials or version for the cases that set them.
    let (platform, bare) = (gateway.osb(), gateway.osb().anonymous().version(None));
    let mut failures = Vec::new();
    for c in &cases {
        let client = if c.bare { &bare } else { &platform };
        let mut request = client.request(c.method.clone(), &c.path);
        for (name, value) in &c.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        if let Some(body) = &c.body {
            request = request
                .header("content-type", "application/json")
                .body(body.clone());
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                failures.push(format!("{}: no answer ({e})", c.what));
                continue;
            }
        };
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let osb = serde_json::from_str::<Value>(&text)
            .is_ok_and(|v| v.get("description").is_some_and(Value::is_string));
        if !status.is_client_error() || !osb {
            failures.push(format!("{}: {status} {text:.120}", c.what));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} malformed requests were not OSB 4xx:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    let leaked: Vec<String> = broker
        .recorded()
        .iter()
        .filter(|r| r.path != "/v2/catalog")
        .skip(before)
        .map(|r| format!("{} {} {}", r.method, r.path, String::from_utf8_lossy(&r.body)))
        .collect();
    assert!(
        leaked.is_empty(),
        "malformed requests reached the upstream: {leaked:#?}"
    );
    // Still standing.
    assert_eq!(gateway.catalog().await.status(), 200);
}

/// Dot segments in every encoding a URL library or web framework would normalise.
const DOTS: &[&str] = &[
    ".",
    "..",
    "...",
    "%2e",
    "%2E",
    "%2e%2e",
    "%2E%2E",
    "%2e%2E",
    ".%2e",
    "%2e.",
    "%2E.",
    "%252e%252e",
];

/// Every endpoint with a dot id in each place an id goes, on an existing instance (`ok`) and
/// binding (`b`) so that the binding forms reach routing; also empty and trailing-slash ids.
fn dot_requests(service: &str, plan: &str) -> Vec<(String, Vec<u8>)> {
    let ids = format!("service_id={service}&plan_id={plan}");
    let provision = serde_json::to_vec(&json!({"service_id": service, "plan_id": plan})).unwrap();
    let update = serde_json::to_vec(&json!({"service_id": service, "parameters": {"a": 2}})).unwrap();
    let mut requests = Vec::new();
    let mut add = |method: &str, target: String, body: Option<&[u8]>| {
        requests.push((format!("{method} {target}"), raw::request(method, &target, body)));
    };
    for dot in DOTS {
        let instance = format!("/v2/service_instances/{dot}");
        let binding = format!("/v2/service_instances/ok/service_bindings/{dot}");
        let bound = format!("/v2/service_instances/{dot}/service_bindings/b");
        add(
            "PUT",
            format!("{instance}?accepts_incomplete=true"),
            Some(&provision),
        );
        add("PATCH", instance.clone(), Some(&update));
        add("DELETE", format!("{instance}?{ids}"), None);
        add("GET", instance.clone(), None);
        add("GET", format!("{instance}/last_operation?{ids}"), None);
        add("PUT", binding.clone(), Some(&provision));
        add("DELETE", format!("{binding}?{ids}"), None);
        add("GET", binding.clone(), None);
        add("GET", format!("{binding}/last_operation"), None);
        add("PUT", bound.clone(), Some(&provision));
        add("DELETE", format!("{bound}?{ids}"), None);
        add("GET", bound.clone(), None);
        add("GET", format!("{bound}/last_operation"), None);
    }
    for target in [
        "/v2/service_instances/ok/",
        "/v2/service_instances/ok//service_bindings/b",
        "/v2/service_instances/ok/service_bindings/",
        "/v2/service_instances/ok/service_bindings//last_operation",
        "/v2/service_instances//service_bindings/b",
    ] {
        add("DELETE", format!("{target}?{ids}"), None);
        add("PUT", target.to_owned(), Some(&provision));
        add("GET", target.to_owned(), None);
    }
    requests
}

#[tokio::test]
async fn dot_segment_ids_in_every_encoding_are_refused_before_routing() {
    let broker = FakeBroker::with_catalog(small_catalog()).await;
    // Whatever got through would find a broker that does what it is asked.
    for method in ["GET", "PUT", "PATCH", "DELETE"] {
        broker.on(method, "/v2/service_instances/*", Reply::new(200, "{}"));
    }
    broker.on("PUT", "/v2/service_instances/ok", Reply::new(201, "{}"));
    broker.on(
        "PUT",
        "/v2/service_instances/ok/service_bindings/b",
        Reply::new(201, "{}"),
    );
    let (gateway, ids) = gateway_for(&broker).await;
    instance_ok_with_binding_b(&gateway, &ids).await;
    let before = broker.recorded().len();

    let requests = dot_requests(&ids.service, &ids.small);
    assert!(requests.len() >= 150, "{} requests", requests.len());
    let mut failures = Vec::new();
    for (what, bytes) in &requests {
        match raw::send(gateway.addr, bytes).await {
            Some(answer) if (400..500).contains(&answer.status) && answer.is_osb_error() => {}
            Some(answer) => failures.push(format!(
                "{what}: {} {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            )),
            None => failures.push(format!("{what}: no answer")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} were not OSB 4xx:\n{}",
        failures.len(),
        requests.len(),
        failures.join("\n")
    );
    let leaked: Vec<String> = broker
        .recorded()
        .iter()
        .skip(before)
        .filter(|r| r.path != "/v2/catalog")
        .map(|r| format!("{} {}?{}", r.method, r.path, r.query))
        .collect();
    assert!(leaked.is_empty(), "reached the upstream: {leaked:#?}");
    // The instance and binding are untouched.
    let registry = gateway.registry().await;
    assert_eq!(
        (registry["instances"].as_u64(), registry["bindings"].as_u64()),
        (Some(1), Some(1))
    );
}

/// Requests broken below OSB, at the HTTP layer: each answered 4xx with an OSB error body (or,
/// for a body that never ends, 408 once the read timeout is up), nothing forwarded.
#[tokio::test]
async fn protocol_abuse_gets_osb_json_answers() {
    use std::time::Duration;

    let broker = FakeBroker::with_catalog(small_catalog()).await;
    let yaml = format!(
        "{}request_read_timeout_secs: 1\nbrokers:\n  - name: fb\n    url: {}\n    refresh_interval_secs: 3600\n",
        platforms_yaml(),
        broker.url()
    );
    let gateway = TestGateway::start(&yaml).await;
    let catalog = gateway.ready_catalog().await;
    let service = catalog["services"][0]["id"].as_str().unwrap().to_owned();
    let plan = catalog["services"][0]["plans"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let provision = serde_json::to_vec(&json!({"service_id": service, "plan_id": plan})).unwrap();

    let flood: Vec<String> = (0..120).map(|i| format!("X-Flood-{i}: {i}")).collect();
    let big_header = vec![format!("X-Big: {}", "b".repeat(200 * 1024))];
    // (what, pieces sent one after another with their delays, expected status)
    type Case = (&'static str, Vec<(Vec<u8>, Duration)>, u16);
    let mut cases: Vec<Case> = vec![
        (
            "120 headers",
            vec![(raw::head("GET", "/v2/catalog", None, &flood), Duration::ZERO)],
            431,
        ),
        (
            "a 200 KiB header",
            vec![(raw::head("GET", "/v2/catalog", None, &big_header), Duration::ZERO)],
            431,
        ),
        (
            "a raw non-ASCII path",
            vec![(
                raw::request("GET", "/v2/service_instances/\u{e9}t\u{e9}", None),
                Duration::ZERO,
            )],
            400,
        ),
        (
            "a 64 KiB query",
            vec![(
                raw::request(
                    "GET",
                    &format!("/v2/service_instances/x?q={}", "q".repeat(64 * 1024)),
                    None,
                ),
                Duration::ZERO,
            )],
            400,
        ),
        (
            "a control character in a header",
            vec![(
                raw::head("GET", "/v2/catalog", None, &["X-Bad: a\u{1}b".to_owned()]),
                Duration::ZERO,
            )],
            400,
        ),
        (
            "a request line that is not HTTP",
            vec![(b"HELLO\r\n\r\n".to_vec(), Duration::ZERO)],
            400,
        ),
    ];
    // A chunked body with a chunk size that is not hex.
    let mut bad_chunk = raw::head(
        "PUT",
        "/v2/service_instances/chunky",
        None,
        &[
            "Content-Type: application/json".to_owned(),
            "Transfer-Encoding: chunked".to_owned(),
        ],
    );
    bad_chunk.extend_from_slice(b"zz\r\n{}\r\n0\r\n\r\n");
    cases.push(("a broken chunked body", vec![(bad_chunk, Duration::ZERO)], 400));
    // A body that trickles in: one byte every 400 ms of a 60-byte body (read timeout 1 s).
    let mut slow = vec![(
        raw::head("PUT", "/v2/service_instances/slow", Some(provision.len()), &[]),
        Duration::ZERO,
    )];
    for byte in provision.iter().take(10) {
        slow.push((vec![*byte], Duration::from_millis(400)));
    }
    cases.push(("a body that trickles in", slow, 408));
    // A head that never ends.
    let head = raw::request("GET", "/v2/catalog", None);
    let slow_head: Vec<(Vec<u8>, Duration)> = head
        .chunks(8)
        .map(|piece| (piece.to_vec(), Duration::from_millis(400)))
        .collect();
    cases.push(("a head that trickles in", slow_head, 408));

    let mut failures = Vec::new();
    // A well-framed chunked body, in pieces, is read whole: the instance is provisioned.
    broker.on("PUT", "/v2/service_instances/chunked", Reply::new(201, "{}"));
    let mut good = vec![(
        raw::head(
            "PUT",
            "/v2/service_instances/chunked",
            None,
            &[
                "Content-Type: application/json".to_owned(),
                "Transfer-Encoding: chunked".to_owned(),
            ],
        ),
        Duration::ZERO,
    )];
    for piece in provision.chunks(9) {
        let mut chunk = format!("{:x};n=1\r\n", piece.len()).into_bytes();
        chunk.extend_from_slice(piece);
        chunk.extend_from_slice(b"\r\n");
        good.push((chunk, Duration::from_millis(20)));
    }
    good.push((b"0\r\nX-Trailer: t\r\n\r\n".to_vec(), Duration::from_millis(20)));
    let answer = raw::send_pieces(gateway.addr, &good).await.unwrap();
    assert_eq!(answer.status, 201, "{}", String::from_utf8_lossy(&answer.body));
    let before = broker.recorded().len();

    for (what, pieces, status) in &cases {
        match raw::send_pieces(gateway.addr, pieces).await {
            Some(answer) if answer.status == *status && answer.is_osb_error() => {
                assert_eq!(answer.header("content-type"), Some("application/json"), "{what}");
            }
            Some(answer) => failures.push(format!(
                "{what}: {} {} (expected {status})",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            )),
            None => failures.push(format!("{what}: no answer (expected {status})")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let leaked: Vec<String> = broker
        .recorded()
        .iter()
        .skip(before)
        .filter(|r| r.path != "/v2/catalog")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(leaked.is_empty(), "reached the upstream: {leaked:?}");
    // Still serving.
    assert_eq!(gateway.catalog().await.status(), 200);
}
