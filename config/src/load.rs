//! Loading: built-in defaults, then the file, then `OSB_GATEWAY__…` environment variables.
//!
//! The `config` crate reads the file and applies the environment as overrides. The environment is
//! passed in as a map (tests inject one; `main` passes `std::env::vars()`), never read here, so tests
//! don't need `set_var`. Variables map to key paths by splitting on `__` and lower-casing, with
//! numeric segments as list indexes: `OSB_GATEWAY__BROKERS__0__TIMEOUT_SECS` → `brokers[0].timeout_secs`.
//! The same map answers `password_env` lookups.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use config::{Config, File, FileFormat};
use serde::de::DeserializeOwned;

use crate::raw::RawSettings;
use crate::validate::{Context, validate};
use crate::{ConfigError, Problem, Settings};

/// Prefix of the environment variables that override file keys.
pub const ENV_PREFIX: &str = "OSB_GATEWAY__";

/// A configuration that passed validation, and the warnings it raised.
#[derive(Debug)]
pub struct Loaded {
    pub settings: Settings,
    /// Things that work but are probably not what the operator meant.
    pub warnings: Vec<Problem>,
}

/// Loads and validates the configuration file at `path` (YAML or TOML by extension; YAML otherwise).
///
/// # Errors
/// [`ConfigError::Invalid`] with every problem found, each naming file (or variable) and key.
pub fn load_file(path: &Path, env: &HashMap<String, String>) -> Result<Loaded, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::Invalid(vec![Problem {
            origin: origin.clone(),
            key: String::new(),
            message: format!("cannot read the configuration file: {e}"),
        }])
    })?;
    let format = match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => FileFormat::Toml,
        _ => FileFormat::Yaml,
    };
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    load_str(&text, format, &origin, &base_dir, env)
}

/// Loads and validates configuration text; `origin` names it in problems, relative paths in it
/// resolve against `base_dir`.
///
/// # Errors
/// As [`load_file`].
pub fn load_str(
    text: &str,
    format: FileFormat,
    origin: &str,
    base_dir: &Path,
    env: &HashMap<String, String>,
) -> Result<Loaded, ConfigError> {
    let overrides = env_overrides(env);
    let problem = |key: &str, message: String| Problem {
        origin: origin_of(origin, &overrides, key),
        key: key.to_owned(),
        message,
    };

    // A list index is an allocation: `OSB_GATEWAY__BROKERS__4000000000__URL` would make the
    // `config` crate grow the list to four billion entries (and abort the process).
    let oversized: Vec<Problem> = overrides
        .iter()
        .filter_map(|(key, (var, _))| {
            let index = list_indexes(key).find(|i| i.is_none_or(|i| i > MAX_ENV_INDEX))?;
            Some(Problem {
                origin: format!("${var}"),
                key: key.clone(),
                message: format!(
                    "list index {} is too large (at most {MAX_ENV_INDEX})",
                    index.map_or_else(|| "beyond u64".to_owned(), |i| i.to_string())
                ),
            })
        })
        .collect();
    if !oversized.is_empty() {
        return Err(ConfigError::Invalid(oversized));
    }

    // An index beyond the file's list would make the `config` crate add empty entries before it
    // ("invalid type: unit value, expected struct RawBroker"): say what happened instead.
    if let Ok(file_only) = Config::builder().add_source(File::from_str(text, format)).build() {
        let beyond: Vec<Problem> = overrides
            .iter()
            .filter_map(|(key, (var, _))| {
                let (list, rest) = key.split_once('[')?;
                let index: usize = rest.split_once(']')?.0.parse().ok()?;
                let len = file_only.get_array(list).map_or(0, |entries| entries.len());
                (index >= len).then(|| Problem {
                    origin: format!("${var}"),
                    key: format!("{list}[{index}]"),
                    message: format!(
                        "the file's {list} has {len} entr{} (indexes 0 to {}): environment variables \
                         change entries, they do not add them",
                        if len == 1 { "y" } else { "ies" },
                        len.saturating_sub(1)
                    ),
                })
            })
            .collect();
        if !beyond.is_empty() {
            return Err(ConfigError::Invalid(beyond));
        }
    }

    let mut builder = Config::builder().add_source(File::from_str(text, format));
    for (key, (_, value)) in &overrides {
        builder = match builder.set_override(key.as_str(), value.as_str()) {
            Ok(b) => b,
            Err(e) => return Err(ConfigError::Invalid(vec![problem(key, e.to_string())])),
        };
    }
    let config = builder
        .build()
        .map_err(|e| ConfigError::Invalid(vec![problem("", format!("cannot parse: {e}"))]))?;

    let (raw, mut problems) = match deserialize_collecting::<RawSettings>(config, &problem) {
        Ok(parsed) => parsed,
        Err(problems) => return Err(ConfigError::Invalid(problems)),
    };

    let origin_of_key = |key: &str| origin_of(origin, &overrides, key);
    let context = Context {
        origin: &origin_of_key,
        base_dir: base_dir.to_path_buf(),
        env,
        source: origin.to_owned(),
    };
    match validate(&raw, &context) {
        Ok((settings, warnings)) if problems.is_empty() => Ok(Loaded { settings, warnings }),
        Ok(_) => Err(ConfigError::Invalid(problems)),
        Err(more) => {
            problems.extend(more);
            Err(ConfigError::Invalid(problems))
        }
    }
}

