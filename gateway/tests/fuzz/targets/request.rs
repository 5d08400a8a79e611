//! Target `request`: what the gateway parses from a platform before anything is forwarded
//! (`osb_gateway::edge::parse` and the header checks of the middleware).
//!
//! Properties: every parser either accepts or answers an OSB error (a 4xx whose body is a JSON
//! object with a non-empty `description`), never panics; and what it accepts maps upstream
//! faithfully:
//! - a body keeps every field it had, with `service_id`/`plan_id`/`previous_values` ids replaced;
//! - a query string sent upstream parses again, with the new ids and `operation` byte for byte;
//! - an id is accepted exactly when it is 1 to 255 URL-safe characters.

use std::sync::OnceLock;

use actix_web::ResponseError;
use actix_web::body::MessageBody;
use actix_web::http::header::HeaderValue;
use osb_gateway::ApiError;
use osb_gateway::edge::auth::Platforms;
use osb_gateway::edge::parse::{self, BodyKind, Query};
use serde_json::{Value, json};

use super::input::{Input, mutate};

/// Bodies platforms really send: provision with context and parameters, update with previous
/// values and maintenance info, bind with a bind resource.
fn body_seeds() -> &'static [Value] {
    static SEEDS: OnceLock<Vec<Value>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        vec![
            json!({
                "service_id": "336323c1-0f35-5c41-a8e6-2e2ebf90e4b7",
                "plan_id": "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
                "context": {"platform": "kubernetes", "namespace": "team-a", "clusterid": "c1",
                            "instance_name": "db", "namespace_annotations": {"example.com/cost-center": "42"}},
                "organization_guid": "org", "space_guid": "space",
                "parameters": {"region": "eu-west-1", "size": 3, "tags": ["a"]},
                "maintenance_info": {"version": "1.0.0"},
                "x-vendor": {"keep": true}
            }),
            json!({
                "service_id": "s", "plan_id": "p2",
                "context": {"platform": "cloudfoundry", "organization_guid": "o", "space_guid": "s"},
                "parameters": {"a": null},
                "previous_values": {"plan_id": "p1", "service_id": "s", "organization_id": "o",
                                    "space_id": "s", "maintenance_info": {"version": "1.0.0"}}
            }),
            json!({
                "service_id": "s", "plan_id": "p",
                "context": {"platform": "kubernetes"},
                "app_guid": "app",
                "bind_resource": {"app_guid": "app", "route": "r.example.com"},
                "parameters": {}
            }),
        ]
    })
}

/// Asserts that `error` is a parser's refusal: a 4xx with an OSB error body.
fn assert_osb_refusal(error: &ApiError) {
    let response = error.error_response();
    let status = response.status();
    assert!(status.is_client_error(), "parser refused with {status}: {error}");
    let Ok(bytes) = response.into_body().try_into_bytes() else {
        panic!("error body is not in memory");
    };
    let body: Value =
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("error body is not JSON ({e}): {bytes:?}"));
    assert!(
        body.get("description")
            .and_then(Value::as_str)
            .is_some_and(|d| !d.is_empty()),
        "error body without a description: {body}"
    );
    if let Some(code) = body.get("error") {
        let code = code.as_str().unwrap_or_default();
        assert!(
            code.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                && code.chars().all(|c| c.is_ascii_alphanumeric()),
            "error code is not a CamelCase word: {code:?}"
        );
    }
}

pub fn request(data: &[u8]) {
    let mut input = Input::new(data);
    match input.below(5) {
        0 | 1 => body(&mut input),
        2 => query(&mut input),
        3 => id(&mut input),
        _ => headers(&mut input),
    }
}

fn body(input: &mut Input<'_>) {
    let kind = *input
        .pick(&[BodyKind::Provision, BodyKind::Update, BodyKind::Bind])
        .unwrap_or(&BodyKind::Provision);
    let bytes = if input.raw_mode() {
        input.bytes(usize::MAX).to_vec()
    } else {
        let mut value = input.pick(body_seeds()).cloned().unwrap_or(Value::Null);
        mutate(&mut value, input, 4);
        serde_json::to_vec(&value).unwrap_or_default()
    };
    match parse::request_body(kind, &bytes) {
        Err(error) => assert_osb_refusal(&error),
        Ok(body) => {
            assert!(!body.service_id.is_empty());
            if kind != BodyKind::Update {
                assert!(body.plan_id.as_deref().is_some_and(|p| !p.is_empty()));
            }
            let previous = body.previous_plan_id().map(|_| "upstream-previous");
            let upstream = body.upstream("upstream-service", Some("upstream-plan"), previous);
            let Ok(Value::Object(sent)) = serde_json::from_slice::<Value>(&upstream) else {
                panic!("the upstream body is not a JSON object");
            };
            assert_eq!(sent.get("service_id"), Some(&json!("upstream-service")));
            assert_eq!(sent.get("plan_id"), Some(&json!("upstream-plan")));
            for (key, value) in &body.fields {
                match key.as_str() {
                    "service_id" | "plan_id" | "previous_values" => {}
                    _ => assert_eq!(sent.get(key), Some(value), "field {key} changed on the way up"),
                }
            }
            if previous.is_some() {
                assert_eq!(
                    sent.get("previous_values").and_then(|p| p.get("plan_id")),
                    Some(&json!("upstream-previous"))
                );
            }
        }
    }
}

/// Names that mean something in an OSB query, and some that don't.
const QUERY_NAMES: &[&str] = &[
    "accepts_incomplete",
    "service_id",
    "plan_id",
    "operation",
    "x",
    "",
    "service%5Fid",
    "accepts_incomplete ",
];

