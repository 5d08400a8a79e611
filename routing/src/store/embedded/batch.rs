//! The embedded store's writer: one thread that group-commits. It takes every write waiting (at
//! most [`MAX_BATCH`]), runs them one after the other in a single redb transaction, adds up the
//! batch's changes of the records per broker into one write of the counts table, commits once,
//! applies what they changed to the memory, and only then answers each caller.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, Weak};

use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};
use tokio::sync::oneshot;

use super::codec::Stored;
use super::memory::{BINDING, Change, INSTANCE, Memory};
use super::{BINDINGS, COUNTS, INSTANCE_BINDINGS, INSTANCES, ORPHANS, PENDING, store_error};
use crate::RoutingError;
use crate::record::BindingRecord;
use crate::store::indexed::Indexed;
use crate::store::{Expect, Swap};

/// Most writes one transaction takes.
pub(super) const MAX_BATCH: usize = 256;

pub(super) type Output = Box<dyn Any + Send>;
/// A write to run inside the batch's transaction; what the memory learns from it is noted in
/// [`Tables::changes`] and [`Tables::counts`].
pub(super) type Run = Box<dyn FnOnce(&mut Tables<'_>) -> Result<Output, RoutingError> + Send>;

pub(super) type RecordTable<'t> = redb::Table<'t, &'static str, &'static [u8]>;
pub(super) type IndexTable<'t> = redb::Table<'t, &'static str, ()>;

/// The registry tables of one batch's transaction, each opened on first use and then shared by
/// every write of the batch (opening a table costs a lookup in redb's table tree). Other tables
/// (catalogs, audit) are opened from [`Tables::txn`] by the writes that need them.
pub(super) struct Tables<'t> {
    pub(super) txn: &'t WriteTransaction,
    pub(super) instances: Option<RecordTable<'t>>,
    pub(super) bindings: Option<RecordTable<'t>>,
    pub(super) links: Option<IndexTable<'t>>,
    pub(super) orphans: Option<IndexTable<'t>>,
    pub(super) pending: Option<IndexTable<'t>>,
    /// What the memory learns once the batch is committed.
    pub(super) changes: Vec<Change>,
    /// (kind, broker) → how many more records the batch leaves: written to the counts table once
    /// per batch.
    pub(super) counts: BTreeMap<(u8, String), i64>,
}

/// Opens `definition` into `slot` unless it is open already.
pub(super) fn opened<'s, 't, V: redb::Value + 'static>(
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
    pub(super) fn new(txn: &'t WriteTransaction) -> Self {
        Tables {
            txn,
            instances: None,
            bindings: None,
            links: None,
            orphans: None,
            pending: None,
            changes: Vec::new(),
            counts: BTreeMap::new(),
        }
    }

    /// Counts one more (`delta` 1) or one fewer (-1) record of `broker`.
    pub(super) fn count(&mut self, tag: u8, broker: &str, delta: i64) {
        match self.counts.get_mut(&(tag, broker.to_owned())) {
            Some(n) => *n += delta,
            None => {
                self.counts.insert((tag, broker.to_owned()), delta);
            }
        }
    }

    /// Writes the batch's count changes to the counts table; the memory learns them on commit.
    fn write_counts(&mut self) -> Result<(), RoutingError> {
        if self.counts.is_empty() {
            return Ok(());
        }
        let mut table = self
            .txn
            .open_table(COUNTS)
            .map_err(|e| store_error("open table", e))?;
        for ((tag, broker), delta) in std::mem::take(&mut self.counts) {
            if delta == 0 {
                continue;
            }
            let key = count_key(tag, &broker);
            let now = table
                .get(key.as_str())
                .map_err(|e| store_error("read", e))?
                .map_or(0, |n| n.value());
            table
                .insert(key.as_str(), now.saturating_add_signed(delta))
                .map_err(|e| store_error("write", e))?;
            self.changes.push(Change::Count {
                key: (tag, broker),
                delta,
            });
        }
        Ok(())
    }

    pub(super) fn records(&mut self, tag: &str) -> Result<&mut RecordTable<'t>, RoutingError> {
        if tag == BindingRecord::TAG {
            opened(self.txn, &mut self.bindings, BINDINGS)
        } else {
            opened(self.txn, &mut self.instances, INSTANCES)
        }
    }

    pub(super) fn bindings(&mut self) -> Result<&mut RecordTable<'t>, RoutingError> {
        opened(self.txn, &mut self.bindings, BINDINGS)
    }

    pub(super) fn links(&mut self) -> Result<&mut IndexTable<'t>, RoutingError> {
        opened(self.txn, &mut self.links, INSTANCE_BINDINGS)
    }

    pub(super) fn orphans(&mut self) -> Result<&mut IndexTable<'t>, RoutingError> {
        opened(self.txn, &mut self.orphans, ORPHANS)
    }

    pub(super) fn pending(&mut self) -> Result<&mut IndexTable<'t>, RoutingError> {
        opened(self.txn, &mut self.pending, PENDING)
    }
}

