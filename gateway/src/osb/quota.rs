//! The quota counts a new instance or binding joins, as the policy step names them: for a call
//! (provision, bind: [`Decider::quotas`]) and for a record already in the registry
//! ([`Decider::quotas_of`], what `ops::recount` brings existing records in line with).

use osb_policies::policy::quota_of_key;
use osb_policies::{CallFacts, Explanation, Operation, QuotaHold};
use osb_routing::registry::InstanceRecord;

use super::decide::Decider;

impl Decider<'_> {
    /// The quota counts the call's new instance or binding joins, each named in the explanation.
    pub(super) fn quotas(&self, call: &CallFacts<'_>, explanation: &mut Explanation) -> Vec<QuotaHold> {
        let quotas = self.policy.policy.quotas_for(call);
        for hold in &quotas {
            let bucket = hold.bucket_text();
            let scope = if bucket.is_empty() {
                String::new()
            } else {
                format!(" for {bucket}")
            };
            explanation.0.push(format!(
                "quota {:?} applies{scope}: at most {} {}",
                hold.quota,
                hold.limit,
                hold.counted.as_str()
            ));
        }
        quotas
    }

    /// The quota keys `instance` (or, for [`Operation::Bind`], a binding of it) should hold under
    /// the policy in force, given `held`, the keys it holds now: the counts its provision (bind)
    /// would join, judged on the record (its platform, plan and context), with the keys that cannot
    /// be judged again kept (see below), and none of a quota the policy no longer has. `None` when its plan is in no catalog (its
    /// keys are left as they are).
    pub fn quotas_of(
        &self,
        instance: &InstanceRecord,
        operation: Operation,
        held: &[String],
    ) -> Option<Vec<String>> {
        let target = self.target(&instance.service_id, &instance.plan_id).ok()?;
        let call = CallFacts {
            platform: &instance.platform,
            operation,
            instance_id: &instance.instance_id,
            plan: target.plan_facts(),
            context: instance.context.as_ref(),
            parameters: None,
        };
        let quotas = &self.policy.policy;
        let computed = quotas.quotas_for(&call).into_iter().map(|h| h.key);
        // What cannot be judged again from the record is kept: a key of a quota whose `when`
        // reads parameters (not stored), and for a binding every key of a quota still in force
        // (its bind's context is not stored either; the instance's stands in only for quotas the
        // binding is in no count of).
        let kept = |key: &String| {
            quotas.quota(quota_of_key(key)).is_some_and(|q| {
                operation == Operation::Bind || q.when.iter().any(|(path, _)| path.starts_with("parameters."))
            })
        };
        let mut keys: Vec<String> = held.iter().filter(|k| kept(k)).cloned().collect();
        for key in computed {
            let quota = quota_of_key(&key);
            if !keys.iter().any(|k| quota_of_key(k) == quota) {
                keys.push(key);
            }
        }
        keys.sort();
        Some(keys)
    }
}
