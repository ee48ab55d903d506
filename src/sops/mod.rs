//! SOPS decryption with age keys, compatible with the Go `sops` 3.x file format.
//!
//! - [`value`]: one `ENC[AES256_GCM,…]` value; [`tree`]: the format-neutral tree, the encryption
//!   rules and the decrypting walk with its MAC; [`metadata`]: the `sops` block; [`keys`]: age
//!   identities, data key and Shamir shares.
//! - Stores: [`yaml`] (+ [`yaml_emit`]), [`json`], [`dotenv`], [`ini`]; binary files use the JSON
//!   store with one `data` key.
//! - [`manifests`]: streams of Kubernetes manifests and KRM ResourceLists; [`detect`]: finding
//!   ciphertext left in an admitted object.
//!
//! Everything here is pure (bytes in, bytes out); files, environment variables and Secrets are
//! read by the command line (`cli::decrypt`).
//!
//! Decryption follows Go sops 3.x: the data key is recovered from an age stanza (or, with several
//! key groups, from Shamir shares of it); each value is AES-256-GCM with a 32-byte nonce and the
//! key path (`a:b:c:`) as additional data; the MAC is the SHA-512 of the plaintext leaves in tree
//! order (only the encrypted ones with `mac_only_encrypted`), stored encrypted with
//! `lastmodified` as additional data, and always verified. Files written with
//! `mac_only_encrypted` are refused unless [`Options::allow_mac_only_encrypted`] is set, since
//! their MAC does not bind the unencrypted values (a Secret's name and namespace).
//!
//! Not supported: master keys other than age X25519 (PGP, cloud KMS, Vault, age SSH keys and
//! plugins) — they are named in errors.

pub mod binding;
pub mod detect;
pub mod dotenv;
pub mod ini;
pub mod json;
pub mod keys;
pub mod manifests;
pub mod metadata;
pub mod rfc3339;
pub mod rules;
pub mod tree;
pub mod value;
pub mod yaml;
mod yaml_comments;
pub mod yaml_emit;
pub mod yaml_quote;
pub mod yaml_scalar;

use zeroize::Zeroizing;

pub use keys::Identities;
use metadata::Metadata;
use tree::{Entry, Node, Value};

/// The file formats sops stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Yaml,
    Json,
    Dotenv,
    Ini,
    Binary,
}

impl Format {
    /// The format sops infers from a file name (`binary` for unknown extensions). Case-sensitive,
    /// as sops's check is: `x.YAML` is a binary-store file.
    #[must_use]
    pub fn from_path(path: &std::path::Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => Self::Yaml,
            Some("json") => Self::Json,
            Some("env") => Self::Dotenv,
            Some("ini") => Self::Ini,
            _ => Self::Binary,
        }
    }

    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Yaml => "yaml",
            Self::Json => "json",
            Self::Dotenv => "dotenv",
            Self::Ini => "ini",
            Self::Binary => "binary",
        }
    }
}

/// Policy knobs of a decryption.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Accept files whose MAC covers only the encrypted values (`mac_only_encrypted: true`).
    pub allow_mac_only_encrypted: bool,
    /// In manifest streams, accept encrypted resources without `metadata.namespace` (they land
    /// wherever the reconciler applies them).
    pub allow_no_namespace: bool,
    /// In manifest streams, decrypt SOPS documents embedded in a Secret's `data`/`stringData` (the
    /// Flux style): their MAC does not cover the enclosing Secret's namespace.
    pub allow_unbound_embedded: bool,
    /// In manifest streams, the namespaces encrypted resources may name (empty: any). The MAC
    /// covers the values of `metadata.name` and `metadata.namespace` but not which key holds which,
    /// so swapping the two keys keeps it valid; an expected namespace closes that.
    pub expect_namespaces: Vec<String>,
}

