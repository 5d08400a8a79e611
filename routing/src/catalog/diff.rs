//! What a catalog change does to the merged catalog: services and plans added, removed, changed,
//! and ids that changed under the same name.
//!
//! Pure: two merged catalogs in, a list of [`CatalogChange`]s out. Services are matched by id, then
//! (what is left) by published name, which is how an id change shows up (an `ids:` mode switch, a
//! broker renamed, an upstream that minted new ids). Plans are matched the same way inside matched
//! services. A removed or added service lists its plans too, so that [`annotate`] can say, plan by
//! plan, how many live instances a removal would strand and whether the catalog guard would hold
//! it back (see [`super::guard`]).

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::catalog::model::{Catalog, Plan, Service};

/// What happened to an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Added,
    Removed,
    /// Same id, other fields (`fields` names them).
    Changed,
    /// Same name, another id: platforms see a removal and an addition.
    IdChanged,
}

/// A service or a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Service,
    Plan,
}

/// One difference between two catalogs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogChange {
    pub change: ChangeKind,
    pub entry: EntryKind,
    /// The service's published name (the new one, except for a removal).
    pub service: String,
    /// The plan's name, for a plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// The id after the change (absent for a removal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The id before the change (absent for an addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_id: Option<String>,
    /// Fields that differ (`changed`, `id_changed`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// Live instances on the old id (removals and id changes; see [`annotate`]).
    #[serde(default)]
    pub instances: usize,
    /// The guard would keep serving the old entry until its instances are gone or an operator
    /// confirms the removal.
    #[serde(default)]
    pub held: bool,
}

/// Counts per entry of a change: how many of each kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffSummary {
    pub added: usize,
    pub removed: usize,
    pub changed: usize,
    pub id_changed: usize,
    /// Removals (and id changes) the guard would hold back.
    pub held: usize,
}

/// Live instances per gateway id (plans and services), to annotate removals.
#[derive(Debug, Clone, Default)]
pub struct LiveCounts {
    pub plans: HashMap<String, usize>,
    pub services: HashMap<String, usize>,
}

/// The differences from `old` to `new`, services in `old`'s order then added ones.
pub fn diff(old: &Catalog, new: &Catalog) -> Vec<CatalogChange> {
    let mut changes = Vec::new();
    let pairs = match_entries(&old.services, &new.services, |s| &s.id, |s| &s.name);
    for (old_index, new_index) in &pairs.matched {
        let (Some(before), Some(after)) = (old.services.get(*old_index), new.services.get(*new_index)) else {
            continue;
        };
        let fields = changed_fields(&service_fields(before), &service_fields(after));
        if before.id != after.id {
            changes.push(service_change(ChangeKind::IdChanged, before, after, fields));
        } else if !fields.is_empty() {
            changes.push(service_change(ChangeKind::Changed, before, after, fields));
        }
        diff_plans(&mut changes, before, after);
    }
    for old_index in &pairs.removed {
        if let Some(service) = old.services.get(*old_index) {
            changes.push(CatalogChange {
                change: ChangeKind::Removed,
                entry: EntryKind::Service,
                service: service.name.clone(),
                plan: None,
                id: None,
                old_id: Some(service.id.clone()),
                fields: Vec::new(),
                instances: 0,
                held: false,
            });
            for plan in &service.plans {
                changes.push(plan_change(
                    ChangeKind::Removed,
                    &service.name,
                    Some(plan),
                    None,
                    Vec::new(),
                ));
            }
        }
    }
    for new_index in &pairs.added {
        if let Some(service) = new.services.get(*new_index) {
            changes.push(CatalogChange {
                change: ChangeKind::Added,
                entry: EntryKind::Service,
                service: service.name.clone(),
                plan: None,
                id: Some(service.id.clone()),
                old_id: None,
                fields: Vec::new(),
                instances: 0,
                held: false,
            });
            for plan in &service.plans {
                changes.push(plan_change(
                    ChangeKind::Added,
                    &service.name,
                    None,
                    Some(plan),
                    Vec::new(),
                ));
            }
        }
    }
    changes
}

