//! Globs for images and namespaces, and the `match` block of a policy (pure).
//!
//! `*` matches any run of characters within one path segment (never `/`), `**` matches any run
//! across segments, `?` one character other than `/`. Everything else is literal, and a glob
//! always matches the whole string: it is anchored at both ends.

use std::fmt;

use crate::image::{ImageGlobError, ImageRef, canonical_glob};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    Any,      // ?
    Star,     // *
    AnyDepth, // **
}

/// A compiled glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
    tokens: Vec<Token>,
}

/// A glob that cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    #[error("empty pattern")]
    Empty,
    #[error("pattern {0:?} has `***`: use `**` to match across path segments")]
    TripleStar(String),
    #[error(transparent)]
    Image(#[from] ImageGlobError),
}

impl Glob {
    /// Compile a glob matched against a whole string.
    pub fn new(pattern: &str) -> Result<Self, GlobError> {
        if pattern.is_empty() {
            return Err(GlobError::Empty);
        }
        if pattern.contains("***") {
            return Err(GlobError::TripleStar(pattern.to_owned()));
        }
        let mut tokens = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            tokens.push(match c {
                '*' if chars.peek() == Some(&'*') => {
                    chars.next();
                    Token::AnyDepth
                }
                '*' => Token::Star,
                '?' => Token::Any,
                c => Token::Literal(c),
            });
        }
        Ok(Self { pattern: pattern.to_owned(), tokens })
    }

    /// Compile an image glob, canonicalised exactly as image references are
    /// ([`canonical_glob`]): `nginx` → `docker.io/library/nginx`, `GHCR.IO:443/acme/*` →
    /// `ghcr.io/acme/*`. Globs that can never match (a tag or digest, an upper-case path) are
    /// refused with the fix.
    pub fn image(pattern: &str) -> Result<Self, GlobError> {
        Self::new(&canonical_glob(pattern)?)
    }

    /// The pattern as compiled (after normalisation).
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether the glob matches all of `text`.
    pub fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        // dp[j]: tokens[..i] match text[..j]. Linear in tokens × text, no backtracking blow-up.
        let mut dp = vec![false; text.len() + 1];
        dp[0] = true;
        for token in &self.tokens {
            let mut next = vec![false; text.len() + 1];
            match token {
                Token::Literal(c) => {
                    for j in 0..text.len() {
                        next[j + 1] = dp[j] && text[j] == *c;
                    }
                }
                Token::Any => {
                    for j in 0..text.len() {
                        next[j + 1] = dp[j] && text[j] != '/';
                    }
                }
                Token::Star => {
                    next[0] = dp[0];
                    for j in 0..text.len() {
                        next[j + 1] = dp[j + 1] || (next[j] && text[j] != '/');
                    }
                }
                Token::AnyDepth => {
                    next[0] = dp[0];
                    for j in 0..text.len() {
                        next[j + 1] = dp[j + 1] || next[j];
                    }
                }
            }
            dp = next;
        }
        dp[text.len()]
    }

    /// Whether the glob matches the image's `registry/repository`.
    pub fn matches_image(&self, image: &ImageRef) -> bool {
        self.matches(&image.name())
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

/// Whether any glob of the list matches; an empty list matches nothing.
pub fn any_matches(globs: &[Glob], text: &str) -> bool {
    globs.iter().any(|g| g.matches(text))
}

/// The compiled `match` block: which requests a policy applies to.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    /// Namespace globs; empty = every namespace (and cluster-scoped objects).
    pub namespaces: Vec<Glob>,
    /// Namespace globs that are never matched.
    pub exclude_namespaces: Vec<Glob>,
    /// Kind names (`Deployment`); empty = every kind.
    pub kinds: Vec<String>,
    /// Operations (`CREATE`, `UPDATE`, `DELETE`, `CONNECT`); empty = the policy kind's default.
    pub operations: Vec<String>,
}

