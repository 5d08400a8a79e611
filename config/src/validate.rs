//! Semantic validation: [`RawSettings`] in, checked [`Settings`] (or every problem) out.
//!
//! Each check appends to one list instead of returning early, so an operator fixes a file in one
//! round. Checks that need the upstream catalogs (namespaced names over 63 characters, kept ids that
//! collide) are done by `osb-routing` at merge time and by `check-config`; the checks here are the
//! ones the file alone can answer, including the certain collision of two `ids: keep` brokers at the
//! same URL.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

mod admin;
mod brokers;
mod client_tls;
mod store;

use self::admin::{admin_users, listener_tls};
use self::brokers::brokers;
use self::client_tls::{ClientTlsFiles, Given as GivenFile, client_tls};
use self::store::store;
use crate::raw::{RawAdmin, RawBroker, RawListenerTls, RawPlatform, RawSettings, SecretKeys};
use crate::settings::*;
use crate::{Problem, Secret};

/// Audit records kept in the store unless `audit.retain_records` says otherwise.
const DEFAULT_AUDIT_RETAIN: u64 = 1_000_000;

/// What validation needs besides the raw settings.
pub struct Context<'a> {
    /// Names the origin (file or variable) of a key path.
    pub origin: &'a dyn Fn(&str) -> String,
    /// Folder relative paths resolve against.
    pub base_dir: PathBuf,
    /// The environment, for `*_env` secrets.
    pub env: &'a HashMap<String, String>,
    /// The file name, recorded in [`Settings::origin`].
    pub source: String,
}

/// A secret as given in the file: not at all, readable, or broken (already reported).
enum Given {
    Absent,
    Secret(Secret),
    Broken,
}

/// Collects problems and warnings while walking the raw settings.
struct Checker<'a> {
    context: &'a Context<'a>,
    problems: Vec<Problem>,
    warnings: Vec<Problem>,
}

impl Checker<'_> {
    fn problem(&mut self, key: impl Into<String>, message: impl Into<String>) {
        let key = key.into();
        let origin = (self.context.origin)(&key);
        self.problems.push(Problem {
            origin,
            key,
            message: message.into(),
        });
    }

    fn warning(&mut self, key: impl Into<String>, message: impl Into<String>) {
        let key = key.into();
        let origin = (self.context.origin)(&key);
        self.warnings.push(Problem {
            origin,
            key,
            message: message.into(),
        });
    }

    fn socket_addr(&mut self, key: &str, value: &str) -> Option<SocketAddr> {
        match value.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.problem(
                    key,
                    format!("expected a listen address like 127.0.0.1:8080, got {value:?}"),
                );
                None
            }
        }
    }

    /// Reads a secret given by exactly one of `X`, `X_env`, `X_file`.
    fn secret(&mut self, prefix: &str, keys: SecretKeys<'_>) -> Given {
        let problems_before = self.problems.len();
        match self.read_secret(prefix, keys) {
            Some(secret) => Given::Secret(secret),
            None if self.problems.len() > problems_before => Given::Broken,
            None => Given::Absent,
        }
    }

    fn read_secret(&mut self, prefix: &str, keys: SecretKeys<'_>) -> Option<Secret> {
        let stem = keys.stem;
        let given = [keys.literal.is_some(), keys.env.is_some(), keys.file.is_some()];
        if given.iter().filter(|g| **g).count() > 1 {
            self.problem(
                format!("{prefix}.{stem}"),
                format!("give only one of {stem}, {stem}_env, {stem}_file"),
            );
            return None;
        }
        if let Some(value) = keys.literal {
            if value.is_empty() {
                self.problem(format!("{prefix}.{stem}"), "must not be empty");
                return None;
            }
            return Some(Secret::new(value));
        }
        if let Some(var) = keys.env {
            return match self.context.env.get(var) {
                Some(value) if !value.is_empty() => Some(Secret::new(value.clone())),
                Some(_) => {
                    self.problem(
                        format!("{prefix}.{stem}_env"),
                        format!("environment variable {var} is empty"),
                    );
                    None
                }
                None => {
                    self.problem(
                        format!("{prefix}.{stem}_env"),
                        format!("environment variable {var} is not set"),
                    );
                    None
                }
            };
        }
        if let Some(file) = keys.file {
            let path = resolve(&self.context.base_dir, file);
            return match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let value = text.trim_end_matches(['\n', '\r']);
                    if value.is_empty() {
                        self.problem(
                            format!("{prefix}.{stem}_file"),
                            format!("secret file {} is empty", path.display()),
                        );
                        None
                    } else {
                        Some(Secret::new(value))
                    }
                }
                Err(e) => {
                    self.problem(
                        format!("{prefix}.{stem}_file"),
                        format!("cannot read secret file {}: {e}", path.display()),
                    );
                    None
                }
            };
        }
        None
    }

    fn positive_secs(&mut self, key: &str, value: Option<u64>, default: u64) -> Duration {
        match value {
            Some(0) => {
                self.problem(key, "must be at least 1");
                Duration::from_secs(default)
            }
            Some(n) => Duration::from_secs(n),
            None => Duration::from_secs(default),
        }
    }
}

