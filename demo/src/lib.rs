//! osb-demo: the stub OSB broker of the workspace and the real catalogs of the demo.
//!
//! - [`DemoBroker`] (module [`broker`]): the one stub OSB 2.17 upstream broker of the workspace, on
//!   a loopback port, answering as its [`Behaviour`] says ([`Answers`]): stateful and complete
//!   (`osb-gateway demo` runs three, the integration tests inspect it), fast and counting only
//!   (`osb-loadtests stub`), or scripted and recording (the fault tests' `FakeBroker`).
//! - [`DEMO_CATALOGS`] (module [`catalogs`]): the catalogs of OSBA (Azure), the AWS Service Broker
//!   and the GCP Service Broker, compiled in from `fixtures/catalogs` (where they come from and
//!   their licenses: `fixtures/catalogs/SOURCES.md`), and [`demo_behaviour`], how the demo's
//!   brokers answer.
//!
//! The gateway depends on this crate only through its `demo` feature: a build without it carries
//! neither the broker nor the catalogs.

pub mod broker;
pub mod catalogs;

pub use self::broker::script::{Recorded, Reply};
pub use self::broker::{Answers, Behaviour, DemoBroker, Endpoint};
pub use self::catalogs::{DEMO_CATALOGS, demo_behaviour};
