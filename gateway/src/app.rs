//! The actix applications: shared state and the two apps (platform-facing OSB, operators' admin).
//!
//! State is built once, before `HttpServer::new`, and cloned into each worker's app: a cache or
//! limiter created inside the factory would silently be per-thread.

use std::sync::Arc;

use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::from_fn;
use actix_web::{App, HttpRequest, HttpResponse, web};
use osb_config::Settings;
use osb_routing::{CatalogCache, Registry, UpstreamBroker};

use crate::auth::Platforms;
use crate::decide::{Decider, SchemaCache};
use crate::error::{ApiError, json_error, path_error, query_error};
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
}

impl AppState {
    /// Runs a policy decision on the current catalog, policy and broker health.
    pub fn decide<T>(&self, decide: impl FnOnce(&Decider<'_>) -> T) -> T {
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
    App::new()
        .app_data(state)
        .app_data(
            web::JsonConfig::default()
                .limit(max_body)
                .error_handler(json_error),
        )
        .app_data(web::QueryConfig::default().error_handler(query_error))
        .app_data(web::PathConfig::default().error_handler(path_error))
        // As a request meets them: request identity → authenticate → API version → handler.
        // (actix runs `.wrap` layers in reverse order of registration.)
        .wrap(from_fn(middleware::require_api_version))
        .wrap(from_fn(middleware::authenticate))
        .wrap(from_fn(middleware::request_identity))
        .configure(handlers::configure)
        .default_service(web::to(not_found))
}

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
    App::new()
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
