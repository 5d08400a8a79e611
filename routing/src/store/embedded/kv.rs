//! The embedded store's engine: one fjall database (an LSM tree: a journal plus sorted tables) in
//! the store's folder, with one keyspace per kind of entry ([`Space`]).
//!
//! fjall was chosen by measurement (`loadtests/results/engines-2026-12-06.md`): on the registry's
//! write pattern it writes 4.35× as fast as redb at 1M records for a quarter of the CPU, its cost
//! per write does not grow with the registry (it appends; a B-tree rewrites pages along random
//! keys), and it reopens 1M records in a fraction of a second.
//!
//! Memory is bounded here: a small block cache, small memtables and one background worker, so the
//! process's RSS does not grow with the registry (the OS's page cache holds what does not fit).

use std::ops::Bound;
use std::path::Path;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable, Snapshot};

use super::store_error;
use crate::RoutingError;

/// Block cache shared by every keyspace: registry reads are served from it.
const CACHE_BYTES: u64 = 8 * 1024 * 1024;
/// A record or audit keyspace's memtable before it is flushed to a sorted table (fjall's default
/// is 64 MiB for each keyspace); the other keyspaces' entries are small: [`SMALL_MEMTABLE_BYTES`].
/// Measured (`loadtests/results/ab-2026-12-06-fjall.md`): 2 MB took the same RSS and doubled the
/// p99 at half saturation (more flushes and compactions on the request path's cores).
const MEMTABLE_BYTES: u64 = 4 * 1024 * 1024;
const SMALL_MEMTABLE_BYTES: u64 = 1024 * 1024;
/// Journal kept before memtables are flushed so that older journal files can go.
const JOURNAL_BYTES: u64 = 64 * 1024 * 1024;

/// Longest key fjall takes (it asserts on longer and on empty keys).
const MAX_KEY_BYTES: usize = u16::MAX as usize;

/// `key` when fjall can store it; an error (never its assertion) otherwise.
pub(super) fn checked(key: &[u8]) -> Result<&[u8], RoutingError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(RoutingError::Store(format!(
            "a key of {} bytes cannot be stored (1 to {MAX_KEY_BYTES})",
            key.len()
        )));
    }
    Ok(key)
}

/// The keyspaces of the store, each holding one kind of entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Space {
    /// instance id → [`crate::record::InstanceRecord`] (its [`super::codec`] form).
    Instances,
    /// binding id → [`crate::record::BindingRecord`] ([`super::codec`]).
    Bindings,
    /// "<instance id>\n<binding id>" → empty: the bindings of an instance, for cascading deletes.
    Links,
    /// "i:<id>" / "b:<id>" → empty: records being orphan-mitigated.
    Orphans,
    /// "i:<id>" / "b:<id>" → empty: records with a write-ahead intent.
    Pending,
    /// "i:<broker>" / "b:<broker>" → how many records (u64, little-endian).
    Counts,
    /// seq (u64, big-endian, so keys sort by seq) → [`crate::audit::AuditRecord`] as JSON.
    Audit,
    /// broker name → raw catalog body.
    CatalogBodies,
    /// broker name → the catalog's validators and fetch time as JSON.
    CatalogMeta,
}

impl Space {
    fn name(self) -> &'static str {
        match self {
            Space::Instances => "instances",
            Space::Bindings => "bindings",
            Space::Links => "instance_bindings",
            Space::Orphans => "orphans",
            Space::Pending => "pending",
            Space::Counts => "counts",
            Space::Audit => "audit",
            Space::CatalogBodies => "catalog_bodies",
            Space::CatalogMeta => "catalog_meta",
        }
    }
}

/// One handle per [`Space`].
struct Spaces {
    instances: Keyspace,
    bindings: Keyspace,
    links: Keyspace,
    orphans: Keyspace,
    pending: Keyspace,
    counts: Keyspace,
    audit: Keyspace,
    catalog_bodies: Keyspace,
    catalog_meta: Keyspace,
}

/// The open database and its keyspaces.
pub(super) struct Kv {
    db: Database,
    spaces: Spaces,
    /// A batch failed to commit: fjall takes no more writes until the process restarts.
    failed: std::sync::atomic::AtomicBool,
}

/// A key and its value, as read.
pub(super) type Entry = (fjall::UserKey, fjall::UserValue);

