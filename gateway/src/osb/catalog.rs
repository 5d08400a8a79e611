//! `GET /v2/catalog`: the merged catalog, served as pre-serialized bytes with a strong ETag.
//!
//! A matching `If-None-Match` gets 304. During start-up, before every broker's first catalog is in,
//! the answer is 503 `CatalogUnavailable`: never a catalog that silently lacks a broker.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};

use crate::edge::auth::Platform;
use crate::error::ApiError;
use crate::state::AppState;

pub async fn get_catalog(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let platform = req
        .extensions()
        .get::<Platform>()
        .cloned()
        .ok_or(ApiError::Unauthorized { bearer: false })?;
    let view = state.catalog.view(&platform.name, &state.policies.current())?;
    let etag = HeaderValue::from_str(&view.etag).map_err(|e| ApiError::Internal(e.to_string()))?;
    if if_none_match(&req, &view.etag) {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, etag))
            .finish());
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
        .content_type("application/json")
        .body(view.body.clone()))
}

/// RFC 7232 §3.2: `*` or any listed tag matching (weak comparison) means "not modified".
fn if_none_match(req: &HttpRequest, etag: &str) -> bool {
    let bare = etag.trim_start_matches("W/");
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .any(|list| {
            list.split(',')
                .map(str::trim)
                .any(|tag| tag == "*" || tag.trim_start_matches("W/") == bare)
        })
}
