//! HTTP byte ranges and validators for `/files` (RFC 9110 sections 13 and 14), with no I/O:
//! which part of a file a request gets, and whether its cached copy is still good.

/// What a `Range` header asks of a file of some length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranged {
    /// No usable range (absent, another unit, several ranges, bad syntax): the whole file.
    Whole,
    /// The half-open byte range `start..end`, within the file.
    Part(u64, u64),
    /// A range the file cannot satisfy (starts at or past its end, or a suffix of 0 bytes):
    /// answered 416 with `Content-Range: bytes */LEN`.
    Unsatisfiable,
}

/// One `bytes=a-b`, `bytes=a-` or `bytes=-n` range of a file of `len` bytes. Several ranges
/// are answered with the whole file, which RFC 9110 allows.
pub fn parse_range(value: &str, len: u64) -> Ranged {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ranged::Whole;
    };
    if spec.contains(',') {
        return Ranged::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ranged::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    let number = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        // Too many digits for a u64 is still a valid, huge number.
        Some(s.parse().unwrap_or(u64::MAX))
    };
    match (a.is_empty(), b.is_empty()) {
        (true, true) => Ranged::Whole,
        (true, false) => match number(b) {
            None => Ranged::Whole,
            Some(0) => Ranged::Unsatisfiable,
            Some(_) if len == 0 => Ranged::Unsatisfiable,
            Some(n) => Ranged::Part(len - n.min(len), len),
        },
        (false, _) => {
            let Some(start) = number(a) else {
                return Ranged::Whole;
            };
            let last = if b.is_empty() {
                u64::MAX
            } else {
                match number(b) {
                    Some(last) if last >= start => last,
                    _ => return Ranged::Whole,
                }
            };
            if start >= len {
                Ranged::Unsatisfiable
            } else {
                Ranged::Part(start, last.saturating_add(1).min(len))
            }
        }
    }
}

/// `If-None-Match`: does any listed tag (weak comparison, so `W/"x"` matches `"x"`) or `*`
/// match `etag`?
pub fn none_match(value: &str, etag: &str) -> bool {
    let ours = etag.trim_start_matches("W/");
    value
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/") == ours)
}

/// `If-Range`: the range counts only if the validator is this version's strong ETag or its exact
/// `Last-Modified` date.
pub fn if_range_holds(value: &str, etag: &str, last_modified: Option<&str>) -> bool {
    let value = value.trim();
    if value.starts_with("W/") {
        return false;
    }
    value == etag || Some(value) == last_modified
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use Ranged::*;
        let cases = [
            ("bytes=0-9", Part(0, 10)),
            ("bytes=90-", Part(90, 100)),
            ("bytes=-10", Part(90, 100)),
            ("bytes=-1000", Part(0, 100)),
            ("bytes=95-200", Part(95, 100)),
            ("bytes=99-99", Part(99, 100)),
            ("bytes=0-99999999999999999999999", Part(0, 100)),
            ("bytes=100-", Unsatisfiable),
            ("bytes=100-200", Unsatisfiable),
            ("bytes=-0", Unsatisfiable),
            ("bytes=99999999999999999999999-", Unsatisfiable),
            ("bytes=0-1,5-6", Whole),
            ("items=0-1", Whole),
            ("bytes=5-1", Whole),
            ("bytes=x-1", Whole),
            ("bytes=-", Whole),
            ("bytes=+1-2", Whole),
            ("bytes=1", Whole),
        ];
        for (v, want) in cases {
            assert_eq!(parse_range(v, 100), want, "{v}");
        }
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=-5", 0), Unsatisfiable);
    }

    #[test]
    fn validators() {
        let etag = "\"abc-0\"";
        assert!(none_match("\"abc-0\"", etag));
        assert!(none_match("W/\"abc-0\"", etag));
        assert!(none_match("\"x\", W/\"abc-0\"", etag));
        assert!(none_match("*", etag));
        assert!(!none_match("\"abc-1\"", etag));
        assert!(if_range_holds("\"abc-0\"", etag, None));
        assert!(!if_range_holds("W/\"abc-0\"", etag, None));
        let date = "Mon, 30 Nov 2026 10:00:00 GMT";
        assert!(if_range_holds(date, etag, Some(date)));
        assert!(!if_range_holds(date, etag, None));
    }
}
