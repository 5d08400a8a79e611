//! Reading the embedded store's file: one record, an instance's bindings, an inventory page,
//! every record; and, on open, what the store keeps in memory (the orphan and pending indexes and
//! the counts, which a file of an earlier version gets once).
//!
//! Point reads run on the caller's thread: a read transaction served from redb's page cache (or
//! the OS's) costs a few µs, less than a hop to the blocking pool. Scans run on the blocking pool
//! (the store's `blocking`).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::batch::count_key;
use super::codec::Stored;
use super::memory::{BINDING, INSTANCE, Memory};
use super::{BINDINGS, COUNTED, COUNTS, INSTANCE_BINDINGS, INSTANCES, ORPHANS, PENDING, store_error};
use crate::RoutingError;
use crate::record::{BindingRecord, InstanceRecord};
use crate::store::indexed::Indexed;
use crate::store::inventory::{Listed, RecordFilter};

/// The record stored under `id`.
pub(super) fn record<R: Stored>(
    db: &Database,
    table: TableDefinition<&str, &[u8]>,
    id: &str,
) -> Result<Option<R>, RoutingError> {
    let txn = db.begin_read().map_err(|e| store_error("begin", e))?;
    let table = txn.open_table(table).map_err(|e| store_error("open table", e))?;
    match table.get(id).map_err(|e| store_error("read", e))? {
        Some(bytes) => R::decode(id, bytes.value()).map(Some),
        None => Ok(None),
    }
}

/// The bindings of `instance_id`, through the instance → bindings links.
pub(super) fn bindings_of(db: &Database, instance_id: &str) -> Result<Vec<BindingRecord>, RoutingError> {
    let txn = db.begin_read().map_err(|e| store_error("begin", e))?;
    let links = txn
        .open_table(INSTANCE_BINDINGS)
        .map_err(|e| store_error("open table", e))?;
    let bindings = txn
        .open_table(BINDINGS)
        .map_err(|e| store_error("open table", e))?;
    let prefix = format!("{instance_id}\n");
    let mut out = Vec::new();
    for entry in links
        .range(prefix.as_str()..)
        .map_err(|e| store_error("read", e))?
    {
        let (key, ()) = entry
            .map_err(|e| store_error("read", e))
            .map(|(k, v)| (k, v.value()))?;
        let Some(binding_id) = key.value().strip_prefix(&prefix) else {
            break;
        };
        if let Some(bytes) = bindings.get(binding_id).map_err(|e| store_error("read", e))? {
            out.push(BindingRecord::decode(binding_id, bytes.value())?);
        }
    }
    Ok(out)
}

/// A record an inventory page can hold, read from the file.
pub(super) trait Paged: Stored + Listed + Send + 'static {}
impl<R: Stored + Listed + Send + 'static> Paged for R {}

