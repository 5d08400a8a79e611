//! `osb-routing`: everything between the platform-facing handlers and the upstream brokers.
//!
//! # Layout
//! - [`catalog`]: IO-free catalog pipeline: wire types, validation, namespacing, id rewriting,
//!   merge and the [`RouteTable`] (gateway ids → broker + upstream ids).
//! - [`upstream`]: the HTTP client of one upstream broker (the gateway acting as a platform);
//!   [`breaker`]: its circuit breaker and retry budget.
//! - [`brokers`]: the upstream brokers' clients by name, and whether each takes new calls.
//! - [`cache`]: last good catalogs, background refreshers, the merged [`CatalogSnapshot`] and
//!   each platform's [`CatalogView`]; it only caches (the policy and the clients live beside it).
//! - [`policy`]: the policy in force ([`Policies`]) and what is derived from it per reload.
//! - [`registry`]: the ownership registry: who owns each instance and binding, where it lives,
//!   what is in flight; write-ahead intents, outcomes, recovery. [`record`]: what it keeps.
//! - [`mitigation`]: the worker that deletes upstream what the gateway absorbed a failure for.
//! - [`store`]: durable state behind the [`Store`] trait (an embedded fjall database by default).
//! - [`audit`]: the audit log's records and queries (kept by the store).
//! - [`resource`]: the id grammar of instances, bindings and operations, and the upstream paths
//!   built from checked ids segment by segment.
//! - [`headers`]: OSB header names.
//! - [`error`]: the crate's one error type, [`RoutingError`]; [`clock`]: milliseconds since the epoch.

pub mod audit;
pub mod breaker;
pub mod brokers;
pub mod cache;
pub mod catalog;
pub mod clock;
pub mod error;
pub mod headers;
pub mod mitigation;
pub mod policy;
pub mod record;
pub mod registry;
pub mod resource;
pub mod store;
pub mod upstream;

pub use brokers::Brokers;
pub use cache::{
    Availability, BrokerStatus, CatalogCache, CatalogSnapshot, CatalogView, Freshness, Unavailable,
};
pub use catalog::{Catalog, RouteTable};
pub use error::RoutingError;
pub use policy::{Policies, PolicyState};
pub use registry::Registry;
pub use resource::{OsbId, UpstreamPath};
pub use store::Store;
pub use upstream::UpstreamBroker;
