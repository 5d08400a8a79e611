//! Trust at the edge: nothing a platform sends bends what the gateway enforces, and the gateway is
//! no stricter than the broker behind it.
//!
//! - a deny rule on deprovision holds against every sequence of calls a platform can make (dot
//!   segments, trailing slashes, other platforms), judged by what the upstream received, read as a
//!   lenient web framework would read it;
//! - the circuit breaker counts each exchange once: N−1 failures keep it closed, the Nth opens it;
//!   4xx and 501 answers say the broker works;
//! - a fetch the service does not offer (`instances_retrievable` / `bindings_retrievable` not
//!   true) is refused by the gateway, nothing forwarded;
//! - without `parameters`, the broker decides (the plan's schema judges what was sent).

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::fake_broker::{FakeBroker, Recorded, Reply};
use crate::support::gateway::{BEARER_TOKEN, TestGateway, platforms_yaml};
use crate::support::osb::{Query, binding_path, instance_path, plan_ids};
use crate::support::raw;

/// A catalog: `db` (retrievable, bindable, one plan with a schema requiring `size`) and `queue`
/// (not retrievable, bindable).
fn catalog() -> Vec<u8> {
    serde_json::to_vec(&json!({"services": [
        {"name": "db", "id": "up-db", "description": "d", "bindable": true,
         "instances_retrievable": true, "bindings_retrievable": true,
         "plans": [
            {"name": "small", "id": "up-small", "description": "s"},
            {"name": "sized", "id": "up-sized", "description": "s", "schemas": {"service_instance": {"create": {
                "parameters": {"$schema": "http://json-schema.org/draft-04/schema#", "type": "object",
                               "required": ["size"], "properties": {"size": {"type": "integer"}}}}}}}
         ]},
        {"name": "queue", "id": "up-queue", "description": "q", "bindable": true,
         "plans": [{"name": "basic", "id": "up-basic", "description": "b"}]}
    ]}))
    .unwrap()
}

/// A gateway in front of `broker` (extra YAML appended to the broker entry) and its catalog.
async fn gateway(
    broker: &FakeBroker,
    broker_yaml: &str,
    files: &[(&str, &str)],
    top: &str,
) -> (TestGateway, Value) {
    let yaml = format!(
        "{}{top}brokers:\n  - name: fb\n    url: {}\n    timeout_secs: 2\n    refresh_interval_secs: 3600\n{broker_yaml}",
        platforms_yaml(),
        broker.url()
    );
    let gateway = TestGateway::start_with_files(&yaml, files).await;
    let catalog = gateway.ready_catalog().await;
    (gateway, catalog)
}

/// Gateway (service id, plan id) of `service`/`plan`.
fn ids(catalog: &Value, service: &str, plan: &str) -> (String, String) {
    plan_ids(catalog, &format!("fb.{service}"), plan)
}

/// Requests other than catalog fetches.
fn forwarded(broker: &FakeBroker) -> Vec<Recorded> {
    broker
        .recorded()
        .into_iter()
        .filter(|r| r.path != "/v2/catalog")
        .collect()
}

/// The path as a lenient framework routes it: percent-decoded dots, dot segments resolved, empty
/// segments and a trailing slash dropped.
fn as_routed(path: &str) -> String {
    let mut segments: Vec<String> = Vec::new();
    for segment in path.split('/') {
        let decoded = segment.replace("%2e", ".").replace("%2E", ".");
        match decoded.as_str() {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other.to_owned()),
        }
    }
    format!("/{}", segments.join("/"))
}

