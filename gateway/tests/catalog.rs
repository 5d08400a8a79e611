//! `GET /v2/catalog` end to end: real gateway, real upstream brokers on loopback.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::support::fake_broker::{FakeBroker, Reply};
use crate::support::gateway::{BEARER_TOKEN, PLATFORM_PASSWORD, PLATFORM_USER, TestGateway, platforms_yaml};
use crate::support::obapi::{BROKER_PASSWORD, ObapiBroker};
use crate::support::osb::{OsbClient, OsbResponse, Query, instance_path};
use crate::support::{eventually, fixture, fixture_path, http, logs};

/// `name` → service, for one catalog.
fn by_name(catalog: &Value) -> HashMap<String, Value> {
    catalog["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap().to_owned(), s.clone()))
        .collect()
}

/// Every service and plan id of a catalog.
fn all_ids(catalog: &Value) -> Vec<String> {
    let mut ids = Vec::new();
    for service in catalog["services"].as_array().unwrap() {
        ids.push(service["id"].as_str().unwrap().to_owned());
        for plan in service["plans"].as_array().unwrap() {
            ids.push(plan["id"].as_str().unwrap().to_owned());
        }
    }
    ids
}

/// `service` with its name and ids replaced by `other`'s: what must be left equal after merging.
fn with_identity_of(service: &Value, other: &Value) -> Value {
    let mut service = service.clone();
    service["name"] = other["name"].clone();
    service["id"] = other["id"].clone();
    let plans = service["plans"].as_array_mut().unwrap();
    assert_eq!(plans.len(), other["plans"].as_array().unwrap().len());
    for (plan, theirs) in plans.iter_mut().zip(other["plans"].as_array().unwrap()) {
        plan["id"] = theirs["id"].clone();
    }
    service
}

/// Asserts that `gateway` holds each upstream service exactly once as `<namespace>.<name>`, with
/// every field but name and ids unchanged.
fn assert_merged(gateway: &Value, upstreams: &[(&str, &Value)]) {
    let published = by_name(gateway);
    let expected: usize = upstreams
        .iter()
        .map(|(_, c)| c["services"].as_array().unwrap().len())
        .sum();
    assert_eq!(
        gateway["services"].as_array().unwrap().len(),
        expected,
        "every upstream service, once"
    );
    assert_eq!(published.len(), expected, "names are unique");
    for (namespace, upstream) in upstreams {
        for service in upstream["services"].as_array().unwrap() {
            let name = format!("{namespace}.{}", service["name"].as_str().unwrap());
            let ours = published.get(&name).unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(
                ours,
                &with_identity_of(service, ours),
                "{name}: a field changed on the way through"
            );
            assert_ne!(ours["id"], service["id"], "{name}: ids are rewritten");
        }
    }
    let ids = all_ids(gateway);
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        ids.len(),
        "ids are unique"
    );
}

fn three_brokers_yaml(azure: &ObapiBroker, aws: &ObapiBroker, gcp: &FakeBroker) -> String {
    format!(
        "{}brokers:\n{}{}  - name: gcp\n    url: {}\n    bearer_token: gcp-upstream-token-77\n",
        platforms_yaml(),
        azure.config_entry("azure"),
        aws.config_entry("aws"),
        gcp.url(),
    )
}

