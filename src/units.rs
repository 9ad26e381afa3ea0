//! Byte counts and dates for people: the CLI's summaries, the web page and the feed share one
//! format.

/// `bytes` in binary units with one decimal (`1.5 MiB`), or exact below 1 KiB (`512 B`).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `n` and the noun that goes with it: `1 file`, `2 files`, `0 files`.
pub fn count(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The civil date (year, month 1-12, day 1-31) and the seconds into that day of `secs` Unix
/// seconds, UTC (Howard Hinnant's `civil_from_days`).
fn civil(secs: i64) -> (i64, u32, u32, i64) {
    let days = secs.div_euclid(86_400);
    let rest = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, rest)
}

/// `secs` Unix seconds as RFC 3339 in UTC: `2026-11-30T19:47:39Z` (the API and the Atom feed).
pub fn rfc3339(secs: i64) -> String {
    let (y, m, d, rest) = civil(secs);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// `secs` Unix seconds as a date people read the same way everywhere: `30 Nov 2026` (UTC).
pub fn human_date(secs: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, m, d, _) = civil(secs);
    format!("{d} {} {y}", MONTHS[(m as usize - 1) % 12])
}

#[cfg(test)]
mod tests {
    use super::{count, human_date, human_size, rfc3339};

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_067_659), "2026-11-30T19:40:59Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(human_date(1_796_067_659), "30 Nov 2026");
        // 2100 is not a leap year.
        assert_eq!(human_date(4_107_542_400), "1 Mar 2100");
    }

    #[test]
    fn counts() {
        assert_eq!(count(1u64, "file", "files"), "1 file");
        assert_eq!(count(0u64, "file", "files"), "0 files");
        assert_eq!(count(2u32, "entry", "entries"), "2 entries");
    }

    #[test]
    fn units() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 << 30), "3.0 GiB");
        assert_eq!(human_size(u64::MAX), "16384.0 PiB");
    }
}
