//! What the ownership registry remembers about each instance and binding.
//!
//! A record says who owns the resource (platform), where it lives (broker, upstream ids), whether it
//! exists for the platform (`Creating`, `Ready`) or is being cleaned up by the gateway (`Orphaned`),
//! and which operation is in flight. An operation in phase [`Phase::Sent`] is a write-ahead intent:
//! the request may have reached the upstream but its outcome was not recorded yet; recovery resolves
//! those after a crash. Records are versioned so that every change is a compare-and-swap.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Whether a resource exists for its platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceState {
    /// Provision (bind) sent or accepted upstream, not finished.
    Creating,
    /// Provisioned (bound).
    Ready,
    /// The gateway absorbed a failed create and deletes the resource upstream until 200/410.
    /// Invisible to the platform: it behaves as if it did not exist.
    Orphaned(Mitigation),
}

impl ResourceState {
    /// `creating`, `ready` or `orphaned` (inventory filters, admin output).
    pub fn name(&self) -> &'static str {
        match self {
            ResourceState::Creating => "creating",
            ResourceState::Ready => "ready",
            ResourceState::Orphaned(_) => "orphaned",
        }
    }
}

/// Progress of the orphan mitigation of one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mitigation {
    /// Why the resource was orphaned (no secrets).
    pub reason: String,
    pub attempts: u32,
    /// Not before this time (ms since the epoch).
    pub next_attempt_ms: u64,
    /// The upstream's operation when it accepted the delete asynchronously.
    pub operation: Option<String>,
    pub last_error: Option<String>,
    /// A "gone" answer (200, 410) earlier than this (ms since the epoch) is confirmed by one more
    /// delete at this time: the request that failed may still be on its way to the upstream (held
    /// by a proxy, a retransmission) and create the resource after the first delete found nothing.
    /// 0 for records written before this field existed.
    #[serde(default)]
    pub settle_until_ms: u64,
}

/// Which operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    Provision,
    Update,
    Deprovision,
    Bind,
    Unbind,
}

impl OperationKind {
    /// The OSB word, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::Provision => "provision",
            OperationKind::Update => "update",
            OperationKind::Deprovision => "deprovision",
            OperationKind::Bind => "bind",
            OperationKind::Unbind => "unbind",
        }
    }
}

/// How far an operation got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Write-ahead: about to be sent, or sent with the outcome not yet recorded.
    Sent,
    /// The upstream answered 202: in progress, the platform polls last_operation.
    Accepted,
}

/// The operation in flight on a resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    pub kind: OperationKind,
    pub phase: Phase,
    /// The upstream's `operation` string (as the upstream sent it, not encoded).
    pub upstream_operation: Option<String>,
    /// For an update that changes the plan: the new plan (gateway id, upstream id), applied to the
    /// record when the update succeeds. Until then the record keeps the old plan (OSB polls
    /// `last_operation` of an update with the plan prior to it).
    pub plan_change: Option<(String, String)>,
    /// Fingerprint of the request that started it: an identical retry is forwarded, anything else
    /// meets a 422 `ConcurrencyError`.
    pub fingerprint: String,
    pub started_ms: u64,
    /// The gateway replica that wrote the intent: while it lives, nobody else resolves it.
    #[serde(default)]
    pub replica: Option<String>,
}

/// A service instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub instance_id: String,
    /// The platform that created it; other platforms see nothing.
    pub platform: String,
    pub broker: String,
    pub service_id: String,
    pub plan_id: String,
    pub upstream_service_id: String,
    pub upstream_plan_id: String,
    /// Fingerprint of the provision request (service, plan, parameters).
    pub fingerprint: String,
    /// The platform's `context` (namespace, organization, annotations) from the provision and
    /// later updates: policy rules about calls that carry none (deprovision, unbind) use it.
    #[serde(default)]
    pub context: Option<serde_json::Value>,
    pub state: ResourceState,
    pub operation: Option<Operation>,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// Bumped by the store on every write.
    pub version: u64,
    /// The quota counts it is counted in (keys of the policy's quotas when it was created); while it
    /// is not orphaned, the store counts it toward each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quotas: Vec<String>,
}

