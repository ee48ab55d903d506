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
    #[error("{resource}: Secret {field}.{key} decrypts to bytes that are not text; keep such values in `data`")]
    NotText { resource: String, field: &'static str, key: String },
    #[error(transparent)]
    Parse(#[from] Error),
    #[error("the KRM input is not a config.kubernetes.io/v1 ResourceList (kind: ResourceList, items: [...])")]
    NotResourceList,
    #[error(
        "{resource}: an encrypted resource must be named by metadata.name, not metadata.generateName: \
         the MAC covers values, not key names, so `namespace:` renamed to `generateName:` would keep \
         the MAC valid and drop the namespace it was encrypted for"
    )]
    GenerateName { resource: String },
    #[error(
        "{resource}: Secret {field}.{key} is a SOPS document embedded in a Secret; its MAC does not \
         cover the Secret's namespace, so a copy decrypts in any namespace: encrypt the whole Secret \
         with sops instead, or pass --allow-unbound-embedded to accept that"
    )]
    UnboundEmbedded { resource: String, field: &'static str, key: String },
    #[error(
        "{resource}: encrypted without metadata.namespace, so nothing binds it to a namespace and it \
         would land wherever the reconciler applies it; add metadata.namespace before encrypting, or \
         pass --allow-no-namespace to accept that"
    )]
    NoNamespace { resource: String },
    #[error(
        "{resource}: encrypted for namespace {namespace:?}, which is not an expected namespace ({expected}); the MAC \
         binds the values of metadata.name and metadata.namespace but not which key holds which, so a file with the \
         two keys swapped still decrypts: restore the file, or add the namespace to --expect-namespace"
    )]
    UnexpectedNamespace { resource: String, namespace: String, expected: String },
}

/// `Kind namespace/name (document N)` for messages.
fn describe(node: &Node, index: usize) -> String {
    let kind = node.get("kind").and_then(Node::as_str).unwrap_or("resource");
    let meta = node.get("metadata");
    let name = meta.and_then(|m| m.get("name")).and_then(Node::as_str).unwrap_or("(no name)");
    match meta.and_then(|m| m.get("namespace")).and_then(Node::as_str) {
        Some(ns) => format!("{kind} {ns}/{name} (document {})", index + 1),
        None => format!("{kind} {name} (document {})", index + 1),
    }
}

fn take_sops(node: &mut Node) -> Option<Node> {
    let Node::Map(entries) = node else {
        return None;
    };
    let pos = entries.iter().position(|e| matches!(e, Entry::Pair(k, _) if k == "sops"))?;
    match entries.remove(pos) {
        Entry::Pair(_, meta) => Some(meta),
        Entry::Comment(_) => None,
    }
}

/// Decrypt one resource in place. Returns whether it carried SOPS metadata.
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
    if !text.contains("sops") {
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

/// Decrypt Secret `data` / `stringData` values that are SOPS documents. The new values are marked
/// decrypted, so that a splice writes them. Returns how many were decrypted.
fn decrypt_secret_values(
    node: &mut Node,
    resource: &str,
    ids: &Identities,
    opts: &Options,
) -> Result<usize, ManifestError> {
    let mut count = 0;
    if node.get("kind").and_then(Node::as_str) != Some("Secret") {
        return Ok(count);
    }
    let Node::Map(entries) = node else {
        return Ok(count);
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
            let Some(sniffed) = std::str::from_utf8(&text).ok().and_then(embedded_format) else {
                continue;
            };
            if !opts.allow_unbound_embedded {
                return Err(ManifestError::UnboundEmbedded { resource: resource.to_owned(), field, key: key.clone() });
            }
            // As Flux does: the key's extension names the format, anything else is a binary
            // file (sops's JSON binary store).
            let format = match Format::from_path(std::path::Path::new(key.as_str())) {
                Format::Binary if sniffed == Format::Json => Format::Binary,
                Format::Binary => sniffed,
                named => named,
            };
            let plain = super::decrypt(&text, format, format, ids, opts).map_err(|source| ManifestError::Resource {
                resource: format!("{resource}: Secret {field}.{key}"),
                source,
            })?;
            let new = if is_b64 {
                STANDARD.encode(plain.as_slice())
            } else {
                String::from_utf8(plain.to_vec()).map_err(|_| ManifestError::NotText {
                    resource: resource.to_owned(),
                    field,
                    key: key.clone(),
                })?
            };
            leaf.value = Value::Str(new);
            leaf.decrypted = true;
            count += 1;
        }
    }
    Ok(count)
}

/// Decrypt one resource and its Secret values; returns whether anything changed.
///
/// A resource that carries SOPS metadata keeps its namespace binding only if its MAC covers a
/// `metadata.namespace` VALUE read from that key: so `generateName` is refused (a renamed
/// `namespace:` key keeps the MAC) and so is a missing namespace, unless allowed.
fn resource(item: &mut Node, i: usize, ids: &Identities, opts: &Options) -> Result<bool, ManifestError> {
    let name = describe(item, i);
    let encrypted = decrypt_resource(item, ids, opts)
        .map_err(|source| ManifestError::Resource { resource: name.clone(), source })?;
    if encrypted {
        // Checked on the decrypted values (metadata may have been encrypted too).
        let meta = item.get("metadata");
        if meta.and_then(|m| m.get("generateName")).is_some() {
            return Err(ManifestError::GenerateName { resource: name });
        }
        if !opts.allow_no_namespace && meta.and_then(|m| m.get("namespace")).and_then(Node::as_str).is_none() {
            return Err(ManifestError::NoNamespace { resource: name });
        }
    }
    let embedded = decrypt_secret_values(item, &name, ids, opts)? > 0;
    if encrypted || embedded {
        expected_namespace(item, &name, &opts.expect_namespaces)?;
    }
    Ok(embedded || encrypted)
}

