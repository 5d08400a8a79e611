//! Quota counts on PostgreSQL: creating a record within its quotas, and reading the counts.
//!
//! A count is not stored: it is the number of live records whose `record->'quotas'` lists the key,
//! answered by a GIN index (`0003_quotas.sql`). Creating a record is one transaction that takes a
//! transaction-scoped advisory lock on each of its keys (in key order, so two creations never wait
//! on each other crosswise), counts, and inserts. A second replica creating in the same count waits
//! for the lock, and its count, read after the first one committed, includes the first record: no
//! two replicas take the last place. Writes that only lower a count (deletes, orphaning) need no
//! lock.

use std::collections::BTreeMap;

use tokio_postgres::IsolationLevel;
use tokio_postgres::types::Json;

use super::sql::Table;
use super::{CALL_TIMEOUT, PostgresStore, int, query, uint};
use crate::RoutingError;
use crate::store::indexed::Indexed;
use crate::store::{Created, Expect, Swap};

/// $1 key: live instances and bindings counted in it.
const USAGE: &str = "SELECT
    (SELECT count(*) FROM osb_instances
        WHERE NOT orphaned AND record -> 'quotas' @> jsonb_build_array($1::text))
  + (SELECT count(*) FROM osb_bindings
        WHERE NOT orphaned AND record -> 'quotas' @> jsonb_build_array($1::text))";

/// Every key with its live records.
const ALL: &str = "SELECT key, count(*) FROM (
    SELECT jsonb_array_elements_text(record -> 'quotas') AS key FROM osb_instances
        WHERE NOT orphaned AND record -> 'quotas' IS NOT NULL
    UNION ALL
    SELECT jsonb_array_elements_text(record -> 'quotas') FROM osb_bindings
        WHERE NOT orphaned AND record -> 'quotas' IS NOT NULL
) AS held GROUP BY key";

/// $1 key: waits until no other transaction creates a record in that count.
const LOCK: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))";

/// How long a creation waits for a count's lock before failing (a store error, nothing written).
const LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '5s'";

impl PostgresStore {
    /// Creates `record` in `table` if each of its quota counts is below its limit (see the module
    /// docs).
    pub(super) async fn create<R: Indexed>(
        &self,
        table: &'static Table,
        mut record: R,
        limits: &[u64],
    ) -> Result<Created<R>, RoutingError> {
        if record.quotas().is_empty() {
            // No count to take: the group-committed write.
            let id = record.id().to_owned();
            return Ok(match self.swap(table, &id, Expect::Absent, Some(record)).await? {
                Swap::Written(record) => Created::Written(record),
                Swap::Deleted | Swap::Conflict => Created::Conflict,
            });
        }
        let context = "create record within its quotas";
        record.set_version(1);
        let json = serde_json::value::to_raw_value(&record)
            .map_err(|e| RoutingError::Store(format!("{context}: {e}")))?;
        let mut keys: Vec<&String> = record.quotas().iter().collect();
        keys.sort();
        keys.dedup();
        let mut client = self.db.client(context).await?;
        let answer = tokio::time::timeout(CALL_TIMEOUT, async {
            // READ COMMITTED whatever the server's default: each count must see what the
            // transactions that held the lock before committed.
            let txn = client
                .build_transaction()
                .isolation_level(IsolationLevel::ReadCommitted)
                .start()
                .await?;
            // A count's lock is held for a few statements; waiting longer means a stuck holder.
            txn.batch_execute(LOCK_TIMEOUT).await?;
            for key in &keys {
                txn.execute(LOCK, &[key]).await?;
            }
            // An id that exists is a conflict (a retry, another platform's), not a place taken.
            if !txn.query(table.select, &[&record.id()]).await?.is_empty() {
                txn.rollback().await?;
                return Ok(Created::Conflict);
            }
            for (key, limit) in record.quotas().iter().zip(limits) {
                let usage: i64 = txn.query_one(USAGE, &[key]).await?.try_get(0)?;
                if uint(usage) >= *limit {
                    txn.rollback().await?;
                    return Ok(Created::Full {
                        key: key.clone(),
                        usage: uint(usage),
                        limit: *limit,
                    });
                }
            }
            let (id, version) = (record.id(), int(record.version()));
            let (orphaned, pending) = (record.is_orphaned(), record.is_pending());
            let json = Json(&json);
            let inserted = match record.instance_of() {
                None => {
                    txn.execute(table.insert, &[&id, &json, &version, &orphaned, &pending])
                        .await?
                }
                Some(instance_id) => {
                    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
                        [&id, &json, &version, &orphaned, &pending, &instance_id];
                    txn.execute(table.insert, &params).await?
                }
            };
            txn.commit().await?;
            Ok(if inserted == 1 {
                Created::Written(())
            } else {
                Created::Conflict
            })
        })
        .await;
        Ok(match self.db.settle(context, client, answer, CALL_TIMEOUT)? {
            Created::Written(()) => Created::Written(record),
            Created::Conflict => Created::Conflict,
            Created::Full { key, usage, limit } => Created::Full { key, usage, limit },
        })
    }

    /// The live records of each key, in order.
    pub(super) async fn usage(&self, keys: &[String]) -> Result<Vec<u64>, RoutingError> {
        let context = "count quota usage";
        let client = self.db.client(context).await?;
        let answer = tokio::time::timeout(CALL_TIMEOUT, async {
            let mut counts = Vec::with_capacity(keys.len());
            for key in keys {
                let rows = query(&client, USAGE, &[key]).await?;
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
