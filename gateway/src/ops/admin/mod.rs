//! The admin listener: liveness, readiness, the brokers' catalog health, registry counts, the policy
//! (status, reload, explain), and the operators' levers in the submodules.
//!
//! `/healthz` and `/readyz` are open (Kubernetes probes); `/admin/*` needs the admin credentials when
//! they are configured. Readiness follows the catalog: not ready while start-up waits for a broker's
//! first catalog.
//!
//! # Layout
//! - here: [`build_admin_app`], probes, metrics, `/admin/brokers` (health), `/admin/registry` (counts), policy, explain,
//!   refresh, configuration reload (`/admin/reload`, see `ops::config_file`); [`Operator`], who is
//!   acting (admin user, and the person named by the client).
//! - `backup`: a copy of the registry taken while serving.
//! - [`inventory`]: instances and bindings, paged and filtered; one record with its history.
//! - [`catalog`]: the served catalog and what the guard holds, the dry-run diff, confirmations.
//! - [`operations`]: adopt instances created before the gateway; abandon what is stuck.
//! - [`audit`]: reading the audit log (JSON pages or JSON lines).
//! - `quotas`: the policy's quotas with their usage.
//!
//! Every operator action is recorded in the audit log with who did it and why.

pub mod audit;
mod backup;
pub mod catalog;
pub mod inventory;
pub mod operations;
mod quotas;

use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use actix_web::{App, HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use osb_config::AdminRole;
use osb_routing::Availability;
use osb_routing::audit::{AuditKind, AuditOutcome, AuditRecord};
use serde_json::json;

use crate::edge::parse::{BodyLimits, RequestBody};
use crate::error::{ApiError, not_found};
use crate::ops::explain::ExplainRequest;
use crate::state::AppState;

/// Largest body the admin API takes: a candidate catalog for a dry-run diff holds every broker's
/// catalog (the three real ones merge to about 1 MB).
pub const ADMIN_MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// The operators' admin application, with `pages` (the console's routes) beside the API.
pub fn build_admin_app(
    state: web::Data<AppState>,
    pages: fn(&mut web::ServiceConfig),
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let body_limits = BodyLimits {
        max_bytes: ADMIN_MAX_BODY_BYTES,
        timeout: state.settings.request_read_timeout,
    };
    App::new()
        .app_data(body_limits)
        .app_data(state)
        .configure(configure)
        .configure(pages)
        .default_service(web::to(not_found))
}

/// Registers every admin route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/metrics", web::get().to(metrics))
        .route("/readyz", web::get().to(readyz))
        .route("/admin/brokers", web::get().to(brokers))
        .route("/admin/registry", web::get().to(registry))
        .route("/admin/policy", web::get().to(policy_status))
        .route("/admin/policy/reload", web::post().to(policy_reload))
        .route("/admin/backup", web::get().to(backup::backup))
        .route("/admin/reload", web::get().to(reload_status))
        .route("/admin/reload", web::post().to(reload))
        .route("/admin/explain", web::post().to(explain))
        .route("/admin/quotas", web::get().to(quotas::list))
        .route("/admin/brokers/refresh", web::post().to(refresh_all))
        .route("/admin/brokers/{name}/refresh", web::post().to(refresh_one))
        .route("/admin/instances", web::get().to(inventory::instances))
        .route("/admin/instances/adopt", web::post().to(operations::adopt))
        .route("/admin/instances/{id}", web::get().to(inventory::instance))
        .route(
            "/admin/instances/{id}/abandon",
            web::post().to(operations::abandon_instance),
        )
        .route("/admin/bindings", web::get().to(inventory::bindings))
        .route("/admin/bindings/{id}", web::get().to(inventory::binding))
        .route(
            "/admin/bindings/{id}/abandon",
            web::post().to(operations::abandon_binding),
        )
        .route("/admin/catalog", web::get().to(catalog::served))
        .route("/admin/catalog/diff", web::get().to(catalog::diff_upstream))
        .route("/admin/catalog/diff", web::post().to(catalog::diff_given))
        .route("/admin/catalog/confirm", web::post().to(catalog::confirm))
        .route("/admin/audit", web::get().to(audit::read));
}

