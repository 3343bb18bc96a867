//! The cron expressions of a job's maintenance windows
//! (`schedulingConfig.maintenanceWindows[].startTime`), as AWS writes them:
//! `cron(Minutes Hours Day-of-month Month Day-of-week Year)`, in UTC. Each
//! field takes `*`, numbers, ranges `a-b`, lists `a,b` and steps `x/n`;
//! months take `JAN`–`DEC` and days of the week `SUN`–`SAT` (1–7, Sunday
//! first); exactly one of day-of-month and day-of-week is `?`. AWS's `L`,
//! `W` and `#` are refused. Parsed by characters: the text is a client's.

use herald_runtime::calendar::{civil_from_days, days_from_civil};

/// A parsed expression: the allowed values of each field as bit sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cron {
    minutes: u64,
    hours: u32,
    /// Bits 1–31; `None` for `?`.
    days_of_month: Option<u32>,
    /// Bits 1–12.
    months: u16,
    /// Bits 1–7, 1 for Sunday; `None` for `?`.
    days_of_week: Option<u8>,
    /// Years 1970–2199, as offsets from 1970.
    years: Vec<bool>,
}

const FIRST_YEAR: i64 = 1970;
const LAST_YEAR: i64 = 2199;
const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// One field's allowed values in `min..=max`, or `None` for `?` (where
/// allowed), or why the field is not valid.
fn field(
    text: &str,
    min: i64,
    max: i64,
    names: &[&str],
    question: bool,
) -> Result<Option<Vec<i64>>, String> {
    if text == "?" {
        return if question {
            Ok(None)
        } else {
            Err("? is allowed only in day-of-month and day-of-week".into())
        };
    }
    let value = |v: &str| -> Result<i64, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(v)) {
            return Ok(min + i as i64);
        }
        if v.is_empty() || v.chars().count() > 4 || !v.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!("{v:?} is not a value"));
        }
        let n: i64 = v.parse().map_err(|_| format!("{v:?} is not a value"))?;
        if !(min..=max).contains(&n) {
            return Err(format!("{n} is outside {min}-{max}"));
        }
        Ok(n)
    };
    let mut values = Vec::new();
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step = value(step)
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("{step:?} is not a step"))?;
                (range, step)
            }
            None => (part, 1),
        };
        let (from, to) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let from = value(range)?;
            // `x/n` runs from x to the end.
            (from, if part.contains('/') { max } else { from })
        };
        if from > to {
            return Err(format!("the range {range:?} runs backwards"));
        }
        values.extend((from..=to).step_by(usize::try_from(step).unwrap_or(1)));
    }
    Ok(Some(values))
}

impl Cron {
    /// Parses `cron(...)`.
    pub(crate) fn parse(text: &str) -> Result<Cron, String> {
        let inner = text
            .strip_prefix("cron(")
            .and_then(|t| t.strip_suffix(')'))
            .ok_or("a maintenance window's startTime is cron(...)")?;
        let fields: Vec<&str> = inner.split(' ').filter(|f| !f.is_empty()).collect();
        let [minutes, hours, dom, months, dow, years] = fields[..] else {
            return Err(
                "cron(...) takes six fields: minutes hours day-of-month month day-of-week year"
                    .into(),
            );
        };
        for f in &fields {
            if f.contains(['L', 'W', '#']) && !MONTHS.iter().chain(&DAYS).any(|n| f.contains(n)) {
                return Err(format!("{f:?}: L, W and # are not supported by Herald"));
            }
        }
        let bits =
            |values: Option<Vec<i64>>| values.map(|v| v.iter().fold(0u64, |acc, n| acc | (1 << n)));
        let minutes = bits(field(minutes, 0, 59, &[], false)?).unwrap_or(0);
        let hours = bits(field(hours, 0, 23, &[], false)?).unwrap_or(0) as u32;
        let days_of_month = bits(field(dom, 1, 31, &[], true)?).map(|b| b as u32);
        let months = bits(field(months, 1, 12, &MONTHS, false)?).unwrap_or(0) as u16;
        let days_of_week = bits(field(dow, 1, 7, &DAYS, true)?).map(|b| b as u8);
        if days_of_month.is_some() == days_of_week.is_some() {
            return Err("exactly one of day-of-month and day-of-week must be ?".into());
        }
        let mut allowed_years = vec![false; (LAST_YEAR - FIRST_YEAR + 1) as usize];
        for y in field(years, FIRST_YEAR, LAST_YEAR, &[], false)?.unwrap_or_default() {
            allowed_years[(y - FIRST_YEAR) as usize] = true;
        }
        Ok(Cron {
            minutes,
            hours,
            days_of_month,
            months,
            days_of_week,
            years: allowed_years,
        })
    }

    fn day_matches(&self, days: i64) -> bool {
        let (year, month, day) = civil_from_days(days);
        let year_ok =
            (FIRST_YEAR..=LAST_YEAR).contains(&year) && self.years[(year - FIRST_YEAR) as usize];
        if !year_ok || self.months & (1 << month) == 0 {
            return false;
        }
        match (self.days_of_month, self.days_of_week) {
            (Some(dom), _) => dom & (1 << day) != 0,
            // 1970-01-01 was a Thursday (5, Sunday being 1).
            (None, Some(dow)) => dow & (1 << ((days + 4).rem_euclid(7) + 1)) != 0,
            (None, None) => false,
        }
    }

