//! Comments of a YAML document: found in the source text (outside scalars) and placed in the
//! tree where sops's go-yaml store puts them, so that comment-based encryption rules and comment
//! decryption see the same order as sops. Pure.

use super::tree::Comment;
use super::yaml::{Builder, Child, ChildKind, Raw};

/// A comment found in the source: byte range of `#…`, its line, column, and whether code precedes it.
#[derive(Debug, Clone)]
pub(super) struct RawComment {
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) line: usize,
    pub(super) col: usize,
    pub(super) inline: bool,
}

/// Find `#` comments outside scalars.
pub(super) fn find_comments(text: &str, scalars: &[(usize, usize)]) -> Vec<RawComment> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut s = 0;
    let mut line_start = 0;
    let mut line = 1;
    let mut i = 0;
    while i < bytes.len() {
        while s < scalars.len() && scalars[s].1 <= i {
            s += 1;
        }
        if s < scalars.len() && scalars[s].0 <= i && i < scalars[s].1 {
            // Skip the scalar, counting lines.
            let end = scalars[s].1.min(bytes.len());
            for (k, &c) in bytes.iter().enumerate().take(end).skip(i) {
                if c == b'\n' {
                    line += 1;
                    line_start = k + 1;
                }
            }
            i = end;
            continue;
        }
        match bytes[i] {
            b'\n' => {
                line += 1;
                line_start = i + 1;
            }
            b'#' if i == line_start || matches!(bytes[i - 1], b' ' | b'\t') => {
                let end = text[i..].find('\n').map_or(text.len(), |n| i + n);
                let end = if end > i && bytes[end - 1] == b'\r' { end - 1 } else { end };
                let inline = !text[line_start..i].trim().is_empty();
                let col = text[line_start..i].chars().count();
                out.push(RawComment { start: i, end, line, col, inline });
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

impl Builder<'_> {
    /// Place comments where sops's go-yaml store puts them: an inline comment before the item of
    /// its line; a full-line comment before the next item at its indentation, or at the end of the
    /// deepest enclosing block at its indentation.
    pub(super) fn place_comments(&mut self, root: usize, comments: &[&RawComment]) {
        // Document order of every child: (order, line, col, container, parents).
        let mut items: Vec<(usize, usize, usize, usize, Vec<usize>)> = Vec::new();
        self.collect(root, &mut Vec::new(), &mut items);
        items.sort_by_key(|(o, ..)| *o);
        for c in comments {
            let text = self.text[c.start + 1..c.end].to_owned();
            let comment = Comment::new(text, Some((c.start, c.end)));
            // Items are in document order, so their lines never decrease.
            let before = items.partition_point(|(_, line, ..)| *line < c.line);
            let through = items.partition_point(|(_, line, ..)| *line <= c.line);
            if c.inline {
                // deepest child starting on this line
                if let Some((order, _, _, container, _)) = items[before..through].iter().max_by_key(|(.., p)| p.len()) {
                    self.insert_before(*container, *order, comment, c.line);
                    continue;
                }
            }
            let next = items.get(through);
            let prev = before.checked_sub(1).and_then(|p| items.get(p));
            match next {
                Some((order, _, col, container, _)) if c.col <= *col || prev.is_none() => {
                    self.insert_before(*container, *order, comment, c.line);
                }
                _ => {
                    // A foot comment: the deepest container of the previous item indented at most as
                    // much as the comment.
                    let target = prev.map_or(root, |(_, _, _, container, parents)| {
                        parents
                            .iter()
                            .chain(std::iter::once(container))
                            .rev()
                            .find(|id| self.arena[**id].col <= c.col)
                            .copied()
                            .unwrap_or(root)
                    });
                    self.append(target, comment, c.line);
                }
            }
        }
    }

    fn collect(&self, id: usize, parents: &mut Vec<usize>, out: &mut Vec<(usize, usize, usize, usize, Vec<usize>)>) {
        for child in &self.arena[id].children {
            out.push((child.order, child.line, child.col, id, parents.clone()));
            let raw = match &child.kind {
                ChildKind::Pair(_, r) | ChildKind::Item(r) => r,
                ChildKind::Comment(_) => continue,
            };
            if let Raw::Container(cid) = raw {
                parents.push(id);
                self.collect(*cid, parents, out);
                parents.pop();
            }
        }
    }

    fn insert_before(&mut self, container: usize, order: usize, comment: Comment, line: usize) {
        let children = &mut self.arena[container].children;
        let pos = children.iter().position(|c| c.order == order).unwrap_or(children.len());
        children.insert(pos, Child { order: 0, line, col: 0, kind: ChildKind::Comment(comment) });
    }

    fn append(&mut self, container: usize, comment: Comment, line: usize) {
        let children = &mut self.arena[container].children;
        let pos = children.iter().position(|c| c.line > line).unwrap_or(children.len());
        children.insert(pos, Child { order: 0, line, col: 0, kind: ChildKind::Comment(comment) });
    }
}
