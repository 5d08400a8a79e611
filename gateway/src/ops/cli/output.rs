//! The admin CLI's output for people: tables and record details, every string from the gateway
//! escaped first (see [`escape`]: control characters and bidi overrides cannot forge rows).

// Reading `value["key"]` of a `serde_json::Value` never panics (a missing key, or a value that is
// not an object, reads as `null`), and this is a command line, not a request path.
#![allow(clippy::indexing_slicing)]

use std::fmt::Write as _;

use serde_json::{Value, json};

/// A JSON value as a table cell, escaped (see [`escape`]).
pub(super) fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => escape(s),
        other => escape(&other.to_string()),
    }
}

/// A time the API gives in ms since the Unix epoch, as UTC (`-` when absent).
pub(super) fn when(value: &Value) -> String {
    value.as_u64().map_or_else(|| text(value), super::time::utc)
}

/// A string value as a table cell, escaped; empty when absent.
pub(super) fn text_or_empty(value: &Value) -> String {
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

pub(super) fn yes_no(value: &Value) -> String {
    match value.as_bool() {
        Some(true) => "yes".to_owned(),
        Some(false) => "no".to_owned(),
        None => "-".to_owned(),
    }
}

pub(super) fn items(value: &Value) -> Vec<Value> {
    value.as_array().cloned().unwrap_or_default()
}

/// Columns padded to their widest cell.
pub(super) fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
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

pub(super) fn health_table(v: &Value) -> String {
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

pub(super) fn operation_of(record: &Value) -> String {
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

pub(super) fn records_table(v: &Value, bindings: bool) -> String {
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

pub(super) fn fields(record: &Value, keys: &[&str]) -> String {
    let mut out = String::new();
    for key in keys {
        let value = &record[*key];
        if !value.is_null() {
            // (Objects print as JSON, escaped like any other text; times as UTC.)
            let shown = if key.ends_with("_ms") {
                when(value)
            } else {
                text(value)
            };
            let _ = writeln!(out, "{key:<20} {shown}");
        }
    }
    out
}

pub(super) fn history_table(history: &Value) -> String {
    let rows = items(history)
        .iter()
        .map(|r| {
            vec![
                text(&r["seq"]),
                when(&r["at_ms"]),
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
            "AT (UTC)",
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

pub(super) const RECORD_KEYS: &[&str] = &[
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

pub(super) fn instance_detail(v: &Value) -> String {
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

pub(super) fn binding_detail(v: &Value) -> String {
    let mut out = fields(&v["binding"], RECORD_KEYS);
    out.push_str("\nhistory:\n");
    out.push_str(&history_table(&v["history"]));
    out
}

pub(super) fn catalog_table(v: &Value) -> String {
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
                    when(&h["since_ms"]),
                ]
            })
            .collect();
        out.push_str(&table(
            &["BROKER", "SERVICE", "PLAN", "PLAN ID", "INSTANCES", "SINCE (UTC)"],
            rows,
        ));
    }
    out
}

pub(super) fn diff_table(v: &Value) -> String {
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

pub(super) fn audit_table(v: &Value) -> String {
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
                when(&r["at_ms"]),
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
            "AT (UTC)",
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

/// `admin reload`: what the configuration reload changed, one line per kind.
pub(super) fn reload_summary(report: &Value) -> String {
    let names = |v: &Value| {
        v.as_array()
            .map(|a| a.iter().map(text).collect::<Vec<_>>().join(", "))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "-".to_owned())
    };
    let mut out = String::from("configuration reloaded\n");
    for kind in ["brokers", "platforms"] {
        for change in ["added", "removed", "changed"] {
            out.push_str(&format!("{kind} {change}: {}\n", names(&report[kind][change])));
        }
    }
    for held in report["removals_held"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "broker {} kept: {} instances, {} bindings live (--confirm-removal {} to remove it anyway)\n",
            text(&held["broker"]),
            text(&held["instances"]),
            text(&held["bindings"]),
            text(&held["broker"]),
        ));
    }
    if report["restart_needed"].as_array().is_some_and(|a| !a.is_empty()) {
        out.push_str(&format!(
            "waiting for a restart: {}\n",
            names(&report["restart_needed"])
        ));
    }
    out
}
