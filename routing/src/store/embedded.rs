//! The embedded store: one redb file, durable on commit, zero setup.
//!
//! This process is the file's only writer, so every record is also kept in memory (the mirror):
//! registry reads never touch redb. The mirror changes only after a commit succeeded.
//!
//! redb is synchronous: catalog reads run on tokio's blocking pool; writes go to one writer thread that
//! **group-commits**: it takes every write waiting, runs them one after the other in a single
//! transaction, commits once (one `fsync` for the batch), and only then answers each caller. A
//! compare-and-swap is a read and a write inside that transaction, so concurrent writers never
//! interleave. Records are stored as JSON; the orphan, pending and instance→bindings indexes are
//! updated in the same transaction. The file is locked by the process that opened it: one gateway
//! per file.
//!
//! The audit log is a table of its own (seq → record as JSON), read from redb (not mirrored: it
//! only grows), newest first.
//!
//! Orphan claims and replica heartbeats live in memory only: they describe processes using the
//! file, and after a restart no earlier process can still be working or alive. Keeping them (rather
//! than answering "everything is mine") gives this store the same semantics as the shared
//! PostgreSQL store, so the same tests run against both.

use std::any::Any;
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock, Weak};

use async_trait::async_trait;
use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::indexed::Indexed;
use super::{Expect, FORGET_REPLICA_AFTER_MS, RecordRef, Store, StoredCatalog, Swap};
use crate::RoutingError;
use crate::audit::{AuditQuery, AuditRecord};
use crate::registry::{BindingRecord, InstanceRecord};
use crate::upstream::Validators;

/// broker name → raw catalog body.
const CATALOG_BODIES: TableDefinition<&str, &[u8]> = TableDefinition::new("catalog_bodies");
/// broker name → [`CatalogMeta`] as JSON.
const CATALOG_META: TableDefinition<&str, &str> = TableDefinition::new("catalog_meta");

/// instance id → [`InstanceRecord`] as JSON.
const INSTANCES: TableDefinition<&str, &[u8]> = TableDefinition::new("instances");
/// binding id → [`BindingRecord`] as JSON.
const BINDINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("bindings");
/// "<instance id>\n<binding id>" → (): the bindings of an instance, for cascading deletes.
const INSTANCE_BINDINGS: TableDefinition<&str, ()> = TableDefinition::new("instance_bindings");
/// "i:<id>" / "b:<id>" → (): records being orphan-mitigated.
const ORPHANS: TableDefinition<&str, ()> = TableDefinition::new("orphans");
/// "i:<id>" / "b:<id>" → (): records with a write-ahead intent.
const PENDING: TableDefinition<&str, ()> = TableDefinition::new("pending");
/// seq → [`AuditRecord`] as JSON.
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");

#[derive(Serialize, Deserialize)]
struct CatalogMeta {
    etag: Option<String>,
    last_modified: Option<String>,
    fetched_at_ms: u64,
}

/// Most writes one transaction takes.
const MAX_BATCH: usize = 256;

/// redb's page cache (read and write) for the store file.
const PAGE_CACHE_BYTES: usize = 32 * 1024 * 1024;

type Output = Box<dyn Any + Send>;
/// A write to run inside the batch's transaction: its result, and what the mirror learns from it
/// once committed.
type Run = Box<dyn FnOnce(&mut Tables<'_>) -> Result<(Output, Vec<Change>), RoutingError> + Send>;

type RecordTable<'t> = redb::Table<'t, &'static str, &'static [u8]>;
type IndexTable<'t> = redb::Table<'t, &'static str, ()>;

/// The registry tables of one batch's transaction, each opened on first use and then shared by
/// every write of the batch (opening a table costs a lookup in redb's table tree). Other tables
/// (catalogs, audit) are opened from [`Tables::txn`] by the writes that need them.
struct Tables<'t> {
    txn: &'t WriteTransaction,
    instances: Option<RecordTable<'t>>,
    bindings: Option<RecordTable<'t>>,
    links: Option<IndexTable<'t>>,
    orphans: Option<IndexTable<'t>>,
    pending: Option<IndexTable<'t>>,
}

