//! The gateway's durable state behind one trait, so backends can be swapped.
//!
//! The store keeps the ownership registry (every instance and binding the gateway routes, with its
//! owner, broker, upstream ids, state and operation in flight) and each broker's last good catalog
//! (so a restart during an upstream outage still serves that broker's services).
//!
//! Records change only by compare-and-swap on their version, so two requests racing on one id
//! cannot both win; a write is durable when the call returns (write-ahead intents rely on it).
//! Two indexes are kept in the same transaction as the records: orphans (the durable queue of the
//! mitigation worker) and pending intents (what recovery resolves after a crash).
//!
//! The store also keeps the audit log (append-only, numbered by the store; see [`crate::audit`])
//! and answers the operators' inventory pages ([`RecordFilter`], in id order after a cursor).
//!
//! Backends (`store.kind`), with the same semantics (one test suite runs against both):
//! - [`EmbeddedStore`] (`embedded`, the default): one folder on local disk (fjall), zero setup, one gateway process.
//! - [`PostgresStore`] (`postgres`): a PostgreSQL database shared by several gateway replicas;
//!   compare-and-swap, cascades and orphan claims are enforced by the database, and the schema is
//!   migrated on start-up.

mod embedded;
mod indexed;
mod inventory;
mod postgres;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
pub(crate) mod tests;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use osb_config::StoreSettings;

pub use embedded::EmbeddedStore;
pub use inventory::{MAX_PAGE, RecordFilter, each_record};
pub use postgres::PostgresStore;

/// Live (not orphaned) instances of one gateway plan, with where they live ([`Store::live_plans`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PlanCount {
    pub plan_id: String,
    pub service_id: String,
    pub broker: String,
    pub upstream_service_id: String,
    pub instances: u64,
}

/// Counts live instances by (plan, service, broker, upstream service), one record at a time.
#[derive(Debug, Default)]
pub(crate) struct PlanCounter(std::collections::HashMap<(String, String, String, String), u64>);

impl PlanCounter {
    pub(crate) fn add(&mut self, record: &InstanceRecord) {
        if matches!(record.state, crate::record::ResourceState::Orphaned(_)) {
            return;
        }
        let key = (
            record.plan_id.clone(),
            record.service_id.clone(),
            record.broker.clone(),
            record.upstream_service_id.clone(),
        );
        *self.0.entry(key).or_default() += 1;
    }

    pub(crate) fn finish(self) -> Vec<PlanCount> {
        let mut counts: Vec<PlanCount> = self
            .0
            .into_iter()
            .map(
                |((plan_id, service_id, broker, upstream_service_id), instances)| PlanCount {
                    plan_id,
                    service_id,
                    broker,
                    upstream_service_id,
                    instances,
                },
            )
            .collect();
        counts.sort();
        counts
    }
}

/// Records per broker name ([`Store::counts`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordCounts {
    pub instances: BTreeMap<String, u64>,
    pub bindings: BTreeMap<String, u64>,
}

use std::collections::BTreeMap;

use crate::RoutingError;
use crate::audit::{AuditQuery, AuditRecord};
use crate::record::{BindingRecord, InstanceRecord};
use crate::upstream::Validators;

/// A replica silent for this long is forgotten by heartbeats (its row or entry removed). Far
/// longer than any liveness window: only keeps the list of replicas from growing forever.
const FORGET_REPLICA_AFTER_MS: u64 = 60 * 60 * 1000;

/// A broker's catalog as last fetched: the raw body and how to ask whether it changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCatalog {
    pub body: Bytes,
    pub validators: Validators,
    /// When it was fetched, in milliseconds since the Unix epoch.
    pub fetched_at_ms: u64,
}

/// What a compare-and-swap write expects to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// No record under that id.
    Absent,
    /// The record at this version.
    Version(u64),
}

/// The result of a compare-and-swap write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Swap<R> {
    /// Written; the record as stored (with its new version).
    Written(R),
    /// Deleted.
    Deleted,
    /// Someone else changed the record first: read again and decide again.
    Conflict,
}

/// The result of creating a record within its quotas ([`Store::create_instance`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created<R> {
    /// Written; the record as stored.
    Written(R),
    /// A record under that id exists already: read it and decide again.
    Conflict,
    /// The quota count `key` has `usage` live records, not below its `limit`: nothing was written.
    Full { key: String, usage: u64, limit: u64 },
}

/// A record in one of the store's indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordRef {
    Instance(String),
    Binding(String),
}

