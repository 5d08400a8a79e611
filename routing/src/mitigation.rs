//! The orphan-mitigation worker: deletes upstream what the gateway absorbed a failure for, and
//! every few seconds resolves the intents of replicas that died (see `Registry::recover`).
//!
//! Its queue is durable: the registry's `Orphaned` records (indexed by the store), so it survives
//! restarts. For each due orphan it sends the upstream delete (deprovision or unbind, with
//! `accepts_incomplete=true`) and forgets the record on 200 or 410; a 202 is followed by polling
//! `last_operation` until it succeeds (or 410). Anything else is retried with backoff (1 s doubling,
//! at most [`MAX_BACKOFF`]). A "gone" within [`crate::registry::SETTLE`] of the failure is confirmed by one more
//! delete after it, as a request held on its way can still create the resource upstream.
//! Requests carry no originating identity: no user asked for them.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::Value;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::brokers::Brokers;
use crate::clock::now_ms;
use crate::error::error_chain;
use crate::registry::{BindingRecord, InstanceRecord, Mitigation, Registry, ResourceState};
use crate::resource::{OsbId, UpstreamPath};
use crate::store::RecordRef;
use crate::upstream::{CallHeaders, UpstreamBroker};

/// Longest wait between two attempts on one orphan.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How often dead replicas' intents are looked for (and this replica's heartbeat written).
const RECOVERY_EVERY: Duration = Duration::from_secs(5);
/// How often the worker looks at its queue when nothing wakes it.
const TICK: Duration = Duration::from_millis(500);

/// Starts the worker. Abort the handle to stop it.
pub fn spawn(registry: Registry, brokers: Arc<Brokers>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let signal = registry.orphaned_signal();
        let mut last_recovery = std::time::Instant::now();
        loop {
            if let Err(e) = run_once(&registry, &brokers).await {
                warn!(error = %error_chain(&e), "Orphan mitigation pass failed.");
            }
            // Replicas sharing a store resolve the intents of those that died (and keep their own
            // heartbeat going).
            if last_recovery.elapsed() >= RECOVERY_EVERY {
                last_recovery = std::time::Instant::now();
                if let Err(e) = registry.recover().await {
                    warn!(error = %error_chain(&e), "Recovery pass failed.");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(TICK) => {}
                () = signal.notified() => {}
            }
        }
    })
}

/// How long a claim on an orphan lasts (longer than one attempt's timeout).
const CLAIM_MS: u64 = 60_000;
/// Most orphans claimed in one pass.
const CLAIM_LIMIT: usize = 256;

/// How many orphans are worked on at once.
const CONCURRENCY: usize = 16;

/// One pass over the due orphans, [`CONCURRENCY`] at a time.
///
/// # Errors
/// The store failed.
pub async fn run_once(registry: &Registry, brokers: &Brokers) -> Result<(), crate::RoutingError> {
    // Claimed for a while: with replicas on one store, one orphan is worked by one of them.
    let now = now_ms();
    let orphans = registry
        .store()
        .claim_orphans(registry.replica(), now, now + CLAIM_MS, CLAIM_LIMIT)
        .await?;
    let results: Vec<Result<(), crate::RoutingError>> = futures_util::stream::iter(orphans)
        .map(|record| async move { mitigate(registry, brokers, &record).await })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect()
}

/// One attempt on one orphan, if it is due.
async fn mitigate(
    registry: &Registry,
    brokers: &Brokers,
    record: &RecordRef,
) -> Result<(), crate::RoutingError> {
    let now = now_ms();
    let target = match record {
        RecordRef::Instance(id) => registry.store().instance(id).await?.and_then(instance_target),
        RecordRef::Binding(id) => registry.store().binding(id).await?.and_then(binding_target),
    };
    let Some(target) = target.filter(|t| t.mitigation.next_attempt_ms <= now) else {
        return Ok(());
    };
    let Some(broker) = brokers.get(&target.broker) else {
        let mut next = target.mitigation.clone();
        next.last_error = Some(format!("broker {:?} is no longer configured", target.broker));
        schedule(&mut next);
        return registry.reschedule_orphan(record, next).await;
    };
    match attempt(&broker, &target).await {
        Step::Gone if now_ms() < target.mitigation.settle_until_ms => {
            // Too soon to believe: the failed request may still arrive. Delete once more later.
            info!(broker = %target.broker, what = %target.what, "Orphan gone upstream; confirming after the settle time.");
            let mut next = target.mitigation.clone();
            next.operation = None;
            next.next_attempt_ms = next.settle_until_ms;
            registry.reschedule_orphan(record, next).await
        }
        Step::Gone => {
            info!(broker = %target.broker, what = %target.what, "Orphan removed upstream.");
            registry.forget_orphan(record).await
        }
        Step::Wait { operation, error } => {
            let mut next = target.mitigation.clone();
            if operation.is_some() {
                next.operation = operation;
            }
            if error.is_some() {
                next.last_error = error;
                schedule(&mut next);
            } else {
                next.next_attempt_ms = now_ms() + 1000;
            }
            if next.attempts == 1 || next.attempts.is_power_of_two() {
                warn!(
                    broker = %target.broker,
                    what = %target.what,
                    attempts = next.attempts,
                    error = next.last_error.as_deref().unwrap_or("in progress"),
                    "Orphan not removed yet; will retry."
                );
            }
            registry.reschedule_orphan(record, next).await
        }
    }
}

