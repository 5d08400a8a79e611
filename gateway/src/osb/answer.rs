//! An upstream broker's answer, read the way OSB tells a platform to, and turned into the
//! platform's.
//!
//! [`classify`] reads an upstream answer the way OSB tells a platform to (per endpoint: which
//! statuses mean done, in progress, gone, rejected, or failed with an unknown outcome) and yields
//! the registry's [`Outcome`]. [`respond`] builds the platform's answer: 2xx and 4xx pass through
//! unchanged (body, `Retry-After`), anything that may have left the upstream changed becomes 502 or
//! 504, never a 4xx. Upstream bodies are never logged: they may carry credentials.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use bytes::Bytes;
use osb_routing::RoutingError;
use osb_routing::registry::{Outcome, Polled};
use osb_routing::upstream::UpstreamReply;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// The endpoint an upstream answer belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Provision,
    Update,
    Deprovision,
    Bind,
    Unbind,
    /// Fetch instance or binding, last_operation: reads, nothing to mitigate.
    Read,
}

/// The upstream's answer as the registry understands it.
pub fn classify(endpoint: Endpoint, reply: &Result<UpstreamReply, RoutingError>) -> Outcome {
    let reply = match reply {
        Ok(reply) => reply,
        Err(e) if !e.may_have_acted() => return Outcome::NotSent,
        Err(RoutingError::UpstreamTimeout { .. }) => {
            return Outcome::Failed {
                reason: "timed out".to_owned(),
            };
        }
        Err(e) => {
            return Outcome::Failed {
                reason: format!("request failed ({})", e.kind()),
            };
        }
    };
    let object = || {
        serde_json::from_slice::<Value>(&reply.body)
            .ok()
            .and_then(|v| v.as_object().cloned())
    };
    let malformed = || Outcome::Failed {
        reason: format!("malformed {} answer", reply.status),
    };
    // A JSON object is all a 200 or 201 needs to be: checked without building it.
    let done = || {
        if is_json_object(&reply.body) {
            Outcome::Done
        } else {
            malformed()
        }
    };
    let creates = matches!(endpoint, Endpoint::Provision | Endpoint::Bind);
    let deletes = matches!(endpoint, Endpoint::Deprovision | Endpoint::Unbind);
    match reply.status {
        200 => done(),
        201 if creates => done(),
        202 if endpoint != Endpoint::Read => match object() {
            Some(body) => Outcome::Accepted {
                operation: body.get("operation").and_then(Value::as_str).map(str::to_owned),
            },
            None => malformed(),
        },
        410 if deletes => Outcome::Gone,
        400..=499 => Outcome::Rejected,
        status => Outcome::Failed {
            reason: format!("answered {status}"),
        },
    }
}

/// Whether `body` is one JSON object, checked without building it.
pub fn is_json_object(body: &[u8]) -> bool {
    body.trim_ascii_start().first() == Some(&b'{')
        && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
}

