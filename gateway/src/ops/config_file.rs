//! The configuration file, watched: what can change without a restart is applied when the file
//! changes (looked at once a second, see `watch`) or on SIGHUP, after the whole file is validated again.
//!
//! Applied in place: the platforms (added, removed, their credentials). Everything else the file
//! holds (brokers, listeners, store, catalog and telemetry settings) is read at start only: a change
//! there is logged as needing a restart and left out, and the platforms' change still applies. A
//! file that does not validate changes nothing (every problem logged). The policy file and the
//! secret files have watchers of their own.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::watch;
use crate::edge::auth::Platforms;
use crate::telemetry::metrics::Metrics;

/// Top-level keys applied without a restart.
const LIVE_KEYS: &[&str] = &["platforms", "policy_file"];

/// Watches `path` (see the module docs) with [`watch::poll`]. Nothing to watch for a
/// configuration without a file (the demo's). Abort the handle to stop.
pub fn spawn_watcher(path: &str, platforms: Arc<Platforms>, metrics: Arc<Metrics>) -> Option<JoinHandle<()>> {
    let path = PathBuf::from(path);
    let mut applied = std::fs::read_to_string(&path).ok()?;
    let mut seen = stamp(&path);
    watch::poll("osb-config-watch", "configuration file", move |forced| {
        let now = stamp(&path);
        if now == seen && !forced {
            return;
        }
        seen = now;
        let Ok(text) = std::fs::read_to_string(&path) else {
            return;
        };
        if text == applied && !forced {
            return;
        }
        reload(&path, &applied, &text, &platforms, &metrics);
        applied = text;
    })
}

/// What tells that the file changed: its modification time and length (a Kubernetes ConfigMap
/// update swaps a symlink: the metadata followed through it changes too).
fn stamp(path: &std::path::Path) -> Option<(std::time::SystemTime, u64)> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}

/// Validates `text` (the file now) and applies what can be applied.
fn reload(path: &std::path::Path, before: &str, text: &str, platforms: &Platforms, metrics: &Metrics) {
    let env: std::collections::HashMap<String, String> = std::env::vars().collect();
    let format = osb_config::FileFormat::Yaml;
    let base_dir = path
        .parent()
        .map_or_else(|| PathBuf::from("."), std::path::Path::to_path_buf);
    let origin = path.display().to_string();
    let loaded = match osb_config::load_str(text, format_of(path).unwrap_or(format), &origin, &base_dir, &env)
    {
        Ok(loaded) => loaded,
        Err(e) => {
            warn!(file = %origin, problems = %e, "Configuration file rejected; the configuration in force is unchanged.");
            return;
        }
    };
    let restart = changed_keys(before, text, path)
        .into_iter()
        .filter(|key| !LIVE_KEYS.contains(&key.as_str()))
        .collect::<Vec<_>>();
    if !restart.is_empty() {
        warn!(
            file = %origin,
            keys = %restart.join(", "),
            "Configuration changed where a restart is needed; those changes wait for the next start."
        );
    }
    let new = &loaded.settings.platforms;
    let old = platforms.current();
    let names =
        |list: &[osb_config::PlatformSettings]| list.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
    let same = old.len() == new.len()
        && old.iter().zip(new).all(|(a, b)| {
            a.name == b.name
                && a.basic.as_ref().map(|c| (&c.username, &c.password))
                    == b.basic.as_ref().map(|c| (&c.username, &c.password))
                && a.bearer_token == b.bearer_token
                && a.password_file == b.password_file
                && a.bearer_token_file == b.bearer_token_file
        });
    if !same {
        platforms.replace(new);
        let brokers: Vec<String> = loaded.settings.brokers.iter().map(|b| b.name.clone()).collect();
        metrics.declare(&names(new), &brokers);
        info!(
            file = %origin,
            before = %names(&old).join(","),
            after = %names(new).join(","),
            "Platforms reloaded from the configuration file."
        );
    }
}

/// The file's format by its extension (YAML unless `.toml`).
fn format_of(path: &std::path::Path) -> Option<osb_config::FileFormat> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => Some(osb_config::FileFormat::Toml),
        _ => None,
    }
}

/// The top-level keys whose values differ between two texts of the file.
fn changed_keys(before: &str, after: &str, path: &std::path::Path) -> Vec<String> {
    let format = format_of(path).unwrap_or(osb_config::FileFormat::Yaml);
    let table = |text: &str| {
        config::Config::builder()
            .add_source(config::File::from_str(text, format))
            .build()
            .ok()
            .and_then(|c| c.cache.into_table().ok())
            .unwrap_or_default()
    };
    let (before, after) = (table(before), table(after));
    let mut keys: Vec<String> = before
        .keys()
        .chain(after.keys())
        .filter(|key| before.get(*key) != after.get(*key))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}
