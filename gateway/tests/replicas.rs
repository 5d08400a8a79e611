//! Several gateway processes on one PostgreSQL database: one answer per race, every instance
//! routable everywhere, identical catalogs, a killed replica's intents recovered by the others,
//! the database restarting under load.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::fake_broker::{FakeBroker, Reply};
use crate::support::gateway::platforms_yaml;
use crate::support::osb::{OsbResponse, Query, instance_path};
use crate::support::postgres::{Database, PrivateServer};
use crate::support::process::GatewayProcess;
use crate::support::small_catalog::small_catalog;
use crate::support::{eventually, http};

/// Writes a config for replicas on `store_url` in front of `broker`; returns its path.
fn config(dir: &std::path::Path, store_url: &str, broker: &FakeBroker, name: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            "listen: \"127.0.0.1:0\"\nadmin:\n  listen: \"127.0.0.1:0\"\nstore:\n  kind: postgres\n  url: {store_url}\n\
             shutdown_grace_secs: 1\n{}brokers:\n  - name: fb\n    url: {}\n    timeout_secs: 5\n",
            platforms_yaml(),
            broker.url()
        ),
    )
    .unwrap();
    path
}

async fn catalog_of(replica: &GatewayProcess) -> (String, bytes::Bytes) {
    let response = replica.osb().ready_catalog().await;
    (response.header("etag").unwrap().to_owned(), response.bytes)
}

fn provision_body(catalog: &[u8]) -> Value {
    let catalog: Value = serde_json::from_slice(catalog).unwrap();
    json!({"service_id": catalog["services"][0]["id"], "plan_id": catalog["services"][0]["plans"][0]["id"]})
}

