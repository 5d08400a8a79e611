//! The store's contract, checked against every backend with the same test bodies (see
//! [`both_backends!`](super::testing::both_backends)), then what only PostgreSQL has (several
//! replicas, connection failures, the schema).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;

use super::testing::{Backend, TestDatabase, TestStore, admin, both_backends};
use super::{
    Created, Expect, PostgresStore, RecordCounts, RecordFilter, RecordRef, Store, StoredCatalog, Swap,
};
use crate::RoutingError;
use crate::audit::{AuditKind, AuditOutcome, AuditQuery, AuditRecord};
use crate::registry::{
    BindingRecord, InstanceRecord, Mitigation, Operation, OperationKind, Phase, ResourceState,
};
use crate::upstream::Validators;

both_backends!(
    instances_are_compare_and_swapped,
    bindings_are_compare_and_swapped,
    racing_writers_have_one_winner,
    deleting_an_instance_deletes_its_bindings,
    indexes_follow_the_records,
    claims_are_exclusive_renewable_and_expire,
    concurrent_claims_never_share_an_orphan,
    heartbeats_list_the_living,
    catalogs_round_trip,
    reopening_keeps_everything,
    audit_records_are_numbered_and_read_newest_first,
    audit_records_are_pruned_oldest_first,
    inventory_pages_filter_in_id_order,
    counts_follow_the_records_and_survive_a_reopen,
    live_plans_count_live_instances_per_plan,
    quotas_are_counted_with_the_write_and_only_one_takes_the_last_place,
);

// === records (also used by the embedded store's own tests) ===

pub(crate) fn orphaned(reason: &str) -> ResourceState {
    ResourceState::Orphaned(Mitigation {
        reason: reason.into(),
        attempts: 1,
        next_attempt_ms: 7,
        operation: None,
        last_error: Some("500".into()),
        settle_until_ms: 0,
    })
}

pub(crate) fn operation(kind: OperationKind, phase: Phase) -> Option<Operation> {
    Some(Operation {
        kind,
        phase,
        upstream_operation: Some("op 1".into()),
        plan_change: None,
        fingerprint: "f".into(),
        started_ms: 5,
        replica: Some("r1".into()),
    })
}

pub(crate) fn instance(id: &str, state: ResourceState, operation: Option<Operation>) -> InstanceRecord {
    InstanceRecord {
        instance_id: id.into(),
        platform: "k8s".into(),
        broker: "aws".into(),
        service_id: "gs".into(),
        plan_id: "gp".into(),
        upstream_service_id: "us".into(),
        upstream_plan_id: "up".into(),
        fingerprint: "f".into(),
        context: Some(json!({"namespace": "n1", "labels": {"b": 2, "a": [1, "x", null]}, "big": u64::MAX})),
        state,
        operation,
        created_ms: 1,
        updated_ms: 2,
        version: 0,
        quotas: Vec::new(),
    }
}

pub(crate) fn binding(
    id: &str,
    instance_id: &str,
    state: ResourceState,
    operation: Option<Operation>,
) -> BindingRecord {
    BindingRecord {
        binding_id: id.into(),
        instance_id: instance_id.into(),
        platform: "k8s".into(),
        broker: "aws".into(),
        service_id: "gs".into(),
        plan_id: "gp".into(),
        upstream_service_id: "us".into(),
        upstream_plan_id: "up".into(),
        fingerprint: "f".into(),
        state,
        operation,
        created_ms: 1,
        updated_ms: 2,
        version: 0,
        quotas: Vec::new(),
    }
}

async fn put_instance(store: &dyn Store, record: InstanceRecord) -> InstanceRecord {
    let id = record.instance_id.clone();
    match store
        .swap_instance(&id, Expect::Absent, Some(record))
        .await
        .unwrap()
    {
        Swap::Written(record) => record,
        other => panic!("insert {id}: {other:?}"),
    }
}

async fn put_binding(store: &dyn Store, record: BindingRecord) -> BindingRecord {
    let id = record.binding_id.clone();
    match store
        .swap_binding(&id, Expect::Absent, Some(record))
        .await
        .unwrap()
    {
        Swap::Written(record) => record,
        other => panic!("insert {id}: {other:?}"),
    }
}

fn inst(id: &str) -> RecordRef {
    RecordRef::Instance(id.into())
}

fn bind(id: &str) -> RecordRef {
    RecordRef::Binding(id.into())
}

fn ids<R>(records: &[R], id: impl Fn(&R) -> &str) -> Vec<String> {
    let mut ids: Vec<String> = records.iter().map(|r| id(r).to_owned()).collect();
    ids.sort();
    ids
}

// === the contract, on both backends ===

async fn instances_are_compare_and_swapped(backend: Backend) {
    let place = TestStore::new(backend).await;
    let store = place.open().await;
    let record = instance("i1", ResourceState::Creating, None);
    assert_eq!(store.instance("i1").await.unwrap(), None);

    // Absent: a new record is version 1, as returned and as stored.
    let written = put_instance(&*store, record.clone()).await;
    assert_eq!(
        written,
        InstanceRecord {
            version: 1,
            ..record.clone()
        }
    );
    assert_eq!(store.instance("i1").await.unwrap(), Some(written.clone()));
    let again = store
        .swap_instance("i1", Expect::Absent, Some(record.clone()))
        .await
        .unwrap();
    assert_eq!(again, Swap::Conflict, "absent, but it exists");

    // Version: old + 1 on a match, whatever version the caller's record carries.
    let ready = InstanceRecord {
        state: ResourceState::Ready,
        version: 42,
        ..written.clone()
    };
    let swapped = store
        .swap_instance("i1", Expect::Version(1), Some(ready.clone()))
        .await
        .unwrap();
    let v2 = InstanceRecord {
        version: 2,
        ..ready.clone()
    };
    assert_eq!(swapped, Swap::Written(v2.clone()));
    assert_eq!(store.instance("i1").await.unwrap(), Some(v2.clone()));
    for stale in [0, 1, 3, 42] {
        let outcome = store
            .swap_instance("i1", Expect::Version(stale), Some(ready.clone()))
            .await
            .unwrap();
        assert_eq!(outcome, Swap::Conflict, "version {stale}");
    }
    let missing = store
        .swap_instance("nope", Expect::Version(1), Some(ready.clone()))
        .await
        .unwrap();
    assert_eq!(
        missing,
        Swap::Conflict,
        "a version of a record that does not exist"
    );
    assert_eq!(store.instance("nope").await.unwrap(), None);

    // Deletes are compare-and-swapped too.
    assert_eq!(
        store.swap_instance("i1", Expect::Version(1), None).await.unwrap(),
        Swap::Conflict
    );
    assert_eq!(
        store.swap_instance("i1", Expect::Absent, None).await.unwrap(),
        Swap::Conflict
    );
    assert_eq!(store.instance("i1").await.unwrap(), Some(v2));
    assert_eq!(
        store.swap_instance("i1", Expect::Version(2), None).await.unwrap(),
        Swap::Deleted
    );
    assert_eq!(store.instance("i1").await.unwrap(), None);
    assert_eq!(
        store.swap_instance("i1", Expect::Version(2), None).await.unwrap(),
        Swap::Conflict,
        "deleted already"
    );
    assert_eq!(
        store.swap_instance("i1", Expect::Absent, None).await.unwrap(),
        Swap::Deleted,
        "absent and expected absent"
    );

    // A new life starts at version 1 again.
    assert_eq!(put_instance(&*store, record).await.version, 1);
    assert_eq!(ids(&store.instances().await.unwrap(), |r| &r.instance_id), ["i1"]);
}

