//! Instance and binding lifecycles through the gateway against real `openbrokerapi` upstreams.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::gateway::{TestGateway, platforms_yaml};
use crate::support::obapi::ObapiBroker;
use crate::support::osb::{OsbClient, OsbResponse, Query, Resource, instance_path, service};
use crate::support::{eventually, fixture_path, logs};

/// Provision parameters valid for both services the lifecycle test uses (DynamoDB's schema requires
/// its key attributes), with a marker that must never reach the logs.
fn provision_parameters() -> Value {
    json!({"size": 1, "HashAttributeName": "id", "RangeAttributeName": "ts", "admin_password": "param-secret-41"})
}

/// Polls an asynchronous operation of `resource` to its end (seeing it in progress at least once,
/// unless it ends in a non-200 like 410); the last answer.
async fn poll(osb: &OsbClient, resource: Resource<'_>, query: Query) -> OsbResponse {
    let polled = osb.poll(resource, query).await;
    assert!(
        polled.in_progress > 0 || polled.last.status != 200,
        "an async operation is in progress at least once"
    );
    polled.last
}

/// Asserts that a polled operation succeeded.
fn assert_succeeded(last: &OsbResponse) {
    assert_eq!(
        (last.status.as_u16(), last.body["state"].as_str()),
        (200, Some("succeeded"))
    );
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
    let osb = gateway.osb();
    let instance = format!("inst-{n}-{}", uuid::Uuid::new_v4());
    let (service_id, plan_id) = (published["id"].as_str().unwrap(), plan["id"].as_str().unwrap());
    let context = json!({"platform": "kubernetes", "namespace": "team-a", "clusterid": "c1"});
    let provision = json!({"service_id": service_id, "plan_id": plan_id, "context": context,
                           "organization_guid": "org", "space_guid": "space", "parameters": provision_parameters()});

    // Provision, asynchronously.
    let response = OsbResponse::send(
        osb.request(
            Method::PUT,
            &format!(
                "{}{}",
                instance_path(&instance),
                Query::none().incomplete().render()
            ),
        )
        .header(
            "X-Broker-API-Originating-Identity",
            "kubernetes eyJ1c2VybmFtZSI6ImFsaWNlIn0=",
        )
        .json(&provision),
    )
    .await;
    assert_eq!(response.status, 202);
    let operation = response.operation();
    assert!(
        operation.contains(' '),
        "the upstream's operation needs encoding: {operation:?}"
    );
    // An identical re-PUT while in progress: 202 with the same operation.
    let again = osb
        .provision(&instance, Query::none().incomplete(), &provision)
        .await;
    assert_eq!(again.status, 202);
    assert_eq!(again.body["operation"], operation.as_str());
    let last = poll(
        &osb,
        Resource::Instance(&instance),
        Query::ids(service_id, plan_id).operation(&operation),
    )
    .await;
    assert_succeeded(&last);

    // Fetch: the gateway's ids, not the upstream's.
    let fetched = osb.fetch_instance(&instance).await.body;
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
    let response = osb.update(&instance, Query::none().incomplete(), &update).await;
    assert_eq!(response.status, 202);
    let operation = response.operation();
    // OSB: poll an update with the plan prior to it.
    let last = poll(
        &osb,
        Resource::Instance(&instance),
        Query::ids(service_id, plan_id).operation(&operation),
    )
    .await;
    assert_succeeded(&last);
    let fetched = osb.fetch_instance(&instance).await.body;
    assert_eq!(
        fetched["plan_id"], target,
        "fetch reports the new plan in gateway ids"
    );
    assert_eq!(fetched["parameters"]["size"], 2);

    // Bind (synchronous), fetch it, unbind.
    let binding = format!("bind-{n}");
    let response = osb
        .bind(
            &instance,
            &binding,
            Query::none(),
            &json!({"service_id": service_id, "plan_id": target, "bind_resource": {"app_guid": "app-1"},
                    "context": context}),
        )
        .await;
    assert_eq!(response.status, 201);
    let bound = response.body;
    assert_eq!(
        bound["credentials"]["uri"],
        format!("fake://bind-{n}"),
        "credentials pass through"
    );
    let fetched = osb.fetch_binding(&instance, &binding).await.body;
    assert_eq!(fetched["credentials"], bound["credentials"]);
    let response = osb
        .unbind(&instance, &binding, Query::ids(service_id, target))
        .await;
    assert_eq!(response.status, 200);
    let response = osb
        .unbind(&instance, &binding, Query::ids(service_id, target))
        .await;
    assert_eq!(response.status, 410, "unbinding again: gone");

    // Deprovision, asynchronously; then the instance is gone.
    let response = osb
        .deprovision(&instance, Query::ids(service_id, target).incomplete())
        .await;
    assert_eq!(response.status, 202);
    let query = Query::ids(service_id, target).operation(&response.operation());
    let last = poll(&osb, Resource::Instance(&instance), query.clone()).await;
    assert!(
        last.status == 410 || last.body["state"] == "succeeded",
        "{} {}",
        last.status,
        last.body
    );
    let response = osb.instance_last_operation(&instance, query).await;
    assert_eq!(response.status, 410);
    assert_eq!(osb.fetch_instance(&instance).await.status, 404);
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
    let response = OsbResponse::send(
        gateway
            .osb()
            .request(Method::PUT, &instance_path("ident-1"))
            .header("X-Broker-API-Request-Identity", "trace-me-7")
            .json(&json!({"service_id": s3["id"], "plan_id": s3["plans"][0]["id"]})),
    )
    .await;
    assert_eq!(response.status, 201);
    assert_eq!(response.headers["x-broker-api-request-identity"], "trace-me-7");
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
    let osb = gateway.osb();
    let (instance, binding) = ("gcs-1", "gcs-b1");
    let ids_query = || Query::ids(service_id, plan_id);
    let body = json!({"service_id": service_id, "plan_id": plan_id});

    let response = osb.provision(instance, Query::none().incomplete(), &body).await;
    assert_eq!(response.status, 202);
    let last = poll(
        &osb,
        Resource::Instance(instance),
        ids_query().operation(&response.operation()),
    )
    .await;
    assert_succeeded(&last);

    let response = osb
        .bind(instance, binding, Query::none().incomplete(), &body)
        .await;
    assert_eq!(response.status, 202);
    let accepted = response.body;
    assert!(accepted.get("credentials").is_none());
    let operation = accepted["operation"].as_str().unwrap().to_owned();
    // While the bind is in flight the instance refuses an unbind of another kind: ConcurrencyError.
    let delete = osb.deprovision(instance, ids_query()).await;
    assert_eq!(delete.status, 422);
    let last = poll(
        &osb,
        Resource::Binding(instance, binding),
        ids_query().operation(&operation),
    )
    .await;
    assert_succeeded(&last);
    let fetched = osb.fetch_binding(instance, binding).await.body;
    assert_eq!(fetched["credentials"]["uri"], "demo://gcs-b1");

    let response = osb.unbind(instance, binding, ids_query().incomplete()).await;
    assert_eq!(response.status, 202);
    let last = poll(
        &osb,
        Resource::Binding(instance, binding),
        ids_query().operation(&response.operation()),
    )
    .await;
    assert!(last.status == 410 || last.body["state"] == "succeeded");
    assert_eq!(osb.fetch_binding(instance, binding).await.status, 404);
    assert!(broker.bindings().is_empty());
    let counts = gateway.registry().await;
    assert_eq!(
        (counts["instances"].as_u64(), counts["bindings"].as_u64()),
        (Some(1), Some(0))
    );
    broker.stop().await;
}
