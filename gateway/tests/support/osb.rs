//! [`OsbClient`]: the tests' one OSB client, speaking to a gateway as a platform does. It owns what
//! a platform puts on every call (its credentials, basic or bearer, and `X-Broker-API-Version`),
//! the OSB paths and their query strings (ids and values percent-encoded as a platform encodes
//! them, [`encode`]), polling `last_operation` to a terminal state, and reading an answer whole
//! ([`OsbResponse`]: status, headers, bytes and JSON body) so that a test can assert anything.
//! [`service`], [`plan`] and [`plan_ids`] read the catalog a gateway publishes.
//!
//! Requests malformed on purpose are not its business: [`super::raw`] writes bytes on a socket, and
//! `corpus.rs` builds its broken requests itself. [`OsbClient::request`] hands out the request
//! builder (credentials and version set) for a header or body a test adds itself.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;

use super::gateway::{PLATFORM_PASSWORD, PLATFORM_USER};

/// The API version every call states unless told otherwise.
pub const API_VERSION: &str = "2.17";

/// How a platform authenticates.
#[derive(Clone, Debug)]
pub enum Credentials {
    Basic {
        username: String,
        password: String,
    },
    Bearer(String),
    /// No `Authorization` header.
    None,
}

/// An OSB client for one base URL, as one platform.
#[derive(Clone, Debug)]
pub struct OsbClient {
    http: reqwest::Client,
    base: String,
    credentials: Credentials,
    /// `X-Broker-API-Version`, or none sent.
    version: Option<String>,
}

/// An instance or a binding: what `last_operation` and [`OsbClient::poll`] are asked about.
#[derive(Clone, Copy, Debug)]
pub enum Resource<'a> {
    Instance(&'a str),
    /// (instance id, binding id)
    Binding(&'a str, &'a str),
}

impl Resource<'_> {
    /// The resource's path (ids percent-encoded).
    pub fn path(&self) -> String {
        match self {
            Resource::Instance(instance) => instance_path(instance),
            Resource::Binding(instance, binding) => binding_path(instance, binding),
        }
    }
}

/// `/v2/service_instances/{instance}`, the id percent-encoded.
pub fn instance_path(instance: &str) -> String {
    format!("/v2/service_instances/{}", encode(instance))
}

/// `/v2/service_instances/{instance}/service_bindings/{binding}`, the ids percent-encoded.
pub fn binding_path(instance: &str, binding: &str) -> String {
    format!("{}/service_bindings/{}", instance_path(instance), encode(binding))
}

