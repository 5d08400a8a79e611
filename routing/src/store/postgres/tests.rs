//! The PostgreSQL store's group commit: writes that wait together commit together, each keeps
//! its own answer, and a write the server refuses fails alone.

use std::sync::Arc;

use serde_json::json;

use super::PostgresStore;
use crate::RoutingError;
use crate::audit::AuditRecord;
use crate::record::ResourceState;
use crate::store::testing::{Backend, TestStore};
use crate::store::tests::{audit_record, instance};
use crate::store::{Expect, Store, Swap};

fn audit(n: u64) -> AuditRecord {
    audit_record("provision", Some(&format!("i{n}")), n)
}

/// 200 writers and 20 audit appenders at once, one writer with a record PostgreSQL refuses
/// (U+0000): every other write is acknowledged and kept, in far fewer transactions than writes;
/// the refused one gets a store error and leaves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_waiting_together_commit_together() {
    let place = TestStore::new(Backend::Postgres).await;
    let store = Arc::new(PostgresStore::open(place.url().unwrap()).await.unwrap());
    let before = store.writes.commits();
    let mut writers = tokio::task::JoinSet::new();
    for n in 0..200u64 {
        let store = store.clone();
        writers.spawn(async move {
            let id = format!("i{n}");
            let mut record = instance(&id, ResourceState::Ready, None);
            if n == 100 {
                record.context = Some(json!({"note": "a\u{0}b"}));
            }
            (n, store.swap_instance(&id, Expect::Absent, Some(record)).await)
        });
    }
    let mut appenders = tokio::task::JoinSet::new();
    for n in 0..20u64 {
        let store = store.clone();
        appenders.spawn(async move { store.append_audits(vec![audit(n), audit(n + 100)]).await });
    }
    while let Some(joined) = writers.join_next().await {
        let (n, answer) = joined.unwrap();
        match (n, answer) {
            (100, Err(RoutingError::Store(message))) => assert!(message.contains("postgres"), "{message}"),
            (100, other) => panic!("the refused record answered {other:?}"),
            (_, Ok(Swap::Written(record))) => assert_eq!(record.version, 1),
            (n, other) => panic!("write {n} answered {other:?}"),
        }
    }
    let mut seqs = Vec::new();
    while let Some(joined) = appenders.join_next().await {
        let pair = joined.unwrap().unwrap();
        assert_eq!(pair.len(), 2);
        assert!(pair[0] < pair[1], "a call's records keep their order: {pair:?}");
        seqs.extend(pair);
    }
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(
        seqs.len(),
        40,
        "every audit record has a sequence number of its own"
    );

    let counts = store.counts().await.unwrap();
    assert_eq!(counts.instances.values().sum::<u64>(), 199);
    assert_eq!(store.instance("i100").await.unwrap(), None);
    assert_eq!(store.instance("i199").await.unwrap().unwrap().version, 1);
    let commits = store.writes.commits() - before;
    assert!(commits < 200, "220 writes in {commits} transactions");
}

/// Writes to one id in one batch see each other: a create, then updates expecting each version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_to_one_id_keep_their_compare_and_swap() {
    let place = TestStore::new(Backend::Postgres).await;
    let store = Arc::new(PostgresStore::open(place.url().unwrap()).await.unwrap());
    let mut racers = tokio::task::JoinSet::new();
    for version in 0..32u64 {
        let store = store.clone();
        racers.spawn(async move {
            let expect = if version == 0 {
                Expect::Absent
            } else {
                Expect::Version(version)
            };
            loop {
                let record = instance("same", ResourceState::Ready, None);
                match store.swap_instance("same", expect, Some(record)).await.unwrap() {
                    Swap::Written(record) => return record.version,
                    Swap::Conflict => tokio::task::yield_now().await,
                    Swap::Deleted => panic!("nothing deleted"),
                }
            }
        });
    }
    let mut versions = Vec::new();
    while let Some(joined) = racers.join_next().await {
        versions.push(joined.unwrap());
    }
    versions.sort_unstable();
    assert_eq!(
        versions,
        (1..=32).collect::<Vec<_>>(),
        "each version written exactly once"
    );
    assert_eq!(store.instance("same").await.unwrap().unwrap().version, 32);
}

/// A write that waits on a row another transaction holds gives up after the lock timeout, with a
/// store error, and holds up no other write (another writer task takes the next batch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_blocked_on_a_locked_row_fails_alone() {
    let place = TestStore::new(Backend::Postgres).await;
    let url = place.url().unwrap();
    let store = Arc::new(PostgresStore::open(url).await.unwrap());
    let locked = store
        .swap_instance(
            "locked",
            Expect::Absent,
            Some(instance("locked", ResourceState::Ready, None)),
        )
        .await
        .unwrap();
    assert!(matches!(locked, Swap::Written(_)));
    // Another session holds the row.
    let holder = crate::store::testing::admin(url).await.unwrap();
    holder
        .batch_execute("BEGIN; SELECT * FROM osb_instances WHERE id = 'locked' FOR UPDATE")
        .await
        .unwrap();
    let blocked = {
        let store = store.clone();
        tokio::spawn(async move {
            let record = instance("locked", ResourceState::Ready, None);
            store
                .swap_instance("locked", Expect::Version(1), Some(record))
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let free = store
        .swap_instance(
            "free",
            Expect::Absent,
            Some(instance("free", ResourceState::Ready, None)),
        )
        .await;
    assert!(matches!(free, Ok(Swap::Written(_))), "{free:?}");
    match blocked.await.unwrap() {
        Err(RoutingError::Store(message)) => assert!(message.contains("lock"), "{message}"),
        other => panic!("the blocked write answered {other:?}"),
    }
    holder.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(store.instance("locked").await.unwrap().unwrap().version, 1);
}

/// Writes of one batch lock rows in one order: instances, then bindings, each by id; writes to one
/// id keep the order they came in.
#[test]
fn a_batch_locks_rows_in_one_order() {
    use super::batch::{Row, Write};
    use super::sql::{BINDINGS, INSTANCES};
    let record = |table, id: &str, version| Write::Record {
        table,
        id: id.to_owned(),
        expected: Some(version),
        row: None::<Row>,
    };
    let mut writes = [
        record(&BINDINGS, "b", 1),
        Write::Audit(Vec::new()),
        record(&INSTANCES, "z", 1),
        record(&INSTANCES, "a", 2),
        record(&INSTANCES, "a", 1),
    ];
    writes.sort_by(|a, b| a.lock_order().cmp(&b.lock_order()));
    let order: Vec<String> = writes
        .iter()
        .map(|write| match write {
            Write::Record {
                table, id, expected, ..
            } => {
                format!("{}{id}{}", table.lock_rank, expected.unwrap_or_default())
            }
            Write::Audit(_) => "audit".to_owned(),
            Write::Create { .. } => "create".to_owned(),
        })
        .collect();
    assert_eq!(order, ["0a2", "0a1", "0z1", "1b1", "audit"]);
}
