//! One platform's OSB call, as every handler sees it: the request context (who calls, the
//! identities and headers to forward, the audit note) and the small kit of steps each handler
//! takes once, in this order:
//!
//! 1. [`OsbCall::decide`]: the policy's verdict (counted per operation and outcome);
//! 2. [`OsbCall::admit`]: the owning broker may take the call (configured, breaker not open,
//!    outbound limit not exhausted) and the audit log notes the target; nothing is recorded or
//!    sent before this passes;
//! 3. [`OsbCall::registry`]: a registry step (`begin_*`, `finish_*`), timed;
//! 4. [`OsbCall::send`]: the upstream call, timed and noted, its answer classified ([`Sent`]);
//! 5. [`Sent::respond`]: the platform's answer.

use std::future::{Future, Ready, ready};
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, web};
use bytes::Bytes;
use osb_routing::registry::Outcome;
use osb_routing::upstream::{CallHeaders, UpstreamReply};
use osb_routing::{OsbId, RoutingError, UpstreamBroker, UpstreamPath};
use reqwest::Method;

use crate::edge::auth::Platform;
use crate::edge::middleware::RequestContext;
use crate::edge::parse::{self, Body, BodyKind, Query, RequestBody};
use crate::error::ApiError;
use crate::osb::answer::{Endpoint, classify, respond};
use crate::osb::decide::Decider;
use crate::osb::{MatchedRoute, operation_of};
use crate::state::AppState;
use crate::telemetry::audit;
use crate::telemetry::metrics::Metrics;

/// The request context of one OSB call (see the module docs). Extracted from the request once
/// authentication ran.
#[derive(Debug)]
pub struct OsbCall {
    state: web::Data<AppState>,
    req: HttpRequest,
    /// The calling platform's name.
    pub platform: String,
    /// What is forwarded upstream: request identity, originating identity, the operation.
    pub headers: CallHeaders,
}

impl FromRequest for OsbCall {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(OsbCall::of(req))
    }
}

/// A broker admitted for this call: the client the call goes through.
#[derive(Debug)]
pub struct Admitted {
    upstream: Arc<UpstreamBroker>,
}

impl Admitted {
    /// The broker's name.
    pub fn broker(&self) -> &str {
        self.upstream.name()
    }
}

/// The upstream's answer to a call and what it means (see [`classify`]).
#[derive(Debug)]
pub struct Sent {
    broker: String,
    pub reply: Result<UpstreamReply, RoutingError>,
    pub outcome: Outcome,
}

impl Sent {
    /// The platform's answer: the upstream's 2xx/4xx passed through, 502/504 when it failed.
    ///
    /// # Errors
    /// As [`respond`].
    pub fn respond(self) -> Result<HttpResponse, ApiError> {
        respond(&self.broker, self.reply, &self.outcome)
    }
}

impl OsbCall {
    fn of(req: &HttpRequest) -> Result<OsbCall, ApiError> {
        let state = req
            .app_data::<web::Data<AppState>>()
            .cloned()
            .ok_or_else(|| ApiError::Internal("application state missing".to_owned()))?;
        let extensions = req.extensions();
        let platform = extensions
            .get::<Platform>()
            .ok_or(ApiError::Unauthorized { bearer: false })?;
        let context = extensions.get::<RequestContext>();
        let headers = CallHeaders {
            request_identity: context.map_or_else(
                || uuid::Uuid::new_v4().to_string(),
                |c| c.request_identity.clone(),
            ),
            originating_identity: context.and_then(|c| c.originating_identity.clone()),
            operation: operation_of(req.method().as_str(), MatchedRoute::of(req).as_str()),
        };
        Ok(OsbCall {
            platform: platform.name.to_string(),
            state,
            headers,
            req: req.clone(),
        })
    }

    /// The shared state.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The request (path, query).
    pub fn request(&self) -> &HttpRequest {
        &self.req
    }

    /// The checked id in the path segment `name` (`instance_id`, `binding_id`).
    ///
    /// # Errors
    /// [`ApiError::BadRequest`] when the id breaks the grammar.
    pub fn path_id(&self, name: &'static str) -> Result<OsbId, ApiError> {
        parse::path_id(&self.req, name)
    }

