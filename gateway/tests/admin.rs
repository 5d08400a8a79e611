//! The operators' admin API and `osb-gateway admin …` against real upstream brokers on loopback:
//! health and inventory, the catalog guard (a dropped plan with an instance stays served and
//! flagged until the instance is gone or an operator confirms), the dry-run diff (of a refresh and
//! of a configuration change), adopting instances created before the gateway (openbrokerapi),
//! abandoning what an upstream refuses to delete, and the audit log (complete, and without
//! secrets). The CLI is the real binary, run as a child process.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::fake_broker::{FakeBroker, Reply};
use crate::support::gateway::{PLATFORM_PASSWORD, TestGateway, platforms_yaml};
use crate::support::obapi::{BROKER_PASSWORD, BROKER_USER, ObapiBroker};
use crate::support::osb::{OsbClient, OsbResponse, Query, instance_path};
use crate::support::small_catalog::{Ids, small_catalog};
use crate::support::{eventually, http};

const ADMIN_USER: &str = "admin";
const ADMIN_PASSWORD: &str = "admin-secret-9b2c";

/// Admin credentials for the `admin:` section the harness writes.
const ADMIN_ENV: &[(&str, &str)] = &[
    ("OSB_GATEWAY__ADMIN__USERNAME", ADMIN_USER),
    ("OSB_GATEWAY__ADMIN__PASSWORD", ADMIN_PASSWORD),
];

/// A gateway with admin credentials in front of `brokers_yaml` (a `brokers:` list).
async fn gateway(brokers_yaml: &str, files: &[(&str, &str)], extra: &str) -> TestGateway {
    let yaml = format!("{}{extra}brokers:\n{brokers_yaml}", platforms_yaml());
    TestGateway::start_with_env(&yaml, files, ADMIN_ENV).await
}

/// The fake broker's `brokers:` entry (name `fb`).
fn fake_entry(broker: &FakeBroker) -> String {
    format!(
        "  - name: fb\n    url: {}\n    timeout_secs: 2\n    refresh_interval_secs: 3600\n    breaker_failures: 50\n",
        broker.url()
    )
}

