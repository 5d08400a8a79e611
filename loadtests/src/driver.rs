//! The load driver: HTTP/1.1 keep-alive connections (hyper, one request in flight per connection)
//! running a scenario in closed or open loop, with exact latency percentiles.
//!
//! Scenarios ([`Scenario`]):
//! - `catalog`: `GET /v2/catalog` (a platform relisting the marketplace);
//! - `lifecycle`: provision → bind → unbind → deprovision, synchronous, fresh UUIDs per cycle;
//! - `mixed`: the asynchronous lifecycle: provision with `accepts_incomplete=true` (202), poll
//!   `last_operation` until "succeeded", bind, unbind, deprovision (202) and poll again.
//!
//! Modes ([`Mode`]):
//! - **closed loop**: C connections, each starts its next unit (request or cycle) when the last
//!   one finished; gives the saturation throughput. An operation counts when it *completes*
//!   inside the measured window; its latency runs from send to the last body byte.
//! - **open loop**: units start on a fixed schedule (`rate` per second: unit `i` is due at
//!   `start + i / rate`), taken by up to C connections. Latency is measured from the *due* time,
//!   not from when a free connection got round to it, so a stalled server is charged for every
//!   unit it delayed (no coordinated omission, as in wrk2). The first call of a unit is timed from
//!   the due time; the later calls of a cycle depend on it and are timed from their own send. A unit
//!   counts when it was due inside the window; in-flight units finish after it (unmeasured ones
//!   too, so a lifecycle leaves nothing behind).
//!
//! A success is exactly the status the call should get (201/200/202 as the scenario says); any
//! other answer, a transport error or a timeout is an error. Percentiles are nearest-rank over
//! every successful call: no histogram buckets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::json;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::Result;

/// First error messages kept per run (shown in the report).
const KEPT_ERRORS: usize = 5;
/// Most `last_operation` polls of one asynchronous operation before it counts as failed.
const MAX_POLLS: u32 = 50;

/// What a unit of load is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// `GET /v2/catalog`.
    Catalog,
    /// `GET /v2/catalog` with `Accept-Encoding: gzip` (what Kubernetes Service Catalog sends).
    CatalogGzip,
    /// Synchronous provision of a new instance, nothing else (the registry grows by one each).
    Provision,
    /// Synchronous provision → bind → unbind → deprovision.
    Lifecycle,
    /// Asynchronous provision and deprovision with `last_operation` polling, bind and unbind.
    Mixed,
}

impl Scenario {
    /// Operation names, in the order a unit runs them.
    pub fn ops(self) -> &'static [&'static str] {
        match self {
            Scenario::Catalog | Scenario::CatalogGzip => &["catalog"],
            Scenario::Provision => &["provision"],
            Scenario::Lifecycle => &["provision", "bind", "unbind", "deprovision"],
            Scenario::Mixed => &["provision", "poll", "bind", "unbind", "deprovision"],
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::Catalog => "catalog",
            Scenario::CatalogGzip => "catalog-gzip",
            Scenario::Provision => "provision",
            Scenario::Lifecycle => "lifecycle",
            Scenario::Mixed => "mixed",
        }
    }
}

/// Closed or open loop.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Mode {
    /// `connections` units in flight at all times.
    Closed,
    /// `rate` units per second, whatever the answers.
    Open { rate: f64 },
}

/// Where the load goes.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// `Authorization` sent with every call.
    pub authorization: Option<HeaderValue>,
}

/// The ids and bodies of the calls (per target: the gateway renames ids).
#[derive(Debug, Clone)]
pub struct Calls {
    provision_body: Bytes,
    bind_body: Bytes,
    /// `service_id=…&plan_id=…`
    ids_query: String,
}

