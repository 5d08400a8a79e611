//! Registry transitions against the real stores: every test runs against the embedded and the
//! PostgreSQL store (`embedded::…`, `postgres::…`; see `store::testing`).

use crate::store::testing::{Backend, TestStore, both_backends};

use super::*;

both_backends!(
    provision_outcomes,
    retries_conflicts_and_other_platforms,
    concurrent_creates_of_one_id_have_one_winner,
    updates_apply_the_plan_only_on_success,
    bindings_follow_their_instance,
    recovery_orphans_unfinished_creates_and_idles_the_rest,
    adopted_instances_are_ready_and_adopting_twice_is_harmless,
    abandoning_forgets_whatever_state,
    a_finish_decides_on_what_changed_since_its_admission,
);

/// A registry on a fresh store of `backend`; the store's place lives as long as the second value.
async fn registry(backend: Backend) -> (Registry, TestStore) {
    let place = TestStore::new(backend).await;
    (Registry::new(place.open().await), place)
}

fn new_instance(id: &str, platform: &str, fingerprint: &str) -> NewInstance {
    NewInstance {
        instance_id: id.into(),
        platform: platform.into(),
        broker: "aws".into(),
        service_id: "gs".into(),
        plan_id: "gp".into(),
        upstream_service_id: "us".into(),
        upstream_plan_id: "up".into(),
        fingerprint: fingerprint.into(),
        context: None,
        quotas: Vec::new(),
    }
}

fn failed() -> Outcome {
    Outcome::Failed {
        reason: "upstream answered 500".into(),
    }
}

async fn provisioned(registry: &Registry, id: &str) -> InstanceRecord {
    let admission = registry
        .begin_provision(&new_instance(id, "k8s", "f1"))
        .await
        .unwrap();
    registry
        .finish_provision(&admission, &Outcome::Done)
        .await
        .unwrap()
        .unwrap()
}

async fn provision_outcomes(backend: Backend) {
    let (registry, _place) = registry(backend).await;
    let admission = registry
        .begin_provision(&new_instance("i1", "k8s", "f1"))
        .await
        .unwrap();
    assert!(matches!(&admission, Admission::Fresh(r) if r.state == ResourceState::Creating));
    assert_eq!(
        registry.store().pending().await.unwrap(),
        vec![RecordRef::Instance("i1".into())]
    );
    let record = registry
        .finish_provision(&admission, &Outcome::Done)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((record.state, record.operation), (ResourceState::Ready, None));
    assert!(registry.store().pending().await.unwrap().is_empty());

    // 4xx: the intent is dropped, nothing remains.
    let admission = registry
        .begin_provision(&new_instance("i2", "k8s", "f1"))
        .await
        .unwrap();
    registry
        .finish_provision(&admission, &Outcome::Rejected)
        .await
        .unwrap();
    assert_eq!(registry.store().instance("i2").await.unwrap(), None);

    // 5xx: orphaned, queued for mitigation, invisible to the platform.
    let admission = registry
        .begin_provision(&new_instance("i3", "k8s", "f1"))
        .await
        .unwrap();
    registry.finish_provision(&admission, &failed()).await.unwrap();
    let record = registry.store().instance("i3").await.unwrap().unwrap();
    assert!(matches!(&record.state, ResourceState::Orphaned(m) if m.reason.contains("500")));
    assert_eq!(
        registry.store().orphans().await.unwrap(),
        vec![RecordRef::Instance("i3".into())]
    );
    assert_eq!(registry.instance_for("i3", "k8s").await.unwrap(), None);
    let retry = registry.begin_provision(&new_instance("i3", "k8s", "f1")).await;
    assert!(matches!(retry, Err(RoutingError::Concurrency(_))), "{retry:?}");
    registry
        .forget_orphan(&RecordRef::Instance("i3".into()))
        .await
        .unwrap();
    assert!(registry.store().orphans().await.unwrap().is_empty());

    // 202: in progress, then last_operation decides.
    let admission = registry
        .begin_provision(&new_instance("i4", "k8s", "f1"))
        .await
        .unwrap();
    let accepted = Outcome::Accepted {
        operation: Some("op 1".into()),
    };
    let record = registry
        .finish_provision(&admission, &accepted)
        .await
        .unwrap()
        .unwrap();
    let op = record.operation.unwrap();
    assert_eq!(
        (op.phase, op.upstream_operation.as_deref()),
        (Phase::Accepted, Some("op 1"))
    );
    registry.observe_instance("i4", Polled::InProgress).await.unwrap();
    registry.observe_instance("i4", Polled::Succeeded).await.unwrap();
    assert_eq!(
        registry.store().instance("i4").await.unwrap().unwrap().state,
        ResourceState::Ready
    );
}

