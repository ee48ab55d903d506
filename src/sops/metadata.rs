//! The `sops` metadata block: key groups, Shamir threshold, MAC, encryption rules.
//! Parsed from the format-neutral tree, like Go `stores.metadata.ToInternal`. Pure.

use regex::Regex;

use super::tree::{Entry, Leaf, Node, Rules, Value};

/// One age recipient and the data key (or Shamir share) encrypted to it.
#[derive(Debug, Clone)]
pub struct AgeStanza {
    pub recipient: String,
    pub enc: String,
}

/// A key group: every key in it encrypts the same data key (or the same Shamir share).
#[derive(Debug, Clone, Default)]
pub struct KeyGroup {
    pub age: Vec<AgeStanza>,
    /// Master keys of other kinds (pgp, kms, gcp_kms, azure_kv, hc_vault, hckms): portcullis
    /// cannot use them, but names them in errors.
    pub other: Vec<String>,
}

/// The parsed metadata of one SOPS file.
#[derive(Debug)]
pub struct Metadata {
    pub groups: Vec<KeyGroup>,
    pub shamir_threshold: usize,
    /// As Go re-formats it (`time.RFC3339`): the additional data of the encrypted MAC.
    pub lastmodified: String,
    pub mac: String,
    pub mac_only_encrypted: bool,
    pub version: String,
    pub rules: Rules,
}

/// Why the metadata is unusable.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("the `sops` metadata is not a mapping; the file is damaged: restore it from Git")]
    NotAMapping,
    #[error("the `sops` metadata has no `{0}`; the file is damaged or was not written by sops")]
    Missing(&'static str),
    #[error("the `sops` metadata lists no keys (no age, key_groups, …); re-encrypt the file with sops")]
    NoKeys,
    #[error(
        "the `sops` metadata sets more than one of encrypted_suffix, unencrypted_suffix, encrypted_regex, \
         unencrypted_regex, encrypted_comment_regex, unencrypted_comment_regex; sops refuses such files too"
    )]
    SeveralRules,
    #[error("`sops.{field}` is not a valid regular expression ({reason}); fix the file's metadata")]
    BadRegex { field: &'static str, reason: String },
    #[error("`sops.{0}` has the wrong type; the file is damaged: restore it from Git")]
    BadField(&'static str),
    #[error(
        "the `sops` metadata has no valid `version` (a semantic version such as 3.11.0); sops refuses \
         such files too: the file was cut or edited, restore it from Git"
    )]
    BadVersion,
    #[error(
        "`sops.lastmodified` is not an RFC 3339 time (such as 2026-01-02T15:04:05Z); sops refuses such files \
         too: restore the file from Git"
    )]
    BadLastModified,
    #[error("the flattened `sops_…` metadata keys are malformed ({0}); the file is damaged: restore it from Git")]
    BadFlatKey(String),
}

const OTHER_KEY_KINDS: [&str; 6] = ["pgp", "kms", "gcp_kms", "azure_kv", "hc_vault", "hckms"];