async fn bindings_are_compare_and_swapped(backend: Backend) {
    let place = TestStore::new(backend).await;
    let store = place.open().await;
    put_instance(&*store, instance("i1", ResourceState::Ready, None)).await;
    let record = binding("b1", "i1", ResourceState::Creating, None);
    let written = put_binding(&*store, record.clone()).await;
    assert_eq!(written.version, 1);
    assert_eq!(store.binding("b1").await.unwrap(), Some(written.clone()));
    assert_eq!(
        store
            .swap_binding("b1", Expect::Absent, Some(record.clone()))
            .await
            .unwrap(),
        Swap::Conflict
    );
    let ready = BindingRecord {
        state: ResourceState::Ready,
        ..written
    };
    let Swap::Written(v2) = store
        .swap_binding("b1", Expect::Version(1), Some(ready.clone()))
        .await
        .unwrap()
    else {
        panic!("update refused");
    };
    assert_eq!(
        v2,
        BindingRecord {
            version: 2,
            ..ready.clone()
        }
    );
    assert_eq!(
        store
            .swap_binding("b1", Expect::Version(1), Some(ready))
            .await
            .unwrap(),
        Swap::Conflict
    );
    assert_eq!(store.bindings_of("i1").await.unwrap(), vec![v2.clone()]);
    assert_eq!(store.bindings_of("i2").await.unwrap(), vec![]);
    assert_eq!(
        store.swap_binding("b1", Expect::Version(1), None).await.unwrap(),
        Swap::Conflict
    );
    assert_eq!(
        store.swap_binding("b1", Expect::Version(2), None).await.unwrap(),
        Swap::Deleted
    );
    assert_eq!(store.binding("b1").await.unwrap(), None);
    assert_eq!(store.bindings_of("i1").await.unwrap(), vec![]);
    assert_eq!(
        store.swap_binding("b1", Expect::Absent, None).await.unwrap(),
        Swap::Deleted
    );
    // The instance is untouched by its bindings' life.
    assert_eq!(store.instance("i1").await.unwrap().unwrap().version, 1);
}

async fn racing_writers_have_one_winner(backend: Backend) {
    let place = TestStore::new(backend).await;
    let store = place.open().await;
    let race = |make: Arc<dyn Fn(usize) -> (Expect, InstanceRecord) + Send + Sync>| {
        let store = store.clone();
        async move {
            let tasks: Vec<_> = (0..16)
                .map(|n| {
                    let (store, make) = (store.clone(), make.clone());
                    tokio::spawn(async move {
                        let (expect, record) = make(n);
                        store.swap_instance("same", expect, Some(record)).await.unwrap()
                    })
                })
                .collect();
            let mut winners = Vec::new();
            for task in tasks {
                match task.await.unwrap() {
                    Swap::Written(record) => winners.push(record),
                    Swap::Conflict => {}
                    Swap::Deleted => panic!("nothing deleted"),
                }
            }
            winners
        }
    };
    let created = race(Arc::new(|n| {
        let mut record = instance("same", ResourceState::Creating, None);
        record.fingerprint = format!("f{n}");
        (Expect::Absent, record)
    }))
    .await;
    assert_eq!(created.len(), 1, "one creator: {created:?}");
    let base = created.into_iter().next().unwrap();
    assert_eq!(store.instance("same").await.unwrap().as_ref(), Some(&base));

    let updated = race(Arc::new(move |n| {
        let mut record = base.clone();
        record.plan_id = format!("p{n}");
        (Expect::Version(1), record)
    }))
    .await;
    assert_eq!(updated.len(), 1, "one updater: {updated:?}");
    let stored = store.instance("same").await.unwrap().unwrap();
    assert_eq!(stored.version, 2);
    assert_eq!(Some(&stored), updated.first());
}

async fn deleting_an_instance_deletes_its_bindings(backend: Backend) {
    let place = TestStore::new(backend).await;
    let store = place.open().await;
    let i1 = put_instance(&*store, instance("i1", ResourceState::Ready, None)).await;
    put_instance(&*store, instance("i2", ResourceState::Ready, None)).await;
    put_binding(&*store, binding("b1", "i1", ResourceState::Ready, None)).await;
    put_binding(&*store, binding("b2", "i1", orphaned("bind failed"), None)).await;
    put_binding(
        &*store,
        binding(
            "b3",
            "i1",
            ResourceState::Creating,
            operation(OperationKind::Bind, Phase::Sent),
        ),
    )
    .await;
    put_binding(&*store, binding("b4", "i2", orphaned("bind failed"), None)).await;
    assert_eq!(
        ids(&store.bindings_of("i1").await.unwrap(), |b| &b.binding_id),
        ["b1", "b2", "b3"]
    );
    let claimed = store.claim_orphans("r1", 10, 100, 10).await.unwrap();
    assert_eq!(claimed, vec![bind("b2"), bind("b4")]);

    // A stale delete deletes nothing, bindings included.
    assert_eq!(
        store.swap_instance("i1", Expect::Version(7), None).await.unwrap(),
        Swap::Conflict
    );
    assert_eq!(store.bindings_of("i1").await.unwrap().len(), 3);

    assert_eq!(
        store
            .swap_instance("i1", Expect::Version(i1.version), None)
            .await
            .unwrap(),
        Swap::Deleted
    );
    assert_eq!(store.bindings_of("i1").await.unwrap(), vec![]);
    for id in ["b1", "b2", "b3"] {
        assert_eq!(store.binding(id).await.unwrap(), None, "{id}");
    }
    assert_eq!(ids(&store.bindings().await.unwrap(), |b| &b.binding_id), ["b4"]);
    assert_eq!(ids(&store.instances().await.unwrap(), |i| &i.instance_id), ["i2"]);
    assert_eq!(store.orphans().await.unwrap(), vec![bind("b4")]);
    assert_eq!(store.pending().await.unwrap(), vec![]);

    // A binding id can be used again, unclaimed, once its instance took it away.
    put_instance(&*store, instance("i1", ResourceState::Ready, None)).await;
    let again = put_binding(&*store, binding("b2", "i1", orphaned("again"), None)).await;
    assert_eq!(again.version, 1);
    assert_eq!(
        store.claim_orphans("r2", 20, 100, 10).await.unwrap(),
        vec![bind("b2")],
        "b4 is r1's until 100; the new b2 is nobody's"
    );
}