async fn retries_conflicts_and_other_platforms(backend: Backend) {
    let (registry, _place) = registry(backend).await;
    provisioned(&registry, "i1").await;
    let retry = registry
        .begin_provision(&new_instance("i1", "k8s", "f1"))
        .await
        .unwrap();
    assert!(matches!(retry, Admission::Retry(_)));
    // A failing retry never orphans an instance the platform was told exists.
    registry.finish_provision(&retry, &failed()).await.unwrap();
    assert_eq!(
        registry.store().instance("i1").await.unwrap().unwrap().state,
        ResourceState::Ready
    );

    let different = registry.begin_provision(&new_instance("i1", "k8s", "f2")).await;
    assert!(matches!(different, Err(RoutingError::Conflict(_))));
    let stranger = registry.begin_provision(&new_instance("i1", "cf", "f1")).await;
    assert!(matches!(stranger, Err(RoutingError::Conflict(_))));
    assert_eq!(registry.instance_for("i1", "cf").await.unwrap(), None);
    assert!(matches!(
        registry.begin_deprovision("i1", "cf", "d").await,
        Err(RoutingError::Gone(_))
    ));
    assert!(matches!(
        registry.begin_update("i1", "cf", None, "u").await,
        Err(RoutingError::NotFound(_))
    ));

    // An operation in flight: a second, different mutation meets ConcurrencyError.
    let update = registry.begin_update("i1", "k8s", None, "u1").await.unwrap();
    assert!(matches!(
        registry.begin_deprovision("i1", "k8s", "d").await,
        Err(RoutingError::Concurrency(_))
    ));
    assert!(matches!(
        registry.begin_update("i1", "k8s", None, "u2").await,
        Err(RoutingError::Concurrency(_))
    ));
    assert!(matches!(
        registry.begin_update("i1", "k8s", None, "u1").await,
        Ok(Admission::Retry(_))
    ));
    registry.finish_update(&update, &Outcome::Rejected).await.unwrap();
    assert!(matches!(
        registry.begin_deprovision("i1", "k8s", "d").await,
        Ok(Admission::Fresh(_))
    ));
}

