//! The console: HTML pages for the platform team at `/ui` on the admin listener, behind the admin
//! credentials and their roles, over the same parts the admin API reads and acts on.
//!
//! Pages are rendered on the server from askama templates (`gateway/templates/console/`), which
//! escape every value they print: names, ids, reasons and originating identities from platforms and
//! upstreams are text, never markup. One stylesheet and one small script (live audit rows, the
//! marketplace's search as you type) are compiled into the binary and served from
//! `/ui/assets/`; every page reads fully with JavaScript off. Nothing is fetched from the internet.
//!
//! # Layout
//! - here: the routes, [`Viewer`] (who is looking and whether they may act), [`Html`] (a page with
//!   its security headers) and [`PageError`] (the one place errors become an error page).
//! - [`overview`]: brokers as cards, the gateway's own facts.
//! - [`marketplace`]: what one platform sees, with the policy's reason for each hidden or denied plan.
//! - [`records`]: instances and bindings, filtered and paged; one record with its history.
//! - [`actions`]: adopt, abandon and confirm held plans, each behind a page saying what will happen.
//! - [`catalog`]: the held plans and the dry-run diff of the upstreams' catalogs.
//! - [`audit`]: the audit log, newest first, with rows that arrive live.
//! - [`policy`]: the policy file in force, its reloads, and an explain form.
//!
//! Acting needs the `operator` role, as on the admin API ([`Operator::acting`]), which also refuses
//! a browser's request from another site.

pub mod actions;
pub mod audit;
pub mod catalog;
pub mod marketplace;
pub mod overview;
pub mod policy;
pub mod records;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use askama::Template;
use osb_config::AdminRole;

use crate::edge::parse::BodyLimits;
use crate::error::ApiError;
use crate::ops::admin::Operator;
use crate::state::AppState;

/// The console's stylesheet and script (compiled in; served with the binary's version in the URL).
const STYLESHEET: &str = include_str!("../../assets/console.css");
const SCRIPT: &str = include_str!("../../assets/console.js");

/// What every console response says about itself: nothing from elsewhere runs, nothing frames it.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; script-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The largest form a console page posts (a reason, an explain request's context and parameters).
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// Registers the console's routes (on the admin listener).
pub fn configure(cfg: &mut web::ServiceConfig) {
    let forms = BodyLimits {
        max_bytes: MAX_FORM_BYTES,
        ..BodyLimits::default()
    };
    cfg.service(
        web::scope("/ui")
            .app_data(forms)
            .route("", web::get().to(overview::page))
            .route("/", web::get().to(overview::page))
            .route("/assets/console.css", web::get().to(stylesheet))
            .route("/assets/console.js", web::get().to(script))
            .route("/marketplace", web::get().to(marketplace::page))
            .route("/instances", web::get().to(records::instances))
            .route("/instances/{id}", web::get().to(records::instance))
            .route(
                "/instances/{id}/abandon",
                web::get().to(actions::abandon_instance_form),
            )
            .route(
                "/instances/{id}/abandon",
                web::post().to(actions::abandon_instance),
            )
            .route("/bindings", web::get().to(records::bindings))
            .route("/bindings/{id}", web::get().to(records::binding))
            .route(
                "/bindings/{id}/abandon",
                web::get().to(actions::abandon_binding_form),
            )
            .route("/bindings/{id}/abandon", web::post().to(actions::abandon_binding))
            .route("/adopt", web::get().to(actions::adopt_form))
            .route("/adopt", web::post().to(actions::adopt))
            .route("/catalog", web::get().to(catalog::page))
            .route("/catalog", web::post().to(catalog::diff))
            .route("/catalog/confirm", web::get().to(actions::confirm_form))
            .route("/catalog/confirm", web::post().to(actions::confirm))
            .route("/audit", web::get().to(audit::page))
            .route("/audit/rows", web::get().to(audit::rows))
            .route("/policy", web::get().to(policy::page))
            .route("/policy", web::post().to(policy::explain_form)),
    );
}

/// Who is looking at a page.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub operator: Operator,
}

impl Viewer {
    /// The viewer of `req` (any role).
    ///
    /// # Errors
    /// [`ApiError::AdminUnauthorized`] without valid admin credentials (the browser then asks).
    pub fn of(req: &HttpRequest, state: &AppState) -> Result<Viewer, PageError> {
        Ok(Viewer {
            operator: Operator::of(req, state)?,
        })
    }

    /// Whether the viewer may act (adopt, abandon, confirm): the operator role.
    pub fn can_act(&self) -> bool {
        self.operator.role == AdminRole::Operator
    }
}

/// What the layout shows around every page.
#[derive(Debug, Clone)]
pub struct Shell {
    pub title: String,
    /// The navigation entry of this page (`overview`, `marketplace`, …).
    pub section: &'static str,
    pub actor: String,
    pub role: &'static str,
    pub version: &'static str,
    /// A one-line outcome of the action that led here (after a redirect).
    pub notice: Option<String>,
}

impl Shell {
    pub fn new(viewer: &Viewer, section: &'static str, title: impl Into<String>) -> Shell {
        Shell {
            title: title.into(),
            section,
            actor: viewer.operator.actor.clone(),
            role: viewer.operator.role.as_str(),
            version: env!("CARGO_PKG_VERSION"),
            notice: None,
        }
    }

