//! The OTLP exporter's HTTP client: the gateway's own reqwest over rustls (the upstream client's
//! builder, [`client_builder`]), so an https receiver behind a private CA or asking for a client
//! certificate works as an upstream broker does (`telemetry.tls_*`, or the standard
//! `OTEL_EXPORTER_OTLP_CERTIFICATE`, `_CLIENT_CERTIFICATE`, `_CLIENT_KEY`).
//!
//! The batch span processor exports from its own thread, outside the runtime: each export is
//! spawned onto the gateway's runtime and awaited from there. A failed export (no connection, a
//! TLS failure, a status other than 2xx) is counted in `osb_gateway_trace_export_failures_total`
//! and logged, at most once a minute with the number of failures since the last line: a receiver
//! that is gone neither floods the log nor goes unnoticed. The spans of a failed batch are dropped
//! (the SDK does not retry); requests are never slowed by it.
//!
//! [`client_builder`]: osb_routing::upstream::client_builder

use std::sync::LazyLock;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use osb_config::ClientTls;
use prometheus_client::metrics::counter::Counter;
use tracing::warn;

/// Failed trace exports, registered with the gateway's metrics (`/metrics`).
pub static EXPORT_FAILURES: LazyLock<Counter> = LazyLock::new(Counter::default);

/// Longest wait for the receiver's answer.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Least time between two log lines about failed exports.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// See the module docs.
#[derive(Debug)]
pub struct ExportClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
    log: Mutex<FailureLog>,
}

/// When failures were last logged, and how many came since.
#[derive(Debug, Default)]
struct FailureLog {
    last: Option<Instant>,
    unlogged: u64,
}

impl ExportClient {
    /// A client with `tls` that runs its exports on `runtime`.
    ///
    /// # Errors
    /// A PEM the TLS backend does not take.
    pub fn new(tls: &ClientTls, runtime: tokio::runtime::Handle) -> Result<Self, reqwest::Error> {
        let client = osb_routing::upstream::client_builder(tls)?
            .timeout(EXPORT_TIMEOUT)
            .connect_timeout(EXPORT_TIMEOUT)
            .user_agent(concat!("osb-gateway/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(ExportClient {
            client,
            runtime,
            log: Mutex::new(FailureLog::default()),
        })
    }

    /// Counts a failed export and logs it, at most once per [`LOG_EVERY`].
    fn failed(&self, endpoint: &str, problem: &str) {
        EXPORT_FAILURES.inc();
        let mut log = self.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if log.last.is_some_and(|last| now.duration_since(last) < LOG_EVERY) {
            log.unlogged += 1;
            return;
        }
        warn!(
            endpoint,
            problem,
            failures_since_last_line = log.unlogged,
            "Trace export failed; the spans of this batch are dropped (logged at most once a minute, counted in osb_gateway_trace_export_failures_total)."
        );
        log.last = Some(now);
        log.unlogged = 0;
    }
}

#[async_trait::async_trait]
impl HttpClient for ExportClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let endpoint = request.uri().to_string();
        let (parts, body) = request.into_parts();
        let mut outbound = self.client.request(parts.method, endpoint.as_str()).body(body);
        for (name, value) in &parts.headers {
            outbound = outbound.header(name, value);
        }
        let exchange = async move {
            let response = outbound.send().await?;
            let status = response.status();
            let headers = response.headers().clone();
            // The receiver's answer is small (an ExportTraceServiceResponse); bounded anyway.
            let body = response.bytes().await?;
            let body = body.slice(..body.len().min(64 * 1024));
            Ok::<_, reqwest::Error>((status, headers, body))
        };
        let result = match self.runtime.spawn(exchange).await {
            Ok(result) => result.map_err(|e| osb_routing::error::error_chain(&e)),
            Err(join) => Err(format!("the export was cancelled: {join}")),
        };
        let (status, headers, body) = match result {
            Ok(answer) => answer,
            Err(problem) => {
                self.failed(&endpoint, &problem);
                return Err(problem.into());
            }
        };
        if !status.is_success() {
            self.failed(&endpoint, &format!("the receiver answered {status}"));
        }
        let mut response = Response::builder().status(status.as_u16());
        for (name, value) in &headers {
            response = response.header(name.as_str(), value.as_bytes());
        }
        Ok(response.body(body)?)
    }
}
