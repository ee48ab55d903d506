//! Scalar types as go-yaml v3 resolves them when sops decodes into `interface{}` (YAML 1.2 core
//! schema; plain timestamps become `time.Time`). Pure.

use saphyr_parser::ScalarStyle;

use super::tree::Value;

/// Resolve a scalar's type as go-yaml v3 does when decoding into `interface{}`
/// (YAML 1.2 core schema; timestamps stay strings). `None` is null.
#[must_use]
pub fn resolve(v: &str, style: ScalarStyle, tag: Option<&str>) -> Option<Value> {
    let plain = matches!(style, ScalarStyle::Plain);
    match tag {
        Some("tag:yaml.org,2002:str" | "!!str") => return Some(Value::Str(v.to_owned())),
        Some("tag:yaml.org,2002:null" | "!!null") => return None,
        Some("tag:yaml.org,2002:int" | "!!int") => {
            return parse_int(v).map(Value::Int).or(Some(Value::Str(v.into())));
        }
        Some("tag:yaml.org,2002:float" | "!!float") => {
            return parse_float(v).or_else(|| parse_int(v).map(|i| i as f64)).map(Value::Float);
        }
        Some("tag:yaml.org,2002:bool" | "!!bool") => return parse_bool(v).map(Value::Bool),
        _ => {}
    }
    if !plain {
        return Some(Value::Str(v.to_owned()));
    }
    match v {
        "" | "~" | "null" | "Null" | "NULL" => return None,
        _ => {}
    }
    if let Some(b) = parse_bool(v) {
        return Some(Value::Bool(b));
    }
    if let Some(i) = parse_int(v) {
        return Some(Value::Int(i));
    }
    if let Some(f) = parse_float(v) {
        return Some(Value::Float(f));
    }
    if let Some(t) = parse_timestamp(v) {
        return Some(Value::Time(t));
    }
    Some(Value::Str(v.to_owned()))
}

fn digits(s: &str, min: usize, max: usize) -> Option<(u32, &str)> {
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    if n < min || n > max {
        return None;
    }
    Some((s[..n].parse().ok()?, &s[n..]))
}

/// A plain timestamp as go-yaml reads it (layouts `2006-1-2T15:4:5.999999999Z07:00`, the same
/// with `t`, `2006-1-2 15:4:5.999999999` and `2006-1-2`), returned as Go's `time.MarshalText`
/// writes it (RFC 3339 with nanoseconds), which is what sops feeds the MAC.
#[must_use]
pub fn parse_timestamp(v: &str) -> Option<String> {
    let (year, rest) = digits(v, 4, 4)?;
    let (month, rest) = digits(rest.strip_prefix('-')?, 1, 2)?;
    let (day, rest) = digits(rest.strip_prefix('-')?, 1, 2)?;
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&month) || day == 0 || day > days[month as usize - 1] {
        return None;
    }
    let date = format!("{year:04}-{month:02}-{day:02}");
    if rest.is_empty() {
        return Some(format!("{date}T00:00:00Z"));
    }
    let (zoned, rest) =
        if let Some(r) = rest.strip_prefix(['T', 't']) { (true, r) } else { (false, rest.strip_prefix(' ')?) };
    let (hour, rest) = digits(rest, 1, 2)?;
    let (min, rest) = digits(rest.strip_prefix(':')?, 1, 2)?;
    let (sec, mut rest) = digits(rest.strip_prefix(':')?, 1, 2)?;
    if hour > 23 || min > 59 || sec > 59 {
        return None;
    }
    let mut frac = String::new();
    if let Some(r) = rest.strip_prefix('.') {
        let n = r.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 || n > 9 {
            return None;
        }
        frac = r[..n].trim_end_matches('0').to_owned();
        rest = &r[n..];
    }
    let zone = if !zoned {
        if !rest.is_empty() {
            return None;
        }
        "Z".to_owned()
    } else if rest == "Z" {
        "Z".to_owned()
    } else {
        let sign = rest.chars().next().filter(|c| matches!(c, '+' | '-'))?;
        let (zh, r) = digits(&rest[1..], 2, 2)?;
        let (zm, r) = digits(r.strip_prefix(':')?, 2, 2)?;
        if !r.is_empty() || zh > 23 || zm > 59 {
            return None;
        }
        if zh == 0 && zm == 0 { "Z".to_owned() } else { format!("{sign}{zh:02}:{zm:02}") }
    };
    let frac = if frac.is_empty() { String::new() } else { format!(".{frac}") };
    Some(format!("{date}T{hour:02}:{min:02}:{sec:02}{frac}{zone}"))
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

pub(crate) fn parse_int(v: &str) -> Option<i64> {
    let plain: String = v.chars().filter(|c| *c != '_').collect();
    let (neg, digits) = match plain.as_bytes().first() {
        Some(b'-') => (true, &plain[1..]),
        Some(b'+') => (false, &plain[1..]),
        _ => (false, plain.as_str()),
    };
    if digits.is_empty() {
        return None;
    }
    // Go `strconv.ParseInt(s, 0, 64)`, as go-yaml uses: 0x, 0o, 0b prefixes, a leading 0 is octal.
    let (radix, body) = if let Some(h) = digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        (16, h)
    } else if let Some(o) = digits.strip_prefix("0o").or_else(|| digits.strip_prefix("0O")) {
        (8, o)
    } else if let Some(b) = digits.strip_prefix("0b").or_else(|| digits.strip_prefix("0B")) {
        (2, b)
    } else if digits.len() > 1 && digits.starts_with('0') {
        (8, &digits[1..])
    } else {
        (10, digits)
    };
    if body.is_empty() || !body.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    // With the sign, so that int64's minimum is an int (as Go's ParseInt reads it).
    let signed = if neg { format!("-{body}") } else { body.to_owned() };
    i64::from_str_radix(&signed, radix).ok()
}

fn parse_float(v: &str) -> Option<f64> {
    match v {
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        _ => {}
    }
    let body = v.strip_prefix(['-', '+']).unwrap_or(v);
    let first = body.chars().next()?;
    if !(first.is_ascii_digit() || first == '.') || !body.chars().any(|c| c.is_ascii_digit()) {
        return None;
    }
    if !body.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+' | '_')) {
        return None;
    }
    // Out of range is not a float to go-yaml (Go's ParseFloat fails): `1e400` stays a string.
    v.replace('_', "").parse::<f64>().ok().filter(|f| f.is_finite())
}
