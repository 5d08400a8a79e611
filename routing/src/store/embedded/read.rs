//! Reading the embedded store: one record, an instance's bindings, an inventory page, every
//! record, live instances per plan; and, on open, what the store keeps in memory (the orphan and
//! pending indexes, the counts, the audit log's last seq).
//!
//! Point reads run on the caller's thread: a read served from fjall's memtables and block cache
//! (or the OS's page cache) costs a few µs, less than a hop to the blocking pool. Reads of more
//! than one entry see one snapshot. Scans run on the blocking pool (the store's `blocking`).

use std::collections::BTreeSet;

use super::codec::Stored;
use super::kv::{Kv, Space, count_of, seq_of};
use super::memory::{BINDING, INSTANCE, Memory};
use crate::RoutingError;
use crate::record::{BindingRecord, InstanceRecord};
use crate::store::inventory::{Listed, RecordFilter};

/// The id of a record's key.
fn id_of(key: &[u8]) -> Result<&str, RoutingError> {
    std::str::from_utf8(key).map_err(|e| super::store_error("read a record's id", e))
}

/// The record stored under `id`.
pub(super) fn record<R: Stored>(kv: &Kv, space: Space, id: &str) -> Result<Option<R>, RoutingError> {
    match kv.get(space, id.as_bytes())? {
        Some(bytes) => R::decode(id, &bytes).map(Some),
        None => Ok(None),
    }
}

/// The bindings of `instance_id`, through the instance → bindings links.
pub(super) fn bindings_of(kv: &Kv, instance_id: &str) -> Result<Vec<BindingRecord>, RoutingError> {
    let snapshot = kv.snapshot();
    let prefix = format!("{instance_id}\n");
    let mut out = Vec::new();
    for entry in kv.prefixed(&snapshot, Space::Links, prefix.as_bytes()) {
        let (key, _) = entry?;
        let Some(binding_id) = id_of(&key)?.strip_prefix(&prefix) else {
            continue;
        };
        if let Some(bytes) = fjall::Readable::get(&snapshot, kv.space(Space::Bindings), binding_id)
            .map_err(|e| super::store_error("read", e))?
        {
            out.push(BindingRecord::decode(binding_id, &bytes)?);
        }
    }
    Ok(out)
}

/// A record an inventory page can hold.
pub(super) trait Paged: Stored + Listed + Send + 'static {}
impl<R: Stored + Listed + Send + 'static> Paged for R {}

/// The records of `space` after the id `after` that `filter` selects, in id order, at most
/// `limit`: an inventory page, read in key order (no sort, no copy of the whole keyspace).
pub(super) fn page<R: Paged>(
    kv: &Kv,
    space: Space,
    filter: &RecordFilter,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<R>, RoutingError> {
    let snapshot = kv.snapshot();
    let mut out = Vec::new();
    for entry in kv.after(&snapshot, space, after.map(str::as_bytes)) {
        let (key, value) = entry?;
        let record = R::decode(id_of(&key)?, &value)?;
        if filter.matches(&record.facts()) {
            out.push(record);
            if out.len() >= limit {
                break;
            }
        }
    }
    Ok(out)
}

/// As [`page`], examining at most `budget` records: the page, and the id to resume after when it
/// filled or the budget ran out.
pub(super) fn scan<R: Paged>(
    kv: &Kv,
    space: Space,
    filter: &RecordFilter,
    after: Option<&str>,
    limit: usize,
    budget: usize,
) -> Result<crate::store::Scanned<R>, RoutingError> {
    let snapshot = kv.snapshot();
    let mut items = Vec::new();
    let mut examined = 0;
    let mut entries = kv.after(&snapshot, space, after.map(str::as_bytes)).peekable();
    while let Some(entry) = entries.next() {
        let (key, value) = entry?;
        let id = id_of(&key)?;
        let record = R::decode(id, &value)?;
        examined += 1;
        if filter.matches(&record.facts()) {
            items.push(record);
        }
        if (items.len() >= limit || examined >= budget.max(1)) && entries.peek().is_some() {
            return Ok(crate::store::Scanned {
                items,
                resume: Some(id.to_owned()),
            });
        }
    }
    Ok(crate::store::Scanned { items, resume: None })
}

/// Every record of `space`, in id order.
pub(super) fn all_records<R: Stored>(kv: &Kv, space: Space) -> Result<Vec<R>, RoutingError> {
    let snapshot = kv.snapshot();
    kv.after(&snapshot, space, None)
        .map(|entry| {
            let (key, value) = entry?;
            R::decode(id_of(&key)?, &value)
        })
        .collect()
}

/// Live instances per plan ([`crate::store::Store::live_plans`]), one record decoded at a time.
pub(super) fn live_plans(kv: &Kv) -> Result<Vec<crate::store::PlanCount>, RoutingError> {
    let snapshot = kv.snapshot();
    let mut counter = crate::store::PlanCounter::default();
    for entry in kv.after(&snapshot, Space::Instances, None) {
        let (key, value) = entry?;
        counter.add(&InstanceRecord::decode(id_of(&key)?, &value)?);
    }
    Ok(counter.finish())
}

/// What the store keeps in memory, from its keyspaces: the orphan and pending indexes and the
/// counts; and the audit log's last seq.
pub(super) fn load_memory(kv: &Kv) -> Result<(Memory, u64), RoutingError> {
    let snapshot = kv.snapshot();
    let mut memory = Memory::default();
    let keys = |space: Space| -> Result<BTreeSet<(u8, String)>, RoutingError> {
        let mut keys = BTreeSet::new();
        for entry in kv.after(&snapshot, space, None) {
            let (key, _) = entry?;
            if let Some((tag, id)) = id_of(&key)?.split_once(':') {
                keys.insert((if tag == "b" { BINDING } else { INSTANCE }, id.to_owned()));
            }
        }
        Ok(keys)
    };
    memory.orphans = keys(Space::Orphans)?;
    memory.pending = keys(Space::Pending)?;
    for entry in kv.after(&snapshot, Space::Counts, None) {
        let (key, n) = entry?;
        let (key, n) = (id_of(&key)?, count_of(&n));
        if let Some(broker) = key.strip_prefix("i:") {
            memory.counts.instances.insert(broker.to_owned(), n);
        } else if let Some(broker) = key.strip_prefix("b:") {
            memory.counts.bindings.insert(broker.to_owned(), n);
        } else if let Some(quota) = key.strip_prefix("q:") {
            memory.quotas.insert(quota.to_owned(), n);
        }
    }
    let audit_last = match kv.after(&snapshot, Space::Audit, None).next_back() {
        Some(entry) => seq_of(&entry?.0).unwrap_or(0),
        None => 0,
    };
    Ok((memory, audit_last))
}
