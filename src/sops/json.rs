//! JSON store: an order-keeping parser into the SOPS tree (numbers as sops reads them: int when
//! they fit an int64, else float) and an emitter byte-compatible with sops's (Go `json.Indent`
//! with tabs, Go string escaping). Pure.

use std::fmt::Write as _;

use super::tree::{Entry, Leaf, Node, Value, go_format_float};

/// Why a JSON document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    #[error("invalid JSON at byte {at}: {reason}")]
    Syntax { at: usize, reason: &'static str },
    #[error("the JSON document is not an object; sops only handles objects at the top level")]
    NotAnObject,
}

struct P<'a> {
    s: &'a [u8],
    i: usize,
}

/// Parse a JSON document (one top-level object, optionally followed by more values in a stream
/// when `stream` is set).
///
/// # Errors
/// [`JsonError`] for invalid JSON.
pub fn parse(text: &str) -> Result<Node, JsonError> {
    let node = parse_value(text)?;
    if !matches!(node, Node::Map(_)) {
        return Err(JsonError::NotAnObject);
    }
    Ok(node)
}

/// Parse any JSON value (objects, arrays, scalars).
///
/// # Errors
/// [`JsonError`] for invalid JSON.
pub fn parse_value(text: &str) -> Result<Node, JsonError> {
    let mut p = P { s: text.as_bytes(), i: 0 };
    p.ws();
    let node = p.value(0)?;
    p.ws();
    if p.i != p.s.len() {
        return Err(p.err("trailing data after the JSON value"));
    }
    Ok(node)
}

impl P<'_> {
    fn err(&self, reason: &'static str) -> JsonError {
        JsonError::Syntax { at: self.i, reason }
    }

    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Node, JsonError> {
        if depth > 512 {
            return Err(self.err("nesting too deep"));
        }
        self.ws();
        match self.s.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                let mut entries = Vec::new();
                if self.eat(b'}') {
                    return Ok(Node::Map(entries));
                }
                loop {
                    self.ws();
                    let key = self.string()?;
                    if !self.eat(b':') {
                        return Err(self.err("expected `:`"));
                    }
                    let v = self.value(depth + 1)?;
                    entries.push(Entry::Pair(key, v));
                    if self.eat(b',') {
                        continue;
                    }
                    if self.eat(b'}') {
                        return Ok(Node::Map(entries));
                    }
                    return Err(self.err("expected `,` or `}`"));
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                if self.eat(b']') {
                    return Ok(Node::Seq(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    if self.eat(b',') {
                        continue;
                    }
                    if self.eat(b']') {
                        return Ok(Node::Seq(items));
                    }
                    return Err(self.err("expected `,` or `]`"));
                }
            }
            Some(b'"') => Ok(leaf(Value::Str(self.string()?))),
            Some(b't') => self.word("true", leaf(Value::Bool(true))),
            Some(b'f') => self.word("false", leaf(Value::Bool(false))),
            Some(b'n') => self.word("null", Node::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.err("expected a value")),
        }
    }

    fn word(&mut self, w: &str, node: Node) -> Result<Node, JsonError> {
        if self.s[self.i..].starts_with(w.as_bytes()) {
            self.i += w.len();
            Ok(node)
        } else {
            Err(self.err("unknown literal"))
        }
    }

    fn number(&mut self) -> Result<Node, JsonError> {
        let start = self.i;
        while self.i < self.s.len() && matches!(self.s[self.i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
            self.i += 1;
        }
        let text = std::str::from_utf8(&self.s[start..self.i]).map_err(|_| self.err("bad number"))?;
        // sops reads every JSON number as a float64 (Go's decoder without UseNumber): an integer is
        // kept as one only where that float prints the same digits (|i| ≤ 2^53, and not `-0`).
        if let Ok(i) = text.parse::<i64>()
            && i.unsigned_abs() <= 1 << 53
            && !(i == 0 && text.starts_with('-'))
        {
            return Ok(leaf(Value::Int(i)));
        }
        text.parse::<f64>().map(|f| leaf(Value::Float(f))).map_err(|_| self.err("bad number"))
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let h = self.s.get(self.i..self.i + 4).ok_or_else(|| self.err("short \\u escape"))?;
        let h = std::str::from_utf8(h).map_err(|_| self.err("bad \\u escape"))?;
        self.i += 4;
        u32::from_str_radix(h, 16).map_err(|_| self.err("bad \\u escape"))
    }

    fn string(&mut self) -> Result<String, JsonError> {
        if self.s.get(self.i) != Some(&b'"') {
            return Err(self.err("expected a string"));
        }
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.i) else {
                return Err(self.err("unterminated string"));
            };
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else {
                        return Err(self.err("unterminated string"));
                    };
                    self.i += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi) && self.s[self.i..].starts_with(b"\\u") {
                                self.i += 2;
                                let lo = self.hex4()?;
                                0x10000 + ((hi - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3FF)
                            } else {
                                hi
                            };
                            char::from_u32(code).unwrap_or('\u{FFFD}')
                        }
                        _ => return Err(self.err("bad escape")),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                _ => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|_| self.err("invalid UTF-8 in string"))
    }
}

