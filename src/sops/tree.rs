//! The SOPS tree, format-neutral: ordered mappings, sequences, typed leaves and comments, and the
//! walk that decrypts it and computes its MAC exactly as sops does (`sops.go` `walkBranch`,
//! `shouldBeEncrypted`, `Decrypt`). Pure: no I/O.

use std::borrow::Cow;

use sha2::{Digest as _, Sha512};
use zeroize::Zeroize;

use super::value::{self, ValueError, ValueType};

/// A byte range in the source document, so that a store can write the plaintext back in place.
pub type Span = (usize, usize);

/// A typed scalar, as sops's Go tree holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Bytes(Vec<u8>),
    Time(String),
}

impl Value {
    /// The bytes sops feeds to the MAC for this value (Go `sops.ToBytes`).
    #[must_use]
    pub fn mac_bytes(&self) -> Cow<'_, [u8]> {
        match self {
            Self::Str(s) | Self::Time(s) => Cow::Borrowed(s.as_bytes()),
            Self::Int(i) => Cow::Owned(i.to_string().into_bytes()),
            Self::Float(f) => Cow::Owned(go_format_float(*f).into_bytes()),
            Self::Bool(true) => Cow::Borrowed(b"True"),
            Self::Bool(false) => Cow::Borrowed(b"False"),
            Self::Bytes(b) => Cow::Borrowed(b),
        }
    }
}

impl Drop for Value {
    fn drop(&mut self) {
        match self {
            Self::Str(s) | Self::Time(s) => s.zeroize(),
            Self::Bytes(b) => b.zeroize(),
            Self::Int(i) => i.zeroize(),
            Self::Float(f) => f.zeroize(),
            Self::Bool(b) => b.zeroize(),
        }
    }
}

/// Go `strconv.FormatFloat(f, 'f', -1, 64)`.
#[must_use]
pub fn go_format_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".to_owned()
    } else if f.is_infinite() {
        if f > 0.0 { "+Inf".to_owned() } else { "-Inf".to_owned() }
    } else {
        format!("{f}")
    }
}

/// Go `strconv.FormatFloat(f, 'g', -1, 64)` (`'G'` when `upper`): the shortest digits that read
/// back as `f`, in exponent form when the exponent is below -4 or at least 6 (two-digit minimum
/// exponent: `1e+06`, `1e-05`).
#[must_use]
pub fn go_format_g(f: f64, upper: bool) -> String {
    if !f.is_finite() || f == 0.0 {
        return go_format_float(f);
    }
    let e = format!("{f:e}");
    let Some((mantissa, exp)) = e.split_once('e') else {
        return e;
    };
    let Ok(exp) = exp.parse::<i32>() else {
        return e;
    };
    if (-4..6).contains(&exp) {
        return format!("{f}");
    }
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}{}{sign}{:02}", if upper { 'E' } else { 'e' }, exp.unsigned_abs())
}

/// A leaf of the tree.
#[derive(Debug, Clone, PartialEq)]
pub struct Leaf {
    pub value: Value,
    /// Where the leaf sits in the source, for stores that write back in place.
    pub span: Option<Span>,
    /// Set by [`decrypt`] when the value was decrypted.
    pub decrypted: bool,
}

impl Leaf {
    #[must_use]
    pub fn new(value: Value, span: Option<Span>) -> Self {
        Self { value, span, decrypted: false }
    }
}

/// A comment line (without its `#`).
#[derive(Debug, Clone, PartialEq)]
pub struct Comment {
    pub text: String,
    pub span: Option<Span>,
    pub decrypted: bool,
    /// Set when the comment was a sequence item `ENC[…,type:comment]` (sops stores a comment
    /// inside a list that way); `span` is then the span of that item's value.
    pub item: bool,
}

impl Drop for Comment {
    fn drop(&mut self) {
        self.text.zeroize();
    }
}

impl Comment {
    #[must_use]
    pub fn new(text: String, span: Option<Span>) -> Self {
        Self { text, span, decrypted: false, item: false }
    }
}

