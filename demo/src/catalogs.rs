//! The real catalogs the demo brokers serve, and how those brokers answer.
//!
//! The files live in `fixtures/catalogs`, where the tests and the load tests read them too;
//! `fixtures/catalogs/SOURCES.md` says where each comes from, how it was produced and its license.
//! This is the only place that compiles them into a binary.

use crate::Behaviour;

/// How the demo brokers answer: async when the platform accepts it, done after two polls.
pub fn demo_behaviour() -> Behaviour {
    Behaviour::asynchronous(2)
}

/// The real catalogs the demo brokers serve: (broker name, what it is, catalog).
pub const DEMO_CATALOGS: [(&str, &str, &[u8]); 3] = [
    (
        "azure",
        "Open Service Broker for Azure",
        include_bytes!("../../fixtures/catalogs/azure-osba-catalog.json"),
    ),
    (
        "aws",
        "AWS Service Broker",
        include_bytes!("../../fixtures/catalogs/aws-servicebroker-catalog.json"),
    ),
    (
        "gcp",
        "GCP Service Broker",
        include_bytes!("../../fixtures/catalogs/gcp-service-broker-catalog.json"),
    ),
];