/// A scalar of the metadata as text (mapstructure's weak typing).
fn text(node: &Node) -> Option<String> {
    match node {
        Node::Leaf(Leaf { value, .. }) => Some(match value {
            Value::Str(s) | Value::Time(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        }),
        _ => None,
    }
}

fn field(map: &Node, key: &'static str) -> Result<Option<String>, MetadataError> {
    match map.get(key) {
        None | Some(Node::Null) => Ok(None),
        Some(n) => text(n).map(Some).ok_or(MetadataError::BadField(key)),
    }
}

fn items(node: Option<&Node>) -> Vec<&Node> {
    match node {
        Some(Node::Seq(items)) => items.iter().filter(|n| !matches!(n, Node::Comment(_))).collect(),
        _ => Vec::new(),
    }
}

fn group_from(map: &Node) -> Result<KeyGroup, MetadataError> {
    let mut group = KeyGroup::default();
    for item in items(map.get("age")) {
        let recipient = field(item, "recipient")?.unwrap_or_default();
        let enc = field(item, "enc")?.ok_or(MetadataError::Missing("age[].enc"))?;
        group.age.push(AgeStanza { recipient, enc });
    }
    for kind in OTHER_KEY_KINDS {
        for _ in items(map.get(kind)) {
            group.other.push(kind.to_owned());
        }
    }
    Ok(group)
}

fn regex(field_name: &'static str, value: Option<String>) -> Result<Option<Regex>, MetadataError> {
    value
        .filter(|v| !v.is_empty())
        .map(|v| {
            super::rules::go_regex(&v).map_err(|e| MetadataError::BadRegex { field: field_name, reason: e.to_string() })
        })
        .transpose()
}

impl Metadata {
    /// Parse the `sops` mapping.
    ///
    /// # Errors
    /// [`MetadataError`] when a required field is missing or malformed.
    pub fn from_node(node: &Node) -> Result<Self, MetadataError> {
        if !matches!(node, Node::Map(_)) {
            return Err(MetadataError::NotAMapping);
        }
        let top = group_from(node)?;
        let groups = if !top.age.is_empty() || !top.other.is_empty() {
            vec![top]
        } else {
            items(node.get("key_groups")).into_iter().map(group_from).collect::<Result<Vec<_>, _>>()?
        };
        if groups.is_empty() {
            return Err(MetadataError::NoKeys);
        }
        let shamir_threshold = match field(node, "shamir_threshold")? {
            None => 0,
            Some(t) => t.parse().map_err(|_| MetadataError::BadField("shamir_threshold"))?,
        };
        let mac_only_encrypted = match field(node, "mac_only_encrypted")?.as_deref() {
            None | Some("" | "false" | "False" | "0") => false,
            Some("true" | "True" | "1") => true,
            Some(_) => return Err(MetadataError::BadField("mac_only_encrypted")),
        };
        let non_empty =
            |k| -> Result<Option<String>, MetadataError> { Ok(field(node, k)?.filter(|v: &String| !v.is_empty())) };
        let unencrypted_suffix = non_empty("unencrypted_suffix")?;
        let encrypted_suffix = non_empty("encrypted_suffix")?;
        let unencrypted_regex = non_empty("unencrypted_regex")?;
        let encrypted_regex = non_empty("encrypted_regex")?;
        let unencrypted_comment_regex = non_empty("unencrypted_comment_regex")?;
        let encrypted_comment_regex = non_empty("encrypted_comment_regex")?;
        let count = [
            &unencrypted_suffix,
            &encrypted_suffix,
            &unencrypted_regex,
            &encrypted_regex,
            &unencrypted_comment_regex,
            &encrypted_comment_regex,
        ]
        .iter()
        .filter(|r| r.is_some())
        .count();
        if count > 1 {
            return Err(MetadataError::SeveralRules);
        }
        let rules = Rules {
            unencrypted_suffix: if count == 0 { Some("_unencrypted".to_owned()) } else { unencrypted_suffix },
            encrypted_suffix,
            unencrypted_regex: regex("unencrypted_regex", unencrypted_regex)?,
            encrypted_regex: regex("encrypted_regex", encrypted_regex)?,
            unencrypted_comment_regex: regex("unencrypted_comment_regex", unencrypted_comment_regex)?,
            encrypted_comment_regex: regex("encrypted_comment_regex", encrypted_comment_regex)?,
        };
        Ok(Self {
            groups,
            shamir_threshold,
            lastmodified: {
                // Missing or null reads as "" in sops, which Go's time.Parse refuses.
                let raw = field(node, "lastmodified")?.unwrap_or_default();
                super::rfc3339::go_reformat(&raw).ok_or(MetadataError::BadLastModified)?
            },
            mac: field(node, "mac")?.ok_or(MetadataError::Missing("mac"))?,
            mac_only_encrypted,
            version: match field(node, "version")? {
                Some(v) if valid_version(&v) => v,
                _ => return Err(MetadataError::BadVersion),
            },
            rules,
        })
    }
}

/// The top-level fields of sops's metadata.
const KNOWN_FIELDS: [&str; 19] = [
    "age",
    "key_groups",
    "pgp",
    "kms",
    "gcp_kms",
    "azure_kv",
    "hc_vault",
    "hckms",
    "shamir_threshold",
    "mac_only_encrypted",
    "unencrypted_suffix",
    "encrypted_suffix",
    "unencrypted_regex",
    "encrypted_regex",
    "unencrypted_comment_regex",
    "encrypted_comment_regex",
    "lastmodified",
    "mac",
    "version",
];

/// The deepest flattened metadata key accepted (sops's own metadata nests four levels).
const MAX_FLAT_DEPTH: usize = 16;

/// Whether sops accepts `v` as the file's version (`version.AIsNewerThanB`): a 1.x version, or a
/// semantic version (blang/semver), optionally with a leading `v`.
fn valid_version(v: &str) -> bool {
    if v.starts_with("1.") {
        return true;
    }
    let v = v.strip_prefix('v').unwrap_or(v);
    let (v, build) = v.split_once('+').map_or((v, None), |(a, b)| (a, Some(b)));
    let (core, pre) = v.split_once('-').map_or((v, None), |(a, b)| (a, Some(b)));
    let ident = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| number(p))
        && pre.is_none_or(|p| p.split('.').all(|i| ident(i) && (!i.bytes().all(|b| b.is_ascii_digit()) || number(i))))
        && build.is_none_or(|b| b.split('.').all(ident))
}