/// One write for the writer thread, and where its result goes once committed.
pub(super) struct Job {
    pub(super) run: Run,
    pub(super) reply: oneshot::Sender<Result<Output, RoutingError>>,
}

/// The writer thread: batches, runs, commits, answers. It holds the database only while writing,
/// and ends when the store is dropped.
pub(super) fn spawn_writer(
    db: &Arc<Database>,
    memory: Arc<RwLock<Memory>>,
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
                    Some(db) => write_batch(&db, &memory, batch),
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

pub(super) type Answer = (
    oneshot::Sender<Result<Output, RoutingError>>,
    Result<Output, RoutingError>,
);

/// Runs `batch` in one transaction. Any failure fails the whole batch (nothing of it is committed).
pub(super) fn write_batch(db: &Database, memory: &RwLock<Memory>, batch: Vec<Job>) -> Vec<Answer> {
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
    let mut failure = None;
    let changes = {
        let mut tables = Tables::new(&txn);
        for job in batch {
            if failure.is_some() {
                results.push((job.reply, None));
                continue;
            }
            match (job.run)(&mut tables) {
                Ok(output) => results.push((job.reply, Some(output))),
                Err(e) => {
                    failure = Some(e.to_string());
                    results.push((job.reply, None));
                }
            }
        }
        if failure.is_none()
            && let Err(e) = tables.write_counts()
        {
            failure = Some(e.to_string());
        }
        // The tables borrow the transaction: closed here, before it commits.
        std::mem::take(&mut tables.changes)
    };
    let failure = match failure {
        Some(failure) => Some(failure),
        None => txn.commit().err().map(|e| format!("commit: {e}")),
    };
    if failure.is_none() {
        let mut memory = memory.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        for change in changes {
            memory.apply(change);
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

/// Compare-and-swap of one record inside the batch's transaction, keeping the orphan and pending
/// indexes and the counts in step. Returns the outcome and the record as it was before.
///
/// The indexes are only touched when a flag changes (they always match the records, as both change
/// in one transaction): a write-ahead intent and its outcome touch `pending` and the record's table,
/// nothing else, so a commit writes fewer pages.
pub(super) fn swap_in<R: Indexed + Stored>(
    tables: &mut Tables<'_>,
    id: &str,
    expect: Expect,
    record: Option<R>,
) -> Result<(Swap<R>, Option<R>), RoutingError> {
    let records = tables.records(R::TAG)?;
    let current: Option<R> = match records.get(id).map_err(|e| store_error("read", e))? {
        Some(bytes) => Some(R::decode(id, bytes.value())?),
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
            let bytes = record.encode()?;
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
    let tag = if R::TAG == BindingRecord::TAG {
        BINDING
    } else {
        INSTANCE
    };
    if let Some(current) = &current {
        tables.count(tag, current.broker(), -1);
    }
    if let Swap::Written(record) = &outcome {
        tables.count(tag, record.broker(), 1);
    }
    flags_changed(tables, tag, id, (was_orphaned, was_pending), (orphaned, pending))?;
    Ok((outcome, current))
}

/// Writes the orphan and pending indexes of record `id` where its flags changed from `was` to
/// `now` (orphaned, pending), and notes the change for the memory.
pub(super) fn flags_changed(
    tables: &mut Tables<'_>,
    tag: u8,
    id: &str,
    was: (bool, bool),
    now: (bool, bool),
) -> Result<(), RoutingError> {
    if was == now {
        return Ok(());
    }
    let index_key = format!("{}:{id}", char::from(tag));
    if now.0 != was.0 {
        set_flag(tables.orphans()?, &index_key, now.0)?;
    }
    if now.1 != was.1 {
        set_flag(tables.pending()?, &index_key, now.1)?;
    }
    tables.changes.push(Change::Flags {
        key: (tag, id.to_owned()),
        orphaned: now.0,
        pending: now.1,
    });
    Ok(())
}

/// The counts table's key of the records of kind `tag` of `broker`.
pub(super) fn count_key(tag: u8, broker: &str) -> String {
    format!("{}:{broker}", char::from(tag))
}

pub(super) fn set_flag(
    table: &mut redb::Table<'_, &str, ()>,
    key: &str,
    on: bool,
) -> Result<(), RoutingError> {
    if on {
        table.insert(key, ()).map_err(|e| store_error("write index", e))?;
    } else {
        table.remove(key).map_err(|e| store_error("write index", e))?;
    }
    Ok(())
}
