//! The embedded store: one folder on local disk holding a fjall database ([`kv`]), durable on
//! commit, zero setup.
//!
//! Records live on disk only: a registry read is a fjall read served from its memtables and block
//! cache (a few µs, on the caller's thread), so memory stays flat however many instances there
//! are, and opening the store reads no record. What this process keeps in memory
//! ([`memory::Memory`]) is small and changes only after a commit succeeded: the orphan and pending
//! indexes and the records per broker, each also kept in a keyspace of its own and loaded on open.
//!
//! Scans (catalogs, inventory pages, exports) run on tokio's blocking pool; writes go to one
//! writer thread that **group-commits** ([`batch`]): it takes every write waiting, runs them one
//! after the other against one atomic write batch, commits once (one journal sync for the batch),
//! and only then answers each caller. A compare-and-swap is a read and a write in that one thread,
//! so concurrent writers never interleave. Records are stored in a compact binary form
//! ([`codec`]); the orphan, pending and instance→bindings indexes and the counts are updated in the
//! same batch. The folder is locked by the process that opened it: one gateway per store.
//!
//! The audit log is a keyspace of its own (seq → record as JSON), newest first. A store of an
//! earlier version (one redb file at the store's path) is moved into a folder on open
//! ([`migrate`]).
//!
//! Orphan claims and replica heartbeats live in memory only: they describe processes using the
//! store, and after a restart no earlier process can still be working or alive. Keeping them
//! (rather than answering "everything is mine") gives this store the same semantics as the shared
//! PostgreSQL store, so the same tests run against both.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

mod batch;
mod codec;
mod kv;
mod memory;
mod migrate;
mod read;
mod records;

use self::batch::{Job, Output, Tables, spawn_writer};
use self::kv::{Kv, Space, seq_key, seq_of};
use self::memory::{BINDING, Memory};
use super::inventory::{MAX_PAGE, RecordFilter};
use super::{
    Created, Expect, FORGET_REPLICA_AFTER_MS, PlanCount, RecordCounts, RecordRef, Scanned, Store,
    StoredCatalog, Swap,
};
use crate::RoutingError;
use crate::audit::{AuditQuery, AuditRecord};
use crate::record::{BindingRecord, InstanceRecord};
use crate::upstream::Validators;

#[derive(Serialize, Deserialize)]
struct CatalogMeta {
    etag: Option<String>,
    last_modified: Option<String>,
    fetched_at_ms: u64,
}

/// The fjall-backed store.
#[derive(Clone)]
pub struct EmbeddedStore {
    kv: Arc<Kv>,
    memory: Arc<RwLock<Memory>>,
    writes: std::sync::mpsc::Sender<Job>,
    path: PathBuf,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").field("path", &self.path).finish()
    }
}

fn store_error(context: &str, e: impl std::fmt::Display) -> RoutingError {
    RoutingError::Store(format!("{context}: {e}"))
}

