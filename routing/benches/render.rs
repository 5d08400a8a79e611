//! Benchmark: each platform's catalog view re-rendered after a policy reload (issue 4).
//!
//! `cargo bench -p osb-routing --bench render` loads the real OSBA (Azure), AWS and GCP catalogs
//! (`fixtures/catalogs`, about 2 MB as fetched, 86 services and 210 plans) into a
//! [`CatalogCache`] the way a restart does: persisted in an embedded store in a temporary folder,
//! so no upstream broker is contacted and nothing but the cache runs. Then, `RENDER_ITERATIONS`
//! times (default 200):
//!
//! 1. `set_policy` puts the 200-rule policy of `policies/benches/policy200` in force, as a reload
//!    does after validating the file (the parse + compile is timed apart);
//! 2. `view(platform)` for each of the six platforms, in a rotating order. The first view after a
//!    reload renders: visibility of every plan for that platform, the logical offerings added,
//!    `serde_json` serialization and the strong ETag (SHA-256). That is what the first
//!    `GET /v2/catalog` of each platform pays after a reload;
//! 3. one more `view` of a platform, answered from the cache (for comparison).
//!
//! A reference row renders with the empty policy, where every plan is visible and the view is
//! the merged catalog's bytes as they are (nothing is serialized).
//!
//! Prints min, median and p99 (nearest rank) per platform, with each view's size and service and
//! plan counts. Without `--bench` (`cargo test --benches`) it runs two iterations.

// A benchmark, not a request path: a broken fixture may panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[allow(dead_code)] // shared with policies/benches/decide.rs, which uses other parts of it
#[path = "../../policies/benches/policy200/mod.rs"]
mod policy200;

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use osb_config::FileFormat;
use osb_policies::Policy;
use osb_routing::CatalogCache;
use osb_routing::store::StoredCatalog;
use osb_routing::upstream::Validators;
use serde_json::Value;

