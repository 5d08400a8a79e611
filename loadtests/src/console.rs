//! The console's page weight and latency with a large registry (`osb-loadtests console`, run by
//! `loadtests/run console`).
//!
//! Seeds an embedded store with N instances (100k by default, as `scale-build` writes them) and
//! 100k audit records (one platform call each), starts the three demo brokers serving the real
//! OSBA, AWS and GCP catalogs and the gateway in this process (admin credentials on, a policy with
//! rules), then
//! fetches each console page one request at a time as a browser does (`Accept-Encoding: gzip`,
//! Basic credentials): bytes transferred, the page's HTML size, and latency p50, p99 and max.
//! The admin listener's `/healthz` is the baseline in the same run: the floor of one request on
//! that listener. Prints a Markdown table with each page against the goals (≤ 100 KB transferred,
//! p99 ≤ 50 ms).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use osb_demo::{DEMO_CATALOGS, DemoBroker};
use osb_routing::Store;
use osb_routing::audit::{AuditKind, AuditOutcome, AuditRecord};
use osb_routing::store::EmbeddedStore;

use crate::Result;
use crate::driver::percentile;
use crate::scale::{instance_id, seed};

const ADMIN_USER: &str = "bench";
const ADMIN_PASSWORD: &str = "bench-console-pw";
/// Audit records seeded (platform calls on the seeded instances).
const AUDIT_RECORDS: usize = 100_000;
/// The goals of the issue.
const MAX_KB: f64 = 100.0;
const MAX_P99_MS: f64 = 50.0;

/// `console` options.
#[derive(Debug, Clone, clap::Args)]
pub struct ConsoleArgs {
    /// Instances in the registry.
    #[arg(long, default_value_t = 100_000)]
    pub instances: usize,
    /// Timed requests per page (after 5 warm-up requests).
    #[arg(long, default_value_t = 200)]
    pub requests: usize,
}

/// One page's figures.
struct Row {
    page: String,
    status: u16,
    transferred_kb: f64,
    html_kb: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

/// `console`.
pub fn run(args: &ConsoleArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(bench(args))
}

/// A platform call on seeded instance `i`, as the audit log keeps it.
fn audit_record(i: usize) -> AuditRecord {
    AuditRecord {
        seq: 0,
        at_ms: osb_routing::clock::now_ms(),
        kind: AuditKind::Platform,
        actor: "loadtests".to_owned(),
        user: Some(format!("user-{}", i % 50)),
        operation: "provision".to_owned(),
        instance_id: Some(instance_id(i)),
        binding_id: None,
        broker: Some("aws".to_owned()),
        service_id: None,
        plan_id: None,
        policy: Some("allow".to_owned()),
        upstream_status: Some(201),
        status: 201,
        outcome: AuditOutcome::Succeeded,
        error: None,
        reason: None,
        request_identity: Some(uuid::Uuid::new_v4().to_string()),
        duration_ms: 3,
    }
}

/// Seeds the store at `path`: `instances` records and [`AUDIT_RECORDS`] audit records.
async fn seed_store(path: &Path, instances: usize) -> Result<Duration> {
    let started = Instant::now();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(path.to_path_buf()).await?);
    seed(store.clone(), instances, "loadtests").await?;
    for chunk in (0..AUDIT_RECORDS).collect::<Vec<_>>().chunks(500) {
        store
            .append_audits(chunk.iter().map(|i| audit_record(*i)).collect())
            .await?;
    }
    store.quiesce().await;
    drop(store);
    Ok(started.elapsed())
}