fn leaf(v: Value) -> Node {
    Node::Leaf(Leaf::new(v, None))
}

/// Go `json.Marshal` of a string (HTML-safe escaping, as sops emits).
pub fn quote(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Go `json.Marshal` of a float64.
#[must_use]
pub fn go_json_float(f: f64) -> String {
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        // 'e' format with a two-digit minimum exponent trimmed as Go does (1e-07 → 1e-7).
        let s = format!("{f:e}");
        let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = exp.strip_prefix('-').map_or(("+", exp), |d| ("-", d));
        return format!("{mant}e{sign}{digits}");
    }
    go_format_float(f)
}

/// The first float Go's JSON encoder refuses (`±Inf`, `NaN`), as Go names it.
#[must_use]
pub fn unsupported_float(node: &Node) -> Option<&'static str> {
    match node {
        Node::Map(entries) => entries.iter().find_map(|e| match e {
            Entry::Pair(_, v) => unsupported_float(v),
            Entry::Comment(_) => None,
        }),
        Node::Seq(items) => items.iter().find_map(unsupported_float),
        Node::Leaf(Leaf { value: Value::Float(f), .. }) if f.is_nan() => Some("NaN"),
        Node::Leaf(Leaf { value: Value::Float(f), .. }) if f.is_infinite() => {
            Some(if *f > 0.0 { "+Inf" } else { "-Inf" })
        }
        _ => None,
    }
}

/// Emit a tree as sops does (`{` … `}` re-indented with tabs, trailing newline).
#[must_use]
pub fn emit(node: &Node) -> String {
    let mut out = String::new();
    write_node(node, 0, &mut out);
    out.push('\n');
    out
}

fn indent(level: usize, out: &mut String) {
    out.push('\n');
    for _ in 0..level {
        out.push('\t');
    }
}

/// Write one value (also used for manifests).
pub fn write_node(node: &Node, level: usize, out: &mut String) {
    match node {
        Node::Map(entries) => {
            let pairs: Vec<(&String, &Node)> = entries
                .iter()
                .filter_map(|e| match e {
                    Entry::Pair(k, v) => Some((k, v)),
                    Entry::Comment(_) => None,
                })
                .collect();
            if pairs.is_empty() {
                out.push_str("{}");
                return;
            }
            out.push('{');
            for (i, (k, v)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                indent(level + 1, out);
                quote(k, out);
                out.push_str(": ");
                write_node(v, level + 1, out);
            }
            indent(level, out);
            out.push('}');
        }
        Node::Seq(items) => {
            let items: Vec<&Node> = items.iter().filter(|n| !matches!(n, Node::Comment(_))).collect();
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                indent(level + 1, out);
                write_node(v, level + 1, out);
            }
            indent(level, out);
            out.push(']');
        }
        Node::Leaf(l) => match &l.value {
            Value::Str(s) | Value::Time(s) => quote(s, out),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Float(f) => out.push_str(&go_json_float(*f)),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Bytes(b) => {
                use base64::Engine as _;
                quote(&base64::engine::general_purpose::STANDARD.encode(b), out);
            }
        },
        Node::Comment(_) | Node::Null => out.push_str("null"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_go_layout() {
        let text = "{\n\t\"b\": 1,\n\t\"a\": [\n\t\ttrue,\n\t\t2.5,\n\t\tnull,\n\t\t\"<x>\"\n\t],\n\t\"e\": {}\n}\n";
        let node = parse(text).unwrap();
        assert_eq!(emit(&node), text.replace("\"<x>\"", "\"\\u003cx\\u003e\""));
        assert!(matches!(parse("[1]"), Err(JsonError::NotAnObject)));
        assert!(parse("{\"a\": }").is_err());
        assert_eq!(go_json_float(1e21), "1e+21");
        assert_eq!(go_json_float(1e-7), "1e-7");
        assert_eq!(go_json_float(0.5), "0.5");
    }
}
