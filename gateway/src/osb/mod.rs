//! The OSB API a platform calls: the route table, and one handler file per resource. Each handler
//! is a straight chain of named steps returning `Result<_, ApiError>`: parse → resolve → decide →
//! admit → registry (begin) → send → registry (finish) → answer, the steps taken through
//! [`call::OsbCall`], the request context.
//!
//! # Layout
//! - this file: the route table ([`configure`]) with what each route is called
//!   ([`operation_of`], [`is_mutating`]), and the check both fetches share
//!   ([`require_retrievable`]);
//! - [`catalog`], [`instances`], [`bindings`]: the handlers;
//! - [`app`]: the platform-facing actix app (middleware order, request-data limits);
//! - [`call`]: the request context and the kit of steps; [`answer`]: upstream answers classified
//!   and turned into the platform's; [`decide`]: the policy's verdict on a call.
//!
//! Adding an endpoint: a handler taking an [`call::OsbCall`] in the resource's file, and in this
//! file its route in [`configure`] and its name in [`operation_of`] (and [`MUTATING`] if it
//! changes something upstream).

pub mod answer;
pub mod app;
pub mod bindings;
pub mod call;
pub mod catalog;
pub mod decide;
pub mod instances;

use actix_web::{HttpRequest, HttpResponse, web};

use crate::error::ApiError;
use crate::state::AppState;

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

/// The OSB operation of a request, from its method and route template; `other` for anything else.
pub fn operation_of(method: &str, route: &str) -> &'static str {
    const INSTANCE: &str = "/v2/service_instances/{instance_id}";
    const BINDING: &str = "/v2/service_instances/{instance_id}/service_bindings/{binding_id}";
    match (method, route.strip_prefix(INSTANCE)) {
        ("GET", _) if route == "/v2/catalog" => "catalog",
        ("PUT", Some("")) => "provision",
        ("PATCH", Some("")) => "update",
        ("DELETE", Some("")) => "deprovision",
        ("GET", Some("")) => "fetch_instance",
        ("GET", Some("/last_operation")) => "last_operation",
        _ => match (method, route.strip_prefix(BINDING)) {
            ("PUT", Some("")) => "bind",
            ("DELETE", Some("")) => "unbind",
            ("GET", Some("")) => "fetch_binding",
            ("GET", Some("/last_operation")) => "binding_last_operation",
            _ => "other",
        },
    }
}

/// The operations that change something upstream (recorded in the audit log).
pub const MUTATING: &[&str] = &["provision", "update", "deprovision", "bind", "unbind"];

/// Whether `operation` (see [`operation_of`]) changes something upstream.
pub fn is_mutating(operation: &str) -> bool {
    MUTATING.contains(&operation)
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
