//! The OSB operation of a request (`provision`, `bind`, `fetch_instance`…), named from its method
//! and route template: what spans, metrics, rate-limit classes and the audit log call it.

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
