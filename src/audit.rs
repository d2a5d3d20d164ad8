//! Audit lines: one per decision, formatted by hand straight into the log buffer.
//!
//! Audit lines are on the verify path of every request, so they skip tracing's generic
//! `fmt` machinery (about a third of mediagate's instructions per request when measured with
//! callgrind) and write their fields directly: no allocation, no `core::fmt` for the common
//! fields. The lines look like tracing's, in the configured `log.format`:
//!
//! ```text
//! 2026-11-23T05:51:00.123456Z  INFO mediagate::audit: mode="auth" decision="allow" status=204 …
//! {"timestamp":"2026-11-23T05:51:00.123456Z","level":"INFO","target":"mediagate::audit","mode":"auth",…}
//! ```
//!
//! Every value from the network (path, host, user agent, …) is escaped, so a hostile value
//! can neither end a line nor forge a field; long values are cut at [`MAX_VALUE_LEN`] bytes.
//! `log.audit` switches audit lines on and off; `log.level` does not apply to them.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::LogFormat;
use crate::decimal;
use crate::logging;

/// The target name, kept from the days these lines went through tracing.
pub const TARGET: &str = "mediagate::audit";
/// Longest value written, in bytes (paths and user agents are attacker-sized).
pub const MAX_VALUE_LEN: usize = 512;

/// Writes one audit line built by `fields`. Without an installed log sink (library use,
/// in-process tests) nothing is written.
pub fn emit(fields: impl FnOnce(&mut Line<'_>)) {
    logging::append_line(|out, format| {
        let mut line = Line::start(out, format, SystemTime::now());
        fields(&mut line);
        line.finish();
    });
}

/// One audit line under construction; each call appends one field.
#[derive(Debug)]
pub struct Line<'a> {
    out: &'a mut Vec<u8>,
    format: LogFormat,
}

