//! osb-demo: the stub OSB broker of the workspace and the real catalogs of the demo.
//!
//! - [`DemoBroker`] (module [`broker`]): a complete, in-memory OSB 2.17 upstream broker on a
//!   loopback port, answering as its [`Behaviour`] says. `osb-gateway demo` runs three; the
//!   gateway's integration tests and the load tests use it as an upstream.
//! - [`DEMO_CATALOGS`] (module [`catalogs`]): the catalogs of OSBA (Azure), the AWS Service Broker
//!   and the GCP Service Broker, compiled in from `fixtures/catalogs` (where they come from and
//!   their licenses: `fixtures/catalogs/SOURCES.md`), and [`demo_behaviour`], how the demo's
//!   brokers answer.
//!
//! The gateway depends on this crate only through its `demo` feature: a build without it carries
//! neither the broker nor the catalogs.

pub mod broker;
pub mod catalogs;

pub use self::broker::{Behaviour, DemoBroker, Endpoint};
pub use self::catalogs::{DEMO_CATALOGS, demo_behaviour};
