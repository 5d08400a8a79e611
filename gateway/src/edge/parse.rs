//! Parsing and validating platform requests, before anything is forwarded (400 on any mistake).
//!
//! Bodies stay JSON maps so every field, known or not, reaches the upstream unchanged; only the
//! fields OSB defines are checked: required ids (an empty string counts as missing), object-typed
//! fields, path ids (the one grammar of `osb_routing::resource`: no dot segments), the query's
//! percent-encoding, `accepts_incomplete` and `operation`. Query values are decoded once and
//! encoded afresh for the upstream, so what is sent is exactly what was checked.

use std::time::Duration;

use actix_web::HttpRequest;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use osb_routing::OsbId;
use serde_json::{Map, Value};

use crate::error::ApiError;

pub use osb_routing::resource::MAX_ID_LEN;

/// Checks a path id against the one id grammar ([`OsbId`]: 1 to 255 URL-safe characters, not a
/// dot segment).
///
/// # Errors
/// [`ApiError::BadRequest`] naming the id and what is wrong with it.
pub fn id(name: &'static str, value: &str) -> Result<OsbId, ApiError> {
    Ok(OsbId::parse(name, value)?)
}

/// The path parameter `name` of `req`, checked with [`id`].
///
/// # Errors
/// [`ApiError::BadRequest`].
pub fn path_id(req: &HttpRequest, name: &'static str) -> Result<OsbId, ApiError> {
    let ids = crate::edge::route::RouteIds::of(req);
    let value = match name {
        "instance_id" => ids.instance_id,
        "binding_id" => ids.binding_id,
        _ => None,
    };
    id(name, value.as_deref().unwrap_or_default())
}

/// How a request body is read in one app: the most bytes and the time it may take to arrive.
/// Put in each app's data; [`RequestBody`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    pub max_bytes: usize,
    /// From the handler's first read to the body's last byte.
    pub timeout: Duration,
}

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits {
            max_bytes: 1024 * 1024,
            timeout: Duration::from_secs(10),
        }
    }
}

/// A whole request body, read under the app's [`BodyLimits`]: an extractor whose every refusal is
/// OSB JSON (400 too large or broken, 408 too slow), unlike actix's plain-text ones.
#[derive(Debug, Clone)]
pub struct RequestBody(pub Bytes);

impl actix_web::FromRequest for RequestBody {
    type Error = ApiError;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let limits = req.app_data::<BodyLimits>().copied().unwrap_or_default();
        let payload = payload.take();
        Box::pin(async move { body(payload, limits).await.map(RequestBody) })
    }
}

/// Reads the request body within `limits`.
///
/// # Errors
/// [`ApiError::BadRequest`] when it is too large or malformed (a broken chunked encoding, a
/// connection that breaks), [`ApiError::BodyTimeout`] when it does not arrive in time.
pub async fn body(mut payload: actix_web::dev::Payload, limits: BodyLimits) -> Result<Bytes, ApiError> {
    let limit = limits.max_bytes;
    let read = async move {
        let too_large = || ApiError::BadRequest(format!("request body larger than {limit} bytes"));
        let mut body = BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::BadRequest(format!("cannot read the request body: {e}")))?;
            if body.len() + chunk.len() > limit {
                // Read (and drop) the rest, up to a bound, so the platform finishes sending and
                // reads the 400 instead of a connection closed under it.
                let mut discarded = body.len() + chunk.len();
                drop(body);
                while discarded <= DRAIN_FACTOR.saturating_mul(limit) {
                    match payload.next().await {
                        Some(Ok(more)) => discarded += more.len(),
                        Some(Err(_)) | None => break,
                    }
                }
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    tokio::time::timeout(limits.timeout, read)
        .await
        .unwrap_or(Err(ApiError::BodyTimeout {
            secs: limits.timeout.as_secs(),
        }))
}

/// How far past the limit an oversized body is still read (then the connection is dropped).
const DRAIN_FACTOR: usize = 16;

// === query strings ===

/// A query string, names and values percent-decoded.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// `(name, value)`; `None` for a name without `=`.
    pairs: Vec<(String, Option<String>)>,
}

