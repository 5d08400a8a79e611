//! `osb-loadtests`: the Rust side of the load tests that `loadtests/run` drives.
//!
//! Subcommands:
//! - `merge`: cold merge time of the real OSBA, AWS and GCP catalogs, stage by stage
//!   (validate each, merge, serialize + ETag), min and median over N iterations, printed as a
//!   Markdown table (readable on a terminal, pasted as is into `loadtests/results/*.md`).
//! - `free-ports N`: N distinct free loopback TCP ports, one a line (bind to port 0, read the port,
//!   release), so the shell scripts never hard-code a port.
//! - `compare`: the benchmark of issue 8, every scenario against the stub directly, nginx and the
//!   gateway in one run, plus the registry scale runs; writes `loadtests/results/<timestamp>/`
//!   (see [`compare`], [`report`]).
//! - `stub`: the fast stub upstream broker and OTLP sink (see [`stub`]); `drive`: the load driver
//!   alone against any target (see [`driver`]); `gateway`: the gateway's `serve`, for `compare`.
//! - `scale-build`, `scale-measure`: the registry at 10k–1M instances (see [`scale`]).
//! - `console`: the console's page weight and latency with 100k instances (see [`console`]).
//! - `plan-ids`, `lifecycle`: the service/plan id lookup by name and the reqwest closed-loop
//!   lifecycle driver that `loadtests/run lifecycle` uses (see [`lifecycle`]).
//!
//! A benchmark binary: errors end `main` with a message (`?`). `stub` and `gateway` serve requests
//! (until SIGTERM); everything else runs to completion.

use std::error::Error;
use std::hint::black_box;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use osb_config::{BrokerSettings, IdMode, UpstreamAuth};
use osb_routing::cache::strong_etag;
use osb_routing::catalog::{BrokerCatalog, Validated, merge, validate_catalog};
use url::Url;

mod compare;
mod console;
mod driver;
mod engines;
mod faultproxy;
mod lifecycle;
mod nginx;
mod pgstore;
mod procstat;
mod report;
mod scale;
mod soak;
mod stub;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// The three real catalogs, in the demo's merge order: (broker name, fixture file).
const CATALOGS: [(&str, &str); 3] = [
    ("azure", "azure-osba-catalog.json"),
    ("aws", "aws-servicebroker-catalog.json"),
    ("gcp", "gcp-service-broker-catalog.json"),
];

/// The separator the gateway uses by default (`catalog.name_separator`).
const SEPARATOR: &str = ".";

#[derive(Debug, Parser)]
#[command(
    name = "osb-loadtests",
    about = "Helpers and Rust-side benchmarks for loadtests/run."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Time validate → merge → serialize + ETag of the three real catalogs.
    Merge {
        /// Measured iterations (after the warm-up ones).
        #[arg(long, short = 'n', env = "MERGE_ITERATIONS", default_value_t = 30)]
        iterations: usize,
        /// Unmeasured iterations first.
        #[arg(long, env = "MERGE_WARMUP", default_value_t = 3)]
        warmup: usize,
        /// Folder holding the catalog fixtures.
        #[arg(long, default_value_os_t = default_fixtures())]
        fixtures: PathBuf,
    },
    /// Print N distinct free loopback TCP ports, one a line.
    FreePorts {
        #[arg(default_value_t = 1)]
        count: usize,
    },
    /// Every scenario against the stub directly, nginx and the gateway; registry scale; the report.
    Compare(compare::CompareArgs),
    /// Run the fast stub upstream broker (and OTLP sink) until SIGTERM (prints URLs and credentials).
    Stub(stub::StubArgs),
    /// Run one load (closed or open loop) against a target and print its statistics as JSON.
    Drive(DriveArgs),
    /// Run the gateway (`osb-gateway serve`) from a configuration file, until SIGTERM.
    Gateway(compare::GatewayArgs),
    /// Write a registry of N instances through the store API.
    ScaleBuild(scale::BuildArgs),
    /// Open a registry in this fresh process and time start-up, RSS and lookups (JSON).
    ScaleMeasure(scale::MeasureArgs),
    /// The registry's durable write path alone (no HTTP): lifecycles per second, CPU per write.
    RegistryBench(scale::RegistryBenchArgs),
    /// The console's pages with a large registry: bytes transferred and latency per page.
    Console(console::ConsoleArgs),
    /// The storage engines the registry could stand on, on its write pattern (key-value level).
    Engines(engines::EnginesArgs),
    /// Print the ids of a (bindable) service and plan found by name in a target's catalog.
    PlanIds(lifecycle::PlanIdsArgs),
    /// Closed-loop provision → bind → unbind → deprovision load; one line per operation.
    Lifecycle(lifecycle::LifecycleArgs),
    /// Long mixed load through the gateway with one upstream flapping; errors, latency, RSS.
    Soak(soak::SoakArgs),
}