/// Rebuild the metadata mapping from flattened keys (`age__list_0__map_enc`), as the dotenv and INI
/// stores write it (Go `stores.unflattenTreeBranch`). Keys are given without the `sops_` prefix.
/// Linear in the input: list indices are bounded by the number of keys (a list cannot have more
/// items than there are keys describing them) and nesting by [`MAX_FLAT_DEPTH`].
///
/// # Errors
/// [`MetadataError::BadFlatKey`] for an index or a nesting the input cannot justify.
pub fn unflatten(flat: Vec<(String, String)>) -> Result<Node, MetadataError> {
    let count = flat.len();
    let mut root = Tmp::Null;
    for (key, value) in flat {
        let tokens = tokenize(&key);
        // Keys sops does not define are ignored (as `Metadata::from_node` ignores them) before
        // anything is built for them.
        if !matches!(tokens.first(), Some(Token::Key(k)) if KNOWN_FIELDS.contains(&k.as_str())) {
            continue;
        }
        if tokens.len() > MAX_FLAT_DEPTH {
            return Err(MetadataError::BadFlatKey(format!("nested more than {MAX_FLAT_DEPTH} levels")));
        }
        if tokens.iter().any(|t| matches!(t, Token::Index(i) if *i >= count)) {
            return Err(MetadataError::BadFlatKey(format!(
                "a list index is larger than the {count} metadata keys can describe"
            )));
        }
        let mut node = &mut root;
        for token in tokens {
            node = node.child(token);
        }
        *node = Tmp::Leaf(value);
    }
    Ok(match root {
        Tmp::Null => Node::Map(Vec::new()),
        other => other.into_node(),
    })
}

/// The mapping being rebuilt, with an index on keys so that each insertion is constant time.
enum Tmp {
    Map(Vec<(String, Tmp)>, std::collections::HashMap<String, usize>),
    Seq(Vec<Tmp>),
    Leaf(String),
    Null,
}

impl Tmp {
    fn child(&mut self, token: Token) -> &mut Tmp {
        match token {
            Token::Key(k) => {
                if !matches!(self, Self::Map(..)) {
                    *self = Self::Map(Vec::new(), std::collections::HashMap::new());
                }
                match self {
                    Self::Map(entries, index) => {
                        let i = *index.entry(k.clone()).or_insert_with(|| {
                            entries.push((k, Self::Null));
                            entries.len() - 1
                        });
                        &mut entries[i].1
                    }
                    other => other,
                }
            }
            Token::Index(i) => {
                if !matches!(self, Self::Seq(_)) {
                    *self = Self::Seq(Vec::new());
                }
                match self {
                    Self::Seq(items) => {
                        if items.len() <= i {
                            items.resize_with(i + 1, || Self::Null);
                        }
                        &mut items[i]
                    }
                    other => other,
                }
            }
        }
    }

