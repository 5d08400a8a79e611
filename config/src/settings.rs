//! Validated settings: what the gateway runs on once [`crate::validate`] accepted the file.
//!
//! Every value here has been checked (addresses parse, URLs are absolute http(s), names are unique,
//! secrets were read), so the rest of the gateway never re-validates configuration.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use crate::Secret;

/// Default platform-facing listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default `X-Broker-API-Version` sent upstream.
pub const DEFAULT_API_VERSION: &str = "2.17";
/// Default seconds between catalog refreshes.
pub const DEFAULT_REFRESH_INTERVAL_SECS: u64 = 300;
/// Default upstream call timeout: below the ~60 s platforms wait for the gateway.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;
/// Default seconds to wait for every broker's first catalog.
pub const DEFAULT_STARTUP_GRACE_SECS: u64 = 30;
/// Default grace for in-flight requests on shutdown.
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 30;
/// Default largest platform request body.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;
/// Default time a request's head, and then its body, may take to arrive.
pub const DEFAULT_REQUEST_READ_TIMEOUT_SECS: u64 = 10;
/// Kubernetes Service Catalog rejects class/plan names and ids longer than this.
pub const MAX_NAME_LEN: usize = 63;

/// The gateway's whole configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The file the settings were read from (for messages), or `<inline>`.
    pub origin: String,
    /// Platform-facing OSB listener.
    pub listen: SocketAddr,
    /// HTTPS on the OSB listener.
    pub tls: Option<ListenerTls>,
    /// Operators' listener, if configured.
    pub admin: Option<AdminSettings>,
    /// Durable state backend.
    pub store: StoreSettings,
    /// Platforms allowed to call the gateway.
    pub platforms: Vec<PlatformSettings>,
    /// Upstream brokers, in configuration order (which is also merge precedence).
    pub brokers: Vec<BrokerSettings>,
    /// Merged-catalog settings.
    pub catalog: CatalogSettings,
    /// Policy file, resolved against the config file's folder.
    pub policy_file: Option<PathBuf>,
    /// Grace period for in-flight requests on shutdown.
    pub shutdown_grace: Duration,
    /// Largest request body a platform may send.
    pub max_body_bytes: usize,
    /// How long a request's head, and then its body, may take to arrive (408 after).
    pub request_read_timeout: Duration,
    /// Trace export.
    pub telemetry: TelemetrySettings,
    /// The audit log.
    pub audit: AuditSettings,
}

/// The audit log: always kept in the store; optionally exported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditSettings {
    /// A file every record is also appended to as one JSON line.
    pub jsonl_path: Option<PathBuf>,
    /// Records kept in the store (0: all).
    pub retain_records: u64,
}

/// Trace export (OpenTelemetry over OTLP/HTTP).
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetrySettings {
    pub service_name: String,
    /// `None`: no export unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
    pub otlp_endpoint: Option<String>,
    pub sampling_ratio: f64,
    /// Per-call metrics recorded (`telemetry.metrics`, default true).
    pub metrics: bool,
    /// One log line per platform request (`telemetry.access_log`, default false).
    pub access_log: bool,
    /// How the exporter checks the receiver's certificate and proves its own (`telemetry.tls_*`,
    /// or `OTEL_EXPORTER_OTLP_CERTIFICATE`, `_CLIENT_CERTIFICATE`, `_CLIENT_KEY`, which win).
    pub tls: ClientTls,
}

/// The admin listener.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    /// Basic-auth credentials of the operator named by `admin.username`; with no `users` either,
    /// `None` leaves the admin API open (bind it to loopback then).
    pub credentials: Option<BasicCredentials>,
    /// Named operators with their roles (`admin.users`).
    pub users: Vec<AdminUser>,
    /// HTTPS on the admin listener.
    pub tls: Option<ListenerTls>,
}

/// HTTPS on one listener: files read at start and again whenever they change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Clients must present a certificate signed by a CA in this file.
    pub client_ca_file: Option<PathBuf>,
}

/// One named operator of the admin API.
#[derive(Debug, Clone)]
pub struct AdminUser {
    pub name: String,
    pub password: Secret,
    pub role: AdminRole,
}

/// What an operator may do on the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminRole {
    /// Read: health, inventory, audit, catalog and its diff, policy status, explain, metrics.
    Viewer,
    /// Read and act: refresh, policy reload, confirm catalog removals, adopt, abandon.
    Operator,
}

impl AdminRole {
    /// `viewer` or `operator`.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminRole::Viewer => "viewer",
            AdminRole::Operator => "operator",
        }
    }
}

/// A user name and its password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicCredentials {
    pub username: String,
    pub password: Secret,
}

/// Where durable state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSettings {
    /// A folder on local disk (an embedded fjall database): zero setup, one replica.
    Embedded { path: PathBuf },
    /// A PostgreSQL database shared by replicas.
    /// The URL may hold the database password: a [`Secret`], never printed.
    Postgres { url: Secret },
}

