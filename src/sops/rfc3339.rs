//! `lastmodified` as sops reads it: Go's `time.Parse(time.RFC3339, s)` then
//! `Format(time.RFC3339)`, whose result is the additional data of the encrypted MAC. So every
//! form Go accepts and re-formats to the string sops encrypted with is accepted (fractional
//! seconds, with `.` or `,`, are dropped; `+00:00` and `-00:00` become `Z`), and every form Go
//! refuses is refused. Pure.

/// Parse `s` as Go's `time.Parse(time.RFC3339, s)` does and return `Format(time.RFC3339)` of the
/// result, or `None` where Go returns an error. Go tries a strict RFC 3339 fast path, then its
/// general layout parser, which accepts a superset: a one-digit hour (`T2:27:29Z`), `,` before
/// fractional seconds, zone offsets up to `24:60`. That superset is implemented here.
#[must_use]
pub fn go_reformat(s: &str) -> Option<String> {
    let mut c = Cursor(s.as_bytes());
    let year = c.digits(4)?;
    c.lit(b'-')?;
    let month = c.digits(2)?;
    c.lit(b'-')?;
    let day = c.digits(2)?;
    c.lit(b'T')?;
    // Layout `15` (stdHour): one or two digits.
    let hour = if c.0.get(1).is_some_and(u8::is_ascii_digit) { c.digits(2)? } else { c.digits(1)? };
    c.lit(b':')?;
    let min = c.digits(2)?;
    c.lit(b':')?;
    let sec = c.digits(2)?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in(month, year) || hour > 23 || min > 59 || sec > 59 {
        return None;
    }
    if c.0.len() >= 2 && matches!(c.0[0], b'.' | b',') && c.0[1].is_ascii_digit() {
        let n = 1 + c.0[1..].iter().take_while(|d| d.is_ascii_digit()).count();
        c.0 = &c.0[n..];
    }
    let offset = match c.0 {
        [b'Z'] => None,
        [sign @ (b'+' | b'-'), ..] => {
            let sign = char::from(*sign);
            c.0 = &c.0[1..];
            let h = c.digits(2)?;
            c.lit(b':')?;
            let m = c.digits(2)?;
            // The general parser allows 24 hours and 60 minutes ("some people do write offsets
            // of 24 hours or 60 minutes").
            if !c.0.is_empty() || h > 24 || m > 60 {
                return None;
            }
            let minutes = h * 60 + m;
            (minutes != 0).then(|| format!("{sign}{:02}:{:02}", minutes / 60, minutes % 60))
        }
        _ => return None,
    };
    Some(format!("{year:04}-{month:02}-{day:02}T{hour:02}:{min:02}:{sec:02}{}", offset.as_deref().unwrap_or("Z")))
}

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn digits(&mut self, n: usize) -> Option<u32> {
        let d = self.0.get(..n).filter(|d| d.iter().all(u8::is_ascii_digit))?;
        self.0 = &self.0[n..];
        Some(d.iter().fold(0, |acc, c| acc * 10 + u32::from(c - b'0')))
    }

    fn lit(&mut self, b: u8) -> Option<()> {
        let (&first, rest) = self.0.split_first()?;
        (first == b).then(|| self.0 = rest)
    }
}

fn days_in(month: u32, year: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::go_reformat;

    #[test]
    fn forms_go_accepts_and_how_it_reformats_them() {
        for (input, formatted) in [
            ("2026-11-29T12:27:29Z", "2026-11-29T12:27:29Z"),
            ("2026-11-29T12:27:29.5Z", "2026-11-29T12:27:29Z"),
            ("2026-11-29T12:27:29,123456789123Z", "2026-11-29T12:27:29Z"),
            ("2026-11-29T12:27:29+00:00", "2026-11-29T12:27:29Z"),
            ("2026-11-29T12:27:29-00:00", "2026-11-29T12:27:29Z"),
            ("2026-11-29T13:27:29+01:00", "2026-11-29T13:27:29+01:00"),
            ("2026-11-29T12:27:29+24:00", "2026-11-29T12:27:29+24:00"),
            ("2026-11-29T12:27:29+00:60", "2026-11-29T12:27:29+01:00"),
            ("2024-02-29T00:00:00Z", "2024-02-29T00:00:00Z"),
            ("2026-11-29T2:27:29Z", "2026-11-29T02:27:29Z"),
        ] {
            assert_eq!(go_reformat(input).as_deref(), Some(formatted), "{input}");
        }
    }

    #[test]
    fn forms_go_refuses() {
        for input in [
            "",
            "2026-11-29",
            "2026-11-29T12:27Z",
            "2026-11-29t12:27:29Z",
            "2026-11-29T12:27:29z",
            "2026-11-29 12:27:29Z",
            "2026-11-29T12:27:29",
            "2026-11-29T12:27:29.Z",
            "2026-11-29T12:27:29+0100",
            "2026-11-29T12:27:29+25:00",
            "2026-11-29T24:00:00Z",
            "2026-11-29T23:59:60Z",
            "2025-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-11-29T12:27:29Z ",
            "+026-11-29T12:27:29Z",
            "2026-11-29T12:27:29ZZ",
            "2026-11-29T123:27:29Z",
            "2026-1-29T12:27:29Z",
        ] {
            assert_eq!(go_reformat(input), None, "{input:?}");
        }
    }
}
