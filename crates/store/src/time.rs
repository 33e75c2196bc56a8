//! Conversions between the index's Unix milliseconds and RFC 3339 text (the API's time format).

use chrono::{DateTime, SecondsFormat, Utc};

/// Formats Unix milliseconds as RFC 3339 in UTC with millisecond precision,
/// e.g. `2026-11-21T08:30:00.250Z`. Out-of-range values are clamped to the representable range.
pub fn ms_to_rfc3339(ms: i64) -> String {
    let t = DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or(if ms < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    });
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses RFC 3339 text (any offset) into Unix milliseconds; `None` if it is not RFC 3339.
pub fn rfc3339_to_ms(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// The current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let ms = 1_795_250_400_250;
        let s = ms_to_rfc3339(ms);
        assert_eq!(s, "2026-11-21T08:40:00.250Z");
        assert_eq!(rfc3339_to_ms(&s), Some(ms));
        assert_eq!(rfc3339_to_ms("2026-11-21T09:40:00.250+01:00"), Some(ms));
        assert_eq!(rfc3339_to_ms("yesterday"), None);
        assert!(ms_to_rfc3339(i64::MAX).starts_with("+262"));
    }
}
