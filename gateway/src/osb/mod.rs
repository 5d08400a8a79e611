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
        web::resource(routes::CATALOG)
            .get(catalog::get_catalog)
            .default_service(web::to(|req: HttpRequest| method_not_allowed(req, "GET"))),
    )
    .service(
        web::resource(routes::INSTANCE)
            .put(instances::provision)
            .patch(instances::update)
            .delete(instances::deprovision)
            .get(instances::fetch)
            .default_service(web::to(|req: HttpRequest| {
                method_not_allowed(req, "GET, PUT, PATCH, DELETE")
            })),
    )
    .service(
        web::resource(routes::INSTANCE_LAST_OPERATION)
            .get(instances::last_operation)
            .default_service(web::to(|req: HttpRequest| method_not_allowed(req, "GET"))),
    )
    .service(
        web::resource(routes::BINDING)
            .put(bindings::bind)
            .delete(bindings::unbind)
            .get(bindings::fetch)
            .default_service(web::to(|req: HttpRequest| {
                method_not_allowed(req, "GET, PUT, DELETE")
            })),
    )
    .service(
        web::resource(routes::BINDING_LAST_OPERATION)
            .get(bindings::last_operation)
            .default_service(web::to(|req: HttpRequest| method_not_allowed(req, "GET"))),
    );
}

/// The templates of the OSB routes ([`configure`] registers these).
pub mod routes {
    pub const CATALOG: &str = "/v2/catalog";
    pub const INSTANCE: &str = "/v2/service_instances/{instance_id}";
    pub const INSTANCE_LAST_OPERATION: &str = "/v2/service_instances/{instance_id}/last_operation";
    pub const BINDING: &str = "/v2/service_instances/{instance_id}/service_bindings/{binding_id}";
    pub const BINDING_LAST_OPERATION: &str =
        "/v2/service_instances/{instance_id}/service_bindings/{binding_id}/last_operation";
}

/// The route template a request path matches, as [`configure`]'s routes match it (a `{…}`
/// segment is one or more characters other than `/`), found by splitting the path: the request's
/// middleware, metrics, spans, audit and handlers all need it, and actix would run its regular
/// expressions again for each (`HttpRequest::match_pattern`). `None` for any other path.
pub fn route_of(path: &str) -> Option<&'static str> {
    if path == routes::CATALOG {
        return Some(routes::CATALOG);
    }
    let rest = path.strip_prefix("/v2/service_instances/")?;
    let mut segments = rest.split('/');
    let mut next = || segments.next().filter(|s| !s.is_empty());
    let _instance = next()?;
    let route = match next() {
        None => routes::INSTANCE,
        Some("last_operation") => routes::INSTANCE_LAST_OPERATION,
        Some("service_bindings") => {
            let _binding = next()?;
            match next() {
                None => routes::BINDING,
                Some("last_operation") => routes::BINDING_LAST_OPERATION,
                Some(_) => return None,
            }
        }
        Some(_) => return None,
    };
    // Nothing may follow, an empty segment (a trailing `/`) included.
    if rest.ends_with('/') || segments.next().is_some() {
        return None;
    }
    Some(route)
}

/// The route template of a request: found once by the first middleware (`route_of`) and kept in
/// the request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatchedRoute(pub Option<&'static str>);

impl MatchedRoute {
    /// The route kept in `req`'s extensions, or found now.
    pub fn of(req: &HttpRequest) -> MatchedRoute {
        use actix_web::HttpMessage;
        if let Some(route) = req.extensions().get::<MatchedRoute>() {
            return *route;
        }
        MatchedRoute(route_of(req.path()))
    }

    /// The template, or `""` for a path that matches none.
    pub fn as_str(self) -> &'static str {
        self.0.unwrap_or_default()
    }
}

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