/// `(broker, n)` pairs as the counts' maps.
fn counted(pairs: &[(&str, u64)]) -> std::collections::BTreeMap<String, u64> {
    pairs.iter().map(|(b, n)| ((*b).to_owned(), *n)).collect()
}

async fn counts_follow_the_records_and_survive_a_reopen(backend: Backend) {
    let place = TestStore::new(backend).await;
    let store = place.open().await;
    assert_eq!(store.counts().await.unwrap(), RecordCounts::default());
    let on = |mut record: InstanceRecord, broker: &str| {
        record.broker = broker.into();
        record
    };
    let i1 = put_instance(&*store, instance("i1", ResourceState::Ready, None)).await;
    put_instance(
        &*store,
        on(instance("i2", ResourceState::Creating, None), "azure"),
    )
    .await;
    put_instance(&*store, on(instance("i3", orphaned("x"), None), "azure")).await;
    put_binding(&*store, binding("b1", "i1", ResourceState::Ready, None)).await;
    put_binding(&*store, binding("b2", "i1", ResourceState::Ready, None)).await;
    // An update is not a new record.
    let mut changed = i1.clone();
    changed.plan_id = "other".into();
    store
        .swap_instance("i1", Expect::Version(i1.version), Some(changed))
        .await
        .unwrap();
    let expected = RecordCounts {
        instances: counted(&[("aws", 1), ("azure", 2)]),
        bindings: counted(&[("aws", 2)]),
    };
    assert_eq!(store.counts().await.unwrap(), expected);
    drop(store);
    let store = place.open().await;
    assert_eq!(store.counts().await.unwrap(), expected, "after a reopen");

    // Deleting an instance takes its bindings with it.
    let i1 = store.instance("i1").await.unwrap().unwrap();
    store
        .swap_instance("i1", Expect::Version(i1.version), None)
        .await
        .unwrap();
    let counts = store.counts().await.unwrap();
    assert_eq!(counts.instances.get("aws").copied().unwrap_or(0), 0);
    assert_eq!(counts.instances.get("azure"), Some(&2));
    assert_eq!(counts.bindings.get("aws").copied().unwrap_or(0), 0);
}

async fn indexes_follow_the_records(backend: Backend) {
    let place = TestStore::new(backend).await;
    let store = place.open().await;
    let sent = |kind| operation(kind, Phase::Sent);
    let accepted = |kind| operation(kind, Phase::Accepted);
    let creating = put_instance(
        &*store,
        instance(
            "i-creating",
            ResourceState::Creating,
            sent(OperationKind::Provision),
        ),
    )
    .await;
    put_instance(
        &*store,
        instance(
            "i-polling",
            ResourceState::Creating,
            accepted(OperationKind::Provision),
        ),
    )
    .await;
    let ready = put_instance(&*store, instance("i-ready", ResourceState::Ready, None)).await;
    put_instance(&*store, instance("i-orphan", orphaned("provision failed"), None)).await;
    put_binding(
        &*store,
        binding(
            "b-sent",
            "i-ready",
            ResourceState::Creating,
            sent(OperationKind::Bind),
        ),
    )
    .await;
    put_binding(
        &*store,
        binding("b-orphan", "i-ready", orphaned("bind failed"), None),
    )
    .await;
    // Bindings first, then instances, each by id.
    assert_eq!(
        store.orphans().await.unwrap(),
        vec![bind("b-orphan"), inst("i-orphan")]
    );
    assert_eq!(
        store.pending().await.unwrap(),
        vec![bind("b-sent"), inst("i-creating")]
    );

    // The outcome recorded: out of the pending index; a failure: into the orphans.
    store
        .swap_instance(
            "i-creating",
            Expect::Version(creating.version),
            Some(InstanceRecord {
                state: orphaned("provision timed out"),
                operation: None,
                ..creating
            }),
        )
        .await
        .unwrap();
    // An update in flight is pending too.
    store
        .swap_instance(
            "i-ready",
            Expect::Version(ready.version),
            Some(InstanceRecord {
                operation: sent(OperationKind::Update),
                ..ready
            }),
        )
        .await
        .unwrap();
    assert_eq!(
        store.orphans().await.unwrap(),
        vec![bind("b-orphan"), inst("i-creating"), inst("i-orphan")]
    );
    assert_eq!(
        store.pending().await.unwrap(),
        vec![bind("b-sent"), inst("i-ready")]
    );

    // Deleted records leave both indexes.
    let orphan = store.instance("i-orphan").await.unwrap().unwrap();
    store
        .swap_instance("i-orphan", Expect::Version(orphan.version), None)
        .await
        .unwrap();
    let sent_binding = store.binding("b-sent").await.unwrap().unwrap();
    store
        .swap_binding("b-sent", Expect::Version(sent_binding.version), None)
        .await
        .unwrap();
    assert_eq!(
        store.orphans().await.unwrap(),
        vec![bind("b-orphan"), inst("i-creating")]
    );
    assert_eq!(store.pending().await.unwrap(), vec![inst("i-ready")]);
}

