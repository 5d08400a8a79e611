//! Credential rotation without an outage, on both sides of the gateway.
//!
//! - A platform's password file holds the old and the new password at once (one per line), then
//!   only the new one. The gateway reads the file again when it changes; under load no call fails,
//!   and the removed password gets 401.
//! - An upstream broker's password rotates: the broker accepts old and new, the gateway's file gets
//!   the new one, the broker drops the old. Then the other order: the broker moves first, and the
//!   gateway's file holds both lines (it falls back to the second on the broker's 401). Under a
//!   provision load no call fails; the broker refuses the removed password.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use osb_demo::{Behaviour, DemoBroker, Endpoint};
use serde_json::Value;

use crate::support::fake_broker::FakeBroker;
use crate::support::gateway::{TestGateway, platforms_yaml};
use crate::support::small_catalog::{Ids, small_catalog};
use crate::support::{eventually, http};

/// `GET /v2/catalog` as user `rot` with `password`: the status.
async fn catalog_as(gw: &TestGateway, password: &str) -> Result<u16, String> {
    http()
        .get(gw.url("/v2/catalog"))
        .basic_auth("rot", Some(password))
        .header("X-Broker-API-Version", "2.17")
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_platform_password_rotates_under_load_without_a_failed_call() {
    let broker = FakeBroker::with_catalog(small_catalog()).await;
    let gw = TestGateway::start_with_files(
        &format!(
            "platforms:\n  - name: k8s-rot\n    username: rot\n    password_file: rot.pw\n\
             brokers:\n  - name: fb\n    url: {}\n",
            broker.url()
        ),
        &[("rot.pw", "old-pw-1\n")],
    )
    .await;
    eventually("the catalog is served", Duration::from_secs(10), || async {
        (catalog_as(&gw, "old-pw-1").await == Ok(200)).then_some(())
    })
    .await;

    // Load with the password the platform currently uses.
    let current = Arc::new(Mutex::new("old-pw-1".to_owned()));
    let stop = Arc::new(AtomicBool::new(false));
    let gw = Arc::new(gw);
    let mut load = Vec::new();
    for _ in 0..4 {
        let (gw, current, stop) = (gw.clone(), current.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let password = current.lock().unwrap().clone();
                match catalog_as(&gw, &password).await {
                    Ok(200) => ok += 1,
                    other => failed.push(format!("{password}: {other:?}")),
                }
            }
            (ok, failed)
        }));
    }

    // 1. Both valid: the new line is added; the gateway takes it within a second or two.
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.write_file("rot.pw", "old-pw-1\nnew-pw-2\n");
    eventually(
        "the new password is accepted",
        Duration::from_secs(10),
        || async { (catalog_as(&gw, "new-pw-2").await == Ok(200)).then_some(()) },
    )
    .await;
    // 2. The platform switches; 3. the old line is removed.
    *current.lock().unwrap() = "new-pw-2".to_owned();
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.write_file("rot.pw", "new-pw-2\n");
    eventually("the old password is refused", Duration::from_secs(10), || async {
        (catalog_as(&gw, "old-pw-1").await == Ok(401)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);

    let (mut calls, mut failures) = (0, Vec::new());
    for task in load {
        let (ok, failed) = task.await.unwrap();
        calls += ok;
        failures.extend(failed);
    }
    assert!(calls > 20, "the load ran: {calls} calls");
    assert!(
        failures.is_empty(),
        "{} of {calls} calls failed: {:?}",
        failures.len(),
        failures.first()
    );
    assert_eq!(catalog_as(&gw, "old-pw-1").await, Ok(401));
    assert_eq!(catalog_as(&gw, "new-pw-2").await, Ok(200));
}

/// Provisions (then deprovisions) fresh instances until `stop`; returns the calls that went
/// through and the failures.
pub(crate) async fn provision_load(
    gw: Arc<TestGateway>,
    ids: Arc<Ids>,
    task: usize,
    stop: Arc<AtomicBool>,
) -> (u32, Vec<String>) {
    let osb = gw.osb();
    let (mut ok, mut failed) = (0u32, Vec::new());
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let instance = format!("rot-{task}-{n}");
        let provisioned = osb
            .provision(&instance, crate::support::osb::Query::none(), &ids.small_body())
            .await;
        if provisioned.status != 201 {
            failed.push(format!(
                "provision {instance}: {} {}",
                provisioned.status,
                provisioned.text()
            ));
            continue;
        }
        let gone = osb.deprovision(&instance, ids.query()).await;
        if gone.status == 200 {
            ok += 1;
        } else {
            failed.push(format!("deprovision {instance}: {} {}", gone.status, gone.text()));
        }
    }
    (ok, failed)
}

