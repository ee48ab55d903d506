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

/// One child in document order: its order, line, column and container.
struct Item {
    order: usize,
    line: usize,
    col: usize,
    container: usize,
    depth: usize,
}

impl Builder<'_> {
    /// Place comments where sops's go-yaml store puts them: an inline comment before the item of
    /// its line; a full-line comment before the next item at its indentation, or at the end of the
    /// deepest enclosing block at its indentation. Linear: every comment finds its place by binary
    /// search, and each container's children are rebuilt once.
    pub(super) fn place_comments(&mut self, root: usize, comments: &[&RawComment]) {
        let mut items: Vec<Item> = Vec::new();
        let mut parent: Vec<Option<usize>> = vec![None; self.arena.len()];
        self.collect(root, 0, &mut parent, &mut items);
        items.sort_by_key(|i| i.order);
        // (container, index of the child the comment goes before, or usize::MAX for the end)
        let mut placed: Vec<(usize, usize, Comment)> = Vec::with_capacity(comments.len());
        for c in comments {
            let text = self.text[c.start + 1..c.end].to_owned();
            let comment = Comment::new(text, Some((c.start, c.end)));
            // Items are in document order, so their lines never decrease.
            let before = items.partition_point(|i| i.line < c.line);
            let through = items.partition_point(|i| i.line <= c.line);
            if c.inline {
                // The deepest child starting on this line (the last of the deepest).
                if let Some(item) = items[before..through].iter().max_by_key(|i| i.depth) {
                    placed.push((item.container, self.child_index(item.container, item.order), comment));
                    continue;
                }
            }
            let next = items.get(through);
            let prev = before.checked_sub(1).and_then(|p| items.get(p));
            match next {
                Some(item) if c.col <= item.col || prev.is_none() => {
                    placed.push((item.container, self.child_index(item.container, item.order), comment));
                }
                _ => {
                    // A foot comment: the deepest container of the previous item indented at most as
                    // much as the comment.
                    let mut target = prev.map_or(root, |p| p.container);
                    while self.arena[target].col > c.col {
                        match parent[target] {
                            Some(up) => target = up,
                            None => break,
                        }
                    }
                    if self.arena[target].col > c.col {
                        target = root;
                    }
                    let children = &self.arena[target].children;
                    let at = children.partition_point(|ch| ch.line <= c.line);
                    placed.push((target, if at == children.len() { usize::MAX } else { at }, comment));
                }
            }
        }
        // Stable: comments for the same place keep their document order.
        placed.sort_by_key(|(container, at, _)| (*container, *at));
        let mut rest = placed.into_iter().peekable();
        while let Some(&(container, ..)) = rest.peek() {
            let old = std::mem::take(&mut self.arena[container].children);
            let mut children = Vec::with_capacity(old.len());
            for (i, child) in old.into_iter().enumerate() {
                while let Some((.., comment)) = rest.next_if(|(c, at, _)| *c == container && *at <= i) {
                    children.push(comment_child(comment));
                }
                children.push(child);
            }
            while let Some((_, _, comment)) = rest.next_if(|(c, ..)| *c == container) {
                children.push(comment_child(comment));
            }
            self.arena[container].children = children;
        }
    }

    /// The index of the child with `order` (orders increase along a container's children).
    fn child_index(&self, container: usize, order: usize) -> usize {
        let children = &self.arena[container].children;
        let i = children.partition_point(|c| c.order < order);
        if children.get(i).is_some_and(|c| c.order == order) { i } else { usize::MAX }
    }

    fn collect(&self, id: usize, depth: usize, parent: &mut Vec<Option<usize>>, out: &mut Vec<Item>) {
        for child in &self.arena[id].children {
            out.push(Item { order: child.order, line: child.line, col: child.col, container: id, depth });
            let raw = match &child.kind {
                ChildKind::Pair(_, r) | ChildKind::Item(r) => r,
                ChildKind::Comment(_) => continue,
            };
            if let Raw::Container(cid) = raw {
                if let Some(p) = parent.get_mut(*cid) {
                    *p = Some(id);
                }
                self.collect(*cid, depth + 1, parent, out);
            }
        }
    }
}

fn comment_child(comment: Comment) -> Child {
    Child { order: 0, line: 0, col: 0, kind: ChildKind::Comment(comment) }
}
