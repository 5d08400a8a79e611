//! What operators use: the admin API, its command-line client, `check-config` and `explain`, and
//! the policy file with its reloads.
//!
//! - [`admin`]: the admin listener's app (probes, metrics, brokers, inventory, catalog changes,
//!   operations, audit, policy, explain);
//! - [`cli`]: `osb-gateway admin …`, the client of the admin API;
//! - [`check`]: `check-config`, `catalog` and `explain` without a running gateway;
//! - [`config_file`]: the configuration file watched, its platforms reloaded in place;
//! - [`explain`]: why a call would be allowed or refused;
//! - [`policy_file`]: the policy file in force, watched and reloaded;
//! - [`recount`]: existing records brought in line with the quotas in force;
//! - [`store_file`]: `store export` and `store import` (backup, restore, moving a registry);
//! - [`watch`]: files polled from a thread of their own, and SIGHUP.

pub mod admin;
pub mod check;
pub mod cli;
pub mod config_file;
pub mod explain;
pub mod policy_file;
pub mod recount;
pub mod store_file;
pub mod watch;
