//! Registry scale: the embedded store with 10k, 100k, 1M instances — start-up time, memory and
//! lookup latency, through the gateway's own APIs (`EmbeddedStore`, `Registry`).
//!
//! - `osb-loadtests scale-build --path FILE --instances N` writes N ready instance records (what
//!   a provision leaves behind) with `Store::swap_instance`, many in flight so the writer thread
//!   group-commits them, exactly as the gateway writes them.
//! - `osb-loadtests scale-measure --path FILE` runs in a fresh process: it opens the store (the
//!   gateway's start-up: the orphan and pending indexes and the counts are loaded; records stay
//!   in the file), reads its RSS, then
//!   times `Registry::instance_for` lookups of random existing ids (and of missing ids), one by
//!   one, then renders `/metrics` as the gateway does (`Metrics::render` over that registry) and
//!   times each scrape, and prints one JSON object.
//!
//! Instance ids are UUIDv5 of `scale/<i>`, so the measuring process knows which ids exist without
//! listing them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use osb_routing::Registry;
use osb_routing::registry::{InstanceRecord, ResourceState};
use osb_routing::store::{EmbeddedStore, Expect, Store, Swap};
use serde::Serialize;
use serde_json::json;

use crate::Result;
use crate::driver::percentile;

/// Writes in flight while building (the writer thread commits up to 256 per transaction).
const IN_FLIGHT: usize = 1024;
/// Lookups timed per measurement.
const LOOKUPS: usize = 200_000;
/// `/metrics` renders timed per measurement.
const SCRAPES: usize = 200;

/// `scale-build` options.
#[derive(Debug, Clone, clap::Args)]
pub struct BuildArgs {
    /// The store folder (created; must not exist).
    #[arg(long)]
    pub path: PathBuf,
    /// Instances to write.
    #[arg(long)]
    pub instances: usize,
    /// Owner platform of the records.
    #[arg(long, default_value = "loadtests")]
    pub platform: String,
}

/// `scale-measure` options.
#[derive(Debug, Clone, clap::Args)]
pub struct MeasureArgs {
    /// The store folder `scale-build` wrote.
    #[arg(long)]
    pub path: PathBuf,
    /// How many instances it holds (ids 0..N).
    #[arg(long)]
    pub instances: usize,
    /// Owner platform of the records.
    #[arg(long, default_value = "loadtests")]
    pub platform: String,
}

/// The id of instance `i`.
pub fn instance_id(i: usize) -> String {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, format!("scale/{i}").as_bytes()).to_string()
}

/// A ready instance as a synchronous provision leaves it.
fn record(i: usize, platform: &str) -> InstanceRecord {
    let now = osb_routing::clock::now_ms();
    InstanceRecord {
        instance_id: instance_id(i),
        platform: platform.to_owned(),
        broker: "aws".to_owned(),
        service_id: "0f4bd9a4-7a8c-5bb8-9a3b-2a33c8f0d6b1".to_owned(),
        plan_id: "7a0e6f58-4b0e-5b0c-8f6a-3c4d2d1e9f11".to_owned(),
        upstream_service_id: "2a6ea5ef-5a2d-4a1c-9e7b-6d3f8a1c4b22".to_owned(),
        upstream_plan_id: "5b8e3c1d-9f2a-4e6b-8c7d-1a2b3c4d5e6f".to_owned(),
        fingerprint: format!("{:032x}", i as u128 * 0x9e37_79b9_7f4a_7c15),
        context: Some(json!({"platform": "kubernetes", "namespace": format!("team-{}", i % 100)})),
        state: ResourceState::Ready,
        operation: None,
        created_ms: now,
        updated_ms: now,
        version: 0,
        quotas: Vec::new(),
    }
}

