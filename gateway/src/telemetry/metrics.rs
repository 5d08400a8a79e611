//! Prometheus metrics, served at `GET /metrics` on the admin listener.
//!
//! Names follow the OpenTelemetry semantic conventions (`http.server.request.duration` becomes
//! `http_server_request_duration_seconds`), gateway metrics live under `osb_gateway_`. Every label
//! value comes from a small fixed set (operation, status class, configured platform and broker
//! names, outcomes); ids never become labels. Values the gateway already keeps elsewhere (catalog
//! state, registry counts) are read when Prometheus scrapes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use osb_policies::Policy;
use osb_routing::{Brokers, CatalogCache, Freshness, Registry as OwnershipRegistry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use super::labels::{
    AuditLabels, BrokerLabel, DecisionLabels, OperationLabel, OutcomeLabel, RefreshLabels, ResultLabel,
};
pub use super::labels::{ClientLabels, RejectionLabels, ServerLabels};

fn latency_buckets() -> Histogram {
    // 0.25 ms … 33 s: above the longest default upstream timeout, so slow calls still land in a
    // bucket of their own rather than only in +Inf.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 18))
}

/// Every metric the gateway exposes.
pub struct Metrics {
    registry: Registry,
    server: Family<ServerLabels, Histogram>,
    active: Gauge,
    client: Family<ClientLabels, Histogram>,
    refreshes: Family<RefreshLabels, Counter>,
    catalog_age: Family<BrokerLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    catalog_stale: Family<BrokerLabel, Gauge>,
    upstream_up: Family<BrokerLabel, Gauge>,
    cache: Family<ResultLabel, Counter>,
    rejections: Family<RejectionLabels, Counter>,
    decisions: Family<DecisionLabels, Counter>,
    reloads: Family<OutcomeLabel, Counter>,
    config_reloads: Family<OutcomeLabel, Counter>,
    registry_latency: Family<OperationLabel, Histogram>,
    instances: Family<BrokerLabel, Gauge>,
    bindings: Family<BrokerLabel, Gauge>,
    mitigation_queue: Gauge,
    held: Family<BrokerLabel, Gauge>,
    audit_records: Family<AuditLabels, Counter>,
    audit_failures: Counter,
    breaker: Family<BrokerLabel, Gauge>,
    store_up: Gauge,
    process: super::process::ProcessMetrics,
    /// Running totals already added, per (broker, outcome) (and the catalog views): the catalog
    /// keeps cumulative counts, Prometheus counters take increments.
    refreshes_seen: Mutex<HashMap<(String, &'static str), u64>>,
    /// Registry counts are read at most this often (a scan of the store).
    registry_counted: Mutex<Option<Instant>>,
    /// Per-call observations recorded (`telemetry.metrics`); off, the per-call series stay at zero.
    per_call: bool,
    quotas: super::quotas::QuotaMetrics,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// How often the registry's instance and binding counts are read (PostgreSQL counts on each read).
const REGISTRY_COUNT_EVERY: Duration = Duration::from_secs(10);

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let server =
            Family::<ServerLabels, Histogram>::new_with_constructor(latency_buckets as fn() -> Histogram);
        registry.register_with_unit(
            "http_server_request_duration",
            "Duration of platform requests",
            Unit::Seconds,
            server.clone(),
        );
        registry.register(
            "osb_gateway_trace_export_failures",
            "Trace exports that failed (no connection, TLS, a status other than 2xx); their spans are dropped",
            super::export::EXPORT_FAILURES.clone(),
        );
        let active = Gauge::default();
        registry.register(
            "http_server_active_requests",
            "Platform requests in flight",
            active.clone(),
        );
        let client =
            Family::<ClientLabels, Histogram>::new_with_constructor(latency_buckets as fn() -> Histogram);
        registry.register_with_unit(
            "http_client_request_duration",
            "Duration of calls to upstream brokers",
            Unit::Seconds,
            client.clone(),
        );
        let refreshes = Family::default();
        registry.register(
            "osb_gateway_catalog_refreshes",
            "Catalog refreshes by outcome",
            refreshes.clone(),
        );
        let catalog_age = Family::default();
        registry.register_with_unit(
            "osb_gateway_catalog_age",
            "Age of the catalog in use per broker",
            Unit::Seconds,
            catalog_age.clone(),
        );
        let catalog_stale = Family::default();
        registry.register(
            "osb_gateway_catalog_stale",
            "1 when a broker's catalog is served stale",
            catalog_stale.clone(),
        );
        let upstream_up = Family::default();
        registry.register(
            "osb_gateway_upstream_up",
            "1 when the broker's last refresh succeeded",
            upstream_up.clone(),
        );
        let cache = Family::default();
        registry.register(
            "osb_gateway_catalog_cache_requests",
            "Per-platform catalog views served",
            cache.clone(),
        );
        let rejections = Family::default();
        registry.register(
            "osb_gateway_rate_limit_rejections",
            "Calls refused by a rate limit",
            rejections.clone(),
        );
        let decisions = Family::default();
        registry.register(
            "osb_gateway_policy_decisions",
            "Policy decisions by outcome",
            decisions.clone(),
        );
        // Both outcomes exist from the start at 0, so `increase()` sees the first failed reload.
        let outcomes = |registry: &mut Registry, name: &str, help: &str| {
            let family: Family<OutcomeLabel, Counter> = Family::default();
            registry.register(name, help, family.clone());
            for outcome in ["ok", "error"] {
                drop(family.get_or_create(&OutcomeLabel { outcome }));
            }
            family
        };
        let reloads = outcomes(
            &mut registry,
            "osb_gateway_policy_reloads",
            "Policy file reloads by outcome",
        );
        let config_reloads = outcomes(
            &mut registry,
            "osb_gateway_config_reloads",
            "Configuration file reloads that changed the file, by outcome",
        );
        let registry_latency =
            Family::<OperationLabel, Histogram>::new_with_constructor(latency_buckets as fn() -> Histogram);
        registry.register_with_unit(
            "osb_gateway_registry_operation_duration",
            "Duration of ownership registry operations",
            Unit::Seconds,
            registry_latency.clone(),
        );
        let instances = Family::default();
        registry.register(
            "osb_gateway_instances",
            "Instances in the registry per broker",
            instances.clone(),
        );
        let bindings = Family::default();
        registry.register(
            "osb_gateway_bindings",
            "Bindings in the registry per broker",
            bindings.clone(),
        );
        let mitigation_queue = Gauge::default();
        registry.register(
            "osb_gateway_mitigation_queue_depth",
            "Orphans waiting to be deleted upstream",
            mitigation_queue.clone(),
        );
        let held = Family::default();
        registry.register(
            "osb_gateway_catalog_held_entries",
            "Plans served only because the catalog guard holds them (removed upstream, live instances)",
            held.clone(),
        );
        let audit_records = Family::default();
        registry.register(
            "osb_gateway_audit_records",
            "Audit records appended, by kind and outcome",
            audit_records.clone(),
        );
        let audit_failures = Counter::default();
        registry.register(
            "osb_gateway_audit_write_failures",
            "Audit records the store or the export file refused",
            audit_failures.clone(),
        );
        let breaker = Family::default();
        registry.register(
            "osb_gateway_upstream_breaker_state",
            "Circuit breaker of each upstream broker: 0 closed, 1 half-open (probing), 2 open",
            breaker.clone(),
        );
        let store_up = Gauge::default();
        registry.register(
            "osb_gateway_store_up",
            "1 when the registry's store answered the last scrape's reads, else 0",
            store_up.clone(),
        );
        let process = super::process::ProcessMetrics::register(&mut registry);
        let quotas = super::quotas::QuotaMetrics::register(&mut registry);
        Metrics {
            quotas,
            registry,
            server,
            active,
            client,
            refreshes,
            catalog_age,
            catalog_stale,
            upstream_up,
            cache,
            rejections,
            decisions,
            reloads,
            config_reloads,
            registry_latency,
            instances,
            bindings,
            mitigation_queue,
            held,
            audit_records,
            audit_failures,
            breaker,
            store_up,
            process,
            refreshes_seen: Mutex::new(HashMap::new()),
            registry_counted: Mutex::new(None),
            per_call: true,
        }
    }

    /// Creates, at zero, the series of every configured platform and broker that would otherwise
    /// appear only with their first event (dashboards show 0, not "No data").
    pub fn declare(&self, platforms: &[String], brokers: &[String]) {
        for platform in platforms {
            for class in ["catalog", "calls"] {
                let _ = self.rejections.get_or_create(&RejectionLabels {
                    scope: "platform",
                    name: platform.clone(),
                    class,
                });
            }
        }
        for broker in brokers {
            let _ = self.rejections.get_or_create(&RejectionLabels {
                scope: "broker",
                name: broker.clone(),
                class: "calls",
            });
            for family in [&self.instances, &self.bindings, &self.held] {
                let _ = family.get_or_create(&BrokerLabel {
                    broker: broker.clone(),
                });
            }
        }
    }

    /// Records per-call observations or not (`telemetry.metrics`).
    #[must_use]
    pub fn with_per_call(mut self, on: bool) -> Self {
        self.per_call = on;
        self
    }

    /// A platform request finished.
    pub fn observe_request(&self, labels: ServerLabels, elapsed: Duration) {
        if !self.per_call {
            return;
        }
        self.server.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }

    /// A platform request started (the guard ends it).
    pub fn request_started(&self) -> ActiveRequest<'_> {
        if !self.per_call {
            return ActiveRequest(None);
        }
        self.active.inc();
        ActiveRequest(Some(&self.active))
    }

    /// An upstream call finished with `status` (`None`: no answer).
    pub fn observe_upstream(
        &self,
        broker: &str,
        operation: &'static str,
        status: Option<u16>,
        elapsed: Duration,
    ) {
        if !self.per_call {
            return;
        }
        let labels = ClientLabels {
            broker: broker.to_owned(),
            operation,
            status_class: status.map_or("error", status_class),
        };
        self.client.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }

    /// A rate limit refused a call.
    pub fn rate_limited(&self, scope: &'static str, name: &str, class: &'static str) {
        self.rejections
            .get_or_create(&RejectionLabels {
                scope,
                name: name.to_owned(),
                class,
            })
            .inc();
    }

    /// The policy decided.
    pub fn policy_decision(&self, operation: &'static str, outcome: &'static str) {
        if !self.per_call {
            return;
        }
        self.decisions
            .get_or_create(&DecisionLabels { operation, outcome })
            .inc();
    }

    /// The policy file was reloaded (or rejected).
    pub fn policy_reload(&self, ok: bool) {
        count_outcome(&self.reloads, ok);
    }

    /// The configuration file was reloaded (or rejected).
    pub fn config_reload(&self, ok: bool) {
        count_outcome(&self.config_reloads, ok);
    }

    /// A registry operation (`begin`, `finish`, `read`) took `elapsed`.
    pub fn registry_operation(&self, operation: &'static str, elapsed: Duration) {
        if !self.per_call {
            return;
        }
        self.registry_latency
            .get_or_create(&OperationLabel { operation })
            .observe(elapsed.as_secs_f64());
    }

    /// An audit record was appended.
    pub fn audit_recorded(&self, kind: &'static str, outcome: &'static str) {
        self.audit_records
            .get_or_create(&AuditLabels { kind, outcome })
            .inc();
    }

    /// An audit record could not be written.
    pub fn audit_failure(&self) {
        self.audit_failures.inc();
    }

    /// The exposition, after reading the values kept elsewhere.
    pub async fn render(
        &self,
        catalog: &CatalogCache,
        brokers: &Brokers,
        ownership: &OwnershipRegistry,
        policy: &Policy,
    ) -> String {
        self.collect_catalog(catalog, brokers);
        self.collect_registry(ownership, brokers, policy).await;
        self.process.update();
        for broker in brokers.clients() {
            let state = match broker.breaker_state() {
                osb_routing::breaker::BreakerState::Closed => 0,
                osb_routing::breaker::BreakerState::HalfOpen => 1,
                osb_routing::breaker::BreakerState::Open => 2,
            };
            self.breaker
                .get_or_create(&BrokerLabel {
                    broker: broker.name().to_owned(),
                })
                .set(state);
        }
        let mut text = String::new();
        if prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }

    fn collect_catalog(&self, catalog: &CatalogCache, brokers: &Brokers) {
        let now_ms = osb_routing::clock::now_ms();
        let snapshot = catalog.snapshot();
        let mut seen = self
            .refreshes_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (hits, misses) = catalog.view_counts();
        for (result, total) in [("hit", hits), ("miss", misses)] {
            let before = seen
                .insert(("\u{0}catalog-views".to_owned(), result), total)
                .unwrap_or(0);
            self.cache
                .get_or_create(&ResultLabel { result })
                .inc_by(total.saturating_sub(before));
        }
        // Held plans of a broker no longer configured count too.
        for held in snapshot.held.iter() {
            if !snapshot.brokers.iter().any(|b| b.name == held.broker) {
                let n = snapshot.held.iter().filter(|h| h.broker == held.broker).count();
                self.held
                    .get_or_create(&BrokerLabel {
                        broker: held.broker.clone(),
                    })
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        for status in &snapshot.brokers {
            let broker = BrokerLabel {
                broker: status.name.clone(),
            };
            let held = snapshot.held.iter().filter(|h| h.broker == status.name).count();
            self.held
                .get_or_create(&broker)
                .set(i64::try_from(held).unwrap_or(i64::MAX));
            let age = status
                .fetched_at_ms
                .map_or(0.0, |at| now_ms.saturating_sub(at) as f64 / 1000.0);
            self.catalog_age.get_or_create(&broker).set(age);
            self.catalog_stale
                .get_or_create(&broker)
                .set(i64::from(status.freshness == Freshness::Stale));
            self.upstream_up
                .get_or_create(&broker)
                .set(i64::from(brokers.is_healthy(&status.name)));
            for (outcome, total) in [
                ("ok", status.refreshes_ok),
                ("not_modified", status.refreshes_not_modified),
                ("error", status.refreshes_failed),
            ] {
                let key = (status.name.clone(), outcome);
                let before = seen.insert(key, total).unwrap_or(0);
                let counter = self.refreshes.get_or_create(&RefreshLabels {
                    broker: status.name.clone(),
                    outcome,
                });
                counter.inc_by(total.saturating_sub(before));
            }
        }
    }

    /// A new instance or binding refused by the full quota `quota`.
    pub fn quota_refused(&self, quota: &str) {
        self.quotas.refused(quota);
    }

    async fn collect_registry(&self, ownership: &OwnershipRegistry, brokers: &Brokers, policy: &Policy) {
        let store = ownership.store();
        match store.orphans().await {
            Ok(orphans) => {
                self.store_up.set(1);
                self.mitigation_queue
                    .set(i64::try_from(orphans.len()).unwrap_or(i64::MAX));
            }
            Err(_) => {
                self.store_up.set(0);
            }
        }
        {
            let mut counted = self
                .registry_counted
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if counted.is_some_and(|at| at.elapsed() < REGISTRY_COUNT_EVERY) {
                return;
            }
            *counted = Some(Instant::now());
        }
        if let Ok(counts) = store.quota_counts().await {
            self.quotas.collect(policy, &counts);
        }
        // The embedded store keeps these counts as records change; PostgreSQL counts them itself.
        let Ok(counts) = store.counts().await else { return };
        for (family, counted) in [
            (&self.instances, &counts.instances),
            (&self.bindings, &counts.bindings),
        ] {
            family.clear();
            // Every configured broker has a series from the start, zero included.
            for broker in brokers.clients() {
                family
                    .get_or_create(&BrokerLabel {
                        broker: broker.name().to_owned(),
                    })
                    .set(0);
            }
            for (broker, n) in counted {
                family
                    .get_or_create(&BrokerLabel {
                        broker: broker.clone(),
                    })
                    .set(i64::try_from(*n).unwrap_or(i64::MAX));
            }
        }
    }
}

/// Decrements `http_server_active_requests` when dropped.
pub struct ActiveRequest<'a>(Option<&'a Gauge>);

impl Drop for ActiveRequest<'_> {
    fn drop(&mut self) {
        if let Some(active) = self.0 {
            active.dec();
        }
    }
}

/// `2xx`, `4xx`, …
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

fn count_outcome(family: &Family<OutcomeLabel, Counter>, ok: bool) {
    let outcome = if ok { "ok" } else { "error" };
    family.get_or_create(&OutcomeLabel { outcome }).inc();
}
