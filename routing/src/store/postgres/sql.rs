//! The PostgreSQL store's SQL: the embedded migrations and every statement the store runs, one
//! [`Table`] of statements per record table. The schema itself is in the numbered `.sql` files
//! beside this one.

/// The schema, in order. A migration never changes once released: add a new one.
pub(super) const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("0001_registry.sql")),
    (2, include_str!("0002_audit.sql")),
    (3, include_str!("0003_quotas.sql")),
];

/// Key of the advisory lock the migrations run under ("osb-gw" + 1).
pub(super) const MIGRATION_LOCK: i64 = 0x6f73_622d_6777_0001;

pub(super) const CREATE_MIGRATIONS: &str = "CREATE TABLE IF NOT EXISTS osb_schema_migrations (
    version    bigint PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)";

/// The statements of one record table.
pub(super) struct Table {
    /// Where its rows come in the order a batch locks rows (instances first: deleting one locks
    /// its bindings too).
    pub(super) lock_rank: u8,
    pub(super) select: &'static str,
    pub(super) select_all: &'static str,
    /// $1 id, $2 record, $3 version, $4 orphaned, $5 pending [, $6 instance id].
    pub(super) insert: &'static str,
    /// $1 id, $2 record, $3 new version, $4 orphaned, $5 pending, $6 expected version
    /// [, $7 instance id]. A record that stops being an orphan loses its claim.
    pub(super) update: &'static str,
    /// $1 id, $2 expected version; returns the deleted id.
    pub(super) delete: &'static str,
    /// $1 id; a delete expecting no record: `true` when there is none.
    pub(super) delete_absent: &'static str,
    /// A new record within its quota counts: as `insert`, then the counts' keys and limits (two
    /// arrays). Answers (written 0/1, the id existed, and the first full count's key, usage and
    /// limit, if any); see `postgres/quota.rs`.
    pub(super) create: &'static str,
}

