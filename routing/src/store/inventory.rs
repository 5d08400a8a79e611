//! Inventory pages: which instance and binding records an operator asked for, and in what order.
//!
//! Pure: a [`RecordFilter`] (every given field must match) and the paging rule every backend
//! follows: records in id order (bytewise), those after the cursor `after` (the last id of the
//! previous page), at most `limit`. The embedded store applies [`RecordFilter`] to its tables read in
//! key order; PostgreSQL runs the same filter in SQL; [`page`] is the rule over records in any order.

use serde::{Deserialize, Serialize};

use crate::record::{BindingRecord, InstanceRecord, Operation, ResourceState};

/// Calls `each` on every record, page after page in id order (`page(after)` answers the records
/// after the id `after`, at most [`MAX_PAGE`]): one page in memory at a time. Exports and the
/// quota recount walk the whole registry this way.
///
/// # Errors
/// The first error of `page` or `each`.
pub async fn each_record<R, E, P, F>(
    mut page: impl FnMut(Option<String>) -> P,
    id: impl Fn(&R) -> String,
    mut each: impl FnMut(R) -> F,
) -> Result<(), E>
where
    P: Future<Output = Result<Vec<R>, E>>,
    F: Future<Output = Result<(), E>>,
{
    let mut after: Option<String> = None;
    loop {
        let records = page(after.take()).await?;
        let Some(last) = records.last() else {
            return Ok(());
        };
        after = Some(id(last));
        for record in records {
            each(record).await?;
        }
    }
}

/// Most records one inventory page holds.
pub const MAX_PAGE: usize = 1000;

/// Which records to list; `None` fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordFilter {
    #[serde(default)]
    pub broker: Option<String>,
    #[serde(default)]
    pub platform: Option<String>,
    /// Gateway service id.
    #[serde(default)]
    pub service_id: Option<String>,
    /// Gateway plan id.
    #[serde(default)]
    pub plan_id: Option<String>,
    /// `creating`, `ready` or `orphaned`.
    #[serde(default)]
    pub state: Option<String>,
    /// The operation in flight (`provision`, `update`, `deprovision`, `bind`, `unbind`), or
    /// `none` for records without one.
    #[serde(default)]
    pub operation: Option<String>,
    /// Bindings of this instance only (ignored for instances).
    #[serde(default)]
    pub instance_id: Option<String>,
}

/// The fields of a record a filter looks at.
pub(crate) struct Facts<'a> {
    pub id: &'a str,
    pub broker: &'a str,
    pub platform: &'a str,
    pub service_id: &'a str,
    pub plan_id: &'a str,
    pub state: &'a ResourceState,
    pub operation: Option<&'a Operation>,
    pub instance_id: Option<&'a str>,
}

/// A record an inventory page can hold.
pub(crate) trait Listed: Clone {
    fn facts(&self) -> Facts<'_>;
}

impl Listed for InstanceRecord {
    fn facts(&self) -> Facts<'_> {
        Facts {
            id: &self.instance_id,
            broker: &self.broker,
            platform: &self.platform,
            service_id: &self.service_id,
            plan_id: &self.plan_id,
            state: &self.state,
            operation: self.operation.as_ref(),
            instance_id: None,
        }
    }
}

impl Listed for BindingRecord {
    fn facts(&self) -> Facts<'_> {
        Facts {
            id: &self.binding_id,
            broker: &self.broker,
            platform: &self.platform,
            service_id: &self.service_id,
            plan_id: &self.plan_id,
            state: &self.state,
            operation: self.operation.as_ref(),
            instance_id: Some(&self.instance_id),
        }
    }
}

impl RecordFilter {
    pub(crate) fn matches(&self, facts: &Facts<'_>) -> bool {
        let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        eq(&self.broker, facts.broker)
            && eq(&self.platform, facts.platform)
            && eq(&self.service_id, facts.service_id)
            && eq(&self.plan_id, facts.plan_id)
            && eq(&self.state, facts.state.name())
            && eq(
                &self.operation,
                facts.operation.map_or("none", |o| o.kind.as_str()),
            )
            && match (&self.instance_id, facts.instance_id) {
                (Some(want), Some(have)) => want == have,
                _ => true,
            }
    }
}

/// The page of `records` (any order) that `filter`, `after` and `limit` select, in id order.
pub(crate) fn page<R: Listed>(
    records: impl IntoIterator<Item = R>,
    filter: &RecordFilter,
    after: Option<&str>,
    limit: usize,
) -> Vec<R> {
    let mut selected: Vec<R> = records
        .into_iter()
        .filter(|r| {
            let facts = r.facts();
            after.is_none_or(|a| facts.id > a) && filter.matches(&facts)
        })
        .collect();
    selected.sort_by(|a, b| a.facts().id.cmp(b.facts().id));
    selected.truncate(limit.clamp(1, MAX_PAGE));
    selected
}