/// The records of `table` after the id `after` that `filter` selects, in id order, at most
/// `limit`: an inventory page, read in key order (no sort, no copy of the whole table).
pub(super) fn page<R: Paged>(
    db: &Database,
    table: TableDefinition<&str, &[u8]>,
    filter: &RecordFilter,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<R>, RoutingError> {
    let txn = db.begin_read().map_err(|e| store_error("begin", e))?;
    let table = txn.open_table(table).map_err(|e| store_error("open table", e))?;
    let range = match after {
        Some(after) => table.range::<&str>((Bound::Excluded(after), Bound::Unbounded)),
        None => table.range::<&str>(..),
    }
    .map_err(|e| store_error("read", e))?;
    let mut out = Vec::new();
    for entry in range {
        let (id, value) = entry.map_err(|e| store_error("read", e))?;
        let record = R::decode(id.value(), value.value())?;
        if filter.matches(&record.facts()) {
            out.push(record);
            if out.len() >= limit {
                break;
            }
        }
    }
    Ok(out)
}

/// Every record of `table`, in id order.
pub(super) fn all_records<R: Stored>(
    db: &Database,
    table: TableDefinition<&str, &[u8]>,
) -> Result<Vec<R>, RoutingError> {
    let txn = db.begin_read().map_err(|e| store_error("begin", e))?;
    let table = txn.open_table(table).map_err(|e| store_error("open table", e))?;
    let mut out = Vec::new();
    for entry in table.iter().map_err(|e| store_error("read", e))? {
        let (id, value) = entry.map_err(|e| store_error("read", e))?;
        out.push(R::decode(id.value(), value.value())?);
    }
    Ok(out)
}

/// Live instances per plan ([`crate::store::Store::live_plans`]), one record decoded at a time.
pub(super) fn live_plans(db: &Database) -> Result<Vec<crate::store::PlanCount>, RoutingError> {
    let txn = db.begin_read().map_err(|e| store_error("begin", e))?;
    let table = txn
        .open_table(INSTANCES)
        .map_err(|e| store_error("open table", e))?;
    let mut counter = crate::store::PlanCounter::default();
    for entry in table.iter().map_err(|e| store_error("read", e))? {
        let (id, value) = entry.map_err(|e| store_error("read", e))?;
        counter.add(&InstanceRecord::decode(id.value(), value.value())?);
    }
    Ok(counter.finish())
}

/// Fills the counts table from the records, once: files written before it was kept.
pub(super) fn count_once(txn: &redb::WriteTransaction) -> Result<(), RoutingError> {
    let mut counts = txn.open_table(COUNTS).map_err(|e| store_error("open table", e))?;
    if counts.get(COUNTED).map_err(|e| store_error("read", e))?.is_some() {
        return Ok(());
    }
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    count_table::<InstanceRecord>(txn, INSTANCES, INSTANCE, &mut totals)?;
    count_table::<BindingRecord>(txn, BINDINGS, BINDING, &mut totals)?;
    for (key, n) in totals {
        counts
            .insert(key.as_str(), n)
            .map_err(|e| store_error("write", e))?;
    }
    counts.insert(COUNTED, 1).map_err(|e| store_error("write", e))?;
    Ok(())
}

/// Adds the records of `table` (kind `tag`) per broker to `totals`.
fn count_table<R: Stored + Indexed>(
    txn: &redb::WriteTransaction,
    table: TableDefinition<&str, &[u8]>,
    tag: u8,
    totals: &mut BTreeMap<String, u64>,
) -> Result<(), RoutingError> {
    let table = txn.open_table(table).map_err(|e| store_error("open table", e))?;
    for entry in table.iter().map_err(|e| store_error("read", e))? {
        let (id, value) = entry.map_err(|e| store_error("read", e))?;
        let record = R::decode(id.value(), value.value())?;
        *totals.entry(count_key(tag, record.broker())).or_default() += 1;
    }
    Ok(())
}

/// What the store keeps in memory, from its tables: the orphan and pending indexes and the counts.
pub(super) fn load_memory(db: &Database) -> Result<Memory, RoutingError> {
    let txn = db.begin_read().map_err(|e| store_error("begin", e))?;
    let mut memory = Memory::default();
    let keys = |definition: TableDefinition<&str, ()>| -> Result<BTreeSet<(u8, String)>, RoutingError> {
        let table = txn
            .open_table(definition)
            .map_err(|e| store_error("open table", e))?;
        let mut keys = BTreeSet::new();
        for entry in table.iter().map_err(|e| store_error("read", e))? {
            let (key, ()) = entry
                .map_err(|e| store_error("read", e))
                .map(|(k, v)| (k, v.value()))?;
            if let Some((tag, id)) = key.value().split_once(':') {
                keys.insert((if tag == "b" { BINDING } else { INSTANCE }, id.to_owned()));
            }
        }
        Ok(keys)
    };
    memory.orphans = keys(ORPHANS)?;
    memory.pending = keys(PENDING)?;
    let counts = txn.open_table(COUNTS).map_err(|e| store_error("open table", e))?;
    for entry in counts.iter().map_err(|e| store_error("read", e))? {
        let (key, n) = entry.map_err(|e| store_error("read", e))?;
        let (key, n) = (key.value(), n.value());
        if let Some(broker) = key.strip_prefix("i:") {
            memory.counts.instances.insert(broker.to_owned(), n);
        } else if let Some(broker) = key.strip_prefix("b:") {
            memory.counts.bindings.insert(broker.to_owned(), n);
        }
    }
    Ok(memory)
}