impl Query {
    /// Splits `raw` into pairs and checks the encoding, `accepts_incomplete`, the OSB id
    /// parameters and `operation`.
    ///
    /// # Errors
    /// [`ApiError::BadRequest`] for malformed percent-encoding, a malformed `accepts_incomplete`,
    /// an empty id parameter or an `operation` the grammar refuses.
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let mut pairs = Vec::new();
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = match pair.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (pair, None),
            };
            if !well_encoded(name) || !value.is_none_or(well_encoded) {
                return Err(ApiError::BadRequest(
                    "the query string has malformed percent-encoding".to_owned(),
                ));
            }
            pairs.push((decode(name), value.map(decode)));
        }
        let query = Query { pairs };
        if let Some(value) = query.get("accepts_incomplete") {
            if !matches!(value, "true" | "false") {
                return Err(ApiError::BadRequest(
                    "accepts_incomplete must be true or false".to_owned(),
                ));
            }
        }
        for name in ["service_id", "plan_id", "operation"] {
            if query.get(name).is_some_and(str::is_empty) {
                return Err(ApiError::BadRequest(format!(
                    "{name} must not be empty when present"
                )));
            }
        }
        if let Some(operation) = query.get("operation") {
            osb_routing::resource::check_operation(operation)?;
        }
        Ok(query)
    }

    /// The decoded value of the first `name` (`""` for a name without a value).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref().unwrap_or_default())
    }

    /// The decoded value of a required, non-empty parameter.
    ///
    /// # Errors
    /// [`ApiError::BadRequest`] when it is missing.
    pub fn required(&self, name: &str) -> Result<String, ApiError> {
        self.get(name)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| ApiError::BadRequest(format!("{name} is required")))
    }

    /// The query to send upstream: `service_id` and `plan_id` replaced by the given upstream ids
    /// (added when absent), every other parameter (`operation` above all) as received, each name
    /// and value percent-encoded afresh.
    pub fn upstream(&self, service_id: &str, plan_id: &str) -> String {
        let mut out = Vec::with_capacity(self.pairs.len() + 2);
        let (mut service_seen, mut plan_seen) = (false, false);
        for (name, value) in &self.pairs {
            match name.as_str() {
                "service_id" => {
                    service_seen = true;
                    out.push(format!("service_id={}", encode(service_id)));
                }
                "plan_id" => {
                    plan_seen = true;
                    out.push(format!("plan_id={}", encode(plan_id)));
                }
                _ => match value.as_deref() {
                    None | Some("") if !name.is_empty() => out.push(encode(name)),
                    value => out.push(format!("{}={}", encode(name), encode(value.unwrap_or_default()))),
                },
            }
        }
        if !service_seen {
            out.push(format!("service_id={}", encode(service_id)));
        }
        if !plan_seen {
            out.push(format!("plan_id={}", encode(plan_id)));
        }
        out.join("&")
    }

    /// `accepts_incomplete=…` alone, if given (for provision, update and bind).
    pub fn accepts_incomplete(&self) -> String {
        self.get("accepts_incomplete")
            .map(|v| format!("accepts_incomplete={}", encode(v)))
            .unwrap_or_default()
    }
}

/// `true` when every `%` starts a two-hex-digit escape and the decoded bytes are UTF-8.
fn well_encoded(value: &str) -> bool {
    let bytes = value.as_bytes();
    let escapes_ok = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'%')
        .all(|(i, _)| {
            bytes
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
        });
    escapes_ok && std::str::from_utf8(&raw_decode(value)).is_ok()
}

/// Percent-decodes to bytes.
fn raw_decode(value: &str) -> Vec<u8> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            if let Some(byte) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    out
}

/// Percent-decodes (`+` stays `+`: OSB values are percent-encoded, not form-encoded).
pub fn decode(value: &str) -> String {
    String::from_utf8_lossy(&raw_decode(value)).into_owned()
}

/// Percent-encodes a query name or value.
pub fn encode(value: &str) -> String {
    osb_routing::resource::encode(value)
}

