//! Quota counts on PostgreSQL: creating a record within its quotas, and reading the counts.
//!
//! A count is not stored: it is the number of live records whose `record->'quotas'` lists the key,
//! answered by a GIN index (`0003_quotas.sql`). Creating a record is a write of the group commit
//! (`postgres/batch.rs`): the batch's transaction first takes a transaction-scoped advisory lock on
//! every count its creations join (all at once, in key order, so batches never wait on each other
//! in a circle), then each creation counts and inserts in one statement (`Table::create`), seeing
//! the batch's earlier creations. A batch of another replica creating in the same count waits for
//! the lock; its statements run after the first batch committed and count its records: no two
//! replicas take the last place. The transaction runs in READ COMMITTED (the server's default, and
//! what `BEGIN` gives), so each statement sees what committed before it started. Writes that only
//! lower a count (deletes, orphaning) need no lock.

use std::collections::BTreeMap;

use tokio_postgres::types::Json;

use super::batch::{Done, Row, Write};
use super::sql::{QUOTA_USAGE, Table};
use super::{CALL_TIMEOUT, PostgresStore, int, query, uint};
use crate::RoutingError;
use crate::store::indexed::Indexed;
use crate::store::{Created, Expect, Swap};

/// Every key with its live records.
const ALL: &str = "SELECT key, count(*) FROM (
    SELECT jsonb_array_elements_text(record -> 'quotas') AS key FROM osb_instances
        WHERE NOT orphaned AND record -> 'quotas' IS NOT NULL
    UNION ALL
    SELECT jsonb_array_elements_text(record -> 'quotas') FROM osb_bindings
        WHERE NOT orphaned AND record -> 'quotas' IS NOT NULL
) AS held GROUP BY key";

impl PostgresStore {
    /// Creates `record` in `table` if each of its quota counts is below its limit (see the module
    /// docs): a write of the group commit, whose batch takes its counts' locks first.
    pub(super) async fn create<R: Indexed>(
        &self,
        table: &'static Table,
        mut record: R,
        limits: &[u64],
    ) -> Result<Created<R>, RoutingError> {
        let id = record.id().to_owned();
        if record.quotas().is_empty() {
            // No count to take: a plain write.
            return Ok(match self.swap(table, &id, Expect::Absent, Some(record)).await? {
                Swap::Written(record) => Created::Written(record),
                Swap::Deleted | Swap::Conflict => Created::Conflict,
            });
        }
        let context = "create record within its quotas";
        record.set_version(1);
        let row = Row {
            json: Json(
                serde_json::value::to_raw_value(&record)
                    .map_err(|e| RoutingError::Store(format!("{context}: {e}")))?,
            ),
            version: int(record.version()),
            orphaned: record.is_orphaned(),
            pending: record.is_pending(),
            instance_id: record.instance_of().map(str::to_owned),
        };
        let write = Write::Create {
            table,
            id,
            row,
            keys: record.quotas().to_vec(),
            limits: limits.iter().map(|l| int(*l)).collect(),
        };
        Ok(match self.writes.write(context, write).await? {
            Done::Written => Created::Written(record),
            Done::Full { key, usage, limit } => Created::Full { key, usage, limit },
            _ => Created::Conflict,
        })
    }

    /// The live records of each key, in order.
    pub(super) async fn usage(&self, keys: &[String]) -> Result<Vec<u64>, RoutingError> {
        let context = "count quota usage";
        let client = self.db.client(context).await?;
        let answer = tokio::time::timeout(CALL_TIMEOUT, async {
            let mut counts = Vec::with_capacity(keys.len());
            for key in keys {
                let rows = query(&client, QUOTA_USAGE, &[key]).await?;
                let n: i64 = match rows.first() {
                    Some(row) => row.try_get(0)?,
                    None => 0,
                };
                counts.push(uint(n));
            }
            Ok(counts)
        })
        .await;
        self.db.settle(context, client, answer, CALL_TIMEOUT)
    }

    /// Every key with live records.
    pub(super) async fn all_usage(&self) -> Result<BTreeMap<String, u64>, RoutingError> {
        let context = "count quota usage";
        let client = self.db.client(context).await?;
        let answer = tokio::time::timeout(CALL_TIMEOUT, async {
            let mut counts = BTreeMap::new();
            for row in query(&client, ALL, &[]).await? {
                counts.insert(row.try_get::<_, String>(0)?, uint(row.try_get::<_, i64>(1)?));
            }
            Ok(counts)
        })
        .await;
        self.db.settle(context, client, answer, CALL_TIMEOUT)
    }
}