/// Writes `count` instances into `store` (ids `0..count`) through the store API.
///
/// # Errors
/// A write failed or conflicted (the ids must be new).
pub async fn seed(store: Arc<dyn Store>, count: usize, platform: &str) -> Result<()> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..IN_FLIGHT.min(count.max(1)) {
        let store = store.clone();
        let next = next.clone();
        let platform = platform.to_owned();
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, String>(());
                }
                let record = record(i, &platform);
                match store
                    .swap_instance(&record.instance_id.clone(), Expect::Absent, Some(record))
                    .await
                {
                    Ok(Swap::Written(_)) => {}
                    Ok(other) => return Err(format!("instance {i}: unexpected {other:?}")),
                    Err(e) => return Err(format!("instance {i}: {e}")),
                }
            }
        });
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    Ok(())
}

/// Opens `path`, seeds it and closes it again (the file lock is released on return).
///
/// # Errors
/// As [`seed`], or the store cannot be opened.
pub async fn build(path: &Path, count: usize, platform: &str) -> Result<Duration> {
    let started = Instant::now();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(path.to_path_buf()).await?);
    seed(store.clone(), count, platform).await?;
    store.quiesce().await;
    drop(store);
    Ok(started.elapsed())
}

/// `scale-build`.
pub fn run_build(args: &BuildArgs) -> Result<()> {
    if args.path.exists() {
        return Err(format!("{} exists already", args.path.display()).into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let took = runtime.block_on(build(&args.path, args.instances, &args.platform))?;
    let bytes = crate::engines::disk_bytes(&args.path);
    println!(
        "{}",
        json!({"instances": args.instances, "build_s": took.as_secs_f64(), "file_mb": bytes as f64 / 1048576.0})
    );
    Ok(())
}

/// What `scale-measure` prints.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Measurement {
    pub instances: usize,
    /// `EmbeddedStore::open`: indexes and counts loaded (records stay in the file).
    pub startup_s: f64,
    /// RSS after opening, MB (the process holds nothing else of size).
    pub rss_mb: f64,
    /// RSS before opening (the runtime, the binary), MB.
    pub base_rss_mb: f64,
    /// RSS after the lookups (the store's block cache warmed by random reads), MB.
    #[serde(default)]
    pub lookups_rss_mb: f64,
    pub file_mb: f64,
    pub lookups: usize,
    pub lookup_p50_us: f64,
    pub lookup_p99_us: f64,
    pub lookup_p999_us: f64,
    pub lookup_max_us: f64,
    /// The same for ids that do not exist (a platform polling a deleted instance).
    pub miss_p99_us: f64,
    #[serde(default)]
    pub build_s: Option<f64>,
    /// `/metrics` rendered over this registry: the first scrape (which counts the records), then
    /// p50 and p99 of the others, and the exposition's size.
    #[serde(default)]
    pub scrape_first_ms: f64,
    #[serde(default)]
    pub scrape_p50_ms: f64,
    #[serde(default)]
    pub scrape_p99_ms: f64,
    #[serde(default)]
    pub scrape_kb: f64,
}

/// `scale-measure`.
pub fn run_measure(args: &MeasureArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let measured = runtime.block_on(measure(&args.path, args.instances, &args.platform))?;
    println!("{}", serde_json::to_string(&measured)?);
    Ok(())
}

async fn measure(path: &Path, instances: usize, platform: &str) -> Result<Measurement> {
    let me = std::process::id();
    let (base_rss, _) = crate::procstat::rss_mb(me);
    let started = Instant::now();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(path.to_path_buf()).await?);
    let startup = started.elapsed();
    let (rss, _) = crate::procstat::rss_mb(me);
    let registry = Registry::new(store.clone());

    // Random existing ids (a fixed xorshift, so runs are comparable), prepared before timing.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let count = instances.max(1);
    let ids: Vec<String> = (0..LOOKUPS.min(count * 4).max(1000))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            instance_id((x % count as u64) as usize)
        })
        .collect();
    let mut samples = Vec::with_capacity(ids.len());
    let mut found = 0usize;
    for id in &ids {
        let t = Instant::now();
        let record = registry.instance_for(id, platform).await?;
        samples.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
        found += usize::from(record.is_some());
    }
    if instances > 0 && found != ids.len() {
        return Err(format!(
            "{} of {} looked-up instances were missing",
            ids.len() - found,
            ids.len()
        )
        .into());
    }
    let mut misses = Vec::with_capacity(10_000);
    for i in 0..10_000 {
        let id = instance_id(count + 1_000_000_000 + i);
        let t = Instant::now();
        let record = registry.instance_for(&id, platform).await?;
        misses.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
        if record.is_some() {
            return Err("a missing id was found".into());
        }
    }
    let (lookups_rss, _) = crate::procstat::rss_mb(me);
    samples.sort_unstable();
    misses.sort_unstable();
    let us = |n: u64| n as f64 / 1000.0;
    let scrapes = scrapes(store.clone(), &registry, platform).await?;
    drop(registry);
    store.quiesce().await;
    Ok(Measurement {
        instances,
        startup_s: startup.as_secs_f64(),
        rss_mb: rss,
        base_rss_mb: base_rss,
        lookups_rss_mb: lookups_rss,
        file_mb: crate::engines::disk_bytes(path) as f64 / 1048576.0,
        lookups: samples.len(),
        lookup_p50_us: us(percentile(&samples, 50.0)),
        lookup_p99_us: us(percentile(&samples, 99.0)),
        lookup_p999_us: us(percentile(&samples, 99.9)),
        lookup_max_us: us(samples.last().copied().unwrap_or_default()),
        miss_p99_us: us(percentile(&misses, 99.0)),
        build_s: None,
        scrape_first_ms: scrapes.first_ms,
        scrape_p50_ms: scrapes.p50_ms,
        scrape_p99_ms: scrapes.p99_ms,
        scrape_kb: scrapes.kb,
    })
}

