//! The OSB API a platform calls: the route table, and one handler file per resource. Each handler
//! is a straight chain of named steps returning `Result<_, ApiError>`: parse → resolve → decide →
//! admit → registry (begin) → send → registry (finish) → answer, the steps taken through
//! [`call::OsbCall`], the request context.
//!
//! # Layout
//! - this file: the dispatcher ([`dispatch`]; the routes themselves are in `edge::route`) with what each route is called
//!   ([`operation_of`], [`is_mutating`]), and the check both fetches share
//!   ([`require_retrievable`]);
//! - [`catalog`], [`instances`], [`bindings`]: the handlers;
//! - [`app`]: the platform-facing actix app (middleware order, request-data limits);
//! - [`call`]: the request context and the kit of steps; [`answer`]: upstream answers classified
//!   and turned into the platform's; [`decide`]: the policy's verdict on a call; [`failover`]: a
//!   provision moved to the next candidate when its broker cannot have received it; [`quota`]: the
//!   quota counts a new instance or binding (or a record) joins.
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
pub mod failover;
pub mod instances;
pub mod quota;

use actix_web::{HttpRequest, HttpResponse, web};

use crate::error::ApiError;
use crate::state::AppState;

/// Answers every request of the OSB app: the route found by splitting the path ([`route_of`],
/// once, by the first middleware) and the method pick the handler; a known path with another
/// method answers 405 with an OSB body and an `Allow` header listing the path's methods; any other
/// path 404. actix's own router is not used: it matched each request against the routes' regular
/// expressions one after the other (about 6% of a worker's CPU in a lifecycle profile).
pub async fn dispatch(req: HttpRequest, payload: web::Payload) -> HttpResponse {
    use actix_web::http::Method;
    let payload = payload.into_inner();
    let method = req.method().clone();
    match (MatchedRoute::of(&req).0, method) {
        (Some(routes::CATALOG), Method::GET) => run(catalog::get_catalog, req, payload).await,
        (Some(routes::CATALOG), _) => not_allowed(req, "GET"),
        (Some(routes::INSTANCE), Method::PUT) => run(instances::provision, req, payload).await,
        (Some(routes::INSTANCE), Method::PATCH) => run(instances::update, req, payload).await,
        (Some(routes::INSTANCE), Method::DELETE) => run(instances::deprovision, req, payload).await,
        (Some(routes::INSTANCE), Method::GET) => run(instances::fetch, req, payload).await,
        (Some(routes::INSTANCE), _) => not_allowed(req, "GET, PUT, PATCH, DELETE"),
        (Some(routes::INSTANCE_LAST_OPERATION), Method::GET) => {
            run(instances::last_operation, req, payload).await
        }
        (Some(routes::INSTANCE_LAST_OPERATION), _) => not_allowed(req, "GET"),
        (Some(routes::BINDING), Method::PUT) => run(bindings::bind, req, payload).await,
        (Some(routes::BINDING), Method::DELETE) => run(bindings::unbind, req, payload).await,
        (Some(routes::BINDING), Method::GET) => run(bindings::fetch, req, payload).await,
        (Some(routes::BINDING), _) => not_allowed(req, "GET, PUT, DELETE"),
        (Some(routes::BINDING_LAST_OPERATION), Method::GET) => {
            run(bindings::last_operation, req, payload).await
        }
        (Some(routes::BINDING_LAST_OPERATION), _) => not_allowed(req, "GET"),
        _ => HttpResponse::from_error(ApiError::NoRoute {
            method: req.method().to_string(),
            path: req.path().to_owned(),
        }),
    }
}

/// Extracts `handler`'s arguments from the request and runs it, as actix's router would.
async fn run<F, Args>(handler: F, req: HttpRequest, mut payload: actix_web::dev::Payload) -> HttpResponse
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest,
    F::Output: actix_web::Responder,
{
    use actix_web::Responder;
    match Args::from_request(&req, &mut payload).await {
        Ok(args) => handler.call(args).await.respond_to(&req).map_into_boxed_body(),
        Err(e) => HttpResponse::from_error(e),
    }
}

fn not_allowed(req: HttpRequest, allow: &'static str) -> HttpResponse {
    HttpResponse::from_error(ApiError::MethodNotAllowed {
        method: req.method().to_string(),
        path: req.path().to_owned(),
        allow,
    })
}

pub use crate::edge::route::{MatchedRoute, RouteIds, route_of, routes};

/// The OSB operation of a request, from its method and route template; `other` for anything else.
pub fn operation_of(method: &str, route: &str) -> &'static str {
    use routes::{BINDING, INSTANCE};
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

#[cfg(test)]
mod tests {
    use actix_web::dev::ResourceDef;

    use super::{route_of, routes};

    /// `route_of` agrees with actix's own matching of the registered templates, path by path.
    #[test]
    fn route_of_matches_as_actix_does() {
        let templates = [
            routes::CATALOG,
            routes::INSTANCE,
            routes::INSTANCE_LAST_OPERATION,
            routes::BINDING,
            routes::BINDING_LAST_OPERATION,
        ];
        let defs: Vec<ResourceDef> = templates.iter().map(|t| ResourceDef::new(*t)).collect();
        let segments = [
            "",
            "a",
            "i-1",
            "%2F",
            "last_operation",
            "service_bindings",
            "..",
            "a b",
            "é",
        ];
        let mut paths = vec![
            "/".to_owned(),
            "/v2".to_owned(),
            "/v2/catalog".to_owned(),
            "/v2/catalog/".to_owned(),
            "/v2/catalogs".to_owned(),
            "/v2/service_instances".to_owned(),
            "/v2/service_instances/".to_owned(),
        ];
        for a in segments {
            paths.push(format!("/v2/service_instances/{a}"));
            for b in segments {
                paths.push(format!("/v2/service_instances/{a}/{b}"));
                for c in segments {
                    paths.push(format!("/v2/service_instances/{a}/{b}/{c}"));
                    for d in segments {
                        paths.push(format!("/v2/service_instances/{a}/{b}/{c}/{d}"));
                        paths.push(format!("/v2/service_instances/{a}/{b}/{c}/{d}/last_operation"));
                        paths.push(format!("/v2/service_instances/{a}/{b}/{c}/{d}/"));
                    }
                }
            }
        }
        for path in &paths {
            let actix = templates
                .iter()
                .zip(&defs)
                .find(|(_, def)| def.is_match(path))
                .map(|(template, _)| *template);
            assert_eq!(route_of(path), actix, "{path}");
        }
    }
}
