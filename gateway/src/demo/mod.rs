//! `osb-gateway demo`: the gateway on the embedded store in front of three built-in demo brokers
//! serving the real catalogs of OSBA (Azure), the AWS Service Broker and the GCP Service Broker.
//!
//! The brokers and their catalogs are the `osb-demo` crate ([`DemoBroker`], [`DEMO_CATALOGS`]),
//! here answering asynchronously so that the demo shows polled operations. This module, the
//! subcommand's runner, is compiled only with the gateway's `demo` feature (on by default); a
//! build without it (`--no-default-features`, the production image) has neither.
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
    /// Embedded store file. Default: osb-gateway-demo/store.redb in the system's temp folder.
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
        .unwrap_or_else(|| std::env::temp_dir().join("osb-gateway-demo").join("store.redb"));
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
    let admin = listeners
        .admin_addr()
        .map_or_else(|| "off".to_owned(), |a| a.to_string());

    println!("osb-gateway demo\n");
    println!("  OSB endpoint  http://{osb}   platform \"demo\": user {DEMO_USER}, password {DEMO_PASSWORD}");
    println!("  admin         http://{admin}   /healthz /readyz /admin/brokers");
    println!("  store         {}", store.display());
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
    println!("\nCtrl-C stops everything.");

    let result = gateway.serve(listeners, shutdown_signal()).await;
    for broker in &brokers {
        broker.stop().await;
    }
    result
}
