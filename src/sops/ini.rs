//! INI store: parsed and written like sops does through go-ini (`ini.LoadSources` with
//! non-unique sections; `WriteTo` with its default pretty format), so that the output is byte
//! for byte what `sops -d` writes. The metadata is the `[sops]` section of flattened keys. Pure.

use std::collections::HashMap;

use super::dotenv::{go_v, val_to_string};
use super::tree::{Comment, Entry, Leaf, Node, Value};

/// Why an INI file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum IniError {
    #[error("invalid INI line {0}: unclosed section header")]
    UnclosedSection(usize),
    #[error("invalid INI line {0}: expected `key = value`, `[section]` or a comment")]
    BadLine(usize),
}

struct Key {
    name: String,
    value: String,
    comment: String,
}

struct Section {
    name: String,
    comment: String,
    keys: Vec<Key>,
    /// Position of each key in `keys` (a repeated key replaces the value in place, as go-ini).
    index: HashMap<String, usize>,
}

/// go-ini's `readValue` (default options): quotes, inline comments.
fn read_value<'a>(first: &str, lines: &mut impl Iterator<Item = (usize, &'a str)>, comment: &mut String) -> String {
    let line = first.trim_start();
    if line.is_empty() {
        return String::new();
    }
    let quote = if line.len() > 3 && line.starts_with("\"\"\"") {
        Some("\"\"\"")
    } else if line.starts_with('`') {
        Some("`")
    } else {
        None
    };
    if let Some(q) = quote {
        let rest = &line[q.len()..];
        if let Some(pos) = rest.rfind(q) {
            return rest[..pos].to_owned();
        }
        // A multi-line value: up to the line that ends with the quote.
        let mut value = rest.to_owned();
        for (_, next) in lines.by_ref() {
            value.push('\n');
            let next = next.strip_suffix('\r').unwrap_or(next);
            if let Some(pos) = next.rfind(q) {
                value.push_str(&next[..pos]);
                return value;
            }
            value.push_str(next);
        }
        return value;
    }
    let mut line = line.trim().to_owned();
    if let Some(i) = line.find(['#', ';']) {
        comment.push_str(&line[i..]);
        line = line[..i].trim().to_owned();
    }
    let quoted = |c: char| line.len() >= 2 && line.starts_with(c) && line.ends_with(c);
    if quoted('\'') || quoted('"') {
        line = line[1..line.len() - 1].to_owned();
    }
    line
}

/// go-ini's `readKeyName`: the key before the first `=` or `:`, possibly quoted.
fn read_key(line: &str) -> Option<(String, &str)> {
    for q in ["\"\"\"", "`", "\""] {
        if let Some(rest) = line.strip_prefix(q) {
            let end = rest.find(q)?;
            let after = rest[end + q.len()..].trim_start();
            let after = after.strip_prefix(['=', ':'])?;
            return Some((rest[..end].to_owned(), after));
        }
    }
    let i = line.find(['=', ':'])?;
    let name = line[..i].trim();
    if name.is_empty() {
        return None;
    }
    Some((name.to_owned(), &line[i + 1..]))
}

fn parse_sections(text: &str) -> Result<Vec<Section>, IniError> {
    let mut sections =
        vec![Section { name: "DEFAULT".to_owned(), comment: String::new(), keys: Vec::new(), index: HashMap::new() }];
    let mut comment = String::new();
    let mut lines = text.split('\n').enumerate();
    while let Some((n, raw)) = lines.next() {
        let line = raw.trim_start();
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if line.starts_with(['#', ';']) {
            comment.push_str(line);
            comment.push('\n');
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let close = rest.rfind(']').ok_or(IniError::UnclosedSection(n + 1))?;
            if let Some(i) = rest[close + 1..].find(['#', ';']) {
                comment.push_str(rest[close + 1 + i..].trim());
            }
            sections.push(Section {
                name: rest[..close].to_owned(),
                comment: comment.trim().to_owned(),
                keys: Vec::new(),
                index: HashMap::new(),
            });
            comment.clear();
            continue;
        }
        let (name, rest) = read_key(line).ok_or(IniError::BadLine(n + 1))?;
        let value = read_value(rest, &mut lines, &mut comment);
        let key_comment = comment.trim().to_owned();
        comment.clear();
        let section = sections.last_mut().ok_or(IniError::BadLine(n + 1))?;
        match section.index.get(&name).and_then(|&i| section.keys.get_mut(i)) {
            Some(k) => {
                k.value = value;
                k.comment = key_comment;
            }
            None => {
                section.index.insert(name.clone(), section.keys.len());
                section.keys.push(Key { name, value, comment: key_comment });
            }
        }
    }
    Ok(sections)
}

/// sops's `stripCommentChar`.
fn strip_comment(c: &str) -> String {
    if c.starts_with(';') {
        c.trim_start_matches([';', ' ']).to_owned()
    } else if c.starts_with('#') {
        c.trim_start_matches(['#', ' ']).to_owned()
    } else {
        c.to_owned()
    }
}

