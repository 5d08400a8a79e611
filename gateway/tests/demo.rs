//! `osb-gateway demo` as a newcomer meets it: the commands it prints (the tools on the
//! configuration it writes), the README's "Try it" commands and its "Operations" commands all work
//! against it. The Operations commands are read from the README (every `gwa …` and `osb-gateway …`
//! line of the section's blocks) and run with `gwa` as `osb-gateway admin --config` the demo's file,
//! the README's example names replaced by the demo's (`new-gateway.yaml` is the demo's own file: a
//! dry-run diff over the three real catalogs). Those that need names only a real registry has
//! (adopt, abandon, confirm) or a second store (import, migrate) are listed and left out; `store
//! export` runs once the demo is stopped.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// The README section under `## heading`.
fn readme_section(heading: &str) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let section = readme
        .split(&format!("\n## {heading}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("no section {heading}"));
    section.split("\n## ").next().unwrap().to_owned()
}

/// The commands of every `sh` block of `section`: continuation lines joined, comments cut.
fn commands(section: &str) -> Vec<String> {
    let mut commands = Vec::new();
    for block in section.split("```sh\n").skip(1) {
        let block = block.split("\n```").next().unwrap();
        let mut pending = String::new();
        for line in block.lines() {
            let line = line.split("  #").next().unwrap().trim_end();
            if line.trim_start().starts_with('#') || line.trim().is_empty() {
                continue;
            }
            if let Some(head) = line.strip_suffix('\\') {
                pending.push_str(head.trim_start());
                continue;
            }
            pending.push_str(line.trim_start());
            commands.push(std::mem::take(&mut pending));
        }
    }
    commands
}

/// Operations commands left out: they need names only a real registry has, or a second store.
const NOT_ON_THE_DEMO: &[&str] = &[
    "gwa catalog confirm PLAN_OR_SERVICE_ID",
    "gwa adopt ",
    "gwa abandon ",
    "osb-gateway store import",
    "osb-gateway migrate",
    "OSB_GATEWAY_MIGRATE_URL=",
    "alias gwa=",
];

/// The first fenced `sh` block under the README heading `heading`.
fn readme_block(heading: &str) -> String {
    let section = readme_section(heading);
    let block = section.split("```sh\n").nth(1).unwrap();
    block.split("\n```").next().unwrap().to_owned()
}

#[tokio::test]
async fn the_demos_printed_commands_and_the_readmes_try_it_work() {
    let dir = tempfile::tempdir().unwrap();
    let exe = env!("CARGO_BIN_EXE_osb-gateway");
    let mut demo = Command::new(exe)
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--store",
        ])
        .arg(dir.path().join("store"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    while let Some(line) = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap()
    {
        if line.starts_with("Ctrl-C") {
            break;
        }
        printed.push(line);
    }
    let address = |label: &str| {
        printed
            .iter()
            .find_map(|l| l.trim_start().strip_prefix(label))
            .and_then(|rest| rest.trim_start().strip_prefix("http://"))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no {label} in {printed:#?}"))
            .to_owned()
    };
    let (osb, admin) = (address("OSB endpoint"), address("admin"));
    let ready = format!("http://{admin}/readyz");
    for _ in 0..100 {
        if reqwest::get(&ready).await.is_ok_and(|r| r.status() == 200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The tools, as printed (every `osb-gateway …` line), exit 0.
    let tools: Vec<&String> = printed
        .iter()
        .filter(|l| l.starts_with("  osb-gateway "))
        .collect();
    assert_eq!(tools.len(), 4, "{printed:#?}");
    for command in tools {
        let command = command.trim().replacen("osb-gateway", exe, 1);
        let output = Command::new("bash")
            .arg("-c")
            .arg(&command)
            .output()
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "{command}: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    // The README's "Try it", with the demo's ports.
    let script = readme_block("Try it")
        .replace("127.0.0.1:8080", &osb)
        .replace("127.0.0.1:9090", &admin);
    let output = Command::new("bash")
        .arg("-c")
        .arg(format!("set -e -o pipefail\n{script}"))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for expected in [
        "aws.s3 ",
        "\n304\n",
        "\"fresh\"",
        "\"operation\"",
        "\"instances\"",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected:?} in the output of Try it:\n{stdout}"
        );
    }

    // The README's "Operations", on the demo's configuration, once my-bucket is provisioned and
    // my-app bound (Try it binds before the asynchronous provision is done: the platform retries).
    bind_my_app(&osb).await;
    let config = printed
        .iter()
        .find_map(|l| l.trim().strip_prefix("osb-gateway admin --config "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no admin command in {printed:#?}"))
        .to_owned();
    let all = commands(&readme_section("Operations"));
    assert!(all.len() > 20, "{all:#?}");
    let (mut ran, mut after_stop) = (0, Vec::new());
    for command in &all {
        if NOT_ON_THE_DEMO.iter().any(|skip| command.starts_with(skip)) {
            continue;
        }
        let command = command
            .replace("osb-gateway ", &format!("{exe} "))
            .replace("gwa ", &format!("{exe} admin --config {config} "))
            .replace("[BROKER]", "")
            .replace("new-gateway.yaml", &config)
            .replace("--config gateway.yaml", &format!("--config {config}"));
        if command.contains(" store export ") {
            after_stop.push(command);
            continue;
        }
        run_in(dir.path(), &command).await;
        ran += 1;
    }
    assert!(ran >= 15, "{ran} of {} Operations commands ran", all.len());
    let diff = run_in(
        dir.path(),
        &format!("{exe} admin --config {config} --json catalog diff --config {config}"),
    )
    .await;
    assert!(diff.contains("\"changes\""), "{diff}");
    assert!(
        std::fs::read_dir(dir.path()).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("registry-")),
        "gwa backup wrote no file"
    );
    demo.kill().await.unwrap();
    demo.wait().await.unwrap();
    assert_eq!(after_stop.len(), 1, "{after_stop:?}");
    for command in after_stop {
        run_in(dir.path(), &command).await;
    }
}

/// Waits for Try it's `my-bucket` to be provisioned, then binds `my-app` to it.
async fn bind_my_app(osb: &str) {
    let http = reqwest::Client::new();
    let get = |path: &str| {
        http.get(format!("http://{osb}{path}"))
            .basic_auth("demo", Some("demo"))
            .header("X-Broker-API-Version", "2.17")
    };
    for _ in 0..100 {
        let state: serde_json::Value = get("/v2/service_instances/my-bucket/last_operation")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or_default();
        if state["state"] == "succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let catalog: serde_json::Value = get("/v2/catalog").send().await.unwrap().json().await.unwrap();
    let s3 = catalog["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "aws.s3")
        .unwrap();
    let bound = http
        .put(format!(
            "http://{osb}/v2/service_instances/my-bucket/service_bindings/my-app"
        ))
        .basic_auth("demo", Some("demo"))
        .header("X-Broker-API-Version", "2.17")
        .json(&serde_json::json!({"service_id": s3["id"], "plan_id": s3["plans"][0]["id"]}))
        .send()
        .await
        .unwrap();
    assert!(bound.status().is_success(), "bind my-app: {}", bound.status());
}

/// Runs `command` with bash in `dir`; fails the test unless it exits 0; its stdout.
async fn run_in(dir: &std::path::Path, command: &str) -> String {
    let output = Command::new("bash")
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{command}:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}
