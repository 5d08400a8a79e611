//! The overview (`/ui`): every upstream broker as a card (health, breaker, catalog age and last
//! error, services and plans, instances by state) and the gateway's own facts (version, store,
//! replicas seen, policy generation, catalog availability, registry totals).
//!
//! Served from counts the store keeps as records change plus the orphan and pending queues, so it
//! stays fast with a large registry: no record is scanned.

use std::collections::BTreeMap;

use actix_web::{HttpRequest, web};
use askama::Template;
use osb_config::StoreSettings;
use osb_routing::breaker::BreakerState;
use osb_routing::store::RecordRef;
use osb_routing::{Availability, Freshness};

use super::{Html, PageError, Shell, Viewer, ago};
use crate::state::AppState;

/// At most this many orphan and pending records are read to split them by broker; beyond it the
/// totals alone are shown.
const SPLIT_AT_MOST: usize = 200;

/// One broker's card.
#[derive(Debug)]
pub struct BrokerCard {
    pub name: String,
    /// `healthy`, `degraded` (stale catalog) or `failing` (breaker open, no catalog).
    pub health: &'static str,
    pub breaker: &'static str,
    pub freshness: &'static str,
    pub catalog_age: Option<String>,
    pub last_error: Option<String>,
    pub services: usize,
    pub plans: usize,
    pub dropped: usize,
    pub held: usize,
    pub instances: u64,
    /// Instances with an operation whose outcome is not recorded yet.
    pub in_flight: Option<u64>,
    pub orphaned: Option<u64>,
    pub bindings: u64,
}

#[derive(Template)]
#[template(path = "console/overview.html")]
struct OverviewPage {
    shell: Shell,
    brokers: Vec<BrokerCard>,
    store: String,
    replica: String,
    replicas: Vec<String>,
    policy_generation: u64,
    policy_rules: usize,
    policy_error: bool,
    availability: String,
    services: usize,
    plans: usize,
    held: usize,
    instances: u64,
    bindings: u64,
    orphans: usize,
    pending: usize,
}

/// `GET /ui`
pub async fn page(req: HttpRequest, state: web::Data<AppState>) -> Result<Html, PageError> {
    let viewer = Viewer::of(&req, &state)?;
    let store = state.registry.store();
    let counts = store.counts().await?;
    let orphans = store.orphans().await?;
    let pending = store.pending().await?;
    let orphaned_by = by_broker(&state, &orphans).await;
    let pending_by = by_broker(&state, &pending).await;
    let snapshot = state.catalog.snapshot();
    let now = osb_routing::clock::now_ms();
    let brokers = snapshot
        .brokers
        .iter()
        .map(|status| {
            let breaker = state.brokers.get(&status.name).map(|b| b.breaker_state());
            let healthy = state.brokers.is_healthy(&status.name);
            let health = match (healthy, &status.freshness) {
                (false, _) | (_, Freshness::Pending) => "failing",
                (true, Freshness::Stale) => "degraded",
                (true, Freshness::Fresh) => "healthy",
            };
            BrokerCard {
                name: status.name.clone(),
                health,
                breaker: match breaker {
                    Some(BreakerState::Closed) => "closed",
                    Some(BreakerState::Open) => "open",
                    Some(BreakerState::HalfOpen) => "half-open",
                    None => "—",
                },
                freshness: match status.freshness {
                    Freshness::Pending => "no catalog yet",
                    Freshness::Fresh => "fresh",
                    Freshness::Stale => "stale",
                },
                catalog_age: status.fetched_at_ms.map(|at| ago(at.min(now))),
                last_error: status.last_error.clone(),
                services: status.services,
                plans: status.plans,
                dropped: status.dropped,
                held: snapshot.held.iter().filter(|h| h.broker == status.name).count(),
                instances: counts.instances.get(&status.name).copied().unwrap_or(0),
                in_flight: pending_by
                    .as_ref()
                    .map(|m| m.get(&status.name).copied().unwrap_or(0)),
                orphaned: orphaned_by
                    .as_ref()
                    .map(|m| m.get(&status.name).copied().unwrap_or(0)),
                bindings: counts.bindings.get(&status.name).copied().unwrap_or(0),
            }
        })
        .collect();
    let policy = state.policy_file.status();
    let page = OverviewPage {
        shell: Shell::new(&viewer, "overview", "Overview"),
        brokers,
        store: match &state.settings.store {
            StoreSettings::Embedded { path } => format!("embedded ({})", path.display()),
            StoreSettings::Postgres { .. } => "PostgreSQL".to_owned(),
        },
        replica: state.registry.replica().to_owned(),
        replicas: state.registry.replicas_seen(),
        policy_generation: policy.generation,
        policy_rules: policy.rules,
        policy_error: policy.last_error.is_some(),
        availability: match &snapshot.availability {
            Availability::Complete => "complete".to_owned(),
            Availability::Starting { missing } => format!("starting, waiting for {}", missing.join(", ")),
            Availability::Partial { missing } => format!("partial, without {}", missing.join(", ")),
        },
        services: snapshot.catalog.services.len(),
        plans: snapshot.catalog.services.iter().map(|s| s.plans.len()).sum(),
        held: snapshot.held.len(),
        instances: counts.instances.values().sum(),
        bindings: counts.bindings.values().sum(),
        orphans: orphans.len(),
        pending: pending.len(),
    };
    Html::of(&page)
}

/// Instances among `records` by broker (bindings left out), or
/// `None` when there are too many to read one by one.
async fn by_broker(state: &AppState, records: &[RecordRef]) -> Option<BTreeMap<String, u64>> {
    if records.len() > SPLIT_AT_MOST {
        return None;
    }
    let store = state.registry.store();
    let mut counts = BTreeMap::new();
    for record in records {
        let broker = match record {
            RecordRef::Instance(id) => store.instance(id).await.ok().flatten().map(|r| r.broker),
            RecordRef::Binding(_) => None,
        };
        if let Some(broker) = broker {
            *counts.entry(broker).or_insert(0) += 1;
        }
    }
    Some(counts)
}
