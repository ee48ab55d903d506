//! Writing YAML: decrypted values spliced back into the source text (keeps the layout and the
//! comments of the encrypted file), and a small block-style emitter for trees that have no source
//! (conversions, KRM ResourceLists). Pure.

use std::fmt::Write as _;

use super::tree::{Entry, Leaf, Node, Value, go_format_g};
use super::yaml::Document;
use super::yaml_quote::{Context, str_scalar_in};

/// A YAML scalar for a value in block context, as go-yaml writes it.
#[must_use]
pub fn scalar(v: &Value) -> String {
    scalar_in(v, Context::Block)
}

/// A YAML scalar for a value in `ctx`, as go-yaml writes it.
#[must_use]
pub fn scalar_in(v: &Value, ctx: Context) -> String {
    match v {
        Value::Str(s) => str_scalar_in(s, ctx),
        Value::Time(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) if f.is_nan() => ".nan".to_owned(),
        Value::Float(f) if f.is_infinite() => (if *f > 0.0 { ".inf" } else { "-.inf" }).to_owned(),
        Value::Float(f) => go_format_g(*f, false),
        Value::Bool(b) => (if *b { "true" } else { "false" }).to_owned(),
        Value::Bytes(b) => {
            use base64::Engine as _;
            format!("!!binary {}", base64::engine::general_purpose::STANDARD.encode(b))
        }
    }
}

/// A string scalar in block context, as go-yaml writes it.
#[must_use]
pub fn str_scalar(s: &str) -> String {
    str_scalar_in(s, Context::Block)
}

/// A literal block scalar (`|` or `|-`) for a multi-line string that is the value of a block
/// mapping key at `indent`, as go-yaml writes it; `None` when another style is needed.
fn literal_block(s: &str, indent: usize) -> Option<String> {
    let body = s.strip_suffix('\n').unwrap_or(s);
    if !s.contains('\n')
        || body.is_empty()
        || body.ends_with('\n')
        || body.starts_with([' ', '\n'])
        || body.split('\n').any(|l| l.ends_with([' ', '\t']))
        || body.chars().any(|c| c.is_control() && c != '\n' && c != '\t')
        || body.contains(['\u{feff}', '\u{2028}', '\u{2029}'])
    {
        return None;
    }
    let mut out = String::from(if s.ends_with('\n') { "|" } else { "|-" });
    for line in body.split('\n') {
        out.push('\n');
        if !line.is_empty() {
            out.extend(std::iter::repeat_n(' ', indent + 4));
            out.push_str(line);
        }
    }
    Some(out)
}

/// The indentation of a block mapping key whose value starts at `at`, if the value follows
/// `key: ` on its line.
fn key_indent(text: &str, at: usize) -> Option<usize> {
    let line_start = text[..at].rfind('\n').map_or(0, |n| n + 1);
    let prefix = &text[line_start..at];
    let indent = prefix.len() - prefix.trim_start_matches(' ').len();
    let key = prefix[indent..].trim_end();
    (key.ends_with(':') && !key.starts_with(['-', '?', '{', '['])).then_some(indent)
}

fn collect_spliced(text: &str, doc: &Document, out: &mut Vec<(usize, usize, String)>) -> bool {
    let node = &doc.root;
    let mut raw = Vec::new();
    let ok = collect(text, &doc.flow, node, &mut raw);
    for (s, e, repl) in raw {
        out.push((s, e, repl));
    }
    ok
}

/// A decrypted comment as one comment line (a line break in it would end the comment).
fn comment_line(text: &str) -> String {
    format!("#{}", text.replace(['\n', '\r'], " "))
}

/// The `-` of the block sequence entry whose value starts at `at`.
fn entry_dash(text: &str, at: usize) -> Option<usize> {
    let before = text[..at].trim_end_matches([' ', '\t']);
    before.ends_with('-').then(|| before.len() - 1)
}

