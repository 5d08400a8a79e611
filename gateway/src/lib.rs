//! `osb-gateway`: one Open Service Broker endpoint in front of many upstream brokers.
//!
//! This crate is the actix-web edge: it binds the listeners, authenticates platforms, checks OSB
//! headers, answers from the catalog cache and routes instance and binding calls to their upstream.
//! The logic it stands on lives in `osb-routing`, `osb-policies` and `osb-config`.
//!
//! # Layout (see `docs/ARCHITECTURE.md`)
//! - [`Gateway`]: `start` opens and recovers the durable state (before any port is bound), `serve`
//!   runs it on bound listeners until a shutdown future fires; [`serve`] does both (tests).
//! - [`state`]: [`state::AppState`], what every handler shares (catalog cache, brokers, policies,
//!   registry, metrics, limits, audit log) side by side.
//! - [`edge`]: listeners, middleware, authentication, rate limits, request parsing.
//! - [`osb`]: the OSB API: route table, handlers, the request context, upstream answers, decisions.
//! - [`ops`]: the admin API, the admin CLI, `check-config`/`explain`, the policy file.
//! - [`telemetry`]: logs and traces, metrics, the audit log.
//! - [`error`]: `ApiError`, the one place errors become OSB JSON.
//! - [`process`]: process-wide settings made first thing in `main` (small memory pages).
//! - `demo` (the `demo` feature, on by default): `osb-gateway demo`, the gateway in front of the
//!   `osb-demo` brokers.

pub mod console;
#[cfg(feature = "demo")]
pub mod demo;
pub mod edge;
pub mod error;
pub mod ops;
pub mod osb;
pub mod process;
pub mod state;
pub mod telemetry;

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::web;
use osb_config::Settings;
use osb_routing::{Brokers, CatalogCache, Policies, Registry};
use tracing::{info, warn};

use crate::edge::auth::Platforms;
use crate::edge::limits::Limiters;
use crate::edge::server;
use crate::edge::tls::ListenerCert;
pub use crate::error::ApiError;
use crate::ops::admin::build_admin_app;
use crate::ops::policy_file::PolicyFile;
use crate::osb::app::build_osb_app;
use crate::osb::decide;
use crate::state::AppState;
use crate::telemetry::{audit, metrics};

/// The gateway's listening sockets, bound before [`serve`] so tests can use port 0.
#[derive(Debug)]
pub struct Listeners {
    /// Platform-facing OSB listener.
    pub osb: TcpListener,
    /// Operators' listener, if configured.
    pub admin: Option<TcpListener>,
}

impl Listeners {
    /// Binds the addresses in `settings`.
    ///
    /// # Errors
    /// The address is taken or not local.
    pub fn bind(settings: &Settings) -> std::io::Result<Self> {
        Self::bind_addrs(settings.listen, settings.admin.as_ref().map(|a| a.listen))
    }

    /// Binds `osb` and, if given, `admin`.
    ///
    /// # Errors
    /// An address is taken or not local.
    pub fn bind_addrs(osb: SocketAddr, admin: Option<SocketAddr>) -> std::io::Result<Self> {
        let osb = bind(osb)?;
        let admin = admin.map(bind).transpose()?;
        Ok(Listeners { osb, admin })
    }

