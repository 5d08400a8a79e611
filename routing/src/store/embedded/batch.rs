//! The embedded store's writer: one thread that group-commits. It takes every write waiting (at
//! most [`MAX_BATCH`]), runs them one after the other against [`Tables`] (the database overlaid
//! with what the batch's earlier writes wrote), adds up the batch's changes of the records per
//! broker into one write of each count, commits the batch as one fjall write batch, atomically and
//! durably (one journal sync), applies what it changed to the memory, and only then answers each
//! caller. As the writer is the only one writing, a compare-and-swap read there cannot be
//! overtaken.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, Weak};

use tokio::sync::oneshot;

use super::codec::Stored;
use super::kv::{Kv, Space, checked, count_of, count_value};
use super::memory::{BINDING, Change, INSTANCE, Memory, QUOTA};
use super::store_error;
use crate::RoutingError;
use crate::record::BindingRecord;
use crate::store::indexed::Indexed;
use crate::store::{Expect, Swap};

/// Most writes one batch takes.
pub(super) const MAX_BATCH: usize = 256;

pub(super) type Output = Box<dyn Any + Send>;
/// A write to run inside the batch; what the memory learns from it is noted in
/// [`Tables::changes`] and [`Tables::counts`].
pub(super) type Run = Box<dyn FnOnce(&mut Tables<'_>) -> Result<Output, RoutingError> + Send>;

/// One batch's view of the store: the database as committed, overlaid with what the batch's
/// writes wrote. The overlay is the batch: it becomes one fjall write batch when the batch
/// commits (a key written twice, as an intent and then its outcome, is written once). A write that
/// fails is undone from the overlay, so it fails alone.
pub(super) struct Tables<'k> {
    kv: &'k Kv,
    /// (space, key) → the value the batch leaves (`None`: removed).
    overlay: BTreeMap<Key, Option<Vec<u8>>>,
    /// What the running write changed in the overlay: each key and what the overlay held for it
    /// before (`None`: nothing).
    undo: Vec<(Key, Option<Option<Vec<u8>>>)>,
    /// The audit log's last seq, as the batch leaves it.
    pub(super) audit_last: u64,
    /// What the memory learns once the batch is committed.
    pub(super) changes: Vec<Change>,
    /// (kind, broker) → how many more records the batch leaves: written once per batch.
    pub(super) counts: BTreeMap<(u8, String), i64>,
}

/// A key of a keyspace.
type Key = (Space, Vec<u8>);

/// Where a write started, to undo it.
struct Mark {
    changes: usize,
    counts: BTreeMap<(u8, String), i64>,
    audit_last: u64,
}

impl<'k> Tables<'k> {
    pub(super) fn new(kv: &'k Kv, audit_last: u64) -> Self {
        Tables {
            kv,
            overlay: BTreeMap::new(),
            undo: Vec::new(),
            audit_last,
            changes: Vec::new(),
            counts: BTreeMap::new(),
        }
    }

    /// The value under `key` as the batch sees it.
    pub(super) fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, RoutingError> {
        match self.overlay.get(&(space, key.to_vec())) {
            Some(value) => Ok(value.clone()),
            None => Ok(self.kv.get(space, key)?.map(|v| v.to_vec())),
        }
    }

    pub(super) fn insert(&mut self, space: Space, key: &[u8], value: Vec<u8>) -> Result<(), RoutingError> {
        self.set(space, key, Some(value))
    }

    pub(super) fn remove(&mut self, space: Space, key: &[u8]) -> Result<(), RoutingError> {
        self.set(space, key, None)
    }

    fn set(&mut self, space: Space, key: &[u8], value: Option<Vec<u8>>) -> Result<(), RoutingError> {
        let key = (space, checked(key)?.to_vec());
        let before = self.overlay.insert(key.clone(), value);
        self.undo.push((key, before));
        Ok(())
    }

    /// Starts a write: what [`Tables::undo`] goes back to.
    fn mark(&mut self) -> Mark {
        self.undo.clear();
        Mark {
            changes: self.changes.len(),
            counts: self.counts.clone(),
            audit_last: self.audit_last,
        }
    }

    /// Undoes everything the write started at `mark` did.
    fn undo(&mut self, mark: Mark) {
        while let Some((key, before)) = self.undo.pop() {
            match before {
                Some(value) => self.overlay.insert(key, value),
                None => self.overlay.remove(&key),
            };
        }
        self.changes.truncate(mark.changes);
        self.counts = mark.counts;
        self.audit_last = mark.audit_last;
    }

    /// The fjall write batch of the overlay.
    fn into_batch(self) -> (fjall::OwnedWriteBatch, Vec<Change>, u64) {
        let mut batch = self.kv.batch();
        for ((space, key), value) in self.overlay {
            match value {
                Some(value) => batch.insert(self.kv.space(space), key, value),
                None => batch.remove(self.kv.space(space), key),
            }
        }
        (batch, self.changes, self.audit_last)
    }

    /// The keys of `space` starting with `prefix`, as the batch sees them, in key order.
    pub(super) fn keys_with_prefix(&self, space: Space, prefix: &[u8]) -> Result<Vec<Vec<u8>>, RoutingError> {
        let snapshot = self.kv.snapshot();
        let mut keys = std::collections::BTreeSet::new();
        for entry in self.kv.prefixed(&snapshot, space, prefix) {
            let (key, _) = entry?;
            keys.insert(key.to_vec());
        }
        let from = (space, prefix.to_vec());
        for ((_, key), value) in self
            .overlay
            .range(from..)
            .take_while(|((s, key), _)| *s == space && key.starts_with(prefix))
        {
            if value.is_some() {
                keys.insert(key.clone());
            } else {
                keys.remove(key);
            }
        }
        Ok(keys.into_iter().collect())
    }

