//! The Rust side of `loadtests/run lifecycle`: a catalog lookup and a closed-loop load driver for
//! provision → bind → unbind → deprovision. (Its stub upstream is `osb-loadtests stub`, see
//! `stub.rs`, which prints the same `stub url=…` and `stub stopped …` lines.)
//!
//! - [`plan_ids`]: the ids of a service and one of its plans, found by name in a target's catalog,
//!   so the same load can be pointed at the stub (upstream ids) and at the gateway (its ids).
//! - [`run_lifecycle`]: C workers, each looping provision (PUT, synchronous) → bind (PUT) → unbind
//!   (DELETE) → deprovision (DELETE) with fresh UUIDs, for a warm-up then a measured window. It
//!   prints one line per operation, `op NAME ops_per_s p50_ms p99_ms count errors max_ms`, plus the
//!   same for whole cycles: the lines the scenario script reads.
//!
//! How the driver counts: an operation belongs to the measured window when it *completes* inside
//! it; a success is exactly the status a fresh id gets (201 for provision and bind, 200 for unbind
//! and deprovision); anything else, a transport error or a timeout is an error. Latencies and
//! throughput count successes only; percentiles are exact (nearest rank over every sample). When a
//! provision fails its cycle stops there; when a bind fails the unbind is skipped and the instance is
//! still deprovisioned. The cycle running when the window ends is finished (unmeasured), so the
//! driver leaves nothing behind when every call succeeds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use url::Url;

use crate::Result;
use crate::driver::parse_duration;

/// The OSB version every call declares.
const API_VERSION: &str = "2.17";

/// Error descriptions kept per worker (the first ones), printed on stderr.
const KEPT_ERRORS: usize = 3;

// === arguments ===

/// Where the load goes and how it authenticates.
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// Base URL of the broker (without `/v2`): the stub or the gateway.
    #[arg(long)]
    pub target: Url,
    /// Basic auth user.
    #[arg(long, requires = "password")]
    pub user: Option<String>,
    /// Basic auth password.
    #[arg(long, requires = "user")]
    pub password: Option<String>,
    /// A bearer token instead of basic auth.
    #[arg(long, conflicts_with = "user")]
    pub bearer: Option<String>,
}

/// `osb-loadtests plan-ids` options.
#[derive(Debug, Clone, clap::Args)]
pub struct PlanIdsArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Service name as the target's catalog publishes it (`dynamodb` upstream, `aws.dynamodb` at
    /// the gateway).
    #[arg(long)]
    pub service: String,
    /// Plan name.
    #[arg(long)]
    pub plan: String,
}

/// `osb-loadtests lifecycle` options.
#[derive(Debug, Clone, clap::Args)]
pub struct LifecycleArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Service id, as the target knows it.
    #[arg(long)]
    pub service_id: String,
    /// Plan id, as the target knows it (the plan must be bindable).
    #[arg(long)]
    pub plan_id: String,
    /// Provision `parameters` (a JSON object; the gateway checks them against the plan's schema).
    #[arg(long, default_value = "{}", value_parser = parse_object)]
    pub parameters: Value,
    /// Workers, each with one cycle in flight (closed loop).
    #[arg(long, short = 'c', default_value_t = 16)]
    pub concurrency: usize,
    /// Measured window: `15s`, `500ms`, `1m` or plain seconds.
    #[arg(long, short = 'd', default_value = "15s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Unmeasured load before the window, same format.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Runtime threads of the driver.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Per-request timeout (a slower answer counts as an error).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// A JSON object.
fn parse_object(text: &str) -> std::result::Result<Value, String> {
    match serde_json::from_str(text) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err("must be a JSON object".to_owned()),
        Err(e) => Err(format!("not JSON: {e}")),
    }
}

// === HTTP ===

/// A client for one target: base URL, credentials, the OSB version header.
struct Target {
    client: reqwest::Client,
    base: String,
    authorization: Option<HeaderValue>,
}

