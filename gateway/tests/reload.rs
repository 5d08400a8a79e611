//! The configuration file reloaded while serving (issue: day two, "adding a cloud means a
//! restart"): under a constant load on an unchanged broker and platform, one broker is added,
//! another's URL and password change, a platform is added and one removed. No call of the load
//! fails, the removed platform gets 401, the added one 200, the new broker's services appear with
//! the catalog's ETag changed once, and the changed broker is reached at its new URL. Then a
//! broker with a live instance is removed from the file: it is held (still served) until an
//! operator confirms the removal.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use osb_demo::{Behaviour, DemoBroker, Endpoint};
use serde_json::{Value, json};

use crate::rotation::provision_load;
use crate::support::gateway::{TestGateway, platforms_yaml};
use crate::support::osb::Query;
use crate::support::small_catalog::{Ids, small_catalog};
use crate::support::{eventually, http};

async fn demo(name: &str, password: &str) -> DemoBroker {
    DemoBroker::start_as(name, password, small_catalog().into(), Behaviour::default())
        .await
        .unwrap()
}

fn broker_entry(broker: &DemoBroker, name: &str, password: &str) -> String {
    format!(
        "  - name: {name}\n    url: {}\n    username: {}\n    password: {password}\n",
        broker.url(),
        broker.username
    )
}

fn extra_platform(name: &str) -> String {
    format!("  - name: {name}\n    username: {name}\n    password: {name}-pw-77\n")
}

