//! The process's own series, read from `/proc/self` when Prometheus scrapes (the names of the
//! Prometheus client libraries' process collector): `process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_virtual_memory_bytes`, `process_open_fds`,
//! `process_threads`, `process_start_time_seconds`; and `osb_gateway_build_info{version, commit}`.
//!
//! Off Linux (no `/proc`) the process series stay at zero. CPU time is counted in the kernel's
//! clock ticks, 100 per second on every Linux architecture the gateway ships for (`USER_HZ`).

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Kernel clock ticks per second (`USER_HZ`).
const TICKS_PER_SECOND: f64 = 100.0;

/// The version and the commit the binary was built from (`osb-gateway --version`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const COMMIT: &str = env!("OSB_GATEWAY_COMMIT");

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    commit: &'static str,
}

/// See the module docs.
#[derive(Debug)]
pub struct ProcessMetrics {
    cpu: Counter<f64, AtomicU64>,
    /// CPU seconds already counted (a counter takes increments).
    cpu_seen: Mutex<f64>,
    resident: Gauge,
    virtual_memory: Gauge,
    open_fds: Gauge,
    threads: Gauge,
    start_time: Gauge<f64, AtomicU64>,
}

impl ProcessMetrics {
    /// Registers the series in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: VERSION,
                commit: COMMIT,
            })
            .set(1);
        registry.register(
            "osb_gateway_build_info",
            "The gateway's version and commit (always 1)",
            build,
        );
        let metrics = ProcessMetrics {
            cpu: Counter::default(),
            cpu_seen: Mutex::new(0.0),
            resident: Gauge::default(),
            virtual_memory: Gauge::default(),
            open_fds: Gauge::default(),
            threads: Gauge::default(),
            start_time: Gauge::default(),
        };
        registry.register(
            "process_cpu_seconds",
            "User and system CPU time spent, in seconds",
            metrics.cpu.clone(),
        );
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            metrics.resident.clone(),
        );
        registry.register(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            metrics.virtual_memory.clone(),
        );
        registry.register(
            "process_open_fds",
            "Open file descriptors",
            metrics.open_fds.clone(),
        );
        registry.register("process_threads", "OS threads", metrics.threads.clone());
        registry.register(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch, in seconds",
            metrics.start_time.clone(),
        );
        metrics
    }

    /// Reads `/proc/self` again.
    pub fn update(&self) {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // The command name is in parentheses and may hold spaces: fields count from after it.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        // Field n of proc(5) is fields[n - 3].
        let field = |n: usize| -> u64 { fields.get(n - 3).and_then(|v| v.parse().ok()).unwrap_or(0) };
        let cpu = (field(14) + field(15)) as f64 / TICKS_PER_SECOND;
        {
            let mut seen = self
                .cpu_seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if cpu > *seen {
                self.cpu.inc_by(cpu - *seen);
                *seen = cpu;
            }
        }
        self.threads.set(gauge(field(20)));
        self.virtual_memory.set(gauge(field(23)));
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let rss_kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        self.resident.set(gauge(rss_kb * 1024));
        let fds = std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count);
        self.open_fds.set(gauge(fds as u64));
        let boot = std::fs::read_to_string("/proc/stat")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if boot > 0 {
            self.start_time
                .set(boot as f64 + field(22) as f64 / TICKS_PER_SECOND);
        }
    }
}

fn gauge(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