/// Parses one YAML or TOML document (the policy file, for instance) into `T` the way the
/// configuration is parsed: every unknown key and the first type error are reported as problems
/// naming `origin` and the key path.
///
/// # Errors
/// Every problem found.
pub fn parse_document<T: DeserializeOwned>(
    text: &str,
    format: FileFormat,
    origin: &str,
) -> Result<T, Vec<Problem>> {
    let problem = |key: &str, message: String| Problem {
        origin: origin.to_owned(),
        key: key.to_owned(),
        message,
    };
    let config = Config::builder()
        .add_source(File::from_str(text, format))
        .build()
        .map_err(|e| vec![problem("", format!("cannot parse: {e}"))])?;
    match deserialize_collecting::<T>(config, &problem)? {
        (value, problems) if problems.is_empty() => Ok(value),
        (_, problems) => Err(problems),
    }
}

/// Most type errors reported from one document (each costs one more pass).
const MAX_TYPE_ERRORS: usize = 64;

/// Deserializes `config` into `T`: unknown keys become problems (the value is still returned); a
/// type error is reported, the value in error set aside (a key removed, a list entry emptied) and
/// the document read again, so that one run names every type error, not the first only (at most
/// [`MAX_TYPE_ERRORS`]). `serde_ignored` sees every key no field claims; `serde_path_to_error` says
/// where a type error is.
fn deserialize_collecting<T: DeserializeOwned>(
    mut config: Config,
    problem: &dyn Fn(&str, String) -> Problem,
) -> Result<(T, Vec<Problem>), Vec<Problem>> {
    let mut type_errors: Vec<Problem> = Vec::new();
    loop {
        let mut unknown: Vec<String> = Vec::new();
        let mut track = serde_path_to_error::Track::new();
        let parsed: Result<T, _> = serde_ignored::deserialize(
            serde_path_to_error::Deserializer::new(config.clone(), &mut track),
            |path| unknown.push(key_path_of_ignored(&path.to_string())),
        );
        // Another pass after a type error set its value aside; else this pass's answer is final.
        let again = match &parsed {
            Ok(_) => false,
            Err(error) => {
                let key = track.path().to_string();
                let key = if key == "." { String::new() } else { key };
                type_errors.push(problem(&key, strip_config_key_suffix(&error.to_string())));
                !key.is_empty() && type_errors.len() < MAX_TYPE_ERRORS && set_aside(&mut config.cache, &key)
            }
        };
        if again {
            continue;
        }
        unknown.sort();
        let mut problems: Vec<Problem> = unknown
            .iter()
            .map(|key| problem(key, "unknown key".to_owned()))
            .collect();
        return match parsed {
            Ok(value) if type_errors.is_empty() => Ok((value, problems)),
            _ => {
                problems.extend(type_errors);
                Err(problems)
            }
        };
    }
}