/// Comments that sops stored as list items (`- ENC[…,type:comment]`) are written back as comment
/// lines, where go-yaml writes them: at the entry's place; a list left with only comments is
/// `[]` followed by the comments at its key's indentation. `false` when the list is not a block
/// sequence laid out that way (a hand-written file): the caller then writes the whole document.
fn seq_comment_items(text: &str, items: &[Node], out: &mut Vec<(usize, usize, String)>) -> bool {
    let mut comments = Vec::new();
    for item in items {
        if let Node::Comment(c) = item
            && c.item
            && c.decrypted
        {
            let Some((start, end)) = c.span else { return false };
            let Some(dash) = entry_dash(text, start) else { return false };
            comments.push((dash, end, c));
        }
    }
    let (Some(&(first_dash, ..)), Some(&(_, last_end, _))) = (comments.first(), comments.last()) else {
        return true;
    };
    let has_values = items.iter().any(|n| !matches!(n, Node::Comment(_)));
    let line_of = |at: usize| text[..at].rfind('\n').map_or(0, |n| n + 1);
    if !has_values {
        // `key:` then the entries: `key: []` and the comments below, at the key's indentation.
        let before = text[..first_dash].trim_end_matches([' ', '\t', '\n', '\r']);
        let (from, col) = if before.ends_with(':') {
            let ls = line_of(before.len());
            let key = text[ls..before.len()].trim_start_matches([' ', '-']);
            (before.len(), before.len() - ls - key.len())
        } else {
            // The list is itself a list entry: `- []`, the comments below it.
            (first_dash, first_dash - line_of(first_dash))
        };
        let mut repl = String::from(if from == first_dash { "[]" } else { " []" });
        for (.., c) in &comments {
            repl.push('\n');
            repl.extend(std::iter::repeat_n(' ', col));
            repl.push_str(&comment_line(&c.text));
        }
        out.push((from, last_end, repl));
        return true;
    }
    let mut rest = &comments[..];
    // A nested list that starts on its parent's entry line (`- - ENC[comment]`): go-yaml writes its
    // leading comments above that line and moves the first value up.
    let ls = line_of(first_dash);
    let prefix_start = ls + (text[ls..first_dash].len() - text[ls..first_dash].trim_start_matches(' ').len());
    if prefix_start < first_dash && matches!(items.first(), Some(Node::Comment(c)) if c.item) {
        let lead = items.iter().take_while(|n| matches!(n, Node::Comment(c) if c.item)).count();
        let lead = lead.min(comments.len());
        let lead_end = comments[lead - 1].1;
        let next_line = text[lead_end..].find('\n').map(|n| lead_end + n + 1);
        let next_dash = next_line.and_then(|nl| {
            let body = &text[nl..];
            let trimmed = body.trim_start_matches(' ');
            trimmed.starts_with('-').then(|| nl + body.len() - trimmed.len())
        });
        if let Some(next_dash) = next_dash {
            let pad = " ".repeat(prefix_start - ls);
            let mut repl = String::new();
            for (.., c) in &comments[..lead] {
                repl.push_str(&comment_line(&c.text));
                repl.push('\n');
                repl.push_str(&pad);
            }
            repl.push_str(&text[prefix_start..first_dash]);
            out.push((prefix_start, next_dash, repl));
            rest = &comments[lead..];
        }
    }
    for (dash, end, c) in rest {
        out.push((*dash, *end, comment_line(&c.text)));
    }
    true
}

/// Whether byte `at` lies inside one of the (sorted, disjoint) flow collections.
fn in_flow(flow: &[(usize, usize)], at: usize) -> bool {
    let i = flow.partition_point(|(s, _)| *s <= at);
    i > 0 && at < flow[i - 1].1
}

fn collect(text: &str, flow: &[(usize, usize)], node: &Node, out: &mut Vec<(usize, usize, String)>) -> bool {
    match node {
        Node::Map(entries) => {
            let mut ok = true;
            for e in entries {
                match e {
                    Entry::Pair(_, v) => ok &= collect(text, flow, v, out),
                    Entry::Comment(c) => {
                        if let (true, Some((s, e))) = (c.decrypted, c.span) {
                            out.push((s, e, comment_line(&c.text)));
                        }
                    }
                }
            }
            ok
        }
        Node::Seq(items) => {
            let mut ok = seq_comment_items(text, items, out);
            for n in items {
                ok &= collect(text, flow, n, out);
            }
            ok
        }
        Node::Leaf(Leaf { value, span: Some((s, e)), decrypted: true }) => {
            let flow = in_flow(flow, *s);
            // A multi-line string is a literal block where go-yaml would write one.
            let block = match value {
                Value::Str(v) if !flow && v.contains('\n') => key_indent(text, *s).and_then(|i| literal_block(v, i)),
                _ => None,
            };
            let ctx = if flow { Context::Flow } else { Context::Block };
            out.push((*s, *e, block.unwrap_or_else(|| scalar_in(value, ctx))));
            true
        }
        Node::Comment(c) => {
            if let (true, false, Some((s, e))) = (c.decrypted, c.item, c.span) {
                out.push((s, e, comment_line(&c.text)));
            }
            true
        }
        _ => true,
    }
}

