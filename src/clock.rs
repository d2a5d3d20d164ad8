//! Wall-clock time as unix seconds, and a dependency-free UTC formatter for humans.
//! Everything below the edges takes `now` as a parameter; only the edges call [`now`].

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the unix epoch. A clock before 1970 reads as 0, which fails closed: every
/// token looks not-yet-valid rather than eternally valid.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Formats unix seconds as `2026-11-23T04:12:36Z`.
pub fn format_utc(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Formats a span of seconds as `1h 2m 3s` (largest units first, zero parts omitted).
pub fn format_span(secs: u64) -> String {
    let parts = [(86_400, "d"), (3600, "h"), (60, "m"), (1, "s")];
    let mut rest = secs;
    let mut out = Vec::new();
    for (unit, name) in parts {
        if rest >= unit {
            out.push(format!("{}{name}", rest / unit));
            rest %= unit;
        }
    }
    if out.is_empty() {
        "0s".to_owned()
    } else {
        out.join(" ")
    }
}

/// Parses an RFC 3339 date-time with whole seconds to unix seconds: `2026-11-23T04:12:36Z`,
/// `2026-11-23T05:12:36+01:00`; a space may stand for the `T` (as `date --rfc-3339` prints).
/// Fractions of a second are refused rather than rounded: an instant given to the second is
/// what a revocation cut-off compares against. Times before 1970 are refused.
pub fn parse_rfc3339(text: &str) -> Result<u64, &'static str> {
    let bytes = text.as_bytes();
    if bytes.len() < 20 || !text.is_ascii() {
        return Err("too short");
    }
    let number = |range: std::ops::Range<usize>| -> Result<u64, &'static str> {
        let part = &text[range];
        if part.bytes().all(|b| b.is_ascii_digit()) {
            part.parse().map_err(|_| "not a number")
        } else {
            Err("not a number where a digit belongs")
        }
    };
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if separators.iter().any(|&(at, sep)| bytes[at] != sep)
        || !matches!(bytes[10], b'T' | b't' | b' ')
    {
        return Err("expected YYYY-MM-DDTHH:MM:SS");
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if year < 1970 {
        return Err("before 1970");
    }
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return Err("no such date");
    }
    // A leap second (:60) cannot be told apart in unix time; refuse it rather than guess.
    if hour > 23 || minute > 59 || second > 59 {
        return Err("no such time of day");
    }
    let offset: i64 = match &text[19..] {
        "Z" | "z" => 0,
        zone if zone.len() == 6
            && matches!(zone.as_bytes()[0], b'+' | b'-')
            && zone.as_bytes()[3] == b':' =>
        {
            let (hours, minutes) = (number(20..22)?, number(23..25)?);
            if hours > 23 || minutes > 59 {
                return Err("no such offset");
            }
            let magnitude = (hours * 3600 + minutes * 60) as i64;
            if zone.starts_with('-') {
                -magnitude
            } else {
                magnitude
            }
        }
        zone if zone.starts_with('.') => return Err("fractions of a second are not accepted"),
        _ => return Err("expected Z or an offset like +01:00"),
    };
    let local = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    let utc = i64::try_from(local).map_err(|_| "out of range")? - offset;
    u64::try_from(utc).map_err(|_| "before 1970")
}

/// Days in `month` of `year` (proleptic Gregorian).
fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// (year, month, day) to days since 1970-01-01, for years from 1970 on; Howard Hinnant's
/// `days_from_civil`.
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let yoe = year - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_span(3723), "1h 2m 3s");
        assert_eq!(format_span(0), "0s");
    }

    #[test]
    fn parses_rfc3339_strictly_and_round_trips_the_formatter() {
        for secs in [0, 951_782_400, 1_795_000_000, 4_102_444_799] {
            assert_eq!(parse_rfc3339(&format_utc(secs)), Ok(secs));
        }
        assert_eq!(
            parse_rfc3339("2026-11-18T12:36:40+01:30"),
            Ok(1_795_000_000)
        );
        assert_eq!(
            parse_rfc3339("2026-11-18 06:06:40-05:00"),
            Ok(1_795_000_000)
        );
        assert_eq!(parse_rfc3339("2026-11-18t11:06:40z"), Ok(1_795_000_000));
        for bad in [
            "2026-11-18T11:06:40",
            "2026-11-18T11:06:40.5Z",
            "2026-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-11-18T24:00:00Z",
            "2026-11-18T11:06:60Z",
            "2026-11-18T11:06:40+1:00",
            "1969-12-31T23:59:59Z",
            "1970-01-01T00:30:00+01:00",
            "2026-11-18T11:06:40Zjunk",
            "+026-11-18T11:06:40Z",
            "2026-11-18T11:06:40+01:00\u{e9}",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(parse_rfc3339("2024-02-29T00:00:00Z"), Ok(1_709_164_800));
    }
}
