//! Streams of Kubernetes manifests and KRM ResourceLists: every resource carrying `sops`
//! metadata is decrypted on its own (its own data key and MAC); Secret `data` / `stringData`
//! values that are themselves SOPS documents are decrypted; everything else passes through
//! unchanged. Pure.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use super::metadata::Metadata;
use super::tree::{Entry, Leaf, Node, Value};
use super::{Error, Format, Identities, Options, json, yaml, yaml_emit};

/// Why a manifest stream could not be decrypted; names the resource.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{resource}: {source}")]
    Resource {
        resource: String,
        #[source]
        source: Error,
    },
    #[error("{resource}: Secret {field}.{key} is not valid base64")]
    BadBase64 {
        resource: String,
        field: &'static str,
        key: String,
    },
    #[error(transparent)]
    Parse(#[from] Error),
    #[error(
        "the KRM input is not a config.kubernetes.io/v1 ResourceList (kind: ResourceList, items: [...])"
    )]
    NotResourceList,
}

/// A replacement of a source span by a new YAML scalar.
type Edit = ((usize, usize), String);

/// `Kind/namespace/name (document N)` for messages.
fn describe(node: &Node, index: usize) -> String {
    let kind = node
        .get("kind")
        .and_then(Node::as_str)
        .unwrap_or("resource");
    let meta = node.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Node::as_str)
        .unwrap_or("(no name)");
    match meta.and_then(|m| m.get("namespace")).and_then(Node::as_str) {
        Some(ns) => format!("{kind} {ns}/{name} (document {})", index + 1),
        None => format!("{kind} {name} (document {})", index + 1),
    }
}

fn take_sops(node: &mut Node) -> Option<Node> {
    let Node::Map(entries) = node else {
        return None;
    };
    let pos = entries
        .iter()
        .position(|e| matches!(e, Entry::Pair(k, _) if k == "sops"))?;
    match entries.remove(pos) {
        Entry::Pair(_, meta) => Some(meta),
        Entry::Comment(_) => None,
    }
}

/// Decrypt one resource in place. Returns whether anything changed.
fn decrypt_resource(node: &mut Node, ids: &Identities, opts: &Options) -> Result<bool, Error> {
    if let Some(meta_node) = take_sops(node) {
        let meta = Metadata::from_node(&meta_node)?;
        super::open(std::slice::from_mut(node), &meta, ids, opts)?;
        return Ok(true);
    }
    Ok(false)
}

/// Guess the format of an embedded SOPS document.
fn embedded_format(text: &str) -> Option<Format> {
    if !text.contains("ENC[AES256_GCM,") && !text.contains("sops") {
        return None;
    }
    let t = text.trim_start();
    if t.starts_with('{') && t.contains("\"sops\"") {
        Some(Format::Json)
    } else if text.lines().any(|l| l.starts_with("sops_mac=")) {
        Some(Format::Dotenv)
    } else if text.lines().any(|l| l.trim() == "[sops]") {
        Some(Format::Ini)
    } else if text.lines().any(|l| l.starts_with("sops:")) {
        Some(Format::Yaml)
    } else {
        None
    }
}