#[tokio::test]
async fn three_brokers_merge_into_one_catalog() {
    let logs = logs::capture();
    let azure = ObapiBroker::start(&fixture_path("azure-osba-catalog.json")).await;
    let aws = ObapiBroker::start(&fixture_path("aws-servicebroker-catalog.json")).await;
    let gcp = FakeBroker::with_catalog(fixture("gcp-service-broker-catalog.json")).await;
    let gateway = TestGateway::start(&three_brokers_yaml(&azure, &aws, &gcp)).await;

    let catalog = gateway.ready_catalog().await;
    let (azure_served, aws_served) = (azure.catalog().await, aws.catalog().await);
    let gcp_served: Value = serde_json::from_slice(&fixture("gcp-service-broker-catalog.json")).unwrap();
    assert_merged(
        &catalog,
        &[
            ("azure", &azure_served),
            ("aws", &aws_served),
            ("gcp", &gcp_served),
        ],
    );
    assert_eq!(catalog["services"].as_array().unwrap().len(), 39 + 27 + 20);
    // GCP's quirk survives byte-for-byte in meaning: update schemas with "parameters": null.
    let storage = &by_name(&catalog)["gcp.google-storage"];
    assert_eq!(
        storage["plans"][0]["schemas"]["service_instance"]["update"],
        serde_json::json!({"parameters": null})
    );

    // The gateway spoke OSB to its upstreams: version, credentials, a request identity.
    let fetch = &gcp.received("GET", "/v2/catalog")[0];
    assert_eq!(fetch.header("x-broker-api-version"), Some("2.17"));
    assert_eq!(
        fetch.header("authorization"),
        Some("Bearer gcp-upstream-token-77")
    );
    assert!(
        fetch
            .header("x-broker-api-request-identity")
            .is_some_and(|v| !v.is_empty())
    );

    // A strong ETag; If-None-Match with it → 304 and no body; another tag → 200.
    let response = gateway.catalog().await;
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && !etag.starts_with("W/"));
    let if_none_match = |tag: String| {
        OsbResponse::send(
            gateway
                .request(Method::GET, "/v2/catalog")
                .header("If-None-Match", tag),
        )
    };
    let not_modified = if_none_match(etag.clone()).await;
    assert_eq!(not_modified.status, 304);
    assert_eq!(not_modified.headers["etag"], etag.as_str());
    assert!(not_modified.bytes.is_empty());
    let weak_match = if_none_match(format!("\"other\", W/{etag}")).await;
    assert_eq!(
        weak_match.status, 304,
        "If-None-Match uses the weak comparison (RFC 7232)"
    );
    let other = if_none_match("\"nope\"".to_owned()).await;
    assert_eq!(other.status, 200);

    // Secrets never reach the logs.
    let text = logs.text();
    assert!(text.contains("Catalog refreshed."), "logs were captured");
    for secret in [
        PLATFORM_PASSWORD,
        BROKER_PASSWORD,
        BEARER_TOKEN,
        "gcp-upstream-token-77",
    ] {
        assert!(!text.contains(secret), "a secret leaked into the logs");
    }
}

#[tokio::test]
async fn ids_are_identical_across_restarts() {
    let aws = ObapiBroker::start(&fixture_path("aws-servicebroker-catalog.json")).await;
    let gcp = FakeBroker::with_catalog(fixture("gcp-service-broker-catalog.json")).await;
    let yaml = format!(
        "{}brokers:\n{}  - name: gcp\n    url: {}\n",
        platforms_yaml(),
        aws.config_entry("aws"),
        gcp.url()
    );
    let gateway = TestGateway::start(&yaml).await;
    let before = gateway.ready_catalog().await;
    let etag_before = gateway.catalog().await.headers()["etag"].clone();

    let gateway = gateway.restart().await;
    let after = gateway.ready_catalog().await;
    assert_eq!(all_ids(&before), all_ids(&after));
    assert_eq!(before, after);
    assert_eq!(
        gateway.catalog().await.headers()["etag"],
        etag_before,
        "same bytes, same ETag"
    );
}