#[tokio::test]
async fn a_deny_rule_on_deprovision_holds_against_every_sequence_of_calls() {
    let broker = FakeBroker::with_catalog(catalog()).await;
    // A broker that does whatever reaches it.
    for method in ["GET", "PUT", "PATCH", "DELETE"] {
        broker.on(method, "/v2/service_instances/*", Reply::new(200, "{}"));
    }
    broker.on("PUT", "/v2/service_instances/keep", Reply::new(201, "{}"));
    broker.on(
        "PUT",
        "/v2/service_instances/keep/service_bindings/b",
        Reply::new(201, "{}"),
    );
    let policy = "deny:\n  - {name: no-deprovision, platforms: [k8s-prod], operations: [deprovision], reason: instances live forever}\n";
    let (gateway, catalog) = gateway(
        &broker,
        "",
        &[("policy.yaml", policy)],
        "policy_file: policy.yaml\n",
    )
    .await;
    let (service, plan) = ids(&catalog, "db", "small");
    let osb = gateway.osb();
    let body = json!({"service_id": service, "plan_id": plan});
    let created = osb.provision("keep", Query::none(), &body).await;
    assert_eq!(created.status, 201);
    let bound = osb.bind("keep", "b", Query::none(), &body).await;
    assert_eq!(bound.status, 201);

    let q = format!("service_id={service}&plan_id={plan}");
    let body = serde_json::to_vec(&body).unwrap();
    let mut attempts: Vec<(String, String, Option<&[u8]>)> = Vec::new();
    for target in [
        format!("/v2/service_instances/keep?{q}"),
        format!("/v2/service_instances/keep?{q}&accepts_incomplete=true"),
        format!("/v2/service_instances/keep/?{q}"),
        format!("/v2/service_instances/keep/.?{q}"),
        format!("/v2/service_instances/keep/%2e?{q}"),
        format!("/v2/service_instances/./keep?{q}"),
        format!("/v2/service_instances/keep%2F..?{q}"),
        format!("/v2/service_instances/keep/service_bindings/..?{q}"),
        format!("/v2/service_instances/keep/service_bindings/%2e%2e?{q}"),
        format!("/v2/service_instances/keep/service_bindings/%2E%2E?{q}"),
        format!("/v2/service_instances/keep/service_bindings/.%2e?{q}"),
        format!("/v2/service_instances/keep/service_bindings/.?{q}"),
        format!("/v2/service_instances/keep/service_bindings/b/..?{q}"),
        format!("/v2/service_instances/keep/service_bindings/b/../..?{q}"),
        format!("/v2/service_instances/keep/service_bindings/?{q}"),
        format!("/v2/service_instances/keep//?{q}"),
    ] {
        attempts.push(("DELETE".into(), target, None));
    }
    for target in [
        "/v2/service_instances/keep/service_bindings/..",
        "/v2/service_instances/keep/service_bindings/%2e%2e",
        "/v2/service_instances/keep/service_bindings/.",
    ] {
        attempts.push(("PUT".into(), target.to_owned(), Some(&body)));
    }
    let mut answers = Vec::new();
    for (method, target, body) in &attempts {
        let answer = raw::send(gateway.addr, &raw::request(method, target, *body)).await;
        let status = answer.as_ref().map_or(0, |a| a.status);
        assert!(
            (400..500).contains(&status) && answer.as_ref().is_some_and(raw::RawResponse::is_osb_error),
            "{method} {target}: {status}"
        );
        answers.push(status);
    }
    assert_eq!(
        answers.first(),
        Some(&403),
        "the real deprovision is denied by the rule"
    );
    // Another platform cannot reach it either.
    let other = osb
        .clone()
        .bearer(BEARER_TOKEN)
        .deprovision("keep", Query::ids(&service, &plan))
        .await;
    assert_eq!(other.status, 410);
    // Unbinding the real binding is allowed, and is an unbind.
    let unbound = osb.unbind("keep", "b", Query::ids(&service, &plan)).await;
    assert_eq!(unbound.status, 200);

    let deletes_of_the_instance: Vec<String> = forwarded(&broker)
        .iter()
        .filter(|r| r.method == "DELETE" && as_routed(&r.path) == "/v2/service_instances/keep")
        .map(|r| format!("{} {}?{}", r.method, r.path, r.query))
        .collect();
    assert!(
        deletes_of_the_instance.is_empty(),
        "the instance was deleted upstream: {deletes_of_the_instance:?}"
    );
    let instance_urls: Vec<String> = forwarded(&broker)
        .iter()
        .filter(|r| {
            r.method != "GET"
                && !r
                    .path
                    .starts_with("/v2/service_instances/keep/service_bindings/b")
        })
        .filter(|r| as_routed(&r.path) != "/v2/service_instances/keep" || r.method != "PUT")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(
        instance_urls.is_empty(),
        "unexpected upstream calls: {instance_urls:?}"
    );
    assert_eq!(gateway.registry().await["instances"], 1);
}

