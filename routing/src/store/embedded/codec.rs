//! How the embedded store lays a record out on disk: one format byte, then the record in
//! [postcard](https://docs.rs/postcard) (varints, no field names), without its id (the table's key
//! holds it). Ids and fingerprints in their usual shapes are kept as bytes ([`Id`]): a UUID in 16
//! bytes rather than 36, a fingerprint in 16 rather than 32. An instance's `context` is kept as its
//! JSON text: postcard cannot read a free-form JSON value back.
//!
//! Files written before this format hold records as JSON objects (first byte `{`): they are read
//! as they are and rewritten in this format on their next change.
//!
//! A record that counts toward quotas (`quotas` not empty) is written in format 2: the format 1 row,
//! then the quota keys (a postcard list). Every other record is still written in format 1.
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
/// Format 1 followed by the record's quota keys.
const FORMAT_2: u8 = 2;

/// A record the embedded store keeps, with its on-disk form.
pub(super) trait Stored: Sized {
    /// The record without its id, after the format byte.
    fn encode(&self) -> Result<Vec<u8>, RoutingError>;
    /// The record stored under `id`.
    fn decode(id: &str, bytes: &[u8]) -> Result<Self, RoutingError>;
}

fn encode_row(row: &impl Serialize, quotas: &[String]) -> Result<Vec<u8>, RoutingError> {
    let format = if quotas.is_empty() { FORMAT_1 } else { FORMAT_2 };
    let bytes = postcard::to_extend(row, vec![format]).map_err(|e| store_error("encode record", e))?;
    if quotas.is_empty() {
        return Ok(bytes);
    }
    postcard::to_extend(quotas, bytes).map_err(|e| store_error("encode record", e))
}

/// `Some((row, quota keys))` for these formats, `None` for a JSON record of an earlier file.
fn decode_row<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<Option<(T, Vec<String>)>, RoutingError> {
    let fail = |e: postcard::Error| store_error("decode record", e);
    match bytes.split_first() {
        Some((&FORMAT_1, row)) => Ok(Some((postcard::from_bytes(row).map_err(fail)?, Vec::new()))),
        Some((&FORMAT_2, row)) => {
            let (row, rest) = postcard::take_from_bytes(row).map_err(fail)?;
            Ok(Some((row, postcard::from_bytes(rest).map_err(fail)?)))
        }
        Some((b'{', _)) => Ok(None),
        _ => Err(store_error("decode record", "unknown record format")),
    }
}

/// An id as written: a lowercase hyphenated UUID or a 32-digit lowercase hex string as its 16
/// bytes (read back to the same text), anything else as it is.
#[derive(Serialize)]
enum Id<'a> {
    Text(&'a str),
    Uuid([u8; 16]),
    Hex([u8; 16]),
}

impl<'a> Id<'a> {
    fn of(text: &'a str) -> Self {
        if text.len() == 36
            && let Ok(uuid) = uuid::Uuid::try_parse(text)
            && *uuid.hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer()) == *text
        {
            return Id::Uuid(*uuid.as_bytes());
        }
        if text.len() == 32
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            let mut bytes = [0u8; 16];
            for (i, byte) in bytes.iter_mut().enumerate() {
                let digits = text.get(2 * i..2 * i + 2).unwrap_or("00");
                *byte = u8::from_str_radix(digits, 16).unwrap_or_default();
            }
            return Id::Hex(bytes);
        }
        Id::Text(text)
    }
}

/// An id as read: the same variants, in the same order, as [`Id`].
#[derive(Deserialize)]
enum IdIn {
    Text(String),
    Uuid([u8; 16]),
    Hex([u8; 16]),
}

