//! How the embedded store lays a record out on disk: one format byte, then the record in
//! [postcard](https://docs.rs/postcard) (varints, no field names), without its id (the table's key
//! holds it). An instance's `context` is kept as its JSON text: postcard cannot read a free-form
//! JSON value back.
//!
//! Files written before this format hold records as JSON objects (first byte `{`): they are read
//! as they are and rewritten in this format on their next change.
//!
//! The layout is positional: adding, removing or reordering a field of a record (or of
//! [`Operation`], [`ResourceState`], [`Mitigation`](crate::record::Mitigation)) changes it. Such a
//! change needs a new format byte and a decoder for the old one; the golden test below fails
//! until it has them.

use serde::{Deserialize, Serialize};

use super::store_error;
use crate::RoutingError;
use crate::record::{BindingRecord, InstanceRecord, Operation, ResourceState};

/// The first byte of a record in this format.
const FORMAT_1: u8 = 1;

/// A record the embedded store keeps, with its on-disk form.
pub(super) trait Stored: Sized {
    /// The record without its id, after the format byte.
    fn encode(&self) -> Result<Vec<u8>, RoutingError>;
    /// The record stored under `id`.
    fn decode(id: &str, bytes: &[u8]) -> Result<Self, RoutingError>;
}

fn encode_row(row: &impl Serialize) -> Result<Vec<u8>, RoutingError> {
    postcard::to_extend(row, vec![FORMAT_1]).map_err(|e| store_error("encode record", e))
}

/// `Some(row)` for this format, `None` for a JSON record of an earlier file.
fn decode_row<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<Option<T>, RoutingError> {
    match bytes.split_first() {
        Some((&FORMAT_1, row)) => postcard::from_bytes(row)
            .map(Some)
            .map_err(|e| store_error("decode record", e)),
        Some((b'{', _)) => Ok(None),
        _ => Err(store_error("decode record", "unknown record format")),
    }
}

fn json<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, RoutingError> {
    serde_json::from_slice(bytes).map_err(|e| store_error("decode record", e))
}

/// An instance as written (borrowed from the record).
#[derive(Serialize)]
struct InstanceOut<'a> {
    platform: &'a str,
    broker: &'a str,
    service_id: &'a str,
    plan_id: &'a str,
    upstream_service_id: &'a str,
    upstream_plan_id: &'a str,
    fingerprint: &'a str,
    context: Option<String>,
    state: &'a ResourceState,
    operation: Option<&'a Operation>,
    created_ms: u64,
    updated_ms: u64,
    version: u64,
}

/// An instance as read: the same fields, in the same order, as [`InstanceOut`].
#[derive(Deserialize)]
struct InstanceIn {
    platform: String,
    broker: String,
    service_id: String,
    plan_id: String,
    upstream_service_id: String,
    upstream_plan_id: String,
    fingerprint: String,
    context: Option<String>,
    state: ResourceState,
    operation: Option<Operation>,
    created_ms: u64,
    updated_ms: u64,
    version: u64,
}

impl Stored for InstanceRecord {
    fn encode(&self) -> Result<Vec<u8>, RoutingError> {
        let context = match &self.context {
            Some(context) => {
                Some(serde_json::to_string(context).map_err(|e| store_error("encode record", e))?)
            }
            None => None,
        };
        encode_row(&InstanceOut {
            platform: &self.platform,
            broker: &self.broker,
            service_id: &self.service_id,
            plan_id: &self.plan_id,
            upstream_service_id: &self.upstream_service_id,
            upstream_plan_id: &self.upstream_plan_id,
            fingerprint: &self.fingerprint,
            context,
            state: &self.state,
            operation: self.operation.as_ref(),
            created_ms: self.created_ms,
            updated_ms: self.updated_ms,
            version: self.version,
        })
    }

    fn decode(id: &str, bytes: &[u8]) -> Result<Self, RoutingError> {
        let Some(row) = decode_row::<InstanceIn>(bytes)? else {
            return json(bytes);
        };
        let context = match row.context {
            Some(text) => Some(json(text.as_bytes())?),
            None => None,
        };
        Ok(InstanceRecord {
            instance_id: id.to_owned(),
            platform: row.platform,
            broker: row.broker,
            service_id: row.service_id,
            plan_id: row.plan_id,
            upstream_service_id: row.upstream_service_id,
            upstream_plan_id: row.upstream_plan_id,
            fingerprint: row.fingerprint,
            context,
            state: row.state,
            operation: row.operation,
            created_ms: row.created_ms,
            updated_ms: row.updated_ms,
            version: row.version,
        })
    }
}

/// A binding as written (borrowed from the record).
#[derive(Serialize)]
struct BindingOut<'a> {
    instance_id: &'a str,
    platform: &'a str,
    broker: &'a str,
    service_id: &'a str,
    plan_id: &'a str,
    upstream_service_id: &'a str,
    upstream_plan_id: &'a str,
    fingerprint: &'a str,
    state: &'a ResourceState,
    operation: Option<&'a Operation>,
    created_ms: u64,
    updated_ms: u64,
    version: u64,
}

/// A binding as read: the same fields, in the same order, as [`BindingOut`].
#[derive(Deserialize)]
struct BindingIn {
    instance_id: String,
    platform: String,
    broker: String,
    service_id: String,
    plan_id: String,
    upstream_service_id: String,
    upstream_plan_id: String,
    fingerprint: String,
    state: ResourceState,
    operation: Option<Operation>,
    created_ms: u64,
    updated_ms: u64,
    version: u64,
}