impl Calls {
    /// Calls for the plan `plan_id` of `service_id`, provisioning with `parameters`.
    ///
    /// # Errors
    /// The bodies cannot be serialized (they always can).
    pub fn new(service_id: &str, plan_id: &str, parameters: &serde_json::Value) -> Result<Self> {
        let provision_body = serde_json::to_vec(&json!({
            "service_id": service_id,
            "plan_id": plan_id,
            "organization_guid": "loadtests-org",
            "space_guid": "loadtests-space",
            "context": {"platform": "kubernetes", "namespace": "loadtests"},
            "parameters": parameters,
        }))?;
        let bind_body = serde_json::to_vec(&json!({
            "service_id": service_id,
            "plan_id": plan_id,
            "bind_resource": {"app_guid": "loadtests-app"},
            "parameters": {},
        }))?;
        let ids_query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("service_id", service_id)
            .append_pair("plan_id", plan_id)
            .finish();
        Ok(Calls {
            provision_body: Bytes::from(provision_body),
            bind_body: Bytes::from(bind_body),
            ids_query,
        })
    }
}

/// One run's settings.
#[derive(Debug, Clone)]
pub struct Load {
    pub scenario: Scenario,
    pub mode: Mode,
    /// Connections (closed loop: units in flight; open loop: most units in flight).
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Per-call timeout.
    pub timeout: Duration,
}

/// Latency distribution and counts of one operation (or of all calls, or of whole units).
#[derive(Debug, Clone, Default, Serialize)]
pub struct OpStats {
    pub name: String,
    pub count: u64,
    pub errors: u64,
    pub per_s: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl OpStats {
    fn from_samples(name: &str, mut nanos: Vec<u64>, errors: u64, seconds: f64) -> Self {
        nanos.sort_unstable();
        let count = nanos.len() as u64;
        let ms = |n: u64| n as f64 / 1e6;
        let mean = if nanos.is_empty() {
            0.0
        } else {
            nanos.iter().map(|&n| n as f64).sum::<f64>() / nanos.len() as f64 / 1e6
        };
        OpStats {
            name: name.to_owned(),
            count,
            errors,
            per_s: count as f64 / seconds,
            mean_ms: mean,
            p50_ms: ms(percentile(&nanos, 50.0)),
            p90_ms: ms(percentile(&nanos, 90.0)),
            p99_ms: ms(percentile(&nanos, 99.0)),
            p999_ms: ms(percentile(&nanos, 99.9)),
            max_ms: ms(nanos.last().copied().unwrap_or_default()),
        }
    }
}

/// Nearest-rank percentile of sorted samples (0 when there are none).
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    // The small epsilon keeps 99.9 % of 1000 at rank 999 despite 0.999 * 1000 = 999.0000000000001.
    let rank = ((p / 100.0) * sorted.len() as f64 - 1e-9).ceil() as usize;
    sorted
        .get(rank.clamp(1, sorted.len().max(1)) - 1)
        .copied()
        .unwrap_or_default()
}

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct RunStats {
    pub scenario: Scenario,
    pub mode: Mode,
    pub connections: usize,
    pub duration_s: f64,
    /// Whole units (requests or cycles): throughput and latency from due/send to the last call.
    pub units: OpStats,
    /// Every call of every unit together: calls per second and per-call latency.
    pub calls: OpStats,
    /// Per operation.
    pub ops: Vec<OpStats>,
    /// The first error messages.
    pub first_errors: Vec<String>,
}

// === one connection ===

/// A keep-alive connection to the target, reconnected after an error.
struct Connection {
    target: Arc<Target>,
    host: HeaderValue,
    sender: Option<SendRequest<Full<Bytes>>>,
    timeout: Duration,
    /// Send `Accept-Encoding: gzip`.
    gzip: bool,
}

impl Connection {
    fn new(target: Arc<Target>, timeout: Duration) -> Result<Self> {
        let host = HeaderValue::from_str(&target.addr.to_string())?;
        Ok(Connection {
            target,
            host,
            sender: None,
            timeout,
            gzip: false,
        })
    }

