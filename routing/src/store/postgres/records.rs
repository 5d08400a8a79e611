//! Reading, counting and compare-and-swapping registry records: one statement each (see the
//! store's docs for how a swap expecting a version, or no record, is enforced by the database).

use tokio_postgres::types::{Json, ToSql};

use super::batch::{Done, Row, Write};

use super::sql::{COUNTS, LIVE_PLANS, Table};
use super::{CALL_TIMEOUT, PgError, PostgresStore, int, query};
use crate::RoutingError;
use crate::store::indexed::Indexed;
use crate::store::{Expect, PlanCount, RecordCounts, RecordRef, Swap};

/// `(is a binding, id)` of an index row.
pub(super) fn record_ref(row: &tokio_postgres::Row) -> Result<RecordRef, PgError> {
    let binding: bool = row.try_get(0)?;
    let id: String = row.try_get(1)?;
    Ok(if binding {
        RecordRef::Binding(id)
    } else {
        RecordRef::Instance(id)
    })
}

/// The record in a row's first column.
fn record<R: Indexed>(row: &tokio_postgres::Row) -> Result<R, PgError> {
    row.try_get::<_, Json<R>>(0).map(|json| json.0)
}

impl PostgresStore {
    pub(super) async fn get<R: Indexed>(&self, table: &Table, id: &str) -> Result<Option<R>, RoutingError> {
        let context = "read record";
        let client = self.db.client(context).await?;
        let answer = tokio::time::timeout(CALL_TIMEOUT, async {
            let rows = query(&client, table.select, &[&id]).await?;
            rows.first().map(record::<R>).transpose()
        })
        .await;
        self.db.settle(context, client, answer, CALL_TIMEOUT)
    }

    pub(super) async fn list<R: Indexed>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<R>, RoutingError> {
        let context = "read records";
        let client = self.db.client(context).await?;
        let answer = tokio::time::timeout(CALL_TIMEOUT, async {
            let rows = query(&client, sql, params).await?;
            rows.iter().map(record::<R>).collect::<Result<Vec<R>, _>>()
        })
        .await;
        self.db.settle(context, client, answer, CALL_TIMEOUT)
    }

    /// Records per broker, counted by the database: no record crosses the wire.
    pub(super) async fn count_records(&self) -> Result<RecordCounts, RoutingError> {
        let context = "count records";
        let client = self.db.client(context).await?;
        let answer = tokio::time::timeout(CALL_TIMEOUT, async {
            let mut counts = RecordCounts::default();
            for row in query(&client, COUNTS, &[]).await? {
                let bindings: bool = row.try_get(0)?;
                let broker: Option<String> = row.try_get(1)?;
                let n: i64 = row.try_get(2)?;
                let table = if bindings {
                    &mut counts.bindings
                } else {
                    &mut counts.instances
                };
                table.insert(broker.unwrap_or_default(), u64::try_from(n).unwrap_or_default());
            }
            Ok(counts)
        })
        .await;
        self.db.settle(context, client, answer, CALL_TIMEOUT)
    }

    /// Live instances per plan, counted by the database: no record crosses the wire.
    pub(super) async fn count_live_plans(&self) -> Result<Vec<PlanCount>, RoutingError> {
        let context = "count live instances per plan";
        let client = self.db.client(context).await?;
        let answer = tokio::time::timeout(CALL_TIMEOUT, async {
            let mut counts = Vec::new();
            for row in query(&client, LIVE_PLANS, &[]).await? {
                let text = |i: usize| row.try_get::<_, Option<String>>(i).map(Option::unwrap_or_default);
                counts.push(PlanCount {
                    plan_id: text(0)?,
                    service_id: text(1)?,
                    broker: text(2)?,
                    upstream_service_id: text(3)?,
                    instances: u64::try_from(row.try_get::<_, i64>(4)?).unwrap_or_default(),
                });
            }
            counts.sort();
            Ok(counts)
        })
        .await;
        self.db.settle(context, client, answer, CALL_TIMEOUT)
    }

    pub(super) async fn refs(&self, sql: &str) -> Result<Vec<RecordRef>, RoutingError> {
        let context = "read index";
        let client = self.db.client(context).await?;
        let answer = tokio::time::timeout(CALL_TIMEOUT, async {
            let rows = query(&client, sql, &[]).await?;
            rows.iter().map(record_ref).collect::<Result<Vec<_>, _>>()
        })
        .await;
        self.db.settle(context, client, answer, CALL_TIMEOUT)
    }

    /// Compare-and-swap of one record (see the module docs).
    pub(super) async fn swap<R: Indexed>(
        &self,
        table: &'static Table,
        id: &str,
        expect: Expect,
        record: Option<R>,
    ) -> Result<Swap<R>, RoutingError> {
        let context = "write record";
        let expected = match expect {
            Expect::Absent => None,
            Expect::Version(v) => Some(
                i64::try_from(v)
                    .map_err(|_| RoutingError::Store(format!("{context}: version {v} out of range")))?,
            ),
        };
        let mut record = record;
        if let Some(record) = &mut record {
            let version = match expect {
                Expect::Absent => Some(1),
                Expect::Version(v) => v.checked_add(1),
            };
            let version =
                version.ok_or_else(|| RoutingError::Store(format!("{context}: version out of range")))?;
            record.set_version(version);
        }
        let row = match &record {
            None => None,
            Some(record) => Some(Row {
                json: Json(
                    serde_json::value::to_raw_value(record)
                        .map_err(|e| RoutingError::Store(format!("{context}: {e}")))?,
                ),
                version: int(record.version()),
                orphaned: record.is_orphaned(),
                pending: record.is_pending(),
                instance_id: record.instance_of().map(str::to_owned),
            }),
        };
        let write = Write::Record {
            table,
            id: id.to_owned(),
            expected,
            row,
        };
        Ok(match (self.writes.write(context, write).await?, record) {
            (Done::Written, Some(record)) => Swap::Written(record),
            (Done::Deleted, None) => Swap::Deleted,
            _ => Swap::Conflict,
        })
    }
}
