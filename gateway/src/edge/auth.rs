//! Which platform is calling: HTTP Basic or bearer token against the configured platforms.
//!
//! Secrets are compared in constant time and never logged; a failure says nothing about which part
//! was wrong. A password or token may hold several lines, each valid: a credential set, so that a
//! rotation has a moment when the old and the new both work. Secrets given as files are read again
//! when the files change (see `secret_files`): add the new line, let the platform switch, remove
//! the old line; no restart and no failed call.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tracing::{info, warn};

use actix_web::http::header::HeaderValue;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use osb_config::PlatformSettings;

use crate::error::ApiError;

/// The authenticated platform of a request (in the request extensions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub name: Arc<str>,
}

/// The configured platforms and their credentials.
#[derive(Debug)]
pub struct Platforms {
    platforms: ArcSwap<Vec<PlatformSettings>>,
}

impl Platforms {
    pub fn new(platforms: &[PlatformSettings]) -> Self {
        Platforms {
            platforms: ArcSwap::from_pointee(platforms.to_vec()),
        }
    }

    /// Puts `platforms` in force (the configuration file changed): the next request is checked
    /// against them; requests already authenticated go on.
    pub fn replace(&self, platforms: &[PlatformSettings]) {
        self.platforms.store(std::sync::Arc::new(platforms.to_vec()));
    }

    /// The platforms in force.
    pub fn current(&self) -> std::sync::Arc<Vec<PlatformSettings>> {
        self.platforms.load_full()
    }

    /// Reads the platforms' secret files again; changed ones replace what is in force. A file
    /// that cannot be read, or is empty, changes nothing (logged).
    pub fn reload_secret_files(&self) {
        let current = self.platforms.load();
        let mut next: Vec<PlatformSettings> = current.as_ref().clone();
        let mut changed = Vec::new();
        for platform in &mut next {
            let read = |path: &std::path::Path| match std::fs::read_to_string(path) {
                Ok(text) if !text.trim().is_empty() => {
                    Some(osb_config::Secret::new(text.trim_end_matches(['\n', '\r'])))
                }
                Ok(_) => {
                    warn!(platform = %platform.name, file = %path.display(), "Secret file is empty; keeping the credentials in force.");
                    None
                }
                Err(e) => {
                    warn!(platform = %platform.name, file = %path.display(), error = %e, "Cannot read the secret file; keeping the credentials in force.");
                    None
                }
            };
            if let (Some(path), Some(basic)) = (platform.password_file.clone(), platform.basic.as_mut()) {
                if let Some(secret) = read(&path).filter(|s| *s != basic.password) {
                    basic.password = secret;
                    changed.push(platform.name.clone());
                }
            }
            if let (Some(path), Some(token)) =
                (platform.bearer_token_file.clone(), platform.bearer_token.as_mut())
            {
                if let Some(secret) = read(&path).filter(|s| s != token) {
                    *token = secret;
                    changed.push(platform.name.clone());
                }
            }
        }
        if !changed.is_empty() {
            self.platforms.store(Arc::new(next));
            info!(platforms = %changed.join(","), "Platform credentials reloaded from their files.");
        }
    }

    /// Whether any platform's password or token is given as a file.
    pub fn has_secret_files(&self) -> bool {
        self.platforms
            .load()
            .iter()
            .any(|p| p.password_file.is_some() || p.bearer_token_file.is_some())
    }

    /// The platform whose credentials `authorization` carries.
    ///
    /// # Errors
    /// [`ApiError::Unauthorized`] for a missing, malformed or unknown credential.
    pub fn authenticate(&self, authorization: Option<&HeaderValue>) -> Result<Platform, ApiError> {
        let unauthorized = || ApiError::Unauthorized {
            bearer: self.platforms.load().iter().any(|p| p.bearer_token.is_some()),
        };
        let value = authorization
            .and_then(|v| v.to_str().ok())
            .ok_or_else(unauthorized)?;
        let (scheme, credentials) = value.split_once(' ').ok_or_else(unauthorized)?;
        let credentials = credentials.trim();
        let found = if scheme.eq_ignore_ascii_case("basic") {
            let decoded = STANDARD.decode(credentials).map_err(|_| unauthorized())?;
            let decoded = String::from_utf8(decoded).map_err(|_| unauthorized())?;
            let (username, password) = decoded.split_once(':').ok_or_else(unauthorized)?;
            let platforms = self.platforms.load();
            platforms
                .iter()
                .find(|p| {
                    p.basic
                        .as_ref()
                        .is_some_and(|b| b.username == username && b.password.matches_any_line(password))
                })
                .map(|p| p.name.clone())
        } else if scheme.eq_ignore_ascii_case("bearer") {
            // Check every token so the time taken does not tell which platform came close.
            let mut found = None;
            for p in self.platforms.load().iter() {
                if p.bearer_token
                    .as_ref()
                    .is_some_and(|t| t.matches_any_line(credentials))
                    && found.is_none()
                {
                    found = Some(p.name.clone());
                }
            }
            found
        } else {
            None
        };
        found
            .map(|name| Platform {
                name: Arc::from(name.as_str()),
            })
            .ok_or_else(unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use osb_config::{BasicCredentials, Secret};

    use super::*;

    fn platforms() -> Platforms {
        Platforms::new(&[
            PlatformSettings {
                name: "k8s".into(),
                basic: Some(BasicCredentials {
                    username: "k".into(),
                    password: Secret::new("pw"),
                }),
                bearer_token: None,
                password_file: None,
                bearer_token_file: None,
            },
            PlatformSettings {
                name: "cf".into(),
                basic: None,
                bearer_token: Some(Secret::new("tok\nnew-tok")),
                password_file: None,
                bearer_token_file: None,
            },
        ])
    }

    fn header(v: &str) -> HeaderValue {
        HeaderValue::from_str(v).unwrap()
    }

    #[test]
    fn basic_and_bearer() {
        let p = platforms();
        let basic = format!("Basic {}", STANDARD.encode("k:pw"));
        assert_eq!(&*p.authenticate(Some(&header(&basic))).unwrap().name, "k8s");
        assert_eq!(&*p.authenticate(Some(&header("Bearer tok"))).unwrap().name, "cf");
        assert_eq!(
            &*p.authenticate(Some(&header("Bearer new-tok"))).unwrap().name,
            "cf",
            "every line of a credential set is valid"
        );
        for bad in [
            format!("Basic {}", STANDARD.encode("k:wrong")),
            format!("Basic {}", STANDARD.encode("nobody:pw")),
            "Basic !!!".to_owned(),
            "Bearer nope".to_owned(),
            "Digest x".to_owned(),
            "garbage".to_owned(),
        ] {
            assert!(
                matches!(
                    p.authenticate(Some(&header(&bad))),
                    Err(ApiError::Unauthorized { bearer: true })
                ),
                "{bad}"
            );
        }
        assert!(p.authenticate(None).is_err());
    }
}
