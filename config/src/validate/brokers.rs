//! The `brokers:` list validated: names, URLs, credentials, ids, timeouts, the circuit breaker,
//! catalog limits and renames, and each broker's TLS files.

use super::*;

pub(super) fn brokers(c: &mut Checker<'_>, raw: &[RawBroker], separator: &str) -> Vec<BrokerSettings> {
    if raw.is_empty() {
        c.problem("brokers", "at least one upstream broker is needed");
    }
    let mut names = HashSet::new();
    let mut namespaces: HashMap<String, usize> = HashMap::new();
    let mut kept_urls: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, b) in raw.iter().enumerate() {
        let key = format!("brokers[{i}]");
        let name = b.name.clone().unwrap_or_default();
        if !is_valid_name(&name) {
            c.problem(
                format!("{key}.name"),
                format!("expected lower-case letters, digits and '-', got {name:?}"),
            );
        } else if !names.insert(name.clone()) {
            c.problem(format!("{key}.name"), format!("duplicate broker name {name:?}"));
        }

        let url = match b.url.as_deref().map(Url::parse) {
            None => {
                c.problem(format!("{key}.url"), "is required");
                None
            }
            Some(Ok(url)) if matches!(url.scheme(), "http" | "https") && url.has_host() => Some(url),
            Some(_) => {
                let text = b.url.as_deref().unwrap_or_default();
                c.problem(
                    format!("{key}.url"),
                    format!("expected an absolute http(s) URL, got {text:?}"),
                );
                None
            }
        };

        let password = c.secret(&key, b.password_keys());
        let bearer = c.secret(&key, b.bearer_token_keys());
        let auth = match (b.username.as_deref(), password, bearer) {
            (_, Given::Broken, _) | (_, _, Given::Broken) => UpstreamAuth::None,
            (Some(_), _, Given::Secret(_)) => {
                c.problem(
                    format!("{key}.bearer_token"),
                    "give either username + password or a bearer token",
                );
                UpstreamAuth::None
            }
            (Some(u), Given::Secret(password), Given::Absent) => {
                basic_username(c, &format!("{key}.username"), u);
                UpstreamAuth::Basic(BasicCredentials {
                    username: u.to_owned(),
                    password,
                })
            }
            (Some(_), Given::Absent, Given::Absent) => {
                c.problem(
                    format!("{key}.password"),
                    "username given without password, password_env or password_file",
                );
                UpstreamAuth::None
            }
            (None, Given::Secret(_), _) => {
                c.problem(format!("{key}.username"), "is required with a password");
                UpstreamAuth::None
            }
            (None, Given::Absent, Given::Secret(token)) => UpstreamAuth::Bearer(token),
            (None, Given::Absent, Given::Absent) => UpstreamAuth::None,
        };

        let namespace = b.namespace.clone().unwrap_or_else(|| name.clone());
        if !is_valid_name(&namespace) {
            c.problem(
                format!("{key}.namespace"),
                format!("expected lower-case letters, digits and '-', got {namespace:?}"),
            );
        } else if let Some(other) = namespaces.insert(namespace.clone(), i) {
            c.problem(
                format!("{key}.namespace"),
                format!(
                    "namespace {namespace:?} is already used by brokers[{other}]; service names would collide"
                ),
            );
        }

        let ids = match b.ids.as_deref().unwrap_or("rewrite") {
            "rewrite" => IdMode::Rewrite,
            "keep" => IdMode::Keep,
            other => {
                c.problem(
                    format!("{key}.ids"),
                    format!("expected rewrite or keep, got {other:?}"),
                );
                IdMode::Rewrite
            }
        };
        if let (IdMode::Keep, Some(url)) = (ids, url.as_ref()) {
            let normalized = url.as_str().trim_end_matches('/').to_owned();
            if let Some(other) = kept_urls.insert(normalized, i) {
                c.problem(
                    format!("{key}.ids"),
                    format!(
                        "kept ids collide: brokers[{other}] keeps the ids of the same URL; use ids: rewrite on one"
                    ),
                );
            }
        }

        let api_version = b
            .api_version
            .clone()
            .unwrap_or_else(|| DEFAULT_API_VERSION.to_owned());
        if !is_osb_2x(&api_version) {
            c.problem(
                format!("{key}.api_version"),
                format!("expected an OSB 2.x version like 2.17, got {api_version:?}"),
            );
        }
        let refresh_interval = c.positive_secs(
            &format!("{key}.refresh_interval_secs"),
            b.refresh_interval_secs,
            DEFAULT_REFRESH_INTERVAL_SECS,
        );
        let timeout = c.positive_secs(
            &format!("{key}.timeout_secs"),
            b.timeout_secs,
            DEFAULT_TIMEOUT_SECS,
        );
        let catalog_timeout = c.positive_secs(
            &format!("{key}.catalog_timeout_secs"),
            b.catalog_timeout_secs,
            timeout.as_secs(),
        );
        let breaker_failures = match b.breaker_failures {
            Some(0) => {
                c.problem(format!("{key}.breaker_failures"), "must be at least 1");
                5
            }
            Some(n) => n,
            None => 5,
        };
        let breaker_open = c.positive_secs(&format!("{key}.breaker_open_secs"), b.breaker_open_secs, 10);
        if timeout >= Duration::from_secs(60) {
            c.warning(
                format!("{key}.timeout_secs"),
                "60 s or more: platforms usually give up after 60 s, before the gateway can answer 504",
            );
        }

        for (from, to) in &b.rename {
            if to.is_empty() || to.chars().any(char::is_whitespace) {
                c.problem(
                    format!("{key}.rename.{from}"),
                    format!("expected a non-empty name without spaces, got {to:?}"),
                );
            }
        }
        for from in b.rename.keys() {
            let published = published_name(&namespace, &b.rename, from, separator);
            if published.len() > MAX_NAME_LEN {
                c.problem(
                    format!("{key}.rename.{from}"),
                    format!(
                        "{published:?} is {} characters; Kubernetes Service Catalog allows {MAX_NAME_LEN}",
                        published.len()
                    ),
                );
            }
        }
        let mut limit = |field: &str, value: Option<u64>, default: usize, least: u64| match value {
            Some(n) if n < least => {
                c.problem(format!("{key}.{field}"), format!("must be at least {least}"));
                default
            }
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            None => default,
        };
        let catalog_limits = CatalogLimits {
            max_bytes: limit(
                "max_catalog_bytes",
                b.max_catalog_bytes,
                DEFAULT_MAX_CATALOG_BYTES,
                1024,
            ),
            max_services: limit(
                "max_catalog_services",
                b.max_catalog_services,
                DEFAULT_MAX_CATALOG_SERVICES,
                1,
            ),
            max_plans: limit(
                "max_catalog_plans",
                b.max_catalog_plans,
                DEFAULT_MAX_CATALOG_PLANS,
                1,
            ),
            max_depth: limit(
                "max_catalog_depth",
                b.max_catalog_depth,
                DEFAULT_MAX_CATALOG_DEPTH,
                4,
            ),
        };
        let tls = upstream_tls(c, &key, b, url.as_ref());
        // A broker without a usable URL was reported above; the settings are rejected anyway.
        let Some(url) = url else { continue };
        let auth_file = match &auth {
            UpstreamAuth::Basic(_) => b.password_file.as_ref(),
            UpstreamAuth::Bearer(_) => b.bearer_token_file.as_ref(),
            UpstreamAuth::None => None,
        }
        .map(|f| resolve(&c.context.base_dir, f));
        out.push(BrokerSettings {
            name,
            url,
            auth,
            auth_file,
            namespace,
            ids,
            api_version,
            refresh_interval,
            timeout,
            catalog_timeout,
            breaker_failures,
            breaker_open,
            rename: b.rename.clone(),
            catalog_limits,
            tls,
        });
    }
    out
}

