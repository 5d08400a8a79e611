//! The platform team's policy end to end: per-platform catalogs, placement of a logical offering
//! across three clouds with failover, parameter rules at the upstream, denials that reach nothing,
//! hot reload under load, explain.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::fake_broker::{FakeBroker, Reply};
use crate::support::gateway::{BEARER_TOKEN, PLATFORM_PASSWORD, PLATFORM_USER, TestGateway};
use crate::support::osb::{OsbClient, OsbResponse, Query, instance_path, plan_ids};
use crate::support::{eventually, http};

fn catalog(services: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({ "services": services })).unwrap()
}

/// Three clouds, each with a MySQL-like service; AWS also has S3 (one paid plan, one with a
/// schema), GCP a preview service.
async fn clouds() -> (FakeBroker, FakeBroker, FakeBroker) {
    let azure = FakeBroker::with_catalog(catalog(json!([
        {"name": "azure-mysql", "id": "az-mysql", "description": "d", "bindable": true, "plans": [
            {"name": "basic", "id": "az-basic", "description": "d"},
            {"name": "standard", "id": "az-standard", "description": "d"}]}
    ])))
    .await;
    let aws = FakeBroker::with_catalog(catalog(json!([
        {"name": "rdsmysql", "id": "aws-rds", "description": "d", "bindable": true, "instances_retrievable": true, "plans": [
            {"name": "dev", "id": "aws-dev", "description": "d"},
            {"name": "production", "id": "aws-prod", "description": "d", "free": false}]},
        {"name": "s3", "id": "aws-s3", "description": "d", "bindable": true, "plans": [
            {"name": "standard", "id": "aws-s3-std", "description": "d", "schemas": {"service_instance": {"create": {"parameters": {
                "$schema": "http://json-schema.org/draft-04/schema#", "type": "object",
                "properties": {"bucket_size": {"type": "integer", "maximum": 100}}}}}}}]}
    ])))
    .await;
    let gcp = FakeBroker::with_catalog(catalog(json!([
        {"name": "cloudsql", "id": "gcp-sql", "description": "d", "bindable": true, "plans": [
            {"name": "f1", "id": "gcp-f1", "description": "d"},
            {"name": "n1", "id": "gcp-n1", "description": "d"}]},
        {"name": "ml", "id": "gcp-ml", "description": "d", "bindable": false, "tags": ["preview"], "plans": [
            {"name": "default", "id": "gcp-ml-d", "description": "d"}]}
    ])))
    .await;
    for broker in [&azure, &aws, &gcp] {
        broker.on("PUT", "/v2/service_instances/*", Reply::new(201, "{}"));
        broker.on("DELETE", "/v2/service_instances/*", Reply::new(200, "{}"));
    }
    (azure, aws, gcp)
}

const POLICY: &str = r#"
visibility:
  rules:
    - {name: cf-sees-aws, platforms: [cf], brokers: [aws], effect: show}
    - {name: cf-hides-the-rest, platforms: [cf], effect: hide}
    - {name: dev-free-only, platforms: [k8s-dev], free: false, effect: hide}
    - {name: no-preview, tags: [preview], effect: hide}
offerings:
  - name: mysql
    description: MySQL on the right cloud
    tags: [mysql]
    plans: [{name: small, description: small}, {name: large, description: large}]
    placement:
      - name: eu-on-aws
        when: {parameters.region: ["eu-*"]}
        candidates:
          - {broker: aws, service: rdsmysql, plans: {small: dev, large: production}}
      - name: team-a-on-azure
        when: {context.namespace: [team-a]}
        candidates:
          - {broker: azure, service: azure-mysql, plans: {small: basic, large: standard}}
          - {broker: gcp, service: cloudsql, plans: {small: f1, large: n1}}
      - name: default
        candidates:
          - {broker: gcp, service: cloudsql, plans: {small: f1, large: n1}}
