//! HTTP dates (RFC 9110 §5.6.7): formatting IMF-fixdate for `Date` and `Last-Modified`, and
//! parsing the three forms a recipient must accept, for `If-Modified-Since` and friends.
//!
//! This module owns the calendar arithmetic (proleptic Gregorian, UTC, no leap seconds: the
//! same model as Unix time) and nothing else. It never fails loudly: [`parse`] answers `None`
//! for anything it does not accept, because RFC 9110 §13.1.3 tells recipients to ignore an
//! invalid date, and it never panics whatever the input.
//!
//! # Parsing choices
//! - Strict syntax: exact spacing, case-sensitive names and `GMT` (RFC 9110 §5.6.7: "HTTP-date
//!   is case sensitive"); the caller passes the field value with its OWS already trimmed.
//! - The day name must be one of the seven names of the right form (short, or long for
//!   RFC 850) but is not checked against the date: it is redundant, and refusing it would turn
//!   a harmless client slip into an ignored validator.
//! - Ranges are checked: day 1 to the length of that month (leap years included), hour < 24,
//!   minute < 60. Second 60 is a leap second (RFC 9110 §5.6.7 allows `23:59:60`); Unix time
//!   has none, so it is clamped to 59, which keeps the date in the minute it names.
//! - RFC 850 two-digit years are placed in the 100-year window ending 50 years after the
//!   current year, so a year "more than 50 years in the future" is read as the past century,
//!   as RFC 9110 §5.6.7 requires.

use std::cell::Cell;
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Length of an IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
pub const LEN: usize = 29;

/// The last instant with a 4-digit year, 9999-12-31 23:59:59: IMF-fixdate has room for no
/// more, so later times are clamped to it to keep the output [`LEN`] bytes.
const MAX_SECS: u64 = 253_402_300_799;

/// Seconds per day; Unix time has no leap seconds.
const DAY_SECS: u64 = 86_400;

/// Days from 0000-03-01 to 1970-01-01, to move Hinnant's March-based epoch to Unix's.
const EPOCH_SHIFT: i64 = 719_468;

/// Days in a 400-year Gregorian era, after which the calendar repeats exactly.
const ERA_DAYS: i64 = 146_097;

/// RFC 9110 §5.6.7 reads an RFC 850 year more than this many years ahead as the past century.
const TWO_DIGIT_YEAR_AHEAD: i64 = 50;

const SHORT_DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const LONG_DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// IMF-fixdate (RFC 9110 §5.6.7), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`. Times before 1970
/// clamp to the epoch; times after 9999-12-31 23:59:59 clamp to that.
pub fn format(t: SystemTime) -> String {
    render(unix_secs(t))
        .iter()
        .map(|&b| char::from(b))
        .collect()
}

/// Appends the same [`LEN`] bytes as [`format()`] to `out` without allocating a `String`.
pub fn format_into(t: SystemTime, out: &mut Vec<u8>) {
    out.extend_from_slice(&render(unix_secs(t)));
}

thread_local! {
    /// (Unix second, its rendering). `u64::MAX` is never a clamped second, so the first call
    /// on each thread always renders.
    static NOW: Cell<(u64, [u8; LEN])> = const { Cell::new((u64::MAX, [0; LEN])) };
}

/// The current time as IMF-fixdate, for the `Date` header (RFC 9110 §6.6.1).
pub fn now() -> String {
    let mut out = Vec::with_capacity(LEN);
    now_into(&mut out);
    out.into_iter().map(char::from).collect()
}

/// Appends the current time as IMF-fixdate to `out`. Every response calls this, so the
/// rendering is cached per thread and redone only when the second changes.
pub fn now_into(out: &mut Vec<u8>) {
    let secs = unix_secs(SystemTime::now());
    let bytes = NOW.with(|cache| {
        let (cached_secs, cached) = cache.get();
        if cached_secs == secs {
            return cached;
        }
        let fresh = render(secs);
        cache.set((secs, fresh));
        fresh
    });
    out.extend_from_slice(&bytes);
}

