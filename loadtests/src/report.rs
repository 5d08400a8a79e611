//! The report of `osb-loadtests compare`: `report.md` (tables, goals, ratios), `report.json`
//! (everything measured) and PNG charts (`throughput.png`, `latency.png`, `latency-open.png`,
//! `scale.png`), drawn with plotters.
//!
//! Ratios are always gateway against a baseline of the same run (nginx, direct): absolute numbers
//! depend on the host, ratios travel.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;
use plotters::style::FontStyle;
use serde::Serialize;
use serde_json::Value;

use crate::Result;
use crate::driver::RunStats;
use crate::procstat::Usage;
use crate::scale::Measurement;

/// One measured run, with the CPU its processes used.
#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    pub target: String,
    pub stats: RunStats,
    /// CPU of [target server, stub, driver].
    pub usage: Usage,
    /// Server CPU (the target's own process; the stub for `direct`) per call, ms.
    pub server_cpu_ms_per_call: f64,
}

/// Everything the report shows.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub started_utc: String,
    pub command: String,
    pub commit: String,
    pub host: Value,
    pub settings: Value,
    pub closed: Vec<Measured>,
    pub open: Vec<Measured>,
    pub scale: Vec<Measurement>,
    pub gateway: Value,
    pub stub_at_exit: String,
    pub notes: Vec<String>,
    pub duration_s: f64,
}

/// `gateway-bare`: the same gateway with rate limits, tracing and per-call metrics off.
const TARGETS: [&str; 4] = ["direct", "nginx", "gateway", "gateway-bare"];

fn find<'a>(runs: &'a [Measured], scenario: &str, target: &str) -> Option<&'a Measured> {
    runs.iter()
        .find(|m| m.stats.scenario.as_str() == scenario && m.target == target)
}

fn scenarios(report: &Report) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for m in &report.closed {
        let name = m.stats.scenario.as_str();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "–".to_owned()
    }
}

fn run_row(m: &Measured) -> String {
    let c = &m.stats.calls;
    let pct = |i: usize| m.usage.percent.get(i).copied().unwrap_or(0.0);
    format!(
        "| {} | {} | {:.0} | {:.0} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {:.3} | {:.0} / {:.0} / {:.0} / {:.0} |",
        m.stats.scenario.as_str(),
        m.target,
        m.stats.units.per_s,
        c.per_s,
        c.p50_ms,
        c.p90_ms,
        c.p99_ms,
        c.p999_ms,
        c.errors + m.stats.units.errors,
        m.server_cpu_ms_per_call,
        pct(0),
        pct(1),
        pct(2),
        m.usage.other_percent,
    )
}