impl Selector {
    /// Whether a request for an object of `kind` in `namespace` (None = cluster-scoped)
    /// doing `operation` is selected.
    pub fn selects(&self, namespace: Option<&str>, kind: &str, operation: &str) -> bool {
        let ns_ok = match namespace {
            Some(ns) => {
                (self.namespaces.is_empty() || any_matches(&self.namespaces, ns))
                    && !any_matches(&self.exclude_namespaces, ns)
            }
            None => self.namespaces.is_empty(),
        };
        let kind_ok = self.kinds.is_empty() || self.kinds.iter().any(|k| k == kind);
        let op_ok = self.operations.is_empty() || self.operations.iter().any(|o| o == operation);
        ns_ok && kind_ok && op_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(p: &str) -> Glob {
        Glob::new(p).expect("glob")
    }

    #[test]
    fn star_stays_in_its_segment() {
        assert!(g("ghcr.io/acme/*").matches("ghcr.io/acme/app"));
        assert!(!g("ghcr.io/acme/*").matches("ghcr.io/acme/team/app"));
        assert!(g("ghcr.io/acme/*").matches("ghcr.io/acme/a"));
        assert!(g("payments-*").matches("payments-eu"));
        assert!(!g("payments-*").matches("payments"));
        assert!(g("*-prod").matches("eu-prod"));
    }

    #[test]
    fn double_star_crosses_segments() {
        let glob = g("registry.example.com/team/**");
        assert!(glob.matches("registry.example.com/team/app"));
        assert!(glob.matches("registry.example.com/team/a/b/c"));
        assert!(!glob.matches("registry.example.com/team"));
        assert!(!glob.matches("registry.example.com/teamx/app"));
        assert!(!glob.matches("evil.com/registry.example.com/team/app"));
        assert!(g("**").matches("anything/at/all"));
    }

    #[test]
    fn anchored_and_literal() {
        assert!(!g("ghcr.io/acme/app").matches("ghcr.io/acme/app2"));
        assert!(!g("ghcr.io/acme/app").matches("xghcr.io/acme/app"));
        assert!(!g("ghcr.io/acme/app").matches("ghcr.io/acme/app/sub"));
        assert!(g("ghcr.io/acme/app?").matches("ghcr.io/acme/app2"));
        // '.' is literal, not a regex wildcard.
        assert!(!g("ghcr.io/acme/app").matches("ghcrxio/acme/app"));
        assert_eq!(Glob::new(""), Err(GlobError::Empty));
        assert!(Glob::new("a/***").is_err());
    }

    #[test]
    fn image_globs_are_normalised() {
        assert_eq!(Glob::image("nginx").expect("g").as_str(), "docker.io/library/nginx");
        assert_eq!(Glob::image("acme/*").expect("g").as_str(), "docker.io/acme/*");
        assert_eq!(Glob::image("index.docker.io/acme/**").expect("g").as_str(), "docker.io/acme/**");
        assert_eq!(Glob::image("localhost:5000/**").expect("g").as_str(), "localhost:5000/**");
        assert_eq!(Glob::image("**").expect("g").as_str(), "**");
        assert_eq!(Glob::image("docker.io/nginx").expect("g").as_str(), "docker.io/library/nginx");
        assert!(Glob::image("ghcr.io/acme/app:*").is_err());
        let nginx = ImageRef::parse("nginx:1.27").expect("ref");
        assert!(Glob::image("nginx").expect("g").matches_image(&nginx));
        assert!(Glob::image("docker.io/library/*").expect("g").matches_image(&nginx));
    }

    #[test]
    fn selectors() {
        let s = Selector {
            namespaces: vec![g("prod"), g("payments-*")],
            exclude_namespaces: vec![g("payments-sandbox")],
            kinds: vec!["Deployment".into()],
            operations: vec![],
        };
        assert!(s.selects(Some("prod"), "Deployment", "CREATE"));
        assert!(s.selects(Some("payments-eu"), "Deployment", "UPDATE"));
        assert!(!s.selects(Some("payments-sandbox"), "Deployment", "CREATE"));
        assert!(!s.selects(Some("dev"), "Deployment", "CREATE"));
        assert!(!s.selects(Some("prod"), "Pod", "CREATE"));
        assert!(!s.selects(None, "Deployment", "CREATE"));
        assert!(Selector::default().selects(None, "Namespace", "DELETE"));
    }

    #[test]
    fn long_inputs_do_not_blow_up() {
        let glob = g("*a*a*a*a*a*a*a*a*b");
        assert!(!glob.matches(&"a".repeat(2000)));
    }
}
