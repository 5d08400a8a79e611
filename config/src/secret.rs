//! Secrets: platform passwords and bearer tokens, upstream credentials, the admin password.
//!
//! A secret is given exactly one way: literally (`password`), by environment variable
//! (`password_env`) or by file (`password_file`, trailing newline trimmed). The value lives in
//! [`Secret`], whose `Debug` and `Display` print `<redacted>`, so it cannot leak through a log line
//! or an error message by accident.

use std::fmt;

use subtle_free_eq::constant_time_eq;

/// A secret value; printing it shows `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value that must never be printed.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that needs it (an auth header, a comparison).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares with `candidate` in time independent of where they differ.
    pub fn matches(&self, candidate: &str) -> bool {
        constant_time_eq(self.0.as_bytes(), candidate.as_bytes())
    }

    /// Whether `candidate` is one of the secret's lines (a credential set: several values valid at
    /// once, one per line, for a rotation). Every line is compared, in constant time each.
    pub fn matches_any_line(&self, candidate: &str) -> bool {
        let mut found = false;
        for line in self.lines() {
            found |= constant_time_eq(line.as_bytes(), candidate.as_bytes());
        }
        found
    }

    /// The secret's non-empty lines: the values of a credential set, in the order given.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.0
            .lines()
            .map(|l| l.trim_end_matches('\r'))
            .filter(|l| !l.is_empty())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

mod subtle_free_eq {
    //! Constant-time equality without pulling a crypto crate into the config crate.

    /// `true` when `a == b`; the time taken depends only on the lengths.
    pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
        if a.len() != b.len() {
            return false;
        }
        let mut diff = 0u8;
        for (x, y) in a.iter().zip(b.iter()) {
            diff |= x ^ y;
        }
        diff == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), "<redacted>");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(s.matches("hunter2"));
        assert!(!s.matches("hunter3"));
        assert!(!s.matches("hunter"));
    }
}