#[tokio::test]
async fn two_gateway_processes_with_one_config_publish_identical_catalogs() {
    let aws = FakeBroker::with_catalog(fixture("aws-servicebroker-catalog.json")).await;
    let gcp = FakeBroker::with_catalog(fixture("gcp-service-broker-catalog.json")).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: \"127.0.0.1:0\"\n{}brokers:\n  - name: aws\n    url: {}\n  - name: gcp\n    url: {}\n",
            platforms_yaml(),
            aws.url(),
            gcp.url()
        ),
    )
    .unwrap();

    let mut processes = Vec::new();
    let mut catalogs = Vec::new();
    for i in 0..2 {
        // Same file; each process gets its own store through the environment override.
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_osb-gateway"))
            .args(["serve", "--config", config.to_str().unwrap()])
            .env("OSB_GATEWAY__STORE__PATH", dir.path().join(format!("store-{i}")))
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
        let line = lines.next_line().await.unwrap().unwrap();
        let url = line.strip_prefix("osb-gateway listening on ").unwrap().to_owned();
        let response = OsbClient::new(url).ready_catalog().await;
        catalogs.push((response.header("etag").unwrap().to_owned(), response.bytes));
        processes.push(child);
    }
    assert_eq!(catalogs[0].0, catalogs[1].0, "identical ETags");
    assert_eq!(catalogs[0].1, catalogs[1].1, "byte-identical catalogs");
    assert_eq!(
        serde_json::from_slice::<Value>(&catalogs[0].1).unwrap()["services"]
            .as_array()
            .unwrap()
            .len(),
        47
    );
    for mut child in processes {
        child.kill().await.unwrap();
    }
}

#[tokio::test]
async fn the_same_broker_registered_twice_gets_two_namespaces() {
    let aws = ObapiBroker::start(&fixture_path("aws-servicebroker-catalog.json")).await;
    let yaml = format!(
        "{}brokers:\n{}{}",
        platforms_yaml(),
        aws.config_entry("aws-east"),
        aws.config_entry("aws-west")
    );
    let gateway = TestGateway::start(&yaml).await;
    let catalog = gateway.ready_catalog().await;
    let served = aws.catalog().await;
    assert_merged(&catalog, &[("aws-east", &served), ("aws-west", &served)]);
    let names = by_name(&catalog);
    assert_ne!(names["aws-east.dynamodb"]["id"], names["aws-west.dynamodb"]["id"]);
}