    /// The first minute at or after `at_ms` (epoch ms) the expression
    /// names, in epoch ms; `None` when there is none before 2200.
    pub(crate) fn next_at_or_after(&self, at_ms: i64) -> Option<i64> {
        const DAY_MS: i64 = 86_400_000;
        // Up to the next whole minute.
        let start = at_ms.checked_add(59_999)?.div_euclid(60_000) * 60_000;
        let first_day = start.div_euclid(DAY_MS);
        let last_day = days_from_civil(LAST_YEAR + 1, 1, 1);
        let mut day = first_day;
        while day < last_day {
            if self.day_matches(day) {
                let from = if day == first_day {
                    start - day * DAY_MS
                } else {
                    0
                };
                let first_minute = from / 60_000;
                for minute_of_day in first_minute..1440 {
                    let (h, m) = (minute_of_day / 60, minute_of_day % 60);
                    if self.hours & (1 << h) != 0 && self.minutes & (1 << m) != 0 {
                        return Some(day * DAY_MS + minute_of_day * 60_000);
                    }
                }
            }
            day += 1;
        }
        None
    }

    /// Whether `at_ms` falls in a window that starts at one of the
    /// expression's minutes and lasts `duration_ms`; `Some(end)` if so.
    pub(crate) fn window_at(&self, at_ms: i64, duration_ms: i64) -> Option<i64> {
        let start = self.next_at_or_after(at_ms.saturating_sub(duration_ms).saturating_add(1))?;
        (start <= at_ms).then_some(start + duration_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(year: i64, month: i64, day: i64, hour: i64, minute: i64) -> i64 {
        (days_from_civil(year, month, day) * 1440 + hour * 60 + minute) * 60_000
    }

    #[test]
    fn next_minutes() {
        // Every day at 02:30.
        let daily = Cron::parse("cron(30 2 * * ? *)").unwrap();
        assert_eq!(
            daily.next_at_or_after(at(2026, 12, 6, 1, 0)),
            Some(at(2026, 12, 6, 2, 30))
        );
        assert_eq!(
            daily.next_at_or_after(at(2026, 12, 6, 2, 30)),
            Some(at(2026, 12, 6, 2, 30))
        );
        assert_eq!(
            daily.next_at_or_after(at(2026, 12, 6, 2, 30) + 1),
            Some(at(2026, 12, 7, 2, 30))
        );
        // Mondays and Fridays (2026-12-07 is a Monday) at 22:00, 22:15, ...
        let weekly = Cron::parse("cron(0/15 22 ? * MON,FRI *)").unwrap();
        assert_eq!(
            weekly.next_at_or_after(at(2026, 12, 6, 23, 0)),
            Some(at(2026, 12, 7, 22, 0))
        );
        assert_eq!(
            weekly.next_at_or_after(at(2026, 12, 7, 22, 1)),
            Some(at(2026, 12, 7, 22, 15))
        );
        assert_eq!(
            weekly.next_at_or_after(at(2026, 12, 7, 22, 46)),
            Some(at(2026, 12, 11, 22, 0))
        );
        // The 29th of February, 2028 only.
        let leap = Cron::parse("cron(0 0 29 FEB ? 2028)").unwrap();
        assert_eq!(
            leap.next_at_or_after(at(2026, 1, 1, 0, 0)),
            Some(at(2028, 2, 29, 0, 0))
        );
        assert_eq!(leap.next_at_or_after(at(2028, 3, 1, 0, 0)), None);
        // Every minute of every day.
        let always = Cron::parse("cron(* * * * ? *)").unwrap();
        assert_eq!(always.next_at_or_after(5), Some(60_000));
    }

    #[test]
    fn windows() {
        let nightly = Cron::parse("cron(0 1 * * ? *)").unwrap();
        let hour = 3_600_000;
        assert_eq!(
            nightly.window_at(at(2026, 12, 6, 1, 30), 2 * hour),
            Some(at(2026, 12, 6, 3, 0))
        );
        assert_eq!(nightly.window_at(at(2026, 12, 6, 3, 0), 2 * hour), None);
        assert_eq!(nightly.window_at(at(2026, 12, 6, 0, 59), 2 * hour), None);
        assert_eq!(
            nightly.window_at(at(2026, 12, 6, 1, 0), 2 * hour),
            Some(at(2026, 12, 6, 3, 0))
        );
    }

    proptest::proptest! {
        /// Any text, and text made of cron's own characters: parsed or
        /// refused, never a panic; a parsed one finds its next minute.
        #[test]
        fn any_text(text in ".*", fields in "cron\\([0-9*?/,A-Z# -]{0,40}\\)") {
            let _ = Cron::parse(&text);
            if let Ok(cron) = Cron::parse(&fields) {
                let _ = cron.next_at_or_after(1_796_520_600_000);
            }
        }
    }

    #[test]
    fn refused() {
        for bad in [
            "",
            "0 1 * * ? *",
            "cron(0 1 * * ?)",
            "cron(0 1 * * * *)",
            "cron(0 1 ? * ? *)",
            "cron(60 1 * * ? *)",
            "cron(0 24 * * ? *)",
            "cron(0 1 32 * ? *)",
            "cron(0 1 L * ? *)",
            "cron(0 1 ? * 6#3 *)",
            "cron(0 1 15W * ? *)",
            "cron(0 1 * 13 ? *)",
            "cron(0 1 * * ? 2200)",
            "cron(5-1 1 * * ? *)",
            "cron(0/0 1 * * ? *)",
            "cron(é 1 * * ? *)",
            "cron(0 1 * * ? 99999999999999999999)",
            "cron(? 1 * * ? *)",
        ] {
            assert!(Cron::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Cron::parse("cron(0 1 ? jan-mar SUN-SAT 2027-2030)").is_ok());
    }
}
