//! Build script: records the commit the binary is built from as `OSB_GATEWAY_COMMIT` (for
//! `osb-gateway --version` and `osb_gateway_build_info`). The variable of that name in the build's
//! environment wins (a container build without `.git`); else `git rev-parse`; else `unknown`.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=OSB_GATEWAY_COMMIT");
    // A new commit moves HEAD's log; a checkout moves HEAD.
    for path in ["../.git/HEAD", "../.git/logs/HEAD"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let commit = std::env::var("OSB_GATEWAY_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| {
            let output = Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()?;
            output
                .status
                .success()
                .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
                .filter(|c| !c.is_empty())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=OSB_GATEWAY_COMMIT={commit}");
}
