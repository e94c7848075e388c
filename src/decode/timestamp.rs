//! Event time: read from a field, in the formats applications actually write.
//!
//! The common case — ISO 8601 / RFC 3339 as written by Python's
//! `datetime.isoformat()`, Go, Java and friends — has a hand-written parser,
//! because it runs once per line. Zone-less stamps are read in the configured
//! zone (UTC by default). Numbers are Unix epoch times; `auto` tells seconds,
//! milliseconds, microseconds and nanoseconds apart by magnitude. A strftime
//! pattern covers everything else (through jiff).
//!
//! It does not guess day/month order or parse free text.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;

use crate::event::FieldRef;

/// How the time field is written.
#[derive(Debug, Clone, PartialEq)]
pub enum TimeFormat {
    /// ISO 8601 strings or epoch numbers, told apart by looking.
    Auto,
    Iso8601,
    UnixSeconds,
    UnixMillis,
    UnixMicros,
    UnixNanos,
    /// A strftime pattern, e.g. `%d/%b/%Y:%H:%M:%S %z`.
    Strftime(String),
}

impl TimeFormat {
    pub fn parse(s: &str) -> Result<TimeFormat, String> {
        Ok(match s {
            "auto" => TimeFormat::Auto,
            "rfc3339" | "iso8601" => TimeFormat::Iso8601,
            "unix" | "unix_s" => TimeFormat::UnixSeconds,
            "unix_ms" => TimeFormat::UnixMillis,
            "unix_us" => TimeFormat::UnixMicros,
            "unix_ns" => TimeFormat::UnixNanos,
            s if s.contains('%') => TimeFormat::Strftime(s.to_string()),
            other => {
                return Err(format!(
                    "unknown time format `{other}`: use auto, rfc3339, unix_s, unix_ms, unix_us, unix_ns or a strftime pattern such as `%Y-%m-%d %H:%M:%S`"
                ));
            }
        })
    }
}

/// Reads event times from one field.
#[derive(Debug, Clone)]
pub struct TimeParser {
    pub format: TimeFormat,
    /// Zone for stamps that carry none; `None` is UTC.
    pub zone: Option<TimeZone>,
}

impl TimeParser {
    /// Nanoseconds since the epoch, or `None` when the value is not a time.
    pub fn parse(&self, value: FieldRef<'_>) -> Option<i64> {
        let number = match value {
            FieldRef::Json(raw) if !raw.starts_with('"') => Some(raw),
            FieldRef::Owned(serde_json::Value::Number(_)) => None,
            _ => None,
        };
        if let FieldRef::Owned(serde_json::Value::Number(n)) = value {
            return self.number_to_nanos(n.as_f64()?);
        }
        if let Some(raw) = number {
            return self.number_to_nanos(raw.parse().ok()?);
        }
        let text = value.as_text()?;
        match &self.format {
            TimeFormat::Auto | TimeFormat::Iso8601 => {
                self.iso_to_nanos(text.trim()).or_else(|| {
                    // Epoch times written as strings ("1732500000.5").
                    matches!(self.format, TimeFormat::Auto)
                        .then(|| text.trim().parse::<f64>().ok())
                        .flatten()
                        .and_then(|n| self.number_to_nanos(n))
                })
            }
            TimeFormat::Strftime(fmt) => self.strftime_to_nanos(fmt, &text),
            _ => self.number_to_nanos(text.trim().parse().ok()?),
        }
    }

    fn number_to_nanos(&self, n: f64) -> Option<i64> {
        if !n.is_finite() {
            return None;
        }
        let scale = match self.format {
            TimeFormat::UnixSeconds => 1e9,
            TimeFormat::UnixMillis => 1e6,
            TimeFormat::UnixMicros => 1e3,
            TimeFormat::UnixNanos => 1.0,
            TimeFormat::Auto => match n.abs() {
                a if a < 1e11 => 1e9,
                a if a < 1e14 => 1e6,
                a if a < 1e17 => 1e3,
                _ => 1.0,
            },
            _ => return None,
        };
        let ns = n * scale;
        (ns.abs() < 9.2e18).then_some(ns as i64)
    }

    fn iso_to_nanos(&self, s: &str) -> Option<i64> {
        let p = parse_iso8601(s)?;
        match p.offset_seconds {
            Some(off) => Some(p.utc_nanos_assuming_offset(off)),
            None => match &self.zone {
                None => Some(p.utc_nanos_assuming_offset(0)),
                Some(tz) => {
                    let dt = DateTime::new(
                        p.year as i16,
                        p.month as i8,
                        p.day as i8,
                        p.hour as i8,
                        p.minute as i8,
                        p.second as i8,
                        p.nanos as i32,
                    )
                    .ok()?;
                    let ts = dt.to_zoned(tz.clone()).ok()?.timestamp();
                    Some(ts.as_nanosecond() as i64)
                }
            },
        }
    }

    fn strftime_to_nanos(&self, fmt: &str, s: &str) -> Option<i64> {
        let tm = jiff::fmt::strtime::parse(fmt, s).ok()?;
        if let Ok(ts) = tm.to_timestamp() {
            return Some(ts.as_nanosecond() as i64);
        }
        let dt = tm.to_datetime().ok()?;
        let tz = self.zone.clone().unwrap_or(TimeZone::UTC);
        Some(dt.to_zoned(tz).ok()?.timestamp().as_nanosecond() as i64)
    }
}

/// The pieces of an ISO 8601 date-time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IsoParts {
    pub year: i32,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub nanos: u32,
    pub offset_seconds: Option<i32>,
}