/// Checks `raw` and builds [`Settings`], or returns every problem found.
///
/// # Errors
/// All problems found, in file order.
pub fn validate(raw: &RawSettings, context: &Context<'_>) -> Result<(Settings, Vec<Problem>), Vec<Problem>> {
    let mut c = Checker {
        context,
        problems: Vec::new(),
        warnings: Vec::new(),
    };

    let listen = c.socket_addr("listen", raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN));
    let admin = raw.admin.as_ref().and_then(|admin| {
        let Some(listen_text) = admin.listen.as_deref() else {
            c.problem("admin.listen", "is required when admin is configured");
            return None;
        };
        let listen = c.socket_addr("admin.listen", listen_text)?;
        let password = c.secret("admin", admin.password_keys());
        let credentials = match (admin.username.as_deref(), password) {
            (_, Given::Broken) => None,
            (Some(username), Given::Secret(password)) if !username.is_empty() => {
                basic_username(&mut c, "admin.username", username);
                Some(BasicCredentials {
                    username: username.to_owned(),
                    password,
                })
            }
            (Some(_), Given::Absent) => {
                c.problem(
                    "admin.password",
                    "username given without password, password_env or password_file",
                );
                None
            }
            (_, Given::Secret(_)) => {
                c.problem("admin.username", "is required with a password");
                None
            }
            (None, Given::Absent) => None,
        };
        let users = admin_users(&mut c, admin, credentials.as_ref());
        if credentials.is_none() && users.is_empty() && admin.username.is_none() {
            c.warning(
                "admin",
                "no username/password and no users: the admin API is open to anyone who can reach it",
            );
        }
        let tls = admin
            .tls
            .as_ref()
            .and_then(|tls| listener_tls(&mut c, "admin.tls", tls));
        Some(AdminSettings {
            listen,
            credentials,
            users,
            tls,
        })
    });
    if let (Some(a), Some(l)) = (admin.as_ref(), listen) {
        if a.listen == l && l.port() != 0 {
            c.problem("admin.listen", "must differ from listen");
        }
    }

    let tls = raw.tls.as_ref().and_then(|tls| listener_tls(&mut c, "tls", tls));
    let store = store(&mut c, raw);
    let platforms = platforms(&mut c, &raw.platforms);
    let catalog = catalog(&mut c, raw);
    let brokers = brokers(&mut c, &raw.brokers, &catalog.name_separator);

    let policy_file = raw.policy_file.as_deref().and_then(|file| {
        let path = resolve(&context.base_dir, file);
        if path.is_file() {
            Some(path)
        } else {
            c.problem("policy_file", format!("no such file: {}", path.display()));
            None
        }
    });
    let shutdown_grace = Duration::from_secs(raw.shutdown_grace_secs.unwrap_or(DEFAULT_SHUTDOWN_GRACE_SECS));
    let max_body_bytes = match raw.max_body_bytes {
        Some(n) if n < 1024 => {
            c.problem("max_body_bytes", "must be at least 1024");
            0
        }
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        None => usize::try_from(DEFAULT_MAX_BODY_BYTES).unwrap_or(usize::MAX),
    };
    let request_read_timeout = match raw.request_read_timeout_secs {
        Some(0) => {
            c.problem("request_read_timeout_secs", "must be at least 1");
            Duration::ZERO
        }
        Some(n) => Duration::from_secs(n),
        None => Duration::from_secs(DEFAULT_REQUEST_READ_TIMEOUT_SECS),
    };

    // The OpenTelemetry variables win over the file, as the endpoint's do (signal-specific first).
    let otel_file = |c: &Checker<'_>, signal: &str, field: &str, given: &Option<String>| -> GivenFile {
        for variable in [
            format!("OTEL_EXPORTER_OTLP_TRACES_{signal}"),
            format!("OTEL_EXPORTER_OTLP_{signal}"),
        ] {
            if let Some(file) = c.context.env.get(&variable).filter(|v| !v.is_empty()) {
                return (variable, Some(file.clone()));
            }
        }
        (format!("telemetry.{field}"), given.clone())
    };
    let telemetry_files = ClientTlsFiles {
        ca: otel_file(&c, "CERTIFICATE", "tls_ca_file", &raw.telemetry.tls_ca_file),
        cert: otel_file(
            &c,
            "CLIENT_CERTIFICATE",
            "tls_client_cert_file",
            &raw.telemetry.tls_client_cert_file,
        ),
        key: otel_file(
            &c,
            "CLIENT_KEY",
            "tls_client_key_file",
            &raw.telemetry.tls_client_key_file,
        ),
    };
    let telemetry_tls = client_tls(&mut c, telemetry_files);
    let telemetry = TelemetrySettings {
        service_name: raw
            .telemetry
            .service_name
            .clone()
            .unwrap_or_else(|| "osb-gateway".to_owned()),
        otlp_endpoint: raw.telemetry.otlp_endpoint.clone().filter(|endpoint| {
            let ok = Url::parse(endpoint).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
            if !ok {
                c.problem(
                    "telemetry.otlp_endpoint",
                    format!("expected an http(s) URL, got {endpoint:?}"),
                );
            }
            ok
        }),
        sampling_ratio: match raw.telemetry.sampling_ratio {
            Some(r) if !(0.0..=1.0).contains(&r) => {
                c.problem(
                    "telemetry.sampling_ratio",
                    format!("expected 0.0 to 1.0, got {r}"),
                );
                1.0
            }
            Some(r) => r,
            None => 1.0,
        },
        metrics: raw.telemetry.metrics.unwrap_or(true),
        access_log: raw.telemetry.access_log.unwrap_or(false),
        tls: telemetry_tls,
    };

    let audit = AuditSettings {
        jsonl_path: raw.audit.jsonl_path.as_deref().and_then(|file| {
            if file.trim().is_empty() {
                c.problem("audit.jsonl_path", "must not be empty");
                return None;
            }
            Some(resolve(&context.base_dir, file))
        }),
        retain_records: raw.audit.retain_records.unwrap_or(DEFAULT_AUDIT_RETAIN),
    };

    match (listen, c.problems.is_empty()) {
        (Some(listen), true) => Ok((
            Settings {
                origin: context.source.clone(),
                listen,
                tls,
                admin,
                store,
                platforms,
                brokers,
                catalog,
                policy_file,
                shutdown_grace,
                max_body_bytes,
                request_read_timeout,
                telemetry,
                audit,
            },
            c.warnings,
        )),
        _ => Err(c.problems),
    }
}

