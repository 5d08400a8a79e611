//! The audit log, gateway side: what each mutating platform call and each operator action did,
//! appended to the store (`osb_routing::audit` defines the records) and optionally to a JSON lines
//! file (`audit.jsonl_path`).
//!
//! Platform calls are recorded by one middleware ([`record_calls`]), placed right after
//! authentication, so a call refused by the rate limit, the API version check, parsing, the
//! policy or the registry is recorded as well as a forwarded one. Handlers add what only they
//! learn through the request's extensions: [`note_target`] once the policy allowed the call (the
//! broker and the gateway ids), [`note_upstream`] once the upstream answered. Admin handlers
//! record their own actions with [`AuditLog::record`].
//!
//! What is kept is safe to show any operator: no credentials, parameters, binding answers,
//! upstream descriptions, or originating-identity fields other than the user name
//! ([`originating_user`]). A failure to write the audit record never fails the call (the call
//! already happened): it is logged and counted (`osb_gateway_audit_write_failures_total`).

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpRequest, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use osb_config::AuditSettings;
use osb_routing::audit::{AuditKind, AuditOutcome, AuditRecord};
use osb_routing::upstream::UpstreamReply;
use osb_routing::{RoutingError, Store};
use serde_json::Value;
use tracing::warn;

use crate::app::AppState;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::middleware::RequestContext;

/// Header an admin client names the person acting with (`osb-gateway admin --as`).
pub const OPERATOR_HEADER: &str = "X-OSB-Gateway-Operator";

/// Longest id, user name or reason kept in a record (longer ones are cut).
const MAX_FIELD: usize = 256;
/// Longest operator reason kept.
const MAX_REASON: usize = 1024;

/// The platform operations that change something (and are recorded).
const MUTATING: &[&str] = &["provision", "update", "deprovision", "bind", "unbind"];

/// What a handler learned about a call, kept in the request's extensions until it is recorded.
#[derive(Debug, Clone, Default)]
pub struct AuditNote {
    pub broker: Option<String>,
    pub service_id: Option<String>,
    pub plan_id: Option<String>,
    /// The policy allowed the call.
    pub allowed: bool,
    pub upstream_status: Option<u16>,
    /// The OSB `error` code of the upstream's refusal or failure.
    pub upstream_error: Option<String>,
}

/// Notes that the policy allowed the call, and where it goes (broker, gateway ids).
pub fn note_target(req: &HttpRequest, broker: &str, service_id: &str, plan_id: &str) {
    let mut extensions = req.extensions_mut();
    let note = extensions.get_mut::<AuditNote>();
    let fill = |note: &mut AuditNote| {
        note.broker = Some(broker.to_owned());
        note.service_id = Some(service_id.to_owned());
        note.plan_id = Some(plan_id.to_owned());
        note.allowed = true;
    };
    match note {
        Some(note) => fill(note),
        None => {
            let mut note = AuditNote::default();
            fill(&mut note);
            extensions.insert(note);
        }
    }
}

/// Notes the upstream's status (and the OSB `error` code of a refusal), when it answered.
pub fn note_upstream(req: &HttpRequest, reply: &Result<UpstreamReply, RoutingError>) {
    let Ok(reply) = reply else {
        return;
    };
    let code = (reply.status >= 400)
        .then(|| serde_json::from_slice::<Value>(&reply.body).ok())
        .flatten()
        .and_then(|body| body.get("error").and_then(Value::as_str).and_then(error_code));
    let mut extensions = req.extensions_mut();
    if extensions.get::<AuditNote>().is_none() {
        extensions.insert(AuditNote::default());
    }
    if let Some(note) = extensions.get_mut::<AuditNote>() {
        note.upstream_status = Some(reply.status);
        note.upstream_error = code;
    }
}

/// An upstream's `error` field, if it looks like an OSB code (a short CamelCase word): anything
/// else could be free text and is not kept.
fn error_code(value: &str) -> Option<String> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value.bytes().all(|b| b.is_ascii_alphanumeric())
        && value.bytes().next().is_some_and(|b| b.is_ascii_uppercase());
    ok.then(|| value.to_owned())
}

