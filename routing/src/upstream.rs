//! The HTTP client of one upstream broker: the gateway acting as a platform.
//!
//! One [`UpstreamBroker`] per configured broker, each with its own pooled keep-alive connections
//! (reqwest over rustls), timeout and credentials. Every request carries `X-Broker-API-Version` (the
//! broker's setting), the platform's originating identity unchanged, and a request identity. Bodies
//! are read with a size limit. Errors say whether anything may have reached the broker.
//!
//! Calls name their target as an [`UpstreamPath`] (checked ids only), turned into the URL segment by
//! segment under the broker's base URL. Each exchange is counted once by the circuit breaker, and
//! only when it says something about the broker's health: no connection, a timeout, a broken
//! exchange or a 5xx count as failures; a 4xx, and a 501 (the broker does not implement an optional
//! endpoint), count as the broker working.
//!
//! The credential presented may be one of a set, and is read again from its file when that changes
//! (see `credentials`): rotations need no restart.

mod credentials;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use osb_config::BrokerSettings;
use reqwest::header::{CONTENT_TYPE, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, RETRY_AFTER};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use tracing::{Instrument, warn};

use self::credentials::Credentials;
use crate::RoutingError;
use crate::breaker::{Breaker, BreakerState, RetryBudget};
use crate::headers;
use crate::resource::UpstreamPath;

/// Largest answer accepted to an instance or binding call.
pub const MAX_REPLY_BYTES: usize = 4 * 1024 * 1024;

/// An upstream's answer to an instance or binding call, not yet interpreted.
#[derive(Debug, Clone)]
pub struct UpstreamReply {
    pub status: u16,
    /// `Retry-After`, passed through to the platform.
    pub retry_after: Option<String>,
    pub body: Bytes,
}

/// Per-call facts forwarded upstream.
#[derive(Debug, Clone, Default)]
pub struct CallHeaders {
    /// `X-Broker-API-Request-Identity`, minted by the gateway when the platform sent none.
    pub request_identity: String,
    /// `X-Broker-API-Originating-Identity`, exactly as the platform sent it.
    pub originating_identity: Option<String>,
    /// The OSB operation (`provision`, `bind`, …) for the client span; `other` when unset.
    pub operation: &'static str,
}

/// Validators of the catalog we hold, for a conditional fetch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// Result of a catalog fetch.
#[derive(Debug)]
pub enum CatalogFetch {
    /// 304: what we hold is current.
    NotModified,
    /// 200 with the body and its validators.
    Fetched { body: Bytes, validators: Validators },
}

/// A configured upstream broker and its connection pool.
#[derive(Debug, Clone)]
pub struct UpstreamBroker {
    settings: BrokerSettings,
    /// The broker's base URL; every path is appended to it segment by segment.
    base: url::Url,
    /// For span attributes.
    host: String,
    port: u16,
    client: reqwest::Client,
    credentials: Arc<Credentials>,
    breaker: Arc<Breaker>,
    budget: Arc<RetryBudget>,
}

/// A client builder with `tls` applied: its CA bundle trusted besides the built-in web roots, its
/// client certificate presented, and (labs only) any certificate accepted. The one way the gateway
/// builds an HTTP client (upstream brokers, the OTLP exporter): one reqwest over one rustls.
///
/// # Errors
/// A PEM that the TLS backend does not take.
pub fn client_builder(tls: &osb_config::ClientTls) -> Result<reqwest::ClientBuilder, reqwest::Error> {
    let mut builder = reqwest::Client::builder();
    if let Some(pem) = &tls.ca_pem {
        for certificate in reqwest::Certificate::from_pem_bundle(pem.as_bytes())? {
            builder = builder.add_root_certificate(certificate);
        }
    }
    if let Some(pem) = &tls.client_identity_pem {
        builder = builder.identity(reqwest::Identity::from_pem(pem.expose().as_bytes())?);
    }
    if tls.insecure_skip_verify {
        builder = builder.danger_accept_invalid_certs(true);
    }
    Ok(builder)
}

