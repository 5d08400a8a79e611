//! What every backend needs to know of a record to keep its indexes: its version (compare-and-swap)
//! and whether it belongs in the orphan and pending indexes.
//!
//! One definition for all backends, so "orphaned" and "pending" mean the same everywhere: a record
//! is orphaned when its state is [`ResourceState::Orphaned`], pending when its operation is a
//! write-ahead intent ([`Phase::Sent`]).

use serde::{Deserialize, Serialize};

use crate::record::{BindingRecord, InstanceRecord, Phase, ResourceState};

/// A record a store keeps, with what its indexes need.
pub(super) trait Indexed:
    Serialize + for<'de> Deserialize<'de> + Clone + std::fmt::Debug + Send + Sync + 'static
{
    /// `i` or `b`: the record's kind in index keys.
    const TAG: &'static str;
    /// Its instance or binding id.
    fn id(&self) -> &str;
    fn version(&self) -> u64;
    fn set_version(&mut self, version: u64);
    fn is_orphaned(&self) -> bool;
    fn is_pending(&self) -> bool;
    /// The instance a binding belongs to (`None` for an instance).
    fn instance_of(&self) -> Option<&str>;
    /// The broker it lives on (the records-per-broker counts).
    fn broker(&self) -> &str;
    /// The quota counts it is counted in while it is live (not orphaned).
    fn quotas(&self) -> &[String];
    /// The quota counts it is counted in now: none once orphaned.
    fn live_quotas(&self) -> &[String] {
        if self.is_orphaned() { &[] } else { self.quotas() }
    }
}

impl Indexed for InstanceRecord {
    const TAG: &'static str = "i";
    fn id(&self) -> &str {
        &self.instance_id
    }
    fn version(&self) -> u64 {
        self.version
    }
    fn set_version(&mut self, version: u64) {
        self.version = version;
    }
    fn is_orphaned(&self) -> bool {
        matches!(self.state, ResourceState::Orphaned(_))
    }
    fn is_pending(&self) -> bool {
        self.operation.as_ref().is_some_and(|o| o.phase == Phase::Sent)
    }
    fn instance_of(&self) -> Option<&str> {
        None
    }
    fn broker(&self) -> &str {
        &self.broker
    }
    fn quotas(&self) -> &[String] {
        &self.quotas
    }
}

impl Indexed for BindingRecord {
    const TAG: &'static str = "b";
    fn id(&self) -> &str {
        &self.binding_id
    }
    fn version(&self) -> u64 {
        self.version
    }
    fn set_version(&mut self, version: u64) {
        self.version = version;
    }
    fn is_orphaned(&self) -> bool {
        matches!(self.state, ResourceState::Orphaned(_))
    }
    fn is_pending(&self) -> bool {
        self.operation.as_ref().is_some_and(|o| o.phase == Phase::Sent)
    }
    fn instance_of(&self) -> Option<&str> {
        Some(&self.instance_id)
    }
    fn broker(&self) -> &str {
        &self.broker
    }
    fn quotas(&self) -> &[String] {
        &self.quotas
    }
}
