//! Idempotency, conflicts, operations in flight, platform isolation and request validation: all
//! decided before anything is forwarded.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::fake_broker::{FakeBroker, Reply};
use crate::support::gateway::BEARER_TOKEN;
use crate::support::osb::{OsbResponse, Query};
use crate::support::small_catalog::{gateway_for, small_catalog};

/// What the broker received apart from catalog fetches.
fn forwarded(broker: &FakeBroker) -> usize {
    broker
        .recorded()
        .iter()
        .filter(|r| r.path != "/v2/catalog")
        .count()
}

#[tokio::test]
async fn conflicts_and_operations_in_flight_are_refused_before_forwarding() {
    let broker = FakeBroker::with_catalog(small_catalog()).await;
    broker.on(
        "PUT",
        "/v2/service_instances/i1",
        Reply::new(202, r#"{"operation":"prov i1"}"#),
    );
    let (gateway, ids) = gateway_for(&broker).await;
    let osb = gateway.osb();
    let provision = ids.provision();

    let response = osb.provision("i1", Query::none().incomplete(), &provision).await;
    assert_eq!(
        (response.status.as_u16(), response.body["operation"].as_str()),
        (202, Some("prov i1"))
    );
    assert_eq!(forwarded(&broker), 1);

    // Identical re-PUT while in progress: forwarded, the upstream answers 202 again.
    let response = osb.provision("i1", Query::none().incomplete(), &provision).await;
    assert_eq!(response.status, 202);
    assert_eq!(forwarded(&broker), 2);

    // Same id, other plan or parameters: 409, not forwarded.
    for other in [
        json!({"service_id": ids.service, "plan_id": ids.large, "parameters": {"a": 1}}),
        json!({"service_id": ids.service, "plan_id": ids.small, "parameters": {"a": 2}}),
        json!({"service_id": ids.service, "plan_id": ids.small}),
    ] {
        let response = osb.provision("i1", Query::none(), &other).await;
        assert_eq!(response.status, 409, "{other}");
        assert!(response.description().unwrap().contains("different"));
    }
    // Parameters in another key order are the same parameters.
    let reordered = json!({"parameters": {"a": 1}, "plan_id": ids.small, "service_id": ids.service});
    let response = osb.provision("i1", Query::none().incomplete(), &reordered).await;
    assert_eq!(response.status, 202);
    assert_eq!(forwarded(&broker), 3);

    // A second mutating call while the provision is in flight: 422 ConcurrencyError, not forwarded.
    let update = json!({"service_id": ids.service, "parameters": {"a": 3}});
    let binding = json!({"service_id": ids.service, "plan_id": ids.small});
    for response in [
        osb.update("i1", Query::none(), &update).await,
        osb.deprovision("i1", ids.query()).await,
        osb.bind("i1", "b1", Query::none(), &binding).await,
    ] {
        assert_eq!(
            (response.status.as_u16(), response.error()),
            (422, Some("ConcurrencyError")),
            "{}",
            response.body
        );
    }
    assert_eq!(forwarded(&broker), 3);

    // The provision finishes; now an update goes through.
    broker.on(
        "GET",
        "/v2/service_instances/i1/last_operation",
        Reply::new(200, r#"{"state":"succeeded"}"#),
    );
    let response = osb
        .instance_last_operation("i1", Query::none().operation("prov i1"))
        .await;
    assert_eq!(response.status, 200);
    broker.on("PATCH", "/v2/service_instances/i1", Reply::new(200, "{}"));
    let response = osb.update("i1", Query::none(), &update).await;
    assert_eq!(response.status, 200);
    let patch = &broker.received("PATCH", "/v2/service_instances/i1")[0];
    let sent: Value = serde_json::from_slice(&patch.body).unwrap();
    assert_eq!(
        sent,
        json!({"service_id": "up-svc", "parameters": {"a": 3}}),
        "upstream ids, nothing else touched"
    );

    // A plan change to a plan of the same service maps to the upstream plan.
    let plan_change = json!({
        "service_id": ids.service, "plan_id": ids.large, "previous_values": {"plan_id": ids.small}
    });
    let response = osb.update("i1", Query::none(), &plan_change).await;
    assert_eq!(response.status, 200);
    let sent: Value =
        serde_json::from_slice(&broker.received("PATCH", "/v2/service_instances/i1")[1].body).unwrap();
    assert_eq!(
        sent,
        json!({"service_id": "up-svc", "plan_id": "up-large", "previous_values": {"plan_id": "up-small"}})
    );
}

#[tokio::test]
async fn another_platforms_ids_behave_as_if_they_did_not_exist() {
    let broker = FakeBroker::with_catalog(small_catalog()).await;
    broker.on("PUT", "/v2/service_instances/mine", Reply::new(201, "{}"));
    broker.on(
        "PUT",
        "/v2/service_instances/mine/service_bindings/b",
        Reply::new(201, r#"{"credentials":{}}"#),
    );
    let (gateway, ids) = gateway_for(&broker).await;
    let osb = gateway.osb();
    let response = osb.provision("mine", Query::none(), &ids.provision()).await;
    assert_eq!(response.status, 201);
    let binding = ids.small_body();
    let response = osb.bind("mine", "b", Query::none(), &binding).await;
    assert_eq!(response.status, 201);
    let before = forwarded(&broker);

    // The second platform (`cf`, bearer token).
    let cf = osb.clone().bearer(BEARER_TOKEN);
    let cases = [
        (cf.fetch_instance("mine").await, 404),
        (
            cf.update("mine", Query::none(), &json!({"service_id": ids.service}))
                .await,
            404,
        ),
        (cf.deprovision("mine", ids.query()).await, 410),
        (cf.instance_last_operation("mine", Query::none()).await, 410),
        (cf.provision("mine", Query::none(), &ids.provision()).await, 409),
        (cf.bind("mine", "b2", Query::none(), &binding).await, 404),
        (cf.fetch_binding("mine", "b").await, 404),
        (cf.unbind("mine", "b", ids.query()).await, 410),
        (cf.binding_last_operation("mine", "b", Query::none()).await, 410),
    ];
    for (response, want) in cases {
        assert_eq!(response.status.as_u16(), want, "{}", response.body);
        assert!(response.body["description"].is_string(), "OSB error body");
    }
    assert_eq!(
        forwarded(&broker),
        before,
        "nothing of another platform's reached the upstream"
    );

    // The binding under another instance id is not the same binding either.
    broker.on("PUT", "/v2/service_instances/other", Reply::new(201, "{}"));
    let response = osb.provision("other", Query::none(), &ids.provision()).await;
    assert_eq!(response.status, 201);
    let response = osb.bind("other", "b", Query::none(), &binding).await;
    assert_eq!(response.status, 409);
}

#[tokio::test]
async fn bad_requests_are_400_and_reach_no_upstream() {
    let broker = FakeBroker::with_catalog(small_catalog()).await;
    broker.on("PUT", "/v2/service_instances/ok", Reply::new(201, "{}"));
    let (gateway, ids) = gateway_for(&broker).await;
    let osb = gateway.osb();
    let response = osb.provision("ok", Query::none(), &ids.provision()).await;
    assert_eq!(response.status, 201);
    let before = forwarded(&broker);

    let big = json!({"service_id": ids.service, "plan_id": ids.small, "parameters": {"blob": "x".repeat(2 * 1024 * 1024)}});
    let q = format!("service_id={}&plan_id={}", ids.service, ids.small);
    let raw = |method: Method, path: &str, body: &str| {
        osb.request(method, path)
            .header("content-type", "application/json")
            .body(body.to_owned())
    };
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            raw(Method::PUT, "/v2/service_instances/x", "{not json"),
            400,
            "invalid JSON",
        ),
        (
            raw(Method::PUT, "/v2/service_instances/x", "[]"),
            400,
            "JSON object",
        ),
        (
            raw(Method::PUT, "/v2/service_instances/x", r#"{"plan_id":"p"}"#),
            400,
            "service_id is required",
        ),
        (
            osb.request(Method::PUT, "/v2/service_instances/x")
                .json(&json!({"service_id": "", "plan_id": ids.small})),
            400,
            "service_id must not be empty",
        ),
        (
            osb.request(Method::PUT, "/v2/service_instances/x")
                .json(&json!({"service_id": ids.service, "plan_id": "nope"})),
            400,
            "unknown plan_id",
        ),
        (
            osb.request(Method::PUT, "/v2/service_instances/x")
                .json(&json!({"service_id": "other", "plan_id": ids.small})),
            400,
            "unknown service_id",
        ),
        (
            osb.request(Method::PUT, "/v2/service_instances/x")
                .json(&json!({"service_id": ids.service, "plan_id": ids.small, "parameters": "a=1"})),
            400,
            "parameters must be an object",
        ),
        (
            osb.request(Method::PUT, "/v2/service_instances/x")
                .json(&json!({"service_id": ids.service, "plan_id": ids.small, "context": {"platform": 7}})),
            400,
            "context.platform",
        ),
        (
            osb.request(Method::PUT, "/v2/service_instances/x?accepts_incomplete=maybe")
                .json(&ids.provision()),
            400,
            "accepts_incomplete",
        ),
        (
            osb.request(Method::PUT, "/v2/service_instances/x").json(&big),
            400,
            "larger than",
        ),
        (
            osb.request(Method::PUT, "/v2/service_instances/bad%20id")
                .json(&ids.provision()),
            400,
            "instance_id may contain only",
        ),
        (
            osb.request(
                Method::PUT,
                "/v2/service_instances/ok/service_bindings/b%3Cscript",
            )
            .json(&json!({"service_id": ids.service, "plan_id": ids.small})),
            400,
            "binding_id may contain only",
        ),
        (
            osb.request(Method::PUT, "/v2/service_instances/ok/service_bindings/b")
                .json(&json!({"service_id": ids.service, "plan_id": ids.nobind})),
            400,
            "not bindable",
        ),
        (
            osb.request(Method::PUT, "/v2/service_instances/ok/service_bindings/b")
                .json(&json!({"service_id": ids.service})),
            400,
            "plan_id is required",
        ),
        (
            osb.request(Method::DELETE, "/v2/service_instances/ok"),
            400,
            "service_id is required",
        ),
        (
            osb.request(
                Method::DELETE,
                &format!("/v2/service_instances/ok?service_id={}", ids.service),
            ),
            400,
            "plan_id is required",
        ),
        (
            osb.request(
                Method::DELETE,
                &format!("/v2/service_instances/ok?service_id=&plan_id={}", ids.small),
            ),
            400,
            "must not be empty",
        ),
        (
            osb.request(
                Method::DELETE,
                &format!("/v2/service_instances/ok?service_id=wrong&plan_id={}", ids.small),
            ),
            400,
            "does not match",
        ),
        (
            osb.request(Method::PATCH, "/v2/service_instances/ok")
                .json(&json!({"service_id": ids.service, "plan_id": "ghost"})),
            400,
            "unknown plan_id",
        ),
        (
            osb.request(Method::PATCH, "/v2/service_instances/ok")
                .json(&json!({"plan_id": ids.small})),
            400,
            "service_id is required",
        ),
        (
            osb.request(
                Method::GET,
                &format!("/v2/service_instances/ok/last_operation?{q}&operation="),
            ),
            400,
            "operation must not be empty",
        ),
        (
            osb.request(Method::POST, "/v2/service_instances/ok"),
            405,
            "not allowed",
        ),
    ];
    for (request, want, says) in cases {
        let response = OsbResponse::send(request).await;
        assert_eq!(response.status.as_u16(), want, "{says}: {}", response.body);
        assert!(
            response.description().is_some_and(|d| d.contains(says)),
            "{says}: {}",
            response.body
        );
    }
    assert_eq!(forwarded(&broker), before, "no bad request reached the upstream");

    // A plan that is not bindable.
    let big_broker = FakeBroker::with_catalog(small_catalog()).await;
    big_broker.on("PUT", "/v2/service_instances/nb", Reply::new(201, "{}"));
    let (gateway, ids) = gateway_for(&big_broker).await;
    let osb = gateway.osb();
    let provision = json!({"service_id": ids.service, "plan_id": ids.nobind});
    let response = osb.provision("nb", Query::none(), &provision).await;
    assert_eq!(response.status, 201);
    let response = osb.bind("nb", "b", Query::none(), &provision).await;
    assert_eq!(response.status, 400);
    assert!(response.description().unwrap().contains("not bindable"));
}