/// Who is acting on the admin API: the admin user (`anonymous` when the API is open) and the
/// person the client names in [`crate::telemetry::audit::OPERATOR_HEADER`] (`osb-gateway admin --as`).
#[derive(Debug, Clone)]
pub struct Operator {
    /// The authenticated admin user (`anonymous` when the API is open).
    pub actor: String,
    /// The person the client acts on behalf of (`--as`), as the client says: a note, not an identity.
    pub user: Option<String>,
    pub role: AdminRole,
}

impl Operator {
    /// The operator of `req`, once the admin credentials are checked (any role: reading).
    ///
    /// # Errors
    /// [`ApiError::AdminUnauthorized`] without valid admin credentials.
    pub fn of(req: &HttpRequest, state: &AppState) -> Result<Operator, ApiError> {
        let (actor, role) = authenticate(req, state).ok_or(ApiError::AdminUnauthorized)?;
        let user = req
            .headers()
            .get(crate::telemetry::audit::OPERATOR_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| crate::telemetry::audit::cut(v, 256));
        Ok(Operator { actor, user, role })
    }

    /// The operator of `req` for an action that changes something: the `operator` role.
    ///
    /// A browser's request from another site never acts, whatever credentials it carries (the
    /// console makes browsers hold them): see [`from_another_site`].
    ///
    /// # Errors
    /// As [`Operator::of`]; [`ApiError::AdminForbidden`] for a viewer; [`ApiError::CrossSite`].
    pub fn acting(req: &HttpRequest, state: &AppState) -> Result<Operator, ApiError> {
        if from_another_site(req) {
            return Err(ApiError::CrossSite);
        }
        let operator = Self::of(req, state)?;
        if operator.role != AdminRole::Operator {
            return Err(ApiError::AdminForbidden {
                user: operator.actor,
                role: operator.role.as_str(),
            });
        }
        Ok(operator)
    }

    /// An audit record of an admin action by this operator (the caller fills in the rest).
    pub fn record(&self, operation: &str, status: u16, started: std::time::Instant) -> AuditRecord {
        AuditRecord {
            seq: 0,
            at_ms: osb_routing::clock::now_ms(),
            kind: AuditKind::Admin,
            actor: self.actor.clone(),
            user: self.user.clone(),
            operation: format!("admin.{operation}"),
            instance_id: None,
            binding_id: None,
            broker: None,
            service_id: None,
            plan_id: None,
            policy: None,
            upstream_status: None,
            status,
            outcome: AuditOutcome::of_status(status),
            error: None,
            reason: None,
            request_identity: None,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// Whether a browser sent `req` from a page of another site: its `Sec-Fetch-Site` says
/// `cross-site` or `same-site`, or its `Origin` names another host than the request's `Host`.
/// Clients that send neither header (the CLI, curl) are not browsers on another site.
pub fn from_another_site(req: &HttpRequest) -> bool {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = header("sec-fetch-site") {
        return !matches!(site, "same-origin" | "none");
    }
    let Some(origin) = header("origin") else {
        return false;
    };
    let authority = origin.split_once("://").map(|(_, rest)| rest);
    authority.is_none_or(|authority| authority != req.connection_info().host())
}

/// Parses an admin request body (an empty body is `{}`).
///
/// # Errors
/// [`ApiError::BadRequest`] naming what is wrong.
pub fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("invalid request body: {e}")))
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Prometheus exposition (open like the probes: names and counts only, no ids, no secrets).
async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let text = state
        .metrics
        .render(
            &state.catalog,
            &state.brokers,
            &state.registry,
            &state.policies.current().policy,
        )
        .await;
    HttpResponse::Ok()
        .content_type(prometheus_client::encoding::prometheus_text::CONTENT_TYPE)
        .body(text)
}

/// Ready when the store answers and every broker's catalog is in (or the start-up grace is over).
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if let Err(e) = state.registry.store().ping().await {
        return HttpResponse::ServiceUnavailable()
            .json(json!({"status": "store unavailable", "error": e.to_string()}));
    }
    let snapshot = state.catalog.snapshot();
    match &snapshot.availability {
        Availability::Starting { missing } => {
            HttpResponse::ServiceUnavailable().json(json!({"status": "starting", "waiting_for": missing}))
        }
        availability => HttpResponse::Ok().json(json!({"status": "ready", "catalog": availability})),
    }
}

