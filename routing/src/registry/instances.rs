//! The instance calls' two steps: `begin_*` (checks and the write-ahead intent) and `finish_*`
//! (the upstream's outcome) of provision, update and deprovision, and what `last_operation` says.

use super::*;

impl Registry {
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
                let (keys, limits) = quota_limits(&new.quotas);
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
                    quotas: keys,
                };
                let outcome = self.store.create_instance(record, &limits).await?;
                match created(outcome, &new.quotas)? {
                    Some(record) => return Ok(Admission::Fresh(record)),
                    None => continue,
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
            .change_instance(&admitted.instance_id, Some(admitted), |current| match outcome {
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

    /// Moves a fresh provision's intent to another broker (failover): the provision was not sent
    /// to the one recorded (nothing reached it), and goes to `broker` with these upstream ids
    /// instead. The intent stays pending, so a crash from here resolves it on the new broker.
    ///
    /// # Errors
    /// [`RoutingError::Concurrency`] when the intent is no longer this call's (nothing moved), or a
    /// store failure.
    pub async fn move_provision(
        &self,
        admission: &Admission<InstanceRecord>,
        broker: &str,
        upstream_service_id: &str,
        upstream_plan_id: &str,
    ) -> Result<Admission<InstanceRecord>, RoutingError> {
        let Admission::Fresh(admitted) = admission else {
            return Err(RoutingError::Concurrency(
                "a retried provision stays on the broker that has it".to_owned(),
            ));
        };
        let moved = self
            .change_instance(&admitted.instance_id, Some(admitted), |current| {
                let ours = current.state == ResourceState::Creating
                    && same_operation(current.operation.as_ref(), admitted.operation.as_ref());
                if !ours {
                    return Change::Keep;
                }
                Change::Put(InstanceRecord {
                    broker: broker.to_owned(),
                    upstream_service_id: upstream_service_id.to_owned(),
                    upstream_plan_id: upstream_plan_id.to_owned(),
                    ..current.clone()
                })
            })
            .await?;
        match moved {
            Some(record) if record.broker == broker => Ok(Admission::Fresh(record)),
            _ => Err(RoutingError::Concurrency(format!(
                "instance {} changed while its provision failed over; retry shortly",
                admitted.instance_id
            ))),
        }
    }

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
        self.change_instance(&admitted.instance_id, Some(admitted), |current| {
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
        self.change_instance(
            &admission.record().instance_id,
            Some(admission.record()),
            |current| finish_delete(current, admission, outcome, OperationKind::Deprovision),
        )
        .await
    }

    /// Records what `last_operation` said about an instance's operation in flight.
    ///
    /// # Errors
    /// A store failure.
    pub async fn observe_instance(&self, instance_id: &str, polled: Polled) -> Result<(), RoutingError> {
        let orphaned = std::sync::atomic::AtomicBool::new(false);
        self.change_instance(instance_id, None, |current| {
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
}
