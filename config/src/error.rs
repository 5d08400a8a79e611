//! The one error type of `osb-config` and the [`Problem`] it carries.
//!
//! A configuration is either valid or comes back with every problem found, each naming where it
//! was written (`origin`: a file path or an environment variable) and the key path inside it.

use std::fmt;

/// One mistake in the configuration, printed as `ORIGIN: key.path: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file (or `$OSB_GATEWAY__…` variable) the offending value came from.
    pub origin: String,
    /// Dotted key path with list indexes, e.g. `brokers[1].url`; empty for the whole file.
    pub key: String,
    /// What is wrong, lower-case, without secrets.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.origin, self.message)
        } else {
            write!(f, "{}: {}: {}", self.origin, self.key, self.message)
        }
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration has one or more problems; all of them are listed.
    #[error("{}", ProblemList(.0))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// Every problem, in the order found.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid(problems) => problems,
        }
    }
}

struct ProblemList<'a>(&'a [Problem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}
