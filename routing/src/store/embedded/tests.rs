//! The embedded store's own tests (the backend-independent ones are in `store::tests`): catalogs
//! across a reopen, and store files written by earlier versions.

use self::batch::swap_in;
use self::codec::Stored;
use super::*;

#[tokio::test]
async fn catalogs_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/gw");
    let store = EmbeddedStore::open(path.clone()).await.unwrap();
    assert_eq!(store.load_catalog("azure").await.unwrap(), None);
    let saved = StoredCatalog {
        body: Bytes::from_static(b"{\"services\":[]}"),
        validators: Validators {
            etag: Some("\"v1\"".into()),
            last_modified: None,
        },
        fetched_at_ms: 42,
    };
    store.save_catalog("azure", saved.clone()).await.unwrap();
    drop(store);
    let store = EmbeddedStore::open(path).await.unwrap();
    assert_eq!(store.load_catalog("azure").await.unwrap(), Some(saved));
    assert_eq!(store.load_catalog("aws").await.unwrap(), None);
}

/// A redb file of an earlier version, records partly as JSON (older still), no counts table: it
/// is moved into a store folder on open, with its records, indexes and counts, its audit log and
/// catalogs, and kept beside it.
#[tokio::test]
async fn files_of_earlier_versions_are_moved_into_a_store_folder() {
    use redb::{Database, TableDefinition};

    use crate::audit::AuditQuery;
    use crate::record::ResourceState;
    use crate::store::tests as store_tests;
    const INSTANCES: TableDefinition<&str, &[u8]> = TableDefinition::new("instances");
    const BINDINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("bindings");
    const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
    const CATALOG_BODIES: TableDefinition<&str, &[u8]> = TableDefinition::new("catalog_bodies");
    const CATALOG_META: TableDefinition<&str, &str> = TableDefinition::new("catalog_meta");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.redb");
    let instance = |id: &str, state: ResourceState| InstanceRecord {
        version: 1,
        ..store_tests::instance(id, state, None)
    };
    let binding = BindingRecord {
        version: 1,
        ..store_tests::binding("b1", "i1", ResourceState::Ready, None)
    };
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(INSTANCES).unwrap();
            let json = serde_json::to_vec(&instance("i1", ResourceState::Ready)).unwrap();
            table.insert("i1", json.as_slice()).unwrap();
            let binary = instance("i2", store_tests::orphaned("r")).encode().unwrap();
            table.insert("i2", binary.as_slice()).unwrap();
            let mut table = txn.open_table(BINDINGS).unwrap();
            table.insert("b1", binding.encode().unwrap().as_slice()).unwrap();
            let mut audit = txn.open_table(AUDIT).unwrap();
            let record = crate::audit::AuditRecord {
                seq: 7,
                ..store_tests::audit_record("provision", Some("i1"), 1)
            };
            audit
                .insert(7, serde_json::to_vec(&record).unwrap().as_slice())
                .unwrap();
            txn.open_table(CATALOG_BODIES)
                .unwrap()
                .insert("aws", b"{}".as_slice())
                .unwrap();
            txn.open_table(CATALOG_META)
                .unwrap()
                .insert(
                    "aws",
                    r#"{"etag":"\"e\"","last_modified":null,"fetched_at_ms":3}"#,
                )
                .unwrap();
        }
        txn.commit().unwrap();
    }

    let store = EmbeddedStore::open(path.clone()).await.unwrap();
    assert!(path.is_dir(), "the store is a folder now");
    assert!(migrate::backup_of(&path).is_file(), "the earlier file is kept");
    assert_eq!(store.counts().await.unwrap().instances.get("aws"), Some(&2));
    assert_eq!(store.counts().await.unwrap().bindings.get("aws"), Some(&1));
    assert_eq!(
        store.orphans().await.unwrap(),
        vec![RecordRef::Instance("i2".into())]
    );
    assert_eq!(
        store.instance("i1").await.unwrap().unwrap(),
        instance("i1", ResourceState::Ready)
    );
    assert_eq!(store.bindings_of("i1").await.unwrap(), vec![binding]);
    let audit = store.audit(&AuditQuery::default()).await.unwrap();
    assert_eq!(audit.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![7]);
    assert_eq!(
        store.append_audit(audit[0].clone()).await.unwrap(),
        8,
        "seqs go on"
    );
    let catalog = store.load_catalog("aws").await.unwrap().unwrap();
    assert_eq!(catalog.validators.etag.as_deref(), Some("\"e\""));

    // Deleting the instance cascades through the rebuilt links; all of it survives a reopen.
    store.swap_instance("i1", Expect::Version(1), None).await.unwrap();
    drop(store);
    let store = EmbeddedStore::open(path.clone()).await.unwrap();
    assert_eq!(store.binding("b1").await.unwrap(), None);
    assert_eq!(store.counts().await.unwrap().instances.get("aws"), Some(&1));
    assert_eq!(store.counts().await.unwrap().bindings.get("aws"), Some(&0));
}

