//! kill -9 the gateway while 1,000 provisions are in flight; restart it; nothing acknowledged is
//! lost and nothing is left upstream that the registry does not know.

use std::collections::HashSet;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use osb_gateway::demo::{Behaviour, DemoBroker};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::gateway::{PLATFORM_PASSWORD, PLATFORM_USER, platforms_yaml};
use crate::support::{eventually, fixture, http};

const PROVISIONS: usize = 1000;

/// Starts `osb-gateway serve` on `config`; returns the process and its OSB base URL.
async fn spawn_gateway(config: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_osb-gateway"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = BufReader::new(stdout).lines().next_line().await.unwrap().unwrap();
    (
        child,
        line.strip_prefix("osb-gateway listening on ").unwrap().to_owned(),
    )
}

#[tokio::test]
async fn acknowledged_provisions_survive_kill_9_and_no_orphans_remain() {
    let upstream = DemoBroker::start_with(
        "aws",
        Bytes::from(fixture("aws-servicebroker-catalog.json")),
        Behaviour::fast()
            .with_latency(Duration::from_millis(150))
            .with_workers(2),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.yaml");
    let admin_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        &config,
        format!(
            "listen: \"127.0.0.1:0\"\nadmin:\n  listen: \"127.0.0.1:{admin_port}\"\nstore:\n  path: store.redb\n{}brokers:\n{}    timeout_secs: 10\n",
            platforms_yaml(),
            upstream.config_entry()
        ),
    )
    .unwrap();

    let started = std::time::Instant::now();
    let (mut gateway, url) = spawn_gateway(&config).await;
    let client = http();
    let catalog: Value = eventually("catalog", Duration::from_secs(30), || async {
        let r = client
            .get(format!("{url}/v2/catalog"))
            .basic_auth(PLATFORM_USER, Some(PLATFORM_PASSWORD))
            .header("X-Broker-API-Version", "2.17")
            .send()
            .await
            .ok()?;
        if r.status() == 200 {
            r.json().await.ok()
        } else {
            None
        }
    })
    .await;
    // S3: its schema requires no parameter.
    let service = catalog["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "aws.s3")
        .unwrap();
    let body =
        json!({"service_id": service["id"], "plan_id": service["plans"][0]["id"], "parameters": {"n": 1}});

    // 1,000 provisions at once; kill -9 once a good part has been acknowledged.
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..PROVISIONS)
        .map(|i| {
            let (client, url, body, acknowledged) =
                (client.clone(), url.clone(), body.clone(), acknowledged.clone());
            tokio::spawn(async move {
                let id = format!("crash-{i:04}");
                let response = client
                    .put(format!("{url}/v2/service_instances/{id}"))
                    .basic_auth(PLATFORM_USER, Some(PLATFORM_PASSWORD))
                    .header("X-Broker-API-Version", "2.17")
                    .json(&body)
                    .send()
                    .await;
                let acked = response.is_ok_and(|r| (200..=202).contains(&r.status().as_u16()));
                if acked {
                    acknowledged.fetch_add(1, Ordering::SeqCst);
                }
                (id, acked)
            })
        })
        .collect();
    eventually(
        "some provisions acknowledged",
        Duration::from_secs(60),
        || async { (acknowledged.load(Ordering::SeqCst) >= PROVISIONS / 4).then_some(()) },
    )
    .await;
    eprintln!(
        "{:?}: {} acknowledged, killing",
        started.elapsed(),
        acknowledged.load(Ordering::SeqCst)
    );
    gateway.start_kill().unwrap(); // SIGKILL
    gateway.wait().await.unwrap();
    let mut acked = HashSet::new();
    for task in tasks {
        let (id, ok) = task.await.unwrap();
        if ok {
            acked.insert(id);
        }
    }
    let upstream_at_crash = upstream.instances().len();
    assert!(
        acked.len() < PROVISIONS,
        "the kill came while provisions were in flight"
    );
    assert!(
        upstream_at_crash > acked.len(),
        "some reached the upstream unacknowledged: {upstream_at_crash} vs {}",
        acked.len()
    );

    // Restart on the same store: recovery orphans the unacknowledged intents, mitigation deletes them.
    let (mut gateway, url) = spawn_gateway(&config).await;
    let admin = format!("http://127.0.0.1:{admin_port}");
    eprintln!("{:?}: restarted", started.elapsed());
    eventually("mitigation done", Duration::from_secs(120), || async {
        let counts: Value = http()
            .get(format!("{admin}/admin/registry"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (counts["orphans"] == 0 && counts["pending"] == 0).then_some(())
    })
    .await;

    eprintln!("{:?}: mitigation done", started.elapsed());
    // Every acknowledged provision routes: fetch answers from the upstream with gateway ids.
    let fetches = acked.iter().map(|id| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let response = client
                .get(format!("{url}/v2/service_instances/{id}"))
                .basic_auth(PLATFORM_USER, Some(PLATFORM_PASSWORD))
                .header("X-Broker-API-Version", "2.17")
                .send()
                .await
                .unwrap();
            let status = response.status();
            (
                id.clone(),
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    });
    for (id, status, fetched) in futures_util::future::join_all(fetches).await {
        assert_eq!(status, 200, "{id}");
        assert_eq!(fetched["service_id"], service["id"], "{id}");
    }
    eprintln!("{:?}: fetched", started.elapsed());
    // Stop it and compare the registry with what exists upstream.
    gateway.start_kill().unwrap();
    gateway.wait().await.unwrap();
    let store = osb_routing::store::EmbeddedStore::open(dir.path().join("store.redb"))
        .await
        .unwrap();
    let registered: HashSet<String> = osb_routing::Store::instances(&store)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.instance_id)
        .collect();
    let upstream_now: HashSet<String> = upstream.instances().into_iter().collect();
    assert!(acked.is_subset(&registered), "an acknowledged provision was lost");
    assert!(
        upstream_now.is_subset(&registered),
        "orphans upstream: {:?}",
        upstream_now.difference(&registered).take(5).collect::<Vec<_>>()
    );
    assert_eq!(
        upstream_now, registered,
        "the registry knows exactly what exists upstream"
    );
    eprintln!(
        "crash test: {} acknowledged, {upstream_at_crash} upstream at the kill, {} after recovery",
        acked.len(),
        upstream_now.len()
    );
    upstream.stop().await;
}

#[tokio::test]
async fn sigterm_lets_in_flight_calls_finish_and_takes_no_new_ones() {
    let broker = crate::support::fake_broker::FakeBroker::with_catalog(crate::faults::small_catalog()).await;
    broker.on(
        "PUT",
        "/v2/service_instances/*",
        crate::support::fake_broker::Reply::new(201, "{}").delay(Duration::from_millis(1500)),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: \"127.0.0.1:0\"\nstore:\n  path: store.redb\nshutdown_grace_secs: 10\n{}brokers:\n  - name: fb\n    url: {}\n",
            platforms_yaml(),
            broker.url()
        ),
    )
    .unwrap();
    let (mut gateway, url) = spawn_gateway(&config).await;
    let client = http();
    let catalog: Value = eventually("catalog", Duration::from_secs(30), || async {
        let r = client
            .get(format!("{url}/v2/catalog"))
            .basic_auth(PLATFORM_USER, Some(PLATFORM_PASSWORD))
            .header("X-Broker-API-Version", "2.17")
            .send()
            .await
            .ok()?;
        if r.status() == 200 {
            r.json().await.ok()
        } else {
            None
        }
    })
    .await;
    let body = json!({"service_id": catalog["services"][0]["id"], "plan_id": catalog["services"][0]["plans"][0]["id"]});
    let provision = |id: String| {
        let (client, url, body) = (client.clone(), url.clone(), body.clone());
        tokio::spawn(async move {
            client
                .put(format!("{url}/v2/service_instances/{id}"))
                .basic_auth(PLATFORM_USER, Some(PLATFORM_PASSWORD))
                .header("X-Broker-API-Version", "2.17")
                .json(&body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    let in_flight: Vec<_> = (0..10).map(|i| provision(format!("term-{i}"))).collect();
    eventually(
        "all ten reached the upstream",
        Duration::from_secs(10),
        || async { (broker.received("PUT", "/v2/service_instances/").len() == 10).then_some(()) },
    )
    .await;
    let pid = gateway.id().unwrap();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    // No new call is taken once the signal arrived.
    let late = provision("term-late".into()).await.unwrap();
    assert!(late.is_err(), "a call after SIGTERM was accepted: {late:?}");
    // Every call in flight completes.
    for call in in_flight {
        assert_eq!(call.await.unwrap().unwrap(), 201);
    }
    let exit = tokio::time::timeout(Duration::from_secs(15), gateway.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    // And their outcomes are in the store.
    let store = osb_routing::store::EmbeddedStore::open(dir.path().join("store.redb"))
        .await
        .unwrap();
    let ready = osb_routing::Store::instances(&store)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.operation.is_none())
        .count();
    assert_eq!(ready, 10);
}
