//! What a demo broker's request path names: the OSB routes, ids percent-decoded, and the
//! [`Call`] a route and a method make.

use std::borrow::Cow;

use actix_web::http::Method;

use super::Endpoint;

/// What a request path names, ids percent-decoded.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Route<'a> {
    Catalog,
    Instance(Cow<'a, str>),
    InstanceLastOperation(Cow<'a, str>),
    Binding(Cow<'a, str>, Cow<'a, str>),
    BindingLastOperation(Cow<'a, str>, Cow<'a, str>),
}

pub(super) fn route(path: &str) -> Option<Route<'_>> {
    if path == "/v2/catalog" {
        return Some(Route::Catalog);
    }
    let rest = path.strip_prefix("/v2/service_instances/")?;
    let mut parts = rest.split('/');
    let route = match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some(i), None, ..) if !i.is_empty() => Route::Instance(decode(i)),
        (Some(i), Some("last_operation"), None, ..) if !i.is_empty() => {
            Route::InstanceLastOperation(decode(i))
        }
        (Some(i), Some("service_bindings"), Some(b), None, _) if !i.is_empty() && !b.is_empty() => {
            Route::Binding(decode(i), decode(b))
        }
        (Some(i), Some("service_bindings"), Some(b), Some("last_operation"), None)
            if !i.is_empty() && !b.is_empty() =>
        {
            Route::BindingLastOperation(decode(i), decode(b))
        }
        _ => return None,
    };
    Some(route)
}

/// A path segment percent-decoded (invalid escapes kept as they are, invalid UTF-8 replaced).
pub(super) fn decode(segment: &str) -> Cow<'_, str> {
    if !segment.contains('%') {
        return Cow::Borrowed(segment);
    }
    let hex = |b: u8| char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok());
    let bytes = segment.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        let escaped = (byte == b'%')
            .then(|| Some((hex(*bytes.get(i + 1)?)?, hex(*bytes.get(i + 2)?)?)))
            .flatten();
        match escaped {
            Some((high, low)) => {
                decoded.push((high << 4) | low);
                i += 3;
            }
            None => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&decoded).into_owned())
}

/// One instance or binding call: what it is and the ids it names (the binding's empty for
/// instance calls).
pub(super) struct Call<'a> {
    pub(super) endpoint: Endpoint,
    pub(super) instance_id: Cow<'a, str>,
    pub(super) binding_id: Cow<'a, str>,
}

impl<'a> Call<'a> {
    /// `None`: the path is known, the method is not allowed there.
    pub(super) fn of(route: Route<'a>, method: &Method) -> Option<Call<'a>> {
        let none = || Cow::Borrowed("");
        let (endpoint, instance_id, binding_id) = match (route, method) {
            (Route::Catalog, &Method::GET) => (Endpoint::Catalog, none(), none()),
            (Route::Instance(i), &Method::PUT) => (Endpoint::Provision, i, none()),
            (Route::Instance(i), &Method::PATCH) => (Endpoint::Update, i, none()),
            (Route::Instance(i), &Method::DELETE) => (Endpoint::Deprovision, i, none()),
            (Route::Instance(i), &Method::GET) => (Endpoint::FetchInstance, i, none()),
            (Route::InstanceLastOperation(i), &Method::GET) => (Endpoint::InstanceLastOperation, i, none()),
            (Route::Binding(i, b), &Method::PUT) => (Endpoint::Bind, i, b),
            (Route::Binding(i, b), &Method::DELETE) => (Endpoint::Unbind, i, b),
            (Route::Binding(i, b), &Method::GET) => (Endpoint::FetchBinding, i, b),
            (Route::BindingLastOperation(i, b), &Method::GET) => (Endpoint::BindingLastOperation, i, b),
            _ => return None,
        };
        Some(Call {
            endpoint,
            instance_id,
            binding_id,
        })
    }

    /// The resource the call is about: the binding for binding calls, else the instance.
    pub(super) fn resource_id(&self) -> &str {
        if self.binding_id.is_empty() {
            &self.instance_id
        } else {
            &self.binding_id
        }
    }
}