impl Stored for BindingRecord {
    fn encode(&self) -> Result<Vec<u8>, RoutingError> {
        encode_row(&BindingOut {
            instance_id: &self.instance_id,
            platform: &self.platform,
            broker: &self.broker,
            service_id: &self.service_id,
            plan_id: &self.plan_id,
            upstream_service_id: &self.upstream_service_id,
            upstream_plan_id: &self.upstream_plan_id,
            fingerprint: &self.fingerprint,
            state: &self.state,
            operation: self.operation.as_ref(),
            created_ms: self.created_ms,
            updated_ms: self.updated_ms,
            version: self.version,
        })
    }

    fn decode(id: &str, bytes: &[u8]) -> Result<Self, RoutingError> {
        let Some(row) = decode_row::<BindingIn>(bytes)? else {
            return json(bytes);
        };
        Ok(BindingRecord {
            binding_id: id.to_owned(),
            instance_id: row.instance_id,
            platform: row.platform,
            broker: row.broker,
            service_id: row.service_id,
            plan_id: row.plan_id,
            upstream_service_id: row.upstream_service_id,
            upstream_plan_id: row.upstream_plan_id,
            fingerprint: row.fingerprint,
            state: row.state,
            operation: row.operation,
            created_ms: row.created_ms,
            updated_ms: row.updated_ms,
            version: row.version,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::record::{Mitigation, OperationKind, Phase};

    fn instance() -> InstanceRecord {
        InstanceRecord {
            instance_id: "9d1c4e8e-0f5a-4a55-9a0e-6a3f3c2b1d00".into(),
            platform: "k8s".into(),
            broker: "aws".into(),
            service_id: "gs".into(),
            plan_id: "gp".into(),
            upstream_service_id: "us".into(),
            upstream_plan_id: "up".into(),
            fingerprint: "0123456789abcdef0123456789abcdef".into(),
            context: Some(json!({"platform": "kubernetes", "namespace": "ns-1"})),
            state: ResourceState::Orphaned(Mitigation {
                reason: "provision timed out".into(),
                attempts: 2,
                next_attempt_ms: 5,
                operation: None,
                last_error: Some("500".into()),
                settle_until_ms: 7,
            }),
            operation: Some(Operation {
                kind: OperationKind::Update,
                phase: Phase::Accepted,
                upstream_operation: Some("op-1".into()),
                plan_change: Some(("gp2".into(), "up2".into())),
                fingerprint: "f".into(),
                started_ms: 1_700_000_000_000,
                replica: Some("r1".into()),
            }),
            created_ms: 1_700_000_000_000,
            updated_ms: 1_700_000_000_001,
            version: 3,
        }
    }

    fn binding() -> BindingRecord {
        BindingRecord {
            binding_id: "b1".into(),
            instance_id: "i1".into(),
            platform: "k8s".into(),
            broker: "aws".into(),
            service_id: "gs".into(),
            plan_id: "gp".into(),
            upstream_service_id: "us".into(),
            upstream_plan_id: "up".into(),
            fingerprint: "f".into(),
            state: ResourceState::Ready,
            operation: None,
            created_ms: 1,
            updated_ms: 2,
            version: 1,
        }
    }

    #[test]
    fn records_round_trip_without_their_id_in_the_value() {
        let record = instance();
        let bytes = record.encode().unwrap();
        assert_eq!(bytes[0], FORMAT_1);
        assert!(
            !bytes
                .windows(record.instance_id.len())
                .any(|w| w == record.instance_id.as_bytes())
        );
        assert_eq!(
            InstanceRecord::decode(&record.instance_id, &bytes).unwrap(),
            record
        );
        let plain = InstanceRecord {
            context: None,
            state: ResourceState::Ready,
            operation: None,
            ..record
        };
        assert_eq!(
            InstanceRecord::decode(&plain.instance_id, &plain.encode().unwrap()).unwrap(),
            plain
        );
        let record = binding();
        assert_eq!(
            BindingRecord::decode("b1", &record.encode().unwrap()).unwrap(),
            record
        );
    }

    #[test]
    fn json_records_of_earlier_files_are_read() {
        let record = instance();
        let bytes = serde_json::to_vec(&record).unwrap();
        assert_eq!(InstanceRecord::decode("ignored", &bytes).unwrap(), record);
        let record = binding();
        let bytes = serde_json::to_vec(&record).unwrap();
        assert_eq!(BindingRecord::decode("ignored", &bytes).unwrap(), record);
        assert!(InstanceRecord::decode("x", b"\x09junk").is_err());
        assert!(InstanceRecord::decode("x", b"").is_err());
        assert!(InstanceRecord::decode("x", b"\x01\xff\xff").is_err());
    }

    /// Format 1, byte for byte: a change of a record's fields must come with a new format byte
    /// (and a decoder for this one), never silently reinterpret the files already written.
    #[test]
    fn format_1_is_stable() {
        let bytes = binding().encode().unwrap();
        let golden: &[u8] = b"\x01\x02i1\x03k8s\x03aws\x02gs\x02gp\x02us\x02up\x01f\x01\x00\x01\x02\x01";
        assert_eq!(bytes, golden);
        assert_eq!(BindingRecord::decode("b1", golden).unwrap(), binding());
    }
}
