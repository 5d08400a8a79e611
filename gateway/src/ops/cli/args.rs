//! The `osb-gateway admin` command line: its arguments and subcommands (clap).

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// `osb-gateway admin`: where the admin API is, who calls it, and what to do.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Base URL of the admin listener (default: `admin.listen` of --config, else
    /// http://127.0.0.1:9090).
    #[arg(long, env = "OSB_GATEWAY_ADMIN_URL")]
    pub url: Option<String>,
    /// The gateway's configuration file: the admin address and credentials are read from it.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Admin user name (default: from --config).
    #[arg(long, env = "OSB_GATEWAY_ADMIN_USERNAME")]
    pub username: Option<String>,
    /// Environment variable holding the admin password.
    #[arg(long, default_value = "OSB_GATEWAY_ADMIN_PASSWORD")]
    pub password_env: String,
    /// File holding the admin password (trailing newline trimmed).
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// Who is acting, for the audit log (default: $USER).
    #[arg(long = "as", env = "USER")]
    pub operator: Option<String>,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// The admin subcommands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Upstream brokers: health, circuit breaker, catalog age and last refresh, counts, held plans.
    Health,
    /// Refreshes the catalog of one broker now (of every broker without a name).
    Refresh { broker: Option<String> },
    /// Registry counts: instances, bindings, orphans, pending intents.
    Registry,
    /// Instances, filtered and paged.
    Instances(ListArgs),
    /// One instance: its record, bindings and history.
    Instance {
        id: String,
        /// History entries to show.
        #[arg(long)]
        history: Option<usize>,
    },
    /// Bindings, filtered and paged.
    Bindings(ListArgs),
    /// One binding: its record and history.
    Binding {
        id: String,
        #[arg(long)]
        history: Option<usize>,
    },
    /// The served catalog and held plans; `diff` (dry run) and `confirm`.
    Catalog {
        #[command(subcommand)]
        command: Option<CatalogCommand>,
    },
    /// Adopts instances created directly at an upstream broker.
    Adopt(AdoptArgs),
    /// Removes an instance (or binding) from the registry, optionally deleting it upstream first.
    Abandon(AbandonArgs),
    /// The audit log, newest first (`--jsonl`: one JSON record per line, oldest first).
    Audit(AuditArgs),
    /// The policy in force and the last reload's problems.
    Policy,
    /// Reloads the policy file now.
    PolicyReload,
    /// Saves a copy of the registry taken while the gateway serves (the `store export` format;
    /// `osb-gateway store import` restores it).
    Backup {
        /// Where to write it.
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Reads the configuration file again and applies it (brokers, platforms); shows what changed.
    Reload {
        /// A broker the file removes that still has live instances: remove it anyway
        /// (repeatable). Its instances are no longer reachable through the gateway.
        #[arg(long = "confirm-removal", value_name = "BROKER")]
        confirm_removal: Vec<String>,
    },
    /// Dry-runs a request through the live policy (exit 3 when it would be refused).
    Explain {
        /// The calling platform.
        #[arg(long)]
        platform: String,
        /// A JSON file: {"operation": "provision", "instance_id": "…", "body": {…}}.
        #[arg(long)]
        request: PathBuf,
    },
}

/// `admin catalog …`
#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// What a refresh (or, with --config, a configuration) would change in the served catalog.
    Diff {
        /// A new configuration file: its brokers' catalogs are fetched from here and merged as
        /// that configuration would merge them.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Confirms the removal of held plans (plan or service ids, or --all).
    Confirm {
        ids: Vec<String>,
        #[arg(long)]
        all: bool,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: String,
    },
}

/// Filters and paging of `instances` and `bindings`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long)]
    pub broker: Option<String>,
    #[arg(long)]
    pub platform: Option<String>,
    /// Service id or published name.
    #[arg(long)]
    pub service: Option<String>,
    /// Plan id, or plan name with --service.
    #[arg(long)]
    pub plan: Option<String>,
    /// creating, ready or orphaned.
    #[arg(long)]
    pub state: Option<String>,
    /// Operation in flight (provision, update, deprovision, bind, unbind) or none.
    #[arg(long)]
    pub operation: Option<String>,
    /// Bindings of this instance (bindings only).
    #[arg(long)]
    pub instance: Option<String>,
    #[arg(long)]
    pub limit: Option<usize>,
    /// Start after this id (the `next` of the previous page).
    #[arg(long)]
    pub cursor: Option<String>,
    /// Follow the pages to the end.
    #[arg(long)]
    pub all: bool,
}

/// `admin adopt`
#[derive(Debug, Args)]
pub struct AdoptArgs {
    /// Instance ids to adopt (with --platform and --plan).
    pub ids: Vec<String>,
    /// A file of instances: a JSON array, or one JSON object or bare instance id per line.
    /// Objects take the keys instance_id, platform, plan, broker, service, context, parameters;
    /// missing keys come from the flags.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// The platform that will own them.
    #[arg(long)]
    pub platform: Option<String>,
    /// Gateway plan id, or upstream plan id with --broker.
    #[arg(long)]
    pub plan: Option<String>,
    #[arg(long)]
    pub broker: Option<String>,
    #[arg(long)]
    pub service: Option<String>,
    /// The original provision's context (JSON object).
    #[arg(long)]
    pub context: Option<String>,
    /// Do not ask the upstream whether the instances exist.
    #[arg(long)]
    pub no_verify: bool,
    /// Why (recorded in the audit log).
    #[arg(long)]
    pub reason: Option<String>,
}

/// `admin abandon`
#[derive(Debug, Args)]
pub struct AbandonArgs {
    /// Instance id (binding id with --binding).
    pub id: String,
    /// The id is a binding's.
    #[arg(long)]
    pub binding: bool,
    /// Try one upstream delete (deprovision or unbind) first; the record goes whatever it answers.
    #[arg(long)]
    pub deprovision: bool,
    /// Why (required; recorded in the audit log).
    #[arg(long)]
    pub reason: String,
}

/// `admin audit`
#[derive(Debug, Args)]
pub struct AuditArgs {
    #[arg(long)]
    pub instance: Option<String>,
    #[arg(long)]
    pub binding: Option<String>,
    /// provision, update, deprovision, bind, unbind, admin.adopt, admin.abandon, …
    #[arg(long)]
    pub operation: Option<String>,
    /// A platform or admin user name.
    #[arg(long)]
    pub actor: Option<String>,
    /// platform or admin.
    #[arg(long)]
    pub kind: Option<String>,
    /// succeeded, accepted, refused or failed.
    #[arg(long)]
    pub outcome: Option<String>,
    /// Only records at or after this time: an age (90s, 15m, 6h, 2d), a UTC time
    /// (2026-12-06T10:00:00Z, 2026-12-06) or ms since the Unix epoch.
    #[arg(long, alias = "since-ms")]
    pub since: Option<String>,
    #[arg(long)]
    pub limit: Option<usize>,
    /// Records older than this `seq` (the `next` of the previous page).
    #[arg(long)]
    pub cursor: Option<u64>,
    /// Follow the pages to the end.
    #[arg(long)]
    pub all: bool,
    /// One JSON record per line, oldest first.
    #[arg(long)]
    pub jsonl: bool,
}
