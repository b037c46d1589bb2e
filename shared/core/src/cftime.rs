//! CF time: decoding `units = "<unit> since <date>"` values in every CF calendar.
//!
//! Written here because the Rust date crates (chrono, time, jiff) know only the proleptic
//! Gregorian calendar, and CF data also comes in `noleap`, `all_leap`, `360_day`, `julian` and
//! the mixed Julian/Gregorian `standard` calendar. Spec: CF conventions §4.4.1
//! <https://cfconventions.org/Data/cf-conventions/cf-conventions-1.11/cf-conventions.html#calendar>.

/// A CF calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Calendar {
    /// `standard`/`gregorian`: Julian before 1582-10-15, Gregorian from then on.
    Standard,
    /// `proleptic_gregorian`.
    ProlepticGregorian,
    /// `noleap`/`365_day`.
    NoLeap,
    /// `all_leap`/`366_day`.
    AllLeap,
    /// `360_day`: twelve months of 30 days.
    Day360,
    /// `julian`.
    Julian,
}

impl Calendar {
    /// The calendar an attribute names (`None` attribute: `standard`); `None` when unknown.
    pub fn parse(name: Option<&str>) -> Option<Self> {
        let name = name.unwrap_or("standard").trim().to_ascii_lowercase();
        Some(match name.as_str() {
            "standard" | "gregorian" | "" => Calendar::Standard,
            "proleptic_gregorian" => Calendar::ProlepticGregorian,
            "noleap" | "365_day" => Calendar::NoLeap,
            "all_leap" | "366_day" => Calendar::AllLeap,
            "360_day" => Calendar::Day360,
            "julian" => Calendar::Julian,
            _ => return None,
        })
    }

    /// Its CF name.
    pub fn name(self) -> &'static str {
        match self {
            Calendar::Standard => "standard",
            Calendar::ProlepticGregorian => "proleptic_gregorian",
            Calendar::NoLeap => "noleap",
            Calendar::AllLeap => "all_leap",
            Calendar::Day360 => "360_day",
            Calendar::Julian => "julian",
        }
    }

    /// Whether its dates are Gregorian dates (so they need no clamping when written as such).
    pub fn is_gregorian(self) -> bool {
        matches!(self, Calendar::Standard | Calendar::ProlepticGregorian)
    }

    /// Day of the year of `date`, from 1 (as cftime's `dayofyr`: 360 in a `360_day` year).
    pub fn day_of_year(self, date: Date) -> u32 {
        let first = Date {
            year: date.year,
            month: 1,
            day: 1,
        };
        (self.day_number(date) - self.day_number(first) + 1) as u32
    }

    /// Days from this calendar's epoch to `date`.
    fn day_number(self, d: Date) -> i64 {
        let (y, m, day) = (d.year, i64::from(d.month), i64::from(d.day));
        match self {
            Calendar::Day360 => y * 360 + (m - 1) * 30 + day - 1,
            Calendar::NoLeap => y * 365 + CUMULATIVE[(m - 1) as usize] + day - 1,
            Calendar::AllLeap => y * 366 + CUMULATIVE_LEAP[(m - 1) as usize] + day - 1,
            Calendar::ProlepticGregorian => jdn(d, true),
            Calendar::Julian => jdn(d, false),
            Calendar::Standard => jdn(d, (d.year, d.month, d.day) >= (1582, 10, 15)),
        }
    }

    /// The date `n` days from this calendar's epoch.
    fn date(self, n: i64) -> Date {
        let fixed = |n: i64, len: i64, cumulative: &[i64; 12]| {
            let year = n.div_euclid(len);
            let rest = n.rem_euclid(len);
            let month = cumulative.iter().rposition(|c| *c <= rest).unwrap_or(0);
            Date {
                year,
                month: month as u32 + 1,
                day: (rest - cumulative[month]) as u32 + 1,
            }
        };
        match self {
            Calendar::Day360 => Date {
                year: n.div_euclid(360),
                month: (n.rem_euclid(360) / 30) as u32 + 1,
                day: (n.rem_euclid(30)) as u32 + 1,
            },
            Calendar::NoLeap => fixed(n, 365, &CUMULATIVE),
            Calendar::AllLeap => fixed(n, 366, &CUMULATIVE_LEAP),
            Calendar::ProlepticGregorian => from_jdn(n, true),
            Calendar::Julian => from_jdn(n, false),
            Calendar::Standard => from_jdn(n, n >= GREGORIAN_START_JDN),
        }
    }
}