/// Fills in live instances of removed and re-identified entries, and whether the guard would hold
/// them: a plan with live instances whose removal no operator confirmed (by its id or its
/// service's); a service when one of its plans is held.
pub fn annotate(changes: &mut [CatalogChange], live: &LiveCounts, confirmed: &HashSet<String>) {
    let gone = |c: &CatalogChange| matches!(c.change, ChangeKind::Removed | ChangeKind::IdChanged);
    // The old id of each removed or re-identified service, by the name its plans' changes carry.
    let service_ids: HashMap<String, String> = changes
        .iter()
        .filter(|c| c.entry == EntryKind::Service && gone(c))
        .filter_map(|c| c.old_id.clone().map(|id| (c.service.clone(), id)))
        .collect();
    for change in changes
        .iter_mut()
        .filter(|c| c.entry == EntryKind::Plan && gone(c))
    {
        let Some(old_id) = change.old_id.as_deref() else {
            continue;
        };
        change.instances = live.plans.get(old_id).copied().unwrap_or(0);
        let service_confirmed = service_ids
            .get(&change.service)
            .is_some_and(|id| confirmed.contains(id));
        change.held = change.instances > 0 && !confirmed.contains(old_id) && !service_confirmed;
    }
    let held_services: HashSet<String> = changes
        .iter()
        .filter(|c| c.entry == EntryKind::Plan && c.held)
        .map(|c| c.service.clone())
        .collect();
    for change in changes
        .iter_mut()
        .filter(|c| c.entry == EntryKind::Service && gone(c))
    {
        change.instances = change
            .old_id
            .as_deref()
            .and_then(|id| live.services.get(id))
            .copied()
            .unwrap_or(0);
        change.held = held_services.contains(&change.service);
    }
}

/// How many changes of each kind (services and plans together).
pub fn summarize(changes: &[CatalogChange]) -> DiffSummary {
    let mut summary = DiffSummary::default();
    for change in changes {
        match change.change {
            ChangeKind::Added => summary.added += 1,
            ChangeKind::Removed => summary.removed += 1,
            ChangeKind::Changed => summary.changed += 1,
            ChangeKind::IdChanged => summary.id_changed += 1,
        }
        if change.held && change.entry == EntryKind::Plan {
            summary.held += 1;
        }
    }
    summary
}

/// Entries of two lists paired by id, then by name among the rest.
struct Pairs {
    matched: Vec<(usize, usize)>,
    removed: Vec<usize>,
    added: Vec<usize>,
}

fn match_entries<T>(old: &[T], new: &[T], id: impl Fn(&T) -> &String, name: impl Fn(&T) -> &String) -> Pairs {
    let new_by_id: HashMap<&String, usize> = new.iter().enumerate().map(|(i, e)| (id(e), i)).collect();
    let mut taken = vec![false; new.len()];
    let mut matched = Vec::new();
    let mut unmatched = Vec::new();
    for (i, entry) in old.iter().enumerate() {
        match new_by_id.get(id(entry)) {
            Some(&j) => {
                if let Some(t) = taken.get_mut(j) {
                    *t = true;
                }
                matched.push((i, j));
            }
            None => unmatched.push(i),
        }
    }
    let mut removed = Vec::new();
    for i in unmatched {
        let Some(entry) = old.get(i) else { continue };
        let by_name = new
            .iter()
            .enumerate()
            .find(|(j, e)| !taken.get(*j).copied().unwrap_or(true) && name(e) == name(entry));
        match by_name {
            Some((j, _)) => {
                if let Some(t) = taken.get_mut(j) {
                    *t = true;
                }
                matched.push((i, j));
            }
            None => removed.push(i),
        }
    }
    matched.sort_unstable();
    let added = taken
        .iter()
        .enumerate()
        .filter(|(_, t)| !**t)
        .map(|(j, _)| j)
        .collect();
    Pairs {
        matched,
        removed,
        added,
    }
}

