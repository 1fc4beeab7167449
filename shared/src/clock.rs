//! Time as a port, so every rule about expiry can be tested by moving a clock.
//!
//! Instants are UTC on the wire and in storage, with microsecond precision everywhere (the
//! clocks truncate, so an instant written once reads back equal). Calendar rules — iqama
//! validity, seat years, reminder days, the sweep's "today", day filters — use Saudi days:
//! Asia/Riyadh, UTC+3 all year (Saudi Arabia keeps no daylight saving time).

use std::sync::Mutex;
use std::time::Duration as StdDuration;

use time::{
    Date, Duration, OffsetDateTime, Time, UtcOffset,
    format_description::BorrowedFormatItem,
    macros::{format_description, offset},
};

/// Asia/Riyadh: UTC+3, no daylight saving time.
pub const RIYADH: UtcOffset = offset!(+3);

/// The Saudi calendar day an instant falls on.
pub fn saudi_day(at: OffsetDateTime) -> Date {
    at.to_offset(RIYADH).date()
}

/// The first instant of a Saudi day (00:00 in Riyadh), in UTC.
pub fn start_of_saudi_day(day: Date) -> OffsetDateTime {
    day.with_time(Time::MIDNIGHT).assume_offset(RIYADH).to_offset(UtcOffset::UTC)
}

/// Drops sub-microsecond digits: the precision every stored and shown instant has.
pub fn to_micros(at: OffsetDateTime) -> OffsetDateTime {
    let nanos = at.nanosecond();
    at.replace_nanosecond(nanos - nanos % 1_000).expect("a smaller nanosecond is valid")
}

/// An instant stored as RFC 3339 text, for lists of instants in records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Timestamp(#[serde(with = "utc")] pub OffsetDateTime);

pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;
}

/// A clock a person (or a test) can move: the local server's `/local/clock` moves it.
pub trait Adjustable: Clock {
    /// Moves the clock forward by `by`.
    fn advance(&self, by: Duration);
    /// Sets the clock to `to`; returns false (and leaves it) if `to` is in its past.
    fn set(&self, to: OffsetDateTime) -> bool;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        to_micros(OffsetDateTime::now_utc())
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

impl Adjustable for ManualClock {
    fn advance(&self, by: Duration) {
        ManualClock::advance(self, by);
    }

    fn set(&self, to: OffsetDateTime) -> bool {
        if to < self.now() {
            return false;
        }
        ManualClock::set(self, to);
        true
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        to_micros(*self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }
}

/// A clock that runs like the real one from a chosen start, and can be moved forward or
/// set while it runs: the local server's clock, so a person can try time-bound rules
/// (link and code expiry, iqama and seat expiry, reminders) by hand.
#[derive(Debug)]
pub struct TravelClock {
    offset: Mutex<Duration>,
}

impl TravelClock {
    /// Starts at `start` (or at the real time) and runs from there.
    pub fn starting_at(start: Option<OffsetDateTime>) -> Self {
        let offset = start.map_or(Duration::ZERO, |start| start - OffsetDateTime::now_utc());
        TravelClock { offset: Mutex::new(offset) }
    }

