//! The quota series of `/metrics`: per quota of the policy in force, its limit, how many live
//! records it counts (all its counts together) and the usage of its fullest count, read from the
//! registry when Prometheus scrapes; and the new instances and bindings each refused.
//!
//! One series per quota name, never per count: a count's values (namespaces, …) are unbounded.

use std::collections::{BTreeMap, HashMap};

use osb_policies::Policy;
use osb_policies::policy::quota_of_key;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::labels::QuotaLabel;

/// The quota families.
pub(crate) struct QuotaMetrics {
    limit: Family<QuotaLabel, Gauge>,
    usage: Family<QuotaLabel, Gauge>,
    fullest: Family<QuotaLabel, Gauge>,
    refusals: Family<QuotaLabel, Counter>,
}

impl QuotaMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = QuotaMetrics {
            limit: Family::default(),
            usage: Family::default(),
            fullest: Family::default(),
            refusals: Family::default(),
        };
        registry.register(
            "osb_gateway_quota_limit",
            "Live instances or bindings a quota allows in each of its counts",
            metrics.limit.clone(),
        );
        registry.register(
            "osb_gateway_quota_usage",
            "Live instances or bindings a quota counts, all its counts together",
            metrics.usage.clone(),
        );
        registry.register(
            "osb_gateway_quota_fullest",
            "Live instances or bindings in a quota's fullest count (equal to the limit: full)",
            metrics.fullest.clone(),
        );
        registry.register(
            "osb_gateway_quota_refusals",
            "New instances or bindings refused because a quota was full",
            metrics.refusals.clone(),
        );
        metrics
    }

    /// One new instance or binding refused by `quota`.
    pub(crate) fn refused(&self, quota: &str) {
        self.refusals
            .get_or_create(&QuotaLabel {
                quota: quota.to_owned(),
            })
            .inc();
    }

    /// Sets the gauges from the registry's `counts` (key → live records) for the quotas of
    /// `policy`; quotas no longer in the policy lose their series.
    pub(crate) fn collect(&self, policy: &Policy, counts: &BTreeMap<String, u64>) {
        let mut by_quota: HashMap<&str, (u64, u64)> = HashMap::new();
        for (key, n) in counts {
            let entry = by_quota.entry(quota_of_key(key)).or_default();
            entry.0 = entry.0.saturating_add(*n);
            entry.1 = entry.1.max(*n);
        }
        for family in [&self.limit, &self.usage, &self.fullest] {
            family.clear();
        }
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        for quota in &policy.quotas {
            let label = QuotaLabel {
                quota: quota.name.clone(),
            };
            let (usage, fullest) = by_quota.get(quota.name.as_str()).copied().unwrap_or_default();
            self.limit.get_or_create(&label).set(gauge(quota.limit));
            self.usage.get_or_create(&label).set(gauge(usage));
            self.fullest.get_or_create(&label).set(gauge(fullest));
            drop(self.refusals.get_or_create(&label));
        }
    }
}
