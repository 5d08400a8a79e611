//! The OSB routes as the gateway finds them, without regular expressions: the templates, the
//! template a path matches ([`route_of`]), and the path ids ([`RouteIds`]), found once per request
//! by the first middleware and kept in its extensions. Depends on nothing of the gateway, so the
//! edge (parsing, middleware) and the handlers (`osb`) can both use it.

use actix_web::HttpRequest;

/// The templates of the OSB routes ([`dispatch`] answers these).
pub mod routes {
    pub const CATALOG: &str = "/v2/catalog";
    pub const INSTANCE: &str = "/v2/service_instances/{instance_id}";
    pub const INSTANCE_LAST_OPERATION: &str = "/v2/service_instances/{instance_id}/last_operation";
    pub const BINDING: &str = "/v2/service_instances/{instance_id}/service_bindings/{binding_id}";
    pub const BINDING_LAST_OPERATION: &str =
        "/v2/service_instances/{instance_id}/service_bindings/{binding_id}/last_operation";
}

/// The route template a request path matches, as actix's router would match the templates of [`routes`] (a `{…}`
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

/// The path ids of a request on an OSB route, as actix's router would capture them: segments of
/// the path as actix normalises it (percent-decoded, except `/`, `%` and `+`). Found once by the
/// first middleware and kept in the request's extensions (see `edge::parse::path_id`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteIds {
    pub instance_id: Option<String>,
    pub binding_id: Option<String>,
}

impl RouteIds {
    /// The ids in `path` (normalised) for `route`.
    pub fn of_path(path: &str, route: Option<&'static str>) -> RouteIds {
        let Some(rest) = route
            .filter(|r| *r != routes::CATALOG)
            .and_then(|_| path.strip_prefix("/v2/service_instances/"))
        else {
            return RouteIds::default();
        };
        let mut segments = rest.split('/');
        let instance_id = segments.next().map(str::to_owned);
        let binding_id = match segments.next() {
            Some("service_bindings") => segments.next().map(str::to_owned),
            _ => None,
        };
        RouteIds {
            instance_id,
            binding_id,
        }
    }

    /// The ids kept in `req`'s extensions, or found now.
    pub fn of(req: &HttpRequest) -> RouteIds {
        use actix_web::HttpMessage;
        if let Some(ids) = req.extensions().get::<RouteIds>() {
            return ids.clone();
        }
        RouteIds::of_path(req.match_info().as_str(), MatchedRoute::of(req).0)
    }
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
