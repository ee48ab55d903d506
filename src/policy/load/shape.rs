//! A linear check of a policy file's nesting before the YAML parser sees it.
//!
//! The YAML parser reads a whole document before its recursion limit applies, and its scanner
//! takes time quadratic in the depth of flow collections (a 1 MiB file can nest 500,000 deep) (`[[[[…` or `{a: {a: …`): 16,000 levels
//! took 11 s. Policies are shallow documents, so a file whose collections nest deeper than
//! [`MAX_DEPTH`] is refused at once, naming the line; so is a file whose aliases expand to more
//! than [`MAX_EXPANDED_NODES`] nodes (the "billion laughs": ten aliases of ten aliases of …).

use std::collections::HashMap;

use saphyr_parser::{Event, Parser};

/// Deepest nesting of collections accepted in a policy file.
pub const MAX_DEPTH: usize = 64;

/// Most nodes a policy file may hold once its aliases are expanded.
pub const MAX_EXPANDED_NODES: u64 = 1_000_000;

/// What is wrong with a file's shape, and the 1-based line where it was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    TooDeep(usize),
    TooManyNodes(usize),
}

/// Whether collections nest deeper than [`MAX_DEPTH`], or aliases expand the file to more than
/// [`MAX_EXPANDED_NODES`] nodes (the "billion laughs"). The file is read by a streaming YAML
/// parser (linear in the depth), which stops at the first excess; a syntax error stops the check
/// too (the policy parser reports it with its own message, having read no deeper than the error).
pub fn check(text: &str) -> Result<(), Shape> {
    let mut parser = Parser::new_from_str(text);
    // Per open collection: its anchor and the nodes it holds so far (aliases expanded).
    let mut open: Vec<(usize, u64)> = vec![(0, 0)];
    let mut anchored: HashMap<usize, u64> = HashMap::new();
    while let Some(next) = parser.next_event() {
        let (event, span) = match next {
            Ok(next) => next,
            // The scanner reads ahead through flow collections, and stops at 256 levels.
            Err(e) if e.info().contains("recursion limit") => return Err(Shape::TooDeep(e.marker().line())),
            Err(_) => return Ok(()),
        };
        let line = span.start.line();
        let nodes = match event {
            Event::MappingStart(anchor, _) | Event::SequenceStart(anchor, _) => {
                if open.len() > MAX_DEPTH {
                    return Err(Shape::TooDeep(line));
                }
                open.push((anchor, 1));
                continue;
            }
            Event::MappingEnd | Event::SequenceEnd => match open.pop() {
                Some((anchor, nodes)) => {
                    anchored.insert(anchor, nodes);
                    nodes
                }
                None => continue,
            },
            Event::Scalar(_, _, anchor, _) => {
                anchored.insert(anchor, 1);
                1
            }
            Event::Alias(anchor) => anchored.get(&anchor).copied().unwrap_or(1),
            _ => continue,
        };
        if let Some((_, total)) = open.last_mut() {
            *total = total.saturating_add(nodes);
            if *total > MAX_EXPANDED_NODES {
                return Err(Shape::TooManyNodes(line));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_nesting_outside_quotes_and_comments() {
        let deep = |n: usize| format!("a: {}1{}\n", "[".repeat(n), "]".repeat(n));
        // The top-level mapping is one level.
        assert_eq!(check(&deep(MAX_DEPTH - 1)), Ok(()));
        assert_eq!(check(&deep(MAX_DEPTH)), Err(Shape::TooDeep(1)));
        assert_eq!(check(&deep(500_000)), Err(Shape::TooDeep(1)));
        assert_eq!(check(&format!("x: 1\ny: {}\n", "{a: ".repeat(100_000))), Err(Shape::TooDeep(2)));
        let quoted = format!("a: '{}'\nb: \"{}\"\n# {}\n", "[".repeat(100), "{\\\"".repeat(100), "[".repeat(100));
        assert_eq!(check(&quoted), Ok(()));
        assert_eq!(check(&format!("m: '{}''s'\n", "[".repeat(100))), Ok(()));
    }

    /// How someone would hide brackets from the check: an apostrophe inside a plain word must not
    /// open a quoted scalar that swallows the next lines.
    #[test]
    fn an_apostrophe_in_a_word_does_not_hide_brackets() {
        let text = format!("message: it's fine\nmatch: {}1{}\n", "[".repeat(100), "]".repeat(100));
        assert_eq!(check(&text), Err(Shape::TooDeep(2)));
        let text = format!("message: a #' comment\nmatch: {}\n", "{a: ".repeat(100));
        assert_eq!(check(&text), Err(Shape::TooDeep(2)));
    }

    #[test]
    fn aliases_are_counted_expanded() {
        let mut text = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for level in 1..=9 {
            let prev = format!("*a{}", level - 1);
            text.push_str(&format!("a{level}: &a{level} [{}]\n", [prev.as_str(); 10].join(", ")));
        }
        // Up to a5 the file expands to about 10^6 nodes / 10: accepted; a6 is ten times more.
        let upto = |n: usize| text.lines().take(n + 1).flat_map(|l| [l, "\n"]).collect::<String>();
        assert_eq!(check(&upto(4)), Ok(()));
        assert_eq!(check(&upto(5)), Err(Shape::TooManyNodes(6)));
        assert_eq!(check(&text), Err(Shape::TooManyNodes(6)));
        let reuse = "anchor: &x {a: 1, b: [1, 2]}\nuse: [*x, *x, *x]\n";
        assert_eq!(check(reuse), Ok(()));
    }
}