#[tokio::test]
async fn platforms_must_authenticate_and_speak_osb_2x() {
    let gcp = FakeBroker::with_catalog(fixture("osbapi-spec-example-catalog.json")).await;
    let gateway = TestGateway::start(&format!(
        "{}brokers:\n  - name: ex\n    url: {}\n",
        platforms_yaml(),
        gcp.url()
    ))
    .await;
    gateway.ready_catalog().await;
    let osb = gateway.osb();

    for (client, what) in [
        (osb.clone().anonymous(), "no credentials"),
        (osb.clone().basic(PLATFORM_USER, "wrong"), "wrong password"),
        (osb.clone().basic("nobody", PLATFORM_PASSWORD), "unknown user"),
        (osb.clone().bearer("not-the-token"), "wrong token"),
    ] {
        let response = client.catalog().await;
        assert_eq!(response.status, 401, "{what}");
        let challenge = response.header("www-authenticate").unwrap();
        assert!(challenge.contains("Basic realm=\"osb-gateway\""), "{what}");
        assert!(response.body["description"].is_string(), "{what}: OSB error body");
    }

    for (version, what) in [
        (None, "missing"),
        (Some("3.0"), "3.x"),
        (Some("1.12"), "1.x"),
        (Some("latest"), "garbage"),
    ] {
        let response = osb.clone().version(version).catalog().await;
        assert_eq!(response.status, 412, "{what}");
        assert!(
            response.description().unwrap().contains("X-Broker-API-Version"),
            "{what}"
        );
    }

    let response = osb
        .clone()
        .bearer(BEARER_TOKEN)
        .version(Some("2.14"))
        .catalog()
        .await;
    assert_eq!(response.status, 200, "bearer token platform, older 2.x");

    let response = OsbResponse::send(
        osb.request(Method::GET, "/v2/catalog")
            .header("X-Broker-API-Request-Identity", "req-42"),
    )
    .await;
    assert_eq!(
        response.headers["x-broker-api-request-identity"], "req-42",
        "echoed"
    );
    let minted = gateway.catalog().await.headers()["x-broker-api-request-identity"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(minted.len(), 36, "minted a UUID when the platform sent none");
}

#[tokio::test]
async fn a_dead_upstream_is_served_stale_across_restarts_until_it_returns() {
    let mut aws = ObapiBroker::start(&fixture_path("aws-servicebroker-catalog.json")).await;
    let gcp = FakeBroker::with_catalog(fixture("gcp-service-broker-catalog.json")).await;
    let yaml = format!(
        "{}brokers:\n{}    refresh_interval_secs: 1\n  - name: gcp\n    url: {}\n    refresh_interval_secs: 1\n",
        platforms_yaml(),
        aws.config_entry("aws"),
        gcp.url()
    );
    let gateway = TestGateway::start(&yaml).await;
    let healthy = gateway.ready_catalog().await;
    assert_eq!(healthy["services"].as_array().unwrap().len(), 47);
    let generation = gateway.served_catalog().await["generation"].clone();

    // Kill the upstream: the next refresh fails, the broker is marked stale, its services stay.
    aws.kill().await;
    let status = eventually("aws marked stale", Duration::from_secs(20), || async {
        let status = gateway.broker_status("aws").await;
        (status["freshness"] == "stale").then_some(status)
    })
    .await;
    assert!(
        status["last_error"].as_str().unwrap().contains("unreachable"),
        "{status}"
    );
    assert_eq!(gateway.ready_catalog().await, healthy, "still served, unchanged");
    assert_eq!(
        gateway.served_catalog().await["generation"],
        generation,
        "a status change alone keeps the catalog generation (and what is cached by it)"
    );

    // Restart the gateway while the upstream is still down: the persisted catalog is served.
    let gateway = gateway.restart().await;
    let after_restart = gateway.ready_catalog().await;
    assert_eq!(after_restart, healthy, "served from the store after a restart");
    let status = gateway.broker_status("aws").await;
    assert_eq!(status["freshness"], "stale");
    assert_eq!(status["source"], "store");

    // The upstream comes back: the next refresh clears the stale mark.
    aws.restart().await;
    eventually("aws fresh again", Duration::from_secs(20), || async {
        let status = gateway.broker_status("aws").await;
        (status["freshness"] == "fresh" && status["source"] == "upstream").then_some(())
    })
    .await;
    assert_eq!(gateway.broker_status("aws").await["last_error"], Value::Null);
    assert_eq!(gateway.ready_catalog().await, healthy);
}

#[tokio::test]
async fn before_every_first_catalog_is_in_the_catalog_is_503_then_partial_after_the_grace() {
    let gcp = FakeBroker::with_catalog(fixture("gcp-service-broker-catalog.json")).await;
    let mut down = FakeBroker::with_catalog(fixture("aws-servicebroker-catalog.json")).await;
    down.stop().await;
    let yaml = format!(
        "{}catalog:\n  startup_grace_secs: 2\nbrokers:\n  - name: gcp\n    url: {}\n  - name: aws\n    url: {}\n    refresh_interval_secs: 1\n",
        platforms_yaml(),
        gcp.url(),
        down.url()
    );
    let gateway = TestGateway::start(&yaml).await;

    let response = gateway.catalog().await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "CatalogUnavailable");
    assert!(body["description"].as_str().unwrap().contains("aws"));
    let ready = http().get(gateway.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);

    // After the grace: what there is, and health says what is missing.
    let catalog = gateway.ready_catalog().await;
    assert_eq!(catalog["services"].as_array().unwrap().len(), 20);
    let brokers = gateway.brokers().await;
    assert_eq!(
        brokers["catalog"]["availability"],
        serde_json::json!({"state": "partial", "missing": ["aws"]})
    );
    let ready: Value = http()
        .get(gateway.admin_url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["catalog"]["state"], "partial");

    // The late broker arrives: complete.
    down.restart().await;
    let catalog = eventually("aws arrives", Duration::from_secs(20), || async {
        let catalog = gateway.ready_catalog().await;
        (catalog["services"].as_array().unwrap().len() == 47).then_some(catalog)
    })
    .await;
    assert!(by_name(&catalog).contains_key("aws.dynamodb"));
}