impl Target {
    fn new(args: &TargetArgs, pool: usize, timeout: Duration) -> Result<Self> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(pool)
            .timeout(timeout)
            .build()?;
        let authorization = match (&args.user, &args.password, &args.bearer) {
            (_, _, Some(token)) => Some(HeaderValue::from_str(&format!("Bearer {token}"))?),
            (Some(user), Some(password), None) => Some(HeaderValue::from_str(&format!(
                "Basic {}",
                STANDARD.encode(format!("{user}:{password}"))
            ))?),
            _ => None,
        };
        Ok(Target {
            client,
            base: args.target.as_str().trim_end_matches('/').to_owned(),
            authorization,
        })
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let mut builder = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("X-Broker-API-Version", API_VERSION);
        if let Some(authorization) = &self.authorization {
            builder = builder.header(AUTHORIZATION, authorization.clone());
        }
        builder
    }
}

// === plan ids ===

/// Prints `<service id> <plan id>` of the named service and plan in the target's catalog.
pub fn plan_ids(args: &PlanIdsArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let catalog: Value = runtime.block_on(async {
        let target = Target::new(&args.target, 1, Duration::from_secs(30))?;
        let response = target.request(Method::GET, "/v2/catalog").send().await?;
        let status = response.status();
        if status != StatusCode::OK {
            return Err(format!("GET /v2/catalog answered {status}").into());
        }
        Ok::<_, Box<dyn std::error::Error>>(response.json().await?)
    })?;
    let services = array(&catalog, "services");
    let service = services
        .iter()
        .find(|s| text(s, "name") == Some(&args.service))
        .ok_or_else(|| {
            let names: Vec<&str> = services.iter().filter_map(|s| text(s, "name")).collect();
            format!(
                "no service {:?} in the catalog (it has {})",
                args.service,
                names.join(", ")
            )
        })?;
    let plans = array(service, "plans");
    let plan = plans
        .iter()
        .find(|p| text(p, "name") == Some(&args.plan))
        .ok_or_else(|| {
            let names: Vec<&str> = plans.iter().filter_map(|p| text(p, "name")).collect();
            format!(
                "service {:?} has no plan {:?} (it has {})",
                args.service,
                args.plan,
                names.join(", ")
            )
        })?;
    let bindable = |v: &Value| v.get("bindable").and_then(Value::as_bool);
    if !bindable(plan).or_else(|| bindable(service)).unwrap_or(false) {
        return Err(format!("plan {} of {} is not bindable", args.plan, args.service).into());
    }
    match (text(service, "id"), text(plan, "id")) {
        (Some(service_id), Some(plan_id)) => {
            println!("{service_id} {plan_id}");
            Ok(())
        }
        _ => Err("the service or plan has no string id".into()),
    }
}

/// The array `key` of a JSON object (empty when absent or not an array).
fn array<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
}

/// The string `key` of a JSON object.
fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

// === load driver ===

/// The four calls of a cycle, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Provision = 0,
    Bind = 1,
    Unbind = 2,
    Deprovision = 3,
}

const OPS: [Op; 4] = [Op::Provision, Op::Bind, Op::Unbind, Op::Deprovision];

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Provision => "provision",
            Op::Bind => "bind",
            Op::Unbind => "unbind",
            Op::Deprovision => "deprovision",
        }
    }

    /// The status a fresh id gets from a synchronous broker.
    fn expected(self) -> StatusCode {
        match self {
            Op::Provision | Op::Bind => StatusCode::CREATED,
            Op::Unbind | Op::Deprovision => StatusCode::OK,
        }
    }
}

/// The target and the pre-built bodies and query of every call.
struct Driver {
    target: Target,
    provision_body: Bytes,
    bind_body: Bytes,
    delete_query: String,
}

