//! HTTPS on a listener (rustls, ring): the certificate and key files are read at start and read
//! again whenever they change on disk (cert-manager rotation), so new connections get the new
//! certificate while open ones keep theirs; nothing is dropped. With a client CA, clients must
//! present a certificate it signed.
//!
//! The files are looked at once a second ([`RELOAD_EVERY`]). A changed pair that does not load (a
//! key that does not match, a half-written file) is logged and the certificate in use stays.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use osb_config::ListenerTls;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// How often the certificate files are looked at.
pub const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// A listener's TLS: the server configuration, and the certificate it serves (swapped on reload).
#[derive(Debug, Clone)]
pub struct ListenerCert {
    settings: ListenerTls,
    provider: Arc<CryptoProvider>,
    current: Arc<ArcSwap<CertifiedKey>>,
    /// What the files held when last loaded (to notice a change).
    loaded: Arc<ArcSwap<Vec<u8>>>,
}

impl ListenerCert {
    /// Loads the certificate and key of `settings`.
    ///
    /// # Errors
    /// The files cannot be read or do not hold a usable certificate and key, named.
    pub fn load(settings: &ListenerTls) -> Result<ListenerCert, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let files = read_both(settings).map_err(|e| format!("TLS files: {e}"))?;
        let key = certified_key(settings, &provider, &files)?;
        let seen = joined(&files);
        Ok(ListenerCert {
            settings: settings.clone(),
            provider,
            current: Arc::new(ArcSwap::from_pointee(key)),
            loaded: Arc::new(ArcSwap::from_pointee(seen)),
        })
    }

    /// The rustls server configuration: HTTP/1.1, this certificate (as it is at each handshake),
    /// and the client CA if one is configured.
    ///
    /// # Errors
    /// The client CA file does not load.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, String> {
        let builder = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?;
        let builder = match &self.settings.client_ca_file {
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for cert in
                    CertificateDer::pem_file_iter(path).map_err(|e| format!("{}: {e}", path.display()))?
                {
                    let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
                    roots.add(cert).map_err(|e| format!("{}: {e}", path.display()))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                        .build()
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(Arc::new(Resolver(self.current.clone())));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// Watches the files; a changed pair that loads replaces the certificate for new handshakes.
    /// Abort the handle to stop.
    pub fn spawn_reloader(&self, listener: &'static str) -> JoinHandle<()> {
        let cert = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RELOAD_EVERY).await;
                cert.reload_if_changed(listener).await;
            }
        })
    }

    async fn reload_if_changed(&self, listener: &'static str) {
        let files = self.settings.clone();
        let Ok(Ok(files)) = tokio::task::spawn_blocking(move || read_both(&files)).await else {
            return;
        };
        let seen = joined(&files);
        if seen == **self.loaded.load() {
            return;
        }
        match certified_key(&self.settings, &self.provider, &files) {
            Ok(key) => {
                self.current.store(Arc::new(key));
                self.loaded.store(Arc::new(seen));
                info!(listener, cert_file = %self.settings.cert_file.display(), "TLS certificate reloaded.");
            }
            Err(e) => {
                // Remember what failed, so that it is said once per change, not every second.
                self.loaded.store(Arc::new(seen));
                warn!(listener, error = %e, "TLS certificate files changed but do not load; keeping the certificate in use.");
            }
        }
    }
}

/// Serves the current certificate at every handshake.
#[derive(Debug)]
struct Resolver(Arc<ArcSwap<CertifiedKey>>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

/// The certificate file's bytes and the key file's.
fn read_both(settings: &ListenerTls) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    Ok((
        std::fs::read(&settings.cert_file)?,
        std::fs::read(&settings.key_file)?,
    ))
}

/// The files' bytes as one, to notice a change.
fn joined((cert, key): &(Vec<u8>, Vec<u8>)) -> Vec<u8> {
    [cert.as_slice(), key.as_slice()].concat()
}

/// The certified key the files hold, parsed from the bytes already read.
fn certified_key(
    settings: &ListenerTls,
    provider: &CryptoProvider,
    (cert, key): &(Vec<u8>, Vec<u8>),
) -> Result<CertifiedKey, String> {
    let cert_path = &settings.cert_file;
    let chain = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", cert_path.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate", cert_path.display()));
    }
    let key =
        PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("{}: {e}", settings.key_file.display()))?;
    CertifiedKey::from_der(chain, key, provider)
        .map_err(|e| format!("{} and {}: {e}", cert_path.display(), settings.key_file.display()))
}