/// Parse an INI file into sections (a mapping of mappings) and the flattened `[sops]` metadata.
///
/// # Errors
/// [`IniError`] for lines go-ini would reject.
pub fn parse(text: &str) -> Result<(Node, Vec<(String, String)>), IniError> {
    let mut entries = Vec::new();
    let mut meta = Vec::new();
    for s in parse_sections(text)? {
        if s.name == "sops" {
            meta.extend(s.keys.into_iter().map(|k| (k.name, k.value.replace("\\n", "\n"))));
            continue;
        }
        let mut items = Vec::new();
        if !s.comment.is_empty() {
            items.push(Entry::Comment(Comment::new(strip_comment(&s.comment), None)));
        }
        for k in s.keys {
            items.push(Entry::Pair(k.name, Node::Leaf(Leaf::new(Value::Str(k.value), None))));
            if !k.comment.is_empty() {
                items.push(Entry::Comment(Comment::new(strip_comment(&k.comment), None)));
            }
        }
        entries.push(Entry::Pair(s.name, Node::Map(items)));
    }
    Ok((Node::Map(entries), meta))
}

fn comment_lines(comment: &str, trim_plain: bool, out: &mut String) {
    for line in comment.split('\n') {
        if line.starts_with(['#', ';']) {
            out.push_str(&line[..1]);
            out.push(' ');
            out.push_str(line[1..].trim());
        } else {
            out.push_str("; ");
            out.push_str(if trim_plain { line.trim() } else { line });
        }
        out.push('\n');
    }
}

/// Whether every top-level value is a mapping (a section), as sops requires to write INI.
#[must_use]
pub fn all_sections(root: &Node) -> bool {
    match root {
        Node::Map(entries) => entries.iter().all(|e| matches!(e, Entry::Comment(_) | Entry::Pair(_, Node::Map(_)))),
        _ => false,
    }
}

/// Emit sections as go-ini's `WriteTo` does with sops's settings.
#[must_use]
pub fn emit(root: &Node) -> String {
    let Node::Map(entries) = root else {
        return String::new();
    };
    let sections: Vec<(&String, &Vec<Entry>)> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Pair(name, Node::Map(items)) => Some((name, items)),
            _ => None,
        })
        .collect();
    let mut out = String::new();
    let last = sections.len().saturating_sub(1);
    for (i, (name, items)) in sections.iter().enumerate() {
        let mut rest: &[Entry] = items;
        let mut section_comment = "";
        if let Some(Entry::Comment(c)) = items.first() {
            section_comment = &c.text;
            rest = &items[1..];
        }
        let mut keys: Vec<(String, String, String)> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for item in rest {
            match item {
                Entry::Comment(c) => {
                    if let Some(k) = keys.last_mut() {
                        k.2.clone_from(&c.text);
                    }
                }
                Entry::Pair(k, v) => {
                    let value = match v {
                        Node::Leaf(l) => val_to_string(&l.value),
                        // sops writes nested values with Go's `%v`.
                        other => go_v(other),
                    };
                    match index.get(k.as_str()).and_then(|&i| keys.get_mut(i)) {
                        Some(existing) => existing.1 = value,
                        None => {
                            index.insert(k, keys.len());
                            keys.push((k.clone(), value, String::new()));
                        }
                    }
                }
            }
        }
        if !section_comment.is_empty() {
            comment_lines(section_comment, false, &mut out);
        }
        if i > 0 || !name.eq_ignore_ascii_case("DEFAULT") {
            out.push('[');
            out.push_str(name);
            out.push_str("]\n");
        } else if keys.is_empty() {
            continue;
        }
        let quoted = |k: &str| -> String {
            if k.contains('"') || k.contains(['=', ':']) {
                format!("`{k}`")
            } else if k.contains('`') {
                format!("\"\"\"{k}\"\"\"")
            } else {
                k.to_owned()
            }
        };
        let align = keys.iter().map(|(k, ..)| quoted(k).len()).max().unwrap_or(0);
        for (k, v, c) in &keys {
            if !c.is_empty() {
                comment_lines(c, true, &mut out);
            }
            let k = quoted(k);
            out.push_str(&k);
            out.extend(std::iter::repeat_n(' ', align.saturating_sub(k.len())));
            out.push_str(" = ");
            if v.contains(['\n', '`']) {
                out.push_str(&format!("\"\"\"{v}\"\"\""));
            } else if v.contains(['#', ';']) {
                out.push_str(&format!("`{v}`"));
            } else if v.trim() != v {
                out.push_str(&format!("\"{v}\""));
            } else {
                out.push_str(v);
            }
            out.push('\n');
        }
        if i != last {
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_go_ini_layout() {
        let text = "; db section\n[db]\n; the user\nuser     = admin\npassword = `p#ss`\nspaced   = \" x \"\n\n[other]\nk = v\n";
        let (root, meta) = parse(text).unwrap();
        assert!(meta.is_empty());
        assert_eq!(emit(&root), text);
        let (_, meta) = parse("[sops]\nmac = M\nage__list_0__map_enc = a\\nb\n").unwrap();
        assert_eq!(meta[1], ("age__list_0__map_enc".to_owned(), "a\nb".to_owned()));
        assert!(parse("[broken\n").is_err());
    }
}
