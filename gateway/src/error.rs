//! `ApiError`: the gateway's one error type, and the one place that turns errors into HTTP answers.
//!
//! Every handler and middleware returns `Result<_, ApiError>`; this file alone decides the status
//! and the OSB error body (`{"error": "CamelCase", "description": "…"}`), and logs each error once:
//! `error!` for 5xx, `debug!` for 4xx. Extractor failures (bad JSON, query, path) come here too,
//! through the `*Config` error handlers at the bottom, so a platform never gets actix's plain text.
//!
//! | error                        | status | `error`                |
//! |------------------------------|--------|------------------------|
//! | bad header/body/query        | 400    | —                      |
//! | unsupported API version      | 412    | —                      |
//! | authentication failed        | 401    | — (+ `WWW-Authenticate`) |
//! | catalog not in yet           | 503    | `CatalogUnavailable` (+ `Retry-After`) |
//! | unknown route                | 404    | —                      |
//! | internal / startup           | 500    | —                      |

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use osb_routing::{RoutingError, Unavailable};
use serde::Serialize;
use tracing::{debug, error};

/// Everything that can go wrong while answering a platform (or starting up).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed: header, body, query or path.
    #[error("{0}")]
    BadRequest(String),

    /// `X-Broker-API-Version` is missing or not a 2.x version.
    #[error("{0}")]
    UnsupportedVersion(String),

    /// No or wrong credentials. `bearer` says whether bearer tokens are accepted too.
    #[error("authentication required")]
    Unauthorized { bearer: bool },

    /// A broker's first catalog is not in yet (start-up).
    #[error("{0}; retry shortly")]
    CatalogUnavailable(#[from] Unavailable),

    /// No such endpoint.
    #[error("no such endpoint: {method} {path}")]
    NotFound { method: String, path: String },

    /// The gateway could not start: store, listener.
    #[error("cannot start: {0}")]
    Startup(String),

    /// A failure inside the gateway.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<RoutingError> for ApiError {
    fn from(e: RoutingError) -> Self {
        ApiError::Internal(osb_routing::cache::error_chain(&e))
    }
}

/// The OSB error body.
#[derive(Debug, Serialize)]
pub struct OsbErrorBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
    pub description: String,
}

impl ApiError {
    /// The OSB `error` code, where the spec or the gateway defines one.
    fn code(&self) -> Option<&'static str> {
        match self {
            ApiError::CatalogUnavailable(_) => Some("CatalogUnavailable"),
            _ => None,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedVersion(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::CatalogUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::Startup(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            error!(status = status.as_u16(), error = %self, "Request failed.");
        } else {
            debug!(status = status.as_u16(), error = %self, "Request refused.");
        }
        let mut response = HttpResponse::build(status);
        match self {
            ApiError::Unauthorized { bearer } => {
                let challenge = if *bearer {
                    r#"Basic realm="osb-gateway", Bearer realm="osb-gateway""#
                } else {
                    r#"Basic realm="osb-gateway""#
                };
                response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge)));
            }
            ApiError::CatalogUnavailable(_) => {
                response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("5")));
            }
            _ => {}
        }
        response.json(OsbErrorBody {
            error: self.code(),
            description: self.to_string(),
        })
    }
}

/// Error handler for `web::JsonConfig`: malformed JSON becomes a 400 OSB error.
pub fn json_error(err: actix_web::error::JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as E;
    let message = match &err {
        E::OverflowKnownLength { .. } | E::Overflow { .. } => "request body too large".to_owned(),
        E::ContentType => "expected Content-Type: application/json".to_owned(),
        E::Deserialize(e) => format!("invalid JSON body: {e}"),
        other => format!("invalid body: {other}"),
    };
    ApiError::BadRequest(message).into()
}

/// Error handler for `web::QueryConfig`.
pub fn query_error(err: actix_web::error::QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::BadRequest(format!("invalid query string: {err}")).into()
}

/// Error handler for `web::PathConfig`.
pub fn path_error(err: actix_web::error::PathError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::BadRequest(format!("invalid path: {err}")).into()
}

#[cfg(test)]
mod tests {
    use actix_web::body::to_bytes;

    use super::*;

    #[actix_web::test]
    async fn errors_are_osb_json() {
        let response =
            ApiError::UnsupportedVersion("X-Broker-API-Version 3.0 is not supported".into()).error_response();
        assert_eq!(response.status(), 412);
        let body = to_bytes(response.into_body()).await.unwrap();
        assert_eq!(
            &body[..],
            br#"{"description":"X-Broker-API-Version 3.0 is not supported"}"#
        );

        let response = ApiError::Unauthorized { bearer: false }.error_response();
        assert_eq!(
            response.headers().get("www-authenticate").unwrap(),
            r#"Basic realm="osb-gateway""#
        );

        let response = ApiError::CatalogUnavailable(Unavailable {
            missing: vec!["aws".into()],
        })
        .error_response();
        assert_eq!(response.status(), 503);
        let body: serde_json::Value =
            serde_json::from_slice(&to_bytes(response.into_body()).await.unwrap()).unwrap();
        assert_eq!(body["error"], "CatalogUnavailable");
        assert_eq!(
            body["description"],
            "the catalogs of aws are not in yet; retry shortly"
        );
    }
}
