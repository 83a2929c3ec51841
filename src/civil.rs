//! Calendar arithmetic: a Unix time as UTC calendar fields, for the timestamps the
//! payments feed and the simulators render (no clock is read here).

/// UTC calendar fields of a Unix time: (year, month, day, hour, minute, second), by
/// Howard Hinnant's days-to-civil algorithm (`civil_from_days`).
pub(crate) fn utc(unix: u64) -> (i64, i64, i64, u64, u64, u64) {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, secs / 3600, secs % 3600 / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn epoch_leap_day_and_end_of_year() {
        assert_eq!(super::utc(0), (1970, 1, 1, 0, 0, 0));
        // 2024-02-29T12:34:56Z
        assert_eq!(super::utc(1_709_210_096), (2024, 2, 29, 12, 34, 56));
        // 1999-12-31T23:59:59Z
        assert_eq!(super::utc(946_684_799), (1999, 12, 31, 23, 59, 59));
    }
}