fn diff_plans(changes: &mut Vec<CatalogChange>, before: &Service, after: &Service) {
    let pairs = match_entries(&before.plans, &after.plans, |p| &p.id, |p| &p.name);
    for (i, j) in &pairs.matched {
        let (Some(old), Some(new)) = (before.plans.get(*i), after.plans.get(*j)) else {
            continue;
        };
        let fields = changed_fields(&plan_fields(old), &plan_fields(new));
        if old.id != new.id {
            changes.push(plan_change(
                ChangeKind::IdChanged,
                &after.name,
                Some(old),
                Some(new),
                fields,
            ));
        } else if !fields.is_empty() {
            changes.push(plan_change(
                ChangeKind::Changed,
                &after.name,
                Some(old),
                Some(new),
                fields,
            ));
        }
    }
    for i in &pairs.removed {
        if let Some(old) = before.plans.get(*i) {
            changes.push(plan_change(
                ChangeKind::Removed,
                &after.name,
                Some(old),
                None,
                Vec::new(),
            ));
        }
    }
    for j in &pairs.added {
        if let Some(new) = after.plans.get(*j) {
            changes.push(plan_change(
                ChangeKind::Added,
                &after.name,
                None,
                Some(new),
                Vec::new(),
            ));
        }
    }
}

fn service_change(kind: ChangeKind, before: &Service, after: &Service, fields: Vec<String>) -> CatalogChange {
    CatalogChange {
        change: kind,
        entry: EntryKind::Service,
        service: after.name.clone(),
        plan: None,
        id: Some(after.id.clone()),
        old_id: Some(before.id.clone()),
        fields,
        instances: 0,
        held: false,
    }
}

fn plan_change(
    kind: ChangeKind,
    service: &str,
    old: Option<&Plan>,
    new: Option<&Plan>,
    fields: Vec<String>,
) -> CatalogChange {
    CatalogChange {
        change: kind,
        entry: EntryKind::Plan,
        service: service.to_owned(),
        plan: new.or(old).map(|p| p.name.clone()),
        id: new.map(|p| p.id.clone()),
        old_id: old.map(|p| p.id.clone()),
        fields,
        instances: 0,
        held: false,
    }
}

/// A service's fields other than its id and plans.
fn service_fields(service: &Service) -> Map<String, Value> {
    let mut fields = service.extra.clone();
    fields.insert("name".to_owned(), Value::String(service.name.clone()));
    fields.insert(
        "description".to_owned(),
        Value::String(service.description.clone()),
    );
    fields
}

/// A plan's fields other than its id.
fn plan_fields(plan: &Plan) -> Map<String, Value> {
    let mut fields = plan.extra.clone();
    fields.insert("name".to_owned(), Value::String(plan.name.clone()));
    fields.insert("description".to_owned(), Value::String(plan.description.clone()));
    fields
}