fn platforms(c: &mut Checker<'_>, raw: &[RawPlatform]) -> Vec<PlatformSettings> {
    if raw.is_empty() {
        c.problem(
            "platforms",
            "at least one platform is needed, or nobody can call the gateway",
        );
    }
    let mut names = HashSet::new();
    let mut usernames = HashSet::new();
    let mut out = Vec::new();
    for (i, p) in raw.iter().enumerate() {
        let key = format!("platforms[{i}]");
        let name = p.name.clone().unwrap_or_default();
        if !is_valid_name(&name) {
            c.problem(
                format!("{key}.name"),
                format!("expected lower-case letters, digits and '-', got {name:?}"),
            );
        } else if !names.insert(name.clone()) {
            c.problem(format!("{key}.name"), format!("duplicate platform name {name:?}"));
        }
        let password = c.secret(&key, p.password_keys());
        let basic = match (p.username.as_deref(), password) {
            (_, Given::Broken) => None,
            (Some(u), Given::Secret(password)) if !u.is_empty() => {
                basic_username(c, &format!("{key}.username"), u);
                if !usernames.insert(u.to_owned()) {
                    c.problem(
                        format!("{key}.username"),
                        format!("username {u:?} is used by another platform"),
                    );
                }
                Some(BasicCredentials {
                    username: u.to_owned(),
                    password,
                })
            }
            (Some(_), Given::Absent) => {
                c.problem(
                    format!("{key}.password"),
                    "username given without password, password_env or password_file",
                );
                None
            }
            (_, Given::Secret(_)) => {
                c.problem(format!("{key}.username"), "is required with a password");
                None
            }
            (None, Given::Absent) => None,
        };
        let bearer_token = match c.secret(&key, p.bearer_token_keys()) {
            Given::Secret(token) => {
                // (Compared whole: a token is never printed, only whose it is.)
                let earlier = out
                    .iter()
                    .find(|earlier: &&PlatformSettings| {
                        earlier
                            .bearer_token
                            .as_ref()
                            .is_some_and(|t| t.expose() == token.expose())
                    })
                    .map(|earlier| earlier.name.clone());
                if let Some(earlier) = earlier {
                    c.problem(
                        format!("{key}.bearer_token"),
                        format!(
                            "the same token as platform {earlier:?}: the gateway could not tell the two apart"
                        ),
                    );
                }
                Some(token)
            }
            Given::Absent | Given::Broken => None,
        };
        let nothing_given =
            p.username.is_none() && p.password_keys().is_absent() && p.bearer_token_keys().is_absent();
        if nothing_given {
            c.problem(
                key.clone(),
                "needs credentials: username + password*, or bearer_token*",
            );
        }
        let file = |given: Option<&String>| given.map(|f| resolve(&c.context.base_dir, f));
        out.push(PlatformSettings {
            name,
            password_file: basic.as_ref().and(file(p.password_file.as_ref())),
            bearer_token_file: bearer_token.as_ref().and(file(p.bearer_token_file.as_ref())),
            basic,
            bearer_token,
        });
    }
    out
}

