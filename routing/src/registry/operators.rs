//! What is done to records outside a platform's call: recovery of the intents a crash left,
//! operators adopting and abandoning resources, and the orphan queue the mitigation worker drains.

use tracing::info;

use super::*;

impl Registry {
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
        if let Ok(mut replicas) = self.replicas.lock() {
            replicas.clone_from(&alive);
        }
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
                    self.change_instance(id, None, |current| {
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
                    self.change_binding(id, None, |current| {
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
                // An operator's adoption is never refused by a quota; the recount after the next
                // policy load or start counts it.
                quotas: Vec::new(),
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
                self.change_instance(id, None, |c| {
                    if matches!(c.state, ResourceState::Orphaned(_)) {
                        Change::Delete
                    } else {
                        Change::Keep
                    }
                })
                .await?;
            }
            RecordRef::Binding(id) => {
                self.change_binding(id, None, |c| {
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
                self.change_instance(id, None, |c| {
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
                self.change_binding(id, None, |c| {
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
