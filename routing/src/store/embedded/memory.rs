//! The embedded store's memory: what it answers without reading the disk — the orphan and pending
//! indexes, the records per broker, orphan claims and replica heartbeats. The records themselves
//! stay on disk (read through fjall's block cache), so memory does not grow with the registry and
//! start-up reads no record. It changes only after a commit succeeded.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::store::{RecordCounts, RecordRef};

pub(super) const INSTANCE: u8 = b'i';
pub(super) const BINDING: u8 = b'b';
/// The counts table's kind of a quota count (keyed by the quota key rather than a broker).
pub(super) const QUOTA: u8 = b'q';

/// A committed change, applied to the memory.
#[derive(Debug)]
pub(super) enum Change {
    /// A record's orphan and pending flags as they are now (both `false` once it is deleted).
    Flags {
        key: (u8, String),
        orphaned: bool,
        pending: bool,
    },
    /// `delta` more records of this kind (`i`, `b`) of this broker.
    Count { key: (u8, String), delta: i64 },
}

/// The indexes and counts the store answers from memory.
#[derive(Default)]
pub(super) struct Memory {
    pub(super) orphans: BTreeSet<(u8, String)>,
    pub(super) pending: BTreeSet<(u8, String)>,
    /// orphan → (owner, claimed until ms): who works it (in memory only, see the module docs).
    pub(super) claims: HashMap<(u8, String), (String, u64)>,
    /// replica id → last heartbeat (ms).
    pub(super) replicas: HashMap<String, u64>,
    /// Records per broker, kept as records change (`/metrics` reads them without a scan).
    pub(super) counts: RecordCounts,
    /// Live records per quota key (counts at zero are dropped).
    pub(super) quotas: BTreeMap<String, u64>,
}

/// Adds `delta` to `broker`'s count (never below zero; a broker counted once stays, at zero).
pub(super) fn add(counts: &mut BTreeMap<String, u64>, broker: &str, delta: i64) {
    if !counts.contains_key(broker) {
        counts.insert(broker.to_owned(), 0);
    }
    if let Some(n) = counts.get_mut(broker) {
        *n = n.saturating_add_signed(delta);
    }
}

impl Memory {
    pub(super) fn apply(&mut self, change: Change) {
        match change {
            Change::Flags {
                key,
                orphaned,
                pending,
            } => {
                if pending {
                    self.pending.insert(key.clone());
                } else {
                    self.pending.remove(&key);
                }
                if orphaned {
                    self.orphans.insert(key);
                } else {
                    self.orphans.remove(&key);
                    self.claims.remove(&key);
                }
            }
            Change::Count {
                key: (QUOTA, key),
                delta,
            } => {
                let now = self
                    .quotas
                    .get(&key)
                    .copied()
                    .unwrap_or(0)
                    .saturating_add_signed(delta);
                if now == 0 {
                    self.quotas.remove(&key);
                } else {
                    self.quotas.insert(key, now);
                }
            }
            Change::Count {
                key: (tag, broker),
                delta,
            } => {
                let counts = if tag == BINDING {
                    &mut self.counts.bindings
                } else {
                    &mut self.counts.instances
                };
                add(counts, &broker, delta);
            }
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
