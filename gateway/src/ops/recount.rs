//! The quota recount: once the catalogs are in after start-up, after every policy reload that has
//! quotas (or follows one that had), and every ten minutes while the policy has quotas, every live
//! instance and binding is brought in line with the quotas in force, so a quota added to a running
//! registry counts the instances that were there before it. A record that should be in a count and is not gets its key (through the same
//! compare-and-swap every registry write takes, so the store counts it); keys of quotas the policy
//! no longer has are dropped.
//!
//! A recount can leave a count above its limit (fifty databases in a namespace before a quota of
//! three): usage says fifty, and new ones are refused until it is below three. Provisions racing
//! with a recount are counted by the creation step as always; the recount only adds what existed.
//! With several replicas each one recounts; the writes are idempotent.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::web;
use osb_policies::Operation;
use osb_routing::registry::{BindingRecord, InstanceRecord};
use osb_routing::store::{Expect, MAX_PAGE, RecordFilter, Swap, each_record};
use osb_routing::{Availability, RoutingError};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::state::AppState;

/// How often the worker looks for a new policy generation.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How often a policy with quotas is recounted even without a reload: what a recount cannot see
/// as it happens (a plan change moving an instance into or out of a plan's quota, a record that
/// kept changing under the last pass) is counted right within this time.
const RECOUNT_EVERY: Duration = Duration::from_secs(600);
/// Attempts at one record's write when it keeps changing under the recount.
const ATTEMPTS: usize = 3;

/// Starts the recount worker.
pub fn spawn(state: web::Data<AppState>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut counted: Option<(u64, tokio::time::Instant)> = None;
        let mut had_quotas = false;
        loop {
            tokio::time::sleep(CHECK_EVERY).await;
            let policy = state.policies.current();
            let current = counted.is_some_and(|(generation, at)| {
                generation == policy.generation
                    && (policy.policy.quotas.is_empty() || at.elapsed() < RECOUNT_EVERY)
            });
            let starting = matches!(
                state.catalog.snapshot().availability,
                Availability::Starting { .. }
            );
            if current || starting {
                continue;
            }
            let has_quotas = !policy.policy.quotas.is_empty();
            let held = match state.registry.store().quota_counts().await {
                Ok(counts) => !counts.is_empty(),
                Err(_) => continue,
            };
            if !has_quotas && !had_quotas && !held {
                counted = Some((policy.generation, tokio::time::Instant::now()));
                continue;
            }
            match recount(&state).await {
                Ok(changed) => {
                    if changed > 0 {
                        info!(
                            generation = policy.generation,
                            records = changed,
                            "Quota counts recounted."
                        );
                    }
                    counted = Some((policy.generation, tokio::time::Instant::now()));
                    had_quotas = has_quotas;
                }
                Err(e) => warn!(error = %e, "Quota recount failed; trying again."),
            }
        }
    })
}

/// One pass over the registry; returns how many records changed.
///
/// # Errors
/// A store failure (the pass is tried again).
pub async fn recount(state: &AppState) -> Result<usize, RoutingError> {
    let store = state.registry.store();
    let all = &RecordFilter::default();
    let changed = &AtomicUsize::new(0);
    let count = |written: bool| {
        changed.fetch_add(usize::from(written), Ordering::Relaxed);
    };
    each_record(
        |after| async move { store.list_instances(all, after.as_deref(), MAX_PAGE).await },
        |record: &InstanceRecord| record.instance_id.clone(),
        |record| async move { recount_instance(state, record).await.map(count) },
    )
    .await?;
    each_record(
        |after| async move { store.list_bindings(all, after.as_deref(), MAX_PAGE).await },
        |record: &BindingRecord| record.binding_id.clone(),
        |record| async move { recount_binding(state, record).await.map(count) },
    )
    .await?;
    let changed = changed.load(Ordering::Relaxed);
    Ok(changed)
}

/// The keys `held` should become, or `None` when they stay.
fn wanted(
    state: &AppState,
    instance: &InstanceRecord,
    operation: Operation,
    held: &[String],
) -> Option<Vec<String>> {
    let keys = state.with_decider(|d| d.quotas_of(instance, operation, held))?;
    let mut now = held.to_vec();
    now.sort();
    (keys != now).then_some(keys)
}

async fn recount_instance(state: &AppState, mut record: InstanceRecord) -> Result<bool, RoutingError> {
    let store = state.registry.store();
    for _ in 0..ATTEMPTS {
        let Some(keys) = wanted(state, &record, Operation::Provision, &record.quotas) else {
            return Ok(false);
        };
        let (id, version) = (record.instance_id.clone(), record.version);
        let changed = InstanceRecord {
            quotas: keys,
            ..record
        };
        match store
            .swap_instance(&id, Expect::Version(version), Some(changed))
            .await?
        {
            Swap::Written(_) => return Ok(true),
            Swap::Deleted => return Ok(false),
            Swap::Conflict => match store.instance(&id).await? {
                Some(current) => record = current,
                None => return Ok(false),
            },
        }
    }
    Ok(false)
}

async fn recount_binding(state: &AppState, mut record: BindingRecord) -> Result<bool, RoutingError> {
    let store = state.registry.store();
    let Some(instance) = store.instance(&record.instance_id).await? else {
        return Ok(false);
    };
    for _ in 0..ATTEMPTS {
        let Some(keys) = wanted(state, &instance, Operation::Bind, &record.quotas) else {
            return Ok(false);
        };
        let (id, version) = (record.binding_id.clone(), record.version);
        let changed = BindingRecord {
            quotas: keys,
            ..record
        };
        match store
            .swap_binding(&id, Expect::Version(version), Some(changed))
            .await?
        {
            Swap::Written(_) => return Ok(true),
            Swap::Deleted => return Ok(false),
            Swap::Conflict => match store.binding(&id).await? {
                Some(current) => record = current,
                None => return Ok(false),
            },
        }
    }
    Ok(false)
}
