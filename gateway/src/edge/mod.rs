//! The HTTP edge: everything between a platform's (or operator's) bytes and a handler.
//!
//! - [`server`]: the listeners' HTTP servers; every answer, even the HTTP layer's, is OSB JSON;
//!   [`tls`]: HTTPS on a listener, its certificate re-read when it changes.
//! - [`middleware`]: request identity, authentication, rate limits, the API version check;
//!   [`audit_calls`]: the audit log's record of each mutating call.
//! - [`auth`]: platform credentials; [`secret_files`]: platform and broker secrets re-read when
//!   their files change; [`limits`]: the rate limiters (per platform, per broker).
//! - [`parse`]: ids, queries and bodies checked before anything is decided; [`route`]: the OSB
//!   route and path ids of a request, found once without regular expressions.

pub mod audit_calls;
pub mod auth;
pub mod limits;
pub mod middleware;
pub mod parse;
pub mod route;
pub mod secret_files;
pub mod server;
pub mod tls;
