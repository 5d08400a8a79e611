//! `osb-gateway demo` as a newcomer meets it: the commands it prints (the tools on the
//! configuration it writes) and the README's "Try it" commands all work against it.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// The fenced `sh` block under the README heading `heading`.
fn readme_block(heading: &str) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let section = readme
        .split(&format!("\n## {heading}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("no section {heading}"));
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
        .arg(dir.path().join("store.redb"))
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
    demo.kill().await.unwrap();
}