impl EmbeddedStore {
    /// Opens (creating it and its parent folders if needed) the store folder at `path`; a store
    /// file of an earlier version found there is moved into a folder first ([`migrate`]).
    ///
    /// # Errors
    /// [`RoutingError::Store`] when the folder cannot be created, is locked by another process, or
    /// holds something else than a store.
    pub async fn open(path: PathBuf) -> Result<Self, RoutingError> {
        let opened = path.clone();
        let (kv, memory, audit_last) = tokio::task::spawn_blocking(move || {
            if let Some(parent) = opened.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .map_err(|e| store_error(&format!("create {}", parent.display()), e))?;
            }
            if migrate::migrate_earlier_file(&opened)? {
                tracing::info!(
                    path = %opened.display(),
                    kept = %migrate::backup_of(&opened).display(),
                    "moved a store file of an earlier version into a store folder"
                );
            }
            let kv = Kv::open(&opened)?;
            let (memory, audit_last) = read::load_memory(&kv)?;
            Ok::<_, RoutingError>((kv, memory, audit_last))
        })
        .await
        .map_err(|e| store_error("open task", e))??;
        let (kv, memory) = (Arc::new(kv), Arc::new(RwLock::new(memory)));
        let writes = spawn_writer(&kv, memory.clone(), audit_last)?;
        Ok(EmbeddedStore {
            kv,
            memory,
            writes,
            path,
        })
    }

    /// Runs `write` in the writer thread's next batch; returns once it is committed (and
    /// the memory updated with what it changed).
    async fn write<T: Send + 'static>(
        &self,
        write: impl FnOnce(&mut Tables<'_>) -> Result<T, RoutingError> + Send + 'static,
    ) -> Result<T, RoutingError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            run: Box::new(move |tables| write(tables).map(|t| Box::new(t) as Output)),
            reply,
        };
        self.writes
            .send(job)
            .map_err(|_| store_error("write", "the writer thread stopped"))?;
        let output = answer
            .await
            .map_err(|_| store_error("write", "the writer thread stopped"))??;
        output
            .downcast::<T>()
            .map(|t| *t)
            .map_err(|_| store_error("write", "unexpected result type"))
    }

    fn memory<T>(&self, read: impl FnOnce(&Memory) -> T) -> T {
        read(
            &self
                .memory
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Kv) -> Result<T, RoutingError> + Send + 'static,
    ) -> Result<T, RoutingError> {
        let kv = self.kv.clone();
        tokio::task::spawn_blocking(move || f(&kv))
            .await
            .map_err(|e| store_error("task", e))?
    }

    /// An inventory page of `table` ([`read::page`]), read on the blocking pool.
    async fn page<R: read::Paged>(
        &self,
        space: Space,
        filter: &RecordFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<R>, RoutingError> {
        let (filter, after) = (filter.clone(), after.map(str::to_owned));
        let limit = limit.clamp(1, MAX_PAGE);
        self.blocking(move |kv| read::page(kv, space, &filter, after.as_deref(), limit))
            .await
    }
}