/// The live records (instances and bindings, not orphaned) of the quota count `$key`: what a
/// count is, the one definition the creations and the usage reads share (`0003_quotas.sql` indexes
/// it).
macro_rules! live_in_count {
    ($key:literal) => {
        concat!(
            "(SELECT count(*) FROM osb_instances
                 WHERE NOT orphaned AND record -> 'quotas' @> jsonb_build_array(",
            $key,
            "))
           + (SELECT count(*) FROM osb_bindings
                 WHERE NOT orphaned AND record -> 'quotas' @> jsonb_build_array(",
            $key,
            "))"
        )
    };
}

/// $1 key: its live records.
pub(super) const QUOTA_USAGE: &str = concat!("SELECT ", live_in_count!("$1::text"));

/// The part of a creation that counts: `$K` keys and `$L` limits, in the quota's order; the first
/// count at its limit, if any.
macro_rules! full_count {
    ($keys:literal, $limits:literal) => {
        concat!(
            "WITH counts AS (
                 SELECT q.key, q.lim, q.n, ",
            live_in_count!("q.key"),
            " AS used
                 FROM unnest(",
            $keys,
            "::text[], ",
            $limits,
            "::bigint[]) WITH ORDINALITY AS q(key, lim, n)
             ), full_count AS (
                 SELECT key, used, lim FROM counts WHERE used >= lim ORDER BY n LIMIT 1
             )"
        )
    };
}

/// The answer of a creation, after its `written` and `existing` parts.
macro_rules! created {
    () => {
        "SELECT (SELECT count(*) FROM written), EXISTS (SELECT 1 FROM existing), f.key, f.used, f.lim
             FROM (SELECT 1) AS one LEFT JOIN full_count AS f ON true"
    };
}

/// $1 keys: the transaction-scoped advisory locks of quota counts, taken in key order (each batch
/// takes all its counts' locks first, so batches never wait for each other in a circle).
pub(super) const LOCK_COUNTS: &str = "SELECT pg_advisory_xact_lock(hashtextextended(k, 0))
    FROM (SELECT DISTINCT k FROM unnest($1::text[]) AS k ORDER BY k) AS keys";

pub(super) const INSTANCES: Table = Table {
    lock_rank: 0,
    select: "SELECT record FROM osb_instances WHERE id = $1",
    select_all: "SELECT record FROM osb_instances ORDER BY id",
    insert: "INSERT INTO osb_instances (id, record, version, orphaned, pending)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
    update: "UPDATE osb_instances
             SET record = $2, version = $3, orphaned = $4, pending = $5,
                 claimed_until = CASE WHEN $4 THEN claimed_until ELSE 0 END,
                 claimed_by = CASE WHEN $4 THEN claimed_by END
             WHERE id = $1 AND version = $6",
    // The instance's bindings go with it, in the same statement (one transaction).
    delete: "WITH gone AS (
                 DELETE FROM osb_instances WHERE id = $1 AND version = $2 RETURNING id
             ), cascade AS (
                 DELETE FROM osb_bindings WHERE instance_id IN (SELECT id FROM gone)
             )
             SELECT id FROM gone",
    delete_absent: "WITH cascade AS (
                        DELETE FROM osb_bindings WHERE instance_id = $1
                        AND NOT EXISTS (SELECT 1 FROM osb_instances WHERE id = $1)
                    )
                    SELECT NOT EXISTS (SELECT 1 FROM osb_instances WHERE id = $1)",
    create: concat!(
        full_count!("$6", "$7"),
        ", existing AS (SELECT 1 FROM osb_instances WHERE id = $1),
         written AS (
             INSERT INTO osb_instances (id, record, version, orphaned, pending)
             SELECT $1, $2::jsonb, $3::bigint, $4::boolean, $5::boolean
             WHERE NOT EXISTS (SELECT 1 FROM full_count) AND NOT EXISTS (SELECT 1 FROM existing)
             ON CONFLICT (id) DO NOTHING RETURNING 1
         ) ",
        created!()
    ),
};

pub(super) const BINDINGS: Table = Table {
    lock_rank: 1,
    select: "SELECT record FROM osb_bindings WHERE id = $1",
    select_all: "SELECT record FROM osb_bindings ORDER BY id",
    insert: "INSERT INTO osb_bindings (id, record, version, orphaned, pending, instance_id)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
    update: "UPDATE osb_bindings
             SET record = $2, version = $3, orphaned = $4, pending = $5, instance_id = $7,
                 claimed_until = CASE WHEN $4 THEN claimed_until ELSE 0 END,
                 claimed_by = CASE WHEN $4 THEN claimed_by END
             WHERE id = $1 AND version = $6",
    delete: "DELETE FROM osb_bindings WHERE id = $1 AND version = $2 RETURNING id",
    delete_absent: "SELECT NOT EXISTS (SELECT 1 FROM osb_bindings WHERE id = $1)",
    create: concat!(
        full_count!("$7", "$8"),
        ", existing AS (SELECT 1 FROM osb_bindings WHERE id = $1),
         written AS (
             INSERT INTO osb_bindings (id, record, version, orphaned, pending, instance_id)
             SELECT $1, $2::jsonb, $3::bigint, $4::boolean, $5::boolean, $6
             WHERE NOT EXISTS (SELECT 1 FROM full_count) AND NOT EXISTS (SELECT 1 FROM existing)
             ON CONFLICT (id) DO NOTHING RETURNING 1
         ) ",
        created!()
    ),
};

pub(super) const BINDINGS_OF: &str = "SELECT record FROM osb_bindings WHERE instance_id = $1 ORDER BY id";

/// Records per broker: (is a binding, broker, count).
pub(super) const COUNTS: &str = "SELECT true, record->>'broker', count(*) FROM osb_bindings GROUP BY 2
                       UNION ALL SELECT false, record->>'broker', count(*) FROM osb_instances GROUP BY 2";

/// Live instances per (plan, service, broker, upstream service), counted by the database.
pub(super) const LIVE_PLANS: &str = "SELECT record->>'plan_id', record->>'service_id', record->>'broker',
                              record->>'upstream_service_id', count(*)
                       FROM osb_instances WHERE NOT orphaned GROUP BY 1, 2, 3, 4";

/// Bindings first, then instances (as the embedded store's index sorts them).
pub(super) const ORPHANS: &str = "SELECT true, id FROM osb_bindings WHERE orphaned
                       UNION ALL SELECT false, id FROM osb_instances WHERE orphaned
                       ORDER BY 1 DESC, 2";
pub(super) const PENDING: &str = "SELECT true, id FROM osb_bindings WHERE pending
                       UNION ALL SELECT false, id FROM osb_instances WHERE pending
                       ORDER BY 1 DESC, 2";

/// $1 owner, $2 now, $3 until, $4 limit. Claims orphans nobody else holds (never claimed, claimed
/// by `owner` itself, or claimed until before now): bindings first, then instances up to the
/// limit; in each, the owner's own claims first (renewed, so it never holds orphans it was not
/// just given), then the least recently claimed. `SKIP LOCKED` passes over rows another replica is
/// claiming (or writing) right now; a row it claimed and committed no longer matches when
/// re-checked.
pub(super) const CLAIM_ORPHANS: &str = "WITH b AS (
    UPDATE osb_bindings SET claimed_by = $1, claimed_until = $3
    WHERE id IN (
        SELECT id FROM osb_bindings
        WHERE orphaned AND (claimed_by IS NULL OR claimed_by = $1 OR claimed_until < $2)
        ORDER BY claimed_by IS DISTINCT FROM $1, claimed_until, id
        LIMIT $4
        FOR UPDATE SKIP LOCKED)
    RETURNING id
), i AS (
    UPDATE osb_instances SET claimed_by = $1, claimed_until = $3
    WHERE id IN (
        SELECT id FROM osb_instances
        WHERE orphaned AND (claimed_by IS NULL OR claimed_by = $1 OR claimed_until < $2)
        ORDER BY claimed_by IS DISTINCT FROM $1, claimed_until, id
        LIMIT $4 - (SELECT count(*) FROM b)
        FOR UPDATE SKIP LOCKED)
    RETURNING id
)
SELECT true, id FROM b UNION ALL SELECT false, id FROM i ORDER BY 1 DESC, 2";

