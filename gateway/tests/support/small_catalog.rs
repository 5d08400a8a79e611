//! The scripted brokers' usual catalog ([`small_catalog`]: one `db` service, plans `small`,
//! `large` and the non-bindable `nobind`) and a gateway in front of one scripted broker serving it
//! ([`gateway_for`]), with the ids the gateway publishes for it ([`Ids`]). Shared by the fault,
//! corpus, ownership, admin, telemetry, replica, crash and Prometheus tests.

use serde_json::{Value, json};

use super::fake_broker::FakeBroker;
use super::gateway::{TestGateway, platforms_yaml};
use super::osb::{Query, plan, service};

/// A catalog with one bindable and one non-bindable plan.
pub fn small_catalog() -> Vec<u8> {
    serde_json::to_vec(&json!({"services": [{
        "name": "db", "id": "up-svc", "description": "a database", "bindable": true,
        "plan_updateable": true, "instances_retrievable": true, "bindings_retrievable": true,
        "plans": [
            {"name": "small", "id": "up-small", "description": "small"},
            {"name": "large", "id": "up-large", "description": "large"},
            {"name": "nobind", "id": "up-nobind", "description": "no bindings", "bindable": false}
        ]
    }]}))
    .unwrap()
}

/// A gateway in front of one scripted broker `fb` (timeout 1 s), and the gateway ids of `db`.
pub async fn gateway_for(broker: &FakeBroker) -> (TestGateway, Ids) {
    let yaml = format!(
        "{}brokers:\n  - name: fb\n    url: {}\n    timeout_secs: 1\n    refresh_interval_secs: 3600\n",
        platforms_yaml(),
        broker.url()
    );
    let gateway = TestGateway::start(&yaml).await;
    let catalog = gateway.ready_catalog().await;
    let ids = Ids::of(&catalog, "fb.db");
    (gateway, ids)
}

/// Gateway ids of the small catalog.
pub struct Ids {
    pub service: String,
    pub small: String,
    pub large: String,
    pub nobind: String,
}

impl Ids {
    /// The ids of the small catalog's `db` published as `service_name` in `catalog`.
    pub fn of(catalog: &Value, service_name: &str) -> Ids {
        let db = service(catalog, service_name);
        let id = |name: &str| plan(db, name)["id"].as_str().unwrap().to_owned();
        Ids {
            service: db["id"].as_str().unwrap().to_owned(),
            small: id("small"),
            large: id("large"),
            nobind: id("nobind"),
        }
    }

    /// A provision of `small` with parameters `{"a": 1}`.
    pub fn provision(&self) -> Value {
        json!({"service_id": self.service, "plan_id": self.small, "parameters": {"a": 1}})
    }

    /// A bind (or a bare provision) on `small`.
    pub fn small_body(&self) -> Value {
        json!({"service_id": self.service, "plan_id": self.small})
    }

    /// `service_id` and `plan_id` of `small`, for deprovision, unbind and `last_operation`.
    pub fn query(&self) -> Query {
        Query::ids(&self.service, &self.small)
    }
}
