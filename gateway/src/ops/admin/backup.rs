//! `GET /admin/backup`: a copy of the registry taken while serving, in the file format of
//! `osb-gateway store export` (see `ops::store_file`), so `store import` restores it and
//! `osb-gateway admin backup --out FILE` saves it. The operator role: the file holds every
//! record (binding credentials were never stored).
//!
//! The export is written to an anonymous temporary file (removed when the answer is sent or the
//! client goes away), then streamed: memory stays flat whatever the registry's size.

use std::io::{Seek, Write};

use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use tokio::io::AsyncReadExt;

use super::Operator;
use crate::error::ApiError;
use crate::ops::store_file;
use crate::state::AppState;

/// Size of the chunks the file is streamed in.
const CHUNK: usize = 64 * 1024;

/// See the module docs.
pub async fn backup(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let started = std::time::Instant::now();
    let operator = Operator::acting(&req, &state)?;
    let brokers: Vec<String> = state
        .brokers
        .clients()
        .iter()
        .map(|b| b.name().to_owned())
        .collect();
    let source = format!("{} (backup while serving)", state.settings.origin);
    state.audit.settle().await;
    let internal = |e: std::io::Error| ApiError::Internal(format!("backup file: {e}"));
    let mut file = tempfile::tempfile().map_err(internal)?;
    let exported = {
        let mut out = std::io::BufWriter::with_capacity(CHUNK, &mut file);
        let counts = store_file::export(state.registry.store().as_ref(), &brokers, &source, &mut out).await;
        out.flush().map_err(internal)?;
        counts
    };
    let counts = match exported {
        Ok(counts) => counts,
        Err(e) => {
            let mut record = operator.record("backup", 503, started);
            record.error = Some("StoreUnavailable".to_owned());
            state.audit.record(record).await;
            return Err(ApiError::StoreUnavailable(e));
        }
    };
    file.rewind().map_err(internal)?;
    let mut record = operator.record("backup", 200, started);
    record.reason = Some(counts.to_string());
    state.audit.record(record).await;

    let file = tokio::fs::File::from_std(file);
    let chunks = futures_util::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buffer = vec![0; CHUNK];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buffer)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .insert_header((
            "Content-Disposition",
            "attachment; filename=\"osb-gateway-backup.jsonl\"",
        ))
        .insert_header(("X-OSB-Gateway-Backup", counts.to_string()))
        .streaming(chunks))
}
