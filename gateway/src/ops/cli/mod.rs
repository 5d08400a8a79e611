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
//!
//! # Layout
//! - this file: [`run`] and what each subcommand calls and prints;
//! - `args`: the command line; `client`: the admin API client; `output`: tables for people.

// Reading `value["key"]` of a `serde_json::Value` never panics (a missing key, or a value that is
// not an object, reads as `null`), and this is a command line, not a request path.
#![allow(clippy::indexing_slicing)]

mod args;
mod client;
mod output;
pub(crate) mod time;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use reqwest::Method;
use serde_json::{Value, json};

pub use self::args::{AbandonArgs, AdminArgs, AdminCommand, AdoptArgs, AuditArgs, CatalogCommand, ListArgs};
use self::client::{Client, Failure, push, segment, with_query};
pub use self::output::escape;
use self::output::*;

/// Exit status for a wrong command line or configuration (sysexits `EX_USAGE`).
const EX_USAGE: u8 = 64;
/// Exit status of `explain` when the call would be refused.
const EX_REFUSED: u8 = 3;
/// Default admin address (the example configuration's).
const DEFAULT_URL: &str = "http://127.0.0.1:9090";

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
            let since_ms = audit
                .since
                .as_deref()
                .map(|since| time::parse_since(since, osb_routing::clock::now_ms()))
                .transpose()
                .map_err(Failure::usage)?;
            push(&mut query, "since_ms", since_ms);
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
        AdminCommand::Backup { out } => {
            let file =
                std::fs::File::create(out).map_err(|e| Failure::usage(format!("{}: {e}", out.display())))?;
            let headers = client
                .download("/admin/backup", &mut std::io::BufWriter::new(file))
                .await?;
            let counts = headers
                .get("x-osb-gateway-backup")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("the registry");
            eprintln!("saved {counts} to {}", out.display());
        }
        AdminCommand::Reload { confirm_removal } => {
            let body = json!({"confirm_removal": confirm_removal});
            let answer = client.call(Method::POST, "/admin/reload", Some(&body)).await?;
            show(&answer, &output::reload_summary);
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
    let merged = crate::ops::check::fetch_merged(&settings)
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
