//! The admin CLI's HTTP client of the admin API: where to call (`--config`, `--url`), with which
//! credentials, who acts (`--as`), and a command's failure with its exit status.

// Reading `value["key"]` of a `serde_json::Value` never panics (a missing key, or a value that is
// not an object, reads as `null`), and this is a command line, not a request path.
#![allow(clippy::indexing_slicing)]

use std::collections::HashMap;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use super::args::AdminArgs;
use super::{DEFAULT_URL, EX_USAGE};
use crate::telemetry::audit::OPERATOR_HEADER;

/// A failure of the command: its exit status and message.
#[derive(Debug)]
pub(super) struct Failure(pub(super) u8, pub(super) String);

impl Failure {
    pub(super) fn usage(message: impl Into<String>) -> Failure {
        Failure(EX_USAGE, message.into())
    }
    pub(super) fn failed(message: impl Into<String>) -> Failure {
        Failure(1, message.into())
    }
}

/// The admin API, as configured on the command line.
pub(super) struct Client {
    http: reqwest::Client,
    base: String,
    credentials: Option<(String, String)>,
    operator: Option<String>,
}

impl Client {
    pub(super) fn new(args: &AdminArgs, env: &HashMap<String, String>) -> Result<Client, Failure> {
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
    pub(super) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
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

    pub(super) async fn call_raw(
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
            .map_err(|e| Failure::failed(format!("{url}: {}", osb_routing::error::error_chain(&e))))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| Failure::failed(format!("{url}: {e}")))?;
        Ok((status, text))
    }

    /// `GET path` written to `out` as it arrives (a backup can be large); the response's status
    /// and headers.
    pub(super) async fn download(
        &self,
        path: &str,
        out: &mut dyn std::io::Write,
    ) -> Result<reqwest::header::HeaderMap, Failure> {
        let url = format!("{}{path}", self.base);
        // A large registry over a slow link takes its time: no overall limit on the transfer.
        let mut request = self.http.get(&url).timeout(Duration::from_secs(24 * 3600));
        if let Some((username, password)) = &self.credentials {
            request = request.basic_auth(username, Some(password));
        }
        if let Some(operator) = &self.operator {
            request = request.header(OPERATOR_HEADER, operator);
        }
        let failed = |e: &dyn std::fmt::Display| Failure::failed(format!("{url}: {e}"));
        let mut response = request
            .send()
            .await
            .map_err(|e| failed(&osb_routing::error::error_chain(&e)))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(Failure::failed(format!("{}: {text}", status.as_u16())));
        }
        let headers = response.headers().clone();
        while let Some(chunk) = response.chunk().await.map_err(|e| failed(&e))? {
            out.write_all(&chunk).map_err(|e| failed(&e))?;
        }
        out.flush().map_err(|e| failed(&e))?;
        Ok(headers)
    }

    /// Pages of a list: the items of every page (`all`) or of the first, and the next cursor.
    pub(super) async fn pages(
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
pub(super) fn with_query(path: &str, query: &[(String, String)]) -> String {
    if query.is_empty() {
        return path.to_owned();
    }
    let pairs: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{k}={}", crate::edge::parse::encode(v)))
        .collect();
    format!("{path}?{}", pairs.join("&"))
}

/// A path segment, percent-encoded.
pub(super) fn segment(id: &str) -> String {
    crate::edge::parse::encode(id)
}

pub(super) fn push(query: &mut Vec<(String, String)>, key: &str, value: Option<impl ToString>) {
    if let Some(value) = value {
        query.push((key.to_owned(), value.to_string()));
    }
}
