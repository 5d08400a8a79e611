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