    /// The live records of quota count `key` as the batch leaves them so far.
    pub(super) fn quota_used(&self, key: &str) -> Result<u64, RoutingError> {
        let stored = self
            .get(Space::Counts, count_key(QUOTA, key).as_bytes())?
            .map_or(0, |n| count_of(&n));
        let pending = self.counts.get(&(QUOTA, key.to_owned())).copied().unwrap_or(0);
        Ok(stored.saturating_add_signed(pending))
    }

    /// Counts a record's quota counts: one more (`delta` 1) or one fewer (-1) in each.
    pub(super) fn count_quotas(&mut self, keys: &[String], delta: i64) {
        for key in keys {
            self.count(QUOTA, key, delta);
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

    /// Writes the batch's count changes; the memory learns them on commit.
    fn write_counts(&mut self) -> Result<(), RoutingError> {
        for ((tag, broker), delta) in std::mem::take(&mut self.counts) {
            if delta == 0 {
                continue;
            }
            let key = count_key(tag, &broker);
            let now = self
                .get(Space::Counts, key.as_bytes())?
                .map_or(0, |n| count_of(&n))
                .saturating_add_signed(delta);
            if tag == QUOTA && now == 0 {
                // A quota count is kept only while it counts something (buckets come and go).
                self.remove(Space::Counts, key.as_bytes())?;
            } else {
                self.insert(Space::Counts, key.as_bytes(), count_value(now).to_vec())?;
            }
            self.changes.push(Change::Count {
                key: (tag, broker),
                delta,
            });
        }
        Ok(())
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
    kv: &Arc<Kv>,
    memory: Arc<RwLock<Memory>>,
    mut audit_last: u64,
) -> Result<std::sync::mpsc::Sender<Job>, RoutingError> {
    let (sender, jobs) = std::sync::mpsc::channel::<Job>();
    let kv: Weak<Kv> = Arc::downgrade(kv);
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
                let answers = match kv.upgrade() {
                    Some(kv) => write_batch(&kv, &memory, &mut audit_last, batch),
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

/// Runs `batch` as one atomic write. A write that fails (or panics) is undone and fails alone;
/// when the commit fails, every write of the batch fails (nothing of it is committed).
pub(super) fn write_batch(
    kv: &Kv,
    memory: &RwLock<Memory>,
    audit_last: &mut u64,
    batch: Vec<Job>,
) -> Vec<Answer> {
    let mut results = Vec::with_capacity(batch.len());
    let mut tables = Tables::new(kv, *audit_last);
    for job in batch {
        let mark = tables.mark();
        let run = job.run;
        // A write that panics fails alone, not the writer thread (and every write after it).
        let result = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&mut tables))) {
            Ok(result) => result,
            Err(_) => Err(RoutingError::Store("the write panicked".to_owned())),
        };
        if result.is_err() {
            tables.undo(mark);
        }
        results.push((job.reply, result));
    }
    let failure = match tables.write_counts() {
        Ok(()) => {
            let (writes, changes, last) = tables.into_batch();
            match writes.commit() {
                Ok(()) => {
                    *audit_last = last;
                    let mut memory = memory.write().unwrap_or_else(std::sync::PoisonError::into_inner);
                    for change in changes {
                        memory.apply(change);
                    }
                    None
                }
                Err(e) => {
                    // fjall takes no more writes once its journal failed (until a restart): the
                    // readiness probe says so too.
                    kv.set_failed();
                    Some(format!("commit: {e}"))
                }
            }
        }
        Err(e) => Some(e.to_string()),
    };
    results
        .into_iter()
        .map(|(reply, result)| match (&failure, result) {
            (None, result) => (reply, result),
            (Some(failure), _) => (
                reply,
                Err(RoutingError::Store(format!("write batch failed: {failure}"))),
            ),
        })
        .collect()
}

/// Compare-and-swap of one record inside the batch, keeping the orphan and pending indexes and the
/// counts in step. Returns the outcome and the record as it was before.
///
/// The indexes are only touched when a flag changes (they always match the records, as both change
/// in one atomic batch): a write-ahead intent and its outcome touch `pending` and the record,
/// nothing else.
pub(super) fn swap_in<R: Indexed + Stored>(
    tables: &mut Tables<'_>,
    id: &str,
    expect: Expect,
    record: Option<R>,
) -> Result<(Swap<R>, Option<R>), RoutingError> {
    let space = records_of(R::TAG);
    let current: Option<R> = match tables.get(space, id.as_bytes())? {
        Some(bytes) => Some(R::decode(id, &bytes)?),
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
            tables.insert(space, id.as_bytes(), record.encode()?)?;
            Swap::Written(record)
        }
        None => {
            tables.remove(space, id.as_bytes())?;
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
        tables.count_quotas(current.live_quotas(), -1);
    }
    if let Swap::Written(record) = &outcome {
        tables.count(tag, record.broker(), 1);
        tables.count_quotas(record.live_quotas(), 1);
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
        set_flag(tables, Space::Orphans, &index_key, now.0)?;
    }
    if now.1 != was.1 {
        set_flag(tables, Space::Pending, &index_key, now.1)?;
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
    tables: &mut Tables<'_>,
    space: Space,
    key: &str,
    on: bool,
) -> Result<(), RoutingError> {
    if on {
        tables.insert(space, key.as_bytes(), Vec::new())
    } else {
        tables.remove(space, key.as_bytes())
    }
}

/// The keyspace of the records whose [`Indexed::TAG`] is `tag`.
pub(super) fn records_of(tag: &str) -> Space {
    if tag == BindingRecord::TAG {
        Space::Bindings
    } else {
        Space::Instances
    }
}
