//! The credential the gateway presents to one upstream broker, and its rotation.
//!
//! A broker's password or bearer token may hold several lines: a credential set. The gateway
//! presents the line that last worked (the first one at start, and again after the file changes);
//! when the broker answers 401, the other lines are tried in turn within the same call (a 401
//! means the broker did nothing) and the one it accepts is presented from then on. A secret given
//! as a file is read again when the file changes ([`Credentials::reload_file`]), so a rotation
//! needs no restart and fails no call, whichever side moves first:
//! the broker accepts old and new, the file gets the new line (or both), the broker drops the old.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arc_swap::ArcSwap;
use osb_config::{BasicCredentials, Secret, UpstreamAuth};
use reqwest::RequestBuilder;
use tracing::{info, warn};

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Credentials {
    auth: ArcSwap<UpstreamAuth>,
    /// The line presented first (the last one the broker accepted).
    preferred: AtomicUsize,
    /// Where the password or token is read from, when a file.
    file: Option<PathBuf>,
}

impl Credentials {
    pub(crate) fn new(auth: &UpstreamAuth, file: Option<PathBuf>) -> Self {
        Credentials {
            auth: ArcSwap::from_pointee(auth.clone()),
            preferred: AtomicUsize::new(0),
            file,
        }
    }

    /// How many credentials the set holds (1 without auth: the request goes as it is).
    pub(crate) fn count(&self) -> usize {
        match self.auth.load().as_ref() {
            UpstreamAuth::None => 1,
            UpstreamAuth::Basic(basic) => basic.password.lines().count().max(1),
            UpstreamAuth::Bearer(token) => token.lines().count().max(1),
        }
    }

    /// The index of the credential to present first.
    pub(crate) fn preferred(&self) -> usize {
        self.preferred.load(Ordering::Relaxed)
    }

    /// The broker accepted credential `index`: present it first from now on.
    pub(crate) fn prefer(&self, broker: &str, index: usize) {
        if self.preferred.swap(index, Ordering::Relaxed) != index {
            info!(
                broker,
                credential = index + 1,
                "The broker refused the credential presented and accepted another of its set; presenting that one from now on."
            );
        }
    }

    /// `request` with credential `index` of the set (counted modulo its size) attached.
    pub(crate) fn apply(&self, request: RequestBuilder, index: usize) -> RequestBuilder {
        let nth = |secret: &Secret| {
            let count = secret.lines().count().max(1);
            secret
                .lines()
                .nth(index % count)
                .unwrap_or_else(|| secret.expose())
                .to_owned()
        };
        match self.auth.load().as_ref() {
            UpstreamAuth::None => request,
            UpstreamAuth::Basic(basic) => request.basic_auth(&basic.username, Some(nth(&basic.password))),
            UpstreamAuth::Bearer(token) => request.bearer_auth(nth(token)),
        }
    }

    /// Reads the secret file again; a changed secret replaces the one in force and its first line
    /// is presented first. A file that cannot be read, or is empty, changes nothing (logged).
    /// Returns whether the credential changed.
    pub(crate) fn reload_file(&self, broker: &str) -> bool {
        let Some(path) = &self.file else { return false };
        let secret = match std::fs::read_to_string(path) {
            Ok(text) if !text.trim().is_empty() => Secret::new(text.trim_end_matches(['\n', '\r'])),
            Ok(_) => {
                warn!(broker, file = %path.display(), "Secret file is empty; keeping the credential in force.");
                return false;
            }
            Err(e) => {
                warn!(broker, file = %path.display(), error = %e, "Cannot read the secret file; keeping the credential in force.");
                return false;
            }
        };
        let current = self.auth.load();
        let next = match current.as_ref() {
            UpstreamAuth::Basic(basic) if basic.password != secret => UpstreamAuth::Basic(BasicCredentials {
                username: basic.username.clone(),
                password: secret,
            }),
            UpstreamAuth::Bearer(token) if *token != secret => UpstreamAuth::Bearer(secret),
            _ => return false,
        };
        self.auth.store(Arc::new(next));
        self.preferred.store(0, Ordering::Relaxed);
        info!(broker, file = %path.display(), "Upstream credential reloaded from its file.");
        true
    }
}