/// The Markdown report.
pub fn markdown(report: &Report) -> String {
    let mut md = String::new();
    let host = &report.host;
    let text = |v: &serde_json::Value, k: &str| {
        v.get(k)
            .map(|x| x.to_string().trim_matches('"').to_owned())
            .unwrap_or_default()
    };
    let _ = writeln!(md, "# osb-gateway benchmark, {}\n", report.started_utc);
    let _ = writeln!(
        md,
        "Command: `{}` · commit `{}` · {:.0} s",
        report.command, report.commit, report.duration_s
    );
    let _ = writeln!(
        md,
        "Host: {} cores ({}), {}; {}; load average {} before, {} after.",
        text(host, "cores"),
        text(host, "cpu"),
        text(host, "kernel"),
        text(host, "nginx"),
        text(host, "load_average_1m_before"),
        text(host, "load_average_1m_after"),
    );
    let s = &report.settings;
    let g = &report.gateway;
    let _ = writeln!(
        md,
        "Load: closed loop {} connections × {} s after {} s warm-up; open loop at {} × the gateway's closed-loop rate, {} s, up to {} connections; driver on {} threads; stub on {} thread(s), async operations polled {} times. Service {}.",
        text(s, "connections"),
        text(s, "duration_s"),
        text(s, "warmup_s"),
        text(s, "open_share"),
        text(s, "open_duration_s"),
        text(s, "open_connections"),
        text(s, "driver_threads"),
        text(s, "stub_threads"),
        text(s, "async_polls"),
        text(s, "service"),
    );
    let _ = writeln!(
        md,
        "Gateway: {} workers, platform basic auth, policy (visibility, parameter defaults, deny rules, rate limits far above the load), schema checks, durable registry writes ({}, {} instances seeded), traces to an OTLP sink (sampling 1.0). `gateway-bare`: the same with no rate limits, no trace export and per-call metrics off (`telemetry.metrics: false`).\n",
        text(g, "workers"),
        if text(g, "store_kind") == "postgres" {
            "PostgreSQL store, group-committed, one database shared by both gateways".to_owned()
        } else {
            format!("embedded store on {}", text(g, "store_filesystem"))
        },
        text(g, "seeded_instances"),
    );
    for note in &report.notes {
        let _ = writeln!(md, "> {note}\n");
    }

    let _ = writeln!(md, "## Goals\n");
    let _ = writeln!(md, "| goal | measured | met |\n|---|---|:-:|");
    let closed = &report.closed;
    let open = &report.open;
    let tput =
        |scenario: &str, target: &str| find(closed, scenario, target).map_or(0.0, |m| m.stats.calls.per_s);
    let mut goal = |name: &str, measured: String, met: Option<bool>| {
        let mark = match met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "–",
        };
        let _ = writeln!(md, "| {name} | {measured} | {mark} |");
    };
    // Throughput against nginx: (scenario, goal, share of nginx's, what to say when not run —
    // nothing: the row is left out). The lean-hot-path goals: lifecycle ≥ 0.35 × on the way to
    // 1.0 ×; provision alone ≥ 0.5 ×.
    for (scenario, label, share, missing) in [
        (
            "lifecycle",
            "Lifecycle throughput ≥ 1.0 × nginx proxy",
            1.0,
            Some("not measured"),
        ),
        (
            "catalog",
            "Cached catalog GET ≥ 1.0 × nginx static file",
            1.0,
            Some("not measured"),
        ),
        (
            "catalog-gzip",
            "Gzip catalog GET ≥ 1.0 × nginx gzip_static",
            1.0,
            Some("not measured"),
        ),
        (
            "lifecycle",
            "Lifecycle throughput ≥ 0.35 × nginx proxy (on the way to 1.0 ×)",
            0.35,
            None,
        ),
        (
            "provision",
            "Provision PUT throughput ≥ 0.5 × nginx proxy",
            0.5,
            Some("not measured (scenario `provision` not run)"),
        ),
    ] {
        let (gw, ng) = (tput(scenario, "gateway"), tput(scenario, "nginx"));
        if gw > 0.0 && ng > 0.0 {
            goal(
                label,
                format!("{:.2} × ({gw:.0} vs {ng:.0} calls/s)", gw / ng),
                Some(gw >= share * ng),
            );
        } else if let Some(missing) = missing {
            goal(label, missing.to_owned(), None);
        }
    }
    for scenario in scenarios(report) {
        if let (Some(gw), Some(direct)) = (find(open, scenario, "gateway"), find(open, scenario, "direct")) {
            let added = gw.stats.calls.p99_ms - direct.stats.calls.p99_ms;
            goal(
                &format!("Added p99 ≤ 1 ms over direct at half saturation ({scenario})"),
                format!(
                    "{added:+.3} ms ({:.3} vs {:.3} ms)",
                    gw.stats.calls.p99_ms, direct.stats.calls.p99_ms
                ),
                Some(added <= 1.0),
            );
        }
    }
    for scenario in scenarios(report) {
        let (on, off) = (
            find(closed, scenario, "gateway"),
            find(closed, scenario, "gateway-bare"),
        );
        if let (Some(on), Some(off)) = (on, off) {
            let share = on.stats.calls.per_s / off.stats.calls.per_s.max(1e-9);
            goal(
                &format!("Limits + tracing + metrics on ≥ 0.9 × off ({scenario})"),
                format!(
                    "{share:.2} × throughput ({:.0} vs {:.0} calls/s); p99 {:.3} vs {:.3} ms",
                    on.stats.calls.per_s,
                    off.stats.calls.per_s,
                    on.stats.calls.p99_ms,
                    off.stats.calls.p99_ms
                ),
                Some(share >= 0.9),
            );
        }
    }
    let rss = g
        .get("peak_rss_mb")
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(0.0);
    goal(
        &format!(
            "Gateway RSS under load ≤ 64 MB with {} instances",
            text(g, "seeded_instances")
        ),
        format!(
            "{rss:.1} MB peak ({:.1} MB at the end)",
            g.get("rss_mb").and_then(serde_json::Value::as_f64).unwrap_or(0.0)
        ),
        Some(rss <= 64.0),
    );
    if let (Some(small), Some(large)) = (report.scale.first(), report.scale.last()) {
        if report.scale.len() > 1 {
            let growth = large.lookup_p99_us / small.lookup_p99_us.max(1e-9);
            goal(
                &format!(
                    "Registry lookup p99 flat {} → {} instances",
                    small.instances, large.instances
                ),
                format!(
                    "{:.2} → {:.2} µs ({growth:.2} ×)",
                    small.lookup_p99_us, large.lookup_p99_us
                ),
                Some(growth <= 2.0),
            );
        }
        let bytes = large.file_mb * 1_048_576.0 / large.instances.max(1) as f64;
        goal(
            &format!(
                "Store file ≤ 512 bytes per live instance at {} instances",
                large.instances
            ),
            format!("{bytes:.0} bytes ({:.0} MB)", large.file_mb),
            Some(bytes <= 512.0),
        );
        goal(
            &format!("Start-up ≤ 2 s with {} instances", large.instances),
            format!("{:.2} s (`EmbeddedStore::open`)", large.startup_s),
            Some(large.startup_s <= 2.0),
        );
        if let (Some(small_build), Some(large_build)) = (small.build_s, large.build_s)
            && report.scale.len() > 1
        {
            let per = |s: f64, n: usize| s * 1e6 / n.max(1) as f64;
            let (a, b) = (
                per(small_build, small.instances),
                per(large_build, large.instances),
            );
            goal(
                &format!(
                    "Registry build linear {} → {} instances (time per record within 1.5 ×)",
                    small.instances, large.instances
                ),
                format!("{a:.1} → {b:.1} µs per record ({:.2} ×)", b / a.max(1e-9)),
                Some(b <= 1.5 * a),
            );
        }
        let worst = large.scrape_first_ms.max(large.scrape_p99_ms);
        goal(
            &format!("/metrics scrape p99 ≤ 10 ms at {} instances", large.instances),
            format!(
                "{:.3} ms p99 ({:.2} ms for the first, which counts the records)",
                large.scrape_p99_ms, large.scrape_first_ms
            ),
            Some(worst <= 10.0),
        );
    }

    let _ = writeln!(md, "\n## Saturation (closed loop)\n");
    let _ = writeln!(
        md,
        "| scenario | target | units/s | calls/s | p50 ms | p90 ms | p99 ms | p99.9 ms | errors | server CPU ms/call | CPU % server / stub / driver / other |"
    );
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for m in closed {
        let _ = writeln!(md, "{}", run_row(m));
    }
    let _ = writeln!(
        md,
        "\nA unit is one request (catalog) or one whole cycle (lifecycle: 4 calls; mixed: provision, polls, bind, unbind, deprovision, polls). Latencies are per call, exact (nearest rank). \"server\" is the target's own process (nginx: master + workers; direct: the stub), \"stub\" the upstream stub, \"driver\" this process; CPU % is of all cores."
    );

    let _ = writeln!(md, "\n## Ratios (same run)\n");
    let _ = writeln!(
        md,
        "| scenario | gateway / nginx throughput | gateway / direct throughput | nginx / direct throughput | gateway / nginx server CPU per call |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|");
    for scenario in scenarios(report) {
        let cpu = |t: &str| find(closed, scenario, t).map_or(0.0, |m| m.server_cpu_ms_per_call);
        let _ = writeln!(
            md,
            "| {scenario} | {} | {} | {} | {} |",
            ratio(tput(scenario, "gateway"), tput(scenario, "nginx")),
            ratio(tput(scenario, "gateway"), tput(scenario, "direct")),
            ratio(tput(scenario, "nginx"), tput(scenario, "direct")),
            ratio(cpu("gateway"), cpu("nginx")),
        );
    }

    if !open.is_empty() {
        let _ = writeln!(md, "\n## Latency at half the gateway's saturation (open loop)\n");
        let _ = writeln!(
            md,
            "| scenario | target | rate units/s | calls/s | p50 ms | p90 ms | p99 ms | p99.9 ms | errors | added p99 vs direct ms |"
        );
        let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for m in open {
            let rate = match m.stats.mode {
                crate::driver::Mode::Open { rate } => rate,
                crate::driver::Mode::Closed => 0.0,
            };
            let direct =
                find(open, m.stats.scenario.as_str(), "direct").map_or(0.0, |d| d.stats.calls.p99_ms);
            let c = &m.stats.calls;
            let _ = writeln!(
                md,
                "| {} | {} | {rate:.0} | {:.0} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {:+.3} |",
                m.stats.scenario.as_str(),
                m.target,
                c.per_s,
                c.p50_ms,
                c.p90_ms,
                c.p99_ms,
                c.p999_ms,
                c.errors + m.stats.units.errors,
                c.p99_ms - direct,
            );
        }
        let _ = writeln!(
            md,
            "\nOpen loop: units start on a fixed schedule and latency runs from when a unit was due, so queueing behind a stall is charged (no coordinated omission)."
        );
    }

    if !report.scale.is_empty() {
        let _ = writeln!(
            md,
            "\n## Registry scale (embedded store, `Registry::instance_for`)\n"
        );
        let _ = writeln!(
            md,
            "| instances | build s | store MB | bytes/instance | start-up s | RSS MB after open / after lookups (process before open) | lookup p50 µs | p99 µs | p99.9 µs | max µs | miss p99 µs | /metrics first / p50 / p99 ms |"
        );
        let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
        for m in &report.scale {
            let _ = writeln!(
                md,
                "| {} | {} | {:.0} | {:.0} | {:.2} | {:.1} / {:.1} ({:.1}) | {:.2} | {:.2} | {:.2} | {:.1} | {:.2} | {:.2} / {:.3} / {:.3} |",
                m.instances,
                m.build_s.map_or_else(|| "–".to_owned(), |b| format!("{b:.1}")),
                m.file_mb,
                m.file_mb * 1_048_576.0 / m.instances.max(1) as f64,
                m.startup_s,
                m.rss_mb,
                m.lookups_rss_mb,
                m.base_rss_mb,
                m.lookup_p50_us,
                m.lookup_p99_us,
                m.lookup_p999_us,
                m.lookup_max_us,
                m.miss_p99_us,
                m.scrape_first_ms,
                m.scrape_p50_ms,
                m.scrape_p99_ms,
            );
        }
        let _ = writeln!(
            md,
            "\nBuild: the records written through `Store::swap_instance`, 1024 in flight (group commit). Start-up: `EmbeddedStore::open` in a fresh process (it loads the orphan and pending indexes and the counts; records stay on disk and are read through fjall's 8 MB block cache). RSS: that process after opening, and after the lookups. /metrics: `Metrics::render` over that registry as the admin listener serves it, 200 times; the first counts the records (then at most every 10 s), the p50 and p99 are of the others."
        );
    }

    let _ = writeln!(md, "\n## After the load\n");
    let _ = writeln!(
        md,
        "- Gateway: ready {} s after start; RSS {} MB, peak {} MB; registry {}; store {} MB; merged catalog {} bytes.",
        text(g, "ready_s"),
        text(g, "rss_mb"),
        text(g, "peak_rss_mb"),
        g.get("registry_after")
            .map(ToString::to_string)
            .unwrap_or_default(),
        text(g, "store_file_mb"),
        text(g, "catalog_bytes"),
    );
    let _ = writeln!(
        md,
        "- Stub at exit (instances and bindings created minus deleted, calls per endpoint, OTLP exports): {}",
        report.stub_at_exit
    );
    let mut errors: Vec<String> = closed
        .iter()
        .chain(open)
        .flat_map(|m| {
            m.stats
                .first_errors
                .iter()
                .map(move |e| format!("{} {}: {e}", m.stats.scenario.as_str(), m.target))
        })
        .collect();
    errors.truncate(10);
    for e in errors {
        let _ = writeln!(md, "- error: `{}`", e.replace('`', "'"));
    }
    let _ = writeln!(
        md,
        "\n## Charts\n\n![throughput](throughput.png)\n\n![latency, closed loop](latency.png)\n"
    );
    if !open.is_empty() {
        let _ = writeln!(md, "![latency, open loop](latency-open.png)\n");
    }
    if !report.scale.is_empty() {
        let _ = writeln!(md, "![registry scale](scale.png)\n");
    }
    md
}

