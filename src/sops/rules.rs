//! The encryption rules of a SOPS file (Go `Tree.shouldBeEncrypted`), evaluated incrementally: each
//! key and each comment is matched once when the walk reaches it, so that deciding for a value
//! costs constant time however deep it sits or however many comments precede it. Pure.

use regex::Regex;

/// Which values are encrypted: the rules stored in the file's metadata (one at most).
#[derive(Debug, Default)]
pub struct Rules {
    pub unencrypted_suffix: Option<String>,
    pub encrypted_suffix: Option<String>,
    pub unencrypted_regex: Option<Regex>,
    pub encrypted_regex: Option<Regex>,
    pub unencrypted_comment_regex: Option<Regex>,
    pub encrypted_comment_regex: Option<Regex>,
}

/// What the key rules found on a path: whether any key so far matches each rule.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct PathFlags {
    unencrypted_suffix: bool,
    encrypted_suffix: bool,
    unencrypted_regex: bool,
    encrypted_regex: bool,
}

impl PathFlags {
    /// The flags of a path extended by a key with flags `key`.
    pub(super) fn with(self, key: Self) -> Self {
        Self {
            unencrypted_suffix: self.unencrypted_suffix || key.unencrypted_suffix,
            encrypted_suffix: self.encrypted_suffix || key.encrypted_suffix,
            unencrypted_regex: self.unencrypted_regex || key.unencrypted_regex,
            encrypted_regex: self.encrypted_regex || key.encrypted_regex,
        }
    }
}

/// Whether the comments in scope match the comment rules.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct CommentMatches {
    unencrypted: bool,
    encrypted: bool,
}

/// One level of sops's comments stack: which rules its comments matched.
#[derive(Debug, Clone, Copy, Default)]
struct Level {
    unencrypted: bool,
    encrypted: bool,
    /// `encrypted` without the level's last comment (a comment never encrypts itself).
    encrypted_before_last: bool,
}

/// sops's comments stack, kept as match results: one level per mapping or sequence being walked,
/// and for each level the OR of the levels above it (which cannot change while it is walked).
#[derive(Debug, Default)]
pub(super) struct Scope {
    levels: Vec<Level>,
    above: Vec<CommentMatches>,
}

impl Scope {
    pub(super) fn push(&mut self) {
        let above = match (self.above.last(), self.levels.last()) {
            (Some(a), Some(l)) => {
                CommentMatches { unencrypted: a.unencrypted || l.unencrypted, encrypted: a.encrypted || l.encrypted }
            }
            _ => CommentMatches::default(),
        };
        self.above.push(above);
        self.levels.push(Level::default());
    }

    pub(super) fn pop(&mut self) {
        self.levels.pop();
        self.above.pop();
    }

    /// A comment joins the current level.
    pub(super) fn add(&mut self, rules: &Rules, comment: &str) {
        let (unencrypted, encrypted) = rules.comment_flags(comment);
        if let Some(l) = self.levels.last_mut() {
            l.encrypted_before_last = l.encrypted;
            l.unencrypted |= unencrypted;
            l.encrypted |= encrypted;
        }
    }

    /// A value was walked: the comments before it no longer apply.
    pub(super) fn clear(&mut self) {
        if let Some(l) = self.levels.last_mut() {
            *l = Level::default();
        }
    }

    /// The comment matches for a value (or, with `is_comment`, for the comment just added).
    pub(super) fn matches(&self, is_comment: bool) -> CommentMatches {
        let above = self.above.last().copied().unwrap_or_default();
        let level = self.levels.last().copied().unwrap_or_default();
        CommentMatches {
            unencrypted: above.unencrypted || level.unencrypted,
            encrypted: above.encrypted || if is_comment { level.encrypted_before_last } else { level.encrypted },
        }
    }
}