/// `GET /v2/catalog` straight at the broker as its user with `password`: the status.
async fn broker_catalog_as(broker: &DemoBroker, password: &str) -> u16 {
    http()
        .get(format!("{}/v2/catalog", broker.url()))
        .basic_auth(&broker.username, Some(password))
        .header("X-Broker-API-Version", "2.17")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn an_upstream_password_rotates_under_load_without_a_failed_call() {
    let broker = DemoBroker::start_as("up", "up-old", small_catalog().into(), Behaviour::default())
        .await
        .unwrap();
    let gw = TestGateway::start_with_files(
        &format!(
            "{}brokers:\n  - name: up\n    url: {}\n    username: {}\n    password_file: up.pw\n",
            platforms_yaml(),
            broker.url(),
            broker.username
        ),
        &[("up.pw", "up-old\n")],
    )
    .await;
    let catalog = gw.ready_catalog().await;
    let ids = Arc::new(Ids::of(&catalog, "up.db"));
    let gw = Arc::new(gw);
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|task| tokio::spawn(provision_load(gw.clone(), ids.clone(), task, stop.clone())))
        .collect();
    let upstream = &broker;
    let provisions = || upstream.request_count(Endpoint::Provision);
    let settle = |after: u64| async move {
        eventually("provisions go on", Duration::from_secs(10), || async {
            (upstream.request_count(Endpoint::Provision) > after + 20).then_some(())
        })
        .await;
    };
    settle(0).await;

    // The gateway's side first: the broker accepts both, the file gets the new one, the broker
    // drops the old.
    broker.accept_passwords(&["up-old", "up-new"]);
    settle(provisions()).await;
    gw.write_file("up.pw", "up-new\n");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    settle(provisions()).await;
    broker.accept_passwords(&["up-new"]);
    settle(provisions()).await;

    // The broker's side first: the file holds both (new first, the next one second), the broker
    // moves, the gateway falls back to the second line on the broker's 401 and keeps it.
    gw.write_file("up.pw", "up-new\nup-next\n");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    broker.accept_passwords(&["up-next"]);
    settle(provisions()).await;
    gw.write_file("up.pw", "up-next\n");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    settle(provisions()).await;
    stop.store(true, Ordering::Relaxed);

    let (mut calls, mut failures) = (0, Vec::new());
    for task in load {
        let (ok, failed) = task.await.unwrap();
        calls += ok;
        failures.extend(failed);
    }
    assert!(calls > 100, "the load ran: {calls} provision + deprovision pairs");
    assert!(
        failures.is_empty(),
        "{} of {calls} calls failed: {:?}",
        failures.len(),
        failures.first()
    );
    assert_eq!(broker_catalog_as(&broker, "up-old").await, 401);
    assert_eq!(broker_catalog_as(&broker, "up-new").await, 401);
    assert_eq!(broker_catalog_as(&broker, "up-next").await, 200);
    // The catalog refresh goes on with the new credential: the broker is healthy.
    let status: Value = gw.broker_status("up").await;
    assert_eq!(status["healthy"], true, "{status}");
}

#[tokio::test]
async fn a_platform_added_to_the_configuration_file_is_served_without_a_restart() {
    let broker = FakeBroker::with_catalog(small_catalog()).await;
    let gw = TestGateway::start(&format!(
        "{}brokers:\n  - name: fb\n    url: {}\n    refresh_interval_secs: 3600\n",
        platforms_yaml(),
        broker.url()
    ))
    .await;
    gw.ready_catalog().await;
    let as_new = || async {
        http()
            .get(gw.url("/v2/catalog"))
            .basic_auth("newcomer", Some("newcomer-pw-41"))
            .header("X-Broker-API-Version", "2.17")
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    assert_eq!(as_new().await, 401);
    let original = std::fs::read_to_string(&gw.config_path).unwrap();
    let added = original.replacen(
        "platforms:\n",
        "platforms:\n  - name: newcomer\n    username: newcomer\n    password: newcomer-pw-41\n",
        1,
    );
    // A broker setting changed at the same time waits for a restart; the platform does not.
    let added = added.replace("refresh_interval_secs: 3600", "refresh_interval_secs: 1800");
    std::fs::write(&gw.config_path, &added).unwrap();
    eventually("the new platform is served", Duration::from_secs(10), || async {
        (as_new().await == 200).then_some(())
    })
    .await;
    assert_eq!(gw.osb().catalog().await.status, 200, "the others still are");
    // A file that does not validate changes nothing.
    std::fs::write(
        &gw.config_path,
        added.replace("username: newcomer", "username: \"new:comer\""),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(as_new().await, 200);
    // Removed: refused.
    std::fs::write(&gw.config_path, &original).unwrap();
    eventually(
        "the removed platform is refused",
        Duration::from_secs(10),
        || async { (as_new().await == 401).then_some(()) },
    )
    .await;
}
