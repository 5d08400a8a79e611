//! `osb-gateway check-config`: one line per problem naming file and key, exit 64; exit 0 when fine.

use std::process::Output;

use serde_json::json;

use crate::support::fake_broker::FakeBroker;
use crate::support::fixture;

fn check(dir: &std::path::Path, yaml: &str, extra: &[&str]) -> Output {
    let path = dir.join("gateway.yaml");
    std::fs::write(&path, yaml).unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_osb-gateway"))
        .args(["check-config", "--config", path.to_str().unwrap()])
        .args(extra)
        .env("RUST_LOG", "off")
        .output()
        .unwrap()
}

#[test]
fn every_mistake_is_one_line_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = r#"
listen: "localhost:80"
platforms:
  - name: k8s
    username: k8s
    password_file: secrets/k8s-password
brokers:
  - name: azure
    url: "azure-broker:8080"
    colour: blue
  - name: aws
    url: http://10.0.0.5:3199
    ids: keep
  - name: aws
    url: http://10.0.0.5:3199/
    namespace: aws2
    ids: keep
"#;
    let output = check(dir.path(), yaml, &[]);
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8(output.stderr).unwrap();
    let file = dir.path().join("gateway.yaml").display().to_string();
    let lines: Vec<&str> = stderr.lines().collect();
    let expected = [
        "brokers[0].colour: unknown key",
        "listen: expected a listen address like 127.0.0.1:8080, got \"localhost:80\"",
        "platforms[0].password_file: cannot read secret file",
        "brokers[0].url: expected an absolute http(s) URL, got \"azure-broker:8080\"",
        "brokers[2].name: duplicate broker name \"aws\"",
        "brokers[2].ids: kept ids collide: brokers[1] keeps the ids of the same URL",
    ];
    assert_eq!(lines.len(), expected.len(), "{stderr}");
    for (line, want) in lines.iter().zip(expected) {
        assert!(
            line.starts_with(&format!("{file}: {want}")),
            "got {line:?}, want {want:?}"
        );
    }
}

#[test]
fn a_good_file_passes() {
    let dir = tempfile::tempdir().unwrap();
    let output = check(
        dir.path(),
        "platforms:\n  - name: k8s\n    bearer_token: t\nbrokers:\n  - name: azure\n    url: http://127.0.0.1:1\n",
        &[],
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn with_fetch_it_reports_names_platforms_will_reject() {
    let long_name = "a-service-name-that-is-quite-long-enough-to-break-the-limit";
    let broker = FakeBroker::with_catalog(
        serde_json::to_vec(&json!({"services": [
            {"name": long_name, "id": "s1", "description": "d", "bindable": true, "plans": [{"name": "p", "id": "p1", "description": "d"}]}
        ]}))
        .unwrap(),
    )
    .await;
    let same = FakeBroker::with_catalog(fixture("osbapi-spec-example-catalog.json")).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "platforms:\n  - name: k8s\n    bearer_token: t\nbrokers:\n  - name: inhouse\n    url: {}\n  - name: one\n    url: {}\n    ids: keep\n  - name: two\n    url: {}/\n    ids: keep\n    namespace: two\n",
        broker.url(),
        same.url(),
        // Another path to the same broker: only fetching can tell the kept ids collide.
        same.url().replace("127.0.0.1", "localhost"),
    );
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, &yaml).unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_osb-gateway"))
        .args(["check-config", "--fetch", "--config", path.to_str().unwrap()])
        .env("RUST_LOG", "off")
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8(output.stderr).unwrap();
    let file = path.display().to_string();
    assert!(
        stderr.contains(&format!(
            "{file}: brokers[0].rename.{long_name}: service name \"inhouse.{long_name}\" is 67 characters"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{file}: brokers[2]: service \"fake-service\": id ")),
        "{stderr}"
    );
    assert!(
        stderr.contains("is already published by broker \"one\""),
        "{stderr}"
    );
}

/// Configurations that could never work: two platforms with one bearer token, a user name HTTP
/// Basic cannot carry, policy rules naming platforms or brokers that are not configured.
#[test]
fn configurations_that_could_never_work_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("policy.yaml"),
        r#"
visibility:
  rules:
    - {name: staging-sees-aws, platforms: [k8s-staging], brokers: [aws], effect: show}
    - {name: any-k8s, platforms: ["k8s-*"], effect: show}
parameters:
  - {name: oracle-defaults, brokers: [oracle], defaults: {a: 1}}
deny:
  - {name: no-cf, platforms: [cloudfoundry], reason: typo}
limits:
  platforms:
    - {name: k8s-stagin, calls_per_sec: 1}
  brokers:
    - {name: "orac*", calls_per_sec: 1}
"#,
    )
    .unwrap();
    let yaml = r#"
admin:
  listen: "127.0.0.1:0"
  username: "ops:admin"
  password: pw
platforms:
  - name: k8s-prod
    bearer_token: shared-token-1
  - name: cf
    bearer_token: shared-token-1
  - name: k8s-dev
    username: "dev:team"
    password: pw
brokers:
  - name: aws
    url: http://127.0.0.1:1
    username: "aws:broker"
    password: pw