impl Rules {
    /// The key rules one key matches.
    pub(super) fn key_flags(&self, key: &str) -> PathFlags {
        PathFlags {
            unencrypted_suffix: self.unencrypted_suffix.as_ref().is_some_and(|s| key.ends_with(s.as_str())),
            encrypted_suffix: self.encrypted_suffix.as_ref().is_some_and(|s| key.ends_with(s.as_str())),
            unencrypted_regex: self.unencrypted_regex.as_ref().is_some_and(|re| re.is_match(key)),
            encrypted_regex: self.encrypted_regex.as_ref().is_some_and(|re| re.is_match(key)),
        }
    }

    /// The comment rules one comment matches: (unencrypted, encrypted).
    fn comment_flags(&self, comment: &str) -> (bool, bool) {
        (
            self.unencrypted_comment_regex.as_ref().is_some_and(|re| re.is_match(comment)),
            self.encrypted_comment_regex.as_ref().is_some_and(|re| re.is_match(comment)),
        )
    }

    /// Go `Tree.shouldBeEncrypted`, from what the path and the comments in scope matched.
    pub(super) fn decide(&self, path: PathFlags, comments: CommentMatches) -> bool {
        let mut encrypted = true;
        if self.unencrypted_suffix.is_some() && path.unencrypted_suffix {
            encrypted = false;
        }
        if self.encrypted_suffix.is_some() {
            encrypted = path.encrypted_suffix;
        }
        if self.unencrypted_regex.is_some() && path.unencrypted_regex {
            encrypted = false;
        }
        if self.encrypted_regex.is_some() {
            encrypted = path.encrypted_regex;
        }
        if self.unencrypted_comment_regex.is_some() && comments.unencrypted {
            encrypted = false;
        }
        if self.encrypted_comment_regex.is_some() {
            encrypted = comments.encrypted;
        }
        encrypted
    }
}

/// Compile a rule's regular expression with Go's RE2 meaning (sops uses Go's `regexp`): `\w`,
/// `\d`, `\s` and `\b` are ASCII-only in Go (Unicode in Rust's `regex`), `\Q…\E` quotes a
/// literal, and inside a bracket class `[`, `&` and `~` are plain characters.
///
/// # Errors
/// When the translated pattern does not compile.
pub fn go_regex(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(&translate_go(pattern))
}

const WORD: &str = "0-9A-Za-z_";
const SPACE: &str = "\\t\\n\\f\\r ";