fn query(input: &mut Input<'_>) {
    let raw = if input.raw_mode() {
        String::from_utf8_lossy(input.bytes(usize::MAX)).into_owned()
    } else {
        let pairs = input.below(5);
        let mut parts = Vec::new();
        for _ in 0..pairs {
            let name = input.pick(QUERY_NAMES).copied().unwrap_or("x");
            let value = match input.below(6) {
                0 => "true".to_owned(),
                1 => "false".to_owned(),
                2 => parse::encode(&input.text()),
                3 => "op%20provision%2Fi%2B1".to_owned(),
                _ => input.text(),
            };
            parts.push(if input.one_in(6) {
                name.to_owned()
            } else {
                format!("{name}={value}")
            });
        }
        parts.join(if input.one_in(8) { "&&" } else { "&" })
    };
    match Query::parse(&raw) {
        Err(error) => assert_osb_refusal(&error),
        Ok(query) => {
            if let Some(value) = query.get("accepts_incomplete") {
                assert!(value == "true" || value == "false");
            }
            // Upstream ids are never empty (the catalog validation drops those).
            let service_id = format!("s{}", input.text());
            let plan_id = format!("p{}", input.text());
            let upstream = query.upstream(&service_id, &plan_id);
            let again = Query::parse(&upstream)
                .unwrap_or_else(|e| panic!("the upstream query {upstream:?} does not parse: {e}"));
            assert_eq!(again.get("service_id"), Some(service_id.as_str()));
            assert_eq!(again.get("plan_id"), Some(plan_id.as_str()));
            assert_eq!(
                again.get("operation"),
                query.get("operation"),
                "operation re-encoded"
            );
            let accepts = query.accepts_incomplete();
            assert!(accepts.is_empty() || accepts.starts_with("accepts_incomplete="));
        }
    }
}

/// Ids: the grammar's few characters (dots above all), or any text.
const ID_PIECES: &[&str] = &[".", "..", "a", "-", "_", "~", "%2e", "%2E", "/", "\\", "%", "0"];

fn id(input: &mut Input<'_>) {
    let value = if input.one_in(2) {
        (0..input.below(5))
            .map(|_| input.pick(ID_PIECES).copied().unwrap_or("."))
            .collect()
    } else {
        input.text()
    };
    let expected = !value.is_empty()
        && value.len() <= parse::MAX_ID_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        && value.bytes().any(|b| b != b'.');
    match parse::id("instance_id", &value) {
        Ok(id) => {
            assert!(expected, "accepted id {value:?}");
            assert_eq!(id.as_str(), value);
            // What the upstream receives: exactly the routed segments, the id among them.
            let other = parse::id("binding_id", "b-1").unwrap();
            let base = url::Url::parse("http://broker:1/osb/").unwrap();
            for (path, expected) in [
                (
                    osb_routing::UpstreamPath::instance(&id).last_operation(),
                    vec!["osb", "v2", "service_instances", &value, "last_operation"],
                ),
                (
                    osb_routing::UpstreamPath::binding(&other, &id),
                    vec![
                        "osb",
                        "v2",
                        "service_instances",
                        "b-1",
                        "service_bindings",
                        &value,
                    ],
                ),
                (
                    osb_routing::UpstreamPath::binding(&id, &other),
                    vec![
                        "osb",
                        "v2",
                        "service_instances",
                        &value,
                        "service_bindings",
                        "b-1",
                    ],
                ),
            ] {
                let url = url::Url::parse(path.url(&base).unwrap().as_str()).unwrap();
                let sent: Vec<&str> = url.path_segments().unwrap().collect();
                assert_eq!(sent, expected, "id {value:?} reached the upstream as {url}");
            }
        }
        Err(error) => {
            assert!(!expected, "refused id {value:?}");
            assert_osb_refusal(&error);
        }
    }
    // Percent-decoding is total.
    let _ = parse::decode(&value);
}

fn platforms() -> &'static Platforms {
    static PLATFORMS: OnceLock<Platforms> = OnceLock::new();
    PLATFORMS.get_or_init(|| {
        let yaml = "platforms:\n  - {name: k8s, username: k8s, password: secret}\n  \
                    - {name: cf, bearer_token: token-1}\nbrokers:\n  - {name: b, url: \"http://127.0.0.1:1\"}\n";
        Platforms::new(&super::input::settings(yaml).platforms)
    })
}

/// `Authorization` and `X-Broker-API-Version`, as the middleware reads them.
fn headers(input: &mut Input<'_>) {
    let platforms = platforms();
    let raw: Vec<u8> = match input.below(4) {
        0 => input.bytes(512).to_vec(),
        1 => {
            use base64::Engine;
            let credentials = format!("{}:{}", input.text(), input.text());
            let scheme = input
                .pick(&["Basic ", "basic  ", "BASIC ", "Basic"])
                .copied()
                .unwrap_or("");
            format!(
                "{scheme}{}",
                base64::engine::general_purpose::STANDARD.encode(credentials)
            )
            .into_bytes()
        }
        2 => format!("Bearer {}", input.text()).into_bytes(),
        _ => b"Basic azhzOnNlY3JldA==".to_vec(),
    };
    if let Ok(value) = HeaderValue::from_bytes(&raw) {
        match platforms.authenticate(Some(&value)) {
            Ok(platform) => assert!(matches!(&*platform.name, "k8s" | "cf")),
            Err(error) => {
                assert!(matches!(error, ApiError::Unauthorized { .. }), "{error}");
                assert_osb_refusal(&error);
            }
        }
    }
    let version = String::from_utf8_lossy(input.bytes(16)).into_owned();
    let _ = osb_config::validate::is_osb_2x(version.trim());
}
