//! Scripted replies and recorded requests: what makes a [`DemoBroker`](super::DemoBroker) the
//! fault tests' scripted upstream.
//!
//! A reply scripted for a method and a path (exact, or a prefix ending in `*`) answers every
//! matching request before anything else is checked: no auth, no routing, no state. With
//! [`Behaviour::record`](super::Behaviour::record) every request is kept, whole, to be looked at.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};

/// A scripted answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
    /// Waited before answering.
    pub delay: Duration,
}

impl Reply {
    /// `status` with `body`, as JSON.
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            body: body.into(),
            headers: vec![("content-type".into(), "application/json".into())],
            delay: Duration::ZERO,
        }
    }

    /// `status` with `value` serialised.
    pub fn json(status: u16, value: &serde_json::Value) -> Reply {
        Reply::new(status, value.to_string())
    }

    /// The same, with one more header.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The same, answered after `delay`.
    #[must_use]
    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    pub(super) async fn respond(self) -> HttpResponse {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = HttpResponse::build(status);
        for (name, value) in &self.headers {
            response.insert_header((name.as_str(), value.as_str()));
        }
        response.body(self.body)
    }
}

/// One request the broker received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Lines {
    routes: Vec<(String, String, Reply)>,
    recorded: Vec<Recorded>,
}

/// The script and the record of one broker.
#[derive(Default)]
pub(super) struct Script {
    /// Set once a reply is scripted: the unscripted path does not take the lock.
    scripted: AtomicBool,
    lines: Mutex<Lines>,
}

impl Script {
    /// A poisoned lock is used as it is: every change below is one push or one retain.
    fn lines(&self) -> MutexGuard<'_, Lines> {
        self.lines.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn on(&self, method: &str, path: &str, reply: Reply) {
        let mut lines = self.lines();
        lines.routes.retain(|(m, p, _)| !(m == method && p == path));
        lines.routes.push((method.to_owned(), path.to_owned(), reply));
        self.scripted.store(true, Ordering::Release);
    }

    pub fn record(&self, req: &HttpRequest, body: &[u8]) {
        let recorded = Recorded {
            method: req.method().to_string(),
            path: req.path().to_owned(),
            query: req.query_string().to_owned(),
            headers: req
                .headers()
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_owned()))
                .collect(),
            body: body.to_vec(),
        };
        self.lines().recorded.push(recorded);
    }

    pub fn recorded(&self) -> Vec<Recorded> {
        self.lines().recorded.clone()
    }

    /// The reply scripted last for this method and path, if any.
    pub fn reply_for(&self, method: &str, path: &str) -> Option<Reply> {
        if !self.scripted.load(Ordering::Acquire) {
            return None;
        }
        self.lines()
            .routes
            .iter()
            .rev()
            .find(|(m, p, _)| {
                m == method
                    && match p.strip_suffix('*') {
                        Some(prefix) => path.starts_with(prefix),
                        None => path == p,
                    }
            })
            .map(|(_, _, reply)| reply.clone())
    }
}
