//! Go-style durations (`10s`, `1m30s`, `500ms`), as the API server writes `?timeout=` (pure).

use std::time::Duration;

/// Why a duration does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {0:?}: use a number with a unit, e.g. 10s, 500ms, 1m30s")]
pub struct DurationError(pub String);

/// Parse a non-negative Go duration: numbers (decimals allowed) each followed by one of
/// `ns`, `us`, `µs`, `ms`, `s`, `m`, `h`. A bare `0` is zero.
pub fn parse(input: &str) -> Result<Duration, DurationError> {
    let bad = || DurationError(input.to_owned());
    if input == "0" {
        return Ok(Duration::ZERO);
    }
    if input.is_empty() || input.len() > 64 {
        return Err(bad());
    }
    let mut total = 0f64;
    let mut rest = input;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        if number_len == 0 {
            return Err(bad());
        }
        let value: f64 = rest[..number_len].parse().map_err(|_| bad())?;
        rest = &rest[number_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += value * seconds;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        for bad in ["", "10", "s", "-1s", "10x", "1e9s", "ms10"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
