//! Credential rotation without an outage: a platform's password file holds the old and the new
//! password at once (one per line), then only the new one. The gateway reads the file again when it
//! changes; under load no call fails, and the removed password gets 401.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::fake_broker::FakeBroker;
use crate::support::gateway::TestGateway;
use crate::support::small_catalog::small_catalog;
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
