//! Which platform is calling: HTTP Basic or bearer token against the configured platforms.
//!
//! Secrets are compared in constant time and never logged; a failure says nothing about which part
//! was wrong.

use std::sync::Arc;

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
#[derive(Debug, Clone)]
pub struct Platforms {
    platforms: Vec<PlatformSettings>,
    accepts_bearer: bool,
}

impl Platforms {
    pub fn new(platforms: &[PlatformSettings]) -> Self {
        Platforms {
            accepts_bearer: platforms.iter().any(|p| p.bearer_token.is_some()),
            platforms: platforms.to_vec(),
        }
    }

    /// The platform whose credentials `authorization` carries.
    ///
    /// # Errors
    /// [`ApiError::Unauthorized`] for a missing, malformed or unknown credential.
    pub fn authenticate(&self, authorization: Option<&HeaderValue>) -> Result<Platform, ApiError> {
        let unauthorized = || ApiError::Unauthorized {
            bearer: self.accepts_bearer,
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
            self.platforms.iter().find(|p| {
                p.basic
                    .as_ref()
                    .is_some_and(|b| b.username == username && b.password.matches(password))
            })
        } else if scheme.eq_ignore_ascii_case("bearer") {
            // Check every token so the time taken does not tell which platform came close.
            let mut found = None;
            for p in &self.platforms {
                if p.bearer_token.as_ref().is_some_and(|t| t.matches(credentials)) && found.is_none() {
                    found = Some(p);
                }
            }
            found
        } else {
            None
        };
        found
            .map(|p| Platform {
                name: Arc::from(p.name.as_str()),
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
            },
            PlatformSettings {
                name: "cf".into(),
                basic: None,
                bearer_token: Some(Secret::new("tok")),
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
