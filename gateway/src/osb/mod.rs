//! The OSB endpoints a platform calls. Each handler is a straight chain of named steps returning
//! `Result<_, ApiError>`: parse → resolve → admit → upstream → record → answer.

mod bindings;
mod catalog;
mod instances;

use actix_web::{HttpRequest, HttpResponse, web};
use osb_routing::RouteTable;
use osb_routing::registry::InstanceRecord;

use crate::app::AppState;
use crate::error::ApiError;

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

/// The upstream id of `plan_id` for a call on `instance`: the instance's own plan, or another plan
/// of the same service at the same broker.
///
/// # Errors
/// [`ApiError::BadRequest`] for any other plan.
fn map_plan(routes: &RouteTable, instance: &InstanceRecord, plan_id: &str) -> Result<String, ApiError> {
    if plan_id == instance.plan_id {
        return Ok(instance.upstream_plan_id.clone());
    }
    match routes.plan(plan_id) {
        Some(route) if *route.broker == *instance.broker && route.service_id == instance.service_id => {
            Ok(route.upstream_plan_id.clone())
        }
        _ => Err(ApiError::BadRequest(format!(
            "plan_id {plan_id} is not a plan of the service of instance {}",
            instance.instance_id
        ))),
    }
}

/// What a fetch reads.
#[derive(Debug, Clone, Copy)]
enum Fetched {
    Instance,
    Binding,
}

/// Refuses a fetch (400) when the upstream service of a resource does not offer it:
/// `instances_retrievable` (`bindings_retrievable`) is not true in the broker's catalog. A service
/// the catalog no longer knows is asked anyway (its record says the resource exists).
///
/// # Errors
/// [`ApiError::BadRequest`] naming the service and the field.
fn require_retrievable(
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
