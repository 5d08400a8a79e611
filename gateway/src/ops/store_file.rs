//! `osb-gateway store export` and `store import`: the registry as a file of JSON lines, to back up
//! a store, restore it, or move it (an embedded file to PostgreSQL replicas, or back).
//!
//! The file: a header line (`{"format": "osb-gateway-store", "version": 1, …}`), then one line per
//! instance, binding, stored catalog (each broker's last good one, and the catalog guard's) and
//! audit record (oldest first). Instances and bindings keep their state, operations and
//! orphan-mitigation state: what a crash or a failure left is resolved by the gateway that opens
//! the store afterwards, as after a restart. Binding credentials were never stored: there are none
//! in the file. Record versions start again in the target (they only order writes within a store);
//! audit records get the target's sequence numbers, in the same order.
//!
//! An embedded store is locked by the gateway using it: stop the gateway, or ask the running
//! gateway for the same file (`GET /admin/backup`, `osb-gateway admin backup`). Read while serving,
//! every record is as it was when read and every binding comes with its instance (a binding
//! created after the instances were read is left for the next backup). Records are read page by
//! page ([`MAX_PAGE`]): an export holds the ids of the instances it wrote, not the records.
//! `import` refuses a target that already holds instances or bindings: it restores or moves a
//! registry, it does not merge two. [`migrate`] is an export and an import in one step, with the
//! counts compared after.

use std::io::{BufRead, Write};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use osb_routing::audit::{AuditQuery, AuditRecord, MAX_AUDIT_LIMIT};
use osb_routing::cache::GUARD_CATALOG_KEYS;
use osb_routing::record::{BindingRecord, InstanceRecord};
use osb_routing::store::{Expect, MAX_PAGE, RecordFilter, Store, StoredCatalog, Swap, each_record};
use osb_routing::upstream::Validators;
use serde::{Deserialize, Serialize};

/// The header's `format`.
const FORMAT: &str = "osb-gateway-store";
/// The header's `version`: what this build writes and reads.
const VERSION: u32 = 1;

/// One line of the file after the header.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Line {
    Instance {
        record: InstanceRecord,
    },
    Binding {
        record: BindingRecord,
    },
    Catalog {
        key: String,
        /// The catalog's bytes, base64.
        body: String,
        etag: Option<String>,
        last_modified: Option<String>,
        fetched_at_ms: u64,
    },
    Audit {
        record: AuditRecord,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    exported_at_ms: u64,
    source: String,
}

/// What was written or read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub instances: usize,
    pub bindings: usize,
    pub catalogs: usize,
    pub audit_records: usize,
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} instances, {} bindings, {} catalogs, {} audit records",
            self.instances, self.bindings, self.catalogs, self.audit_records
        )
    }
}

/// Writes every record of `store` to `out` (see the module docs).
///
/// # Errors
/// A store read or a write to `out` failed.
pub async fn export(
    store: &dyn Store,
    brokers: &[String],
    source: &str,
    out: &mut dyn Write,
) -> Result<Counts, String> {
    let mut counts = Counts::default();
    let line = |out: &mut dyn Write, value: &dyn erased::Line| -> Result<(), String> {
        value.write(out).map_err(|e| format!("write: {e}"))
    };
    let header = Header {
        format: FORMAT.to_owned(),
        version: VERSION,
        exported_at_ms: osb_routing::clock::now_ms(),
        source: source.to_owned(),
    };
    line(out, &header)?;
    let store_error = |e: osb_routing::RoutingError| format!("store: {e}");
    // Page by page, in id order: the records are never all in memory, only the ids of the
    // instances written (to leave out a binding whose instance is not in the file).
    let all = RecordFilter::default();
    let mut exported = std::collections::HashSet::new();
    let all = &all;
    each_record(
        |after| async move {
            store
                .list_instances(all, after.as_deref(), MAX_PAGE)
                .await
                .map_err(store_error)
        },
        |record: &InstanceRecord| record.instance_id.clone(),
        |record| {
            exported.insert(record.instance_id.clone());
            counts.instances += 1;
            std::future::ready(line(out, &Line::Instance { record }))
        },
    )
    .await?;
    each_record(
        |after| async move {
            store
                .list_bindings(all, after.as_deref(), MAX_PAGE)
                .await
                .map_err(store_error)
        },
        |record: &BindingRecord| record.binding_id.clone(),
        |record| {
            // Read after the instances: one created since has no instance in this file.
            if !exported.contains(&record.instance_id) {
                return std::future::ready(Ok(()));
            }
            counts.bindings += 1;
            std::future::ready(line(out, &Line::Binding { record }))
        },
    )
    .await?;
    let keys = brokers.iter().map(String::as_str).chain(GUARD_CATALOG_KEYS);
    for key in keys {
        if let Some(catalog) = store.load_catalog(key).await.map_err(store_error)? {
            line(
                out,
                &Line::Catalog {
                    key: key.to_owned(),
                    body: STANDARD.encode(&catalog.body),
                    etag: catalog.validators.etag,
                    last_modified: catalog.validators.last_modified,
                    fetched_at_ms: catalog.fetched_at_ms,
                },
            )?;
            counts.catalogs += 1;
        }
    }
    // The audit log is read newest first, page by page; written oldest first.
    let mut audit = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .audit(&AuditQuery {
                before,
                limit: Some(MAX_AUDIT_LIMIT),
                ..AuditQuery::default()
            })
            .await
            .map_err(store_error)?;
        let Some(last) = page.last() else { break };
        before = Some(last.seq);
        audit.extend(page);
    }
    for record in audit.into_iter().rev() {
        line(out, &Line::Audit { record })?;
        counts.audit_records += 1;
    }
    out.flush().map_err(|e| format!("write: {e}"))?;
    Ok(counts)
}

