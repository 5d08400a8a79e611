//! The OSB endpoints a platform calls. Each handler is a straight chain of named steps returning
//! `Result<_, ApiError>`.

mod catalog;

use actix_web::web;

/// Registers every OSB route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v2/catalog", web::get().to(catalog::get_catalog));
}