    fn into_node(self) -> Node {
        match self {
            Self::Map(entries, _) => {
                Node::Map(entries.into_iter().map(|(k, v)| Entry::Pair(k, v.into_node())).collect())
            }
            Self::Seq(items) => Node::Seq(items.into_iter().map(Self::into_node).collect()),
            Self::Leaf(v) => Node::Leaf(Leaf::new(Value::Str(v), None)),
            Self::Null => Node::Null,
        }
    }
}

enum Token {
    Key(String),
    Index(usize),
}

fn tokenize(path: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut rest = path;
    let mut is_index = false;
    loop {
        let map = rest.find("__map_");
        let list = rest.find("__list_");
        let (cut, sep_len, next_is_index) = match (map, list) {
            (Some(m), Some(l)) if l < m => (l, 7, true),
            (Some(m), _) => (m, 6, false),
            (None, Some(l)) => (l, 7, true),
            (None, None) => (rest.len(), 0, false),
        };
        let part = &rest[..cut];
        tokens.push(if is_index {
            Token::Index(part.parse().unwrap_or(usize::MAX))
        } else {
            Token::Key(part.to_owned())
        });
        if sep_len == 0 || tokens.len() > MAX_FLAT_DEPTH {
            break;
        }
        rest = &rest[cut + sep_len..];
        is_index = next_is_index;
    }
    tokens
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn unflattens_dotenv_metadata() {
        let node = unflatten(vec![
            ("age__list_0__map_enc".into(), "E".into()),
            ("age__list_0__map_recipient".into(), "age1x".into()),
            ("lastmodified".into(), "2026-01-01T00:00:00Z".into()),
            ("version".into(), "3.11.0".into()),
            ("mac".into(), "M".into()),
            ("unencrypted_suffix".into(), "_unencrypted".into()),
        ])
        .unwrap();
        let meta = Metadata::from_node(&node).unwrap();
        assert_eq!(meta.groups.len(), 1);
        assert_eq!(meta.groups[0].age[0].recipient, "age1x");
        assert_eq!(meta.groups[0].age[0].enc, "E");
        assert_eq!(meta.rules.unencrypted_suffix.as_deref(), Some("_unencrypted"));
    }

    #[test]
    fn versions_as_sops_accepts_them() {
        for ok in ["3.11.0", "v3.7.3", "1.0", "1.x", "3.8.0-rc.1", "3.8.0+build.5", "0.0.0"] {
            assert!(valid_version(ok), "{ok}");
        }
        for bad in ["", "3.11", "3.011.0", "3.11.0-", "3.11.0-01", "x", "3.11.0+"] {
            assert!(!valid_version(bad), "{bad}");
        }
    }

    #[test]
    fn unflatten_is_bounded_by_the_input() {
        let huge = unflatten(vec![("age__list_4000000000__map_enc".into(), "x".into())]);
        assert!(matches!(huge, Err(MetadataError::BadFlatKey(_))));
        let deep = unflatten(vec![(format!("age{}", "__map_a".repeat(100)), "x".into())]);
        assert!(matches!(deep, Err(MetadataError::BadFlatKey(_))));
        let bad_index = unflatten(vec![("age__list_x__map_enc".into(), "x".into())]);
        assert!(matches!(bad_index, Err(MetadataError::BadFlatKey(_))));
        let many: Vec<(String, String)> =
            (0..100_000).map(|i| (format!("age__list_0__map_k{i}"), "v".to_owned())).collect();
        let start = std::time::Instant::now();
        assert!(unflatten(many).is_ok());
        assert!(start.elapsed() < std::time::Duration::from_secs(5), "linear in the number of keys");
    }
}