    /// The bound OSB address.
    pub fn osb_addr(&self) -> std::io::Result<SocketAddr> {
        self.osb.local_addr()
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// The gateway with its durable state open and recovered, not yet listening: [`Gateway::start`]
/// runs before any port is bound (a store held by another process, a broken policy file: the
/// gateway stops before it says it listens), [`Gateway::serve`] after.
pub struct Gateway {
    settings: Arc<Settings>,
    store: Arc<dyn osb_routing::Store>,
    catalog: Arc<CatalogCache>,
    state: web::Data<AppState>,
    /// The listeners' certificates (HTTPS), loaded before any port is bound.
    osb_tls: Option<ListenerCert>,
    admin_tls: Option<ListenerCert>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").finish_non_exhaustive()
    }
}

impl Gateway {
    /// Opens the store, loads the last good catalogs it holds, resolves the write-ahead intents a
    /// crash left, reads the policy file and opens the audit log.
    ///
    /// # Errors
    /// [`ApiError::Startup`] naming what could not be opened.
    pub async fn start(settings: Settings) -> Result<Gateway, ApiError> {
        let settings = Arc::new(settings);
        let startup = |what: &str, e: &dyn std::fmt::Display| ApiError::Startup(format!("{what}: {e}"));

        // The listeners' certificates: a gateway that cannot serve HTTPS as configured does not start.
        let load = |tls: Option<&osb_config::ListenerTls>, what: &str| {
            tls.map(ListenerCert::load)
                .transpose()
                .map_err(|e| startup(what, &e))
        };
        let osb_tls = load(settings.tls.as_ref(), "tls")?;
        let admin_tls = load(settings.admin.as_ref().and_then(|a| a.tls.as_ref()), "admin.tls")?;

        // Durable state first: the last good catalogs it holds are served while brokers are down.
        let store = osb_routing::store::open(&settings.store)
            .await
            .map_err(|e| ApiError::Startup(osb_routing::error::error_chain(&e)))?;
        let brokers = Arc::new(Brokers::new(&settings).map_err(|e| startup("brokers", &e))?);
        let catalog = CatalogCache::new(&settings, store.clone(), brokers.clone()).await;
        // Resolve what a crash left half-done before taking any request.
        // An intent older than any upstream timeout (plus margin) is no longer in flight.
        let longest_timeout = settings
            .brokers
            .iter()
            .map(|b| b.timeout)
            .max()
            .unwrap_or_default();
        let registry = Registry::new(store.clone())
            .with_stale_after(longest_timeout + std::time::Duration::from_secs(60));
        registry.recover().await.map_err(|e| startup("recovery", &e))?;

        // The policy file (validated whole; the gateway does not start on a policy it cannot read).
        let metrics = std::sync::Arc::new(metrics::Metrics::new().with_per_call(settings.telemetry.metrics));
        metrics.declare(
            &settings
                .platforms
                .iter()
                .map(|p| p.name.clone())
                .collect::<Vec<_>>(),
            &settings
                .brokers
                .iter()
                .map(|b| b.name.clone())
                .collect::<Vec<_>>(),
        );
        let policies = Arc::new(Policies::default());
        let policy_file =
            PolicyFile::start(settings.clone(), policies.clone(), metrics.clone()).map_err(|problems| {
                ApiError::Startup(
                    problems
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("\n"),
                )
            })?;
        let audit = audit::AuditLog::open(&settings.audit, store.clone(), metrics.clone())
            .map_err(|e| startup("audit.jsonl_path", &e))?;
        let platforms = Arc::new(Platforms::new(&settings.platforms));
        let limiters = Arc::new(Limiters::new(&settings));
        let config_file = ops::config_file::ConfigFile::new(
            &settings,
            ops::config_file::Parts {
                platforms: platforms.clone(),
                brokers: brokers.clone(),
                catalog: catalog.clone(),
                limiters: limiters.clone(),
                policy_file: policy_file.clone(),
                metrics: metrics.clone(),
                store: store.clone(),
            },
        );
        let state = web::Data::new(AppState {
            settings: settings.clone(),
            platforms,
            catalog: catalog.clone(),
            brokers,
            policies,
            registry,
            policy_file,
            config_file,
            schemas: decide::schema_cache(),
            metrics,
            limiters,
            audit,
        });
        Ok(Gateway {
            settings,
            store,
            catalog,
            state,
            osb_tls,
            admin_tls,
        })
    }