/// Opens `definition` into `slot` unless it is open already.
fn opened<'s, 't, V: redb::Value + 'static>(
    txn: &'t WriteTransaction,
    slot: &'s mut Option<redb::Table<'t, &'static str, V>>,
    definition: TableDefinition<'static, &'static str, V>,
) -> Result<&'s mut redb::Table<'t, &'static str, V>, RoutingError> {
    if slot.is_none() {
        *slot = Some(
            txn.open_table(definition)
                .map_err(|e| store_error("open table", e))?,
        );
    }
    slot.as_mut().ok_or_else(|| store_error("open table", "not open"))
}

impl<'t> Tables<'t> {
    fn new(txn: &'t WriteTransaction) -> Self {
        Tables {
            txn,
            instances: None,
            bindings: None,
            links: None,
            orphans: None,
            pending: None,
        }
    }

    fn records(&mut self, tag: &str) -> Result<&mut RecordTable<'t>, RoutingError> {
        if tag == BindingRecord::TAG {
            opened(self.txn, &mut self.bindings, BINDINGS)
        } else {
            opened(self.txn, &mut self.instances, INSTANCES)
        }
    }

    fn bindings(&mut self) -> Result<&mut RecordTable<'t>, RoutingError> {
        opened(self.txn, &mut self.bindings, BINDINGS)
    }

    fn links(&mut self) -> Result<&mut IndexTable<'t>, RoutingError> {
        opened(self.txn, &mut self.links, INSTANCE_BINDINGS)
    }

    fn orphans(&mut self) -> Result<&mut IndexTable<'t>, RoutingError> {
        opened(self.txn, &mut self.orphans, ORPHANS)
    }

    fn pending(&mut self) -> Result<&mut IndexTable<'t>, RoutingError> {
        opened(self.txn, &mut self.pending, PENDING)
    }
}

/// A committed change of one record, applied to the mirror.
enum Change {
    PutInstance(InstanceRecord),
    /// The instance and, with it, its bindings.
    DeleteInstance(String),
    PutBinding(BindingRecord),
    DeleteBinding(String),
}

/// Every record in memory, with the indexes the store answers from.
#[derive(Default)]
struct Mirror {
    instances: HashMap<String, InstanceRecord>,
    bindings: HashMap<String, BindingRecord>,
    /// instance id → its binding ids.
    by_instance: HashMap<String, BTreeSet<String>>,
    orphans: BTreeSet<(u8, String)>,
    pending: BTreeSet<(u8, String)>,
    /// orphan → (owner, claimed until ms): who works it (in memory only, see the module docs).
    claims: HashMap<(u8, String), (String, u64)>,
    /// replica id → last heartbeat (ms).
    replicas: HashMap<String, u64>,
}

const INSTANCE: u8 = b'i';
const BINDING: u8 = b'b';

impl Mirror {
    fn flags<R: Indexed>(&mut self, tag: u8, id: &str, record: Option<&R>) {
        let key = (tag, id.to_owned());
        if record.is_some_and(Indexed::is_orphaned) {
            self.orphans.insert(key.clone());
        } else {
            self.orphans.remove(&key);
            self.claims.remove(&key);
        }
        if record.is_some_and(Indexed::is_pending) {
            self.pending.insert(key);
        } else {
            self.pending.remove(&key);
        }
    }

    fn put_binding(&mut self, record: BindingRecord) {
        let id = record.binding_id.clone();
        self.flags(BINDING, &id, Some(&record));
        self.by_instance
            .entry(record.instance_id.clone())
            .or_default()
            .insert(id.clone());
        self.bindings.insert(id, record);
    }

    fn delete_binding(&mut self, id: &str) {
        self.flags::<BindingRecord>(BINDING, id, None);
        if let Some(old) = self.bindings.remove(id) {
            if let Some(set) = self.by_instance.get_mut(&old.instance_id) {
                set.remove(id);
            }
        }
    }

