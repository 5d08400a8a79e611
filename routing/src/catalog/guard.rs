//! The catalog guard: a change that would remove a plan (or a whole service) that still has live
//! instances is held back. The old entry stays in the served catalog until its instances are gone
//! or an operator confirms the removal, so platforms never see a plan vanish under instances they
//! still manage (Kubernetes Service Catalog and Cloud Foundry strand them).
//!
//! Pure: the catalog served before, the newly merged one, live instances per plan and the
//! confirmed removals in; the catalog to serve and what is held out. A held plan goes back into its
//! service when the service is still merged (under `<name>-held` if its name was taken by a new
//! plan, as after an id change), otherwise the old service is served with its held plans only
//! (under `<name>-held` if a merged service took its name). Held plans get no route: a provision
//! on one is refused before anything is forwarded; instances on it keep routing by the registry.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::catalog::model::{Catalog, Plan, Service};

/// Suffix given to a held entry whose name a merged entry took.
pub const HELD_SUFFIX: &str = "-held";

/// Live instances of one plan (from the ownership registry).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LivePlan {
    pub instances: usize,
    /// The broker they live on and their upstream service id (any instance's).
    pub broker: String,
    pub upstream_service_id: String,
}

/// A plan the guard keeps serving although the merged catalog dropped it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldPlan {
    pub broker: String,
    pub service_id: String,
    /// The service's name as served.
    pub service_name: String,
    pub plan_id: String,
    /// The plan's name as served.
    pub plan_name: String,
    /// Live instances on the plan when last checked.
    pub instances: usize,
    /// Since when it is held (ms since the epoch).
    pub since_ms: u64,
}

/// The catalog to serve and the plans held in it.
#[derive(Debug, Clone, Default)]
pub struct Guarded {
    pub catalog: Catalog,
    pub held: Vec<HeldPlan>,
}

/// `true` when `previous` has a plan that `merged` lacks (only then are live counts needed).
pub fn removes_plans(previous: &Catalog, merged: &Catalog) -> bool {
    let merged_plans = plan_ids(merged);
    previous
        .services
        .iter()
        .flat_map(|s| s.plans.iter())
        .any(|p| !merged_plans.contains(p.id.as_str()))
}

/// The catalog to serve: `merged`, plus every plan of `previous` it lacks that has live
/// instances and whose removal is not confirmed (by plan or service id). `held_before` keeps the
/// `since_ms` of plans already held; new ones get `now_ms`.
pub fn guard(
    previous: &Catalog,
    merged: &Catalog,
    live: &HashMap<String, LivePlan>,
    confirmed: &HashSet<String>,
    held_before: &[HeldPlan],
    now_ms: u64,
) -> Guarded {
    let merged_plans = plan_ids(merged);
    let mut catalog = merged.clone();
    let mut held = Vec::new();
    for old in &previous.services {
        if confirmed.contains(&old.id) {
            continue;
        }
        let keep: Vec<(&Plan, &LivePlan)> = old
            .plans
            .iter()
            .filter(|p| !merged_plans.contains(p.id.as_str()) && !confirmed.contains(&p.id))
            .filter_map(|p| live.get(&p.id).filter(|l| l.instances > 0).map(|l| (p, l)))
            .collect();
        if keep.is_empty() {
            continue;
        }
        let index = match catalog.services.iter().position(|s| s.id == old.id) {
            Some(index) => index,
            None => {
                let taken = catalog.services.iter().any(|s| s.name == old.name);
                catalog.services.push(Service {
                    name: if taken {
                        format!("{}{HELD_SUFFIX}", old.name)
                    } else {
                        old.name.clone()
                    },
                    plans: Vec::new(),
                    ..old.clone()
                });
                catalog.services.len() - 1
            }
        };
        let Some(service) = catalog.services.get_mut(index) else {
            continue;
        };
        for (plan, live) in keep {
            let taken = service.plans.iter().any(|p| p.name == plan.name);
            let mut plan = plan.clone();
            if taken {
                plan.name = format!("{}{HELD_SUFFIX}", plan.name);
            }
            let since_ms = held_before
                .iter()
                .find(|h| h.plan_id == plan.id)
                .map_or(now_ms, |h| h.since_ms);
            held.push(HeldPlan {
                broker: live.broker.clone(),
                service_id: service.id.clone(),
                service_name: service.name.clone(),
                plan_id: plan.id.clone(),
                plan_name: plan.name.clone(),
                instances: live.instances,
                since_ms,
            });
            service.plans.push(plan);
        }
    }
    Guarded { catalog, held }
}