/// Decrypt Secret `data` / `stringData` values that are SOPS documents. Returns the edits made as
/// (span, new YAML scalar) for documents that are written back in place.
fn decrypt_secret_values(
    node: &mut Node,
    resource: &str,
    ids: &Identities,
    opts: &Options,
) -> Result<Vec<Edit>, ManifestError> {
    let mut edits = Vec::new();
    if node.get("kind").and_then(Node::as_str) != Some("Secret") {
        return Ok(edits);
    }
    let Node::Map(entries) = node else {
        return Ok(edits);
    };
    for entry in entries.iter_mut() {
        let Entry::Pair(field, Node::Map(values)) = entry else {
            continue;
        };
        let (field, is_b64): (&'static str, bool) = match field.as_str() {
            "data" => ("data", true),
            "stringData" => ("stringData", false),
            _ => continue,
        };
        for value in values.iter_mut() {
            let Entry::Pair(key, Node::Leaf(leaf)) = value else {
                continue;
            };
            let Value::Str(s) = &leaf.value else { continue };
            let text: Zeroizing<Vec<u8>> = if is_b64 {
                let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
                match STANDARD.decode(compact) {
                    Ok(b) => Zeroizing::new(b),
                    Err(_) => continue,
                }
            } else {
                Zeroizing::new(s.as_bytes().to_vec())
            };
            let Ok(embedded) = std::str::from_utf8(&text) else {
                continue;
            };
            let Some(format) = embedded_format(embedded) else {
                continue;
            };
            let plain = super::decrypt(&text, format, format, ids, opts).map_err(|source| {
                ManifestError::Resource {
                    resource: format!("{resource}: Secret {field}.{key}"),
                    source,
                }
            })?;
            let new = if is_b64 {
                STANDARD.encode(plain.as_slice())
            } else {
                String::from_utf8(plain.to_vec()).map_err(|_| ManifestError::BadBase64 {
                    resource: resource.to_owned(),
                    field,
                    key: key.clone(),
                })?
            };
            if let Some(span) = leaf.span {
                edits.push((span, yaml_emit::str_scalar(&new)));
            }
            leaf.value = Value::Str(new);
            leaf.decrypted = false;
        }
    }
    Ok(edits)
}

/// Decrypt a stream of manifests: multi-document YAML, or a JSON object / `List`.
///
/// # Errors
/// [`ManifestError`] naming the first resource that fails.
pub fn decrypt_stream(
    input: &[u8],
    ids: &Identities,
    opts: &Options,
) -> Result<Zeroizing<Vec<u8>>, ManifestError> {
    let text = std::str::from_utf8(input).map_err(|_| Error::NotText)?;
    if text.trim_start().starts_with('{') {
        let mut root = json::parse(text).map_err(Error::from)?;
        let is_list = root.get("items").is_some()
            && root
                .get("kind")
                .and_then(Node::as_str)
                .is_some_and(|k| k.ends_with("List"));
        if is_list {
            if let Node::Map(entries) = &mut root {
                for e in entries.iter_mut() {
                    if let Entry::Pair(k, Node::Seq(items)) = e
                        && k == "items"
                    {
                        for (i, item) in items.iter_mut().enumerate() {
                            resource(item, i, ids, opts)?;
                        }
                    }
                }
            }
        } else {
            resource(&mut root, 0, ids, opts)?;
        }
        return Ok(Zeroizing::new(json::emit(&root).into_bytes()));
    }
    let mut docs = yaml::parse(text).map_err(Error::from)?;
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    let count = docs.len();
    for i in 0..count {
        let end = if i + 1 < count {
            yaml::boundary(text, docs[i].start, docs[i + 1].start)
        } else {
            text.len()
        };
        let start = at;
        let name = describe(&docs[i].root, i);
        let changed = decrypt_resource(&mut docs[i].root, ids, opts).map_err(|source| {
            ManifestError::Resource {
                resource: name.clone(),
                source,
            }
        })?;
        let edits = decrypt_secret_values(&mut docs[i].root, &name, ids, opts)?;
        let body = &text[start..end];
        if changed {
            let one = yaml::Document {
                root: std::mem::replace(&mut docs[i].root, Node::Null),
                start: 0,
                end: body.len(),
            };
            let mut spliced = yaml_emit::splice(&shift_text(body), &[shift(one, start)]);
            // secret values edits were recorded with absolute spans; re-apply on the decrypted body
            if !edits.is_empty() {
                let reparsed = yaml::parse(&spliced).map_err(Error::from)?;
                if let Some(mut d) = reparsed.into_iter().next() {
                    let e2 = decrypt_secret_values(&mut d.root, &name, ids, opts)?;
                    spliced = apply(&spliced, 0, e2);
                }
            }
            out.push_str(&spliced);
        } else {
            out.push_str(&apply(body, start, edits));
        }
        at = end;
    }
    out.push_str(&text[at..]);
    Ok(Zeroizing::new(out.into_bytes()))
}

