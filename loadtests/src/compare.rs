//! `osb-loadtests compare`: every scenario against the stub directly, nginx and the gateway, in
//! one run, one command; then the registry scale runs; then the report
//! (`loadtests/results/<UTC timestamp>/`: `report.md`, `report.json`, PNG charts).
//!
//! What runs (every process is this binary or nginx, on loopback ports bound to 0):
//! 1. `osb-loadtests stub` serving the three real catalogs (azure, aws, gcp fixtures) on three
//!    ports, asynchronous when asked (`accepts_incomplete`), plus the OTLP sink that drops spans.
//! 2. The gateway's embedded store is seeded with `--seed-instances` ready instances (100k by
//!    default) through the store API, so RSS is measured with a populated registry.
//! 3. `osb-loadtests gateway` (the gateway's own `serve`, in its own process) with platform basic
//!    auth, a policy file (visibility, parameter defaults, deny rules, rate limits set far above
//!    the load), durable registry writes and traces exported over OTLP (sampling ratio 1) to the sink.
//! 4. A second stub serving the gateway's merged catalog bytes (the catalog scenario's "direct"),
//!    and nginx: the same bytes from a file, and a keep-alive proxy to the aws stub.
//! 5. Per scenario (`catalog`, `lifecycle`, `mixed`) and target (`direct`, `nginx`, `gateway`):
//!    a closed-loop run (saturation throughput), then open-loop runs at half the gateway's
//!    saturation rate (latency added at a sane load). CPU per process group is read from /proc.
//! 6. Registry scale (`scale-build`, then `scale-measure` in a fresh process) per size.
//!
//! Also `osb-loadtests gateway --config FILE`: the gateway's `serve` with the same set-up as
//! `osb-gateway serve` (telemetry from the config), so the harness needs no other binary.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::Result;
use crate::driver::{self, Calls, Load, Mode, Scenario, Target, parse_duration};
use crate::procstat::{self, signal};
use crate::report::{Measured, Report};
use crate::scale::Measurement;

/// `osb-loadtests compare` options.
#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// Measured seconds of each closed-loop run.
    #[arg(long, default_value = "4s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Unmeasured load before each run.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Measured seconds of each open-loop run (0 skips them).
    #[arg(long, default_value = "4s", value_parser = parse_duration)]
    pub open_duration: Duration,
    /// Connections of the closed-loop runs (one call in flight each).
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Most connections of the open-loop runs.
    #[arg(long, default_value_t = 64)]
    pub open_connections: usize,
    /// Open-loop rate as a share of the gateway's closed-loop throughput.
    #[arg(long, default_value_t = 0.5)]
    pub open_share: f64,
    /// Scenarios, comma-separated.
    #[arg(long, value_delimiter = ',', default_values = ["catalog", "catalog-gzip", "provision", "lifecycle", "mixed"])]
    pub scenarios: Vec<Scenario>,
    /// Registry sizes of the scale runs, comma-separated (empty: none).
    #[arg(long, value_delimiter = ',', default_values = ["10000", "100000", "1000000"])]
    pub scale: Vec<usize>,
    /// Skip the registry scale runs.
    #[arg(long)]
    pub no_scale: bool,
    /// Instances in the gateway's registry before the load starts.
    #[arg(long, default_value_t = 100_000)]
    pub seed_instances: usize,
    /// Runtime threads of the load driver.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Runtime threads of the stub.
    #[arg(long, default_value_t = 1)]
    pub stub_threads: usize,
    /// Polls of each asynchronous operation ("in progress" answers before "succeeded").
    #[arg(long, default_value_t = 2)]
    pub polls: u32,
    /// Per-call timeout.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Where the report goes (default: loadtests/results/<UTC timestamp>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Where the run's temporary files go (store, configs, logs); the store's filesystem decides
    /// what a durable write costs. Default: the system temp folder.
    #[arg(long)]
    pub tmp: Option<PathBuf>,
    /// Keep the temporary folder (logs, configs, the store).
    #[arg(long)]
    pub keep: bool,
    /// Run without nginx when it is missing (its rows are left out) instead of failing.
    #[arg(long)]
    pub allow_no_nginx: bool,
    /// Run the gateways on the PostgreSQL store of this server
    /// (`postgres://user@host:port/database`): the run creates a database of its own there
    /// (`osb_compare_<random>`), seeds it, and drops it at the end (unless `--keep`).
    #[arg(long)]
    pub postgres: Option<String>,
    /// The `osb-loadtests` binary whose `gateway` subcommand runs the two gateways (default: this
    /// one): an A/B of two builds against the same stub, driver and nginx.
    #[arg(long)]
    pub gateway_exe: Option<PathBuf>,
}