/// What to delete upstream.
struct Target {
    broker: String,
    /// `instance <id>` or `binding <id>`, for logs.
    what: String,
    /// The resource upstream; `Err` for an id the grammar refuses (a record from before the
    /// grammar): never sent, left for an operator to abandon.
    path: Result<UpstreamPath, crate::RoutingError>,
    upstream_service_id: String,
    upstream_plan_id: String,
    mitigation: Mitigation,
}

fn instance_target(r: InstanceRecord) -> Option<Target> {
    let ResourceState::Orphaned(mitigation) = r.state else {
        return None;
    };
    Some(Target {
        broker: r.broker,
        what: format!("instance {}", r.instance_id),
        path: OsbId::parse("instance_id", &r.instance_id).map(|i| UpstreamPath::instance(&i)),
        upstream_service_id: r.upstream_service_id,
        upstream_plan_id: r.upstream_plan_id,
        mitigation,
    })
}

fn binding_target(r: BindingRecord) -> Option<Target> {
    let ResourceState::Orphaned(mitigation) = r.state else {
        return None;
    };
    Some(Target {
        broker: r.broker,
        what: format!("binding {}", r.binding_id),
        path: OsbId::parse("instance_id", &r.instance_id).and_then(|instance| {
            OsbId::parse("binding_id", &r.binding_id)
                .map(|binding| UpstreamPath::binding(&instance, &binding))
        }),
        upstream_service_id: r.upstream_service_id,
        upstream_plan_id: r.upstream_plan_id,
        mitigation,
    })
}

enum Step {
    /// 200/410 to the delete, or its operation succeeded: forget the record.
    Gone,
    /// Not yet: an accepted delete to poll (`operation`), or an error to back off from.
    Wait {
        operation: Option<String>,
        error: Option<String>,
    },
}

async fn attempt(broker: &UpstreamBroker, target: &Target) -> Step {
    let call = CallHeaders {
        request_identity: uuid::Uuid::new_v4().to_string(),
        operation: if target.what.starts_with("binding") {
            "unbind"
        } else {
            "deprovision"
        },
        ..CallHeaders::default()
    };
    let resource = match &target.path {
        Ok(path) => path.clone(),
        Err(e) => {
            return Step::Wait {
                operation: None,
                error: Some(format!("not sent upstream: {e}; abandon it with the admin API")),
            };
        }
    };
    let service = ("service_id", target.upstream_service_id.as_str());
    let plan = ("plan_id", target.upstream_plan_id.as_str());
    let (method, path) = match &target.mitigation.operation {
        Some(operation) => (
            Method::GET,
            resource
                .last_operation()
                .with_pairs(&[service, plan, ("operation", operation)]),
        ),
        None => (
            Method::DELETE,
            resource.with_pairs(&[service, plan, ("accepts_incomplete", "true")]),
        ),
    };
    let polling = target.mitigation.operation.is_some();
    let reply = match broker.call(method, &path, None, &call).await {
        Ok(reply) => reply,
        Err(e) => {
            return Step::Wait {
                operation: None,
                error: Some(error_chain(&e)),
            };
        }
    };
    let body: Option<Value> = serde_json::from_slice(&reply.body).ok();
    match (polling, reply.status) {
        (_, 410) | (false, 200) => Step::Gone,
        (false, 202) => Step::Wait {
            operation: Some(
                body.as_ref()
                    .and_then(|b| b.get("operation"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            )
            .filter(|o| !o.is_empty()),
            error: None,
        },
        (true, 200) => match body.as_ref().and_then(|b| b.get("state")).and_then(Value::as_str) {
            Some("succeeded") => Step::Gone,
            Some("in progress") => Step::Wait {
                operation: None,
                error: None,
            },
            // The delete failed: send it again (operation cleared by the caller's next attempt).
            _ => Step::Wait {
                operation: None,
                error: Some("the upstream delete failed".to_owned()),
            },
        },
        (_, status) => Step::Wait {
            operation: None,
            error: Some(format!("upstream answered {status}")),
        },
    }
}

/// Counts an attempt and sets the next one: 1 s doubling, at most [`MAX_BACKOFF`].
fn schedule(mitigation: &mut Mitigation) {
    mitigation.attempts = mitigation.attempts.saturating_add(1);
    let delay = Duration::from_secs(1u64 << mitigation.attempts.saturating_sub(1).min(6)).min(MAX_BACKOFF);
    mitigation.next_attempt_ms = now_ms() + u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
    if mitigation.last_error.as_deref() == Some("the upstream delete failed") {
        mitigation.operation = None;
    }
}
