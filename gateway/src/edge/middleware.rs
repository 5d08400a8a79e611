//! Middleware: the stages that run before any handler and need no body.
//!
//! As a request meets them (see `app::build_osb_app` for the registration order):
//! 1. [`request_identity`]: takes `X-Broker-API-Request-Identity` or mints one, keeps the
//!    originating identity for forwarding, opens the request span, echoes the identity on every
//!    answer (errors included).
//! 2. [`authenticate`]: which platform is calling; 401 otherwise. (Then `audit::record_calls`
//!    records each mutating call once answered: see `audit.rs`.)
//! 3. [`rate_limit`]: the platform's quota (catalog reads and other calls apart); 429 otherwise.
//! 4. [`require_api_version`]: `X-Broker-API-Version: 2.x`; 412 otherwise.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{AUTHORIZATION, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, web};
use osb_routing::headers;
use tracing::{Instrument, info};

use crate::edge::limits::Class;
use crate::error::ApiError;
use crate::state::AppState;

/// Per-request facts forwarded upstream.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// `X-Broker-API-Request-Identity`, as sent or minted.
    pub request_identity: String,
    /// `X-Broker-API-Originating-Identity`, exactly as sent. Never log it: it decodes to a user.
    pub originating_identity: Option<String>,
}

/// Longest request identity accepted from a platform; longer ones are replaced.
const MAX_REQUEST_IDENTITY: usize = 256;

/// The instance and binding ids of an OSB path, as sent (still percent-encoded: safe to log), for
/// the request's span and so for every log line of the call. Ids are not secrets; they never
/// become metric labels.
fn path_ids(path: &str) -> (Option<&str>, Option<&str>) {
    let Some(rest) = path.strip_prefix("/v2/service_instances/") else {
        return (None, None);
    };
    let mut segments = rest.split('/');
    let instance = logged_id(segments.next());
    let binding = match segments.next() {
        Some("service_bindings") => logged_id(segments.next()),
        _ => None,
    };
    (instance, binding)
}

/// A path segment as a logged id: none when empty, at most 255 bytes.
fn logged_id(segment: Option<&str>) -> Option<&str> {
    segment
        .filter(|s| !s.is_empty())
        .map(|s| s.get(..255).unwrap_or(s))
}

/// Reads W3C trace context from the platform's headers.
struct HeaderExtractor<'a>(&'a actix_web::http::header::HeaderMap);

impl opentelemetry::propagation::Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .map(actix_web::http::header::HeaderName::as_str)
            .collect()
    }
}

