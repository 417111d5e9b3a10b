//! Cron schedules as upstream's CronJob controller reads them (robfig/cron's standard
//! parser): five fields (minute, hour, day of month, month, day of week) with lists,
//! ranges, steps and month/day names, or a descriptor (@yearly, @monthly, @weekly,
//! @daily, @hourly, @every DURATION). Times are wall-clock times in a time zone: a time
//! that does not exist (spring forward) is skipped, and one that exists twice (fall
//! back) runs twice, as robfig/cron does.

use std::time::Duration;

use k8s_openapi::jiff::civil::{Date, DateTime};
use k8s_openapi::jiff::tz::{AmbiguousOffset, TimeZone};
use k8s_openapi::jiff::{Timestamp, ToSpan};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    Fields(Fields),
    /// `@every 1h30m`: a constant interval from the previous run.
    Every(Duration),
}

/// One bit per allowed value of each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields {
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    months: u64,
    days_of_week: u64,
    /// The day-of-month / day-of-week field was `*` or `?`: then both day fields must
    /// match; when both are restricted, either may (classic cron).
    dom_star: bool,
    dow_star: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// How far ahead to look for a matching day: long enough for Feb 29 (eight years
/// between leap days around 2100), short enough to give up on "31 2" (Feb 31).
const SEARCH_DAYS: i32 = 366 * 9;

impl Schedule {
    pub fn parse(spec: &str) -> Result<Schedule, String> {
        let spec = spec.trim();
        if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
            return Err(
                "CRON_TZ or TZ used in schedule is not supported, please use timeZone instead"
                    .into(),
            );
        }
        if let Some(d) = spec.strip_prefix('@') {
            let fields = match d {
                "yearly" | "annually" => "0 0 1 1 *",
                "monthly" => "0 0 1 * *",
                "weekly" => "0 0 * * 0",
                "daily" | "midnight" => "0 0 * * *",
                "hourly" => "0 * * * *",
                _ => {
                    let every = d
                        .strip_prefix("every ")
                        .ok_or_else(|| format!("unrecognized descriptor: {spec}"))?;
                    let every = parse_duration(every.trim())?;
                    return Ok(Schedule::Every(every.max(Duration::from_secs(1))));
                }
            };
            return Schedule::parse(fields);
        }
        let parts: Vec<&str> = spec.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(format!(
                "expected exactly 5 fields, found {}: {spec}",
                parts.len()
            ));
        }
        let (minutes, _) = field(parts[0], 0, 59, &[])?;
        let (hours, _) = field(parts[1], 0, 23, &[])?;
        let (days_of_month, dom_star) = field(parts[2], 1, 31, &[])?;
        let (months, _) = field(parts[3], 1, 12, &MONTHS)?;
        let (days_of_week, dow_star) = field(parts[4], 0, 6, &DAYS)?;
        Ok(Schedule::Fields(Fields {
            minutes,
            hours,
            days_of_month,
            months,
            days_of_week,
            dom_star,
            dow_star,
        }))
    }

    /// The first scheduled time strictly after `after`, in `tz`; `None` when the
    /// schedule never fires (e.g. "0 0 30 2 *").
    pub fn next(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        match self {
            Schedule::Every(d) => {
                let secs = i64::try_from(d.as_secs()).ok()?;
                Timestamp::from_second(after.as_second().checked_add(secs)?).ok()
            }
            Schedule::Fields(f) => {
                let start = tz.to_datetime(after).date();
                (0..SEARCH_DAYS).find_map(|i| {
                    let day = start.checked_add(i.days()).ok()?;
                    f.times_on(day, tz).into_iter().filter(|t| *t > after).min()
                })
            }
        }
    }

    /// The last scheduled time at or before `at`, looking no further back than
    /// `not_before` (exclusive).
    pub fn previous(
        &self,
        at: Timestamp,
        not_before: Timestamp,
        tz: &TimeZone,
    ) -> Option<Timestamp> {
        match self {
            Schedule::Every(_) => {
                // A constant interval counts from `not_before` (the last run).
                let mut t = self.next(not_before, tz)?;
                if t > at {
                    return None;
                }
                let step = self.next(t, tz)?.as_second() - t.as_second();
                let skip = (at.as_second() - t.as_second()) / step;
                t = Timestamp::from_second(t.as_second() + skip * step).ok()?;
                Some(t)
            }
            Schedule::Fields(f) => {
                let start = tz.to_datetime(at).date();
                let stop = tz.to_datetime(not_before).date();
                for i in 0..SEARCH_DAYS {
                    let day = start.checked_sub(i.days()).ok()?;
                    if day < stop {
                        return None;
                    }
                    let found = f
                        .times_on(day, tz)
                        .into_iter()
                        .filter(|t| *t <= at && *t > not_before)
                        .max();
                    if found.is_some() {
                        return found;
                    }
                }
                None
            }
        }
    }
}

