//! `osb-gateway store export` and `store import`: an embedded registry backed up, moved to
//! PostgreSQL, and served from there by a gateway that finds every instance, binding, catalog and
//! audit record; an import into a store that holds records is refused, and an embedded store in use
//! is not exported.

use std::process::Output;

use serde_json::json;

use crate::support::fake_broker::{FakeBroker, Reply};
use crate::support::gateway::{TestGateway, platforms_yaml};
use crate::support::osb::Query;
use crate::support::postgres::Database;
use crate::support::process::GatewayProcess;
use crate::support::small_catalog::{Ids, small_catalog};

async fn store_command(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_osb-gateway"))
        .arg("store")
        .args(args)
        .output()
        .await
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn an_embedded_registry_moves_to_postgresql_with_everything_in_it() {
    let broker = FakeBroker::with_catalog(small_catalog()).await;
    broker.on("PUT", "/v2/service_instances/*", Reply::new(201, "{}"));
    broker.on("DELETE", "/v2/service_instances/*", Reply::new(200, "{}"));
    broker.on(
        "GET",
        "/v2/service_instances/*",
        Reply::new(200, r#"{"credentials": {}}"#),
    );
    let brokers = format!(
        "{}brokers:\n  - name: fb\n    url: {}\n    refresh_interval_secs: 3600\n",
        platforms_yaml(),
        broker.url()
    );
    let mut gw = TestGateway::start(&brokers).await;
    let catalog = gw.ready_catalog().await;
    let ids = Ids::of(&catalog, "fb.db");
    let osb = gw.osb();
    for instance in ["moved-1", "moved-2", "moved-3"] {
        assert_eq!(
            osb.provision(instance, Query::none(), &ids.small_body())
                .await
                .status,
            201
        );
    }
    assert_eq!(
        osb.bind("moved-1", "moved-b1", Query::none(), &ids.small_body())
            .await
            .status,
        201
    );
    let config = gw.config_path.to_str().unwrap().to_owned();

    // In use: the embedded file is locked by the running gateway.
    let busy = store_command(&["export", "--config", &config]).await;
    assert!(
        !busy.status.success() && stderr(&busy).contains("in use"),
        "{}",
        stderr(&busy)
    );
    gw.stop().await;

    let backup = gw.dir.path().join("backup.jsonl");
    let exported = store_command(&["export", "--config", &config, "--out", backup.to_str().unwrap()]).await;
    assert!(exported.status.success(), "{}", stderr(&exported));
    assert!(
        stderr(&exported).contains("exported 3 instances, 1 bindings, 2 catalogs, 4 audit records"),
        "{}",
        stderr(&exported)
    );
    let file = std::fs::read_to_string(&backup).unwrap();
    assert!(
        file.starts_with("{\"format\":\"osb-gateway-store\",\"version\":1,"),
        "{file}"
    );

    // Into PostgreSQL.
    let database = Database::create();
    let pg_config = gw.dir.path().join("pg.yaml");
    std::fs::write(
        &pg_config,
        format!(
            "listen: \"127.0.0.1:0\"\nadmin:\n  listen: \"127.0.0.1:0\"\nstore:\n  kind: postgres\n  url: {}\n{brokers}",
            database.url
        ),
    )
    .unwrap();
    let pg = pg_config.to_str().unwrap();
    let imported = store_command(&["import", "--config", pg, "--in", backup.to_str().unwrap()]).await;
    assert!(imported.status.success(), "{}", stderr(&imported));
    assert!(
        stderr(&imported).contains("imported 3 instances, 1 bindings"),
        "{}",
        stderr(&imported)
    );
    let again = store_command(&["import", "--config", pg, "--in", backup.to_str().unwrap()]).await;
    assert!(
        !again.status.success() && stderr(&again).contains("already holds 4 instances and bindings"),
        "{}",
        stderr(&again)
    );

    // A gateway on PostgreSQL serves what moved: the registry, the history, the lifecycle.
    let mut replica = GatewayProcess::spawn(&pg_config, &[], None).await;
    let osb = replica.osb();
    let admin = replica.admin.clone().unwrap();
    osb.ready_catalog().await;
    let registry: serde_json::Value = reqwest::get(format!("{admin}/admin/registry"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(registry["instances"], 3, "{registry}");
    assert_eq!(registry["bindings"], 1, "{registry}");
    let history: serde_json::Value = reqwest::get(format!("{admin}/admin/audit?instance_id=moved-2"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(history["items"][0]["operation"], "provision", "{history}");
    let fetched = osb.fetch_binding("moved-1", "moved-b1").await;
    assert_eq!(fetched.status, 200, "the binding moved: {}", fetched.text());
    let gone = osb.deprovision("moved-3", ids.query()).await;
    assert_eq!(gone.status, 200, "{}", gone.text());
    let again = osb
        .provision(
            "moved-2",
            Query::none(),
            &json!({"service_id": ids.service, "plan_id": ids.large}),
        )
        .await;
    assert_eq!(
        again.status,
        409,
        "moved-2 exists with other parameters: {}",
        again.text()
    );
    replica.kill().await;
}

async fn gateway_command(args: &[&str], env: &[(&str, &str)]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_osb-gateway"))
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_backup_taken_under_load_restores_and_migrate_moves_the_registry_both_ways() {
    let broker = FakeBroker::with_catalog(small_catalog()).await;
    broker.on("PUT", "/v2/service_instances/*", Reply::new(201, "{}"));
    broker.on("DELETE", "/v2/service_instances/*", Reply::new(200, "{}"));
    let brokers = format!(
        "{}brokers:\n  - name: fb\n    url: {}\n    refresh_interval_secs: 3600\n",
        platforms_yaml(),
        broker.url()
    );
    let mut gw = TestGateway::start(&brokers).await;
    let ids = std::sync::Arc::new(Ids::of(&gw.ready_catalog().await, "fb.db"));
    let osb = gw.osb();
    for instance in ["kept-1", "kept-2"] {
        let created = osb.provision(instance, Query::none(), &ids.small_body()).await;
        assert_eq!(created.status, 201);
    }
    assert_eq!(
        osb.bind("kept-1", "kept-b1", Query::none(), &ids.small_body())
            .await
            .status,
        201
    );

    // Taken while provisions and bindings go on: every binding in the file has its instance.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (osb, ids, stop) = (gw.osb(), ids.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let instance = format!("load-{n}");
                assert_eq!(
                    osb.provision(&instance, Query::none(), &ids.small_body())
                        .await
                        .status,
                    201
                );
                let binding = format!("load-b{n}");
                let bound = osb
                    .bind(&instance, &binding, Query::none(), &ids.small_body())
                    .await;
                assert_eq!(bound.status, 201);
            }
            n
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let backup = gw.dir.path().join("live.jsonl");
    let saved = gateway_command(
        &[
            "admin",
            "--url",
            &gw.admin_url(""),
            "backup",
            "--out",
            backup.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let provisioned = load.await.unwrap();
    assert!(saved.status.success(), "{}", stderr(&saved));
    assert!(provisioned > 2, "the load ran: {provisioned}");
    let file = std::fs::read_to_string(&backup).unwrap();
    let lines: Vec<serde_json::Value> = file.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let instances: std::collections::HashSet<&str> = lines
        .iter()
        .filter(|l| l["kind"] == "instance")
        .map(|l| l["record"]["instance_id"].as_str().unwrap())
        .collect();
    assert!(
        instances.contains("kept-1") && instances.contains("kept-2"),
        "{instances:?}"
    );
    for binding in lines.iter().filter(|l| l["kind"] == "binding") {
        let instance = binding["record"]["instance_id"].as_str().unwrap();
        assert!(
            instances.contains(instance),
            "binding without its instance: {binding}"
        );
    }
    let saved_line = stderr(&saved);
    assert!(
        saved_line.contains(&format!("saved {} instances", instances.len())),
        "{saved_line}"
    );
    let audit: serde_json::Value = reqwest::get(gw.admin_url("/admin/audit?operation=admin.backup"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(audit["items"][0]["operation"], "admin.backup", "{audit}");
    gw.stop().await;

    // The backup restores into PostgreSQL.
    let database = Database::create();
    let pg_config = gw.dir.path().join("pg.yaml");
    std::fs::write(
        &pg_config,
        format!("store:\n  kind: postgres\n  url: {}\n{brokers}", database.url),
    )
    .unwrap();
    let pg = pg_config.to_str().unwrap();
    let restored = store_command(&["import", "--config", pg, "--in", backup.to_str().unwrap()]).await;
    assert!(restored.status.success(), "{}", stderr(&restored));

    // migrate: PostgreSQL → a new embedded file, and that file → another database; counts checked.
    let moved_file = gw.dir.path().join("moved");
    let to_embedded = gateway_command(
        &[
            "migrate",
            "--config",
            pg,
            "--from",
            "postgres",
            "--to",
            "embedded",
            "--path",
            moved_file.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert!(to_embedded.status.success(), "{}", stderr(&to_embedded));
    let moved = stderr(&to_embedded);
    assert!(
        moved.contains(&format!("moved {} instances", instances.len())) && moved.contains("counts match"),
        "{moved}"
    );
    let second = Database::create();
    let path = moved_file.to_str().unwrap();
    let file_to_second: [&str; 9] = [
        "migrate", "--config", pg, "--from", "embedded", "--to", "postgres", "--path", path,
    ];
    let second_url = [("OSB_GATEWAY_MIGRATE_URL", second.url.as_str())];
    let back = gateway_command(&file_to_second, &second_url).await;
    assert!(back.status.success(), "{}", stderr(&back));
    assert!(stderr(&back).contains("counts match"), "{}", stderr(&back));
    // Into a store that holds records: refused, nothing merged.
    let again = gateway_command(&file_to_second, &second_url).await;
    assert!(
        !again.status.success() && stderr(&again).contains("already holds"),
        "{}",
        stderr(&again)
    );
}

/// An export pages through the registry (here 2,500 instances and 1,500 bindings, pages of
/// 1,000): every instance once, every binding of an exported instance once, none other.
#[tokio::test]
async fn an_export_pages_through_a_registry_larger_than_a_page() {
    use osb_routing::record::{BindingRecord, InstanceRecord, ResourceState};
    use osb_routing::store::{EmbeddedStore, Expect, Store, Swap};
    let dir = tempfile::tempdir().unwrap();
    let store: std::sync::Arc<dyn Store> =
        std::sync::Arc::new(EmbeddedStore::open(dir.path().join("store")).await.unwrap());
    let instance = |i: usize| InstanceRecord {
        instance_id: format!("i{i:05}"),
        platform: "k8s".into(),
        broker: "aws".into(),
        service_id: "s".into(),
        plan_id: "p".into(),
        upstream_service_id: "us".into(),
        upstream_plan_id: "up".into(),
        fingerprint: "f".into(),
        context: None,
        state: ResourceState::Ready,
        operation: None,
        created_ms: 1,
        updated_ms: 1,
        version: 0,
        quotas: Vec::new(),
    };
    let binding = |i: usize, instance_id: String| BindingRecord {
        binding_id: format!("b{i:05}"),
        instance_id,
        platform: "k8s".into(),
        broker: "aws".into(),
        service_id: "s".into(),
        plan_id: "p".into(),
        upstream_service_id: "us".into(),
        upstream_plan_id: "up".into(),
        fingerprint: "f".into(),
        state: ResourceState::Ready,
        operation: None,
        created_ms: 1,
        updated_ms: 1,
        version: 0,
        quotas: Vec::new(),
    };
    let mut writes = tokio::task::JoinSet::new();
    for i in 0..2_500 {
        let store = store.clone();
        writes.spawn(async move {
            let record = instance(i);
            let id = record.instance_id.clone();
            store.swap_instance(&id, Expect::Absent, Some(record)).await
        });
    }
    while let Some(written) = writes.join_next().await {
        assert!(matches!(written.unwrap(), Ok(Swap::Written(_))));
    }
    let mut writes = tokio::task::JoinSet::new();
    for i in 0..1_500 {
        let store = store.clone();
        // The last 100 belong to no instance: they are left out of the file.
        let owner = if i < 1_400 {
            format!("i{:05}", i)
        } else {
            format!("gone{i}")
        };
        writes.spawn(async move {
            let record = binding(i, owner);
            let id = record.binding_id.clone();
            store.swap_binding(&id, Expect::Absent, Some(record)).await
        });
    }
    while let Some(written) = writes.join_next().await {
        assert!(matches!(written.unwrap(), Ok(Swap::Written(_))));
    }

    let mut out = Vec::new();
    let counts = osb_gateway::ops::store_file::export(store.as_ref(), &[], "test", &mut out)
        .await
        .unwrap();
    assert_eq!((counts.instances, counts.bindings), (2_500, 1_400));
    let text = String::from_utf8(out).unwrap();
    let mut ids = std::collections::HashSet::new();
    for line in text.lines().skip(1) {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        let id = value["record"]["instance_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let binding = value["record"]["binding_id"].as_str().map(str::to_owned);
        assert!(ids.insert((id, binding)), "a record written twice: {line}");
    }
    assert_eq!(ids.len(), 3_900);
}