/// A node of the tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Map(Vec<Entry>),
    Seq(Vec<Node>),
    Leaf(Leaf),
    Comment(Comment),
    Null,
}

/// One item of a mapping: a key and its value, or a comment.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Pair(String, Node),
    Comment(Comment),
}

impl Node {
    /// The value of `key` in a mapping.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Self::Map(entries) => entries.iter().find_map(|e| match e {
                Entry::Pair(k, v) if k == key => Some(v),
                _ => None,
            }),
            _ => None,
        }
    }

    /// The string value of a leaf (strings only).
    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Leaf(Leaf { value: Value::Str(s), .. }) => Some(s),
            _ => None,
        }
    }
}

pub use super::rules::Rules;
use super::rules::{PathFlags, Scope};

/// Why the tree could not be decrypted. Names the key path, never the value.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("value at `{path}` {reason}")]
    Value { path: String, reason: ValueError },
    #[error("value at `{path}` should be encrypted but is not a string; the file was edited by hand")]
    NotAString { path: String },
    #[error(
        "value at `{path}` is an encrypted comment (type:comment) where a value belongs; sops only writes those \
         as list items, so the file was edited by hand: restore it from Git"
    )]
    CommentAsValue { path: String },
}

/// The MAC "initialization" bytes sops writes first when `mac_only_encrypted` is set (SHA-256 of "sops").
pub const MAC_ONLY_ENCRYPTED_INIT: [u8; 32] = [
    0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0x0b, 0x0b, 0x97, 0x5b,
    0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69,
];

struct Walker<'a> {
    rules: &'a Rules,
    key: &'a [u8],
    mac_only: bool,
    hash: Sha512,
    /// The key path, for error messages.
    path: Vec<String>,
    /// The key path as additional data (`a:b:`), kept up to date key by key.
    aad: String,
    /// What the rules found on the path so far, one entry per key.
    flags: Vec<PathFlags>,
    /// The comments in scope of the encryption rules, one level per mapping / sequence.
    scope: Scope,
}

/// Decrypt every encrypted value of `docs` in place (all documents of one file share one data key
/// and one MAC) and return the MAC computed over the plaintext, as uppercase hex.
///
/// # Errors
/// [`TreeError`] naming the first value that fails.
pub fn decrypt(docs: &mut [Node], rules: &Rules, key: &[u8], mac_only: bool) -> Result<String, TreeError> {
    let mut hash = Sha512::new();
    if mac_only {
        hash.update(MAC_ONLY_ENCRYPTED_INIT);
    }
    let mut w = Walker {
        rules,
        key,
        mac_only,
        hash,
        path: Vec::new(),
        aad: String::new(),
        flags: Vec::new(),
        scope: Scope::default(),
    };
    for doc in docs.iter_mut() {
        w.walk(doc)?;
    }
    Ok(hex_upper(&w.hash.finalize()))
}

fn hex_upper(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02X}");
        s
    })
}