impl<'a> Line<'a> {
    /// Writes the timestamp, level and target.
    pub fn start(out: &'a mut Vec<u8>, format: LogFormat, now: SystemTime) -> Line<'a> {
        let mut timestamp = [0u8; TIMESTAMP_LEN];
        format_timestamp(now, &mut timestamp);
        match format {
            LogFormat::Text => {
                out.extend_from_slice(&timestamp);
                out.extend_from_slice(b"  INFO ");
                out.extend_from_slice(TARGET.as_bytes());
                out.push(b':');
            }
            LogFormat::Json => {
                out.extend_from_slice(b"{\"timestamp\":\"");
                out.extend_from_slice(&timestamp);
                out.extend_from_slice(b"\",\"level\":\"INFO\",\"target\":\"");
                out.extend_from_slice(TARGET.as_bytes());
                out.push(b'"');
            }
        }
        Line { out, format }
    }

    /// A string field, cut at a character boundary; `None` is written as `-`.
    pub fn str(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        self.key(key);
        self.out.push(b'"');
        let value = value.unwrap_or("-");
        let mut end = value.len().min(MAX_VALUE_LEN);
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        escape_into(self.out, &value[..end], self.format);
        self.out.push(b'"');
        self
    }

    /// A field of raw header bytes; invalid UTF-8 (including a character cut in two at
    /// [`MAX_VALUE_LEN`]) becomes U+FFFD; `None` is written as `-`.
    pub fn bytes(&mut self, key: &str, value: Option<&[u8]>) -> &mut Self {
        self.key(key);
        self.out.push(b'"');
        let value = value.unwrap_or(b"-");
        let value = &value[..value.len().min(MAX_VALUE_LEN)];
        match std::str::from_utf8(value) {
            Ok(text) => escape_into(self.out, text, self.format),
            Err(_) => {
                for chunk in value.utf8_chunks() {
                    escape_into(self.out, chunk.valid(), self.format);
                    if !chunk.invalid().is_empty() {
                        self.out.extend_from_slice("\u{fffd}".as_bytes());
                    }
                }
            }
        }
        self.out.push(b'"');
        self
    }

    /// A number field, unquoted.
    pub fn num(&mut self, key: &str, value: u64) -> &mut Self {
        self.key(key);
        decimal::push(self.out, value);
        self
    }

    /// An IP address field; `None` is written as `-`.
    pub fn ip(&mut self, key: &str, value: Option<IpAddr>) -> &mut Self {
        self.key(key);
        self.out.push(b'"');
        match value {
            Some(IpAddr::V4(ip)) => {
                for (index, octet) in ip.octets().into_iter().enumerate() {
                    if index > 0 {
                        self.out.push(b'.');
                    }
                    decimal::push(self.out, octet.into());
                }
            }
            // Rare enough on this path for core::fmt; the output never needs escaping.
            Some(IpAddr::V6(ip)) => {
                use std::io::Write;
                let _ = write!(self.out, "{ip}");
            }
            None => self.out.push(b'-'),
        }
        self.out.push(b'"');
        self
    }

    fn key(&mut self, key: &str) {
        match self.format {
            LogFormat::Text => {
                self.out.push(b' ');
                self.out.extend_from_slice(key.as_bytes());
                self.out.push(b'=');
            }
            LogFormat::Json => {
                self.out.extend_from_slice(b",\"");
                self.out.extend_from_slice(key.as_bytes());
                self.out.extend_from_slice(b"\":");
            }
        }
    }

    /// Ends the line.
    pub fn finish(self) {
        if self.format == LogFormat::Json {
            self.out.push(b'}');
        }
        self.out.push(b'\n');
    }
}

/// Appends `text` with quotes, backslashes and control characters escaped: JSON escapes
/// for `json`, Rust-style `\u{..}` escapes for text lines (as tracing printed them).
///
/// Works on bytes (this runs for every audit line): in valid UTF-8, every byte below 0x80 is
/// a whole character, and the C1 controls U+0080..=U+009F are exactly `0xC2 0x80..=0x9F`.
fn escape_into(out: &mut Vec<u8>, text: &str, format: LogFormat) {
    let bytes = text.as_bytes();
    // Almost every value needs no escape: check that in one branch-free (vectorisable) pass.
    let clean = bytes.iter().fold(true, |clean, &byte| {
        clean & (byte >= 0x20) & (byte != b'"') & (byte != b'\\') & (byte != 0x7f) & (byte != 0xc2)
    });
    if clean {
        out.extend_from_slice(bytes);
        return;
    }
    let mut run_start = 0;
    let mut index = 0;
    while index < bytes.len() {
        let (escape, len) = match bytes[index] {
            b'"' => (Escape::Short(b'"'), 1),
            b'\\' => (Escape::Short(b'\\'), 1),
            b'\n' => (Escape::Short(b'n'), 1),
            b'\r' => (Escape::Short(b'r'), 1),
            b'\t' => (Escape::Short(b't'), 1),
            // C0, DEL and C1 controls: terminals and log viewers act on them.
            byte @ (0..=0x1f | 0x7f) => (Escape::Code(byte), 1),
            0xc2 if matches!(bytes.get(index + 1), Some(0x80..=0x9f)) => {
                (Escape::Code(bytes[index + 1]), 2)
            }
            _ => {
                index += 1;
                continue;
            }
        };
        out.extend_from_slice(&bytes[run_start..index]);
        index += len;
        run_start = index;
        out.push(b'\\');
        match (escape, format) {
            (Escape::Short(letter), _) => out.push(letter),
            (Escape::Code(code), LogFormat::Json) => {
                out.extend_from_slice(b"u00");
                push_hex_byte(out, code);
            }
            (Escape::Code(code), LogFormat::Text) => {
                out.extend_from_slice(b"u{");
                push_hex_byte(out, code);
                out.push(b'}');
            }
        }
    }
    out.extend_from_slice(&bytes[run_start..]);
}

#[derive(Clone, Copy)]
enum Escape {
    Short(u8),
    Code(u8),
}

fn push_hex_byte(out: &mut Vec<u8>, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(HEX[usize::from(byte >> 4)]);
    out.push(HEX[usize::from(byte & 0xf)]);
}

/// `YYYY-MM-DDTHH:MM:SS.uuuuuuZ`
const TIMESTAMP_LEN: usize = 27;

/// RFC 3339 in UTC with microseconds, like tracing-subscriber's default timer. Times before
/// 1970 (a broken clock) print as the epoch rather than failing the line.
fn format_timestamp(now: SystemTime, out: &mut [u8; TIMESTAMP_LEN]) {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    let (year, month, day) = civil_from_days(seconds / 86_400);
    let second_of_day = seconds % 86_400;
    let mut put = |range: std::ops::Range<usize>, mut value: u64| {
        for slot in out[range].iter_mut().rev() {
            *slot = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0..4, year);
    put(5..7, month);
    put(8..10, day);
    put(11..13, second_of_day / 3600);
    put(14..16, second_of_day / 60 % 60);
    put(17..19, second_of_day % 60);
    put(20..26, since_epoch.subsec_micros().into());
    for (index, separator) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')] {
        out[index] = separator;
    }
    out[19] = b'.';
    out[26] = b'Z';
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`, for non-negative day counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn line(format: LogFormat, fields: impl FnOnce(&mut Line<'_>)) -> String {
        let mut out = Vec::new();
        let at = UNIX_EPOCH + Duration::new(1_795_412_460, 123_456_789);
        let mut line = Line::start(&mut out, format, at);
        fields(&mut line);
        line.finish();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn text_lines_look_like_tracing_lines() {
        let text = line(LogFormat::Text, |line| {
            line.str("mode", Some("auth"))
                .num("status", 204)
                .str("subject", None)
                .ip("client_ip", Some("192.0.2.10".parse().unwrap()));
        });
        assert_eq!(
            text,
            "2026-11-23T05:41:00.123456Z  INFO mediagate::audit: mode=\"auth\" status=204 \
             subject=\"-\" client_ip=\"192.0.2.10\"\n"
        );
    }

    #[test]
    fn json_lines_parse_and_keep_every_value() {
        let hostile = "/a\"b\\c\nd\u{1b}[31m\u{85}é";
        let json = line(LogFormat::Json, |line| {
            line.str("path", Some(hostile))
                .num("status", 403)
                .ip("client_ip", Some("2001:db8::1".parse().unwrap()))
                .bytes("user_agent", Some(b"caf\xc3\xa9 \xff"));
        });
        assert_eq!(json.matches('\n').count(), 1);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["timestamp"], "2026-11-23T05:41:00.123456Z");
        assert_eq!(value["target"], TARGET);
        assert_eq!(value["path"], hostile);
        assert_eq!(value["status"], 403);
        assert_eq!(value["client_ip"], "2001:db8::1");
        assert_eq!(value["user_agent"], "café \u{fffd}");
    }

    proptest::proptest! {
        #[test]
        fn any_value_survives_a_json_round_trip(value in proptest::prelude::any::<String>()) {
            let json = line(LogFormat::Json, |line| {
                line.str("path", Some(&value));
            });
            let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
            let logged = parsed["path"].as_str().unwrap();
            if value.len() <= MAX_VALUE_LEN {
                proptest::prop_assert_eq!(logged, value.as_str());
            } else {
                let mut cut = MAX_VALUE_LEN;
                while !value.is_char_boundary(cut) {
                    cut -= 1;
                }
                proptest::prop_assert!(logged.starts_with(&value[..cut]));
            }
        }

        #[test]
        fn text_lines_hold_no_control_characters(value in proptest::prelude::any::<String>()) {
            let text = line(LogFormat::Text, |line| {
                line.str("path", Some(&value));
            });
            let body = text.strip_suffix('\n').unwrap();
            proptest::prop_assert!(!body.chars().any(char::is_control), "{:?}", body);
        }
    }

    #[test]
    fn hostile_text_values_cannot_end_the_line_or_forge_fields() {
        let text = line(LogFormat::Text, |line| {
            line.str(
                "path",
                Some("/x\" decision=\"allow\n2026 INFO forged\r\u{7f}"),
            );
        });
        assert_eq!(text.matches('\n').count(), 1);
        assert!(text.ends_with("path=\"/x\\\" decision=\\\"allow\\n2026 INFO forged\\r\\u{7f}\"\n"));
    }

    #[test]
    fn long_values_are_cut() {
        let long = format!("a{}", "é".repeat(MAX_VALUE_LEN));
        let text = line(LogFormat::Text, |line| {
            line.str("path", Some(&long))
                .bytes("user_agent", Some(long.as_bytes()));
        });
        let value = |key: &str| {
            let start = text.find(&format!("{key}=\"")).unwrap() + key.len() + 2;
            text[start..].split('"').next().unwrap().to_owned()
        };
        // Strings are cut before the character that does not fit; raw bytes cut through it,
        // which shows as one replacement character.
        let kept = format!("a{}", "é".repeat(MAX_VALUE_LEN / 2 - 1));
        assert_eq!(value("path"), kept);
        assert_eq!(value("user_agent"), format!("{kept}\u{fffd}"));
    }

    #[test]
    fn timestamps_match_the_calendar() {
        let cases = [
            (0, "1970-01-01T00:00:00.000000Z"),
            (951_782_400, "2000-02-29T00:00:00.000000Z"),
            (4_107_542_399, "2100-02-28T23:59:59.000000Z"),
            (4_107_542_400, "2100-03-01T00:00:00.000000Z"),
            (253_402_300_799, "9999-12-31T23:59:59.000000Z"),
        ];
        for (seconds, expected) in cases {
            let mut out = [0u8; TIMESTAMP_LEN];
            format_timestamp(UNIX_EPOCH + Duration::from_secs(seconds), &mut out);
            assert_eq!(std::str::from_utf8(&out).unwrap(), expected, "{seconds}");
        }
    }
}
