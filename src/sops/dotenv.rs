//! dotenv store: `KEY=value` lines and `#comment` lines, metadata as flattened `sops_*` keys.
//! Output is byte-compatible with `sops -d`. Pure.

use super::tree::{Comment, Entry, Leaf, Node, Value, go_format_float, go_format_g};

/// Why a dotenv file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DotenvError {
    #[error("invalid dotenv line {0}: expected KEY=value or #comment")]
    BadLine(usize),
}

/// Parse a dotenv file into one flat mapping (Go `dotenv.Store.LoadPlainFile`).
///
/// # Errors
/// [`DotenvError::BadLine`] for a line without `=`.
pub fn parse(text: &str) -> Result<Node, DotenvError> {
    let mut entries = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        if let Some(c) = line.strip_prefix('#') {
            entries.push(Entry::Comment(Comment::new(c.to_owned(), None)));
        } else {
            let (k, v) = line.split_once('=').ok_or(DotenvError::BadLine(i + 1))?;
            entries.push(Entry::Pair(k.to_owned(), Node::Leaf(Leaf::new(Value::Str(v.replace("\\n", "\n")), None))));
        }
    }
    Ok(Node::Map(entries))
}

/// Take the `sops_*` entries out of a flat mapping, returning them without the prefix.
pub fn take_metadata(root: &mut Node) -> Vec<(String, String)> {
    let mut meta = Vec::new();
    if let Node::Map(entries) = root {
        entries.retain(|e| match e {
            Entry::Pair(k, v) if k.starts_with("sops_") => {
                meta.push((k["sops_".len()..].to_owned(), v.as_str().unwrap_or_default().to_owned()));
                false
            }
            _ => true,
        });
    }
    meta
}

/// Go `stores.ValToString` for non-string values.
#[must_use]
pub fn val_to_string(v: &Value) -> String {
    match v {
        Value::Str(s) => s.clone(),
        // Go `time.Time.Format(time.RFC3339)`: no fractional seconds.
        Value::Time(s) => match (s.find('.'), s.rfind(['Z', '+', '-'])) {
            (Some(dot), Some(zone)) if zone > dot => format!("{}{}", &s[..dot], &s[zone..]),
            _ => s.clone(),
        },
        Value::Int(i) => i.to_string(),
        // `FormatFloat(f, 'G', -1, 64)`, with `.0` added when it could be read as an integer.
        Value::Float(f) => {
            let s = go_format_g(*f, true);
            if s.contains(['.', 'E']) || !f.is_finite() { s } else { format!("{}.0", go_format_float(*f)) }
        }
        Value::Bool(b) => b.to_string(),
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
    }
}

/// The first key whose value is a mapping or a list, which sops refuses to write as dotenv.
#[must_use]
pub fn complex_key(root: &Node) -> Option<&str> {
    let Node::Map(entries) = root else { return None };
    entries.iter().find_map(|e| match e {
        Entry::Pair(k, Node::Map(_) | Node::Seq(_)) => Some(k.as_str()),
        _ => None,
    })
}

/// Go's `fmt.Sprintf("%v", v)` of a value of the sops tree, as sops writes nested values in INI.
#[must_use]
pub fn go_v(node: &Node) -> String {
    match node {
        Node::Map(entries) => {
            let items: Vec<String> = entries
                .iter()
                .map(|e| match e {
                    Entry::Pair(k, v) => format!("{{{k} {}}}", go_v(v)),
                    Entry::Comment(c) => format!("{{{{{} false}} <nil>}}", c.text),
                })
                .collect();
            format!("[{}]", items.join(" "))
        }
        Node::Seq(items) => format!("[{}]", items.iter().map(go_v).collect::<Vec<_>>().join(" ")),
        Node::Comment(c) => format!("{{{} false}}", c.text),
        Node::Null => "<nil>".to_owned(),
        Node::Leaf(Leaf { value, .. }) => match value {
            Value::Float(f) => go_format_g(*f, false),
            Value::Bytes(b) => format!("[{}]", b.iter().map(u8::to_string).collect::<Vec<_>>().join(" ")),
            other => val_to_string(other),
        },
    }
}

/// Emit a flat mapping as sops does.
#[must_use]
pub fn emit(root: &Node) -> String {
    let mut out = String::new();
    if let Node::Map(entries) = root {
        for e in entries {
            match e {
                Entry::Comment(c) => {
                    out.push('#');
                    out.push_str(&c.text);
                    out.push('\n');
                }
                Entry::Pair(k, v) => {
                    out.push_str(k);
                    out.push('=');
                    match v {
                        Node::Leaf(Leaf { value: Value::Str(s), .. }) => out.push_str(&s.replace('\n', "\\n")),
                        Node::Leaf(l) => out.push_str(&val_to_string(&l.value)),
                        _ => {}
                    }
                    out.push('\n');
                }
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let text = "A=1\n#c\nB=x\\ny\nsops_mac=M\n";
        let mut node = parse(text).unwrap();
        let meta = take_metadata(&mut node);
        assert_eq!(meta, vec![("mac".to_owned(), "M".to_owned())]);
        assert_eq!(emit(&node), "A=1\n#c\nB=x\\ny\n");
        assert!(parse("nokey\n").is_err());
    }

    #[test]
    fn nested_values_as_go_prints_them() {
        let text = "a:\n  - x: 1\n  - [1.5, true]\n";
        let docs = crate::sops::yaml::parse(text).unwrap();
        assert_eq!(go_v(docs[0].root.get("a").unwrap()), "[[{x 1}] [1.5 true]]");
        assert_eq!(complex_key(&docs[0].root), Some("a"));
    }

    #[test]
    fn values_as_go_val_to_string() {
        // Expected values from sops 3.11 `--output-type dotenv`.
        for (f, go) in [
            (100.0, "100.0"),
            (1_234_567.0, "1.234567E+06"),
            (-0.0, "-0.0"),
            (f64::INFINITY, "+Inf"),
            (f64::NAN, "NaN"),
            (0.00001, "1E-05"),
            (250_000.0, "250000.0"),
            (0.1, "0.1"),
        ] {
            assert_eq!(val_to_string(&Value::Float(f)), go, "{f}");
        }
        assert_eq!(val_to_string(&Value::Time("2024-01-02T03:04:05.5+01:00".into())), "2024-01-02T03:04:05+01:00");
        assert_eq!(val_to_string(&Value::Time("2024-01-02T00:00:00Z".into())), "2024-01-02T00:00:00Z");
    }
}