/// Stage 1: request identity, the server span (continuing the platform's `traceparent`) and the
/// request metrics.
pub async fn request_identity(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    let started = std::time::Instant::now();
    let request_identity = req
        .headers()
        .get(headers::REQUEST_IDENTITY)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= MAX_REQUEST_IDENTITY)
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let originating_identity = req
        .headers()
        .get(headers::ORIGINATING_IDENTITY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let echo = HeaderValue::from_str(&request_identity).ok();
    let matched = crate::edge::route::MatchedRoute(crate::edge::route::route_of(req.match_info().as_str()));
    let ids = crate::edge::route::RouteIds::of_path(req.match_info().as_str(), matched.0);
    req.extensions_mut().insert(matched);
    req.extensions_mut().insert(ids);
    let route = matched.0.unwrap_or("unmatched");
    let method = req.method().to_string();
    let operation = crate::osb::operation_of(&method, route);
    let (instance_id, binding_id) = path_ids(req.path());
    let span = tracing::info_span!(
        "request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        url.scheme = "http",
        osb.operation = operation,
        osb.request_identity = %request_identity,
        osb.instance_id = instance_id,
        osb.binding_id = binding_id,
        osb.platform = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        error.r#type = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    let parent =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(req.headers())));
    // Without an exporter installed there is no OpenTelemetry context to join: nothing to do.
    let _ = span.set_parent(parent);
    {
        use opentelemetry::trace::TraceContextExt;
        let trace_id = span.context().span().span_context().trace_id();
        if trace_id != opentelemetry::trace::TraceId::INVALID {
            span.record("trace_id", tracing::field::display(trace_id));
        }
    }
    req.extensions_mut().insert(RequestContext {
        request_identity,
        originating_identity,
    });
    let metrics = req.app_data::<web::Data<AppState>>().map(|s| s.metrics.clone());
    let access_log = req
        .app_data::<web::Data<AppState>>()
        .is_some_and(|s| s.settings.telemetry.access_log);
    let _active = metrics.as_ref().map(|m| m.request_started());

    // The stages below answer refusals as responses (never `Err`), so every answer gets the echo.
    let mut response = next.call(req).instrument(span.clone()).await?;
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("error.type", status);
    }
    let platform = response
        .request()
        .extensions()
        .get::<crate::edge::auth::Platform>()
        .map_or_else(|| "unknown".to_owned(), |p| p.name.to_string());
    if access_log {
        // Within the request's span: its ids and request identity go with the line.
        span.in_scope(|| {
            info!(
                target: "osb_gateway::access",
                method = %method,
                route,
                status,
                duration_ms = started.elapsed().as_secs_f64() * 1000.0,
                platform = %platform,
                "access"
            );
        });
    }
    if let Some(metrics) = &metrics {
        let labels = crate::telemetry::metrics::ServerLabels {
            method,
            route,
            status_class: crate::telemetry::metrics::status_class(status),
            platform,
            operation,
        };
        metrics.observe_request(labels, started.elapsed());
    }
    if let Some(echo) = echo {
        response
            .headers_mut()
            .insert(HeaderName::from_static(headers::REQUEST_IDENTITY_LOWER), echo);
    }
    Ok(response)
}

/// Answers `req` with `error` (logged and mapped in `error.rs`) instead of calling the next stage.
/// The error stays attached to the answer (the audit log reads its code).
fn refuse<B>(req: ServiceRequest, error: ApiError) -> ServiceResponse<EitherBody<B>> {
    req.error_response(error).map_into_right_body()
}

/// Stage 2: authenticate the platform.
pub async fn authenticate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(refuse(
            req,
            ApiError::Internal("application state missing".to_owned()),
        ));
    };
    match state.platforms.authenticate(req.headers().get(AUTHORIZATION)) {
        Ok(platform) => {
            tracing::Span::current().record("osb.platform", &*platform.name);
            req.extensions_mut().insert(platform);
            Ok(next.call(req).await?.map_into_left_body())
        }
        Err(error) => Ok(refuse(req, error)),
    }
}

/// Stage 3: the platform's rate limit.
pub async fn rate_limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let platform = req.extensions().get::<crate::edge::auth::Platform>().cloned();
    if let (Some(state), Some(platform)) = (state, platform) {
        let class = if req.path() == "/v2/catalog" {
            Class::Catalog
        } else {
            Class::Calls
        };
        let policy = state.policies.current();
        if let Err(error) =
            state
                .limiters
                .check_platform(policy.generation, &policy.policy.limits, &platform.name, class)
        {
            state
                .metrics
                .rate_limited("platform", &platform.name, class.as_str());
            return Ok(refuse(req, error));
        }
    }
    Ok(next.call(req).await?.map_into_left_body())
}

/// Stage 4: the OSB API version header.
pub async fn require_api_version(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let refusal = match req.headers().get(headers::API_VERSION).map(|v| v.to_str()) {
        Some(Ok(version)) if osb_config::validate::is_osb_2x(version.trim()) => None,
        None => Some(format!("the {} header is required (2.x)", headers::API_VERSION)),
        Some(version) => Some(format!(
            "{} {:?} is not supported; this gateway speaks 2.x",
            headers::API_VERSION,
            version.unwrap_or("<not text>")
        )),
    };
    match refusal {
        None => Ok(next.call(req).await?.map_into_left_body()),
        Some(message) => Ok(refuse(req, ApiError::UnsupportedVersion(message))),
    }
}