/// The byte range of the top-level `sops:` block in `text[from..to]`: from its line to the next
/// line that starts in column 0.
fn sops_block(text: &str, from: usize, to: usize) -> Option<(usize, usize)> {
    let mut pos = from;
    let mut start = None;
    for line in text[from..to].split_inclusive('\n') {
        if start.is_none() {
            if line.starts_with("sops:") || line.starts_with("\"sops\":") {
                start = Some(pos);
            }
        } else if line.starts_with(|c: char| !matches!(c, ' ' | '\t' | '\n' | '\r')) {
            return start.map(|s| (s, pos));
        }
        pos += line.len();
    }
    start.map(|s| (s, to))
}

/// Whether the `sops` block of every document that had one (`with_sops`) is a block-style
/// top-level key that [`splice`] can cut out.
#[must_use]
pub fn sops_blocks_found(text: &str, docs: &[Document], with_sops: &[bool]) -> bool {
    docs.iter().enumerate().zip(with_sops).all(|((i, doc), had)| {
        let to = docs.get(i + 1).map_or(text.len(), |d| d.start.min(text.len()));
        let from = doc.start.min(to);
        !had || sops_block(text, line_start(text, from), to).is_some()
    })
}

/// Write the decrypted documents back into the source text: decrypted values and comments replace
/// their ciphertext, and the `sops` metadata blocks are removed.
#[must_use]
pub fn splice(text: &str, docs: &[Document]) -> String {
    let mut edits = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        if !collect_spliced(text, doc, &mut edits) {
            return emit(&docs.iter().map(|d| &d.root).collect::<Vec<_>>());
        }
        edits.extend(doc.empty_maps.iter().map(|&(s, e)| (s, e, "{}".to_owned())));
        let to = docs.get(i + 1).map_or(text.len(), |d| d.start.min(text.len()));
        let from = doc.start.min(to);
        if let Some((s, e)) = sops_block(text, line_start(text, from), to) {
            // A document left without keys is written as go-yaml writes an empty mapping.
            let repl = if has_pairs(&doc.root) { String::new() } else { "{}\n".to_owned() };
            edits.push((s, e, repl));
        }
    }
    edits.sort_by_key(|(s, ..)| *s);
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (s, e, repl) in edits {
        if s < at || e > text.len() {
            continue;
        }
        out.push_str(&text[at..s]);
        out.push_str(&repl);
        at = e;
    }
    out.push_str(&text[at..]);
    out
}

/// Whether a document root has a key (a mapping of comments only is empty to go-yaml).
fn has_pairs(root: &Node) -> bool {
    !matches!(root, Node::Map(entries) if !entries.iter().any(|e| matches!(e, Entry::Pair(..))))
}

fn line_start(text: &str, at: usize) -> usize {
    text[..at].rfind('\n').map_or(0, |n| n + 1)
}

/// Emit documents in block style (indent 4, like sops), comments as full lines.
#[must_use]
pub fn emit(docs: &[&Node]) -> String {
    let mut out = String::new();
    for (i, doc) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        match doc {
            Node::Map(entries) if has_pairs(doc) => write_map(entries, 0, &mut out),
            Node::Map(entries) => {
                // Comments only: go-yaml writes them above an empty mapping.
                write_map(entries, 0, &mut out);
                out.push_str("{}\n");
            }
            other => write_value_inline(other, 0, &mut out),
        }
    }
    out
}

fn pad(n: usize, out: &mut String) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn write_map(entries: &[Entry], ind: usize, out: &mut String) {
    let mut first = true;
    for e in entries {
        if !first {
            pad(ind, out);
        }
        first = false;
        match e {
            Entry::Comment(c) => {
                let _ = writeln!(out, "#{}", c.text);
            }
            Entry::Pair(k, v) => {
                out.push_str(&str_scalar_in(k, Context::Key));
                out.push(':');
                write_value_after_key(v, ind, out);
            }
        }
    }
}

fn write_value_after_key(v: &Node, ind: usize, out: &mut String) {
    match v {
        Node::Map(entries) if entries.iter().any(|e| matches!(e, Entry::Pair(..))) => {
            out.push('\n');
            pad(ind + 4, out);
            write_map(entries, ind + 4, out);
        }
        Node::Seq(items) if items.iter().any(|n| !matches!(n, Node::Comment(_))) => {
            out.push('\n');
            pad(ind + 4, out);
            write_seq(items, ind + 4, out);
        }
        other => {
            out.push(' ');
            write_value_inline(other, ind, out);
        }
    }
}