/// With expected namespaces, a decrypted resource that names another namespace is refused (one
/// without a namespace goes where the reconciler applies it, and was already allowed).
fn expected_namespace(item: &Node, name: &str, expected: &[String]) -> Result<(), ManifestError> {
    let namespace = item.get("metadata").and_then(|m| m.get("namespace")).and_then(Node::as_str);
    match namespace {
        Some(ns) if !expected.is_empty() && !expected.iter().any(|e| e == ns) => {
            Err(ManifestError::UnexpectedNamespace {
                resource: name.to_owned(),
                namespace: ns.to_owned(),
                expected: expected.join(", "),
            })
        }
        _ => Ok(()),
    }
}

/// Whether a document is a `kind: …List` with `items`.
fn is_list(node: &Node) -> bool {
    node.get("kind").and_then(Node::as_str).is_some_and(|k| k.ends_with("List"))
        && matches!(node.get("items"), Some(Node::Seq(_)))
}

/// Decrypt the items of a List or ResourceList; returns whether any item changed.
fn decrypt_list_items(root: &mut Node, ids: &Identities, opts: &Options) -> Result<bool, ManifestError> {
    let mut changed = false;
    let Node::Map(entries) = root else {
        return Ok(false);
    };
    for e in entries.iter_mut() {
        if let Entry::Pair(k, Node::Seq(items)) = e
            && k == "items"
        {
            for (i, item) in items.iter_mut().filter(|n| matches!(n, Node::Map(_))).enumerate() {
                changed |= resource(item, i, ids, opts)?;
            }
        }
    }
    Ok(changed)
}

/// Decrypt a stream of manifests: multi-document YAML (`kind: List` documents included), or a
/// JSON object or `List`.
///
/// # Errors
/// [`ManifestError`] naming the first resource that fails.
pub fn decrypt_stream(input: &[u8], ids: &Identities, opts: &Options) -> Result<Zeroizing<Vec<u8>>, ManifestError> {
    let text = std::str::from_utf8(input).map_err(|_| Error::NotText)?;
    if text.trim_start().starts_with('{') {
        let mut root = json::parse(text).map_err(Error::from)?;
        if is_list(&root) {
            decrypt_list_items(&mut root, ids, opts)?;
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
        let end = if i + 1 < count { yaml::boundary(text, docs[i].start, docs[i + 1].start) } else { text.len() };
        let body = &text[at..end];
        if is_list(&docs[i].root) {
            // A `kind: List` document: its items are decrypted one by one and the list re-emitted.
            if decrypt_list_items(&mut docs[i].root, ids, opts)? {
                if body.starts_with("---") {
                    out.push_str("---\n");
                }
                out.push_str(&yaml_emit::emit(&[&docs[i].root]));
            } else {
                out.push_str(body);
            }
        } else if resource(&mut docs[i].root, i, ids, opts)? {
            let root = std::mem::replace(&mut docs[i].root, Node::Null);
            let empty_maps = std::mem::take(&mut docs[i].empty_maps);
            let flow = std::mem::take(&mut docs[i].flow);
            let one = shift(yaml::Document { root, start: 0, end: body.len(), empty_maps, flow }, at);
            out.push_str(&yaml_emit::splice(body, &[one]));
        } else {
            out.push_str(body);
        }
        at = end;
    }
    out.push_str(&text[at..]);
    Ok(Zeroizing::new(out.into_bytes()))
}

/// Re-base the spans of a document parsed from the whole stream onto its own text.
fn shift(mut doc: yaml::Document, offset: usize) -> yaml::Document {
    fn rebase(span: Option<(usize, usize)>, offset: usize) -> Option<(usize, usize)> {
        span.and_then(|(s, e)| Some((s.checked_sub(offset)?, e.checked_sub(offset)?)))
    }
    fn walk(n: &mut Node, offset: usize) {
        match n {
            Node::Map(entries) => {
                for e in entries {
                    match e {
                        Entry::Pair(_, v) => walk(v, offset),
                        Entry::Comment(c) => c.span = rebase(c.span, offset),
                    }
                }
            }
            Node::Seq(items) => items.iter_mut().for_each(|i| walk(i, offset)),
            Node::Leaf(Leaf { span, .. }) => *span = rebase(*span, offset),
            Node::Comment(c) => c.span = rebase(c.span, offset),
            Node::Null => {}
        }
    }
    walk(&mut doc.root, offset);
    doc.empty_maps =
        doc.empty_maps.iter().filter_map(|&(s, e)| Some((s.checked_sub(offset)?, e.checked_sub(offset)?))).collect();
    doc
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
        yaml::parse(text).map_err(Error::from)?.into_iter().next().map_or(Node::Null, |d| d.root)
    };
    if root.get("kind").and_then(Node::as_str) != Some("ResourceList") {
        return Err(ManifestError::NotResourceList);
    }
    decrypt_list_items(&mut root, ids, opts)?;
    let out = if is_json { json::emit(&root) } else { yaml_emit::emit(&[&root]) };
    Ok(Zeroizing::new(out.into_bytes()))
}
