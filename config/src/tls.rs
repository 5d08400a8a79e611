//! TLS material named by the configuration: PEM files read and checked when the configuration is
//! validated, so that `check-config` and `serve` refuse the same mistakes (a missing file, a file
//! without a certificate, a certificate without its key), and the PostgreSQL store's libpq TLS
//! parameters ([`postgres_tls`]).

use std::path::Path;

/// A PEM file's text, if it holds at least one certificate.
///
/// # Errors
/// The file cannot be read, or holds no `CERTIFICATE` block.
pub fn read_certificates(path: &Path) -> Result<String, String> {
    let text = read(path)?;
    if !text.contains("-----BEGIN CERTIFICATE-----") {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(text)
}

/// A PEM file's text, if it holds a private key.
///
/// # Errors
/// The file cannot be read, or holds no `PRIVATE KEY` block.
pub fn read_private_key(path: &Path) -> Result<String, String> {
    let text = read(path)?;
    let has_key = [
        "-----BEGIN PRIVATE KEY-----",
        "-----BEGIN RSA PRIVATE KEY-----",
        "-----BEGIN EC PRIVATE KEY-----",
    ]
    .iter()
    .any(|marker| text.contains(marker));
    if !has_key {
        return Err(format!(
            "{} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
            path.display()
        ));
    }
    Ok(text)
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// libpq's `sslmode`, as the PostgreSQL store follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, else plain TCP; the certificate is not checked (unless
    /// `sslrootcert` is given: then as `verify-ca`). libpq's default, and the store's.
    Prefer,
    /// TLS always; the certificate is not checked (unless `sslrootcert` is given: then as
    /// `verify-ca`).
    Require,
    /// TLS; the certificate must be signed by a CA in `sslrootcert` (any host name).
    VerifyCa,
    /// TLS; the certificate must be signed by a CA in `sslrootcert` and name the host.
    VerifyFull,
}

/// The TLS of the PostgreSQL store, from libpq's URL parameters `sslmode`, `sslrootcert`, `sslcert`
/// and `sslkey` (file paths as libpq takes them: absolute, or relative to the working directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresTls {
    pub mode: SslMode,
    /// PEM CA certificates (`sslrootcert`).
    pub root_certificates: Option<String>,
    /// PEM client certificate chain and private key (`sslcert`, `sslkey`). A secret.
    pub client_identity: Option<(String, crate::Secret)>,
}

/// Splits libpq's TLS parameters off a `postgres://` URL: the URL left for the PostgreSQL client,
/// and the TLS to use, with every file read and checked. `check-config` and the store call this
/// one function, so they agree on every `sslmode`.
///
/// # Errors
/// An unknown `sslmode`, a `verify-*` mode without `sslrootcert`, `sslcert` without `sslkey` (or
/// the other way round), or a file that cannot be read or holds no certificate or key. Messages
/// never quote the URL (it may hold the password).
pub fn postgres_tls(url: &str) -> Result<(String, PostgresTls), String> {
    let mut parsed =
        url::Url::parse(url).map_err(|_| "store.url is not a valid PostgreSQL connection URL".to_owned())?;
    let mut rest: Vec<(String, String)> = Vec::new();
    let (mut mode, mut root, mut cert, mut key) = (None, None, None, None);
    for (name, value) in parsed.query_pairs() {
        let value = value.into_owned();
        match name.as_ref() {
            "sslmode" => mode = Some(value),
            "sslrootcert" => root = Some(value),
            "sslcert" => cert = Some(value),
            "sslkey" => key = Some(value),
            _ => rest.push((name.into_owned(), value)),
        }
    }
    let mode = match mode.as_deref().unwrap_or("prefer") {
        "disable" => SslMode::Disable,
        "prefer" | "allow" => SslMode::Prefer,
        "require" => SslMode::Require,
        "verify-ca" => SslMode::VerifyCa,
        "verify-full" => SslMode::VerifyFull,
        // The value is not quoted: whatever is in the URL may be a secret.
        _ => {
            return Err(
                "store.url is not a valid PostgreSQL connection URL: sslmode is not one of disable, \
                        allow, prefer, require, verify-ca, verify-full"
                    .to_owned(),
            );
        }
    };
    if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) && root.is_none() {
        return Err("sslmode verify-ca and verify-full need sslrootcert=FILE (the server's CA)".to_owned());
    }
    let root_certificates = root
        .map(|path| read_certificates(Path::new(&path)).map_err(|e| format!("sslrootcert: {e}")))
        .transpose()?;
    let client_identity = match (cert, key) {
        (Some(cert), Some(key)) => {
            let cert = read_certificates(Path::new(&cert)).map_err(|e| format!("sslcert: {e}"))?;
            let key = read_private_key(Path::new(&key)).map_err(|e| format!("sslkey: {e}"))?;
            Some((cert, crate::Secret::new(key)))
        }
        (Some(_), None) => return Err("sslcert is given without sslkey".to_owned()),
        (None, Some(_)) => return Err("sslkey is given without sslcert".to_owned()),
        (None, None) => None,
    };
    if rest.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(rest);
    }
    Ok((
        parsed.to_string(),
        PostgresTls {
            mode,
            root_certificates,
            client_identity,
        },
    ))
}
