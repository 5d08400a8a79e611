//! Test support: a fresh store of each backend per test, and the macro that runs one test body
//! against both.
//!
//! `both_backends!(name, …)` turns each `async fn name(backend: Backend)` into two tests,
//! `embedded::name` and `postgres::name`, so the same body checks both backends (filter with
//! `cargo nextest run -p osb-routing postgres::`).
//!
//! The embedded store lives in a temporary folder. A PostgreSQL test creates its own database
//! (`osb_test_<random>`) through the server at `OSB_TEST_POSTGRES_URL` (default: user `postgres`,
//! then `root`, at `127.0.0.1:5432`, database `test`) and drops it when done, so tests run in
//! parallel (cargo-nextest runs each in its own process). A server that cannot be reached fails
//! the test, never skips it: `.ci/run` starts PostgreSQL.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use osb_config::StoreSettings;
use tokio_postgres::NoTls;

use super::Store;
use crate::error::error_chain;

/// Which store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Embedded,
    Postgres,
}

/// Where the PostgreSQL tests create their databases, unless `OSB_TEST_POSTGRES_URL` says.
const ADMIN_URLS: &[&str] = &[
    "postgres://postgres@127.0.0.1:5432/test",
    "postgres://root@127.0.0.1:5432/test",
];

/// A place for one test's store, removed at the end of the test.
pub(crate) struct TestStore {
    settings: StoreSettings,
    _place: Place,
}

/// Kept only to be removed when the test ends.
enum Place {
    Folder { _dir: tempfile::TempDir },
    Database { _database: TestDatabase },
}

impl TestStore {
    /// A new, empty place for a store of `backend`.
    pub(crate) async fn new(backend: Backend) -> TestStore {
        match backend {
            Backend::Embedded => {
                let dir = tempfile::tempdir().unwrap();
                let path: PathBuf = dir.path().join("store");
                TestStore {
                    settings: StoreSettings::Embedded { path },
                    _place: Place::Folder { _dir: dir },
                }
            }
            Backend::Postgres => {
                let database = TestDatabase::create().await;
                TestStore {
                    settings: StoreSettings::Postgres {
                        url: osb_config::Secret::new(database.url.clone()),
                    },
                    _place: Place::Database { _database: database },
                }
            }
        }
    }

    /// Opens the store (again: drop the previous handle first, the embedded file is locked).
    pub(crate) async fn open(&self) -> Arc<dyn Store> {
        super::open(&self.settings).await.unwrap()
    }

    /// The URL of the test's database (PostgreSQL only).
    pub(crate) fn url(&self) -> Option<&str> {
        match &self.settings {
            StoreSettings::Postgres { url } => Some(url.expose()),
            StoreSettings::Embedded { .. } => None,
        }
    }
}

/// A database of its own for one test, dropped (with `FORCE`: open connections are closed) when
/// the value is.
pub(crate) struct TestDatabase {
    admin_url: String,
    name: String,
    pub(crate) url: String,
}

impl TestDatabase {
    /// Creates `osb_test_<random>`. Panics, naming `.ci/run`, when no server answers.
    pub(crate) async fn create() -> TestDatabase {
        let admins: Vec<String> = match std::env::var("OSB_TEST_POSTGRES_URL") {
            Ok(url) => vec![url],
            Err(_) => ADMIN_URLS.iter().map(|u| (*u).to_owned()).collect(),
        };
        let mut failures = Vec::new();
        for admin_url in admins {
            let client = match admin(&admin_url).await {
                Ok(client) => client,
                Err(e) => {
                    failures.push(format!("{admin_url}: {e}"));
                    continue;
                }
            };
            let name = format!("osb_test_{}", uuid::Uuid::new_v4().simple());
            client
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .unwrap_or_else(|e| panic!("create database {name}: {}", error_chain(&e)));
            let mut url = url::Url::parse(&admin_url).unwrap();
            url.set_path(&format!("/{name}"));
            return TestDatabase {
                admin_url,
                name,
                url: url.to_string(),
            };
        }
        panic!(
            "PostgreSQL is not reachable, and the postgres store tests need it \
             (they never skip). Run `.ci/run`, which starts PostgreSQL, or start it with \
             `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`; \
             or point OSB_TEST_POSTGRES_URL at a server where this user may create databases. \
             Tried: {}",
            failures.join("; ")
        );
    }

    /// A connection to the server's admin database (to look at or disturb the test's database).
    pub(crate) async fn admin(&self) -> tokio_postgres::Client {
        admin(&self.admin_url).await.unwrap()
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

/// A connection to `url`, its connection task running on the current runtime.
pub(crate) async fn admin(url: &str) -> Result<tokio_postgres::Client, String> {
    let mut config: tokio_postgres::Config = url.parse().map_err(|e| error_chain(&e))?;
    config.connect_timeout(Duration::from_secs(3));
    let (client, connection) = config.connect(NoTls).await.map_err(|e| error_chain(&e))?;
    tokio::spawn(connection);
    Ok(client)
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs outside async (or inside a runtime that must not be blocked): a thread of its
        // own with a runtime of its own.
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let client = admin(&admin_url).await?;
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .map_err(|e| error_chain(&e))
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop the test database {}: {e}", self.name);
        }
    }
}

/// One `#[tokio::test]` per backend for each `async fn name(backend: Backend)` named: modules
/// `embedded` and `postgres` beside the bodies.
macro_rules! both_backends {
    ($($name:ident),+ $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::store::testing::Backend::Embedded).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::store::testing::Backend::Postgres).await;
                }
            )+
        }
    };
}
pub(crate) use both_backends;