/// min, median, p99 (nearest rank) of `samples`.
fn summary(samples: &mut [Duration]) -> (Duration, Duration, Duration) {
    samples.sort_unstable();
    let at = |q: f64| {
        let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        samples[rank - 1]
    };
    (samples[0], at(0.5), at(0.99))
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

/// A cache holding the three fixture catalogs, as after a restart with them persisted.
async fn cache_with_fixtures(dir: &std::path::Path) -> Arc<CatalogCache> {
    let catalogs = policy200::fixture_catalogs();
    let mut yaml = format!(
        "listen: \"127.0.0.1:0\"\nstore:\n  kind: embedded\n  path: {:?}\n\
         platforms:\n  - name: bench\n    username: bench\n    password: bench-password\nbrokers:\n",
        dir.join("store").display().to_string()
    );
    // Never contacted: no refresher is started.
    for (broker, _) in &catalogs {
        yaml.push_str(&format!(
            "  - name: {broker}\n    url: http://127.0.0.1:9\n    username: u\n    password: p\n"
        ));
    }
    let settings = osb_config::load_str(&yaml, FileFormat::Yaml, "<render bench>", dir, &HashMap::new())
        .expect("the bench configuration is valid")
        .settings;
    let store = osb_routing::store::open(&settings.store)
        .await
        .expect("store opens");
    for (broker, body) in catalogs {
        let stored = StoredCatalog {
            body: Bytes::from(body),
            validators: Validators::default(),
            fetched_at_ms: 0,
        };
        store.save_catalog(broker, stored).await.expect("catalog saved");
    }
    let brokers = Arc::new(osb_routing::Brokers::new(&settings).expect("broker clients build"));
    CatalogCache::new(&settings, store, brokers).await
}

fn main() {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let iterations: usize = match std::env::var("RENDER_ITERATIONS") {
        Ok(v) => v.parse().expect("RENDER_ITERATIONS is a number"),
        Err(_) if bench_mode => 200,
        Err(_) => 2,
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cache = runtime.block_on(cache_with_fixtures(dir.path()));
    let policies = osb_routing::Policies::default();
    let snapshot = cache.snapshot();
    assert!(
        matches!(snapshot.availability, osb_routing::Availability::Complete),
        "every broker's catalog is in: {:?}",
        snapshot.availability
    );

    // The policy: generated over the same catalogs, parsed and compiled as a reload does.
    let catalogs = policy200::fixture_catalogs();
    let plans = policy200::fixture_plans(&catalogs);
    let yaml = policy200::policy_yaml(&plans);
    let mut parse: Vec<Duration> = (0..iterations.clamp(1, 20))
        .map(|_| {
            let start = Instant::now();
            black_box(Policy::parse(&yaml, FileFormat::Yaml, "<policy200>").expect("policy compiles"));
            start.elapsed()
        })
        .collect();
    let policy = Arc::new(Policy::parse(&yaml, FileFormat::Yaml, "<policy200>").expect("policy compiles"));
    let empty = Arc::new(Policy::default());

    let platforms = policy200::PLATFORMS;
    let mut renders: Vec<Vec<Duration>> = vec![Vec::with_capacity(iterations); platforms.len()];
    let mut empty_renders: Vec<Duration> = Vec::with_capacity(iterations);
    let mut set_policy: Vec<Duration> = Vec::with_capacity(iterations);
    let mut per_reload: Vec<Duration> = Vec::with_capacity(iterations);
    let mut cached: Vec<Duration> = Vec::with_capacity(iterations);
    for i in 0..iterations {
        // Reference: the empty policy (every plan visible, no offerings): the merged bytes as they are.
        policies.set(empty.clone());
        let start = Instant::now();
        black_box(
            cache
                .view(platforms[i % platforms.len()], &policies.current())
                .expect("view"),
        );
        empty_renders.push(start.elapsed());

        let start = Instant::now();
        policies.set(policy.clone());
        set_policy.push(start.elapsed());
        let reload = Instant::now();
        for k in 0..platforms.len() {
            let index = (i + k) % platforms.len();
            let start = Instant::now();
            black_box(cache.view(platforms[index], &policies.current()).expect("view"));
            renders[index].push(start.elapsed());
        }
        per_reload.push(reload.elapsed());
        let start = Instant::now();
        black_box(
            cache
                .view(platforms[i % platforms.len()], &policies.current())
                .expect("view"),
        );
        cached.push(start.elapsed());
    }
    let (hits, misses) = cache.view_counts();
    assert_eq!(
        misses as usize,
        iterations * (platforms.len() + 1),
        "every first view renders"
    );
    assert_eq!(hits as usize, iterations, "the second view comes from the cache");

    let merged: Value = serde_json::from_slice(&snapshot.body).expect("merged catalog is JSON");
    let count = |catalog: &Value| {
        let services = catalog["services"].as_array().map_or(&[][..], Vec::as_slice);
        let plans: usize = services
            .iter()
            .map(|s| s["plans"].as_array().map_or(0, Vec::len))
            .sum();
        (services.len(), plans)
    };
    let (services, plan_count) = count(&merged);
    println!(
        "merged catalog: {services} services, {plan_count} plans, {} KB; policy: {} rules, parse + compile \
         median {} ms; set_policy median {} µs; {iterations} reloads",
        snapshot.body.len() / 1024,
        policy200::RULES,
        ms(summary(&mut parse).1),
        summary(&mut set_policy).1.as_micros(),
    );
    println!(
        "\nfirst view per platform after a reload (render + serialize + ETag), ms:\n{:<12} {:>8} {:>8} {:>8} {:>9} {:>8} {:>6}  etag",
        "platform", "min", "median", "p99", "services", "plans", "KB"
    );
    let mut etags = HashMap::new();
    for (platform, samples) in platforms.iter().zip(renders.iter_mut()) {
        let view = cache.view(platform, &policies.current()).expect("view");
        let catalog: Value = serde_json::from_slice(&view.body).expect("view is JSON");
        let (services, plans) = count(&catalog);
        let (min, median, p99) = summary(samples);
        println!(
            "{platform:<12} {:>8} {:>8} {:>8} {services:>9} {plans:>8} {:>6}  {}",
            ms(min),
            ms(median),
            ms(p99),
            view.body.len() / 1024,
            view.etag.get(..13).unwrap_or_default()
        );
        etags.insert(view.etag.clone(), *platform);
    }
    assert_eq!(
        etags.len(),
        platforms.len(),
        "each platform's view has its own ETag"
    );
    let (min, median, p99) = summary(&mut per_reload);
    println!(
        "{:<12} {:>8} {:>8} {:>8}   (all six views after one reload)",
        "all six",
        ms(min),
        ms(median),
        ms(p99)
    );
    let (min, median, p99) = summary(&mut empty_renders);
    println!(
        "{:<12} {:>8} {:>8} {:>8}   (reference: empty policy, the merged bytes as they are)",
        "no policy",
        ms(min),
        ms(median),
        ms(p99)
    );
    let (min, median, p99) = summary(&mut cached);
    println!(
        "{:<12} {:>8} {:>8} {:>8}   (a second view, from the cache)",
        "cached",
        ms(min),
        ms(median),
        ms(p99)
    );
}
