//! The embedded store's own tests (the backend-independent ones are in `store::tests`): catalogs
//! across a reopen, and files written by earlier versions.

use super::*;

#[tokio::test]
async fn catalogs_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/gw.redb");
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

/// A file of an earlier version: records as JSON, no counts table. It opens with its records
/// counted once, reads as it is, and a record changed is rewritten in the binary format.
#[tokio::test]
async fn files_of_earlier_versions_are_counted_once_and_read() {
    use crate::record::ResourceState;
    use crate::store::tests as store_tests;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.redb");
    let instance = |id: &str, state: ResourceState| InstanceRecord {
        version: 1,
        ..store_tests::instance(id, state, None)
    };
    let orphaned = store_tests::orphaned("r");
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(INSTANCES).unwrap();
            for record in [instance("i1", ResourceState::Ready), instance("i2", orphaned)] {
                let bytes = serde_json::to_vec(&record).unwrap();
                table
                    .insert(record.instance_id.as_str(), bytes.as_slice())
                    .unwrap();
            }
            txn.open_table(ORPHANS).unwrap().insert("i:i2", ()).unwrap();
        }
        txn.commit().unwrap();
    }
    let store = EmbeddedStore::open(path.clone()).await.unwrap();
    assert_eq!(store.counts().await.unwrap().instances.get("aws"), Some(&2));
    assert_eq!(
        store.orphans().await.unwrap(),
        vec![RecordRef::Instance("i2".into())]
    );
    let i1 = store.instance("i1").await.unwrap().unwrap();
    assert_eq!(i1, instance("i1", ResourceState::Ready));
    let mut changed = i1.clone();
    changed.plan_id = "gp2".into();
    store
        .swap_instance("i1", Expect::Version(1), Some(changed))
        .await
        .unwrap();
    drop(store);
    let store = EmbeddedStore::open(path.clone()).await.unwrap();
    assert_eq!(store.counts().await.unwrap().instances.get("aws"), Some(&2));
    assert_eq!(store.instance("i1").await.unwrap().unwrap().plan_id, "gp2");
    drop(store);
    let db = Database::create(&path).unwrap();
    let txn = db.begin_read().unwrap();
    let table = txn.open_table(INSTANCES).unwrap();
    assert_eq!(
        table.get("i1").unwrap().unwrap().value()[0],
        1,
        "rewritten in format 1"
    );
    assert_eq!(table.get("i2").unwrap().unwrap().value()[0], b'{', "untouched");
}
