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
