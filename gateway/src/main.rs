//! The `osb-gateway` command: `serve`, `check-config`, `catalog`, `explain`, `demo`, and `admin …`
//! (the operators' client of the admin API, see `ops::cli`).
//!
//! Exit status: 0 on success, 64 (EX_USAGE) for a configuration with problems (each printed as
//! `FILE: key.path: message`), 1 for a failure at run time.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
#[cfg(feature = "demo")]
use osb_gateway::demo;
use osb_gateway::ops::{check, cli as admin_cli};
use osb_gateway::telemetry::{self, LogFormat};
use osb_gateway::{Gateway, Listeners, shutdown_signal};

/// mimalloc gives freed memory back to the system: a catalog that shrinks, or a burst of calls
/// that ends, leaves the process smaller (glibc's allocator kept such memory for good).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status for a configuration with problems (sysexits EX_USAGE).
const EX_CONFIG: u8 = 64;

#[derive(Debug, Parser)]
#[command(
    name = "osb-gateway",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("OSB_GATEWAY_COMMIT"), ")"),
    about = "One Open Service Broker endpoint in front of many clouds."
)]
struct Cli {
    /// Log line format (stderr). `RUST_LOG` sets the level.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// Configuration file (YAML or TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a configuration file; print every problem, exit 64 if there are any.
    CheckConfig {
        #[arg(long, short)]
        config: PathBuf,
        /// Also fetch every broker's catalog and check the merged names and ids.
        #[arg(long)]
        fetch: bool,
    },
    /// Fetch every broker's catalog once and print the merged catalog (JSON) to stdout.
    Catalog {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Dry-run a request through the policy: where it would go, what it would send, or why not.
    /// Exit 0 when allowed, 3 when refused.
    Explain {
        #[arg(long, short)]
        config: PathBuf,
        /// The calling platform.
        #[arg(long)]
        platform: String,
        /// A JSON file: {"operation": "provision", "instance_id": "…", "body": {…}}.
        #[arg(long)]
        request: PathBuf,
        /// Treat this broker as down (repeatable), to see failover.
        #[arg(long)]
        unhealthy: Vec<String>,
    },
    /// Back up, restore or move the registry: the configured store as a file of JSON lines
    /// (instances, bindings, stored catalogs, the audit log). An embedded store must not be in use.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Move the registry from one store kind to the other (embedded → PostgreSQL, or back): every
    /// instance, binding, catalog and audit record, counts compared after. Stop the gateway first
    /// (the embedded file is locked while it runs); the target must be empty.
    Migrate(MigrateArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout, e.g.
    /// `osb-gateway completions bash > /etc/bash_completion.d/osb-gateway`.
    Completions { shell: clap_complete::Shell },
    /// Print the manual page (roff) to stdout, e.g. `osb-gateway man | man -l -`.
    Man,
    /// Run the gateway with three built-in demo brokers serving the real OSBA, AWS and GCP catalogs.
    #[cfg(feature = "demo")]
    Demo(demo::DemoArgs),
    /// Built without the `demo` feature: says that this build has no demo.
    #[cfg(not(feature = "demo"))]
    #[command(hide = true, disable_help_flag = true)]
    Demo {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ignored: Vec<String>,
    },
    /// Operate a running gateway through its admin API: health, inventory, catalog diff and
    /// guard, adopt, abandon, audit log.
    Admin(Box<admin_cli::AdminArgs>),
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Write every record of the configured store to a file (stdout without --out).
    Export {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Read an export into the configured store, which must hold no instance or binding yet.
    Import {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long = "in")]
        input: PathBuf,
    },
}

/// The two store kinds, for `migrate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StoreKind {
    Embedded,
    Postgres,
}

#[derive(Debug, clap::Args)]
struct MigrateArgs {
    /// The gateway's configuration: its brokers (whose catalogs move), and the store of one side.
    #[arg(long, short)]
    config: PathBuf,
    #[arg(long, value_enum)]
    from: StoreKind,
    #[arg(long, value_enum)]
    to: StoreKind,
    /// The embedded store file (default: the configuration's, when its store is embedded).
    #[arg(long)]
    path: Option<PathBuf>,
    /// The PostgreSQL URL (default: $OSB_GATEWAY_MIGRATE_URL, else the configuration's, when its
    /// store is postgres). Prefer the variable: a command line is visible to other users.
    #[arg(long)]
    url: Option<String>,
}

