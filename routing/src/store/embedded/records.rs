//! The embedded store's record writes as they run inside a batch ([`super::batch`]): the
//! compare-and-swap of an instance (with the cascade to its bindings) and of a binding (with its
//! link to its instance), and the creation of a record within its quotas. Each runs on the writer
//! thread, so a count read here cannot be overtaken by another write.

use super::batch::{Tables, flags_changed, records_of, swap_in};
use super::codec::Stored;
use super::kv::Space;
use super::memory::BINDING;
use crate::RoutingError;
use crate::record::{BindingRecord, InstanceRecord};
use crate::store::indexed::Indexed;
use crate::store::{Created, Expect, Swap};

/// Compare-and-swap of instance `id`; deleting it deletes its bindings.
pub(super) fn swap_instance_in(
    tables: &mut Tables<'_>,
    id: &str,
    expect: Expect,
    record: Option<InstanceRecord>,
) -> Result<Swap<InstanceRecord>, RoutingError> {
    let deleting = record.is_none();
    let (outcome, _) = swap_in(tables, id, expect, record)?;
    if deleting && outcome == Swap::Deleted {
        // Cascade: the bindings of a deleted instance are gone with it.
        let prefix = format!("{id}\n");
        for key in tables.keys_with_prefix(Space::Links, prefix.as_bytes())? {
            tables.remove(Space::Links, &key)?;
            let Some(binding_id) = std::str::from_utf8(&key)
                .ok()
                .and_then(|key| key.strip_prefix(&prefix))
            else {
                continue;
            };
            let removed = tables
                .get(Space::Bindings, binding_id.as_bytes())?
                .map(|bytes| BindingRecord::decode(binding_id, &bytes))
                .transpose()?;
            tables.remove(Space::Bindings, binding_id.as_bytes())?;
            if let Some(old) = removed {
                tables.count(BINDING, &old.broker, -1);
                tables.count_quotas(old.live_quotas(), -1);
                let was = (old.is_orphaned(), old.is_pending());
                flags_changed(tables, BINDING, binding_id, was, (false, false))?;
            }
        }
    }
    Ok(outcome)
}

/// Compare-and-swap of binding `id`, keeping its instance's link.
pub(super) fn swap_binding_in(
    tables: &mut Tables<'_>,
    id: &str,
    expect: Expect,
    record: Option<BindingRecord>,
) -> Result<Swap<BindingRecord>, RoutingError> {
    let deleting = record.is_none();
    let instance_id = record.as_ref().map(|r| r.instance_id.clone());
    let (outcome, stored) = swap_in(tables, id, expect, record)?;
    // The instance → bindings link exists exactly while the binding does (a binding never
    // moves to another instance): written when it is created, removed when it is deleted.
    match (&outcome, &stored, deleting) {
        (Swap::Written(_), None, _) => {
            let link = format!("{}\n{id}", instance_id.unwrap_or_default());
            tables.insert(Space::Links, link.as_bytes(), Vec::new())?;
        }
        (Swap::Deleted, Some(old), true) => {
            let link = format!("{}\n{id}", old.instance_id);
            tables.remove(Space::Links, link.as_bytes())?;
        }
        _ => {}
    }
    Ok(outcome)
}

/// A compare-and-swap of one kind of record inside the batch.
pub(super) type SwapIn<R> = fn(&mut Tables<'_>, &str, Expect, Option<R>) -> Result<Swap<R>, RoutingError>;

/// Writes `record` as new with `swap` if each of its quota counts is below its limit (`limits`, in
/// the order of `record.quotas`), counted with the batch's earlier writes.
pub(super) fn create_in<R: Indexed>(
    tables: &mut Tables<'_>,
    record: R,
    limits: &[u64],
    swap: SwapIn<R>,
) -> Result<Created<R>, RoutingError> {
    // An id that exists is a conflict (a retry, another platform's), not a place taken.
    if tables.get(records_of(R::TAG), record.id().as_bytes())?.is_some() {
        return Ok(Created::Conflict);
    }
    for (key, limit) in record.quotas().iter().zip(limits) {
        let usage = tables.quota_used(key)?;
        if usage >= *limit {
            return Ok(Created::Full {
                key: key.clone(),
                usage,
                limit: *limit,
            });
        }
    }
    let id = record.id().to_owned();
    Ok(match swap(tables, &id, Expect::Absent, Some(record))? {
        Swap::Written(record) => Created::Written(record),
        Swap::Deleted | Swap::Conflict => Created::Conflict,
    })
}