impl From<IdIn> for String {
    fn from(id: IdIn) -> String {
        match id {
            IdIn::Text(text) => text,
            IdIn::Uuid(bytes) => uuid::Uuid::from_bytes(bytes).hyphenated().to_string(),
            IdIn::Hex(bytes) => bytes.iter().map(|b| format!("{b:02x}")).collect(),
        }
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
    service_id: Id<'a>,
    plan_id: Id<'a>,
    upstream_service_id: Id<'a>,
    upstream_plan_id: Id<'a>,
    fingerprint: Id<'a>,
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
    service_id: IdIn,
    plan_id: IdIn,
    upstream_service_id: IdIn,
    upstream_plan_id: IdIn,
    fingerprint: IdIn,
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
        encode_row(
            &InstanceOut {
                platform: &self.platform,
                broker: &self.broker,
                service_id: Id::of(&self.service_id),
                plan_id: Id::of(&self.plan_id),
                upstream_service_id: Id::of(&self.upstream_service_id),
                upstream_plan_id: Id::of(&self.upstream_plan_id),
                fingerprint: Id::of(&self.fingerprint),
                context,
                state: &self.state,
                operation: self.operation.as_ref(),
                created_ms: self.created_ms,
                updated_ms: self.updated_ms,
                version: self.version,
            },
            &self.quotas,
        )
    }

    fn decode(id: &str, bytes: &[u8]) -> Result<Self, RoutingError> {
        let Some((row, quotas)) = decode_row::<InstanceIn>(bytes)? else {
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
            service_id: row.service_id.into(),
            plan_id: row.plan_id.into(),
            upstream_service_id: row.upstream_service_id.into(),
            upstream_plan_id: row.upstream_plan_id.into(),
            fingerprint: row.fingerprint.into(),
            context,
            state: row.state,
            operation: row.operation,
            created_ms: row.created_ms,
            updated_ms: row.updated_ms,
            version: row.version,
            quotas,
        })
    }
}

/// A binding as written (borrowed from the record).
#[derive(Serialize)]
struct BindingOut<'a> {
    instance_id: Id<'a>,
    platform: &'a str,
    broker: &'a str,
    service_id: Id<'a>,
    plan_id: Id<'a>,
    upstream_service_id: Id<'a>,
    upstream_plan_id: Id<'a>,
    fingerprint: Id<'a>,
    state: &'a ResourceState,
    operation: Option<&'a Operation>,
    created_ms: u64,
    updated_ms: u64,
    version: u64,
}

/// A binding as read: the same fields, in the same order, as [`BindingOut`].
#[derive(Deserialize)]
struct BindingIn {
    instance_id: IdIn,
    platform: String,
    broker: String,
    service_id: IdIn,
    plan_id: IdIn,
    upstream_service_id: IdIn,
    upstream_plan_id: IdIn,
    fingerprint: IdIn,
    state: ResourceState,
    operation: Option<Operation>,
    created_ms: u64,
    updated_ms: u64,
    version: u64,
}

impl Stored for BindingRecord {
    fn encode(&self) -> Result<Vec<u8>, RoutingError> {
        encode_row(
            &BindingOut {
                instance_id: Id::of(&self.instance_id),
                platform: &self.platform,
                broker: &self.broker,
                service_id: Id::of(&self.service_id),
                plan_id: Id::of(&self.plan_id),
                upstream_service_id: Id::of(&self.upstream_service_id),
                upstream_plan_id: Id::of(&self.upstream_plan_id),
                fingerprint: Id::of(&self.fingerprint),
                state: &self.state,
                operation: self.operation.as_ref(),
                created_ms: self.created_ms,
                updated_ms: self.updated_ms,
                version: self.version,
            },
            &self.quotas,
        )
    }