const CUMULATIVE: [i64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
const CUMULATIVE_LEAP: [i64; 12] = [0, 31, 60, 91, 121, 152, 182, 213, 244, 274, 305, 335];
/// Julian day number of 1582-10-15, the first Gregorian day of the `standard` calendar.
const GREGORIAN_START_JDN: i64 = 2_299_161;

/// Largest year (either side of 0) this module computes with, far from any i64 overflow.
const MAX_YEAR: i64 = 1_000_000;

/// A calendar date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    /// Year (astronomical: 0 is 1 BC).
    pub year: i64,
    /// Month, 1-12.
    pub month: u32,
    /// Day of the month, from 1.
    pub day: u32,
}

/// Julian day number of a Gregorian (`gregorian`) or Julian date (Fliegel & Van Flandern).
fn jdn(d: Date, gregorian: bool) -> i64 {
    let a = (14 - i64::from(d.month)) / 12;
    let y = d.year + 4800 - a;
    let m = i64::from(d.month) + 12 * a - 3;
    let common = i64::from(d.day) + (153 * m + 2) / 5 + 365 * y + y.div_euclid(4);
    if gregorian {
        common - y.div_euclid(100) + y.div_euclid(400) - 32045
    } else {
        common - 32083
    }
}

/// The Gregorian or Julian date of a Julian day number (Richards' algorithm).
fn from_jdn(j: i64, gregorian: bool) -> Date {
    let f = if gregorian {
        j + 1401 + (((4 * j + 274_277).div_euclid(146_097)) * 3).div_euclid(4) - 38
    } else {
        j + 1401
    };
    let e = 4 * f + 3;
    let g = e.rem_euclid(1461).div_euclid(4);
    let h = 5 * g + 2;
    let day = h.rem_euclid(153).div_euclid(5) + 1;
    let month = (h.div_euclid(153) + 2).rem_euclid(12) + 1;
    let year = e.div_euclid(1461) - 4716 + (12 + 2 - month).div_euclid(12);
    Date {
        year,
        month: month as u32,
        day: day as u32,
    }
}

/// A date and a time of day, in some calendar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DateTime {
    /// The date.
    pub date: Date,
    /// Seconds since midnight, whole.
    pub seconds: u32,
}

impl DateTime {
    /// RFC 3339 in UTC. A date that is no Gregorian date (30 February in `360_day`) keeps its
    /// year, month and time and is clamped to the month's last Gregorian day.
    pub fn rfc3339(&self) -> String {
        let Date { year, month, day } = self.date;
        let leap =
            year.rem_euclid(4) == 0 && (year.rem_euclid(100) != 0 || year.rem_euclid(400) == 0);
        let last = match month {
            2 if leap => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        format!(
            "{:04}-{month:02}-{:02}T{:02}:{:02}:{:02}Z",
            year.clamp(0, 9999),
            day.min(last),
            self.seconds / 3600,
            self.seconds / 60 % 60,
            self.seconds % 60
        )
    }
}

/// Parsed `"<unit> since <reference>"`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Units {
    /// Seconds per unit.
    pub seconds_per_unit: f64,
    /// The reference date.
    pub reference: Date,
    /// Seconds after midnight of the reference.
    pub reference_seconds: f64,
}