/// Writes `report.md`, `report.json` and the charts into `out`. A chart that cannot be drawn (no
/// font) is reported in `report.md` and does not fail the run.
///
/// # Errors
/// The files cannot be written.
pub fn write(out: &Path, report: &Report) -> Result<()> {
    std::fs::write(out.join("report.json"), serde_json::to_vec_pretty(report)?)?;
    let mut md = markdown(report);
    if let Err(e) = charts(out, report) {
        let _ = writeln!(md, "\n> Charts could not be drawn: {e}");
    }
    std::fs::write(out.join("report.md"), md)?;
    Ok(())
}

/// Registers a TTF font for plotters' text (ab_glyph draws it; no system font libraries).
fn register_font() -> Result<()> {
    const CANDIDATES: [&str; 3] = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    ];
    let path = std::env::var("OSB_LOADTESTS_FONT")
        .ok()
        .into_iter()
        .chain(CANDIDATES.iter().map(|s| (*s).to_owned()))
        .find(|p| Path::new(p).is_file())
        .ok_or("no TTF font found (apt-get install fonts-dejavu-core, or set OSB_LOADTESTS_FONT)")?;
    let bytes: &'static [u8] = Box::leak(std::fs::read(path)?.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| "the font could not be read")?;
    Ok(())
}