/// The user name in an `X-Broker-API-Originating-Identity` header (`<platform> <base64 JSON>`):
/// Kubernetes' `username` (else `uid`), Cloud Foundry's `user_id`. Nothing else of it is kept.
pub fn originating_user(header: &str) -> Option<String> {
    let (_platform, encoded) = header.trim().split_once(' ')?;
    let raw = STANDARD.decode(encoded.trim()).ok()?;
    let value: Value = serde_json::from_slice(&raw).ok()?;
    ["username", "user_id", "uid"]
        .iter()
        .find_map(|key| value.get(*key).and_then(Value::as_str))
        .filter(|user| !user.is_empty())
        .map(|user| cut(user, MAX_FIELD))
}

/// `text`, at most `max` bytes (on a character boundary).
pub fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default().to_owned()
}

/// An operator's reason as kept in a record.
pub fn reason(text: &str) -> String {
    cut(text.trim(), MAX_REASON)
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    osb_routing::registry::now_ms()
}

/// Appends audit records to the store and the export file.
pub struct AuditLog {
    store: Arc<dyn Store>,
    export: Option<(PathBuf, Mutex<std::fs::File>)>,
    metrics: Arc<Metrics>,
    /// Records kept in the store (`audit.retain_records`; 0: all).
    retain: u64,
}

/// The store is pruned when a record's `seq` is a multiple of this.
const PRUNE_EVERY: u64 = 1000;

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("export", &self.export.as_ref().map(|(path, _)| path))
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// The audit log on `store`, exporting to `settings.jsonl_path` (created, appended to) if set.
    ///
    /// # Errors
    /// The export file cannot be opened.
    pub fn open(
        settings: &AuditSettings,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Self> {
        let export = match &settings.jsonl_path {
            Some(path) => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent)?;
                }
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
                Some((path.clone(), Mutex::new(file)))
            }
            None => None,
        };
        Ok(AuditLog {
            store,
            export,
            metrics,
            retain: settings.retain_records,
        })
    }

    /// Appends `record`; returns its `seq`, or `None` when the store refused it (logged, counted).
    pub async fn record(&self, record: AuditRecord) -> Option<u64> {
        let (kind, outcome) = (record.kind.as_str(), record.outcome.as_str());
        let seq = match self.store.append_audit(record.clone()).await {
            Ok(seq) => seq,
            Err(e) => {
                self.metrics.audit_failure();
                warn!(
                    operation = %record.operation,
                    actor = %record.actor,
                    error = %e,
                    "Could not append to the audit log."
                );
                return None;
            }
        };
        self.metrics.audit_recorded(kind, outcome);
        if self.retain > 0 && seq > self.retain && seq.is_multiple_of(PRUNE_EVERY) {
            // Retention, off the call's path: the oldest records beyond `retain` go.
            let (store, through) = (self.store.clone(), seq - self.retain);
            tokio::spawn(async move {
                if let Err(e) = store.prune_audit(through).await {
                    warn!(error = %e, "Could not prune the audit log.");
                }
            });
        }
        if let Some((path, file)) = &self.export {
            let record = AuditRecord { seq, ..record };
            let mut line = serde_json::to_vec(&record).unwrap_or_default();
            line.push(b'\n');
            let written = file
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .write_all(&line);
            if let Err(e) = written {
                self.metrics.audit_failure();
                warn!(path = %path.display(), error = %e, "Could not export an audit record.");
            }
        }
        Some(seq)
    }
}

