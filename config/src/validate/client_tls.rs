//! The TLS keys of one of the gateway's HTTP clients (an upstream broker, the OTLP exporter): a CA
//! bundle and a client certificate with its key, PEM files read and checked at load.

use super::*;

/// One key: its path (or variable name), for problems, and the file it names, if given.
pub(super) type Given = (String, Option<String>);

/// The files of a client's TLS keys.
pub(super) struct ClientTlsFiles {
    pub ca: Given,
    pub cert: Given,
    pub key: Given,
}

/// Reads and checks `files`; the certificate and its key go together.
pub(super) fn client_tls(c: &mut Checker<'_>, files: ClientTlsFiles) -> ClientTls {
    let base_dir = c.context.base_dir.clone();
    let mut read = |(field, file): &Given, reader: fn(&Path) -> Result<String, String>| {
        reader(&resolve(&base_dir, file.as_ref()?))
            .map_err(|message| c.problem(field.clone(), message))
            .ok()
    };
    let ca_pem = read(&files.ca, crate::tls::read_certificates);
    let cert = read(&files.cert, crate::tls::read_certificates);
    let private_key = read(&files.key, crate::tls::read_private_key);
    match (&files.cert, &files.key) {
        ((cert, Some(_)), (key, None)) => c.problem(
            key.clone(),
            format!("{} is given without its private key", leaf(cert)),
        ),
        ((cert, None), (key, Some(_))) => c.problem(
            cert.clone(),
            format!("{} is given without its certificate", leaf(key)),
        ),
        _ => {}
    }
    let client_identity_pem = match (cert, private_key) {
        (Some(cert), Some(private_key)) => Some(Secret::new(format!("{cert}\n{private_key}"))),
        _ => None,
    };
    ClientTls {
        ca_pem,
        client_identity_pem,
        insecure_skip_verify: false,
    }
}

/// The last part of a key path: `tls_client_key_file` of `brokers[0].tls_client_key_file`.
fn leaf(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}