async fn claims_are_exclusive_renewable_and_expire(backend: Backend) {
    let place = TestStore::new(backend).await;
    let store = place.open().await;
    put_instance(&*store, instance("i1", orphaned("x"), None)).await;
    put_instance(&*store, instance("i2", orphaned("x"), None)).await;
    put_instance(&*store, instance("i3", ResourceState::Ready, None)).await;
    put_binding(&*store, binding("b1", "i3", orphaned("x"), None)).await;

    // Bindings first; a limit is a limit.
    let a = store.claim_orphans("a", 1_000, 2_000, 2).await.unwrap();
    assert_eq!(a, vec![bind("b1"), inst("i1")]);
    // Another owner gets only what nobody holds.
    assert_eq!(
        store.claim_orphans("b", 1_000, 2_000, 10).await.unwrap(),
        vec![inst("i2")]
    );
    assert_eq!(store.claim_orphans("c", 1_500, 2_500, 10).await.unwrap(), vec![]);
    // An owner renews its own claims (its retries are never held back), and only its own.
    assert_eq!(
        store.claim_orphans("a", 1_500, 3_000, 10).await.unwrap(),
        vec![bind("b1"), inst("i1")]
    );
    assert_eq!(store.claim_orphans("c", 1_999, 2_500, 0).await.unwrap(), vec![]);
    // b's claim ran out at 2 000; a's lasts until 3 000.
    assert_eq!(
        store.claim_orphans("c", 2_001, 10_000, 10).await.unwrap(),
        vec![inst("i2")]
    );
    assert_eq!(store.claim_orphans("b", 2_500, 10_000, 10).await.unwrap(), vec![]);
    assert_eq!(
        store.claim_orphans("b", 3_001, 10_000, 10).await.unwrap(),
        vec![bind("b1"), inst("i1")]
    );

    // A record that stops being an orphan loses its claim; forgotten orphans are gone.
    let i2 = store.instance("i2").await.unwrap().unwrap();
    let Swap::Written(i2) = store
        .swap_instance(
            "i2",
            Expect::Version(i2.version),
            Some(InstanceRecord {
                state: ResourceState::Ready,
                ..i2
            }),
        )
        .await
        .unwrap()
    else {
        panic!("update refused");
    };
    store
        .swap_instance(
            "i2",
            Expect::Version(i2.version),
            Some(InstanceRecord {
                state: orphaned("again"),
                ..i2
            }),
        )
        .await
        .unwrap();
    let i1 = store.instance("i1").await.unwrap().unwrap();
    store
        .swap_instance("i1", Expect::Version(i1.version), None)
        .await
        .unwrap();
    assert_eq!(
        store.claim_orphans("d", 4_000, 10_000, 10).await.unwrap(),
        vec![inst("i2")],
        "c's claim on i2 ended with its orphaning; b1 is b's"
    );
    // Rewriting an orphan (a mitigation attempt recorded) keeps its claim.
    let b1 = store.binding("b1").await.unwrap().unwrap();
    store
        .swap_binding(
            "b1",
            Expect::Version(b1.version),
            Some(BindingRecord {
                state: orphaned("attempt 2"),
                ..b1
            }),
        )
        .await
        .unwrap();
    assert_eq!(
        store.claim_orphans("d", 4_000, 10_000, 10).await.unwrap(),
        vec![inst("i2")]
    );
    // An owner's own claims come first: it keeps working what it holds, new orphans wait.
    put_instance(&*store, instance("i0", orphaned("x"), None)).await;
    assert_eq!(
        store.claim_orphans("d", 4_500, 10_000, 1).await.unwrap(),
        vec![inst("i2")]
    );
    assert_eq!(
        store.claim_orphans("e", 4_500, 10_000, 5).await.unwrap(),
        vec![inst("i0")]
    );
}