fn write_seq(items: &[Node], ind: usize, out: &mut String) {
    let mut first = true;
    for item in items {
        if !first {
            pad(ind, out);
        }
        first = false;
        match item {
            Node::Comment(c) => {
                let _ = writeln!(out, "#{}", c.text);
            }
            Node::Map(entries) if entries.iter().any(|e| matches!(e, Entry::Pair(..))) => {
                out.push_str("- ");
                write_map(entries, ind + 2, out);
            }
            Node::Seq(inner) if inner.iter().any(|n| !matches!(n, Node::Comment(_))) => {
                out.push_str("- ");
                write_seq(inner, ind + 2, out);
            }
            other => {
                out.push_str("- ");
                write_value_inline(other, ind, out);
            }
        }
    }
}

fn write_value_inline(v: &Node, _ind: usize, out: &mut String) {
    match v {
        Node::Map(_) => out.push_str("{}\n"),
        Node::Seq(_) => out.push_str("[]\n"),
        Node::Leaf(l) => {
            out.push_str(&scalar(&l.value));
            out.push('\n');
        }
        Node::Null | Node::Comment(_) => out.push_str("null\n"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::sops::yaml::parse;

    #[test]
    fn scalars_round_trip() {
        for s in ["hello", "two words", "123", "true", "yes", "", " x", "a: b", "#c", "line\nbreak", "é", "null"] {
            let text = format!("k: {}\n", str_scalar(s));
            let docs = parse(&text).unwrap();
            assert_eq!(docs[0].root.get("k").and_then(Node::as_str), Some(s), "{text}");
        }
        assert_eq!(str_scalar("yes"), "\"yes\"");
        assert_eq!(str_scalar("päss wörd ✓"), "päss wörd ✓");
        assert_eq!(scalar(&Value::Float(1.5e10)), "1.5e+10");
        assert_eq!(scalar(&Value::Float(2.0)), "2");
        assert_eq!(scalar(&Value::Float(3.25)), "3.25");
        assert_eq!(scalar(&Value::Float(100.0)), "100");
        assert_eq!(scalar(&Value::Float(1_234_567.0)), "1.234567e+06");
        assert_eq!(scalar(&Value::Float(-0.0)), "-0");
        assert_eq!(scalar(&Value::Float(f64::NEG_INFINITY)), "-.inf");
        assert_eq!(scalar(&Value::Float(0.00001)), "1e-05");
        assert_eq!(str_scalar("plain-value"), "plain-value");
        assert_eq!(str_scalar("a:b"), "a:b");
        assert_eq!(str_scalar(" lead"), "' lead'");
        assert_eq!(str_scalar("1.10"), "\"1.10\"");
        assert_eq!(str_scalar("~"), "\"~\"");
    }

    #[test]
    fn emitter_round_trips() {
        let text = "a: 1\nb:\n    c: x\n    d:\n        - 1\n        - e: f\n          g: h\n# note\ni: []\nj: {}\n";
        let docs = parse(text).unwrap();
        let out = emit(&[&docs[0].root]);
        let again = parse(&out).unwrap();
        assert_eq!(strip(&again[0].root), strip(&docs[0].root), "{out}");
    }

    fn strip(n: &Node) -> Node {
        match n {
            Node::Map(e) => Node::Map(
                e.iter()
                    .map(|e| match e {
                        Entry::Pair(k, v) => Entry::Pair(k.clone(), strip(v)),
                        Entry::Comment(c) => Entry::Comment(crate::sops::tree::Comment::new(c.text.clone(), None)),
                    })
                    .collect(),
            ),
            Node::Seq(i) => Node::Seq(i.iter().map(strip).collect()),
            Node::Leaf(l) => Node::Leaf(Leaf::new(l.value.clone(), None)),
            Node::Comment(c) => Node::Comment(crate::sops::tree::Comment::new(c.text.clone(), None)),
            Node::Null => Node::Null,
        }
    }

    #[test]
    fn literal_blocks_like_go_yaml() {
        assert_eq!(literal_block("a\nb\n", 4).unwrap(), "|\n        a\n        b");
        assert_eq!(literal_block("a\n\nb", 0).unwrap(), "|-\n    a\n\n    b");
        assert_eq!(literal_block("a \nb", 0), None);
        assert_eq!(literal_block("one line", 0), None);
        assert_eq!(literal_block("one line\n", 2).unwrap(), "|\n      one line");
        assert_eq!(key_indent("x:\n    k: V", 10), Some(4));
        assert_eq!(key_indent("- V", 2), None);
    }

    #[test]
    fn splice_removes_sops_block() {
        let text =
            "a: x\nsops:\n    mac: m\n    age:\n        - enc: |\n            abc\n---\nb: y\nsops:\n    mac: m\n";
        let docs = parse(text).unwrap();
        assert_eq!(splice(text, &docs), "a: x\n---\nb: y\n");
    }
}
