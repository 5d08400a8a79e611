//! The policy file in force: loaded at start, reloaded on SIGHUP, when the file changes, or on
//! `POST /admin/policy/reload`.
//!
//! A reload reads and checks the whole new file (syntax, every rule, brokers named by offerings);
//! only a policy without problems replaces the one in force, atomically (`osb_routing::Policies`), so in-flight calls finish on the policy they started with. An invalid file changes
//! nothing: the old policy stays, and the problems are logged and kept for `GET /admin/policy`.
//! The file is watched by polling its content once a second (robust to editors' rename-on-save and
//! to Kubernetes ConfigMap symlink swaps).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use osb_config::{FileFormat, Problem, Settings};
use osb_policies::{Policy, PolicyError};
use osb_routing::Policies;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;
use tracing::{error, info};

use crate::telemetry::metrics::Metrics;

/// Reads and checks the policy file at `path` against the configured platforms and brokers.
///
/// # Errors
/// Every problem: unreadable file, syntax, rules, names of platforms or brokers not configured.
pub fn load(path: &Path, settings: &Settings) -> Result<Policy, Vec<Problem>> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Problem {
            origin: origin.clone(),
            key: String::new(),
            message: format!("cannot read the policy file: {e}"),
        }]
    })?;
    parse(&text, path, &Names::of(settings))
}

/// The platforms and brokers configured: the names a policy may use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    pub platforms: Vec<String>,
    pub brokers: Vec<String>,
}

impl Names {
    pub fn of(settings: &Settings) -> Self {
        Names {
            platforms: settings.platforms.iter().map(|p| p.name.clone()).collect(),
            brokers: settings.brokers.iter().map(|b| b.name.clone()).collect(),
        }
    }
}

fn parse(text: &str, path: &Path, names: &Names) -> Result<Policy, Vec<Problem>> {
    let origin = path.display().to_string();
    let format = if path.extension().is_some_and(|e| e == "toml") {
        FileFormat::Toml
    } else {
        FileFormat::Yaml
    };
    let policy = Policy::parse(text, format, &origin).map_err(|PolicyError::Invalid(problems)| problems)?;
    let brokers: Vec<&str> = names.brokers.iter().map(String::as_str).collect();
    let platforms: Vec<&str> = names.platforms.iter().map(String::as_str).collect();
    let problems = policy.check_names(&platforms, &brokers, &origin);
    if problems.is_empty() {
        Ok(policy)
    } else {
        Err(problems)
    }
}

/// What `GET /admin/policy` shows.
#[derive(Debug, Clone, Serialize, Default)]
pub struct PolicyStatus {
    pub path: Option<String>,
    /// Generation of the policy in force (0: none loaded, everything allowed).
    pub generation: u64,
    pub rules: usize,
    pub offerings: usize,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    /// Problems of the last rejected file, one line each; cleared by a good reload.
    pub last_error: Option<Vec<String>>,
}

/// Owns the policy file and its reloads.
pub struct PolicyFile {
    path: Option<PathBuf>,
    /// What the policy may name (a configuration reload changes it).
    names: ArcSwap<Names>,
    policies: Arc<Policies>,
    metrics: Arc<Metrics>,
    digest: ArcSwap<Option<[u8; 32]>>,
    status: ArcSwap<PolicyStatus>,
    ok: AtomicU64,
    failed: AtomicU64,
}

impl std::fmt::Debug for PolicyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn rule_count(policy: &Policy) -> usize {
    policy.visibility.len()
        + policy.parameters.len()
        + policy.deny.len()
        + policy.offerings.iter().map(|o| o.placement.len()).sum::<usize>()
}

