//! `ApiError`: the gateway's one error type, and the one place that turns errors into HTTP answers.
//!
//! Every handler and middleware returns `Result<_, ApiError>`; this file alone decides the status
//! and the OSB error body (`{"error": "CamelCase", "description": "…"}`), and logs each error once:
//! `error!` for 5xx, `debug!` for 4xx. Extractor failures (bad JSON, query, path) come here too,
//! through the `*Config` error handlers at the bottom, so a platform never gets actix's plain text.
//!
//! | error                        | status | `error`                |
//! |------------------------------|--------|------------------------|
//! | bad header/body/query/id, unknown plan | 400 | —                     |
//! | the body did not arrive in time (`request_read_timeout_secs`) | 408 | — |
//! | unsupported API version      | 412    | —                      |
//! | authentication failed        | 401    | — (+ `WWW-Authenticate`) |
//! | admin credentials missing (admin API) | 401 | — (+ `WWW-Authenticate`, admin realm) |
//! | admin user without the operator role acting | 403 | — |
//! | an admin action sent by a browser from another site | 403 | — |
//! | id exists with other attributes / owner | 409 | —                 |
//! | operation in flight          | 422    | `ConcurrencyError`     |
//! | no such instance/binding (read, update, bind) | 404 | —           |
//! | no such instance/binding (delete, poll)       | 410 | —           |
//! | catalog not in yet           | 503    | `CatalogUnavailable` (+ `Retry-After`) |
//! | policy denies the call       | 403    | `PolicyDenied` (names the rule) |
//! | a quota of the policy is full | 403   | `QuotaExceeded` (names the quota, usage and limit) |
//! | no healthy broker for a logical offering | 503 | `PlacementUnavailable` |
//! | over a platform's or broker's rate limit | 429 | `RateLimited` (+ `Retry-After`) |
//! | the store is unreachable (database down)  | 503 | `StoreUnavailable` (+ `Retry-After`) |
//! | upstream unreachable, nothing sent | 502 | `UpstreamUnavailable` |
//! | upstream's circuit breaker open, nothing sent | 503 | `UpstreamUnavailable` |
//! | upstream failed after sending (5xx, malformed answer) | 502 | `UpstreamError` |
//! | upstream timed out           | 504    | `UpstreamTimeout`      |
//! | unknown route / method       | 404 / 405 (+ `Allow`) | —           |
//! | internal / startup           | 500    | —                      |
//!
//! An upstream's own 2xx and 4xx answers are not errors: handlers pass them through unchanged.

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

    /// The request body did not arrive within the body timeout.
    #[error("the request body did not arrive within {secs} s")]
    BodyTimeout { secs: u64 },

    /// `X-Broker-API-Version` is missing or not a 2.x version.
    #[error("{0}")]
    UnsupportedVersion(String),

    /// No or wrong credentials. `bearer` says whether bearer tokens are accepted too.
    #[error("authentication required")]
    Unauthorized { bearer: bool },

    /// The admin API's credentials are missing or wrong.
    #[error("admin credentials required")]
    AdminUnauthorized,

    /// An admin user whose role does not allow the action (a viewer acting).
    #[error("admin user {user} is a {role}; this action needs the operator role")]
    AdminForbidden { user: String, role: &'static str },

    /// A browser sent an admin action from another site (its `Origin` or `Sec-Fetch-Site` says so):
    /// the credentials it holds for the console do not make it the operator's request.
    #[error("an admin action must come from the admin listener's own pages or a client, not another site")]
    CrossSite,

    /// A broker's first catalog is not in yet (start-up).
    #[error("{0}; retry shortly")]
    CatalogUnavailable(#[from] Unavailable),

    /// No such endpoint.
    #[error("no such endpoint: {method} {path}")]
    NoRoute { method: String, path: String },

    /// The endpoint exists but not with this method; `allow` lists the methods it takes (sent
    /// as the `Allow` header RFC 9110 requires on a 405).
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed {
        method: String,
        path: String,
        allow: &'static str,
    },

    /// The id is in use with other attributes or by another platform.
    #[error("{0}")]
    Conflict(String),

    /// Another operation is in flight on the resource.
    #[error("{0}")]
    Concurrency(String),

    /// No such instance or binding (read, update, bind).
    #[error("{0}")]
    NotFound(String),

    /// No such instance or binding (delete, poll).
    #[error("{0}")]
    Gone(String),

    /// The broker's circuit breaker is open: refused at once, nothing sent.
    #[error("broker {broker} is failing; its circuit is open and nothing was sent")]
    CircuitOpen { broker: String },

    /// Nothing was sent: the broker could not be reached.
    #[error("broker {broker} is unreachable; nothing was sent")]
    UpstreamUnavailable { broker: String },

    /// The broker may have acted, but failed or answered something unusable.
    #[error("broker {broker}: {reason}")]
    UpstreamError { broker: String, reason: String },

    /// The broker did not answer in time.
    #[error("broker {broker} did not answer in time")]
    UpstreamTimeout { broker: String },

    /// The platform team's policy refuses the call.
    #[error("{reason} (rule {rule})")]
    PolicyDenied { rule: String, reason: String },

    /// A quota of the policy is full: nothing was recorded or forwarded.
    #[error("{description}")]
    QuotaExceeded { quota: String, description: String },

    /// No healthy broker can take a logical offering's instance right now.
    #[error("{0}")]
    NoPlacement(String),

    /// A rate limit refuses the call; nothing was forwarded.
    #[error("{description}; retry in {retry_after_secs} s")]
    RateLimited {
        description: String,
        retry_after_secs: u64,
    },

    /// The gateway could not start: store, listener.
    #[error("cannot start: {0}")]
    Startup(String),

    /// The store (the ownership registry) cannot be used right now: nothing was forwarded, or the
    /// outcome of what was could not be recorded. The platform retries.
    #[error("the gateway's store is unavailable; retry shortly")]
    StoreUnavailable(String),

    /// A failure inside the gateway.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<RoutingError> for ApiError {
    fn from(e: RoutingError) -> Self {
        match e {
            RoutingError::Conflict(m) => ApiError::Conflict(m),
            RoutingError::Concurrency(m) => ApiError::Concurrency(m),
            RoutingError::NotFound(m) => ApiError::NotFound(m),
            RoutingError::Gone(m) => ApiError::Gone(m),
            RoutingError::Store(m) => ApiError::StoreUnavailable(m),
            e @ RoutingError::QuotaExceeded { .. } => {
                let quota = match &e {
                    RoutingError::QuotaExceeded { quota, .. } => quota.clone(),
                    _ => String::new(),
                };
                ApiError::QuotaExceeded {
                    quota,
                    description: e.to_string(),
                }
            }
            e @ RoutingError::InvalidId { .. } => ApiError::BadRequest(e.to_string()),
            // Upstream failures answer as the upstream failed, whoever met them.
            RoutingError::UpstreamTimeout { broker, .. } => ApiError::UpstreamTimeout { broker },
            RoutingError::CircuitOpen { broker } => ApiError::CircuitOpen { broker },
            RoutingError::UpstreamUnreachable { broker, .. } | RoutingError::UpstreamTls { broker, .. } => {
                ApiError::UpstreamUnavailable { broker }
            }
            e @ (RoutingError::UpstreamIo { .. }
            | RoutingError::UpstreamStatus { .. }
            | RoutingError::BodyTooLarge { .. }) => ApiError::UpstreamError {
                reason: e.kind().to_owned(),
                broker: match e {
                    RoutingError::UpstreamIo { broker, .. }
                    | RoutingError::UpstreamStatus { broker, .. }
                    | RoutingError::BodyTooLarge { broker, .. } => broker,
                    _ => String::new(),
                },
            },
            other => ApiError::Internal(osb_routing::error::error_chain(&other)),
        }
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
    /// How a policy decision that failed with this error is counted
    /// (`osb_gateway_policy_decisions_total{outcome}`).
    pub fn decision_outcome(&self) -> &'static str {
        match self {
            ApiError::PolicyDenied { .. } => "deny",
            ApiError::NoPlacement(_) => "unavailable",
            ApiError::BadRequest(_) => "invalid",
            _ => "error",
        }
    }

    /// The OSB `error` code, where the spec or the gateway defines one.
    pub fn osb_code(&self) -> Option<&'static str> {
        match self {
            ApiError::CatalogUnavailable(_) => Some("CatalogUnavailable"),
            ApiError::Concurrency(_) => Some("ConcurrencyError"),
            ApiError::UpstreamUnavailable { .. } | ApiError::CircuitOpen { .. } => {
                Some("UpstreamUnavailable")
            }
            ApiError::UpstreamError { .. } => Some("UpstreamError"),
            ApiError::UpstreamTimeout { .. } => Some("UpstreamTimeout"),
            ApiError::PolicyDenied { .. } => Some("PolicyDenied"),
            ApiError::QuotaExceeded { .. } => Some("QuotaExceeded"),
            ApiError::NoPlacement(_) => Some("PlacementUnavailable"),
            ApiError::RateLimited { .. } => Some("RateLimited"),
            ApiError::StoreUnavailable(_) => Some("StoreUnavailable"),
            _ => None,
        }
    }

    /// A short CamelCase name of what went wrong, for the audit log: the OSB code where there is
    /// one, else the kind of refusal (`BadRequest`, `Conflict`, `NotFound`, …). Never a message.
    pub fn code(&self) -> &'static str {
        if let Some(code) = self.osb_code() {
            return code;
        }
        match self {
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::BodyTimeout { .. } => "BodyTimeout",
            ApiError::UnsupportedVersion(_) => "UnsupportedVersion",
            ApiError::Unauthorized { .. } | ApiError::AdminUnauthorized => "Unauthorized",
            ApiError::AdminForbidden { .. } | ApiError::CrossSite => "Forbidden",
            ApiError::NoRoute { .. } => "NoRoute",
            ApiError::MethodNotAllowed { .. } => "MethodNotAllowed",
            ApiError::Conflict(_) => "Conflict",
            ApiError::NotFound(_) => "NotFound",
            ApiError::Gone(_) => "Gone",
            ApiError::Startup(_) | ApiError::Internal(_) => "Internal",
            _ => "Error",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnsupportedVersion(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::Unauthorized { .. } | ApiError::AdminUnauthorized => StatusCode::UNAUTHORIZED,
            ApiError::CatalogUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NoRoute { .. } | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Concurrency(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::UpstreamUnavailable { .. } | ApiError::UpstreamError { .. } => StatusCode::BAD_GATEWAY,
            ApiError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ApiError::PolicyDenied { .. }
            | ApiError::QuotaExceeded { .. }
            | ApiError::AdminForbidden { .. }
            | ApiError::CrossSite => StatusCode::FORBIDDEN,
            ApiError::NoPlacement(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::StoreUnavailable(_) | ApiError::CircuitOpen { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Startup(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        // Waiting for catalogs at start-up is expected, not a failure worth an error line.
        if let ApiError::StoreUnavailable(cause) = self {
            error!(status = status.as_u16(), error = %self, cause = %cause, "Request failed.");
        } else if status.is_server_error() && !matches!(self, ApiError::CatalogUnavailable(_)) {
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
            ApiError::AdminUnauthorized => {
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Basic realm="osb-gateway-admin""#),
                ));
            }
            ApiError::CatalogUnavailable(_) => {
                response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("5")));
            }
            ApiError::RateLimited { retry_after_secs, .. } => {
                response.insert_header((header::RETRY_AFTER, HeaderValue::from(*retry_after_secs)));
            }
            ApiError::StoreUnavailable(_) => {
                response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("2")));
            }
            ApiError::MethodNotAllowed { allow, .. } => {
                response.insert_header((header::ALLOW, HeaderValue::from_static(allow)));
            }
            _ => {}
        }
        response.json(OsbErrorBody {
            error: self.osb_code(),
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

/// Answers a request no route takes (404 with an OSB body).
///
/// # Errors
/// Always [`ApiError::NoRoute`].
pub async fn not_found(req: actix_web::HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NoRoute {
        method: req.method().to_string(),
        path: req.path().to_owned(),
    })
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
