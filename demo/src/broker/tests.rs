//! Tests of [`DemoBroker`] over real HTTP: each starts a broker on port 0 and calls it with reqwest.

use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::route::{Route, decode, route};
use super::script::Reply;
use super::{Answers, Behaviour, DemoBroker, Endpoint};

const SERVICE: &str = "svc-1";
const PLAN: &str = "plan-small";
const OTHER_PLAN: &str = "plan-large";

fn catalog() -> Bytes {
    Bytes::from(
        json!({"services": [
            {"id": SERVICE, "name": "one", "description": "d", "bindable": true,
             "plans": [{"id": PLAN, "name": "small", "description": "d"},
                       {"id": OTHER_PLAN, "name": "large", "description": "d"}]},
            {"id": "svc-2", "name": "two", "description": "d", "bindable": true,
             "plans": [{"id": "plan-two", "name": "only", "description": "d"}]}
        ]})
        .to_string(),
    )
}

/// A platform talking to one broker.
struct Platform {
    http: reqwest::Client,
    base: String,
    username: String,
    password: String,
}

impl Platform {
    fn new(broker: &DemoBroker) -> Self {
        Platform {
            http: reqwest::Client::new(),
            base: format!("http://{}", broker.addr),
            username: broker.username.clone(),
            password: broker.password.clone(),
        }
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .basic_auth(&self.username, Some(&self.password))
            .header("X-Broker-API-Version", "2.17")
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.unwrap();
        let status = response.status();
        let body = response.json::<Value>().await.unwrap();
        (status, body)
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.request(method, path).query(query);
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.send(request).await
    }

    async fn provision(&self, iid: &str, body: Value, accepts_incomplete: bool) -> (StatusCode, Value) {
        let query: &[(&str, &str)] = if accepts_incomplete {
            &[("accepts_incomplete", "true")]
        } else {
            &[]
        };
        self.call(
            Method::PUT,
            &format!("/v2/service_instances/{iid}"),
            query,
            Some(body),
        )
        .await
    }

    async fn deprovision(&self, iid: &str, accepts_incomplete: bool) -> (StatusCode, Value) {
        let mut query = vec![("service_id", SERVICE), ("plan_id", PLAN)];
        if accepts_incomplete {
            query.push(("accepts_incomplete", "true"));
        }
        self.call(
            Method::DELETE,
            &format!("/v2/service_instances/{iid}"),
            &query,
            None,
        )
        .await
    }

    async fn instance_last_operation(&self, iid: &str, operation: Option<&str>) -> (StatusCode, Value) {
        let query: Vec<(&str, &str)> = operation.map(|op| ("operation", op)).into_iter().collect();
        self.call(
            Method::GET,
            &format!("/v2/service_instances/{iid}/last_operation"),
            &query,
            None,
        )
        .await
    }

    async fn bind(&self, iid: &str, bid: &str, body: Value, accepts_incomplete: bool) -> (StatusCode, Value) {
        let query: &[(&str, &str)] = if accepts_incomplete {
            &[("accepts_incomplete", "true")]
        } else {
            &[]
        };
        self.call(
            Method::PUT,
            &format!("/v2/service_instances/{iid}/service_bindings/{bid}"),
            query,
            Some(body),
        )
        .await
    }

    async fn unbind(&self, iid: &str, bid: &str, accepts_incomplete: bool) -> (StatusCode, Value) {
        let mut query = vec![("service_id", SERVICE), ("plan_id", PLAN)];
        if accepts_incomplete {
            query.push(("accepts_incomplete", "true"));
        }
        self.call(
            Method::DELETE,
            &format!("/v2/service_instances/{iid}/service_bindings/{bid}"),
            &query,
            None,
        )
        .await
    }

    async fn binding_last_operation(
        &self,
        iid: &str,
        bid: &str,
        operation: Option<&str>,
    ) -> (StatusCode, Value) {
        let query: Vec<(&str, &str)> = operation.map(|op| ("operation", op)).into_iter().collect();
        self.call(
            Method::GET,
            &format!("/v2/service_instances/{iid}/service_bindings/{bid}/last_operation"),
            &query,
            None,
        )
        .await
    }
}

