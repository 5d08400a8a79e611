//! Quotas end to end: a namespace quota refuses the fourth instance before anything is forwarded
//! and has room again after a deprovision; a binding quota; `explain`, `/admin/quotas` and the
//! metrics show usage; two replicas on one PostgreSQL database racing for the last place: exactly
//! one wins.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::fake_broker::{FakeBroker, Reply};
use crate::support::gateway::{TestGateway, platforms_yaml};
use crate::support::osb::{Query, plan, service};
use crate::support::postgres::Database;
use crate::support::process::GatewayProcess;
use crate::support::small_catalog::small_catalog;
use crate::support::{eventually, http};

const POLICY: &str = r#"
quotas:
  - name: three-per-namespace
    platforms: [k8s-prod]
    per: [platform, context.namespace]
    limit: 3
    reason: each namespace keeps at most three databases
  - name: one-key-per-namespace
    resource: bindings
    per: [context.namespace]
    limit: 1
    reason: one set of credentials per namespace
"#;

async fn broker() -> FakeBroker {
    let broker = FakeBroker::with_catalog(small_catalog()).await;
    broker.on(
        "PUT",
        "/v2/service_instances/*",
        Reply::new(201, r#"{"credentials":{"k":"v"}}"#),
    );
    broker.on("DELETE", "/v2/service_instances/*", Reply::new(200, "{}"));
    broker
}

fn body(catalog: &Value, namespace: &str) -> Value {
    let db = service(catalog, "fb.db");
    json!({
        "service_id": db["id"],
        "plan_id": plan(db, "small")["id"],
        "context": {"platform": "kubernetes", "namespace": namespace},
    })
}

fn provisions(broker: &FakeBroker) -> usize {
    broker
        .received("PUT", "/v2/service_instances/")
        .iter()
        .filter(|r| !r.path.contains("/service_bindings/"))
        .count()
}

/// The value of the series `name{quota="quota"}` in a Prometheus text page.
fn series(metrics: &str, name: &str, quota: &str) -> Option<f64> {
    let prefix = format!("{name}{{quota=\"{quota}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test]
async fn a_namespace_quota_refuses_the_fourth_instance_before_forwarding_and_frees_on_deprovision() {
    let broker = broker().await;
    let yaml = format!(
        "{}policy_file: policy.yaml\nbrokers:\n  - name: fb\n    url: {}\n    refresh_interval_secs: 3600\n",
        platforms_yaml(),
        broker.url()
    );
    let gateway = TestGateway::start_with_files(&yaml, &[("policy.yaml", POLICY)]).await;
    let catalog = gateway.ready_catalog().await;
    let osb = gateway.osb();
    for i in 0..3 {
        let response = osb
            .provision(&format!("a-{i}"), Query::none(), &body(&catalog, "team-a"))
            .await;
        assert_eq!(response.status, 201, "{}", response.text());
    }
    assert_eq!(provisions(&broker), 3);

    // The fourth in team-a: refused with the quota's name, usage and limit; nothing forwarded.
    let refused = osb
        .provision("a-3", Query::none(), &body(&catalog, "team-a"))
        .await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert_eq!(refused.error(), Some("QuotaExceeded"));
    let description = refused.description().unwrap();
    for part in [
        "three-per-namespace",
        "context.namespace=team-a",
        "3 of 3 instances",
        "each namespace keeps at most three databases",
    ] {
        assert!(description.contains(part), "{part:?} in {description}");
    }
    assert_eq!(provisions(&broker), 3, "nothing forwarded");
    assert_eq!(osb.fetch_instance("a-3").await.status, 404, "nothing recorded");
    // Another namespace has its own count; a retry of an existing instance takes no place.
    let other = osb
        .provision("b-0", Query::none(), &body(&catalog, "team-b"))
        .await;
    assert_eq!(other.status, 201);
    let retry = osb
        .provision("a-0", Query::none(), &body(&catalog, "team-a"))
        .await;
    // (The upstream answers an identical retry itself; it takes no second place, as explain shows.)
    assert_eq!(retry.status, 201, "{}", retry.text());

    // explain shows the usage, and the refusal a fifth would meet.
    let explain = |namespace: &str| {
        let request = json!({
            "platform": "k8s-prod", "operation": "provision", "instance_id": "x",
            "body": body(&catalog, namespace),
        });
        let url = gateway.admin_url("/admin/explain");
        async move {
            http()
                .post(url)
                .json(&request)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let full = explain("team-a").await;
    assert_eq!(full["allowed"], false, "{full}");
    assert_eq!(full["refusal"]["error"], "QuotaExceeded");
    assert_eq!(full["quotas"][0]["quota"], "three-per-namespace");
    assert_eq!(
        (
            full["quotas"][0]["usage"].as_u64(),
            full["quotas"][0]["limit"].as_u64()
        ),
        (Some(3), Some(3))
    );
    let room = explain("team-b").await;
    assert_eq!(room["allowed"], true, "{room}");
    assert_eq!(room["quotas"][0]["usage"], 1);
    assert_eq!(room["quotas"][0]["room"], true);
    assert!(
        room["decision"]["explanation"]
            .to_string()
            .contains("quota \\\"three-per-namespace\\\" applies"),
        "{room}"
    );

    // The admin API lists each quota with its counts, fullest first.
    let quotas = gateway.admin_json("/admin/quotas").await;
    let three = &quotas["quotas"][0];
    assert_eq!(three["name"], "three-per-namespace");
    assert_eq!(
        (three["usage"].as_u64(), three["counts_total"].as_u64()),
        (Some(4), Some(2))
    );
    assert_eq!(
        three["counts"][0]["bucket"],
        json!({"platform": "k8s-prod", "context.namespace": "team-a"})
    );
    assert_eq!(
        (
            three["counts"][0]["usage"].as_u64(),
            three["counts"][0]["full"].as_bool()
        ),
        (Some(3), Some(true))
    );

    // A binding quota: one set of credentials per namespace.
    let bind_body = body(&catalog, "team-a");
    assert_eq!(
        osb.bind("a-0", "k-0", Query::none(), &bind_body).await.status,
        201
    );
    let second = osb.bind("a-1", "k-1", Query::none(), &bind_body).await;
    assert_eq!(second.status, 403, "{}", second.text());
    assert!(second.description().unwrap().contains("one-key-per-namespace"));
    assert!(
        !second.text().contains("\"k\":\"v\""),
        "no credentials in a refusal"
    );

    // Metrics: limit, usage, fullest count and refusals per quota.
    let metrics = gateway.metrics().await;
    assert_eq!(
        series(&metrics, "osb_gateway_quota_limit", "three-per-namespace"),
        Some(3.0)
    );
    assert_eq!(
        series(&metrics, "osb_gateway_quota_usage", "three-per-namespace"),
        Some(4.0)
    );
    assert_eq!(
        series(&metrics, "osb_gateway_quota_fullest", "three-per-namespace"),
        Some(3.0)
    );
    assert_eq!(
        series(
            &metrics,
            "osb_gateway_quota_refusals_total",
            "three-per-namespace"
        ),
        Some(1.0)
    );
    assert_eq!(
        series(
            &metrics,
            "osb_gateway_quota_refusals_total",
            "one-key-per-namespace"
        ),
        Some(1.0)
    );
    assert!(!metrics.contains("team-a"), "count values never become labels");

    // After one deprovision, the next provision in team-a goes through.
    let gone = osb
        .request(Method::DELETE, "/v2/service_instances/a-2")
        .query(&[(
            "service_id",
            body(&catalog, "team-a")["service_id"].as_str().unwrap(),
        )])
        .query(&[("plan_id", body(&catalog, "team-a")["plan_id"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 200);
    let next = osb
        .provision("a-3", Query::none(), &body(&catalog, "team-a"))
        .await;
    assert_eq!(next.status, 201, "{}", next.text());
    assert_eq!(provisions(&broker), 6, "three, team-b, the retry, and this one");
}

/// A config for a replica on `store_url` with the quota policy.
fn replica_config(
    dir: &std::path::Path,
    store_url: &str,
    broker: &FakeBroker,
    name: &str,
) -> std::path::PathBuf {
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            "listen: \"127.0.0.1:0\"\nadmin:\n  listen: \"127.0.0.1:0\"\nstore:\n  kind: postgres\n  url: {store_url}\n\
             shutdown_grace_secs: 1\npolicy_file: {}\n{}brokers:\n  - name: fb\n    url: {}\n    timeout_secs: 5\n",
            policy.display(),
            platforms_yaml(),
            broker.url()
        ),
    )
    .unwrap();
    path
}

#[tokio::test]
async fn two_replicas_racing_for_the_last_place_of_a_quota_let_exactly_one_win() {
    let database = Database::create();
    let broker = broker().await;
    let dir = tempfile::tempdir().unwrap();
    let mut replicas = Vec::new();
    for i in 0..2 {
        let path = replica_config(dir.path(), &database.url, &broker, &format!("replica-{i}"));
        replicas.push(GatewayProcess::spawn(&path, &[], None).await);
    }
    let catalog: Value = serde_json::from_slice(&replicas[0].osb().ready_catalog().await.bytes).unwrap();
    eventually(
        "the second replica's catalog",
        std::time::Duration::from_secs(10),
        || async { (replicas[1].osb().catalog().await.status == 200).then_some(()) },
    )
    .await;
    for (i, replica) in replicas.iter().enumerate() {
        let response = replica
            .osb()
            .provision(&format!("held-{i}"), Query::none(), &body(&catalog, "team-a"))
            .await;
        assert_eq!(response.status, 201);
    }
    // Eight provisions at once, four through each replica, for the one place left.
    let racers = (0..8).map(|i| {
        let osb = replicas[i % 2].osb();
        let body = body(&catalog, "team-a");
        async move { osb.provision(&format!("race-{i}"), Query::none(), &body).await }
    });
    let answers = futures_util::future::join_all(racers).await;
    let won = answers.iter().filter(|a| a.status == 201).count();
    let refused = answers
        .iter()
        .filter(|a| a.error() == Some("QuotaExceeded"))
        .count();
    assert_eq!(
        (won, refused),
        (1, 7),
        "{:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    assert_eq!(provisions(&broker), 3, "only the winner was forwarded");
}

#[tokio::test]
async fn a_quota_added_to_a_running_registry_counts_the_instances_already_there() {
    let broker = broker().await;
    let yaml = format!(
        "{}policy_file: policy.yaml\nbrokers:\n  - name: fb\n    url: {}\n    refresh_interval_secs: 3600\n",
        platforms_yaml(),
        broker.url()
    );
    let gateway = TestGateway::start_with_files(&yaml, &[("policy.yaml", "quotas: []\n")]).await;
    let catalog = gateway.ready_catalog().await;
    let osb = gateway.osb();
    for i in 0..5 {
        let response = osb
            .provision(&format!("old-{i}"), Query::none(), &body(&catalog, "team-a"))
            .await;
        assert_eq!(response.status, 201);
    }
    assert_eq!(
        osb.bind("old-0", "key-0", Query::none(), &body(&catalog, "team-a"))
            .await
            .status,
        201
    );

    // The quota arrives with five instances (and a binding) already in team-a.
    gateway.write_file("policy.yaml", POLICY);
    let reload = http()
        .post(gateway.admin_url("/admin/policy/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status(), 200);
    let usage = |quotas: &Value, index: usize| quotas["quotas"][index]["usage"].as_u64();
    eventually("the recount", std::time::Duration::from_secs(15), || async {
        let quotas = gateway.admin_json("/admin/quotas").await;
        (usage(&quotas, 0) == Some(5) && usage(&quotas, 1) == Some(1)).then_some(())
    })
    .await;
    let refused = osb
        .provision("new-0", Query::none(), &body(&catalog, "team-a"))
        .await;
    assert_eq!(refused.error(), Some("QuotaExceeded"), "{}", refused.text());
    assert!(
        refused.description().unwrap().contains("5 of 3 instances"),
        "{}",
        refused.text()
    );
    let refused = osb
        .bind("old-1", "key-1", Query::none(), &body(&catalog, "team-a"))
        .await;
    assert_eq!(refused.error(), Some("QuotaExceeded"), "{}", refused.text());

    // Back under the limit after three deprovisions: the next one goes through.
    let (service_id, plan_id) = (
        body(&catalog, "team-a")["service_id"].clone(),
        body(&catalog, "team-a")["plan_id"].clone(),
    );
    for i in 2..5 {
        let gone = osb
            .deprovision(
                &format!("old-{i}"),
                Query::ids(service_id.as_str().unwrap(), plan_id.as_str().unwrap()),
            )
            .await;
        assert_eq!(gone.status, 200);
    }
    let next = osb
        .provision("new-1", Query::none(), &body(&catalog, "team-a"))
        .await;
    assert_eq!(next.status, 201, "{}", next.text());
}
