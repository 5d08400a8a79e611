//! Stores of earlier versions: one redb file where the store's folder now is. Opening such a path
//! moves its content into a new fjall folder, once, and keeps the file beside it:
//!
//! 1. the folder is built at `<path>.migrating` (one left by an interrupted run is removed first):
//!    every record (rewritten in the current [`codec`](super::codec) format), the audit log and
//!    the catalogs are copied; the orphan and pending indexes, the instance → bindings links and
//!    the counts are rebuilt from the records; then it is synced;
//! 2. the file is renamed to `<path>.redb-backup`, then the folder to `<path>`.
//!
//! A crash before step 2 leaves the file where it was (the next start begins again); a crash
//! between the two renames is finished by the next start. Nothing is deleted: the operator
//! removes the backup once satisfied. A backup with no store at the path is refused, never
//! answered with an empty store. The copy runs under the file's lock: one process moves it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::batch::count_key;
use super::codec::Stored;
use super::kv::{Kv, Space, count_value, seq_key};
use super::memory::{BINDING, INSTANCE};
use super::store_error;
use crate::RoutingError;
use crate::record::{BindingRecord, InstanceRecord};
use crate::store::indexed::Indexed;

const INSTANCES: TableDefinition<&str, &[u8]> = TableDefinition::new("instances");
const BINDINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("bindings");
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
const CATALOG_BODIES: TableDefinition<&str, &[u8]> = TableDefinition::new("catalog_bodies");
const CATALOG_META: TableDefinition<&str, &str> = TableDefinition::new("catalog_meta");

/// `<path><suffix>`.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Where the file of an earlier version is kept once moved.
pub(super) fn backup_of(path: &Path) -> PathBuf {
    beside(path, ".redb-backup")
}

/// Makes `path` a store folder: moves a redb file found there into one, or finishes a move that
/// was interrupted. Returns whether it moved a file.
pub(super) fn migrate_earlier_file(path: &Path) -> Result<bool, RoutingError> {
    let staged = beside(path, ".migrating");
    let backup = backup_of(path);
    if !path.exists() && backup.is_file() {
        if staged.is_dir() {
            std::fs::rename(&staged, path).map_err(|e| store_error("finish moving the store", e))?;
            return Ok(true);
        }
        // Never answer with an empty store where one was moved from.
        return Err(RoutingError::Store(format!(
            "no store at {} but {} is there: move that file back to {0} to move it into a              store folder again, or remove it to start with an empty store",
            path.display(),
            backup.display()
        )));
    }
    if !path.is_file() {
        return Ok(false);
    }
    // Opening the file takes its lock: a second gateway started on the same path stops here
    // rather than removing the first one's folder under it.
    let shown = path.display().to_string();
    let file = Database::open(path).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => RoutingError::Store(format!(
            "{shown} is in use by another process (one gateway per embedded store)"
        )),
        e => store_error(&format!("open {shown} (a store file of an earlier version)"), e),
    })?;
    if staged.exists() {
        std::fs::remove_dir_all(&staged)
            .map_err(|e| store_error(&format!("remove {}", staged.display()), e))?;
    }
    {
        let kv = Kv::open(&staged)?;
        copy(&file, &kv)?;
        kv.persist()?;
    }
    std::fs::rename(path, &backup).map_err(|e| store_error("keep the earlier file", e))?;
    std::fs::rename(&staged, path).map_err(|e| store_error("move the store", e))?;
    drop(file);
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && let Ok(dir) = std::fs::File::open(parent)
    {
        // The renames are durable once the folder holding them is.
        let _ = dir.sync_all();
    }
    Ok(true)
}

/// Copies the redb file's content into `kv`, rebuilding its indexes and counts.
fn copy(file: &Database, kv: &Kv) -> Result<(), RoutingError> {
    let txn = file.begin_read().map_err(|e| store_error("begin", e))?;
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    copy_records::<InstanceRecord>(&txn, INSTANCES, kv, INSTANCE, &mut counts)?;
    copy_records::<BindingRecord>(&txn, BINDINGS, kv, BINDING, &mut counts)?;
    for (key, n) in counts {
        kv.put(Space::Counts, key.as_bytes(), &count_value(n))?;
    }
    if let Some(audit) = open(&txn, AUDIT)? {
        for entry in audit.iter().map_err(|e| store_error("read", e))? {
            let (seq, value) = entry.map_err(|e| store_error("read", e))?;
            kv.put(Space::Audit, &seq_key(seq.value()), value.value())?;
        }
    }
    if let Some(bodies) = open(&txn, CATALOG_BODIES)? {
        for entry in bodies.iter().map_err(|e| store_error("read", e))? {
            let (broker, body) = entry.map_err(|e| store_error("read", e))?;
            kv.put(Space::CatalogBodies, broker.value().as_bytes(), body.value())?;
        }
    }
    if let Some(metas) = open(&txn, CATALOG_META)? {
        for entry in metas.iter().map_err(|e| store_error("read", e))? {
            let (broker, meta) = entry.map_err(|e| store_error("read", e))?;
            kv.put(
                Space::CatalogMeta,
                broker.value().as_bytes(),
                meta.value().as_bytes(),
            )?;
        }
    }
    Ok(())
}

/// The table `definition` of the file, `None` when the file never had it.
fn open<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &redb::ReadTransaction,
    definition: TableDefinition<K, V>,
) -> Result<Option<redb::ReadOnlyTable<K, V>>, RoutingError> {
    match txn.open_table(definition) {
        Ok(table) => Ok(Some(table)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(store_error("open table", e)),
    }
}

/// Copies the records of `table` (kind `tag`), with their index entries, and counts them.
fn copy_records<R: Stored + Indexed>(
    txn: &redb::ReadTransaction,
    table: TableDefinition<&str, &[u8]>,
    kv: &Kv,
    tag: u8,
    counts: &mut BTreeMap<String, u64>,
) -> Result<(), RoutingError> {
    let Some(table) = open(txn, table)? else {
        return Ok(());
    };
    let space = super::batch::records_of(R::TAG);
    for entry in table.iter().map_err(|e| store_error("read", e))? {
        let (id, value) = entry.map_err(|e| store_error("read", e))?;
        let id = id.value();
        let record = R::decode(id, value.value())?;
        kv.put(space, id.as_bytes(), &record.encode()?)?;
        let index_key = format!("{}:{id}", char::from(tag));
        if record.is_orphaned() {
            kv.put(Space::Orphans, index_key.as_bytes(), &[])?;
        }
        if record.is_pending() {
            kv.put(Space::Pending, index_key.as_bytes(), &[])?;
        }
        if let Some(instance_id) = record.instance_of() {
            kv.put(Space::Links, format!("{instance_id}\n{id}").as_bytes(), &[])?;
        }
        *counts.entry(count_key(tag, record.broker())).or_default() += 1;
    }
    Ok(())
}
