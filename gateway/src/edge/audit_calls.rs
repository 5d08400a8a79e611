//! The middleware that records every mutating call of an authenticated platform in the audit log
//! once it is answered, with what the handler noted (`telemetry::audit::note_target`,
//! `note_upstream`) and how the call ended. The answer does not wait for the record's commit
//! (`AuditLog::record_in_background`): that wait was a third group commit on every mutating call,
//! after the intent's and the outcome's.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpRequest, web};
use osb_routing::audit::{AuditKind, AuditOutcome, AuditRecord};

use crate::edge::auth::Platform;
use crate::edge::middleware::RequestContext;
use crate::error::ApiError;
use crate::osb::{MatchedRoute, is_mutating, operation_of};
use crate::state::AppState;
use crate::telemetry::audit::{AuditNote, MAX_FIELD, cut, now_ms, originating_user};

/// The instance and binding ids of a call: from the route's match, else from the raw path.
fn path_ids(req: &HttpRequest) -> (Option<String>, Option<String>) {
    let ids = crate::edge::route::RouteIds::of(req);
    let (instance, binding) = (ids.instance_id, ids.binding_id);
    if instance.is_some() {
        return (instance, binding);
    }
    let rest = req
        .path()
        .strip_prefix("/v2/service_instances/")
        .unwrap_or_default();
    let (instance, binding) = match rest.split_once("/service_bindings/") {
        Some((instance, binding)) => (instance, Some(binding)),
        None => (rest, None),
    };
    let id = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    (id(instance), binding.and_then(id))
}

/// Middleware: records every mutating call of an authenticated platform once it is answered.
pub async fn record_calls(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let route = MatchedRoute::of(req.request());
    let operation = operation_of(req.method().as_str(), route.as_str());
    if !is_mutating(operation) {
        return next.call(req).await;
    }
    let started = std::time::Instant::now();
    let response = next.call(req).await?;
    let status = response.status().as_u16();
    let request = response.request().clone();
    let Some(state) = request.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(response);
    };
    let record = {
        let extensions = request.extensions();
        let Some(platform) = extensions.get::<Platform>() else {
            return Ok(response);
        };
        let context = extensions.get::<RequestContext>();
        let note = extensions.get::<AuditNote>().cloned().unwrap_or_default();
        let error = response.response().error().and_then(|e| e.as_error::<ApiError>());
        let policy = match error {
            Some(ApiError::PolicyDenied { rule, .. }) => Some(format!("deny (rule {rule})")),
            _ if note.allowed => Some("allow".to_owned()),
            _ => None,
        };
        let code = match (error, status) {
            (Some(error), _) => Some(error.code().to_owned()),
            (None, 400..) => note.upstream_error.clone(),
            _ => None,
        };
        let (instance_id, binding_id) = path_ids(&request);
        AuditRecord {
            seq: 0,
            at_ms: now_ms(),
            kind: AuditKind::Platform,
            actor: platform.name.to_string(),
            user: context
                .and_then(|c| c.originating_identity.as_deref())
                .and_then(originating_user),
            operation: operation.to_owned(),
            instance_id: instance_id.map(|id| cut(&id, MAX_FIELD)),
            binding_id: binding_id.map(|id| cut(&id, MAX_FIELD)),
            broker: note.broker,
            service_id: note.service_id,
            plan_id: note.plan_id,
            policy,
            upstream_status: note.upstream_status,
            status,
            outcome: AuditOutcome::of_status(status),
            error: code,
            reason: (!note.failover.is_empty()).then(|| note.failover.join("; ")),
            request_identity: context.map(|c| cut(&c.request_identity, MAX_FIELD)),
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        }
    };
    state.audit.record_in_background(record).await;
    Ok(response)
}
