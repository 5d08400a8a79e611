//! The ownership registry: which platform owns each instance and binding, which broker holds it,
//! and what is in flight, kept write-ahead around every mutating upstream call.
//!
//! Every mutating call goes through two steps:
//! 1. `begin_*` checks the request against the record (owner, conflicting attributes, operation in
//!    flight) and, for a new operation, durably records the intent (phase [`Phase::Sent`]) before
//!    the first byte goes upstream. Refusals here are 4xx and nothing was sent.
//! 2. `finish_*` records the upstream's [`Outcome`]: done, accepted (in progress), rejected (4xx,
//!    intent dropped), or failed with an unknown result, in which case a create the gateway started
//!    becomes `Orphaned` and the mitigation worker deletes it upstream until 200/410.
//!
//! `last_operation` answers update the records (`observe_*`). [`Registry::recover`] resolves the
//! intents a crash left behind. Operators add what was created before the gateway
//! ([`Registry::adopt`]) and remove what is stuck ([`Registry::abandon_instance`],
//! [`Registry::abandon_binding`]). Decisions are made on the *current* record inside a
//! compare-and-swap loop, so concurrent requests on one id never overwrite each other.

mod bindings;
mod instances;
mod operators;

use std::sync::Arc;

use tokio::sync::Notify;
use tracing::warn;

pub use crate::record::*;

use crate::RoutingError;
use crate::clock::now_ms;
use osb_policies::QuotaHold;

use crate::store::{Created, Expect, RecordRef, Store, Swap};

/// What the upstream's answer means for the registry (see `outcome.rs` in the gateway for how
/// answers are classified per endpoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 200/201 with a well-formed body: the operation finished.
    Done,
    /// 202: in progress; `operation` is the upstream's identifier, if any.
    Accepted { operation: Option<String> },
    /// 410 on a delete: it is gone.
    Gone,
    /// A 4xx (408 included): the upstream changed nothing.
    Rejected,
    /// The upstream may have acted, outcome unknown or failed: 5xx, an unexpected status, a malformed
    /// 2xx, a timeout, a connection broken after sending. `reason` has no secrets.
    Failed { reason: String },
    /// Nothing reached the upstream (connection refused).
    NotSent,
}

/// Whether a `begin_*` recorded a new intent or admitted a retry of something already recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission<R> {
    /// A new intent was recorded: forward, then `finish_*` decides.
    Fresh(R),
    /// An identical request for something already recorded (a platform retry): forward; the
    /// outcome may complete the record but never orphans it (the original request owns that).
    Retry(R),
}

impl<R> Admission<R> {
    /// The record as admitted.
    pub fn record(&self) -> &R {
        match self {
            Admission::Fresh(r) | Admission::Retry(r) => r,
        }
    }
}

/// The state of an operation as `last_operation` reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polled {
    InProgress,
    Succeeded,
    Failed,
    /// 410: gone (success for a delete).
    Gone,
}

/// A new instance as the provision request describes it.
#[derive(Debug, Clone)]
pub struct NewInstance {
    pub instance_id: String,
    pub platform: String,
    pub broker: String,
    pub service_id: String,
    pub plan_id: String,
    pub upstream_service_id: String,
    pub upstream_plan_id: String,
    pub fingerprint: String,
    /// The request's `context`, kept for policy decisions on later calls.
    pub context: Option<serde_json::Value>,
    /// The policy's quota counts it joins (refused when one is full).
    pub quotas: Vec<QuotaHold>,
}

/// A new binding as the bind request describes it.
#[derive(Debug, Clone)]
pub struct NewBinding {
    pub binding_id: String,
    pub instance_id: String,
    pub platform: String,
    pub fingerprint: String,
    /// As [`NewInstance::quotas`].
    pub quotas: Vec<QuotaHold>,
}

/// What [`Registry::adopt`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adopted {
    /// A new record, ready.
    Created(InstanceRecord),
    /// The same instance was already recorded (same platform, broker and upstream ids): kept as is.
    Existing(InstanceRecord),
}

/// A change decided on the current record.
enum Change<R> {
    Keep,
    Put(R),
    Delete,
}

/// See the module docs.
#[derive(Clone)]
pub struct Registry {
    store: Arc<dyn Store>,
    orphaned: Arc<Notify>,
    /// This gateway process, as it signs its intents.
    replica: Arc<str>,
    /// An intent older than this cannot still be waiting for its upstream (longer than any upstream
    /// timeout): recovery resolves it even when its replica lives (its outcome could not be recorded).
    stale_after_ms: u64,
    /// The replicas alive at the last recovery (this one included): the console shows them.
    replicas: Arc<std::sync::Mutex<Vec<String>>>,
}