const COLOURS: [RGBColor; 4] = [
    RGBColor(90, 90, 90),
    RGBColor(0, 150, 57),
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
];

fn colour(target: &str) -> RGBColor {
    let i = TARGETS.iter().position(|t| *t == target).unwrap_or(0);
    COLOURS.get(i).copied().unwrap_or(BLACK)
}

fn charts(out: &Path, report: &Report) -> Result<()> {
    register_font()?;
    throughput_chart(&out.join("throughput.png"), report)?;
    latency_chart(
        &out.join("latency.png"),
        &report.closed,
        "closed loop (saturation)",
    )?;
    if !report.open.is_empty() {
        latency_chart(
            &out.join("latency-open.png"),
            &report.open,
            "open loop at half the gateway's saturation",
        )?;
    }
    if !report.scale.is_empty() {
        scale_chart(&out.join("scale.png"), report)?;
    }
    Ok(())
}

fn plot_error(e: impl std::fmt::Display) -> Box<dyn std::error::Error> {
    format!("chart: {e}").into()
}

/// Calls per second per scenario, one bar per target, relative to nginx (so scenarios of very
/// different rates share one axis), with the absolute rate written on each bar.
fn throughput_chart(path: &Path, report: &Report) -> Result<()> {
    let names = scenarios(report);
    let root = BitMapBackend::new(path, (1000, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let max = report
        .closed
        .iter()
        .map(|m| relative(report, m))
        .fold(1.0_f64, f64::max)
        * 1.2;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Throughput relative to nginx (calls/s on the bars)",
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..names.len() as f64, 0.0..max)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .light_line_style(WHITE)
        .y_desc("× nginx")
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(plot_error)?;
    for (i, scenario) in names.iter().enumerate() {
        chart
            .draw_series(std::iter::once(Text::new(
                (*scenario).to_owned(),
                (i as f64 + 0.42, max * 0.97),
                ("sans-serif", 17),
            )))
            .map_err(plot_error)?;
    }
    for (i, scenario) in names.iter().enumerate() {
        for (j, target) in TARGETS.iter().enumerate() {
            let Some(m) = find(&report.closed, scenario, target) else {
                continue;
            };
            let value = relative(report, m);
            let width = 0.78 / TARGETS.len() as f64;
            let x0 = i as f64 + 0.12 + j as f64 * width;
            let x1 = x0 + width * 0.92;
            let bar = chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x0, 0.0), (x1, value)],
                    colour(target).filled(),
                )))
                .map_err(plot_error)?;
            if i == 0 {
                bar.label(*target).legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour(target).filled())
                });
            }
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{:.0}", m.stats.calls.per_s),
                    (x0, value + max * 0.02),
                    ("sans-serif", 13),
                )))
                .map_err(plot_error)?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