/// Adds the W3C trace context of `span` (`traceparent`, `tracestate`) to `request`, through the
/// global propagator the gateway installs (nothing without one).
fn inject_trace_context(mut request: RequestBuilder, span: &tracing::Span) -> RequestBuilder {
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    struct Carrier(Vec<(String, String)>);
    impl opentelemetry::propagation::Injector for Carrier {
        fn set(&mut self, key: &str, value: String) {
            self.0.push((key.to_owned(), value));
        }
    }
    let mut carrier = Carrier(Vec::new());
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, &mut carrier));
    for (key, value) in carrier.0 {
        request = request.header(key, value);
    }
    request
}

impl UpstreamBroker {
    /// Builds the client of `settings`.
    ///
    /// # Errors
    /// [`RoutingError::Client`] when the TLS backend cannot be initialised.
    pub fn new(settings: &BrokerSettings) -> Result<Self, RoutingError> {
        let client_error = |source| RoutingError::Client {
            broker: settings.name.clone(),
            source,
        };
        let builder = client_builder(&settings.tls).map_err(client_error)?;
        if settings.tls.insecure_skip_verify {
            warn!(
                broker = %settings.name,
                "tls_insecure_skip_verify: any certificate is accepted from this broker; calls to it can be intercepted (labs only)."
            );
        }
        let client = builder
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .user_agent(concat!("osb-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(client_error)?;
        Ok(UpstreamBroker {
            base: settings.url.clone(),
            host: settings.url.host_str().unwrap_or_default().to_owned(),
            port: settings.url.port_or_known_default().unwrap_or(80),
            settings: settings.clone(),
            client,
            credentials: Arc::new(Credentials::new(&settings.auth, settings.auth_file.clone())),
            breaker: Arc::new(Breaker::new(settings.breaker_failures, settings.breaker_open)),
            budget: Arc::new(RetryBudget::default()),
        })
    }

    /// The broker's configured name.
    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// The broker's settings.
    pub fn settings(&self) -> &BrokerSettings {
        &self.settings
    }

    /// `GET /v2/catalog`, conditional on `validators` where the broker honours them.
    ///
    /// # Errors
    /// Transport errors, a status other than 200/304, or a body over the broker's
    /// `max_catalog_bytes` ([`RoutingError::InvalidCatalog`]).
    pub async fn fetch_catalog(
        &self,
        validators: &Validators,
        call: &CallHeaders,
    ) -> Result<CatalogFetch, RoutingError> {
        // The refresher's fetch is also the breaker's background probe: it goes even while the
        // breaker is open, and its outcome counts.
        let mut request = self
            .request(Method::GET, self.url(&UpstreamPath::catalog())?, call)
            .timeout(self.settings.catalog_timeout);
        if let Some(etag) = &validators.etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        if let Some(last_modified) = &validators.last_modified {
            request = request.header(IF_MODIFIED_SINCE, last_modified);
        }
        let response = self.send(request).await;
        self.breaker.record(
            response.as_ref().is_ok_and(|r| is_healthy(r.status().as_u16())),
            std::time::Instant::now(),
        );
        let response = response?;
        match response.status() {
            StatusCode::NOT_MODIFIED => Ok(CatalogFetch::NotModified),
            StatusCode::OK => {
                let header = |name| {
                    response
                        .headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                let validators = Validators {
                    etag: header(ETAG),
                    last_modified: header(LAST_MODIFIED),
                };
                let limit = self.settings.catalog_limits.max_bytes;
                let body = match self.read_body(response, limit).await {
                    Err(RoutingError::BodyTooLarge { .. }) => {
                        return Err(RoutingError::InvalidCatalog {
                            broker: self.name().to_owned(),
                            reason: format!("the catalog is more than max_catalog_bytes ({limit}) bytes"),
                        });
                    }
                    body => body?,
                };
                Ok(CatalogFetch::Fetched { body, validators })
            }
            status => Err(RoutingError::UpstreamStatus {
                broker: self.name().to_owned(),
                status: status.as_u16(),
            }),
        }
    }

    /// Sends an instance or binding call and reads the answer.
    ///
    /// # Errors
    /// As [`UpstreamBroker::send`] and [`UpstreamBroker::read_body`].
    pub async fn call(
        &self,
        method: Method,
        path: &UpstreamPath,
        body: Option<Bytes>,
        call: &CallHeaders,
    ) -> Result<UpstreamReply, RoutingError> {
        let idempotent = method == Method::GET;
        let url = self.url(path)?;
        self.budget.deposit();
        let mut attempt = 0;
        loop {
            attempt += 1;
            if !self.breaker.allow(std::time::Instant::now()) {
                return Err(RoutingError::CircuitOpen {
                    broker: self.name().to_owned(),
                });
            }
            let result = self
                .exchange(method.clone(), url.clone(), body.clone(), call)
                .await;
            // The exchange's one count: a 4xx or 501 is the broker working; an answer too large
            // to read is the broker answering.
            let failed = match &result {
                Ok(reply) => !is_healthy(reply.status),
                Err(e) => !matches!(e, RoutingError::BodyTooLarge { .. }),
            };
            self.breaker.record(!failed, std::time::Instant::now());
            // Reads are retried once, within the budget; mutations never (the upstream may have acted).
            if failed && idempotent && attempt == 1 && self.budget.withdraw() {
                continue;
            }
            return result;
        }
    }

    /// `true` while the broker's circuit breaker refuses calls (checked before any work is done).
    pub fn is_open(&self) -> bool {
        self.breaker.is_open(std::time::Instant::now())
    }

    /// The circuit breaker's state.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state(std::time::Instant::now())
    }

    /// One exchange, in its own client span.
    async fn exchange(
        &self,
        method: Method,
        url: url::Url,
        body: Option<Bytes>,
        call: &CallHeaders,
    ) -> Result<UpstreamReply, RoutingError> {
        // One client span per upstream call (OpenTelemetry HTTP client conventions); its context
        // travels upstream as `traceparent`. No ids beyond the broker's name, no bodies.
        let (host, port) = (self.host.as_str(), self.port);
        let span = tracing::info_span!(
            "upstream",
            otel.name = %method,
            otel.kind = "client",
            server.address = host,
            server.port = port,
            http.request.method = %method,
            http.response.status_code = tracing::field::Empty,
            error.r#type = tracing::field::Empty,
            osb.broker.name = self.name(),
            osb.operation = if call.operation.is_empty() { "other" } else { call.operation },
        );
        let mut request = self.request(method, url, call);
        request = inject_trace_context(request, &span);
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, "application/json").body(body);
        }
        let exchange = async {
            let response = self.send(request).await?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = self.read_body(response, MAX_REPLY_BYTES).await?;
            Ok(UpstreamReply {
                status,
                retry_after,
                body,
            })
        };
        let result: Result<UpstreamReply, RoutingError> = exchange.instrument(span.clone()).await;
        match &result {
            Ok(reply) => {
                span.record("http.response.status_code", reply.status);
                if reply.status >= 500 {
                    span.record("error.type", reply.status);
                }
            }
            Err(e) => {
                span.record("error.type", e.kind());
            }
        }
        result
    }