/// One platform allowed to call the gateway.
#[derive(Debug, Clone)]
pub struct PlatformSettings {
    pub name: String,
    /// The password may hold several lines: each is valid (a rotation's old and new).
    pub basic: Option<BasicCredentials>,
    /// Several lines: each token is valid.
    pub bearer_token: Option<Secret>,
    /// Where the password came from, when a file: the gateway reads it again when it changes.
    pub password_file: Option<PathBuf>,
    /// Where the bearer token came from, when a file.
    pub bearer_token_file: Option<PathBuf>,
}

/// How the gateway authenticates to an upstream broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamAuth {
    None,
    Basic(BasicCredentials),
    Bearer(Secret),
}

/// What happens to upstream service and plan ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdMode {
    /// Deterministic gateway ids: UUIDv5 over the broker name and the upstream id.
    Rewrite,
    /// Upstream ids pass through unchanged.
    Keep,
}

/// One upstream OSB broker. Equal settings keep the broker's client across a configuration reload
/// (its connections, circuit breaker and credentials).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerSettings {
    pub name: String,
    /// Base URL, without a trailing slash.
    pub url: Url,
    /// The password or bearer token may hold several lines: the first is presented, the others
    /// when the broker answers 401 (a rotation's old and new).
    pub auth: UpstreamAuth,
    /// Where the password or bearer token came from, when a file: the gateway reads it again
    /// when it changes (or on SIGHUP).
    pub auth_file: Option<PathBuf>,
    /// Prefix of this broker's service names.
    pub namespace: String,
    pub ids: IdMode,
    /// `X-Broker-API-Version` sent to this broker.
    pub api_version: String,
    pub refresh_interval: Duration,
    pub timeout: Duration,
    /// Timeout of a catalog fetch.
    pub catalog_timeout: Duration,
    /// Consecutive failures that open the circuit breaker.
    pub breaker_failures: u32,
    /// How long the breaker stays open before a probe.
    pub breaker_open: Duration,
    /// Upstream service name → published name (before the namespace).
    pub rename: BTreeMap<String, String>,
    /// What this broker's catalog may be; a bigger one is refused (the last good one stays).
    pub catalog_limits: CatalogLimits,
    /// How the gateway's client checks this broker's certificate and proves its own.
    pub tls: ClientTls,
}

/// The TLS of one of the gateway's HTTP clients: of an upstream broker, of the OTLP exporter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// PEM certificates trusted besides the built-in web roots (`tls_ca_file`).
    pub ca_pem: Option<String>,
    /// The client certificate chain and its private key, PEM, presented to the server (mTLS).
    /// A secret: never printed.
    pub client_identity_pem: Option<Secret>,
    /// Any certificate is accepted (labs only).
    pub insecure_skip_verify: bool,
}

/// The bounds of one broker's catalog. The defaults are far above every real catalog (OSBA's is
/// 1 MB with 39 services, 96 plans, 16 levels deep) and keep a catalog's cost in memory bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogLimits {
    pub max_bytes: usize,
    pub max_services: usize,
    pub max_plans: usize,
    pub max_depth: usize,
}

impl Default for CatalogLimits {
    fn default() -> Self {
        CatalogLimits {
            max_bytes: DEFAULT_MAX_CATALOG_BYTES,
            max_services: DEFAULT_MAX_CATALOG_SERVICES,
            max_plans: DEFAULT_MAX_CATALOG_PLANS,
            max_depth: DEFAULT_MAX_CATALOG_DEPTH,
        }
    }
}

/// Default largest catalog, in bytes.
pub const DEFAULT_MAX_CATALOG_BYTES: usize = 16 * 1024 * 1024;
/// Default most services in one broker's catalog.
pub const DEFAULT_MAX_CATALOG_SERVICES: usize = 10_000;
/// Default most plans in one broker's catalog.
pub const DEFAULT_MAX_CATALOG_PLANS: usize = 50_000;
/// Default deepest nesting in one broker's catalog.
pub const DEFAULT_MAX_CATALOG_DEPTH: usize = 64;

/// Merged-catalog settings.
#[derive(Debug, Clone)]
pub struct CatalogSettings {
    /// `.` or `-`.
    pub name_separator: String,
    /// How long `GET /v2/catalog` waits for every broker's first catalog.
    pub startup_grace: Duration,
}

impl BrokerSettings {
    /// The published name of an upstream service: `<namespace><separator><renamed name>`.
    pub fn published_name(&self, upstream_name: &str, separator: &str) -> String {
        published_name(&self.namespace, &self.rename, upstream_name, separator)
    }
}

/// `<namespace><separator><name>`, where `name` is `upstream_name` after the rename map.
pub fn published_name(
    namespace: &str,
    rename: &BTreeMap<String, String>,
    upstream_name: &str,
    separator: &str,
) -> String {
    let name = rename.get(upstream_name).map_or(upstream_name, String::as_str);
    format!("{namespace}{separator}{name}")
}
