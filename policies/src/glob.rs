//! Glob patterns for names: `*` matches any run of characters (also none), `?` exactly one.
//! Everything else matches itself; matching is case-sensitive, as OSB names are.
//!
//! Matching allocates nothing for the names a policy meets (ASCII), and a pattern without `*` or
//! `?` is a plain comparison: a decision probes many rules, each probe is a few comparisons.

/// A compiled glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    text: String,
    /// No `*` or `?`: matches itself only.
    literal: bool,
}

impl Glob {
    pub fn new(pattern: &str) -> Self {
        Glob {
            text: pattern.to_owned(),
            literal: !pattern.contains(['*', '?']),
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The name this pattern matches, when it matches one name only (no `*` or `?`).
    pub fn literal(&self) -> Option<&str> {
        self.literal.then_some(self.text.as_str())
    }

    /// Whether `name` matches the whole pattern.
    pub fn matches(&self, name: &str) -> bool {
        if self.literal {
            return self.text == name;
        }
        if self.text.is_ascii() && name.is_ascii() {
            // One byte is one character: match the bytes, nothing collected.
            return wildcard(self.text.as_bytes(), name.as_bytes());
        }
        let pattern: Vec<char> = self.text.chars().collect();
        let name: Vec<char> = name.chars().collect();
        wildcard(&pattern, &name)
    }
}

/// Whether `name` matches `pattern` (`*` any run, `?` one item): iterative, with one backtrack
/// point, linear in practice.
fn wildcard<T: Copy + PartialEq + Wild>(pattern: &[T], name: &[T]) -> bool {
    let (mut p, mut n) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(&c) if c.is_star() => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c.is_any() => {
                p += 1;
                n += 1;
            }
            Some(&c) if Some(&c) == name.get(n) => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .is_some_and(|rest| rest.iter().all(|c| c.is_star()))
}

/// The two wildcards, in bytes or characters.
trait Wild {
    fn is_star(&self) -> bool;
    fn is_any(&self) -> bool;
}

impl Wild for u8 {
    fn is_star(&self) -> bool {
        *self == b'*'
    }
    fn is_any(&self) -> bool {
        *self == b'?'
    }
}

impl Wild for char {
    fn is_star(&self) -> bool {
        *self == '*'
    }
    fn is_any(&self) -> bool {
        *self == '?'
    }
}

/// Any of `globs` matches `name`; `None` (no list given) matches everything.
pub fn any_matches(globs: Option<&[Glob]>, name: &str) -> bool {
    globs.is_none_or(|globs| globs.iter().any(|g| g.matches(name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        for (pattern, name, want) in [
            ("*", "", true),
            ("*", "azure.mysql", true),
            ("azure.*", "azure.mysql", true),
            ("azure.*", "aws.s3", false),
            ("*.s3", "aws.s3", true),
            ("a?s.*", "aws.s3", true),
            ("a?s.*", "as.s3", false),
            ("team-*-prod", "team-a-prod", true),
            ("team-*-prod", "team-a-staging", false),
            ("exact", "exact", true),
            ("exact", "Exact", false),
            ("*a*b*", "xxaxxbxx", true),
            ("*a*b", "xxaxxbxxc", false),
            ("?", "é", true),
            ("é*", "éa", true),
            ("a?c", "aéc", true),
            ("a?c", "abbc", false),
            ("", "", true),
            ("", "a", false),
        ] {
            assert_eq!(Glob::new(pattern).matches(name), want, "{pattern} ~ {name}");
        }
        assert_eq!(Glob::new("k8s-prod").literal(), Some("k8s-prod"));
        assert_eq!(Glob::new("k8s-*").literal(), None);
    }
}
