//! The configuration as written: what serde reads from the file and the environment.
//!
//! These structs mirror the file one to one and are the reference for every key (the README's
//! configuration table is drawn from these docs). Nothing here is checked beyond its type; unknown
//! keys are not silently dropped but collected by the loader and reported as problems (we use
//! `serde_ignored` instead of `deny_unknown_fields` so that *every* unknown key is reported, not only
//! the first; for the same reason no struct here uses `serde(flatten)`, which hides unknown keys).
//! [`crate::validate`] turns a [`RawSettings`] into checked [`crate::Settings`].

use std::collections::BTreeMap;

use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Default, Deserialize)]
pub struct RawSettings {
    /// Platform-facing OSB listener, `host:port`. Default `127.0.0.1:8080`.
    pub listen: Option<String>,
    /// HTTPS on the OSB listener. Optional (plain HTTP without it).
    pub tls: Option<RawListenerTls>,
    /// The admin listener (/healthz, /readyz, /metrics, /admin/*). Optional.
    pub admin: Option<RawAdmin>,
    /// Where the gateway keeps its durable state.
    #[serde(default)]
    pub store: RawStore,
    /// Who may call the gateway.
    #[serde(default)]
    pub platforms: Vec<RawPlatform>,
    /// The upstream OSB brokers behind the gateway.
    #[serde(default)]
    pub brokers: Vec<RawBroker>,
    /// How the merged catalog is built and cached.
    #[serde(default)]
    pub catalog: RawCatalog,
    /// Policy file (visibility, placement, parameter rules); optional.
    pub policy_file: Option<String>,
    /// Seconds in-flight requests get to finish after a shutdown signal. Default 30.
    pub shutdown_grace_secs: Option<u64>,
    /// Largest request body a platform may send, in bytes. Default 1 MiB.
    pub max_body_bytes: Option<u64>,
    /// Seconds a request's head, and then its body, may each take to arrive (both listeners);
    /// a slower request is answered 408. Default 10.
    pub request_read_timeout_secs: Option<u64>,
    /// Traces (OpenTelemetry). The standard `OTEL_*` variables win over these keys.
    #[serde(default)]
    pub telemetry: RawTelemetry,
    /// The audit log (kept in the store; optionally also exported as JSON lines).
    #[serde(default)]
    pub audit: RawAudit,
}

/// `audit:` the audit log of platform calls and operator actions.
#[derive(Debug, Default, Deserialize)]
pub struct RawAudit {
    /// File every audit record is also appended to, one JSON object per line (relative to the
    /// config file). Optional: the records are always kept in the store.
    pub jsonl_path: Option<String>,
    /// Records kept in the store: the oldest beyond this many are removed (in steps of 1000).
    /// Default 1000000; 0 keeps every record. The JSON lines export is never pruned.
    pub retain_records: Option<u64>,
}

/// `telemetry:` trace export.
#[derive(Debug, Default, Deserialize)]
pub struct RawTelemetry {
    /// `service.name` of the spans. Default `osb-gateway` (`OTEL_SERVICE_NAME` wins).
    pub service_name: Option<String>,
    /// OTLP/HTTP endpoint, e.g. `http://127.0.0.1:4318` (`OTEL_EXPORTER_OTLP_ENDPOINT` wins).
    /// Without either, no traces are exported.
    pub otlp_endpoint: Option<String>,
    /// Share of traces sampled, 0.0 to 1.0 (a platform's sampled `traceparent` is followed).
    /// Default 1.0.
    pub sampling_ratio: Option<f64>,
    /// Per-call metrics (request, upstream, registry and policy histograms and counters).
    /// Default true; false leaves only the values read at scrape time (catalog, registry, health).
    pub metrics: Option<bool>,
    /// One `info` line per platform request (target `osb_gateway::access`): method, route
    /// template, status, duration, platform, ids and request identity. Default false.
    pub access_log: Option<bool>,
    /// PEM file of CA certificates trusted for an https endpoint (a private CA), besides the
    /// built-in web roots; relative to the config file. `OTEL_EXPORTER_OTLP_CERTIFICATE` wins.
    pub tls_ca_file: Option<String>,
    /// PEM file of the client certificate presented to the receiver (mTLS); needs
    /// `tls_client_key_file`. `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE` wins.
    pub tls_client_cert_file: Option<String>,
    /// PEM file of the client certificate's private key. `OTEL_EXPORTER_OTLP_CLIENT_KEY` wins.
    pub tls_client_key_file: Option<String>,
}