    /// The URL of `path` at this broker.
    ///
    /// # Errors
    /// [`RoutingError::InvalidId`] when the broker's URL cannot take the path (not http(s)).
    pub fn url(&self, path: &UpstreamPath) -> Result<url::Url, RoutingError> {
        path.url(&self.base)
    }

    /// A request to `url` (see [`UpstreamBroker::url`]) with the OSB headers attached; the
    /// credential is attached by [`UpstreamBroker::send`].
    pub fn request(&self, method: Method, url: url::Url, call: &CallHeaders) -> RequestBuilder {
        let mut request = self
            .client
            .request(method, url)
            .header(headers::API_VERSION, &self.settings.api_version)
            .header(headers::REQUEST_IDENTITY, &call.request_identity);
        if let Some(identity) = &call.originating_identity {
            request = request.header(headers::ORIGINATING_IDENTITY, identity);
        }
        request
    }

    /// Sends `request` with the broker's credential, classifying failures by whether the broker
    /// may have seen it. A 401 with a credential set of several lines tries the others in the
    /// same call (see `credentials`).
    ///
    /// # Errors
    /// [`RoutingError::UpstreamUnreachable`] (nothing sent), [`RoutingError::UpstreamTimeout`],
    /// [`RoutingError::UpstreamIo`].
    pub async fn send(&self, request: RequestBuilder) -> Result<Response, RoutingError> {
        let credentials = &self.credentials;
        let count = credentials.count();
        let first = credentials.preferred() % count;
        // A body of bytes can be sent again; a streamed one (none today) goes once.
        let mut spare = if count > 1 { request.try_clone() } else { None };
        let mut response = credentials
            .apply(request, first)
            .send()
            .await
            .map_err(|e| self.classify(e))?;
        for offset in 1..count {
            if response.status() != StatusCode::UNAUTHORIZED {
                break;
            }
            let Some(next) = spare.take() else { break };
            spare = next.try_clone();
            let index = (first + offset) % count;
            response = credentials
                .apply(next, index)
                .send()
                .await
                .map_err(|e| self.classify(e))?;
            if response.status() != StatusCode::UNAUTHORIZED {
                credentials.prefer(self.name(), index);
            }
        }
        Ok(response)
    }

