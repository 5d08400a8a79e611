//! TLS material named by the configuration: PEM files read and checked when the configuration is
//! validated, so that `check-config` and `serve` refuse the same mistakes (a missing file, a file
//! without a certificate, a certificate without its key).

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
