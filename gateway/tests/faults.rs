//! Upstream faults with scripted brokers: what the platform is told and what the gateway cleans up.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::eventually;
use crate::support::fake_broker::{FakeBroker, Recorded, Reply};
use crate::support::gateway::{TestGateway, platforms_yaml};
use crate::support::osb::{Query, service};
use crate::support::small_catalog::{gateway_for, small_catalog};

async fn wait_for_delete(broker: &FakeBroker, path: &str) -> Recorded {
    eventually(&format!("DELETE {path}"), Duration::from_secs(15), || async {
        broker.received("DELETE", path).into_iter().next()
    })
    .await
}

#[tokio::test]
async fn a_provision_timeout_is_504_and_the_instance_is_deprovisioned_upstream() {
    let broker = FakeBroker::with_catalog(small_catalog()).await;
    broker.on(
        "PUT",
        "/v2/service_instances/*",
        Reply::new(201, "{}").delay(Duration::from_secs(3)),
    );
    broker.on("DELETE", "/v2/service_instances/*", Reply::new(200, "{}"));
    let (mut gateway, ids) = gateway_for(&broker).await;
    let osb = gateway.osb();

    let response = osb.provision("slow-1", Query::none(), &ids.provision()).await;
    assert_eq!(response.status, 504);
    assert_eq!(response.body["error"], "UpstreamTimeout");

    let delete = wait_for_delete(&broker, "/v2/service_instances/slow-1").await;
    assert!(
        delete.query.contains("service_id=up-svc") && delete.query.contains("plan_id=up-small"),
        "{}",
        delete.query
    );
    assert!(delete.query.contains("accepts_incomplete=true"));
    assert_eq!(
        delete.header("x-broker-api-originating-identity"),
        None,
        "mitigation is not a user's request"
    );

    // The platform's own orphan mitigation meets a 410: the gateway owns the cleanup.
    let response = osb.deprovision("slow-1", ids.query()).await;
    assert_eq!(response.status, 410);

    gateway.wait_for_no_orphans().await;
    gateway.stop().await;
    let store = gateway.open_store().await;
    assert!(store.instances().await.unwrap().is_empty());
}