    /// Reads the broker's secret file again (`password_file` or `bearer_token_file`); returns
    /// whether the credential changed. Nothing happens without a file.
    pub fn reload_secret_file(&self) -> bool {
        self.credentials.reload_file(self.name())
    }

    /// Reads a response body, refusing more than `limit` bytes.
    ///
    /// # Errors
    /// [`RoutingError::BodyTooLarge`], or a transport error while reading.
    pub async fn read_body(&self, mut response: Response, limit: usize) -> Result<Bytes, RoutingError> {
        let too_large = || RoutingError::BodyTooLarge {
            broker: self.name().to_owned(),
            limit,
        };
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.classify(e))? {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    fn classify(&self, error: reqwest::Error) -> RoutingError {
        let broker = self.name().to_owned();
        if let Some(problem) = tls_problem(&error) {
            // A failed handshake (either side's certificate) means the broker's application never
            // saw the request, even when the failure surfaces while reading the answer.
            RoutingError::UpstreamTls {
                broker,
                problem,
                source: error.without_url(),
            }
        } else if error.is_timeout() {
            RoutingError::UpstreamTimeout {
                broker,
                timeout_secs: self.settings.timeout.as_secs(),
            }
        } else if error.is_connect() {
            RoutingError::UpstreamUnreachable {
                broker,
                source: error.without_url(),
            }
        } else {
            RoutingError::UpstreamIo {
                broker,
                source: error.without_url(),
            }
        }
    }
}

/// What failed in a TLS handshake, in words an operator can act on, if `error` is a TLS failure.
fn tls_problem(error: &reqwest::Error) -> Option<String> {
    let chain = crate::error::error_chain(error);
    let problem = if let Some(at) = chain.find("invalid peer certificate") {
        let detail = chain.get(at..).unwrap_or_default();
        if detail.contains("UnknownIssuer") {
            "unknown CA: the broker's certificate is not signed by a trusted CA (set tls_ca_file)"
        } else if detail.contains("Expired") {
            "the broker's certificate has expired"
        } else if detail.contains("NotValidYet") {
            "the broker's certificate is not valid yet"
        } else if detail.contains("NotValidForName") {
            "name mismatch: the broker's certificate is not valid for the host of its URL"
        } else {
            return Some(detail.to_owned());
        }
    } else if chain.contains("CertificateRequired") {
        "the broker requires a client certificate (set tls_client_cert_file and tls_client_key_file)"
    } else if chain.contains("received fatal alert") {
        "the broker refused the handshake (is the gateway's client certificate one it trusts?)"
    } else {
        return None;
    };
    Some(problem.to_owned())
}

/// Whether an answer with `status` says the broker is working: anything below 500, and 501 (an
/// optional endpoint the broker does not implement).
fn is_healthy(status: u16) -> bool {
    status < 500 || status == 501
}