/// A run's calls/s divided by nginx's in the same scenario (by direct's without nginx).
fn relative(report: &Report, m: &Measured) -> f64 {
    let scenario = m.stats.scenario.as_str();
    let base = find(&report.closed, scenario, "nginx")
        .or_else(|| find(&report.closed, scenario, "direct"))
        .map_or(0.0, |b| b.stats.calls.per_s);
    if base > 0.0 {
        m.stats.calls.per_s / base
    } else {
        0.0
    }
}

/// p50/p90/p99/p99.9 per target, one panel per scenario (log scale).
fn latency_chart(path: &Path, runs: &[Measured], title: &str) -> Result<()> {
    let mut names: Vec<&'static str> = Vec::new();
    for m in runs {
        let n = m.stats.scenario.as_str();
        if !names.contains(&n) {
            names.push(n);
        }
    }
    let root = BitMapBackend::new(path, (1200, 460)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let (top, body) = root.split_vertically(40);
    top.titled(&format!("Latency per call, ms — {title}"), ("sans-serif", 22))
        .map_err(plot_error)?;
    let panels = body.split_evenly((1, names.len().max(1)));
    let labels = ["p50", "p90", "p99", "p99.9"];
    for (panel, scenario) in panels.iter().zip(&names) {
        let series: Vec<(&str, [f64; 4])> = TARGETS
            .iter()
            .filter_map(|t| {
                find(runs, scenario, t).map(|m| {
                    let c = &m.stats.calls;
                    (*t, [c.p50_ms, c.p90_ms, c.p99_ms, c.p999_ms])
                })
            })
            .collect();
        let hi = series
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .fold(0.01_f64, f64::max)
            * 1.5;
        let lo = series
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .filter(|v| *v > 0.0)
            .fold(hi, f64::min)
            / 1.5;
        let mut chart = ChartBuilder::on(panel)
            .caption(*scenario, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(56)
            .build_cartesian_2d(-0.2..3.2_f64, (lo.max(0.001)..hi).log_scale())
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_labels(4)
            .x_label_formatter(&|x| {
                labels
                    .get(x.round().max(0.0) as usize)
                    .map(|s| (*s).to_owned())
                    .unwrap_or_default()
            })
            .y_label_formatter(&|y| format!("{y:.2}"))
            .light_line_style(WHITE)
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(plot_error)?;
        for (target, values) in &series {
            let c = colour(target);
            let points: Vec<(f64, f64)> = values
                .iter()
                .enumerate()
                .map(|(i, v)| (i as f64, v.max(lo.max(0.001))))
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))
                .map_err(plot_error)?
                .label(*target)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2)));
            chart
                .draw_series(points.into_iter().map(|p| Circle::new(p, 3, c.filled())))
                .map_err(plot_error)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(plot_error)?;
    }
    root.present().map_err(plot_error)?;
    Ok(())
}

