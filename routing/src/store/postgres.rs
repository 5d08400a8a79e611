//! The PostgreSQL store: one database shared by several gateway replicas.
//!
//! Same semantics as the embedded store (its reference), enforced by the database rather than by
//! one process:
//! - **Group commit.** Record writes and audit appends are queued and committed in batches, one
//!   pipelined transaction (one round trip) per batch (`postgres/batch.rs`).
//! - **Compare-and-swap in one statement.** A write expecting no record is an
//!   `INSERT … ON CONFLICT DO NOTHING`; a write or delete expecting version `v` is an
//!   `UPDATE`/`DELETE … WHERE id = $1 AND version = v`. No row touched means someone else changed
//!   the record first ([`Swap::Conflict`]). Row locks serialise racing writers; the loser re-checks
//!   the version on the row the winner committed, so two requests on one id never both win.
//!   Deleting an instance deletes its bindings in the same statement.
//! - **Indexes are columns.** `orphaned` and `pending` are written with the record (partial indexes
//!   make the two queues cheap to read), and an orphan carries its claim (`claimed_by` until
//!   `claimed_until`): [`Store::claim_orphans`] takes orphans with `FOR UPDATE SKIP LOCKED`, so two
//!   replicas never claim the same one.
//! - **Heartbeats** are rows of `osb_replicas`, upserted by each replica; rows silent for an hour
//!   are deleted on the way.
//!
//! PostgreSQL cannot keep the character U+0000 in `jsonb` or `text`: a record holding one (say in
//! a platform's `context`) is refused with a store error, where the embedded store keeps it.
//!
//! Inventory pages filter in SQL on the record's JSON; the audit log is `osb_audit`, numbered by a
//! sequence (`bigserial`).
//!
//! Records are stored as `jsonb` (the registry's JSON), catalogs as `bytea`. The schema is created
//! and migrated on [`PostgresStore::open`] by the migrations embedded in the binary (folder
//! `postgres/`), applied in one transaction under a PostgreSQL advisory lock so that replicas
//! starting together do not race; `osb_schema_migrations` records which ran.
//!
//! Connections come from a pool (deadpool) of at most [`POOL_SIZE`]: connecting and waiting for a
//! free connection time out after a few seconds, so a database that is down gives errors quickly
//! (the readiness probe and requests answer at once) and the pool connects again by itself when
//! the database is back; no restart needed. A call that gets no answer within [`CALL_TIMEOUT`]
//! fails and its connection is closed, never handed to the next caller.
//!
//! TLS follows libpq's URL parameters `sslmode` (disable, allow/prefer: the default, require,
//! verify-ca, verify-full), `sslrootcert`, `sslcert` and `sslkey` (see `postgres/tls.rs`); a
//! failed handshake says what failed (unknown CA, name mismatch, no TLS on the server). Error
//! messages name the server as user, host, port and database, never the password.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime, TimeoutType,
};
use osb_config::tls::SslMode;
use tokio::time::error::Elapsed;
use tokio_postgres::config::Host;
use tokio_postgres::types::{Json, ToSql};
use tokio_postgres::{Config, Row};

mod batch;
mod quota;
mod records;
mod schema;
use self::records::record_ref;
mod sql;
#[cfg(test)]
mod tests;
mod tls;

use self::batch::{Done, Write, Writes};
use self::sql::{
    BINDINGS, BINDINGS_OF, CLAIM_ORPHANS, HEARTBEAT, INSTANCES, LIST_BINDINGS, LIST_INSTANCES, LOAD_CATALOG,
    ORPHANS, PENDING, PRUNE_AUDIT, SAVE_CATALOG, SELECT_AUDIT,
};
use super::RecordFilter;
use super::{
    Created, Expect, FORGET_REPLICA_AFTER_MS, PlanCount, RecordCounts, RecordRef, Store, StoredCatalog, Swap,
};
use crate::RoutingError;
use crate::audit::{AuditQuery, AuditRecord};
use crate::error::error_chain;
use crate::record::{BindingRecord, InstanceRecord};
use crate::upstream::Validators;

/// Most connections one gateway process opens.
pub const POOL_SIZE: usize = 16;
/// Longest wait for a new connection (TCP connect and start-up), and for a free one.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait for the answer to one call of the store.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the migrations (another replica may be applying them).
const MIGRATION_TIMEOUT: Duration = Duration::from_secs(60);
/// TCP keepalives find a connection to a vanished server while it sits in the pool.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 3;

type PgError = tokio_postgres::Error;
type Params<'a> = Vec<&'a (dyn ToSql + Sync)>;

/// The PostgreSQL-backed store. Cheap to clone (the pool and the write queue are shared).
#[derive(Clone)]
pub struct PostgresStore {
    db: Connections,
    /// Record writes and audit appends, group-committed (`postgres/batch.rs`).
    writes: Writes,
}

