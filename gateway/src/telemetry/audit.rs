//! The audit log, gateway side: what each mutating platform call and each operator action did,
//! appended to the store (`osb_routing::audit` defines the records) and optionally to a JSON lines
//! file (`audit.jsonl_path`).
//!
//! Platform calls are recorded by one middleware (`edge::audit_calls`), placed right after
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

use actix_web::{HttpMessage, HttpRequest};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use osb_config::AuditSettings;
use osb_routing::audit::AuditRecord;
use osb_routing::upstream::UpstreamReply;
use osb_routing::{RoutingError, Store};
use serde_json::Value;
use tracing::warn;

use crate::telemetry::metrics::Metrics;

/// Header an admin client names the person acting with (`osb-gateway admin --as`).
pub const OPERATOR_HEADER: &str = "X-OSB-Gateway-Operator";

/// Longest id, user name or reason kept in a record (longer ones are cut).
pub const MAX_FIELD: usize = 256;
/// Longest operator reason kept.
const MAX_REASON: usize = 1024;

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
    /// Brokers a provision failed over from, with why (`failover from aws (unreachable)`).
    pub failover: Vec<String>,
}

/// Notes that a provision failed over from broker `from` to `to` because of `why` (a fixed word:
/// `unreachable`, `tls`, `CircuitOpen`, `RateLimited`, …).
pub fn note_failover(req: &HttpRequest, from: &str, to: &str, why: &str) {
    let mut extensions = req.extensions_mut();
    if extensions.get::<AuditNote>().is_none() {
        extensions.insert(AuditNote::default());
    }
    if let Some(note) = extensions.get_mut::<AuditNote>() {
        note.failover
            .push(format!("failed over from {from} ({why}) to {to}"));
    }
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
pub fn now_ms() -> u64 {
    osb_routing::clock::now_ms()
}

/// Appends audit records to the store and the export file. Cheap to clone (shared parts).
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
    /// To the background appender ([`AuditLog::record_in_background`]); none outside a runtime.
    queue: Option<tokio::sync::mpsc::Sender<AuditRecord>>,
}

struct Inner {
    store: Arc<dyn Store>,
    export: Option<(PathBuf, Mutex<std::fs::File>)>,
    metrics: Arc<Metrics>,
    /// Records kept in the store (`audit.retain_records`; 0: all).
    retain: u64,
    /// Records handed to the background appender, and those it has appended (in the same order):
    /// [`AuditLog::settle`] waits for the second to reach what the first was when it was called.
    handed: std::sync::atomic::AtomicU64,
    appended: std::sync::atomic::AtomicU64,
    progress: tokio::sync::Notify,
}

/// Records waiting for the background appender at most; past this, callers wait for room
/// (backpressure: memory stays bounded when the store is slow).
const MAX_IN_FLIGHT: usize = 4096;

/// Records the background appender hands to the store at once (they join one group commit).
const BATCH: usize = 256;

