//! Secrets given as files, read again without a restart: every second, and at once on SIGHUP.
//!
//! What is watched: each platform's `password_file` / `bearer_token_file` ([`Platforms`]) and each
//! upstream broker's ([`UpstreamBroker::reload_secret_file`]). A changed file replaces the
//! credential in force for the next call; one that cannot be read, or is empty, changes nothing
//! (logged). Kubernetes updates a mounted Secret in place, so a rotation is a Secret edit.
//!
//! Secrets given by environment variable are fixed for the life of the process: its environment
//! is copied when it starts, and nothing outside can change it, so SIGHUP has nothing to re-read
//! there. Give a secret as a file to rotate it without a restart.
//!
//! [`UpstreamBroker::reload_secret_file`]: osb_routing::upstream::UpstreamBroker::reload_secret_file

use std::sync::Arc;

use osb_routing::Brokers;
use tokio::task::JoinHandle;

use crate::edge::auth::Platforms;

/// Reads every secret file again (see the module docs).
pub fn reload(platforms: &Platforms, brokers: &Brokers) {
    platforms.reload_secret_files();
    for broker in brokers.clients() {
        broker.reload_secret_file();
    }
}

/// Watches the secret files (polling, see `ops::watch`). Abort the handle to stop.
pub fn spawn_watcher(platforms: Arc<Platforms>, brokers: Arc<Brokers>) -> Option<JoinHandle<()>> {
    // Always watched: a configuration reload may add a platform or broker with a secret file.
    crate::ops::watch::poll("osb-secret-watch", "secret files", move |_| {
        reload(&platforms, &brokers)
    })
}
