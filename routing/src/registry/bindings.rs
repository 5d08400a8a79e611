//! The binding calls' two steps: `begin_*` (checks and the write-ahead intent) and `finish_*`
//! (the upstream's outcome) of bind and unbind, and what the binding's `last_operation` says.

use super::*;

impl Registry {
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
                let (keys, limits) = quota_limits(&new.quotas);
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
                    quotas: keys,
                };
                let outcome = self.store.create_binding(record, &limits).await?;
                match created(outcome, &new.quotas)? {
                    Some(record) => return Ok(Admission::Fresh(record)),
                    None => continue,
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
            .change_binding(&admitted.binding_id, Some(admitted), |current| match outcome {
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
        self.change_binding(
            &admission.record().binding_id,
            Some(admission.record()),
            |current| finish_delete(current, admission, outcome, OperationKind::Unbind),
        )
        .await
    }

    /// Records what `last_operation` said about a binding's operation in flight.
    ///
    /// # Errors
    /// A store failure.
    pub async fn observe_binding(&self, binding_id: &str, polled: Polled) -> Result<(), RoutingError> {
        let orphaned = std::sync::atomic::AtomicBool::new(false);
        self.change_binding(binding_id, None, |current| {
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
}