/// How long after a failure a "gone" answer is only provisional (see `Mitigation::settle_until_ms`):
/// an upstream that answers 410 this soon after a failed create may not have seen the create yet.
pub const SETTLE: std::time::Duration = std::time::Duration::from_secs(5);

/// A replica not heard of for this long is dead: the living resolve its intents.
pub const REPLICA_TIMEOUT_MS: u64 = 15_000;

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

/// What creating a new record came to: written, or someone else's record is there now (read again).
fn created<R>(outcome: Created<R>, quotas: &[QuotaHold]) -> Result<Option<R>, RoutingError> {
    match outcome {
        Created::Written(record) => Ok(Some(record)),
        Created::Conflict => Ok(None),
        Created::Full { key, usage, limit } => Err(match quotas.iter().find(|h| h.key == key) {
            Some(hold) => RoutingError::quota_exceeded(hold, usage),
            // The store only names keys the record holds, which all come from `quotas`.
            None => RoutingError::Store(format!("quota count {key} is full ({usage} of {limit})")),
        }),
    }
}

/// The keys and limits of `quotas`, in order.
fn quota_limits(quotas: &[QuotaHold]) -> (Vec<String>, Vec<u64>) {
    quotas.iter().map(|h| (h.key.clone(), h.limit)).unzip()
}

fn orphan(reason: impl Into<String>) -> ResourceState {
    ResourceState::Orphaned(Mitigation {
        reason: reason.into(),
        attempts: 0,
        next_attempt_ms: 0,
        operation: None,
        last_error: None,
        settle_until_ms: now_ms() + u64::try_from(SETTLE.as_millis()).unwrap_or(0),
    })
}

fn operation(
    kind: OperationKind,
    fingerprint: &str,
    plan_change: Option<(String, String)>,
    replica: &str,
) -> Operation {
    Operation {
        kind,
        phase: Phase::Sent,
        upstream_operation: None,
        plan_change,
        fingerprint: fingerprint.to_owned(),
        started_ms: now_ms(),
        replica: Some(replica.to_owned()),
    }
}

/// `true` when `current` still carries the operation `admitted` started (same kind and start).
fn same_operation(current: Option<&Operation>, admitted: Option<&Operation>) -> bool {
    match (current, admitted) {
        (Some(c), Some(a)) => {
            c.kind == a.kind && c.started_ms == a.started_ms && c.fingerprint == a.fingerprint
        }
        _ => false,
    }
}

/// What instances and bindings share: the operation in flight.
trait Operated: Clone {
    fn operation(&self) -> Option<&Operation>;
    fn operation_mut(&mut self) -> &mut Option<Operation>;
}

impl Operated for InstanceRecord {
    fn operation(&self) -> Option<&Operation> {
        self.operation.as_ref()
    }
    fn operation_mut(&mut self) -> &mut Option<Operation> {
        &mut self.operation
    }
}

impl Operated for BindingRecord {
    fn operation(&self) -> Option<&Operation> {
        self.operation.as_ref()
    }
    fn operation_mut(&mut self) -> &mut Option<Operation> {
        &mut self.operation
    }
}

/// What the outcome of a delete (`kind`: deprovision or unbind) does to its record: 200/410 forget
/// it; 202 marks the delete accepted; any other outcome of the request that started the delete
/// clears it (the record stays, as before); a retry's failure changes nothing.
fn finish_delete<R: Operated>(
    current: &R,
    admission: &Admission<R>,
    outcome: &Outcome,
    kind: OperationKind,
) -> Change<R> {
    match outcome {
        Outcome::Done | Outcome::Gone => Change::Delete,
        Outcome::Accepted { operation } => {
            let mut record = current.clone();
            match record.operation_mut().as_mut().filter(|o| o.kind == kind) {
                Some(op) => {
                    op.phase = Phase::Accepted;
                    if operation.is_some() {
                        op.upstream_operation.clone_from(operation);
                    }
                    Change::Put(record)
                }
                None => Change::Keep,
            }
        }
        _ if matches!(admission, Admission::Fresh(_))
            && same_operation(current.operation(), admission.record().operation()) =>
        {
            let mut record = current.clone();
            *record.operation_mut() = None;
            Change::Put(record)
        }
        _ => Change::Keep,
    }
}