fn log(message: impl AsRef<str>) {
    eprintln!("compare: {}", message.as_ref());
}

/// A child process that is stopped (SIGTERM, then SIGKILL) when dropped.
struct Process {
    name: &'static str,
    child: Child,
    stdout: Option<BufReader<ChildStdout>>,
}

impl Process {
    fn spawn(name: &'static str, command: &mut Command, log_file: &Path) -> Result<Self> {
        let stderr = std::fs::File::create(log_file)?;
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("start {name}: {e}"))?;
        let stdout = child.stdout.take().map(BufReader::new);
        Ok(Process { name, child, stdout })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Lines of stdout until one equal to `last` (or starting with it); fails if the process exits.
    fn read_until(&mut self, last: &str) -> Result<Vec<String>> {
        let Some(stdout) = self.stdout.as_mut() else {
            return Err(format!("{}: no stdout", self.name).into());
        };
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            if stdout.read_line(&mut line)? == 0 {
                return Err(format!("{} exited before saying {last:?}", self.name).into());
            }
            let line = line.trim_end().to_owned();
            let done = line.starts_with(last);
            lines.push(line);
            if done {
                return Ok(lines);
            }
        }
    }

    /// SIGTERM, wait (at most 10 s), then the rest of stdout.
    fn stop(&mut self) -> String {
        signal(self.child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut rest = String::new();
        if let Some(stdout) = self.stdout.as_mut() {
            let _ = std::io::Read::read_to_string(stdout, &mut rest);
        }
        rest
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            signal(self.child.id(), "TERM");
            std::thread::sleep(Duration::from_millis(200));
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `key=value` out of a `stub url=… username=…` line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
}

/// A stub listener as its start line describes it.
#[derive(Debug, Clone)]
struct StubListener {
    name: String,
    addr: SocketAddr,
    username: String,
    password: String,
}

fn stub_listeners(lines: &[String]) -> Result<Vec<StubListener>> {
    lines
        .iter()
        .filter(|l| l.starts_with("stub url="))
        .map(|line| {
            let url = field(line, "url").ok_or("stub line without url")?;
            Ok(StubListener {
                name: field(line, "name").unwrap_or("stub").to_owned(),
                addr: url.trim_start_matches("http://").parse()?,
                username: field(line, "username").unwrap_or_default().to_owned(),
                password: field(line, "password").unwrap_or_default().to_owned(),
            })
        })
        .collect()
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}

/// The ids of `service`/`plan` (by name) in a catalog.
fn plan_ids(catalog: &Value, service: &str, plan: &str) -> Result<(String, String)> {
    let services = catalog
        .get("services")
        .and_then(Value::as_array)
        .ok_or("catalog without services")?;
    let found = services
        .iter()
        .find(|s| s.get("name").and_then(Value::as_str) == Some(service))
        .ok_or_else(|| format!("no service {service} in the catalog"))?;
    let plan = found
        .get("plans")
        .and_then(Value::as_array)
        .and_then(|plans| {
            plans
                .iter()
                .find(|p| p.get("name").and_then(Value::as_str) == Some(plan))
        })
        .ok_or_else(|| format!("service {service} has no plan {plan}"))?;
    let id = |v: &Value| v.get("id").and_then(Value::as_str).map(str::to_owned);
    Ok((
        id(found).ok_or("service without id")?,
        id(plan).ok_or("plan without id")?,
    ))
}

/// The three targets of instance and binding calls, and of the catalog.
struct Targets {
    /// (name, addr, authorization, calls) for the lifecycle scenarios.
    lifecycle: Vec<(String, SocketAddr, String, Arc<Calls>)>,
    catalog: Vec<(String, SocketAddr, String)>,
}

/// PIDs whose CPU counts as the server's, per target name.
fn server_pids(
    target: &str,
    (gateway, bare): (u32, u32),
    stub: u32,
    catalog_stub: u32,
    nginx: &[u32],
    scenario: Scenario,
) -> Vec<u32> {
    match (target, scenario) {
        ("gateway", _) => vec![gateway],
        ("gateway-bare", _) => vec![bare],
        ("nginx", _) => nginx.to_vec(),
        ("direct", Scenario::Catalog) => vec![catalog_stub],
        _ => vec![stub],
    }
}

fn now_utc() -> (String, String) {
    // `date` keeps this crate free of a time library.
    let stamp = Command::new("date")
        .args(["-u", "+%Y-%m-%d-%H%M%S"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "now".to_owned());
    let human = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M:%S UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    (stamp, human)
}

fn host_facts() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let kernel = Command::new("uname")
        .arg("-sr")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let nginx = crate::nginx::binary()
        .and_then(|b| Command::new(b).arg("-v").output().ok())
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
        .unwrap_or_else(|| "missing".to_owned());
    json!({
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "cpu": model,
        "kernel": kernel,
        "nginx": nginx,
        "load_average_1m_before": procstat::load_average(),
    })
}

/// Runs the whole comparison and writes the report.
pub fn run(args: &CompareArgs) -> Result<()> {
    let started = Instant::now();
    let (stamp, human) = now_utc();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| repo.join("loadtests/results").join(&stamp));
    std::fs::create_dir_all(&out)?;
    let tmp_root = args.tmp.clone().unwrap_or_else(std::env::temp_dir);
    let tmp = tmp_root.join(format!("osb-loadtests-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&tmp)?;
    log(format!("temporary files in {}", tmp.display()));
    let result = run_in(args, &out, &tmp, &human, started);
    if args.keep || result.is_err() {
        log(format!("kept {}", tmp.display()));
    } else {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    let report = result?;
    log(format!(
        "report in {} ({:.0} s)",
        out.display(),
        report.duration_s
    ));
    Ok(())
}

fn run_in(args: &CompareArgs, out: &Path, tmp: &Path, human: &str, started: Instant) -> Result<Report> {
    let exe = std::env::current_exe()?;
    let fixtures = crate::default_fixtures();
    let host = host_facts();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = cores.min(8);
    let password = uuid::Uuid::new_v4().simple().to_string();
    let mut notes = Vec::new();

    let nginx_binary = crate::nginx::binary();
    if nginx_binary.is_none() && !args.allow_no_nginx {
        return Err("nginx is not installed (apt-get install nginx), or pass --allow-no-nginx".into());
    }

    // 1. The stub upstreams and the OTLP sink.
    log("starting the stub (azure, aws, gcp catalogs) and the OTLP sink");
    let mut stub_cmd = Command::new(&exe);
    stub_cmd
        .arg("stub")
        .arg("--catalog")
        .arg(format!(
            "azure={}",
            fixtures.join("azure-osba-catalog.json").display()
        ))
        .arg("--catalog")
        .arg(format!(
            "aws={}",
            fixtures.join("aws-servicebroker-catalog.json").display()
        ))
        .arg("--catalog")
        .arg(format!(
            "gcp={}",
            fixtures.join("gcp-service-broker-catalog.json").display()
        ))
        .arg("--async")
        .arg("--polls")
        .arg(args.polls.to_string())
        .arg("--sink")
        .arg("--threads")
        .arg(args.stub_threads.to_string())
        .arg("--password")
        .arg(&password);
    let mut stub = Process::spawn("stub", &mut stub_cmd, &tmp.join("stub.log"))?;
    let lines = stub.read_until("ready")?;
    let listeners = stub_listeners(&lines)?;
    let sink = lines
        .iter()
        .find_map(|l| l.strip_prefix("sink url="))
        .ok_or("the stub started no sink")?
        .to_owned();
    let aws = listeners
        .iter()
        .find(|l| l.name == "aws")
        .ok_or("no aws stub")?
        .clone();

    // 2. The gateway's store, seeded.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    let store_path = tmp.join("store");
    let postgres = match &args.postgres {
        Some(server) => Some(runtime.block_on(crate::pgstore::ScratchDatabase::create(server))?),
        None => None,
    };
    if args.seed_instances > 0 {
        log(format!(
            "seeding the gateway's registry with {} instances",
            args.seed_instances
        ));
        match &postgres {
            Some(database) => runtime.block_on(async {
                crate::scale::seed(database.open_store().await?, args.seed_instances, "loadtests").await
            })?,
            None => {
                runtime.block_on(crate::scale::build(&store_path, args.seed_instances, "loadtests"))?;
            }
        }
    }
    let store_of = |path: &Path| match &postgres {
        Some(database) => Store::Postgres(database.url().to_owned()),
        None => Store::Embedded(path.to_owned()),
    };
    let gateway_exe = args.gateway_exe.clone().unwrap_or_else(|| exe.clone());

    // 3. The gateway, and the same gateway with limits, tracing and per-call metrics off.
    let brokers: String = listeners
        .iter()
        .map(|l| {
            format!(
                "  - name: {}\n    url: http://{}\n    username: {}\n    password: {}\n",
                l.name, l.addr, l.username, l.password
            )
        })
        .collect();
    let platform_auth = basic("loadtests", &password);
    let http = reqwest::Client::builder().no_proxy().build()?;
    let full = GatewaySetup {
        name: "gateway",
        store: store_of(&store_path),
        policy: format!("{POLICY}{LIMITS}"),
        telemetry: format!("telemetry:\n  otlp_endpoint: \"{sink}\"\n  sampling_ratio: 1.0\n"),
    };
    let (mut gateway, osb_port, admin_port, gateway_ready_s, merged) =
        start_gateway(&gateway_exe, tmp, &full, &brokers, &password, &runtime, &http)?;
    log(format!(
        "gateway ready in {gateway_ready_s:.2} s (pid {}); merged catalog {} bytes",
        gateway.pid(),
        merged.len()
    ));
    let bare_store = tmp.join("store-bare");
    // On PostgreSQL both gateways share the seeded database.
    if args.seed_instances > 0 && postgres.is_none() {
        runtime.block_on(crate::scale::build(&bare_store, args.seed_instances, "loadtests"))?;
    }
    let bare = GatewaySetup {
        name: "gateway-bare",
        store: store_of(&bare_store),
        policy: POLICY.to_owned(),
        telemetry: "telemetry:\n  metrics: false\n".to_owned(),
    };
    let (mut bare_gateway, bare_port, _, _, bare_merged) =
        start_gateway(&gateway_exe, tmp, &bare, &brokers, &password, &runtime, &http)?;
    if bare_merged != merged {
        notes.push("gateway-bare served other catalog bytes than gateway.".to_owned());
    }
    log(format!("gateway-bare ready (pid {})", bare_gateway.pid()));
    let catalog_file = tmp.join("catalog.json");
    std::fs::write(&catalog_file, &merged)?;
    // The gateway's gzip bytes, for nginx's `gzip_static` (the same pre-compressed bytes).
    let gzipped = runtime.block_on(async {
        let response = http
            .get(format!("http://127.0.0.1:{osb_port}/v2/catalog"))
            .header("Authorization", &platform_auth)
            .header("X-Broker-API-Version", "2.17")
            .header("Accept-Encoding", "gzip")
            .send()
            .await?;
        let gzip = response
            .headers()
            .get("content-encoding")
            .is_some_and(|v| v.as_bytes() == b"gzip");
        Ok::<_, reqwest::Error>(if gzip { Some(response.bytes().await?) } else { None })
    })?;
    match &gzipped {
        Some(bytes) => {
            std::fs::write(tmp.join("catalog.json.gz"), bytes)?;
            log(format!("gzip catalog {} bytes", bytes.len()));
        }
        None => notes.push("the gateway did not answer gzip to Accept-Encoding: gzip.".to_owned()),
    }

    // 4. The direct catalog stub and nginx.
    let mut catalog_cmd = Command::new(&exe);
    catalog_cmd
        .arg("stub")
        .arg("--catalog")
        .arg(format!("merged={}", catalog_file.display()))
        .arg("--threads")
        .arg(args.stub_threads.to_string())
        .arg("--password")
        .arg(&password);
    let mut catalog_stub = Process::spawn("catalog stub", &mut catalog_cmd, &tmp.join("catalog-stub.log"))?;
    let catalog_listener = stub_listeners(&catalog_stub.read_until("ready")?)?
        .into_iter()
        .next()
        .ok_or("the catalog stub has no listener")?;

    let nginx = match &nginx_binary {
        Some(binary) => {
            let setup = crate::nginx::Setup {
                dir: tmp.join("nginx"),
                workers,
                static_port: free_port()?,
                proxy_port: free_port()?,
                catalog_file: catalog_file.clone(),
                catalog_len: merged.len(),
                platform_user: "loadtests".to_owned(),
                platform_password: password.clone(),
                upstream: aws.addr.to_string(),
                upstream_authorization: basic(&aws.username, &aws.password),
            };
            let nginx = crate::nginx::start(binary, &setup)?;
            // Wait until it answers with the same bytes.
            let url = format!("http://127.0.0.1:{}/v2/catalog", setup.static_port);
            let same = runtime.block_on(async {
                for _ in 0..100 {
                    if let Ok(response) = http
                        .get(&url)
                        .header("Authorization", &platform_auth)
                        .send()
                        .await
                    {
                        if let Ok(body) = response.bytes().await {
                            return body == merged;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                false
            });
            if !same {
                return Err(format!(
                    "nginx did not serve the merged catalog bytes (see {}/error.log)",
                    setup.dir.display()
                )
                .into());
            }
            log(format!("nginx ready (pid {})", nginx.pid()));
            Some(nginx)
        }
        None => {
            notes.push("nginx is not installed: its rows are missing.".to_owned());
            None
        }
    };
    let nginx_pids = nginx.as_ref().map(crate::nginx::Nginx::pids).unwrap_or_default();

    // The calls, with each target's ids.
    let aws_catalog: Value =
        serde_json::from_slice(&std::fs::read(fixtures.join("aws-servicebroker-catalog.json"))?)?;
    let merged_catalog: Value = serde_json::from_slice(&merged)?;
    let parameters = json!({"DelaySeconds": 0, "MaximumMessageSize": 262144});
    let (us, up) = plan_ids(&aws_catalog, "sqs", "standard")?;
    let (gs, gp) = plan_ids(&merged_catalog, "aws.sqs", "standard")?;
    let upstream_calls = Arc::new(Calls::new(&us, &up, &parameters)?);
    let gateway_calls = Arc::new(Calls::new(&gs, &gp, &parameters)?);
    let gateway_addr: SocketAddr = format!("127.0.0.1:{osb_port}").parse()?;
    let bare_addr: SocketAddr = format!("127.0.0.1:{bare_port}").parse()?;
    let mut targets = Targets {
        lifecycle: vec![(
            "direct".to_owned(),
            aws.addr,
            basic(&aws.username, &aws.password),
            upstream_calls.clone(),
        )],
        catalog: vec![(
            "direct".to_owned(),
            catalog_listener.addr,
            basic(&catalog_listener.username, &catalog_listener.password),
        )],
    };
    if let Some(nginx) = &nginx {
        targets.lifecycle.push((
            "nginx".to_owned(),
            format!("127.0.0.1:{}", nginx.proxy_port).parse()?,
            platform_auth.clone(),
            upstream_calls.clone(),
        ));
        targets.catalog.push((
            "nginx".to_owned(),
            format!("127.0.0.1:{}", nginx.static_port).parse()?,
            platform_auth.clone(),
        ));
    }
    for (name, addr) in [("gateway", gateway_addr), ("gateway-bare", bare_addr)] {
        targets.lifecycle.push((
            name.to_owned(),
            addr,
            platform_auth.clone(),
            gateway_calls.clone(),
        ));
        targets
            .catalog
            .push((name.to_owned(), addr, platform_auth.clone()));
    }

    // 5. The load.
    let me = std::process::id();
    let mut closed = Vec::new();
    let mut open = Vec::new();
    let run_one = |scenario: Scenario,
                   target: &str,
                   addr: SocketAddr,
                   authorization: &str,
                   calls: Arc<Calls>,
                   mode: Mode,
                   duration: Duration,
                   connections: usize|
     -> Result<Measured> {
        let target_spec = Target {
            addr,
            authorization: Some(http::HeaderValue::from_str(authorization)?),
        };
        let warm = Load {
            scenario,
            mode,
            connections,
            warmup: Duration::ZERO,
            duration: args.warmup.max(Duration::from_millis(100)),
            timeout: args.timeout,
        };
        runtime.block_on(driver::run(target_spec.clone(), (*calls).clone(), &warm))?;
        let server = server_pids(
            target,
            (gateway.pid(), bare_gateway.pid()),
            stub.pid(),
            catalog_stub.pid(),
            &nginx_pids,
            scenario,
        );
        let groups = vec![server, vec![stub.pid()], vec![me]];
        let load = Load { duration, ..warm };
        let before = procstat::snapshot(&groups);
        let stats = runtime.block_on(driver::run(target_spec, (*calls).clone(), &load))?;
        let after = procstat::snapshot(&groups);
        let usage = before.usage_until(&after);
        let calls_done = stats.calls.count.max(1) as f64;
        let server_cpu_ms_per_call = usage.cpu_s.first().copied().unwrap_or(0.0) * 1000.0 / calls_done;
        log(format!(
            "{:<9} {:<8} {:<22} {:>9.0} calls/s  p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  errors {}  server {:.3} ms CPU/call",
            scenario.as_str(),
            target,
            match mode {
                Mode::Closed => format!("closed c={connections}"),
                Mode::Open { rate } => format!("open {rate:.0}/s"),
            },
            stats.calls.per_s,
            stats.calls.p50_ms,
            stats.calls.p99_ms,
            stats.calls.p999_ms,
            stats.calls.errors + stats.units.errors,
            server_cpu_ms_per_call,
        ));
        for error in &stats.first_errors {
            log(format!("  error: {error}"));
        }
        Ok(Measured {
            target: target.to_owned(),
            stats,
            usage,
            server_cpu_ms_per_call,
        })
    };
    let empty_calls = Arc::new(Calls::new("-", "-", &json!({}))?);
    for &scenario in &args.scenarios {
        let list: Vec<(String, SocketAddr, String, Arc<Calls>)> = match scenario {
            Scenario::Catalog => targets
                .catalog
                .iter()
                .map(|(n, a, h)| (n.clone(), *a, h.clone(), empty_calls.clone()))
                .collect(),
            // The stub serves no gzip: nginx `gzip_static` (the gateway's compressed bytes) is
            // the baseline.
            Scenario::CatalogGzip => targets
                .catalog
                .iter()
                .filter(|(n, ..)| n != "direct")
                .map(|(n, a, h)| (n.clone(), *a, h.clone(), empty_calls.clone()))
                .collect(),
            _ => targets.lifecycle.clone(),
        };
        let mut gateway_units = 0.0;
        for (name, addr, authorization, calls) in &list {
            let measured = run_one(
                scenario,
                name,
                *addr,
                authorization,
                calls.clone(),
                Mode::Closed,
                args.duration,
                args.connections,
            )?;
            if name == "gateway" {
                gateway_units = measured.stats.units.per_s;
            }
            closed.push(measured);
        }
        let rate = gateway_units * args.open_share;
        if args.open_duration.is_zero() || rate < 1.0 {
            continue;
        }
        for (name, addr, authorization, calls) in &list {
            open.push(run_one(
                scenario,
                name,
                *addr,
                authorization,
                calls.clone(),
                Mode::Open { rate },
                args.open_duration,
                args.open_connections,
            )?);
        }
    }

    // What the gateway holds and uses after the load.
    let (rss, hwm) = procstat::rss_mb(gateway.pid());
    let registry: Value = runtime.block_on(async {
        let response = http
            .get(format!("http://127.0.0.1:{admin_port}/admin/registry"))
            .send()
            .await?;
        Ok::<_, Box<dyn std::error::Error>>(response.json().await?)
    })?;
    let gateway_facts = json!({
        "workers": workers,
        "ready_s": gateway_ready_s,
        "rss_mb": rss,
        "peak_rss_mb": hwm,
        "seeded_instances": args.seed_instances,
        "registry_after": registry,
        "store_file_mb": crate::engines::disk_bytes(&store_path) as f64 / 1048576.0,
        "store_filesystem": filesystem_of(tmp),
        "store_kind": if postgres.is_some() { "postgres" } else { "embedded" },
        "gateway_exe": gateway_exe.display().to_string(),
        "catalog_bytes": merged.len(),
    });
    gateway.stop();
    bare_gateway.stop();
    if let Some(database) = &postgres {
        if args.keep {
            log(format!("kept the database {}", database.url()));
        } else if let Err(e) = runtime.block_on(database.drop_database()) {
            notes.push(format!("Could not drop the run's database: {e}"));
        }
    }
    if let Some(nginx) = nginx {
        nginx.stop();
    }
    catalog_stub.stop();
    let stub_at_exit = stub
        .stop()
        .lines()
        .find_map(|l| l.strip_prefix("stub stopped "))
        .unwrap_or("(no report)")
        .to_owned();
    drop(runtime);

    // 6. Registry scale, each size in fresh processes.
    let mut scale = Vec::new();
    let sizes: &[usize] = if args.no_scale { &[] } else { &args.scale };
    for &size in sizes {
        let path = tmp.join(format!("scale-{size}"));
        log(format!("scale: building a registry of {size} instances"));
        let built = Command::new(&exe)
            .arg("scale-build")
            .arg("--path")
            .arg(&path)
            .arg("--instances")
            .arg(size.to_string())
            .stderr(Stdio::inherit())
            .output()?;
        if !built.status.success() {
            return Err(format!("scale-build {size} failed").into());
        }
        let build_s = serde_json::from_slice::<Value>(&built.stdout)
            .ok()
            .and_then(|v| v.get("build_s").and_then(Value::as_f64));
        let measured = Command::new(&exe)
            .arg("scale-measure")
            .arg("--path")
            .arg(&path)
            .arg("--instances")
            .arg(size.to_string())
            .stderr(Stdio::inherit())
            .output()?;
        if !measured.status.success() {
            return Err(format!("scale-measure {size} failed").into());
        }
        let mut measurement: Measurement = serde_json::from_slice(&measured.stdout)?;
        measurement.build_s = build_s;
        log(format!(
            "scale {size}: start-up {:.2} s, RSS {:.1} MB, lookup p99 {:.2} µs",
            measurement.startup_s, measurement.rss_mb, measurement.lookup_p99_us
        ));
        let _ = std::fs::remove_file(&path);
        scale.push(measurement);
    }

    let mut host = host;
    if let Some(object) = host.as_object_mut() {
        object.insert(
            "load_average_1m_after".to_owned(),
            json!(procstat::load_average()),
        );
    }
    let report = Report {
        started_utc: human.to_owned(),
        command: std::iter::once("cargo run -p osb-loadtests --release --".to_owned())
            .chain(std::env::args().skip(1))
            .collect::<Vec<_>>()
            .join(" "),
        commit: Command::new("git")
            .args(["describe", "--always", "--dirty"])
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default(),
        host,
        settings: json!({
            "duration_s": args.duration.as_secs_f64(),
            "warmup_s": args.warmup.as_secs_f64(),
            "open_duration_s": args.open_duration.as_secs_f64(),
            "connections": args.connections,
            "open_connections": args.open_connections,
            "open_share": args.open_share,
            "driver_threads": args.threads,
            "stub_threads": args.stub_threads,
            "async_polls": args.polls,
            "service": "aws.sqs / standard",
        }),
        closed,
        open,
        scale,
        gateway: gateway_facts,
        stub_at_exit,
        notes,
        duration_s: started.elapsed().as_secs_f64(),
    };
    crate::report::write(out, &report)?;
    Ok(report)
}

/// The filesystem type of the folder holding `path` (from /proc/mounts, longest prefix).
fn filesystem_of(path: &Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let (_, mount, kind) = (parts.next()?, parts.next()?, parts.next()?);
            path.starts_with(mount).then(|| (mount.len(), kind.to_owned()))
        })
        .max()
        .map_or_else(|| "unknown".to_owned(), |(_, kind)| kind)
}

/// The gateway's policy during the benchmark: every kind of rule is evaluated on every call,
/// none refuses the load (rate limits far above it).
const POLICY: &str = r#"# Generated by osb-loadtests compare: rules of every kind, none refusing the benchmark's calls.
visibility:
  rules:
    - {name: dev-free-only, platforms: [k8s-dev], free: false, effect: hide}
    - {name: no-preview, tags: [preview, beta], effect: hide}
    - {name: no-premium-sql, platforms: ["k8s-*"], services: ["azure.azure-sql-*"], plans: ["premium*"], effect: hide}
parameters:
  - name: retention
    services: ["aws.sqs"]
    defaults: {MessageRetentionPeriod: 345600}
  - name: no-public-endpoints
    forbid: [public_access, "firewall_*"]
deny:
  - name: no-sql-from-dev
    platforms: [k8s-dev]
    services: ["azure.azure-sql-*"]
    operations: [provision]
    reason: SQL databases are provisioned from production clusters only
  - name: keep-protected-namespaces
    operations: [deprovision, unbind]
    when: {context.namespace: ["protected-*"]}
    reason: protected namespaces keep their services
schema_validation: true
"#;

/// The rate limits of the full gateway (far above the load; `gateway-bare` has none).
const LIMITS: &str = r#"limits:
  platforms:
    - {name: loadtests, catalog_per_sec: 1000000, catalog_burst: 1000000, calls_per_sec: 1000000, calls_burst: 1000000}
  brokers:
    - {name: "*", calls_per_sec: 1000000, calls_burst: 1000000}
"#;

/// The store a gateway of the comparison runs on.
enum Store {
    /// The embedded store (a folder) at this path.
    Embedded(PathBuf),
    /// The PostgreSQL database at this URL.
    Postgres(String),
}

impl Store {
    /// The config's `store:` section.
    fn section(&self) -> String {
        match self {
            Store::Embedded(path) => format!("store:\n  kind: embedded\n  path: \"{}\"\n", path.display()),
            Store::Postgres(url) => format!("store:\n  kind: postgres\n  url: \"{url}\"\n"),
        }
    }
}

/// One gateway process of the comparison.
struct GatewaySetup {
    name: &'static str,
    store: Store,
    /// The policy file's text.
    policy: String,
    /// The config's `telemetry:` section.
    telemetry: String,
}

/// Starts `setup` (`osb-loadtests gateway`), waits until it is ready, and fetches its merged
/// catalog. Returns the process, its OSB and admin ports, seconds to ready, and the catalog.
fn start_gateway(
    exe: &Path,
    tmp: &Path,
    setup: &GatewaySetup,
    brokers: &str,
    password: &str,
    runtime: &tokio::runtime::Runtime,
    http: &reqwest::Client,
) -> Result<(Process, u16, u16, f64, bytes::Bytes)> {
    let name = setup.name;
    let (osb_port, admin_port) = (free_port()?, free_port()?);
    let policy_file = tmp.join(format!("{name}-policy.yaml"));
    std::fs::write(&policy_file, &setup.policy)?;
    let config = format!(
        "# Generated by osb-loadtests compare.\nlisten: \"127.0.0.1:{osb_port}\"\nadmin:\n  listen: \"127.0.0.1:{admin_port}\"\n{store}shutdown_grace_secs: 5\npolicy_file: \"{policy}\"\n{telemetry}platforms:\n  - name: loadtests\n    username: loadtests\n    password: {password}\n  - name: k8s-dev\n    username: k8s-dev\n    password: {password}\nbrokers:\n{brokers}",
        store = setup.store.section(),
        policy = policy_file.display(),
        telemetry = setup.telemetry,
    );
    let config_file = tmp.join(format!("{name}.yaml"));
    std::fs::write(&config_file, &config)?;
    log(format!("starting {name}"));
    let mut command = Command::new(exe);
    command
        .arg("gateway")
        .arg("--config")
        .arg(&config_file)
        .env("RUST_LOG", "warn")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    let process = Process::spawn(name, &mut command, &tmp.join(format!("{name}.log")))?;
    let started = Instant::now();
    let platform_auth = basic("loadtests", password);
    let merged = runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = http
                .get(format!("http://127.0.0.1:{admin_port}/readyz"))
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if ready {
                break;
            }
            if Instant::now() > deadline {
                return Err::<bytes::Bytes, Box<dyn std::error::Error>>(
                    format!("{name} was not ready within 60 s (see {name}.log)").into(),
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let response = http
            .get(format!("http://127.0.0.1:{osb_port}/v2/catalog"))
            .header("Authorization", &platform_auth)
            .header("X-Broker-API-Version", "2.17")
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(format!("{name}'s catalog answered {}", response.status()).into());
        }
        Ok(response.bytes().await?)
    })?;
    Ok((
        process,
        osb_port,
        admin_port,
        started.elapsed().as_secs_f64(),
        merged,
    ))
}

/// `osb-loadtests gateway --config FILE`.
#[derive(Debug, Clone, clap::Args)]
pub struct GatewayArgs {
    #[arg(long, short)]
    pub config: PathBuf,
}

/// Runs the gateway as `osb-gateway serve` does.
pub fn run_gateway(args: &GatewayArgs) -> Result<()> {
    let env: std::collections::HashMap<String, String> = std::env::vars().collect();
    let loaded = osb_config::load_file(&args.config, &env).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let _telemetry = osb_gateway::telemetry::init(
            osb_gateway::telemetry::LogFormat::Text,
            Some(&loaded.settings.telemetry),
        );
        if let Some(path) = &loaded.settings.policy_file {
            osb_gateway::ops::policy_file::load(path, &loaded.settings).map_err(|problems| {
                problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            })?;
        }
        let listeners = osb_gateway::Listeners::bind(&loaded.settings)?;
        osb_gateway::serve(listeners, loaded.settings, osb_gateway::shutdown_signal())
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}
