//! `store`: the embedded store's folder (and the default of earlier versions) or the PostgreSQL
//! URL, checked without ever printing it.

use super::*;

/// The embedded store's folder when `store.path` is not set.
const DEFAULT_STORE_PATH: &str = "data/osb-gateway.store";
/// The default of versions that kept the embedded store in one redb file: still used when it
/// exists and the current default does not (the store moves it into a folder where it is).
const EARLIER_DEFAULT_STORE_PATH: &str = "data/osb-gateway.redb";

pub(super) fn store(c: &mut Checker<'_>, raw: &RawSettings) -> StoreSettings {
    match raw.store.kind.as_deref().unwrap_or("embedded") {
        "embedded" => {
            if raw.store.url.is_some() {
                c.problem("store.url", "only used with kind: postgres");
            }
            let path = match raw.store.path.as_deref() {
                Some(path) => resolve(&c.context.base_dir, path),
                None => default_path(c),
            };
            StoreSettings::Embedded { path }
        }
        "postgres" => {
            let url = raw.store.url.clone().unwrap_or_default();
            if url.is_empty() {
                c.problem("store.url", "required with kind: postgres");
            } else if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                // The URL may hold the database password: show its scheme at most.
                let scheme = url
                    .split_once("://")
                    .map(|(scheme, _)| scheme)
                    .filter(|s| s.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)));
                let got = scheme.map_or_else(|| "no scheme".to_owned(), |s| format!("{s}://"));
                c.problem(
                    "store.url",
                    format!("expected a postgres:// or postgresql:// URL, got {got}"),
                );
            }
            if !url.is_empty() {
                if let Err(message) = crate::tls::postgres_tls(&url) {
                    c.problem("store.url", message);
                }
            }
            StoreSettings::Postgres {
                url: Secret::new(url),
            }
        }
        other => {
            c.problem(
                "store.kind",
                format!("expected embedded or postgres, got {other:?}"),
            );
            StoreSettings::Embedded {
                path: resolve(&c.context.base_dir, DEFAULT_STORE_PATH),
            }
        }
    }
}

/// The embedded store's folder when `store.path` is not set: [`DEFAULT_STORE_PATH`], or the
/// earlier default where only that exists, or its move into a folder is unfinished (the store
/// finishes a move interrupted between its renames).
fn default_path(c: &mut Checker<'_>) -> PathBuf {
    let path = resolve(&c.context.base_dir, DEFAULT_STORE_PATH);
    let earlier = resolve(&c.context.base_dir, EARLIER_DEFAULT_STORE_PATH);
    let beside = |suffix: &str| {
        let mut name = earlier.clone().into_os_string();
        name.push(suffix);
        PathBuf::from(name).exists()
    };
    if path.exists() || !(earlier.exists() || beside(".redb-backup") || beside(".migrating")) {
        return path;
    }
    c.warning(
        "store.path",
        format!(
            "not set: using {}, the default of earlier versions, as it exists",
            earlier.display()
        ),
    );
    earlier
}