/// `admin:` the separate operators' listener.
#[derive(Debug, Default, Deserialize)]
pub struct RawAdmin {
    /// `host:port` of the admin listener.
    pub listen: Option<String>,
    /// Basic-auth user name for the admin API (with one of the `password*` keys).
    pub username: Option<String>,
    /// The password itself (prefer `password_env` or `password_file`).
    pub password: Option<String>,
    /// Name of an environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password (trailing newline trimmed); relative to the config file.
    pub password_file: Option<String>,
    /// HTTPS on the admin listener. Optional.
    pub tls: Option<RawListenerTls>,
    /// Named operators, each with a role: `viewer` reads, `operator` also acts (refresh, reload,
    /// confirm, adopt, abandon). Besides or instead of `username` (who is an operator).
    #[serde(default)]
    pub users: Vec<RawAdminUser>,
}

/// `tls:` / `admin.tls:` HTTPS on a listener. The files are re-read when they change (certificate
/// rotation): new connections get the new certificate, open ones keep theirs.
#[derive(Debug, Default, Deserialize)]
pub struct RawListenerTls {
    /// PEM certificate chain of the listener; relative to the config file.
    pub cert_file: Option<String>,
    /// PEM private key of the certificate.
    pub key_file: Option<String>,
    /// PEM CA certificates: clients must present a certificate signed by one of them. Optional.
    pub client_ca_file: Option<String>,
}

/// `admin.users[]`: one named operator of the admin API.
#[derive(Debug, Default, Deserialize)]
pub struct RawAdminUser {
    /// The user name (HTTP Basic), recorded as the actor of every audit record they cause.
    pub name: Option<String>,
    /// `viewer` (read) or `operator` (read and act). Default `viewer`.
    pub role: Option<String>,
    /// The password itself (prefer `password_env` or `password_file`).
    pub password: Option<String>,
    /// Name of an environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password (trailing newline trimmed); relative to the config file.
    pub password_file: Option<String>,
}

/// `store:` the ownership registry's backend.
#[derive(Debug, Default, Deserialize)]
pub struct RawStore {
    /// `embedded` (default, a folder on local disk) or `postgres`.
    pub kind: Option<String>,
    /// Folder of the embedded store. Default `./data/osb-gateway.store` (relative to the config
    /// file; `./data/osb-gateway.redb` when only that exists, the default of earlier versions).
    pub path: Option<String>,
    /// PostgreSQL URL, for `kind: postgres`.
    pub url: Option<String>,
}

/// `platforms[]`: one platform (Kubernetes cluster, Cloud Foundry) allowed to call the gateway.
#[derive(Debug, Default, Deserialize)]
pub struct RawPlatform {
    /// Unique name, used in logs, metrics and the ownership registry.
    pub name: Option<String>,
    /// Basic-auth user name (with one of the `password*` keys).
    pub username: Option<String>,
    /// The password itself (prefer `password_env` or `password_file`).
    pub password: Option<String>,
    /// Name of an environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password (trailing newline trimmed); relative to the config file.
    pub password_file: Option<String>,
    /// A bearer token accepted instead of (or besides) basic auth.
    pub bearer_token: Option<String>,
    /// Name of an environment variable holding the bearer token.
    pub bearer_token_env: Option<String>,
    /// File holding the bearer token (trailing newline trimmed); relative to the config file.
    pub bearer_token_file: Option<String>,
}