/// A move interrupted between its two renames is finished by the next open.
#[tokio::test]
async fn an_interrupted_move_is_finished() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let staged = dir.path().join("store.migrating");
    let store = EmbeddedStore::open(staged.clone()).await.unwrap();
    store
        .swap_instance(
            "i1",
            Expect::Absent,
            Some(crate::store::tests::instance(
                "i1",
                crate::record::ResourceState::Ready,
                None,
            )),
        )
        .await
        .unwrap();
    drop(store);
    std::fs::write(migrate::backup_of(&path), b"the earlier file").unwrap();
    let store = EmbeddedStore::open(path.clone()).await.unwrap();
    assert!(store.instance("i1").await.unwrap().is_some());
    assert!(!staged.exists());
}

/// The writes of one batch see each other before the batch commits: a compare-and-swap reads what
/// an earlier write of the batch wrote, and a prefix scan sees its inserts and removals. A write
/// that fails is undone and fails alone.
#[test]
fn writes_of_one_batch_read_through_each_other() {
    use self::batch::{Job, write_batch};
    use crate::record::ResourceState;
    use crate::store::tests as store_tests;

    let dir = tempfile::tempdir().unwrap();
    let kv = Kv::open(dir.path()).unwrap();
    kv.put(Space::Links, b"i1\nb-old", &[]).unwrap();
    let memory = RwLock::new(Memory::default());
    let record = store_tests::instance("i1", ResourceState::Ready, None);
    let swap = |expect: Expect| -> (Job, oneshot::Receiver<_>) {
        let record = record.clone();
        let (reply, answer) = oneshot::channel();
        let run = Box::new(move |tables: &mut Tables<'_>| {
            swap_in(tables, "i1", expect, Some(record)).map(|(outcome, _)| Box::new(outcome) as Output)
        });
        (Job { run, reply }, answer)
    };
    let (create, created) = swap(Expect::Absent);
    let (update, updated) = swap(Expect::Version(1));
    let (again, conflicted) = swap(Expect::Absent);
    let (fail, failed) = oneshot::channel();
    let failing = Job {
        run: Box::new(|tables: &mut Tables<'_>| {
            tables.insert(Space::Links, b"i1\nb-failed", Vec::new())?;
            tables.remove(Space::Instances, b"i1")?;
            Err(RoutingError::Store("refused".into()))
        }),
        reply: fail,
    };
    let (scan, scanned) = oneshot::channel();
    let links = Job {
        run: Box::new(|tables: &mut Tables<'_>| {
            tables.insert(Space::Links, b"i1\nb-new", Vec::new())?;
            tables.remove(Space::Links, b"i1\nb-old")?;
            tables.insert(Space::Links, b"i2\nb-other", Vec::new())?;
            let keys = tables.keys_with_prefix(Space::Links, b"i1\n")?;
            Ok(Box::new(keys) as Output)
        }),
        reply: scan,
    };
    let mut audit_last = 0;
    for (reply, result) in write_batch(
        &kv,
        &memory,
        &mut audit_last,
        vec![create, update, failing, again, links],
    ) {
        let _ = reply.send(result);
    }
    let outcome = |answer: oneshot::Receiver<Result<Output, RoutingError>>| {
        *answer
            .blocking_recv()
            .unwrap()
            .unwrap()
            .downcast::<Swap<InstanceRecord>>()
            .unwrap()
    };
    assert!(matches!(outcome(created), Swap::Written(r) if r.version == 1));
    assert!(matches!(outcome(updated), Swap::Written(r) if r.version == 2));
    assert_eq!(outcome(conflicted), Swap::Conflict);
    assert!(failed.blocking_recv().unwrap().is_err());
    let keys = scanned
        .blocking_recv()
        .unwrap()
        .unwrap()
        .downcast::<Vec<Vec<u8>>>()
        .unwrap();
    assert_eq!(*keys, vec![b"i1\nb-new".to_vec()]);
    let stored: InstanceRecord = read::record(&kv, Space::Instances, "i1").unwrap().unwrap();
    assert_eq!(stored.version, 2, "committed as the batch left it");
    assert_eq!(memory.read().unwrap().counts.instances.get("aws"), Some(&1));
}

/// A kept earlier file with no store at the path is refused, never answered with an empty store.
#[tokio::test]
async fn a_backup_without_its_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    std::fs::write(migrate::backup_of(&path), b"the earlier file").unwrap();
    let refused = EmbeddedStore::open(path.clone()).await.unwrap_err().to_string();
    assert!(refused.contains("move that file back"), "{refused}");
    assert!(!path.exists());
}

/// A key fjall cannot take (empty) is an error of that write, not a panic of the writer.
#[tokio::test]
async fn an_empty_id_is_an_error_and_the_writer_goes_on() {
    use crate::record::ResourceState;
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path().join("store")).await.unwrap();
    let record = |id: &str| crate::store::tests::instance(id, ResourceState::Ready, None);
    assert!(
        store
            .swap_instance("", Expect::Absent, Some(record("")))
            .await
            .is_err()
    );
    assert!(matches!(
        store
            .swap_instance("i1", Expect::Absent, Some(record("i1")))
            .await,
        Ok(Swap::Written(_))
    ));
    store.ping().await.unwrap();
}
