//! The platform-facing OSB application: the request-data limits and the middleware in the order a
//! request meets them, around [`crate::osb::dispatch`], which answers every request.

use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::from_fn;
use actix_web::{App, web};

use crate::edge::parse::BodyLimits;
use crate::edge::{audit_calls, middleware};
use crate::error::{json_error, path_error, query_error};
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
        .default_service(web::to(crate::osb::dispatch))
}