async fn concurrent_claims_never_share_an_orphan(backend: Backend) {
    let place = TestStore::new(backend).await;
    let store = place.open().await;
    for n in 0..30 {
        put_instance(&*store, instance(&format!("i{n:02}"), orphaned("x"), None)).await;
        put_binding(&*store, binding(&format!("b{n:02}"), "i00", orphaned("x"), None)).await;
    }
    let tasks: Vec<_> = (0..8)
        .map(|owner| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                for _ in 0..3 {
                    mine.extend(
                        store
                            .claim_orphans(&format!("owner{owner}"), 1_000, 60_000, 4)
                            .await
                            .unwrap(),
                    );
                }
                mine
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for task in tasks {
        // An owner's later calls renew (return again) its own orphans: count each once per owner.
        let mine: BTreeSet<String> = task
            .await
            .unwrap()
            .into_iter()
            .map(|r| format!("{r:?}"))
            .collect();
        claimed.extend(mine);
    }
    let distinct: BTreeSet<&String> = claimed.iter().collect();
    assert_eq!(
        distinct.len(),
        claimed.len(),
        "an orphan claimed twice: {claimed:?}"
    );
    let rest = store.claim_orphans("late", 1_000, 60_000, 100).await.unwrap();
    assert_eq!(
        claimed.len() + rest.len(),
        60,
        "every orphan claimed once: {rest:?}"
    );
}

async fn heartbeats_list_the_living(backend: Backend) {
    let place = TestStore::new(backend).await;
    let store = place.open().await;
    assert_eq!(store.heartbeat("a", 1_000, 0).await.unwrap(), ["a"]);
    assert_eq!(store.heartbeat("b", 2_000, 0).await.unwrap(), ["a", "b"]);
    assert_eq!(store.heartbeat("c", 3_000, 1_500).await.unwrap(), ["b", "c"]);
    assert_eq!(store.heartbeat("a", 3_500, 1_500).await.unwrap(), ["a", "b", "c"]);
    // The caller is always among the living; a late (older) heartbeat never moves time back.
    assert_eq!(store.heartbeat("b", 1_000, 3_200).await.unwrap(), ["a", "b"]);
    assert_eq!(store.heartbeat("d", 5_000, 3_200).await.unwrap(), ["a", "d"]);
    // Replicas silent for more than an hour are forgotten, not just left out.
    let later = 3 * 60 * 60 * 1000;
    assert_eq!(store.heartbeat("e", later, later - 15_000).await.unwrap(), ["e"]);
    assert_eq!(store.heartbeat("f", later, 0).await.unwrap(), ["e", "f"]);
}

async fn catalogs_round_trip(backend: Backend) {
    let place = TestStore::new(backend).await;
    let store = place.open().await;
    assert_eq!(store.load_catalog("azure").await.unwrap(), None);
    let first = StoredCatalog {
        body: Bytes::from_static(b"{\"services\":[]}\x00\xff binary too"),
        validators: Validators {
            etag: Some("\"v1\"".into()),
            last_modified: Some("Wed, 21 Oct 2015 07:28:00 GMT".into()),
        },
        fetched_at_ms: 1_700_000_000_123,
    };
    store.save_catalog("azure", first.clone()).await.unwrap();
    assert_eq!(store.load_catalog("azure").await.unwrap(), Some(first));
    let second = StoredCatalog {
        body: Bytes::from(vec![b'x'; 1 << 20]),
        validators: Validators {
            etag: None,
            last_modified: None,
        },
        fetched_at_ms: 43,
    };
    store.save_catalog("azure", second.clone()).await.unwrap();
    assert_eq!(store.load_catalog("azure").await.unwrap(), Some(second));
    assert_eq!(store.load_catalog("aws").await.unwrap(), None);
}

async fn reopening_keeps_everything(backend: Backend) {
    let place = TestStore::new(backend).await;
    let store = place.open().await;
    let i1 = put_instance(
        &*store,
        instance(
            "i1",
            ResourceState::Creating,
            operation(OperationKind::Provision, Phase::Sent),
        ),
    )
    .await;
    let i2 = put_instance(&*store, instance("i2", orphaned("x"), None)).await;
    let b1 = put_binding(&*store, binding("b1", "i1", ResourceState::Ready, None)).await;
    let Swap::Written(b1) = store
        .swap_binding(
            "b1",
            Expect::Version(1),
            Some(BindingRecord {
                state: orphaned("y"),
                ..b1
            }),
        )
        .await
        .unwrap()
    else {
        panic!("update refused");
    };
    let catalog = StoredCatalog {
        body: Bytes::from_static(b"{}"),
        validators: Validators::default(),
        fetched_at_ms: 9,
    };
    store.save_catalog("aws", catalog.clone()).await.unwrap();
    store.quiesce().await;
    drop(store);

    let store = place.open().await;
    assert_eq!(store.instance("i1").await.unwrap(), Some(i1));
    assert_eq!(store.instance("i2").await.unwrap(), Some(i2));
    assert_eq!(store.binding("b1").await.unwrap(), Some(b1.clone()));
    assert_eq!(store.bindings_of("i1").await.unwrap(), vec![b1]);
    assert_eq!(store.orphans().await.unwrap(), vec![bind("b1"), inst("i2")]);
    assert_eq!(store.pending().await.unwrap(), vec![inst("i1")]);
    assert_eq!(store.load_catalog("aws").await.unwrap(), Some(catalog));
    assert_eq!(
        store.swap_binding("b1", Expect::Version(2), None).await.unwrap(),
        Swap::Deleted,
        "versions go on where they were"
    );
    store.ping().await.unwrap();
}

pub(crate) fn audit_record(operation: &str, instance_id: Option<&str>, at_ms: u64) -> AuditRecord {
    AuditRecord {
        seq: 0,
        at_ms,
        kind: if operation.starts_with("admin.") {
            AuditKind::Admin
        } else {
            AuditKind::Platform
        },
        actor: "k8s".into(),
        user: Some("alice".into()),
        operation: operation.into(),
        instance_id: instance_id.map(Into::into),
        binding_id: None,
        broker: Some("aws".into()),
        service_id: Some("gs".into()),
        plan_id: Some("gp".into()),
        policy: Some("allow".into()),
        upstream_status: Some(201),
        status: 201,
        outcome: AuditOutcome::Succeeded,
        error: None,
        reason: None,
        request_identity: Some("r-1".into()),
        duration_ms: 12,
    }
}

async fn audit_records_are_numbered_and_read_newest_first(backend: Backend) {
    let place = TestStore::new(backend).await;
    let store = place.open().await;
    assert_eq!(store.audit(&AuditQuery::default()).await.unwrap(), vec![]);
    let mut written = Vec::new();
    for n in 0..7u64 {
        let instance = format!("i{}", n % 3);
        let operation = if n == 5 { "admin.abandon" } else { "provision" };
        let record = audit_record(operation, Some(&instance), 1_000 + n);
        let seq = store.append_audit(record.clone()).await.unwrap();
        written.push(AuditRecord { seq, ..record });
    }
    let seqs: Vec<u64> = written.iter().map(|r| r.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "increasing: {seqs:?}");

    let all = store.audit(&AuditQuery::default()).await.unwrap();
    let newest_first: Vec<AuditRecord> = written.iter().rev().cloned().collect();
    assert_eq!(all, newest_first, "records come back as written, seq included");

    // Pages: `before` is the last seq of the previous page.
    let page = |before: Option<u64>| AuditQuery {
        before,
        limit: Some(3),
        ..AuditQuery::default()
    };
    let first = store.audit(&page(None)).await.unwrap();
    assert_eq!(first, newest_first[..3]);
    let second = store.audit(&page(first.last().map(|r| r.seq))).await.unwrap();
    assert_eq!(second, newest_first[3..6]);
    let third = store.audit(&page(second.last().map(|r| r.seq))).await.unwrap();
    assert_eq!(third, newest_first[6..]);

    // Filters.
    let of_i1 = store
        .audit(&AuditQuery {
            instance_id: Some("i1".into()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(of_i1.iter().map(|r| r.at_ms).collect::<Vec<_>>(), [1_004, 1_001]);
    let admin = store
        .audit(&AuditQuery {
            kind: Some(AuditKind::Admin),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(admin.len(), 1);
    assert_eq!(admin[0].operation, "admin.abandon");
    let since = store
        .audit(&AuditQuery {
            since_ms: Some(1_005),
            operation: Some("provision".into()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(since.iter().map(|r| r.at_ms).collect::<Vec<_>>(), [1_006]);
    // A window of the log: after one seq and before another, whatever the limit.
    let window = store
        .audit(&AuditQuery {
            after: Some(seqs[1]),
            before: Some(seqs[5]),
            limit: Some(100),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        window.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [seqs[4], seqs[3], seqs[2]]
    );

    // The log survives reopening, and numbering goes on.
    store.quiesce().await;
    drop(store);
    let store = place.open().await;
    let seq = store
        .append_audit(audit_record("unbind", None, 2_000))
        .await
        .unwrap();
    assert!(seq > *seqs.last().unwrap());
    assert_eq!(store.audit(&AuditQuery::default()).await.unwrap().len(), 8);
}

async fn audit_records_are_pruned_oldest_first(backend: Backend) {
    let place = TestStore::new(backend).await;
    let store = place.open().await;
    let mut seqs = Vec::new();
    for n in 0..10u64 {
        seqs.push(
            store
                .append_audit(audit_record("provision", Some("i"), n))
                .await
                .unwrap(),
        );
    }
    assert_eq!(store.prune_audit(seqs[5]).await.unwrap(), 6);
    let kept: Vec<u64> = store
        .audit(&AuditQuery::default())
        .await
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(kept, seqs[6..].iter().rev().copied().collect::<Vec<_>>());
    assert_eq!(
        store.prune_audit(seqs[5]).await.unwrap(),
        0,
        "nothing left to prune"
    );
    // Numbering goes on after the oldest are gone.
    let next = store
        .append_audit(audit_record("bind", Some("i"), 11))
        .await
        .unwrap();
    assert!(next > seqs[9]);
}

async fn inventory_pages_filter_in_id_order(backend: Backend) {
    let place = TestStore::new(backend).await;
    let store = place.open().await;
    for n in [3, 1, 4, 0, 2] {
        let mut record = instance(
            &format!("i{n}"),
            if n == 4 {
                orphaned("x")
            } else {
                ResourceState::Ready
            },
            (n == 2)
                .then(|| operation(OperationKind::Deprovision, Phase::Accepted))
                .flatten(),
        );
        if n % 2 == 1 {
            record.broker = "azure".into();
            record.plan_id = "gp2".into();
        }
        put_instance(&*store, record).await;
    }
    put_binding(&*store, binding("b2", "i1", ResourceState::Ready, None)).await;
    put_binding(&*store, binding("b1", "i0", ResourceState::Creating, None)).await;
    put_binding(&*store, binding("b0", "i1", ResourceState::Ready, None)).await;

    let all = RecordFilter::default();
    let page = store.list_instances(&all, None, 2).await.unwrap();
    assert_eq!(ids(&page, |r| &r.instance_id), ["i0", "i1"]);
    let page = store.list_instances(&all, Some("i1"), 2).await.unwrap();
    assert_eq!(ids(&page, |r| &r.instance_id), ["i2", "i3"]);
    let page = store.list_instances(&all, Some("i3"), 2).await.unwrap();
    assert_eq!(ids(&page, |r| &r.instance_id), ["i4"]);
    assert!(
        store
            .list_instances(&all, Some("i4"), 2)
            .await
            .unwrap()
            .is_empty()
    );

    // Under a budget: pages may come short, and resuming collects the same records.
    let on_azure = RecordFilter {
        broker: Some("azure".into()),
        ..RecordFilter::default()
    };
    let mut found = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..10 {
        let scanned = store
            .scan_instances(&on_azure, after.as_deref(), 10, 2)
            .await
            .unwrap();
        found.extend(scanned.items.into_iter().map(|r| r.instance_id));
        after = scanned.resume;
        if after.is_none() {
            break;
        }
    }
    assert_eq!(found, ["i1", "i3"]);
    assert!(after.is_none(), "the scan ends");

    let filter = |f: fn(&mut RecordFilter)| {
        let mut filter = RecordFilter::default();
        f(&mut filter);
        filter
    };
    let list = |filter: RecordFilter| {
        let store = store.clone();
        async move {
            let records = store.list_instances(&filter, None, 100).await.unwrap();
            records.into_iter().map(|r| r.instance_id).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(filter(|f| f.broker = Some("azure".into()))).await,
        ["i1", "i3"]
    );
    assert_eq!(
        list(filter(|f| f.plan_id = Some("gp".into()))).await,
        ["i0", "i2", "i4"]
    );
    assert_eq!(list(filter(|f| f.state = Some("orphaned".into()))).await, ["i4"]);
    assert_eq!(
        list(filter(|f| f.state = Some("ready".into()))).await,
        ["i0", "i1", "i2", "i3"]
    );
    assert_eq!(
        list(filter(|f| f.operation = Some("deprovision".into()))).await,
        ["i2"]
    );
    assert_eq!(
        list(filter(|f| f.operation = Some("none".into()))).await,
        ["i0", "i1", "i3", "i4"]
    );
    assert_eq!(
        list(filter(|f| {
            f.platform = Some("k8s".into());
            f.service_id = Some("gs".into());
            f.broker = Some("aws".into());
        }))
        .await,
        ["i0", "i2", "i4"]
    );
    assert!(list(filter(|f| f.platform = Some("cf".into()))).await.is_empty());

    let bindings = store.list_bindings(&all, None, 100).await.unwrap();
    assert_eq!(ids(&bindings, |r| &r.binding_id), ["b0", "b1", "b2"]);
    let of_i1 = store
        .list_bindings(&filter(|f| f.instance_id = Some("i1".into())), None, 1)
        .await
        .unwrap();
    assert_eq!(ids(&of_i1, |r| &r.binding_id), ["b0"]);
    let next = store
        .list_bindings(&filter(|f| f.instance_id = Some("i1".into())), Some("b0"), 1)
        .await
        .unwrap();
    assert_eq!(ids(&next, |r| &r.binding_id), ["b2"]);
    let creating = store
        .list_bindings(&filter(|f| f.state = Some("creating".into())), None, 10)
        .await
        .unwrap();
    assert_eq!(ids(&creating, |r| &r.binding_id), ["b1"]);
}

// === PostgreSQL only: several replicas, a server that fails, the schema ===

async fn postgres_store(place: &TestStore) -> PostgresStore {
    PostgresStore::open(place.url().unwrap()).await.unwrap()
}

/// Two gateway replicas on one database: what one writes, the other reads and must respect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_share_records_and_claims() {
    let place = TestStore::new(Backend::Postgres).await;
    let (one, two) = (postgres_store(&place).await, postgres_store(&place).await);
    let written = put_instance(&one, instance("i1", orphaned("x"), None)).await;
    assert_eq!(two.instance("i1").await.unwrap(), Some(written.clone()));
    assert_eq!(
        two.swap_instance("i1", Expect::Absent, Some(written.clone()))
            .await
            .unwrap(),
        Swap::Conflict
    );
    assert_eq!(
        one.claim_orphans("r1", 10, 100, 10).await.unwrap(),
        vec![inst("i1")]
    );
    assert_eq!(two.claim_orphans("r2", 10, 100, 10).await.unwrap(), vec![]);
    assert_eq!(one.heartbeat("r1", 10, 0).await.unwrap(), ["r1"]);
    assert_eq!(two.heartbeat("r2", 11, 0).await.unwrap(), ["r1", "r2"]);
}

/// Replicas starting together migrate once; opening again changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_starting_together_migrate_once() {
    let place = TestStore::new(Backend::Postgres).await;
    let url = place.url().unwrap().to_owned();
    let opens: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PostgresStore::open(&url).await })
        })
        .collect();
    for open in opens {
        open.await.unwrap().unwrap();
    }
    postgres_store(&place).await;
    let client = admin(&url).await.unwrap();
    let versions: Vec<i64> = client
        .query("SELECT version FROM osb_schema_migrations ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(versions, [1, 2, 3]);
    let tables: Vec<String> = client
        .query(
            "SELECT tablename::text FROM pg_tables WHERE tablename LIKE 'osb\\_%' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        tables,
        [
            "osb_audit",
            "osb_bindings",
            "osb_catalogs",
            "osb_instances",
            "osb_replicas",
            "osb_schema_migrations"
        ]
    );
}

/// The columns the store queries say what the record says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_columns_mirror_the_records() {
    let place = TestStore::new(Backend::Postgres).await;
    let store = postgres_store(&place).await;
    put_instance(
        &store,
        instance(
            "i1",
            ResourceState::Creating,
            operation(OperationKind::Provision, Phase::Sent),
        ),
    )
    .await;
    let i2 = put_instance(&store, instance("i2", orphaned("x"), None)).await;
    store
        .swap_instance(
            "i2",
            Expect::Version(1),
            Some(InstanceRecord { updated_ms: 3, ..i2 }),
        )
        .await
        .unwrap();
    put_binding(&store, binding("b1", "i1", orphaned("y"), None)).await;
    let client = admin(place.url().unwrap()).await.unwrap();
    let rows: Vec<(String, i64, i64, bool, bool)> = client
        .query(
            "SELECT id, version, (record->>'version')::bigint, orphaned, pending FROM osb_instances
             UNION ALL
             SELECT id, version, (record->>'version')::bigint, orphaned, pending FROM osb_bindings
             ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4)))
        .collect();
    assert_eq!(
        rows,
        [
            ("b1".to_owned(), 1, 1, true, false),
            ("i1".to_owned(), 1, 1, false, true),
            ("i2".to_owned(), 2, 2, true, false),
        ]
    );
    let instance_of: String = client
        .query_one("SELECT instance_id FROM osb_bindings WHERE id = 'b1'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(instance_of, "i1");
}

/// A server that is not there fails the open within seconds, and no message shows the password.
#[tokio::test]
async fn postgres_unreachable_fails_fast_without_the_password() {
    let started = Instant::now();
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    let error = PostgresStore::open("postgres://osb:s3cr3t-pw@127.0.0.1:1/osb")
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let text = error.to_string();
    assert!(matches!(error, RoutingError::Store(_)), "{error:?}");
    assert!(text.contains("osb@127.0.0.1:1/osb"), "{text}");
    assert!(text.contains("connect"), "{text}");
    assert!(!text.contains("s3cr3t"), "{text}");

    for url in [
        "postgres://osb:s3cr3t-pw@127.0.0.1:notaport/osb",
        "postgres://osb:s3cr3t-pw@127.0.0.1:99999/osb",
        "postgresql://osb:s3cr3t-pw@127.0.0.1/osb?sslmode=s3cr3t",
    ] {
        let text = PostgresStore::open(url).await.unwrap_err().to_string();
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(text.contains("not a valid PostgreSQL connection URL"), "{text}");
    }
}

/// When the server drops every connection (a restart), the pool connects again by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_reconnects_after_the_server_drops_connections() {
    let database = TestDatabase::create().await;
    let store = PostgresStore::open(&database.url).await.unwrap();
    // Several pooled connections at once, so more than one is cut.
    let busy: Vec<_> = (0..4)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                put_instance(&store, instance(&format!("i{n}"), ResourceState::Ready, None)).await
            })
        })
        .collect();
    for task in busy {
        task.await.unwrap();
    }
    let admin = database.admin().await;
    let cut: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&database.name()],
        )
        .await
        .unwrap()
        .get(0);
    assert!(cut >= 1, "no connection to cut");
    // The pool notices closed connections before handing them out again; give their tasks a
    // moment to see the socket close.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut failures = 0;
    loop {
        match store.instances().await {
            Ok(records) if records.len() == 4 => break,
            Ok(records) => panic!("records lost: {records:?}"),
            Err(e) => {
                failures += 1;
                assert!(Instant::now() < deadline, "no reconnection: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    store.ping().await.unwrap();
    eprintln!("{failures} calls failed after the cut");
    assert!(failures <= 4, "{failures} calls failed after the cut");
    put_instance(&store, instance("after", ResourceState::Ready, None)).await;
}

/// While the database is unreachable, calls fail fast (no hanging requests); they work again
/// when it is back, without reopening the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_calls_fail_fast_while_the_database_refuses_connections() {
    let database = TestDatabase::create().await;
    let store = PostgresStore::open(&database.url).await.unwrap();
    store.ping().await.unwrap();
    let admin = database.admin().await;
    let name = database.name().to_owned();
    // Refuse new connections to this database only, then cut the existing ones.
    admin
        .batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
        .await
        .unwrap();
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&name],
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let error = store.ping().await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(error, RoutingError::Store(_)), "{error:?}");
    assert!(store.instance("i1").await.is_err());

    admin
        .batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .await
        .unwrap();
    store.ping().await.unwrap();
    assert_eq!(store.instance("i1").await.unwrap(), None);
}

