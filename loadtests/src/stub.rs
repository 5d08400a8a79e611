//! `osb-loadtests stub`: the fast OSB upstream broker for benchmarks, and an OTLP sink.
//!
//! The broker is `osb_demo::DemoBroker` answering [`Answers::Fast`]: one per catalog file, each
//! on its own loopback port (`--catalog aws=FILE`), answering every instance and binding call of
//! OSB 2.17 with as little work as possible, so that a benchmark measures what sits in front of it
//! (the gateway, nginx), not the stub:
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
//! polls still owed per resource. This file is the command line around it.
//!
//! `--sink` also starts an OTLP/HTTP receiver that accepts every export (`200`, an empty
//! `ExportTraceServiceResponse`) and drops it: the gateway's trace exporter runs for real, and
//! nothing stores the spans.
//!
//! Output (stdout): one `stub url=… username=… password=… workers=… name=…` line per catalog, then
//! `sink url=…` with `--sink`, then `ready`; on SIGTERM/SIGINT
//! `stub stopped instances=N bindings=M <endpoint>=<calls>…` (the format `loadtests/run lifecycle`
//! reads), summed over the catalogs.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use osb_demo::{Answers, Behaviour, DemoBroker};
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
    /// Worker threads of each catalog's broker (and of the runtime).
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

/// What the OTLP sink received.
#[derive(Default)]
struct Sink {
    exports: AtomicU64,
    bytes: AtomicU64,
}

type Reply = Response<Full<Bytes>>;

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
    let behaviour = Behaviour {
        latency: Duration::try_from_secs_f64(args.latency_ms.max(0.0) / 1000.0)?,
        async_operations: args.asynchronous,
        async_polls: args.polls,
        workers: args.threads.max(1),
        error_rate: args.error_rate,
        answers: Answers::Fast,
        record: false,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut lines = Vec::new();
        let mut brokers = Vec::new();
        for (name, file) in &catalogs {
            let body = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
            let broker = DemoBroker::start_as(name, &password, Bytes::from(body), behaviour.clone()).await?;
            lines.push(format!(
                "stub url={} username={} password={password} workers={} name={name}",
                broker.url(),
                broker.username,
                behaviour.workers
            ));
            brokers.push(broker);
        }
        let sink = Arc::new(Sink::default());
        if args.sink {
            let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
            let addr = listener.local_addr()?;
            let sink = sink.clone();
            tokio::spawn(serve(listener, move |req: Request<Incoming>| {
                let sink = sink.clone();
                async move {
                    let bytes = req
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes().len())
                        .unwrap_or(0);
                    sink.exports.fetch_add(1, Ordering::Relaxed);
                    sink.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
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
        let (mut instances, mut bindings) = (0, 0);
        let mut calls: BTreeMap<&str, u64> = BTreeMap::new();
        for broker in &brokers {
            let (i, b) = broker.held();
            instances += i;
            bindings += b;
            for (endpoint, count) in broker.requests() {
                *calls.entry(endpoint).or_default() += count;
            }
        }
        let mut line = format!("stub stopped instances={instances} bindings={bindings}");
        for (name, count) in calls {
            write!(line, " {name}={count}")?;
        }
        if args.sink {
            write!(
                line,
                " sink_exports={} sink_bytes={}",
                sink.exports.load(Ordering::Relaxed),
                sink.bytes.load(Ordering::Relaxed)
            )?;
        }
        println!("{line}");
        for broker in &brokers {
            broker.kill().await;
        }
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