/// The broker's TLS keys: PEM files read and checked, the key with its certificate.
fn upstream_tls(c: &mut Checker<'_>, key: &str, b: &RawBroker, url: Option<&Url>) -> ClientTls {
    let insecure_skip_verify = b.tls_insecure_skip_verify.unwrap_or(false);
    let tls_keys = b.tls_ca_file.is_some() || b.tls_client_cert_file.is_some() || insecure_skip_verify;
    if tls_keys && url.is_some_and(|u| u.scheme() != "https") {
        c.warning(
            format!("{key}.url"),
            "TLS keys are set but the URL is not https: they are not used",
        );
    }
    if insecure_skip_verify {
        c.warning(
            format!("{key}.tls_insecure_skip_verify"),
            "any certificate is accepted from this broker: no protection against interception (labs only)",
        );
    }
    let files = ClientTlsFiles {
        ca: (format!("{key}.tls_ca_file"), b.tls_ca_file.clone()),
        cert: (
            format!("{key}.tls_client_cert_file"),
            b.tls_client_cert_file.clone(),
        ),
        key: (
            format!("{key}.tls_client_key_file"),
            b.tls_client_key_file.clone(),
        ),
    };
    ClientTls {
        insecure_skip_verify,
        ..client_tls(c, files)
    }
}
