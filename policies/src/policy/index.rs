//! Rules indexed by the platform they name, so that a decision probes only the rules that can
//! apply to the calling platform: a rule whose platforms are all plain names is listed under each
//! of them; a rule with a glob among its platforms, or none, under every platform. Candidates come
//! back in rule order, so "the first matching rule wins" holds as on the whole list.

use std::collections::HashMap;

use super::Selector;

/// Positions of rules, by platform.
#[derive(Debug, Clone, Default)]
pub struct RuleIndex {
    /// How many rules were indexed (a list of another length is probed whole).
    rules: usize,
    by_platform: HashMap<String, Vec<usize>>,
    /// Rules that may apply to any platform.
    any: Vec<usize>,
}

impl RuleIndex {
    /// The index of rules with these selectors, in rule order.
    pub fn of<'a>(selectors: impl Iterator<Item = &'a Selector>) -> RuleIndex {
        let mut index = RuleIndex::default();
        for (position, selector) in selectors.enumerate() {
            index.rules = position + 1;
            let names: Option<Vec<&str>> = selector
                .platforms
                .as_ref()
                .and_then(|globs| globs.iter().map(|g| g.literal()).collect());
            match names {
                Some(names) => {
                    for name in names {
                        let listed = index.by_platform.entry(name.to_owned()).or_default();
                        if listed.last() != Some(&position) {
                            listed.push(position);
                        }
                    }
                }
                None => index.any.push(position),
            }
        }
        index
    }

    /// The positions of the rules of a list of `rules` that may apply to `platform`, in order;
    /// every position when the list is not the one indexed.
    pub fn candidates(&self, platform: &str, rules: usize) -> Candidates<'_> {
        if rules != self.rules {
            return Candidates::All(0..rules);
        }
        let named = self.by_platform.get(platform).map_or(&[][..], Vec::as_slice);
        Candidates::Merged {
            named,
            any: &self.any,
        }
    }
}

/// Rule positions in order: two sorted lists merged, or all of them.
#[derive(Debug)]
pub enum Candidates<'a> {
    All(std::ops::Range<usize>),
    Merged { named: &'a [usize], any: &'a [usize] },
}

impl Iterator for Candidates<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        match self {
            Candidates::All(range) => range.next(),
            Candidates::Merged { named, any } => {
                let (next, rest_named, rest_any) = match (named.split_first(), any.split_first()) {
                    (Some((n, ns)), Some((a, _))) if n < a => (*n, ns, *any),
                    (_, Some((a, as_))) => (*a, *named, as_),
                    (Some((n, ns)), None) => (*n, ns, *any),
                    (None, None) => return None,
                };
                *named = rest_named;
                *any = rest_any;
                Some(next)
            }
        }
    }
}
