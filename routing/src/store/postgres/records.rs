//! Reading, counting and compare-and-swapping registry records: one statement each (see the
//! store's docs for how a swap expecting a version, or no record, is enforced by the database).

use tokio_postgres::types::{Json, ToSql};

use super::batch::{Done, Row, Write};

use super::sql::{COUNTS, Table};
use super::{CALL_TIMEOUT, PostgresStore, int, query, record, record_ref};
use crate::RoutingError;
use crate::store::indexed::Indexed;
use crate::store::{Expect, RecordCounts, RecordRef, Swap};

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
