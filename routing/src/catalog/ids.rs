//! Gateway service and plan ids.
//!
//! `ids: rewrite` mints `UUIDv5(ID_NAMESPACE, "<broker name>/<upstream id>")`: deterministic, so
//! every replica and every restart computes the same ids, and the same upstream registered under two
//! broker names gets two disjoint sets. `ids: keep` passes the upstream id through.

use osb_config::IdMode;
use uuid::Uuid;

/// The UUIDv5 namespace of osb-gateway ids (the bytes of "osb-gateway-ids1"). Never change it:
/// every platform's registrations depend on it.
pub const ID_NAMESPACE: Uuid = Uuid::from_bytes(*b"osb-gateway-ids1");

/// The id the gateway publishes for `upstream_id` of `broker`.
pub fn gateway_id(broker: &str, mode: IdMode, upstream_id: &str) -> String {
    match mode {
        IdMode::Keep => upstream_id.to_owned(),
        IdMode::Rewrite => {
            let name = format!("{broker}/{upstream_id}");
            Uuid::new_v5(&ID_NAMESPACE, name.as_bytes()).to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewritten_ids_are_stable_and_distinct_per_broker() {
        let a = gateway_id("azure", IdMode::Rewrite, "997b8372-8dac-40ac-ae65-758b4a5075a5");
        // Pinned: changing it would orphan every instance platforms created.
        assert_eq!(a, "336323c1-0f35-5c41-a8e6-2e2ebf90e4b7"); // = Python uuid5(NS, "azure/<id>")
        assert_eq!(
            a,
            gateway_id("azure", IdMode::Rewrite, "997b8372-8dac-40ac-ae65-758b4a5075a5")
        );
        assert_ne!(
            a,
            gateway_id(
                "azure-eu",
                IdMode::Rewrite,
                "997b8372-8dac-40ac-ae65-758b4a5075a5"
            )
        );
        assert_eq!(Uuid::parse_str(&a).unwrap().get_version_num(), 5);
        assert_eq!(gateway_id("azure", IdMode::Keep, "x-1"), "x-1");
    }
}
