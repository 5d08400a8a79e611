//! The embedded store's mirror: every record in memory with the indexes the store answers from
//! (registry reads never touch redb). It changes only after a commit succeeded.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::record::{BindingRecord, InstanceRecord};
use crate::store::indexed::Indexed;
use crate::store::{RecordCounts, RecordRef};

/// A committed change of one record, applied to the mirror.
pub(super) enum Change {
    PutInstance(InstanceRecord),
    /// The instance and, with it, its bindings.
    DeleteInstance(String),
    PutBinding(BindingRecord),
    DeleteBinding(String),
}

/// Every record in memory, with the indexes the store answers from.
#[derive(Default)]
pub(super) struct Mirror {
    pub(super) instances: HashMap<String, InstanceRecord>,
    pub(super) bindings: HashMap<String, BindingRecord>,
    /// instance id → its binding ids.
    pub(super) by_instance: HashMap<String, BTreeSet<String>>,
    pub(super) orphans: BTreeSet<(u8, String)>,
    pub(super) pending: BTreeSet<(u8, String)>,
    /// orphan → (owner, claimed until ms): who works it (in memory only, see the module docs).
    pub(super) claims: HashMap<(u8, String), (String, u64)>,
    /// replica id → last heartbeat (ms).
    pub(super) replicas: HashMap<String, u64>,
    /// Records per broker, kept as records change (`/metrics` reads them without a scan).
    pub(super) counts: RecordCounts,
}

/// Counts one more (`up`) or one fewer record of `broker` in `counts`.
fn count(counts: &mut BTreeMap<String, u64>, broker: &str, up: bool) {
    if up {
        match counts.get_mut(broker) {
            Some(n) => *n += 1,
            None => {
                counts.insert(broker.to_owned(), 1);
            }
        }
    } else if let Some(n) = counts.get_mut(broker) {
        *n = n.saturating_sub(1);
    }
}

pub(super) const INSTANCE: u8 = b'i';
pub(super) const BINDING: u8 = b'b';

impl Mirror {
    pub(super) fn flags<R: Indexed>(&mut self, tag: u8, id: &str, record: Option<&R>) {
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

    pub(super) fn put_binding(&mut self, record: BindingRecord) {
        let id = record.binding_id.clone();
        self.flags(BINDING, &id, Some(&record));
        self.by_instance
            .entry(record.instance_id.clone())
            .or_default()
            .insert(id.clone());
        count(&mut self.counts.bindings, &record.broker, true);
        if let Some(old) = self.bindings.insert(id, record) {
            count(&mut self.counts.bindings, &old.broker, false);
        }
    }

    pub(super) fn delete_binding(&mut self, id: &str) {
        self.flags::<BindingRecord>(BINDING, id, None);
        if let Some(old) = self.bindings.remove(id) {
            count(&mut self.counts.bindings, &old.broker, false);
            if let Some(set) = self.by_instance.get_mut(&old.instance_id) {
                set.remove(id);
            }
        }
    }

    pub(super) fn apply(&mut self, change: Change) {
        match change {
            Change::PutInstance(record) => {
                let id = record.instance_id.clone();
                self.flags(INSTANCE, &id, Some(&record));
                count(&mut self.counts.instances, &record.broker, true);
                if let Some(old) = self.instances.insert(id, record) {
                    count(&mut self.counts.instances, &old.broker, false);
                }
            }
            Change::DeleteInstance(id) => {
                self.flags::<InstanceRecord>(INSTANCE, &id, None);
                if let Some(old) = self.instances.remove(&id) {
                    count(&mut self.counts.instances, &old.broker, false);
                }
                for binding in self.by_instance.remove(&id).unwrap_or_default() {
                    self.delete_binding(&binding);
                }
            }
            Change::PutBinding(record) => self.put_binding(record),
            Change::DeleteBinding(id) => self.delete_binding(&id),
        }
    }

    pub(super) fn refs(set: &BTreeSet<(u8, String)>) -> Vec<RecordRef> {
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