fn small() -> Value {
    json!({"service_id": SERVICE, "plan_id": PLAN, "parameters": {"size": 1},
           "context": {"platform": "kubernetes"}, "organization_guid": "o", "space_guid": "s"})
}

fn operation_of(body: &Value) -> String {
    body["operation"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn calls_need_basic_auth_and_api_version() {
    let broker = DemoBroker::start("auth", catalog()).await.unwrap();
    let platform = Platform::new(&broker);
    for path in [
        "/v2/catalog",
        "/v2/service_instances/i1",
        "/v2/service_instances/i1/last_operation",
    ] {
        let url = format!("{}{path}", platform.base);
        let anonymous = platform.http.get(&url).header("X-Broker-API-Version", "2.17");
        let (status, body) = platform.send(anonymous).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(body["description"].is_string(), "{path}: {body}");

        let wrong = platform
            .http
            .get(&url)
            .basic_auth(&broker.username, Some("wrong"))
            .header("X-Broker-API-Version", "2.17");
        assert_eq!(platform.send(wrong).await.0, StatusCode::UNAUTHORIZED, "{path}");

        let versionless = platform
            .http
            .get(&url)
            .basic_auth(&broker.username, Some(&broker.password));
        let (status, body) = platform.send(versionless).await;
        assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{path}");
        assert!(body["description"].is_string(), "{path}: {body}");
    }
    // Nothing was created by the rejected calls, but they were counted.
    let (status, _) = platform.provision("i1", small(), false).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(broker.request_count(Endpoint::Catalog), 3);
    assert_eq!(broker.requests()["fetch_instance"], 3);
    broker.stop().await;
}

#[tokio::test]
async fn catalog_is_served_with_etag_and_304() {
    let broker = DemoBroker::start("catalog", catalog()).await.unwrap();
    let platform = Platform::new(&broker);
    let response = platform.request(Method::GET, "/v2/catalog").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let etag = response.headers()["etag"].clone();
    // The catalog as given, with both fetches announced on every service.
    let served: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    let mut expected: serde_json::Value = serde_json::from_slice(&catalog()).unwrap();
    for service in expected["services"].as_array_mut().unwrap() {
        service["instances_retrievable"] = true.into();
        service["bindings_retrievable"] = true.into();
    }
    assert_eq!(served, expected);
    let response = platform
        .request(Method::GET, "/v2/catalog")
        .header("If-None-Match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    broker.stop().await;
}

#[tokio::test]
async fn sync_instance_lifecycle() {
    let broker = DemoBroker::start("sync", catalog()).await.unwrap();
    let platform = Platform::new(&broker);

    // Provision, then the identical PUT again, then a different one.
    assert_eq!(
        platform.provision("i1", small(), false).await,
        (StatusCode::CREATED, json!({}))
    );
    assert_eq!(
        platform.provision("i1", small(), true).await,
        (StatusCode::OK, json!({}))
    );
    let larger = json!({"service_id": SERVICE, "plan_id": OTHER_PLAN, "parameters": {"size": 1}});
    assert_eq!(
        platform.provision("i1", larger, false).await,
        (StatusCode::CONFLICT, json!({}))
    );
    let other_parameters = json!({"service_id": SERVICE, "plan_id": PLAN, "parameters": {"size": 2}});
    assert_eq!(
        platform.provision("i1", other_parameters, false).await.0,
        StatusCode::CONFLICT
    );
    assert_eq!(broker.instances(), vec!["i1".to_owned()]);

    let (status, body) = platform
        .call(Method::GET, "/v2/service_instances/i1", &[], None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"service_id": SERVICE, "plan_id": PLAN, "parameters": {"size": 1}})
    );
    let (status, body) = platform.instance_last_operation("i1", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["state"], "succeeded");

    // Update changes the plan; parameters stay when not sent.
    let update = json!({"service_id": SERVICE, "plan_id": OTHER_PLAN, "previous_values": {"plan_id": PLAN}});
    let (status, body) = platform
        .call(Method::PATCH, "/v2/service_instances/i1", &[], Some(update))
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    let (_, body) = platform
        .call(Method::GET, "/v2/service_instances/i1", &[], None)
        .await;
    assert_eq!(
        body,
        json!({"service_id": SERVICE, "plan_id": OTHER_PLAN, "parameters": {"size": 1}})
    );

    // Deprovision removes it at once; again is 410, and so is its last_operation.
    assert_eq!(
        platform.deprovision("i1", false).await,
        (StatusCode::OK, json!({}))
    );
    assert!(broker.instances().is_empty());
    assert_eq!(
        platform.deprovision("i1", false).await,
        (StatusCode::GONE, json!({}))
    );
    assert_eq!(
        platform.instance_last_operation("i1", None).await.0,
        StatusCode::GONE
    );
    let (status, _) = platform
        .call(Method::GET, "/v2/service_instances/i1", &[], None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    assert_eq!(broker.requests()["provision"], 4);
    assert_eq!(broker.requests()["deprovision"], 2);
    broker.stop().await;
}

#[tokio::test]
async fn bad_requests_are_400_with_a_description() {
    let broker = DemoBroker::start("bad", catalog()).await.unwrap();
    let platform = Platform::new(&broker);
    let cases = [
        json!({"service_id": "nope", "plan_id": PLAN}),
        json!({"service_id": SERVICE, "plan_id": "plan-two"}),
        json!({"service_id": SERVICE}),
        json!({"plan_id": PLAN}),
    ];
    for body in cases {
        let (status, answer) = platform.provision("i1", body.clone(), false).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            answer["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{answer}"
        );
    }
    let not_json = platform
        .request(Method::PUT, "/v2/service_instances/i1")
        .header("Content-Type", "application/json")
        .body("{");
    assert_eq!(platform.send(not_json).await.0, StatusCode::BAD_REQUEST);
    assert!(broker.instances().is_empty());

    // Update of an unknown instance, or to a plan of another service.
    let update = json!({"service_id": SERVICE, "plan_id": OTHER_PLAN});
    let (status, body) = platform
        .call(Method::PATCH, "/v2/service_instances/nope", &[], Some(update))
        .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::BAD_REQUEST,
            json!({"description": "instance does not exist"})
        )
    );
    platform.provision("i1", small(), false).await;
    let update = json!({"service_id": SERVICE, "plan_id": "plan-two"});
    let (status, _) = platform
        .call(Method::PATCH, "/v2/service_instances/i1", &[], Some(update))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Deprovision and unbind need service_id and plan_id.
    for query in [vec![], vec![("service_id", SERVICE)], vec![("plan_id", PLAN)]] {
        let (status, _) = platform
            .call(Method::DELETE, "/v2/service_instances/i1", &query, None)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query:?}");
        let (status, _) = platform
            .call(
                Method::DELETE,
                "/v2/service_instances/i1/service_bindings/b1",
                &query,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query:?}");
    }
    assert_eq!(broker.instances(), vec!["i1".to_owned()]);

    // Bind to an unknown instance.
    let (status, _) = platform.bind("nope", "b1", small(), false).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    broker.stop().await;
}

