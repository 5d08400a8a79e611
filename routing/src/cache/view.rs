//! What one platform is served by `GET /v2/catalog`: the merged catalog filtered by the policy's
//! visibility rules, plus the logical offerings, rendered once per catalog and policy generation.

use bytes::Bytes;
use osb_policies::PlanFacts;
use sha2::{Digest, Sha256};

use super::CatalogSnapshot;
use crate::catalog::{Catalog, Service};
use crate::policy::PolicyState;

/// The catalog one platform is served: what the policy lets it see, logical offerings included.
#[derive(Debug)]
pub struct CatalogView {
    pub(super) generation: u64,
    pub(super) policy_generation: u64,
    pub body: Bytes,
    pub etag: String,
}

/// What `platform` sees: each plan the policy shows it (a service with no visible plan is left out),
/// then the logical offerings. Reuses the merged bytes when nothing is hidden or added.
pub(super) fn render(platform: &str, snapshot: &CatalogSnapshot, policy: &PolicyState) -> CatalogView {
    let mut services = Vec::with_capacity(snapshot.catalog.services.len() + policy.offerings.len());
    let mut changed = !policy.offerings.is_empty();
    let visible = |broker: &str, service: &Service, tags: &[String]| -> Vec<crate::catalog::Plan> {
        service
            .plans
            .iter()
            .filter(|p| {
                let facts = PlanFacts {
                    broker,
                    service: &service.name,
                    plan: &p.name,
                    tags,
                    free: p.free(),
                };
                policy.policy.visibility(platform, &facts).visible
            })
            .cloned()
            .collect()
    };
    for service in &snapshot.catalog.services {
        let broker = snapshot.routes.service(&service.id).map_or("", |r| &*r.broker);
        let plans = visible(broker, service, &service.tags());
        if plans.len() != service.plans.len() {
            changed = true;
        }
        if !plans.is_empty() {
            services.push(Service {
                plans,
                ..service.clone()
            });
        }
    }
    for offering in &policy.offerings {
        let plans = visible("gateway", offering, &offering.tags());
        if !plans.is_empty() {
            services.push(Service {
                plans,
                ..offering.clone()
            });
        }
    }
    if !changed {
        return CatalogView {
            generation: snapshot.generation,
            policy_generation: policy.generation,
            body: snapshot.body.clone(),
            etag: snapshot.etag.clone(),
        };
    }
    let catalog = Catalog {
        services,
        extra: serde_json::Map::new(),
    };
    let body = Bytes::from(serde_json::to_vec(&catalog).unwrap_or_default());
    CatalogView {
        generation: snapshot.generation,
        policy_generation: policy.generation,
        etag: strong_etag(&body),
        body,
    }
}

/// `"<32 hex digits of SHA-256>"`: identical bytes give identical ETags on every replica.
pub fn strong_etag(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let mut etag = String::with_capacity(34);
    etag.push('"');
    for byte in digest.iter().take(16) {
        etag.push_str(&format!("{byte:02x}"));
    }
    etag.push('"');
    etag
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_are_strong_and_content_addressed() {
        let a = strong_etag(b"{}");
        assert_eq!(a.len(), 34);
        assert!(a.starts_with('"') && a.ends_with('"'));
        assert_eq!(a, strong_etag(b"{}"));
        assert_ne!(a, strong_etag(b"{ }"));
    }
}
