//! `osb-loadtests stub`: a fast OSB upstream broker for benchmarks, and an OTLP sink.
//!
//! It serves one or more catalog files, each on its own loopback port (`--catalog aws=FILE`), and
//! answers every instance and binding call of OSB 2.17 with as little work as possible, so that a
//! benchmark measures what sits in front of it (the gateway, nginx), not the stub:
//! - `GET /v2/catalog`: the file's bytes with a strong ETag (`If-None-Match` → 304);
//! - provision, bind: 201 (a bind carries credentials); update: 200; unbind, deprovision: 200 `{}`;
//!   with `--async`, calls that carry `accepts_incomplete=true` answer 202 with an `operation`
//!   and `last_operation` says "in progress" `--polls` times, then "succeeded";
//! - `--latency-ms` is added to every instance and binding call (not to the catalog);
//! - `--error-rate` answers that share of instance and binding calls with 500 (an OSB error body),
//!   after consuming the request.
//!
//! Each call checks basic auth and `X-Broker-API-Version` (401, 412) and reads the whole body; it
//! does not parse it. The stub keeps no records, only counters (calls per endpoint, instances and
//! bindings created minus deleted, so a run can check that nothing leaked) and, in async mode, the
//! polls still owed per resource.
//!
//! `--sink` also starts an OTLP/HTTP receiver that accepts every export (`200`, an empty
//! `ExportTraceServiceResponse`) and drops it: the gateway's trace exporter runs for real, and
//! nothing stores the spans.
//!
//! Output (stdout): one `stub url=… username=… password=… workers=… name=…` line per catalog, then
//! `sink url=…` with `--sink`, then `ready`; on SIGTERM/SIGINT
//! `stub stopped instances=N bindings=M <endpoint>=<calls>…` (the format `loadtests/run lifecycle`
//! reads).

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::Result;

/// `osb-loadtests stub` options.
#[derive(Debug, Clone, clap::Args)]
pub struct StubArgs {
    /// A catalog to serve, `NAME=FILE` (or just `FILE`, named `--name`); repeat for several, each
    /// on its own port. Default: the AWS Service Broker fixture.
    #[arg(long = "catalog")]
    pub catalogs: Vec<String>,
    /// Name of a catalog given without `NAME=`: its user is `<name>-broker`.
    #[arg(long, default_value = "aws")]
    pub name: String,
    /// Password of every catalog's user (random by default).
    #[arg(long)]
    pub password: Option<String>,
    /// Runtime worker threads.
    #[arg(long, alias = "workers", default_value_t = 1)]
    pub threads: usize,
    /// Added to every instance and binding call, in milliseconds (fractions allowed).
    #[arg(long, default_value_t = 0.0)]
    pub latency_ms: f64,
    /// Share (0.0–1.0) of instance and binding calls answered 500.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Answer 202 to calls with `accepts_incomplete=true`.
    #[arg(long = "async")]
    pub asynchronous: bool,
    /// "in progress" answers of `last_operation` before "succeeded" (async mode).
    #[arg(long, default_value_t = 1)]
    pub polls: u32,
    /// Also run an OTLP/HTTP sink that accepts and drops every export.
    #[arg(long)]
    pub sink: bool,
}

/// The kinds of call the stub counts, in the order they are reported.
const ENDPOINTS: [&str; 10] = [
    "bind",
    "binding_last_operation",
    "catalog",
    "deprovision",
    "fetch_binding",
    "fetch_instance",
    "instance_last_operation",
    "provision",
    "unbind",
    "update",
];

fn endpoint_index(name: &str) -> usize {
    ENDPOINTS.iter().position(|e| *e == name).unwrap_or(0)
}

/// Shared by every listener of one stub process.
struct Counters {
    calls: [AtomicU64; ENDPOINTS.len()],
    instances: AtomicI64,
    bindings: AtomicI64,
    sink_exports: AtomicU64,
    sink_bytes: AtomicU64,
    /// Decides which calls fail (`--error-rate`), spread evenly.
    sequence: AtomicU64,
}

/// Polls still owed per resource id (async mode), sharded to keep the locks short.
struct Operations {
    shards: Vec<Mutex<HashMap<String, u32>>>,
}

