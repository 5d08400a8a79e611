//! `osb-policies`: pure evaluation of the platform team's policy.
//!
//! Facts in, [`Decision`] out; no IO, no clock, no HTTP types. Today the gateway asks one question,
//! which platform may see which service; visibility rules, placement of logical offerings and
//! parameter rules arrive with the policy file (see the README's roadmap).
//!
//! # Layout
//! - [`Decision`]: an answer (allow, or deny with the rule and reason), never an error.
//! - [`Visibility`]: which services a platform sees; everything, until a policy file says otherwise.

/// The answer to a policy question. A denial is an answer, not a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Refused: `rule` names the rule that decided, `reason` is shown to the platform.
    Deny {
        rule: String,
        reason: String,
    },
}

impl Decision {
    /// `true` for [`Decision::Allow`].
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow)
    }
}

/// What a platform may see of the merged catalog.
#[derive(Debug, Clone, Default)]
pub struct Visibility;

impl Visibility {
    /// Whether `platform` sees the service published as `service_name`.
    pub fn service(&self, _platform: &str, _service_name: &str) -> Decision {
        Decision::Allow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_policy_everything_is_visible() {
        assert!(Visibility.service("k8s", "azure.mysql").is_allowed());
    }
}