/// PostgreSQL's `jsonb` (and `text`) cannot hold the character U+0000, which the embedded store
/// keeps: such a record is refused with a store error (503 at the edge), and the store goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refuses_nul_characters_cleanly() {
    let place = TestStore::new(Backend::Postgres).await;
    let store = postgres_store(&place).await;
    let mut record = instance("i1", ResourceState::Ready, None);
    record.context = Some(json!({"note": "a\u{0}b"}));
    let error = store
        .swap_instance("i1", Expect::Absent, Some(record))
        .await
        .unwrap_err();
    assert!(matches!(error, RoutingError::Store(_)), "{error:?}");
    let error = store.instance("i\u{0}").await.unwrap_err();
    assert!(matches!(error, RoutingError::Store(_)), "{error:?}");
    assert_eq!(store.instance("i1").await.unwrap(), None);
    put_instance(&store, instance("i1", ResourceState::Ready, None)).await;
}

/// The catalog guard's counts: live (not orphaned) instances per plan, with where they live.
async fn live_plans_count_live_instances_per_plan(backend: Backend) {
    let place = TestStore::new(backend).await;
    let store = place.open().await;
    assert_eq!(store.live_plans().await.unwrap(), vec![]);
    for (id, plan, state) in [
        ("i1", "gp", ResourceState::Ready),
        ("i2", "gp", ResourceState::Creating),
        ("i3", "gp2", ResourceState::Ready),
        ("i4", "gp2", orphaned("x")),
    ] {
        let mut record = instance(id, state, None);
        record.plan_id = plan.into();
        put_instance(store.as_ref(), record).await;
    }
    let counts = store.live_plans().await.unwrap();
    let got: Vec<(&str, &str, &str, &str, u64)> = counts
        .iter()
        .map(|c| {
            (
                c.plan_id.as_str(),
                c.service_id.as_str(),
                c.broker.as_str(),
                c.upstream_service_id.as_str(),
                c.instances,
            )
        })
        .collect();
    let one = instance("x", ResourceState::Ready, None);
    let (service, broker, upstream) = (
        one.service_id.as_str(),
        one.broker.as_str(),
        one.upstream_service_id.as_str(),
    );
    assert_eq!(
        got,
        [
            ("gp", service, broker, upstream, 2),
            ("gp2", service, broker, upstream, 1)
        ]
    );
}