    async fn connect(&self) -> std::result::Result<SendRequest<Full<Bytes>>, String> {
        let stream = TcpStream::connect(self.target.addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(async move {
            // Ends when the peer closes or the sender is dropped.
            let _ = connection.await;
        });
        Ok(sender)
    }

    /// One call; the status and body, or a description of the failure.
    async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&Bytes>,
    ) -> std::result::Result<(StatusCode, Bytes), String> {
        let attempt = tokio::time::timeout(self.timeout, self.call_inner(method, path, body)).await;
        match attempt {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                self.sender = None;
                Err(e)
            }
            Err(_) => {
                self.sender = None;
                Err(format!("timed out after {:?}", self.timeout))
            }
        }
    }

    async fn call_inner(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&Bytes>,
    ) -> std::result::Result<(StatusCode, Bytes), String> {
        let sender = match self.sender.take() {
            Some(sender) if !sender.is_closed() => sender,
            _ => self.connect().await?,
        };
        let mut sender = sender;
        sender.ready().await.map_err(|e| format!("connection: {e}"))?;
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.host.clone())
            .header("x-broker-api-version", HeaderValue::from_static("2.17"));
        if let Some(authorization) = &self.target.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        if self.gzip {
            request = request.header("accept-encoding", HeaderValue::from_static("gzip"));
        }
        if body.is_some() {
            request = request.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let request = request
            .body(Full::new(body.cloned().unwrap_or_default()))
            .map_err(|e| format!("request: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        self.sender = Some(sender);
        Ok((status, body))
    }
}

// === recording ===

/// Samples of one worker.
struct Recorder {
    /// Per op: latencies (ns) of successful calls.
    latencies: Vec<Vec<u64>>,
    errors: Vec<u64>,
    units: Vec<u64>,
    unit_errors: u64,
    first_errors: Vec<String>,
}

impl Recorder {
    fn new(ops: usize) -> Self {
        Recorder {
            latencies: vec![Vec::new(); ops],
            errors: vec![0; ops],
            units: Vec::new(),
            unit_errors: 0,
            first_errors: Vec::new(),
        }
    }

    fn merge(&mut self, other: Recorder) {
        for (mine, theirs) in self.latencies.iter_mut().zip(other.latencies) {
            mine.extend(theirs);
        }
        for (mine, theirs) in self.errors.iter_mut().zip(other.errors) {
            *mine += theirs;
        }
        self.units.extend(other.units);
        self.unit_errors += other.unit_errors;
        for error in other.first_errors {
            if self.first_errors.len() < KEPT_ERRORS && !self.first_errors.contains(&error) {
                self.first_errors.push(error);
            }
        }
    }
}

/// When samples count.
#[derive(Debug, Clone, Copy)]
struct Window {
    from: Instant,
    until: Instant,
}

/// A unit being run: where its samples go and from when its first call is timed.
struct Unit<'a> {
    recorder: &'a mut Recorder,
    window: Window,
    /// Open loop: the unit's due time, and whether it was due inside the window.
    due: Option<(Instant, bool)>,
    first: bool,
    started: Instant,
}

impl Unit<'_> {
    fn measured(&self, done: Instant) -> bool {
        match self.due {
            Some((_, inside)) => inside,
            None => done >= self.window.from && done <= self.window.until,
        }
    }

    /// Runs one call and records it; `Ok(body)` when the status is one of `expected`.
    async fn step(
        &mut self,
        connection: &mut Connection,
        op: usize,
        method: Method,
        path: &str,
        body: Option<&Bytes>,
        expected: &[StatusCode],
    ) -> Option<(StatusCode, Bytes)> {
        let sent = Instant::now();
        let from = match (self.first, self.due) {
            (true, Some((due, _))) => due.min(sent),
            _ => sent,
        };
        self.first = false;
        let result = connection.call(method, path, body).await;
        let done = Instant::now();
        let measured = self.measured(done);
        match result {
            Ok((status, body)) if expected.contains(&status) => {
                if measured {
                    if let Some(samples) = self.recorder.latencies.get_mut(op) {
                        samples.push(u64::try_from((done - from).as_nanos()).unwrap_or(u64::MAX));
                    }
                }
                Some((status, body))
            }
            other => {
                if measured {
                    if let Some(errors) = self.recorder.errors.get_mut(op) {
                        *errors += 1;
                    }
                }
                let message = match other {
                    Ok((status, body)) => format!(
                        "{path}: answered {status}: {}",
                        String::from_utf8_lossy(body.get(..160).unwrap_or(&body))
                    ),
                    Err(e) => format!("{path}: {e}"),
                };
                if self.recorder.first_errors.len() < KEPT_ERRORS
                    && !self.recorder.first_errors.contains(&message)
                {
                    self.recorder.first_errors.push(message);
                }
                None
            }
        }
    }

    fn finish(self, ok: bool) {
        let done = Instant::now();
        if !self.measured(done) {
            return;
        }
        if ok {
            let from = self.due.map_or(self.started, |(due, _)| due.min(self.started));
            self.recorder
                .units
                .push(u64::try_from((done - from).as_nanos()).unwrap_or(u64::MAX));
        } else {
            self.recorder.unit_errors += 1;
        }
    }
}