#[tokio::test]
async fn the_breaker_opens_on_the_nth_failure_and_ignores_answers_that_say_the_broker_works() {
    let broker = FakeBroker::with_catalog(catalog()).await;
    broker.on("PUT", "/v2/service_instances/*", Reply::new(201, "{}"));
    let (gateway, catalog) = gateway(
        &broker,
        "    breaker_failures: 4\n    breaker_open_secs: 60\n",
        &[],
        "",
    )
    .await;
    let (service, plan) = ids(&catalog, "db", "small");
    let osb = gateway.osb();
    let provision = json!({"service_id": service, "plan_id": plan});
    let created = osb.provision("i1", Query::none(), &provision).await;
    assert_eq!(created.status, 201);
    let update = |n: u32| {
        let (osb, body) = (
            osb.clone(),
            json!({"service_id": service, "parameters": {"n": n}}),
        );
        async move { osb.update("i1", Query::none(), &body).await }
    };
    let patches = |b: &FakeBroker| b.received("PATCH", "/v2/service_instances/i1").len();

    // Answers that say the broker works, many of them: 4xx, 501 on an optional endpoint (which the
    // platform gets as 502: not an answer OSB allows there).
    broker.on(
        "PATCH",
        "/v2/service_instances/i1",
        Reply::new(400, r#"{"description":"no"}"#),
    );
    broker.on(
        "GET",
        "/v2/service_instances/i1",
        Reply::new(501, r#"{"description":"not implemented"}"#),
    );
    for n in 0..6 {
        assert_eq!(update(n).await.status, 400);
        let fetched = osb.fetch_instance("i1").await;
        assert_eq!(fetched.status, 502);
    }
    assert_eq!(gateway.broker_status("fb").await["breaker"], "closed");

    // Failures: three keep it closed, each forwarded; the fourth opens it.
    broker.on("PATCH", "/v2/service_instances/i1", Reply::new(500, "{}"));
    for n in 1..=3 {
        assert_eq!(update(n).await.status, 502);
        assert_eq!(
            gateway.broker_status("fb").await["breaker"],
            "closed",
            "after {n} failures"
        );
    }
    let before = patches(&broker);
    assert_eq!(update(4).await.status, 502);
    assert_eq!(patches(&broker), before + 1, "the fourth failure was forwarded");
    assert_eq!(gateway.broker_status("fb").await["breaker"], "open");
    let refused = update(5).await;
    assert_eq!(refused.status, 503);
    assert_eq!(refused.body["error"], "UpstreamUnavailable");
    assert_eq!(patches(&broker), before + 1, "nothing is sent while open");
}

#[tokio::test]
async fn a_fetch_the_service_does_not_offer_is_refused_without_forwarding() {
    let broker = FakeBroker::with_catalog(catalog()).await;
    broker.on("PUT", "/v2/service_instances/*", Reply::new(201, "{}"));
    broker.on(
        "GET",
        "/v2/service_instances/*",
        Reply::new(200, r#"{"parameters":{}}"#),
    );
    let (gateway, catalog) = gateway(&broker, "", &[], "").await;
    let osb = gateway.osb();
    for (service_name, plan_name, instance, retrievable) in
        [("queue", "basic", "q1", false), ("db", "small", "d1", true)]
    {
        let (service, plan) = ids(&catalog, service_name, plan_name);
        let body = json!({"service_id": service, "plan_id": plan});
        let binding = format!("{instance}-b");
        let created = osb.provision(instance, Query::none(), &body).await;
        assert_eq!(created.status, 201);
        let created = osb.bind(instance, &binding, Query::none(), &body).await;
        assert_eq!(created.status, 201);
        for (path, field) in [
            (instance_path(instance), "instances_retrievable"),
            (binding_path(instance, &binding), "bindings_retrievable"),
        ] {
            let before = broker.received("GET", &path).len();
            let answer = osb.send(Method::GET, &path, None).await;
            if retrievable {
                assert_eq!(answer.status, 200, "{path}");
                assert_eq!(broker.received("GET", &path).len(), before + 1);
            } else {
                assert_eq!(answer.status, 400, "{path}");
                let description = answer.description().unwrap();
                assert!(
                    description.contains(field) && description.contains("fb.queue"),
                    "{description}"
                );
                assert_eq!(
                    broker.received("GET", &path).len(),
                    before,
                    "{path} was forwarded"
                );
            }
        }
    }
    // The refusals left the breaker alone.
    assert_eq!(gateway.broker_status("fb").await["breaker"], "closed");
}

#[tokio::test]
async fn without_parameters_the_broker_decides() {
    let broker = FakeBroker::with_catalog(catalog()).await;
    broker.on(
        "PUT",
        "/v2/service_instances/no-params",
        Reply::new(
            422,
            r#"{"error":"AsyncRequired","description":"this plan needs accepts_incomplete"}"#,
        ),
    );
    broker.on("PUT", "/v2/service_instances/defaults", Reply::new(201, "{}"));
    let (gateway, catalog) = gateway(&broker, "", &[], "").await;
    let (service, plan) = ids(&catalog, "db", "sized");
    let osb = gateway.osb();
    let bare = json!({"service_id": service, "plan_id": plan});

    // No parameters: forwarded; the broker's answer comes back.
    let answer = osb.provision("no-params", Query::none(), &bare).await;
    assert_eq!(answer.status, 422);
    assert_eq!(answer.body["error"], "AsyncRequired");
    let answer = osb.provision("defaults", Query::none(), &bare).await;
    assert_eq!(answer.status, 201);
    assert_eq!(broker.received("PUT", "/v2/service_instances/defaults").len(), 1);

    // Parameters sent that break the schema: refused by the gateway, nothing forwarded.
    for parameters in [json!({}), json!({"size": "big"})] {
        let answer = osb
            .provision(
                "bad-params",
                Query::none(),
                &json!({"service_id": service, "plan_id": plan, "parameters": parameters}),
            )
            .await;
        assert_eq!(answer.status, 400, "{parameters}");
        let description = answer.body["description"].clone();
        assert!(description.as_str().unwrap().contains("schema"), "{description}");
    }
    assert!(
        broker
            .received("PUT", "/v2/service_instances/bad-params")
            .is_empty()
    );
}
