//! Glob patterns for names: `*` matches any run of characters (also none), `?` exactly one.
//! Everything else matches itself; matching is case-sensitive, as OSB names are.

/// A compiled glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: Vec<char>,
    text: String,
}

impl Glob {
    pub fn new(pattern: &str) -> Self {
        Glob {
            pattern: pattern.chars().collect(),
            text: pattern.to_owned(),
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `name` matches the whole pattern.
    pub fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        // Iterative wildcard matching with one backtrack point: linear in practice.
        let (mut p, mut n) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while n < name.len() {
            match self.pattern.get(p) {
                Some('*') => {
                    star = Some((p, n));
                    p += 1;
                }
                Some('?') => {
                    p += 1;
                    n += 1;
                }
                Some(c) if Some(c) == name.get(n) => {
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
        self.pattern
            .get(p..)
            .is_some_and(|rest| rest.iter().all(|c| *c == '*'))
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
        ] {
            assert_eq!(Glob::new(pattern).matches(name), want, "{pattern} ~ {name}");
        }
    }
}
