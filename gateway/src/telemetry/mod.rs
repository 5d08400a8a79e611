//! Logs and traces: `tracing` to stderr (text or JSON, filtered by `RUST_LOG`, default `info`), and
//! OpenTelemetry spans exported over OTLP/HTTP when an endpoint is configured.
//!
//! The standard variables win over the config file: `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), `OTEL_SERVICE_NAME`, and the TLS files
//! (`OTEL_EXPORTER_OTLP_CERTIFICATE`, `_CLIENT_CERTIFICATE`, `_CLIENT_KEY`, read with the config). The W3C trace-context propagator is
//! installed globally: the request middleware continues a platform's `traceparent`, the upstream
//! client injects its own. Sampling is parent-based with the configured ratio for new traces.
//!
//! Nothing logged or traced carries credentials, `Authorization`, binding credentials, parameters
//! or the decoded originating identity: spans hold route templates, methods, status codes, broker
//! and platform names, operations and the request identity.
//!
//! # Layout
//! - this file: logging and trace export setup ([`init`]);
//! - [`metrics`]: the Prometheus metrics (`/metrics`);
//! - [`audit`]: the audit log (platform calls and operator actions);
//! - [`export`]: the exporter's HTTP client (the gateway's reqwest and rustls), failures counted;
//! - [`process`]: the process's own series and the build info.

pub mod audit;
pub mod export;
mod labels;
pub mod metrics;
pub mod process;
mod quotas;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use osb_config::TelemetrySettings;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Keeps the trace exporter alive; flushes what is buffered when dropped.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            // Best effort: a collector that is gone must not block shutdown.
            let _ = provider.shutdown();
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Installs the global subscriber: logs, and spans to OTLP when `telemetry` (or the environment)
/// names an endpoint. Safe to call more than once (later calls do nothing).
pub fn init(format: LogFormat, telemetry: Option<&TelemetrySettings>) -> Telemetry {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,actix_server=warn,actix_web=warn"));
    // Colours only on a terminal: a log file or a collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
    };

    let provider = telemetry.and_then(tracer_provider);
    let otel = provider.as_ref().map(|provider| {
        let tracer = provider.tracer("osb-gateway");
        // Our spans only: request and upstream spans are at info in these crates.
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(EnvFilter::new("osb_gateway=info,osb_routing=info"))
    });
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    // `try_init` fails only when a subscriber is already installed, which is fine.
    let _ = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otel)
        .try_init();
    Telemetry { provider }
}

/// The OTLP trace pipeline, if an endpoint is configured.
fn tracer_provider(settings: &TelemetrySettings) -> Option<SdkTracerProvider> {
    let from_env = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"));
    if from_env.is_none() && settings.otlp_endpoint.is_none() {
        return None;
    }
    let runtime = match tokio::runtime::Handle::try_current() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("osb-gateway: traces are not exported: no runtime to export on ({e})");
            return None;
        }
    };
    let client = match export::ExportClient::new(&settings.tls, runtime) {
        Ok(client) => client,
        Err(e) => {
            eprintln!("osb-gateway: traces are not exported: the exporter's TLS keys: {e}");
            return None;
        }
    };
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client);
    if let (None, Some(endpoint)) = (&from_env, &settings.otlp_endpoint) {
        exporter = exporter.with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')));
    }
    let exporter = match exporter.build() {
        Ok(exporter) => exporter,
        Err(e) => {
            eprintln!("osb-gateway: traces are not exported: {e}");
            return None;
        }
    };
    let service_name = env("OTEL_SERVICE_NAME").unwrap_or_else(|| settings.service_name.clone());
    Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                settings.sampling_ratio,
            ))))
            .with_resource(Resource::builder().with_service_name(service_name).build())
            .build(),
    )
}