fn translate_go(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut chars = pattern.chars().peekable();
    // Inside a bracket class; `class_start` while at its first position (where `]` is literal).
    let (mut in_class, mut class_start) = (false, false);
    while let Some(c) = chars.next() {
        let at_start = std::mem::take(&mut class_start);
        match c {
            '\\' => {
                let Some(e) = chars.next() else {
                    out.push('\\');
                    break;
                };
                let class = |set: &str, negated: bool| match (in_class, negated) {
                    (true, false) => set.to_owned(),
                    (_, true) => format!("[^{set}]"),
                    (false, false) => format!("[{set}]"),
                };
                match e {
                    'w' | 'W' => out.push_str(&class(WORD, e == 'W')),
                    'd' | 'D' => out.push_str(&class("0-9", e == 'D')),
                    's' | 'S' => out.push_str(&class(SPACE, e == 'S')),
                    'b' if !in_class => out.push_str("(?-u:\\b)"),
                    'B' if !in_class => out.push_str("(?-u:\\B)"),
                    'Q' if !in_class => {
                        let mut literal = String::new();
                        while let Some(q) = chars.next() {
                            if q == '\\' && chars.peek() == Some(&'E') {
                                chars.next();
                                break;
                            }
                            literal.push(q);
                        }
                        out.push_str(&regex::escape(&literal));
                    }
                    other => {
                        out.push('\\');
                        out.push(other);
                    }
                }
            }
            '[' if !in_class => {
                out.push('[');
                in_class = true;
                if chars.peek() == Some(&'^') {
                    chars.next();
                    out.push('^');
                }
                class_start = true;
            }
            '[' if chars.peek() == Some(&':') => {
                // A POSIX class `[:alpha:]`, the same in both.
                out.push('[');
                for p in chars.by_ref() {
                    out.push(p);
                    if p == ']' {
                        break;
                    }
                }
            }
            ']' if in_class && !at_start => {
                out.push(']');
                in_class = false;
            }
            '[' | ']' | '&' | '~' if in_class => {
                out.push('\\');
                out.push(c);
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn regexes_have_go_meaning() {
        let re = go_regex(r"^\w+$").unwrap();
        assert!(re.is_match("data_1") && !re.is_match("naïve"));
        assert!(!go_regex(r"^\d$").unwrap().is_match("٣"));
        assert!(!go_regex(r"^\s$").unwrap().is_match("\u{a0}"));
        assert!(go_regex(r"^[\w.-]+$").unwrap().is_match("a.b-c") && !go_regex(r"^[\w]+$").unwrap().is_match("é"));
        assert!(go_regex(r"^[^\W]+$").unwrap().is_match("abc"));
        // ASCII word boundaries: `é` is not a word character to Go.
        assert!(go_regex(r"\bkey\b").unwrap().is_match("ékeyé"));
        assert!(!regex::Regex::new(r"\bkey\b").unwrap().is_match("ékeyé"), "Rust's own \\b is Unicode");
        assert!(go_regex(r"^\Qa.b*\E$").unwrap().is_match("a.b*") && !go_regex(r"^\Qa.b\E$").unwrap().is_match("axb"));
        assert!(go_regex(r"^[]a]+$").unwrap().is_match("]a"));
        assert!(go_regex(r"^[a[]+$").unwrap().is_match("[a"));
        assert!(go_regex(r"^[a&&b]+$").unwrap().is_match("&"));
        assert!(go_regex(r"^[[:alpha:]]+$").unwrap().is_match("abc"));
        assert!(go_regex(r"^\pL+$").unwrap().is_match("naïve"));
    }

    /// The decision for a value at `path` with `comments` (one list per level) in scope.
    fn should_encrypt(rules: &Rules, path: &[&str], comments: &[&[&str]], is_comment: bool) -> bool {
        let flags = path.iter().fold(PathFlags::default(), |f, k| f.with(rules.key_flags(k)));
        let mut scope = Scope::default();
        for level in comments {
            scope.push();
            for c in *level {
                scope.add(rules, c);
            }
        }
        rules.decide(flags, scope.matches(is_comment))
    }

    #[test]
    fn rules_follow_sops() {
        let rules = Rules { unencrypted_suffix: Some("_unencrypted".into()), ..Rules::default() };
        assert!(should_encrypt(&rules, &["a"], &[], false));
        assert!(!should_encrypt(&rules, &["a_unencrypted", "b"], &[], false));
        let rules = Rules { encrypted_regex: Some(Regex::new("^data$").unwrap()), ..Rules::default() };
        assert!(should_encrypt(&rules, &["data", "x"], &[], false));
        assert!(!should_encrypt(&rules, &["metadata"], &[], false));
        let rules = Rules { encrypted_comment_regex: Some(Regex::new("sops:enc").unwrap()), ..Rules::default() };
        assert!(should_encrypt(&rules, &["a"], &[&[" sops:enc"]], false));
        assert!(!should_encrypt(&rules, &["a"], &[&[" sops:enc"]], true));
        assert!(should_encrypt(&rules, &["a"], &[&[" sops:enc", " next"]], true));
        assert!(should_encrypt(&rules, &["a"], &[&[" sops:enc"], &[" x"]], true));
        assert!(!should_encrypt(&rules, &["a"], &[&[]], false));
        let rules = Rules { unencrypted_comment_regex: Some(Regex::new("clear").unwrap()), ..Rules::default() };
        assert!(!should_encrypt(&rules, &["a"], &[&[" clear"], &[]], false));
        assert!(should_encrypt(&rules, &["a"], &[&[" other"]], false));
    }
}