fn shift_text(body: &str) -> String {
    body.to_owned()
}

/// Re-base the spans of a document parsed from the whole stream onto its own text.
fn shift(mut doc: yaml::Document, offset: usize) -> yaml::Document {
    fn walk(n: &mut Node, offset: usize) {
        match n {
            Node::Map(entries) => {
                for e in entries {
                    match e {
                        Entry::Pair(_, v) => walk(v, offset),
                        Entry::Comment(c) => {
                            c.span = c.span.map(|(s, e)| (s - offset.min(s), e - offset.min(e)))
                        }
                    }
                }
            }
            Node::Seq(items) => items.iter_mut().for_each(|i| walk(i, offset)),
            Node::Leaf(Leaf { span, .. }) => {
                *span = span.map(|(s, e)| (s - offset.min(s), e - offset.min(e)))
            }
            Node::Comment(c) => {
                c.span = c.span.map(|(s, e)| (s - offset.min(s), e - offset.min(e)))
            }
            Node::Null => {}
        }
    }
    walk(&mut doc.root, offset);
    doc
}

fn apply(body: &str, offset: usize, mut edits: Vec<Edit>) -> String {
    edits.sort_by_key(|((s, _), _)| *s);
    let mut out = String::with_capacity(body.len());
    let mut at = 0;
    for ((s, e), repl) in edits {
        let (s, e) = (s.saturating_sub(offset), e.saturating_sub(offset));
        if s < at || e > body.len() {
            continue;
        }
        out.push_str(&body[at..s]);
        out.push_str(&repl);
        at = e;
    }
    out.push_str(&body[at..]);
    out
}

fn resource(
    item: &mut Node,
    i: usize,
    ids: &Identities,
    opts: &Options,
) -> Result<(), ManifestError> {
    let name = describe(item, i);
    decrypt_resource(item, ids, opts).map_err(|source| ManifestError::Resource {
        resource: name.clone(),
        source,
    })?;
    decrypt_secret_values(item, &name, ids, opts)?;
    Ok(())
}

/// Run as a KRM function: a `config.kubernetes.io/v1` ResourceList in (YAML or JSON), the same
/// ResourceList out with its `items` decrypted.
///
/// # Errors
/// [`ManifestError`] naming the first item that fails.
pub fn decrypt_resource_list(
    input: &[u8],
    ids: &Identities,
    opts: &Options,
) -> Result<Zeroizing<Vec<u8>>, ManifestError> {
    let text = std::str::from_utf8(input).map_err(|_| Error::NotText)?;
    let is_json = text.trim_start().starts_with('{');
    let mut root = if is_json {
        json::parse(text).map_err(Error::from)?
    } else {
        yaml::parse(text)
            .map_err(Error::from)?
            .into_iter()
            .next()
            .map(|d| d.root)
            .unwrap_or(Node::Null)
    };
    if root.get("kind").and_then(Node::as_str) != Some("ResourceList") {
        return Err(ManifestError::NotResourceList);
    }
    let Node::Map(entries) = &mut root else {
        return Err(ManifestError::NotResourceList);
    };
    for e in entries.iter_mut() {
        if let Entry::Pair(k, Node::Seq(items)) = e
            && k == "items"
        {
            for (i, item) in items
                .iter_mut()
                .filter(|n| matches!(n, Node::Map(_)))
                .enumerate()
            {
                resource(item, i, ids, opts)?;
            }
        }
    }
    let out = if is_json {
        json::emit(&root)
    } else {
        yaml_emit::emit(&[&root])
    };
    Ok(Zeroizing::new(out.into_bytes()))
}