/// HTTP Basic carries `user:password`: a user name with `:` (or a control character) cannot be
/// sent or told apart from its password (RFC 7617).
fn basic_username(c: &mut Checker<'_>, key: &str, username: &str) {
    if username.contains(':') {
        c.problem(
            key,
            "must not contain ':' (HTTP Basic separates the user name from the password with it)",
        );
    } else if username.chars().any(char::is_control) {
        c.problem(key, "must not contain control characters");
    }
}

fn catalog(c: &mut Checker<'_>, raw: &RawSettings) -> CatalogSettings {
    let name_separator = raw
        .catalog
        .name_separator
        .clone()
        .unwrap_or_else(|| ".".to_owned());
    if name_separator != "." && name_separator != "-" {
        c.problem(
            "catalog.name_separator",
            format!("expected \".\" or \"-\", got {name_separator:?}"),
        );
    }
    let startup_grace = Duration::from_secs(
        raw.catalog
            .startup_grace_secs
            .unwrap_or(DEFAULT_STARTUP_GRACE_SECS),
    );
    CatalogSettings {
        name_separator,
        startup_grace,
    }
}

/// Broker, platform and namespace names: `[a-z0-9]([a-z0-9-]*[a-z0-9])?`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// `2.<digits>`.
pub fn is_osb_2x(version: &str) -> bool {
    version
        .strip_prefix("2.")
        .is_some_and(|minor| !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit()))
}

/// Resolves `path` against the config file's folder unless it is absolute.
pub(crate) fn resolve(base_dir: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base_dir.join(p)
    }
}
