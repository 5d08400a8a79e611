//! TLS to PostgreSQL: the connector for the store's connections, built from libpq's `sslmode`,
//! `sslrootcert`, `sslcert` and `sslkey` (see `osb_config::tls::postgres_tls`), served by rustls
//! (ring, the upstream client's provider) through tokio-postgres-rustls.
//!
//! - `verify-full`: the certificate chains to `sslrootcert` and names the host;
//! - `verify-ca`, and `require`/`prefer` given `sslrootcert`: the chain is checked, not the name;
//! - `require`/`prefer` without `sslrootcert`: encrypted, the certificate is not checked (libpq's
//!   meaning of these modes).

use std::sync::Arc;

use osb_config::tls::{PostgresTls, SslMode};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

/// The connector for `tls`.
///
/// # Errors
/// A certificate or key that rustls cannot use, named.
pub fn connector(tls: &PostgresTls) -> Result<MakeRustlsConnect, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let roots = tls
        .root_certificates
        .as_deref()
        .map(|pem| {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|e| format!("sslrootcert: {e}"))?;
                roots.add(cert).map_err(|e| format!("sslrootcert: {e}"))?;
            }
            Ok::<_, String>(Arc::new(roots))
        })
        .transpose()?;
    let verifier: Arc<dyn ServerCertVerifier> = match (&roots, tls.mode) {
        (Some(roots), mode) => {
            let webpki = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(|e| format!("sslrootcert: {e}"))?;
            if mode == SslMode::VerifyFull {
                webpki
            } else {
                Arc::new(AnyHostName(webpki))
            }
        }
        (None, _) => Arc::new(Unchecked(provider)),
    };
    let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
    let config = match &tls.client_identity {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("sslcert: {e}"))?;
            let key =
                PrivateKeyDer::from_pem_slice(key.expose().as_bytes()).map_err(|e| format!("sslkey: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("sslcert/sslkey: {e}"))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(MakeRustlsConnect::new(config))
}

/// What a TLS failure in `chain` (an error and its sources) means, in words to act on.
pub fn hint(chain: &str) -> Option<&'static str> {
    if chain.contains("UnknownIssuer") {
        Some("the server's certificate is not signed by a CA in sslrootcert")
    } else if chain.contains("NotValidForName") {
        Some("the server's certificate does not name the host of store.url (verify-full)")
    } else if chain.contains("Expired") && chain.contains("certificate") {
        Some("the server's certificate has expired")
    } else if chain.contains("server does not support TLS") {
        Some("the server does not offer TLS (sslmode require or verify-*)")
    } else {
        None
    }
}

/// Checks the chain against the roots, and ignores the name (`verify-ca`).
#[derive(Debug)]
struct AnyHostName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(Error::InvalidCertificate(CertificateError::NotValidForName))
            | Err(Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. })) => {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Accepts any certificate (libpq's `require` and `prefer` without `sslrootcert`); the handshake's
/// signatures are still checked.
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