impl Driver {
    fn new(args: &LifecycleArgs) -> Result<Self> {
        let (service_id, plan_id) = (&args.service_id, &args.plan_id);
        let provision_body = serde_json::to_vec(&json!({
            "service_id": service_id,
            "plan_id": plan_id,
            "organization_guid": "loadtests-org",
            "space_guid": "loadtests-space",
            "context": {"platform": "loadtests"},
            "parameters": args.parameters,
        }))?;
        let bind_body = serde_json::to_vec(&json!({
            "service_id": service_id,
            "plan_id": plan_id,
            "bind_resource": {"app_guid": "loadtests-app"},
            "parameters": {},
        }))?;
        let delete_query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("service_id", service_id)
            .append_pair("plan_id", plan_id)
            .finish();
        Ok(Driver {
            target: Target::new(&args.target, args.concurrency, args.timeout)?,
            provision_body: Bytes::from(provision_body),
            bind_body: Bytes::from(bind_body),
            delete_query,
        })
    }

    /// One call; `Err` describes anything but the expected status.
    async fn call(&self, op: Op, instance: &str, binding: &str) -> std::result::Result<(), String> {
        let instance_path = format!("/v2/service_instances/{instance}");
        let binding_path = format!("{instance_path}/service_bindings/{binding}");
        let json = HeaderValue::from_static("application/json");
        let builder = match op {
            Op::Provision => self
                .target
                .request(Method::PUT, &instance_path)
                .header(CONTENT_TYPE, json)
                .body(self.provision_body.clone()),
            Op::Bind => self
                .target
                .request(Method::PUT, &binding_path)
                .header(CONTENT_TYPE, json)
                .body(self.bind_body.clone()),
            Op::Unbind => self
                .target
                .request(Method::DELETE, &format!("{binding_path}?{}", self.delete_query)),
            Op::Deprovision => self
                .target
                .request(Method::DELETE, &format!("{instance_path}?{}", self.delete_query)),
        };
        let response = builder.send().await.map_err(|e| format!("{}: {e}", op.name()))?;
        let status = response.status();
        // Read the whole body, so the connection goes back to the pool.
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("{} body: {e}", op.name()))?;
        if status == op.expected() {
            Ok(())
        } else {
            let shown = String::from_utf8_lossy(body.get(..200).unwrap_or(&body)).into_owned();
            Err(format!("{} answered {status}: {shown}", op.name()))
        }
    }
}

/// What one worker measured.
#[derive(Debug, Default)]
struct Samples {
    /// Latencies of the successful calls, per [`Op`].
    latencies: [Vec<Duration>; 4],
    errors: [u64; 4],
    /// Latencies of the cycles whose four calls all succeeded.
    cycles: Vec<Duration>,
    /// The first errors, for the log.
    first_errors: Vec<String>,
}

impl Samples {
    fn merge(&mut self, other: Samples) {
        for (mine, theirs) in self.latencies.iter_mut().zip(other.latencies) {
            mine.extend(theirs);
        }
        for (mine, theirs) in self.errors.iter_mut().zip(other.errors) {
            *mine += theirs;
        }
        self.cycles.extend(other.cycles);
        self.first_errors.extend(other.first_errors);
    }
}

/// The measured window: calls completing inside it count.
#[derive(Debug, Clone, Copy)]
struct Window {
    from: Instant,
    until: Instant,
}

impl Window {
    fn contains(&self, at: Instant) -> bool {
        at >= self.from && at <= self.until
    }
}