#[tokio::test]
async fn three_replicas_on_one_database_answer_each_race_once() {
    let database = Database::create();
    let broker = FakeBroker::with_catalog(small_catalog()).await;
    broker.on(
        "PUT",
        "/v2/service_instances/*",
        Reply::new(201, "{}").delay(Duration::from_millis(400)),
    );
    broker.on(
        "GET",
        "/v2/service_instances/*",
        Reply::new(200, r#"{"service_id":"up-svc","plan_id":"up-small"}"#),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut replicas = Vec::new();
    for i in 0..3 {
        let path = config(dir.path(), &database.url, &broker, &format!("replica-{i}"));
        replicas.push(GatewayProcess::spawn(&path, &[], None).await);
    }

    // Identical catalogs, byte for byte, and ETags.
    let mut catalogs = Vec::new();
    for replica in &replicas {
        catalogs.push(catalog_of(replica).await);
    }
    assert!(
        catalogs.windows(2).all(|w| w[0] == w[1]),
        "every replica serves the same catalog and ETag"
    );
    let body = provision_body(&catalogs[0].1);

    // Races: every instance id is provisioned twice at once, through two different replicas.
    let mut races = Vec::new();
    for i in 0..20 {
        let id = format!("race-{i}");
        let (a, b) = (replicas[i % 3].osb(), replicas[(i + 1) % 3].osb());
        let body = body.clone();
        races.push(async move {
            let (x, y) = tokio::join!(
                a.provision(&id, Query::none(), &body),
                b.provision(&id, Query::none(), &body)
            );
            (id, x.status.as_u16(), y.status.as_u16())
        });
    }
    let results = futures_util::future::join_all(races).await;
    let mut puts: HashMap<String, usize> = HashMap::new();
    for request in broker.received("PUT", "/v2/service_instances/") {
        *puts.entry(request.path.clone()).or_default() += 1;
    }
    for (id, x, y) in &results {
        let mut statuses = [*x, *y];
        statuses.sort_unstable();
        assert!(
            statuses == [201, 422] || statuses == [201, 409],
            "{id}: {statuses:?}"
        );
        assert_eq!(
            puts.get(&format!("/v2/service_instances/{id}")),
            Some(&1),
            "{id}: exactly one provision upstream"
        );
    }

    // Binds spread over the replicas; every acknowledged instance routes through every replica.
    broker.on(
        "PUT",
        "/v2/service_instances/*",
        Reply::new(201, r#"{"credentials":{}}"#),
    );
    for i in 0..20 {
        let response = replicas[(i + 2) % 3]
            .osb()
            .bind(&format!("race-{i}"), &format!("b-{i}"), Query::none(), &body)
            .await;
        assert_eq!(response.status, 201, "bind race-{i}");
    }
    for replica in &replicas {
        for i in 0..20 {
            let response = replica.osb().fetch_instance(&format!("race-{i}")).await;
            assert_eq!(response.status, 200, "race-{i} through {}", replica.url);
            assert_eq!(
                response.body["plan_id"], body["plan_id"],
                "gateway ids through every replica"
            );
        }
    }
    let counts: Value = http()
        .get(format!("{}/admin/registry", replicas[0].admin.as_ref().unwrap()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (counts["instances"].as_u64(), counts["bindings"].as_u64()),
        (Some(20), Some(20))
    );
}

#[tokio::test]
async fn a_killed_replicas_intents_are_recovered_by_the_others() {
    let database = Database::create();
    let broker = FakeBroker::with_catalog(small_catalog()).await;
    broker.on(
        "PUT",
        "/v2/service_instances/*",
        Reply::new(201, "{}").delay(Duration::from_secs(3)),
    );
    broker.on("DELETE", "/v2/service_instances/*", Reply::new(200, "{}"));
    let dir = tempfile::tempdir().unwrap();
    let mut doomed =
        GatewayProcess::spawn(&config(dir.path(), &database.url, &broker, "doomed"), &[], None).await;
    let survivor =
        GatewayProcess::spawn(&config(dir.path(), &database.url, &broker, "survivor"), &[], None).await;
    let (_, catalog) = catalog_of(&survivor).await;
    catalog_of(&doomed).await;
    let body = provision_body(&catalog);

    // Provisions in flight through the doomed replica, then SIGKILL.
    let in_flight: Vec<_> = (0..5)
        .map(|i| {
            doomed
                .request(Method::PUT, &instance_path(&format!("lost-{i}")))
                .json(&body)
                .send()
        })
        .collect();
    let calls = tokio::spawn(futures_util::future::join_all(in_flight));
    eventually(
        "the provisions reached the upstream",
        Duration::from_secs(10),
        || async { (broker.received("PUT", "/v2/service_instances/lost-").len() == 5).then_some(()) },
    )
    .await;
    doomed.kill().await;
    let answered = calls.await.unwrap();
    assert!(answered.iter().all(Result::is_err), "none was acknowledged");

    // The survivor keeps serving meanwhile ...
    broker.on("PUT", "/v2/service_instances/*", Reply::new(201, "{}"));
    let response = survivor.osb().provision("alive-1", Query::none(), &body).await;
    assert_eq!(response.status, 201);
    // ... and, once the dead replica's heartbeat is stale, resolves its intents: the unacknowledged
    // provisions are deprovisioned upstream and forgotten.
    let admin = survivor.admin.clone().unwrap();
    eventually(
        "the dead replica's intents are resolved",
        Duration::from_secs(60),
        || async {
            let counts: Value = http()
                .get(format!("{admin}/admin/registry"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (counts["pending"] == 0 && counts["orphans"] == 0 && counts["instances"] == 1).then_some(())
        },
    )
    .await;
    for i in 0..5 {
        assert!(
            !broker
                .received("DELETE", &format!("/v2/service_instances/lost-{i}"))
                .is_empty(),
            "lost-{i} cleaned up"
        );
    }
}

#[tokio::test]
async fn the_database_restarting_under_load_gives_503s_then_recovers_without_a_restart() {
    let server = PrivateServer::start();
    let broker = FakeBroker::with_catalog(small_catalog()).await;
    broker.on("PUT", "/v2/service_instances/*", Reply::new(201, "{}"));
    broker.on(
        "GET",
        "/v2/service_instances/*",
        Reply::new(200, r#"{"service_id":"up-svc","plan_id":"up-small"}"#),
    );
    let dir = tempfile::tempdir().unwrap();
    let gateway = GatewayProcess::spawn(&config(dir.path(), &server.url(), &broker, "gw"), &[], None).await;
    let (_, catalog) = catalog_of(&gateway).await;
    let body = provision_body(&catalog);

    // Raw requests: while the database restarts a call may get no answer at all.
    let provision = |i: usize| {
        gateway
            .request(Method::PUT, &instance_path(&format!("pg-{i}")))
            .json(&body)
            .send()
    };
    let mut acknowledged = Vec::new();
    let mut unavailable = 0;
    for i in 0..10 {
        if provision(i).await.unwrap().status() == 201 {
            acknowledged.push(i);
        }
    }
    server.stop();
    for i in 10..20 {
        let response = OsbResponse::read(provision(i).await.unwrap()).await;
        assert_eq!(response.status, 503, "while the database is down");
        assert_eq!(response.body["error"], "StoreUnavailable");
        unavailable += 1;
    }
    let ready = http()
        .get(format!("{}/readyz", gateway.admin.as_ref().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503, "not ready without its store");
    server.resume();
    let i = eventually("calls succeed again", Duration::from_secs(30), || async {
        (provision(20).await.ok()?.status() == 201).then_some(20)
    })
    .await;
    acknowledged.push(i);
    for i in 21..30 {
        assert_eq!(provision(i).await.unwrap().status(), 201);
        acknowledged.push(i);
    }
    assert_eq!(unavailable, 10);
    // Nothing acknowledged was lost.
    for i in &acknowledged {
        let response = gateway.osb().fetch_instance(&format!("pg-{i}")).await;
        assert_eq!(response.status, 200, "pg-{i}");
    }
    // Nothing was sent upstream for the refused calls.
    for i in 10..20 {
        assert!(
            broker
                .received("PUT", &format!("/v2/service_instances/pg-{i}"))
                .is_empty()
        );
    }
}