    fn offset(&self) -> std::sync::MutexGuard<'_, Duration> {
        self.offset.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Adjustable for TravelClock {
    /// Moves the clock forward (never back: the rules assume time does not run backwards).
    fn advance(&self, by: Duration) {
        if by.is_positive() {
            *self.offset() += by;
        }
    }

    fn set(&self, to: OffsetDateTime) -> bool {
        let mut offset = self.offset();
        let now = OffsetDateTime::now_utc() + *offset;
        if to < now {
            return false;
        }
        *offset += to - now;
        true
    }
}

impl Clock for TravelClock {
    fn now(&self) -> OffsetDateTime {
        to_micros(OffsetDateTime::now_utc() + *self.offset())
    }
}

/// Seats last one calendar year of Saudi days: 2026-02-28 → 2027-02-28, and 2028-02-29 →
/// 2029-02-28, counted in Riyadh (23:30 UTC on 28 Feb 2028 is already 29 Feb there).
pub fn one_year_after(start: OffsetDateTime) -> OffsetDateTime {
    let local = start.to_offset(RIYADH);
    let date = local.date();
    let next_year = date.year() + 1;
    let day = date.day().min(time::util::days_in_month(date.month(), next_year));
    let next = Date::from_calendar_date(next_year, date.month(), day).unwrap_or(date);
    local.replace_date(next).to_offset(UtcOffset::UTC)
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

/// Parses an RFC 3339 timestamp from a request or event (`format: date-time`: the date and
/// the time separated by `T`, which `time`'s parser does not insist on).
pub fn parse_rfc3339(input: &str) -> Option<OffsetDateTime> {
    if !matches!(input.as_bytes().get(10), Some(b'T' | b't')) {
        return None;
    }
    OffsetDateTime::parse(input, &time::format_description::well_known::Rfc3339).ok()
}

/// Parses an RFC 3339 full date, exactly `YYYY-MM-DD` (`format: date`).
pub fn parse_date(input: &str) -> Option<Date> {
    // `[year]` would also take a sign (`+2026-01-01`), which a full date does not have.
    if !input.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    Date::parse(input, time::macros::format_description!("[year]-[month]-[day]")).ok()
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
    fn a_seat_lasts_one_calendar_year_of_saudi_days() {
        assert_eq!(one_year_after(datetime!(2026-11-23 10:00 UTC)), datetime!(2027-11-23 10:00 UTC));
        assert_eq!(one_year_after(datetime!(2028-02-29 10:00 UTC)), datetime!(2029-02-28 10:00 UTC));
        // 22:00 UTC on 28 Feb 2028 is 01:00 on 29 Feb in Riyadh: a leap day there.
        assert_eq!(one_year_after(datetime!(2028-02-28 22:00 UTC)), datetime!(2029-02-27 22:00 UTC));
    }

    #[test]
    fn saudi_days_begin_at_midnight_in_riyadh() {
        assert_eq!(saudi_day(datetime!(2026-11-25 20:59 UTC)), time::macros::date!(2026 - 11 - 25));
        assert_eq!(saudi_day(datetime!(2026-11-25 21:00 UTC)), time::macros::date!(2026 - 11 - 26));
        assert_eq!(start_of_saudi_day(time::macros::date!(2026 - 11 - 26)), datetime!(2026-11-25 21:00 UTC));
    }

    #[test]
    fn clocks_keep_microseconds() {
        let clock = ManualClock::at(datetime!(2026-01-02 03:04:05.123456789 UTC));
        assert_eq!(clock.now(), datetime!(2026-01-02 03:04:05.123456 UTC));
    }

    #[test]
    fn a_travel_clock_moves_forward_only() {
        let clock = TravelClock::starting_at(Some(datetime!(2027-11-20 06:00 UTC)));
        let start = clock.now();
        assert!(start >= datetime!(2027-11-20 06:00 UTC) && start < datetime!(2027-11-20 06:01 UTC));
        clock.advance(Duration::days(30));
        assert!(clock.now() >= start + Duration::days(30));
        assert!(!clock.set(start), "the past is refused");
        assert!(clock.set(start + Duration::days(400)));
        assert!(clock.now() >= start + Duration::days(400));
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
        for loose in ["2027-2-28", "+2027-02-28", " 2027-02-28", "2027-02-28 ", "27-02-28", "2027-02-28T00:00:00Z"] {
            assert_eq!(parse_date(loose), None, "{loose:?}");
        }
    }

    #[test]
    fn parses_rfc3339_instants_with_their_t_only() {
        assert_eq!(parse_rfc3339("2026-11-23T08:00:00Z"), Some(datetime!(2026-11-23 08:00 UTC)));
        assert_eq!(parse_rfc3339("2026-11-23t11:00:00.5+03:00"), Some(datetime!(2026-11-23 08:00:00.5 UTC)));
        assert_eq!(parse_rfc3339("2026-11-23 08:00:00Z"), None);
        assert_eq!(parse_rfc3339("2026-11-23"), None);
    }
}
