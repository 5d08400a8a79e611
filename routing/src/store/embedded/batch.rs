//! The embedded store's writer: one thread that group-commits. It takes every write waiting (at
//! most [`MAX_BATCH`]), runs them one after the other in a single redb transaction, commits once,
//! applies what they changed to the mirror, and only then answers each caller.

use std::any::Any;
use std::sync::{Arc, RwLock, Weak};

use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};
use tokio::sync::oneshot;

use super::mirror::{Change, Mirror};
use super::{BINDINGS, INSTANCE_BINDINGS, INSTANCES, ORPHANS, PENDING, decode, store_error};
use crate::RoutingError;
use crate::record::BindingRecord;
use crate::store::indexed::Indexed;
use crate::store::{Expect, Swap};

/// Most writes one transaction takes.
pub(super) const MAX_BATCH: usize = 256;

pub(super) type Output = Box<dyn Any + Send>;
/// A write to run inside the batch's transaction: its result, and what the mirror learns from it
/// once committed.
pub(super) type Run = Box<dyn FnOnce(&mut Tables<'_>) -> Result<(Output, Vec<Change>), RoutingError> + Send>;

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
        }
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

pub(super) type Answer = (
    oneshot::Sender<Result<Output, RoutingError>>,
    Result<Output, RoutingError>,
);

/// Runs `batch` in one transaction. Any failure fails the whole batch (nothing of it is committed).
pub(super) fn write_batch(db: &Database, mirror: &RwLock<Mirror>, batch: Vec<Job>) -> Vec<Answer> {
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

/// Compare-and-swap of one record inside the batch's transaction, keeping the orphan and pending
/// indexes in step. Returns the outcome and the record as it was before.
///
/// The indexes are only touched when a flag changes (they always match the records, as both change
/// in one transaction): a write-ahead intent and its outcome touch `pending` and the record's table,
/// nothing else, so a commit writes fewer pages.
pub(super) fn swap_in<R: Indexed>(
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