// === bodies ===

/// A request body: the JSON object as received, plus the OSB fields read from it.
#[derive(Debug, Clone)]
pub struct Body {
    pub fields: Map<String, Value>,
    pub service_id: String,
    /// Required on provision and bind, optional on update.
    pub plan_id: Option<String>,
}

impl Body {
    /// `parameters`, if given.
    pub fn parameters(&self) -> Option<&Value> {
        self.fields.get("parameters")
    }

    /// `previous_values.plan_id` of an update, if given.
    pub fn previous_plan_id(&self) -> Option<&str> {
        self.fields
            .get("previous_values")
            .and_then(|p| p.get("plan_id"))
            .and_then(Value::as_str)
    }

    /// The body to send upstream with the gateway ids replaced by upstream ids.
    pub fn upstream(&self, service_id: &str, plan_id: Option<&str>, previous_plan_id: Option<&str>) -> Bytes {
        let mut fields = self.fields.clone();
        fields.insert("service_id".to_owned(), Value::String(service_id.to_owned()));
        if let Some(plan_id) = plan_id {
            fields.insert("plan_id".to_owned(), Value::String(plan_id.to_owned()));
        }
        if let Some(Value::Object(previous)) = fields.get_mut("previous_values") {
            if let Some(previous_plan_id) = previous_plan_id {
                previous.insert("plan_id".to_owned(), Value::String(previous_plan_id.to_owned()));
            }
            if previous.contains_key("service_id") {
                previous.insert("service_id".to_owned(), Value::String(service_id.to_owned()));
            }
        }
        Bytes::from(serde_json::to_vec(&Value::Object(fields)).unwrap_or_default())
    }
}

/// Which request a body belongs to: decides the required fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Provision,
    Update,
    Bind,
}