    fn apply(&mut self, change: Change) {
        match change {
            Change::PutInstance(record) => {
                let id = record.instance_id.clone();
                self.flags(INSTANCE, &id, Some(&record));
                self.instances.insert(id, record);
            }
            Change::DeleteInstance(id) => {
                self.flags::<InstanceRecord>(INSTANCE, &id, None);
                self.instances.remove(&id);
                for binding in self.by_instance.remove(&id).unwrap_or_default() {
                    self.delete_binding(&binding);
                }
            }
            Change::PutBinding(record) => self.put_binding(record),
            Change::DeleteBinding(id) => self.delete_binding(&id),
        }
    }

    fn refs(set: &BTreeSet<(u8, String)>) -> Vec<RecordRef> {
        set.iter()
            .map(|(tag, id)| {
                if *tag == INSTANCE {
                    RecordRef::Instance(id.clone())
                } else {
                    RecordRef::Binding(id.clone())
                }
            })
            .collect()
    }
}

/// One write for the writer thread, and where its result goes once committed.
struct Job {
    run: Run,
    reply: oneshot::Sender<Result<Output, RoutingError>>,
}

/// The redb-backed store.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    mirror: Arc<RwLock<Mirror>>,
    writes: std::sync::mpsc::Sender<Job>,
    path: PathBuf,
}

/// The writer thread: batches, runs, commits, answers. It holds the database only while writing,
/// and ends when the store is dropped.
fn spawn_writer(
    db: &Arc<Database>,
    mirror: Arc<RwLock<Mirror>>,
) -> Result<std::sync::mpsc::Sender<Job>, RoutingError> {
    let (sender, jobs) = std::sync::mpsc::channel::<Job>();
    let db: Weak<Database> = Arc::downgrade(db);
    std::thread::Builder::new()
        .name("osb-store-writer".to_owned())
        .spawn(move || {
            while let Ok(first) = jobs.recv() {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match jobs.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
                // The database handle is dropped before anyone is answered, so a caller that drops
                // the store next finds the file closed.
                let answers = match db.upgrade() {
                    Some(db) => write_batch(&db, &mirror, batch),
                    None => return,
                };
                for (reply, result) in answers {
                    // A caller that went away (request cancelled) no longer needs the answer.
                    let _ = reply.send(result);
                }
            }
        })
        .map_err(|e| store_error("start the writer thread", e))?;
    Ok(sender)
}

type Answer = (
    oneshot::Sender<Result<Output, RoutingError>>,
    Result<Output, RoutingError>,
);