impl Operations {
    fn new() -> Self {
        Operations {
            shards: (0..16).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, id: &str) -> Option<&Mutex<HashMap<String, u32>>> {
        let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        self.shards.get((hash % self.shards.len() as u64) as usize)
    }

    fn start(&self, id: &str, polls: u32) {
        if let Some(shard) = self.shard(id) {
            shard
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(id.to_owned(), polls);
        }
    }

    /// `true` while the operation is still in progress (one poll is spent).
    fn poll(&self, id: &str) -> bool {
        let Some(shard) = self.shard(id) else {
            return false;
        };
        let mut map = shard.lock().unwrap_or_else(PoisonError::into_inner);
        match map.get_mut(id) {
            Some(left) if *left > 0 => {
                *left -= 1;
                true
            }
            Some(_) => {
                map.remove(id);
                false
            }
            None => false,
        }
    }
}

/// One served catalog and how calls are answered.
struct Upstream {
    catalog: Bytes,
    etag: HeaderValue,
    authorization: HeaderValue,
    latency: Duration,
    error_rate: f64,
    asynchronous: bool,
    polls: u32,
    counters: Arc<Counters>,
    operations: Arc<Operations>,
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, body: &'static [u8]) -> Reply {
    let mut response = Response::new(Full::new(Bytes::from_static(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// What a path names.
enum Route<'a> {
    Catalog,
    Instance(&'a str),
    InstanceLastOperation(&'a str),
    Binding(&'a str),
    BindingLastOperation(&'a str),
    Unknown,
}

fn route(path: &str) -> Route<'_> {
    if path == "/v2/catalog" {
        return Route::Catalog;
    }
    let Some(rest) = path.strip_prefix("/v2/service_instances/") else {
        return Route::Unknown;
    };
    let mut parts = rest.split('/');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some(i), None, ..) if !i.is_empty() => Route::Instance(i),
        (Some(i), Some("last_operation"), None, ..) => Route::InstanceLastOperation(i),
        (Some(_), Some("service_bindings"), Some(b), None, _) if !b.is_empty() => Route::Binding(b),
        (Some(_), Some("service_bindings"), Some(b), Some("last_operation"), None) => {
            Route::BindingLastOperation(b)
        }
        _ => Route::Unknown,
    }
}

impl Upstream {
    fn count(&self, endpoint: &str) {
        if let Some(counter) = self.counters.calls.get(endpoint_index(endpoint)) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether this call is one of the `--error-rate` share that fails.
    fn fails(&self) -> bool {
        if self.error_rate <= 0.0 {
            return false;
        }
        // A low-discrepancy sequence: exactly the configured share over any long run.
        let n = self.counters.sequence.fetch_add(1, Ordering::Relaxed);
        let x = (n as f64 * 0.618_033_988_749_895).fract();
        x < self.error_rate
    }

    async fn handle(&self, req: Request<Incoming>) -> Reply {
        if req.headers().get(AUTHORIZATION) != Some(&self.authorization) {
            return reply(StatusCode::UNAUTHORIZED, b"{\"description\":\"unauthorized\"}");
        }
        if !req.headers().contains_key("x-broker-api-version") {
            return reply(
                StatusCode::PRECONDITION_FAILED,
                b"{\"description\":\"X-Broker-API-Version is required\"}",
            );
        }
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let accepts_incomplete = req
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|kv| kv == "accepts_incomplete=true"));
        let if_none_match = req.headers().get(IF_NONE_MATCH).cloned();
        // Read (and drop) the whole body, as a broker would.
        if req.into_body().collect().await.is_err() {
            return reply(StatusCode::BAD_REQUEST, b"{\"description\":\"unreadable body\"}");
        }
        let route = route(&path);
        if let Route::Catalog = route {
            self.count("catalog");
            if method != Method::GET {
                return reply(StatusCode::METHOD_NOT_ALLOWED, b"{}");
            }
            if if_none_match.as_ref() == Some(&self.etag) {
                let mut response = reply(StatusCode::NOT_MODIFIED, b"");
                response.headers_mut().insert(ETAG, self.etag.clone());
                return response;
            }
            let mut response = Response::new(Full::new(self.catalog.clone()));
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert(ETAG, self.etag.clone());
            return response;
        }
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let polling = matches!(
            route,
            Route::InstanceLastOperation(_) | Route::BindingLastOperation(_)
        );
        if !polling && !matches!(route, Route::Unknown) && self.fails() {
            return reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                b"{\"description\":\"injected failure (--error-rate)\"}",
            );
        }
        let deferred = self.asynchronous && accepts_incomplete;
        match (route, method) {
            (Route::Instance(id), Method::PUT) => {
                self.count("provision");
                self.counters.instances.fetch_add(1, Ordering::Relaxed);
                if deferred {
                    self.operations.start(id, self.polls);
                    reply(StatusCode::ACCEPTED, b"{\"operation\":\"provisioning\"}")
                } else {
                    reply(
                        StatusCode::CREATED,
                        b"{\"dashboard_url\":\"http://stub.invalid/dashboard\"}",
                    )
                }
            }
            (Route::Instance(id), Method::PATCH) => {
                self.count("update");
                if deferred {
                    self.operations.start(id, self.polls);
                    reply(StatusCode::ACCEPTED, b"{\"operation\":\"updating\"}")
                } else {
                    reply(StatusCode::OK, b"{}")
                }
            }
            (Route::Instance(id), Method::DELETE) => {
                self.count("deprovision");
                self.counters.instances.fetch_sub(1, Ordering::Relaxed);
                if deferred {
                    self.operations.start(id, self.polls);
                    reply(StatusCode::ACCEPTED, b"{\"operation\":\"deprovisioning\"}")
                } else {
                    reply(StatusCode::OK, b"{}")
                }
            }
            (Route::Instance(_), Method::GET) => {
                self.count("fetch_instance");
                reply(StatusCode::OK, b"{\"parameters\":{}}")
            }
            (Route::Binding(id), Method::PUT) => {
                self.count("bind");
                self.counters.bindings.fetch_add(1, Ordering::Relaxed);
                if deferred {
                    self.operations.start(id, self.polls);
                    reply(StatusCode::ACCEPTED, b"{\"operation\":\"binding\"}")
                } else {
                    reply(
                        StatusCode::CREATED,
                        b"{\"credentials\":{\"uri\":\"stub://user:secret@stub.invalid/queue\"}}",
                    )
                }
            }
            (Route::Binding(id), Method::DELETE) => {
                self.count("unbind");
                self.counters.bindings.fetch_sub(1, Ordering::Relaxed);
                if deferred {
                    self.operations.start(id, self.polls);
                    reply(StatusCode::ACCEPTED, b"{\"operation\":\"unbinding\"}")
                } else {
                    reply(StatusCode::OK, b"{}")
                }
            }
            (Route::Binding(_), Method::GET) => {
                self.count("fetch_binding");
                reply(
                    StatusCode::OK,
                    b"{\"credentials\":{\"uri\":\"stub://user:secret@stub.invalid/queue\"}}",
                )
            }
            (Route::InstanceLastOperation(id), Method::GET) => {
                self.count("instance_last_operation");
                self.last_operation(id)
            }
            (Route::BindingLastOperation(id), Method::GET) => {
                self.count("binding_last_operation");
                self.last_operation(id)
            }
            _ => reply(StatusCode::NOT_FOUND, b"{\"description\":\"no such endpoint\"}"),
        }
    }

    fn last_operation(&self, id: &str) -> Reply {
        if self.operations.poll(id) {
            reply(StatusCode::OK, b"{\"state\":\"in progress\"}")
        } else {
            reply(StatusCode::OK, b"{\"state\":\"succeeded\"}")
        }
    }
}

/// Serves `handle` on every connection `listener` accepts, HTTP/1.1 keep-alive.
async fn serve<F, Fut>(listener: TcpListener, handle: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Reply> + Send + 'static,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let handle = handle.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let handle = handle.clone();
                async move { Ok::<_, Infallible>(handle(req).await) }
            });
            // A connection the peer closed (or broke) just ends.
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// `NAME=FILE` or `FILE`.
fn catalog_arg(text: &str, default_name: &str) -> (String, PathBuf) {
    match text.split_once('=') {
        Some((name, file)) if !name.is_empty() && !name.contains('/') => {
            (name.to_owned(), PathBuf::from(file))
        }
        _ => (default_name.to_owned(), PathBuf::from(text)),
    }
}

/// Runs the stub until SIGTERM or SIGINT.
pub fn run(args: &StubArgs) -> Result<()> {
    if !(0.0..=1.0).contains(&args.error_rate) {
        return Err("--error-rate must be between 0 and 1".into());
    }
    let mut catalogs: Vec<(String, PathBuf)> =
        args.catalogs.iter().map(|c| catalog_arg(c, &args.name)).collect();
    if catalogs.is_empty() {
        catalogs.push((
            args.name.clone(),
            crate::default_fixtures().join("aws-servicebroker-catalog.json"),
        ));
    }
    let password = args
        .password
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let counters = Arc::new(Counters {
        calls: Default::default(),
        instances: AtomicI64::new(0),
        bindings: AtomicI64::new(0),
        sink_exports: AtomicU64::new(0),
        sink_bytes: AtomicU64::new(0),
        sequence: AtomicU64::new(0),
    });
    let operations = Arc::new(Operations::new());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut lines = Vec::new();
        for (name, file) in &catalogs {
            let body = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
            let username = format!("{name}-broker");
            let authorization = HeaderValue::from_str(&format!(
                "Basic {}",
                STANDARD.encode(format!("{username}:{password}"))
            ))?;
            let etag = HeaderValue::from_str(&osb_routing::cache::strong_etag(&body))?;
            let upstream = Arc::new(Upstream {
                catalog: Bytes::from(body),
                etag,
                authorization,
                latency: Duration::try_from_secs_f64(args.latency_ms.max(0.0) / 1000.0)?,
                error_rate: args.error_rate,
                asynchronous: args.asynchronous,
                polls: args.polls,
                counters: counters.clone(),
                operations: operations.clone(),
            });
            let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
            let addr: SocketAddr = listener.local_addr()?;
            tokio::spawn(serve(listener, move |req| {
                let upstream = upstream.clone();
                async move { upstream.handle(req).await }
            }));
            lines.push(format!(
                "stub url=http://{addr} username={username} password={password} workers={} name={name}",
                args.threads.max(1)
            ));
        }
        if args.sink {
            let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
            let addr = listener.local_addr()?;
            let counters = counters.clone();
            tokio::spawn(serve(listener, move |req: Request<Incoming>| {
                let counters = counters.clone();
                async move {
                    let bytes = req
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes().len())
                        .unwrap_or(0);
                    counters.sink_exports.fetch_add(1, Ordering::Relaxed);
                    counters.sink_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
                    let mut response = Response::new(Full::new(Bytes::new()));
                    response
                        .headers_mut()
                        .insert(CONTENT_TYPE, HeaderValue::from_static("application/x-protobuf"));
                    response
                }
            }));
            lines.push(format!("sink url=http://{addr}"));
        }
        lines.push("ready".to_owned());
        {
            use std::io::Write as _;
            let mut stdout = std::io::stdout();
            for line in &lines {
                writeln!(stdout, "{line}")?;
            }
            stdout.flush()?;
        }
        stop_signal().await?;
        let mut line = format!(
            "stub stopped instances={} bindings={}",
            counters.instances.load(Ordering::Relaxed),
            counters.bindings.load(Ordering::Relaxed)
        );
        for (name, calls) in ENDPOINTS.iter().zip(&counters.calls) {
            write!(line, " {name}={}", calls.load(Ordering::Relaxed))?;
        }
        if args.sink {
            write!(
                line,
                " sink_exports={} sink_bytes={}",
                counters.sink_exports.load(Ordering::Relaxed),
                counters.sink_bytes.load(Ordering::Relaxed)
            )?;
        }
        println!("{line}");
        Ok(())
    })
}

async fn stop_signal() -> std::io::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        interrupted = tokio::signal::ctrl_c() => interrupted,
        _ = terminate.recv() => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert!(matches!(route("/v2/catalog"), Route::Catalog));
        assert!(matches!(route("/v2/service_instances/i1"), Route::Instance("i1")));
        assert!(matches!(
            route("/v2/service_instances/i1/last_operation"),
            Route::InstanceLastOperation("i1")
        ));
        assert!(matches!(
            route("/v2/service_instances/i1/service_bindings/b1"),
            Route::Binding("b1")
        ));
        assert!(matches!(
            route("/v2/service_instances/i1/service_bindings/b1/last_operation"),
            Route::BindingLastOperation("b1")
        ));
        assert!(matches!(route("/v2/service_instances/"), Route::Unknown));
        assert!(matches!(route("/other"), Route::Unknown));
    }

    #[test]
    fn polls_count_down() {
        let ops = Operations::new();
        ops.start("x", 2);
        assert!(ops.poll("x"));
        assert!(ops.poll("x"));
        assert!(!ops.poll("x"));
        assert!(!ops.poll("never-started"));
    }
}
