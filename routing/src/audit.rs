//! The audit log: who did what through the gateway, and how it ended.
//!
//! One [`AuditRecord`] per mutating platform call (provision, update, deprovision, bind, unbind,
//! whether forwarded or refused) and per operator action on the admin API (adopt, abandon, catalog
//! confirm, refresh, policy reload). Records are appended to the store (both backends, see
//! [`crate::Store::append_audit`]), which numbers them (`seq`, increasing), and read back newest
//! first with [`AuditQuery`] filters and a `before` cursor.
//!
//! What a record holds is chosen so that it can be shown to any operator: names, ids, statuses,
//! OSB error codes, the platform's user name from the originating identity, and an operator's
//! reason. Never credentials, parameters, binding answers, upstream error descriptions, or the
//! originating identity's other fields (groups, extras). The gateway builds records; this module
//! only defines them and how a query selects them (pure, no IO).

use serde::{Deserialize, Serialize};

/// Most records one query returns.
pub const MAX_AUDIT_LIMIT: usize = 1000;

/// Who acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    /// A platform's OSB call (`actor` is the platform's name).
    Platform,
    /// An operator's call on the admin API (`actor` is the admin user name).
    Admin,
}

impl AuditKind {
    /// `platform` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Platform => "platform",
            AuditKind::Admin => "admin",
        }
    }
}

/// How a call ended, from the caller's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    /// Done (2xx other than 202).
    Succeeded,
    /// Accepted and in progress (202).
    Accepted,
    /// Refused with a 4xx: by the gateway (nothing was forwarded) or by the upstream.
    Refused,
    /// Failed with a 5xx: the upstream failed, timed out or could not be reached, or the gateway
    /// could not record what happened.
    Failed,
}

impl AuditOutcome {
    /// The outcome of an answer with `status`.
    pub fn of_status(status: u16) -> Self {
        match status {
            202 => AuditOutcome::Accepted,
            200..=299 => AuditOutcome::Succeeded,
            400..=499 => AuditOutcome::Refused,
            _ => AuditOutcome::Failed,
        }
    }

    /// `succeeded`, `accepted`, `refused`, `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Succeeded => "succeeded",
            AuditOutcome::Accepted => "accepted",
            AuditOutcome::Refused => "refused",
            AuditOutcome::Failed => "failed",
        }
    }
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position in the log, assigned by the store on append (0 before).
    #[serde(default)]
    pub seq: u64,
    /// When the call finished (ms since the Unix epoch).
    pub at_ms: u64,
    pub kind: AuditKind,
    /// The platform's name, or the admin user name (`anonymous` when the admin API is open).
    pub actor: String,
    /// The end user: the originating identity's user name (`username` of Kubernetes, `user_id` of
    /// Cloud Foundry), or the operator an admin call names (`X-OSB-Gateway-Operator`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `provision`, `update`, `deprovision`, `bind`, `unbind`; `admin.adopt`, `admin.abandon`, ….
    pub operation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding_id: Option<String>,
    /// The upstream broker the call went (or would have gone) to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker: Option<String>,
    /// Gateway service and plan ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<String>,
    /// The policy's verdict: `allow`, or `deny (rule NAME)`; absent when the call was refused
    /// before the policy ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The upstream's status, when the call was forwarded and answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
    /// The status the caller got.
    pub status: u16,
    pub outcome: AuditOutcome,
    /// The OSB `error` code of a refusal or failure (`ConcurrencyError`, `UpstreamError`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why an operator acted (admin calls), or what an admin call did, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `X-Broker-API-Request-Identity` (platform calls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_identity: Option<String>,
    pub duration_ms: u64,
}

/// Which records to read: filters (all must hold), newest first, `limit` at most, only records
/// older than `before` (the `seq` of the last record of the previous page).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    pub before: Option<u64>,
    #[serde(default)]
    pub limit: Option<usize>,
    #[serde(default)]
    pub instance_id: Option<String>,
    #[serde(default)]
    pub binding_id: Option<String>,
    #[serde(default)]
    pub operation: Option<String>,
    #[serde(default)]
    pub actor: Option<String>,
    #[serde(default)]
    pub kind: Option<AuditKind>,
    #[serde(default)]
    pub outcome: Option<AuditOutcome>,
    /// Only records at or after this time (ms since the epoch).
    #[serde(default)]
    pub since_ms: Option<u64>,
    /// Only records with a larger `seq`: with `before`, a window of the log that bounds what a
    /// read examines (the console reads the log in windows, whatever its filters select).
    #[serde(default)]
    pub after: Option<u64>,
}

