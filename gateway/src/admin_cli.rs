//! `osb-gateway admin …`: the operators' command line, a thin client of the admin API.
//!
//! Every subcommand is one (or, with `--all`, a few paged) calls to the admin listener, printed as
//! a table for people or, with `--json`, as the API's JSON for scripts (`audit --jsonl`: one record
//! per line, oldest first). Where to call and with which credentials comes from `--config FILE`
//! (the gateway's own file: `admin.listen` and the admin credentials), or from `--url`,
//! `--username` and the password in `$OSB_GATEWAY_ADMIN_PASSWORD` (`--password-env`,
//! `--password-file`). `--as NAME` (default `$USER`) names the person acting in the audit log.
//!
//! Exit status: 0 done; 1 the API refused or failed (its message on stderr), or a batch had
//! failures (adopt); 3 `explain` says the call would be refused; 64 the command line or a
//! configuration file is wrong.

// Reading `value["key"]` of a `serde_json::Value` never panics (a missing key, or a value that is
// not an object, reads as `null`), and this is a command line, not a request path.
#![allow(clippy::indexing_slicing)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use crate::audit::OPERATOR_HEADER;

/// Exit status for a wrong command line or configuration (sysexits `EX_USAGE`).
const EX_USAGE: u8 = 64;
/// Exit status of `explain` when the call would be refused.
const EX_REFUSED: u8 = 3;
/// Default admin address (the example configuration's).
const DEFAULT_URL: &str = "http://127.0.0.1:9090";

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
    /// Only records at or after this time (ms since the Unix epoch).
    #[arg(long)]
    pub since_ms: Option<u64>,
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

/// A failure of the command: its exit status and message.
#[derive(Debug)]
struct Failure(u8, String);

impl Failure {
    fn usage(message: impl Into<String>) -> Failure {
        Failure(EX_USAGE, message.into())
    }
    fn failed(message: impl Into<String>) -> Failure {
        Failure(1, message.into())
    }
}

/// The admin API, as configured on the command line.
struct Client {
    http: reqwest::Client,
    base: String,
    credentials: Option<(String, String)>,
    operator: Option<String>,
}

impl Client {
    fn new(args: &AdminArgs, env: &HashMap<String, String>) -> Result<Client, Failure> {
        let mut base = args.url.clone();
        let mut credentials = None;
        if let Some(config) = &args.config {
            let settings = osb_config::load_file(config, env)
                .map_err(|e| Failure::usage(e.to_string()))?
                .settings;
            let admin = settings.admin.as_ref().ok_or_else(|| {
                Failure::usage(format!(
                    "{}: admin: no admin listener configured",
                    config.display()
                ))
            })?;
            if base.is_none() {
                let mut addr = admin.listen;
                if addr.ip().is_unspecified() {
                    addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                base = Some(format!("http://{addr}"));
            }
            credentials = admin
                .credentials
                .as_ref()
                .map(|c| (c.username.clone(), c.password.expose().to_owned()));
        }
        if let Some(username) = &args.username {
            let password = match &args.password_file {
                Some(file) => std::fs::read_to_string(file)
                    .map(|p| p.trim_end_matches(['\n', '\r']).to_owned())
                    .map_err(|e| Failure::usage(format!("{}: {e}", file.display())))?,
                None => env.get(&args.password_env).cloned().ok_or_else(|| {
                    Failure::usage(format!(
                        "--username needs a password: set ${} or give --password-file",
                        args.password_env
                    ))
                })?,
            };
            credentials = Some((username.clone(), password));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| Failure::failed(format!("cannot build the HTTP client: {e}")))?;
        Ok(Client {
            http,
            base: base
                .unwrap_or_else(|| DEFAULT_URL.to_owned())
                .trim_end_matches('/')
                .to_owned(),
            credentials,
            operator: args.operator.clone().filter(|o| !o.is_empty()),
        })
    }

    /// Calls the API; the parsed JSON answer of a 2xx, else its description as a failure.
    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, Failure> {
        let (status, text) = self.call_raw(method, path, body).await?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if (200..300).contains(&status) {
            Ok(value)
        } else {
            let description = value
                .get("description")
                .and_then(Value::as_str)
                .map_or_else(|| value.to_string(), str::to_owned);
            let problems = value
                .get("problems")
                .and_then(Value::as_array)
                .map(|p| {
                    p.iter()
                        .filter_map(Value::as_str)
                        .map(|p| format!("\n  {p}"))
                        .collect::<String>()
                })
                .unwrap_or_default();
            Err(Failure::failed(format!("{status}: {description}{problems}")))
        }
    }

    async fn call_raw(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, String), Failure> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url);
        if let Some((username, password)) = &self.credentials {
            request = request.basic_auth(username, Some(password));
        }
        if let Some(operator) = &self.operator {
            request = request.header(OPERATOR_HEADER, operator);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| Failure::failed(format!("{url}: {}", osb_routing::cache::error_chain(&e))))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| Failure::failed(format!("{url}: {e}")))?;
        Ok((status, text))
    }

    /// Pages of a list: the items of every page (`all`) or of the first, and the next cursor.
    async fn pages(
        &self,
        path: &str,
        mut query: Vec<(String, String)>,
        all: bool,
    ) -> Result<(Vec<Value>, Value), Failure> {
        let mut items = Vec::new();
        loop {
            let answer = self.call(Method::GET, &with_query(path, &query), None).await?;
            if let Some(page) = answer.get("items").and_then(Value::as_array) {
                items.extend(page.iter().cloned());
            }
            let next = answer.get("next_cursor").cloned().unwrap_or(Value::Null);
            if !all || next.is_null() {
                return Ok((items, next));
            }
            query.retain(|(k, _)| k != "cursor");
            let cursor = next.as_str().map_or_else(|| next.to_string(), str::to_owned);
            query.push(("cursor".to_owned(), cursor));
        }
    }
}