/// The state a `last_operation` answer reports, if it is a valid one.
pub fn polled(reply: &UpstreamReply) -> Option<Polled> {
    match reply.status {
        410 => Some(Polled::Gone),
        200 => {
            let body: Value = serde_json::from_slice(&reply.body).ok()?;
            match body.get("state").and_then(Value::as_str)? {
                "in progress" => Some(Polled::InProgress),
                "succeeded" => Some(Polled::Succeeded),
                "failed" => Some(Polled::Failed),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The platform's answer for an upstream answer classified as `outcome`.
///
/// # Errors
/// 502/504 ([`ApiError::UpstreamUnavailable`], [`ApiError::UpstreamError`],
/// [`ApiError::UpstreamTimeout`]) when the upstream failed.
pub fn respond(
    broker: &str,
    reply: Result<UpstreamReply, RoutingError>,
    outcome: &Outcome,
) -> Result<HttpResponse, ApiError> {
    match (reply, outcome) {
        (Err(RoutingError::UpstreamTimeout { .. }), _) => Err(ApiError::UpstreamTimeout {
            broker: broker.to_owned(),
        }),
        (Err(RoutingError::CircuitOpen { .. }), _) => Err(ApiError::CircuitOpen {
            broker: broker.to_owned(),
        }),
        (_, Outcome::NotSent) => Err(ApiError::UpstreamUnavailable {
            broker: broker.to_owned(),
        }),
        (_, Outcome::Failed { reason }) => Err(ApiError::UpstreamError {
            broker: broker.to_owned(),
            reason: reason.clone(),
        }),
        (Ok(reply), _) => Ok(pass_through(broker, &reply, reply.body.clone())),
        (Err(e), _) => Err(ApiError::UpstreamError {
            broker: broker.to_owned(),
            reason: e.kind().to_owned(),
        }),
    }
}

/// The upstream's status and body (and `Retry-After`) as the platform's answer. A non-JSON error
/// body is replaced by an OSB error body saying what the broker answered.
pub fn pass_through(broker: &str, reply: &UpstreamReply, body: Bytes) -> HttpResponse {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = HttpResponse::build(status);
    if let Some(retry_after) = reply
        .retry_after
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        response.insert_header((header::RETRY_AFTER, retry_after));
    }
    let body = if is_json_object(&body) {
        body
    } else {
        let description = format!("broker {broker} answered {} without a JSON body", reply.status);
        Bytes::from(
            serde_json::to_vec(&serde_json::json!({ "description": description })).unwrap_or_default(),
        )
    };
    response.content_type("application/json").body(body)
}

/// A fetch-instance body with the upstream's `service_id`/`plan_id` replaced by the gateway's.
pub fn rewrite_ids(body: &Bytes, ids: &[(&str, &str, &str)]) -> Bytes {
    let Ok(Value::Object(mut fields)) = serde_json::from_slice::<Value>(body) else {
        return body.clone();
    };
    for (field, upstream, gateway) in ids {
        if fields.get(*field).and_then(Value::as_str) == Some(*upstream) {
            fields.insert((*field).to_owned(), Value::String((*gateway).to_owned()));
        }
    }
    Bytes::from(serde_json::to_vec(&Value::Object(fields)).unwrap_or_else(|_| body.to_vec()))
}

/// An empty JSON object body.
pub fn empty_object() -> Bytes {
    Bytes::from(serde_json::to_vec(&Map::<String, Value>::new()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> Result<UpstreamReply, RoutingError> {
        Ok(UpstreamReply {
            status,
            retry_after: None,
            body: Bytes::from(body.to_owned()),
        })
    }

    #[test]
    fn classification_follows_the_osb_table() {
        use Endpoint::*;
        assert_eq!(classify(Provision, &reply(201, "{}")), Outcome::Done);
        assert_eq!(classify(Provision, &reply(200, "{}")), Outcome::Done);
        assert_eq!(
            classify(Provision, &reply(202, r#"{"operation":"op 1"}"#)),
            Outcome::Accepted {
                operation: Some("op 1".into())
            }
        );
        assert!(matches!(
            classify(Provision, &reply(201, "not json")),
            Outcome::Failed { .. }
        ));
        assert!(matches!(
            classify(Provision, &reply(500, "{}")),
            Outcome::Failed { .. }
        ));
        assert!(matches!(
            classify(Provision, &reply(204, "")),
            Outcome::Failed { .. }
        ));
        assert_eq!(classify(Provision, &reply(408, "{}")), Outcome::Rejected);
        assert_eq!(
            classify(Provision, &reply(422, r#"{"error":"ConcurrencyError"}"#)),
            Outcome::Rejected
        );
        assert_eq!(classify(Provision, &reply(410, "{}")), Outcome::Rejected);
        assert_eq!(classify(Deprovision, &reply(410, "{}")), Outcome::Gone);
        assert!(
            matches!(classify(Update, &reply(201, "{}")), Outcome::Failed { .. }),
            "201 is not an update answer"
        );
        assert!(matches!(
            classify(Deprovision, &reply(201, "{}")),
            Outcome::Failed { .. }
        ));
        let timeout = Err(RoutingError::UpstreamTimeout {
            broker: "b".into(),
            timeout_secs: 1,
        });
        assert!(matches!(classify(Bind, &timeout), Outcome::Failed { .. }));
    }
}