    /// The query string, decoded and checked.
    ///
    /// # Errors
    /// [`ApiError::BadRequest`] for a malformed query.
    pub fn query(&self) -> Result<Query, ApiError> {
        Query::parse(self.req.query_string())
    }

    /// The request body, parsed as `kind` and checked.
    ///
    /// # Errors
    /// [`ApiError::BadRequest`] for a malformed body.
    pub fn body(&self, kind: BodyKind, body: &RequestBody) -> Result<Body, ApiError> {
        parse::request_body(kind, &body.0)
    }

    /// The OSB operation (`provision`, `bind`, …).
    pub fn operation(&self) -> &'static str {
        self.headers.operation
    }

    /// Runs a policy decision for this call and counts its outcome.
    ///
    /// # Errors
    /// The decision's refusal.
    pub fn decide<T>(&self, decide: impl FnOnce(&Decider<'_>) -> Result<T, ApiError>) -> Result<T, ApiError> {
        let result = self.state.with_decider(decide);
        let outcome = match &result {
            Ok(_) => "allow",
            Err(error) => error.decision_outcome(),
        };
        self.state.metrics.policy_decision(self.operation(), outcome);
        result
    }

    /// Admits the call to `broker` on the gateway ids `service_id` and `plan_id`: the broker is
    /// configured, its circuit is not open (503 at once: nothing is recorded or sent) and its
    /// outbound rate limit has room (429). Notes the target in the audit log.
    ///
    /// # Errors
    /// [`ApiError::UpstreamUnavailable`], [`ApiError::CircuitOpen`], [`ApiError::RateLimited`].
    pub fn admit(&self, broker: &str, service_id: &str, plan_id: &str) -> Result<Admitted, ApiError> {
        audit::note_target(&self.req, broker, service_id, plan_id);
        let state = &self.state;
        let upstream = state
            .brokers
            .get(broker)
            .ok_or_else(|| ApiError::UpstreamUnavailable {
                broker: broker.to_owned(),
            })?;
        if upstream.is_open() {
            return Err(ApiError::CircuitOpen {
                broker: broker.to_owned(),
            });
        }
        let policy = state.policies.current();
        state
            .limiters
            .check_broker(policy.generation, &policy.policy.limits, broker)
            .inspect_err(|_| state.metrics.rate_limited("broker", broker, "calls"))?;
        Ok(Admitted { upstream })
    }

    /// Awaits a registry step (`begin`, `finish`) and records how long it took.
    pub async fn registry<T>(&self, step: &'static str, work: impl Future<Output = T>) -> T {
        let started = std::time::Instant::now();
        let result = work.await;
        self.state.metrics.registry_operation(step, started.elapsed());
        result
    }

    /// Counts a new instance or binding refused by a full quota (the registry's `begin` step).
    pub fn count_quota_refusal<T>(&self, result: &Result<T, RoutingError>) {
        if let Err(RoutingError::QuotaExceeded { quota, .. }) = result {
            self.state.metrics.quota_refused(quota);
        }
    }

    /// Sends the call to the admitted broker and classifies its answer as `endpoint` expects.
    pub async fn send(
        &self,
        to: &Admitted,
        endpoint: Endpoint,
        method: Method,
        path: &UpstreamPath,
        body: Option<Bytes>,
    ) -> Sent {
        let reply = call_upstream(
            &self.state.metrics,
            &to.upstream,
            method,
            path,
            body,
            &self.headers,
        )
        .await;
        if endpoint != Endpoint::Read {
            audit::note_upstream(&self.req, &reply);
        }
        let outcome = classify(endpoint, &reply);
        Sent {
            broker: to.broker().to_owned(),
            reply,
            outcome,
        }
    }
}

/// Calls `upstream` and records the call's duration (platform calls and operators' actions).
pub async fn call_upstream(
    metrics: &Metrics,
    upstream: &UpstreamBroker,
    method: Method,
    path: &UpstreamPath,
    body: Option<Bytes>,
    call: &CallHeaders,
) -> Result<UpstreamReply, RoutingError> {
    let started = std::time::Instant::now();
    let result = upstream.call(method, path, body, call).await;
    let status = result.as_ref().ok().map(|r| r.status);
    metrics.observe_upstream(upstream.name(), call.operation, status, started.elapsed());
    result
}