/// An admin API call as operator `alice`: status and JSON body.
async fn admin(gw: &TestGateway, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = http()
        .request(method, gw.admin_url(path))
        .basic_auth(ADMIN_USER, Some(ADMIN_PASSWORD))
        .header("X-OSB-Gateway-Operator", "alice");
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn admin_get(gw: &TestGateway, path: &str) -> Value {
    let (status, body) = admin(gw, Method::GET, path, None).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// `osb-gateway admin --url … --username admin --as alice ARGS`: exit code, stdout, stderr.
async fn cli(gw: &TestGateway, args: &[&str]) -> (i32, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_osb-gateway"))
        .args([
            "admin",
            "--url",
            &gw.admin_url(""),
            "--username",
            ADMIN_USER,
            "--as",
            "alice",
        ])
        .args(args)
        .env("OSB_GATEWAY_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// As [`cli`], expecting success; stdout.
async fn cli_ok(gw: &TestGateway, args: &[&str]) -> String {
    let (code, out, err) = cli(gw, args).await;
    assert_eq!(code, 0, "admin {args:?} failed:\n{out}\n{err}");
    out
}

/// The ids of the fake broker's `db` service as the gateway publishes them.
async fn ids(gw: &TestGateway) -> Ids {
    Ids::of(&gw.ready_catalog().await, "fb.db")
}

/// A fake broker serving `small_catalog()` that creates instances and bindings synchronously.
async fn fake_broker() -> FakeBroker {
    let broker = FakeBroker::with_catalog(small_catalog()).await;
    broker.on("PUT", "/v2/service_instances/*", Reply::new(201, "{}"));
    broker.on("DELETE", "/v2/service_instances/*", Reply::new(200, "{}"));
    broker
}

/// A provision body of `service`/`plan` from a Kubernetes platform.
fn on_kubernetes(service: &str, plan: &str) -> Value {
    json!({"service_id": service, "plan_id": plan, "context": {"platform": "kubernetes"}})
}

fn plan_ids(catalog: &Value) -> Vec<String> {
    catalog["services"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["plans"].as_array().unwrap().iter())
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect()
}

fn item_ids(page: &Value, key: &str) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i[key].as_str().unwrap().to_owned())
        .collect()
}

// === health and inventory ===

#[tokio::test]
async fn health_inventory_and_records_with_history() {
    let broker = fake_broker().await;
    let gw = gateway(&fake_entry(&broker), &[], "").await;
    let ids = ids(&gw).await;

    // The admin API wants its credentials (the probes do not).
    let denied = http().get(gw.admin_url("/admin/instances")).send().await.unwrap();
    assert_eq!(denied.status(), 401);
    assert_eq!(
        denied.headers()["www-authenticate"],
        r#"Basic realm="osb-gateway-admin""#
    );
    let wrong = http()
        .get(gw.admin_url("/admin/audit"))
        .basic_auth(ADMIN_USER, Some("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(
        http()
            .get(gw.admin_url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    for n in 0..5 {
        let plan = if n < 3 { &ids.small } else { &ids.large };
        assert_eq!(
            gw.osb()
                .provision(
                    &format!("i-{n}"),
                    Query::none(),
                    &on_kubernetes(&ids.service, plan)
                )
                .await
                .status,
            201
        );
    }
    assert_eq!(
        gw.osb()
            .bind("i-0", "b-0", Query::none(), &ids.small_body())
            .await
            .status,
        201
    );

    // Health: per broker, breaker, catalog age, last refresh, counts.
    let brokers = admin_get(&gw, "/admin/brokers").await;
    let fb = &brokers["brokers"][0];
    assert_eq!(fb["name"], "fb");
    assert_eq!(fb["healthy"], true);
    assert_eq!(fb["last_refresh"], "ok");
    assert!(fb["catalog_age_secs"].is_u64(), "{fb}");
    assert_eq!(
        (fb["services"].as_u64(), fb["plans"].as_u64()),
        (Some(1), Some(3))
    );
    assert_eq!(fb["held_plans"], 0);
    assert!(fb.get("breaker").is_some());

    // Pages in id order with a cursor; filters.
    let first = admin_get(&gw, "/admin/instances?limit=2").await;
    assert_eq!(item_ids(&first, "instance_id"), ["i-0", "i-1"]);
    assert_eq!(first["next_cursor"], "i-1");
    let second = admin_get(&gw, "/admin/instances?limit=2&cursor=i-1").await;
    assert_eq!(item_ids(&second, "instance_id"), ["i-2", "i-3"]);
    let last = admin_get(&gw, "/admin/instances?limit=2&cursor=i-3").await;
    assert_eq!(item_ids(&last, "instance_id"), ["i-4"]);
    assert!(last["next_cursor"].is_null());
    let large = admin_get(&gw, "/admin/instances?service=fb.db&plan=large").await;
    assert_eq!(item_ids(&large, "instance_id"), ["i-3", "i-4"]);
    assert_eq!(large["items"][0]["plan_name"], "large");
    assert_eq!(large["items"][0]["service_name"], "fb.db");
    assert!(large["items"][0].get("fingerprint").is_none());
    let by_id = admin_get(&gw, &format!("/admin/instances?plan={}", ids.small)).await;
    assert_eq!(item_ids(&by_id, "instance_id"), ["i-0", "i-1", "i-2"]);
    let ready = admin_get(
        &gw,
        "/admin/instances?broker=fb&platform=k8s-prod&state=ready&operation=none",
    )
    .await;
    assert_eq!(ready["items"].as_array().unwrap().len(), 5);
    let none = admin_get(&gw, "/admin/instances?platform=cf").await;
    assert!(none["items"].as_array().unwrap().is_empty());
    let (status, body) = admin(&gw, Method::GET, "/admin/instances?state=stuck", None).await;
    assert_eq!(status, 400);
    assert!(body["description"].as_str().unwrap().contains("state"), "{body}");
    let (status, _) = admin(&gw, Method::GET, "/admin/instances?colour=red", None).await;
    assert_eq!(status, 400, "unknown query keys are refused");

    // One instance: record, bindings, history (newest first).
    let record = admin_get(&gw, "/admin/instances/i-0").await;
    assert_eq!(record["instance"]["state"], "ready");
    assert_eq!(record["instance"]["plan_name"], "small");
    assert_eq!(
        item_ids(&json!({"items": record["bindings"]}), "binding_id"),
        ["b-0"]
    );
    let history: Vec<&str> = record["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["operation"].as_str().unwrap())
        .collect();
    assert_eq!(history, ["bind", "provision"]);
    let (status, _) = admin(&gw, Method::GET, "/admin/instances/nope", None).await;
    assert_eq!(status, 404);

    let bindings = admin_get(&gw, "/admin/bindings?instance=i-0").await;
    assert_eq!(item_ids(&bindings, "binding_id"), ["b-0"]);
    let binding = admin_get(&gw, "/admin/bindings/b-0").await;
    assert_eq!(binding["binding"]["instance_id"], "i-0");
    assert_eq!(binding["history"][0]["operation"], "bind");

    // The same through the command line.
    let out = cli_ok(&gw, &["health"]).await;
    assert!(
        out.contains("BROKER") && out.contains("fb") && out.contains("yes"),
        "{out}"
    );
    let out = cli_ok(&gw, &["instances", "--service", "fb.db", "--plan", "large"]).await;
    assert!(
        out.contains("i-3") && out.contains("i-4") && !out.contains("i-0"),
        "{out}"
    );
    let out = cli_ok(&gw, &["instances", "--limit", "2"]).await;
    assert!(out.contains("more: --cursor i-1"), "{out}");
    let out = cli_ok(&gw, &["--json", "instances", "--limit", "2", "--all"]).await;
    let all: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(all["items"].as_array().unwrap().len(), 5);
    let out = cli_ok(&gw, &["instance", "i-0"]).await;
    assert!(
        out.contains("history:") && out.contains("provision") && out.contains("b-0"),
        "{out}"
    );
    let out = cli_ok(&gw, &["bindings", "--instance", "i-0"]).await;
    assert!(out.contains("b-0"), "{out}");
    let out = cli_ok(&gw, &["binding", "b-0"]).await;
    assert!(out.contains("bind"), "{out}");
    let out = cli_ok(&gw, &["registry"]).await;
    assert!(out.contains("INSTANCES") && out.contains('5'), "{out}");
    let out = cli_ok(&gw, &["refresh", "fb"]).await;
    assert!(out.contains("refreshing fb"), "{out}");
    let out = cli_ok(&gw, &["refresh"]).await;
    assert!(out.contains("refreshing all"), "{out}");
    cli_ok(&gw, &["policy"]).await;
    let (code, _, err) = cli(&gw, &["instance", "nope"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("404"), "{err}");
    let (code, _, err) = cli(&gw, &["--password-env", "NOT_SET_ANYWHERE", "health"]).await;
    assert_eq!(code, 64, "{err}");
    // Address and credentials from the gateway's configuration file.
    let config = gw.dir.path().join("operator.yaml");
    std::fs::write(
        &config,
        format!(
            "admin:\n  listen: \"{}\"\n  username: {ADMIN_USER}\n  password_env: OPS_ADMIN_PASSWORD\n{}brokers:\n{}",
            gw.admin_addr,
            platforms_yaml(),
            fake_entry(&broker)
        ),
    )
    .unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_osb-gateway"))
        .args([
            "admin",
            "--config",
            config.to_str().unwrap(),
            "--json",
            "registry",
        ])
        .env("OPS_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let counts: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        (counts["instances"].as_u64(), counts["bindings"].as_u64()),
        (Some(5), Some(1))
    );

    // Refreshes are operator actions: recorded.
    let refreshes = admin_get(&gw, "/admin/audit?operation=admin.refresh").await;
    let refreshes = refreshes["items"].as_array().unwrap();
    assert_eq!(refreshes.len(), 2);
    assert_eq!(
        (refreshes[1]["actor"].as_str(), refreshes[1]["user"].as_str()),
        (Some("admin"), Some("alice"))
    );
    assert_eq!(refreshes[1]["broker"], "fb");
}

// === the catalog guard ===

/// `small_catalog()` without the plan `large`.
fn catalog_without_large() -> Vec<u8> {
    let mut catalog: Value = serde_json::from_slice(&small_catalog()).unwrap();
    catalog["services"][0]["plans"]
        .as_array_mut()
        .unwrap()
        .retain(|p| p["name"] != "large");
    serde_json::to_vec(&catalog).unwrap()
}

/// Refreshes broker `fb` and waits until the gateway holds `plan`.
async fn refresh_until_held(gw: &TestGateway, plan: &str) -> Value {
    let (status, _) = admin(gw, Method::POST, "/admin/brokers/fb/refresh", None).await;
    assert_eq!(status, 202);
    eventually("the dropped plan is held", Duration::from_secs(10), || async {
        let served = admin_get(gw, "/admin/catalog").await;
        let held = served["held"].as_array().unwrap();
        held.iter().any(|h| h["plan_id"] == plan).then_some(served)
    })
    .await
}

async fn metric(gw: &TestGateway, line_start: &str) -> Option<String> {
    let text = http()
        .get(gw.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .map(str::to_owned)
}

#[tokio::test]
async fn guard_keeps_a_dropped_plan_until_its_instance_is_gone() {
    let broker = fake_broker().await;
    let mut gw = gateway(&fake_entry(&broker), &[], "").await;
    let ids = ids(&gw).await;
    assert_eq!(
        gw.osb()
            .provision("keep-me", Query::none(), &on_kubernetes(&ids.service, &ids.large))
            .await
            .status,
        201
    );
    assert!(
        admin_get(&gw, "/admin/catalog").await["held"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // The upstream drops `large`. The dry run says so before anything is applied.
    broker.on("GET", "/v2/catalog", Reply::new(200, catalog_without_large()));
    let diff = admin_get(&gw, "/admin/catalog/diff").await;
    let changes = diff["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{diff}");
    assert_eq!(
        (&changes[0]["change"], &changes[0]["entry"], &changes[0]["plan"]),
        (&json!("removed"), &json!("plan"), &json!("large"))
    );
    assert_eq!(
        (changes[0]["instances"].as_u64(), changes[0]["held"].as_bool()),
        (Some(1), Some(true))
    );
    assert_eq!(diff["summary"]["held"], 1);
    assert!(
        plan_ids(&gw.ready_catalog().await).contains(&ids.large),
        "a dry run applies nothing"
    );
    let out = cli_ok(&gw, &["catalog", "diff"]).await;
    assert!(
        out.contains("removed") && out.contains("large") && out.contains("held"),
        "{out}"
    );

    // The refresh happens: `large` stays served, flagged in health and metrics.
    let served = refresh_until_held(&gw, &ids.large).await;
    let held = &served["held"][0];
    assert_eq!(
        (held["broker"].as_str(), held["plan_name"].as_str()),
        (Some("fb"), Some("large"))
    );
    assert_eq!(held["instances"], 1);
    let catalog = gw.ready_catalog().await;
    assert!(plan_ids(&catalog).contains(&ids.large), "still served: {catalog}");
    assert!(plan_ids(&catalog).contains(&ids.small));
    let brokers = admin_get(&gw, "/admin/brokers").await;
    assert_eq!(
        brokers["brokers"][0]["plans"], 2,
        "the broker's own catalog lost it"
    );
    assert_eq!(brokers["brokers"][0]["held_plans"], 1);
    assert_eq!(brokers["catalog"]["held_plans"], 1);
    assert_eq!(
        metric(&gw, "osb_gateway_catalog_held_entries{").await.as_deref(),
        Some(r#"osb_gateway_catalog_held_entries{broker="fb"} 1"#)
    );
    let out = cli_ok(&gw, &["catalog"]).await;
    assert!(
        out.contains("held") && out.contains("large") && out.contains(&ids.large),
        "{out}"
    );
    let out = cli_ok(&gw, &["instances", "--plan", &ids.large]).await;
    assert!(out.contains("keep-me") && out.contains("large (held)"), "{out}");

    // Nothing new lands on it (refused before anything is sent); its instance works as before.
    let puts_before = broker.received("PUT", "/v2/service_instances/").len();
    let response = gw
        .osb()
        .provision(
            "newcomer",
            Query::none(),
            &json!({"service_id": ids.service, "plan_id": ids.large}),
        )
        .await;
    assert_eq!(response.status, 400);
    let body = response.body;
    assert!(
        body["description"]
            .as_str()
            .unwrap()
            .contains("removed by broker fb"),
        "{body}"
    );
    assert_eq!(
        broker.received("PUT", "/v2/service_instances/").len(),
        puts_before
    );
    assert_eq!(
        gw.osb()
            .bind(
                "keep-me",
                "kb",
                Query::none(),
                &json!({"service_id": &ids.service, "plan_id": &ids.large})
            )
            .await
            .status,
        201
    );

    // It holds across a restart (the broker's persisted catalog no longer has the plan).
    gw = gw.restart().await;
    let catalog = gw.ready_catalog().await;
    assert!(
        plan_ids(&catalog).contains(&ids.large),
        "held after a restart: {catalog}"
    );
    assert_eq!(
        admin_get(&gw, "/admin/catalog").await["held"][0]["plan_id"],
        ids.large.as_str()
    );

    // Once its last instance is gone, the plan goes.
    assert_eq!(
        gw.osb()
            .deprovision("keep-me", Query::ids(&ids.service, &ids.large))
            .await
            .status,
        200
    );
    eventually("the held plan is released", Duration::from_secs(10), || async {
        let catalog = gw.ready_catalog().await;
        (!plan_ids(&catalog).contains(&ids.large)).then_some(())
    })
    .await;
    assert!(
        admin_get(&gw, "/admin/catalog").await["held"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        metric(&gw, "osb_gateway_catalog_held_entries{").await.as_deref(),
        Some(r#"osb_gateway_catalog_held_entries{broker="fb"} 0"#)
    );
    let diff = admin_get(&gw, "/admin/catalog/diff").await;
    assert!(diff["changes"].as_array().unwrap().is_empty(), "{diff}");
    gw.stop().await;
}

#[tokio::test]
async fn guard_lets_a_plan_go_when_an_operator_confirms() {
    let broker = fake_broker().await;
    let gw = gateway(&fake_entry(&broker), &[], "").await;
    let ids = ids(&gw).await;
    assert_eq!(
        gw.osb()
            .provision(
                "legacy-1",
                Query::none(),
                &on_kubernetes(&ids.service, &ids.large)
            )
            .await
            .status,
        201
    );
    broker.on("GET", "/v2/catalog", Reply::new(200, catalog_without_large()));
    refresh_until_held(&gw, &ids.large).await;

    let (code, _, err) = cli(&gw, &["catalog", "confirm", "not-a-held-id", "--reason", "typo"]).await;
    assert_eq!(code, 1, "{err}");
    let (status, _) = admin(
        &gw,
        Method::POST,
        "/admin/catalog/confirm",
        Some(json!({"all": true})),
    )
    .await;
    assert_eq!(status, 400, "a reason is required");

    let out = cli_ok(
        &gw,
        &[
            "catalog",
            "confirm",
            &ids.large,
            "--reason",
            "large was retired; legacy-1 moves next week",
        ],
    )
    .await;
    assert!(out.contains("released") && out.contains("large"), "{out}");
    // Gone from the catalog at once, the instance still routes by the registry.
    assert!(!plan_ids(&gw.ready_catalog().await).contains(&ids.large));
    assert!(
        admin_get(&gw, "/admin/catalog").await["held"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let confirmations = admin_get(&gw, "/admin/audit?operation=admin.catalog_confirm").await;
    let record = &confirmations["items"][0];
    assert_eq!(
        (record["actor"].as_str(), record["user"].as_str()),
        (Some("admin"), Some("alice"))
    );
    assert_eq!(record["plan_id"], ids.large.as_str());
    assert!(
        record["reason"].as_str().unwrap().contains("large was retired"),
        "{record}"
    );
    // A later refresh does not bring it back.
    admin(&gw, Method::POST, "/admin/brokers/fb/refresh", None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!plan_ids(&gw.ready_catalog().await).contains(&ids.large));
    assert_eq!(
        gw.osb()
            .deprovision("legacy-1", Query::ids(&ids.service, &ids.large))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn diff_of_a_configuration_change_shows_id_changes_and_what_would_be_held() {
    let broker = fake_broker().await;
    let gw = gateway(&fake_entry(&broker), &[], "").await;
    let ids = ids(&gw).await;
    assert_eq!(
        gw.osb()
            .provision(
                "on-small",
                Query::none(),
                &on_kubernetes(&ids.service, &ids.small)
            )
            .await
            .status,
        201
    );

    // The new configuration passes the upstream's ids through: every id changes.
    let dir = tempfile::tempdir().unwrap();
    let new_config = dir.path().join("new.yaml");
    std::fs::write(
        &new_config,
        format!(
            "{}brokers:\n  - name: fb\n    url: {}\n    ids: keep\n",
            platforms_yaml(),
            broker.url()
        ),
    )
    .unwrap();
    let out = cli_ok(
        &gw,
        &[
            "--json",
            "catalog",
            "diff",
            "--config",
            new_config.to_str().unwrap(),
        ],
    )
    .await;
    let diff: Value = serde_json::from_str(&out).unwrap();
    let changes = diff["changes"].as_array().unwrap();
    let find = |entry: &str, plan: Option<&str>| {
        changes
            .iter()
            .find(|c| c["entry"] == entry && c["plan"].as_str() == plan)
            .unwrap_or_else(|| panic!("no change for {entry} {plan:?}: {diff}"))
    };
    let service = find("service", None);
    assert_eq!(service["change"], "id_changed");
    assert_eq!(
        (service["old_id"].as_str(), service["id"].as_str()),
        (Some(ids.service.as_str()), Some("up-svc"))
    );
    let small = find("plan", Some("small"));
    assert_eq!(small["change"], "id_changed");
    assert_eq!(
        (small["old_id"].as_str(), small["id"].as_str()),
        (Some(ids.small.as_str()), Some("up-small"))
    );
    assert_eq!(
        (small["instances"].as_u64(), small["held"].as_bool()),
        (Some(1), Some(true))
    );
    let large = find("plan", Some("large"));
    assert_eq!(
        (large["instances"].as_u64(), large["held"].as_bool()),
        (Some(0), Some(false))
    );
    assert_eq!(diff["summary"]["held"], 1);
    let table = cli_ok(
        &gw,
        &["catalog", "diff", "--config", new_config.to_str().unwrap()],
    )
    .await;
    assert!(table.contains(&format!("{} -> up-small", ids.small)), "{table}");
    assert!(table.contains("id_changed"), "{table}");

    // The served catalog is the same as before: a dry run.
    assert!(plan_ids(&gw.ready_catalog().await).contains(&ids.small));
    let (status, _) = admin(
        &gw,
        Method::POST,
        "/admin/catalog/diff",
        Some(json!({"not": "a catalog"})),
    )
    .await;
    assert_eq!(status, 400);
}

// === adopt ===

/// A catalog for openbrokerapi: one bindable, retrievable service with two plans.
fn write_obapi_catalog(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("catalog.json");
    std::fs::write(
        &path,
        serde_json::to_vec(&json!({"services": [{
            "id": "svc-db", "name": "db", "description": "a database", "bindable": true,
            "instances_retrievable": true, "bindings_retrievable": true, "plan_updateable": true,
            "plans": [
                {"id": "plan-small", "name": "small", "description": "small"},
                {"id": "plan-large", "name": "large", "description": "large"}
            ]
        }]}))
        .unwrap(),
    )
    .unwrap();
    path
}

/// Provisions `instance` directly at the upstream, as someone did before the gateway existed.
async fn provision_upstream(broker: &ObapiBroker, instance: &str, plan: &str) {
    let response = upstream_osb(broker)
        .provision(
            instance,
            Query::none(),
            &json!({"service_id": "svc-db", "plan_id": plan, "organization_guid": "o", "space_guid": "s"}),
        )
        .await;
    assert_eq!(response.status, 201);
}

/// An OSB client calling `broker` directly, with the gateway's credentials for it.
fn upstream_osb(broker: &ObapiBroker) -> OsbClient {
    OsbClient::new(broker.url()).basic(BROKER_USER, BROKER_PASSWORD)
}

#[tokio::test]
async fn adopted_instances_are_bound_unbound_and_deprovisioned_through_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = ObapiBroker::start(&write_obapi_catalog(dir.path())).await;
    provision_upstream(&upstream, "pre-1", "plan-small").await;
    provision_upstream(&upstream, "pre-2", "plan-large").await;
    // The same upstream twice: once with its own ids (`keep`), once with rewritten ids.
    let brokers = format!(
        "{}    ids: keep\n{}",
        upstream.config_entry("legacy"),
        upstream.config_entry("cloud")
    );
    let gw = gateway(&brokers, &[], "").await;
    let catalog = gw.ready_catalog().await;
    let cloud = catalog["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "cloud.db")
        .unwrap()
        .clone();
    let cloud_large = cloud["plans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "large")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let cloud_service = cloud["id"].as_str().unwrap().to_owned();
    assert_ne!(cloud_large, "plan-large", "rewritten");

    // Unknown to the gateway until adopted.
    assert_eq!(
        gw.osb()
            .bind(
                "pre-1",
                "x",
                Query::none(),
                &json!({"service_id": "svc-db", "plan_id": "plan-small"})
            )
            .await
            .status,
        404
    );

    // pre-1 through the command line (kept ids), pre-2 through the API (upstream plan id).
    let out = cli_ok(
        &gw,
        &[
            "adopt",
            "pre-1",
            "--platform",
            "k8s-prod",
            "--broker",
            "legacy",
            "--plan",
            "plan-small",
            "--context",
            r#"{"platform": "kubernetes", "namespace": "team-a"}"#,
            "--reason",
            "created before the gateway",
        ],
    )
    .await;
    assert!(
        out.contains("pre-1") && out.contains("adopted") && out.contains("yes"),
        "{out}"
    );
    let (status, answer) = admin(
        &gw,
        Method::POST,
        "/admin/instances/adopt",
        Some(json!({"instances": [
            {"instance_id": "pre-2", "platform": "k8s-prod", "broker": "cloud", "plan": "plan-large"},
            {"instance_id": "never-made", "platform": "k8s-prod", "broker": "cloud", "plan": "plan-small"},
            {"instance_id": "pre-1", "platform": "k8s-prod", "broker": "legacy", "plan": "plan-small"},
            {"instance_id": "pre-3", "platform": "nobody", "broker": "cloud", "plan": "plan-small"}
        ], "reason": "migration"})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results[0]["result"], "adopted", "{answer}");
    assert_eq!(results[0]["verified"], true);
    assert_eq!(results[0]["plan_id"], cloud_large.as_str());
    assert_eq!(results[1]["result"], "failed", "not at the upstream: {answer}");
    assert_eq!(results[2]["result"], "existing", "adopting twice is harmless");
    assert_eq!(results[3]["result"], "failed", "unknown platform");
    assert_eq!(answer["failed"], 2);
    let (code, out, _) = cli(
        &gw,
        &[
            "adopt",
            "never-made",
            "--platform",
            "k8s-prod",
            "--broker",
            "cloud",
            "--plan",
            "plan-small",
        ],
    )
    .await;
    assert_eq!(code, 1, "a failed adoption fails the command: {out}");

    let record = admin_get(&gw, "/admin/instances/pre-1").await;
    assert_eq!(record["instance"]["state"], "ready");
    assert_eq!(record["instance"]["context"]["namespace"], "team-a");
    assert_eq!(record["history"][0]["operation"], "admin.adopt");

    // Now the platform manages them through the gateway: bind, unbind, deprovision.
    for (instance, service, plan, binding) in [
        ("pre-1", "svc-db", "plan-small", "bind-pre-1"),
        (
            "pre-2",
            cloud_service.as_str(),
            cloud_large.as_str(),
            "bind-pre-2",
        ),
    ] {
        let osb = gw.osb();
        let response = osb
            .bind(
                instance,
                binding,
                Query::none(),
                &json!({"service_id": service, "plan_id": plan}),
            )
            .await;
        assert_eq!(response.status, 201, "bind {instance}");
        assert_eq!(response.body["credentials"]["username"], format!("u-{binding}"));
        let unbind = osb.unbind(instance, binding, Query::ids(service, plan)).await;
        assert_eq!(unbind.status, 200, "unbind {instance}");
        assert_eq!(
            gw.osb()
                .deprovision(instance, Query::ids(service, plan))
                .await
                .status,
            200,
            "deprovision {instance}"
        );
    }
    // The upstream saw its own ids, and has nothing left.
    let recorded = upstream.recorded().await;
    let deletes: Vec<(&str, &str)> = recorded
        .iter()
        .filter(|r| r["method"] == "DELETE" && !r["path"].as_str().unwrap().contains("bindings"))
        .map(|r| {
            (
                r["path"].as_str().unwrap(),
                r["args"]["plan_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        deletes,
        [
            ("/v2/service_instances/pre-1", "plan-small"),
            ("/v2/service_instances/pre-2", "plan-large")
        ]
    );
    let gone = upstream_osb(&upstream).fetch_instance("pre-2").await;
    assert_eq!(gone.status, 404);
    assert!(
        admin_get(&gw, "/admin/instances").await["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let adoptions = admin_get(&gw, "/admin/audit?operation=admin.adopt&limit=100").await;
    let outcomes: Vec<(String, String)> = adoptions["items"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|r| {
            (
                r["instance_id"].as_str().unwrap().to_owned(),
                r["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expect = |i: &str, o: &str| (i.to_owned(), o.to_owned());
    assert_eq!(
        outcomes,
        [
            expect("pre-1", "succeeded"),
            expect("pre-2", "succeeded"),
            expect("never-made", "refused"),
            expect("pre-1", "succeeded"),
            expect("pre-3", "refused"),
            expect("never-made", "refused"),
        ]
    );
}

// === abandon ===

#[tokio::test]
async fn abandoning_an_instance_whose_upstream_always_fails_to_deprovision() {
    let broker = fake_broker().await;
    broker.on(
        "DELETE",
        "/v2/service_instances/stuck-1",
        Reply::json(500, &json!({"description": "internal error"})),
    );
    let gw = gateway(&fake_entry(&broker), &[], "").await;
    let ids = ids(&gw).await;
    assert_eq!(
        gw.osb()
            .provision("stuck-1", Query::none(), &on_kubernetes(&ids.service, &ids.small))
            .await
            .status,
        201
    );
    assert_eq!(
        gw.osb()
            .bind("stuck-1", "stuck-b", Query::none(), &ids.small_body())
            .await
            .status,
        201
    );
    assert_eq!(
        gw.osb()
            .deprovision("stuck-1", Query::ids(&ids.service, &ids.small))
            .await
            .status,
        502
    );
    assert_eq!(
        gw.osb()
            .deprovision("stuck-1", Query::ids(&ids.service, &ids.small))
            .await
            .status,
        502
    );
    let record = admin_get(&gw, "/admin/instances/stuck-1").await;
    assert_eq!(record["instance"]["state"], "ready", "still there: {record}");

    let (status, _) = admin(
        &gw,
        Method::POST,
        "/admin/instances/stuck-1/abandon",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 400, "no reason, no abandon");
    let (code, _, err) = cli(&gw, &["abandon", "no-such", "--reason", "x"]).await;
    assert_eq!(code, 1, "{err}");

    let out = cli_ok(
        &gw,
        &[
            "abandon",
            "stuck-1",
            "--deprovision",
            "--reason",
            "broker answers 500 to every delete; ticket OPS-17",
        ],
    )
    .await;
    assert!(
        out.contains("abandoned stuck-1") && out.contains("upstream answered 500"),
        "{out}"
    );
    assert!(out.contains("stuck-b"), "its binding went with it: {out}");
    assert_eq!(
        broker.received("DELETE", "/v2/service_instances/stuck-1").len(),
        3
    );
    assert_eq!(
        gw.osb()
            .deprovision("stuck-1", Query::ids(&ids.service, &ids.small))
            .await
            .status,
        410
    );
    let (status, _) = admin(&gw, Method::GET, "/admin/instances/stuck-1", None).await;
    assert_eq!(status, 404);
    assert_eq!(
        broker.received("DELETE", "/v2/service_instances/stuck-1").len(),
        3
    );

    // The audit log says who, why and what the upstream answered.
    let out = cli_ok(&gw, &["--json", "audit", "--operation", "admin.abandon"]).await;
    let records: Value = serde_json::from_str(&out).unwrap();
    let record = &records["items"][0];
    assert_eq!(records["items"].as_array().unwrap().len(), 1);
    assert_eq!(record["kind"], "admin");
    assert_eq!(
        (record["actor"].as_str(), record["user"].as_str()),
        (Some("admin"), Some("alice"))
    );
    assert_eq!(record["instance_id"], "stuck-1");
    assert_eq!(record["broker"], "fb");
    assert_eq!(record["upstream_status"], 500);
    assert_eq!(record["outcome"], "succeeded");
    let reason = record["reason"].as_str().unwrap();
    assert!(
        reason.contains("ticket OPS-17") && reason.contains("answered 500"),
        "{reason}"
    );
    let table = cli_ok(&gw, &["audit", "--instance", "stuck-1"]).await;
    assert!(
        table.contains("admin.abandon") && table.contains("deprovision"),
        "{table}"
    );
    assert!(table.contains("admin (alice)"), "{table}");
    // Times for people: UTC, not epoch milliseconds; `--since` takes an age.
    assert!(table.contains("AT (UTC)") && table.contains("Z "), "{table}");
    let recent = cli_ok(&gw, &["audit", "--instance", "stuck-1", "--since", "1h"]).await;
    assert!(recent.contains("admin.abandon"), "{recent}");
    let future = cli_ok(&gw, &["audit", "--instance", "stuck-1", "--since", "2999-01-01"]).await;
    assert!(!future.contains("admin.abandon"), "{future}");
    // The platform's own failed deprovisions are there too, with the upstream's 500.
    let history = admin_get(&gw, "/admin/audit?instance_id=stuck-1&operation=deprovision").await;
    let statuses: Vec<(u64, u64)> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| Some((r["status"].as_u64()?, r["upstream_status"].as_u64().unwrap_or(0))))
        .collect();
    assert_eq!(statuses, [(410, 0), (502, 500), (502, 500)]);

    // A binding alone, without an upstream call.
    assert_eq!(
        gw.osb()
            .provision("i-2", Query::none(), &on_kubernetes(&ids.service, &ids.small))
            .await
            .status,
        201
    );
    assert_eq!(
        gw.osb()
            .bind("i-2", "b-2", Query::none(), &ids.small_body())
            .await
            .status,
        201
    );
    let out = cli_ok(
        &gw,
        &[
            "abandon",
            "--binding",
            "b-2",
            "--reason",
            "the app was deleted by hand",
        ],
    )
    .await;
    assert!(out.contains("abandoned b-2 (nothing sent upstream)"), "{out}");
    assert!(
        broker
            .received("DELETE", "/v2/service_instances/i-2/service_bindings/")
            .is_empty()
    );
    let unbind = gw.osb().unbind("i-2", "b-2", ids.query()).await;
    assert_eq!(unbind.status, 410);
    assert_eq!(
        admin_get(&gw, "/admin/instances/i-2").await["instance"]["state"],
        "ready"
    );
}

// === the audit log ===

const POLICY: &str = "deny:\n  - name: no-forbidden-namespace\n    operations: [provision]\n    when: {context.namespace: [forbidden]}\n    reason: not in this namespace\n";

#[tokio::test]
async fn twenty_mutating_calls_make_twenty_audit_records_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = ObapiBroker::start(&write_obapi_catalog(dir.path())).await;
    let gw = gateway(
        &upstream.config_entry("ob"),
        &[("policy.yaml", POLICY)],
        "policy_file: policy.yaml\naudit:\n  jsonl_path: audit/records.jsonl\n",
    )
    .await;
    let catalog = gw.ready_catalog().await;
    let service = &catalog["services"][0];
    let sid = service["id"].as_str().unwrap().to_owned();
    let pid = service["plans"][0]["id"].as_str().unwrap().to_owned();

    // Every call carries an originating identity with more than a user name in it.
    let identity = base64::engine::general_purpose::STANDARD.encode(
        r#"{"username":"alice","uid":"uid-5150","groups":["grp-secret-5"],"extra":{"token":["oi-secret-token-9"]}}"#,
    );
    let header = format!("kubernetes {identity}");
    let secret_parameters = json!({"size": 1, "admin_password": "param-secret-77"});
    let osb = gw.osb();
    let call = |method: Method, path: String, body: Option<Value>| {
        let mut request = osb
            .request(method, &path)
            .header("X-Broker-API-Originating-Identity", header.clone());
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let context = json!({"platform": "kubernetes", "namespace": "team-a"});
    let provision_body = |parameters: &Value| json!({"service_id": sid, "plan_id": pid, "context": context, "parameters": parameters});
    let ids_query = Query::ids(&sid, &pid).render();

    let mut statuses = Vec::new();
    statuses.push(
        call(
            Method::PUT,
            instance_path("au-1"),
            Some(provision_body(&secret_parameters)),
        )
        .await,
    );
    statuses.push(
        call(
            Method::PUT,
            instance_path("au-1"),
            Some(provision_body(&secret_parameters)),
        )
        .await,
    );
    statuses.push(
        call(
            Method::PUT,
            instance_path("au-1"),
            Some(provision_body(&json!({"size": 9}))),
        )
        .await,
    );
    statuses.push(
        call(
            Method::PUT,
            instance_path("au-2"),
            Some(json!({"service_id": sid, "plan_id": "no-such-plan"})),
        )
        .await,
    );
    statuses.push(
        call(
            Method::PATCH,
            instance_path("au-1"),
            Some(json!({"service_id": sid, "plan_id": pid, "parameters": {"size": 2, "admin_password": "param-secret-77"}})),
        )
        .await,
    );
    let binding = format!("{}/service_bindings/bind-7f3a", instance_path("au-1"));
    statuses.push(
        call(
            Method::PUT,
            binding.clone(),
            Some(json!({"service_id": sid, "plan_id": pid})),
        )
        .await,
    );
    statuses.push(
        call(
            Method::PUT,
            binding.clone(),
            Some(json!({"service_id": sid, "plan_id": pid})),
        )
        .await,
    );
    statuses.push(
        call(
            Method::PUT,
            format!("{}/service_bindings/bind-x", instance_path("no-such")),
            Some(json!({"service_id": sid, "plan_id": pid})),
        )
        .await,
    );
    statuses.push(call(Method::DELETE, format!("{binding}{ids_query}"), None).await);
    statuses.push(call(Method::DELETE, format!("{binding}{ids_query}"), None).await);
    statuses.push(
        call(
            Method::DELETE,
            format!("{}{ids_query}", instance_path("au-1")),
            None,
        )
        .await,
    );
    statuses.push(
        call(
            Method::DELETE,
            format!("{}{ids_query}", instance_path("au-1")),
            None,
        )
        .await,
    );
    statuses.push(
        call(
            Method::PUT,
            format!("{}?accepts_incomplete=true", instance_path("au-3")),
            Some(provision_body(&json!({}))),
        )
        .await,
    );
    statuses.push(
        call(
            Method::PUT,
            instance_path("au-4"),
            Some(json!({"service_id": sid, "plan_id": pid, "context": {"platform": "kubernetes", "namespace": "forbidden"}})),
        )
        .await,
    );
    // No X-Broker-API-Version: refused after authentication, recorded all the same.
    let status = osb
        .clone()
        .version(None)
        .request(Method::PUT, &instance_path("au-5"))
        .header("X-Broker-API-Originating-Identity", header.clone())
        .json(&provision_body(&json!({})))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    statuses.push(status);
    statuses.push(
        call(
            Method::DELETE,
            format!("{}{ids_query}", instance_path("au-3")),
            None,
        )
        .await,
    );
    statuses.push(
        call(
            Method::PATCH,
            instance_path("no-such"),
            Some(json!({"service_id": sid})),
        )
        .await,
    );
    statuses.push(
        call(
            Method::PUT,
            instance_path("au-5"),
            Some(provision_body(&json!({}))),
        )
        .await,
    );
    statuses.push(
        call(
            Method::DELETE,
            format!("{}?service_id=wrong&plan_id={pid}", instance_path("au-5")),
            None,
        )
        .await,
    );
    statuses.push(
        call(
            Method::DELETE,
            format!("{}{ids_query}", instance_path("au-5")),
            None,
        )
        .await,
    );
    assert_eq!(
        statuses,
        [
            201, 200, 409, 400, 200, 201, 200, 404, 200, 410, 200, 410, 202, 403, 412, 422, 404, 201, 400,
            200
        ]
    );
    // Reads are not recorded.
    gw.catalog().await;
    call(
        Method::GET,
        format!("{}/last_operation", instance_path("au-3")),
        None,
    )
    .await;
    call(Method::GET, instance_path("au-5"), None).await;

    // Twenty records, in order, each with what happened.
    let page = admin_get(&gw, "/admin/audit?kind=platform&limit=1000").await;
    let mut records: Vec<Value> = page["items"].as_array().unwrap().clone();
    records.reverse();
    let summary: Vec<(String, u64, String, Option<String>)> = records
        .iter()
        .map(|r| {
            (
                r["operation"].as_str().unwrap().to_owned(),
                r["status"].as_u64().unwrap(),
                r["outcome"].as_str().unwrap().to_owned(),
                r["error"].as_str().map(str::to_owned),
            )
        })
        .collect();
    let row = |op: &str, status: u64, outcome: &str, error: Option<&str>| {
        (
            op.to_owned(),
            status,
            outcome.to_owned(),
            error.map(str::to_owned),
        )
    };
    assert_eq!(
        summary,
        [
            row("provision", 201, "succeeded", None),
            row("provision", 200, "succeeded", None),
            row("provision", 409, "refused", Some("Conflict")),
            row("provision", 400, "refused", Some("BadRequest")),
            row("update", 200, "succeeded", None),
            row("bind", 201, "succeeded", None),
            row("bind", 200, "succeeded", None),
            row("bind", 404, "refused", Some("NotFound")),
            row("unbind", 200, "succeeded", None),
            row("unbind", 410, "refused", Some("Gone")),
            row("deprovision", 200, "succeeded", None),
            row("deprovision", 410, "refused", Some("Gone")),
            row("provision", 202, "accepted", None),
            row("provision", 403, "refused", Some("PolicyDenied")),
            row("provision", 412, "refused", Some("UnsupportedVersion")),
            row("deprovision", 422, "refused", Some("ConcurrencyError")),
            row("update", 404, "refused", Some("NotFound")),
            row("provision", 201, "succeeded", None),
            row("deprovision", 400, "refused", Some("BadRequest")),
            row("deprovision", 200, "succeeded", None),
        ]
    );
    for (n, record) in records.iter().enumerate() {
        assert_eq!(record["kind"], "platform");
        assert_eq!(record["actor"], "k8s-prod", "record {n}");
        assert_eq!(
            record["user"], "alice",
            "record {n}: the user name of the originating identity"
        );
        assert!(record["request_identity"].is_string(), "record {n}");
        assert!(record["duration_ms"].is_u64(), "record {n}");
    }
    let forwarded = [0, 1, 4, 5, 6, 8, 10, 12, 17, 19];
    for n in forwarded {
        assert_eq!(records[n]["policy"], "allow", "record {n}");
        assert_eq!(records[n]["broker"], "ob", "record {n}");
        assert_eq!(records[n]["upstream_status"], records[n]["status"], "record {n}");
    }
    for n in [2, 3, 7, 9, 11, 13, 14, 15, 16, 18] {
        assert!(
            records[n].get("upstream_status").is_none(),
            "record {n} was not forwarded"
        );
    }
    assert_eq!(records[13]["policy"], "deny (rule no-forbidden-namespace)");
    assert!(
        records[3].get("policy").is_none(),
        "refused before the policy ran"
    );
    assert_eq!(records[5]["binding_id"], "bind-7f3a");
    assert_eq!(records[5]["instance_id"], "au-1");
    assert_eq!(records[0]["service_id"], sid.as_str());
    assert_eq!(records[0]["plan_id"], pid.as_str());

    // The JSON lines export and the command line say the same.
    let exported = std::fs::read_to_string(gw.dir.path().join("audit/records.jsonl")).unwrap();
    let lines: Vec<Value> = exported
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, records);
    let out = cli_ok(
        &gw,
        &["audit", "--kind", "platform", "--limit", "7", "--all", "--jsonl"],
    )
    .await;
    let from_cli: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(from_cli, records);
    let table = cli_ok(&gw, &["audit", "--outcome", "refused", "--limit", "3"]).await;
    assert!(table.contains("more: --cursor"), "{table}");
    let (status, body) = admin(
        &gw,
        Method::GET,
        "/admin/audit?kind=platform&format=jsonl&limit=1000",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body.as_str().unwrap(), exported);

    // No secrets anywhere in the audit log.
    let everything = format!(
        "{}\n{exported}\n{out}\n{table}",
        serde_json::to_string(&page).unwrap()
    );
    for secret in [
        PLATFORM_PASSWORD,
        BROKER_PASSWORD,
        ADMIN_PASSWORD,
        "param-secret-77",
        "p-bind-7f3a",
        "u-bind-7f3a",
        "fake://",
        "grp-secret-5",
        "oi-secret-token-9",
        "uid-5150",
        identity.as_str(),
    ] {
        assert!(
            !everything.contains(secret),
            "the audit log holds a secret: {secret}"
        );
    }

    // Operator actions are recorded too, apart from the platforms'.
    let request = dir.path().join("explain.json");
    std::fs::write(
        &request,
        serde_json::to_vec(&json!({"operation": "provision", "instance_id": "x",
            "body": {"service_id": sid, "plan_id": pid, "context": {"platform": "kubernetes", "namespace": "forbidden"}}}))
        .unwrap(),
    )
    .unwrap();
    let (code, out, _) = cli(
        &gw,
        &[
            "explain",
            "--platform",
            "k8s-prod",
            "--request",
            request.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(code, 3, "refused: {out}");
    assert!(out.contains("no-forbidden-namespace"), "{out}");
    let out = cli_ok(&gw, &["policy-reload"]).await;
    assert!(out.contains("generation"), "{out}");
    let admin_records = admin_get(&gw, "/admin/audit?kind=admin").await;
    assert_eq!(admin_records["items"][0]["operation"], "admin.policy_reload");
    let all = admin_get(&gw, "/admin/audit?limit=1000").await;
    assert_eq!(all["items"].as_array().unwrap().len(), 21);
    assert_eq!(
        std::fs::read_to_string(gw.dir.path().join("audit/records.jsonl"))
            .unwrap()
            .lines()
            .count(),
        21
    );
}

/// A platform controls the user name of its originating identity; an operator's terminal must not
/// obey it. Tables escape control characters and bidi overrides; `--json` keeps it exact.
#[tokio::test]
async fn hostile_user_names_are_escaped_in_tables_and_exact_in_json() {
    let broker = fake_broker().await;
    let gw = gateway(&fake_entry(&broker), &[], "").await;
    let ids = ids(&gw).await;
    let hostile =
        "mallory\u{1b}[2J\u{1b}]0;owned\u{7}\n9999  admin  provision  forged  201\r\u{9b}31m\u{202e}live";
    let identity = base64::engine::general_purpose::STANDARD
        .encode(serde_json::to_vec(&json!({"username": hostile, "uid": "u-1"})).unwrap());
    let created = OsbResponse::send(
        gw.osb()
            .request(Method::PUT, &instance_path("hostile"))
            .header(
                "X-Broker-API-Originating-Identity",
                format!("kubernetes {identity}"),
            )
            .json(&ids.small_body()),
    )
    .await;
    assert_eq!(created.status, 201);

    let escaped = "mallory\\u{1b}[2J\\u{1b}]0;owned\\u{7}\\n9999  admin  provision  forged  201\\r\\u{9b}31m\\u{202e}live";
    for args in [&["audit"][..], &["instance", "hostile"]] {
        let out = cli_ok(&gw, args).await;
        assert!(
            !out.chars()
                .any(|c| (c.is_control() && c != '\n') || c == '\u{202e}'),
            "admin {args:?} printed a control character:\n{out:?}"
        );
        assert!(out.contains(escaped), "admin {args:?}:\n{out}");
        assert!(
            !out.lines().any(|l| l.starts_with("9999")),
            "admin {args:?} printed a forged row:\n{out}"
        );
    }
    let json = cli_ok(&gw, &["--json", "audit"]).await;
    let records: Value = serde_json::from_str(&json).unwrap();
    let users: Vec<&str> = records["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["user"].as_str())
        .collect();
    assert_eq!(users, vec![hostile], "--json is the exact value");
}

// === named operators ===

/// An admin API call as `user` (no `--as`): status and JSON body.
async fn admin_as(
    gw: &TestGateway,
    user: (&str, &str),
    method: Method,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let response = http()
        .request(method, gw.admin_url(path))
        .basic_auth(user.0, Some(user.1))
        .header("X-OSB-Gateway-Operator", "bob")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[tokio::test]
async fn a_viewer_reads_an_operator_acts_and_the_audit_names_who_did() {
    let broker = fake_broker().await;
    let users = "  users:\n    - name: vera\n      role: viewer\n      password: viewer-pw-1\n    \
                 - name: otto\n      role: operator\n      password_env: OTTO_PW\n";
    let gw = TestGateway::start_with_admin(
        users,
        &format!("{}brokers:\n{}", platforms_yaml(), fake_entry(&broker)),
        &[("OTTO_PW", "operator-pw-2")],
    )
    .await;
    let ids = ids(&gw).await;
    assert_eq!(
        gw.osb()
            .provision("kept-1", Query::none(), &on_kubernetes(&ids.service, &ids.small))
            .await
            .status,
        201
    );
    let viewer = ("vera", "viewer-pw-1");
    let operator = ("otto", "operator-pw-2");

    // Both read.
    for user in [viewer, operator] {
        let (status, record) = admin_as(&gw, user, Method::GET, "/admin/instances/kept-1", Value::Null).await;
        assert_eq!(status, 200, "{record}");
    }
    // A wrong password reads nothing.
    let (status, _) = admin_as(
        &gw,
        ("vera", "guess"),
        Method::GET,
        "/admin/instances/kept-1",
        Value::Null,
    )
    .await;
    assert_eq!(status, 401);

    // The viewer cannot act: 403, and nothing changes.
    let abandon = json!({"reason": "cleanup"});
    for (method, path) in [
        (Method::POST, "/admin/instances/kept-1/abandon"),
        (Method::POST, "/admin/brokers/refresh"),
        (Method::POST, "/admin/policy/reload"),
    ] {
        let (status, body) = admin_as(&gw, viewer, method, path, abandon.clone()).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert!(
            body["description"]
                .as_str()
                .unwrap_or_default()
                .contains("operator role"),
            "{body}"
        );
    }
    let (status, _) = admin_as(&gw, viewer, Method::GET, "/admin/instances/kept-1", Value::Null).await;
    assert_eq!(status, 200, "still there");

    // The operator can; the audit record names the authenticated operator, `--as` as a note.
    let (status, body) = admin_as(
        &gw,
        operator,
        Method::POST,
        "/admin/instances/kept-1/abandon",
        abandon,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, page) = admin_as(&gw, viewer, Method::GET, "/admin/audit?kind=admin", Value::Null).await;
    let record = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["operation"] == "admin.abandon")
        .cloned()
        .unwrap();
    assert_eq!(
        (record["actor"].as_str(), record["user"].as_str()),
        (Some("otto"), Some("bob")),
        "{record}"
    );
    assert_eq!(record["status"], 200);
}