/// Runs `batch` in one transaction. Any failure fails the whole batch (nothing of it is committed).
fn write_batch(db: &Database, mirror: &RwLock<Mirror>, batch: Vec<Job>) -> Vec<Answer> {
    let txn = match db.begin_write() {
        Ok(txn) => txn,
        Err(e) => {
            let message = format!("begin: {e}");
            return batch
                .into_iter()
                .map(|job| (job.reply, Err(RoutingError::Store(message.clone()))))
                .collect();
        }
    };
    let mut results = Vec::with_capacity(batch.len());
    let mut changes = Vec::new();
    let mut failure = None;
    {
        let mut tables = Tables::new(&txn);
        for job in batch {
            if failure.is_some() {
                results.push((job.reply, None));
                continue;
            }
            match (job.run)(&mut tables) {
                Ok((output, mut changed)) => {
                    results.push((job.reply, Some(output)));
                    changes.append(&mut changed);
                }
                Err(e) => {
                    failure = Some(e.to_string());
                    results.push((job.reply, None));
                }
            }
        }
        // The tables borrow the transaction: closed here, before it commits.
    }
    let failure = match failure {
        Some(failure) => Some(failure),
        None => txn.commit().err().map(|e| format!("commit: {e}")),
    };
    if failure.is_none() {
        let mut mirror = mirror.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        for change in changes {
            mirror.apply(change);
        }
    }
    results
        .into_iter()
        .map(|(reply, output)| match (&failure, output) {
            (None, Some(output)) => (reply, Ok(output)),
            (Some(failure), _) => (
                reply,
                Err(RoutingError::Store(format!("write batch failed: {failure}"))),
            ),
            (None, None) => (reply, Err(RoutingError::Store("write lost".to_owned()))),
        })
        .collect()
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
    /// Opens (creating it and its folder if needed) the store file at `path`.
    ///
    /// # Errors
    /// [`RoutingError::Store`] when the file cannot be created, is locked by another process, or is
    /// not a redb file.
    pub async fn open(path: PathBuf) -> Result<Self, RoutingError> {
        let shown = path.display().to_string();
        let opened = path.clone();
        let (db, mirror) = tokio::task::spawn_blocking(move || {
            if let Some(parent) = opened.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .map_err(|e| store_error(&format!("create {}", parent.display()), e))?;
            }
            // The mirror answers every registry read, so redb's page cache only serves writes and
            // the audit log: bounded well below its 1 GiB default, it keeps RSS flat under load.
            let db = Database::builder()
                .set_cache_size(PAGE_CACHE_BYTES)
                .create(&opened)
                .map_err(|e| match e {
                    redb::DatabaseError::DatabaseAlreadyOpen => RoutingError::Store(format!(
                        "{shown} is in use by another process (one gateway per embedded store file)"
                    )),
                    e => store_error(&format!("open {shown}"), e),
                })?;
            // Create the tables once so readers never meet a missing table.
            let txn = db.begin_write().map_err(|e| store_error("begin", e))?;
            let open_error = |e| store_error("open table", e);
            txn.open_table(CATALOG_BODIES).map_err(open_error)?;
            txn.open_table(CATALOG_META).map_err(open_error)?;
            txn.open_table(INSTANCES).map_err(open_error)?;
            txn.open_table(BINDINGS).map_err(open_error)?;
            txn.open_table(INSTANCE_BINDINGS).map_err(open_error)?;
            txn.open_table(ORPHANS).map_err(open_error)?;
            txn.open_table(PENDING).map_err(open_error)?;
            txn.open_table(AUDIT).map_err(open_error)?;
            txn.commit().map_err(|e| store_error("commit", e))?;
            // Load every record into the mirror.
            let mut mirror = Mirror::default();
            for record in all_records::<InstanceRecord>(&db, INSTANCES)? {
                mirror.apply(Change::PutInstance(record));
            }
            for record in all_records::<BindingRecord>(&db, BINDINGS)? {
                mirror.apply(Change::PutBinding(record));
            }
            Ok::<_, RoutingError>((db, mirror))
        })
        .await
        .map_err(|e| store_error("open task", e))??;
        let (db, mirror) = (Arc::new(db), Arc::new(RwLock::new(mirror)));
        let writes = spawn_writer(&db, mirror.clone())?;
        Ok(EmbeddedStore {
            db,
            mirror,
            writes,
            path,
        })
    }

    /// Runs `write` in the writer thread's next transaction; returns once it is committed (and
    /// the mirror updated with the changes it reports).
    async fn write<T: Send + 'static>(
        &self,
        write: impl FnOnce(&mut Tables<'_>) -> Result<(T, Vec<Change>), RoutingError> + Send + 'static,
    ) -> Result<T, RoutingError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            run: Box::new(move |tables| write(tables).map(|(t, changes)| (Box::new(t) as Output, changes))),
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

    fn read<T>(&self, read: impl FnOnce(&Mirror) -> T) -> T {
        read(
            &self
                .mirror
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, RoutingError> + Send + 'static,
    ) -> Result<T, RoutingError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| store_error("task", e))?
    }
}

fn decode<R: Indexed>(bytes: &[u8]) -> Result<R, RoutingError> {
    serde_json::from_slice(bytes).map_err(|e| store_error("decode record", e))
}