/// The instance and binding ids of a call: from the route's match, else from the raw path.
fn path_ids(req: &HttpRequest) -> (Option<String>, Option<String>) {
    let info = req.match_info();
    let instance = info.get("instance_id").map(str::to_owned);
    let binding = info.get("binding_id").map(str::to_owned);
    if instance.is_some() {
        return (instance, binding);
    }
    let rest = req
        .path()
        .strip_prefix("/v2/service_instances/")
        .unwrap_or_default();
    let (instance, binding) = match rest.split_once("/service_bindings/") {
        Some((instance, binding)) => (instance, Some(binding)),
        None => (rest, None),
    };
    let id = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    (id(instance), binding.and_then(id))
}

/// Middleware: records every mutating call of an authenticated platform once it is answered.
pub async fn record_calls(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let route = req.match_pattern().unwrap_or_default();
    let operation = crate::forward::operation_of(req.method().as_str(), &route);
    if !MUTATING.contains(&operation) {
        return next.call(req).await;
    }
    let started = std::time::Instant::now();
    let response = next.call(req).await?;
    let status = response.status().as_u16();
    let request = response.request().clone();
    let Some(state) = request.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(response);
    };
    let record = {
        let extensions = request.extensions();
        let Some(platform) = extensions.get::<crate::auth::Platform>() else {
            return Ok(response);
        };
        let context = extensions.get::<RequestContext>();
        let note = extensions.get::<AuditNote>().cloned().unwrap_or_default();
        let error = response.response().error().and_then(|e| e.as_error::<ApiError>());
        let policy = match error {
            Some(ApiError::PolicyDenied { rule, .. }) => Some(format!("deny (rule {rule})")),
            _ if note.allowed => Some("allow".to_owned()),
            _ => None,
        };
        let code = match (error, status) {
            (Some(error), _) => Some(error.code().to_owned()),
            (None, 400..) => note.upstream_error.clone(),
            _ => None,
        };
        let (instance_id, binding_id) = path_ids(&request);
        AuditRecord {
            seq: 0,
            at_ms: now_ms(),
            kind: AuditKind::Platform,
            actor: platform.name.to_string(),
            user: context
                .and_then(|c| c.originating_identity.as_deref())
                .and_then(originating_user),
            operation: operation.to_owned(),
            instance_id: instance_id.map(|id| cut(&id, MAX_FIELD)),
            binding_id: binding_id.map(|id| cut(&id, MAX_FIELD)),
            broker: note.broker,
            service_id: note.service_id,
            plan_id: note.plan_id,
            policy,
            upstream_status: note.upstream_status,
            status,
            outcome: AuditOutcome::of_status(status),
            error: code,
            reason: None,
            request_identity: context.map(|c| cut(&c.request_identity, MAX_FIELD)),
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        }
    };
    state.audit.record(record).await;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_user_name_of_the_originating_identity_is_kept() {
        let k8s = STANDARD
            .encode(r#"{"username":"alice","uid":"u-1","groups":["admins"],"extra":{"token":["s3cret"]}}"#);
        assert_eq!(
            originating_user(&format!("kubernetes {k8s}")).as_deref(),
            Some("alice")
        );
        let cf = STANDARD.encode(r#"{"user_id":"683ea748-3092-4ff4-b656-39cacc4d5360"}"#);
        assert_eq!(
            originating_user(&format!("cloudfoundry {cf}")).as_deref(),
            Some("683ea748-3092-4ff4-b656-39cacc4d5360")
        );
        assert_eq!(originating_user("kubernetes not-base64!"), None);
        assert_eq!(originating_user("kubernetes"), None);
        let none = STANDARD.encode(r#"{"groups":["a"]}"#);
        assert_eq!(originating_user(&format!("kubernetes {none}")), None);
    }

    #[test]
    fn only_codes_that_look_like_codes_are_kept() {
        assert_eq!(
            error_code("ConcurrencyError").as_deref(),
            Some("ConcurrencyError")
        );
        assert_eq!(error_code("password is hunter2"), None);
        assert_eq!(error_code("lowercase"), None);
        assert_eq!(error_code(""), None);
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        assert_eq!(cut("abc", 5), "abc");
        assert_eq!(cut("ééé", 3), "é");
    }
}
