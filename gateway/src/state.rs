//! The actix applications: shared state and the two apps (platform-facing OSB, operators' admin).
//!
//! State is built once, before `HttpServer::new`, and cloned into each worker's app: a cache or
//! limiter created inside the factory would silently be per-thread.

use std::sync::Arc;

use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::from_fn;
use actix_web::{App, HttpRequest, HttpResponse, web};
use osb_config::Settings;
use osb_routing::upstream::{CallHeaders, UpstreamReply};
use osb_routing::{CatalogCache, Registry, RoutingError, UpstreamBroker, UpstreamPath};

use crate::auth::Platforms;
use crate::decide::{Decider, SchemaCache};
use crate::error::{ApiError, json_error, path_error, query_error};
use crate::limits::Limiters;
use crate::metrics::Metrics;
use crate::parse::BodyLimits;
use crate::policy::PolicyFile;
use crate::{admin, handlers, middleware};

/// What every request handler shares.
#[derive(Debug)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub platforms: Platforms,
    pub catalog: Arc<CatalogCache>,
    pub registry: Registry,
    pub policy_file: Arc<PolicyFile>,
    /// Compiled plan schemas.
    pub schemas: SchemaCache,
    pub metrics: Arc<Metrics>,
    pub limiters: Limiters,
    /// The audit log (platform calls, operator actions).
    pub audit: crate::audit::AuditLog,
}

impl AppState {
    /// Runs `decide` with the current catalog, policy and broker health (explain, tests).
    pub fn with_decider<T>(&self, decide: impl FnOnce(&Decider<'_>) -> T) -> T {
        let snapshot = self.catalog.snapshot();
        let policy = self.catalog.policy();
        let healthy = |broker: &str| self.catalog.is_healthy(broker);
        decide(&Decider {
            snapshot: &snapshot,
            policy: &policy,
            healthy: &healthy,
            schemas: &self.schemas,
        })
    }

    /// Runs a policy decision for `operation` and counts its outcome.
    ///
    /// # Errors
    /// The decision's refusal.
    pub fn decide<T>(
        &self,
        operation: &'static str,
        decide: impl FnOnce(&Decider<'_>) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let result = self.with_decider(decide);
        let outcome = match &result {
            Ok(_) => "allow",
            Err(ApiError::PolicyDenied { .. }) => "deny",
            Err(ApiError::NoPlacement(_)) => "unavailable",
            Err(ApiError::BadRequest(_)) => "invalid",
            Err(_) => "error",
        };
        self.metrics.policy_decision(operation, outcome);
        result
    }

    /// Refuses at once (503) while `upstream`'s circuit breaker is open: nothing is recorded or sent.
    ///
    /// # Errors
    /// [`ApiError::CircuitOpen`].
    pub fn check_breaker(&self, upstream: &UpstreamBroker) -> Result<(), ApiError> {
        if upstream.is_open() {
            return Err(ApiError::CircuitOpen {
                broker: upstream.name().to_owned(),
            });
        }
        Ok(())
    }

    /// Draws one call from `broker`'s outbound rate limit.
    ///
    /// # Errors
    /// [`ApiError::RateLimited`]: nothing is sent.
    pub fn check_broker_limit(&self, broker: &str) -> Result<(), ApiError> {
        let policy = self.catalog.policy();
        self.limiters
            .check_broker(policy.generation, &policy.policy.limits, broker)
            .inspect_err(|_| {
                self.metrics.rate_limited("broker", broker, "calls");
            })
    }

    /// Calls the upstream and records the call's duration.
    pub async fn call_upstream(
        &self,
        upstream: &UpstreamBroker,
        method: reqwest::Method,
        path: &UpstreamPath,
        body: Option<bytes::Bytes>,
        call: &CallHeaders,
    ) -> Result<UpstreamReply, RoutingError> {
        let started = std::time::Instant::now();
        let result = upstream.call(method, path, body, call).await;
        let status = result.as_ref().ok().map(|r| r.status);
        self.metrics
            .observe_upstream(upstream.name(), call.operation, status, started.elapsed());
        result
    }

    /// Awaits a registry operation and records how long it took.
    pub async fn timed<T>(&self, operation: &'static str, work: impl std::future::Future<Output = T>) -> T {
        let started = std::time::Instant::now();
        let result = work.await;
        self.metrics.registry_operation(operation, started.elapsed());
        result
    }

    /// The client of the broker named `name`.
    ///
    /// # Errors
    /// [`ApiError::UpstreamUnavailable`] when no such broker is configured (any more).
    pub fn upstream(&self, name: &str) -> Result<Arc<UpstreamBroker>, ApiError> {
        self.catalog
            .broker(name)
            .cloned()
            .ok_or_else(|| ApiError::UpstreamUnavailable {
                broker: name.to_owned(),
            })
    }
}

/// The platform-facing OSB application.
pub fn build_osb_app(
    state: web::Data<AppState>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let max_body = state.settings.max_body_bytes;
    let body_limits = BodyLimits {
        max_bytes: max_body,
        timeout: state.settings.request_read_timeout,
    };
    App::new()
        .app_data(body_limits)
        .app_data(state)
        .app_data(
            web::JsonConfig::default()
                .limit(max_body)
                .error_handler(json_error),
        )
        .app_data(web::QueryConfig::default().error_handler(query_error))
        .app_data(web::PathConfig::default().error_handler(path_error))
        // As a request meets them: request identity → authenticate → audit → rate limit → API
        // version → handler. (actix runs `.wrap` layers in reverse order of registration.)
        .wrap(from_fn(middleware::require_api_version))
        .wrap(from_fn(middleware::rate_limit))
        .wrap(from_fn(crate::audit::record_calls))
        .wrap(from_fn(middleware::authenticate))
        .wrap(from_fn(middleware::request_identity))
        .configure(handlers::configure)
        .default_service(web::to(not_found))
}

/// Largest body the admin API takes: a candidate catalog for a dry-run diff holds every broker's
/// catalog (the three real ones merge to about 1 MB).
pub const ADMIN_MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// The operators' admin application.
pub fn build_admin_app(
    state: web::Data<AppState>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let body_limits = BodyLimits {
        max_bytes: ADMIN_MAX_BODY_BYTES,
        timeout: state.settings.request_read_timeout,
    };
    App::new()
        .app_data(body_limits)
        .app_data(state)
        .configure(admin::configure)
        .default_service(web::to(not_found))
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NoRoute {
        method: req.method().to_string(),
        path: req.path().to_owned(),
    })
}