/// Why a document could not be decrypted. Messages name the problem and the fix; they never hold
/// plaintext or key material.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not valid UTF-8 text; is the input type right? (use --input-type)")]
    NotText,
    #[error(transparent)]
    Yaml(#[from] yaml::YamlError),
    #[error(transparent)]
    Json(#[from] json::JsonError),
    #[error(transparent)]
    Dotenv(#[from] dotenv::DotenvError),
    #[error(transparent)]
    Ini(#[from] ini::IniError),
    #[error("no `sops` metadata found: the file is not encrypted with sops (or the input type is wrong)")]
    NoMetadata,
    #[error(transparent)]
    Metadata(#[from] metadata::MetadataError),
    #[error(transparent)]
    Key(#[from] keys::KeyError),
    #[error(transparent)]
    Tree(#[from] tree::TreeError),
    #[error(
        "the file sets mac_only_encrypted: its MAC does not cover the unencrypted values (such as \
         metadata.name and metadata.namespace), so it could be renamed or moved undetected; re-encrypt it \
         without --mac-only-encrypted, or pass --allow-mac-only-encrypted to accept it"
    )]
    MacOnlyEncrypted,
    #[error("the stored MAC cannot be decrypted ({0}); the sops metadata was tampered with: restore the file from Git")]
    MacUnreadable(value::ValueError),
    #[error(
        "MAC mismatch: the file was changed after it was encrypted (a value edited, added, removed or \
         reordered, or the resource renamed or moved to another namespace); restore it from Git or re-encrypt it"
    )]
    MacMismatch,
    #[error("the binary store has no string `data` key; the file was not written by `sops` for a binary file")]
    NoBinaryData,
    #[error(
        "cannot write the value {0} as JSON (JSON has no infinities or NaN; sops refuses it too): \
         use --output-type yaml"
    )]
    JsonUnsupported(&'static str),
    #[error(
        "cannot use complex value in dotenv file; offending key {0} (sops refuses it too): a dotenv \
         file holds only KEY=value lines, use --output-type yaml or json"
    )]
    DotenvComplex(String),
    #[error(
        "cannot write the document as INI: every top-level value must be a mapping (a section); sops \
         refuses it too (\"Section values should always be TreeBranches\"): use --output-type yaml or json"
    )]
    IniNotSections,
    #[error("cannot write a {from} document as {to}")]
    Conversion { from: &'static str, to: &'static str },
}

/// Decrypt the documents of one file in place and verify the MAC.
///
/// # Errors
/// [`Error`] for a missing key, a tampered value or a MAC mismatch.
pub fn open(docs: &mut [Node], meta: &Metadata, ids: &Identities, opts: &Options) -> Result<(), Error> {
    if meta.mac_only_encrypted && !opts.allow_mac_only_encrypted {
        return Err(Error::MacOnlyEncrypted);
    }
    let key = keys::data_key(meta, ids)?;
    let computed = tree::decrypt(docs, &meta.rules, &key, meta.mac_only_encrypted)?;
    let stored = value::decrypt(&meta.mac, &key, meta.lastmodified.as_bytes()).map_err(Error::MacUnreadable)?;
    if stored.plaintext.as_slice() != computed.as_bytes() {
        return Err(Error::MacMismatch);
    }
    Ok(())
}

/// Remove the top-level `sops` entry of every document; return the first document's.
fn take_sops(docs: &mut [Node]) -> Option<Node> {
    let mut found = None;
    for doc in docs.iter_mut() {
        if let Node::Map(entries) = doc
            && let Some(pos) = entries.iter().position(|e| matches!(e, Entry::Pair(k, _) if k == "sops"))
        {
            let Entry::Pair(_, meta) = entries.remove(pos) else {
                continue;
            };
            if found.is_none() {
                found = Some(meta);
            }
        }
    }
    found
}