async fn concurrent_creates_of_one_id_have_one_winner(backend: Backend) {
    let (registry, _place) = registry(backend).await;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let registry = registry.clone();
            tokio::spawn(async move {
                registry
                    .begin_provision(&new_instance("same", "k8s", &format!("f{i}")))
                    .await
            })
        })
        .collect();
    let mut fresh = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(Admission::Fresh(_)) => fresh += 1,
            Err(RoutingError::Conflict(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(fresh, 1);
}

async fn updates_apply_the_plan_only_on_success(backend: Backend) {
    let (registry, _place) = registry(backend).await;
    provisioned(&registry, "i1").await;
    let change = Some(("gp2".to_owned(), "up2".to_owned()));
    let update = registry
        .begin_update("i1", "k8s", change.clone(), "u")
        .await
        .unwrap();
    registry.finish_update(&update, &failed()).await.unwrap();
    let record = registry.store().instance("i1").await.unwrap().unwrap();
    assert_eq!(
        (record.plan_id.as_str(), record.operation),
        ("gp", None),
        "5xx on update: unchanged, not orphaned"
    );

    let update = registry
        .begin_update("i1", "k8s", change.clone(), "u")
        .await
        .unwrap();
    registry
        .finish_update(&update, &Outcome::Accepted { operation: None })
        .await
        .unwrap();
    assert_eq!(
        registry.store().instance("i1").await.unwrap().unwrap().plan_id,
        "gp",
        "old plan while polling"
    );
    registry.observe_instance("i1", Polled::Succeeded).await.unwrap();
    let record = registry.store().instance("i1").await.unwrap().unwrap();
    assert_eq!(
        (record.plan_id.as_str(), record.upstream_plan_id.as_str()),
        ("gp2", "up2")
    );
}

async fn bindings_follow_their_instance(backend: Backend) {
    let (registry, _place) = registry(backend).await;
    let creating = registry
        .begin_provision(&new_instance("i1", "k8s", "f1"))
        .await
        .unwrap();
    let bind = |id: &str, fp: &str| NewBinding {
        binding_id: id.into(),
        instance_id: "i1".into(),
        platform: "k8s".into(),
        fingerprint: fp.into(),
        quotas: Vec::new(),
    };
    assert!(matches!(
        registry.begin_bind(&bind("b1", "f")).await,
        Err(RoutingError::Concurrency(_))
    ));
    registry
        .finish_provision(&creating, &Outcome::Done)
        .await
        .unwrap();

    let b1 = registry.begin_bind(&bind("b1", "f")).await.unwrap();
    let record = registry.finish_bind(&b1, &Outcome::Done).await.unwrap().unwrap();
    assert_eq!(
        (record.broker.as_str(), record.upstream_plan_id.as_str()),
        ("aws", "up")
    );
    assert!(matches!(
        registry.begin_bind(&bind("b1", "other")).await,
        Err(RoutingError::Conflict(_))
    ));

    let b2 = registry.begin_bind(&bind("b2", "f")).await.unwrap();
    registry
        .finish_bind(
            &b2,
            &Outcome::Failed {
                reason: "timeout".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        registry.store().orphans().await.unwrap(),
        vec![RecordRef::Binding("b2".into())]
    );
    assert_eq!(registry.binding_for("i1", "b2", "k8s").await.unwrap(), None);

    let unbind = registry.begin_unbind("i1", "b1", "k8s", "u").await.unwrap();
    registry.finish_unbind(&unbind, &Outcome::Done).await.unwrap();
    assert_eq!(registry.store().binding("b1").await.unwrap(), None);

    // Deleting the instance takes its remaining bindings with it, orphans included.
    let b3 = registry.begin_bind(&bind("b3", "f")).await.unwrap();
    registry.finish_bind(&b3, &Outcome::Done).await.unwrap();
    let deprovision = registry.begin_deprovision("i1", "k8s", "d").await.unwrap();
    registry
        .finish_deprovision(&deprovision, &Outcome::Gone)
        .await
        .unwrap();
    assert!(registry.store().instances().await.unwrap().is_empty());
    assert!(registry.store().bindings().await.unwrap().is_empty());
    assert!(registry.store().orphans().await.unwrap().is_empty());
}

async fn recovery_orphans_unfinished_creates_and_idles_the_rest(backend: Backend) {
    let place = TestStore::new(backend).await;
    {
        let registry = Registry::new(place.open().await);
        registry
            .begin_provision(&new_instance("creating", "k8s", "f"))
            .await
            .unwrap();
        provisioned(&registry, "updating").await;
        registry.begin_update("updating", "k8s", None, "u").await.unwrap();
        let accepted = registry
            .begin_provision(&new_instance("accepted", "k8s", "f"))
            .await
            .unwrap();
        registry
            .finish_provision(
                &accepted,
                &Outcome::Accepted {
                    operation: Some("x".into()),
                },
            )
            .await
            .unwrap();
        // "crash": nothing more is recorded
    }
    let registry = Registry::new(place.open().await);
    assert_eq!(registry.recover().await.unwrap(), 2);
    let creating = registry.store().instance("creating").await.unwrap().unwrap();
    assert!(matches!(creating.state, ResourceState::Orphaned(_)));
    let updating = registry.store().instance("updating").await.unwrap().unwrap();
    assert_eq!((updating.state, updating.operation), (ResourceState::Ready, None));
    let accepted = registry.store().instance("accepted").await.unwrap().unwrap();
    assert_eq!(
        accepted.operation.unwrap().phase,
        Phase::Accepted,
        "acknowledged 202s are left for polling"
    );
    assert!(registry.store().pending().await.unwrap().is_empty());
}

async fn adopted_instances_are_ready_and_adopting_twice_is_harmless(backend: Backend) {
    let (registry, _place) = registry(backend).await;
    let new = new_instance("adopted", "k8s", "f");
    let Adopted::Created(record) = registry.adopt(&new).await.unwrap() else {
        panic!("not created");
    };
    assert_eq!(
        (record.state.clone(), record.operation.clone()),
        (ResourceState::Ready, None)
    );
    assert_eq!(
        registry.instance_for("adopted", "k8s").await.unwrap(),
        Some(record.clone())
    );
    assert_eq!(
        registry.adopt(&new).await.unwrap(),
        Adopted::Existing(record.clone())
    );
    let mut elsewhere = new_instance("adopted", "cf", "f");
    elsewhere.broker = "azure".into();
    assert!(matches!(
        registry.adopt(&elsewhere).await,
        Err(RoutingError::Conflict(_))
    ));
    // It is managed like any other: deprovision through the registry.
    let admission = registry.begin_deprovision("adopted", "k8s", "d").await.unwrap();
    registry
        .finish_deprovision(&admission, &Outcome::Done)
        .await
        .unwrap();
    assert_eq!(registry.store().instance("adopted").await.unwrap(), None);
}

async fn abandoning_forgets_whatever_state(backend: Backend) {
    let (registry, _place) = registry(backend).await;
    // Stuck in a deprovision the upstream keeps failing, with a binding.
    provisioned(&registry, "stuck").await;
    let bind = registry
        .begin_bind(&NewBinding {
            binding_id: "b1".into(),
            instance_id: "stuck".into(),
            platform: "k8s".into(),
            fingerprint: "f".into(),
            quotas: Vec::new(),
        })
        .await
        .unwrap();
    registry.finish_bind(&bind, &Outcome::Done).await.unwrap();
    registry.begin_deprovision("stuck", "k8s", "d").await.unwrap();
    let (instance, bindings) = registry.abandon_instance("stuck").await.unwrap().unwrap();
    assert_eq!(instance.instance_id, "stuck");
    assert_eq!(
        bindings.iter().map(|b| b.binding_id.as_str()).collect::<Vec<_>>(),
        ["b1"]
    );
    assert_eq!(registry.store().instance("stuck").await.unwrap(), None);
    assert_eq!(registry.store().binding("b1").await.unwrap(), None);
    assert!(registry.store().pending().await.unwrap().is_empty());
    assert_eq!(registry.abandon_instance("stuck").await.unwrap(), None);

    // An orphan the mitigation worker cannot get rid of.
    let admission = registry
        .begin_provision(&new_instance("orphan", "k8s", "f"))
        .await
        .unwrap();
    registry.finish_provision(&admission, &failed()).await.unwrap();
    assert_eq!(registry.store().orphans().await.unwrap().len(), 1);
    registry.abandon_instance("orphan").await.unwrap().unwrap();
    assert!(registry.store().orphans().await.unwrap().is_empty());

    // One binding alone.
    provisioned(&registry, "i2").await;
    let bind = registry
        .begin_bind(&NewBinding {
            binding_id: "b2".into(),
            instance_id: "i2".into(),
            platform: "k8s".into(),
            fingerprint: "f".into(),
            quotas: Vec::new(),
        })
        .await
        .unwrap();
    registry.finish_bind(&bind, &failed()).await.unwrap();
    let removed = registry.abandon_binding("b2").await.unwrap().unwrap();
    assert!(matches!(removed.state, ResourceState::Orphaned(_)));
    assert_eq!(registry.abandon_binding("b2").await.unwrap(), None);
    assert!(registry.store().instance("i2").await.unwrap().is_some());
}

/// A call finishes on the record it admitted without reading it again; when someone changed the
/// record in between, its write conflicts and it decides again on the record as it is.
async fn a_finish_decides_on_what_changed_since_its_admission(backend: Backend) {
    let (registry, _place) = registry(backend).await;
    let admission = registry
        .begin_provision(&new_instance("i1", "k8s", "f1"))
        .await
        .unwrap();
    let admitted = admission.record().clone();
    // Meanwhile (say, recovery on another replica): the create is resolved as ready.
    let changed = InstanceRecord {
        state: ResourceState::Ready,
        operation: None,
        ..admitted.clone()
    };
    let swapped = registry
        .store()
        .swap_instance("i1", Expect::Version(admitted.version), Some(changed))
        .await
        .unwrap();
    assert!(matches!(swapped, Swap::Written(_)));
    let kept = registry
        .finish_provision(&admission, &Outcome::Done)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        kept.version,
        admitted.version + 1,
        "kept as the other writer left it"
    );
    assert_eq!((kept.state, kept.operation), (ResourceState::Ready, None));

    // Gone meanwhile (an operator abandoned it): nothing is written back.
    let admission = registry
        .begin_provision(&new_instance("i2", "k8s", "f1"))
        .await
        .unwrap();
    let version = admission.record().version;
    let deleted = registry
        .store()
        .swap_instance("i2", Expect::Version(version), None)
        .await
        .unwrap();
    assert!(matches!(deleted, Swap::Deleted));
    assert_eq!(
        registry
            .finish_provision(&admission, &Outcome::Done)
            .await
            .unwrap(),
        None
    );
    assert_eq!(registry.store().instance("i2").await.unwrap(), None);
}