struct Scrapes {
    first_ms: f64,
    p50_ms: f64,
    p99_ms: f64,
    kb: f64,
}

/// `/metrics` as the gateway renders it over `registry` (one configured broker, no catalog),
/// [`SCRAPES`] times.
async fn scrapes(store: Arc<dyn Store>, registry: &Registry, platform: &str) -> Result<Scrapes> {
    let yaml = format!(
        "platforms:\n  - name: {platform}\n    username: {platform}\n    password: scale-pw\n\
         brokers:\n  - name: scale\n    url: http://127.0.0.1:9\n"
    );
    let settings = osb_config::load_str(
        &yaml,
        osb_config::FileFormat::Yaml,
        "scale",
        Path::new("."),
        &std::collections::HashMap::new(),
    )
    .map_err(|e| e.to_string())?
    .settings;
    let brokers = Arc::new(osb_routing::Brokers::new(&settings)?);
    let catalog = osb_routing::CatalogCache::new(&settings, store, brokers.clone()).await;
    let metrics = osb_gateway::telemetry::metrics::Metrics::new();
    metrics.declare(&[platform.to_owned()], &["scale".to_owned()]);
    let mut times = Vec::with_capacity(SCRAPES);
    let mut bytes = 0;
    for _ in 0..SCRAPES {
        let t = Instant::now();
        bytes = metrics
            .render(&catalog, &brokers, registry, &osb_policies::Policy::default())
            .await
            .len();
        times.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    let first = times.remove(0);
    times.sort_unstable();
    let ms = |n: u64| n as f64 / 1e6;
    Ok(Scrapes {
        first_ms: ms(first),
        p50_ms: ms(percentile(&times, 50.0)),
        p99_ms: ms(percentile(&times, 99.0)),
        kb: bytes as f64 / 1024.0,
    })
}

/// `registry-bench` options.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryBenchArgs {
    /// The store folder (created).
    #[arg(long, required_unless_present = "postgres")]
    pub path: Option<PathBuf>,
    /// Run on the PostgreSQL store of this server instead (a database of its own is created for
    /// the run and dropped after it).
    #[arg(long)]
    pub postgres: Option<String>,
    /// Lifecycles in flight.
    #[arg(long, short = 'c', default_value_t = 32)]
    pub concurrency: usize,
    /// Measured time.
    #[arg(long, short = 'd', default_value = "5s", value_parser = crate::driver::parse_duration)]
    pub duration: Duration,
}