/// Compare-and-swap of one record inside the batch's transaction, keeping the orphan and pending
/// indexes in step. Returns the outcome and the record as it was before.
///
/// The indexes are only touched when a flag changes (they always match the records, as both change
/// in one transaction): a write-ahead intent and its outcome touch `pending` and the record's table,
/// nothing else, so a commit writes fewer pages.
fn swap_in<R: Indexed>(
    tables: &mut Tables<'_>,
    id: &str,
    expect: Expect,
    record: Option<R>,
) -> Result<(Swap<R>, Option<R>), RoutingError> {
    let records = tables.records(R::TAG)?;
    let current: Option<R> = match records.get(id).map_err(|e| store_error("read", e))? {
        Some(bytes) => Some(decode(bytes.value())?),
        None => None,
    };
    let matches = match (&current, expect) {
        (None, Expect::Absent) => true,
        (Some(current), Expect::Version(v)) => current.version() == v,
        _ => false,
    };
    if !matches {
        return Ok((Swap::Conflict, current));
    }
    let flags = |r: Option<&R>| r.map_or((false, false), |r| (r.is_orphaned(), r.is_pending()));
    let (was_orphaned, was_pending) = flags(current.as_ref());
    let (orphaned, pending) = flags(record.as_ref());
    let outcome = match record {
        Some(mut record) => {
            record.set_version(current.as_ref().map_or(1, |c| c.version() + 1));
            let bytes = serde_json::to_vec(&record).map_err(|e| store_error("encode record", e))?;
            records
                .insert(id, bytes.as_slice())
                .map_err(|e| store_error("write", e))?;
            Swap::Written(record)
        }
        None => {
            records.remove(id).map_err(|e| store_error("delete", e))?;
            Swap::Deleted
        }
    };
    let index_key = format!("{}:{id}", R::TAG);
    if orphaned != was_orphaned {
        set_flag(tables.orphans()?, &index_key, orphaned)?;
    }
    if pending != was_pending {
        set_flag(tables.pending()?, &index_key, pending)?;
    }
    Ok((outcome, current))
}

fn set_flag(table: &mut redb::Table<'_, &str, ()>, key: &str, on: bool) -> Result<(), RoutingError> {
    if on {
        table.insert(key, ()).map_err(|e| store_error("write index", e))?;
    } else {
        table.remove(key).map_err(|e| store_error("write index", e))?;
    }
    Ok(())
}

