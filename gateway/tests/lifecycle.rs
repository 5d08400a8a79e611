//! Instance and binding lifecycles through the gateway against real `openbrokerapi` upstreams.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::gateway::{TestGateway, platforms_yaml};
use crate::support::obapi::ObapiBroker;
use crate::support::{eventually, fixture_path, logs};

/// The first service of `catalog` named `name` and its plans' ids.
fn service<'a>(catalog: &'a Value, name: &str) -> &'a Value {
    catalog["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap()
}

/// Provision parameters valid for both services the lifecycle test uses (DynamoDB's schema requires
/// its key attributes), with a marker that must never reach the logs.
fn provision_parameters() -> Value {
    json!({"size": 1, "HashAttributeName": "id", "RangeAttributeName": "ts", "admin_password": "param-secret-41"})
}

/// Percent-encodes a query value the way a platform does.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Polls an instance's (or binding's) `last_operation` until it is no longer "in progress";
/// returns the final status and body.
async fn poll(gateway: &TestGateway, path: &str, query: &str) -> (StatusCode, Value) {
    let mut seen_in_progress = false;
    for _ in 0..50 {
        let response = gateway
            .request(Method::GET, &format!("{path}/last_operation?{query}"))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status == 200 && body["state"] == "in progress" {
            seen_in_progress = true;
            continue;
        }
        assert!(
            seen_in_progress || status != 200,
            "an async operation is in progress at least once"
        );
        return (status, body);
    }
    panic!("{path}: still in progress after 50 polls");
}

/// The ids of a catalog (services and plans).
fn ids(catalog: &Value) -> HashSet<String> {
    let mut ids = HashSet::new();
    for s in catalog["services"].as_array().unwrap() {
        ids.insert(s["id"].as_str().unwrap().to_owned());
        for p in s["plans"].as_array().unwrap() {
            ids.insert(p["id"].as_str().unwrap().to_owned());
        }
    }
    ids
}

