//! `osb-loadtests soak`: long mixed load through the gateway with one upstream flapping.
//!
//! Three in-process demo brokers serve the real OSBA, AWS and GCP catalogs; the GCP one sits behind
//! a [`FaultProxy`] that alternates healthy and faulty phases (hang, reset, 500, garbage, late).
//! The gateway runs as its own process (the release binary) on an embedded store. Workers run
//! provision → bind → unbind → deprovision loops, a third of them on each broker, plus catalog reads.
//! Measured: errors per broker (the healthy ones must have none), the healthy brokers' latency while
//! GCP is healthy and while it is faulty, the gateway's RSS over time (start after warm-up, end,
//! peak), and at the end, after the faults stop and every leftover is deleted, what the registry
//! and the upstreams still hold (nothing) and the mitigation queue (drained).
//! Writes `loadtests/results/soak-<timestamp>.md` and prints it.

// A load test, not a request path: JSON lookups by index on answers it checks itself.
#![allow(clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use osb_demo::{Behaviour, DemoBroker};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::Result;
use crate::faultproxy::FaultProxy;

const USER: &str = "soak";
const PASSWORD: &str = "soak-platform-password";
/// A worker's pause after a failed call, as a platform's retry back-off.
const BACKOFF: Duration = Duration::from_millis(250);

/// `osb-loadtests soak` options.
#[derive(Debug, Clone, clap::Args)]
pub struct SoakArgs {
    /// Length of the measured load, in seconds.
    #[arg(long, env = "SOAK_SECONDS", default_value_t = 600)]
    pub seconds: u64,
    /// Concurrent lifecycle workers (a third per broker).
    #[arg(long, env = "SOAK_WORKERS", default_value_t = 12)]
    pub workers: usize,
    /// Seconds GCP is healthy in each flap cycle.
    #[arg(long, default_value_t = 20)]
    pub healthy_secs: u64,
    /// Seconds GCP is faulty in each flap cycle.
    #[arg(long, default_value_t = 10)]
    pub faulty_secs: u64,
    /// The `osb-gateway` binary (default: the workspace's release build).
    #[arg(long)]
    pub gateway: Option<PathBuf>,
    /// Folder for the report.
    #[arg(long, default_value_os_t = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/results")))]
    pub results: PathBuf,
}

/// The service (and parameters) each broker's workers provision: bindable, parameters valid.
fn workload(broker: &str) -> (&'static str, Value) {
    match broker {
        "azure" => (
            "azure.azure-postgresql-10",
            json!({"location": "eastus", "resourceGroup": "soak"}),
        ),
        "aws" => ("aws.s3", json!({})),
        _ => ("gcp.google-bigquery", json!({})),
    }
}

const BROKERS: [(&str, &str); 3] = [
    ("azure", "azure-osba-catalog.json"),
    ("aws", "aws-servicebroker-catalog.json"),
    ("gcp", "gcp-service-broker-catalog.json"),
];

/// What the workers saw, per broker.
#[derive(Default)]
struct Tally {
    ok: BTreeMap<String, u64>,
    /// "broker operation status" → count
    errors: BTreeMap<String, u64>,
    /// Healthy brokers' call latencies (µs): while GCP healthy, while GCP faulty.
    latency_gcp_healthy: Vec<u64>,
    latency_gcp_faulty: Vec<u64>,
    /// (instance, service id, plan id) left behind by a failed step, deleted at the end.
    leftovers: Vec<(String, String, String)>,
    catalog_reads: u64,
    catalog_errors: u64,
}

/// Runs the soak (blocking).
pub fn run(args: &SoakArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(soak(args))
}

