//! The policy's names checked against the configuration and the catalogs: platforms and brokers
//! that are configured (`check-config`, `serve`, reloads), services and plans that some catalog
//! has (`check-config --fetch`).

use super::*;

impl Policy {
    /// Problems that only the configuration can reveal: a rule or limit naming a platform or a
    /// broker that is not configured (a glob that matches none of them), a placement candidate
    /// naming an unknown broker. Such a rule can never apply: a typo, or a leftover.
    pub fn check_names(&self, platforms: &[&str], brokers: &[&str], origin: &str) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut unmatched = |key: String, globs: Option<&Vec<Glob>>, names: &[&str], what: &str| {
            for (j, glob) in globs.into_iter().flatten().enumerate() {
                if !names.iter().any(|name| glob.matches(name)) {
                    problems.push(Problem {
                        origin: origin.to_owned(),
                        key: format!("{key}[{j}]"),
                        message: format!("{:?} matches no configured {what}", glob.as_str()),
                    });
                }
            }
        };
        for (key, selector) in self.selectors() {
            unmatched(
                format!("{key}.platforms"),
                selector.platforms.as_ref(),
                platforms,
                "platform",
            );
            unmatched(
                format!("{key}.brokers"),
                selector.brokers.as_ref(),
                brokers,
                "broker",
            );
        }
        for (i, (glob, _)) in self.limits.platforms.iter().enumerate() {
            if !platforms.iter().any(|name| glob.matches(name)) {
                problems.push(Problem {
                    origin: origin.to_owned(),
                    key: format!("limits.platforms[{i}].name"),
                    message: format!("{:?} matches no configured platform", glob.as_str()),
                });
            }
        }
        for (i, (glob, _)) in self.limits.brokers.iter().enumerate() {
            if !brokers.iter().any(|name| glob.matches(name)) {
                problems.push(Problem {
                    origin: origin.to_owned(),
                    key: format!("limits.brokers[{i}].name"),
                    message: format!("{:?} matches no configured broker", glob.as_str()),
                });
            }
        }
        for (i, offering) in self.offerings.iter().enumerate() {
            for (j, rule) in offering.placement.iter().enumerate() {
                for (k, candidate) in rule.candidates.iter().enumerate() {
                    if !brokers.contains(&candidate.broker.as_str()) {
                        problems.push(Problem {
                            origin: origin.to_owned(),
                            key: format!("offerings[{i}].placement[{j}].candidates[{k}].broker"),
                            message: format!("no broker named {:?} is configured", candidate.broker),
                        });
                    }
                }
            }
        }
        problems
    }

    /// Problems that only the catalogs can reveal: a rule whose `services` or `plans` glob
    /// matches no published service or plan name (the brokers' namespaced names and the logical
    /// offerings').
    pub fn check_catalog_names(&self, services: &[&str], plans: &[&str], origin: &str) -> Vec<Problem> {
        let offering_plans: Vec<&str> = self
            .offerings
            .iter()
            .flat_map(|o| o.plans.iter().map(|p| p.name.as_str()))
            .collect();
        let offerings: Vec<&str> = self.offerings.iter().map(|o| o.name.as_str()).collect();
        let mut problems = Vec::new();
        for (key, selector) in self.selectors() {
            for (field, globs, names, extra, what) in [
                (
                    "services",
                    selector.services.as_ref(),
                    services,
                    &offerings,
                    "service",
                ),
                ("plans", selector.plans.as_ref(), plans, &offering_plans, "plan"),
            ] {
                for (j, glob) in globs.into_iter().flatten().enumerate() {
                    if !names.iter().chain(extra.iter()).any(|name| glob.matches(name)) {
                        problems.push(Problem {
                            origin: origin.to_owned(),
                            key: format!("{key}.{field}[{j}]"),
                            message: format!("{:?} matches no {what} in the catalogs", glob.as_str()),
                        });
                    }
                }
            }
        }
        problems
    }

    /// Every rule's selector with the key path of its rule.
    fn selectors(&self) -> Vec<(String, &Selector)> {
        let visibility = self
            .visibility
            .iter()
            .enumerate()
            .map(|(i, r)| (format!("visibility.rules[{i}]"), &r.selector));
        let parameters = self
            .parameters
            .iter()
            .enumerate()
            .map(|(i, r)| (format!("parameters[{i}]"), &r.selector));
        let deny = self
            .deny
            .iter()
            .enumerate()
            .map(|(i, r)| (format!("deny[{i}]"), &r.selector));
        let quotas = self
            .quotas
            .iter()
            .enumerate()
            .map(|(i, r)| (format!("quotas[{i}]"), &r.selector));
        visibility.chain(parameters).chain(deny).chain(quotas).collect()
    }
}
