//! OSB resource ids and the upstream paths made of them.
//!
//! One grammar for the ids a platform (or an operator) names resources by: [`OsbId`] is 1 to 255
//! of `A-Z a-z 0-9 - . _ ~` (RFC 3986's unreserved characters: nothing a URL library would
//! percent-encode or decode) and not made of dots alone, so never `.` or `..` (nor `%2e%2e`, which
//! arrives decoded): a dot segment is what every URL library and many web frameworks normalise
//! away, turning an unbind of binding `..` into a DELETE of the instance. An id is checked once,
//! where it enters; an [`UpstreamPath`] can only be made of checked ids, and becomes the upstream's
//! URL segment by segment ([`UpstreamPath::url`]), never by formatting a string and parsing it.
//! So the upstream receives exactly the path segments the gateway routed and authorised.
//!
//! `operation` values (the platform's, echoed to the broker on `last_operation`) are checked by
//! [`check_operation`]: at most 10,000 characters, as OSB allows. Query strings are built from
//! decoded values, each percent-encoded by [`encode`].

use std::fmt;

use url::Url;

use crate::RoutingError;

/// Longest instance or binding id accepted.
pub const MAX_ID_LEN: usize = 255;
/// Longest `operation` accepted (OSB: at most 10,000 characters).
pub const MAX_OPERATION_LEN: usize = 10_000;

/// An instance or binding id that passed the grammar (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OsbId(String);

impl OsbId {
    /// Checks `value` as the id called `name` (`instance_id`, `binding_id`: named in the error).
    ///
    /// # Errors
    /// [`RoutingError::InvalidId`] saying what is wrong.
    pub fn parse(name: &'static str, value: &str) -> Result<OsbId, RoutingError> {
        let problem = if value.is_empty() || value.len() > MAX_ID_LEN {
            Some("must be 1 to 255 characters")
        } else if !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
        {
            Some("may contain only A-Z, a-z, 0-9, '-', '.', '_' and '~'")
        } else if value.bytes().all(|b| b == b'.') {
            Some("must not be made of dots alone ('.' and '..' are path segments)")
        } else {
            None
        };
        match problem {
            None => Ok(OsbId(value.to_owned())),
            Some(problem) => Err(RoutingError::InvalidId { name, problem }),
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OsbId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for OsbId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for OsbId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

/// Checks a decoded `operation` value.
///
/// # Errors
/// [`RoutingError::InvalidId`] when it is empty or longer than [`MAX_OPERATION_LEN`] characters.
pub fn check_operation(value: &str) -> Result<(), RoutingError> {
    let length = value.chars().count();
    if length == 0 || length > MAX_OPERATION_LEN {
        return Err(RoutingError::InvalidId {
            name: "operation",
            problem: "must be 1 to 10000 characters",
        });
    }
    Ok(())
}

/// Which OSB resource a call is about.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Resource {
    Catalog,
    Instance(OsbId),
    Binding(OsbId, OsbId),
}

/// The path (and query) of a call to an upstream broker, relative to its base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamPath {
    resource: Resource,
    last_operation: bool,
    /// Already percent-encoded (see [`encode`]).
    query: Option<String>,
}

impl UpstreamPath {
    /// `/v2/catalog`.
    pub fn catalog() -> Self {
        Self::of(Resource::Catalog)
    }

    /// `/v2/service_instances/{instance_id}`.
    pub fn instance(instance_id: &OsbId) -> Self {
        Self::of(Resource::Instance(instance_id.clone()))
    }

    /// `/v2/service_instances/{instance_id}/service_bindings/{binding_id}`.
    pub fn binding(instance_id: &OsbId, binding_id: &OsbId) -> Self {
        Self::of(Resource::Binding(instance_id.clone(), binding_id.clone()))
    }

    fn of(resource: Resource) -> Self {
        UpstreamPath {
            resource,
            last_operation: false,
            query: None,
        }
    }

    /// The resource's `/last_operation`.
    #[must_use]
    pub fn last_operation(mut self) -> Self {
        self.last_operation = true;
        self
    }

    /// Adds `query`, already percent-encoded (names and values through [`encode`]); an empty
    /// query adds nothing.
    #[must_use]
    pub fn with_query(mut self, query: String) -> Self {
        self.query = Some(query).filter(|q| !q.is_empty());
        self
    }

    /// Adds `name=value` pairs, each percent-encoded.
    #[must_use]
    pub fn with_pairs(self, pairs: &[(&str, &str)]) -> Self {
        let query = pairs
            .iter()
            .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
            .collect::<Vec<_>>()
            .join("&");
        self.with_query(query)
    }

    /// The path's segments, in order (`v2`, `service_instances`, the id, …).
    pub fn segments(&self) -> Vec<&str> {
        let mut segments = vec!["v2"];
        match &self.resource {
            Resource::Catalog => segments.push("catalog"),
            Resource::Instance(instance) => segments.extend(["service_instances", instance.as_str()]),
            Resource::Binding(instance, binding) => segments.extend([
                "service_instances",
                instance.as_str(),
                "service_bindings",
                binding.as_str(),
            ]),
        }
        if self.last_operation {
            segments.push("last_operation");
        }
        segments
    }

    /// The query, if any (percent-encoded).
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// The full URL under `base` (a broker's URL, which may have a path of its own): the
    /// segments appended one by one, then the query.
    ///
    /// # Errors
    /// [`RoutingError::InvalidId`] when `base` cannot take path segments (not an http(s) URL).
    pub fn url(&self, base: &Url) -> Result<Url, RoutingError> {
        let mut url = base.clone();
        url.set_query(None);
        url.set_fragment(None);
        url.path_segments_mut()
            .map_err(|()| RoutingError::InvalidId {
                name: "broker url",
                problem: "cannot take path segments",
            })?
            .pop_if_empty()
            .extend(self.segments());
        url.set_query(self.query.as_deref());
        Ok(url)
    }
}

impl fmt::Display for UpstreamPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for segment in self.segments() {
            write!(f, "/{segment}")?;
        }
        if let Some(query) = &self.query {
            write!(f, "?{query}")?;
        }
        Ok(())
    }
}

/// Percent-encodes a query name or value: RFC 3986's unreserved characters stay, every other byte
/// becomes `%XX`.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            for nibble in [byte >> 4, byte & 0x0f] {
                out.push(char::from(HEX.get(usize::from(nibble)).copied().unwrap_or(b'0')));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