impl Walker<'_> {
    fn walk(&mut self, node: &mut Node) -> Result<(), TreeError> {
        match node {
            Node::Map(entries) => self.walk_map(entries),
            Node::Seq(items) => self.walk_seq(items),
            Node::Leaf(leaf) => {
                if let Some(comment) = self.leaf(leaf)? {
                    *node = Node::Comment(comment);
                }
                Ok(())
            }
            Node::Comment(c) => {
                self.comment(c);
                Ok(())
            }
            Node::Null => Ok(()),
        }
    }

    fn enter(&mut self, key: &str) {
        let flags = self.flags.last().copied().unwrap_or_default().with(self.rules.key_flags(key));
        self.flags.push(flags);
        self.path.push(key.to_owned());
        self.aad.push_str(key);
        self.aad.push(':');
    }

    fn leave(&mut self) {
        self.flags.pop();
        if let Some(key) = self.path.pop() {
            self.aad.truncate(self.aad.len().saturating_sub(key.len() + 1));
        }
    }

    fn walk_map(&mut self, entries: &mut [Entry]) -> Result<(), TreeError> {
        self.scope.push();
        for entry in entries.iter_mut() {
            match entry {
                Entry::Comment(c) => {
                    self.scope.add(self.rules, &c.text);
                    self.comment(c);
                }
                Entry::Pair(k, v) => {
                    self.enter(k);
                    let result = self.walk(v);
                    if result.is_ok() && matches!(v, Node::Comment(_)) {
                        // sops would turn the value into a comment (its MAC skips it): a list of
                        // comments moved to a key's value, undetected by the MAC. Never from sops.
                        return Err(TreeError::CommentAsValue { path: self.path_display() });
                    }
                    self.leave();
                    result?;
                    self.scope.clear();
                }
            }
        }
        self.scope.pop();
        Ok(())
    }

    fn walk_seq(&mut self, items: &mut [Node]) -> Result<(), TreeError> {
        self.scope.push();
        for item in items.iter_mut() {
            let is_comment = matches!(item, Node::Comment(_));
            if let Node::Comment(c) = &*item {
                self.scope.add(self.rules, &c.text);
            }
            self.walk(item)?;
            if !is_comment {
                self.scope.clear();
            }
        }
        self.scope.pop();
        Ok(())
    }

    fn should_encrypt(&self, is_comment: bool) -> bool {
        self.rules.decide(self.flags.last().copied().unwrap_or_default(), self.scope.matches(is_comment))
    }

    fn aad(&self) -> &str {
        if self.aad.is_empty() { ":" } else { &self.aad }
    }

    fn path_display(&self) -> String {
        if self.path.is_empty() { "(top level)".to_owned() } else { self.path.join(".") }
    }

    fn comment(&mut self, c: &mut Comment) {
        let encrypted = self.should_encrypt(true);
        if !encrypted || c.text.is_empty() {
            return;
        }
        // sops keeps comments that fail to decrypt as they are (older files had clear comments).
        let Ok(d) = value::decrypt(&c.text, self.key, self.aad().as_bytes()) else {
            return;
        };
        if d.kind == ValueType::Comment {
            if let Ok(text) = std::str::from_utf8(&d.plaintext) {
                c.text = text.to_owned();
                c.decrypted = true;
            }
            return;
        }
        // A comment whose type tag says it is a value: sops decrypts it as that value and feeds
        // it to the MAC (which then fails, as the comment was not hashed when encrypting).
        if let Ok(v) = typed(d) {
            self.hash.update(v.mac_bytes());
        }
    }

    /// Decrypt a leaf; a sequence item of type `comment` comes back as the comment it stands for
    /// (as sops does: not part of the MAC, a comment again in the output).
    fn leaf(&mut self, leaf: &mut Leaf) -> Result<Option<Comment>, TreeError> {
        let encrypted = self.should_encrypt(false);
        if encrypted {
            let Value::Str(s) = &leaf.value else {
                return Err(TreeError::NotAString { path: self.path_display() });
            };
            // sops leaves empty strings unencrypted.
            if !s.is_empty() {
                let d = value::decrypt(s, self.key, self.aad().as_bytes())
                    .map_err(|reason| TreeError::Value { path: self.path_display(), reason })?;
                if d.kind == ValueType::Comment {
                    let text = String::from_utf8(d.plaintext.to_vec()).map_err(|_| TreeError::Value {
                        path: self.path_display(),
                        reason: ValueError::BadTypedValue("comment"),
                    })?;
                    let mut comment = Comment::new(text, leaf.span);
                    comment.decrypted = true;
                    comment.item = true;
                    return Ok(Some(comment));
                }
                leaf.value = typed(d).map_err(|reason| TreeError::Value { path: self.path_display(), reason })?;
                leaf.decrypted = true;
            }
        }
        if !self.mac_only || encrypted {
            self.hash.update(leaf.value.mac_bytes());
        }
        Ok(None)
    }
}