    /// Runs the gateway on `listeners` until `shutdown` completes, then stops accepting, lets
    /// in-flight requests finish within `settings.shutdown_grace`, and stops the background tasks
    /// (catalog refreshers, orphan mitigation, policy watcher).
    ///
    /// # Errors
    /// [`ApiError::Startup`] when a listener cannot be used.
    pub async fn serve(
        self,
        listeners: Listeners,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ApiError> {
        let Gateway {
            settings,
            store,
            catalog,
            state,
            osb_tls,
            admin_tls,
        } = self;
        let startup = |what: &str, e: &dyn std::fmt::Display| ApiError::Startup(format!("{what}: {e}"));
        let server_config = |cert: &Option<ListenerCert>, what: &str| {
            cert.as_ref()
                .map(ListenerCert::server_config)
                .transpose()
                .map_err(|e| startup(what, &e))
        };
        let osb_tls_config = server_config(&osb_tls, "tls")?;
        let admin_tls_config = server_config(&admin_tls, "admin.tls")?;
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(8));
        let grace = settings.shutdown_grace.as_secs();
        let osb_addr = listeners.osb.local_addr().map_err(|e| startup("listener", &e))?;
        let osb_state = state.clone();
        let osb_server = server::serve(
            listeners.osb,
            &listener_settings("osb", workers, &settings, osb_tls_config),
            move || build_osb_app(osb_state.clone()),
        )
        .map_err(|e| startup("listen", &e))?;
        let mut handles = vec![osb_server.handle()];
        let mut servers = vec![tokio::spawn(osb_server)];
        let admin_addr = match listeners.admin {
            Some(listener) => {
                let addr = listener.local_addr().ok();
                let admin_state = state.clone();
                let admin_server = server::serve(
                    listener,
                    &listener_settings("admin", 1, &settings, admin_tls_config),
                    move || build_admin_app(admin_state.clone(), console::configure),
                );
                let admin_server = match admin_server {
                    Ok(server) => server,
                    Err(e) => {
                        for handle in &handles {
                            handle.stop(false).await;
                        }
                        return Err(startup("admin listen", &e));
                    }
                };
                handles.push(admin_server.handle());
                servers.push(tokio::spawn(admin_server));
                addr
            }
            None => None,
        };
        let mut background = catalog.spawn_refreshers();
        background.push(osb_routing::mitigation::spawn(
            state.registry.clone(),
            state.brokers.clone(),
        ));
        background.extend(state.policy_file.spawn_watcher());
        background.push(ops::recount::spawn(state.clone()));
        background.extend(state.config_file.spawn_watcher());
        background.extend(edge::secret_files::spawn_watcher(
            state.platforms.clone(),
            state.brokers.clone(),
        ));
        if let Some(cert) = &osb_tls {
            background.push(cert.spawn_reloader("osb"));
        }
        if let Some(cert) = &admin_tls {
            background.push(cert.spawn_reloader("admin"));
        }
        info!(
            osb = %osb_addr,
            admin = %admin_addr.map_or_else(|| "off".to_owned(), |a| a.to_string()),
            brokers = settings.brokers.len(),
            platforms = settings.platforms.len(),
            "Gateway listening."
        );

        shutdown.await;
        info!(grace_secs = grace, "Shutting down: finishing in-flight requests.");
        for handle in &handles {
            handle.stop(true).await;
        }
        for server in servers {
            match server.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn!(error = %e, "Listener stopped with an error."),
                Err(e) => warn!(error = %e, "Listener task failed."),
            }
        }
        state.audit.settle().await;
        for task in background {
            task.abort();
            // An aborted task reports a cancellation error; nothing else can come back.
            let _ = task.await;
        }
        // After the watchers: a reload in flight cannot start a refresher once this returns.
        catalog.stop();
        // Return only once the store is closed (workers drop their app state asynchronously), so a
        // restart in the same process can open it again.
        drop(state);
        drop(catalog);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while Arc::strong_count(&store) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        store.quiesce().await;
        drop(store);
        info!("Gateway stopped.");
        Ok(())
    }
}

/// [`Gateway::start`] then [`Gateway::serve`]: what tests call with listeners bound on port 0.
///
/// # Errors
/// As [`Gateway::start`] and [`Gateway::serve`].
pub async fn serve(
    listeners: Listeners,
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ApiError> {
    Gateway::start(settings).await?.serve(listeners, shutdown).await
}

/// How a listener is served: `workers` threads, the settings' shutdown grace and read timeout.
fn listener_settings(
    name: &'static str,
    workers: usize,
    settings: &Settings,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> server::ListenerSettings {
    server::ListenerSettings {
        name,
        workers,
        shutdown_grace: settings.shutdown_grace,
        head_timeout: settings.request_read_timeout,
        tls,
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
