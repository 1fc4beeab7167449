//! Time as a port, so every rule about expiry can be tested by moving a clock.

use std::sync::Mutex;
use std::time::Duration as StdDuration;

use time::{Date, Duration, Month, OffsetDateTime, UtcOffset, format_description::BorrowedFormatItem, macros::format_description};

/// An instant stored as RFC 3339 text, for lists of instants in records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Timestamp(#[serde(with = "utc")] pub OffsetDateTime);

pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that only moves when told to. For tests and for replaying a day locally.
#[derive(Debug)]
pub struct ManualClock(Mutex<OffsetDateTime>);

impl ManualClock {
    pub fn at(start: OffsetDateTime) -> Self {
        ManualClock(Mutex::new(start))
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *now += by;
    }

    pub fn set(&self, to: OffsetDateTime) {
        *self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Seats last one calendar year: 2026-02-28 → 2027-02-28, and 2028-02-29 → 2029-02-28.
pub fn one_year_after(start: OffsetDateTime) -> OffsetDateTime {
    let date = start.date();
    let next_year = date.year() + 1;
    let day = date.day().min(time::util::days_in_month(date.month(), next_year));
    let next = Date::from_calendar_date(next_year, date.month(), day).unwrap_or(date);
    start.replace_date(next)
}

const KEY_TIMESTAMP: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// A fixed-width UTC timestamp that sorts as text in time order; used inside storage keys.
pub fn key_timestamp(at: OffsetDateTime) -> String {
    at.to_offset(UtcOffset::UTC).format(KEY_TIMESTAMP).expect("a UTC timestamp always formats")
}

/// Serde for instants in records and responses: RFC 3339 in UTC with exactly six
/// fractional digits, so stored instants compare correctly as text (DynamoDB compares
/// strings byte by byte). Reading accepts any RFC 3339 form.
pub mod utc {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::OffsetDateTime;

    pub fn serialize<S: Serializer>(at: &OffsetDateTime, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::key_timestamp(*at))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<OffsetDateTime, D::Error> {
        let raw = String::deserialize(deserializer)?;
        super::parse_rfc3339(&raw).ok_or_else(|| serde::de::Error::custom("not an RFC 3339 timestamp"))
    }

    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};
        use time::OffsetDateTime;

        pub fn serialize<S: Serializer>(at: &Option<OffsetDateTime>, serializer: S) -> Result<S::Ok, S::Error> {
            match at {
                Some(at) => serializer.serialize_some(&super::super::key_timestamp(*at)),
                None => serializer.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<OffsetDateTime>, D::Error> {
            match Option::<String>::deserialize(deserializer)? {
                Some(raw) => {
                    super::super::parse_rfc3339(&raw).map(Some).ok_or_else(|| serde::de::Error::custom("not an RFC 3339 timestamp"))
                }
                None => Ok(None),
            }
        }
    }
}

/// Parses an RFC 3339 timestamp from a request or event.
pub fn parse_rfc3339(input: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(input, &time::format_description::well_known::Rfc3339).ok()
}

pub fn rfc3339(at: OffsetDateTime) -> String {
    at.to_offset(UtcOffset::UTC).format(&time::format_description::well_known::Rfc3339).expect("a UTC timestamp always formats")
}

/// Parses a `YYYY-MM-DD` date.
pub fn parse_date(input: &str) -> Option<Date> {
    let mut parts = input.trim().splitn(3, '-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u8 = parts.next()?.parse().ok()?;
    let day: u8 = parts.next()?.parse().ok()?;
    Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()
}

/// Waits, for retry backoff. Kept here so the domain's retry loops need no runtime handle.
pub async fn pause(duration: StdDuration) {
    tokio::time::sleep(duration).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_seat_lasts_one_calendar_year() {
        assert_eq!(one_year_after(datetime!(2026-11-23 10:00 UTC)), datetime!(2027-11-23 10:00 UTC));
        assert_eq!(one_year_after(datetime!(2028-02-29 10:00 UTC)), datetime!(2029-02-28 10:00 UTC));
    }

    #[test]
    fn key_timestamps_sort_in_time_order() {
        let early = key_timestamp(datetime!(2026-01-02 03:04:05.000007 UTC));
        let late = key_timestamp(datetime!(2026-01-02 03:04:05.1 UTC));
        assert_eq!(early, "2026-01-02T03:04:05.000007Z");
        assert!(early < late);
    }

    #[test]
    fn parses_dates() {
        assert_eq!(parse_date("2027-02-28"), Some(time::macros::date!(2027 - 02 - 28)));
        assert_eq!(parse_date("2027-02-30"), None);
        assert_eq!(parse_date("soon"), None);
    }
}