/// provision → poll → update → poll → bind → fetch → unbind → deprovision → poll → 410, on one
/// published service. `new_plan` changes the plan on update when given.
async fn lifecycle(gateway: &TestGateway, published: &Value, plan: &Value, new_plan: Option<&Value>, n: u32) {
    let instance = format!("inst-{n}-{}", uuid::Uuid::new_v4());
    let path = format!("/v2/service_instances/{instance}");
    let (service_id, plan_id) = (published["id"].as_str().unwrap(), plan["id"].as_str().unwrap());
    let ids_query = format!("service_id={service_id}&plan_id={plan_id}");
    let context = json!({"platform": "kubernetes", "namespace": "team-a", "clusterid": "c1"});

    // Provision, asynchronously.
    let response = gateway
        .request(Method::PUT, &format!("{path}?accepts_incomplete=true"))
        .header(
            "X-Broker-API-Originating-Identity",
            "kubernetes eyJ1c2VybmFtZSI6ImFsaWNlIn0=",
        )
        .json(
            &json!({"service_id": service_id, "plan_id": plan_id, "context": context,
                      "organization_guid": "org", "space_guid": "space", "parameters": provision_parameters()}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let operation = response.json::<Value>().await.unwrap()["operation"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        operation.contains(' '),
        "the upstream's operation needs encoding: {operation:?}"
    );
    // An identical re-PUT while in progress: 202 with the same operation.
    let again = gateway
        .request(Method::PUT, &format!("{path}?accepts_incomplete=true"))
        .json(
            &json!({"service_id": service_id, "plan_id": plan_id, "context": context,
                      "organization_guid": "org", "space_guid": "space", "parameters": provision_parameters()}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 202);
    assert_eq!(
        again.json::<Value>().await.unwrap()["operation"],
        operation.as_str()
    );
    let (status, body) = poll(
        gateway,
        &path,
        &format!("{ids_query}&operation={}", encode(&operation)),
    )
    .await;
    assert_eq!(
        (status.as_u16(), body["state"].as_str()),
        (200, Some("succeeded"))
    );

    // Fetch: the gateway's ids, not the upstream's.
    let fetched: Value = gateway
        .request(Method::GET, &path)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (fetched["service_id"].as_str(), fetched["plan_id"].as_str()),
        (Some(service_id), Some(plan_id))
    );

    // Update, asynchronously (with a plan change where the plan allows it).
    let target = new_plan.unwrap_or(plan)["id"].as_str().unwrap();
    let mut update = json!({"service_id": service_id, "parameters": {"size": 2}, "context": context,
                            "previous_values": {"plan_id": plan_id, "service_id": service_id}});
    if new_plan.is_some() {
        update["plan_id"] = json!(target);
    }
    let response = gateway
        .request(Method::PATCH, &format!("{path}?accepts_incomplete=true"))
        .json(&update)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let operation = response.json::<Value>().await.unwrap()["operation"]
        .as_str()
        .unwrap()
        .to_owned();
    // OSB: poll an update with the plan prior to it.
    let (status, body) = poll(
        gateway,
        &path,
        &format!("{ids_query}&operation={}", encode(&operation)),
    )
    .await;
    assert_eq!(
        (status.as_u16(), body["state"].as_str()),
        (200, Some("succeeded"))
    );
    let fetched: Value = gateway
        .request(Method::GET, &path)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        fetched["plan_id"], target,
        "fetch reports the new plan in gateway ids"
    );
    assert_eq!(fetched["parameters"]["size"], 2);

    // Bind (synchronous), fetch it, unbind.
    let binding = format!("{path}/service_bindings/bind-{n}");
    let response = gateway
        .request(Method::PUT, &binding)
        .json(
            &json!({"service_id": service_id, "plan_id": target, "bind_resource": {"app_guid": "app-1"},
                      "context": context}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let bound: Value = response.json().await.unwrap();
    assert_eq!(
        bound["credentials"]["uri"],
        format!("fake://bind-{n}"),
        "credentials pass through"
    );
    let fetched: Value = gateway
        .request(Method::GET, &binding)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(fetched["credentials"], bound["credentials"]);
    let response = gateway
        .request(
            Method::DELETE,
            &format!("{binding}?service_id={service_id}&plan_id={target}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = gateway
        .request(
            Method::DELETE,
            &format!("{binding}?service_id={service_id}&plan_id={target}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 410, "unbinding again: gone");

    // Deprovision, asynchronously; then the instance is gone.
    let response = gateway
        .request(
            Method::DELETE,
            &format!("{path}?service_id={service_id}&plan_id={target}&accepts_incomplete=true"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let operation = response.json::<Value>().await.unwrap()["operation"]
        .as_str()
        .unwrap()
        .to_owned();
    let query = format!(
        "service_id={service_id}&plan_id={target}&operation={}",
        encode(&operation)
    );
    let (status, body) = poll(gateway, &path, &query).await;
    assert!(status == 410 || body["state"] == "succeeded", "{status} {body}");
    let response = gateway
        .request(Method::GET, &format!("{path}/last_operation?{query}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 410);
    assert_eq!(
        gateway.request(Method::GET, &path).send().await.unwrap().status(),
        404
    );
}

#[tokio::test]
async fn full_lifecycles_on_two_upstreams_each_seeing_only_its_own_ids() {
    let logs = logs::capture();
    let example = ObapiBroker::start(&fixture_path("osbapi-spec-example-catalog.json")).await;
    let aws = ObapiBroker::start(&fixture_path("aws-servicebroker-catalog.json")).await;
    let yaml = format!(
        "{}brokers:\n{}{}",
        platforms_yaml(),
        example.config_entry("example"),
        aws.config_entry("aws")
    );
    let gateway = TestGateway::start(&yaml).await;
    let catalog = gateway.ready_catalog().await;

    // The spec's example service: updateable plans, so the update changes the plan.
    let fake = service(&catalog, "example.fake-service");
    let plans = fake["plans"].as_array().unwrap();
    lifecycle(&gateway, fake, &plans[0], Some(&plans[1]), 1).await;
    // AWS DynamoDB: parameters-only update.
    let dynamodb = service(&catalog, "aws.dynamodb");
    lifecycle(&gateway, dynamodb, &dynamodb["plans"][0], None, 2).await;

    // Each upstream saw its own ids only: never a gateway id, never the other broker's.
    let gateway_ids = ids(&catalog);
    for (broker, upstream) in [(&example, example.catalog().await), (&aws, aws.catalog().await)] {
        let own = ids(&upstream);
        let recorded = broker.recorded().await;
        assert!(
            recorded
                .iter()
                .filter(|r| r["method"] != "GET" || r["path"] != "/v2/catalog")
                .count()
                >= 10
        );
        for request in &recorded {
            let mut seen: Vec<String> = Vec::new();
            for field in ["service_id", "plan_id"] {
                if let Some(v) = request["body"][field].as_str() {
                    seen.push(v.to_owned());
                }
                if let Some(v) = request["args"][field].as_str() {
                    seen.push(v.to_owned());
                }
                if let Some(v) = request["body"]["previous_values"][field].as_str() {
                    seen.push(v.to_owned());
                }
            }
            for id in seen {
                assert!(
                    own.contains(&id),
                    "{} {}: {id} is not this upstream's",
                    request["method"],
                    request["path"]
                );
                assert!(!gateway_ids.contains(&id));
            }
            if request["path"] != "/v2/catalog" {
                assert_eq!(request["headers"]["X-Broker-API-Version"], "2.17");
                assert!(
                    request["headers"]["X-Broker-API-Request-Identity"]
                        .as_str()
                        .is_some_and(|v| !v.is_empty())
                );
            }
        }
        // The originating identity reached the upstream unchanged.
        assert!(
            recorded
                .iter()
                .any(|r| r["headers"]["X-Broker-API-Originating-Identity"]
                    == "kubernetes eyJ1c2VybmFtZSI6ImFsaWNlIn0=")
        );
    }

    // Nothing is left in the registry.
    let mut gateway = gateway;
    gateway.stop().await;
    let store = gateway.open_store().await;
    assert!(osb_routing::Store::instances(&*store).await.unwrap().is_empty());
    assert!(osb_routing::Store::bindings(&*store).await.unwrap().is_empty());

    // Credentials and parameters never reached the logs.
    let text = logs.text();
    assert!(
        !text.contains("fake://bind-1") && !text.contains("p-bind-1"),
        "binding credentials leaked into logs"
    );
    assert!(!text.contains("param-secret-41"), "parameters leaked into logs");
    assert!(text.contains("inst-1-"), "the logs did capture the requests");
    assert!(
        !text.contains("eyJ1c2VybmFtZSI6ImFsaWNlIn0") && !text.contains("alice"),
        "originating identity leaked"
    );
}

#[tokio::test]
async fn a_request_identity_is_forwarded_and_echoed() {
    let aws = ObapiBroker::start(&fixture_path("aws-servicebroker-catalog.json")).await;
    let gateway = TestGateway::start(&format!(
        "{}brokers:\n{}",
        platforms_yaml(),
        aws.config_entry("aws")
    ))
    .await;
    let catalog = gateway.ready_catalog().await;
    let s3 = service(&catalog, "aws.s3");
    let response = gateway
        .request(Method::PUT, "/v2/service_instances/ident-1")
        .header("X-Broker-API-Request-Identity", "trace-me-7")
        .json(&json!({"service_id": s3["id"], "plan_id": s3["plans"][0]["id"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["x-broker-api-request-identity"], "trace-me-7");
    let recorded = eventually("provision recorded", Duration::from_secs(5), || async {
        aws.recorded().await.into_iter().find(|r| r["method"] == "PUT")
    })
    .await;
    assert_eq!(recorded["headers"]["X-Broker-API-Request-Identity"], "trace-me-7");
}

#[tokio::test]
async fn asynchronous_bindings_through_the_in_repo_broker() {
    use osb_demo::{Behaviour, DemoBroker};

    let broker = DemoBroker::start_with(
        "demo",
        bytes::Bytes::from(crate::support::fixture("gcp-service-broker-catalog.json")),
        Behaviour::asynchronous(1),
    )
    .await
    .unwrap();
    let gateway = TestGateway::start(&format!(
        "{}brokers:\n{}",
        platforms_yaml(),
        broker.config_entry()
    ))
    .await;
    let catalog = gateway.ready_catalog().await;
    let storage = service(&catalog, "demo.google-storage");
    let (service_id, plan_id) = (
        storage["id"].as_str().unwrap(),
        storage["plans"][0]["id"].as_str().unwrap(),
    );
    let path = "/v2/service_instances/gcs-1";
    let ids_query = format!("service_id={service_id}&plan_id={plan_id}");

    let response = gateway
        .request(Method::PUT, &format!("{path}?accepts_incomplete=true"))
        .json(&json!({"service_id": service_id, "plan_id": plan_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let operation = response.json::<Value>().await.unwrap()["operation"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = poll(
        &gateway,
        path,
        &format!("{ids_query}&operation={}", encode(&operation)),
    )
    .await;
    assert_eq!(
        (status.as_u16(), body["state"].as_str()),
        (200, Some("succeeded"))
    );

    let binding = format!("{path}/service_bindings/gcs-b1");
    let response = gateway
        .request(Method::PUT, &format!("{binding}?accepts_incomplete=true"))
        .json(&json!({"service_id": service_id, "plan_id": plan_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let accepted: Value = response.json().await.unwrap();
    assert!(accepted.get("credentials").is_none());
    let operation = accepted["operation"].as_str().unwrap().to_owned();
    // While the bind is in flight the instance refuses an unbind of another kind: ConcurrencyError.
    let delete = gateway
        .request(Method::DELETE, &format!("{path}?{ids_query}"))
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 422);
    let (status, body) = poll(
        &gateway,
        &binding,
        &format!("{ids_query}&operation={}", encode(&operation)),
    )
    .await;
    assert_eq!(
        (status.as_u16(), body["state"].as_str()),
        (200, Some("succeeded"))
    );
    let fetched: Value = gateway
        .request(Method::GET, &binding)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(fetched["credentials"]["uri"], "demo://gcs-b1");

    let response = gateway
        .request(
            Method::DELETE,
            &format!("{binding}?{ids_query}&accepts_incomplete=true"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let operation = response.json::<Value>().await.unwrap()["operation"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = poll(
        &gateway,
        &binding,
        &format!("{ids_query}&operation={}", encode(&operation)),
    )
    .await;
    assert!(status == 410 || body["state"] == "succeeded");
    assert_eq!(
        gateway
            .request(Method::GET, &binding)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert!(broker.bindings().is_empty());
    let counts = gateway.registry().await;
    assert_eq!(
        (counts["instances"].as_u64(), counts["bindings"].as_u64()),
        (Some(1), Some(0))
    );
    broker.stop().await;
}