/// Runs one unit of `scenario` on `connection`.
async fn run_unit(
    scenario: Scenario,
    calls: &Calls,
    connection: &mut Connection,
    recorder: &mut Recorder,
    window: Window,
    due: Option<Instant>,
) {
    let started = Instant::now();
    let mut unit = Unit {
        recorder,
        window,
        due: due.map(|d| (d, d >= window.from && d < window.until)),
        first: true,
        started,
    };
    let ok = match scenario {
        Scenario::Catalog | Scenario::CatalogGzip => unit
            .step(connection, 0, Method::GET, "/v2/catalog", None, &[StatusCode::OK])
            .await
            .is_some(),
        Scenario::Provision => {
            let path = format!("/v2/service_instances/{}", uuid::Uuid::new_v4());
            unit.step(
                connection,
                0,
                Method::PUT,
                &path,
                Some(&calls.provision_body),
                &[StatusCode::CREATED],
            )
            .await
            .is_some()
        }
        Scenario::Lifecycle => lifecycle(&mut unit, connection, calls, false).await,
        Scenario::Mixed => lifecycle(&mut unit, connection, calls, true).await,
    };
    unit.finish(ok);
}

/// provision → bind → unbind → deprovision (asynchronous provision and deprovision with polling
/// when `asynchronous`). A failed provision ends the cycle; after a failed bind the instance is
/// still deprovisioned, so a run leaves nothing behind when calls succeed.
async fn lifecycle(
    unit: &mut Unit<'_>,
    connection: &mut Connection,
    calls: &Calls,
    asynchronous: bool,
) -> bool {
    let instance = uuid::Uuid::new_v4().to_string();
    let binding = uuid::Uuid::new_v4().to_string();
    let instance_path = format!("/v2/service_instances/{instance}");
    let binding_path = format!("{instance_path}/service_bindings/{binding}");
    let (provision, bind, unbind, deprovision) = if asynchronous { (0, 2, 3, 4) } else { (0, 1, 2, 3) };
    let create_path = if asynchronous {
        format!("{instance_path}?accepts_incomplete=true")
    } else {
        instance_path.clone()
    };
    let created: &[StatusCode] = if asynchronous {
        &[StatusCode::ACCEPTED, StatusCode::CREATED]
    } else {
        &[StatusCode::CREATED]
    };
    let Some((status, _)) = unit
        .step(
            connection,
            provision,
            Method::PUT,
            &create_path,
            Some(&calls.provision_body),
            created,
        )
        .await
    else {
        return false;
    };
    let poll_path = format!("{instance_path}/last_operation?{}", calls.ids_query);
    if status == StatusCode::ACCEPTED && !poll(unit, connection, &poll_path).await {
        return false;
    }
    let bound = unit
        .step(
            connection,
            bind,
            Method::PUT,
            &binding_path,
            Some(&calls.bind_body),
            &[StatusCode::CREATED],
        )
        .await
        .is_some();
    let unbound = bound
        && unit
            .step(
                connection,
                unbind,
                Method::DELETE,
                &format!("{binding_path}?{}", calls.ids_query),
                None,
                &[StatusCode::OK],
            )
            .await
            .is_some();
    let delete_path = if asynchronous {
        format!("{instance_path}?accepts_incomplete=true&{}", calls.ids_query)
    } else {
        format!("{instance_path}?{}", calls.ids_query)
    };
    let deleted: &[StatusCode] = if asynchronous {
        &[StatusCode::ACCEPTED, StatusCode::OK]
    } else {
        &[StatusCode::OK]
    };
    let deprovisioned = match unit
        .step(
            connection,
            deprovision,
            Method::DELETE,
            &delete_path,
            None,
            deleted,
        )
        .await
    {
        Some((StatusCode::ACCEPTED, _)) => poll(unit, connection, &poll_path).await,
        Some(_) => true,
        None => false,
    };
    bound && unbound && deprovisioned
}