    /// With the notice of the query string's `done` (set by the redirect after an action).
    #[must_use]
    pub fn with_notice(mut self, req: &HttpRequest) -> Shell {
        self.notice = web::Query::<Done>::from_query(req.query_string())
            .ok()
            .and_then(|q| q.into_inner().done)
            .map(|done| crate::telemetry::audit::cut(&done, 300));
        self
    }
}

#[derive(Debug, serde::Deserialize)]
struct Done {
    done: Option<String>,
}

/// A rendered page.
#[derive(Debug)]
pub struct Html(pub String);

impl Html {
    /// Renders `template`.
    ///
    /// # Errors
    /// [`PageError`] when the template fails (a value's `Display` failed).
    pub fn of(template: &impl Template) -> Result<Html, PageError> {
        template
            .render()
            .map(Html)
            .map_err(|e| PageError(ApiError::Internal(format!("rendering a page: {e}"))))
    }

    /// The page with `status`, compressed with gzip when `req` accepts it and it is worth it.
    fn into_response(self, req: &HttpRequest, status: StatusCode) -> HttpResponse {
        let mut response = HttpResponse::build(status);
        secure(&mut response);
        response
            .content_type("text/html; charset=utf-8")
            .insert_header((header::VARY, "Accept-Encoding"));
        let accepts_gzip = req
            .headers()
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',').any(|coding| {
                    let mut parts = coding.split(';').map(str::trim);
                    parts.next() == Some("gzip")
                        && parts.all(|p| !matches!(p, "q=0" | "q=0.0" | "q=0.00" | "q=0.000"))
                })
            });
        if accepts_gzip && self.0.len() > GZIP_OVER {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            // Writing to a Vec cannot fail.
            if std::io::Write::write_all(&mut encoder, self.0.as_bytes()).is_ok() {
                if let Ok(gzip) = encoder.finish() {
                    response.insert_header((header::CONTENT_ENCODING, "gzip"));
                    return response.body(gzip);
                }
            }
        }
        response.body(self.0)
    }
}

/// Pages larger than this are sent compressed to browsers that accept gzip.
const GZIP_OVER: usize = 2048;

impl actix_web::Responder for Html {
    type Body = actix_web::body::BoxBody;

    fn respond_to(self, req: &HttpRequest) -> HttpResponse {
        self.into_response(req, StatusCode::OK)
    }
}

/// The headers of every console response: its own scripts and styles only, never framed, never
/// cached (pages show live state and who is signed in).
fn secure(response: &mut actix_web::HttpResponseBuilder) {
    response
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::CACHE_CONTROL, "no-store"));
}

/// A redirect after an action (303: the browser follows with a GET), with a notice of what happened.
pub fn see_other(path: &str, notice: &str) -> HttpResponse {
    let separator = if path.contains('?') { '&' } else { '?' };
    let location = format!("{path}{separator}done={}", encode(notice));
    let mut response = HttpResponse::SeeOther();
    secure(&mut response);
    response.insert_header((header::LOCATION, location)).finish()
}

/// Percent-encodes `value` for a query string or a path segment: everything but RFC 3986's
/// unreserved characters.
pub fn encode(value: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// A failure while serving a page: the same status as the admin API's, as an HTML page.
#[derive(Debug)]
pub struct PageError(pub ApiError);

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError(e)
    }
}

impl From<osb_routing::RoutingError> for PageError {
    fn from(e: osb_routing::RoutingError) -> Self {
        PageError(ApiError::from(e))
    }
}

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage<'a> {
    status: u16,
    reason: &'a str,
    description: String,
    version: &'static str,
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        self.0.status_code()
    }

    fn error_response(&self) -> HttpResponse {
        // The admin API's answer decides the status and logs it; the body becomes a page.
        let api = self.0.error_response();
        let status = api.status();
        let page = ErrorPage {
            status: status.as_u16(),
            reason: status.canonical_reason().unwrap_or("Error"),
            description: self.0.to_string(),
            version: env!("CARGO_PKG_VERSION"),
        };
        let body = page.render().unwrap_or_else(|_| self.0.to_string());
        let mut response = HttpResponse::build(status);
        secure(&mut response);
        if let Some(challenge) = api.headers().get(header::WWW_AUTHENTICATE) {
            response.insert_header((header::WWW_AUTHENTICATE, challenge.clone()));
        }
        response.content_type("text/html; charset=utf-8").body(body)
    }
}

/// Stylesheet and script: open like the probes (nothing in them is secret), cached for a day.
async fn stylesheet() -> HttpResponse {
    asset("text/css; charset=utf-8", STYLESHEET)
}

async fn script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, HeaderValue::from_static(content_type)))
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(body)
}

/// `ms` since the epoch as `2026-12-07 01:02:03 UTC`.
pub fn when(ms: u64) -> String {
    crate::ops::cli::time::utc(ms)
}

/// How long ago `ms` was, in words (`3 s`, `5 min`, `2 h`, `4 d`).
pub fn ago(ms: u64) -> String {
    let secs = osb_routing::clock::now_ms().saturating_sub(ms) / 1000;
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86_400 => format!("{} h", secs / 3600),
        _ => format!("{} d", secs / 86_400),
    }
}
