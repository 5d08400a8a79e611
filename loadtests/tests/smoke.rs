//! Smoke test of the benchmark harness: `osb-loadtests compare` with tiny durations runs every
//! scenario against the stub, nginx, the gateway and the gateway with limits, tracing and per-call
//! metrics off, the registry scale runs, and writes a complete report (Markdown, JSON, charts).
//! It checks that the report is there and that no call failed: never a timing (the numbers of a
//! debug build on a shared CI machine mean nothing).
//!
//! nginx must be installed (`.ci/run` installs Debian's package).

use std::path::Path;
use std::process::Command;

#[test]
fn compare_writes_a_complete_report() {
    let out = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_osb-loadtests"))
        .args([
            "compare",
            "--duration",
            "300ms",
            "--warmup",
            "100ms",
            "--open-duration",
            "300ms",
            "--connections",
            "4",
            "--open-connections",
            "8",
            "--scale",
            "500,1000",
            "--seed-instances",
            "200",
            "--timeout",
            "30s",
        ])
        .arg("--out")
        .arg(out.path())
        .arg("--tmp")
        .arg(tmp.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "compare failed:\n{stderr}");

    for file in [
        "report.md",
        "report.json",
        "throughput.png",
        "latency.png",
        "latency-open.png",
        "scale.png",
    ] {
        let path = out.path().join(file);
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(len > 0, "{file} is missing or empty; stderr:\n{stderr}");
    }
    let png = std::fs::read(out.path().join("throughput.png")).unwrap();
    assert_eq!(png.get(..4), Some(&b"\x89PNG"[..]));

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("report.json")).unwrap()).unwrap();
    let closed = report["closed"].as_array().unwrap();
    // 4 scenarios × (direct, nginx, gateway, gateway-bare), and catalog-gzip without direct.
    assert_eq!(closed.len(), 19, "{report:#}");
    assert!(
        closed
            .iter()
            .any(|run| run["stats"]["scenario"] == "catalog-gzip" && run["target"] == "nginx"),
        "{report:#}"
    );
    for run in closed.iter().chain(report["open"].as_array().unwrap()) {
        let calls = &run["stats"]["calls"];
        assert!(calls["count"].as_u64().unwrap() > 0, "no call succeeded: {run:#}");
        assert_eq!(calls["errors"].as_u64(), Some(0), "{run:#}");
        assert_eq!(run["stats"]["units"]["errors"].as_u64(), Some(0), "{run:#}");
    }
    assert_eq!(report["scale"].as_array().unwrap().len(), 2);
    // Every lifecycle cleaned up after itself: the stub holds no binding, the registry the seed
    // and the instances of the provision scenario (which keeps what it provisions), none pending.
    let stub = report["stub_at_exit"].as_str().unwrap();
    assert!(stub.contains(" bindings=0"), "{stub}");
    let provisioned = closed
        .iter()
        .find(|run| run["stats"]["scenario"] == "provision" && run["target"] == "gateway")
        .map(|run| run["stats"]["calls"]["count"].as_u64().unwrap())
        .unwrap();
    let instances = report["gateway"]["registry_after"]["instances"].as_u64().unwrap();
    assert!(
        instances >= 200 + provisioned,
        "{instances} instances, {provisioned} provisioned"
    );
    assert_eq!(report["gateway"]["registry_after"]["pending"].as_u64(), Some(0));

    let markdown = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    for section in [
        "## Goals",
        "## Saturation",
        "## Ratios",
        "## Latency at half",
        "## Registry scale",
    ] {
        assert!(markdown.contains(section), "report.md lacks {section}");
    }
    assert!(Path::new(&out.path().join("report.md")).exists());
}