impl EmbeddedStore {
    /// [`read::scan`] on the blocking pool.
    async fn scan<R: read::Paged>(
        &self,
        space: Space,
        filter: &RecordFilter,
        after: Option<&str>,
        limit: usize,
        budget: usize,
    ) -> Result<Scanned<R>, RoutingError> {
        let (filter, after) = (filter.clone(), after.map(str::to_owned));
        let limit = limit.clamp(1, MAX_PAGE);
        self.blocking(move |kv| read::scan(kv, space, &filter, after.as_deref(), limit, budget))
            .await
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn instance(&self, instance_id: &str) -> Result<Option<InstanceRecord>, RoutingError> {
        read::record(&self.kv, Space::Instances, instance_id)
    }

    async fn swap_instance(
        &self,
        instance_id: &str,
        expect: Expect,
        record: Option<InstanceRecord>,
    ) -> Result<Swap<InstanceRecord>, RoutingError> {
        let id = instance_id.to_owned();
        self.write(move |tables| records::swap_instance_in(tables, &id, expect, record))
            .await
    }

    async fn binding(&self, binding_id: &str) -> Result<Option<BindingRecord>, RoutingError> {
        read::record(&self.kv, Space::Bindings, binding_id)
    }

    async fn swap_binding(
        &self,
        binding_id: &str,
        expect: Expect,
        record: Option<BindingRecord>,
    ) -> Result<Swap<BindingRecord>, RoutingError> {
        let id = binding_id.to_owned();
        self.write(move |tables| records::swap_binding_in(tables, &id, expect, record))
            .await
    }

    async fn create_instance(
        &self,
        record: InstanceRecord,
        limits: &[u64],
    ) -> Result<Created<InstanceRecord>, RoutingError> {
        let limits = limits.to_vec();
        self.write(move |tables| records::create_in(tables, record, &limits, records::swap_instance_in))
            .await
    }

    async fn create_binding(
        &self,
        record: BindingRecord,
        limits: &[u64],
    ) -> Result<Created<BindingRecord>, RoutingError> {
        let limits = limits.to_vec();
        self.write(move |tables| records::create_in(tables, record, &limits, records::swap_binding_in))
            .await
    }

    async fn quota_usage(&self, keys: &[String]) -> Result<Vec<u64>, RoutingError> {
        Ok(self.memory(|m| {
            keys.iter()
                .map(|k| m.quotas.get(k).copied().unwrap_or(0))
                .collect()
        }))
    }

    async fn quota_counts(&self) -> Result<BTreeMap<String, u64>, RoutingError> {
        Ok(self.memory(|m| m.quotas.clone()))
    }

    async fn bindings_of(&self, instance_id: &str) -> Result<Vec<BindingRecord>, RoutingError> {
        read::bindings_of(&self.kv, instance_id)
    }

    async fn instances(&self) -> Result<Vec<InstanceRecord>, RoutingError> {
        self.blocking(|kv| read::all_records(kv, Space::Instances)).await
    }

    async fn bindings(&self) -> Result<Vec<BindingRecord>, RoutingError> {
        self.blocking(|kv| read::all_records(kv, Space::Bindings)).await
    }

    async fn counts(&self) -> Result<RecordCounts, RoutingError> {
        Ok(self.memory(|m| m.counts.clone()))
    }

    async fn live_plans(&self) -> Result<Vec<PlanCount>, RoutingError> {
        self.blocking(read::live_plans).await
    }

    async fn list_instances(
        &self,
        filter: &RecordFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<InstanceRecord>, RoutingError> {
        self.page(Space::Instances, filter, after, limit).await
    }

    async fn list_bindings(
        &self,
        filter: &RecordFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<BindingRecord>, RoutingError> {
        self.page(Space::Bindings, filter, after, limit).await
    }

    async fn scan_instances(
        &self,
        filter: &RecordFilter,
        after: Option<&str>,
        limit: usize,
        budget: usize,
    ) -> Result<Scanned<InstanceRecord>, RoutingError> {
        self.scan(Space::Instances, filter, after, limit, budget).await
    }

    async fn scan_bindings(
        &self,
        filter: &RecordFilter,
        after: Option<&str>,
        limit: usize,
        budget: usize,
    ) -> Result<Scanned<BindingRecord>, RoutingError> {
        self.scan(Space::Bindings, filter, after, limit, budget).await
    }

    async fn orphans(&self) -> Result<Vec<RecordRef>, RoutingError> {
        Ok(self.memory(|m| Memory::refs(&m.orphans)))
    }

    async fn pending(&self) -> Result<Vec<RecordRef>, RoutingError> {
        Ok(self.memory(|m| Memory::refs(&m.pending)))
    }

    async fn claim_orphans(
        &self,
        owner: &str,
        now_ms: u64,
        until_ms: u64,
        limit: usize,
    ) -> Result<Vec<RecordRef>, RoutingError> {
        let mut memory = self
            .memory
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let memory = &mut *memory;
        // As the PostgreSQL store orders them: bindings first, then instances; in each, the
        // owner's own claims, then the least recently claimed.
        let mut eligible: Vec<(bool, bool, u64, &(u8, String))> = memory
            .orphans
            .iter()
            .filter_map(|key| match memory.claims.get(key) {
                None => Some((key.0 != BINDING, true, 0, key)),
                Some((by, until)) if by == owner || *until < now_ms => {
                    Some((key.0 != BINDING, by != owner, *until, key))
                }
                Some(_) => None,
            })
            .collect();
        eligible.sort();
        let claimed: BTreeSet<(u8, String)> = eligible
            .into_iter()
            .take(limit)
            .map(|(_, _, _, key)| key.clone())
            .collect();
        for key in &claimed {
            memory.claims.insert(key.clone(), (owner.to_owned(), until_ms));
        }
        Ok(Memory::refs(&claimed))
    }

    async fn heartbeat(
        &self,
        replica: &str,
        now_ms: u64,
        since_ms: u64,
    ) -> Result<Vec<String>, RoutingError> {
        let mut memory = self
            .memory
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let seen = memory.replicas.entry(replica.to_owned()).or_insert(now_ms);
        *seen = (*seen).max(now_ms);
        let forget_before = since_ms.saturating_sub(FORGET_REPLICA_AFTER_MS);
        memory
            .replicas
            .retain(|id, seen| id == replica || *seen >= forget_before);
        let mut alive: Vec<String> = memory
            .replicas
            .iter()
            .filter(|(id, seen)| *id == replica || **seen >= since_ms)
            .map(|(id, _)| id.clone())
            .collect();
        alive.sort();
        Ok(alive)
    }

    async fn ping(&self) -> Result<(), RoutingError> {
        if self.kv.failed() {
            return Err(RoutingError::Store(
                "a write to the store's journal failed: it takes no more writes until the gateway \
                 restarts"
                    .to_owned(),
            ));
        }
        Ok(())
    }

    async fn quiesce(&self) {
        // Blocking-pool closures hold their own handle to the database, and one whose caller was
        // cancelled still runs to the end.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while Arc::strong_count(&self.kv) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    async fn append_audit(&self, record: AuditRecord) -> Result<u64, RoutingError> {
        let seqs = self.append_audits(vec![record]).await?;
        seqs.first()
            .copied()
            .ok_or_else(|| store_error("append audit record", "no sequence number"))
    }

    async fn append_audits(&self, records: Vec<AuditRecord>) -> Result<Vec<u64>, RoutingError> {
        self.write(move |tables| {
            let mut seqs = Vec::with_capacity(records.len());
            for record in records {
                let seq = tables.audit_last + 1;
                let record = AuditRecord { seq, ..record };
                let bytes = serde_json::to_vec(&record).map_err(|e| store_error("encode audit record", e))?;
                tables.insert(Space::Audit, &seq_key(seq), bytes)?;
                tables.audit_last = seq;
                seqs.push(seq);
            }
            Ok(seqs)
        })
        .await
    }

    async fn prune_audit(&self, through: u64) -> Result<u64, RoutingError> {
        // A chunk at a time: the keys to remove are read on the blocking pool and removed by the
        // writer (the log only grows at its other end, so none can be added meanwhile), so
        // neither memory nor one batch grows with the log.
        const CHUNK: usize = 1_000;
        let mut removed = 0;
        loop {
            let keys = self
                .blocking(move |kv| {
                    let snapshot = kv.snapshot();
                    let mut keys = Vec::new();
                    for entry in kv.after(&snapshot, Space::Audit, None).take(CHUNK) {
                        let (key, _) = entry?;
                        if seq_of(&key).is_none_or(|seq| seq > through) {
                            break;
                        }
                        keys.push(key.to_vec());
                    }
                    Ok(keys)
                })
                .await?;
            if keys.is_empty() {
                return Ok(removed);
            }
            let last_chunk = keys.len() < CHUNK;
            removed += self
                .write(move |tables| {
                    for key in &keys {
                        tables.remove(Space::Audit, key)?;
                    }
                    Ok(keys.len() as u64)
                })
                .await?;
            if last_chunk {
                return Ok(removed);
            }
        }
    }

    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, RoutingError> {
        let query = query.clone();
        self.blocking(move |kv| {
            let snapshot = kv.snapshot();
            let limit = query.page_size();
            let before = query.before.unwrap_or(u64::MAX);
            let mut out = Vec::new();
            for entry in kv.before(&snapshot, Space::Audit, &seq_key(before)).rev() {
                let (key, value) = entry?;
                let Some(seq) = seq_of(&key) else {
                    continue;
                };
                if query.after.is_some_and(|after| seq <= after) {
                    // Newest first: everything further is below the window.
                    break;
                }
                let mut record: AuditRecord =
                    serde_json::from_slice(&value).map_err(|e| store_error("decode audit record", e))?;
                record.seq = seq;
                if query.matches(&record) {
                    out.push(record);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn load_catalog(&self, broker: &str) -> Result<Option<StoredCatalog>, RoutingError> {
        let broker = broker.to_owned();
        self.blocking(move |kv| {
            let snapshot = kv.snapshot();
            let read = |space| {
                fjall::Readable::get(&snapshot, kv.space(space), broker.as_bytes())
                    .map_err(|e| store_error("read", e))
            };
            let (Some(body), Some(meta)) = (read(Space::CatalogBodies)?, read(Space::CatalogMeta)?) else {
                return Ok(None);
            };
            let meta: CatalogMeta =
                serde_json::from_slice(&meta).map_err(|e| store_error("decode catalog meta", e))?;
            Ok(Some(StoredCatalog {
                body: Bytes::copy_from_slice(&body),
                validators: Validators {
                    etag: meta.etag,
                    last_modified: meta.last_modified,
                },
                fetched_at_ms: meta.fetched_at_ms,
            }))
        })
        .await
    }

    async fn save_catalog(&self, broker: &str, catalog: StoredCatalog) -> Result<(), RoutingError> {
        let broker = broker.to_owned();
        self.write(move |tables| {
            let meta = CatalogMeta {
                etag: catalog.validators.etag,
                last_modified: catalog.validators.last_modified,
                fetched_at_ms: catalog.fetched_at_ms,
            };
            let meta = serde_json::to_vec(&meta).map_err(|e| store_error("encode catalog meta", e))?;
            tables.insert(Space::CatalogBodies, broker.as_bytes(), catalog.body.to_vec())?;
            tables.insert(Space::CatalogMeta, broker.as_bytes(), meta)?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests;