/// `GET /v2/catalog` as platform user `user` (password `<user>-pw-77`): the status.
async fn catalog_status(gw: &TestGateway, user: &str) -> u16 {
    http()
        .get(gw.url("/v2/catalog"))
        .basic_auth(user, Some(format!("{user}-pw-77")))
        .header("X-Broker-API-Version", "2.17")
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

fn has_service(catalog: &Value, name: &str) -> bool {
    catalog["services"]
        .as_array()
        .is_some_and(|s| s.iter().any(|s| s["name"] == name))
}

async fn admin_post(gw: &TestGateway, path: &str, body: Value) -> (u16, Value) {
    let response = http().post(gw.admin_url(path)).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn brokers_and_platforms_change_under_load_without_a_failed_call() {
    let steady = demo("steady", "steady-pw-1").await;
    let moving = demo("moving", "moving-pw-1").await;
    let moved = demo("moving", "moving-pw-2").await;
    let newcomer = demo("newcomer", "newcomer-pw-1").await;
    let file = |platforms: &str, brokers: &str| format!("{}{platforms}brokers:\n{brokers}", platforms_yaml());
    let before = file(
        &extra_platform("leaving"),
        &(broker_entry(&steady, "steady", "steady-pw-1") + &broker_entry(&moving, "moving", "moving-pw-1")),
    );
    let gw = TestGateway::start(&before).await;
    let catalog = gw.ready_catalog().await;
    assert!(has_service(&catalog, "moving.db") && !has_service(&catalog, "newcomer.db"));
    assert_eq!(catalog_status(&gw, "leaving").await, 200);
    assert_eq!(catalog_status(&gw, "arriving").await, 401);
    let ids = Arc::new(Ids::of(&catalog, "steady.db"));
    let gw = Arc::new(gw);

    // The load: provisions and deprovisions on the unchanged broker, catalog reads by the
    // unchanged platform (noting every ETag served).
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..3)
        .map(|task| tokio::spawn(provision_load(gw.clone(), ids.clone(), task, stop.clone())))
        .collect();
    let reader = {
        let (gw, stop) = (gw.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut etags, mut failures) = (Vec::<String>::new(), Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let response = gw.catalog().await;
                if response.status() != 200 {
                    failures.push(response.status().as_u16());
                    continue;
                }
                let etag = response.headers()["etag"].to_str().unwrap().to_owned();
                if etags.last() != Some(&etag) {
                    etags.push(etag);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (etags, failures)
        })
    };
    let provisions = || steady.request_count(Endpoint::Provision);
    let settle = |after: u64| {
        let steady = &steady;
        async move {
            eventually("provisions go on", Duration::from_secs(10), || async {
                (steady.request_count(Endpoint::Provision) > after + 20).then_some(())
            })
            .await;
        }
    };
    settle(0).await;

    let after = file(
        &extra_platform("arriving"),
        &(broker_entry(&steady, "steady", "steady-pw-1")
            + &broker_entry(&moved, "moving", "moving-pw-2")
            + &broker_entry(&newcomer, "newcomer", "newcomer-pw-1")),
    );
    std::fs::write(&gw.config_path, &after).unwrap();
    eventually(
        "the new broker's services are served",
        Duration::from_secs(15),
        || async {
            let response = gw.catalog().await;
            let catalog: Value = response.json().await.ok()?;
            has_service(&catalog, "newcomer.db").then_some(())
        },
    )
    .await;
    assert_eq!(catalog_status(&gw, "arriving").await, 200, "the platform added");
    assert_eq!(catalog_status(&gw, "leaving").await, 401, "the platform removed");
    settle(provisions()).await;

    // The changed broker is reached at its new URL, with its new password.
    let catalog = gw.ready_catalog().await;
    let moving_ids = Ids::of(&catalog, "moving.db");
    let osb = gw.osb();
    let created = osb
        .provision("on-moved-1", Query::none(), &moving_ids.small_body())
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(moved.request_count(Endpoint::Provision), 1);
    assert_eq!(moving.request_count(Endpoint::Provision), 0);

    stop.store(true, Ordering::Relaxed);
    let (mut calls, mut failures) = (0, Vec::new());
    for task in load {
        let (ok, failed) = task.await.unwrap();
        calls += ok;
        failures.extend(failed);
    }
    let (etags, catalog_failures) = reader.await.unwrap();
    assert!(calls > 40, "the load ran: {calls} provision + deprovision pairs");
    assert!(
        failures.is_empty(),
        "{} of {calls} failed: {:?}",
        failures.len(),
        failures.first()
    );
    assert!(
        catalog_failures.is_empty(),
        "catalog reads failed: {catalog_failures:?}"
    );
    assert_eq!(etags.len(), 2, "the ETag changed once: {etags:?}");

    let report = gw.admin_json("/admin/reload").await;
    assert_eq!(report["applied"], true, "{report}");
    assert_eq!(report["brokers"]["added"], json!(["newcomer"]), "{report}");
    assert_eq!(report["brokers"]["changed"], json!(["moving"]), "{report}");
    assert_eq!(report["brokers"]["removed"], json!([]), "{report}");
    assert_eq!(report["platforms"]["added"], json!(["arriving"]), "{report}");
    assert_eq!(report["platforms"]["removed"], json!(["leaving"]), "{report}");
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("osb_gateway_config_reloads_total{outcome=\"ok\"} 1"),
        "{metrics}"
    );

    // A broker with a live instance removed from the file: held, still served, until confirmed.
    let without_moving = file(
        &extra_platform("arriving"),
        &(broker_entry(&steady, "steady", "steady-pw-1")
            + &broker_entry(&newcomer, "newcomer", "newcomer-pw-1")),
    );
    std::fs::write(&gw.config_path, &without_moving).unwrap();
    let report = eventually("the removal is held", Duration::from_secs(10), || async {
        let report = gw.admin_json("/admin/reload").await;
        (report["removals_held"][0]["broker"] == "moving").then_some(report)
    })
    .await;
    assert_eq!(report["removals_held"][0]["instances"], 1, "{report}");
    assert_eq!(report["brokers"]["removed"], json!([]), "{report}");
    assert!(has_service(&gw.ready_catalog().await, "moving.db"));
    let again = osb
        .provision("on-moved-2", Query::none(), &moving_ids.small_body())
        .await;
    assert_eq!(
        again.status,
        201,
        "the held broker is still in force: {}",
        again.text()
    );
    assert_eq!(moved.request_count(Endpoint::Provision), 2);

    // An unknown field is refused; then the operator confirms the removal.
    let (status, _) = admin_post(&gw, "/admin/reload", json!({"confirm": ["moving"]})).await;
    assert_eq!(status, 400);
    let (status, report) = admin_post(&gw, "/admin/reload", json!({"confirm_removal": ["moving"]})).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["brokers"]["removed"], json!(["moving"]), "{report}");
    assert_eq!(report["removals_held"], json!([]), "{report}");
}