policy_file: policy.yaml
"#;
    let output = check(dir.path(), yaml, &[]);
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        !stderr.contains("shared-token-1"),
        "a token was printed: {stderr}"
    );
    let config = dir.path().join("gateway.yaml").display().to_string();
    let policy = dir.path().join("policy.yaml").display().to_string();
    let colon = "must not contain ':' (HTTP Basic separates the user name from the password with it)";
    let expected = [
        format!("{config}: admin.username: {colon}"),
        format!(
            "{config}: platforms[1].bearer_token: the same token as platform \"k8s-prod\": the gateway could not tell the two apart"
        ),
        format!("{config}: platforms[2].username: {colon}"),
        format!("{config}: brokers[0].username: {colon}"),
    ];
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines, expected, "{stderr}");

    // With the credentials fixed, the policy's names are checked against the configuration.
    let fixed = yaml
        .replace("\"ops:admin\"", "ops")
        .replace(
            "shared-token-1\n  - name: k8s-dev",
            "other-token\n  - name: k8s-dev",
        )
        .replace("\"dev:team\"", "dev")
        .replace("\"aws:broker\"", "broker");
    let output = check(dir.path(), &fixed, &[]);
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8(output.stderr).unwrap();
    let expected = [
        format!("{policy}: visibility.rules[0].platforms[0]: \"k8s-staging\" matches no configured platform"),
        format!("{policy}: parameters[0].brokers[0]: \"oracle\" matches no configured broker"),
        format!("{policy}: deny[0].platforms[0]: \"cloudfoundry\" matches no configured platform"),
        format!("{policy}: limits.platforms[0].name: \"k8s-stagin\" matches no configured platform"),
        format!("{policy}: limits.brokers[0].name: \"orac*\" matches no configured broker"),
    ];
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines, expected, "{stderr}");
}

/// With `--fetch`, rules naming services or plans that no catalog has are refused.
#[tokio::test]
async fn with_fetch_policy_rules_must_name_services_and_plans_that_exist() {
    let broker = FakeBroker::with_catalog(crate::support::small_catalog::small_catalog()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("policy.yaml"),
        "visibility:\n  rules:\n    - {name: db, services: [fb.db], plans: [small, \"lar*\"], effect: show}\n    \
         - {name: typo, services: [fb.dbb], plans: [medium], effect: hide}\n",
    )
    .unwrap();
    let yaml = format!(
        "platforms:\n  - name: k8s\n    bearer_token: t\nbrokers:\n  - name: fb\n    url: {}\npolicy_file: policy.yaml\n",
        broker.url()
    );
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, &yaml).unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_osb-gateway"))
        .args(["check-config", "--fetch", "--config", path.to_str().unwrap()])
        .env("RUST_LOG", "off")
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8(output.stderr).unwrap();
    let policy = dir.path().join("policy.yaml").display().to_string();
    let expected = [
        format!("{policy}: visibility.rules[1].services[0]: \"fb.dbb\" matches no service in the catalogs"),
        format!("{policy}: visibility.rules[1].plans[0]: \"medium\" matches no plan in the catalogs"),
    ];
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines, expected, "{stderr}");
}

/// The shipped example configuration and policy pass `check-config --fetch` against the demo
/// brokers (the real OSBA, AWS and GCP catalogs), given only the secrets and broker addresses.
#[tokio::test]
async fn the_shipped_example_config_and_policy_pass_against_the_demo_catalogs() {
    use osb_demo::DemoBroker;
    let start = |name: &'static str, file: &'static str| async move {
        DemoBroker::start(name, bytes::Bytes::from(fixture(file)))
            .await
            .unwrap()
    };
    let azure = start("azure", "azure-osba-catalog.json").await;
    let aws = start("aws", "aws-servicebroker-catalog.json").await;
    let gcp = start("gcp", "gcp-service-broker-catalog.json").await;
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/examples/gateway.yaml");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_osb-gateway"))
        .args(["check-config", "--fetch", "--config", example.to_str().unwrap()])
        .env("RUST_LOG", "off")
        .envs([
            ("OSB_GATEWAY_ADMIN_PASSWORD", "admin-pw"),
            ("K8S_PROD_PASSWORD", "prod-pw"),
            ("K8S_DEV_PASSWORD", "dev-pw"),
            ("CF_TOKEN", "cf-token"),
        ])
        .envs([
            ("OSB_GATEWAY__BROKERS__0__URL", format!("http://{}", azure.addr())),
            ("OSB_GATEWAY__BROKERS__0__USERNAME", azure.username.clone()),
            ("AZURE_BROKER_PASSWORD", azure.password.clone()),
            ("OSB_GATEWAY__BROKERS__1__URL", format!("http://{}", aws.addr())),
            ("OSB_GATEWAY__BROKERS__1__USERNAME", aws.username.clone()),
            ("AWS_BROKER_PASSWORD", aws.password.clone()),
            ("OSB_GATEWAY__BROKERS__2__URL", format!("http://{}", gcp.addr())),
            ("GCP_BROKER_TOKEN", gcp.password.clone()),
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn completions_and_the_manual_page_are_generated_from_the_command_line() {
    let exe = env!("CARGO_BIN_EXE_osb-gateway");
    for shell in ["bash", "zsh", "fish"] {
        let out = std::process::Command::new(exe)
            .args(["completions", shell])
            .output()
            .unwrap();
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && script.contains("check-config"),
            "{shell}: {script}"
        );
    }
    let out = std::process::Command::new(exe).arg("man").output().unwrap();
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{page}");
    assert!(
        page.contains(".TH osb-gateway 1") && page.contains("check\\-config"),
        "{page}"
    );
    let out = std::process::Command::new(exe)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "an unknown shell is a usage error");
}