/// `path?k=v&…` with the values percent-encoded.
fn with_query(path: &str, query: &[(String, String)]) -> String {
    if query.is_empty() {
        return path.to_owned();
    }
    let pairs: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{k}={}", crate::parse::encode(v)))
        .collect();
    format!("{path}?{}", pairs.join("&"))
}

/// A path segment, percent-encoded.
fn segment(id: &str) -> String {
    crate::parse::encode(id)
}

fn push(query: &mut Vec<(String, String)>, key: &str, value: Option<impl ToString>) {
    if let Some(value) = value {
        query.push((key.to_owned(), value.to_string()));
    }
}

/// Runs `osb-gateway admin …`.
pub async fn run(args: AdminArgs, env: &HashMap<String, String>) -> ExitCode {
    match execute(&args, env).await {
        Ok(code) => code,
        Err(Failure(code, message)) => {
            // The message may quote the gateway's answer; keep its line breaks, escape the rest.
            let message: Vec<String> = message.split('\n').map(escape).collect();
            eprintln!("osb-gateway admin: {}", message.join("\n"));
            ExitCode::from(code)
        }
    }
}

async fn execute(args: &AdminArgs, env: &HashMap<String, String>) -> Result<ExitCode, Failure> {
    let client = Client::new(args, env)?;
    let json_out = args.json;
    let show = |value: &Value, table: &dyn Fn(&Value) -> String| {
        if json_out {
            println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
        } else {
            print!("{}", table(value));
        }
    };
    match &args.command {
        AdminCommand::Health => {
            let answer = client.call(Method::GET, "/admin/brokers", None).await?;
            show(&answer, &health_table);
        }
        AdminCommand::Refresh { broker } => {
            let path = match broker {
                Some(broker) => format!("/admin/brokers/{}/refresh", segment(broker)),
                None => "/admin/brokers/refresh".to_owned(),
            };
            let answer = client.call(Method::POST, &path, None).await?;
            show(&answer, &|v| {
                format!("refreshing {}\n", v["refreshing"].as_str().unwrap_or("?"))
            });
        }
        AdminCommand::Registry => {
            let answer = client.call(Method::GET, "/admin/registry", None).await?;
            show(&answer, &|v| {
                table(
                    &["INSTANCES", "BINDINGS", "ORPHANS", "PENDING"],
                    vec![vec![
                        text(&v["instances"]),
                        text(&v["bindings"]),
                        text(&v["orphans"]),
                        text(&v["pending"]),
                    ]],
                )
            });
        }
        AdminCommand::Instances(list) | AdminCommand::Bindings(list) => {
            let bindings = matches!(args.command, AdminCommand::Bindings(_));
            let mut query = Vec::new();
            push(&mut query, "broker", list.broker.as_ref());
            push(&mut query, "platform", list.platform.as_ref());
            push(&mut query, "service", list.service.as_ref());
            push(&mut query, "plan", list.plan.as_ref());
            push(&mut query, "state", list.state.as_ref());
            push(&mut query, "operation", list.operation.as_ref());
            push(&mut query, "instance", list.instance.as_ref());
            push(&mut query, "limit", list.limit);
            push(&mut query, "cursor", list.cursor.as_ref());
            let path = if bindings {
                "/admin/bindings"
            } else {
                "/admin/instances"
            };
            let (items, next) = client.pages(path, query, list.all).await?;
            let answer = json!({"items": items, "next_cursor": next});
            show(&answer, &|v| records_table(v, bindings));
        }
        AdminCommand::Instance { id, history } => {
            let mut query = Vec::new();
            push(&mut query, "history", *history);
            let path = with_query(&format!("/admin/instances/{}", segment(id)), &query);
            let answer = client.call(Method::GET, &path, None).await?;
            show(&answer, &instance_detail);
        }
        AdminCommand::Binding { id, history } => {
            let mut query = Vec::new();
            push(&mut query, "history", *history);
            let path = with_query(&format!("/admin/bindings/{}", segment(id)), &query);
            let answer = client.call(Method::GET, &path, None).await?;
            show(&answer, &binding_detail);
        }
        AdminCommand::Catalog { command } => match command {
            None => {
                let answer = client.call(Method::GET, "/admin/catalog", None).await?;
                show(&answer, &catalog_table);
            }
            Some(CatalogCommand::Diff { config }) => {
                let answer = match config {
                    None => client.call(Method::GET, "/admin/catalog/diff", None).await?,
                    Some(config) => {
                        let candidate = candidate_of(config, env).await?;
                        client
                            .call(Method::POST, "/admin/catalog/diff", Some(&candidate))
                            .await?
                    }
                };
                show(&answer, &diff_table);
            }
            Some(CatalogCommand::Confirm { ids, all, reason }) => {
                let body = if *all {
                    json!({"all": true, "reason": reason})
                } else if ids.is_empty() {
                    return Err(Failure::usage("give held plan or service ids, or --all"));
                } else {
                    json!({"ids": ids, "reason": reason})
                };
                let answer = client
                    .call(Method::POST, "/admin/catalog/confirm", Some(&body))
                    .await?;
                show(&answer, &|v| {
                    let rows = items(&v["released"])
                        .iter()
                        .map(|h| {
                            vec![
                                text(&h["broker"]),
                                text(&h["service_name"]),
                                text(&h["plan_name"]),
                                text(&h["plan_id"]),
                                text(&h["instances"]),
                            ]
                        })
                        .collect();
                    format!(
                        "released:\n{}",
                        table(&["BROKER", "SERVICE", "PLAN", "PLAN ID", "INSTANCES"], rows)
                    )
                });
            }
        },
        AdminCommand::Adopt(adopt) => {
            let instances = adopt_instances(adopt)?;
            let body = json!({"instances": instances, "reason": adopt.reason, "verify": !adopt.no_verify});
            let answer = client
                .call(Method::POST, "/admin/instances/adopt", Some(&body))
                .await?;
            show(&answer, &|v| {
                let rows = items(&v["results"])
                    .iter()
                    .map(|r| {
                        vec![
                            text(&r["instance_id"]),
                            text(&r["result"]),
                            text(&r["broker"]),
                            text(&r["plan_id"]),
                            yes_no(&r["verified"]),
                            r["error"]
                                .as_str()
                                .or(r["note"].as_str())
                                .unwrap_or("")
                                .to_owned(),
                        ]
                    })
                    .collect();
                table(
                    &["INSTANCE", "RESULT", "BROKER", "PLAN ID", "VERIFIED", "NOTE"],
                    rows,
                )
            });
            if answer["failed"].as_u64().unwrap_or(0) > 0 {
                return Ok(ExitCode::FAILURE);
            }
        }
        AdminCommand::Abandon(abandon) => {
            let kind = if abandon.binding { "bindings" } else { "instances" };
            let path = format!("/admin/{kind}/{}/abandon", segment(&abandon.id));
            let body = json!({"reason": abandon.reason, "deprovision": abandon.deprovision});
            let answer = client.call(Method::POST, &path, Some(&body)).await?;
            show(&answer, &|v| {
                let upstream = &v["upstream"];
                let attempt = if upstream["attempted"].as_bool() == Some(true) {
                    match (upstream["status"].as_u64(), upstream["error"].as_str()) {
                        (Some(status), _) => format!("upstream answered {status}"),
                        (None, Some(error)) => format!("upstream failed ({})", escape(error)),
                        _ => "upstream failed".to_owned(),
                    }
                } else {
                    "nothing sent upstream".to_owned()
                };
                let bindings = items(&v["bindings_removed"]).iter().map(text).collect::<Vec<_>>();
                let mut out = format!("abandoned {} ({attempt})\n", abandon.id);
                if !bindings.is_empty() {
                    let _ = writeln!(out, "bindings removed with it: {}", bindings.join(", "));
                }
                out
            });
        }
        AdminCommand::Audit(audit) => {
            let mut query = Vec::new();
            push(&mut query, "instance_id", audit.instance.as_ref());
            push(&mut query, "binding_id", audit.binding.as_ref());
            push(&mut query, "operation", audit.operation.as_ref());
            push(&mut query, "actor", audit.actor.as_ref());
            push(&mut query, "kind", audit.kind.as_ref());
            push(&mut query, "outcome", audit.outcome.as_ref());
            push(&mut query, "since_ms", audit.since_ms);
            push(&mut query, "limit", audit.limit);
            push(&mut query, "cursor", audit.cursor);
            let (records, next) = client.pages("/admin/audit", query, audit.all).await?;
            if audit.jsonl {
                let mut out = String::new();
                for record in records.iter().rev() {
                    let _ = writeln!(out, "{}", serde_json::to_string(record).unwrap_or_default());
                }
                print!("{out}");
            } else {
                let answer = json!({"items": records, "next_cursor": next});
                show(&answer, &audit_table);
            }
        }
        AdminCommand::Policy => {
            let answer = client.call(Method::GET, "/admin/policy", None).await?;
            println!("{}", serde_json::to_string_pretty(&answer).unwrap_or_default());
        }
        AdminCommand::PolicyReload => {
            let answer = client.call(Method::POST, "/admin/policy/reload", None).await?;
            show(&answer, &|v| {
                format!("policy generation {} in force\n", text(&v["generation"]))
            });
        }
        AdminCommand::Explain { platform, request } => {
            let mut body: Value = std::fs::read(request)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
                .map_err(|e| Failure::usage(format!("{}: {e}", request.display())))?;
            if let Some(fields) = body.as_object_mut() {
                fields.insert("platform".to_owned(), json!(platform));
            }
            let answer = client.call(Method::POST, "/admin/explain", Some(&body)).await?;
            println!("{}", serde_json::to_string_pretty(&answer).unwrap_or_default());
            if answer["allowed"].as_bool() == Some(false) {
                return Ok(ExitCode::from(EX_REFUSED));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The merged catalog a configuration file would serve: its brokers' catalogs, fetched now.
async fn candidate_of(config: &Path, env: &HashMap<String, String>) -> Result<Value, Failure> {
    let settings = osb_config::load_file(config, env)
        .map_err(|e| Failure::usage(e.to_string()))?
        .settings;
    let merged = crate::check::fetch_merged(&settings)
        .await
        .map_err(|e| Failure::failed(format!("{}: {e}", config.display())))?;
    serde_json::from_slice(&merged).map_err(|e| Failure::failed(format!("merged catalog: {e}")))
}

/// The instances to adopt: the ids given and the file's entries, flags filling what is missing.
fn adopt_instances(args: &AdoptArgs) -> Result<Vec<Value>, Failure> {
    let mut entries: Vec<Value> = args.ids.iter().map(|id| json!({"instance_id": id})).collect();
    if let Some(file) = &args.file {
        let content =
            std::fs::read_to_string(file).map_err(|e| Failure::usage(format!("{}: {e}", file.display())))?;
        let parse_error =
            |line: usize, e: serde_json::Error| Failure::usage(format!("{}:{line}: {e}", file.display()));
        if content.trim_start().starts_with('[') {
            let list: Vec<Value> = serde_json::from_str(&content).map_err(|e| parse_error(1, e))?;
            entries.extend(list);
        } else {
            for (n, line) in content.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                if line.starts_with('{') {
                    entries.push(serde_json::from_str(line).map_err(|e| parse_error(n + 1, e))?);
                } else {
                    entries.push(json!({"instance_id": line}));
                }
            }
        }
    }
    if entries.is_empty() {
        return Err(Failure::usage("no instances: give ids or --file"));
    }
    let context = args
        .context
        .as_deref()
        .map(serde_json::from_str::<Value>)
        .transpose()
        .map_err(|e| Failure::usage(format!("--context: {e}")))?;
    let defaults = [
        ("platform", args.platform.clone().map(Value::String)),
        ("plan", args.plan.clone().map(Value::String)),
        ("broker", args.broker.clone().map(Value::String)),
        ("service", args.service.clone().map(Value::String)),
        ("context", context),
    ];
    for entry in &mut entries {
        let Some(fields) = entry.as_object_mut() else {
            return Err(Failure::usage("each instance must be a JSON object or an id"));
        };
        for (key, value) in &defaults {
            if let Some(value) = value {
                fields.entry((*key).to_owned()).or_insert_with(|| value.clone());
            }
        }
        for key in ["instance_id", "platform", "plan"] {
            if !fields.contains_key(key) {
                return Err(Failure::usage(format!(
                    "instance {}: no {key} (give --{key} or put it in the file)",
                    fields.get("instance_id").map_or("?".to_owned(), text)
                )));
            }
        }
    }
    Ok(entries)
}

// === tables ===

/// A JSON value as a table cell, escaped (see [`escape`]).
fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => escape(s),
        other => escape(&other.to_string()),
    }
}

/// A string value as a table cell, escaped; empty when absent.
fn text_or_empty(value: &Value) -> String {
    value.as_str().map(escape).unwrap_or_default()
}

/// `text` with every character that could move the cursor, recolour, retitle or reorder the
/// terminal written visibly instead: C0 and C1 controls and DEL as `\n`, `\r`, `\t` or `\u{…}`,
/// and the bidirectional overrides. Every string the gateway did not write itself (an
/// originating identity's user name, a reason, an id) goes through it before a table prints it.
pub fn escape(text: &str) -> String {
    let unsafe_char = |c: char| {
        c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(unsafe_char) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if unsafe_char(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

fn yes_no(value: &Value) -> String {
    match value.as_bool() {
        Some(true) => "yes".to_owned(),
        Some(false) => "no".to_owned(),
        None => "-".to_owned(),
    }
}

fn items(value: &Value) -> Vec<Value> {
    value.as_array().cloned().unwrap_or_default()
}

/// Columns padded to their widest cell.
fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<String>, out: &mut String| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let width = widths.get(i).copied().unwrap_or(0);
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<width$}  ");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(headers.iter().map(|h| (*h).to_owned()).collect(), &mut out);
    for row in rows {
        line(row, &mut out);
    }
    out
}

fn health_table(v: &Value) -> String {
    let catalog = &v["catalog"];
    let mut out = format!(
        "catalog: {} services, {} held plans, {}\n",
        text(&catalog["services"]),
        text(&catalog["held_plans"]),
        text(&catalog["availability"]["state"])
    );
    let rows = items(&v["brokers"])
        .iter()
        .map(|b| {
            vec![
                text(&b["name"]),
                yes_no(&b["healthy"]),
                text(&b["breaker"]),
                text(&b["freshness"]),
                b["catalog_age_secs"]
                    .as_u64()
                    .map_or("-".to_owned(), |s| format!("{s}s")),
                text(&b["last_refresh"]),
                text(&b["services"]),
                text(&b["plans"]),
                text(&b["held_plans"]),
                text_or_empty(&b["last_error"]),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "BROKER",
            "HEALTHY",
            "BREAKER",
            "CATALOG",
            "AGE",
            "LAST REFRESH",
            "SERVICES",
            "PLANS",
            "HELD",
            "LAST ERROR",
        ],
        rows,
    ));
    out
}

fn operation_of(record: &Value) -> String {
    record["operation"]["kind"].as_str().map_or_else(
        || "-".to_owned(),
        |kind| {
            format!(
                "{kind} ({})",
                record["operation"]["phase"].as_str().unwrap_or("?")
            )
        },
    )
}

fn records_table(v: &Value, bindings: bool) -> String {
    let rows = items(&v["items"])
        .iter()
        .map(|r| {
            let mut row = if bindings {
                vec![text(&r["binding_id"]), text(&r["instance_id"])]
            } else {
                vec![text(&r["instance_id"])]
            };
            let plan = if r["plan_held"].as_bool() == Some(true) {
                format!("{} (held)", text(&r["plan_name"]))
            } else {
                text(&r["plan_name"])
            };
            row.extend([
                text(&r["platform"]),
                text(&r["broker"]),
                text(&r["service_name"]),
                plan,
                text(&r["state"]),
                operation_of(r),
            ]);
            row
        })
        .collect();
    let headers: &[&str] = if bindings {
        &[
            "BINDING",
            "INSTANCE",
            "PLATFORM",
            "BROKER",
            "SERVICE",
            "PLAN",
            "STATE",
            "OPERATION",
        ]
    } else {
        &[
            "INSTANCE",
            "PLATFORM",
            "BROKER",
            "SERVICE",
            "PLAN",
            "STATE",
            "OPERATION",
        ]
    };
    let mut out = table(headers, rows);
    if let Some(next) = v["next_cursor"].as_str() {
        let _ = writeln!(out, "more: --cursor {next}");
    }
    out
}

fn fields(record: &Value, keys: &[&str]) -> String {
    let mut out = String::new();
    for key in keys {
        let value = &record[*key];
        if !value.is_null() {
            // (Objects print as JSON, escaped like any other text.)
            let shown = text(value);
            let _ = writeln!(out, "{key:<20} {shown}");
        }
    }
    out
}

fn history_table(history: &Value) -> String {
    let rows = items(history)
        .iter()
        .map(|r| {
            vec![
                text(&r["seq"]),
                text(&r["at_ms"]),
                text(&r["operation"]),
                format!(
                    "{}{}",
                    text(&r["actor"]),
                    r["user"]
                        .as_str()
                        .map(|u| format!(" ({})", escape(u)))
                        .unwrap_or_default()
                ),
                text(&r["status"]),
                text(&r["outcome"]),
                text_or_empty(&r["error"]),
                text_or_empty(&r["reason"]),
            ]
        })
        .collect();
    table(
        &[
            "SEQ",
            "AT (ms)",
            "OPERATION",
            "ACTOR",
            "STATUS",
            "OUTCOME",
            "ERROR",
            "REASON",
        ],
        rows,
    )
}

const RECORD_KEYS: &[&str] = &[
    "instance_id",
    "binding_id",
    "platform",
    "broker",
    "service_name",
    "service_id",
    "plan_name",
    "plan_id",
    "plan_held",
    "upstream_service_id",
    "upstream_plan_id",
    "state",
    "mitigation",
    "operation",
    "context",
    "created_ms",
    "updated_ms",
    "version",
];

fn instance_detail(v: &Value) -> String {
    let mut out = fields(&v["instance"], RECORD_KEYS);
    let bindings = items(&v["bindings"]);
    if !bindings.is_empty() {
        out.push_str("\nbindings:\n");
        out.push_str(&records_table(&json!({"items": bindings}), true));
    }
    out.push_str("\nhistory:\n");
    out.push_str(&history_table(&v["history"]));
    out
}

fn binding_detail(v: &Value) -> String {
    let mut out = fields(&v["binding"], RECORD_KEYS);
    out.push_str("\nhistory:\n");
    out.push_str(&history_table(&v["history"]));
    out
}

fn catalog_table(v: &Value) -> String {
    let mut out = format!(
        "served: {} services, {} plans, {} (etag {})\n",
        text(&v["services"]),
        text(&v["plans"]),
        text(&v["availability"]["state"]),
        text(&v["etag"])
    );
    let held = items(&v["held"]);
    if held.is_empty() {
        out.push_str("no plans held\n");
    } else {
        out.push_str(
            "held (removed upstream, still served for their instances; `admin catalog confirm` to drop):\n",
        );
        let rows = held
            .iter()
            .map(|h| {
                vec![
                    text(&h["broker"]),
                    text(&h["service_name"]),
                    text(&h["plan_name"]),
                    text(&h["plan_id"]),
                    text(&h["instances"]),
                    text(&h["since_ms"]),
                ]
            })
            .collect();
        out.push_str(&table(
            &["BROKER", "SERVICE", "PLAN", "PLAN ID", "INSTANCES", "SINCE (ms)"],
            rows,
        ));
    }
    out
}

fn diff_table(v: &Value) -> String {
    let mut out = String::new();
    for error in items(&v["errors"]) {
        let _ = writeln!(
            out,
            "warning: broker {}: {} (its catalog in use is compared)",
            text(&error["broker"]),
            text(&error["error"])
        );
    }
    let changes = items(&v["changes"]);
    if changes.is_empty() {
        out.push_str("no changes\n");
        return out;
    }
    let rows = changes
        .iter()
        .map(|c| {
            let id = match (c["old_id"].as_str(), c["id"].as_str()) {
                (Some(old), Some(new)) if old != new => format!("{} -> {}", escape(old), escape(new)),
                (Some(old), _) => escape(old),
                (None, Some(new)) => escape(new),
                (None, None) => "-".to_owned(),
            };
            let held = if c["held"].as_bool() == Some(true) {
                "held"
            } else {
                ""
            };
            let fields = items(&c["fields"]).iter().map(text).collect::<Vec<_>>().join(",");
            vec![
                text(&c["change"]),
                text(&c["entry"]),
                text(&c["service"]),
                text_or_empty(&c["plan"]),
                id,
                text(&c["instances"]),
                held.to_owned(),
                fields,
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "CHANGE",
            "ENTRY",
            "SERVICE",
            "PLAN",
            "ID",
            "INSTANCES",
            "GUARD",
            "FIELDS",
        ],
        rows,
    ));
    let s = &v["summary"];
    let _ = writeln!(
        out,
        "{} added, {} removed, {} changed, {} id changes; {} plan removals would be held",
        text(&s["added"]),
        text(&s["removed"]),
        text(&s["changed"]),
        text(&s["id_changed"]),
        text(&s["held"])
    );
    out
}

fn audit_table(v: &Value) -> String {
    let rows = items(&v["items"])
        .iter()
        .map(|r| {
            let ids = match (r["instance_id"].as_str(), r["binding_id"].as_str()) {
                (Some(i), Some(b)) => escape(&format!("{i}/{b}")),
                (Some(i), None) => escape(i),
                _ => "-".to_owned(),
            };
            vec![
                text(&r["seq"]),
                text(&r["at_ms"]),
                format!(
                    "{}{}",
                    text(&r["actor"]),
                    r["user"]
                        .as_str()
                        .map(|u| format!(" ({})", escape(u)))
                        .unwrap_or_default()
                ),
                text(&r["operation"]),
                ids,
                text(&r["broker"]),
                text_or_empty(&r["policy"]),
                format!(
                    "{}{}",
                    text(&r["status"]),
                    r["upstream_status"]
                        .as_u64()
                        .map(|s| format!(" (upstream {s})"))
                        .unwrap_or_default()
                ),
                text(&r["outcome"]),
                text_or_empty(&r["error"]),
                format!("{}ms", text(&r["duration_ms"])),
                text_or_empty(&r["reason"]),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "SEQ",
            "AT (ms)",
            "ACTOR",
            "OPERATION",
            "IDS",
            "BROKER",
            "POLICY",
            "STATUS",
            "OUTCOME",
            "ERROR",
            "TOOK",
            "REASON",
        ],
        rows,
    );
    if let Some(next) = v["next_cursor"].as_u64() {
        let _ = writeln!(out, "more: --cursor {next}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_columns() {
        let t = table(
            &["A", "LONGER"],
            vec![vec!["xyz".into(), "1".into()], vec!["q".into(), "22".into()]],
        );
        assert_eq!(t, "A    LONGER\nxyz  1\nq    22\n");
    }

    #[test]
    fn adopt_entries_take_flags_for_what_they_lack() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ids.txt");
        std::fs::write(
            &file,
            "# from the old broker\ni-2\n{\"instance_id\": \"i-3\", \"plan\": \"other\"}\n",
        )
        .unwrap();
        let args = AdoptArgs {
            ids: vec!["i-1".into()],
            file: Some(file),
            platform: Some("k8s".into()),
            plan: Some("p".into()),
            broker: None,
            service: None,
            context: Some(r#"{"namespace": "a"}"#.into()),
            no_verify: false,
            reason: None,
        };
        let entries = adopt_instances(&args).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(
            entries[0],
            json!({"instance_id": "i-1", "platform": "k8s", "plan": "p", "context": {"namespace": "a"}})
        );
        assert_eq!(entries[1]["instance_id"], "i-2");
        assert_eq!(entries[2]["plan"], "other");
        let args = AdoptArgs {
            platform: None,
            file: None,
            ..args
        };
        assert!(adopt_instances(&args).is_err(), "no platform");
    }

    #[test]
    fn queries_are_encoded() {
        assert_eq!(
            with_query(
                "/admin/audit",
                &[
                    ("operation".into(), "admin.adopt".into()),
                    ("actor".into(), "a b".into())
                ]
            ),
            "/admin/audit?operation=admin.adopt&actor=a%20b"
        );
    }
}
