//! The one error type of `osb-routing`.
//!
//! Upstream errors say whether the request may have reached the broker (`may_have_acted`), so the
//! gateway can keep its promise never to answer 4xx once an upstream may have changed something.

/// What went wrong while talking to an upstream broker, merging catalogs, or using the store.
#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    /// The broker's catalog is not a usable catalog document at all.
    #[error("broker {broker}: invalid catalog: {reason}")]
    InvalidCatalog { broker: String, reason: String },

    /// No connection could be made: nothing was sent.
    #[error("broker {broker}: unreachable")]
    UpstreamUnreachable {
        broker: String,
        #[source]
        source: reqwest::Error,
    },

    /// The TLS handshake with the broker failed (its certificate, or the gateway's): nothing was
    /// sent. `problem` says what failed in words an operator can act on.
    #[error("broker {broker}: TLS handshake failed: {problem}")]
    UpstreamTls {
        broker: String,
        problem: String,
        #[source]
        source: reqwest::Error,
    },

    /// The broker did not answer in time.
    #[error("broker {broker}: timed out after {timeout_secs} s")]
    UpstreamTimeout { broker: String, timeout_secs: u64 },

    /// The exchange broke after the request was sent.
    #[error("broker {broker}: request failed")]
    UpstreamIo {
        broker: String,
        #[source]
        source: reqwest::Error,
    },

    /// The broker answered with a status the call does not allow.
    #[error("broker {broker}: unexpected status {status}")]
    UpstreamStatus { broker: String, status: u16 },

    /// The broker's circuit breaker is open: nothing was sent.
    #[error("broker {broker}: circuit open after repeated failures; nothing was sent")]
    CircuitOpen { broker: String },

    /// The broker's answer exceeded the size the gateway accepts.
    #[error("broker {broker}: response larger than {limit} bytes")]
    BodyTooLarge { broker: String, limit: usize },

    /// The HTTP client for a broker could not be built (TLS setup).
    #[error("broker {broker}: cannot build HTTP client")]
    Client {
        broker: String,
        #[source]
        source: reqwest::Error,
    },

    /// An instance, binding or operation id the grammar refuses (see [`crate::resource`]).
    #[error("{name} {problem}")]
    InvalidId {
        name: &'static str,
        problem: &'static str,
    },

    /// The durable store failed.
    #[error("store: {0}")]
    Store(String),

    /// The id exists with other attributes or belongs to someone else (409).
    #[error("{0}")]
    Conflict(String),

    /// Another operation is in flight on the resource (422 `ConcurrencyError`).
    #[error("{0}")]
    Concurrency(String),

    /// No such resource for this platform, on a read or update (404).
    #[error("{0}")]
    NotFound(String),

    /// No such resource for this platform, on a delete or poll (410).
    #[error("{0}")]
    Gone(String),

    /// A new instance or binding would pass a quota of the policy: nothing was written or sent.
    #[error("quota {quota:?} is full{}: {usage} of {limit} {counted} in use; {reason}", if bucket.is_empty() { String::new() } else { format!(" for {bucket}") })]
    QuotaExceeded {
        quota: String,
        /// The call's values of the quota's `per` facts, as text.
        bucket: String,
        usage: u64,
        limit: u64,
        /// `instances` or `bindings`.
        counted: &'static str,
        reason: String,
    },
}

impl RoutingError {
    /// The refusal of a new instance or binding by the full quota count `hold` (`usage` live
    /// records, at or above its limit).
    pub fn quota_exceeded(hold: &osb_policies::QuotaHold, usage: u64) -> RoutingError {
        RoutingError::QuotaExceeded {
            quota: hold.quota.clone(),
            bucket: hold.bucket_text(),
            usage,
            limit: hold.limit,
            counted: hold.counted.as_str(),
            reason: hold.reason.clone(),
        }
    }

    /// `true` when the upstream may have received (and acted on) the request.
    pub fn may_have_acted(&self) -> bool {
        matches!(
            self,
            RoutingError::UpstreamTimeout { .. }
                | RoutingError::UpstreamIo { .. }
                | RoutingError::UpstreamStatus { .. }
                | RoutingError::BodyTooLarge { .. }
        )
    }

    /// A short, fixed label for metrics and logs (`error.type`).
    pub fn kind(&self) -> &'static str {
        match self {
            RoutingError::InvalidCatalog { .. } => "invalid_catalog",
            RoutingError::UpstreamUnreachable { .. } => "unreachable",
            RoutingError::UpstreamTls { .. } => "tls",
            RoutingError::CircuitOpen { .. } => "circuit_open",
            RoutingError::UpstreamTimeout { .. } => "timeout",
            RoutingError::UpstreamIo { .. } => "io",
            RoutingError::UpstreamStatus { .. } => "status",
            RoutingError::BodyTooLarge { .. } => "too_large",
            RoutingError::Client { .. } => "client",
            RoutingError::InvalidId { .. } => "invalid_id",
            RoutingError::Store(_) => "store",
            RoutingError::Conflict(_) => "conflict",
            RoutingError::Concurrency(_) => "concurrency",
            RoutingError::NotFound(_) => "not_found",
            RoutingError::Gone(_) => "gone",
            RoutingError::QuotaExceeded { .. } => "quota_exceeded",
        }
    }
}

/// The error and its sources, `: `-joined (reqwest hides the useful part in a source).
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