/// One closed-loop worker: cycles until the window ends, then finishes its cycle.
async fn worker(driver: Arc<Driver>, window: Window) -> Samples {
    let mut samples = Samples::default();
    let step = async |samples: &mut Samples, op: Op, instance: &str, binding: &str| -> bool {
        let started = Instant::now();
        let result = driver.call(op, instance, binding).await;
        let done = Instant::now();
        let measured = window.contains(done);
        match result {
            Ok(()) => {
                if measured {
                    if let Some(latencies) = samples.latencies.get_mut(op as usize) {
                        latencies.push(done - started);
                    }
                }
                true
            }
            Err(error) => {
                if measured {
                    if let Some(errors) = samples.errors.get_mut(op as usize) {
                        *errors += 1;
                    }
                }
                if samples.first_errors.len() < KEPT_ERRORS {
                    samples.first_errors.push(error);
                }
                false
            }
        }
    };
    while Instant::now() < window.until {
        let instance = uuid::Uuid::new_v4().to_string();
        let binding = uuid::Uuid::new_v4().to_string();
        let started = Instant::now();
        if !step(&mut samples, Op::Provision, &instance, &binding).await {
            continue;
        }
        let bound = step(&mut samples, Op::Bind, &instance, &binding).await;
        let unbound = bound && step(&mut samples, Op::Unbind, &instance, &binding).await;
        let deprovisioned = step(&mut samples, Op::Deprovision, &instance, &binding).await;
        let done = Instant::now();
        if bound && unbound && deprovisioned && window.contains(done) {
            samples.cycles.push(done - started);
        }
    }
    samples
}

/// Runs the load and prints one line per operation (and one for cycles).
pub fn run_lifecycle(args: &LifecycleArgs) -> Result<()> {
    if args.concurrency == 0 || args.threads == 0 {
        return Err("--concurrency and --threads must be at least 1".into());
    }
    if args.duration.is_zero() {
        return Err("--duration must be above 0".into());
    }
    let driver = Arc::new(Driver::new(args)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()?;
    let samples = runtime.block_on(async {
        let from = Instant::now() + args.warmup;
        let window = Window {
            from,
            until: from + args.duration,
        };
        let tasks: Vec<_> = (0..args.concurrency)
            .map(|_| tokio::spawn(worker(driver.clone(), window)))
            .collect();
        let mut all = Samples::default();
        for task in tasks {
            all.merge(task.await?);
        }
        Ok::<_, Box<dyn std::error::Error>>(all)
    })?;

    let seconds = args.duration.as_secs_f64();
    println!(
        "# lifecycle {}: {} workers on {} threads, {seconds:.2} s measured after {:.2} s warm-up",
        driver.target.base,
        args.concurrency,
        args.threads,
        args.warmup.as_secs_f64()
    );
    println!("# op name ops_per_s p50_ms p99_ms count errors max_ms");
    let mut total_errors = 0;
    for (op, (latencies, errors)) in OPS.iter().zip(samples.latencies.into_iter().zip(samples.errors)) {
        print_op(op.name(), latencies, errors, seconds);
        total_errors += errors;
    }
    let cycle_count = samples.cycles.len();
    print_op("cycle", samples.cycles, 0, seconds);
    let mut shown = samples.first_errors.clone();
    shown.sort_unstable();
    shown.dedup();
    for error in &shown {
        eprintln!("lifecycle: {error}");
    }
    if cycle_count == 0 {
        return Err(format!(
            "no complete provision → bind → unbind → deprovision cycle succeeded ({total_errors} errors){}",
            samples
                .first_errors
                .first()
                .map_or_else(String::new, |e| format!("; first: {e}"))
        )
        .into());
    }
    Ok(())
}

/// `op NAME ops_per_s p50_ms p99_ms count errors max_ms`
fn print_op(name: &str, mut latencies: Vec<Duration>, errors: u64, seconds: f64) {
    latencies.sort_unstable();
    let count = latencies.len();
    println!(
        "op {name} {:.1} {:.3} {:.3} {count} {errors} {:.3}",
        count as f64 / seconds,
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
        ms(latencies.last().copied().unwrap_or_default()),
    );
}

/// Nearest-rank percentile of sorted samples (zero when there are none).
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.clamp(1, sorted.len().max(1)) - 1)
        .copied()
        .unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&samples, 99.0), Duration::from_millis(99));
        assert_eq!(
            percentile(&[Duration::from_millis(7)], 99.0),
            Duration::from_millis(7)
        );
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("15s").unwrap(), Duration::from_secs(15));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("fast").is_err());
    }
}