    fn decode(id: &str, bytes: &[u8]) -> Result<Self, RoutingError> {
        let Some((row, quotas)) = decode_row::<BindingIn>(bytes)? else {
            return json(bytes);
        };
        Ok(BindingRecord {
            binding_id: id.to_owned(),
            instance_id: row.instance_id.into(),
            platform: row.platform,
            broker: row.broker,
            service_id: row.service_id.into(),
            plan_id: row.plan_id.into(),
            upstream_service_id: row.upstream_service_id.into(),
            upstream_plan_id: row.upstream_plan_id.into(),
            fingerprint: row.fingerprint.into(),
            state: row.state,
            operation: row.operation,
            created_ms: row.created_ms,
            updated_ms: row.updated_ms,
            version: row.version,
            quotas,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{OperationKind, Phase};
    use crate::store::tests as store_tests;

    /// A record with every optional part filled in.
    fn instance() -> InstanceRecord {
        let mut operation = store_tests::operation(OperationKind::Update, Phase::Accepted);
        if let Some(operation) = operation.as_mut() {
            operation.plan_change = Some(("gp2".into(), "up2".into()));
        }
        InstanceRecord {
            fingerprint: "0123456789abcdef0123456789abcdef".into(),
            version: 3,
            ..store_tests::instance(
                "9d1c4e8e-0f5a-4a55-9a0e-6a3f3c2b1d00",
                store_tests::orphaned("timed out"),
                operation,
            )
        }
    }

    fn binding() -> BindingRecord {
        store_tests::binding("b1", "i1", ResourceState::Ready, None)
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

    /// UUIDs and hex fingerprints in their usual (lowercase) shape take 16 bytes and come back
    /// as the same text; any other shape is kept as it is.
    #[test]
    fn ids_in_their_usual_shapes_are_kept_as_bytes() {
        let uuid = "2a6ea5ef-5a2d-4a1c-9e7b-6d3f8a1c4b22";
        let mut record = BindingRecord {
            instance_id: uuid.into(),
            service_id: "2A6EA5EF-5A2D-4A1C-9E7B-6D3F8A1C4B22".into(),
            plan_id: "{2a6ea5ef-5a2d-4a1c-9e7b-6d3f8a1c4b22}".into(),
            upstream_service_id: "2a6ea5ef5a2d4a1c9e7b6d3f8a1c4b22".into(),
            upstream_plan_id: "2a6ea5ef-5a2d-4a1c-9e7b-6d3f8a1c4b2".into(),
            fingerprint: "00ff00ff00ff00ff00ff00ff00ff00ff".into(),
            ..binding()
        };
        let bytes = record.encode().unwrap();
        assert_eq!(BindingRecord::decode("b1", &bytes).unwrap(), record);
        // Upper case is not the usual shape: the same record with those three ids as text.
        let as_text = BindingRecord {
            instance_id: record.instance_id.to_uppercase(),
            upstream_service_id: record.upstream_service_id.to_uppercase(),
            fingerprint: record.fingerprint.to_uppercase(),
            ..record.clone()
        };
        let longer = as_text.encode().unwrap().len();
        // 36 and 32 characters with a length byte, against 16 bytes.
        assert_eq!(
            longer - bytes.len(),
            21 + 17 + 17,
            "a UUID and two hex ids in 16 bytes each"
        );
        for odd in [
            "",
            "g0ff00ff00ff00ff00ff00ff00ff00ff",
            "00FF00FF00FF00FF00FF00FF00FF00FF",
            "é",
        ] {
            record.fingerprint = odd.into();
            assert_eq!(
                BindingRecord::decode("b1", &record.encode().unwrap()).unwrap(),
                record
            );
        }
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

    #[test]
    fn records_in_quotas_are_written_in_format_2() {
        let mut record = instance();
        record.quotas = vec!["q\u{1f}[\"team-a\"]".to_owned(), "r\u{1f}[]".to_owned()];
        let bytes = record.encode().unwrap();
        assert_eq!(bytes.first(), Some(&FORMAT_2));
        assert_eq!(
            InstanceRecord::decode(&record.instance_id, &bytes).unwrap(),
            record
        );
        let mut record = binding();
        record.quotas = vec!["k\u{1f}[]".to_owned()];
        let bytes = record.encode().unwrap();
        assert_eq!(BindingRecord::decode(&record.binding_id, &bytes).unwrap(), record);
        assert_eq!(
            binding().encode().unwrap().first(),
            Some(&FORMAT_1),
            "no quotas: format 1"
        );
    }

    /// Format 1, byte for byte: a change of a record's fields must come with a new format byte
    /// (and a decoder for this one), never silently reinterpret the files already written.
    #[test]
    fn format_1_is_stable() {
        let bytes = binding().encode().unwrap();
        let golden: &[u8] =
            b"\x01\x00\x02i1\x03k8s\x03aws\x00\x02gs\x00\x02gp\x00\x02us\x00\x02up\x00\x01f\x01\x00\x01\x02\x00";
        assert_eq!(bytes, golden);
        assert_eq!(BindingRecord::decode("b1", golden).unwrap(), binding());
    }
}
