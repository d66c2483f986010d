//! Instants: the one place that converts them. The engine keeps every instant as
//! microseconds since the Unix epoch, UTC; this module checks that range and converts to and
//! from the driver's `SystemTime` and calendar fields (which the bindings turn into Python
//! `datetime`s and back).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

/// The instants the store accepts: years 1 to 9999, UTC, in microseconds since the Unix
/// epoch (the range most languages' date types share).
pub const MIN_MICROS: i64 = -62_135_596_800_000_000;
pub const MAX_MICROS: i64 = 253_402_300_799_999_999;

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// `micros` if it lies in years 1 to 9999; otherwise an error naming `what`.
pub fn check(what: &str, micros: i64) -> Result<i64> {
    if (MIN_MICROS..=MAX_MICROS).contains(&micros) {
        Ok(micros)
    } else {
        Err(Error::invalid(format!(
            "{what} must lie between the years 1 and 9999"
        )))
    }
}

/// Microseconds since the Unix epoch, now.
pub fn now() -> i64 {
    from_system_time(SystemTime::now())
}

pub fn to_system_time(micros: i64) -> SystemTime {
    let d = Duration::from_micros(micros.unsigned_abs());
    if micros >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    }
}

pub fn from_system_time(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

/// An instant as calendar fields (proleptic Gregorian).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Civil {
    pub year: i32,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub microsecond: u32,
}

/// The calendar fields of `micros`, in UTC.
#[allow(clippy::cast_possible_truncation)]
pub fn to_civil(micros: i64) -> Civil {
    let (days, rest) = (
        micros.div_euclid(MICROS_PER_DAY),
        micros.rem_euclid(MICROS_PER_DAY),
    );
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = yoe + era * 400 + i64::from(month <= 2);
    let secs = rest / 1_000_000;
    Civil {
        year: year as i32,
        month,
        day,
        hour: (secs / 3600) as u8,
        minute: (secs / 60 % 60) as u8,
        second: (secs % 60) as u8,
        microsecond: (rest % 1_000_000) as u32,
    }
}

/// Microseconds since the Unix epoch of calendar fields in UTC. Saturates rather than
/// overflows, so an absurd input fails [`check`] instead of wrapping into range.
pub fn from_civil(c: &Civil) -> i64 {
    let year = i64::from(c.year) - i64::from(c.month <= 2);
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let m = i64::from(c.month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(c.day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = i64::from(c.hour) * 3600 + i64::from(c.minute) * 60 + i64::from(c.second);
    days.saturating_mul(MICROS_PER_DAY)
        .saturating_add(seconds * 1_000_000 + i64::from(c.microsecond))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_fields_round_trip_over_the_whole_range() {
        for micros in [
            MIN_MICROS,
            MAX_MICROS,
            0,
            -1,
            951_782_400_000_000, // 2000-02-29
            1_767_225_600_123_456,
        ] {
            assert_eq!(from_civil(&to_civil(micros)), micros, "{micros}");
        }
        let c = to_civil(951_782_400_000_001);
        assert_eq!((c.year, c.month, c.day, c.microsecond), (2000, 2, 29, 1));
        assert_eq!(to_civil(MIN_MICROS).year, 1);
        assert_eq!(to_civil(MAX_MICROS).year, 9999);
    }

    #[test]
    fn system_time_round_trips() {
        for micros in [MIN_MICROS, -1, 0, 1, MAX_MICROS] {
            assert_eq!(from_system_time(to_system_time(micros)), micros);
        }
    }

    #[test]
    fn out_of_range_is_rejected() {
        assert!(check("t", MIN_MICROS - 1).is_err());
        assert!(check("t", MAX_MICROS + 1).is_err());
        assert!(check("t", 0).is_ok());
    }
}