fn default_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/catalogs")
}

/// The gateway's own allocator, so the gateway measured here allocates as `osb-gateway serve` does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // As `osb-gateway` does: the gateway measured here (`osb-loadtests gateway`) in small pages.
    osb_gateway::process::small_pages();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Merge {
            iterations,
            warmup,
            fixtures,
        } => run_merge(iterations, warmup, &fixtures),
        Command::FreePorts { count } => free_ports(count),
        Command::Compare(args) => compare::run(&args),
        Command::Stub(args) => stub::run(&args),
        Command::Drive(args) => run_drive(&args),
        Command::Gateway(args) => compare::run_gateway(&args),
        Command::ScaleBuild(args) => scale::run_build(&args),
        Command::ScaleMeasure(args) => scale::run_measure(&args),
        Command::RegistryBench(args) => scale::run_registry_bench(&args),
        Command::Engines(args) => engines::run(&args),
        Command::Console(args) => console::run(&args),
        Command::PlanIds(args) => lifecycle::plan_ids(&args),
        Command::Lifecycle(args) => lifecycle::run_lifecycle(&args),
        Command::Soak(args) => soak::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("osb-loadtests: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `osb-loadtests drive` options.
#[derive(Debug, Clone, clap::Args)]
struct DriveArgs {
    /// `host:port` of the target.
    #[arg(long)]
    target: std::net::SocketAddr,
    /// Basic auth `user:password`.
    #[arg(long)]
    basic: Option<String>,
    #[arg(long, value_enum, default_value = "lifecycle")]
    scenario: driver::Scenario,
    /// Service and plan ids (lifecycle, mixed), as the target knows them.
    #[arg(long, default_value = "")]
    service_id: String,
    #[arg(long, default_value = "")]
    plan_id: String,
    /// Provision parameters (JSON object).
    #[arg(long, default_value = "{}")]
    parameters: String,
    /// Open loop at this many units per second; closed loop without it.
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long, short = 'c', default_value_t = 32)]
    connections: usize,
    #[arg(long, short = 'd', default_value = "10s", value_parser = driver::parse_duration)]
    duration: Duration,
    #[arg(long, default_value = "1s", value_parser = driver::parse_duration)]
    warmup: Duration,
    #[arg(long, default_value = "10s", value_parser = driver::parse_duration)]
    timeout: Duration,
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

fn run_drive(args: &DriveArgs) -> Result<()> {
    use base64::Engine;
    let authorization = args
        .basic
        .as_ref()
        .map(|b| {
            reqwest::header::HeaderValue::from_str(&format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(b)
            ))
        })
        .transpose()?;
    let parameters: serde_json::Value = serde_json::from_str(&args.parameters)?;
    let calls = driver::Calls::new(&args.service_id, &args.plan_id, &parameters)?;
    let load = driver::Load {
        scenario: args.scenario,
        mode: args
            .rate
            .map_or(driver::Mode::Closed, |rate| driver::Mode::Open { rate }),
        connections: args.connections,
        warmup: args.warmup,
        duration: args.duration,
        timeout: args.timeout,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    let target = driver::Target {
        addr: args.target,
        authorization: authorization
            .map(|h| http::HeaderValue::from_bytes(h.as_bytes()))
            .transpose()?,
    };
    let stats = runtime.block_on(driver::run(target, calls, &load))?;
    println!("{}", serde_json::to_string_pretty(&stats)?);
    Ok(())
}

fn free_ports(count: usize) -> Result<()> {
    // Hold every listener until all are bound, so the ports are distinct.
    let listeners = (0..count)
        .map(|_| TcpListener::bind(("127.0.0.1", 0)))
        .collect::<std::io::Result<Vec<_>>>()?;
    for listener in &listeners {
        println!("{}", listener.local_addr()?.port());
    }
    Ok(())
}

/// A broker's settings as the gateway would build them from `- name: <name>` with defaults.
fn broker_settings(name: &str) -> Result<BrokerSettings> {
    Ok(BrokerSettings {
        name: name.to_owned(),
        url: Url::parse(&format!("http://{name}.invalid"))?,
        auth: UpstreamAuth::None,
        auth_file: None,
        namespace: name.to_owned(),
        ids: IdMode::Rewrite,
        api_version: osb_config::DEFAULT_API_VERSION.to_owned(),
        refresh_interval: Duration::from_secs(osb_config::DEFAULT_REFRESH_INTERVAL_SECS),
        timeout: Duration::from_secs(osb_config::DEFAULT_TIMEOUT_SECS),
        catalog_timeout: Duration::from_secs(osb_config::DEFAULT_TIMEOUT_SECS),
        breaker_failures: 5,
        breaker_open: Duration::from_secs(10),
        rename: Default::default(),
        catalog_limits: Default::default(),
        tls: osb_config::ClientTls::default(),
    })
}