fn plan_ids(catalog: &Catalog) -> HashSet<&str> {
    catalog
        .services
        .iter()
        .flat_map(|s| s.plans.iter())
        .map(|p| p.id.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn catalog(value: Value) -> Catalog {
        serde_json::from_value(value).unwrap()
    }

    fn live(entries: &[(&str, usize)]) -> HashMap<String, LivePlan> {
        entries
            .iter()
            .map(|(id, n)| {
                (
                    (*id).to_owned(),
                    LivePlan {
                        instances: *n,
                        broker: "aws".into(),
                        upstream_service_id: "u".into(),
                    },
                )
            })
            .collect()
    }

    fn names(catalog: &Catalog) -> Vec<String> {
        catalog
            .services
            .iter()
            .flat_map(|s| {
                s.plans
                    .iter()
                    .map(move |p| format!("{}/{}={}", s.name, p.name, p.id))
            })
            .collect()
    }

    fn previous() -> Catalog {
        catalog(json!({"services": [
            {"id": "s1", "name": "aws.s3", "description": "d", "plans": [
                {"id": "p1", "name": "small", "description": "d"},
                {"id": "p2", "name": "large", "description": "d"}]},
            {"id": "s2", "name": "aws.sqs", "description": "d", "plans": [
                {"id": "q1", "name": "basic", "description": "d"}]}]}))
    }

    #[test]
    fn nothing_removed_nothing_held() {
        let guarded = guard(
            &previous(),
            &previous(),
            &live(&[("p1", 3)]),
            &HashSet::new(),
            &[],
            5,
        );
        assert_eq!(guarded.catalog, previous());
        assert!(guarded.held.is_empty());
        assert!(!removes_plans(&previous(), &previous()));
    }

    #[test]
    fn removed_plans_with_instances_stay_until_confirmed_or_gone() {
        let merged = catalog(json!({"services": [
            {"id": "s1", "name": "aws.s3", "description": "new", "plans": [
                {"id": "p1", "name": "small", "description": "d"}]}]}));
        assert!(removes_plans(&previous(), &merged));
        let live_now = live(&[("p2", 1), ("q1", 2)]);
        let guarded = guard(&previous(), &merged, &live_now, &HashSet::new(), &[], 5);
        assert_eq!(
            names(&guarded.catalog),
            ["aws.s3/small=p1", "aws.s3/large=p2", "aws.sqs/basic=q1"]
        );
        assert_eq!(
            guarded.catalog.services[0].description, "new",
            "the merged service's fields win"
        );
        let held: Vec<(&str, usize, u64)> = guarded
            .held
            .iter()
            .map(|h| (h.plan_id.as_str(), h.instances, h.since_ms))
            .collect();
        assert_eq!(held, [("p2", 1, 5), ("q1", 2, 5)]);

        // Next time round (the served catalog is now the previous one): held since the first time.
        let again = guard(
            &guarded.catalog,
            &merged,
            &live_now,
            &HashSet::new(),
            &guarded.held,
            9,
        );
        assert_eq!(again.catalog, guarded.catalog);
        assert_eq!(again.held, guarded.held);

        // The instances on p2 are gone; the operator confirms s2's removal.
        let later = guard(
            &again.catalog,
            &merged,
            &live(&[("q1", 2)]),
            &HashSet::from(["s2".to_owned()]),
            &again.held,
            12,
        );
        assert_eq!(later.catalog, merged);
        assert!(later.held.is_empty());
    }

    #[test]
    fn held_entries_whose_names_were_taken_are_suffixed() {
        // An id change: the same names under new ids.
        let merged = catalog(json!({"services": [
            {"id": "s1", "name": "aws.s3", "description": "d", "plans": [
                {"id": "p1", "name": "small", "description": "d"},
                {"id": "p2-new", "name": "large", "description": "d"}]},
            {"id": "s2-new", "name": "aws.sqs", "description": "d", "plans": [
                {"id": "q1-new", "name": "basic", "description": "d"}]}]}));
        let guarded = guard(
            &previous(),
            &merged,
            &live(&[("p2", 1), ("q1", 1)]),
            &HashSet::new(),
            &[],
            1,
        );
        assert_eq!(
            names(&guarded.catalog),
            [
                "aws.s3/small=p1",
                "aws.s3/large=p2-new",
                "aws.s3/large-held=p2",
                "aws.sqs/basic=q1-new",
                "aws.sqs-held/basic=q1"
            ]
        );
        assert_eq!(guarded.held[1].service_name, "aws.sqs-held");
        // Stable on the next round.
        let again = guard(
            &guarded.catalog,
            &merged,
            &live(&[("p2", 1), ("q1", 1)]),
            &HashSet::new(),
            &guarded.held,
            2,
        );
        assert_eq!(names(&again.catalog), names(&guarded.catalog));
    }
}
