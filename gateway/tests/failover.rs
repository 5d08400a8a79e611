//! Failover within a provision: a logical offering placed on a broker that is down lands on the
//! failover candidate in the same call, from the first call on (no 502 while the breaker counts),
//! recorded in the registry and the audit log with why; a broker that accepts the request and then
//! times out is never bypassed (the provision may have reached it).

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::fake_broker::{FakeBroker, Reply};
use crate::support::gateway::{TestGateway, platforms_yaml};
use crate::support::osb::{Query, plan_ids};
use crate::support::{eventually, http};

const POLICY: &str = r#"
offerings:
  - name: mysql
    description: MySQL on whichever cloud answers
    plans: [{name: small, description: small}]
    placement:
      - name: azure-first
        candidates:
          - {broker: azure, service: azure-mysql, plans: {small: basic}, weight: 1}
          - {broker: gcp, service: cloudsql, plans: {small: f1}}
"#;

async fn cloud(service: &str, plan: &str) -> FakeBroker {
    let catalog = json!({"services": [{"name": service, "id": format!("{service}-id"), "description": "d",
        "bindable": true, "plans": [{"name": plan, "id": format!("{plan}-id"), "description": "d"}]}]});
    let broker = FakeBroker::with_catalog(serde_json::to_vec(&catalog).unwrap()).await;
    broker.on("PUT", "/v2/service_instances/*", Reply::new(201, "{}"));
    broker.on("DELETE", "/v2/service_instances/*", Reply::new(200, "{}"));
    broker
}

async fn gateway(azure: &FakeBroker, gcp: &FakeBroker) -> (TestGateway, Value) {
    let yaml = format!(
        "{}policy_file: policy.yaml\nbrokers:\n  - name: azure\n    url: {}\n    timeout_secs: 1\n    \
         refresh_interval_secs: 3600\n  - name: gcp\n    url: {}\n    timeout_secs: 1\n    refresh_interval_secs: 3600\n",
        platforms_yaml(),
        azure.url(),
        gcp.url()
    );
    let gateway = TestGateway::start_with_files(&yaml, &[("policy.yaml", POLICY)]).await;
    let catalog = gateway.ready_catalog().await;
    let (service_id, plan_id) = plan_ids(&catalog, "mysql", "small");
    (gateway, json!({"service_id": service_id, "plan_id": plan_id}))
}

fn provisions(broker: &FakeBroker) -> usize {
    broker.received("PUT", "/v2/service_instances/").len()
}

#[tokio::test]
async fn with_the_placed_broker_down_every_provision_lands_on_the_failover_from_the_first_call() {
    let (mut azure, gcp) = (cloud("azure-mysql", "basic").await, cloud("cloudsql", "f1").await);
    let (gateway, body) = gateway(&azure, &gcp).await;
    // explain names the order (while azure is healthy).
    let explain: Value = http()
        .post(gateway.admin_url("/admin/explain"))
        .json(&json!({"platform": "k8s-prod", "operation": "provision", "instance_id": "x", "body": body}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(explain.to_string().contains("fails over to gcp"), "{explain}");

    azure.stop().await;

    // A closed-loop burst: four clients, ten provisions each, one after the other.
    let clients = (0..4).map(|client| {
        let (osb, body) = (gateway.osb(), body.clone());
        async move {
            let mut statuses = Vec::new();
            for i in 0..10 {
                let response = osb
                    .provision(&format!("burst-{client}-{i}"), Query::none(), &body)
                    .await;
                statuses.push((response.status.as_u16(), response.text()));
            }
            statuses
        }
    });
    let statuses: Vec<(u16, String)> = futures_util::future::join_all(clients)
        .await
        .into_iter()
        .flatten()
        .collect();
    let failed: Vec<&(u16, String)> = statuses.iter().filter(|(status, _)| *status != 201).collect();
    assert!(
        failed.is_empty(),
        "every provision lands on the failover: {failed:?}"
    );
    assert_eq!(provisions(&gcp), 40);

    // The registry has them on gcp; the audit log says why.
    let record = gateway.admin_json("/admin/instances/burst-0-0").await;
    assert_eq!(record["instance"]["broker"], "gcp", "{record}");
    let audit = gateway.admin_json("/admin/audit?instance_id=burst-0-0").await;
    let entry = &audit["items"][0];
    assert_eq!(entry["broker"], "gcp", "{entry}");
    let reason = entry["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("failed over from azure (") && reason.ends_with(") to gcp"),
        "{entry}"
    );
    // Once azure's breaker opened, placement passes it over before anything is tried.
    let last = gateway.admin_json("/admin/audit?instance_id=burst-3-9").await;
    assert_eq!(last["items"][0]["broker"], "gcp", "{last}");

    // Deprovisions reach the broker each instance is on.
    let (service_id, plan_id) = (
        body["service_id"].as_str().unwrap(),
        body["plan_id"].as_str().unwrap(),
    );
    let gone = gateway
        .osb()
        .deprovision("burst-0-0", Query::ids(service_id, plan_id))
        .await;
    assert_eq!(gone.status, 200, "{}", gone.text());
    assert_eq!(gcp.received("DELETE", "/v2/service_instances/burst-0-0").len(), 1);
}

#[tokio::test]
async fn a_broker_that_accepts_and_then_times_out_is_never_bypassed() {
    let (azure, gcp) = (cloud("azure-mysql", "basic").await, cloud("cloudsql", "f1").await);
    azure.on(
        "PUT",
        "/v2/service_instances/*",
        Reply::new(201, "{}").delay(Duration::from_secs(3)),
    );
    let (gateway, body) = gateway(&azure, &gcp).await;
    for i in 0..3 {
        let response = gateway
            .osb()
            .provision(&format!("slow-{i}"), Query::none(), &body)
            .await;
        assert_eq!(response.status, 504, "{}", response.text());
        assert_eq!(response.error(), Some("UpstreamTimeout"));
    }
    assert_eq!(
        provisions(&gcp),
        0,
        "a provision that may have reached azure is not sent to gcp"
    );
    assert_eq!(provisions(&azure), 3);
    // The timed-out provisions are orphan-mitigated on azure, as before.
    eventually(
        "the orphans are deleted on azure",
        Duration::from_secs(20),
        || async { (azure.received("DELETE", "/v2/service_instances/").len() >= 3).then_some(()) },
    )
    .await;
}