/// The store is pruned when a record's `seq` is a multiple of this.
const PRUNE_EVERY: u64 = 1000;

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("export", &self.inner.export.as_ref().map(|export| &export.0))
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// The audit log on `store`, exporting to `settings.jsonl_path` (created, appended to) if set.
    /// Inside a tokio runtime, starts the background appender (it ends with the last handle).
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
        let inner = Arc::new(Inner {
            store,
            export,
            metrics,
            retain: settings.retain_records,
            handed: std::sync::atomic::AtomicU64::new(0),
            appended: std::sync::atomic::AtomicU64::new(0),
            progress: tokio::sync::Notify::new(),
        });
        let queue = tokio::runtime::Handle::try_current().ok().map(|runtime| {
            let (queue, records) = tokio::sync::mpsc::channel(MAX_IN_FLIGHT);
            runtime.spawn(append_in_background(inner.clone(), records));
            queue
        });
        Ok(AuditLog { inner, queue })
    }

    /// Appends `record` without holding up the caller: a platform's answer does not wait for its
    /// audit record's commit, which joins the store's next group commit instead. One background
    /// task appends the records in the order they were handed over, so their `seq` (and the export
    /// file) follow the calls' order. Reads of the log ([`AuditLog::settle`]) and shutdown wait for
    /// what is in flight; past [`MAX_IN_FLIGHT`] waiting records, the caller waits for room.
    pub async fn record_in_background(&self, record: AuditRecord) {
        use std::sync::atomic::Ordering;
        // Counted once it is in the queue: a caller cancelled while it waits for room leaves
        // nothing behind.
        match self.queue.as_ref().map(tokio::sync::mpsc::Sender::reserve) {
            Some(reserving) => match reserving.await {
                Ok(permit) => {
                    self.inner.handed.fetch_add(1, Ordering::AcqRel);
                    permit.send(record);
                }
                Err(_) => {
                    self.record(record).await;
                }
            },
            None => {
                self.record(record).await;
            }
        }
    }

    /// Waits (at most a few seconds) until the records handed to the background appender before
    /// this call have landed: what this process answered is then in the log. Records handed over
    /// meanwhile are not waited for, so a steady load does not hold a reader up.
    pub async fn settle(&self) {
        use std::sync::atomic::Ordering;
        let target = self.inner.handed.load(Ordering::Acquire);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let progress = self.inner.progress.notified();
            if self.inner.appended.load(Ordering::Acquire) >= target {
                return;
            }
            if tokio::time::timeout_at(deadline, progress).await.is_err() {
                return;
            }
        }
    }

    /// Appends `record`; returns its `seq`, or `None` when the store refused it (logged, counted).
    pub async fn record(&self, record: AuditRecord) -> Option<u64> {
        let (seq, record) = self.inner.append_all(vec![record]).await.pop()?;
        self.inner.export(seq, record);
        Some(seq)
    }
}

/// The background appender: takes every record waiting (at most [`BATCH`]), appends them in one
/// store call, in order (`Store::append_audits`: one transaction on the embedded store, one
/// after the other on PostgreSQL, on one connection), then exports them.
async fn append_in_background(inner: Arc<Inner>, mut records: tokio::sync::mpsc::Receiver<AuditRecord>) {
    while let Some(first) = records.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match records.try_recv() {
                Ok(record) => batch.push(record),
                Err(_) => break,
            }
        }
        let count = batch.len() as u64;
        for (seq, record) in inner.append_all(batch).await {
            inner.export(seq, record);
        }
        inner
            .appended
            .fetch_add(count, std::sync::atomic::Ordering::AcqRel);
        inner.progress.notify_waiters();
    }
}

impl Inner {
    /// Appends `records` in one store call (one group commit, their `seq` in this order); the
    /// appended ones with their `seq`. A refusal is logged and counted for each record.
    async fn append_all(&self, records: Vec<AuditRecord>) -> Vec<(u64, AuditRecord)> {
        match self.store.append_audits(records.clone()).await {
            Ok(seqs) => {
                let appended: Vec<(u64, AuditRecord)> = seqs.into_iter().zip(records).collect();
                for (seq, record) in &appended {
                    self.appended_one(*seq, record);
                }
                appended
            }
            Err(e) => {
                for record in &records {
                    self.metrics.audit_failure();
                    warn!(
                        operation = %record.operation,
                        actor = %record.actor,
                        error = %e,
                        "Could not append to the audit log."
                    );
                }
                Vec::new()
            }
        }
    }

    /// Counts an appended record, and prunes the store past the retention.
    fn appended_one(&self, seq: u64, record: &AuditRecord) {
        self.metrics
            .audit_recorded(record.kind.as_str(), record.outcome.as_str());
        if self.retain > 0 && seq > self.retain && seq.is_multiple_of(PRUNE_EVERY) {
            // Retention, off the call's path: the oldest records beyond `retain` go.
            let (store, through) = (self.store.clone(), seq - self.retain);
            tokio::spawn(async move {
                if let Err(e) = store.prune_audit(through).await {
                    warn!(error = %e, "Could not prune the audit log.");
                }
            });
        }
    }

    /// Writes `record` as `seq` to the export file, if there is one.
    fn export(&self, seq: u64, record: AuditRecord) {
        let Some((path, file)) = &self.export else {
            return;
        };
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
