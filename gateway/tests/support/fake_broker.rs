//! [`FakeBroker`]: the scripted upstream broker for faults, an `osb_demo::DemoBroker` that answers
//! only its script ([`osb_demo::Behaviour::scripted`]). It answers each request with the reply
//! scripted for its method and path (exact, or a prefix ending in `*`; anything else is a 404),
//! records everything it received, and can be stopped and restarted on the same port ("killed",
//! then "back"). It derefs to the `DemoBroker` (`on`, `recorded`, `received`, `url`, `addr`).

use std::ops::Deref;

use osb_demo::{Behaviour, DemoBroker};
pub use osb_demo::{Recorded, Reply};

/// See the module docs.
pub struct FakeBroker(DemoBroker);

impl FakeBroker {
    /// Starts an empty broker (every request → 404) on a free loopback port.
    pub async fn start() -> FakeBroker {
        let broker = DemoBroker::start_with("fake", bytes::Bytes::new(), Behaviour::scripted());
        FakeBroker(broker.await.unwrap())
    }

    /// Starts a broker serving `catalog` at `GET /v2/catalog`.
    pub async fn with_catalog(catalog: impl Into<Vec<u8>>) -> FakeBroker {
        let broker = Self::start().await;
        broker.on("GET", "/v2/catalog", Reply::new(200, catalog));
        broker
    }

    /// Stops listening at once: connections are refused until [`FakeBroker::restart`].
    pub async fn stop(&mut self) {
        self.0.kill().await;
    }

    /// Listens again on the same port with the same script.
    pub async fn restart(&mut self) {
        self.0.restart().await.unwrap();
    }
}

impl Deref for FakeBroker {
    type Target = DemoBroker;

    fn deref(&self) -> &DemoBroker {
        &self.0
    }
}

impl Drop for FakeBroker {
    fn drop(&mut self) {
        self.0.kill_now();
    }
}