impl Units {
    /// Parse CF time units; `None` when they are not time units.
    pub fn parse(units: &str) -> Option<Self> {
        let (unit, reference) = units.trim().split_once(" since ")?;
        let seconds_per_unit = match unit.trim().to_ascii_lowercase().as_str() {
            "days" | "day" | "d" => 86_400.0,
            "hours" | "hour" | "hrs" | "hr" | "h" => 3_600.0,
            "minutes" | "minute" | "mins" | "min" => 60.0,
            "seconds" | "second" | "secs" | "sec" | "s" => 1.0,
            "milliseconds" | "millisecond" | "msec" | "ms" => 1e-3,
            "microseconds" | "microsecond" | "usec" | "us" => 1e-6,
            _ => return None,
        };
        // "<date>[ T]<time>[ ]<offset>", the offset as Z, UTC, +HH[:MM] or -H[:MM].
        let reference = reference
            .trim()
            .trim_end_matches("UTC")
            .trim_end_matches('Z');
        let (date, rest) = match reference.trim().split_once(['T', ' ']) {
            Some((d, r)) => (d, r.trim()),
            None => (reference.trim(), ""),
        };
        let (time, offset) = match rest.find(['+', '-']) {
            Some(i) => (rest[..i].trim(), rest[i..].trim()),
            None => (rest, ""),
        };
        let mut parts = date.splitn(3, '-');
        let mut field = || parts.next().map(str::trim);
        let reference_date = Date {
            year: field()?
                .parse()
                .ok()
                .filter(|y: &i64| y.abs() <= MAX_YEAR)?,
            month: field()?.parse().ok().filter(|m| (1..=12).contains(m))?,
            day: field()?.parse().ok().filter(|d| (1..=31).contains(d))?,
        };
        let clock = |text: &str| -> Option<f64> {
            let mut seconds = 0.0;
            let fields = text.split(':').filter(|s| !s.is_empty());
            for (v, scale) in fields.zip([3600.0, 60.0, 1.0]) {
                seconds += v.parse::<f64>().ok()? * scale;
            }
            Some(seconds)
        };
        let mut seconds = clock(time)?;
        if let Some(sign) = offset.chars().next() {
            // Local time minus its offset from UTC is UTC.
            let local = clock(&offset[1..])?;
            seconds -= if sign == '-' { -local } else { local };
        }
        Some(Self {
            seconds_per_unit,
            reference: reference_date,
            reference_seconds: seconds,
        })
    }

    /// `value` as seconds since `calendar`'s own epoch: comparable, and convertible to other
    /// units, across values with different references in the same calendar.
    pub fn seconds(&self, value: f64, calendar: Calendar) -> f64 {
        calendar.day_number(self.reference) as f64 * 86_400.0
            + self.reference_seconds
            + value * self.seconds_per_unit
    }

    /// `value` in these units expressed in `to`, in the same calendar.
    pub fn convert(&self, value: f64, to: &Units, calendar: Calendar) -> f64 {
        (self.seconds(value, calendar) - to.seconds(0.0, calendar)) / to.seconds_per_unit
    }

    /// The value in these units of an ISO date (`2000-01-01`, `2000-01-01T06:00`), in
    /// `calendar`; `None` when `date` is not one.
    pub fn value_of(&self, date: &str, calendar: Calendar) -> Option<f64> {
        if date.contains(" since ") {
            return None;
        }
        Units::parse(&format!("seconds since {date}")).map(|at| at.convert(0.0, self, calendar))
    }