/// A page of an inventory listing read under a budget ([`Store::scan_instances`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned<R> {
    pub items: Vec<R>,
    /// The id the next page starts after: the last record of a full page, or the last one examined
    /// when the budget ran out. `None`: nothing follows.
    pub resume: Option<String>,
}

impl<R> Scanned<R> {
    /// A page read whole: it resumes after its last record when it is full.
    pub fn full_page(items: Vec<R>, limit: usize, id: impl Fn(&R) -> &String) -> Scanned<R> {
        let resume = (items.len() >= limit.clamp(1, MAX_PAGE))
            .then(|| items.last().map(|r| id(r).clone()))
            .flatten();
        Scanned { items, resume }
    }
}

/// Durable state of the gateway. Writes are durable when the call returns.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The instance record of `instance_id`.
    async fn instance(&self, instance_id: &str) -> Result<Option<InstanceRecord>, RoutingError>;

    /// Writes `record` (or deletes the instance, and with it its bindings, for `None`) if the
    /// stored record matches `expect`. The written record's version is the old one plus one.
    async fn swap_instance(
        &self,
        instance_id: &str,
        expect: Expect,
        record: Option<InstanceRecord>,
    ) -> Result<Swap<InstanceRecord>, RoutingError>;

    /// The binding record of `binding_id`.
    async fn binding(&self, binding_id: &str) -> Result<Option<BindingRecord>, RoutingError>;

    /// As [`Store::swap_instance`], for a binding.
    async fn swap_binding(
        &self,
        binding_id: &str,
        expect: Expect,
        record: Option<BindingRecord>,
    ) -> Result<Swap<BindingRecord>, RoutingError>;

    /// The bindings of one instance.
    async fn bindings_of(&self, instance_id: &str) -> Result<Vec<BindingRecord>, RoutingError>;

    /// Writes `record` as a new instance (none under its id) if every quota count it joins
    /// (`record.quotas`, with the limits `limits` in the same order) has fewer live records than
    /// its limit. Counting and writing are one atomic step: replicas sharing the store cannot both
    /// take the last place of a count. A record is live while it exists and is not orphaned.
    async fn create_instance(
        &self,
        record: InstanceRecord,
        limits: &[u64],
    ) -> Result<Created<InstanceRecord>, RoutingError>;

    /// As [`Store::create_instance`], for a binding.
    async fn create_binding(
        &self,
        record: BindingRecord,
        limits: &[u64],
    ) -> Result<Created<BindingRecord>, RoutingError>;

    /// How many live records (instances and bindings) each quota count `keys` has, in order.
    async fn quota_usage(&self, keys: &[String]) -> Result<Vec<u64>, RoutingError>;

    /// Every quota count with live records, by key.
    async fn quota_counts(&self) -> Result<BTreeMap<String, u64>, RoutingError>;

    /// Every instance record (admin, tests).
    async fn instances(&self) -> Result<Vec<InstanceRecord>, RoutingError>;

    /// Every binding record (admin, tests).
    async fn bindings(&self) -> Result<Vec<BindingRecord>, RoutingError>;

    /// How many instance and binding records each broker has (the `/metrics` gauges). The
    /// embedded store keeps the counts as records change; this default counts every record.
    async fn counts(&self) -> Result<RecordCounts, RoutingError> {
        let mut counts = RecordCounts::default();
        for record in self.instances().await? {
            *counts.instances.entry(record.broker).or_default() += 1;
        }
        for record in self.bindings().await? {
            *counts.bindings.entry(record.broker).or_default() += 1;
        }
        Ok(counts)
    }

    /// Live (not orphaned) instances per plan, service, broker and upstream service, sorted: what
    /// the catalog guard needs to know of the plans a catalog change would drop. Counted without
    /// holding every record in memory at once (the backends override this default, which does).
    async fn live_plans(&self) -> Result<Vec<PlanCount>, RoutingError> {
        let mut counter = PlanCounter::default();
        for record in self.instances().await? {
            counter.add(&record);
        }
        Ok(counter.finish())
    }

    /// A page of instance records: those `filter` selects, in id order, after the id `after`, at
    /// most `limit` (at most [`MAX_PAGE`]).
    async fn list_instances(
        &self,
        filter: &RecordFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<InstanceRecord>, RoutingError> {
        Ok(inventory::page(self.instances().await?, filter, after, limit))
    }

    /// As [`Store::list_instances`], examining at most `budget` records past `after`, so that a
    /// filter selecting few records answers in bounded time (the console): `resume` says where the
    /// next page starts when the page filled or the budget ran out. This default (and PostgreSQL,
    /// which filters in SQL) reads a whole page.
    async fn scan_instances(
        &self,
        filter: &RecordFilter,
        after: Option<&str>,
        limit: usize,
        budget: usize,
    ) -> Result<Scanned<InstanceRecord>, RoutingError> {
        let _ = budget;
        let items = self.list_instances(filter, after, limit).await?;
        Ok(Scanned::full_page(items, limit, |r| &r.instance_id))
    }

    /// As [`Store::scan_instances`], for bindings.
    async fn scan_bindings(
        &self,
        filter: &RecordFilter,
        after: Option<&str>,
        limit: usize,
        budget: usize,
    ) -> Result<Scanned<BindingRecord>, RoutingError> {
        let _ = budget;
        let items = self.list_bindings(filter, after, limit).await?;
        Ok(Scanned::full_page(items, limit, |r| &r.binding_id))
    }

    /// As [`Store::list_instances`], for bindings.
    async fn list_bindings(
        &self,
        filter: &RecordFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<BindingRecord>, RoutingError> {
        Ok(inventory::page(self.bindings().await?, filter, after, limit))
    }

    /// Appends `record` to the audit log; returns the `seq` it was given (larger than any before).
    async fn append_audit(&self, record: AuditRecord) -> Result<u64, RoutingError>;

    /// Appends `records` in this order; their `seq`s, in the same order. The embedded store writes
    /// them in one transaction; this default appends them one after the other.
    async fn append_audits(&self, records: Vec<AuditRecord>) -> Result<Vec<u64>, RoutingError> {
        let mut seqs = Vec::with_capacity(records.len());
        for record in records {
            seqs.push(self.append_audit(record).await?);
        }
        Ok(seqs)
    }

    /// Removes the audit records numbered `through` and below (retention); returns how many.
    async fn prune_audit(&self, through: u64) -> Result<u64, RoutingError>;

    /// Audit records `query` selects, newest (largest `seq`) first.
    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, RoutingError>;

    /// Records being orphan-mitigated: the mitigation worker's durable queue.
    async fn orphans(&self) -> Result<Vec<RecordRef>, RoutingError>;

    /// Records with a write-ahead intent whose outcome was never recorded.
    async fn pending(&self) -> Result<Vec<RecordRef>, RoutingError>;

    /// Claims up to `limit` orphans for `owner` until `until_ms`: orphans nobody claimed, whose
    /// claim expired before `now_ms`, or that `owner` holds already (its claims are renewed, so its
    /// own retries are never held back). With several replicas on one store, one orphan is worked
    /// by one replica at a time. Bindings come first, then instances.
    async fn claim_orphans(
        &self,
        owner: &str,
        now_ms: u64,
        until_ms: u64,
        limit: usize,
    ) -> Result<Vec<RecordRef>, RoutingError>;

    /// Records that `replica` is alive at `now_ms`; returns every replica seen since `since_ms`
    /// (itself included). Intents of replicas not in that list are resolved by the living.
    async fn heartbeat(&self, replica: &str, now_ms: u64, since_ms: u64)
    -> Result<Vec<String>, RoutingError>;

    /// Answers when the backend can be used (readiness).
    async fn ping(&self) -> Result<(), RoutingError>;

    /// Waits (at most a few seconds) until no operation is running, so that once the last handle
    /// is dropped the backend is closed (the embedded file can be opened again at once).
    async fn quiesce(&self) {}

    /// The last good catalog saved for `broker`, if any.
    async fn load_catalog(&self, broker: &str) -> Result<Option<StoredCatalog>, RoutingError>;

    /// Replaces the saved catalog of `broker`.
    async fn save_catalog(&self, broker: &str, catalog: StoredCatalog) -> Result<(), RoutingError>;
}

/// Opens the store the settings describe.
///
/// # Errors
/// [`RoutingError::Store`] when it cannot be opened: the file is locked or unreadable, or the
/// database cannot be reached or migrated.
pub async fn open(settings: &StoreSettings) -> Result<Arc<dyn Store>, RoutingError> {
    match settings {
        StoreSettings::Embedded { path } => Ok(Arc::new(EmbeddedStore::open(path.clone()).await?)),
        StoreSettings::Postgres { url } => Ok(Arc::new(PostgresStore::open(url.expose()).await?)),
    }
}
