//! `osb-gateway demo`: the gateway on the embedded store in front of three built-in demo brokers
//! serving the real catalogs of OSBA (Azure), the AWS Service Broker and the GCP Service Broker.
//!
//! The brokers and their catalogs are the `osb-demo` crate ([`DemoBroker`], [`DEMO_CATALOGS`]),
//! here answering asynchronously so that the demo shows polled operations. This module, the
//! subcommand's runner, is compiled only with the gateway's `demo` feature (on by default); a
//! build without it (`--no-default-features`, the production image) has neither.
//!
//! The demo writes a ready configuration beside its store (`gateway.yaml`: the addresses it
//! listens on, its platform and its brokers with their credentials, mode 0600) and an example
//! request for `explain` (`provision-s3.json`), and prints the commands that use them: the tools a
//! platform team runs (`check-config --fetch`, `catalog`, `explain`, `admin`) work on the demo as
//! they would on a real gateway. The brokers live only as long as the demo runs.
//!
//! # Layout
//! - this file: [`run`], [`DemoArgs`] and the platform credentials the demo prints.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use bytes::Bytes;
use config::FileFormat;
use osb_demo::{DEMO_CATALOGS, DemoBroker, demo_behaviour};

use crate::{ApiError, Gateway, Listeners, shutdown_signal};

/// Platform credentials the demo prints.
pub const DEMO_USER: &str = "demo";
pub const DEMO_PASSWORD: &str = "demo";

/// `osb-gateway demo` options.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Platform-facing OSB address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Admin address (/healthz, /readyz, /admin/brokers).
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub admin_listen: SocketAddr,
    /// Embedded store folder. Default: osb-gateway-demo/store in the system's temp folder.
    #[arg(long)]
    pub store: Option<PathBuf>,
}

/// Runs the demo until Ctrl-C.
///
/// # Errors
/// A port is taken or the store cannot be opened.
pub async fn run(args: DemoArgs) -> Result<(), ApiError> {
    let mut brokers = Vec::new();
    for (name, _, catalog) in DEMO_CATALOGS {
        let broker = DemoBroker::start_with(name, Bytes::from_static(catalog), demo_behaviour())
            .await
            .map_err(|e| ApiError::Startup(format!("demo broker {name}: {e}")))?;
        brokers.push(broker);
    }
    let store = args
        .store
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("osb-gateway-demo").join("store"));
    let mut yaml = format!(
        "listen: \"{}\"\nadmin:\n  listen: \"{}\"\nstore:\n  kind: embedded\n  path: {:?}\n\
         platforms:\n  - name: demo\n    username: {DEMO_USER}\n    password: {DEMO_PASSWORD}\n\
         catalog:\n  startup_grace_secs: 10\nshutdown_grace_secs: 5\nbrokers:\n",
        args.listen,
        args.admin_listen,
        store.display().to_string(),
    );
    for broker in &brokers {
        yaml.push_str(&broker.config_entry());
    }
    let settings = osb_config::load_str(
        &yaml,
        FileFormat::Yaml,
        "<demo>",
        &std::env::temp_dir(),
        &HashMap::new(),
    )
    .map_err(|e| ApiError::Startup(e.to_string()))?
    .settings;
    let gateway = Gateway::start(settings.clone()).await?;
    let listeners = Listeners::bind(&settings).map_err(|e| {
        ApiError::Startup(format!(
            "{e} (choose other ports with --listen and --admin-listen)"
        ))
    })?;
    let osb = listeners
        .osb_addr()
        .map_err(|e| ApiError::Startup(e.to_string()))?;
    let admin_addr = listeners.admin_addr();
    let admin = admin_addr.map_or_else(|| "off".to_owned(), |a| a.to_string());
    let dir = store
        .parent()
        .map_or_else(std::env::temp_dir, std::path::Path::to_path_buf);
    let files = write_files(&dir, &yaml, osb, admin_addr, &args)?;

    println!("osb-gateway demo\n");
    println!("  OSB endpoint  http://{osb}   platform \"demo\": user {DEMO_USER}, password {DEMO_PASSWORD}");
    println!("  admin         http://{admin}   /healthz /readyz /admin/brokers /metrics");
    println!("  console       http://{admin}/ui   (open it in a browser)");
    println!("  store         {}", store.display());
    println!(
        "  config        {}   (its brokers live while the demo runs)",
        files.config.display()
    );
    for (broker, (_, title, _)) in brokers.iter().zip(DEMO_CATALOGS) {
        println!(
            "  upstream      {:<6} http://{}   {title}",
            broker.name, broker.addr
        );
    }
    println!("\nTry:");
    println!(
        "  curl -s -u {DEMO_USER}:{DEMO_PASSWORD} -H 'X-Broker-API-Version: 2.17' http://{osb}/v2/catalog \\\n    \
         | python3 -c 'import json,sys; [print(s[\"name\"], s[\"id\"]) for s in json.load(sys.stdin)[\"services\"]]'"
    );
    println!("  curl -s http://{admin}/admin/brokers");
    let config = files.config.display();
    println!("\nThe tools, on the demo's configuration:");
    println!("  osb-gateway check-config --config {config} --fetch");
    println!("  osb-gateway catalog --config {config} | head");
    println!(
        "  osb-gateway explain --config {config} --platform demo --request {}",
        files.request.display()
    );
    println!("  osb-gateway admin --config {config} health");
    println!("\nCtrl-C stops everything.");

    let result = gateway.serve(listeners, shutdown_signal()).await;
    for broker in &brokers {
        broker.stop().await;
    }
    result
}