parameters:
  - name: cost-center
    platforms: ["k8s-*"]
    defaults: {cost_center: "{context.namespace_annotations.cost-center}"}
  - name: encrypted
    services: [mysql, "aws.*"]
    force: {encrypted: true}
  - name: regions
    services: [mysql]
    allowed: {region: ["eu-*", us-east-1]}
  - name: no-public
    forbid: [public_access]
deny:
  - {name: no-s3-from-dev, platforms: [k8s-dev], services: [aws.s3], operations: [provision], reason: S3 comes from production only}
"#;

fn yaml(azure: &FakeBroker, aws: &FakeBroker, gcp: &FakeBroker) -> String {
    format!(
        "platforms:\n  - name: k8s-prod\n    username: {PLATFORM_USER}\n    password: {PLATFORM_PASSWORD}\n  \
         - name: cf\n    bearer_token: {BEARER_TOKEN}\n  - name: k8s-dev\n    username: dev\n    password: dev-secret\n\
         policy_file: policy.yaml\nbrokers:\n  - name: azure\n    url: {}\n    refresh_interval_secs: 1\n  \
         - name: aws\n    url: {}\n    refresh_interval_secs: 1\n  - name: gcp\n    url: {}\n    refresh_interval_secs: 1\n",
        azure.url(),
        aws.url(),
        gcp.url()
    )
}

/// An OSB client as one of the three platforms.
fn as_platform(gateway: &TestGateway, platform: &str) -> OsbClient {
    let osb = gateway.osb();
    match platform {
        "k8s-prod" => osb.basic(PLATFORM_USER, PLATFORM_PASSWORD),
        "cf" => osb.bearer(BEARER_TOKEN),
        _ => osb.basic("dev", "dev-secret"),
    }
}

async fn catalog_of(gateway: &TestGateway, platform: &str) -> (String, Value) {
    let response = as_platform(gateway, platform).catalog().await;
    assert_eq!(response.status, 200);
    let etag = response.header("etag").unwrap().to_owned();
    (etag, response.body)
}

/// `service/plan` names a catalog shows.
fn plans(catalog: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for s in catalog["services"].as_array().unwrap() {
        for p in s["plans"].as_array().unwrap() {
            out.push(format!(
                "{}/{}",
                s["name"].as_str().unwrap(),
                p["name"].as_str().unwrap()
            ));
        }
    }
    out.sort();
    out
}

fn forwarded(broker: &FakeBroker) -> usize {
    broker
        .recorded()
        .iter()
        .filter(|r| r.path != "/v2/catalog")
        .count()
}

#[tokio::test]
async fn each_platform_gets_its_own_catalog_and_can_only_call_what_it_sees() {
    let (azure, aws, gcp) = clouds().await;
    let gateway = TestGateway::start_with_files(&yaml(&azure, &aws, &gcp), &[("policy.yaml", POLICY)]).await;
    gateway.ready_catalog().await;

    let (prod_etag, prod) = catalog_of(&gateway, "k8s-prod").await;
    let (cf_etag, cf) = catalog_of(&gateway, "cf").await;
    let (dev_etag, dev) = catalog_of(&gateway, "k8s-dev").await;
    assert_eq!(
        plans(&prod),
        [
            "aws.rdsmysql/dev",
            "aws.rdsmysql/production",
            "aws.s3/standard",
            "azure.azure-mysql/basic",
            "azure.azure-mysql/standard",
            "gcp.cloudsql/f1",
            "gcp.cloudsql/n1",
            "mysql/large",
            "mysql/small"
        ]
    );
    assert_eq!(
        plans(&cf),
        ["aws.rdsmysql/dev", "aws.rdsmysql/production", "aws.s3/standard"]
    );
    assert_eq!(
        plans(&dev),
        [
            "aws.rdsmysql/dev",
            "aws.s3/standard",
            "azure.azure-mysql/basic",
            "azure.azure-mysql/standard",
            "gcp.cloudsql/f1",
            "gcp.cloudsql/n1",
            "mysql/large",
            "mysql/small"
        ]
    );
    assert!(
        prod_etag != cf_etag && cf_etag != dev_etag && prod_etag != dev_etag,
        "one ETag per platform's catalog"
    );
    let again = OsbResponse::send(
        as_platform(&gateway, "cf")
            .request(Method::GET, "/v2/catalog")
            .header("If-None-Match", &cf_etag),
    )
    .await;
    assert_eq!(again.status, 304);

    // What a platform can't see, it can't provision: 403 PolicyDenied naming the rule; nothing sent.
    let before = forwarded(&azure) + forwarded(&aws) + forwarded(&gcp);
    let (service, plan) = plan_ids(&prod, "azure.azure-mysql", "basic");
    let response = as_platform(&gateway, "cf")
        .provision(
            "cf-1",
            Query::none(),
            &json!({"service_id": service, "plan_id": plan}),
        )
        .await;
    assert_eq!(response.status, 403);
    assert_eq!(response.body["error"], "PolicyDenied");
    assert!(response.description().unwrap().contains("cf-hides-the-rest"));
    let (service, plan) = plan_ids(&prod, "aws.rdsmysql", "production");
    let response = as_platform(&gateway, "k8s-dev")
        .provision(
            "dev-1",
            Query::none(),
            &json!({"service_id": service, "plan_id": plan}),
        )
        .await;
    assert_eq!(response.status, 403, "a paid plan is hidden from k8s-dev");
    assert_eq!(forwarded(&azure) + forwarded(&aws) + forwarded(&gcp), before);
}

