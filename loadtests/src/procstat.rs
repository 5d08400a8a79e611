//! CPU time and memory of processes, and how busy the host is, read from `/proc` (Linux).
//!
//! A benchmark on a small machine shares its cores between the load driver, the target and the
//! stub: the CPU time each spent per request is the steadiest figure, and "other" (the host's busy
//! time not spent by the processes of the run) says whether something else disturbed it.

use std::process::{Command, Stdio};
use std::time::Instant;

/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ; 100 on every Linux we run on).
const TICKS_PER_SEC: f64 = 100.0;

/// CPU seconds (user + system) used so far by `pid` (0 when it is gone).
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime 15.
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / TICKS_PER_SEC
}

/// The children of `pid` (e.g. nginx's workers), found by scanning `/proc/*/stat` for their parent.
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| {
                    let (_, rest) = stat.rsplit_once(')')?;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// `VmRSS` and `VmHWM` (peak) of `pid`, in MB.
pub fn rss_mb(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Busy and total jiffies of all cores since boot.
fn host_jiffies() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().next() else {
        return (0.0, 0.0);
    };
    let values: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: f64 = values.iter().sum();
    // idle and iowait are fields 4 and 5.
    let idle = values.get(3).copied().unwrap_or(0.0) + values.get(4).copied().unwrap_or(0.0);
    (total - idle, total)
}

/// A snapshot to measure a run between.
#[derive(Debug, Clone)]
pub struct Snapshot {
    at: Instant,
    host_busy: f64,
    host_total: f64,
    /// CPU seconds per watched group (e.g. target, stub, driver).
    groups: Vec<f64>,
}

/// CPU used between two snapshots.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Usage {
    pub wall_s: f64,
    /// CPU seconds per group.
    pub cpu_s: Vec<f64>,
    /// Share of all cores, per group (%).
    pub percent: Vec<f64>,
    /// Share of all cores busy with anything else (%).
    pub other_percent: f64,
}

/// Takes a snapshot of the host and of each group of pids.
pub fn snapshot(groups: &[Vec<u32>]) -> Snapshot {
    let (host_busy, host_total) = host_jiffies();
    Snapshot {
        at: Instant::now(),
        host_busy,
        host_total,
        groups: groups
            .iter()
            .map(|pids| pids.iter().map(|&p| cpu_seconds(p)).sum())
            .collect(),
    }
}

impl Snapshot {
    /// What happened since `self`, for the same groups.
    pub fn usage_until(&self, later: &Snapshot) -> Usage {
        let wall = (later.at - self.at).as_secs_f64().max(1e-9);
        let cores = std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64);
        let cpu: Vec<f64> = self
            .groups
            .iter()
            .zip(&later.groups)
            .map(|(a, b)| (b - a).max(0.0))
            .collect();
        let percent: Vec<f64> = cpu.iter().map(|c| c / (wall * cores) * 100.0).collect();
        let host_total = (later.host_total - self.host_total).max(1e-9);
        let host_busy_percent = (later.host_busy - self.host_busy).max(0.0) / host_total * 100.0;
        Usage {
            wall_s: wall,
            other_percent: (host_busy_percent - percent.iter().sum::<f64>()).max(0.0),
            cpu_s: cpu,
            percent,
        }
    }
}

/// The 1-minute load average.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

/// Sends `signal` (a name: TERM, QUIT, …) to `pid` with kill(1) (no unsafe code in this crate).
pub fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg("-s")
        .arg(signal)
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