impl IsoParts {
    fn utc_nanos_assuming_offset(&self, offset: i32) -> i64 {
        let days = days_from_civil(self.year, self.month, self.day);
        let secs = days * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
            - i64::from(offset);
        secs * 1_000_000_000 + i64::from(self.nanos)
    }
}

/// Parses `YYYY-MM-DD[T| ]HH:MM[:SS[(.|,)fraction]][Z|±HH[:MM]]`.
pub fn parse_iso8601(s: &str) -> Option<IsoParts> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let d = b.get(r)?;
        d.iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let year = num(0..4)? as i32;
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let month = num(5..7)?;
    let day = num(8..10)?;
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) || b.get(13) != Some(&b':') {
        return None;
    }
    let hour = num(11..13)?;
    let minute = num(14..16)?;
    let mut i = 16;
    let mut second = 0;
    let mut nanos = 0;
    if b.get(i) == Some(&b':') {
        second = num(17..19)?;
        i = 19;
        if matches!(b.get(i), Some(b'.' | b',')) {
            i += 1;
            let start = i;
            let mut scale = 100_000_000;
            while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
                nanos += u32::from(c - b'0') * scale;
                scale /= 10;
                i += 1;
            }
            if i == start {
                return None;
            }
        }
    }
    let offset_seconds = match b.get(i) {
        None => None,
        Some(b'Z' | b'z') if i + 1 == b.len() => Some(0),
        Some(&sign @ (b'+' | b'-')) => {
            let oh = num(i + 1..i + 3)? as i32;
            let om = match b.len() - i {
                3 => 0,
                5 => num(i + 3..i + 5)? as i32,
                6 if b[i + 3] == b':' => num(i + 4..i + 6)? as i32,
                _ => return None,
            };
            let off = oh * 3600 + om * 60;
            Some(if sign == b'-' { -off } else { off })
        }
        _ => return None,
    };
    let valid = (1..=12).contains(&month)
        && day >= 1
        && day <= days_in_month(year, month)
        && hour < 24
        && minute < 60
        && second < 61;
    valid.then_some(IsoParts {
        year,
        month,
        day,
        hour,
        minute,
        second: second.min(59),
        nanos,
        offset_seconds,
    })
}

fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Current wall-clock time in nanoseconds since the epoch.
pub fn now_nanos() -> i64 {
    Timestamp::now().as_nanosecond() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auto() -> TimeParser {
        TimeParser {
            format: TimeFormat::Auto,
            zone: None,
        }
    }

    fn jiff_nanos(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_nanosecond() as i64
    }

    #[test]
    fn iso_forms_agree_with_jiff() {
        let p = auto();
        for (input, expected) in [
            (
                "2026-11-25T06:19:15.123456+00:00",
                "2026-11-25T06:19:15.123456Z",
            ),
            ("2026-11-25T06:19:15.123456Z", "2026-11-25T06:19:15.123456Z"),
            ("2026-11-25T14:19:15+08:00", "2026-11-25T06:19:15Z"),
            ("2026-11-25 06:19:15,250", "2026-11-25T06:19:15.25Z"),
            ("2026-11-25T06:19:15", "2026-11-25T06:19:15Z"),
            (
                "2024-02-29T23:59:59.999999999-0130",
                "2024-03-01T01:29:59.999999999Z",
            ),
            ("1969-12-31T23:59:59Z", "1969-12-31T23:59:59Z"),
        ] {
            let got = p.parse(FieldRef::Text(input));
            assert_eq!(got, Some(jiff_nanos(expected)), "{input}");
        }
    }

    #[test]
    fn rejects_what_is_not_a_time() {
        let p = auto();
        for bad in [
            "",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-25T06:19:15.Z",
            "2026-11-25T06:19:15+0",
        ] {
            assert_eq!(p.parse(FieldRef::Text(bad)), None, "{bad}");
        }
    }

    #[test]
    fn epoch_numbers_by_magnitude_or_by_config() {
        let p = auto();
        let want = 1_732_500_000_000_000_000;
        assert_eq!(p.parse(FieldRef::Json("1732500000")), Some(want));
        assert_eq!(p.parse(FieldRef::Json("1732500000000")), Some(want));
        assert_eq!(p.parse(FieldRef::Json("1732500000000000")), Some(want));
        assert_eq!(
            p.parse(FieldRef::Text("1732500000.5")),
            Some(want + 500_000_000)
        );
        let ms = TimeParser {
            format: TimeFormat::UnixMillis,
            zone: None,
        };
        assert_eq!(
            ms.parse(FieldRef::Json("1732500000")),
            Some(1_732_500_000_000_000)
        );
    }

    #[test]
    fn zone_less_stamps_use_the_configured_zone() {
        let p = TimeParser {
            format: TimeFormat::Auto,
            zone: Some(TimeZone::get("Asia/Shanghai").unwrap()),
        };
        assert_eq!(
            p.parse(FieldRef::Text("2026-11-25 14:19:15")),
            Some(jiff_nanos("2026-11-25T06:19:15Z"))
        );
        // An explicit offset wins over the zone.
        assert_eq!(
            p.parse(FieldRef::Text("2026-11-25T06:19:15Z")),
            Some(jiff_nanos("2026-11-25T06:19:15Z"))
        );
    }

    #[test]
    fn strftime_patterns() {
        let p = TimeParser {
            format: TimeFormat::parse("%d/%b/%Y:%H:%M:%S %z").unwrap(),
            zone: None,
        };
        assert_eq!(
            p.parse(FieldRef::Text("25/Nov/2026:14:19:15 +0800")),
            Some(jiff_nanos("2026-11-25T06:19:15Z"))
        );
        assert!(TimeFormat::parse("sometime").is_err());
    }
}