/// Seconds since the epoch, clamped to `0..=MAX_SECS`.
fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .min(MAX_SECS)
}

/// Renders a clamped Unix second as IMF-fixdate.
fn render(secs: u64) -> [u8; LEN] {
    let secs = secs.min(MAX_SECS);
    let (year, month, day, h, m, sec) = parts_of(secs);
    // 1970-01-01 was a Thursday (index 4 from Sunday).
    let weekday = ((secs / DAY_SECS + 4) % 7) as usize;
    let mut out = [0u8; LEN];
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        out[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    put(SHORT_DAYS[weekday].as_bytes());
    put(b", ");
    put(&two_digits(day));
    put(b" ");
    put(MONTHS[(month - 1) as usize].as_bytes());
    put(b" ");
    put(&two_digits((year / 100) as u32));
    put(&two_digits((year % 100) as u32));
    put(b" ");
    put(&two_digits(h));
    put(b":");
    put(&two_digits(m));
    put(b":");
    put(&two_digits(sec));
    put(b" GMT");
    out
}

/// The parts of a time, clamped like [`format()`]: (year, month 1..=12, day, hour, minute,
/// second).
fn parts(t: SystemTime) -> (i64, u32, u32, u32, u32, u32) {
    parts_of(unix_secs(t))
}

/// [`parts`] of a clamped Unix second (days fit in an i64: at most 2_932_896).
fn parts_of(secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let (year, month, day) = civil_from_days((secs / DAY_SECS) as i64);
    let tod = secs % DAY_SECS;
    let (h, m, s) = (tod / 3600, tod / 60 % 60, tod % 60);
    (year, month, day, h as u32, m as u32, s as u32)
}

/// Appends the time in the Common Log Format's `[day/Mon/year:HH:MM:SS +0000]` form, without
/// the brackets (UTC: log tools parse the offset, and servers in one fleet then agree).
pub fn clf_into(t: SystemTime, out: &mut Vec<u8>) {
    let (year, month, day, h, m, s) = parts(t);
    let _ = write!(
        out,
        "{day:02}/{}/{year:04}:{h:02}:{m:02}:{s:02} +0000",
        MONTHS[(month - 1) as usize]
    );
}

/// Appends the time as RFC 3339 UTC (`2026-11-25T10:20:00Z`), for JSON logs.
pub fn rfc3339_into(t: SystemTime, out: &mut Vec<u8>) {
    let (year, month, day, h, m, s) = parts(t);
    let _ = write!(out, "{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z");
}

/// `n` (< 100) as two ASCII digits.
fn two_digits(n: u32) -> [u8; 2] {
    [b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8]
}

/// (year, month 1..=12, day 1..=31) of a day count from 1970-01-01. Howard Hinnant's
/// `civil_from_days`: count in 400-year eras of a calendar that starts on 1 March, so the
/// leap day falls at the end of each year.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + EPOCH_SHIFT;
    let era = z.div_euclid(ERA_DAYS);
    let doe = z.rem_euclid(ERA_DAYS); // day of era, 0..=146_096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era, 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of (March-based) year, 0..=365
    let mp = (5 * doy + 2) / 153; // March-based month, 0..=11
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days from 1970-01-01 to a valid (year, month, day); the inverse of [`civil_from_days`].
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = year - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((month + 9) % 12); // March = 0
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * ERA_DAYS + doe - EPOCH_SHIFT
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

/// Parses an HTTP-date in any of the three forms of RFC 9110 §5.6.7:
/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the obsolete RFC 850 form
/// (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime (`Sun Nov  6 08:49:37 1994`).
/// Anything else is `None`; see the module docs for how strict it is. Never panics.
pub fn parse(s: &str) -> Option<SystemTime> {
    parse_with(s, current_year)
}

/// [`parse`] with the current year supplied, so the RFC 850 window can be tested. The year
/// is asked for only when an RFC 850 date is met.
fn parse_with(s: &str, this_year: impl FnOnce() -> i64) -> Option<SystemTime> {
    let b = s.as_bytes();
    let fields = imf_fixdate(b)
        .or_else(|| asctime(b))
        .or_else(|| rfc850(b).map(|(yy, f)| f.with_year(two_digit_year(yy, this_year()))))?;
    fields.to_system_time()
}

fn current_year() -> i64 {
    civil_from_days((unix_secs(SystemTime::now()) / DAY_SECS) as i64).0
}

/// The year ending in `yy` that lies in (this_year - 50, this_year + 50].
fn two_digit_year(yy: u32, this_year: i64) -> i64 {
    let candidate = this_year - this_year.rem_euclid(100) + i64::from(yy);
    if candidate > this_year + TWO_DIGIT_YEAR_AHEAD {
        candidate - 100
    } else if candidate <= this_year - TWO_DIGIT_YEAR_AHEAD {
        candidate + 100
    } else {
        candidate
    }
}

/// A date as written, before range checks.
#[derive(Debug, Clone, Copy)]
struct Fields {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

impl Fields {
    fn with_year(self, year: i64) -> Fields {
        Fields { year, ..self }
    }

    /// Range-checks and converts; `None` for impossible dates or unrepresentable times.
    fn to_system_time(self) -> Option<SystemTime> {
        let valid = (1..=12).contains(&self.month)
            && (1..=days_in_month(self.year, self.month)).contains(&self.day)
            && self.hour < 24
            && self.minute < 60
            && self.second <= 60;
        if !valid {
            return None;
        }
        let second = self.second.min(59); // leap second: see the module docs
        let days = days_from_civil(self.year, self.month, self.day);
        // |days| < 3_000_000 for 4-digit years, so this cannot overflow.
        let secs = days * DAY_SECS as i64 + i64::from(self.hour * 3600 + self.minute * 60 + second);
        let offset = Duration::from_secs(secs.unsigned_abs());
        if secs >= 0 {
            UNIX_EPOCH.checked_add(offset)
        } else {
            UNIX_EPOCH.checked_sub(offset)
        }
    }
}

/// A cursor over the input bytes; every step either consumes exactly what it matched or
/// fails, so no index can go out of bounds.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl Cursor<'_> {
    fn literal(&mut self, lit: &str) -> Option<()> {
        self.rest = self.rest.strip_prefix(lit.as_bytes())?;
        Some(())
    }

    /// Index of the name in `names` the input starts with.
    fn name(&mut self, names: &[&str]) -> Option<u32> {
        let i = names
            .iter()
            .position(|n| self.rest.starts_with(n.as_bytes()))?;
        self.rest = self.rest.get(names[i].len()..)?;
        u32::try_from(i).ok()
    }

    /// Exactly `n` ASCII digits (n <= 4, so the value fits in a u32).
    fn digits(&mut self, n: usize) -> Option<u32> {
        let (head, tail) = self.rest.split_at_checked(n)?;
        let mut value = 0;
        for &b in head {
            if !b.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u32::from(b - b'0');
        }
        self.rest = tail;
        Some(value)
    }

    /// `hour ":" minute ":" second`.
    fn time_of_day(&mut self) -> Option<(u32, u32, u32)> {
        let hour = self.digits(2)?;
        self.literal(":")?;
        let minute = self.digits(2)?;
        self.literal(":")?;
        let second = self.digits(2)?;
        Some((hour, minute, second))
    }

    fn end(&self) -> Option<()> {
        self.rest.is_empty().then_some(())
    }
}

/// `day-name "," SP day SP month SP year SP time-of-day SP "GMT"`.
fn imf_fixdate(s: &[u8]) -> Option<Fields> {
    let mut c = Cursor { rest: s };
    c.name(&SHORT_DAYS)?;
    c.literal(", ")?;
    let day = c.digits(2)?;
    c.literal(" ")?;
    let month = c.name(&MONTHS)? + 1;
    c.literal(" ")?;
    let year = i64::from(c.digits(4)?);
    c.literal(" ")?;
    let (hour, minute, second) = c.time_of_day()?;
    c.literal(" GMT")?;
    c.end()?;
    Some(Fields {
        year,
        month,
        day,
        hour,
        minute,
        second,
    })
}

/// `day-name-l "," SP 2DIGIT "-" month "-" 2DIGIT SP time-of-day SP "GMT"`; returns the
/// two-digit year apart, as its century depends on the current year.
fn rfc850(s: &[u8]) -> Option<(u32, Fields)> {
    let mut c = Cursor { rest: s };
    c.name(&LONG_DAYS)?;
    c.literal(", ")?;
    let day = c.digits(2)?;
    c.literal("-")?;
    let month = c.name(&MONTHS)? + 1;
    c.literal("-")?;
    let yy = c.digits(2)?;
    c.literal(" ")?;
    let (hour, minute, second) = c.time_of_day()?;
    c.literal(" GMT")?;
    c.end()?;
    Some((
        yy,
        Fields {
            year: 0,
            month,
            day,
            hour,
            minute,
            second,
        },
    ))
}

/// `day-name SP month SP ( 2DIGIT / ( SP DIGIT ) ) SP time-of-day SP year`.
fn asctime(s: &[u8]) -> Option<Fields> {
    let mut c = Cursor { rest: s };
    c.name(&SHORT_DAYS)?;
    c.literal(" ")?;
    let month = c.name(&MONTHS)? + 1;
    c.literal(" ")?;
    let day = match c.literal(" ") {
        Some(()) => c.digits(1)?,
        None => c.digits(2)?,
    };
    c.literal(" ")?;
    let (hour, minute, second) = c.time_of_day()?;
    c.literal(" ")?;
    let year = i64::from(c.digits(4)?);
    c.end()?;
    Some(Fields {
        year,
        month,
        day,
        hour,
        minute,
        second,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    use crate::testutil::Rng;

    // Pairs checked against GNU `date -u -d @SECS '+%a, %d %b %Y %H:%M:%S GMT'`.
    const KNOWN: &[(u64, &str)] = &[
        (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
        (784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"),
        (946_684_799, "Fri, 31 Dec 1999 23:59:59 GMT"),
        (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
        (951_868_800, "Wed, 01 Mar 2000 00:00:00 GMT"),
        (1_709_208_000, "Thu, 29 Feb 2024 12:00:00 GMT"),
        (2_147_483_648, "Tue, 19 Jan 2038 03:14:08 GMT"),
        (4_107_542_399, "Sun, 28 Feb 2100 23:59:59 GMT"),
        (4_107_542_400, "Mon, 01 Mar 2100 00:00:00 GMT"),
        (253_402_300_799, "Fri, 31 Dec 9999 23:59:59 GMT"),
    ];

    #[test]
    fn formats_known_instants() {
        for &(secs, want) in KNOWN {
            assert_eq!(format(at(secs)), want, "{secs}");
            let mut out = b"Date: ".to_vec();
            format_into(at(secs), &mut out);
            assert_eq!(out, [b"Date: ", want.as_bytes()].concat(), "{secs}");
        }
    }

    #[test]
    fn parses_known_instants() {
        for &(secs, text) in KNOWN {
            assert_eq!(parse(text), Some(at(secs)), "{text}");
        }
    }

    #[test]
    fn clamps_out_of_range_times() {
        let before = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(format(before), "Thu, 01 Jan 1970 00:00:00 GMT");
        let after = at(MAX_SECS + 1);
        assert_eq!(format(after), "Fri, 31 Dec 9999 23:59:59 GMT");
        let far = at(u64::from(u32::MAX) * 1000);
        assert_eq!(format(far), "Fri, 31 Dec 9999 23:59:59 GMT");
    }

    #[test]
    fn civil_matches_naive_day_count() {
        // Walk month by month from 1970 to 2500 counting days the slow way.
        let mut days = 0i64;
        for year in 1970..2500 {
            for month in 1..=12 {
                assert_eq!(days_from_civil(year, month, 1), days, "{year}-{month}");
                assert_eq!(civil_from_days(days), (year, month, 1), "{days}");
                let last = days + i64::from(days_in_month(year, month)) - 1;
                let want = (year, month, days_in_month(year, month));
                assert_eq!(civil_from_days(last), want, "{last}");
                days = last + 1;
            }
        }
        // Before the epoch too, down to year 0, as parse accepts 4-digit years from 0000.
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(days_from_civil(0, 3, 1), -EPOCH_SHIFT);
        for d in (-EPOCH_SHIFT - 60..0).step_by(7) {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d, "{d}");
        }
    }

    #[test]
    fn leap_years() {
        let cases = [
            (1900, false),
            (2000, true),
            (2024, true),
            (2023, false),
            (2100, false),
            (2400, true),
        ];
        for (year, leap) in cases {
            assert_eq!(is_leap(year), leap, "{year}");
        }
    }

    #[test]
    fn round_trips_random_instants() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..20_000 {
            let secs = rng.below(MAX_SECS + 1);
            let text = format(at(secs));
            assert_eq!(text.len(), LEN, "{text}");
            assert_eq!(parse(&text), Some(at(secs)), "{secs} -> {text}");
        }
    }

    #[test]
    fn three_forms_of_one_instant() {
        let cases: &[(&str, &str, &str, u64)] = &[
            (
                "Sun, 06 Nov 1994 08:49:37 GMT",
                "Sunday, 06-Nov-94 08:49:37 GMT",
                "Sun Nov  6 08:49:37 1994",
                784_111_777,
            ),
            (
                "Tue, 29 Feb 2000 00:00:00 GMT",
                "Tuesday, 29-Feb-00 00:00:00 GMT",
                "Tue Feb 29 00:00:00 2000",
                951_782_400,
            ),
            (
                "Fri, 31 Dec 1999 23:59:59 GMT",
                "Friday, 31-Dec-99 23:59:59 GMT",
                "Fri Dec 31 23:59:59 1999",
                946_684_799,
            ),
        ];
        for &(imf, rfc850, asc, secs) in cases {
            for text in [imf, rfc850, asc] {
                let got = parse_with(text, || 2026);
                assert_eq!(got, Some(at(secs)), "{text}");
            }
        }
        // asctime also allows a two-digit day with a leading zero.
        assert_eq!(parse("Sun Nov 06 08:49:37 1994"), Some(at(784_111_777)));
    }

    #[test]
    fn rfc850_two_digit_year_window() {
        let cases: &[(u32, i64, i64)] = &[
            // (yy, this year, year meant)
            (94, 2026, 1994),
            (70, 2026, 2070), // 56 years back vs 44 ahead: the future
            (70, 2000, 1970),
            (26, 2026, 2026),
            (76, 2026, 2076), // exactly 50 years ahead: still the future
            (77, 2026, 1977), // 51 years ahead: the past century
            (0, 2026, 2000),
            (10, 2090, 2110), // 80 years back would be further than 20 ahead
            (40, 2090, 2140),
            (41, 2090, 2041),
            (99, 2001, 1999),
        ];
        for &(yy, now, want) in cases {
            assert_eq!(two_digit_year(yy, now), want, "{yy} in {now}");
        }
        // And through the parser: 94 read in 2026 vs in 2060 (window 2011..=2110 → 2094).
        let text = "Sunday, 06-Nov-94 08:49:37 GMT";
        assert_eq!(parse_with(text, || 2026), Some(at(784_111_777)));
        let in_2094 = days_from_civil(2094, 11, 6) as u64 * DAY_SECS + 8 * 3600 + 49 * 60 + 37;
        assert_eq!(parse_with(text, || 2060), Some(at(in_2094)));
    }

    #[test]
    fn accepted_oddities() {
        let cases: &[(&str, u64)] = &[
            // Wrong day name: redundant, so ignored (module docs).
            ("Mon, 06 Nov 1994 08:49:37 GMT", 784_111_777),
            ("Wed Nov  6 08:49:37 1994", 784_111_777),
            // Leap second clamps to :59.
            ("Sun, 06 Nov 1994 08:49:60 GMT", 784_111_799),
            ("Fri, 31 Dec 1999 23:59:60 GMT", 946_684_799),
        ];
        for &(text, secs) in cases {
            assert_eq!(parse(text), Some(at(secs)), "{text}");
        }
        // Dates before the epoch parse to times before it (and format clamps them).
        let old = parse("Mon, 01 Jan 1900 00:00:00 GMT");
        assert_eq!(
            old,
            UNIX_EPOCH.checked_sub(Duration::from_secs(2_208_988_800))
        );
    }

    #[test]
    fn rejects_invalid_dates() {
        let long = "Sun, 06 Nov 1994 08:49:37 GMT".repeat(1000);
        let digits = "9".repeat(10_000);
        let cases: &[&str] = &[
            "",
            " ",
            "garbage",
            "0",
            "784111777",
            "Sun, 06 Foo 1994 08:49:37 GMT", // no such month
            "Sun, 06 nov 1994 08:49:37 GMT", // case-sensitive month
            "sun, 06 Nov 1994 08:49:37 GMT", // case-sensitive day name
            "Sun, 06 Nov 1994 08:49:37 gmt", // case-sensitive GMT
            "Sun, 06 Nov 1994 08:49:37",     // missing GMT
            "Sun, 06 Nov 1994 08:49:37 UTC", // not GMT
            "Sun, 06 Nov 1994 08:49:37 +0000",
            "Sat, 31 Feb 2001 00:00:00 GMT", // 31 Feb
            "Tue, 29 Feb 2001 00:00:00 GMT", // not a leap year
            "Mon, 29 Feb 2100 00:00:00 GMT", // century, not a leap year
            "Thu, 31 Apr 2020 00:00:00 GMT",
            "Sun, 00 Nov 1994 08:49:37 GMT",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:60:00 GMT",
            "Sun, 06 Nov 1994 08:49:61 GMT",
            "Sun, 6 Nov 1994 08:49:37 GMT", // IMF needs two-digit day
            "Sun, 06 Nov 94 08:49:37 GMT",  // IMF needs four-digit year
            "Sun, 06 Nov 1994 8:49:37 GMT",
            "Sun, +6 Nov 1994 08:49:37 GMT",
            "Sun,  06 Nov 1994 08:49:37 GMT", // extra space
            "Sun, 06  Nov 1994 08:49:37 GMT",
            " Sun, 06 Nov 1994 08:49:37 GMT", // leading space
            "Sun, 06 Nov 1994 08:49:37 GMT ", // trailing space
            "Sun, 06 Nov 1994 08:49:37 GMTx",
            "Sun 06 Nov 1994 08:49:37 GMT",     // missing comma
            "Sunday, 06 Nov 1994 08:49:37 GMT", // long name in IMF-fixdate
            "Sun, 06-Nov-94 08:49:37 GMT",      // short name in RFC 850
            "Sunday, 06-Nov-1994 08:49:37 GMT", // RFC 850 has a two-digit year
            "Sunday, 06-Nov-94 08:49:37",
            "Sun Nov 6 08:49:37 1994", // asctime needs SP DIGIT or 2DIGIT
            "Sun Nov   6 08:49:37 1994",
            "Sun Nov  6 08:49:37 1994 GMT",
            "Sun Nov  6 08:49:37 94",
            "Sun, 06 N\u{43e}v 1994 08:49:37 GMT", // Cyrillic o
            "S\u{fc}n, 06 Nov 1994 08:49:37 GMT",
            "Sun, \u{ff10}\u{ff16} Nov 1994 08:49:37 GMT", // full-width digits
            "Sun, 06 Nov 1994 08:49:37 GMT\u{0}",
            "\u{feff}Sun, 06 Nov 1994 08:49:37 GMT",
            &long,
            &digits,
        ];
        for text in cases {
            assert_eq!(parse(text), None, "{text:?}");
        }
    }

    /// Random bytes and mutations of valid dates must never panic; whatever does parse within
    /// the formattable range must format to something that parses back to the same instant.
    #[test]
    fn fuzz_never_panics() {
        let seeds = [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Tue, 29 Feb 2000 23:59:60 GMT",
        ];
        let alphabet = b"0123456789 ,:-GMTSunNovFebday\xc3\xa9\xff";
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        let mut parsed = 0;
        for round in 0..100_000 {
            let bytes: Vec<u8> = if round % 4 == 0 {
                let len = rng.below(40) as usize;
                (0..len).map(|_| rng.next() as u8).collect()
            } else {
                let mut v = seeds[rng.below(seeds.len() as u64) as usize]
                    .as_bytes()
                    .to_vec();
                for _ in 0..=rng.below(3) {
                    let i = rng.below(v.len() as u64 + 1) as usize;
                    let b = alphabet[rng.below(alphabet.len() as u64) as usize];
                    match rng.below(3) {
                        0 if i < v.len() => v[i] = b,
                        1 if i < v.len() => {
                            v.remove(i);
                        }
                        _ => v.insert(i, b),
                    }
                }
                v
            };
            let text = String::from_utf8_lossy(&bytes);
            if let Some(t) = parse(&text) {
                parsed += 1;
                if t >= UNIX_EPOCH && t <= at(MAX_SECS) {
                    assert_eq!(parse(&format(t)), Some(t), "{text:?}");
                }
            }
        }
        // The mutations must sometimes stay valid, or this test checks nothing but panics.
        assert!(parsed > 100, "only {parsed} inputs parsed");
    }

    #[test]
    fn now_is_current_and_cached() {
        let before = SystemTime::now();
        let text = now();
        assert_eq!(text.len(), LEN, "{text}");
        let parsed = parse(&text).expect("now() must parse");
        let after = SystemTime::now();
        let lo = before - Duration::from_secs(1);
        assert!(
            lo <= parsed && parsed <= after,
            "{text} not within 1 s of now"
        );
        let mut out = b"x".to_vec();
        now_into(&mut out);
        now_into(&mut out);
        assert_eq!(out.len(), 1 + 2 * LEN);
        let first = parse(std::str::from_utf8(&out[1..1 + LEN]).unwrap()).unwrap();
        let second = parse(std::str::from_utf8(&out[1 + LEN..]).unwrap()).unwrap();
        assert!(first <= second && first + Duration::from_secs(1) >= second);
    }

    #[test]
    fn cache_refreshes_when_the_second_changes() {
        // Plant a stale entry for the current second's predecessor: now_into must not use it.
        let secs = unix_secs(SystemTime::now());
        NOW.with(|c| c.set((secs - 1, *b"Xxx, 00 Xxx 0000 00:00:00 GMT")));
        let text = now();
        assert!(!text.starts_with("Xxx"), "{text}");
        // A planted entry for the current second is used: proof the cache is consulted.
        let secs = unix_secs(SystemTime::now());
        NOW.with(|c| c.set((secs, *b"Yyy, 00 Xxx 0000 00:00:00 GMT")));
        let text = now();
        let again = unix_secs(SystemTime::now());
        if again == secs {
            assert!(text.starts_with("Yyy"), "{text}");
        }
    }
}
