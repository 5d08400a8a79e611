//! `osb-config`: the typed, validated settings of osb-gateway.
//!
//! Operators write one YAML or TOML file (the keys are in `docs` of [`raw::RawSettings`] and in the
//! README); every key can also be set from the environment as `OSB_GATEWAY__SECTION__KEY`
//! (list entries by index: `OSB_GATEWAY__BROKERS__0__URL`). Loading happens in two stages:
//! serde fills the raw structs, then [`validate`](validate) turns them into [`Settings`] made of checked
//! values, collecting **every** problem first. Each problem names the file (or environment variable)
//! and the key path, e.g. `gateway.yaml: brokers[1].url: expected an absolute http(s) URL, got "a:8080"`.
//!
//! # Layout
//! - [`raw`]: what serde reads; unknown keys are collected and reported, never ignored.
//! - [`settings`]: the validated types the rest of the gateway uses.
//! - [`secret`]: secrets from a literal, an environment variable or a file; never printed.
//! - [`load`](mod@load): file + environment layering with the `config` crate.
//! - [`validate`](mod@validate): semantic checks, one [`Problem`] per mistake.
//! - [`error`]: the crate's one error type.
//!
//! This crate does no network IO: checks that need the upstream catalogs (name lengths, colliding
//! kept ids) live in `osb-routing` and are run by `osb-gateway check-config`.

pub mod error;
pub mod load;
pub mod raw;
pub mod secret;
pub mod settings;
pub mod tls;
pub mod validate;

pub use config::FileFormat;
pub use error::{ConfigError, Problem};
pub use load::{Loaded, load_file, load_str, parse_document};
pub use secret::Secret;
pub use settings::*;
