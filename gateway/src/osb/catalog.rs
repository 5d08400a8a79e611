//! `GET /v2/catalog`: the merged catalog, served as pre-serialized bytes with a strong ETag.
//!
//! A matching `If-None-Match` gets 304. During start-up, before every broker's first catalog is in,
//! the answer is 503 `CatalogUnavailable`: never a catalog that silently lacks a broker.
//!
//! A platform that accepts gzip (Kubernetes Service Catalog's Go client asks for it by default)
//! gets the body compressed once per catalog view, with an ETag of its own (the identity one with
//! `-gzip`) and `Vary: Accept-Encoding`; `If-None-Match` with either ETag is a 304.

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
    let gzip = accepts_gzip(&req)
        .then(|| view.gzip())
        .filter(|body| !body.is_empty());
    let etag = match gzip {
        Some(_) => view.gzip_etag(),
        None => view.etag.clone(),
    };
    let etag = HeaderValue::from_str(&etag).map_err(|e| ApiError::Internal(e.to_string()))?;
    if if_none_match(&req, &view.etag) || if_none_match(&req, &view.gzip_etag()) {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, etag))
            .insert_header((header::VARY, HeaderValue::from_static("Accept-Encoding")))
            .finish());
    }
    let mut response = HttpResponse::Ok();
    response
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
        .insert_header((header::VARY, HeaderValue::from_static("Accept-Encoding")))
        .content_type("application/json");
    Ok(match gzip {
        Some(body) => response
            .insert_header((header::CONTENT_ENCODING, HeaderValue::from_static("gzip")))
            .body(body.clone()),
        None => response.body(view.body.clone()),
    })
}

/// Whether `Accept-Encoding` lists `gzip` (or `x-gzip`, or `*`) with a weight above zero.
fn accepts_gzip(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(header::ACCEPT_ENCODING)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|list| list.split(','))
        .any(|entry| {
            let mut parts = entry.split(';').map(str::trim);
            let coding = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            !refused
                && (coding.eq_ignore_ascii_case("gzip")
                    || coding.eq_ignore_ascii_case("x-gzip")
                    || coding == "*")
        })
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
