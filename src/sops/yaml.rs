//! YAML store: a parser over saphyr's event stream that keeps key order, scalar types, comments
//! (placed where sops's go-yaml store puts them) and the source span of every scalar, so that a
//! decrypted document can be written back in place, keeping the file's layout. Pure.

use saphyr_parser::{Event, Parser, ScalarStyle, Span as YSpan};

use super::tree::{Comment, Entry, Leaf, Node};
use super::yaml_comments::{RawComment, find_comments};
pub use super::yaml_scalar::{parse_timestamp, resolve};

/// Why a YAML document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum YamlError {
    #[error("invalid YAML at line {line}, column {col}: {reason}")]
    Syntax { line: usize, col: usize, reason: String },
    #[error("YAML document {0} is not a mapping; sops only handles mappings at the top level")]
    NotAMapping(usize),
    #[error("YAML nesting deeper than {0} levels; such documents are refused")]
    TooDeep(usize),
    #[error("YAML aliases expand to more than {0} nodes; such documents are refused")]
    AliasBomb(usize),
    #[error("YAML alias `*{0}` refers to an unknown anchor")]
    UnknownAlias(usize),
}

/// Maps character indices (saphyr's markers) to byte offsets.
struct Offsets {
    ascii: bool,
    table: Vec<usize>,
}

impl Offsets {
    fn new(text: &str) -> Self {
        if text.is_ascii() {
            return Self { ascii: true, table: Vec::new() };
        }
        let mut table: Vec<usize> = text.char_indices().map(|(b, _)| b).collect();
        table.push(text.len());
        Self { ascii: false, table }
    }

    fn byte(&self, char_index: usize) -> usize {
        if self.ascii { char_index } else { self.table.get(char_index).copied().unwrap_or(usize::MAX) }
    }
}

/// Arena representation used while placing comments.
#[derive(Debug)]
pub(super) struct Container {
    pub(super) is_map: bool,
    pub(super) col: usize,
    pub(super) children: Vec<Child>,
}

#[derive(Debug)]
pub(super) struct Child {
    pub(super) order: usize,
    pub(super) line: usize,
    pub(super) col: usize,
    pub(super) kind: ChildKind,
}

#[derive(Debug)]
pub(super) enum ChildKind {
    Pair(String, Raw),
    Item(Raw),
    Comment(Comment),
}

#[derive(Debug, Clone)]
pub(super) enum Raw {
    Container(usize),
    Leaf(Leaf),
    Null,
}

/// One parsed YAML document.
#[derive(Debug)]
pub struct Document {
    pub root: Node,
    /// Byte range of the document's text (from its first content to its end).
    pub start: usize,
    pub end: usize,
    /// Empty flow mappings holding only comments (`{`, comment lines, `}`), as sops writes
    /// `key: {} # comment`: byte ranges that are written back as `{}`, as sops does.
    pub empty_maps: Vec<(usize, usize)>,
    /// Byte ranges of the outermost flow collections (`[…]`, `{…}`): values spliced there are
    /// written with flow rules.
    pub flow: Vec<(usize, usize)>,
}

/// sops writes `key: {} # note` as `key: {` / the comment lines / `}` in column 0, which go-yaml
/// reads and strict YAML parsers refuse. Returns the text with each such mapping replaced by `{}`
/// padded to the same byte length (so every offset stays valid) and the replaced ranges.
fn patch_empty_flow_maps(text: &str) -> (std::borrow::Cow<'_, str>, Vec<(usize, usize)>) {
    let bytes = text.as_bytes();
    let mut ranges = Vec::new();
    let mut lines = Vec::new();
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        lines.push((pos, line));
        pos += line.len();
    }
    let mut i = 0;
    while i < lines.len() {
        let (at, line) = lines[i];
        let body = line.trim_end_matches(['\n', '\r', ' ']);
        i += 1;
        if !body.ends_with(" {") || body.trim_start().starts_with('#') {
            continue;
        }
        let mut j = i;
        while j < lines.len() && lines[j].1.trim_start().starts_with('#') {
            j += 1;
        }
        // The `}` in column 0 is what sops writes (and what no block scalar can hold here).
        if j == i || j >= lines.len() || lines[j].1.trim_end() != "}" {
            continue;
        }
        let (close_at, close_line) = lines[j];
        let close = close_at + close_line.find('}').unwrap_or(0);
        ranges.push((at + body.len() - 1, close + 1));
        i = j + 1;
    }
    if ranges.is_empty() {
        return (std::borrow::Cow::Borrowed(text), ranges);
    }
    let mut patched = bytes.to_vec();
    for &(open, close) in &ranges {
        for b in &mut patched[open + 1..close] {
            if *b != b'\n' {
                *b = b' ';
            }
        }
        // `{` then `}` right after it, on the same line.
        patched[open + 1] = b'}';
    }
    // Only ASCII bytes were written over whole lines of comments, so the text stays UTF-8.
    (std::borrow::Cow::Owned(String::from_utf8_lossy(&patched).into_owned()), ranges)
}