fn all_records<R: Indexed>(
    db: &Database,
    table: TableDefinition<&str, &[u8]>,
) -> Result<Vec<R>, RoutingError> {
    let txn = db.begin_read().map_err(|e| store_error("begin", e))?;
    let table = txn.open_table(table).map_err(|e| store_error("open table", e))?;
    let mut out = Vec::new();
    for entry in table.iter().map_err(|e| store_error("read", e))? {
        let (_, value) = entry.map_err(|e| store_error("read", e))?;
        out.push(decode(value.value())?);
    }
    Ok(out)
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn instance(&self, instance_id: &str) -> Result<Option<InstanceRecord>, RoutingError> {
        Ok(self.read(|m| m.instances.get(instance_id).cloned()))
    }

    async fn swap_instance(
        &self,
        instance_id: &str,
        expect: Expect,
        record: Option<InstanceRecord>,
    ) -> Result<Swap<InstanceRecord>, RoutingError> {
        let id = instance_id.to_owned();
        self.write(move |tables| {
            let deleting = record.is_none();
            let (outcome, _) = swap_in(tables, &id, expect, record)?;
            let changes = match &outcome {
                Swap::Written(record) => vec![Change::PutInstance(record.clone())],
                Swap::Deleted => vec![Change::DeleteInstance(id.clone())],
                Swap::Conflict => Vec::new(),
            };
            if deleting && outcome == Swap::Deleted {
                // Cascade: the bindings of a deleted instance are gone with it.
                let prefix = format!("{id}\n");
                let keys: Vec<String> = tables
                    .links()?
                    .range(prefix.as_str()..)
                    .map_err(|e| store_error("read", e))?
                    .map_while(|entry| entry.ok().map(|(k, _)| k.value().to_owned()))
                    .take_while(|k| k.starts_with(&prefix))
                    .collect();
                for key in keys {
                    tables
                        .links()?
                        .remove(key.as_str())
                        .map_err(|e| store_error("delete", e))?;
                    if let Some(binding_id) = key.strip_prefix(&prefix) {
                        tables
                            .bindings()?
                            .remove(binding_id)
                            .map_err(|e| store_error("delete", e))?;
                        let index_key = format!("b:{binding_id}");
                        set_flag(tables.orphans()?, &index_key, false)?;
                        set_flag(tables.pending()?, &index_key, false)?;
                    }
                }
            }
            Ok((outcome, changes))
        })
        .await
    }

    async fn binding(&self, binding_id: &str) -> Result<Option<BindingRecord>, RoutingError> {
        Ok(self.read(|m| m.bindings.get(binding_id).cloned()))
    }

    async fn swap_binding(
        &self,
        binding_id: &str,
        expect: Expect,
        record: Option<BindingRecord>,
    ) -> Result<Swap<BindingRecord>, RoutingError> {
        let id = binding_id.to_owned();
        self.write(move |tables| {
            let deleting = record.is_none();
            let instance_id = record.as_ref().map(|r| r.instance_id.clone());
            let (outcome, stored) = swap_in(tables, &id, expect, record)?;
            // The instance → bindings link exists exactly while the binding does (a binding never
            // moves to another instance): written when it is created, removed when it is deleted.
            match (&outcome, &stored, deleting) {
                (Swap::Written(_), None, _) => {
                    let link = format!("{}\n{id}", instance_id.unwrap_or_default());
                    tables
                        .links()?
                        .insert(link.as_str(), ())
                        .map_err(|e| store_error("write", e))?;
                }
                (Swap::Deleted, Some(old), true) => {
                    let link = format!("{}\n{id}", old.instance_id);
                    tables
                        .links()?
                        .remove(link.as_str())
                        .map_err(|e| store_error("delete", e))?;
                }
                _ => {}
            }
            let changes = match &outcome {
                Swap::Written(record) => vec![Change::PutBinding(record.clone())],
                Swap::Deleted => vec![Change::DeleteBinding(id.clone())],
                Swap::Conflict => Vec::new(),
            };
            Ok((outcome, changes))
        })
        .await
    }

    async fn bindings_of(&self, instance_id: &str) -> Result<Vec<BindingRecord>, RoutingError> {
        Ok(self.read(|m| {
            m.by_instance
                .get(instance_id)
                .map(|ids| ids.iter().filter_map(|id| m.bindings.get(id).cloned()).collect())
                .unwrap_or_default()
        }))
    }

    async fn instances(&self) -> Result<Vec<InstanceRecord>, RoutingError> {
        Ok(self.read(|m| m.instances.values().cloned().collect()))
    }

    async fn bindings(&self) -> Result<Vec<BindingRecord>, RoutingError> {
        Ok(self.read(|m| m.bindings.values().cloned().collect()))
    }

    async fn orphans(&self) -> Result<Vec<RecordRef>, RoutingError> {
        Ok(self.read(|m| Mirror::refs(&m.orphans)))
    }

    async fn pending(&self) -> Result<Vec<RecordRef>, RoutingError> {
        Ok(self.read(|m| Mirror::refs(&m.pending)))
    }

    async fn claim_orphans(
        &self,
        owner: &str,
        now_ms: u64,
        until_ms: u64,
        limit: usize,
    ) -> Result<Vec<RecordRef>, RoutingError> {
        let mut mirror = self
            .mirror
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mirror = &mut *mirror;
        // As the PostgreSQL store orders them: bindings first, then instances; in each, the
        // owner's own claims, then the least recently claimed.
        let mut eligible: Vec<(bool, bool, u64, &(u8, String))> = mirror
            .orphans
            .iter()
            .filter_map(|key| match mirror.claims.get(key) {
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
            mirror.claims.insert(key.clone(), (owner.to_owned(), until_ms));
        }
        Ok(Mirror::refs(&claimed))
    }

    async fn heartbeat(
        &self,
        replica: &str,
        now_ms: u64,
        since_ms: u64,
    ) -> Result<Vec<String>, RoutingError> {
        let mut mirror = self
            .mirror
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let seen = mirror.replicas.entry(replica.to_owned()).or_insert(now_ms);
        *seen = (*seen).max(now_ms);
        let forget_before = since_ms.saturating_sub(FORGET_REPLICA_AFTER_MS);
        mirror
            .replicas
            .retain(|id, seen| id == replica || *seen >= forget_before);
        let mut alive: Vec<String> = mirror
            .replicas
            .iter()
            .filter(|(id, seen)| *id == replica || **seen >= since_ms)
            .map(|(id, _)| id.clone())
            .collect();
        alive.sort();
        Ok(alive)
    }

    async fn ping(&self) -> Result<(), RoutingError> {
        Ok(())
    }

    async fn quiesce(&self) {
        // Blocking-pool closures hold their own handle to the database, and one whose caller was
        // cancelled still runs to the end.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while Arc::strong_count(&self.db) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    async fn append_audit(&self, record: AuditRecord) -> Result<u64, RoutingError> {
        self.write(move |tables| {
            let mut table = tables
                .txn
                .open_table(AUDIT)
                .map_err(|e| store_error("open table", e))?;
            let last = table
                .last()
                .map_err(|e| store_error("read", e))?
                .map_or(0, |(seq, _)| seq.value());
            let seq = last + 1;
            let record = AuditRecord { seq, ..record };
            let bytes = serde_json::to_vec(&record).map_err(|e| store_error("encode audit record", e))?;
            table
                .insert(seq, bytes.as_slice())
                .map_err(|e| store_error("write", e))?;
            Ok((seq, Vec::new()))
        })
        .await
    }

    async fn prune_audit(&self, through: u64) -> Result<u64, RoutingError> {
        self.write(move |tables| {
            let mut table = tables
                .txn
                .open_table(AUDIT)
                .map_err(|e| store_error("open table", e))?;
            let mut removed = 0;
            table
                .retain_in(..=through, |_, _| {
                    removed += 1;
                    false
                })
                .map_err(|e| store_error("delete", e))?;
            Ok((removed, Vec::new()))
        })
        .await
    }

    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, RoutingError> {
        let query = query.clone();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(|e| store_error("begin", e))?;
            let table = txn.open_table(AUDIT).map_err(|e| store_error("open table", e))?;
            let limit = query.page_size();
            let before = query.before.unwrap_or(u64::MAX);
            let mut out = Vec::new();
            for entry in table.range(..before).map_err(|e| store_error("read", e))?.rev() {
                let (seq, value) = entry.map_err(|e| store_error("read", e))?;
                let mut record: AuditRecord = serde_json::from_slice(value.value())
                    .map_err(|e| store_error("decode audit record", e))?;
                record.seq = seq.value();
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
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(|e| store_error("begin", e))?;
            let bodies = txn
                .open_table(CATALOG_BODIES)
                .map_err(|e| store_error("open table", e))?;
            let metas = txn
                .open_table(CATALOG_META)
                .map_err(|e| store_error("open table", e))?;
            let body = bodies.get(broker.as_str()).map_err(|e| store_error("read", e))?;
            let meta = metas.get(broker.as_str()).map_err(|e| store_error("read", e))?;
            let (Some(body), Some(meta)) = (body, meta) else {
                return Ok(None);
            };
            let meta: CatalogMeta =
                serde_json::from_str(meta.value()).map_err(|e| store_error("decode catalog meta", e))?;
            Ok(Some(StoredCatalog {
                body: Bytes::copy_from_slice(body.value()),
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
            let meta = serde_json::to_string(&meta).map_err(|e| store_error("encode catalog meta", e))?;
            {
                let mut bodies = tables
                    .txn
                    .open_table(CATALOG_BODIES)
                    .map_err(|e| store_error("open table", e))?;
                bodies
                    .insert(broker.as_str(), catalog.body.as_ref())
                    .map_err(|e| store_error("write", e))?;
                let mut metas = tables
                    .txn
                    .open_table(CATALOG_META)
                    .map_err(|e| store_error("open table", e))?;
                metas
                    .insert(broker.as_str(), meta.as_str())
                    .map_err(|e| store_error("write", e))?;
            }
            Ok(((), Vec::new()))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn catalogs_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/gw.redb");
        let store = EmbeddedStore::open(path.clone()).await.unwrap();
        assert_eq!(store.load_catalog("azure").await.unwrap(), None);
        let saved = StoredCatalog {
            body: Bytes::from_static(b"{\"services\":[]}"),
            validators: Validators {
                etag: Some("\"v1\"".into()),
                last_modified: None,
            },
            fetched_at_ms: 42,
        };
        store.save_catalog("azure", saved.clone()).await.unwrap();
        drop(store);
        let store = EmbeddedStore::open(path).await.unwrap();
        assert_eq!(store.load_catalog("azure").await.unwrap(), Some(saved));
        assert_eq!(store.load_catalog("aws").await.unwrap(), None);
    }
}