/// Parses and checks a provision, update or bind body.
///
/// # Errors
/// [`ApiError::BadRequest`] naming the first problem.
pub fn request_body(kind: BodyKind, bytes: &[u8]) -> Result<Body, ApiError> {
    let bad = |m: String| ApiError::BadRequest(m);
    let value: Value = serde_json::from_slice(bytes).map_err(|e| bad(format!("invalid JSON body: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(bad("the request body must be a JSON object".to_owned()));
    };
    let string = |name: &str, required: bool| -> Result<Option<String>, ApiError> {
        match fields.get(name) {
            None if required => Err(bad(format!("{name} is required"))),
            // An id given as null is no id: a type error, not an absent field.
            Some(Value::Null) if name.ends_with("_id") => Err(bad(format!("{name} must be a string"))),
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Err(bad(format!("{name} must not be empty"))),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(bad(format!("{name} must be a string"))),
        }
    };
    let service_id = string("service_id", true)?.unwrap_or_default();
    let plan_id = string("plan_id", kind != BodyKind::Update)?;
    for name in ["organization_guid", "space_guid", "app_guid"] {
        string(name, false)?;
    }
    for name in [
        "context",
        "parameters",
        "maintenance_info",
        "previous_values",
        "bind_resource",
    ] {
        match fields.get(name) {
            None | Some(Value::Object(_)) => {}
            Some(_) => return Err(bad(format!("{name} must be an object"))),
        }
    }
    if let Some(platform) = fields.get("context").and_then(|c| c.get("platform")) {
        if platform.as_str().is_none_or(str::is_empty) {
            return Err(bad("context.platform must be a non-empty string".to_owned()));
        }
    }
    if let Some(Value::Object(previous)) = fields.get("previous_values") {
        for name in ["plan_id", "service_id"] {
            match previous.get(name) {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) if !s.is_empty() => {}
                Some(_) => return Err(bad(format!("previous_values.{name} must be a non-empty string"))),
            }
        }
    }
    Ok(Body {
        service_id,
        plan_id,
        fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(id("instance_id", "6ba7b810-9dad-11d1-80b4-00c04fd430c8").is_ok());
        for bad in ["", "a b", "a/b", "ä", "a%20", ".", "..", &"x".repeat(256)] {
            let error = id("instance_id", bad).unwrap_err();
            assert!(matches!(error, ApiError::BadRequest(_)), "{bad}: {error:?}");
        }
        assert_eq!(
            id("binding_id", "..").unwrap_err().to_string(),
            "binding_id must not be made of dots alone ('.' and '..' are path segments)"
        );
    }

    #[test]
    fn queries_keep_operations_raw_and_map_ids() {
        let q =
            Query::parse("accepts_incomplete=true&operation=op%20provision%2Fi%2B1&service_id=gs&plan_id=gp")
                .unwrap();
        assert_eq!(q.get("operation").unwrap(), "op provision/i+1");
        assert!(Query::parse(&format!("operation={}", "o".repeat(10_001))).is_err());
        assert_eq!(
            Query::parse("operation=a+b&x&y=&%6Eame=%7E")
                .unwrap()
                .upstream("s", "p"),
            "operation=a%2Bb&x&y&name=~&service_id=s&plan_id=p"
        );
        assert_eq!(
            q.upstream("us 1", "up"),
            "accepts_incomplete=true&operation=op%20provision%2Fi%2B1&service_id=us%201&plan_id=up"
        );
        assert_eq!(
            Query::parse("").unwrap().upstream("s", "p"),
            "service_id=s&plan_id=p"
        );
        assert!(Query::parse("accepts_incomplete=yes").is_err());
        assert!(Query::parse("service_id=").is_err());
        assert_eq!(
            Query::parse("service_id=a")
                .unwrap()
                .required("plan_id")
                .unwrap_err()
                .to_string(),
            "plan_id is required"
        );
    }

    #[test]
    fn bodies() {
        let body = request_body(
            BodyKind::Provision,
            br#"{"service_id":"s","plan_id":"p","parameters":{"a":1},"x-vendor":[1],"context":{"platform":"kubernetes"}}"#,
        )
        .unwrap();
        let upstream: Value = serde_json::from_slice(&body.upstream("us", Some("up"), None)).unwrap();
        assert_eq!(
            upstream,
            serde_json::json!({"service_id":"us","plan_id":"up","parameters":{"a":1},"x-vendor":[1],"context":{"platform":"kubernetes"}})
        );
        for (kind, bad, why) in [
            (
                BodyKind::Provision,
                &br#"{"plan_id":"p"}"#[..],
                "service_id is required",
            ),
            (
                BodyKind::Provision,
                br#"{"service_id":"","plan_id":"p"}"#,
                "service_id must not be empty",
            ),
            (BodyKind::Bind, br#"{"service_id":"s"}"#, "plan_id is required"),
            (
                BodyKind::Provision,
                br#"{"service_id":"s","plan_id":"p","parameters":[1]}"#,
                "parameters must be an object",
            ),
            (
                BodyKind::Provision,
                br#"{"service_id":"s","plan_id":7}"#,
                "plan_id must be a string",
            ),
            (
                BodyKind::Provision,
                br#"[1]"#,
                "the request body must be a JSON object",
            ),
            (
                BodyKind::Provision,
                br#"{"service_id":"s","plan_id":"p","context":{"platform":""}}"#,
                "context.platform",
            ),
            (
                BodyKind::Update,
                br#"{"service_id":"s","previous_values":{"plan_id":3}}"#,
                "previous_values.plan_id",
            ),
        ] {
            let err = request_body(kind, bad).unwrap_err().to_string();
            assert!(err.contains(why), "{err} / {why}");
        }
        assert!(
            request_body(BodyKind::Provision, b"{not json")
                .unwrap_err()
                .to_string()
                .starts_with("invalid JSON body")
        );
        let update = request_body(
            BodyKind::Update,
            br#"{"service_id":"s","previous_values":{"plan_id":"old","service_id":"s"}}"#,
        )
        .unwrap();
        let upstream: Value = serde_json::from_slice(&update.upstream("us", None, Some("uold"))).unwrap();
        assert_eq!(
            upstream["previous_values"],
            serde_json::json!({"plan_id":"uold","service_id":"us"})
        );
        assert_eq!(upstream.get("plan_id"), None);
    }
}