impl Fields {
    fn day_matches(&self, day: Date) -> bool {
        let dom = bit(self.days_of_month, i64::from(day.day()));
        let dow = bit(
            self.days_of_week,
            i64::from(day.weekday().to_sunday_zero_offset()),
        );
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// Every instant on `day` (a civil date in `tz`) the schedule fires at.
    fn times_on(&self, day: Date, tz: &TimeZone) -> Vec<Timestamp> {
        if !bit(self.months, i64::from(day.month())) || !self.day_matches(day) {
            return Vec::new();
        }
        let mut times = Vec::new();
        for h in (0..24).filter(|h| bit(self.hours, *h)) {
            for m in (0..60).filter(|m| bit(self.minutes, *m)) {
                let (Ok(h), Ok(m)) = (i8::try_from(h), i8::try_from(m)) else {
                    continue;
                };
                let dt = DateTime::from_parts(day, k8s_openapi::jiff::civil::time(h, m, 0, 0));
                let offsets = match tz.to_ambiguous_timestamp(dt).offset() {
                    AmbiguousOffset::Unambiguous { offset } => vec![offset],
                    AmbiguousOffset::Gap { .. } => vec![],
                    AmbiguousOffset::Fold { before, after } => vec![before, after],
                };
                times.extend(offsets.into_iter().filter_map(|o| o.to_timestamp(dt).ok()));
            }
        }
        times
    }
}

fn bit(mask: u64, i: i64) -> bool {
    (0..64).contains(&i) && mask & (1 << i) != 0
}

/// One cron field: a comma list of `*`, `?`, `N`, `N-M`, each with an optional `/STEP`.
/// Returns the bits and whether the field was an unrestricted star.
fn field(s: &str, min: u32, max: u32, names: &[&str]) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let mut star = false;
    for part in s.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, st)) => (
                r,
                Some(
                    st.parse::<u32>()
                        .map_err(|_| format!("failed to parse int from {st}"))?,
                ),
            ),
            None => (part, None),
        };
        let (lo, hi) = if range == "*" || range == "?" {
            star = step.is_none_or(|s| s <= 1);
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, names, min)?, value(b, names, min)?)
        } else {
            let v = value(range, names, min)?;
            // "N/STEP" means "N-max/STEP".
            (v, if step.is_some() { max } else { v })
        };
        if lo < min || hi > max {
            return Err(format!("end of range ({hi}) above maximum ({max}) or beginning ({lo}) below minimum ({min}): {part}"));
        }
        if lo > hi {
            return Err(format!(
                "beginning of range ({lo}) beyond end of range ({hi}): {part}"
            ));
        }
        let step = step.unwrap_or(1);
        if step == 0 {
            return Err(format!("step of range should be a positive number: {part}"));
        }
        for v in (lo..=hi).step_by(step as usize) {
            bits |= 1 << v;
        }
    }
    Ok((bits, star))
}

/// A number, or a name (`jan`, `mon`, any case) whose position counts from `min`.
fn value(s: &str, names: &[&str], min: u32) -> Result<u32, String> {
    if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
        return Ok(u32::try_from(i).unwrap_or(0) + min);
    }
    s.parse::<u32>()
        .map_err(|_| format!("failed to parse int from {s}"))
}

/// A Go duration as `@every` takes it: "1h30m", "90s", "1.5h".
fn parse_duration(s: &str) -> Result<Duration, String> {
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("invalid duration {s}"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return Err(format!("invalid duration {s}")),
        };
        rest = &rest[unit_len..];
        total += n * unit;
    }
    Ok(Duration::from_secs_f64(total))
}

