//! Times in requests, to epoch seconds and back (proleptic Gregorian, UTC):
//! SigV4's `X-Amz-Date` (`yyyymmddTHHMMSSZ`) and the job schedule's
//! `startTime` and `endTime` (`yyyy-MM-ddTHH:mm`).

use std::time::{SystemTime, UNIX_EPOCH};

use herald_runtime::calendar::{civil_from_days, days_from_civil};

pub(crate) fn epoch_seconds(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

/// Now, in epoch milliseconds.
pub(crate) fn now_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

/// `yyyymmddTHHMMSSZ` to epoch seconds. Reads bytes only: the text comes
/// from the request and may hold anything (a multi-byte character where a
/// digit should be is simply not a date).
pub(crate) fn parse_amz_date(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let [
        y0,
        y1,
        y2,
        y3,
        mo0,
        mo1,
        d0,
        d1,
        b'T',
        h0,
        h1,
        mi0,
        mi1,
        s0,
        s1,
        b'Z',
    ] = *bytes
    else {
        return None;
    };
    let number = |digits: &[u8]| -> Option<i64> {
        digits.iter().try_fold(0i64, |acc, &b| {
            b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0'))
        })
    };
    let (year, month, day) = (
        number(&[y0, y1, y2, y3])?,
        number(&[mo0, mo1])?,
        number(&[d0, d1])?,
    );
    let (hour, minute, second) = (number(&[h0, h1])?, number(&[mi0, mi1])?, number(&[s0, s1])?);
    civil_seconds(year, month, day, hour, minute, second)
}

/// Epoch seconds of a valid date and time of day, else `None`.
fn civil_seconds(
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
) -> Option<i64> {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if day < 1 || day > month_days || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// A job schedule's time, `yyyy-MM-ddTHH:mm` in UTC as AWS IoT takes it
/// ("Job scheduling configuration"), to epoch seconds. Herald also takes
/// seconds (`yyyy-MM-ddTHH:mm:ss`) and a final `Z`. Reads characters: the
/// text may hold anything.
pub(crate) fn parse_schedule_time(text: &str) -> Option<i64> {
    let text = text.strip_suffix('Z').unwrap_or(text);
    let mut fields = [0i64; 6];
    let mut count = 0;
    let mut digits = 0;
    // Separators between the fields, in order.
    const SEPARATORS: [char; 5] = ['-', '-', 'T', ':', ':'];
    for c in text.chars() {
        if let Some(d) = c.to_digit(10) {
            if digits == 4 {
                return None;
            }
            let field = fields.get_mut(count)?;
            *field = *field * 10 + i64::from(d);
            digits += 1;
        } else if SEPARATORS.get(count) == Some(&c) {
            let wanted = if count == 0 { 4 } else { 2 };
            if digits != wanted {
                return None;
            }
            count += 1;
            digits = 0;
        } else {
            return None;
        }
    }
    // Minutes or seconds last, two digits.
    if !(count == 4 || count == 5) || digits != 2 {
        return None;
    }
    let [year, month, day, hour, minute, second] = fields;
    civil_seconds(year, month, day, hour, minute, second)
}

/// Epoch seconds to `yyyy-MM-ddTHH:mm`, with `:ss` when not 0.
pub(crate) fn format_schedule_time(epoch: i64) -> String {
    let (days, secs) = (epoch.div_euclid(86_400), epoch.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    let mut text = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60
    );
    if secs % 60 != 0 {
        text.push_str(&format!(":{:02}", secs % 60));
    }
    text
}

/// Epoch seconds to `yyyymmddTHHMMSSZ`.
pub(crate) fn format_amz_date(epoch: i64) -> String {
    let (days, secs) = (epoch.div_euclid(86_400), epoch.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::sigv4::testing::{DATE, at};

    #[test]
    fn parse_amz_date_takes_any_text() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20240517T093000Z"), Some(1_715_938_200));
        for text in [
            "",
            "é",
            "201é517T093000Z",
            "2024é517T093000Z",
            "20240517T0930é0Z",
            "20240517T093000é",
            "2024051éT093000Z",
            "\u{10FFFF}0240517T09300Z",
            "20240517t093000z",
            "+2024051T093000Z",
            "2024-5-1T093000Z",
            "20241317T093000Z",
            "20240230T093000Z",
            "20240517T246000Z",
        ] {
            assert_eq!(parse_amz_date(text), None, "{text:?}");
        }
        // Every character in every position of a valid date.
        let valid: Vec<char> = "20240517T093000Z".chars().collect();
        for at in 0..valid.len() {
            for c in ['é', '\u{FFFD}', '\u{10FFFF}', '\0', ' ', '9'] {
                let mut text = valid.clone();
                text[at] = c;
                let text: String = text.into_iter().collect();
                let _ = parse_amz_date(&text);
            }
        }
    }

    #[test]
    fn schedule_times() {
        assert_eq!(parse_schedule_time("1970-01-01T00:00"), Some(0));
        assert_eq!(parse_schedule_time("2024-05-17T09:30"), Some(1_715_938_200));
        assert_eq!(
            parse_schedule_time("2024-05-17T09:30:05Z"),
            Some(1_715_938_205)
        );
        for text in [
            "",
            "2024-05-17",
            "2024-05-17T09",
            "2024-05-17T9:30",
            "2024-5-17T09:30",
            "2024-05-17 09:30",
            "2024-05-17T09:30:",
            "2024-05-17T09:30:05:01",
            "2024-02-30T09:30",
            "2024-05-17T24:00",
            "2024-05-17T09:3é",
            "é024-05-17T09:30",
            "٢٠٢٤-05-17T09:30",
            "2024-05-17T09:3000000000000000000000000",
            "99999999999999999999999",
        ] {
            assert_eq!(parse_schedule_time(text), None, "{text:?}");
        }
        for text in [
            "2024-05-17T09:30",
            "2000-02-29T23:59:59",
            "2100-12-31T00:00",
        ] {
            assert_eq!(
                format_schedule_time(parse_schedule_time(text).unwrap()),
                text
            );
        }
    }

    proptest::proptest! {
        /// Any text: a time or `None`, never a panic; and every time in
        /// the years 1970 to 9999 is read back from what is written.
        #[test]
        fn schedule_times_take_any_text(text in ".*", epoch in 0i64..253_402_300_800) {
            let _ = parse_schedule_time(&text);
            let written = format_schedule_time(epoch);
            proptest::prop_assert_eq!(parse_schedule_time(&written), Some(epoch));
        }
    }

    #[test]
    fn dates_round_trip() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(1_440_938_160));
        assert_eq!(parse_amz_date("20240229T235959Z"), Some(1_709_251_199));
        assert_eq!(parse_amz_date("20230229T000000Z"), None);
        assert_eq!(parse_amz_date("20240517T243000Z"), None);
        assert_eq!(parse_amz_date("20240517T093000"), None);
        for date in [
            "20150830T123600Z",
            DATE,
            "20000229T120000Z",
            "21001231T235959Z",
        ] {
            assert_eq!(format_amz_date(parse_amz_date(date).unwrap()), date);
        }
        assert_eq!(epoch_seconds(at(DATE, 0)), parse_amz_date(DATE).unwrap());
    }
}