type ScaleArea<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;
type ScaleValue = fn(&crate::scale::Measurement) -> f64;

/// Lookup p99 and RSS against registry size.
fn scale_chart(path: &Path, report: &Report) -> Result<()> {
    let root = BitMapBackend::new(path, (1000, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let (left, right) = root.split_horizontally(500);
    let sizes: Vec<f64> = report.scale.iter().map(|m| m.instances.max(1) as f64).collect();
    let (xmin, xmax) = (
        sizes.iter().copied().fold(f64::MAX, f64::min) / 2.0,
        sizes.iter().copied().fold(1.0, f64::max) * 2.0,
    );
    let panels: [(&ScaleArea<'_>, &str, ScaleValue); 2] = [
        (&left, "lookup p50 / p99 µs", |m| m.lookup_p99_us),
        (&right, "RSS after lookups, MB", |m| m.lookups_rss_mb),
    ];
    for (area, title, value) in panels {
        let hi = report.scale.iter().map(value).fold(0.1, f64::max) * 1.3;
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 18))
            .margin(14)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d((xmin..xmax).log_scale(), 0.0..hi)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("instances")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(plot_error)?;
        let points: Vec<(f64, f64)> = report
            .scale
            .iter()
            .map(|m| (m.instances.max(1) as f64, value(m)))
            .collect();
        let c = colour("gateway");
        chart
            .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))
            .map_err(plot_error)?;
        chart
            .draw_series(points.into_iter().map(|p| Circle::new(p, 4, c.filled())))
            .map_err(plot_error)?;
        if title.starts_with("lookup") {
            let p50: Vec<(f64, f64)> = report
                .scale
                .iter()
                .map(|m| (m.instances.max(1) as f64, m.lookup_p50_us))
                .collect();
            chart
                .draw_series(LineSeries::new(p50, colour("direct").stroke_width(2)))
                .map_err(plot_error)?;
        }
    }
    root.present().map_err(plot_error)?;
    Ok(())
}