#[tokio::test]
async fn a_broken_upstream_catalog_costs_only_what_is_broken() {
    let logs = logs::capture();
    let garbage = FakeBroker::with_catalog("<html>502 Bad Gateway</html>").await;
    let flawed = FakeBroker::with_catalog(
        serde_json::to_vec(&serde_json::json!({"services": [
            {"name": "no-plans", "id": "s1", "description": "d", "bindable": true, "plans": []},
            {"name": "db", "id": "s2", "description": "d", "bindable": true, "plans": [{"name": "p", "id": "p2", "description": "d"}]},
            {"name": "db", "id": "s3", "description": "d", "bindable": true, "plans": [{"name": "p", "id": "p3", "description": "d"}]},
            {"name": "cache", "id": "s4", "bindable": true, "plans": [{"name": "p", "id": "p4", "description": "d"}]},
            {"name": "queue", "id": "s5", "description": "d", "bindable": true, "plans": [{"name": "p", "id": "p5", "description": "d"}]}
        ]}))
        .unwrap(),
    )
    .await;
    let good = FakeBroker::with_catalog(fixture("osbapi-spec-example-catalog.json")).await;
    let yaml = format!(
        "{}catalog:\n  startup_grace_secs: 1\nbrokers:\n  - name: garbage\n    url: {}\n    refresh_interval_secs: 1\n  - name: flawed\n    url: {}\n    refresh_interval_secs: 1\n  - name: good\n    url: {}\n    refresh_interval_secs: 1\n",
        platforms_yaml(),
        garbage.url(),
        flawed.url(),
        good.url()
    );
    let gateway = TestGateway::start(&yaml).await;
    let catalog = gateway.ready_catalog().await;
    let mut names: Vec<_> = by_name(&catalog).into_keys().collect();
    names.sort();
    assert_eq!(names, ["flawed.db", "flawed.queue", "good.fake-service"]);

    let garbage_status = gateway.broker_status("garbage").await;
    assert_eq!(garbage_status["freshness"], "pending");
    assert!(
        garbage_status["last_error"]
            .as_str()
            .unwrap()
            .contains("not JSON"),
        "{garbage_status}"
    );
    assert_eq!(gateway.broker_status("flawed").await["dropped"], 3);
    let text = logs.text();
    assert!(
        text.contains("Dropped from the catalog.")
            && text.contains("what=service \"no-plans\" reason=no plans"),
        "{text}"
    );
    assert!(text.contains("what=service \"db\" reason=duplicate service name"));
    assert!(text.contains("missing field `description`"));

    // A good broker that turns bad keeps its last good catalog (stale), it does not vanish.
    good.on("GET", "/v2/catalog", Reply::new(200, "{\"services\": 42}"));
    eventually("good marked stale", Duration::from_secs(20), || async {
        (gateway.broker_status("good").await["freshness"] == "stale").then_some(())
    })
    .await;
    assert!(by_name(&gateway.ready_catalog().await).contains_key("good.fake-service"));
    good.on("GET", "/v2/catalog", Reply::new(500, "{}"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(by_name(&gateway.ready_catalog().await).contains_key("good.fake-service"));
}

#[tokio::test]
async fn conditional_fetches_are_used_when_the_upstream_honours_them() {
    let body = fixture("osbapi-spec-example-catalog.json");
    let broker = FakeBroker::with_catalog(body.clone()).await;
    broker.on(
        "GET",
        "/v2/catalog",
        Reply::new(200, body).header("etag", "\"v1\""),
    );
    let gateway = TestGateway::start(&format!(
        "{}brokers:\n  - name: ex\n    url: {}\n    refresh_interval_secs: 1\n",
        platforms_yaml(),
        broker.url()
    ))
    .await;
    gateway.ready_catalog().await;
    let generation = gateway.served_catalog().await["generation"].clone();
    broker.on("GET", "/v2/catalog", Reply::new(304, ""));
    let fetches = eventually("a conditional refresh", Duration::from_secs(10), || async {
        let fetches = broker.received("GET", "/v2/catalog");
        (fetches.len() >= 2).then_some(fetches)
    })
    .await;
    assert_eq!(fetches[0].header("if-none-match"), None);
    assert_eq!(fetches[1].header("if-none-match"), Some("\"v1\""));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        gateway.broker_status("ex").await["freshness"],
        "fresh",
        "304 counts as a fresh refresh"
    );
    assert_eq!(
        gateway.served_catalog().await["generation"],
        generation,
        "an unchanged catalog keeps its generation"
    );
    assert_eq!(
        gateway.ready_catalog().await["services"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// 200,000 services in 32 MiB: what one broker could send.
fn oversized_catalog() -> Vec<u8> {
    let target = 32 * 1024 * 1024;
    let services = 200_000;
    let mut body = String::with_capacity(target + 1024);
    body.push_str("{\"services\":[");
    for i in 0..services {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            "{{\"id\":\"s-{i}\",\"name\":\"svc-{i}\",\"description\":\"a service of a catalog far too large\",\
             \"bindable\":true,\"plans\":[{{\"id\":\"p-{i}\",\"name\":\"plan\",\"description\":\"d\"}}]}}"
        ));
    }
    body.push_str("]}");
    while body.len() < target {
        body.insert(body.len() - 1, ' ');
    }
    body.into_bytes()
}

/// The peak and current resident memory of process `pid`, in MiB.
fn memory_mib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap()
    };
    (kib("VmHWM:") / 1024, kib("VmRSS:") / 1024)
}

