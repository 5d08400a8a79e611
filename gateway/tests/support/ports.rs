//! Loopback ports for the servers tests start, without the bind-then-release race of "bind port 0,
//! note the number, close, hand the number on" (another process, or another test of this binary
//! running in parallel, can take the port in between).
//!
//! - A server that can take a listener gets one bound here and never released
//!   ([`loopback_listener`]). A server that reports what it bound (the gateway binary prints
//!   `osb-gateway listening on …` and `osb-gateway admin on …`) is simply told port 0.
//! - A child process that must be told a port number (Prometheus) cannot close the race: the port
//!   is free when picked and may be taken before the child binds it. [`on_a_free_port`] makes that
//!   harmless in practice: it starts the child on a freshly picked port and, when the start fails
//!   (the child exits, typically with "address already in use"), starts it again on another fresh
//!   port, a few times, before failing with every attempt's error.

use std::future::Future;
use std::net::TcpListener;

/// How many fresh ports [`on_a_free_port`] tries.
const ATTEMPTS: usize = 5;

/// A listener on `127.0.0.1`, on a port the OS picked; hand it to the server as it is.
pub fn loopback_listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap()
}

/// Runs `start(port)` on a port free a moment ago; when it returns `Err` (the child could not
/// bind, or exited before it was ready), runs it again on another fresh port, up to five ports in
/// all. `start` must clean up what it started before returning `Err` (a `kill_on_drop` child that
/// it drops, say). Panics naming `what` and every attempt's error when no attempt succeeded.
pub async fn on_a_free_port<T, F, Fut>(what: &str, mut start: F) -> T
where
    F: FnMut(u16) -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let mut failures = Vec::new();
    for _ in 0..ATTEMPTS {
        // Picked, then released: the child binds it itself (the race that the retry covers).
        let port = loopback_listener().local_addr().unwrap().port();
        match start(port).await {
            Ok(started) => return started,
            Err(error) => failures.push(format!("port {port}: {error}")),
        }
    }
    panic!(
        "{what} did not start on {ATTEMPTS} fresh ports:\n{}",
        failures.join("\n")
    );
}
