//! UTC time arithmetic for budgets: milliseconds since the Unix epoch, and the window
//! (start, end) of a period containing an instant. Unix time has no leap seconds, so
//! minutes, hours and days are plain division; months use Howard Hinnant's civil-date
//! algorithms (days ⇄ year/month/day in the proleptic Gregorian calendar).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::limit::Period;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;

/// One budget window: `[start_ms, end_ms)` in milliseconds since the epoch, UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Window {
    pub start_ms: i64,
    pub end_ms: i64,
}

/// Milliseconds since the epoch; instants before 1970 count as the epoch.
pub(crate) fn epoch_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A duration of `ms` milliseconds, zero when negative.
pub(crate) fn millis(ms: i64) -> Duration {
    Duration::from_millis(ms.max(0) as u64)
}

/// The window of `period` that contains `now_ms`.
pub(crate) fn window(period: Period, now_ms: i64) -> Window {
    let fixed = |len: i64| {
        let start_ms = now_ms.div_euclid(len) * len;
        Window {
            start_ms,
            end_ms: start_ms + len,
        }
    };
    match period {
        Period::Minute => fixed(MINUTE_MS),
        Period::Hour => fixed(HOUR_MS),
        Period::Day => fixed(DAY_MS),
        Period::Month => {
            let (y, m, _) = civil_from_days(now_ms.div_euclid(DAY_MS));
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            Window {
                start_ms: days_from_civil(y, m, 1) * DAY_MS,
                end_ms: days_from_civil(ny, nm, 1) * DAY_MS,
            }
        }
    }
}

/// Days since 1970-01-01 of a civil date (month 1..=12, day 1..=31).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month 1..=12, day 1..=31) of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Milliseconds since the epoch of a UTC date and time.
    pub(crate) fn utc(y: i64, mo: u32, d: u32, h: i64, mi: i64, s: i64) -> i64 {
        days_from_civil(y, mo, d) * DAY_MS + h * HOUR_MS + mi * MINUTE_MS + s * 1_000
    }

    #[test]
    fn civil_dates_round_trip_over_four_centuries() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        for z in -200_000..200_000 {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z, "{y}-{m}-{d}");
        }
    }

    #[test]
    fn fixed_windows_align_to_utc_boundaries() {
        let t = utc(2025, 6, 15, 13, 45, 30) + 250;
        let w = window(Period::Minute, t);
        assert_eq!((w.start_ms, w.end_ms), (t - 30_250, t + 29_750));
        let w = window(Period::Hour, t);
        assert_eq!(w.start_ms, utc(2025, 6, 15, 13, 0, 0));
        assert_eq!(w.end_ms, utc(2025, 6, 15, 14, 0, 0));
        let w = window(Period::Day, t);
        assert_eq!(w.start_ms, utc(2025, 6, 15, 0, 0, 0));
        assert_eq!(w.end_ms, utc(2025, 6, 16, 0, 0, 0));
    }

    #[test]
    fn month_windows_follow_the_calendar() {
        let cases = [
            ((2024, 2, 29, 23, 59, 59), (2024, 2), (2024, 3)), // leap February
            ((2023, 2, 1, 0, 0, 0), (2023, 2), (2023, 3)),     // the first instant
            ((2025, 12, 31, 12, 0, 0), (2025, 12), (2026, 1)), // year rollover
            ((2100, 2, 28, 1, 0, 0), (2100, 2), (2100, 3)),    // not a leap year
        ];
        for ((y, mo, d, h, mi, s), (sy, sm), (ey, em)) in cases {
            let w = window(Period::Month, utc(y, mo, d, h, mi, s));
            assert_eq!(w.start_ms, utc(sy, sm, 1, 0, 0, 0), "{y}-{mo}-{d}");
            assert_eq!(w.end_ms, utc(ey, em, 1, 0, 0, 0), "{y}-{mo}-{d}");
        }
        let feb = window(Period::Month, utc(2024, 2, 10, 0, 0, 0));
        assert_eq!(feb.end_ms - feb.start_ms, 29 * DAY_MS);
    }

    #[test]
    fn the_last_millisecond_belongs_to_the_old_window() {
        let boundary = utc(2025, 1, 1, 0, 0, 0);
        for p in [Period::Minute, Period::Hour, Period::Day, Period::Month] {
            assert_eq!(window(p, boundary - 1).end_ms, boundary, "{p:?}");
            assert_eq!(window(p, boundary).start_ms, boundary, "{p:?}");
        }
    }

    #[test]
    fn instants_before_the_epoch_count_as_the_epoch() {
        assert_eq!(epoch_ms(UNIX_EPOCH - Duration::from_secs(5)), 0);
        assert_eq!(epoch_ms(UNIX_EPOCH + Duration::from_millis(1_234)), 1_234);
    }
}