/// Polls `last_operation` until "succeeded" (or 410 Gone after a delete).
async fn poll(unit: &mut Unit<'_>, connection: &mut Connection, path: &str) -> bool {
    for _ in 0..MAX_POLLS {
        let Some((status, body)) = unit
            .step(
                connection,
                1,
                Method::GET,
                path,
                None,
                &[StatusCode::OK, StatusCode::GONE],
            )
            .await
        else {
            return false;
        };
        if status == StatusCode::GONE {
            return true;
        }
        let state = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("state").and_then(|s| s.as_str()).map(str::to_owned));
        match state.as_deref() {
            Some("succeeded") => return true,
            Some("in progress") => continue,
            _ => return false,
        }
    }
    false
}

/// Runs `load` against `target` on the current tokio runtime.
///
/// # Errors
/// Invalid settings (no connections, a zero duration or rate).
pub async fn run(target: Target, calls: Calls, load: &Load) -> Result<RunStats> {
    if load.connections == 0 || load.duration.is_zero() {
        return Err("connections and duration must be above 0".into());
    }
    if let Mode::Open { rate } = load.mode {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(format!("open-loop rate must be above 0, got {rate}").into());
        }
    }
    let target = Arc::new(target);
    let calls = Arc::new(calls);
    let start = Instant::now();
    let window = Window {
        from: start + load.warmup,
        until: start + load.warmup + load.duration,
    };
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(load.connections);
    for _ in 0..load.connections {
        let mut connection = Connection::new(target.clone(), load.timeout)?;
        connection.gzip = load.scenario == Scenario::CatalogGzip;
        let calls = calls.clone();
        let next = next.clone();
        let scenario = load.scenario;
        let mode = load.mode;
        tasks.push(tokio::spawn(async move {
            let mut recorder = Recorder::new(scenario.ops().len());
            match mode {
                Mode::Closed => {
                    while Instant::now() < window.until {
                        run_unit(scenario, &calls, &mut connection, &mut recorder, window, None).await;
                    }
                }
                Mode::Open { rate } => loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let due = start + Duration::from_secs_f64(i as f64 / rate);
                    if due >= window.until {
                        break;
                    }
                    tokio::time::sleep_until(due).await;
                    run_unit(
                        scenario,
                        &calls,
                        &mut connection,
                        &mut recorder,
                        window,
                        Some(due),
                    )
                    .await;
                },
            }
            recorder
        }));
    }
    let mut all = Recorder::new(load.scenario.ops().len());
    for task in tasks {
        all.merge(task.await?);
    }
    let seconds = load.duration.as_secs_f64();
    let ops: Vec<OpStats> = load
        .scenario
        .ops()
        .iter()
        .zip(all.latencies.iter().zip(&all.errors))
        .map(|(name, (samples, errors))| OpStats::from_samples(name, samples.clone(), *errors, seconds))
        .collect();
    let every_call: Vec<u64> = all.latencies.iter().flatten().copied().collect();
    let call_errors = all.errors.iter().sum();
    Ok(RunStats {
        scenario: load.scenario,
        mode: load.mode,
        connections: load.connections,
        duration_s: seconds,
        units: OpStats::from_samples("unit", all.units, all.unit_errors, seconds),
        calls: OpStats::from_samples("calls", every_call, call_errors, seconds),
        ops,
        first_errors: all.first_errors,
    })
}

/// `15s`, `250ms`, `2m`, or a number of seconds.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (15s, 500ms, 1m)"))?;
    Duration::try_from_secs_f64(value * scale).map_err(|e| format!("{text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&samples, 50.0), 500);
        assert_eq!(percentile(&samples, 99.0), 990);
        assert_eq!(percentile(&samples, 99.9), 999);
        assert_eq!(percentile(&[7], 99.9), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }

    #[test]
    fn stats_count_and_rate() {
        let stats = OpStats::from_samples("x", vec![3_000_000, 1_000_000, 2_000_000], 1, 2.0);
        assert_eq!(stats.count, 3);
        assert_eq!(stats.errors, 1);
        assert!((stats.per_s - 1.5).abs() < 1e-9);
        assert!((stats.p50_ms - 2.0).abs() < 1e-9);
        assert!((stats.max_ms - 3.0).abs() < 1e-9);
    }
}