/// Keys whose values differ (present on one side only included), sorted.
fn changed_fields(old: &Map<String, Value>, new: &Map<String, Value>) -> Vec<String> {
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    keys.into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn catalog(value: Value) -> Catalog {
        serde_json::from_value(value).unwrap()
    }

    fn plan(id: &str, name: &str) -> Value {
        json!({"id": id, "name": name, "description": "d"})
    }

    fn short(changes: &[CatalogChange]) -> Vec<String> {
        changes
            .iter()
            .map(|c| {
                format!(
                    "{:?} {:?} {}{} {}->{} {}",
                    c.change,
                    c.entry,
                    c.service,
                    c.plan.as_deref().map(|p| format!("/{p}")).unwrap_or_default(),
                    c.old_id.as_deref().unwrap_or("-"),
                    c.id.as_deref().unwrap_or("-"),
                    c.fields.join(",")
                )
            })
            .collect()
    }

    #[test]
    fn identical_catalogs_have_no_changes() {
        let c = catalog(json!({"services": [
            {"id": "s1", "name": "aws.s3", "description": "d", "bindable": true,
             "plans": [plan("p1", "small")]}]}));
        assert!(diff(&c, &c).is_empty());
    }

    #[test]
    fn additions_removals_changes_and_id_changes() {
        let old = catalog(json!({"services": [
            {"id": "s1", "name": "aws.s3", "description": "d", "bindable": true,
             "plans": [plan("p1", "small"), plan("p2", "large"), plan("p3", "gone")]},
            {"id": "s2", "name": "aws.sqs", "description": "d", "plans": [plan("q1", "basic")]},
            {"id": "s3", "name": "aws.rds", "description": "d", "plans": [plan("r1", "dev")]}]}));
        let new = catalog(json!({"services": [
            {"id": "s1", "name": "aws.s3", "description": "new words", "bindable": true,
             "plans": [plan("p1", "small"), {"id": "p2", "name": "large", "description": "d", "free": false},
                       plan("p4", "huge")]},
            {"id": "s2-new", "name": "aws.sqs", "description": "d", "plans": [plan("q1-new", "basic")]},
            {"id": "s4", "name": "aws.sns", "description": "d", "plans": [plan("t1", "std")]}]}));
        let changes = diff(&old, &new);
        assert_eq!(
            short(&changes),
            [
                "Changed Service aws.s3 s1->s1 description",
                "Changed Plan aws.s3/large p2->p2 free",
                "Removed Plan aws.s3/gone p3->- ",
                "Added Plan aws.s3/huge -->p4 ",
                "IdChanged Service aws.sqs s2->s2-new ",
                "IdChanged Plan aws.sqs/basic q1->q1-new ",
                "Removed Service aws.rds s3->- ",
                "Removed Plan aws.rds/dev r1->- ",
                "Added Service aws.sns -->s4 ",
                "Added Plan aws.sns/std -->t1 ",
            ]
        );
        let summary = summarize(&changes);
        assert_eq!(
            (
                summary.added,
                summary.removed,
                summary.changed,
                summary.id_changed
            ),
            (3, 3, 2, 2)
        );
    }

    #[test]
    fn a_rename_with_the_same_id_is_a_change() {
        let old = catalog(json!({"services": [
            {"id": "s1", "name": "aws.s3", "description": "d", "plans": [plan("p1", "small")]}]}));
        let new = catalog(json!({"services": [
            {"id": "s1", "name": "amazon.s3", "description": "d", "plans": [plan("p1", "small")]}]}));
        assert_eq!(
            short(&diff(&old, &new)),
            ["Changed Service amazon.s3 s1->s1 name"]
        );
    }

    #[test]
    fn removals_with_live_instances_are_held_unless_confirmed() {
        let old = catalog(json!({"services": [
            {"id": "s1", "name": "aws.s3", "description": "d",
             "plans": [plan("p1", "small"), plan("p2", "large")]},
            {"id": "s2", "name": "aws.sqs", "description": "d", "plans": [plan("q1", "basic")]}]}));
        let new = catalog(json!({"services": [
            {"id": "s1", "name": "aws.s3", "description": "d", "plans": [plan("p1", "small")]}]}));
        let mut changes = diff(&old, &new);
        let live = LiveCounts {
            plans: HashMap::from([("p2".to_owned(), 2), ("q1".to_owned(), 1), ("p1".to_owned(), 5)]),
            services: HashMap::from([("s1".to_owned(), 7), ("s2".to_owned(), 1)]),
        };
        annotate(&mut changes, &live, &HashSet::from(["q1".to_owned()]));
        let held: Vec<(String, usize, bool)> = changes
            .iter()
            .map(|c| (c.old_id.clone().unwrap_or_default(), c.instances, c.held))
            .collect();
        assert_eq!(
            held,
            [
                ("p2".to_owned(), 2, true),
                ("s2".to_owned(), 1, false),
                ("q1".to_owned(), 1, false)
            ]
        );
        assert_eq!(summarize(&changes).held, 1);
    }
}