async fn soak(args: &SoakArgs) -> Result<()> {
    let fixtures = crate::default_fixtures();
    let mut brokers = Vec::new();
    for (name, file) in BROKERS {
        let catalog = Bytes::from(std::fs::read(fixtures.join(file))?);
        let behaviour = Behaviour::fast().with_latency(Duration::from_millis(2));
        brokers.push(DemoBroker::start_with(name, catalog, behaviour).await?);
    }
    let [azure, aws, gcp] = &brokers[..] else {
        return Err("three brokers".into());
    };
    let proxy = FaultProxy::start(gcp.addr()).await?;

    let dir = TempDir::new()?;
    let admin_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let gcp_entry = gcp
        .config_entry()
        .replace(&gcp.addr().to_string(), &proxy.addr().to_string());
    let per_broker = "    timeout_secs: 2\n    catalog_timeout_secs: 2\n    refresh_interval_secs: 15\n";
    let config = format!(
        "listen: \"127.0.0.1:0\"\nadmin:\n  listen: \"127.0.0.1:{admin_port}\"\nstore:\n  path: {}\n\
         platforms:\n  - name: soak\n    username: {USER}\n    password: {PASSWORD}\nbrokers:\n{}{per_broker}{}{per_broker}{}{per_broker}",
        dir.path().join("store").display(),
        azure.config_entry(),
        aws.config_entry(),
        gcp_entry,
    );
    let config_path = dir.path().join("gateway.yaml");
    std::fs::write(&config_path, config)?;
    let binary = args.gateway.clone().unwrap_or_else(|| {
        PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../target/release/osb-gateway"
        ))
    });
    let mut gateway = tokio::process::Command::new(&binary)
        .arg("serve")
        .arg("--config")
        .arg(&config_path)
        // Errors, and what mitigation does (with instance ids: the trail of any orphan).
        .env(
            "RUST_LOG",
            std::env::var("SOAK_GATEWAY_LOG").unwrap_or_else(|_| "error,osb_routing::mitigation=info".into()),
        )
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            format!(
                "{}: {e} (build it: cargo build --release -p osb-gateway)",
                binary.display()
            )
        })?;
    let pid = gateway.id().ok_or("gateway exited")?;
    let stdout = gateway.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next_line().await?.ok_or("gateway printed nothing")?;
    let url = first
        .strip_prefix("osb-gateway listening on ")
        .ok_or_else(|| format!("unexpected first line: {first}"))?
        .to_owned();
    let admin = format!("http://127.0.0.1:{admin_port}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .build()?;

    // Every broker's service and plan, from the merged catalog.
    let catalog = wait_for_catalog(&client, &url).await?;
    let mut targets = BTreeMap::new();
    for (broker, _) in BROKERS {
        let (service_name, parameters) = workload(broker);
        let service = catalog["services"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == service_name))
            .ok_or_else(|| format!("{service_name} not in the catalog"))?;
        let service_id = service["id"].as_str().ok_or("service id")?.to_owned();
        let plan_id = service["plans"][0]["id"].as_str().ok_or("plan id")?.to_owned();
        targets.insert(broker, (service_id, plan_id, parameters));
    }

    println!(
        "soak: {} s, {} workers, GCP flapping {} s healthy / {} s faulty; gateway pid {pid} at {url}",
        args.seconds, args.workers, args.healthy_secs, args.faulty_secs
    );
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let gcp_faulty = Arc::new(std::sync::atomic::AtomicBool::new(false));

    // The flapping upstream.
    let flapper = {
        let gcp_faulty = gcp_faulty.clone();
        let (healthy, faulty) = (
            Duration::from_secs(args.healthy_secs),
            Duration::from_secs(args.faulty_secs),
        );
        let proxy_handle = Arc::new(proxy);
        let proxy = proxy_handle.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(healthy).await;
                proxy.set_faulty(true);
                gcp_faulty.store(true, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(faulty).await;
                proxy.set_faulty(false);
                gcp_faulty.store(false, std::sync::atomic::Ordering::Relaxed);
            }
        });
        (task, proxy_handle)
    };

    // RSS every 5 s.
    let samples = Arc::new(Mutex::new(Vec::<(u64, f64)>::new()));
    let sampler = {
        let samples = samples.clone();
        tokio::spawn(async move {
            loop {
                let (rss, _) = crate::procstat::rss_mb(pid);
                if let Ok(mut s) = samples.lock() {
                    s.push((started.elapsed().as_secs(), rss));
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        })
    };

    let workers: Vec<_> = (0..args.workers)
        .map(|w| {
            let broker = BROKERS[w % BROKERS.len()].0;
            let (service_id, plan_id, parameters) = targets[broker].clone();
            let (client, url, tally, gcp_faulty) =
                (client.clone(), url.clone(), tally.clone(), gcp_faulty.clone());
            tokio::spawn(async move {
                let call = Call {
                    client: &client,
                    url: &url,
                    broker,
                    tally: &tally,
                    gcp_faulty: &gcp_faulty,
                };
                let mut n = 0_u64;
                while Instant::now() < deadline {
                    n += 1;
                    if n.is_multiple_of(10) {
                        call.catalog().await;
                    }
                    let instance = format!("soak-{w}-{n}");
                    let binding = format!("{instance}-b");
                    let query = format!("service_id={service_id}&plan_id={plan_id}");
                    let body =
                        json!({"service_id": service_id, "plan_id": plan_id, "parameters": parameters});
                    let leftover = || (instance.clone(), service_id.clone(), plan_id.clone());
                    if !call
                        .send(
                            "provision",
                            reqwest::Method::PUT,
                            &format!("/v2/service_instances/{instance}"),
                            Some(&body),
                            201,
                        )
                        .await
                    {
                        // The gateway cleans up what it absorbed; the platform deletes the rest.
                        tally.lock().map(|mut t| t.leftovers.push(leftover())).ok();
                        // As a platform would: back off rather than hammer a failing broker.
                        tokio::time::sleep(BACKOFF).await;
                        continue;
                    }
                    let bind_body = json!({"service_id": service_id, "plan_id": plan_id});
                    let bound = call
                        .send(
                            "bind",
                            reqwest::Method::PUT,
                            &format!("/v2/service_instances/{instance}/service_bindings/{binding}"),
                            Some(&bind_body),
                            201,
                        )
                        .await;
                    if bound {
                        call.send(
                            "unbind",
                            reqwest::Method::DELETE,
                            &format!("/v2/service_instances/{instance}/service_bindings/{binding}?{query}"),
                            None,
                            200,
                        )
                        .await;
                    }
                    if !call
                        .send(
                            "deprovision",
                            reqwest::Method::DELETE,
                            &format!("/v2/service_instances/{instance}?{query}"),
                            None,
                            200,
                        )
                        .await
                    {
                        tally.lock().map(|mut t| t.leftovers.push(leftover())).ok();
                        tokio::time::sleep(BACKOFF).await;
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await?;
    }
    let load_seconds = started.elapsed().as_secs_f64();
    let (flapper, proxy) = flapper;
    flapper.abort();
    proxy.set_faulty(false);
    let (healthy_connections, faulty_connections) = proxy.connections();

    // The platform's side of clean-up: delete what failed steps left (bindings first go with their
    // instance: the gateway unbinds nothing on a deprovision, so delete bindings explicitly).
    let leftovers = std::mem::take(&mut tally.lock().map_err(|_| "tally")?.leftovers);
    let cleanup_started = Instant::now();
    for (instance, service_id, plan_id) in &leftovers {
        let query = format!("service_id={service_id}&plan_id={plan_id}");
        for path in [
            format!("/v2/service_instances/{instance}/service_bindings/{instance}-b?{query}"),
            format!("/v2/service_instances/{instance}?{query}"),
        ] {
            let give_up = Instant::now() + Duration::from_secs(120);
            loop {
                let status = client
                    .delete(format!("{url}{path}"))
                    .basic_auth(USER, Some(PASSWORD))
                    .header("X-Broker-API-Version", "2.17")
                    .send()
                    .await
                    .map(|r| r.status().as_u16());
                // 200/410 done; 404 instance unknown (the gateway cleaned it up itself); else retry.
                if matches!(status, Ok(200 | 404 | 410)) || Instant::now() > give_up {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    // Mitigation drains.
    let drain_started = Instant::now();
    let mut counts = Value::Null;
    while drain_started.elapsed() < Duration::from_secs(180) {
        if let Ok(r) = client.get(format!("{admin}/admin/registry")).send().await {
            counts = r.json().await.unwrap_or(Value::Null);
            if counts["orphans"] == 0 && counts["pending"] == 0 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    sampler.abort();
    // What is still upstream is an orphan: keep the gateway's audit trail of each (a few).
    let mut orphans = Vec::new();
    for (broker, (name, _)) in brokers.iter().zip(BROKERS) {
        for id in broker.instances() {
            orphans.push((name, id));
        }
    }
    let mut trails = Vec::new();
    for (broker, id) in orphans.iter().take(5) {
        let audit = client
            .get(format!("{admin}/admin/audit?instance_id={id}&limit=50"))
            .send()
            .await;
        let trail: Value = match audit {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        trails.push(format!("{broker} instance {id}: {trail}"));
    }
    let (end_rss, peak_rss) = crate::procstat::rss_mb(pid);
    let store_bytes = crate::engines::disk_bytes(&dir.path().join("store"));
    // SIGTERM: a clean stop.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let exit = tokio::time::timeout(Duration::from_secs(30), gateway.wait()).await;

    let upstream: Vec<(&str, usize, usize)> = brokers
        .iter()
        .zip(BROKERS)
        .map(|(b, (name, _))| (name, b.instances().len(), b.bindings().len()))
        .collect();
    for b in &brokers {
        b.stop().await;
    }
    let tally = tally.lock().map_err(|_| "tally")?;
    let samples = samples.lock().map_err(|_| "samples")?.clone();
    let warmup = (args.seconds / 10).clamp(10, 60);
    let start_rss = samples
        .iter()
        .find(|(t, _)| *t >= warmup)
        .map_or(0.0, |(_, r)| *r);
    let last_rss = samples.last().map_or(0.0, |(_, r)| *r);
    let report = render(&Report {
        args,
        load_seconds,
        tally: &tally,
        leftovers: leftovers.len(),
        cleanup_seconds: cleanup_started.elapsed().as_secs_f64(),
        counts: &counts,
        upstream: &upstream,
        samples: &samples,
        warmup,
        start_rss,
        last_rss,
        end_rss,
        peak_rss,
        store_bytes,
        proxy_connections: (healthy_connections, faulty_connections),
        clean_exit: matches!(exit, Ok(Ok(status)) if status.success()),
        trails: &trails,
    });
    print!("{report}");
    std::fs::create_dir_all(&args.results)?;
    let stamp = chrono_stamp();
    let path = args.results.join(format!("soak-{stamp}.md"));
    std::fs::write(&path, &report)?;
    println!("\nwritten to {}", path.display());
    let healthy_errors: u64 = tally
        .errors
        .iter()
        .filter(|(k, _)| !k.starts_with("gcp "))
        .map(|(_, v)| v)
        .sum();
    if healthy_errors > 0 || tally.catalog_errors > 0 || !orphans.is_empty() {
        return Err(format!(
            "{healthy_errors} errors on healthy upstreams, {} catalog errors, {} instances left upstream",
            tally.catalog_errors,
            orphans.len()
        )
        .into());
    }
    Ok(())
}

struct Call<'a> {
    client: &'a reqwest::Client,
    url: &'a str,
    broker: &'static str,
    tally: &'a Mutex<Tally>,
    gcp_faulty: &'a std::sync::atomic::AtomicBool,
}

impl Call<'_> {
    /// One OSB call; true when it got `expected`. Tallies the outcome.
    async fn send(
        &self,
        operation: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        expected: u16,
    ) -> bool {
        let faulty_before = self.gcp_faulty.load(std::sync::atomic::Ordering::Relaxed);
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.url))
            .basic_auth(USER, Some(PASSWORD))
            .header("X-Broker-API-Version", "2.17");
        if let Some(body) = body {
            request = request.json(body);
        }
        let started = Instant::now();
        let status = request.send().await.map(|r| r.status().as_u16());
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let faulty_after = self.gcp_faulty.load(std::sync::atomic::Ordering::Relaxed);
        let Ok(mut tally) = self.tally.lock() else {
            return false;
        };
        let ok = status.as_ref().is_ok_and(|s| *s == expected);
        if ok {
            *tally.ok.entry(self.broker.to_owned()).or_default() += 1;
            if self.broker != "gcp" && faulty_before == faulty_after {
                if faulty_before {
                    tally.latency_gcp_faulty.push(micros);
                } else {
                    tally.latency_gcp_healthy.push(micros);
                }
            }
        } else {
            let what = status.map_or_else(|e| format!("transport error ({e})"), |s| s.to_string());
            *tally
                .errors
                .entry(format!("{} {operation} {what}", self.broker))
                .or_default() += 1;
        }
        ok
    }

    /// A catalog read: must always answer 200 (stale while an upstream is down).
    async fn catalog(&self) {
        let status = self
            .client
            .get(format!("{}/v2/catalog", self.url))
            .basic_auth(USER, Some(PASSWORD))
            .header("X-Broker-API-Version", "2.17")
            .send()
            .await
            .map(|r| r.status().as_u16());
        if let Ok(mut tally) = self.tally.lock() {
            tally.catalog_reads += 1;
            if !matches!(status, Ok(200)) {
                tally.catalog_errors += 1;
            }
        }
    }
}

async fn wait_for_catalog(client: &reqwest::Client, url: &str) -> Result<Value> {
    for _ in 0..300 {
        if let Ok(r) = client
            .get(format!("{url}/v2/catalog"))
            .basic_auth(USER, Some(PASSWORD))
            .header("X-Broker-API-Version", "2.17")
            .send()
            .await
        {
            if r.status() == 200 {
                return Ok(r.json().await?);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err("the gateway's catalog never came".into())
}

struct Report<'a> {
    args: &'a SoakArgs,
    load_seconds: f64,
    tally: &'a Tally,
    leftovers: usize,
    cleanup_seconds: f64,
    counts: &'a Value,
    upstream: &'a [(&'a str, usize, usize)],
    samples: &'a [(u64, f64)],
    warmup: u64,
    start_rss: f64,
    last_rss: f64,
    end_rss: f64,
    peak_rss: f64,
    store_bytes: u64,
    proxy_connections: (u64, u64),
    clean_exit: bool,
    /// The gateway's audit records of instances left upstream.
    trails: &'a [String],
}

fn percentiles(values: &[u64]) -> String {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let at = |p: f64| crate::driver::percentile(&sorted, p) as f64 / 1000.0;
    format!(
        "n={}, p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms",
        sorted.len(),
        at(50.0),
        at(99.0),
        at(99.9)
    )
}

fn render(r: &Report<'_>) -> String {
    let mut out = String::new();
    let t = r.tally;
    let _ = writeln!(out, "# Soak: {} s of mixed load, GCP flapping\n", r.args.seconds);
    let _ = writeln!(
        out,
        "Host: {} cores, load average at the end {:.2}. Workers: {} (a third per broker), each running \
         provision → bind → unbind → deprovision with fresh ids, a catalog read every 10th loop. \
         GCP behind the fault proxy: {} s healthy, {} s faulty (hang, reset, 500, garbage, 3 s late; \
         open connections cut at each fault phase); operation timeout 2 s.\n",
        std::thread::available_parallelism().map_or(0, usize::from),
        crate::procstat::load_average(),
        r.args.workers,
        r.args.healthy_secs,
        r.args.faulty_secs,
    );
    let _ = writeln!(
        out,
        "## Calls\n\n| broker | ok | calls/s | errors |\n|---|---:|---:|---:|"
    );
    for (broker, _) in BROKERS {
        let ok = t.ok.get(broker).copied().unwrap_or(0);
        let errors: u64 = t
            .errors
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{broker} ")))
            .map(|(_, v)| v)
            .sum();
        let _ = writeln!(
            out,
            "| {broker} | {ok} | {:.0} | {errors} |",
            ok as f64 / r.load_seconds
        );
    }
    let _ = writeln!(
        out,
        "| catalog reads | {} | | {} |\n",
        t.catalog_reads, t.catalog_errors
    );
    if !t.errors.is_empty() {
        let _ = writeln!(out, "Errors by broker, operation and answer:\n");
        for (what, n) in &t.errors {
            let _ = writeln!(out, "- {what}: {n}");
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "## Healthy brokers' latency (Azure, AWS)\n\n- while GCP healthy: {}\n- while GCP faulty: {}\n",
        percentiles(&t.latency_gcp_healthy),
        percentiles(&t.latency_gcp_faulty)
    );
    let _ = writeln!(
        out,
        "## Gateway memory\n\n- RSS after {} s warm-up: {:.1} MB; at the end of the load: {:.1} MB ({:+.1}%); after clean-up: {:.1} MB; peak (VmHWM): {:.1} MB\n- store file: {:.1} MB\n- samples (s → MB): {}\n",
        r.warmup,
        r.start_rss,
        r.last_rss,
        if r.start_rss > 0.0 {
            (r.last_rss / r.start_rss - 1.0) * 100.0
        } else {
            0.0
        },
        r.end_rss,
        r.peak_rss,
        r.store_bytes as f64 / 1e6,
        r.samples
            .iter()
            .step_by((r.samples.len() / 24).max(1))
            .map(|(s, m)| format!("{s}→{m:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        out,
        "## After the load\n\n- fault proxy connections: {} healthy, {} faulty\n- leftovers the workers deleted afterwards: {} (in {:.1} s)\n- gateway registry: {}\n- upstreams (instances, bindings): {}\n- clean SIGTERM exit: {}",
        r.proxy_connections.0,
        r.proxy_connections.1,
        r.leftovers,
        r.cleanup_seconds,
        r.counts,
        r.upstream
            .iter()
            .map(|(n, i, b)| format!("{n} ({i}, {b})"))
            .collect::<Vec<_>>()
            .join(", "),
        r.clean_exit
    );
    if !r.trails.is_empty() {
        let _ = writeln!(out, "\n## Left upstream: the gateway's audit of each\n");
        for trail in r.trails {
            let _ = writeln!(out, "- {trail}");
        }
    }
    out
}

/// A scratch folder for the gateway's configuration and store, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<Self> {
        let path = std::env::temp_dir().join(format!("osb-soak-{}", std::process::id()));
        std::fs::create_dir_all(&path)?;
        Ok(TempDir(path))
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `YYYY-MM-DD-HHMM` in UTC, from the system clock (no date crate for one file name).
fn chrono_stamp() -> String {
    let output = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d-%H%M"])
        .output();
    output
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map_or_else(|| "unknown".to_owned(), |s| s.trim().to_owned())
}