/// One broker sends a 32 MiB catalog of 200,000 services: it is refused with an error naming the
/// broker's limit, its last good catalog is served on (stale), the other broker answers every
/// call throughout, and the gateway's memory stays bounded. A store holding such a catalog (kept
/// under an earlier, higher limit) never stops the gateway from starting.
#[tokio::test]
async fn an_oversized_catalog_is_refused_and_the_other_broker_keeps_answering() {
    use crate::support::process::GatewayProcess;

    let other = FakeBroker::with_catalog(crate::support::small_catalog::small_catalog()).await;
    other.on("PUT", "/v2/service_instances/*", Reply::new(201, "{}"));
    let huge = FakeBroker::with_catalog(
        serde_json::to_vec(
            &serde_json::json!({"services": [{"name": "h", "id": "h1", "description": "d",
            "bindable": true, "plans": [{"name": "p", "id": "hp1", "description": "d"}]}]}),
        )
        .unwrap(),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: \"127.0.0.1:0\"\nadmin:\n  listen: \"127.0.0.1:0\"\nstore:\n  path: {}\n{}catalog:\n  startup_grace_secs: 1\n\
             brokers:\n  - name: fb\n    url: {}\n  - name: huge\n    url: {}\n    refresh_interval_secs: 3600\n",
            store.display(),
            platforms_yaml(),
            other.url(),
            huge.url()
        ),
    )
    .unwrap();
    let mut gateway = GatewayProcess::spawn(&config, &[], None).await;
    let admin = gateway.admin.clone().unwrap();
    let catalog: Value = eventually("both catalogs", Duration::from_secs(30), || async {
        let response = gateway.request(Method::GET, "/v2/catalog").send().await.ok()?;
        let catalog: Value = response.json().await.ok()?;
        (catalog["services"].as_array()?.len() == 2).then_some(catalog)
    })
    .await;
    let db = by_name(&catalog)["fb.db"].clone();
    let provision = serde_json::json!({"service_id": db["id"], "plan_id": db["plans"][0]["id"]});
    let (_, rss_before) = memory_mib(gateway.child.id().unwrap());

    let big = oversized_catalog();
    huge.on("GET", "/v2/catalog", Reply::new(200, big.clone()));
    let huge_status = || async {
        let brokers: Value = http()
            .get(format!("{admin}/admin/brokers"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        brokers["brokers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["name"] == "huge")
            .cloned()
            .unwrap()
    };
    // The other broker under load while the huge catalog is fetched, three times over.
    let load = {
        let (osb, provision) = (gateway.osb(), provision.clone());
        tokio::spawn(async move {
            // Raw requests: a call that gets no answer is status 0, not a panic.
            let mut statuses = Vec::new();
            for i in 0..150 {
                let provisioned = osb
                    .request(Method::PUT, &instance_path(&format!("load-{i}")))
                    .json(&provision)
                    .send()
                    .await
                    .map_or(0, |r| r.status().as_u16());
                let catalog = osb
                    .request(Method::GET, "/v2/catalog")
                    .send()
                    .await
                    .map_or(0, |r| r.status().as_u16());
                statuses.push((provisioned, catalog));
            }
            statuses
        })
    };
    for round in 0..3 {
        http()
            .post(format!("{admin}/admin/brokers/huge/refresh"))
            .send()
            .await
            .unwrap();
        eventually("the huge catalog refused", Duration::from_secs(30), || async {
            let status = huge_status().await;
            (status["refreshes_failed"].as_u64() == Some(round + 1)).then_some(())
        })
        .await;
    }
    let statuses = load.await.unwrap();
    assert!(
        statuses.iter().all(|s| *s == (201, 200)),
        "the other broker's calls: {statuses:?}"
    );
    let status = huge_status().await;
    assert_eq!(status["freshness"], "stale", "{status}");
    let error = status["last_error"].as_str().unwrap();
    assert!(
        error.contains("broker huge") && error.contains("max_catalog_bytes (16777216)"),
        "{error}"
    );
    let served = gateway.osb().catalog().await.body;
    assert!(
        by_name(&served).contains_key("huge.h"),
        "the last good catalog is served on"
    );
    let (peak, rss) = memory_mib(gateway.child.id().unwrap());
    eprintln!(
        "a {:.1} MiB catalog of 200,000 services, refused three times: RSS {rss_before} MiB before, \
         peak {peak} MiB, {rss} MiB after",
        big.len() as f64 / 1048576.0
    );
    assert!(peak < 256, "peak RSS {peak} MiB");
    gateway.kill().await;

    // The store holds that catalog (as an earlier, higher limit let it): the gateway starts,
    // leaves it aside, and serves the other broker.
    {
        let store = osb_routing::store::EmbeddedStore::open(store.clone())
            .await
            .unwrap();
        use osb_routing::Store as _;
        store
            .save_catalog(
                "huge",
                osb_routing::store::StoredCatalog {
                    body: bytes::Bytes::from(big.clone()),
                    validators: Default::default(),
                    fetched_at_ms: 1,
                },
            )
            .await
            .unwrap();
        store.quiesce().await;
    }
    let gateway = GatewayProcess::spawn(&config, &[], None).await;
    let served: Value = eventually("the other broker's catalog", Duration::from_secs(30), || async {
        let response = gateway.request(Method::GET, "/v2/catalog").send().await.ok()?;
        (response.status() == 200).then_some(())?;
        response.json().await.ok()
    })
    .await;
    assert!(by_name(&served).contains_key("fb.db"), "{served}");
    let provisioned = gateway
        .osb()
        .provision("after-restart", Query::none(), &provision)
        .await;
    assert_eq!(provisioned.status, 201);
    let (peak, rss) = memory_mib(gateway.child.id().unwrap());
    eprintln!("started with that catalog in its store: peak {peak} MiB, {rss} MiB");
    assert!(peak < 256, "peak RSS {peak} MiB");
}

/// `services` services of two plans, each plan with a JSON schema of `schema_bytes` bytes.
fn generated_catalog(services: usize, schema_bytes: usize) -> Vec<u8> {
    let pad = "x".repeat(schema_bytes);
    let services: Vec<Value> = (0..services)
        .map(|i| {
            let plans: Vec<Value> = (0..2)
                .map(|j| {
                    serde_json::json!({"id": format!("p-{i}-{j}"), "name": format!("plan-{j}"), "description": "d",
                        "schemas": {"service_instance": {"create": {"parameters": {"type": "object", "description": pad}}}}})
                })
                .collect();
            serde_json::json!({"id": format!("s-{i}"), "name": format!("svc-{i}"), "description": "d", "bindable": true, "plans": plans})
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "services": services })).unwrap()
}

/// Within its limits a catalog costs memory in proportion to its size, and gives it back when the
/// broker's catalog shrinks again.
#[tokio::test]
async fn a_large_catalog_costs_memory_in_proportion_and_gives_it_back_when_it_shrinks() {
    use crate::support::process::GatewayProcess;

    let small = generated_catalog(20, 100);
    let broker = FakeBroker::with_catalog(small.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            // With a policy file: its watcher polls too, and must not keep the memory either.
            "listen: \"127.0.0.1:0\"\nadmin:\n  listen: \"127.0.0.1:0\"\nstore:\n  path: {}\npolicy_file: policy.yaml\n{}brokers:\n  - name: big\n    url: {}\n    refresh_interval_secs: 3600\n",
            dir.path().join("store").display(),
            platforms_yaml(),
            broker.url()
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("policy.yaml"), "deny: []\n").unwrap();
    let gateway = GatewayProcess::spawn(&config, &[], None).await;
    let admin = gateway.admin.clone().unwrap();
    let pid = gateway.child.id().unwrap();
    let services_served = || async {
        let response = gateway.request(Method::GET, "/v2/catalog").send().await.ok()?;
        let catalog: Value = response.json().await.ok()?;
        Some(catalog["services"].as_array()?.len())
    };
    eventually("the small catalog", Duration::from_secs(30), || async {
        (services_served().await? == 20).then_some(())
    })
    .await;
    let (_, base) = memory_mib(pid);

    // 7,000 services, 14,000 plans: about 15 MiB, within the default limits.
    let large = generated_catalog(7_000, 900);
    broker.on("GET", "/v2/catalog", Reply::new(200, large.clone()));
    let refresh = || async {
        http()
            .post(format!("{admin}/admin/brokers/big/refresh"))
            .send()
            .await
            .unwrap();
    };
    refresh().await;
    eventually("the large catalog", Duration::from_secs(60), || async {
        (services_served().await? == 7_000).then_some(())
    })
    .await;
    let (peak, loaded) = memory_mib(pid);
    let mib = large.len() as f64 / 1048576.0;

    broker.on("GET", "/v2/catalog", Reply::new(200, small));
    refresh().await;
    eventually("the small catalog again", Duration::from_secs(60), || async {
        (services_served().await? == 20).then_some(())
    })
    .await;
    let returned = eventually("memory given back", Duration::from_secs(60), || async {
        let (_, rss) = memory_mib(pid);
        (rss < base + 64).then_some(rss)
    })
    .await;
    eprintln!(
        "a {mib:.1} MiB catalog (7,000 services, 14,000 plans): RSS {base} MiB before, {loaded} MiB \
         loaded ({:.1}x its size), peak {peak} MiB; {returned} MiB once it shrank",
        (loaded - base) as f64 / mib
    );
    assert!(loaded > base, "the catalog costs something");
    assert!(peak < 400, "peak RSS {peak} MiB");
}
