//! What one platform is served by `GET /v2/catalog`: the merged catalog filtered by the policy's
//! visibility rules, plus the logical offerings, rendered once per catalog and policy generation,
//! and compressed with gzip at most once (on the first platform call that accepts it).

use std::io::Write;
use std::sync::OnceLock;

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
    /// `body` gzip-compressed, made on first use.
    gzip: OnceLock<Bytes>,
}

impl CatalogView {
    /// The body compressed with gzip (compressed on the first call, then kept).
    pub fn gzip(&self) -> &Bytes {
        self.gzip.get_or_init(|| {
            let mut encoder = flate2::write::GzEncoder::new(
                Vec::with_capacity(self.body.len() / 8),
                flate2::Compression::default(),
            );
            // Writing to a Vec cannot fail.
            let _ = encoder.write_all(&self.body);
            Bytes::from(encoder.finish().unwrap_or_default())
        })
    }

    /// The ETag of the gzip-compressed body: the body's, marked (a different representation of
    /// the same catalog gets a different strong ETag, RFC 9110 §8.8.3).
    pub fn gzip_etag(&self) -> String {
        format!("{}-gzip\"", self.etag.trim_end_matches('"'))
    }
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
            gzip: OnceLock::new(),
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
        gzip: OnceLock::new(),
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