fn main() -> ExitCode {
    osb_gateway::process::small_pages();
    let cli = Cli::parse();
    // `serve` sets up logging once its configuration (trace export) is read.
    let _telemetry = match cli.command {
        Command::Serve { .. } => None,
        _ => Some(telemetry::init(cli.log_format, None)),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("osb-gateway: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let env: HashMap<String, String> = std::env::vars().collect();
    runtime.block_on(async move {
        match cli.command {
            Command::Serve { config } => run_serve(&config, cli.log_format, &env).await,
            Command::CheckConfig { config, fetch } => run_check(&config, fetch, &env).await,
            Command::Catalog { config } => run_catalog(&config, &env).await,
            Command::Explain {
                config,
                platform,
                request,
                unhealthy,
            } => run_explain(&config, &platform, &request, &unhealthy, &env).await,
            Command::Admin(args) => admin_cli::run(*args, &env).await,
            Command::Store { command } => run_store(command, &env).await,
            Command::Migrate(args) => run_migrate(&args, &env).await,
            Command::Completions { shell } => {
                let mut command = <Cli as clap::CommandFactory>::command();
                clap_complete::generate(shell, &mut command, "osb-gateway", &mut std::io::stdout());
                ExitCode::SUCCESS
            }
            Command::Man => {
                let command = <Cli as clap::CommandFactory>::command();
                match clap_mangen::Man::new(command).render(&mut std::io::stdout()) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("osb-gateway man: {e}");
                        ExitCode::FAILURE
                    }
                }
            }
            #[cfg(feature = "demo")]
            Command::Demo(args) => match demo::run(args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("osb-gateway demo: {e}");
                    ExitCode::FAILURE
                }
            },
            #[cfg(not(feature = "demo"))]
            Command::Demo { .. } => {
                eprintln!(
                    "osb-gateway demo: this build has no demo (built without the `demo` feature); \
                     from a clone, `cargo run --release -p osb-gateway -- demo` runs it"
                );
                ExitCode::FAILURE
            }
        }
    })
}

