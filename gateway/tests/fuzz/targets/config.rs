//! Target `config`: the configuration loader (`osb_config::load_str`): a file, YAML or TOML, plus
//! `OSB_GATEWAY__…` environment overrides, through parsing and validation.
//!
//! Properties: the loader returns settings or problems, never panics; every problem names its
//! origin (the file, or the variable that set the key) and says what is wrong; settings it
//! accepts are consistent (unique platform and broker names, a positive body limit).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::OnceLock;

use osb_config::{ConfigError, FileFormat};
use serde_json::Value;

use super::input::{Input, mutate, yaml_seed};

const EXAMPLE: &str = include_str!("../../../../config/examples/gateway.yaml");

fn seed() -> &'static Value {
    static SEED: OnceLock<Value> = OnceLock::new();
    SEED.get_or_init(|| yaml_seed(EXAMPLE))
}

/// Variables the gateway would see: overrides (list indexes included) and secrets by name.
const VARIABLES: &[&str] = &[
    "OSB_GATEWAY__LISTEN",
    "OSB_GATEWAY__MAX_BODY_BYTES",
    "OSB_GATEWAY__STORE__KIND",
    "OSB_GATEWAY__STORE__URL",
    "OSB_GATEWAY__CATALOG__NAME_SEPARATOR",
    "OSB_GATEWAY__BROKERS__0__URL",
    "OSB_GATEWAY__BROKERS__0__IDS",
    "OSB_GATEWAY__BROKERS__1__TIMEOUT_SECS",
    "OSB_GATEWAY__BROKERS__3__NAME",
    "OSB_GATEWAY__BROKERS__7__URL",
    "OSB_GATEWAY__BROKERS__4000000000__URL",
    "OSB_GATEWAY__PLATFORMS__99999999999999999999__NAME",
    "OSB_GATEWAY__PLATFORMS__0__PASSWORD",
    "OSB_GATEWAY__PLATFORMS__2__NAME",
    "OSB_GATEWAY__ADMIN__LISTEN",
    "OSB_GATEWAY__BOGUS",
    "OSB_GATEWAY__",
    "OSB_GATEWAY____X",
    "OSB_GATEWAY_ADMIN_PASSWORD",
    "K8S_PROD_PASSWORD",
    "CF_TOKEN",
    "AZURE_BROKER_PASSWORD",
];

pub fn config(data: &[u8]) {
    let mut input = Input::new(data);
    let mut env = HashMap::new();
    for _ in 0..input.below(4) {
        let name = input.pick(VARIABLES).copied().unwrap_or("X").to_owned();
        env.insert(name, input.text());
    }
    let (text, format) = if input.raw_mode() {
        let format = if input.one_in(3) {
            FileFormat::Toml
        } else {
            FileFormat::Yaml
        };
        (
            String::from_utf8_lossy(input.bytes(usize::MAX)).into_owned(),
            format,
        )
    } else {
        let mut value = seed().clone();
        mutate(&mut value, &mut input, 6);
        (value.to_string(), FileFormat::Yaml)
    };
    // A folder that does not exist: relative secret files fail to read instead of touching disk.
    let base_dir = Path::new("/nonexistent/osb-gateway-fuzz");
    match osb_config::load_str(&text, format, "gateway.yaml", base_dir, &env) {
        Err(ConfigError::Invalid(problems)) => {
            assert!(!problems.is_empty(), "an invalid configuration without a problem");
            for problem in &problems {
                assert!(
                    problem.origin == "gateway.yaml"
                        || problem
                            .origin
                            .strip_prefix('$')
                            .is_some_and(|var| env.contains_key(var)),
                    "a problem with an unknown origin: {problem}"
                );
                assert!(
                    !problem.message.is_empty(),
                    "a problem without a message: {problem}"
                );
            }
        }
        Ok(loaded) => {
            let settings = loaded.settings;
            let mut names = HashSet::new();
            for platform in &settings.platforms {
                assert!(names.insert(platform.name.clone()), "platform named twice");
            }
            let mut names = HashSet::new();
            for broker in &settings.brokers {
                assert!(names.insert(broker.name.clone()), "broker named twice");
                assert!(!broker.timeout.is_zero(), "a zero upstream timeout");
            }
            assert!(settings.max_body_bytes > 0);
        }
    }
}
