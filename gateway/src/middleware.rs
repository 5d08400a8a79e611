//! Middleware: the stages that run before any handler and need no body.
//!
//! As a request meets them (see `app::build_osb_app` for the registration order):
//! 1. [`request_identity`]: takes `X-Broker-API-Request-Identity` or mints one, keeps the
//!    originating identity for forwarding, opens the request span, echoes the identity on every
//!    answer (errors included).
//! 2. [`authenticate`]: which platform is calling; 401 otherwise.
//! 3. [`require_api_version`]: `X-Broker-API-Version: 2.x`; 412 otherwise.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{AUTHORIZATION, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, ResponseError, web};
use osb_routing::headers;
use tracing::Instrument;

use crate::app::AppState;
use crate::error::ApiError;

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

/// Stage 1: request identity and the request span.
pub async fn request_identity(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
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
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".to_owned());
    let span = tracing::info_span!(
        "request",
        otel.name = %format_args!("{} {}", req.method(), route),
        http.request.method = %req.method(),
        http.route = %route,
        osb.request_identity = %request_identity,
        osb.platform = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    );
    req.extensions_mut().insert(RequestContext {
        request_identity,
        originating_identity,
    });

    // The stages below answer refusals as responses (never `Err`), so every answer gets the echo.
    let mut response = next.call(req).instrument(span.clone()).await?;
    span.record("http.response.status_code", response.status().as_u16());
    if let Some(echo) = echo {
        response
            .headers_mut()
            .insert(HeaderName::from_static(headers::REQUEST_IDENTITY_LOWER), echo);
    }
    Ok(response)
}

/// Answers `req` with `error` (logged and mapped in `error.rs`) instead of calling the next stage.
fn refuse<B>(req: ServiceRequest, error: ApiError) -> ServiceResponse<EitherBody<B>> {
    req.into_response(error.error_response()).map_into_right_body()
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

/// Stage 3: the OSB API version header.
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
