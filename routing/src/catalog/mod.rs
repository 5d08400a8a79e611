//! The catalog pipeline, IO-free: validate each broker's catalog, then merge them.
//!
//! ```text
//! upstream bytes ─▶ measure (limits) ─▶ validate_catalog ─▶ Validated{services, dropped}
//!                                              │  (one per broker, in config order)
//!                                              ▼
//!                                     merge ─▶ Merged{catalog, routes, dropped, warnings}
//! ```
//! Logical offerings (services the policy defines) become catalog entries in [`logical`].
//! [`guard`] keeps plans with live instances served when a change would drop them; [`diff`] says
//! what a change does to the merged catalog (operators' dry run).
//! The HTTP fetching and caching around it live in [`crate::upstream`] and [`crate::cache`].

pub mod diff;
pub mod guard;
pub mod ids;
pub mod logical;
pub mod merge;
pub mod model;
pub mod shape;
pub mod validate;

pub use diff::{CatalogChange, ChangeKind, DiffSummary, EntryKind, LiveCounts, annotate, diff, summarize};
pub use guard::{Guarded, HeldPlan, LivePlan, guard, removes_plans};
pub use ids::{ID_NAMESPACE, gateway_id};
pub use logical::{LogicalTable, offering_id, offering_plan_id, offering_service};
pub use merge::{BrokerCatalog, MergeWarning, Merged, PlanRoute, RouteTable, ServiceRoute, merge};
pub use model::{Catalog, Plan, Service};
pub use shape::{Shape, measure};
pub use validate::{Dropped, Validated, validate_bounded, validate_catalog};