/// $1 replica, $2 now, $3 since, $4 forget before: records the heartbeat, forgets replicas silent
/// for long (skipping rows another heartbeat holds: no waits, no deadlocks), and lists those seen
/// since `since` (the caller included).
pub(super) const HEARTBEAT: &str = "WITH seen AS (
    INSERT INTO osb_replicas (id, last_seen_ms) VALUES ($1, $2)
    ON CONFLICT (id) DO UPDATE
    SET last_seen_ms = GREATEST(osb_replicas.last_seen_ms, EXCLUDED.last_seen_ms)
    RETURNING id
), forgotten AS (
    DELETE FROM osb_replicas WHERE id IN (
        SELECT id FROM osb_replicas WHERE last_seen_ms < $4 AND id <> $1 FOR UPDATE SKIP LOCKED)
)
SELECT id FROM seen UNION SELECT id FROM osb_replicas WHERE last_seen_ms >= $3 ORDER BY 1";

/// $1 after (id), $2 broker, $3 platform, $4 service id, $5 plan id, $6 state, $7 operation,
/// $8 limit. As `inventory::page`: every given filter matches, in id order.
pub(super) const LIST_INSTANCES: &str = "SELECT record FROM osb_instances
    WHERE ($1::text IS NULL OR id > $1)
      AND ($2::text IS NULL OR record->>'broker' = $2)
      AND ($3::text IS NULL OR record->>'platform' = $3)
      AND ($4::text IS NULL OR record->>'service_id' = $4)
      AND ($5::text IS NULL OR record->>'plan_id' = $5)
      AND ($6::text IS NULL OR (CASE WHEN jsonb_typeof(record->'state') = 'string'
                                     THEN record->>'state' ELSE 'orphaned' END) = $6)
      AND ($7::text IS NULL OR COALESCE(record->'operation'->>'kind', 'none') = $7)
    ORDER BY id LIMIT $8";
/// As [`LIST_INSTANCES`], and $9 instance id.
pub(super) const LIST_BINDINGS: &str = "SELECT record FROM osb_bindings
    WHERE ($1::text IS NULL OR id > $1)
      AND ($2::text IS NULL OR record->>'broker' = $2)
      AND ($3::text IS NULL OR record->>'platform' = $3)
      AND ($4::text IS NULL OR record->>'service_id' = $4)
      AND ($5::text IS NULL OR record->>'plan_id' = $5)
      AND ($6::text IS NULL OR (CASE WHEN jsonb_typeof(record->'state') = 'string'
                                     THEN record->>'state' ELSE 'orphaned' END) = $6)
      AND ($7::text IS NULL OR COALESCE(record->'operation'->>'kind', 'none') = $7)
      AND ($9::text IS NULL OR instance_id = $9)
    ORDER BY id LIMIT $8";

pub(super) const APPEND_AUDIT: &str = "INSERT INTO osb_audit
    (at_ms, kind, actor, operation, outcome, instance_id, binding_id, record)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING seq";
pub(super) const PRUNE_AUDIT: &str = "DELETE FROM osb_audit WHERE seq <= $1";
/// $1 before, $2 instance, $3 binding, $4 operation, $5 actor, $6 kind, $7 outcome, $8 since,
/// $9 limit, $10 after: newest first.
pub(super) const SELECT_AUDIT: &str = "SELECT seq, record FROM osb_audit
    WHERE ($1::bigint IS NULL OR seq < $1)
      AND ($2::text IS NULL OR instance_id = $2)
      AND ($3::text IS NULL OR binding_id = $3)
      AND ($4::text IS NULL OR operation = $4)
      AND ($5::text IS NULL OR actor = $5)
      AND ($6::text IS NULL OR kind = $6)
      AND ($7::text IS NULL OR outcome = $7)
      AND ($8::bigint IS NULL OR at_ms >= $8)
      AND ($10::bigint IS NULL OR seq > $10)
    ORDER BY seq DESC LIMIT $9";

pub(super) const LOAD_CATALOG: &str =
    "SELECT body, etag, last_modified, fetched_at_ms FROM osb_catalogs WHERE broker = $1";
pub(super) const SAVE_CATALOG: &str =
    "INSERT INTO osb_catalogs (broker, body, etag, last_modified, fetched_at_ms)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (broker) DO UPDATE
    SET body = EXCLUDED.body, etag = EXCLUDED.etag, last_modified = EXCLUDED.last_modified,
        fetched_at_ms = EXCLUDED.fetched_at_ms";
