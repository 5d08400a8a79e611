//! The admin listener: liveness, readiness, the brokers' catalog health, registry counts, the policy
//! (status, reload, explain).
//!
//! `/healthz` and `/readyz` are open (Kubernetes probes); `/admin/*` needs the admin credentials when
//! they are configured. Readiness follows the catalog: not ready while start-up waits for a broker's
//! first catalog.

use actix_web::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use osb_routing::Availability;
use serde_json::json;

use crate::app::AppState;
use crate::explain::ExplainRequest;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/metrics", web::get().to(metrics))
        .route("/readyz", web::get().to(readyz))
        .route("/admin/brokers", web::get().to(brokers))
        .route("/admin/registry", web::get().to(registry))
        .route("/admin/policy", web::get().to(policy_status))
        .route("/admin/policy/reload", web::post().to(policy_reload))
        .route("/admin/explain", web::post().to(explain))
        .route("/admin/brokers/refresh", web::post().to(refresh_all))
        .route("/admin/brokers/{name}/refresh", web::post().to(refresh_one));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Prometheus exposition (open like the probes: names and counts only, no ids, no secrets).
async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let text = state.metrics.render(&state.catalog, &state.registry).await;
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
                let breaker = state.catalog.broker(&status.name).map(|b| b.breaker_state());
                fields.insert("breaker".to_owned(), json!(breaker));
                fields.insert(
                    "healthy".to_owned(),
                    json!(state.catalog.is_healthy(&status.name)),
                );
            }
            value
        })
        .collect();
    HttpResponse::Ok().json(json!({
        "catalog": {
            "availability": snapshot.availability,
            "etag": snapshot.etag,
            "services": snapshot.catalog.services.len(),
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
        Ok::<_, osb_routing::RoutingError>(json!({
            "instances": store.instances().await?.len(),
            "bindings": store.bindings().await?.len(),
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
async fn policy_reload(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Some(denied) = check_admin(&req, &state) {
        return denied;
    }
    match state.policy_file.reload(true) {
        Ok(generation) => HttpResponse::Ok().json(json!({"generation": generation})),
        Err(problems) => HttpResponse::UnprocessableEntity().json(json!({
            "description": "the policy file has problems; the policy in force is unchanged",
            "problems": problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
        })),
    }
}

/// Dry-runs a request through the policy step (nothing is forwarded).
async fn explain(req: HttpRequest, state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
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
    let report = state.with_decider(|d| crate::explain::explain(d, &request, instance.as_ref()));
    HttpResponse::Ok().json(report)
}

async fn refresh_all(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Some(denied) = check_admin(&req, &state) {
        return denied;
    }
    state.catalog.request_refresh(None);
    HttpResponse::Accepted().json(json!({"refreshing": "all"}))
}

async fn refresh_one(req: HttpRequest, state: web::Data<AppState>, name: web::Path<String>) -> HttpResponse {
    if let Some(denied) = check_admin(&req, &state) {
        return denied;
    }
    if state.catalog.request_refresh(Some(&name)) {
        HttpResponse::Accepted().json(json!({"refreshing": name.as_str()}))
    } else {
        HttpResponse::NotFound().json(json!({"description": format!("no broker named {:?}", name.as_str())}))
    }
}

/// `Some(401)` unless the request carries the admin credentials (or none are configured).
fn check_admin(req: &HttpRequest, state: &AppState) -> Option<HttpResponse> {
    let credentials = state.settings.admin.as_ref()?.credentials.as_ref()?;
    let ok = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| STANDARD.decode(b64.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| pair.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())))
        .is_some_and(|(u, p)| u == credentials.username && credentials.password.matches(&p));
    if ok {
        None
    } else {
        Some(
            HttpResponse::Unauthorized()
                .insert_header((WWW_AUTHENTICATE, r#"Basic realm="osb-gateway-admin""#))
                .json(json!({"description": "admin credentials required"})),
        )
    }
}