impl Registry {
    /// A registry on `store` for a new replica (a fresh id per process).
    pub fn new(store: Arc<dyn Store>) -> Self {
        Registry {
            store,
            orphaned: Arc::new(Notify::new()),
            replica: Arc::from(uuid::Uuid::new_v4().to_string()),
            stale_after_ms: 5 * 60 * 1000,
            replicas: Arc::default(),
        }
    }

    /// Intents older than `age` are resolved by recovery whoever wrote them (set it above the
    /// longest upstream timeout).
    #[must_use]
    pub fn with_stale_after(mut self, age: std::time::Duration) -> Self {
        self.stale_after_ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// This replica's id.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// The replicas that shared the store at the last recovery (heartbeat), this one included;
    /// empty before the first.
    pub fn replicas_seen(&self) -> Vec<String> {
        self.replicas.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// The store behind the registry.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Wakes up when a record becomes orphaned (the mitigation worker waits on it).
    pub fn orphaned_signal(&self) -> Arc<Notify> {
        self.orphaned.clone()
    }

    /// The instance `instance_id` if `platform` may see it.
    ///
    /// # Errors
    /// The store failed.
    pub async fn instance_for(
        &self,
        instance_id: &str,
        platform: &str,
    ) -> Result<Option<InstanceRecord>, RoutingError> {
        Ok(self
            .store
            .instance(instance_id)
            .await?
            .filter(|r| r.visible_to(platform)))
    }

    /// The binding `binding_id` of `instance_id` if `platform` may see it.
    ///
    /// # Errors
    /// The store failed.
    pub async fn binding_for(
        &self,
        instance_id: &str,
        binding_id: &str,
        platform: &str,
    ) -> Result<Option<BindingRecord>, RoutingError> {
        Ok(self
            .store
            .binding(binding_id)
            .await?
            .filter(|r| r.visible_to(platform) && r.instance_id == instance_id))
    }

    /// Applies `decide` to the current instance record until the write lands. Returns the record as
    /// written (`None` when deleted, kept as is, or absent).
    ///
    /// `known` is the record as this caller last wrote or read it (a call finishing what it
    /// admitted): the first attempt decides on it without reading the store, and its write
    /// expects its version, so a record changed since then is a conflict, read again and decided
    /// again. One read less per call on the common path.
    async fn change_instance(
        &self,
        instance_id: &str,
        known: Option<&InstanceRecord>,
        decide: impl Fn(&InstanceRecord) -> Change<InstanceRecord>,
    ) -> Result<Option<InstanceRecord>, RoutingError> {
        let mut known = known.cloned();
        loop {
            let (current, fresh) = match known.take() {
                Some(known) => (known, false),
                None => match self.store.instance(instance_id).await? {
                    Some(current) => (current, true),
                    None => return Ok(None),
                },
            };
            let (expect, record) = match decide(&current) {
                // Kept: say so of the record as it is now, not as this caller last wrote it.
                Change::Keep if !fresh => continue,
                Change::Keep => return Ok(Some(current)),
                Change::Put(mut record) => {
                    record.updated_ms = now_ms();
                    (Expect::Version(current.version), Some(record))
                }
                Change::Delete => (Expect::Version(current.version), None),
            };
            match self.store.swap_instance(instance_id, expect, record).await? {
                Swap::Written(record) => return Ok(Some(record)),
                Swap::Deleted => return Ok(None),
                Swap::Conflict => warn!(
                    instance_id,
                    "Registry write raced another request; deciding again."
                ),
            }
        }
    }

    /// As [`Registry::change_instance`], for a binding.
    async fn change_binding(
        &self,
        binding_id: &str,
        known: Option<&BindingRecord>,
        decide: impl Fn(&BindingRecord) -> Change<BindingRecord>,
    ) -> Result<Option<BindingRecord>, RoutingError> {
        let mut known = known.cloned();
        loop {
            let (current, fresh) = match known.take() {
                Some(known) => (known, false),
                None => match self.store.binding(binding_id).await? {
                    Some(current) => (current, true),
                    None => return Ok(None),
                },
            };
            let (expect, record) = match decide(&current) {
                // Kept: say so of the record as it is now, not as this caller last wrote it.
                Change::Keep if !fresh => continue,
                Change::Keep => return Ok(Some(current)),
                Change::Put(mut record) => {
                    record.updated_ms = now_ms();
                    (Expect::Version(current.version), Some(record))
                }
                Change::Delete => (Expect::Version(current.version), None),
            };
            match self.store.swap_binding(binding_id, expect, record).await? {
                Swap::Written(record) => return Ok(Some(record)),
                Swap::Deleted => return Ok(None),
                Swap::Conflict => warn!(
                    binding_id,
                    "Registry write raced another request; deciding again."
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests;