/// `brokers[]`: one upstream OSB broker.
#[derive(Debug, Default, Deserialize)]
pub struct RawBroker {
    /// Unique name: lower-case letters, digits and `-`. Part of every rewritten id, so keep it stable.
    pub name: Option<String>,
    /// Base URL of the broker (without `/v2`).
    pub url: Option<String>,
    /// Basic-auth user name (with one of the `password*` keys), or use `bearer_token*`.
    pub username: Option<String>,
    /// The password itself (prefer `password_env` or `password_file`).
    pub password: Option<String>,
    /// Name of an environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password (trailing newline trimmed); relative to the config file.
    pub password_file: Option<String>,
    /// A bearer token accepted instead of (or besides) basic auth.
    pub bearer_token: Option<String>,
    /// Name of an environment variable holding the bearer token.
    pub bearer_token_env: Option<String>,
    /// File holding the bearer token (trailing newline trimmed); relative to the config file.
    pub bearer_token_file: Option<String>,
    /// Prefix of this broker's service names. Default: the broker's name.
    pub namespace: Option<String>,
    /// `rewrite` (default): deterministic gateway ids; `keep`: pass upstream ids through.
    pub ids: Option<String>,
    /// `X-Broker-API-Version` sent to this broker. Default `2.17`.
    pub api_version: Option<String>,
    /// Seconds between catalog refreshes. Default 300.
    pub refresh_interval_secs: Option<u64>,
    /// Seconds before an upstream call is abandoned. Default 30 (keep it below the platform's 60).
    pub timeout_secs: Option<u64>,
    /// Seconds before a catalog fetch is abandoned. Default: `timeout_secs`.
    pub catalog_timeout_secs: Option<u64>,
    /// Consecutive failures (no answer, timeout, 5xx) that open the circuit breaker. Default 5.
    pub breaker_failures: Option<u32>,
    /// Seconds the breaker stays open before a probe call. Default 10.
    pub breaker_open_secs: Option<u64>,
    /// Largest catalog accepted from this broker, in bytes. Default 16777216 (16 MiB: a catalog costs
    /// about eleven times its size in memory, so one this large takes some 180 MB).
    pub max_catalog_bytes: Option<u64>,
    /// Most services accepted in this broker's catalog. Default 10000.
    pub max_catalog_services: Option<u64>,
    /// Most plans (all services together) accepted in this broker's catalog. Default 50000.
    pub max_catalog_plans: Option<u64>,
    /// Deepest nesting of objects and arrays accepted in this broker's catalog. Default 64.
    pub max_catalog_depth: Option<u64>,
    /// PEM file of CA certificates trusted for this broker (a private CA), besides the built-in
    /// web roots; relative to the config file.
    pub tls_ca_file: Option<String>,
    /// PEM file of the client certificate (chain) presented to this broker (mTLS); needs
    /// `tls_client_key_file`.
    pub tls_client_cert_file: Option<String>,
    /// PEM file of the client certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub tls_client_key_file: Option<String>,
    /// Accept any certificate from this broker: no protection against interception. Labs only;
    /// logged as a warning at every start. Default false.
    pub tls_insecure_skip_verify: Option<bool>,
    /// Upstream service name → name to publish (before the namespace is prefixed).
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
}

/// `catalog:` merged-catalog settings.
#[derive(Debug, Default, Deserialize)]
pub struct RawCatalog {
    /// Between namespace and service name: `.` (default) or `-` (OSB 2.13 name rules).
    pub name_separator: Option<String>,
    /// Seconds `GET /v2/catalog` waits (503) for every broker's first catalog at start. Default 30.
    pub startup_grace_secs: Option<u64>,
}

/// Where a secret is to be read from: the three keys `X`, `X_env`, `X_file` of one entry.
#[derive(Debug, Clone, Copy)]
pub struct SecretKeys<'a> {
    /// `password` or `bearer_token`: the stem of the three key names.
    pub stem: &'static str,
    pub literal: Option<&'a str>,
    pub env: Option<&'a str>,
    pub file: Option<&'a str>,
}

impl SecretKeys<'_> {
    /// `true` when none of the three keys is given.
    pub fn is_absent(&self) -> bool {
        self.literal.is_none() && self.env.is_none() && self.file.is_none()
    }
}

macro_rules! secret_keys {
    ($ty:ty { $($method:ident => $stem:literal, $lit:ident, $env:ident, $file:ident;)* }) => {
        impl $ty {
            $(
                /// The three keys this secret may be given by.
                pub fn $method(&self) -> SecretKeys<'_> {
                    SecretKeys {
                        stem: $stem,
                        literal: self.$lit.as_deref(),
                        env: self.$env.as_deref(),
                        file: self.$file.as_deref(),
                    }
                }
            )*
        }
    };
}

// `serde(flatten)` would hide unknown keys from the loader, so the secret keys are written out in
// each struct and grouped back here.
secret_keys!(RawAdmin {
    password_keys => "password", password, password_env, password_file;
});
secret_keys!(RawAdminUser {
    password_keys => "password", password, password_env, password_file;
});
secret_keys!(RawPlatform {
    password_keys => "password", password, password_env, password_file;
    bearer_token_keys => "bearer_token", bearer_token, bearer_token_env, bearer_token_file;
});
secret_keys!(RawBroker {
    password_keys => "password", password, password_env, password_file;
    bearer_token_keys => "bearer_token", bearer_token, bearer_token_env, bearer_token_file;
});
