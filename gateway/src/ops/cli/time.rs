//! Times for people: the admin API's milliseconds since the Unix epoch printed as UTC
//! (`2026-12-06 10:43:09Z`), and `--since` read as an age (`90s`, `15m`, `6h`, `2d`) or a UTC time
//! (`2026-12-06`, `2026-12-06T10:00:00Z`). The calendar arithmetic is the proleptic Gregorian one
//! (days from civil and back, Howard Hinnant's algorithms): no time library for two functions.

/// `ms` since the Unix epoch as `YYYY-MM-DD HH:MM:SSZ` (UTC).
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(i64::try_from(days).unwrap_or(i64::MAX));
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// `--since`: an age before `now_ms` (`90s`, `15m`, `6h`, `2d`), a UTC date (`2026-12-06`) or
/// time (`2026-12-06T10:00:00Z`, `2026-12-06 10:00:00`), or milliseconds since the epoch.
///
/// # Errors
/// A value none of these.
pub fn parse_since(value: &str, now_ms: u64) -> Result<u64, String> {
    let value = value.trim();
    let bad = || {
        format!(
            "--since {value:?}: expected an age (90s, 15m, 6h, 2d), a UTC time (2026-12-06T10:00:00Z) or ms since the epoch"
        )
    };
    if let Some((digits, unit)) = value.split_at_checked(value.len().saturating_sub(1)) {
        let scale = match unit {
            "s" => Some(1_000),
            "m" => Some(60_000),
            "h" => Some(3_600_000),
            "d" => Some(86_400_000),
            _ => None,
        };
        if let (Some(scale), Ok(n)) = (scale, digits.parse::<u64>()) {
            return Ok(now_ms.saturating_sub(n.saturating_mul(scale)));
        }
    }
    if let Ok(ms) = value.parse::<u64>() {
        return Ok(ms);
    }
    let (date, time) = match value.split_once(['T', ' ']) {
        Some((date, time)) => (date, time.trim_end_matches('Z')),
        None => (value, "00:00:00"),
    };
    let number = |s: Option<&str>| s.and_then(|s| s.parse::<i64>().ok()).ok_or_else(bad);
    let mut d = date.split('-');
    let (year, month, day) = (number(d.next())?, number(d.next())?, number(d.next())?);
    let mut t = time.split(':');
    let (hour, minute) = (number(t.next())?, number(t.next())?);
    let second = t
        .next()
        .map_or(Ok(0), |s| number(Some(s.split('.').next().unwrap_or(s))))?;
    let valid = (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && (0..24).contains(&hour)
        && (0..60).contains(&minute)
        && (0..61).contains(&second)
        && d.next().is_none();
    if !valid {
        return Err(bad());
    }
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    u64::try_from(secs).map(|s| s * 1000).map_err(|_| bad())
}

fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_utc_and_read_back() {
        assert_eq!(utc(0), "1970-01-01 00:00:00Z");
        // `date -u -d @1796527329` → 2026-12-06 ... (the example value).
        assert_eq!(utc(1_796_527_329_730), "2026-12-06 03:22:09Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00Z");
        for ms in [0, 951_782_400_000, 1_796_527_329_000, 4_102_444_800_000] {
            let text = utc(ms).replace(' ', "T");
            assert_eq!(parse_since(&text, 0), Ok(ms), "{text}");
        }
        assert_eq!(parse_since("2026-12-06", 0), Ok(1_796_515_200_000));
        assert_eq!(parse_since("15m", 1_000_000), Ok(100_000));
        assert_eq!(parse_since("2d", 1_000), Ok(0));
        assert_eq!(parse_since("1796527329730", 0), Ok(1_796_527_329_730));
        for bad in ["yesterday", "2026-13-01", "15x", "2026-12-06T25:00:00Z", ""] {
            assert!(parse_since(bad, 0).is_err(), "{bad}");
        }
    }
}