pub(super) struct Builder<'a> {
    pub(super) text: &'a str,
    offsets: Offsets,
    pub(super) arena: Vec<Container>,
    anchors: std::collections::HashMap<usize, Raw>,
    order: usize,
    line_starts: Vec<usize>,
    depth: usize,
    /// Nodes copied for aliases, bounded against alias bombs.
    copied: usize,
    flow_depth: usize,
    flow: Vec<(usize, usize)>,
}

/// The most nodes aliases may copy in one stream.
const MAX_ALIAS_COPIES: usize = 1_000_000;

/// The deepest nesting accepted (the tree walk recurses once per level).
const MAX_DEPTH: usize = 256;

fn syntax(e: &saphyr_parser::ScanError) -> YamlError {
    YamlError::Syntax { line: e.marker().line(), col: e.marker().col() + 1, reason: e.info().to_owned() }
}

/// Parse every document of a YAML stream.
///
/// # Errors
/// [`YamlError`] for invalid YAML or a document that is not a mapping.
pub fn parse(text: &str) -> Result<Vec<Document>, YamlError> {
    let (patched, empty_maps) = patch_empty_flow_maps(text);
    let text: &str = &patched;
    let mut events: Vec<(Event<'_>, YSpan)> = Vec::new();
    let mut parser = Parser::new_from_str(text);
    while let Some(ev) = parser.next_event() {
        let (ev, span) = ev.map_err(|e| syntax(&e))?;
        events.push((ev, span));
    }
    let offsets = Offsets::new(text);
    let mut line_starts = vec![0];
    line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
    let mut b = Builder {
        text,
        offsets,
        arena: Vec::new(),
        anchors: std::collections::HashMap::new(),
        order: 0,
        line_starts,
        depth: 0,
        copied: 0,
        flow_depth: 0,
        flow: Vec::new(),
    };
    let scalar_spans: Vec<(usize, usize)> = events
        .iter()
        .filter(|(e, _)| matches!(e, Event::Scalar(..)))
        .map(|(_, s)| (b.offsets.byte(s.start.index()), b.offsets.byte(s.end.index())))
        .collect();
    let comments = find_comments(text, &scalar_spans);

    let mut docs = Vec::new();
    let mut i = 0;
    let mut doc_bounds = Vec::new();
    while i < events.len() {
        if let Event::DocumentStart(_) = events[i].0 {
            let start = b.offsets.byte(events[i].1.start.index());
            b.arena.clear();
            b.anchors.clear();
            let first = b.arena.len();
            let (root, next) = b.node(&events, i + 1)?;
            i = next;
            let end = match events.get(i) {
                Some((Event::DocumentEnd, s)) => b.offsets.byte(s.end.index()),
                _ => text.len(),
            };
            doc_bounds.push((start, end));
            docs.push((root, first, std::mem::take(&mut b.arena)));
        }
        i += 1;
    }
    // A document ends where the `---` line of the next one starts.
    for k in 0..doc_bounds.len() {
        let next = doc_bounds.get(k + 1).map(|b| b.0);
        doc_bounds[k].1 = next.map_or(text.len(), |n| boundary(text, doc_bounds[k].0, n));
    }
    let mut out = Vec::new();
    let count = docs.len();
    let mut prev_end = 0;
    for (n, ((root, _, arena), (start, end))) in docs.into_iter().zip(doc_bounds).enumerate() {
        b.arena = arena;
        let lower = if n == 0 { 0 } else { prev_end };
        let last = n + 1 == count;
        // Everything found in the text is sorted by position: slice out this document's share.
        let upper = if last { usize::MAX } else { end };
        let doc_comments: Vec<&RawComment> = in_range(&comments, |c| c.start, lower, upper).iter().collect();
        prev_end = end;
        let root = match root {
            Raw::Container(id) if b.arena[id].is_map => {
                b.place_comments(id, &doc_comments);
                b.finish(&Raw::Container(id))
            }
            Raw::Null => Node::Map(Vec::new()),
            _ => return Err(YamlError::NotAMapping(n + 1)),
        };
        let empty_maps = in_range(&empty_maps, |r| r.0, lower, upper).to_vec();
        let flow = in_range(&b.flow, |r| r.0, lower, upper).to_vec();
        out.push(Document { root, start, end, empty_maps, flow });
    }
    Ok(out)
}

/// The items of a list sorted by `key` whose key is in `lower..upper`.
fn in_range<T>(items: &[T], key: impl Fn(&T) -> usize, lower: usize, upper: usize) -> &[T] {
    let from = items.partition_point(|t| key(t) < lower);
    let to = items.partition_point(|t| key(t) < upper).max(from);
    &items[from..to]
}

/// Where document `i` ends: the start of the `---` line before the next document's content.
pub fn boundary(text: &str, this_start: usize, next_start: usize) -> usize {
    let region = &text[this_start.min(next_start)..next_start];
    let mut pos = this_start.min(next_start);
    let mut found = None;
    for line in region.split_inclusive('\n') {
        if line.starts_with("---") && pos > this_start {
            found = Some(pos);
        }
        pos += line.len();
    }
    found.unwrap_or(next_start)
}

impl Builder<'_> {
    fn line_of(&self, byte: usize) -> usize {
        match self.line_starts.binary_search(&byte) {
            Ok(l) => l + 1,
            Err(l) => l,
        }
    }

    /// saphyr's span of a block scalar covers its content and trailing line breaks; widen it to
    /// the `|` / `>` indicator and end it after the last content character.
    fn block_span(&self, (start, end): (usize, usize)) -> (usize, usize) {
        let text = self.text;
        let (start, end) = (start.min(text.len()), end.min(text.len()));
        let Some(indicator) = text[..start].rfind(['|', '>']) else {
            return (start, end);
        };
        let trimmed = text[start..end].trim_end_matches(['\n', '\r', ' ', '\t']).len();
        (indicator, start + trimmed)
    }

    fn next_order(&mut self) -> usize {
        self.order += 1;
        self.order
    }

    /// Build the node starting at `events[i]`; returns it and the index after it.
    fn node(&mut self, events: &[(Event<'_>, YSpan)], i: usize) -> Result<(Raw, usize), YamlError> {
        let Some((ev, span)) = events.get(i) else {
            return Ok((Raw::Null, i));
        };
        match ev {
            Event::DocumentEnd | Event::StreamEnd => Ok((Raw::Null, i)),
            Event::Scalar(v, style, anchor, tag) => {
                let mut span = (self.offsets.byte(span.start.index()), self.offsets.byte(span.end.index()));
                if matches!(style, ScalarStyle::Literal | ScalarStyle::Folded) {
                    span = self.block_span(span);
                }
                let tag = tag.as_ref().map(|t| format!("{}{}", t.handle, t.suffix));
                let raw = match resolve(v, *style, tag.as_deref()) {
                    None => Raw::Null,
                    Some(value) => Raw::Leaf(Leaf::new(value, Some(span))),
                };
                if *anchor > 0 {
                    self.anchors.insert(*anchor, raw.clone());
                }
                Ok((raw, i + 1))
            }
            Event::Alias(id) => {
                let raw = self.anchors.get(id).cloned().ok_or(YamlError::UnknownAlias(*id))?;
                let raw = match raw {
                    Raw::Container(cid) => self.deep_copy(cid),
                    other => other,
                };
                if self.copied > MAX_ALIAS_COPIES {
                    return Err(YamlError::AliasBomb(MAX_ALIAS_COPIES));
                }
                Ok((strip_spans(raw), i + 1))
            }
            Event::MappingStart(anchor, _) | Event::SequenceStart(anchor, _) => {
                let is_map = matches!(ev, Event::MappingStart(..));
                let open = self.offsets.byte(span.start.index());
                let is_flow = matches!(self.text.as_bytes().get(open), Some(b'[' | b'{'));
                self.flow_depth += usize::from(is_flow);
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err(YamlError::TooDeep(MAX_DEPTH));
                }
                let id = self.arena.len();
                self.arena.push(Container { is_map, col: usize::MAX, children: Vec::new() });
                let mut j = i + 1;
                while let Some((ev, span)) = events.get(j) {
                    if matches!(ev, Event::MappingEnd | Event::SequenceEnd) {
                        if is_flow && self.flow_depth == 1 {
                            self.flow.push((open, self.offsets.byte(span.end.index())));
                        }
                        j += 1;
                        break;
                    }
                    let start = self.offsets.byte(span.start.index());
                    let line = self.line_of(start);
                    let col = span.start.col();
                    if self.arena[id].col == usize::MAX {
                        self.arena[id].col = col;
                    }
                    let order = self.next_order();
                    let kind = if is_map {
                        let key = match ev {
                            Event::Scalar(k, ..) => k.to_string(),
                            _ => String::new(),
                        };
                        let (_, after_key) = self.node(events, j)?;
                        let (value, after) = self.node(events, after_key)?;
                        j = after;
                        ChildKind::Pair(key, value)
                    } else {
                        let (value, after) = self.node(events, j)?;
                        j = after;
                        ChildKind::Item(value)
                    };
                    self.arena[id].children.push(Child { order, line, col, kind });
                }
                self.depth -= 1;
                self.flow_depth -= usize::from(is_flow);
                let raw = Raw::Container(id);
                if *anchor > 0 {
                    let copy = self.deep_copy(id);
                    self.anchors.insert(*anchor, copy);
                }
                Ok((raw, j))
            }
            _ => Ok((Raw::Null, i + 1)),
        }
    }

    fn deep_copy(&mut self, id: usize) -> Raw {
        self.copied += self.arena[id].children.len() + 1;
        if self.copied > MAX_ALIAS_COPIES {
            return Raw::Null;
        }
        let children: Vec<(usize, usize, usize, ChildKindCopy)> = self.arena[id]
            .children
            .iter()
            .map(|c| {
                let k = match &c.kind {
                    ChildKind::Pair(k, v) => ChildKindCopy::Pair(k.clone(), v.clone()),
                    ChildKind::Item(v) => ChildKindCopy::Item(v.clone()),
                    ChildKind::Comment(_) => ChildKindCopy::Skip,
                };
                (c.order, c.line, c.col, k)
            })
            .collect();
        let new_id = self.arena.len();
        let (is_map, col) = (self.arena[id].is_map, self.arena[id].col);
        self.arena.push(Container { is_map, col, children: Vec::new() });
        for (order, line, col, k) in children {
            let kind = match k {
                ChildKindCopy::Pair(key, v) => ChildKind::Pair(key, self.copy_raw(v)),
                ChildKindCopy::Item(v) => ChildKind::Item(self.copy_raw(v)),
                ChildKindCopy::Skip => continue,
            };
            self.arena[new_id].children.push(Child { order, line, col, kind });
        }
        Raw::Container(new_id)
    }

    fn copy_raw(&mut self, raw: Raw) -> Raw {
        match raw {
            Raw::Container(id) => self.deep_copy(id),
            other => strip_spans(other),
        }
    }

    fn finish(&mut self, raw: &Raw) -> Node {
        match raw {
            Raw::Null => Node::Null,
            Raw::Leaf(l) => Node::Leaf(l.clone()),
            Raw::Container(id) => {
                let children = std::mem::take(&mut self.arena[*id].children);
                if self.arena[*id].is_map {
                    Node::Map(
                        children
                            .into_iter()
                            .map(|c| match c.kind {
                                ChildKind::Pair(k, v) => Entry::Pair(k, self.finish(&v)),
                                ChildKind::Item(v) => Entry::Pair(String::new(), self.finish(&v)),
                                ChildKind::Comment(c) => Entry::Comment(c),
                            })
                            .collect(),
                    )
                } else {
                    Node::Seq(
                        children
                            .into_iter()
                            .map(|c| match c.kind {
                                ChildKind::Pair(_, v) | ChildKind::Item(v) => self.finish(&v),
                                ChildKind::Comment(c) => Node::Comment(c),
                            })
                            .collect(),
                    )
                }
            }
        }
    }
}

enum ChildKindCopy {
    Pair(String, Raw),
    Item(Raw),
    Skip,
}

fn strip_spans(raw: Raw) -> Raw {
    match raw {
        Raw::Leaf(mut l) => {
            l.span = None;
            Raw::Leaf(l)
        }
        other => other,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::sops::tree::Value;

    #[test]
    fn parses_types_order_and_comments() {
        let text = "# head\na: 1 # inline\nb:\n    c: hello\n    # foot of b\nd:\n    - x\n    - 2.5\ne: 'true'\nf: true\ng: ~\n";
        let docs = parse(text).unwrap();
        assert_eq!(docs.len(), 1);
        let Node::Map(entries) = &docs[0].root else { panic!() };
        let shape: Vec<String> = entries
            .iter()
            .map(|e| match e {
                Entry::Pair(k, _) => format!("key {k}"),
                Entry::Comment(c) => format!("comment{}", c.text),
            })
            .collect();
        assert_eq!(shape, ["comment head", "comment inline", "key a", "key b", "key d", "key e", "key f", "key g"]);
        let b = docs[0].root.get("b").unwrap();
        let Node::Map(be) = b else { panic!() };
        assert!(matches!(&be[1], Entry::Comment(c) if c.text == " foot of b"));
        assert!(matches!(docs[0].root.get("a"), Some(Node::Leaf(Leaf { value: Value::Int(1), .. }))));
        assert!(matches!(docs[0].root.get("e"), Some(Node::Leaf(Leaf { value: Value::Str(_), .. }))));
        assert!(matches!(docs[0].root.get("f"), Some(Node::Leaf(Leaf { value: Value::Bool(true), .. }))));
        assert!(matches!(docs[0].root.get("g"), Some(Node::Null)));
        assert_eq!(super::super::yaml_scalar::parse_int("010"), Some(8));
        assert_eq!(parse_timestamp("2024-1-2").as_deref(), Some("2024-01-02T00:00:00Z"));
        assert_eq!(parse_timestamp("2024-01-02T03:04:05.500+00:00").as_deref(), Some("2024-01-02T03:04:05.5Z"));
        assert_eq!(parse_timestamp("2024-01-02t03:04:05-05:30").as_deref(), Some("2024-01-02T03:04:05-05:30"));
        assert_eq!(parse_timestamp("2024-01-02 03:04:05").as_deref(), Some("2024-01-02T03:04:05Z"));
        assert_eq!(parse_timestamp("2024-01-02T03:04:05"), None);
        assert_eq!(parse_timestamp("2024-02-30"), None);
        assert_eq!(super::super::yaml_scalar::parse_int("0x1F"), Some(31));
        assert_eq!(super::super::yaml_scalar::parse_int("09"), None);
        assert_eq!(super::super::yaml_scalar::parse_int("-1_000"), Some(-1000));
        let Some(Node::Seq(items)) = docs[0].root.get("d") else { panic!() };
        assert!(matches!(&items[1], Node::Leaf(Leaf { value: Value::Float(f), .. }) if (*f - 2.5).abs() < 1e-9));
    }

    #[test]
    fn block_scalar_spans_cover_the_indicator() {
        let text = "a: |-\n    x\n    y\n\nb: >\n    z\n";
        let docs = parse(text).unwrap();
        let span = |k: &str| match docs[0].root.get(k) {
            Some(Node::Leaf(l)) => l.span.map(|(s, e)| &text[s..e]),
            _ => None,
        };
        assert_eq!(span("a"), Some("|-\n    x\n    y"));
        assert_eq!(span("b"), Some(">\n    z"));
    }

    #[test]
    fn hostile_documents_are_refused() {
        let deep = format!("a: {}{}", "[".repeat(300), "]".repeat(300));
        assert!(parse(&deep).is_err(), "saphyr or portcullis refuses deep nesting");
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let p = i - 1;
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        assert!(matches!(parse(&bomb), Err(YamlError::AliasBomb(_))));
        assert!(parse("a: &x {b: 1}\nc: *x\n").is_ok());
    }

    #[test]
    fn multi_document_spans() {
        let text = "a: 1\n---\nb: \"x # not a comment\"\n";
        let docs = parse(text).unwrap();
        assert_eq!(docs.len(), 2);
        let Some(Node::Leaf(leaf)) = docs[1].root.get("b") else { panic!() };
        let (s, e) = leaf.span.unwrap();
        assert_eq!(&text[s..e], "\"x # not a comment\"");
        let Node::Map(entries) = &docs[1].root else { panic!() };
        assert_eq!(entries.len(), 1);
    }
}