async fn quotas_are_counted_with_the_write_and_only_one_takes_the_last_place(backend: Backend) {
    let place = TestStore::new(backend).await;
    let first = place.open().await;
    // Two replicas on PostgreSQL (two pools); the embedded store has one process.
    let second = match backend {
        Backend::Postgres => place.open().await,
        Backend::Embedded => first.clone(),
    };
    let key = "three\u{1f}[\"team-a\"]".to_owned();
    let counted = |id: &str| {
        let mut record = instance(id, ResourceState::Creating, None);
        record.quotas = vec![key.clone()];
        record
    };
    let tasks: Vec<_> = (0..16)
        .map(|n| {
            let store = if n % 2 == 0 { first.clone() } else { second.clone() };
            let record = counted(&format!("i{n:02}"));
            tokio::spawn(async move { store.create_instance(record, &[3]).await.unwrap() })
        })
        .collect();
    let (mut written, mut full) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Created::Written(record) => {
                assert_eq!(record.version, 1);
                written += 1;
            }
            Created::Full { key: k, usage, limit } => {
                assert_eq!((k.as_str(), usage, limit), (key.as_str(), 3, 3));
                full += 1;
            }
            Created::Conflict => panic!("distinct ids"),
        }
    }
    assert_eq!(
        (written, full),
        (3, 13),
        "exactly three of sixteen creations take a place"
    );
    assert_eq!(first.quota_usage(std::slice::from_ref(&key)).await.unwrap(), [3]);
    assert_eq!(second.quota_counts().await.unwrap().get(&key), Some(&3));

    // An orphan no longer counts; a deleted record neither.
    let mut live: Vec<InstanceRecord> = first
        .instances()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| !r.quotas.is_empty())
        .collect();
    live.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    let mut orphan = live[0].clone();
    orphan.state = orphaned("failed");
    first
        .swap_instance(
            &live[0].instance_id,
            Expect::Version(orphan.version),
            Some(orphan),
        )
        .await
        .unwrap();
    assert_eq!(first.quota_usage(std::slice::from_ref(&key)).await.unwrap(), [2]);
    assert!(matches!(
        second.create_instance(counted("late"), &[3]).await.unwrap(),
        Created::Written(_)
    ));
    assert!(matches!(
        first.create_instance(counted("later"), &[3]).await.unwrap(),
        Created::Full { usage: 3, .. }
    ));
    first
        .swap_instance(&live[1].instance_id, Expect::Version(live[1].version), None)
        .await
        .unwrap();
    assert_eq!(second.quota_usage(std::slice::from_ref(&key)).await.unwrap(), [2]);
    // A creation under an id that exists is a conflict, not a place taken.
    assert_eq!(
        first.create_instance(counted("late"), &[10]).await.unwrap(),
        Created::Conflict
    );
    assert_eq!(
        second.create_instance(counted("late"), &[1]).await.unwrap(),
        Created::Conflict,
        "even when the count is full"
    );

    // Bindings count in their own quotas, and leave them with their instance.
    let keys = "keys\u{1f}[]".to_owned();
    let bound = |id: &str| {
        let mut record = binding(id, &live[2].instance_id, ResourceState::Ready, None);
        record.quotas = vec![keys.clone()];
        record
    };
    assert!(matches!(
        first.create_binding(bound("b1"), &[1]).await.unwrap(),
        Created::Written(_)
    ));
    assert!(matches!(
        second.create_binding(bound("b2"), &[1]).await.unwrap(),
        Created::Full {
            usage: 1,
            limit: 1,
            ..
        }
    ));
    // Without quotas, a creation is a plain write.
    assert!(matches!(
        first
            .create_binding(
                binding("b3", &live[2].instance_id, ResourceState::Ready, None),
                &[]
            )
            .await
            .unwrap(),
        Created::Written(_)
    ));
    let usage = first.quota_usage(&[key.clone(), keys.clone()]).await.unwrap();
    assert_eq!(usage, [2, 1]);
    drop((first, second));
    let store = place.open().await;
    assert_eq!(
        store.quota_usage(&[key.clone(), keys.clone()]).await.unwrap(),
        [2, 1],
        "after a reopen"
    );
    let owner = store.instance(&live[2].instance_id).await.unwrap().unwrap();
    store
        .swap_instance(&owner.instance_id, Expect::Version(owner.version), None)
        .await
        .unwrap();
    assert_eq!(
        store.quota_usage(&[key.clone(), keys.clone()]).await.unwrap(),
        [1, 0]
    );
    assert_eq!(
        store.quota_counts().await.unwrap().len(),
        1,
        "empty counts are dropped"
    );
}