#[tokio::test]
async fn a_logical_offering_lands_by_namespace_region_and_health_and_stays_there() {
    let (mut azure, aws, gcp) = clouds().await;
    let gateway = TestGateway::start_with_files(&yaml(&azure, &aws, &gcp), &[("policy.yaml", POLICY)]).await;
    gateway.ready_catalog().await;
    let (_, prod) = catalog_of(&gateway, "k8s-prod").await;
    let (mysql, small) = plan_ids(&prod, "mysql", "small");
    let prod_osb = as_platform(&gateway, "k8s-prod");
    let provision = |id: &'static str, body: Value| {
        let osb = prod_osb.clone();
        async move { osb.provision(id, Query::none(), &body).await }
    };
    let team_a = json!({"platform": "kubernetes", "namespace": "team-a", "namespace_annotations": {"cost-center": "cc-7"}});

    // team-a's namespace → Azure (basic), with the upstream's own ids.
    let response = provision(
        "m-a",
        json!({"service_id": mysql, "plan_id": small, "context": team_a}),
    )
    .await;
    assert_eq!(response.status, 201);
    let put = &azure.received("PUT", "/v2/service_instances/m-a")[0];
    let sent: Value = serde_json::from_slice(&put.body).unwrap();
    assert_eq!(
        (sent["service_id"].as_str(), sent["plan_id"].as_str()),
        (Some("az-mysql"), Some("az-basic"))
    );
    // Defaulted from a namespace annotation and forced by the policy: both arrive upstream.
    assert_eq!(
        sent["parameters"],
        json!({"cost_center": "cc-7", "encrypted": true})
    );

    // region says EU → AWS, whatever the namespace.
    let body = json!({"service_id": mysql, "plan_id": small, "context": team_a, "parameters": {"region": "eu-west-1"}});
    assert_eq!(provision("m-eu", body).await.status, 201);
    let sent: Value =
        serde_json::from_slice(&aws.received("PUT", "/v2/service_instances/m-eu")[0].body).unwrap();
    assert_eq!(
        (sent["service_id"].as_str(), sent["plan_id"].as_str()),
        (Some("aws-rds"), Some("aws-dev"))
    );
    assert_eq!(
        sent["parameters"],
        json!({"region": "eu-west-1", "cost_center": "cc-7", "encrypted": true})
    );

    // Azure goes down: team-a's next instance fails over to GCP.
    azure.stop().await;
    eventually("azure marked unhealthy", Duration::from_secs(20), || async {
        (gateway.broker_status("azure").await["consecutive_failures"].as_u64() > Some(0)).then_some(())
    })
    .await;
    let response = provision(
        "m-a2",
        json!({"service_id": mysql, "plan_id": small, "context": team_a}),
    )
    .await;
    assert_eq!(response.status, 201);
    let sent: Value =
        serde_json::from_slice(&gcp.received("PUT", "/v2/service_instances/m-a2")[0].body).unwrap();
    assert_eq!(sent["plan_id"], "gcp-f1");

    // The EU instance stays on AWS: bind, fetch and deprovision follow the registry, not the rules.
    aws.on(
        "PUT",
        "/v2/service_instances/m-eu/service_bindings/*",
        Reply::new(201, r#"{"credentials":{"user":"u"}}"#),
    );
    aws.on(
        "GET",
        "/v2/service_instances/m-eu",
        Reply::new(200, r#"{"service_id":"aws-rds","plan_id":"aws-dev"}"#),
    );
    let response = prod_osb
        .bind(
            "m-eu",
            "b1",
            Query::none(),
            &json!({"service_id": mysql, "plan_id": small}),
        )
        .await;
    assert_eq!(response.status, 201);
    let bound: Value = serde_json::from_slice(
        &aws.received("PUT", "/v2/service_instances/m-eu/service_bindings/b1")[0].body,
    )
    .unwrap();
    assert_eq!(bound["plan_id"], "aws-dev");
    let fetched = prod_osb.fetch_instance("m-eu").await.body;
    assert_eq!(
        (fetched["service_id"].as_str(), fetched["plan_id"].as_str()),
        (Some(mysql.as_str()), Some(small.as_str()))
    );
    aws.on(
        "DELETE",
        "/v2/service_instances/m-eu/service_bindings/*",
        Reply::new(200, "{}"),
    );
    let status = prod_osb
        .unbind("m-eu", "b1", Query::ids(&mysql, &small))
        .await
        .status;
    assert_eq!(status, 200);
    let status = prod_osb
        .deprovision("m-eu", Query::ids(&mysql, &small))
        .await
        .status;
    assert_eq!(status, 200);
    let delete = &aws.received("DELETE", "/v2/service_instances/m-eu")[1];
    assert!(
        delete.query.contains("service_id=aws-rds") && delete.query.contains("plan_id=aws-dev"),
        "{}",
        delete.query
    );

    // A plan change maps through the plan map of the broker it lives on.
    gcp.on("PATCH", "/v2/service_instances/m-a2", Reply::new(200, "{}"));
    let (_, large) = plan_ids(&prod, "mysql", "large");
    let response = prod_osb
        .update(
            "m-a2",
            Query::none(),
            &json!({"service_id": mysql, "plan_id": large, "previous_values": {"plan_id": small}}),
        )
        .await;
    assert_eq!(response.status, 200);
    let patch: Value =
        serde_json::from_slice(&gcp.received("PATCH", "/v2/service_instances/m-a2")[0].body).unwrap();
    assert_eq!(
        (
            patch["plan_id"].as_str(),
            patch["previous_values"]["plan_id"].as_str()
        ),
        (Some("gcp-n1"), Some("gcp-f1"))
    );

    // Explain says the same as what happened, and why.
    let explained: Value = http()
        .post(gateway.admin_url("/admin/explain"))
        .json(
            &json!({"platform": "k8s-prod", "operation": "provision", "instance_id": "x",
                      "body": {"service_id": mysql, "plan_id": small, "context": team_a}}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(explained["allowed"], true);
    assert_eq!(explained["decision"]["broker"], "gcp");
    let lines = explained["decision"]["explanation"].to_string();
    assert!(
        lines.contains("team-a-on-azure") && lines.contains("azure skipped: unhealthy"),
        "{lines}"
    );
}

#[tokio::test]
async fn denials_never_reach_an_upstream() {
    let (azure, aws, gcp) = clouds().await;
    let gateway = TestGateway::start_with_files(&yaml(&azure, &aws, &gcp), &[("policy.yaml", POLICY)]).await;
    gateway.ready_catalog().await;
    let (_, prod) = catalog_of(&gateway, "k8s-prod").await;
    let (s3, s3_plan) = plan_ids(&prod, "aws.s3", "standard");
    let (mysql, small) = plan_ids(&prod, "mysql", "small");
    let before = forwarded(&azure) + forwarded(&aws) + forwarded(&gcp);
    let cases = [
        (
            "k8s-dev",
            json!({"service_id": s3, "plan_id": s3_plan}),
            StatusCode::FORBIDDEN,
            "S3 comes from production only",
        ),
        (
            "k8s-prod",
            json!({"service_id": s3, "plan_id": s3_plan, "parameters": {"public_access": true}}),
            StatusCode::FORBIDDEN,
            "no-public",
        ),
        (
            "k8s-prod",
            json!({"service_id": mysql, "plan_id": small, "parameters": {"region": "ap-south-1"}}),
            StatusCode::BAD_REQUEST,
            "regions",
        ),
        (
            "k8s-prod",
            json!({"service_id": s3, "plan_id": s3_plan, "parameters": {"bucket_size": 1000}}),
            StatusCode::BAD_REQUEST,
            "schema",
        ),
        (
            "k8s-prod",
            json!({"service_id": s3, "plan_id": s3_plan, "parameters": {"bucket_size": "big"}}),
            StatusCode::BAD_REQUEST,
            "schema",
        ),
    ];
    for (i, (platform, body, status, says)) in cases.into_iter().enumerate() {
        let response = as_platform(&gateway, platform)
            .provision(&format!("d-{i}"), Query::none(), &body)
            .await;
        assert_eq!(response.status, status, "{says}");
        let body = response.body;
        assert!(body["description"].as_str().unwrap().contains(says), "{body}");
        assert!(
            !body["description"].as_str().unwrap().contains("1000"),
            "values are not echoed: {body}"
        );
    }
    assert_eq!(forwarded(&azure) + forwarded(&aws) + forwarded(&gcp), before);
    // Within the schema and the rules it goes through.
    let ok = json!({"service_id": s3, "plan_id": s3_plan, "parameters": {"bucket_size": 10}});
    let response = as_platform(&gateway, "k8s-prod")
        .provision("d-ok", Query::none(), &ok)
        .await;
    assert_eq!(response.status, 201);
}

#[tokio::test]
async fn the_policy_reloads_under_load_without_a_failed_call_and_ignores_a_bad_file() {
    let (azure, aws, gcp) = clouds().await;
    let gateway =
        Arc::new(TestGateway::start_with_files(&yaml(&azure, &aws, &gcp), &[("policy.yaml", POLICY)]).await);
    gateway.ready_catalog().await;
    let (_, prod) = catalog_of(&gateway, "k8s-prod").await;
    let (service, plan) = plan_ids(&prod, "aws.rdsmysql", "dev");
    let status: Value = http()
        .get(gateway.admin_url("/admin/policy"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let first_generation = status["generation"].as_u64().unwrap();

    // Load: catalog reads and provisions, all the time.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (calls, failures) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut workers = Vec::new();
    for w in 0..4 {
        let (gateway, stop, calls, failures) =
            (gateway.clone(), stop.clone(), calls.clone(), failures.clone());
        let (service, plan) = (service.clone(), plan.clone());
        workers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                // Raw requests: a call that gets no answer counts as failed, it does not panic.
                let osb = as_platform(&gateway, "k8s-prod");
                let response = if w % 2 == 0 {
                    osb.request(Method::GET, "/v2/catalog").send().await
                } else {
                    osb.request(Method::PUT, &instance_path(&format!("load-{w}-{i}")))
                        .json(&json!({"service_id": service, "plan_id": plan}))
                        .send()
                        .await
                };
                calls.fetch_add(1, Ordering::Relaxed);
                if !response.is_ok_and(|r| r.status().is_success()) {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }

    // Valid changes (hide GCP from k8s-prod, then show it again), and a broken file in between.
    let hide_gcp = POLICY.replace(
        "  rules:\n",
        "  rules:\n    - {name: prod-no-gcp, platforms: [k8s-prod], brokers: [gcp], effect: hide}\n",
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    gateway.write_file("policy.yaml", &hide_gcp);
    let hidden = eventually("reload hides gcp", Duration::from_secs(10), || async {
        let (etag, catalog) = catalog_of(&gateway, "k8s-prod").await;
        (!plans(&catalog).iter().any(|p| p.starts_with("gcp."))).then_some(etag)
    })
    .await;
    gateway.write_file("policy.yaml", "visibility:\n  default: sometimes\n");
    eventually("the bad file is rejected", Duration::from_secs(10), || async {
        let status: Value = http()
            .get(gateway.admin_url("/admin/policy"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        status["last_error"].is_array().then_some(())
    })
    .await;
    let (etag, catalog) = catalog_of(&gateway, "k8s-prod").await;
    assert_eq!(etag, hidden, "an invalid file changes nothing");
    assert!(!plans(&catalog).iter().any(|p| p.starts_with("gcp.")));
    let reload = http()
        .post(gateway.admin_url("/admin/policy/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status(), 422);
    assert!(
        reload.json::<Value>().await.unwrap()["problems"][0]
            .as_str()
            .unwrap()
            .contains("visibility.default")
    );
    gateway.write_file("policy.yaml", POLICY);
    eventually("gcp visible again", Duration::from_secs(10), || async {
        let (_, catalog) = catalog_of(&gateway, "k8s-prod").await;
        plans(&catalog)
            .iter()
            .any(|p| p.starts_with("gcp."))
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    let status: Value = http()
        .get(gateway.admin_url("/admin/policy"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        status["generation"].as_u64(),
        Some(first_generation + 2),
        "two good reloads: {status}"
    );
    assert_eq!(
        status["last_error"],
        Value::Null,
        "a good reload clears the error"
    );
    assert!(status["reloads_failed"].as_u64() >= Some(1));
    assert!(calls.load(Ordering::Relaxed) > 20, "the load ran");
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "no call failed during reloads"
    );
}

#[tokio::test]
async fn explain_from_the_command_line_shows_failover() {
    let (azure, aws, gcp) = clouds().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), POLICY).unwrap();
    std::fs::write(dir.path().join("gateway.yaml"), yaml(&azure, &aws, &gcp)).unwrap();
    let gateway = TestGateway::start_with_files(&yaml(&azure, &aws, &gcp), &[("policy.yaml", POLICY)]).await;
    let (_, prod) = {
        gateway.ready_catalog().await;
        catalog_of(&gateway, "k8s-prod").await
    };
    let (mysql, small) = plan_ids(&prod, "mysql", "small");
    std::fs::write(
        dir.path().join("request.json"),
        serde_json::to_vec(&json!({"operation": "provision", "instance_id": "i-1", "body": {
            "service_id": mysql, "plan_id": small, "context": {"platform": "kubernetes", "namespace": "team-a"}}}))
        .unwrap(),
    )
    .unwrap();
    let run = |unhealthy: &[&str]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_osb-gateway"));
        command.args([
            "explain",
            "--config",
            dir.path().join("gateway.yaml").to_str().unwrap(),
            "--platform",
            "k8s-prod",
        ]);
        command.args(["--request", dir.path().join("request.json").to_str().unwrap()]);
        for broker in unhealthy {
            command.args(["--unhealthy", broker]);
        }
        command.env("RUST_LOG", "off").output().unwrap()
    };
    let output = run(&[]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        (
            report["decision"]["broker"].as_str(),
            report["decision"]["upstream_plan_id"].as_str()
        ),
        (Some("azure"), Some("az-basic"))
    );
    assert_eq!(report["decision"]["parameters_changed"], json!(["encrypted"]));
    let output = run(&["azure"]);
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["decision"]["broker"], "gcp");
    let output = run(&["azure", "gcp"]);
    assert_eq!(output.status.code(), Some(3));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        (
            report["refusal"]["status"].as_u64(),
            report["refusal"]["error"].as_str()
        ),
        (Some(503), Some("PlacementUnavailable"))
    );
}