/// A service binding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingRecord {
    pub binding_id: String,
    pub instance_id: String,
    pub platform: String,
    pub broker: String,
    pub service_id: String,
    pub plan_id: String,
    pub upstream_service_id: String,
    pub upstream_plan_id: String,
    /// Fingerprint of the bind request (service, plan, parameters, bind_resource).
    pub fingerprint: String,
    pub state: ResourceState,
    pub operation: Option<Operation>,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub version: u64,
    /// As [`InstanceRecord::quotas`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quotas: Vec<String>,
}

impl InstanceRecord {
    /// `true` when `platform` may see it (it owns it and it is not being cleaned up).
    pub fn visible_to(&self, platform: &str) -> bool {
        self.platform == platform && !matches!(self.state, ResourceState::Orphaned(_))
    }
}

impl BindingRecord {
    /// `true` when `platform` may see it.
    pub fn visible_to(&self, platform: &str) -> bool {
        self.platform == platform && !matches!(self.state, ResourceState::Orphaned(_))
    }
}

/// A stable digest of the parts of a request that decide whether two requests are "the same":
/// object keys are sorted, so `{"a":1,"b":2}` and `{"b":2,"a":1}` agree. Only the digest is kept, so
/// parameters (which may hold secrets) are never stored.
pub fn fingerprint(parts: &[(&str, Option<&Value>)]) -> String {
    let mut hasher = Sha256::new();
    for (name, value) in parts {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        match value {
            Some(value) => write_canonical(&mut hasher, value),
            None => hasher.update(b"~"),
        }
        hasher.update([0]);
    }
    let digest = hasher.finalize();
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

fn write_canonical(hasher: &mut Sha256, value: &Value) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            hasher.update(b"{");
            for key in keys {
                hasher.update(serde_json::to_string(key).unwrap_or_default().as_bytes());
                hasher.update(b":");
                if let Some(v) = map.get(key) {
                    write_canonical(hasher, v);
                }
                hasher.update(b",");
            }
            hasher.update(b"}");
        }
        Value::Array(items) => {
            hasher.update(b"[");
            for item in items {
                write_canonical(hasher, item);
                hasher.update(b",");
            }
            hasher.update(b"]");
        }
        other => hasher.update(other.to_string().as_bytes()),
    }
}

/// An empty JSON object, for fingerprints of requests without parameters.
pub fn empty_object() -> Value {
    Value::Object(Map::new())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn fingerprints_ignore_key_order_but_not_values() {
        let a = json!({"a": 1, "b": {"y": [1, 2], "x": null}});
        let b = json!({"b": {"x": null, "y": [1, 2]}, "a": 1});
        let c = json!({"a": 1, "b": {"x": null, "y": [2, 1]}});
        let fp = |v: &Value| fingerprint(&[("service_id", Some(&json!("s"))), ("parameters", Some(v))]);
        assert_eq!(fp(&a), fp(&b));
        assert_ne!(fp(&a), fp(&c));
        assert_ne!(
            fingerprint(&[("parameters", None)]),
            fingerprint(&[("parameters", Some(&empty_object()))])
        );
    }

    #[test]
    fn records_round_trip_through_json() {
        let record = InstanceRecord {
            instance_id: "i".into(),
            platform: "k8s".into(),
            broker: "aws".into(),
            service_id: "gs".into(),
            plan_id: "gp".into(),
            upstream_service_id: "us".into(),
            upstream_plan_id: "up".into(),
            fingerprint: "f".into(),
            context: None,
            state: ResourceState::Orphaned(Mitigation {
                reason: "provision timed out".into(),
                attempts: 2,
                next_attempt_ms: 5,
                operation: None,
                last_error: Some("500".into()),
                settle_until_ms: 0,
            }),
            operation: None,
            created_ms: 1,
            updated_ms: 2,
            version: 3,
            quotas: Vec::new(),
        };
        let text = serde_json::to_string(&record).unwrap();
        assert_eq!(serde_json::from_str::<InstanceRecord>(&text).unwrap(), record);
    }
}