async fn run_serve(
    config: &std::path::Path,
    log_format: LogFormat,
    env: &HashMap<String, String>,
) -> ExitCode {
    // Validate, then bind: a bad file never opens a port.
    let loaded = match osb_config::load_file(config, env) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    let _telemetry = telemetry::init(log_format, Some(&loaded.settings.telemetry));
    for warning in &loaded.warnings {
        tracing::warn!(warning = %warning, "Configuration warning.");
    }
    if let Some(path) = &loaded.settings.policy_file {
        if let Err(problems) = osb_gateway::ops::policy_file::load(path, &loaded.settings) {
            for problem in problems {
                eprintln!("{problem}");
            }
            return ExitCode::from(EX_CONFIG);
        }
    }
    // Open and recover the store before binding: a gateway that says it listens can serve.
    let listen = (
        loaded.settings.listen,
        loaded.settings.admin.as_ref().map(|a| a.listen),
    );
    let gateway = match Gateway::start(loaded.settings).await {
        Ok(gateway) => gateway,
        Err(e) => {
            eprintln!("osb-gateway: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listeners = match Listeners::bind_addrs(listen.0, listen.1) {
        Ok(listeners) => listeners,
        Err(e) => {
            eprintln!("osb-gateway: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Ok(addr) = listeners.osb_addr() {
        // Lines on stdout that scripts (and tests) can wait for. A reader that stopped reading
        // (a closed pipe) must not stop the gateway, hence no `println!`.
        let mut stdout = std::io::stdout();
        let _ = writeln!(stdout, "osb-gateway listening on http://{addr}");
        if let Some(admin) = listeners.admin_addr() {
            let _ = writeln!(stdout, "osb-gateway admin on http://{admin}");
        }
        let _ = stdout.flush();
    }
    match gateway.serve(listeners, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("osb-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_store(command: StoreCommand, env: &HashMap<String, String>) -> ExitCode {
    use osb_gateway::ops::store_file;
    let config = match &command {
        StoreCommand::Export { config, .. } | StoreCommand::Import { config, .. } => config.clone(),
    };
    let settings = match osb_config::load_file(&config, env) {
        Ok(loaded) => loaded.settings,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    let store = match osb_routing::store::open(&settings.store).await {
        Ok(store) => store,
        Err(e) => {
            eprintln!("osb-gateway store: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match command {
        StoreCommand::Export { out, .. } => {
            let kind = match &settings.store {
                osb_config::StoreSettings::Embedded { .. } => "embedded",
                osb_config::StoreSettings::Postgres { .. } => "postgres",
            };
            let source = format!("{} ({kind})", config.display());
            let broker_names: Vec<String> = settings.brokers.iter().map(|b| b.name.clone()).collect();
            match out {
                Some(path) => match std::fs::File::create(&path) {
                    Ok(file) => {
                        let mut out = std::io::BufWriter::new(file);
                        store_file::export(store.as_ref(), &broker_names, &source, &mut out).await
                    }
                    Err(e) => Err(format!("{}: {e}", path.display())),
                },
                None => {
                    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                    store_file::export(store.as_ref(), &broker_names, &source, &mut out).await
                }
            }
            .map(|counts| format!("exported {counts}"))
        }
        StoreCommand::Import { input, .. } => match std::fs::File::open(&input) {
            Ok(file) => store_file::import(store.as_ref(), &mut std::io::BufReader::new(file))
                .await
                .map(|counts| format!("imported {counts}")),
            Err(e) => Err(format!("{}: {e}", input.display())),
        },
    };
    store.quiesce().await;
    match result {
        Ok(summary) => {
            eprintln!("osb-gateway store: {summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("osb-gateway store: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_migrate(args: &MigrateArgs, env: &HashMap<String, String>) -> ExitCode {
    use osb_config::StoreSettings;
    let settings = match osb_config::load_file(&args.config, env) {
        Ok(loaded) => loaded.settings,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    if args.from == args.to {
        eprintln!("osb-gateway migrate: --from and --to name the same kind of store");
        return ExitCode::from(EX_CONFIG);
    }
    let side = |kind: StoreKind| -> Result<StoreSettings, String> {
        match (kind, &settings.store) {
            (StoreKind::Embedded, configured) => args
                .path
                .clone()
                .or(match configured {
                    StoreSettings::Embedded { path } => Some(path.clone()),
                    StoreSettings::Postgres { .. } => None,
                })
                .map(|path| StoreSettings::Embedded { path })
                .ok_or_else(|| "give the embedded store file with --path".to_owned()),
            (StoreKind::Postgres, configured) => args
                .url
                .clone()
                .or_else(|| env.get("OSB_GATEWAY_MIGRATE_URL").cloned())
                .or(match configured {
                    StoreSettings::Postgres { url } => Some(url.expose().to_owned()),
                    StoreSettings::Embedded { .. } => None,
                })
                .map(|url| StoreSettings::Postgres {
                    url: osb_config::Secret::new(url),
                })
                .ok_or_else(|| "give the PostgreSQL URL with $OSB_GATEWAY_MIGRATE_URL or --url".to_owned()),
        }
    };
    let (from, to) = match (side(args.from), side(args.to)) {
        (Ok(from), Ok(to)) => (from, to),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("osb-gateway migrate: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    let open = |settings: StoreSettings, what: &'static str| async move {
        osb_routing::store::open(&settings)
            .await
            .map_err(|e| format!("{what}: {e}"))
    };
    let result = async {
        let source = open(from, "the source store").await?;
        let target = open(to, "the target store").await?;
        let brokers: Vec<String> = settings.brokers.iter().map(|b| b.name.clone()).collect();
        let described = format!("{} ({:?})", args.config.display(), args.from).to_lowercase();
        let moved =
            osb_gateway::ops::store_file::migrate(source.as_ref(), target.as_ref(), &brokers, &described)
                .await;
        source.quiesce().await;
        target.quiesce().await;
        moved
    }
    .await;
    match result {
        Ok(counts) => {
            eprintln!("osb-gateway migrate: moved {counts}; counts match");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("osb-gateway migrate: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_explain(
    config: &std::path::Path,
    platform: &str,
    request: &std::path::Path,
    unhealthy: &[String],
    env: &HashMap<String, String>,
) -> ExitCode {
    let settings = match osb_config::load_file(config, env) {
        Ok(loaded) => loaded.settings,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    let parsed = std::fs::read(request)
        .map_err(|e| e.to_string())
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|e| e.to_string()))
        .and_then(|mut value| {
            if let Some(object) = value.as_object_mut() {
                object.insert(
                    "platform".to_owned(),
                    serde_json::Value::String(platform.to_owned()),
                );
            }
            serde_json::from_value::<osb_gateway::ops::explain::ExplainRequest>(value)
                .map_err(|e| e.to_string())
        });
    let request = match parsed {
        Ok(request) => request,
        Err(e) => {
            eprintln!("{}: {e}", request.display());
            return ExitCode::from(EX_CONFIG);
        }
    };
    match check::explain_offline(&settings, &request, unhealthy).await {
        Ok(report) => {
            println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
            if report.allowed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            }
        }
        Err(e) => {
            eprintln!("osb-gateway explain: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_check(config: &std::path::Path, fetch: bool, env: &HashMap<String, String>) -> ExitCode {
    let report = check::check_config(config, fetch, env).await;
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    for problem in &report.problems {
        eprintln!("{problem}");
    }
    if report.problems.is_empty() {
        println!("{}: ok", config.display());
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EX_CONFIG)
    }
}

async fn run_catalog(config: &std::path::Path, env: &HashMap<String, String>) -> ExitCode {
    let settings = match osb_config::load_file(config, env) {
        Ok(loaded) => loaded.settings,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    match check::fetch_merged(&settings).await {
        Ok(body) => {
            let mut stdout = std::io::stdout();
            let _ = stdout.write_all(&body).and_then(|()| stdout.write_all(b"\n"));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("osb-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}