/// Percent-encodes an id or a query value the way a platform does: everything but RFC 3986's
/// unreserved characters (`A-Z a-z 0-9 - . _ ~`).
pub fn encode(value: &str) -> String {
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

/// The query of a call, in the order given; names and values percent-encoded when rendered.
#[derive(Clone, Debug, Default)]
pub struct Query(Vec<(String, String)>);

impl Query {
    /// No query string.
    pub fn none() -> Query {
        Query::default()
    }

    /// `service_id=…&plan_id=…` (what deprovision, unbind and `last_operation` take).
    pub fn ids(service_id: &str, plan_id: &str) -> Query {
        Query::none()
            .with("service_id", service_id)
            .with("plan_id", plan_id)
    }

    /// Adds `name=value`.
    pub fn with(mut self, name: &str, value: &str) -> Query {
        self.0.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Adds `accepts_incomplete=true`.
    pub fn incomplete(self) -> Query {
        self.with("accepts_incomplete", "true")
    }

    /// Adds `operation=…` (an operation as the broker named it: encoded, spaces and all).
    pub fn operation(self, operation: &str) -> Query {
        self.with("operation", operation)
    }

    /// `""`, or `?` and the encoded pairs.
    pub fn render(&self) -> String {
        if self.0.is_empty() {
            return String::new();
        }
        let pairs: Vec<String> = self
            .0
            .iter()
            .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
            .collect();
        format!("?{}", pairs.join("&"))
    }
}

/// One answer, read whole.
#[derive(Clone, Debug)]
pub struct OsbResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub bytes: Bytes,
    /// The body as JSON; `Value::Null` when it is not JSON.
    pub body: Value,
}

impl OsbResponse {
    /// Reads `response` whole.
    pub async fn read(response: reqwest::Response) -> OsbResponse {
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        OsbResponse {
            status,
            headers,
            bytes,
            body,
        }
    }

    /// Sends `request` (which must get an answer) and reads the answer.
    pub async fn send(request: RequestBuilder) -> OsbResponse {
        OsbResponse::read(request.send().await.unwrap()).await
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// A header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `operation` of an accepted (202) answer; panics without one.
    pub fn operation(&self) -> String {
        self.body["operation"]
            .as_str()
            .unwrap_or_else(|| panic!("no operation in {} {}", self.status, self.body))
            .to_owned()
    }

    /// The OSB `error` code, if the body has one.
    pub fn error(&self) -> Option<&str> {
        self.body["error"].as_str()
    }

    /// The OSB `description`, if the body has one.
    pub fn description(&self) -> Option<&str> {
        self.body["description"].as_str()
    }
}

/// What [`OsbClient::poll`] saw: the terminal answer and how many "in progress" answers came first.
#[derive(Debug)]
pub struct Polled {
    pub last: OsbResponse,
    pub in_progress: usize,
}

impl OsbClient {
    /// A client for `base` (`http://host:port`) as the `k8s-prod` platform (basic auth), with
    /// `X-Broker-API-Version: 2.17`, on the harness's HTTP client ([`super::http`]).
    pub fn new(base: impl Into<String>) -> OsbClient {
        OsbClient {
            http: super::http(),
            base: base.into(),
            credentials: Credentials::Basic {
                username: PLATFORM_USER.to_owned(),
                password: PLATFORM_PASSWORD.to_owned(),
            },
            version: Some(API_VERSION.to_owned()),
        }
    }

    /// The same, as a platform with basic credentials `username` / `password`.
    pub fn basic(mut self, username: &str, password: &str) -> OsbClient {
        self.credentials = Credentials::Basic {
            username: username.to_owned(),
            password: password.to_owned(),
        };
        self
    }

    /// The same, as a platform with a bearer token.
    pub fn bearer(mut self, token: &str) -> OsbClient {
        self.credentials = Credentials::Bearer(token.to_owned());
        self
    }

    /// The same, without credentials.
    pub fn anonymous(mut self) -> OsbClient {
        self.credentials = Credentials::None;
        self
    }

    /// The same, stating API version `version` (or none).
    pub fn version(mut self, version: Option<&str>) -> OsbClient {
        self.version = version.map(str::to_owned);
        self
    }

    /// The same, on another HTTP client (other timeouts, connection reuse).
    pub fn with_http(mut self, http: reqwest::Client) -> OsbClient {
        self.http = http;
        self
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request to `path` (taken as it is: encode ids and query yourself) with the platform's
    /// credentials and API version; add headers or a body and send it.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let mut request = self.http.request(method, self.url(path));
        request = match &self.credentials {
            Credentials::Basic { username, password } => request.basic_auth(username, Some(password)),
            Credentials::Bearer(token) => request.bearer_auth(token),
            Credentials::None => request,
        };
        if let Some(version) = &self.version {
            request = request.header("X-Broker-API-Version", version);
        }
        request
    }

    /// Sends `method path` with a JSON `body` (if any) and reads the answer.
    pub async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> OsbResponse {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(body);
        }
        OsbResponse::send(request).await
    }

    /// `GET /v2/catalog`.
    pub async fn catalog(&self) -> OsbResponse {
        self.send(Method::GET, "/v2/catalog", None).await
    }

    /// Waits (30 s at most) until `GET /v2/catalog` answers 200, connection errors included (a
    /// process still starting), and returns that answer.
    pub async fn ready_catalog(&self) -> OsbResponse {
        super::eventually("catalog available", Duration::from_secs(30), || async {
            let response = self.request(Method::GET, "/v2/catalog").send().await.ok()?;
            if response.status() == 200 {
                Some(OsbResponse::read(response).await)
            } else {
                None
            }
        })
        .await
    }

    /// `PUT /v2/service_instances/{instance}`.
    pub async fn provision(&self, instance: &str, query: Query, body: &Value) -> OsbResponse {
        let path = format!("{}{}", instance_path(instance), query.render());
        self.send(Method::PUT, &path, Some(body)).await
    }

    /// `PATCH /v2/service_instances/{instance}`.
    pub async fn update(&self, instance: &str, query: Query, body: &Value) -> OsbResponse {
        let path = format!("{}{}", instance_path(instance), query.render());
        self.send(Method::PATCH, &path, Some(body)).await
    }

    /// `DELETE /v2/service_instances/{instance}`.
    pub async fn deprovision(&self, instance: &str, query: Query) -> OsbResponse {
        let path = format!("{}{}", instance_path(instance), query.render());
        self.send(Method::DELETE, &path, None).await
    }

    /// `GET /v2/service_instances/{instance}`.
    pub async fn fetch_instance(&self, instance: &str) -> OsbResponse {
        self.send(Method::GET, &instance_path(instance), None).await
    }

    /// `PUT /v2/service_instances/{instance}/service_bindings/{binding}`.
    pub async fn bind(&self, instance: &str, binding: &str, query: Query, body: &Value) -> OsbResponse {
        let path = format!("{}{}", binding_path(instance, binding), query.render());
        self.send(Method::PUT, &path, Some(body)).await
    }

    /// `DELETE /v2/service_instances/{instance}/service_bindings/{binding}`.
    pub async fn unbind(&self, instance: &str, binding: &str, query: Query) -> OsbResponse {
        let path = format!("{}{}", binding_path(instance, binding), query.render());
        self.send(Method::DELETE, &path, None).await
    }

    /// `GET /v2/service_instances/{instance}/service_bindings/{binding}`.
    pub async fn fetch_binding(&self, instance: &str, binding: &str) -> OsbResponse {
        self.send(Method::GET, &binding_path(instance, binding), None)
            .await
    }

    /// `GET …/last_operation` of an instance or a binding.
    pub async fn last_operation(&self, resource: Resource<'_>, query: Query) -> OsbResponse {
        let path = format!("{}/last_operation{}", resource.path(), query.render());
        self.send(Method::GET, &path, None).await
    }

    /// `GET /v2/service_instances/{instance}/last_operation`.
    pub async fn instance_last_operation(&self, instance: &str, query: Query) -> OsbResponse {
        self.last_operation(Resource::Instance(instance), query).await
    }

    /// `GET /v2/service_instances/{instance}/service_bindings/{binding}/last_operation`.
    pub async fn binding_last_operation(&self, instance: &str, binding: &str, query: Query) -> OsbResponse {
        self.last_operation(Resource::Binding(instance, binding), query)
            .await
    }

    /// Polls `last_operation` back to back until the answer is terminal: not a 200 (a 410 after a
    /// delete, say) or a state other than "in progress". Panics after 50 "in progress" answers.
    pub async fn poll(&self, resource: Resource<'_>, query: Query) -> Polled {
        let mut in_progress = 0;
        for _ in 0..50 {
            let last = self.last_operation(resource, query.clone()).await;
            if last.status == 200 && last.body["state"] == "in progress" {
                in_progress += 1;
                continue;
            }
            return Polled { last, in_progress };
        }
        panic!("{}: still in progress after 50 polls", resource.path());
    }
}

/// The service of `catalog` named `name`.
pub fn service<'a>(catalog: &'a Value, name: &str) -> &'a Value {
    catalog["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no service {name} in the catalog"))
}

/// The plan of `service` named `name`.
pub fn plan<'a>(service: &'a Value, name: &str) -> &'a Value {
    service["plans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no plan {name} in {}", service["name"]))
}

/// The (service id, plan id) of `service`/`plan` in `catalog`.
pub fn plan_ids(catalog: &Value, service_name: &str, plan_name: &str) -> (String, String) {
    let found = service(catalog, service_name);
    (
        found["id"].as_str().unwrap().to_owned(),
        plan(found, plan_name)["id"].as_str().unwrap().to_owned(),
    )
}