/// Writes the records of an export file into `store`, which must hold no instance or binding.
///
/// # Errors
/// The file is not an export of this format, the target is not empty, or a write failed.
pub async fn import(store: &dyn Store, input: &mut dyn BufRead) -> Result<Counts, String> {
    let store_error = |e: osb_routing::RoutingError| format!("store: {e}");
    let counts_before = store.counts().await.map_err(store_error)?;
    let held = counts_before.instances.values().sum::<u64>() + counts_before.bindings.values().sum::<u64>();
    if held > 0 {
        return Err(format!(
            "the target store already holds {held} instances and bindings: import restores or moves a registry into an empty store, it does not merge"
        ));
    }
    let mut lines = input.lines();
    let header = lines
        .next()
        .ok_or("the file is empty")?
        .map_err(|e| format!("read: {e}"))?;
    let header: Header = serde_json::from_str(&header)
        .map_err(|e| format!("line 1: not an osb-gateway store export ({e})"))?;
    if header.format != FORMAT || header.version != VERSION {
        return Err(format!(
            "line 1: format {:?} version {}; this build reads {FORMAT:?} version {VERSION}",
            header.format, header.version
        ));
    }
    let mut counts = Counts::default();
    for (number, text) in lines.enumerate() {
        let at = number + 2;
        let text = text.map_err(|e| format!("line {at}: read: {e}"))?;
        if text.trim().is_empty() {
            continue;
        }
        let line: Line = serde_json::from_str(&text).map_err(|e| format!("line {at}: {e}"))?;
        match line {
            Line::Instance { record } => {
                let id = record.instance_id.clone();
                match store
                    .swap_instance(&id, Expect::Absent, Some(record))
                    .await
                    .map_err(store_error)?
                {
                    Swap::Written(_) => counts.instances += 1,
                    _ => return Err(format!("line {at}: instance {id} is already in the target")),
                }
            }
            Line::Binding { record } => {
                let id = record.binding_id.clone();
                match store
                    .swap_binding(&id, Expect::Absent, Some(record))
                    .await
                    .map_err(store_error)?
                {
                    Swap::Written(_) => counts.bindings += 1,
                    _ => return Err(format!("line {at}: binding {id} is already in the target")),
                }
            }
            Line::Catalog {
                key,
                body,
                etag,
                last_modified,
                fetched_at_ms,
            } => {
                let body = STANDARD
                    .decode(body)
                    .map_err(|e| format!("line {at}: catalog {key}: {e}"))?;
                let catalog = StoredCatalog {
                    body: body.into(),
                    validators: Validators { etag, last_modified },
                    fetched_at_ms,
                };
                store.save_catalog(&key, catalog).await.map_err(store_error)?;
                counts.catalogs += 1;
            }
            Line::Audit { record } => {
                store.append_audit(record).await.map_err(store_error)?;
                counts.audit_records += 1;
            }
        }
    }
    Ok(counts)
}

/// One JSON line of any kind (the header or a [`Line`]).
mod erased {
    pub(super) trait Line {
        fn write(&self, out: &mut dyn std::io::Write) -> std::io::Result<()>;
    }

    impl<T: serde::Serialize> Line for T {
        fn write(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
            serde_json::to_writer(&mut *out, self)?;
            out.write_all(b"\n")
        }
    }
}

/// Moves every record of `from` into `to` (empty): an export to a temporary file, an import from
/// it, then the two stores' counts compared (instances and bindings per broker, audit records).
///
/// # Errors
/// As [`export`] and [`import`]; the counts differ after the import.
pub async fn migrate(
    from: &dyn Store,
    to: &dyn Store,
    brokers: &[String],
    source: &str,
) -> Result<Counts, String> {
    let mut file = tempfile::tempfile().map_err(|e| format!("temporary file: {e}"))?;
    let exported = {
        let mut out = std::io::BufWriter::new(&mut file);
        export(from, brokers, source, &mut out).await?
    };
    std::io::Seek::rewind(&mut file).map_err(|e| format!("temporary file: {e}"))?;
    let imported = import(to, &mut std::io::BufReader::new(file)).await?;
    let store_error = |e: osb_routing::RoutingError| format!("store: {e}");
    let (before, after) = (
        from.counts().await.map_err(store_error)?,
        to.counts().await.map_err(store_error)?,
    );
    if imported != exported || before != after {
        return Err(format!(
            "counts differ after the import: exported {exported}, imported {imported}; \
             source {before:?}, target {after:?}"
        ));
    }
    Ok(imported)
}