/// Turn decrypted bytes into the typed value sops would hold (Go `aes.Cipher.Decrypt`).
fn typed(d: value::Decrypted) -> Result<Value, ValueError> {
    let text = std::str::from_utf8(&d.plaintext);
    Ok(match d.kind {
        ValueType::Str | ValueType::Comment => match text {
            Ok(t) => Value::Str(t.to_owned()),
            Err(_) => Value::Bytes(d.plaintext.to_vec()),
        },
        ValueType::Bytes => Value::Bytes(d.plaintext.to_vec()),
        ValueType::Int => {
            Value::Int(text.ok().and_then(|t| t.parse::<i64>().ok()).ok_or(ValueError::BadTypedValue("int"))?)
        }
        ValueType::Float => Value::Float(text.ok().and_then(parse_go_float).ok_or(ValueError::BadTypedValue("float"))?),
        ValueType::Bool => Value::Bool(match text {
            Ok("1" | "t" | "T" | "TRUE" | "true" | "True") => true,
            Ok("0" | "f" | "F" | "FALSE" | "false" | "False") => false,
            _ => return Err(ValueError::BadTypedValue("bool")),
        }),
        ValueType::Time => Value::Time(text.map_err(|_| ValueError::BadTypedValue("time"))?.to_owned()),
    })
}

fn parse_go_float(t: &str) -> Option<f64> {
    match t {
        "+Inf" | "Inf" | "inf" | "+inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => t.parse().ok(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn s(v: &str) -> Node {
        Node::Leaf(Leaf::new(Value::Str(v.to_owned()), None))
    }

    #[test]
    fn mac_bytes_match_go() {
        assert_eq!(&*Value::Float(1234.56789).mac_bytes(), b"1234.56789");
        assert_eq!(&*Value::Float(3.0).mac_bytes(), b"3");
        assert_eq!(&*Value::Float(1e21).mac_bytes(), b"1000000000000000000000");
        assert_eq!(&*Value::Bool(true).mac_bytes(), b"True");
        assert_eq!(&*Value::Int(-5).mac_bytes(), b"-5");
        assert_eq!(&*Value::Float(-0.0).mac_bytes(), b"-0");
    }

    #[test]
    fn format_g_matches_go() {
        // Expected values from Go's strconv.FormatFloat(f, 'g', -1, 64).
        for (f, go) in [
            (100.0, "100"),
            (1_234_567.0, "1.234567e+06"),
            (123_456.0, "123456"),
            (-0.0, "-0"),
            (0.0, "0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1e21, "1e+21"),
            (1.5e-7, "1.5e-07"),
            (1e300, "1e+300"),
            (5e-324, "5e-324"),
            (9_223_372_036_854_775_807.0, "9.223372036854776e+18"),
            (-9_223_372_036_854_775_808.0, "-9.223372036854776e+18"),
            (250_000.0, "250000"),
            (0.1, "0.1"),
            (f64::INFINITY, "+Inf"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(go_format_g(f, false), go, "{f}");
        }
        assert_eq!(go_format_g(1_234_567.0, true), "1.234567E+06");
    }

    #[test]
    fn decrypt_walk_and_mac() {
        let key = [3u8; 32];
        let enc = value::encrypt(b"42", "int", &key, &[9; 32], b"db:port:").unwrap();
        let mut docs = vec![Node::Map(vec![Entry::Pair(
            "db".into(),
            Node::Map(vec![Entry::Pair("port".into(), s(&enc)), Entry::Pair("host_unencrypted".into(), s("h"))]),
        )])];
        let rules = Rules { unencrypted_suffix: Some("_unencrypted".into()), ..Rules::default() };
        let mac = decrypt(&mut docs, &rules, &key, false).unwrap();
        let mut expect = Sha512::new();
        expect.update(b"42");
        expect.update(b"h");
        assert_eq!(mac, hex_upper(&expect.finalize()));
        let port = docs[0].get("db").and_then(|d| d.get("port")).unwrap();
        assert!(matches!(port, Node::Leaf(Leaf { value: Value::Int(42), decrypted: true, .. })));
    }
}
