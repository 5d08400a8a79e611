//! The policy in force: the platform team's [`Policy`] and what is derived from it once per
//! reload (the logical offerings' ids and catalog entries), swapped whole on every reload so that a
//! call sees one policy from start to end.

use std::sync::Arc;

use arc_swap::ArcSwap;
use osb_policies::Policy;

use crate::catalog::{LogicalTable, Service, offering_service};

/// The policy in force and what is derived from it once per change.
#[derive(Debug)]
pub struct PolicyState {
    pub policy: Arc<Policy>,
    /// Bumped on every reload.
    pub generation: u64,
    /// Recognises logical offering ids.
    pub logical: LogicalTable,
    /// The logical offerings' catalog entries.
    pub offerings: Vec<Service>,
}

impl PolicyState {
    /// Derives the logical-offering table and catalog entries of `policy`.
    pub fn new(policy: Arc<Policy>, generation: u64) -> Self {
        PolicyState {
            logical: LogicalTable::new(&policy),
            offerings: policy.offerings.iter().map(offering_service).collect(),
            policy,
            generation,
        }
    }
}

/// Holds the [`PolicyState`] in force; reloads swap it.
#[derive(Debug)]
pub struct Policies {
    current: ArcSwap<PolicyState>,
}

impl Default for Policies {
    fn default() -> Self {
        Policies {
            current: ArcSwap::from_pointee(PolicyState::new(Arc::new(Policy::default()), 0)),
        }
    }
}

impl Policies {
    /// Puts `policy` in force: later catalog views and decisions use it. Returns its generation.
    pub fn set(&self, policy: Arc<Policy>) -> u64 {
        let generation = self.current.load().generation + 1;
        self.current.store(Arc::new(PolicyState::new(policy, generation)));
        generation
    }

    /// The policy in force.
    pub fn current(&self) -> Arc<PolicyState> {
        self.current.load_full()
    }
}