async fn brokers(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Some(denied) = check_admin(&req, &state) {
        return denied;
    }
    let snapshot = state.catalog.snapshot();
    // Each broker's catalog status, with its circuit breaker and overall health as of now.
    let brokers: Vec<serde_json::Value> = snapshot
        .brokers
        .iter()
        .map(|status| {
            let mut value = serde_json::to_value(status).unwrap_or_default();
            if let Some(fields) = value.as_object_mut() {
                let breaker = state.brokers.get(&status.name).map(|b| b.breaker_state());
                fields.insert("breaker".to_owned(), json!(breaker));
                fields.insert(
                    "healthy".to_owned(),
                    json!(state.brokers.is_healthy(&status.name)),
                );
                let now = osb_routing::clock::now_ms();
                fields.insert(
                    "catalog_age_secs".to_owned(),
                    json!(status.fetched_at_ms.map(|at| now.saturating_sub(at) / 1000)),
                );
                let last_refresh = match (status.last_attempt_ms, status.consecutive_failures) {
                    (None, _) => None,
                    (Some(_), 0) => Some("ok"),
                    (Some(_), _) => Some("failed"),
                };
                fields.insert("last_refresh".to_owned(), json!(last_refresh));
                let held = snapshot.held.iter().filter(|h| h.broker == status.name).count();
                fields.insert("held_plans".to_owned(), json!(held));
            }
            value
        })
        .collect();
    HttpResponse::Ok().json(json!({
        "catalog": {
            "availability": snapshot.availability,
            "etag": snapshot.etag,
            "services": snapshot.catalog.services.len(),
            "held_plans": snapshot.held.len(),
        },
        "brokers": brokers,
    }))
}

/// Counts of the ownership registry: what the gateway routes and what it still owes upstream.
async fn registry(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Some(denied) = check_admin(&req, &state) {
        return denied;
    }
    let store = state.registry.store();
    let counts = async {
        // Per-broker counts (kept as records change on the embedded store): no scan of the records.
        let counts = store.counts().await?;
        Ok::<_, osb_routing::RoutingError>(json!({
            "instances": counts.instances.values().sum::<u64>(),
            "bindings": counts.bindings.values().sum::<u64>(),
            "orphans": store.orphans().await?.len(),
            "pending": store.pending().await?.len(),
        }))
    };
    match counts.await {
        Ok(counts) => HttpResponse::Ok().json(counts),
        Err(e) => HttpResponse::InternalServerError().json(json!({"description": e.to_string()})),
    }
}

/// The policy in force: generation, counts, reload outcomes, the last rejected file's problems.
async fn policy_status(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Some(denied) = check_admin(&req, &state) {
        return denied;
    }
    HttpResponse::Ok().json(state.policy_file.status())
}

/// Reloads the policy file now: 200 with the generation in force, or 422 with the problems
/// (the policy in force stays).
async fn policy_reload(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let started = std::time::Instant::now();
    let operator = Operator::acting(&req, &state)?;
    let (response, status) = match state.policy_file.reload(true) {
        Ok(generation) => (HttpResponse::Ok().json(json!({"generation": generation})), 200),
        Err(problems) => (
            HttpResponse::UnprocessableEntity().json(json!({
                "description": "the policy file has problems; the policy in force is unchanged",
                "problems": problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })),
            422,
        ),
    };
    let mut record = operator.record("policy_reload", status, started);
    if status != 200 {
        record.error = Some("InvalidPolicy".to_owned());
    }
    state.audit.record(record).await;
    Ok(response)
}

/// The last configuration reload's report (`null` before the first).
async fn reload_status(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Operator::of(&req, &state)?;
    Ok(HttpResponse::Ok().json(state.config_file.last()))
}

/// What `POST /admin/reload` takes (an empty body is fine).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReloadRequest {
    /// Brokers removed from the file to remove although they have live records.
    #[serde(default)]
    confirm_removal: Vec<String>,
}