/// The connections to the database, and how their failures read.
#[derive(Clone)]
struct Connections {
    pool: Pool,
    /// `user@host:port/database`, for error messages (no password).
    server: Arc<str>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("server", &self.db.server)
            .finish_non_exhaustive()
    }
}

/// `user@host:port/database` of a connection configuration: what an operator needs to find the
/// server, without the password.
fn describe(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|host| match host {
            Host::Tcp(name) => name.clone(),
            #[cfg(unix)]
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let hosts = if hosts.is_empty() {
        "localhost".to_owned()
    } else {
        hosts.join(",")
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("(default user)");
    let database = config.get_dbname().unwrap_or(user);
    format!("{user}@{hosts}:{port}/{database}")
}

/// Milliseconds and limits as PostgreSQL `bigint`s (saturating: far beyond any real value).
fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn uint(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

async fn query(client: &Object, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, PgError> {
    let statement = client.prepare_cached(sql).await?;
    client.query(&statement, params).await
}

async fn execute(client: &Object, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, PgError> {
    let statement = client.prepare_cached(sql).await?;
    client.execute(&statement, params).await
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`) and
    /// creates or migrates the schema.
    ///
    /// # Errors
    /// [`RoutingError::Store`] when the URL is not a PostgreSQL URL, the database cannot be reached
    /// within [`CONNECT_TIMEOUT`], or the migrations fail.
    pub async fn open(url: &str) -> Result<Self, RoutingError> {
        let (url, tls) =
            osb_config::tls::postgres_tls(url).map_err(|e| RoutingError::Store(format!("postgres: {e}")))?;
        // The parser's messages may quote the URL (and so the password): say only what is wrong.
        let mut config: Config = url.parse().map_err(|_| {
            RoutingError::Store("postgres: store.url is not a valid PostgreSQL connection URL".to_owned())
        })?;
        config
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(KEEPALIVE_IDLE)
            .keepalives_interval(KEEPALIVE_INTERVAL)
            .keepalives_retries(KEEPALIVE_RETRIES);
        config.ssl_mode(match tls.mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        });
        if config.get_application_name().is_none() {
            config.application_name("osb-gateway");
        }
        let server: Arc<str> = Arc::from(describe(&config));
        let connector =
            tls::connector(&tls).map_err(|e| RoutingError::Store(format!("postgres {server}: {e}")))?;
        let manager = Manager::from_config(
            config,
            connector,
            ManagerConfig {
                // A connection whose server went away is noticed by its connection task (the
                // socket closes), so checking `is_closed` before reuse is enough.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| RoutingError::Store(format!("postgres {server}: build the pool: {e}")))?;
        let db = Connections { pool, server };
        db.migrate().await?;
        let writes = Writes::start(db.clone());
        Ok(PostgresStore { db, writes })
    }
}

impl Connections {
    fn error(&self, context: &str, e: &(dyn std::error::Error + 'static)) -> RoutingError {
        let chain = error_chain(e);
        match tls::hint(&chain) {
            Some(hint) => RoutingError::Store(format!(
                "postgres {}: {context}: TLS: {hint} ({chain})",
                self.server
            )),
            None => RoutingError::Store(format!("postgres {}: {context}: {chain}", self.server)),
        }
    }

    /// A connection from the pool (a new one if none is idle).
    async fn client(&self, context: &str) -> Result<Object, RoutingError> {
        self.pool.get().await.map_err(|e| match e {
            PoolError::Backend(e) => self.error(&format!("{context}: connect"), &e),
            PoolError::Timeout(TimeoutType::Wait) => RoutingError::Store(format!(
                "postgres {}: {context}: no free connection within {} s ({POOL_SIZE} in use)",
                self.server,
                CONNECT_TIMEOUT.as_secs()
            )),
            PoolError::Timeout(TimeoutType::Create | TimeoutType::Recycle) => RoutingError::Store(format!(
                "postgres {}: {context}: connect: no answer within {} s",
                self.server,
                CONNECT_TIMEOUT.as_secs()
            )),
            other => self.error(context, &other),
        })
    }

    /// The answer of a call made on `client` within `timeout`. A connection that did not answer in
    /// time may be stuck (a server gone silent): it is closed rather than given back to the pool.
    fn settle<T>(
        &self,
        context: &str,
        client: Object,
        answer: Result<Result<T, PgError>, Elapsed>,
        timeout: Duration,
    ) -> Result<T, RoutingError> {
        match answer {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.error(context, &e)),
            Err(_) => {
                drop(Object::take(client));
                Err(RoutingError::Store(format!(
                    "postgres {}: {context}: no answer within {} s",
                    self.server,
                    timeout.as_secs()
                )))
            }
        }
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn instance(&self, instance_id: &str) -> Result<Option<InstanceRecord>, RoutingError> {
        self.get(&INSTANCES, instance_id).await
    }

    async fn swap_instance(
        &self,
        instance_id: &str,
        expect: Expect,
        record: Option<InstanceRecord>,
    ) -> Result<Swap<InstanceRecord>, RoutingError> {
        self.swap(&INSTANCES, instance_id, expect, record).await
    }

    async fn binding(&self, binding_id: &str) -> Result<Option<BindingRecord>, RoutingError> {
        self.get(&BINDINGS, binding_id).await
    }

    async fn create_instance(
        &self,
        record: InstanceRecord,
        limits: &[u64],
    ) -> Result<Created<InstanceRecord>, RoutingError> {
        self.create(&INSTANCES, record, limits).await
    }

    async fn create_binding(
        &self,
        record: BindingRecord,
        limits: &[u64],
    ) -> Result<Created<BindingRecord>, RoutingError> {
        self.create(&BINDINGS, record, limits).await
    }

    async fn quota_usage(&self, keys: &[String]) -> Result<Vec<u64>, RoutingError> {
        self.usage(keys).await
    }

    async fn quota_counts(&self) -> Result<BTreeMap<String, u64>, RoutingError> {
        self.all_usage().await
    }

    async fn swap_binding(
        &self,
        binding_id: &str,
        expect: Expect,
        record: Option<BindingRecord>,
    ) -> Result<Swap<BindingRecord>, RoutingError> {
        self.swap(&BINDINGS, binding_id, expect, record).await
    }

    async fn bindings_of(&self, instance_id: &str) -> Result<Vec<BindingRecord>, RoutingError> {
        self.list(BINDINGS_OF, &[&instance_id]).await
    }

    async fn instances(&self) -> Result<Vec<InstanceRecord>, RoutingError> {
        self.list(INSTANCES.select_all, &[]).await
    }

    async fn bindings(&self) -> Result<Vec<BindingRecord>, RoutingError> {
        self.list(BINDINGS.select_all, &[]).await
    }

    async fn counts(&self) -> Result<RecordCounts, RoutingError> {
        self.count_records().await
    }

    async fn live_plans(&self) -> Result<Vec<PlanCount>, RoutingError> {
        self.count_live_plans().await
    }

    async fn list_instances(
        &self,
        filter: &RecordFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<InstanceRecord>, RoutingError> {
        let limit = int(limit.clamp(1, super::MAX_PAGE) as u64);
        let f = filter;
        self.list(
            LIST_INSTANCES,
            &[
                &after,
                &f.broker,
                &f.platform,
                &f.service_id,
                &f.plan_id,
                &f.state,
                &f.operation,
                &limit,
            ],
        )
        .await
    }

    async fn list_bindings(
        &self,
        filter: &RecordFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<BindingRecord>, RoutingError> {
        let limit = int(limit.clamp(1, super::MAX_PAGE) as u64);
        let f = filter;
        self.list(
            LIST_BINDINGS,
            &[
                &after,
                &f.broker,
                &f.platform,
                &f.service_id,
                &f.plan_id,
                &f.state,
                &f.operation,
                &limit,
                &f.instance_id,
            ],
        )
        .await
    }

    async fn append_audit(&self, record: AuditRecord) -> Result<u64, RoutingError> {
        let seqs = self.append_audits(vec![record]).await?;
        seqs.first()
            .copied()
            .ok_or_else(|| RoutingError::Store("append audit record: no sequence number returned".to_owned()))
    }

    /// One write of the group commit: the records in this order, in one transaction.
    async fn append_audits(&self, records: Vec<AuditRecord>) -> Result<Vec<u64>, RoutingError> {
        let context = "append audit records";
        let count = records.len();
        if count == 0 {
            return Ok(Vec::new());
        }
        match self.writes.write(context, Write::Audit(records)).await? {
            Done::Appended(seqs) if seqs.len() == count => Ok(seqs.into_iter().map(uint).collect()),
            other => Err(RoutingError::Store(format!(
                "postgres: {context}: {count} records, answered {other:?}"
            ))),
        }
    }

    async fn prune_audit(&self, through: u64) -> Result<u64, RoutingError> {
        let context = "prune audit records";
        let through = int(through);
        let client = self.db.client(context).await?;
        let answer = tokio::time::timeout(CALL_TIMEOUT, execute(&client, PRUNE_AUDIT, &[&through])).await;
        self.db.settle(context, client, answer, CALL_TIMEOUT)
    }

    async fn audit(&self, query_: &AuditQuery) -> Result<Vec<AuditRecord>, RoutingError> {
        let context = "read audit records";
        let q = query_;
        let before = q.before.map(int);
        let since = q.since_ms.map(int);
        let after = q.after.map(int);
        let kind = q.kind.map(|k| k.as_str());
        let outcome = q.outcome.map(|o| o.as_str());
        let limit = int(q.page_size() as u64);
        let client = self.db.client(context).await?;
        let answer = tokio::time::timeout(CALL_TIMEOUT, async {
            let rows = query(
                &client,
                SELECT_AUDIT,
                &[
                    &before,
                    &q.instance_id,
                    &q.binding_id,
                    &q.operation,
                    &q.actor,
                    &kind,
                    &outcome,
                    &since,
                    &limit,
                    &after,
                ],
            )
            .await?;
            rows.iter()
                .map(|row| {
                    let seq: i64 = row.try_get(0)?;
                    let Json(record): Json<AuditRecord> = row.try_get(1)?;
                    Ok(AuditRecord {
                        seq: uint(seq),
                        ..record
                    })
                })
                .collect::<Result<Vec<_>, PgError>>()
        })
        .await;
        self.db.settle(context, client, answer, CALL_TIMEOUT)
    }

    async fn orphans(&self) -> Result<Vec<RecordRef>, RoutingError> {
        self.refs(ORPHANS).await
    }

    async fn pending(&self) -> Result<Vec<RecordRef>, RoutingError> {
        self.refs(PENDING).await
    }

    async fn claim_orphans(
        &self,
        owner: &str,
        now_ms: u64,
        until_ms: u64,
        limit: usize,
    ) -> Result<Vec<RecordRef>, RoutingError> {
        let context = "claim orphans";
        let (now, until) = (int(now_ms), int(until_ms));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let client = self.db.client(context).await?;
        let answer = tokio::time::timeout(CALL_TIMEOUT, async {
            let rows = query(&client, CLAIM_ORPHANS, &[&owner, &now, &until, &limit]).await?;
            rows.iter().map(record_ref).collect::<Result<Vec<_>, _>>()
        })
        .await;
        self.db.settle(context, client, answer, CALL_TIMEOUT)
    }

    async fn heartbeat(
        &self,
        replica: &str,
        now_ms: u64,
        since_ms: u64,
    ) -> Result<Vec<String>, RoutingError> {
        let context = "heartbeat";
        let (now, since) = (int(now_ms), int(since_ms));
        let forget_before = int(since_ms.saturating_sub(FORGET_REPLICA_AFTER_MS));
        let client = self.db.client(context).await?;
        let answer = tokio::time::timeout(CALL_TIMEOUT, async {
            let rows = query(&client, HEARTBEAT, &[&replica, &now, &since, &forget_before]).await?;
            rows.iter()
                .map(|row| row.try_get::<_, String>(0))
                .collect::<Result<Vec<_>, _>>()
        })
        .await;
        self.db.settle(context, client, answer, CALL_TIMEOUT)
    }

    async fn ping(&self) -> Result<(), RoutingError> {
        let context = "ping";
        let client = self.db.client(context).await?;
        let answer = tokio::time::timeout(CALL_TIMEOUT, client.simple_query("SELECT 1")).await;
        self.db.settle(context, client, answer, CALL_TIMEOUT).map(|_| ())
    }

    async fn load_catalog(&self, broker: &str) -> Result<Option<StoredCatalog>, RoutingError> {
        let context = "load catalog";
        let client = self.db.client(context).await?;
        let answer = tokio::time::timeout(CALL_TIMEOUT, async {
            let rows = query(&client, LOAD_CATALOG, &[&broker]).await?;
            let Some(row) = rows.first() else {
                return Ok(None);
            };
            let body: Vec<u8> = row.try_get(0)?;
            Ok(Some(StoredCatalog {
                body: Bytes::from(body),
                validators: Validators {
                    etag: row.try_get(1)?,
                    last_modified: row.try_get(2)?,
                },
                fetched_at_ms: uint(row.try_get(3)?),
            }))
        })
        .await;
        self.db.settle(context, client, answer, CALL_TIMEOUT)
    }

    async fn save_catalog(&self, broker: &str, catalog: StoredCatalog) -> Result<(), RoutingError> {
        let context = "save catalog";
        let fetched_at = int(catalog.fetched_at_ms);
        let client = self.db.client(context).await?;
        let answer = tokio::time::timeout(CALL_TIMEOUT, async {
            let body: &[u8] = &catalog.body;
            execute(
                &client,
                SAVE_CATALOG,
                &[
                    &broker,
                    &body,
                    &catalog.validators.etag,
                    &catalog.validators.last_modified,
                    &fetched_at,
                ],
            )
            .await
        })
        .await;
        self.db.settle(context, client, answer, CALL_TIMEOUT).map(|_| ())
    }
}
