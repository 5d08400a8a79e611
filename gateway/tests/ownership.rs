//! Idempotency, conflicts, operations in flight, platform isolation and request validation: all
//! decided before anything is forwarded.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::faults::{gateway_for, small_catalog};
use crate::support::fake_broker::{FakeBroker, Reply};
use crate::support::gateway::{BEARER_TOKEN, TestGateway};
use crate::support::http;

/// What the broker received apart from catalog fetches.
fn forwarded(broker: &FakeBroker) -> usize {
    broker
        .recorded()
        .iter()
        .filter(|r| r.path != "/v2/catalog")
        .count()
}

/// A request as the second platform (`cf`, bearer token).
fn as_cf(gateway: &TestGateway, method: Method, path: &str) -> reqwest::RequestBuilder {
    http()
        .request(method, gateway.url(path))
        .bearer_auth(BEARER_TOKEN)
        .header("X-Broker-API-Version", "2.17")
}

async fn status_and_body(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
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
    let provision = ids.provision();

    let (status, body) = status_and_body(
        gateway
            .request(Method::PUT, "/v2/service_instances/i1?accepts_incomplete=true")
            .json(&provision),
    )
    .await;
    assert_eq!(
        (status.as_u16(), body["operation"].as_str()),
        (202, Some("prov i1"))
    );
    assert_eq!(forwarded(&broker), 1);

    // Identical re-PUT while in progress: forwarded, the upstream answers 202 again.
    let (status, _) = status_and_body(
        gateway
            .request(Method::PUT, "/v2/service_instances/i1?accepts_incomplete=true")
            .json(&provision),
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(forwarded(&broker), 2);

    // Same id, other plan or parameters: 409, not forwarded.
    for other in [
        json!({"service_id": ids.service, "plan_id": ids.large, "parameters": {"a": 1}}),
        json!({"service_id": ids.service, "plan_id": ids.small, "parameters": {"a": 2}}),
        json!({"service_id": ids.service, "plan_id": ids.small}),
    ] {
        let (status, body) = status_and_body(
            gateway
                .request(Method::PUT, "/v2/service_instances/i1")
                .json(&other),
        )
        .await;
        assert_eq!(status, 409, "{other}");
        assert!(body["description"].as_str().unwrap().contains("different"));
    }
    // Parameters in another key order are the same parameters.
    let reordered = json!({"parameters": {"a": 1}, "plan_id": ids.small, "service_id": ids.service});
    let (status, _) = status_and_body(
        gateway
            .request(Method::PUT, "/v2/service_instances/i1?accepts_incomplete=true")
            .json(&reordered),
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(forwarded(&broker), 3);

    // A second mutating call while the provision is in flight: 422 ConcurrencyError, not forwarded.
    let update = json!({"service_id": ids.service, "parameters": {"a": 3}});
    let binding = json!({"service_id": ids.service, "plan_id": ids.small});
    let delete = format!(
        "/v2/service_instances/i1?service_id={}&plan_id={}",
        ids.service, ids.small
    );
    for request in [
        gateway
            .request(Method::PATCH, "/v2/service_instances/i1")
            .json(&update),
        gateway.request(Method::DELETE, &delete),
        gateway
            .request(Method::PUT, "/v2/service_instances/i1/service_bindings/b1")
            .json(&binding),
    ] {
        let (status, body) = status_and_body(request).await;
        assert_eq!(
            (status.as_u16(), body["error"].as_str()),
            (422, Some("ConcurrencyError")),
            "{body}"
        );
    }
    assert_eq!(forwarded(&broker), 3);

    // The provision finishes; now an update goes through.
    broker.on(
        "GET",
        "/v2/service_instances/i1/last_operation",
        Reply::new(200, r#"{"state":"succeeded"}"#),
    );
    let (status, _) = status_and_body(gateway.request(
        Method::GET,
        "/v2/service_instances/i1/last_operation?operation=prov%20i1",
    ))
    .await;
    assert_eq!(status, 200);
    broker.on("PATCH", "/v2/service_instances/i1", Reply::new(200, "{}"));
    let (status, _) = status_and_body(
        gateway
            .request(Method::PATCH, "/v2/service_instances/i1")
            .json(&update),
    )
    .await;
    assert_eq!(status, 200);
    let patch = &broker.received("PATCH", "/v2/service_instances/i1")[0];
    let sent: Value = serde_json::from_slice(&patch.body).unwrap();
    assert_eq!(
        sent,
        json!({"service_id": "up-svc", "parameters": {"a": 3}}),
        "upstream ids, nothing else touched"
    );

    // A plan change to a plan of the same service maps to the upstream plan.
    let (status, _) = status_and_body(gateway.request(Method::PATCH, "/v2/service_instances/i1").json(
        &json!({
            "service_id": ids.service, "plan_id": ids.large, "previous_values": {"plan_id": ids.small}
        }),
    ))
    .await;
    assert_eq!(status, 200);
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
    let (status, _) = status_and_body(
        gateway
            .request(Method::PUT, "/v2/service_instances/mine")
            .json(&ids.provision()),
    )
    .await;
    assert_eq!(status, 201);
    let binding = json!({"service_id": ids.service, "plan_id": ids.small});
    let (status, _) = status_and_body(
        gateway
            .request(Method::PUT, "/v2/service_instances/mine/service_bindings/b")
            .json(&binding),
    )
    .await;
    assert_eq!(status, 201);
    let before = forwarded(&broker);

    let q = format!("service_id={}&plan_id={}", ids.service, ids.small);
    let cases = [
        (as_cf(&gateway, Method::GET, "/v2/service_instances/mine"), 404),
        (
            as_cf(&gateway, Method::PATCH, "/v2/service_instances/mine")
                .json(&json!({"service_id": ids.service})),
            404,
        ),
        (
            as_cf(
                &gateway,
                Method::DELETE,
                &format!("/v2/service_instances/mine?{q}"),
            ),
            410,
        ),
        (
            as_cf(&gateway, Method::GET, "/v2/service_instances/mine/last_operation"),
            410,
        ),
        (
            as_cf(&gateway, Method::PUT, "/v2/service_instances/mine").json(&ids.provision()),
            409,
        ),
        (
            as_cf(
                &gateway,
                Method::PUT,
                "/v2/service_instances/mine/service_bindings/b2",
            )
            .json(&binding),
            404,
        ),
        (
            as_cf(
                &gateway,
                Method::GET,
                "/v2/service_instances/mine/service_bindings/b",
            ),
            404,
        ),
        (
            as_cf(
                &gateway,
                Method::DELETE,
                &format!("/v2/service_instances/mine/service_bindings/b?{q}"),
            ),
            410,
        ),
        (
            as_cf(
                &gateway,
                Method::GET,
                "/v2/service_instances/mine/service_bindings/b/last_operation",
            ),
            410,
        ),
    ];
    for (request, want) in cases {
        let (status, body) = status_and_body(request).await;
        assert_eq!(status.as_u16(), want, "{body}");
        assert!(body["description"].is_string(), "OSB error body");
    }
    assert_eq!(
        forwarded(&broker),
        before,
        "nothing of another platform's reached the upstream"
    );

    // The binding under another instance id is not the same binding either.
    broker.on("PUT", "/v2/service_instances/other", Reply::new(201, "{}"));
    let (status, _) = status_and_body(
        gateway
            .request(Method::PUT, "/v2/service_instances/other")
            .json(&ids.provision()),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = status_and_body(
        gateway
            .request(Method::PUT, "/v2/service_instances/other/service_bindings/b")
            .json(&binding),
    )
    .await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn bad_requests_are_400_and_reach_no_upstream() {
    let broker = FakeBroker::with_catalog(small_catalog()).await;
    broker.on("PUT", "/v2/service_instances/ok", Reply::new(201, "{}"));
    let (gateway, ids) = gateway_for(&broker).await;
    let (status, _) = status_and_body(
        gateway
            .request(Method::PUT, "/v2/service_instances/ok")
            .json(&ids.provision()),
    )
    .await;
    assert_eq!(status, 201);
    let before = forwarded(&broker);

    let big = json!({"service_id": ids.service, "plan_id": ids.small, "parameters": {"blob": "x".repeat(2 * 1024 * 1024)}});
    let q = format!("service_id={}&plan_id={}", ids.service, ids.small);
    let raw = |method: Method, path: &str, body: &str| {
        gateway
            .request(method, path)
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
            gateway
                .request(Method::PUT, "/v2/service_instances/x")
                .json(&json!({"service_id": "", "plan_id": ids.small})),
            400,
            "service_id must not be empty",
        ),
        (
            gateway
                .request(Method::PUT, "/v2/service_instances/x")
                .json(&json!({"service_id": ids.service, "plan_id": "nope"})),
            400,
            "unknown plan_id",
        ),
        (
            gateway
                .request(Method::PUT, "/v2/service_instances/x")
                .json(&json!({"service_id": "other", "plan_id": ids.small})),
            400,
            "unknown service_id",
        ),
        (
            gateway
                .request(Method::PUT, "/v2/service_instances/x")
                .json(&json!({"service_id": ids.service, "plan_id": ids.small, "parameters": "a=1"})),
            400,
            "parameters must be an object",
        ),
        (
            gateway
                .request(Method::PUT, "/v2/service_instances/x")
                .json(&json!({"service_id": ids.service, "plan_id": ids.small, "context": {"platform": 7}})),
            400,
            "context.platform",
        ),
        (
            gateway
                .request(Method::PUT, "/v2/service_instances/x?accepts_incomplete=maybe")
                .json(&ids.provision()),
            400,
            "accepts_incomplete",
        ),
        (
            gateway.request(Method::PUT, "/v2/service_instances/x").json(&big),
            400,
            "larger than",
        ),
        (
            gateway
                .request(Method::PUT, "/v2/service_instances/bad%20id")
                .json(&ids.provision()),
            400,
            "instance_id may contain only",
        ),
        (
            gateway
                .request(
                    Method::PUT,
                    "/v2/service_instances/ok/service_bindings/b%3Cscript",
                )
                .json(&json!({"service_id": ids.service, "plan_id": ids.small})),
            400,
            "binding_id may contain only",
        ),
        (
            gateway
                .request(Method::PUT, "/v2/service_instances/ok/service_bindings/b")
                .json(&json!({"service_id": ids.service, "plan_id": ids.nobind})),
            400,
            "not bindable",
        ),
        (
            gateway
                .request(Method::PUT, "/v2/service_instances/ok/service_bindings/b")
                .json(&json!({"service_id": ids.service})),
            400,
            "plan_id is required",
        ),
        (
            gateway.request(Method::DELETE, "/v2/service_instances/ok"),
            400,
            "service_id is required",
        ),
        (
            gateway.request(
                Method::DELETE,
                &format!("/v2/service_instances/ok?service_id={}", ids.service),
            ),
            400,
            "plan_id is required",
        ),
        (
            gateway.request(
                Method::DELETE,
                &format!("/v2/service_instances/ok?service_id=&plan_id={}", ids.small),
            ),
            400,
            "must not be empty",
        ),
        (
            gateway.request(
                Method::DELETE,
                &format!("/v2/service_instances/ok?service_id=wrong&plan_id={}", ids.small),
            ),
            400,
            "does not match",
        ),
        (
            gateway
                .request(Method::PATCH, "/v2/service_instances/ok")
                .json(&json!({"service_id": ids.service, "plan_id": "ghost"})),
            400,
            "unknown plan_id",
        ),
        (
            gateway
                .request(Method::PATCH, "/v2/service_instances/ok")
                .json(&json!({"plan_id": ids.small})),
            400,
            "service_id is required",
        ),
        (
            gateway.request(
                Method::GET,
                &format!("/v2/service_instances/ok/last_operation?{q}&operation="),
            ),
            400,
            "operation must not be empty",
        ),
        (
            gateway.request(Method::POST, "/v2/service_instances/ok"),
            405,
            "not allowed",
        ),
    ];
    for (request, want, says) in cases {
        let (status, body) = status_and_body(request).await;
        assert_eq!(status.as_u16(), want, "{says}: {body}");
        assert!(
            body["description"].as_str().is_some_and(|d| d.contains(says)),
            "{says}: {body}"
        );
    }
    assert_eq!(forwarded(&broker), before, "no bad request reached the upstream");

    // A plan that is not bindable.
    let big_broker = FakeBroker::with_catalog(small_catalog()).await;
    big_broker.on("PUT", "/v2/service_instances/nb", Reply::new(201, "{}"));
    let (gateway, ids) = gateway_for(&big_broker).await;
    let provision = json!({"service_id": ids.service, "plan_id": ids.nobind});
    let (status, _) = status_and_body(
        gateway
            .request(Method::PUT, "/v2/service_instances/nb")
            .json(&provision),
    )
    .await;
    assert_eq!(status, 201);
    let (status, body) = status_and_body(
        gateway
            .request(Method::PUT, "/v2/service_instances/nb/service_bindings/b")
            .json(&provision),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body["description"].as_str().unwrap().contains("not bindable"));
}