/// What the demo wrote beside its store.
struct DemoFiles {
    config: PathBuf,
    request: PathBuf,
}

/// Writes `gateway.yaml` (the demo's configuration with the addresses it listens on, readable by
/// its owner only: it holds the brokers' passwords) and `provision-s3.json` (a provision of the
/// AWS S3 service's first plan, for `explain`) into `dir`.
fn write_files(
    dir: &std::path::Path,
    yaml: &str,
    osb: SocketAddr,
    admin: Option<SocketAddr>,
    args: &DemoArgs,
) -> Result<DemoFiles, ApiError> {
    let failed = |what: &str, e: std::io::Error| ApiError::Startup(format!("demo: cannot write {what}: {e}"));
    std::fs::create_dir_all(dir).map_err(|e| failed(&dir.display().to_string(), e))?;
    // The addresses actually bound (a port 0 became a real one).
    let mut text = String::from(
        "# Written by `osb-gateway demo`: the demo's own configuration, with the addresses it listens\n\
         # on and its brokers' credentials. The brokers live only while the demo runs.\n",
    );
    text.push_str(
        &yaml
            .replacen(
                &format!("listen: \"{}\"", args.listen),
                &format!("listen: \"{osb}\""),
                1,
            )
            .replacen(
                &format!("listen: \"{}\"", args.admin_listen),
                &format!("listen: \"{}\"", admin.unwrap_or(args.admin_listen)),
                1,
            ),
    );
    let config = dir.join("gateway.yaml");
    write_private(&config, &text).map_err(|e| failed("gateway.yaml", e))?;
    let request = dir.join("provision-s3.json");
    write_private(&request, &provision_s3()).map_err(|e| failed("provision-s3.json", e))?;
    Ok(DemoFiles { config, request })
}

/// Writes `text` to `path`, readable and writable by its owner only.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}

/// An `explain` request: a provision of the first plan of the AWS catalog's `s3` service, with
/// the ids the gateway publishes for them (the demo's `aws` broker rewrites ids).
fn provision_s3() -> String {
    let aws = DEMO_CATALOGS.iter().find(|(name, _, _)| *name == "aws");
    let catalog: serde_json::Value = aws
        .and_then(|(_, _, catalog)| serde_json::from_slice(catalog).ok())
        .unwrap_or_default();
    let s3 = catalog
        .pointer("/services")
        .and_then(serde_json::Value::as_array)
        .and_then(|services| {
            services
                .iter()
                .find(|s| s.get("name").and_then(|n| n.as_str()) == Some("s3"))
        });
    let id = |value: Option<&serde_json::Value>| {
        let upstream = value.and_then(serde_json::Value::as_str).unwrap_or_default();
        osb_routing::catalog::ids::gateway_id("aws", osb_config::IdMode::Rewrite, upstream)
    };
    let service_id = id(s3.and_then(|s| s.get("id")));
    let plan_id = id(s3.and_then(|s| s.pointer("/plans/0/id")));
    let request = serde_json::json!({
        "operation": "provision",
        "instance_id": "my-bucket",
        "body": {
            "service_id": service_id,
            "plan_id": plan_id,
            "context": {"platform": "kubernetes", "namespace": "team-a"}
        }
    });
    serde_json::to_string_pretty(&request).unwrap_or_default()
}
