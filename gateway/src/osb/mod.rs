//! The OSB API a platform calls: the route table, the platform-facing app, and one handler file per
//! resource. Each handler is a straight chain of named steps returning `Result<_, ApiError>`:
//! parse → resolve → decide → admit → registry (begin) → send → registry (finish) → answer, the
//! steps taken through [`call::OsbCall`], the request context.
//!
//! # Layout
//! - this file: [`build_osb_app`] (middleware order), [`configure`] (the route table), and the
//!   check both fetches share ([`require_retrievable`]);
//! - [`catalog`], [`instances`], [`bindings`]: the handlers;
//! - [`call`]: the request context and the kit of steps; [`answer`]: upstream answers classified
//!   and turned into the platform's; [`decide`]: the policy's verdict on a call;
//!   [`operation`]: the OSB operation of a request.
//!
//! Adding an endpoint: a handler taking an [`call::OsbCall`] in the resource's file, one line in
//! [`configure`].

pub mod answer;
pub mod bindings;
pub mod call;
pub mod catalog;
pub mod decide;
pub mod instances;
pub mod operation;

use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::from_fn;
use actix_web::{App, HttpRequest, HttpResponse, web};

use crate::edge::parse::BodyLimits;
use crate::edge::{audit_calls, middleware};
use crate::error::{ApiError, json_error, not_found, path_error, query_error};
use crate::state::AppState;

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
        .wrap(from_fn(audit_calls::record_calls))
        .wrap(from_fn(middleware::authenticate))
        .wrap(from_fn(middleware::request_identity))
        .configure(configure)
        .default_service(web::to(not_found))
}

/// Registers every OSB route. A known path with another method answers 405 with an OSB body and
/// an `Allow` header listing the path's methods.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v2/catalog")
            .get(catalog::get_catalog)
            .default_service(web::to(|req: HttpRequest| method_not_allowed(req, "GET"))),
    )
    .service(
        web::resource("/v2/service_instances/{instance_id}")
            .put(instances::provision)
            .patch(instances::update)
            .delete(instances::deprovision)
            .get(instances::fetch)
            .default_service(web::to(|req: HttpRequest| {
                method_not_allowed(req, "GET, PUT, PATCH, DELETE")
            })),
    )
    .service(
        web::resource("/v2/service_instances/{instance_id}/last_operation")
            .get(instances::last_operation)
            .default_service(web::to(|req: HttpRequest| method_not_allowed(req, "GET"))),
    )
    .service(
        web::resource("/v2/service_instances/{instance_id}/service_bindings/{binding_id}")
            .put(bindings::bind)
            .delete(bindings::unbind)
            .get(bindings::fetch)
            .default_service(web::to(|req: HttpRequest| {
                method_not_allowed(req, "GET, PUT, DELETE")
            })),
    )
    .service(
        web::resource("/v2/service_instances/{instance_id}/service_bindings/{binding_id}/last_operation")
            .get(bindings::last_operation)
            .default_service(web::to(|req: HttpRequest| method_not_allowed(req, "GET"))),
    );
}

async fn method_not_allowed(req: HttpRequest, allow: &'static str) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed {
        method: req.method().to_string(),
        path: req.path().to_owned(),
        allow,
    })
}

/// What a fetch reads.
#[derive(Debug, Clone, Copy)]
pub enum Fetched {
    Instance,
    Binding,
}

/// Refuses a fetch (400) when the upstream service of a resource does not offer it:
/// `instances_retrievable` (`bindings_retrievable`) is not true in the broker's catalog. A service
/// the catalog no longer knows is asked anyway (its record says the resource exists).
///
/// # Errors
/// [`ApiError::BadRequest`] naming the service and the field.
pub fn require_retrievable(
    state: &AppState,
    broker: &str,
    upstream_service_id: &str,
    fetched: Fetched,
) -> Result<(), ApiError> {
    let snapshot = state.catalog.snapshot();
    let routes = &snapshot.routes;
    let Some(service) = routes
        .gateway_id(broker, upstream_service_id)
        .and_then(|id| routes.service(id))
    else {
        return Ok(());
    };
    let (retrievable, field, what) = match fetched {
        Fetched::Instance => (
            service.instances_retrievable,
            "instances_retrievable",
            "instances",
        ),
        Fetched::Binding => (service.bindings_retrievable, "bindings_retrievable", "bindings"),
    };
    if retrievable {
        return Ok(());
    }
    Err(ApiError::BadRequest(format!(
        "service {} does not allow fetching {what} ({field} is not true in its catalog); nothing was sent",
        service.name
    )))
}