/// `registry-bench`: the gateway's registry write path alone, no HTTP: `concurrency` tasks each
/// loop the eight registry steps of provision → bind → unbind → deprovision (each `begin_*` writes
/// a durable intent, each `finish_*` the outcome), as the handlers call them. Prints cycles per
/// second, durable writes per second and the process's CPU time per write (JSON).
pub fn run_registry_bench(args: &RegistryBenchArgs) -> Result<()> {
    use osb_routing::registry::{NewBinding, NewInstance, Outcome};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let database = match &args.postgres {
            Some(server) => Some(crate::pgstore::ScratchDatabase::create(server).await?),
            None => None,
        };
        let store: Arc<dyn Store> = match (&database, &args.path) {
            (Some(database), _) => database.open_store().await?,
            (None, Some(path)) => Arc::new(EmbeddedStore::open(path.clone()).await?),
            (None, None) => return Err("--path or --postgres".into()),
        };
        let registry = Registry::new(store.clone());
        let until = Instant::now() + args.duration;
        let cpu_before = crate::procstat::cpu_seconds(std::process::id());
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..args.concurrency.max(1) {
            let registry = registry.clone();
            tasks.spawn(async move {
                let mut cycles = 0u64;
                while Instant::now() < until {
                    let instance_id = uuid::Uuid::new_v4().to_string();
                    let binding_id = uuid::Uuid::new_v4().to_string();
                    let new = NewInstance {
                        instance_id: instance_id.clone(),
                        platform: "loadtests".to_owned(),
                        broker: "aws".to_owned(),
                        service_id: "s".to_owned(),
                        plan_id: "p".to_owned(),
                        upstream_service_id: "us".to_owned(),
                        upstream_plan_id: "up".to_owned(),
                        fingerprint: "f".to_owned(),
                        context: Some(json!({"platform": "kubernetes", "namespace": "loadtests"})),
                        quotas: Vec::new(),
                    };
                    let admitted = registry.begin_provision(&new).await?;
                    registry.finish_provision(&admitted, &Outcome::Done).await?;
                    let bind = NewBinding {
                        binding_id: binding_id.clone(),
                        instance_id: instance_id.clone(),
                        platform: "loadtests".to_owned(),
                        fingerprint: "b".to_owned(),
                        quotas: Vec::new(),
                    };
                    let admitted = registry.begin_bind(&bind).await?;
                    registry.finish_bind(&admitted, &Outcome::Done).await?;
                    let admitted = registry
                        .begin_unbind(&instance_id, &binding_id, "loadtests", "u")
                        .await?;
                    registry.finish_unbind(&admitted, &Outcome::Done).await?;
                    let admitted = registry.begin_deprovision(&instance_id, "loadtests", "d").await?;
                    registry.finish_deprovision(&admitted, &Outcome::Done).await?;
                    cycles += 1;
                }
                Ok::<_, osb_routing::RoutingError>(cycles)
            });
        }
        let mut cycles = 0;
        while let Some(done) = tasks.join_next().await {
            cycles += done??;
        }
        let wall = started.elapsed().as_secs_f64();
        let cpu = crate::procstat::cpu_seconds(std::process::id()) - cpu_before;
        drop(registry);
        store.quiesce().await;
        drop(store);
        if let Some(database) = &database {
            database.drop_database().await?;
        }
        Ok::<_, Box<dyn std::error::Error>>(json!({
            "store": if database.is_some() { "postgres" } else { "embedded" },
            "concurrency": args.concurrency,
            "cycles_per_s": cycles as f64 / wall,
            "writes_per_s": cycles as f64 * 8.0 / wall,
            "cpu_us_per_write": cpu * 1e6 / (cycles as f64 * 8.0).max(1.0),
        }))
    })?;
    println!("{result}");
    Ok(())
}