/// Decrypt one SOPS file.
///
/// # Errors
/// [`Error`] naming what is wrong and how to fix it.
pub fn decrypt(
    input: &[u8],
    input_format: Format,
    output_format: Format,
    ids: &Identities,
    opts: &Options,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let text = std::str::from_utf8(input).map_err(|_| Error::NotText)?;
    match input_format {
        Format::Yaml => {
            let mut docs = yaml::parse(text)?;
            let mut roots: Vec<Node> = docs.iter_mut().map(|d| std::mem::replace(&mut d.root, Node::Null)).collect();
            let with_sops: Vec<bool> = roots.iter().map(|r| r.get("sops").is_some()).collect();
            let meta_node = take_sops(&mut roots).ok_or(Error::NoMetadata)?;
            let meta = Metadata::from_node(&meta_node)?;
            open(&mut roots, &meta, ids, opts)?;
            if output_format == Format::Yaml {
                for (d, r) in docs.iter_mut().zip(roots) {
                    d.root = r;
                }
                // The layout is kept only where the `sops` block can be cut out of it; otherwise
                // (a JSON-layout file read as YAML) the documents are written anew, never with
                // their metadata left in.
                if yaml_emit::sops_blocks_found(text, &docs, &with_sops) {
                    return Ok(Zeroizing::new(yaml_emit::splice(text, &docs).into_bytes()));
                }
                let all: Vec<&Node> = docs.iter().map(|d| &d.root).collect();
                return Ok(Zeroizing::new(yaml_emit::emit(&all).into_bytes()));
            }
            emit_tree(&roots, Format::Yaml, output_format)
        }
        Format::Json | Format::Binary => {
            let mut roots = vec![json::parse(text)?];
            let meta_node = take_sops(&mut roots).ok_or(Error::NoMetadata)?;
            let meta = Metadata::from_node(&meta_node)?;
            open(&mut roots, &meta, ids, opts)?;
            emit_tree(&roots, input_format, output_format)
        }
        Format::Dotenv => {
            let mut root = dotenv::parse(text)?;
            let flat = dotenv::take_metadata(&mut root);
            if flat.is_empty() {
                return Err(Error::NoMetadata);
            }
            let meta = Metadata::from_node(&metadata::unflatten(flat)?)?;
            let mut roots = vec![root];
            open(&mut roots, &meta, ids, opts)?;
            emit_tree(&roots, Format::Dotenv, output_format)
        }
        Format::Ini => {
            let (root, flat) = ini::parse(text)?;
            if flat.is_empty() {
                return Err(Error::NoMetadata);
            }
            let meta = Metadata::from_node(&metadata::unflatten(flat)?)?;
            let mut roots = vec![root];
            open(&mut roots, &meta, ids, opts)?;
            emit_tree(&roots, Format::Ini, output_format)
        }
    }
}

/// Emit decrypted documents in the output format.
fn emit_tree(roots: &[Node], from: Format, to: Format) -> Result<Zeroizing<Vec<u8>>, Error> {
    let first = roots.first().ok_or(Error::NoMetadata)?;
    let out = match to {
        Format::Yaml => yaml_emit::emit(&roots.iter().collect::<Vec<_>>()).into_bytes(),
        Format::Json => {
            if let Some(v) = json::unsupported_float(first) {
                return Err(Error::JsonUnsupported(v));
            }
            json::emit(first).into_bytes()
        }
        Format::Dotenv => {
            if let Some(key) = dotenv::complex_key(first) {
                return Err(Error::DotenvComplex(key.to_owned()));
            }
            dotenv::emit(first).into_bytes()
        }
        Format::Ini => {
            if !ini::all_sections(first) {
                return Err(Error::IniNotSections);
            }
            ini::emit(first).into_bytes()
        }
        Format::Binary => match first.get("data") {
            Some(Node::Leaf(tree::Leaf { value: Value::Str(s), .. })) => s.as_bytes().to_vec(),
            Some(Node::Leaf(tree::Leaf { value: Value::Bytes(b), .. })) => b.clone(),
            _ if from == Format::Binary || from == Format::Json => return Err(Error::NoBinaryData),
            _ => {
                return Err(Error::Conversion { from: from.name(), to: to.name() });
            }
        },
    };
    Ok(Zeroizing::new(out))
}
