//! `osb-policies`: pure evaluation of the platform team's policy.
//!
//! Facts in, decision and explanation out; no IO, no clock, no HTTP types. The gateway fills
//! [`PlanFacts`] and [`CallFacts`] from the catalog and the request, asks, and acts on the answer.
//!
//! # Layout
//! - [`file`]: the policy language as written (the reference for every key).
//! - [`policy`]: the compiled [`Policy`] (validated whole, every problem reported).
//! - [`facts`]: what the gateway tells the policy.
//! - [`decide`]: visibility, deny rules, placement of logical offerings, parameter rules; each
//!   decision carries an [`Explanation`].
//! - quotas ([`Policy::quotas_for`]): which counts a new instance or binding joins; the registry
//!   counts and refuses.
//! - [`schema`]: parameters checked against a plan's JSON schema.
//! - [`glob`]: name patterns.

pub mod decide;
pub mod facts;
pub mod file;
pub mod glob;
pub mod policy;
pub mod schema;

pub use decide::{Alternative, Denial, DenialKind, Explanation, Parameters, Placement, Visibility};
pub use facts::{CallFacts, Operation, PlanFacts};
pub use policy::{Counted, Limits, Offering, OfferingPlan, PlatformLimit, Policy, QuotaHold, Rate};
pub use schema::Schema;

/// Why a policy file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file has problems; every one is listed, each naming file and key.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<osb_config::Problem>),
}

#[cfg(test)]
mod tests;
