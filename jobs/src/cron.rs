//! Schedules' time: a standard five-field cron expression (minute hour
//! day-of-month month day-of-week) read by `croner`, evaluated in an IANA
//! time zone (`chrono-tz`), its next instant answered in UTC.
//!
//! Daylight saving time follows croner (the Open Cron Pattern
//! Specification, as Vixie cron): a fixed time that a spring-forward gap
//! skips (02:30 in Europe/Berlin on the last Sunday of March) runs once, at
//! the first valid minute after the gap (03:00 local, 01:00 UTC); a fixed
//! time that a fall-back overlap repeats (01:30 in America/New_York on the
//! first Sunday of November) runs once, at its first occurrence (01:30
//! EDT, 05:30 UTC). Wildcard and step fields skip minutes in a gap and run
//! in both copies of an overlapping hour.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

/// Why an expression or a zone is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    #[error("{0}")]
    Expression(String),
    #[error("unknown time zone {0:?} (use an IANA name such as Europe/Berlin)")]
    TimeZone(String),
}

/// A parsed schedule: its expression and its zone.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    cron: Cron,
    tz: Tz,
}

/// An IANA zone name.
pub fn parse_timezone(name: &str) -> Result<Tz, CronError> {
    Tz::from_str(name).map_err(|_| CronError::TimeZone(name.to_string()))
}

/// A five-field expression: nicknames (`@daily`), seconds and years are
/// refused, and so is an expression that never matches (`0 0 31 2 *`).
pub fn parse_expression(expr: &str) -> Result<Cron, CronError> {
    let fields = expr.split_whitespace().count();
    if fields != 5 {
        return Err(CronError::Expression(format!(
            "a cron expression has 5 fields (minute hour day-of-month month day-of-week), not {fields}"
        )));
    }
    let cron = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(expr)
        .map_err(|e| CronError::Expression(format!("not a valid cron expression: {e}")))?;
    cron.find_next_occurrence(&Utc::now(), false)
        .map_err(|_| CronError::Expression("this cron expression never matches".into()))?;
    Ok(cron)
}

impl CronSchedule {
    pub fn parse(expr: &str, timezone: &str) -> Result<Self, CronError> {
        let tz = parse_timezone(timezone)?;
        let cron = parse_expression(expr)?;
        Ok(Self { cron, tz })
    }

    /// The first matching instant strictly after `after`, in UTC.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.tz);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn next(expr: &str, tz: &str, after: &str) -> String {
        CronSchedule::parse(expr, tz)
            .unwrap()
            .next_after(at(after))
            .unwrap()
            .to_rfc3339()
    }

    #[test]
    fn next_run_in_utc_and_in_a_zone() {
        assert_eq!(
            next("0 2 * * *", "UTC", "2024-01-15T02:00:00Z"),
            "2024-01-16T02:00:00+00:00"
        );
        assert_eq!(
            next("0 2 * * *", "UTC", "2024-01-15T01:59:00Z"),
            "2024-01-15T02:00:00+00:00"
        );
        // 09:30 in Berlin: CET (UTC+1) in winter, CEST (UTC+2) in summer.
        assert_eq!(
            next("30 9 * * *", "Europe/Berlin", "2024-01-15T12:00:00Z"),
            "2024-01-16T08:30:00+00:00"
        );
        assert_eq!(
            next("30 9 * * *", "Europe/Berlin", "2024-07-15T12:00:00Z"),
            "2024-07-16T07:30:00+00:00"
        );
        // Day of week: Monday 1, Sunday 0 or 7.
        assert_eq!(
            next("0 0 * * 1", "UTC", "2024-01-15T00:00:00Z"),
            "2024-01-22T00:00:00+00:00"
        );
        assert_eq!(
            next("*/15 * * * *", "UTC", "2024-01-15T00:07:00Z"),
            "2024-01-15T00:15:00+00:00"
        );
    }

    #[test]
    fn spring_forward_runs_a_skipped_time_once_after_the_gap() {
        // 2024-03-31 in Berlin: 02:00 CET jumps to 03:00 CEST.
        assert_eq!(
            next("30 2 * * *", "Europe/Berlin", "2024-03-30T12:00:00Z"),
            "2024-03-31T01:00:00+00:00" // 03:00 CEST
        );
        // And the day after, 02:30 CEST again.
        assert_eq!(
            next("30 2 * * *", "Europe/Berlin", "2024-03-31T01:00:00Z"),
            "2024-04-01T00:30:00+00:00"
        );
    }

    #[test]
    fn fall_back_runs_a_repeated_time_once() {
        // 2024-11-03 in New York: 02:00 EDT falls back to 01:00 EST, so
        // 01:30 happens at 05:30 UTC (EDT) and at 06:30 UTC (EST).
        assert_eq!(
            next("30 1 * * *", "America/New_York", "2024-11-02T12:00:00Z"),
            "2024-11-03T05:30:00+00:00"
        );
        assert_eq!(
            next("30 1 * * *", "America/New_York", "2024-11-03T05:30:00Z"),
            "2024-11-04T06:30:00+00:00"
        );
    }

    #[test]
    fn refuses_bad_expressions_and_zones() {
        for bad in [
            "",
            "0 2 * *",
            "0 0 2 * * *",
            "61 * * * *",
            "0 24 * * *",
            "0 0 32 * *",
            "0 0 * 13 *",
            "0 0 * * 8",
            "not cron at all",
            "@daily",
            "a b c d e",
            "0 0 31 2 *",
        ] {
            assert!(
                matches!(
                    CronSchedule::parse(bad, "UTC"),
                    Err(CronError::Expression(_))
                ),
                "{bad:?} accepted"
            );
        }
        assert_eq!(
            CronSchedule::parse("0 2 * * *", "Mars/Olympus").unwrap_err(),
            CronError::TimeZone("Mars/Olympus".into())
        );
        assert!(CronSchedule::parse("0 2 * * MON-FRI", "Asia/Tokyo").is_ok());
    }
}
