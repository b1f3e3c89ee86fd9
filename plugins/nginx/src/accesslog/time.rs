//! Timestamps as access logs write them, converted to Unix milliseconds.
//!
//! Invariants: every component is range-checked (a day that does not exist in its month is
//! rejected), so `Some` always denotes a real instant; arithmetic is checked, so no input panics.
//! The calendar is the proleptic Gregorian one, in UTC after applying the logged offset.

const MS_PER_SECOND: i64 = 1000;
const SECONDS_PER_DAY: i64 = 86_400;

/// The decimal number written by `digits`, which must be non-empty and all ASCII digits.
fn number(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 9 {
        return None;
    }
    digits
        .iter()
        .try_fold(0u32, |n, &c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to `year-month-day`. Years are counted from March, so that the leap day
/// ends the counted year and the month lengths before it repeat in a 5-month pattern of 153 days.
fn days_since_epoch(year: i64, month: u32, day: u32) -> i64 {
    let (y, m) = if month > 2 {
        (year, month - 3)
    } else {
        (year - 1, month + 9)
    };
    let cycles = y.div_euclid(400);
    let year_in_cycle = y.rem_euclid(400);
    let day_in_year = i64::from((153 * m + 2) / 5 + day - 1);
    let day_in_cycle = year_in_cycle * 365 + year_in_cycle / 4 - year_in_cycle / 100 + day_in_year;
    // 146_097 days per 400-year cycle; 719_468 days from 0000-03-01 to 1970-01-01.
    cycles * 146_097 + day_in_cycle - 719_468
}

/// A validated civil date and time plus the offset of local time from UTC.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    millis: u32,
    offset_minutes: i64,
}

impl Civil {
    fn unix_ms(&self) -> Option<i64> {
        let valid = (1..=12).contains(&self.month)
            && (1..=days_in_month(self.year, self.month)).contains(&self.day)
            && self.hour < 24
            && self.minute < 60
            && self.second <= 60;
        if !valid {
            return None;
        }
        let seconds = days_since_epoch(self.year, self.month, self.day) * SECONDS_PER_DAY
            + i64::from(self.hour * 3600 + self.minute * 60 + self.second)
            - self.offset_minutes * 60;
        seconds.checked_mul(MS_PER_SECOND)?.checked_add(i64::from(self.millis))
    }
}

/// `+hhmm`, `-hhmm`, `+hh:mm`, `+hh` as minutes east of UTC.
fn offset_minutes(s: &[u8]) -> Option<i64> {
    let (sign, rest) = match s.split_first()? {
        (b'+', rest) => (1, rest),
        (b'-', rest) => (-1, rest),
        _ => return None,
    };
    let (hours, minutes) = match rest {
        [h1, h2] => (number(&[*h1, *h2])?, 0),
        [h1, h2, b':', m1, m2] | [h1, h2, m1, m2] => (number(&[*h1, *h2])?, number(&[*m1, *m2])?),
        _ => return None,
    };
    (hours < 24 && minutes < 60).then(|| sign * i64::from(hours * 60 + minutes))
}

/// The month number of an English three-letter abbreviation.
fn month_number(name: [u8; 3]) -> Option<u32> {
    Some(match &name {
        b"Jan" => 1,
        b"Feb" => 2,
        b"Mar" => 3,
        b"Apr" => 4,
        b"May" => 5,
        b"Jun" => 6,
        b"Jul" => 7,
        b"Aug" => 8,
        b"Sep" => 9,
        b"Oct" => 10,
        b"Nov" => 11,
        b"Dec" => 12,
        _ => return None,
    })
}

/// Whether `text` has the shape of a `$time_local` value (length and separators), a cheap test
/// that comes before [`parse_clf`].
pub fn looks_like_clf(b: &[u8]) -> bool {
    b.len() == 26 && b[2] == b'/' && b[6] == b'/' && b[11] == b':' && b[14] == b':' && b[17] == b':' && b[20] == b' '
}

/// nginx `$time_local` / Apache `%t` without brackets: `10/Oct/2000:13:55:36 -0700`.
pub fn parse_clf(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if !looks_like_clf(b) {
        return None;
    }
    let month = month_number([b[3], b[4], b[5]])?;
    Civil {
        year: i64::from(number(&b[7..11])?),
        month,
        day: number(&b[0..2])?,
        hour: number(&b[12..14])?,
        minute: number(&b[15..17])?,
        second: number(&b[18..20])?,
        millis: 0,
        offset_minutes: offset_minutes(&b[21..])?,
    }
    .unix_ms()
}

/// ISO 8601 / RFC 3339: `2000-10-10T13:55:36-07:00`, with optional fraction of a second (digits
/// beyond milliseconds are ignored), `Z` or an offset; a space may replace the `T`. A timestamp
/// without offset is taken as UTC.
pub fn parse_iso8601(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let mut rest = &b[19..];
    let mut millis = 0;
    if let Some((b'.' | b',', fraction)) = rest.split_first() {
        let digits = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        millis = fraction[..digits]
            .iter()
            .chain(b"00")
            .take(3)
            .fold(0, |n, c| n * 10 + u32::from(c - b'0'));
        rest = &fraction[digits..];
    }
    let offset = match rest {
        [] | [b'Z' | b'z'] => 0,
        _ => offset_minutes(rest)?,
    };
    Civil {
        year: i64::from(number(&b[0..4])?),
        month: number(&b[5..7])?,
        day: number(&b[8..10])?,
        hour: number(&b[11..13])?,
        minute: number(&b[14..16])?,
        second: number(&b[17..19])?,
        millis,
        offset_minutes: offset,
    }
    .unix_ms()
}

/// Seconds since the epoch with an optional fraction, as nginx `$msec` writes them:
/// `1700000000.123`.
pub fn parse_epoch_seconds(text: &str) -> Option<i64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let whole = whole.as_bytes();
    if whole.is_empty() || whole.len() > 12 || !whole.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if !fraction.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let seconds = whole.iter().fold(0i64, |n, c| n * 10 + i64::from(c - b'0'));
    let millis = fraction
        .bytes()
        .chain(*b"000")
        .take(3)
        .fold(0i64, |n, c| n * 10 + i64::from(c - b'0'));
    Some(seconds * MS_PER_SECOND + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_day_counting() {
        assert_eq!(days_since_epoch(1970, 1, 1), 0);
        assert_eq!(days_since_epoch(2000, 3, 1), 11_017);
        assert_eq!(days_since_epoch(1969, 12, 31), -1);
        assert_eq!(days_since_epoch(2024, 2, 29), 19_782);
    }

    #[test]
    fn common_log_format_honours_the_offset() {
        // 2000-10-10T20:55:36Z
        assert_eq!(parse_clf("10/Oct/2000:13:55:36 -0700"), Some(971_211_336_000));
        assert_eq!(parse_clf("10/Oct/2000:22:55:36 +0200"), Some(971_211_336_000));
        assert_eq!(parse_clf("01/Jan/1970:00:00:00 +0000"), Some(0));
        assert_eq!(parse_clf("29/Feb/2024:00:00:00 +0000"), Some(1_709_164_800_000));
    }

    #[test]
    fn common_log_format_rejects_impossible_dates() {
        assert_eq!(parse_clf("30/Feb/2024:00:00:00 +0000"), None);
        assert_eq!(parse_clf("29/Feb/2023:00:00:00 +0000"), None);
        assert_eq!(parse_clf("10/Foo/2000:13:55:36 -0700"), None);
        assert_eq!(parse_clf("10/Oct/2000:24:55:36 -0700"), None);
        assert_eq!(parse_clf("10/Oct/2000:13:55:36 -07"), None);
        assert_eq!(parse_clf("10/Oct/2000:13:55:36 x0700"), None);
        assert_eq!(parse_clf("1é/Oct/2000:13:55:36 +0700"), None);
        assert_eq!(parse_clf(""), None);
    }

    #[test]
    fn iso8601_variants() {
        let t = Some(971_211_336_000);
        assert_eq!(parse_iso8601("2000-10-10T13:55:36-07:00"), t);
        assert_eq!(parse_iso8601("2000-10-10T20:55:36Z"), t);
        assert_eq!(parse_iso8601("2000-10-10 20:55:36"), t);
        assert_eq!(parse_iso8601("2000-10-10T22:55:36+0200"), t);
        assert_eq!(parse_iso8601("2000-10-10T20:55:36.5Z"), Some(971_211_336_500));
        assert_eq!(parse_iso8601("2000-10-10T20:55:36.123456+00:00"), Some(971_211_336_123));
        assert_eq!(parse_iso8601("2000-10-10T20:55:36."), None);
        assert_eq!(parse_iso8601("2000-13-10T20:55:36Z"), None);
        assert_eq!(parse_iso8601("2000-10-10T20:55:36Q"), None);
    }

    #[test]
    fn epoch_seconds() {
        assert_eq!(parse_epoch_seconds("1700000000.123"), Some(1_700_000_000_123));
        assert_eq!(parse_epoch_seconds("1700000000"), Some(1_700_000_000_000));
        assert_eq!(parse_epoch_seconds("1700000000.1"), Some(1_700_000_000_100));
        assert_eq!(parse_epoch_seconds("17e9"), None);
        assert_eq!(parse_epoch_seconds("99999999999999999999"), None);
        assert_eq!(parse_epoch_seconds(""), None);
    }
}
