//! The one clock of the gateway's records: milliseconds since the Unix epoch, as stored in
//! registry records, audit records, catalogs and replica heartbeats.

/// Milliseconds since the Unix epoch (0 if the system clock is before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