#[tokio::test]
async fn async_instance_lifecycle() {
    let broker = DemoBroker::start_with("async", catalog(), Behaviour::asynchronous(2))
        .await
        .unwrap();
    let platform = Platform::new(&broker);

    // Without accepts_incomplete the broker stays synchronous.
    assert_eq!(
        platform.provision("sync", small(), false).await.0,
        StatusCode::CREATED
    );

    let (status, body) = platform.provision("i1", small(), true).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let operation = operation_of(&body);
    assert!(operation.contains(' ') && operation.contains('/'), "{operation}");
    // A re-sent PUT gets the same operation; a different one is a conflict.
    assert_eq!(
        platform.provision("i1", small(), true).await,
        (StatusCode::ACCEPTED, body.clone())
    );
    let larger = json!({"service_id": SERVICE, "plan_id": OTHER_PLAN});
    assert_eq!(
        platform.provision("i1", larger, true).await.0,
        StatusCode::CONFLICT
    );
    assert_eq!(broker.instances(), vec!["i1".to_owned(), "sync".to_owned()]);
    // Not fetchable while provisioning, and not bindable.
    let (status, _) = platform
        .call(Method::GET, "/v2/service_instances/i1", &[], None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = platform.bind("i1", "b1", small(), false).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"], "ConcurrencyError");

    // Two polls in progress (the operation goes percent-encoded and must match), then succeeded.
    for _ in 0..2 {
        let (status, body) = platform.instance_last_operation("i1", Some(&operation)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["state"], "in progress");
        assert!(body["description"].is_string());
    }
    let (status, body) = platform.instance_last_operation("i1", Some(&operation)).await;
    assert_eq!(
        (status, body["state"].clone()),
        (StatusCode::OK, json!("succeeded"))
    );
    assert_eq!(
        platform.instance_last_operation("i1", None).await.1["state"],
        "succeeded"
    );
    assert_eq!(
        platform.provision("i1", small(), true).await,
        (StatusCode::OK, json!({}))
    );
    assert_eq!(
        platform
            .call(Method::GET, "/v2/service_instances/i1", &[], None)
            .await
            .0,
        StatusCode::OK
    );

    // Async update.
    let update = json!({"service_id": SERVICE, "plan_id": OTHER_PLAN});
    let (status, body) = platform
        .call(
            Method::PATCH,
            "/v2/service_instances/i1",
            &[("accepts_incomplete", "true")],
            Some(update.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let update_operation = operation_of(&body);
    assert_ne!(update_operation, operation);
    let (status, body) = platform
        .call(Method::PATCH, "/v2/service_instances/i1", &[], Some(update))
        .await;
    assert_eq!(
        (status, body["error"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("ConcurrencyError"))
    );
    for expected in ["in progress", "in progress", "succeeded"] {
        let (_, body) = platform
            .instance_last_operation("i1", Some(&update_operation))
            .await;
        assert_eq!(body["state"], expected);
    }

    // Async deprovision: the instance exists until its operation succeeded, then it is gone (410).
    let (status, body) = platform.deprovision("i1", true).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let delete_operation = operation_of(&body);
    assert_eq!(
        platform.deprovision("i1", true).await,
        (StatusCode::ACCEPTED, body.clone())
    );
    assert_eq!(
        platform.provision("i1", small(), true).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    for expected in ["in progress", "in progress"] {
        let (_, body) = platform
            .instance_last_operation("i1", Some(&delete_operation))
            .await;
        assert_eq!(body["state"], expected);
        assert!(broker.instances().contains(&"i1".to_owned()));
    }
    let (status, body) = platform
        .instance_last_operation("i1", Some(&delete_operation))
        .await;
    assert_eq!(
        (status, body["state"].clone()),
        (StatusCode::OK, json!("succeeded"))
    );
    assert_eq!(broker.instances(), vec!["sync".to_owned()]);
    assert_eq!(
        platform
            .instance_last_operation("i1", Some(&delete_operation))
            .await
            .0,
        StatusCode::GONE
    );
    assert_eq!(platform.deprovision("i1", true).await.0, StatusCode::GONE);

    // A sync deprovision of an instance still provisioning removes it at once.
    platform.provision("i2", small(), true).await;
    assert_eq!(platform.deprovision("i2", false).await.0, StatusCode::OK);
    assert_eq!(broker.instances(), vec!["sync".to_owned()]);
    broker.stop().await;
}

#[tokio::test]
async fn last_operation_matches_the_decoded_operation() {
    let broker = DemoBroker::start_with("ops", catalog(), Behaviour::asynchronous(1))
        .await
        .unwrap();
    let platform = Platform::new(&broker);
    let (_, body) = platform.provision("i1", small(), true).await;
    let operation = operation_of(&body);
    let (status, body) = platform
        .instance_last_operation("i1", Some("provision 999/i1"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["description"].is_string());
    // The raw query, encoded by hand with %20 and %2F.
    let encoded = operation.replace(' ', "%20").replace('/', "%2F");
    let (status, body) = platform
        .send(platform.request(
            Method::GET,
            &format!("/v2/service_instances/i1/last_operation?operation={encoded}&service_id={SERVICE}"),
        ))
        .await;
    assert_eq!(
        (status, body["state"].clone()),
        (StatusCode::OK, json!("in progress"))
    );
    // A sync-only resource has no operation to name.
    platform.provision("plain", small(), false).await;
    assert_eq!(
        platform
            .instance_last_operation("plain", Some(&operation))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    broker.stop().await;
}

#[tokio::test]
async fn sync_binding_lifecycle() {
    let broker = DemoBroker::start("bindings", catalog()).await.unwrap();
    let platform = Platform::new(&broker);
    platform.provision("i1", small(), false).await;

    let (status, created) = platform.bind("i1", "b1", small(), false).await;
    assert_eq!(status, StatusCode::CREATED);
    let credentials = &created["credentials"];
    assert_eq!(credentials["uri"], "demo://b1");
    assert!(credentials["username"].is_string() && credentials["password"].is_string());
    assert_eq!(
        platform.bind("i1", "b1", small(), false).await,
        (StatusCode::OK, created.clone())
    );
    let other = json!({"service_id": SERVICE, "plan_id": OTHER_PLAN});
    assert_eq!(
        platform.bind("i1", "b1", other, false).await,
        (StatusCode::CONFLICT, json!({}))
    );
    assert_eq!(broker.bindings(), vec![("i1".to_owned(), "b1".to_owned())]);

    let (status, fetched) = platform
        .call(
            Method::GET,
            "/v2/service_instances/i1/service_bindings/b1",
            &[],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched["credentials"], created["credentials"]);
    assert_eq!(fetched["parameters"], json!({"size": 1}));
    assert_eq!(
        platform.binding_last_operation("i1", "b1", None).await.1["state"],
        "succeeded"
    );

    assert_eq!(
        platform.unbind("i1", "b1", false).await,
        (StatusCode::OK, json!({}))
    );
    assert!(broker.bindings().is_empty());
    assert_eq!(
        platform.unbind("i1", "b1", false).await,
        (StatusCode::GONE, json!({}))
    );
    assert_eq!(platform.unbind("nope", "b1", false).await.0, StatusCode::GONE);
    assert_eq!(
        platform.binding_last_operation("i1", "b1", None).await.0,
        StatusCode::GONE
    );
    let (status, _) = platform
        .call(
            Method::GET,
            "/v2/service_instances/i1/service_bindings/b1",
            &[],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Deprovisioning an instance takes its bindings with it.
    platform.bind("i1", "b2", small(), false).await;
    platform.deprovision("i1", false).await;
    assert!(broker.bindings().is_empty());
    broker.stop().await;
}

#[tokio::test]
async fn async_binding_lifecycle() {
    let broker = DemoBroker::start_with("async-bindings", catalog(), Behaviour::asynchronous(1))
        .await
        .unwrap();
    let platform = Platform::new(&broker);
    platform.provision("i1", small(), false).await;

    let (status, body) = platform.bind("i1", "b1", small(), true).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(
        body.get("credentials").is_none(),
        "no credentials in a 202: {body}"
    );
    let operation = operation_of(&body);
    assert_eq!(
        platform.bind("i1", "b1", small(), true).await,
        (StatusCode::ACCEPTED, body.clone())
    );
    let (status, _) = platform
        .call(
            Method::GET,
            "/v2/service_instances/i1/service_bindings/b1",
            &[],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for expected in ["in progress", "succeeded"] {
        let (status, body) = platform
            .binding_last_operation("i1", "b1", Some(&operation))
            .await;
        assert_eq!((status, body["state"].clone()), (StatusCode::OK, json!(expected)));
    }
    let (status, fetched) = platform
        .call(
            Method::GET,
            "/v2/service_instances/i1/service_bindings/b1",
            &[],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched["credentials"]["uri"], "demo://b1");
    let (status, body) = platform.bind("i1", "b1", small(), true).await;
    assert_eq!(
        (status, body["credentials"].clone()),
        (StatusCode::OK, fetched["credentials"].clone())
    );

    let (status, body) = platform.unbind("i1", "b1", true).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let unbind_operation = operation_of(&body);
    assert_eq!(
        platform.bind("i1", "b1", small(), true).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(broker.bindings().len(), 1);
    for expected in ["in progress", "succeeded"] {
        let (_, body) = platform
            .binding_last_operation("i1", "b1", Some(&unbind_operation))
            .await;
        assert_eq!(body["state"], expected);
    }
    assert!(broker.bindings().is_empty());
    assert_eq!(
        platform
            .binding_last_operation("i1", "b1", Some(&unbind_operation))
            .await
            .0,
        StatusCode::GONE
    );
    assert_eq!(platform.unbind("i1", "b1", true).await.0, StatusCode::GONE);
    broker.stop().await;
}

#[tokio::test]
async fn latency_delays_the_answer_not_the_effect() {
    let latency = Duration::from_millis(300);
    let behaviour = Behaviour::default().with_latency(latency);
    let broker = DemoBroker::start_with("slow", catalog(), behaviour)
        .await
        .unwrap();
    let platform = Platform::new(&broker);

    let started = Instant::now();
    assert_eq!(
        platform.provision("i1", small(), false).await.0,
        StatusCode::CREATED
    );
    assert!(started.elapsed() >= latency);

    // A platform that gives up mid-call still leaves the instance behind.
    let impatient = platform
        .request(Method::PUT, "/v2/service_instances/i2")
        .json(&small())
        .timeout(Duration::from_millis(50))
        .send()
        .await;
    assert!(impatient.is_err());
    assert_eq!(broker.instances(), vec!["i1".to_owned(), "i2".to_owned()]);
    broker.stop().await;
}

#[tokio::test]
async fn concurrent_provisions_on_many_workers() {
    let broker = DemoBroker::start_with("fast", catalog(), Behaviour::fast().with_workers(4))
        .await
        .unwrap();
    let platform = std::sync::Arc::new(Platform::new(&broker));
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..200 {
        let platform = platform.clone();
        tasks.spawn(async move { platform.provision(&format!("i{n:03}"), small(), false).await.0 });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::CREATED);
    }
    assert_eq!(broker.instances().len(), 200);
    assert_eq!(broker.request_count(Endpoint::Provision), 200);
    broker.stop().await;
}

#[tokio::test]
async fn real_catalogs_provision_their_own_plans() {
    for (name, _, catalog) in crate::DEMO_CATALOGS {
        let broker = DemoBroker::start_with(name, Bytes::from_static(catalog), crate::demo_behaviour())
            .await
            .unwrap();
        let platform = Platform::new(&broker);
        let parsed: Value = serde_json::from_slice(catalog).unwrap();
        let service = &parsed["services"][0];
        let body = json!({"service_id": service["id"], "plan_id": service["plans"][0]["id"]});
        let (status, body) = platform.provision("i1", body, true).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{name}: {body}");
        assert_eq!(broker.instances(), vec!["i1".to_owned()]);
        broker.stop().await;
    }
}

#[test]
fn behaviour_defaults() {
    let default = Behaviour::default();
    assert_eq!(
        default,
        Behaviour {
            latency: Duration::ZERO,
            async_operations: false,
            async_polls: 1,
            workers: 1,
            error_rate: 0.0,
            answers: Answers::Stateful,
            record: false,
        }
    );
    assert!(Behaviour::fast().workers >= 1);
    assert!(!Behaviour::fast().async_operations);
    let asynchronous = Behaviour::asynchronous(3);
    assert!(asynchronous.async_operations);
    assert_eq!(asynchronous.async_polls, 3);
}

#[test]
fn routes_name_the_calls_with_decoded_ids() {
    assert_eq!(route("/v2/catalog"), Some(Route::Catalog));
    assert_eq!(
        route("/v2/service_instances/i1"),
        Some(Route::Instance("i1".into()))
    );
    assert_eq!(
        route("/v2/service_instances/i1/last_operation"),
        Some(Route::InstanceLastOperation("i1".into()))
    );
    assert_eq!(
        route("/v2/service_instances/i%201/service_bindings/b%2F1"),
        Some(Route::Binding("i 1".into(), "b/1".into()))
    );
    assert_eq!(
        route("/v2/service_instances/i1/service_bindings/b1/last_operation"),
        Some(Route::BindingLastOperation("i1".into(), "b1".into()))
    );
    for unknown in [
        "/v2/service_instances/",
        "/v2/service_instances/i1/",
        "/other",
        "/v2/service_instances//last_operation",
    ] {
        assert_eq!(route(unknown), None, "{unknown}");
    }
    assert_eq!(decode("a%zz%4"), "a%zz%4");
    assert_eq!(decode("%C3%A9"), "é");
}

#[tokio::test]
async fn unknown_paths_are_404_and_other_methods_405() {
    let broker = DemoBroker::start("paths", catalog()).await.unwrap();
    let platform = Platform::new(&broker);
    let (status, body) = platform.call(Method::GET, "/v2/nothing", &[], None).await;
    assert_eq!(
        (status, body["description"].as_str()),
        (StatusCode::NOT_FOUND, Some("no such endpoint"))
    );
    let (status, _) = platform
        .call(Method::POST, "/v2/service_instances/i1", &[], None)
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    broker.stop().await;
}

#[tokio::test]
async fn fast_answers_without_parsing_and_counts_what_is_held() {
    let behaviour = Behaviour {
        async_operations: true,
        async_polls: 1,
        ..Behaviour::counting()
    };
    let catalog = Bytes::from_static(b"{\"services\": []}");
    let broker = DemoBroker::start_as("fast", "secret", catalog.clone(), behaviour)
        .await
        .unwrap();
    let platform = Platform::new(&broker);
    // The catalog's bytes as given.
    let response = platform.request(Method::GET, "/v2/catalog").send().await.unwrap();
    assert_eq!(response.bytes().await.unwrap(), catalog);
    // No body check: anything is provisioned.
    let (status, _) = platform.provision("i1", json!({"not": "checked"}), false).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = platform.provision("i2", json!({}), true).await;
    assert_eq!(
        (status, body["operation"].as_str()),
        (StatusCode::ACCEPTED, Some("provisioning"))
    );
    let (_, body) = platform.instance_last_operation("i2", None).await;
    assert_eq!(body["state"], "in progress");
    let (_, body) = platform.instance_last_operation("i2", None).await;
    assert_eq!(body["state"], "succeeded");
    let (status, body) = platform.bind("i1", "b1", json!({}), false).await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(body["credentials"]["uri"].is_string());
    assert_eq!(broker.held(), (2, 1));
    platform.unbind("i1", "b1", false).await;
    platform.deprovision("i1", false).await;
    platform.deprovision("i2", false).await;
    assert_eq!(broker.held(), (0, 0));
    assert!(broker.instances().is_empty());
    assert_eq!(broker.request_count(Endpoint::Provision), 2);
    broker.stop().await;
}

#[tokio::test]
async fn error_rate_fails_that_share_without_effect() {
    let broker = DemoBroker::start_with("failing", catalog(), Behaviour::default().with_error_rate(0.5))
        .await
        .unwrap();
    let platform = Platform::new(&broker);
    let mut failed = 0;
    for n in 0..10 {
        let (status, body) = platform.provision(&format!("i{n}"), small(), false).await;
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            assert!(body["description"].is_string());
            failed += 1;
        } else {
            assert_eq!(status, StatusCode::CREATED);
        }
    }
    assert_eq!(failed, 5);
    assert_eq!(broker.instances().len(), 5);
    broker.stop().await;
}

#[tokio::test]
async fn scripted_replies_answer_first_and_requests_are_recorded() {
    let broker = DemoBroker::start_with("scripted", Bytes::new(), Behaviour::scripted())
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let url = broker.url();
    // Unscripted: 404, no check at all.
    let response = http.get(format!("{url}/v2/catalog")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    broker.on(
        "PUT",
        "/v2/service_instances/*",
        Reply::json(201, &json!({"dashboard_url": "d"})).header("x-test", "1"),
    );
    let response = http
        .put(format!("{url}/v2/service_instances/i1?accepts_incomplete=true"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["x-test"], "1");
    let recorded = broker.received("PUT", "/v2/service_instances/");
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].query, "accepts_incomplete=true");
    assert_eq!(recorded[0].body, b"{}");
    assert_eq!(broker.recorded().len(), 2);

    // Killed: refused; restarted on the same port with the same script.
    broker.kill().await;
    // A new connection (a pooled one may still be closing): refused.
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    assert!(fresh.get(format!("{url}/v2/catalog")).send().await.is_err());
    broker.restart().await.unwrap();
    // Again a new connection: a pooled one died with the killed server.
    let response = fresh
        .put(format!("{url}/v2/service_instances/i2"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    broker.stop().await;
}