/// The soak found it: a provision held on its way (a proxy that forwards late) reaches the upstream
/// after the gateway timed out and after the first mitigation delete answered 410, and creates the
/// instance then. A "gone" that early is confirmed by another delete after the settle time.
#[tokio::test]
async fn an_early_gone_is_confirmed_by_a_second_delete_after_the_settle_time() {
    let broker = FakeBroker::with_catalog(small_catalog()).await;
    broker.on(
        "PUT",
        "/v2/service_instances/*",
        Reply::new(201, "{}").delay(Duration::from_secs(3)),
    );
    broker.on("DELETE", "/v2/service_instances/*", Reply::new(410, "{}"));
    let (mut gateway, ids) = gateway_for(&broker).await;
    let osb = gateway.osb();

    let response = osb.provision("late-1", Query::none(), &ids.provision()).await;
    assert_eq!(response.status, 504);
    wait_for_delete(&broker, "/v2/service_instances/late-1").await;
    let confirmed = eventually("a confirming delete", Duration::from_secs(15), || async {
        let deletes = broker.received("DELETE", "/v2/service_instances/late-1");
        (deletes.len() >= 2).then_some(deletes)
    })
    .await;
    assert!(
        confirmed.len() <= 3,
        "confirmed once, not hammered: {}",
        confirmed.len()
    );
    gateway.wait_for_no_orphans().await;
    gateway.stop().await;
    let store = gateway.open_store().await;
    assert!(store.instances().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_500_on_bind_is_502_and_an_unbind_follows() {
    let broker = FakeBroker::with_catalog(small_catalog()).await;
    broker.on("PUT", "/v2/service_instances/i1", Reply::new(201, "{}"));
    broker.on(
        "PUT",
        "/v2/service_instances/i1/service_bindings/*",
        Reply::new(500, r#"{"description":"boom"}"#),
    );
    broker.on(
        "DELETE",
        "/v2/service_instances/i1/service_bindings/*",
        Reply::new(200, "{}"),
    );
    let (gateway, ids) = gateway_for(&broker).await;
    let osb = gateway.osb();

    let response = osb.provision("i1", Query::none(), &ids.provision()).await;
    assert_eq!(response.status, 201);
    let response = osb.bind("i1", "b1", Query::none(), &ids.small_body()).await;
    assert_eq!(response.status, 502);
    assert_eq!(response.body["error"], "UpstreamError");
    assert!(response.description().unwrap().contains("500"));
    let delete = wait_for_delete(&broker, "/v2/service_instances/i1/service_bindings/b1").await;
    assert!(delete.query.contains("plan_id=up-small"));
    assert!(
        broker.received("DELETE", "/v2/service_instances/i1?").is_empty(),
        "the instance is left alone"
    );
    let response = osb.fetch_binding("i1", "b1").await;
    assert_eq!(
        response.status, 404,
        "an orphaned binding does not exist for the platform"
    );
}

#[tokio::test]
async fn a_malformed_201_is_502_and_mitigated() {
    let broker = FakeBroker::with_catalog(small_catalog()).await;
    broker.on(
        "PUT",
        "/v2/service_instances/*",
        Reply::new(201, "<html>created</html>"),
    );
    broker.on("DELETE", "/v2/service_instances/*", Reply::new(410, "{}"));
    let (gateway, ids) = gateway_for(&broker).await;
    let osb = gateway.osb();
    let response = osb.provision("m1", Query::none(), &ids.provision()).await;
    assert_eq!(response.status, 502);
    wait_for_delete(&broker, "/v2/service_instances/m1").await;
}

#[tokio::test]
async fn timeouts_408_and_concurrency_errors_are_not_mitigated() {
    let broker = FakeBroker::with_catalog(small_catalog()).await;
    broker.on(
        "PUT",
        "/v2/service_instances/i-408",
        Reply::new(408, r#"{"description":"slow"}"#),
    );
    broker.on(
        "PUT",
        "/v2/service_instances/i-422",
        Reply::new(422, r#"{"error":"ConcurrencyError","description":"busy"}"#),
    );
    broker.on("PUT", "/v2/service_instances/i-ok", Reply::new(201, "{}"));
    broker.on(
        "PUT",
        "/v2/service_instances/i-ok/service_bindings/*",
        Reply::new(408, "{}"),
    );
    let (mut gateway, ids) = gateway_for(&broker).await;
    let osb = gateway.osb();

    let response = osb.provision("i-408", Query::none(), &ids.provision()).await;
    assert_eq!(
        response.status, 408,
        "the upstream's 408 says it never got the request"
    );
    let response = osb.provision("i-422", Query::none(), &ids.provision()).await;
    assert_eq!(response.status, 422);
    assert_eq!(
        response.body["error"], "ConcurrencyError",
        "upstream error passes through"
    );
    let response = osb.provision("i-ok", Query::none(), &ids.provision()).await;
    assert_eq!(response.status, 201);
    let response = osb.bind("i-ok", "b", Query::none(), &ids.small_body()).await;
    assert_eq!(response.status, 408);

    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        broker.received("DELETE", "/").is_empty(),
        "no mitigation for 408 or ConcurrencyError"
    );
    gateway.stop().await;
    let store = gateway.open_store().await;
    let instances: Vec<String> = store
        .instances()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.instance_id)
        .collect();
    assert_eq!(instances, ["i-ok"], "rejected provisions left nothing behind");
    assert!(store.bindings().await.unwrap().is_empty());
}

#[tokio::test]
async fn nothing_sent_means_nothing_to_mitigate() {
    let mut broker = FakeBroker::with_catalog(small_catalog()).await;
    let (mut gateway, ids) = gateway_for(&broker).await;
    let osb = gateway.osb();
    broker.stop().await;
    let response = osb.provision("u1", Query::none(), &ids.provision()).await;
    assert_eq!(response.status, 502);
    assert_eq!(response.body["error"], "UpstreamUnavailable");
    gateway.stop().await;
    assert!(gateway.open_store().await.instances().await.unwrap().is_empty());
}

#[tokio::test]
async fn mitigation_resumes_after_a_gateway_restart() {
    let broker = FakeBroker::with_catalog(small_catalog()).await;
    broker.on("PUT", "/v2/service_instances/*", Reply::new(500, "{}"));
    broker.on("DELETE", "/v2/service_instances/*", Reply::new(503, "{}"));
    let (gateway, ids) = gateway_for(&broker).await;
    let osb = gateway.osb();
    let response = osb.provision("r1", Query::none(), &ids.provision()).await;
    assert_eq!(response.status, 502);
    wait_for_delete(&broker, "/v2/service_instances/r1").await;

    // Down with the cleanup still owed: the orphan is in the store.
    let mut gateway = gateway;
    gateway.stop().await;
    {
        let store = gateway.open_store().await;
        let orphans = store.orphans().await.unwrap();
        assert_eq!(
            orphans,
            vec![osb_routing::store::RecordRef::Instance("r1".into())]
        );
    }
    let attempts_before = broker.received("DELETE", "/v2/service_instances/r1").len();

    // The upstream now deletes asynchronously; the restarted gateway resumes and polls to the end.
    broker.on(
        "DELETE",
        "/v2/service_instances/*",
        Reply::new(202, r#"{"operation":"del r1"}"#),
    );
    broker.on(
        "GET",
        "/v2/service_instances/r1/last_operation",
        Reply::new(200, r#"{"state":"succeeded"}"#),
    );
    let mut gateway = gateway.restart().await;
    let poll = eventually("mitigation polls the delete", Duration::from_secs(20), || async {
        broker
            .received("GET", "/v2/service_instances/r1/last_operation")
            .into_iter()
            .next()
    })
    .await;
    assert!(poll.query.contains("operation=del%20r1"), "{}", poll.query);
    assert!(broker.received("DELETE", "/v2/service_instances/r1").len() > attempts_before);
    gateway.wait_for_no_orphans().await;
    gateway.stop().await;
    let store = gateway.open_store().await;
    assert!(store.orphans().await.unwrap().is_empty());
    assert!(store.instances().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_hanging_upstream_trips_its_breaker_fails_fast_and_heals_while_others_are_untouched() {
    let hanging = FakeBroker::with_catalog(small_catalog()).await;
    // It hangs on everything (the gateway's own clean-up deletes included) until it heals.
    hanging.on(
        "PUT",
        "/v2/service_instances/*",
        Reply::new(201, "{}").delay(Duration::from_secs(5)),
    );
    hanging.on(
        "DELETE",
        "/v2/service_instances/*",
        Reply::new(200, "{}").delay(Duration::from_secs(5)),
    );
    let healthy = FakeBroker::with_catalog(small_catalog()).await;
    healthy.on("PUT", "/v2/service_instances/*", Reply::new(201, "{}"));
    let yaml = format!(
        "{}brokers:\n  - name: hang\n    url: {}\n    timeout_secs: 1\n    breaker_failures: 3\n    breaker_open_secs: 2\n    refresh_interval_secs: 3600\n  - name: ok\n    url: {}\n",
        platforms_yaml(),
        hanging.url(),
        healthy.url()
    );
    let gateway = TestGateway::start(&yaml).await;
    let catalog = gateway.ready_catalog().await;
    let body_of = |name: &str| {
        let s = service(&catalog, name);
        json!({"service_id": s["id"], "plan_id": s["plans"][0]["id"]})
    };
    let (on_hang, on_ok) = (body_of("hang.db"), body_of("ok.db"));
    let osb = gateway.osb();
    let put = |id: String, body: &Value| {
        let (osb, body) = (osb.clone(), body.clone());
        async move { osb.provision(&id, Query::none(), &body).await }
    };

    // The healthy broker keeps answering all along.
    let healthy_calls = async {
        let mut statuses = Vec::new();
        for i in 0..20 {
            statuses.push(put(format!("ok-{i}"), &on_ok).await.status.as_u16());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        statuses
    };
    let hanging_calls = async {
        // Timeouts (each within the 1 s timeout; the gateway's own clean-up deletes time out too)
        // open the breaker after three failures ...
        let mut timeouts = 0;
        loop {
            let started = std::time::Instant::now();
            let response = put(format!("hang-{timeouts}"), &on_hang).await;
            if response.status == 503 {
                break;
            }
            assert_eq!(response.status, 504);
            assert!(
                started.elapsed() < Duration::from_millis(2500),
                "bounded by the timeout: {:?}",
                started.elapsed()
            );
            timeouts += 1;
            assert!(timeouts <= 3, "the breaker did not open after three failures");
        }
        assert!(timeouts >= 1);
        // ... then calls fail at once, before anything is recorded or sent.
        let sent_before = hanging.received("PUT", "/v2/service_instances/").len();
        let started = std::time::Instant::now();
        let response = put("hang-fast".into(), &on_hang).await;
        let fast = started.elapsed();
        assert_eq!(response.status, 503);
        assert_eq!(response.body["error"], "UpstreamUnavailable");
        assert!(fast < Duration::from_millis(250), "fail fast: {fast:?}");
        assert_eq!(
            hanging.received("PUT", "/v2/service_instances/").len(),
            sent_before,
            "nothing sent while open"
        );
        eprintln!("fail-fast answer with the breaker open: {fast:?}");
        timeouts
    };
    let (statuses, timeouts) = tokio::join!(healthy_calls, hanging_calls);
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
    let hang = gateway.broker_status("hang").await;
    assert_eq!(
        (hang["breaker"].as_str(), hang["healthy"].as_bool()),
        (Some("open"), Some(false))
    );

    // It heals: after the open period one probe goes through and closes the breaker.
    hanging.on("PUT", "/v2/service_instances/*", Reply::new(201, "{}"));
    hanging.on("DELETE", "/v2/service_instances/*", Reply::new(200, "{}"));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(put("hang-healed".into(), &on_hang).await.status, 201);
    assert_eq!(put("hang-healed-2".into(), &on_hang).await.status, 201);
    assert_eq!(gateway.broker_status("hang").await["name"], "hang");
    // The timed-out provisions were cleaned up upstream.
    for i in 0..timeouts {
        eventually(
            "timed-out provision deprovisioned",
            Duration::from_secs(20),
            || async {
                hanging
                    .received("DELETE", &format!("/v2/service_instances/hang-{i}"))
                    .into_iter()
                    .next()
            },
        )
        .await;
    }
}

#[tokio::test]
async fn a_connection_reset_mid_call_is_502_and_mitigated() {
    let reset = crate::support::reset_broker::ResetBroker::start(small_catalog()).await;
    let yaml = format!(
        "{}brokers:\n  - name: rst\n    url: {}\n    timeout_secs: 2\n",
        platforms_yaml(),
        reset.url()
    );
    let mut gateway = TestGateway::start(&yaml).await;
    let catalog = gateway.ready_catalog().await;
    let body = json!({"service_id": catalog["services"][0]["id"], "plan_id": catalog["services"][0]["plans"][0]["id"]});
    let response = gateway.osb().provision("rst-1", Query::none(), &body).await;
    assert_eq!(response.status, 502);
    assert_eq!(response.body["error"], "UpstreamError");
    // The provision may have been acted on: it is orphaned and the gateway keeps trying to delete it.
    eventually(
        "the mitigation tried a delete",
        Duration::from_secs(10),
        || async { (reset.resets.load(std::sync::atomic::Ordering::SeqCst) >= 2).then_some(()) },
    )
    .await;
    assert_eq!(gateway.registry().await["orphans"], 1);
    gateway.stop().await;
}
