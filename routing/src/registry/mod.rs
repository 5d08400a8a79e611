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

mod record;

use std::sync::Arc;

use tokio::sync::Notify;
use tracing::{info, warn};

pub use record::*;

use crate::RoutingError;
use crate::store::{Expect, RecordRef, Store, Swap};

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
}

/// A new binding as the bind request describes it.
#[derive(Debug, Clone)]
pub struct NewBinding {
    pub binding_id: String,
    pub instance_id: String,
    pub platform: String,
    pub fingerprint: String,
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
}

/// A replica not heard of for this long is dead: the living resolve its intents.
pub const REPLICA_TIMEOUT_MS: u64 = 15_000;

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn orphan(reason: impl Into<String>) -> ResourceState {
    ResourceState::Orphaned(Mitigation {
        reason: reason.into(),
        attempts: 0,
        next_attempt_ms: 0,
        operation: None,
        last_error: None,
        settle_until_ms: now_ms() + u64::try_from(crate::mitigation::SETTLE.as_millis()).unwrap_or(0),
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

    // === provision ===

    /// Admits a provision: records the intent for a new instance, admits an identical retry, or
    /// refuses (409 other owner or other attributes, 422 operation in flight).
    ///
    /// # Errors
    /// [`RoutingError::Conflict`], [`RoutingError::Concurrency`], or a store failure.
    pub async fn begin_provision(
        &self,
        new: &NewInstance,
    ) -> Result<Admission<InstanceRecord>, RoutingError> {
        loop {
            let Some(current) = self.store.instance(&new.instance_id).await? else {
                let now = now_ms();
                let record = InstanceRecord {
                    instance_id: new.instance_id.clone(),
                    platform: new.platform.clone(),
                    broker: new.broker.clone(),
                    service_id: new.service_id.clone(),
                    plan_id: new.plan_id.clone(),
                    upstream_service_id: new.upstream_service_id.clone(),
                    upstream_plan_id: new.upstream_plan_id.clone(),
                    fingerprint: new.fingerprint.clone(),
                    context: new.context.clone(),
                    state: ResourceState::Creating,
                    operation: Some(operation(
                        OperationKind::Provision,
                        &new.fingerprint,
                        None,
                        &self.replica,
                    )),
                    created_ms: now,
                    updated_ms: now,
                    version: 0,
                };
                match self
                    .store
                    .swap_instance(&new.instance_id, Expect::Absent, Some(record))
                    .await?
                {
                    Swap::Written(record) => return Ok(Admission::Fresh(record)),
                    Swap::Conflict | Swap::Deleted => continue,
                }
            };
            let id = &new.instance_id;
            if current.platform != new.platform {
                return Err(RoutingError::Conflict(format!("instance {id} already exists")));
            }
            if matches!(current.state, ResourceState::Orphaned(_)) {
                return Err(RoutingError::Concurrency(format!(
                    "a failed provision of instance {id} is being cleaned up; retry shortly"
                )));
            }
            if current.fingerprint != new.fingerprint {
                return Err(RoutingError::Conflict(format!(
                    "instance {id} already exists with a different service, plan or parameters"
                )));
            }
            return match current.operation.as_ref().map(|o| (o.kind, o.phase)) {
                // Done, or accepted upstream (202): the upstream answers a retry itself.
                None | Some((OperationKind::Provision, Phase::Accepted)) => Ok(Admission::Retry(current)),
                // Another request is waiting for the upstream's answer right now: only one goes.
                Some((OperationKind::Provision, Phase::Sent)) => Err(RoutingError::Concurrency(format!(
                    "a provision of instance {id} is in progress; retry shortly"
                ))),
                Some((kind, _)) => Err(RoutingError::Concurrency(format!(
                    "instance {id} has a {} in progress",
                    kind.as_str()
                ))),
            };
        }
    }

    /// Records the outcome of a provision.
    ///
    /// # Errors
    /// A store failure.
    pub async fn finish_provision(
        &self,
        admission: &Admission<InstanceRecord>,
        outcome: &Outcome,
    ) -> Result<Option<InstanceRecord>, RoutingError> {
        let (admitted, fresh) = match admission {
            Admission::Fresh(r) => (r, true),
            Admission::Retry(r) => (r, false),
        };
        let ours = |current: &InstanceRecord| {
            fresh && same_operation(current.operation.as_ref(), admitted.operation.as_ref())
        };
        let result = self
            .change_instance(&admitted.instance_id, |current| match outcome {
                Outcome::Done if current.state == ResourceState::Creating => Change::Put(InstanceRecord {
                    state: ResourceState::Ready,
                    operation: None,
                    ..current.clone()
                }),
                Outcome::Accepted { operation } if current.state == ResourceState::Creating => {
                    let mut record = current.clone();
                    let op = record.operation.get_or_insert_with(|| {
                        self::operation(
                            OperationKind::Provision,
                            &current.fingerprint,
                            None,
                            &self.replica,
                        )
                    });
                    op.phase = Phase::Accepted;
                    if operation.is_some() {
                        op.upstream_operation.clone_from(operation);
                    }
                    Change::Put(record)
                }
                Outcome::Rejected | Outcome::NotSent | Outcome::Gone if ours(current) => Change::Delete,
                Outcome::Failed { reason } if ours(current) => Change::Put(InstanceRecord {
                    state: orphan(format!("provision failed: {reason}")),
                    operation: None,
                    ..current.clone()
                }),
                _ => Change::Keep,
            })
            .await?;
        if matches!(outcome, Outcome::Failed { .. }) && fresh {
            self.orphaned.notify_one();
        }
        Ok(result)
    }

    // === update ===

    /// Admits an update of a visible instance (404 otherwise); 422 when another operation is in
    /// flight; an identical retry of an update in flight is admitted.
    ///
    /// # Errors
    /// [`RoutingError::NotFound`], [`RoutingError::Concurrency`], or a store failure.
    pub async fn begin_update(
        &self,
        instance_id: &str,
        platform: &str,
        plan_change: Option<(String, String)>,
        fingerprint: &str,
    ) -> Result<Admission<InstanceRecord>, RoutingError> {
        loop {
            let current = self.instance_for(instance_id, platform).await?;
            let Some(current) = current else {
                return Err(RoutingError::NotFound(format!(
                    "instance {instance_id} does not exist"
                )));
            };
            match &current.operation {
                Some(op) if op.kind == OperationKind::Update && op.fingerprint == fingerprint => {
                    return Ok(Admission::Retry(current));
                }
                Some(op) => {
                    return Err(RoutingError::Concurrency(format!(
                        "instance {instance_id} has a {} in progress",
                        op.kind.as_str()
                    )));
                }
                None => {}
            }
            let mut record = current.clone();
            record.operation = Some(operation(
                OperationKind::Update,
                fingerprint,
                plan_change.clone(),
                &self.replica,
            ));
            record.updated_ms = now_ms();
            match self
                .store
                .swap_instance(instance_id, Expect::Version(current.version), Some(record))
                .await?
            {
                Swap::Written(record) => return Ok(Admission::Fresh(record)),
                Swap::Conflict | Swap::Deleted => continue,
            }
        }
    }

    /// Records the outcome of an update: the new plan on success; on any failure the instance keeps
    /// its plan (the upstream promises a 4xx/5xx changed nothing; updates are never mitigated).
    ///
    /// # Errors
    /// A store failure.
    pub async fn finish_update(
        &self,
        admission: &Admission<InstanceRecord>,
        outcome: &Outcome,
    ) -> Result<Option<InstanceRecord>, RoutingError> {
        let admitted = admission.record();
        self.change_instance(&admitted.instance_id, |current| {
            let Some(op) = current
                .operation
                .as_ref()
                .filter(|o| o.kind == OperationKind::Update)
            else {
                return Change::Keep;
            };
            let mut record = current.clone();
            match outcome {
                Outcome::Done => {
                    if let Some((plan_id, upstream_plan_id)) = op.plan_change.clone() {
                        record.plan_id = plan_id;
                        record.upstream_plan_id = upstream_plan_id;
                    }
                    record.operation = None;
                }
                Outcome::Accepted { operation } => {
                    if let Some(op) = record.operation.as_mut() {
                        op.phase = Phase::Accepted;
                        if operation.is_some() {
                            op.upstream_operation.clone_from(operation);
                        }
                    }
                }
                _ if matches!(admission, Admission::Fresh(_)) && op.phase == Phase::Sent => {
                    record.operation = None
                }
                _ => return Change::Keep,
            }
            Change::Put(record)
        })
        .await
    }

    // === deprovision ===

    /// Admits a deprovision of a visible instance (410 otherwise).
    ///
    /// # Errors
    /// [`RoutingError::Gone`], [`RoutingError::Concurrency`], or a store failure.
    pub async fn begin_deprovision(
        &self,
        instance_id: &str,
        platform: &str,
        fingerprint: &str,
    ) -> Result<Admission<InstanceRecord>, RoutingError> {
        loop {
            let Some(current) = self.instance_for(instance_id, platform).await? else {
                return Err(RoutingError::Gone(format!(
                    "instance {instance_id} does not exist"
                )));
            };
            let bindings = self.store.bindings_of(instance_id).await?;
            if let Some(busy) = bindings.iter().find(|b| b.operation.is_some()) {
                return Err(RoutingError::Concurrency(format!(
                    "binding {} of instance {instance_id} has an operation in progress",
                    busy.binding_id
                )));
            }
            match &current.operation {
                Some(op) if op.kind == OperationKind::Deprovision => return Ok(Admission::Retry(current)),
                Some(op) => {
                    return Err(RoutingError::Concurrency(format!(
                        "instance {instance_id} has a {} in progress",
                        op.kind.as_str()
                    )));
                }
                None => {}
            }
            let mut record = current.clone();
            record.operation = Some(operation(
                OperationKind::Deprovision,
                fingerprint,
                None,
                &self.replica,
            ));
            record.updated_ms = now_ms();
            match self
                .store
                .swap_instance(instance_id, Expect::Version(current.version), Some(record))
                .await?
            {
                Swap::Written(record) => return Ok(Admission::Fresh(record)),
                Swap::Conflict | Swap::Deleted => continue,
            }
        }
    }

    /// Records the outcome of a deprovision: 200/410 forget the instance (and its bindings).
    ///
    /// # Errors
    /// A store failure.
    pub async fn finish_deprovision(
        &self,
        admission: &Admission<InstanceRecord>,
        outcome: &Outcome,
    ) -> Result<Option<InstanceRecord>, RoutingError> {
        self.change_instance(&admission.record().instance_id, |current| {
            finish_delete(current, admission, outcome, OperationKind::Deprovision)
        })
        .await
    }

    /// Records what `last_operation` said about an instance's operation in flight.
    ///
    /// # Errors
    /// A store failure.
    pub async fn observe_instance(&self, instance_id: &str, polled: Polled) -> Result<(), RoutingError> {
        let orphaned = std::sync::atomic::AtomicBool::new(false);
        self.change_instance(instance_id, |current| {
            let Some(op) = current.operation.as_ref().filter(|o| o.phase == Phase::Accepted) else {
                return Change::Keep;
            };
            let mut record = current.clone();
            record.operation = None;
            match (op.kind, polled) {
                (_, Polled::InProgress) => Change::Keep,
                (OperationKind::Deprovision, Polled::Succeeded | Polled::Gone) => Change::Delete,
                (OperationKind::Provision, Polled::Succeeded) => {
                    record.state = ResourceState::Ready;
                    Change::Put(record)
                }
                (OperationKind::Provision, Polled::Failed) => {
                    record.state = orphan("asynchronous provision failed");
                    orphaned.store(true, std::sync::atomic::Ordering::Relaxed);
                    Change::Put(record)
                }
                (OperationKind::Update, Polled::Succeeded) => {
                    if let Some((plan_id, upstream_plan_id)) = op.plan_change.clone() {
                        record.plan_id = plan_id;
                        record.upstream_plan_id = upstream_plan_id;
                    }
                    Change::Put(record)
                }
                (OperationKind::Update | OperationKind::Deprovision, Polled::Failed) => Change::Put(record),
                _ => Change::Keep,
            }
        })
        .await?;
        if orphaned.load(std::sync::atomic::Ordering::Relaxed) {
            self.orphaned.notify_one();
        }
        Ok(())
    }

    // === bind ===

    /// Admits a bind on a visible, idle instance: records the intent for a new binding, admits an
    /// identical retry, or refuses (404 no instance, 409 conflict, 422 operation in flight).
    ///
    /// # Errors
    /// [`RoutingError::NotFound`], [`RoutingError::Conflict`], [`RoutingError::Concurrency`], or a
    /// store failure.
    pub async fn begin_bind(&self, new: &NewBinding) -> Result<Admission<BindingRecord>, RoutingError> {
        let (instance_id, binding_id) = (&new.instance_id, &new.binding_id);
        loop {
            let Some(instance) = self.instance_for(instance_id, &new.platform).await? else {
                return Err(RoutingError::NotFound(format!(
                    "instance {instance_id} does not exist"
                )));
            };
            if instance.state != ResourceState::Ready || instance.operation.is_some() {
                return Err(RoutingError::Concurrency(format!(
                    "instance {instance_id} is not ready for binding (an operation is in progress)"
                )));
            }
            let Some(current) = self.store.binding(binding_id).await? else {
                let now = now_ms();
                let record = BindingRecord {
                    binding_id: binding_id.clone(),
                    instance_id: instance_id.clone(),
                    platform: new.platform.clone(),
                    broker: instance.broker.clone(),
                    service_id: instance.service_id.clone(),
                    plan_id: instance.plan_id.clone(),
                    upstream_service_id: instance.upstream_service_id.clone(),
                    upstream_plan_id: instance.upstream_plan_id.clone(),
                    fingerprint: new.fingerprint.clone(),
                    state: ResourceState::Creating,
                    operation: Some(operation(
                        OperationKind::Bind,
                        &new.fingerprint,
                        None,
                        &self.replica,
                    )),
                    created_ms: now,
                    updated_ms: now,
                    version: 0,
                };
                match self
                    .store
                    .swap_binding(binding_id, Expect::Absent, Some(record))
                    .await?
                {
                    Swap::Written(record) => return Ok(Admission::Fresh(record)),
                    Swap::Conflict | Swap::Deleted => continue,
                }
            };
            if current.platform != new.platform || current.instance_id != *instance_id {
                return Err(RoutingError::Conflict(format!(
                    "binding {binding_id} already exists"
                )));
            }
            if matches!(current.state, ResourceState::Orphaned(_)) {
                return Err(RoutingError::Concurrency(format!(
                    "a failed bind of binding {binding_id} is being cleaned up; retry shortly"
                )));
            }
            if current.fingerprint != new.fingerprint {
                return Err(RoutingError::Conflict(format!(
                    "binding {binding_id} already exists with different attributes"
                )));
            }
            return match current.operation.as_ref().map(|o| (o.kind, o.phase)) {
                None | Some((OperationKind::Bind, Phase::Accepted)) => Ok(Admission::Retry(current)),
                Some((OperationKind::Bind, Phase::Sent)) => Err(RoutingError::Concurrency(format!(
                    "a bind of binding {binding_id} is in progress; retry shortly"
                ))),
                Some((kind, _)) => Err(RoutingError::Concurrency(format!(
                    "binding {binding_id} has an {} in progress",
                    kind.as_str()
                ))),
            };
        }
    }

    /// Records the outcome of a bind (a failed bind the gateway started is orphan-mitigated).
    ///
    /// # Errors
    /// A store failure.
    pub async fn finish_bind(
        &self,
        admission: &Admission<BindingRecord>,
        outcome: &Outcome,
    ) -> Result<Option<BindingRecord>, RoutingError> {
        let (admitted, fresh) = match admission {
            Admission::Fresh(r) => (r, true),
            Admission::Retry(r) => (r, false),
        };
        let ours = |current: &BindingRecord| {
            fresh && same_operation(current.operation.as_ref(), admitted.operation.as_ref())
        };
        let result = self
            .change_binding(&admitted.binding_id, |current| match outcome {
                Outcome::Done if current.state == ResourceState::Creating => Change::Put(BindingRecord {
                    state: ResourceState::Ready,
                    operation: None,
                    ..current.clone()
                }),
                Outcome::Accepted { operation } if current.state == ResourceState::Creating => {
                    let mut record = current.clone();
                    let op = record.operation.get_or_insert_with(|| {
                        self::operation(OperationKind::Bind, &current.fingerprint, None, &self.replica)
                    });
                    op.phase = Phase::Accepted;
                    if operation.is_some() {
                        op.upstream_operation.clone_from(operation);
                    }
                    Change::Put(record)
                }
                Outcome::Rejected | Outcome::NotSent | Outcome::Gone if ours(current) => Change::Delete,
                Outcome::Failed { reason } if ours(current) => Change::Put(BindingRecord {
                    state: orphan(format!("bind failed: {reason}")),
                    operation: None,
                    ..current.clone()
                }),
                _ => Change::Keep,
            })
            .await?;
        if matches!(outcome, Outcome::Failed { .. }) && fresh {
            self.orphaned.notify_one();
        }
        Ok(result)
    }

    // === unbind ===

    /// Admits an unbind of a visible binding (410 otherwise).
    ///
    /// # Errors
    /// [`RoutingError::Gone`], [`RoutingError::Concurrency`], or a store failure.
    pub async fn begin_unbind(
        &self,
        instance_id: &str,
        binding_id: &str,
        platform: &str,
        fingerprint: &str,
    ) -> Result<Admission<BindingRecord>, RoutingError> {
        loop {
            let Some(current) = self.binding_for(instance_id, binding_id, platform).await? else {
                return Err(RoutingError::Gone(format!("binding {binding_id} does not exist")));
            };
            match &current.operation {
                Some(op) if op.kind == OperationKind::Unbind => return Ok(Admission::Retry(current)),
                Some(op) => {
                    return Err(RoutingError::Concurrency(format!(
                        "binding {binding_id} has a {} in progress",
                        op.kind.as_str()
                    )));
                }
                None => {}
            }
            let mut record = current.clone();
            record.operation = Some(operation(OperationKind::Unbind, fingerprint, None, &self.replica));
            record.updated_ms = now_ms();
            match self
                .store
                .swap_binding(binding_id, Expect::Version(current.version), Some(record))
                .await?
            {
                Swap::Written(record) => return Ok(Admission::Fresh(record)),
                Swap::Conflict | Swap::Deleted => continue,
            }
        }
    }

    /// Records the outcome of an unbind: 200/410 forget the binding.
    ///
    /// # Errors
    /// A store failure.
    pub async fn finish_unbind(
        &self,
        admission: &Admission<BindingRecord>,
        outcome: &Outcome,
    ) -> Result<Option<BindingRecord>, RoutingError> {
        self.change_binding(&admission.record().binding_id, |current| {
            finish_delete(current, admission, outcome, OperationKind::Unbind)
        })
        .await
    }

    /// Records what `last_operation` said about a binding's operation in flight.
    ///
    /// # Errors
    /// A store failure.
    pub async fn observe_binding(&self, binding_id: &str, polled: Polled) -> Result<(), RoutingError> {
        let orphaned = std::sync::atomic::AtomicBool::new(false);
        self.change_binding(binding_id, |current| {
            let Some(op) = current.operation.as_ref().filter(|o| o.phase == Phase::Accepted) else {
                return Change::Keep;
            };
            let mut record = current.clone();
            record.operation = None;
            match (op.kind, polled) {
                (_, Polled::InProgress) => Change::Keep,
                (OperationKind::Unbind, Polled::Succeeded | Polled::Gone) => Change::Delete,
                (OperationKind::Bind, Polled::Succeeded) => {
                    record.state = ResourceState::Ready;
                    Change::Put(record)
                }
                (OperationKind::Bind, Polled::Failed) => {
                    record.state = orphan("asynchronous bind failed");
                    orphaned.store(true, std::sync::atomic::Ordering::Relaxed);
                    Change::Put(record)
                }
                (OperationKind::Unbind, Polled::Failed) => Change::Put(record),
                _ => Change::Keep,
            }
        })
        .await?;
        if orphaned.load(std::sync::atomic::Ordering::Relaxed) {
            self.orphaned.notify_one();
        }
        Ok(())
    }

    // === recovery ===

    /// Resolves the write-ahead intents a crash left, those of replicas no longer alive (this
    /// process's earlier lives included): a provision or bind whose outcome was never recorded is
    /// orphan-mitigated (the platform was never told it exists); an update, deprovision or unbind
    /// simply returns to idle (the platform got no answer and retries). Call before serving, and
    /// periodically when replicas share the store. Returns how many intents were resolved.
    ///
    /// # Errors
    /// A store failure.
    pub async fn recover(&self) -> Result<usize, RoutingError> {
        let now = now_ms();
        let alive = self
            .store
            .heartbeat(&self.replica, now, now.saturating_sub(REPLICA_TIMEOUT_MS))
            .await?;
        let stale_before = now.saturating_sub(self.stale_after_ms);
        let dead = |op: &Operation| {
            op.started_ms < stale_before
                || op
                    .replica
                    .as_deref()
                    .is_none_or(|r| !alive.iter().any(|a| a == r))
        };
        let pending = self.store.pending().await?;
        let resolved = std::sync::atomic::AtomicUsize::new(0);
        for record in &pending {
            match record {
                RecordRef::Instance(id) => {
                    self.change_instance(id, |current| {
                        let Some(op) = current
                            .operation
                            .as_ref()
                            .filter(|o| o.phase == Phase::Sent && dead(o))
                        else {
                            return Change::Keep;
                        };
                        resolved.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let mut record = current.clone();
                        record.operation = None;
                        if op.kind == OperationKind::Provision {
                            record.state =
                                orphan("the gateway stopped before the provision's outcome was recorded");
                        }
                        Change::Put(record)
                    })
                    .await?;
                }
                RecordRef::Binding(id) => {
                    self.change_binding(id, |current| {
                        let Some(op) = current
                            .operation
                            .as_ref()
                            .filter(|o| o.phase == Phase::Sent && dead(o))
                        else {
                            return Change::Keep;
                        };
                        resolved.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let mut record = current.clone();
                        record.operation = None;
                        if op.kind == OperationKind::Bind {
                            record.state =
                                orphan("the gateway stopped before the bind's outcome was recorded");
                        }
                        Change::Put(record)
                    })
                    .await?;
                }
            }
        }
        let resolved = resolved.load(std::sync::atomic::Ordering::Relaxed);
        if resolved > 0 {
            info!(
                intents = resolved,
                "Recovered write-ahead intents left by the last run."
            );
            self.orphaned.notify_one();
        }
        Ok(resolved)
    }

    // === compare-and-swap helpers ===

    /// Applies `decide` to the current instance record until the write lands. Returns the record as
    /// written (`None` when deleted, kept as is, or absent).
    async fn change_instance(
        &self,
        instance_id: &str,
        decide: impl Fn(&InstanceRecord) -> Change<InstanceRecord>,
    ) -> Result<Option<InstanceRecord>, RoutingError> {
        loop {
            let Some(current) = self.store.instance(instance_id).await? else {
                return Ok(None);
            };
            let (expect, record) = match decide(&current) {
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
        decide: impl Fn(&BindingRecord) -> Change<BindingRecord>,
    ) -> Result<Option<BindingRecord>, RoutingError> {
        loop {
            let Some(current) = self.store.binding(binding_id).await? else {
                return Ok(None);
            };
            let (expect, record) = match decide(&current) {
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

    // === operators ===

    /// Records an instance that was created directly at its upstream broker (before the gateway
    /// existed), ready and with no operation in flight, so that `new.platform` manages it through
    /// the gateway from now on. Adopting the same instance again changes nothing.
    ///
    /// # Errors
    /// [`RoutingError::Conflict`] when the id is recorded with another owner, broker or upstream
    /// ids; a store failure.
    pub async fn adopt(&self, new: &NewInstance) -> Result<Adopted, RoutingError> {
        loop {
            if let Some(current) = self.store.instance(&new.instance_id).await? {
                let same = current.platform == new.platform
                    && current.broker == new.broker
                    && current.upstream_service_id == new.upstream_service_id
                    && current.upstream_plan_id == new.upstream_plan_id;
                return if same {
                    Ok(Adopted::Existing(current))
                } else {
                    Err(RoutingError::Conflict(format!(
                        "instance {} is already recorded for platform {} on broker {}",
                        new.instance_id, current.platform, current.broker
                    )))
                };
            }
            let now = now_ms();
            let record = InstanceRecord {
                instance_id: new.instance_id.clone(),
                platform: new.platform.clone(),
                broker: new.broker.clone(),
                service_id: new.service_id.clone(),
                plan_id: new.plan_id.clone(),
                upstream_service_id: new.upstream_service_id.clone(),
                upstream_plan_id: new.upstream_plan_id.clone(),
                fingerprint: new.fingerprint.clone(),
                context: new.context.clone(),
                state: ResourceState::Ready,
                operation: None,
                created_ms: now,
                updated_ms: now,
                version: 0,
            };
            match self
                .store
                .swap_instance(&new.instance_id, Expect::Absent, Some(record))
                .await?
            {
                Swap::Written(record) => return Ok(Adopted::Created(record)),
                Swap::Conflict | Swap::Deleted => continue,
            }
        }
    }

    /// Removes an instance and its bindings from the registry whatever their state (stuck in an
    /// operation, orphaned and failing mitigation): the gateway forgets them, nothing is sent
    /// upstream. Returns what was removed, `None` when there was no such instance.
    ///
    /// # Errors
    /// A store failure.
    pub async fn abandon_instance(
        &self,
        instance_id: &str,
    ) -> Result<Option<(InstanceRecord, Vec<BindingRecord>)>, RoutingError> {
        loop {
            let Some(current) = self.store.instance(instance_id).await? else {
                return Ok(None);
            };
            let bindings = self.store.bindings_of(instance_id).await?;
            match self
                .store
                .swap_instance(instance_id, Expect::Version(current.version), None)
                .await?
            {
                Swap::Deleted => return Ok(Some((current, bindings))),
                Swap::Conflict | Swap::Written(_) => continue,
            }
        }
    }

    /// As [`Registry::abandon_instance`], for one binding.
    ///
    /// # Errors
    /// A store failure.
    pub async fn abandon_binding(&self, binding_id: &str) -> Result<Option<BindingRecord>, RoutingError> {
        loop {
            let Some(current) = self.store.binding(binding_id).await? else {
                return Ok(None);
            };
            match self
                .store
                .swap_binding(binding_id, Expect::Version(current.version), None)
                .await?
            {
                Swap::Deleted => return Ok(Some(current)),
                Swap::Conflict | Swap::Written(_) => continue,
            }
        }
    }

    /// Deletes an orphan once the upstream confirmed it gone (called by the mitigation worker).
    ///
    /// # Errors
    /// A store failure.
    pub async fn forget_orphan(&self, record: &RecordRef) -> Result<(), RoutingError> {
        match record {
            RecordRef::Instance(id) => {
                self.change_instance(id, |c| {
                    if matches!(c.state, ResourceState::Orphaned(_)) {
                        Change::Delete
                    } else {
                        Change::Keep
                    }
                })
                .await?;
            }
            RecordRef::Binding(id) => {
                self.change_binding(id, |c| {
                    if matches!(c.state, ResourceState::Orphaned(_)) {
                        Change::Delete
                    } else {
                        Change::Keep
                    }
                })
                .await?;
            }
        }
        Ok(())
    }

    /// Records a mitigation attempt's progress on an orphan.
    ///
    /// # Errors
    /// A store failure.
    pub async fn reschedule_orphan(
        &self,
        record: &RecordRef,
        mitigation: Mitigation,
    ) -> Result<(), RoutingError> {
        let apply = |state: &ResourceState| matches!(state, ResourceState::Orphaned(_));
        match record {
            RecordRef::Instance(id) => {
                self.change_instance(id, |c| {
                    if apply(&c.state) {
                        Change::Put(InstanceRecord {
                            state: ResourceState::Orphaned(mitigation.clone()),
                            ..c.clone()
                        })
                    } else {
                        Change::Keep
                    }
                })
                .await?;
            }
            RecordRef::Binding(id) => {
                self.change_binding(id, |c| {
                    if apply(&c.state) {
                        Change::Put(BindingRecord {
                            state: ResourceState::Orphaned(mitigation.clone()),
                            ..c.clone()
                        })
                    } else {
                        Change::Keep
                    }
                })
                .await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