    /// The date and time `value` units after the reference, in `calendar`.
    pub fn decode(&self, value: f64, calendar: Calendar) -> Option<DateTime> {
        let offset_seconds = value * self.seconds_per_unit;
        // Beyond a few million years the day arithmetic below would overflow.
        if !offset_seconds.is_finite() || offset_seconds.abs() > MAX_YEAR as f64 * 366.0 * 86_400.0
        {
            return None;
        }
        let total = (self.reference_seconds + offset_seconds).round();
        let days = (total / 86_400.0).floor();
        let seconds = (total - days * 86_400.0) as u32;
        let n = calendar.day_number(self.reference) + days as i64;
        Some(DateTime {
            date: calendar.date(n),
            seconds,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn decode(units: &str, value: f64, calendar: &str) -> String {
        let cal = Calendar::parse(Some(calendar)).unwrap();
        Units::parse(units)
            .unwrap()
            .decode(value, cal)
            .unwrap()
            .rfc3339()
    }

    #[test]
    fn day_of_year_and_dates_as_values() {
        let doy = |cal: &str, y, m, d| {
            Calendar::parse(Some(cal)).unwrap().day_of_year(Date {
                year: y,
                month: m,
                day: d,
            })
        };
        assert_eq!(doy("standard", 2000, 12, 31), 366);
        assert_eq!(doy("noleap", 2000, 12, 31), 365);
        assert_eq!(doy("360_day", 2000, 12, 30), 360);
        assert_eq!(doy("all_leap", 2001, 3, 1), 61);
        assert_eq!(doy("julian", 1900, 3, 1), 61);
        let days = Units::parse("days since 2000-01-01").unwrap();
        let at = |date, cal| days.value_of(date, Calendar::parse(Some(cal)).unwrap());
        assert_eq!(at("2001-01-01", "standard"), Some(366.0));
        assert_eq!(at("2001-01-01", "noleap"), Some(365.0));
        assert_eq!(at("2001-01-01T12:00", "360_day"), Some(360.5));
        assert_eq!(at("2001-01", "standard"), None);
        assert_eq!(at("days since 2001-01-01", "standard"), None);
    }

    #[test]
    fn conversion_between_references_and_units() {
        let days = Units::parse("days since 2000-01-01").unwrap();
        let hours = Units::parse("hours since 2000-01-02 06:00").unwrap();
        for cal in ["standard", "noleap", "360_day"] {
            let cal = Calendar::parse(Some(cal)).unwrap();
            assert_eq!(days.convert(1.25, &hours, cal), 0.0);
            assert_eq!(hours.convert(18.0, &days, cal), 2.0);
        }
        let noleap = Calendar::parse(Some("noleap")).unwrap();
        let y2001 = Units::parse("days since 2001-01-01").unwrap();
        assert_eq!(y2001.convert(0.0, &days, noleap), 365.0);
        let standard = Calendar::parse(Some("standard")).unwrap();
        assert_eq!(y2001.convert(0.0, &days, standard), 366.0);
    }

    #[test]
    fn calendars() {
        let u = "days since 2000-01-01 00:00:00";
        assert_eq!(decode(u, 59.0, "standard"), "2000-02-29T00:00:00Z");
        assert_eq!(decode(u, 59.0, "noleap"), "2000-03-01T00:00:00Z");
        assert_eq!(decode(u, 59.0, "all_leap"), "2000-02-29T00:00:00Z");
        // 360_day: day 59 is 30 February, written as the last day of February.
        assert_eq!(decode(u, 59.0, "360_day"), "2000-02-29T00:00:00Z");
        assert_eq!(decode(u, 59.5, "360_day"), "2000-02-29T12:00:00Z");
        assert_eq!(
            decode(u, 366.0, "proleptic_gregorian"),
            "2001-01-01T00:00:00Z"
        );
        assert_eq!(decode(u, -1.0, "noleap"), "1999-12-31T00:00:00Z");
        // The standard calendar skips 1582-10-05..14; julian does not.
        assert_eq!(
            decode("days since 1582-10-04", 1.0, "standard"),
            "1582-10-15T00:00:00Z"
        );
        assert_eq!(
            decode("days since 1582-10-04", 1.0, "julian"),
            "1582-10-05T00:00:00Z"
        );
        assert_eq!(
            decode("days since 1582-10-04", 1.0, "proleptic_gregorian"),
            "1582-10-05T00:00:00Z"
        );
        // julian 1900 is a leap year.
        assert_eq!(
            decode("days since 1900-02-28", 1.0, "julian"),
            "1900-02-28T00:00:00Z"
        );
        assert_eq!(
            decode("days since 1900-02-28", 2.0, "julian"),
            "1900-03-01T00:00:00Z"
        );
        assert_eq!(
            decode("hours since 1850-01-01T06:00:00Z", 30.0, "noleap"),
            "1850-01-02T12:00:00Z"
        );
        assert_eq!(
            decode("seconds since 1970-01-01", 86_399.0, "standard"),
            "1970-01-01T23:59:59Z"
        );
        // Time-zone offsets (CF's own example), and the ISO form.
        assert_eq!(
            decode("seconds since 1992-10-8 15:15:42.5 -6:00", 0.5, "standard"),
            "1992-10-08T21:15:43Z"
        );
        assert_eq!(
            decode("hours since 2000-01-01T12:00:00+02:00", 0.0, "standard"),
            "2000-01-01T10:00:00Z"
        );
        let units = Units::parse("days since 2000-01-01").unwrap();
        assert!(units.decode(1e300, Calendar::Standard).is_none());
    }

    #[test]
    fn round_trips_over_four_centuries() {
        for cal in [
            Calendar::Standard,
            Calendar::ProlepticGregorian,
            Calendar::NoLeap,
            Calendar::AllLeap,
            Calendar::Day360,
            Calendar::Julian,
        ] {
            let start = cal.day_number(Date {
                year: 1800,
                month: 1,
                day: 1,
            });
            for n in (start..start + 146_097).step_by(37) {
                assert_eq!(cal.day_number(cal.date(n)), n, "{cal:?} {n}");
            }
        }
        assert_eq!(Units::parse("K"), None);
        assert_eq!(Calendar::parse(Some("weird")), None);
    }
}