async fn bench(args: &ConsoleArgs) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("osb-loadtests-console-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store = dir.join("store");
    let seeded = seed_store(&store, args.instances).await?;
    eprintln!(
        "seeded {} instances and {AUDIT_RECORDS} audit records in {:.1} s",
        args.instances,
        seeded.as_secs_f64()
    );

    let mut brokers = Vec::new();
    for (name, _, catalog) in DEMO_CATALOGS {
        brokers.push(DemoBroker::start(name, Bytes::from_static(catalog)).await?);
    }
    let policy = dir.join("policy.yaml");
    std::fs::write(
        &policy,
        "visibility:\n  rules:\n    - {name: no-gcp-for-bench, platforms: [loadtests], brokers: [gcp], effect: hide}\n\
         deny:\n  - name: no-dev-provisions\n    operations: [provision]\n    when: {context.namespace: [dev]}\n    reason: dev namespaces use the shared instances\n",
    )?;
    let mut yaml = format!(
        "listen: \"127.0.0.1:0\"\nadmin:\n  listen: \"127.0.0.1:0\"\n  username: {ADMIN_USER}\n  password: {ADMIN_PASSWORD}\n\
         store:\n  path: {:?}\npolicy_file: {:?}\nplatforms:\n  - name: loadtests\n    username: lt\n    password: lt-pw\nbrokers:\n",
        store.display().to_string(),
        policy.display().to_string(),
    );
    for broker in &brokers {
        yaml.push_str(&broker.config_entry());
    }
    let settings = osb_config::load_str(
        &yaml,
        osb_config::FileFormat::Yaml,
        "<console bench>",
        &dir,
        &HashMap::new(),
    )
    .map_err(|e| e.to_string())?
    .settings;
    let listeners = osb_gateway::Listeners::bind(&settings)?;
    let admin = listeners.admin_addr().ok_or("no admin listener")?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let gateway = tokio::spawn(osb_gateway::serve(listeners, settings, async move {
        let _ = stopped.await;
    }));

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{ADMIN_USER}:{ADMIN_PASSWORD}"));
    let base = format!("http://{admin}");
    let ready = Instant::now();
    while http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .ok()
        != Some(200)
    {
        if gateway.is_finished() {
            return Err(format!("the gateway stopped: {:?}", gateway.await).into());
        }
        if ready.elapsed() > Duration::from_secs(30) {
            return Err("the gateway did not become ready in 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let one = instance_id(args.instances / 2);
    let pages = [
        "/healthz".to_owned(),
        "/ui".to_owned(),
        "/ui/marketplace?platform=loadtests".to_owned(),
        "/ui/marketplace?platform=loadtests&q=sql".to_owned(),
        "/ui/instances".to_owned(),
        "/ui/instances?broker=aws&state=ready".to_owned(),
        format!("/ui/instances?cursor={}", instance_id(args.instances / 3)),
        "/ui/instances?platform=nobody".to_owned(),
        format!("/ui/instances/{one}"),
        "/ui/bindings".to_owned(),
        "/ui/audit".to_owned(),
        "/ui/audit?operation=provision&outcome=succeeded".to_owned(),
        "/ui/audit?actor=nobody".to_owned(),
        format!("/ui/audit/rows?after={}", AUDIT_RECORDS - 10),
        "/ui/catalog".to_owned(),
        "/ui/policy".to_owned(),
        "/ui/assets/console.css".to_owned(),
    ];
    let mut rows = Vec::new();
    for page in &pages {
        let get = |gzip: bool| {
            let mut request = http
                .get(format!("{base}{page}"))
                .header("Authorization", format!("Basic {token}"));
            if gzip {
                request = request.header("Accept-Encoding", "gzip");
            }
            request.send()
        };
        let plain = get(false).await?;
        let status = plain.status().as_u16();
        let html = plain.bytes().await?.len();
        for _ in 0..5 {
            get(true).await?.bytes().await?;
        }
        let mut times = Vec::with_capacity(args.requests);
        let mut transferred = 0;
        for _ in 0..args.requests {
            let started = Instant::now();
            let body = get(true).await?.bytes().await?;
            times.push(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
            transferred = body.len();
        }
        times.sort_unstable();
        let ms = |us: u64| us as f64 / 1000.0;
        rows.push(Row {
            page: page.replace(&one, "{id}"),
            status,
            transferred_kb: transferred as f64 / 1024.0,
            html_kb: html as f64 / 1024.0,
            p50_ms: ms(percentile(&times, 50.0)),
            p99_ms: ms(percentile(&times, 99.0)),
            max_ms: ms(times.last().copied().unwrap_or(0)),
        });
    }
    let _ = stop.send(());
    let _ = gateway.await;
    for broker in &brokers {
        broker.stop().await;
    }
    let _ = std::fs::remove_dir_all(&dir);

    println!(
        "Console pages with {} instances and {AUDIT_RECORDS} audit records in the registry, {} requests per page, one at a time, gzip accepted. Baseline: `/healthz` on the same listener.\n",
        args.instances, args.requests
    );
    println!(
        "| page | status | transferred KB | HTML KB | p50 ms | p99 ms | max ms | p99 over baseline | goals (≤ {MAX_KB} KB, p99 ≤ {MAX_P99_MS} ms) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|:-:|");
    let baseline = rows.first().map_or(0.0, |r| r.p99_ms);
    for row in &rows {
        let met = row.transferred_kb <= MAX_KB && row.p99_ms <= MAX_P99_MS;
        println!(
            "| `{}` | {} | {:.1} | {:.1} | {:.2} | {:.2} | {:.2} | +{:.2} ms | {} |",
            row.page,
            row.status,
            row.transferred_kb,
            row.html_kb,
            row.p50_ms,
            row.p99_ms,
            row.max_ms,
            row.p99_ms - baseline,
            if met { "yes" } else { "**no**" }
        );
    }
    Ok(())
}
