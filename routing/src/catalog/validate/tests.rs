//! Validation against the real fixture catalogs and against each way a catalog can be broken.

use serde_json::json;

use super::*;
use crate::catalog::Catalog;

pub(crate) fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../fixtures/catalogs/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn validate(value: serde_json::Value) -> Validated {
    validate_catalog("b", &serde_json::to_vec(&value).unwrap()).unwrap()
}

fn service(name: &str, id: &str, plans: serde_json::Value) -> serde_json::Value {
    json!({"name": name, "id": id, "description": "d", "bindable": true, "plans": plans})
}

fn plan(name: &str, id: &str) -> serde_json::Value {
    json!({"name": name, "id": id, "description": "d"})
}

#[test]
fn real_catalogs_are_accepted_whole_and_round_trip_unchanged() {
    for (file, services, plans) in [
        ("azure-osba-catalog.json", 39, 96),
        ("aws-servicebroker-catalog.json", 27, 57),
        ("gcp-service-broker-catalog.json", 20, 57),
        ("osbapi-spec-example-catalog.json", 1, 2),
    ] {
        let body = fixture(file);
        let validated = validate_catalog("b", &body).unwrap();
        assert_eq!(validated.dropped, vec![], "{file}");
        assert_eq!(validated.services.len(), services, "{file}");
        assert_eq!(
            validated.services.iter().map(|s| s.plans.len()).sum::<usize>(),
            plans,
            "{file}"
        );
        let original: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let again = serde_json::to_value(Catalog {
            services: validated.services,
            ..Catalog::default()
        })
        .unwrap();
        assert_eq!(
            again, original,
            "{file}: every field survives, nulls and string defaults included"
        );
    }
}

#[test]
fn not_a_catalog_fails_the_fetch() {
    for body in [&b"<html>oops</html>"[..], b"[]", b"{\"services\": 3}", b"{}", b""] {
        let err = validate_catalog("b", body).unwrap_err();
        assert!(matches!(err, RoutingError::InvalidCatalog { .. }), "{body:?}");
    }
}

#[test]
fn each_broken_service_costs_only_itself() {
    let v = validate(json!({"services": [
        service("good", "s1", json!([plan("p", "p1")])),
        service("no-plans", "s2", json!([])),
        {"name": "no-id", "description": "d", "plans": [plan("p", "p3")]},
        service("good", "s4", json!([plan("p", "p4")])),
        service("dup-id", "s1", json!([plan("p", "p5")])),
        service("plan-dup-name", "s6", json!([plan("p", "p6"), plan("p", "p7")])),
        service("plan-reuses-id", "s8", json!([plan("p", "p1")])),
        {"name": "bad-bindable", "id": "s9", "description": "d", "bindable": "yes", "plans": [plan("p", "p9")]},
        "not even an object",
        service("wrong-types", "s10", json!([{"name": 1, "id": "p10", "description": "d"}])),
        service("fine-too", "s11", json!([plan("p", "p11")])),
    ]}));
    let kept: Vec<_> = v.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(kept, ["good", "plan-dup-name", "fine-too"]);
    assert_eq!(
        v.services[1].plans.len(),
        1,
        "only the repeated plan name is dropped"
    );
    let dropped: Vec<_> = v
        .dropped
        .iter()
        .map(|d| (d.what.as_str(), d.reason.as_str()))
        .collect();
    assert_eq!(dropped[0], ("service \"no-plans\"", "no plans"));
    assert!(
        dropped[1].0 == "service \"no-id\"" && dropped[1].1.contains("missing field `id`"),
        "{dropped:?}"
    );
    assert_eq!(dropped[2], ("service \"good\"", "duplicate service name"));
    assert_eq!(dropped[3], ("service \"dup-id\"", "duplicate id \"s1\""));
    assert_eq!(
        dropped[4],
        ("plan \"p\" of service \"plan-dup-name\"", "duplicate plan name")
    );
    assert_eq!(
        dropped[5],
        ("plan \"p\" of service \"plan-reuses-id\"", "duplicate id \"p1\"")
    );
    assert_eq!(dropped[6], ("service \"plan-reuses-id\"", "no valid plans"));
    assert_eq!(
        dropped[7],
        ("service \"bad-bindable\"", "bindable is not a boolean")
    );
    assert_eq!(dropped[8].0, "service #8");
    assert_eq!(dropped[9].0, "service \"wrong-types\"");
    assert_eq!(dropped.len(), 10);
}
