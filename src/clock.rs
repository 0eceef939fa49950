//! The one clock: wall time as Unix seconds (the event log's and the checkpoint's wall times)
//! and as UTC text (when a report was written).
use chrono::{DateTime, Utc};
use std::time::SystemTime;

/// Seconds since the Unix epoch, now.
pub fn unix_seconds() -> f64 {
    unix_seconds_of(SystemTime::now())
}

/// Seconds since the Unix epoch of `time` (0 before it).
pub fn unix_seconds_of(time: SystemTime) -> f64 {
    time.duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Now as "2026-12-02 17:40 UTC".
pub fn utc_now() -> String {
    utc(Utc::now())
}

fn utc(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M UTC").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_calendar_dates() {
        // From Python's datetime.fromtimestamp(s, UTC).
        let at = |seconds: i64| utc(DateTime::from_timestamp(seconds, 0).unwrap());
        assert_eq!(at(0), "1970-01-01 00:00 UTC");
        assert_eq!(at(951_872_461), "2000-03-01 01:01 UTC");
        assert_eq!(at(1_796_290_000), "2026-12-03 09:26 UTC");
        assert_eq!(at(1_800_000_000), "2027-01-15 08:00 UTC");
    }
}