impl PolicyFile {
    /// Loads the configured policy file (if any) and puts it in force.
    ///
    /// # Errors
    /// The problems of an invalid file: the gateway does not start on a policy it cannot read.
    pub fn start(
        settings: Arc<Settings>,
        policies: Arc<Policies>,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, Vec<Problem>> {
        let file = Arc::new(PolicyFile {
            path: settings.policy_file.clone(),
            names: ArcSwap::from_pointee(Names::of(&settings)),
            policies,
            metrics,
            digest: ArcSwap::from_pointee(None),
            status: ArcSwap::from_pointee(PolicyStatus::default()),
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        });
        if let Some(path) = file.path.clone() {
            let text = std::fs::read(&path).map_err(|e| {
                vec![Problem {
                    origin: path.display().to_string(),
                    key: String::new(),
                    message: format!("cannot read the policy file: {e}"),
                }]
            })?;
            file.apply(&path, &text)?;
        }
        Ok(file)
    }

    /// Whether the policy in force would still be valid with `names` configured (a configuration
    /// reload asks before it changes the platforms or brokers). The file on disk is not read: a
    /// rejected file waits for its own fix and does not hold the configuration back.
    ///
    /// # Errors
    /// The problems the file would have.
    pub fn check_names(&self, names: &Names) -> Result<(), Vec<Problem>> {
        let origin = self
            .path
            .as_ref()
            .map_or_else(String::new, |p| p.display().to_string());
        let brokers: Vec<&str> = names.brokers.iter().map(String::as_str).collect();
        let platforms: Vec<&str> = names.platforms.iter().map(String::as_str).collect();
        let problems = self
            .policies
            .current()
            .policy
            .check_names(&platforms, &brokers, &origin);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// Puts `names` in force and reads the policy file again against them (a policy that named a
    /// platform or broker just added now applies).
    pub fn set_names(&self, names: Names) {
        if **self.names.load() == names {
            return;
        }
        self.names.store(Arc::new(names));
        // An invalid file is logged and kept in the status by the reload itself.
        let _ = self.reload(true);
    }

    /// The status shown by the admin API.
    pub fn status(&self) -> PolicyStatus {
        (*self.status.load_full()).clone()
    }

    /// Reads the file again and, if it is valid, puts it in force. Unless `force`, an unchanged
    /// file is not looked at again (the watcher polls every second).
    ///
    /// # Errors
    /// The problems of an invalid file (the policy in force stays).
    pub fn reload(&self, force: bool) -> Result<u64, Vec<Problem>> {
        let Some(path) = self.path.clone() else {
            return Ok(0);
        };
        let text = std::fs::read(&path).map_err(|e| {
            let problems = vec![Problem {
                origin: path.display().to_string(),
                key: String::new(),
                message: format!("cannot read the policy file: {e}"),
            }];
            self.reject(&problems);
            problems
        })?;
        let digest: [u8; 32] = Sha256::digest(&text).into();
        if !force && **self.digest.load() == Some(digest) {
            return Ok(self.policies.current().generation);
        }
        self.apply(&path, &text)
    }

    fn apply(&self, path: &Path, text: &[u8]) -> Result<u64, Vec<Problem>> {
        let digest: [u8; 32] = Sha256::digest(text).into();
        let parsed = std::str::from_utf8(text)
            .map_err(|e| {
                vec![Problem {
                    origin: path.display().to_string(),
                    key: String::new(),
                    message: e.to_string(),
                }]
            })
            .and_then(|text| parse(text, path, &self.names.load()));
        // Remember the digest either way: an invalid file is reported once, not every second.
        self.digest.store(Arc::new(Some(digest)));
        match parsed {
            Ok(policy) => {
                let (rules, offerings) = (rule_count(&policy), policy.offerings.len());
                let generation = self.policies.set(Arc::new(policy));
                let ok = self.ok.fetch_add(1, Ordering::Relaxed) + 1;
                self.metrics.policy_reload(true);
                info!(path = %path.display(), generation, rules, offerings, "Policy in force.");
                self.status.store(Arc::new(PolicyStatus {
                    path: Some(path.display().to_string()),
                    generation,
                    rules,
                    offerings,
                    reloads_ok: ok,
                    reloads_failed: self.failed.load(Ordering::Relaxed),
                    last_error: None,
                }));
                Ok(generation)
            }
            Err(problems) => {
                self.reject(&problems);
                Err(problems)
            }
        }
    }

    fn reject(&self, problems: &[Problem]) {
        let failed = self.failed.fetch_add(1, Ordering::Relaxed) + 1;
        self.metrics.policy_reload(false);
        let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
        error!(problems = %lines.join("; "), "Policy file rejected; the policy in force is unchanged.");
        let mut status = self.status();
        status.reloads_failed = failed;
        status.last_error = Some(lines);
        self.status.store(Arc::new(status));
    }

    /// Watches the file (polling, see `watch`) and SIGHUP; reloads on either. Abort the handle
    /// to stop; `None` without a policy file.
    pub fn spawn_watcher(self: &Arc<Self>) -> Option<JoinHandle<()>> {
        self.path.as_ref()?;
        let file = Arc::clone(self);
        super::watch::poll("osb-policy-watch", "policy file", move |forced| {
            // Problems are logged and kept in the status by `reload`.
            let _ = file.reload(forced);
        })
    }
}