/// A time zone by its IANA name, read from the system's tz database (the tzdata
/// package's /usr/share/zoneinfo). No name means UTC.
pub fn time_zone(name: Option<&str>) -> Result<TimeZone, String> {
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        return Ok(TimeZone::UTC);
    };
    let valid = name
        .split('/')
        .all(|p| !p.is_empty() && p != "." && p != "..")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_-+".contains(c));
    if !valid {
        return Err(format!("unknown time zone {name}"));
    }
    let path = std::path::Path::new("/usr/share/zoneinfo").join(name);
    let data = std::fs::read(&path).map_err(|_| format!("unknown time zone {name}"))?;
    TimeZone::tzif(name, &data).map_err(|e| format!("unknown time zone {name}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn schedules_parse_like_robfig_cron() {
        let cases = [
            ("every minute", "* * * * *", true),
            ("lists ranges steps", "0,30 9-17/2 1-15 */3 1-5", true),
            ("names", "0 12 * JAN-mar mon,WED,fri", true),
            ("question mark", "0 0 ? * *", true),
            ("descriptor", "@weekly", true),
            ("every", "@every 1h30m", true),
            ("four fields", "* * * *", false),
            ("six fields", "0 * * * * *", false),
            ("minute out of range", "60 * * * *", false),
            ("day seven", "0 0 * * 7", false),
            ("backwards range", "0 5-2 * * *", false),
            ("zero step", "*/0 * * * *", false),
            ("unknown name", "0 0 * foo *", false),
            ("unknown descriptor", "@fortnightly", false),
            ("TZ prefix", "TZ=UTC * * * * *", false),
            ("CRON_TZ prefix", "CRON_TZ=UTC * * * * *", false),
        ];
        for (name, spec, ok) in cases {
            assert_eq!(
                Schedule::parse(spec).is_ok(),
                ok,
                "{name}: {spec} -> {:?}",
                Schedule::parse(spec)
            );
        }
    }

    #[test]
    fn next_times_in_utc() {
        let cases = [
            (
                "every minute",
                "* * * * *",
                "2024-01-01T10:00:30Z",
                "2024-01-01T10:01:00Z",
            ),
            (
                "strictly after",
                "* * * * *",
                "2024-01-01T10:00:00Z",
                "2024-01-01T10:01:00Z",
            ),
            (
                "step",
                "*/15 * * * *",
                "2024-01-01T10:16:00Z",
                "2024-01-01T10:30:00Z",
            ),
            (
                "N/step means N-max",
                "5/20 * * * *",
                "2024-01-01T10:26:00Z",
                "2024-01-01T10:45:00Z",
            ),
            (
                "hourly",
                "@hourly",
                "2024-01-01T10:00:00Z",
                "2024-01-01T11:00:00Z",
            ),
            (
                "daily over month end",
                "@daily",
                "2024-01-31T12:00:00Z",
                "2024-02-01T00:00:00Z",
            ),
            (
                "monthly",
                "@monthly",
                "2024-01-15T00:00:00Z",
                "2024-02-01T00:00:00Z",
            ),
            (
                "yearly",
                "@yearly",
                "2024-06-01T00:00:00Z",
                "2025-01-01T00:00:00Z",
            ),
            (
                "weekly is Sunday",
                "@weekly",
                "2024-01-01T00:00:00Z",
                "2024-01-07T00:00:00Z",
            ),
            (
                "weekday names",
                "30 9 * * mon-fri",
                "2024-01-05T10:00:00Z",
                "2024-01-08T09:30:00Z",
            ),
            (
                "dom or dow when both restricted",
                "0 0 13 * fri",
                "2024-01-01T00:00:00Z",
                "2024-01-05T00:00:00Z",
            ),
            (
                "dom and dow when one is a star",
                "0 0 13 * *",
                "2024-01-01T00:00:00Z",
                "2024-01-13T00:00:00Z",
            ),
            (
                "Feb 29 from a leap year",
                "0 0 29 2 *",
                "2024-03-01T00:00:00Z",
                "2028-02-29T00:00:00Z",
            ),
            (
                "Feb 29 on the day",
                "0 0 29 2 *",
                "2024-02-28T23:00:00Z",
                "2024-02-29T00:00:00Z",
            ),
            (
                "Feb 29 skips 2100",
                "0 0 29 2 *",
                "2097-01-01T00:00:00Z",
                "2104-02-29T00:00:00Z",
            ),
            (
                "every 90 minutes",
                "@every 1h30m",
                "2024-01-01T10:00:00Z",
                "2024-01-01T11:30:00Z",
            ),
        ];
        for (name, spec, after, want) in cases {
            let s = Schedule::parse(spec).unwrap();
            assert_eq!(s.next(ts(after), &TimeZone::UTC), Some(ts(want)), "{name}");
        }
    }

    #[test]
    fn impossible_dates_never_fire() {
        let s = Schedule::parse("0 0 30 2 *").unwrap();
        assert_eq!(s.next(ts("2024-01-01T00:00:00Z"), &TimeZone::UTC), None);
    }

    #[test]
    fn next_times_across_daylight_saving_transitions() {
        let ny = time_zone(Some("America/New_York")).expect("tzdata installed");
        let cases = [
            // 2012-03-11: 02:00 EST jumps to 03:00 EDT.
            (
                "hourly skips the missing hour",
                "0 * * * *",
                "2012-03-11T01:00:00-05:00",
                "2012-03-11T03:00:00-04:00",
            ),
            (
                "a time in the gap is skipped that day",
                "0 2 * * *",
                "2012-03-11T00:00:00-05:00",
                "2012-03-12T02:00:00-04:00",
            ),
            (
                "a yearly time in the gap waits a year",
                "30 2 11 3 *",
                "2012-03-11T00:00:00-05:00",
                "2013-03-11T02:30:00-04:00",
            ),
            // 2012-11-04: 02:00 EDT falls back to 01:00 EST.
            (
                "hourly runs the repeated hour twice",
                "0 * * * *",
                "2012-11-04T01:00:00-04:00",
                "2012-11-04T01:00:00-05:00",
            ),
            (
                "then continues",
                "0 * * * *",
                "2012-11-04T01:00:00-05:00",
                "2012-11-04T02:00:00-05:00",
            ),
            (
                "nightly at 1 runs first in EDT",
                "0 1 * * *",
                "2012-11-03T23:59:00-04:00",
                "2012-11-04T01:00:00-04:00",
            ),
            (
                "and again in EST",
                "0 1 * * *",
                "2012-11-04T01:00:00-04:00",
                "2012-11-04T01:00:00-05:00",
            ),
            (
                "1:30 after 1:45 EDT is 1:30 EST",
                "30 1 4 11 *",
                "2012-11-04T01:45:00-04:00",
                "2012-11-04T01:30:00-05:00",
            ),
        ];
        for (name, spec, after, want) in cases {
            let s = Schedule::parse(spec).unwrap();
            assert_eq!(s.next(ts(after), &ny), Some(ts(want)), "{name}");
        }
    }

    #[test]
    fn a_time_zone_shifts_the_schedule() {
        let berlin = time_zone(Some("Europe/Berlin")).unwrap();
        let s = Schedule::parse("0 9 * * *").unwrap();
        assert_eq!(
            s.next(ts("2024-07-01T00:00:00Z"), &berlin),
            Some(ts("2024-07-01T07:00:00Z")),
            "summer, UTC+2"
        );
        assert_eq!(
            s.next(ts("2024-12-01T00:00:00Z"), &berlin),
            Some(ts("2024-12-01T08:00:00Z")),
            "winter, UTC+1"
        );
    }

    #[test]
    fn unknown_or_hostile_time_zones_are_rejected() {
        for name in [
            "Mars/Olympus",
            "../etc/passwd",
            "/etc/passwd",
            "Europe/../../x",
        ] {
            assert!(time_zone(Some(name)).is_err(), "{name}");
        }
        assert_eq!(time_zone(None).unwrap(), TimeZone::UTC);
    }

    #[test]
    fn previous_finds_the_most_recent_time() {
        let cases = [
            (
                "every minute",
                "* * * * *",
                "2024-01-01T10:05:30Z",
                "2024-01-01T00:00:00Z",
                Some("2024-01-01T10:05:00Z"),
            ),
            (
                "at the time itself",
                "*/5 * * * *",
                "2024-01-01T10:05:00Z",
                "2024-01-01T00:00:00Z",
                Some("2024-01-01T10:05:00Z"),
            ),
            (
                "days back",
                "0 0 * * mon",
                "2024-01-10T12:00:00Z",
                "2023-12-01T00:00:00Z",
                Some("2024-01-08T00:00:00Z"),
            ),
            (
                "nothing after not_before",
                "0 0 * * *",
                "2024-01-10T12:00:00Z",
                "2024-01-10T00:00:00Z",
                None,
            ),
            (
                "every",
                "@every 10m",
                "2024-01-01T10:35:00Z",
                "2024-01-01T10:00:00Z",
                Some("2024-01-01T10:30:00Z"),
            ),
        ];
        for (name, spec, at, not_before, want) in cases {
            let s = Schedule::parse(spec).unwrap();
            assert_eq!(
                s.previous(ts(at), ts(not_before), &TimeZone::UTC),
                want.map(ts),
                "{name}"
            );
        }
    }
}