/// Reads the configuration file again and applies it (see `ops::config_file`): 200 with what
/// changed, 422 with the problems when it was rejected.
async fn reload(
    req: HttpRequest,
    state: web::Data<AppState>,
    RequestBody(body): RequestBody,
) -> Result<HttpResponse, ApiError> {
    let started = std::time::Instant::now();
    let operator = Operator::acting(&req, &state)?;
    let request: ReloadRequest = json_body(&body)?;
    let report = state.config_file.reload(true, &request.confirm_removal).await;
    let status: u16 = if report.applied { 200 } else { 422 };
    let mut record = operator.record("reload", status, started);
    if !report.applied {
        record.error = Some("InvalidConfiguration".to_owned());
    }
    if !request.confirm_removal.is_empty() {
        record.reason = Some(format!(
            "removal confirmed: {}",
            request.confirm_removal.join(", ")
        ));
    }
    state.audit.record(record).await;
    let code = actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::OK);
    Ok(HttpResponse::build(code).json(report))
}

/// Dry-runs a request through the policy step (nothing is forwarded).
async fn explain(
    req: HttpRequest,
    state: web::Data<AppState>,
    RequestBody(body): RequestBody,
) -> HttpResponse {
    if let Some(denied) = check_admin(&req, &state) {
        return denied;
    }
    let request: ExplainRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return HttpResponse::BadRequest()
                .json(json!({"description": format!("invalid explain request: {e}")}));
        }
    };
    let instance = match &request.instance_id {
        Some(id) if request.operation != "provision" => state
            .registry
            .instance_for(id, &request.platform)
            .await
            .ok()
            .flatten(),
        _ => None,
    };
    let report = state.with_decider(|d| crate::ops::explain::explain(d, &request, instance.as_ref()));
    let report = crate::ops::explain::with_quota_usage(report, state.registry.store().as_ref()).await;
    HttpResponse::Ok().json(report)
}

async fn refresh_all(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let started = std::time::Instant::now();
    let operator = Operator::acting(&req, &state)?;
    state.catalog.request_refresh(None);
    state.audit.record(operator.record("refresh", 202, started)).await;
    Ok(HttpResponse::Accepted().json(json!({"refreshing": "all"})))
}

async fn refresh_one(
    req: HttpRequest,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let started = std::time::Instant::now();
    let operator = Operator::acting(&req, &state)?;
    if !state.catalog.request_refresh(Some(&name)) {
        return Err(ApiError::NotFound(format!("no broker named {:?}", name.as_str())));
    }
    let mut record = operator.record("refresh", 202, started);
    record.broker = Some(name.to_string());
    state.audit.record(record).await;
    Ok(HttpResponse::Accepted().json(json!({"refreshing": name.as_str()})))
}

/// Who the request's admin credentials name, with their role: the `admin.username` user (an
/// operator) or one of `admin.users`. With no admin credentials configured at all, everyone is an
/// anonymous operator (the API is open, as `check-config` warns). `None`: not authenticated.
fn authenticate(req: &HttpRequest, state: &AppState) -> Option<(String, AdminRole)> {
    let Some(admin) = state.settings.admin.as_ref() else {
        return Some(("anonymous".to_owned(), AdminRole::Operator));
    };
    if admin.credentials.is_none() && admin.users.is_empty() {
        return Some(("anonymous".to_owned(), AdminRole::Operator));
    }
    let (username, password) = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| STANDARD.decode(b64.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| pair.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())))?;
    if let Some(c) = &admin.credentials {
        if username == c.username && c.password.matches(&password) {
            return Some((username, AdminRole::Operator));
        }
    }
    admin
        .users
        .iter()
        .find(|u| u.name == username && u.password.matches(&password))
        .map(|u| (u.name.clone(), u.role))
}

/// `Some(401)` unless the request carries valid admin credentials (or none are configured).
pub fn check_admin(req: &HttpRequest, state: &AppState) -> Option<HttpResponse> {
    if authenticate(req, state).is_some() {
        None
    } else {
        Some(
            HttpResponse::Unauthorized()
                .insert_header((WWW_AUTHENTICATE, r#"Basic realm="osb-gateway-admin""#))
                .json(json!({"description": "admin credentials required"})),
        )
    }
}