/// Sets aside the value at `path` (`brokers[1].timeout_secs`) in `root`: a key is removed from its
/// table (its default applies), a list entry becomes an empty table (the indexes of the others
/// stay). Returns whether something was set aside.
fn set_aside(root: &mut config::Value, path: &str) -> bool {
    use config::ValueKind;
    // `a.b[1].c` → [Key(a), Key(b), Index(1), Key(c)].
    enum Step<'p> {
        Key(&'p str),
        Index(usize),
    }
    let mut steps = Vec::new();
    for part in path.split('.') {
        let (name, indexes) = part.split_once('[').map_or((part, ""), |(n, rest)| (n, rest));
        if !name.is_empty() {
            steps.push(Step::Key(name));
        }
        for index in indexes.split('[').filter(|i| !i.is_empty()) {
            match index.trim_end_matches(']').parse() {
                Ok(i) => steps.push(Step::Index(i)),
                Err(_) => return false,
            }
        }
    }
    let Some((last, parents)) = steps.split_last() else {
        return false;
    };
    let mut node = root;
    for step in parents {
        let next = match (step, &mut node.kind) {
            (Step::Key(key), ValueKind::Table(table)) => table.get_mut(*key),
            (Step::Index(i), ValueKind::Array(array)) => array.get_mut(*i),
            _ => None,
        };
        match next {
            Some(next) => node = next,
            None => return false,
        }
    }
    match (last, &mut node.kind) {
        (Step::Key(key), ValueKind::Table(table)) => table.remove(*key).is_some(),
        (Step::Index(i), ValueKind::Array(array)) => match array.get_mut(*i) {
            Some(entry) if !matches!(entry.kind, ValueKind::Table(ref t) if t.is_empty()) => {
                entry.kind = ValueKind::Table(config::Map::new());
                true
            }
            _ => false,
        },
        _ => false,
    }
}

/// Key path → (variable name, value) for every `OSB_GATEWAY__…` variable.
fn env_overrides(env: &HashMap<String, String>) -> BTreeMap<String, (String, String)> {
    env.iter()
        .filter_map(|(name, value)| {
            let rest = name.strip_prefix(ENV_PREFIX)?;
            let mut key = String::new();
            for segment in rest.split("__") {
                if segment.is_empty() {
                    return None;
                }
                if segment.bytes().all(|b| b.is_ascii_digit()) && !key.is_empty() {
                    key.push('[');
                    key.push_str(segment);
                    key.push(']');
                } else {
                    if !key.is_empty() {
                        key.push('.');
                    }
                    key.push_str(&segment.to_ascii_lowercase());
                }
            }
            Some((key, (name.clone(), value.clone())))
        })
        .collect()
}

/// Largest list index an environment variable may use (`OSB_GATEWAY__BROKERS__<i>__…`).
pub const MAX_ENV_INDEX: u64 = 1023;

/// The list indexes of a key path (`brokers[3].rename` → 3); `None` for one beyond `u64`.
fn list_indexes(key: &str) -> impl Iterator<Item = Option<u64>> + '_ {
    key.split('[')
        .skip(1)
        .filter_map(|rest| rest.split_once(']'))
        .map(|(digits, _)| digits.parse().ok())
}

/// Names the variable that set `key` (or a parent of it), else the file.
fn origin_of(file: &str, overrides: &BTreeMap<String, (String, String)>, key: &str) -> String {
    overrides
        .iter()
        .find(|(path, _)| {
            key == path.as_str()
                || key
                    .strip_prefix(path.as_str())
                    .is_some_and(|r| r.starts_with(['.', '[']))
        })
        .map_or_else(|| file.to_owned(), |(_, (var, _))| format!("${var}"))
}

/// `brokers.0.?.bogus` (serde_ignored's form) → `brokers[0].bogus`.
fn key_path_of_ignored(path: &str) -> String {
    let mut key = String::new();
    for segment in path.split('.').filter(|s| *s != "?" && !s.is_empty()) {
        if segment.bytes().all(|b| b.is_ascii_digit()) {
            key.push('[');
            key.push_str(segment);
            key.push(']');
        } else {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(segment);
        }
    }
    key
}

/// The `config` crate appends `for key `…`` to type errors; we print the key ourselves.
fn strip_config_key_suffix(message: &str) -> String {
    match message.find(" for key `") {
        Some(i) => message.get(..i).unwrap_or(message).to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests;