impl Kv {
    /// Opens (creating it if needed) the database in the folder `path`.
    pub(super) fn open(path: &Path) -> Result<Kv, RoutingError> {
        let shown = path.display();
        let db = Database::builder(path)
            .cache_size(CACHE_BYTES)
            .max_journaling_size(JOURNAL_BYTES)
            .worker_threads(1)
            .open()
            .map_err(|e| match e {
                fjall::Error::Locked => RoutingError::Store(format!(
                    "{shown} is in use by another process (one gateway per embedded store)"
                )),
                e => store_error(&format!("open {shown}"), e),
            })?;
        let open = |space: Space| {
            let memtable = match space {
                Space::Instances | Space::Bindings | Space::Audit => MEMTABLE_BYTES,
                _ => SMALL_MEMTABLE_BYTES,
            };
            db.keyspace(space.name(), || {
                KeyspaceCreateOptions::default().max_memtable_size(memtable)
            })
            .map_err(|e| store_error(&format!("open keyspace {}", space.name()), e))
        };
        let spaces = Spaces {
            instances: open(Space::Instances)?,
            bindings: open(Space::Bindings)?,
            links: open(Space::Links)?,
            orphans: open(Space::Orphans)?,
            pending: open(Space::Pending)?,
            counts: open(Space::Counts)?,
            audit: open(Space::Audit)?,
            catalog_bodies: open(Space::CatalogBodies)?,
            catalog_meta: open(Space::CatalogMeta)?,
        };
        Ok(Kv {
            db,
            spaces,
            failed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub(super) fn space(&self, space: Space) -> &Keyspace {
        let spaces = &self.spaces;
        match space {
            Space::Instances => &spaces.instances,
            Space::Bindings => &spaces.bindings,
            Space::Links => &spaces.links,
            Space::Orphans => &spaces.orphans,
            Space::Pending => &spaces.pending,
            Space::Counts => &spaces.counts,
            Space::Audit => &spaces.audit,
            Space::CatalogBodies => &spaces.catalog_bodies,
            Space::CatalogMeta => &spaces.catalog_meta,
        }
    }

    /// A new write batch, made durable (journal synced) when committed.
    pub(super) fn batch(&self) -> fjall::OwnedWriteBatch {
        self.db.batch().durability(Some(PersistMode::SyncData))
    }

    /// A consistent view across keyspaces, for reads of more than one entry.
    pub(super) fn snapshot(&self) -> Snapshot {
        self.db.snapshot()
    }

    /// The value under `key`, as committed.
    pub(super) fn get(&self, space: Space, key: &[u8]) -> Result<Option<fjall::UserValue>, RoutingError> {
        self.space(space).get(key).map_err(|e| store_error("read", e))
    }

    /// The entries of `space` in key order after `after` (all when `None`), in `snapshot`.
    pub(super) fn after<'s>(
        &self,
        snapshot: &'s Snapshot,
        space: Space,
        after: Option<&[u8]>,
    ) -> impl DoubleEndedIterator<Item = Result<Entry, RoutingError>> + 's {
        let range: (Bound<Vec<u8>>, Bound<Vec<u8>>) = match after {
            Some(after) => (Bound::Excluded(after.to_vec()), Bound::Unbounded),
            None => (Bound::Unbounded, Bound::Unbounded),
        };
        snapshot
            .range(self.space(space), range)
            .map(|guard| guard.into_inner().map_err(|e| store_error("read", e)))
    }

    /// The entries of `space` in key order before `before`, in `snapshot`.
    pub(super) fn before<'s>(
        &self,
        snapshot: &'s Snapshot,
        space: Space,
        before: &[u8],
    ) -> impl DoubleEndedIterator<Item = Result<Entry, RoutingError>> + 's {
        snapshot
            .range(self.space(space), ..before.to_vec())
            .map(|guard| guard.into_inner().map_err(|e| store_error("read", e)))
    }

    /// The entries of `space` whose key starts with `prefix`, in key order, in `snapshot`.
    pub(super) fn prefixed<'s>(
        &self,
        snapshot: &'s Snapshot,
        space: Space,
        prefix: &[u8],
    ) -> impl Iterator<Item = Result<Entry, RoutingError>> + 's {
        snapshot
            .prefix(self.space(space), prefix)
            .map(|guard| guard.into_inner().map_err(|e| store_error("read", e)))
    }

    /// Writes one entry outside any batch (copying a store of an earlier version); durable after
    /// [`Kv::persist`].
    pub(super) fn put(&self, space: Space, key: &[u8], value: &[u8]) -> Result<(), RoutingError> {
        self.space(space)
            .insert(checked(key)?, value)
            .map_err(|e| store_error("write", e))
    }

    /// Notes that a batch failed to commit.
    pub(super) fn set_failed(&self) {
        self.failed.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether a batch failed to commit since the store was opened.
    pub(super) fn failed(&self) -> bool {
        self.failed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Syncs the journal (and what it holds) to disk.
    pub(super) fn persist(&self) -> Result<(), RoutingError> {
        self.db
            .persist(PersistMode::SyncAll)
            .map_err(|e| store_error("sync", e))
    }
}

/// The audit log's key of `seq`.
pub(super) fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// The seq of an audit log key.
pub(super) fn seq_of(key: &[u8]) -> Option<u64> {
    key.try_into().ok().map(u64::from_be_bytes)
}

/// A count's stored form.
pub(super) fn count_value(n: u64) -> [u8; 8] {
    n.to_le_bytes()
}

/// The count of a stored value (0 when unreadable).
pub(super) fn count_of(value: &[u8]) -> u64 {
    value.try_into().map_or(0, u64::from_le_bytes)
}