/// The durations of one iteration, one per stage.
#[derive(Debug, Default, Clone)]
struct Sample {
    validate: Vec<Duration>,
    merge: Duration,
    serialize: Duration,
    total: Duration,
}

/// Picks one stage's duration out of a sample.
type Stage = fn(&Sample) -> Duration;

/// What one iteration produced, for the summary line.
#[derive(Debug, Default)]
struct Output {
    services: usize,
    plans: usize,
    dropped: usize,
    body_len: usize,
    etag: String,
}

fn run_merge(iterations: usize, warmup: usize, fixtures: &Path) -> Result<()> {
    if iterations == 0 {
        return Err("--iterations must be at least 1".into());
    }
    let mut inputs = Vec::new();
    for (name, file) in CATALOGS {
        let path = fixtures.join(file);
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        inputs.push((name, broker_settings(name)?, bytes));
    }

    let mut samples = Vec::with_capacity(iterations);
    let mut output = Output::default();
    for i in 0..warmup + iterations {
        let (sample, out) = iteration(&inputs)?;
        if i >= warmup {
            samples.push(sample);
        }
        output = out;
    }

    let input_len: usize = inputs.iter().map(|(_, _, b)| b.len()).sum();
    println!(
        "Cold merge of {} catalogs ({} bytes in) → {} services, {} plans, {} dropped, {} bytes out, ETag {}",
        inputs.len(),
        input_len,
        output.services,
        output.plans,
        output.dropped,
        output.body_len,
        output.etag
    );
    println!("{iterations} measured iterations after {warmup} warm-up; single thread.\n");
    println!("| stage | input | min (ms) | median (ms) |");
    println!("|---|---:|---:|---:|");
    for (i, (name, _, bytes)) in inputs.iter().enumerate() {
        let stage = samples
            .iter()
            .map(|s| s.validate.get(i).copied().unwrap_or_default());
        let (min, median) = min_median(stage);
        println!(
            "| validate_catalog({name}) | {} KB | {} | {} |",
            bytes.len() / 1024,
            ms(min),
            ms(median)
        );
    }
    let rows: [(&str, String, Stage); 3] = [
        (
            "merge (3 brokers)",
            format!("{} services", output.services),
            |s| s.merge,
        ),
        (
            "serde_json::to_vec + strong_etag",
            format!("{} KB", output.body_len / 1024),
            |s| s.serialize,
        ),
        (
            "total (validate ×3 + merge + serialize)",
            format!("{} KB", input_len / 1024),
            |s| s.total,
        ),
    ];
    for (stage, input, pick) in rows {
        let (min, median) = min_median(samples.iter().map(pick));
        println!("| {stage} | {input} | {} | {} |", ms(min), ms(median));
    }
    Ok(())
}

fn iteration(inputs: &[(&str, BrokerSettings, Vec<u8>)]) -> Result<(Sample, Output)> {
    let mut sample = Sample::default();
    let started = Instant::now();

    let mut validated: Vec<Validated> = Vec::with_capacity(inputs.len());
    for (name, _, bytes) in inputs {
        let t = Instant::now();
        let v = validate_catalog(name, black_box(bytes))?;
        sample.validate.push(t.elapsed());
        validated.push(v);
    }

    let t = Instant::now();
    let catalogs: Vec<BrokerCatalog<'_>> = inputs
        .iter()
        .zip(&validated)
        .map(|((_, broker, _), v)| BrokerCatalog {
            broker,
            services: &v.services,
        })
        .collect();
    let merged = merge(&catalogs, SEPARATOR);
    sample.merge = t.elapsed();

    let t = Instant::now();
    let body = serde_json::to_vec(&merged.catalog)?;
    let etag = strong_etag(&body);
    sample.serialize = t.elapsed();
    sample.total = started.elapsed();

    let output = Output {
        services: merged.catalog.services.len(),
        plans: merged.catalog.services.iter().map(|s| s.plans.len()).sum(),
        dropped: merged.dropped.len() + validated.iter().map(|v| v.dropped.len()).sum::<usize>(),
        body_len: body.len(),
        etag: black_box(etag),
    };
    Ok((sample, output))
}

fn min_median(values: impl Iterator<Item = Duration>) -> (Duration, Duration) {
    let mut values: Vec<Duration> = values.collect();
    values.sort_unstable();
    let min = values.first().copied().unwrap_or_default();
    let median = values.get(values.len() / 2).copied().unwrap_or_default();
    (min, median)
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}