impl AuditQuery {
    /// The page size: `limit`, at most [`MAX_AUDIT_LIMIT`]; 100 when not given.
    pub fn page_size(&self) -> usize {
        self.limit.unwrap_or(100).clamp(1, MAX_AUDIT_LIMIT)
    }

    /// `true` when `record` passes every filter (the cursor included).
    pub fn matches(&self, record: &AuditRecord) -> bool {
        let same = |want: &Option<String>, have: &Option<String>| {
            want.as_ref().is_none_or(|w| have.as_ref() == Some(w))
        };
        self.before.is_none_or(|before| record.seq < before)
            && self.after.is_none_or(|after| record.seq > after)
            && same(&self.instance_id, &record.instance_id)
            && same(&self.binding_id, &record.binding_id)
            && self.operation.as_ref().is_none_or(|o| *o == record.operation)
            && self.actor.as_ref().is_none_or(|a| *a == record.actor)
            && self.kind.is_none_or(|k| k == record.kind)
            && self.outcome.is_none_or(|o| o == record.outcome)
            && self.since_ms.is_none_or(|since| record.at_ms >= since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn record(seq: u64, operation: &str, instance_id: Option<&str>) -> AuditRecord {
        AuditRecord {
            seq,
            at_ms: 1000 + seq,
            kind: AuditKind::Platform,
            actor: "k8s".into(),
            user: Some("alice".into()),
            operation: operation.into(),
            instance_id: instance_id.map(Into::into),
            binding_id: None,
            broker: Some("aws".into()),
            service_id: None,
            plan_id: None,
            policy: Some("allow".into()),
            upstream_status: Some(201),
            status: 201,
            outcome: AuditOutcome::Succeeded,
            error: None,
            reason: None,
            request_identity: None,
            duration_ms: 3,
        }
    }

    #[test]
    fn queries_filter_and_page() {
        let r = record(5, "provision", Some("i1"));
        assert!(AuditQuery::default().matches(&r));
        let q = |f: fn(&mut AuditQuery)| {
            let mut q = AuditQuery::default();
            f(&mut q);
            q.matches(&r)
        };
        assert!(q(|q| q.before = Some(6)));
        assert!(!q(|q| q.before = Some(5)));
        assert!(q(|q| q.instance_id = Some("i1".into())));
        assert!(!q(|q| q.instance_id = Some("i2".into())));
        assert!(!q(|q| q.binding_id = Some("b1".into())));
        assert!(q(|q| q.operation = Some("provision".into())));
        assert!(!q(|q| q.kind = Some(AuditKind::Admin)));
        assert!(!q(|q| q.outcome = Some(AuditOutcome::Failed)));
        assert!(q(|q| q.since_ms = Some(1005)));
        assert!(!q(|q| q.since_ms = Some(1006)));
        assert!(q(|q| q.after = Some(4)));
        assert!(!q(|q| q.after = Some(5)));
        assert_eq!(AuditQuery::default().page_size(), 100);
        let huge = AuditQuery {
            limit: Some(1 << 20),
            ..AuditQuery::default()
        };
        assert_eq!(huge.page_size(), MAX_AUDIT_LIMIT);
    }

    #[test]
    fn outcomes_follow_the_status() {
        assert_eq!(AuditOutcome::of_status(201), AuditOutcome::Succeeded);
        assert_eq!(AuditOutcome::of_status(202), AuditOutcome::Accepted);
        assert_eq!(AuditOutcome::of_status(410), AuditOutcome::Refused);
        assert_eq!(AuditOutcome::of_status(504), AuditOutcome::Failed);
    }

    #[test]
    fn records_round_trip_without_empty_fields() {
        let r = record(1, "bind", None);
        let text = serde_json::to_string(&r).unwrap();
        assert!(!text.contains("binding_id"));
        assert_eq!(serde_json::from_str::<AuditRecord>(&text).unwrap(), r);
    }
}
