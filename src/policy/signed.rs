//! Signed policy sets: a directory loads only when a detached signature over its canonical
//! content verifies (`serve|verify --require-signed-policies KEY`; `policy sign` writes it).
//!
//! The canonical content, [`MANIFEST_FILE`], is UTF-8 text:
//!
//! ```text
//! portcullis-policy-set v1
//! <sha256 hex of the file>  <path relative to the directory, '/'-separated>
//! ...
//! ```
//!
//! one line per file, each ending in `\n`, sorted by the bytes of the relative path. The files
//! are every regular file the policy loader walks (hidden entries skipped, symlinks followed):
//! policies, tests, key files and trusted roots in the directory alike, except the top-level
//! [`MANIFEST_FILE`] and [`SIGNATURE_FILE`]. A path holding a line break is refused. The
//! signature, [`SIGNATURE_FILE`], is what `cosign sign-blob --output-signature` writes over the
//! manifest: the base64 of an ASN.1 DER ECDSA (or the key's scheme) signature of its bytes, so
//! `cosign verify-blob --key KEY.pub --signature policyset.sig --insecure-ignore-tlog
//! policyset.manifest` checks it too.
//!
//! What is verified is the manifest computed from the bytes being loaded (never the committed
//! manifest file, which only helps say what changed). With a signature required, every key
//! file and trusted root the policies name must be one of the signed files, with the bytes the
//! signature covers.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest as _, Sha256};

/// The canonical manifest, written beside the policies by `policy sign`.
pub const MANIFEST_FILE: &str = "policyset.manifest";
/// The detached signature over the canonical manifest.
pub const SIGNATURE_FILE: &str = "policyset.sig";
/// The manifest's first line.
pub const HEADER: &str = "portcullis-policy-set v1\n";
const MAX_SIGNATURE_BYTES: usize = 16 * 1024;

/// Why a signed policy set was refused.
#[derive(Debug, thiserror::Error)]
pub enum SignedError {
    #[error(
        "{dir} is not signed ({SIGNATURE_FILE} is missing) and --require-signed-policies is set: sign it with \
         `portcullis policy sign --key KEY {dir}` after review"
    )]
    Missing { dir: String },
    #[error("{path}: {why}")]
    Unreadable { path: String, why: String },
    #[error(
        "the policy set in {dir} does not match its signature ({SIGNATURE_FILE}, checked with the \
         --require-signed-policies key): {detail}; sign the reviewed set again, or restore it"
    )]
    BadSignature { dir: String, detail: String },
    #[error(
        "{path}, a publicKeyFile or trustedRoot, is not one of the signed files of {dir}: with \
         --require-signed-policies, key files and trusted roots live in the policy directory"
    )]
    OutsideTheSet { path: String, dir: String },
    #[error("{path}: a file name with a line break cannot be signed")]
    BadName { path: String },
    #[error("--require-signed-policies {path}: {why}")]
    Key { path: String, why: String },
}

/// The key a policy set must be signed with.
#[derive(Debug, Clone)]
pub struct Requirement {
    pem: String,
    path: PathBuf,
}

impl Requirement {
    /// Read and check a public key file (PEM, as cosign.pub).
    pub fn from_file(path: &Path) -> Result<Self, SignedError> {
        let key_error = |why: String| SignedError::Key { path: path.display().to_string(), why };
        let pem = std::fs::read_to_string(path).map_err(|e| key_error(format!("cannot read it: {e}")))?;
        if pem.contains("PRIVATE KEY-----") {
            return Err(key_error("it holds a PRIVATE key: give the public key (cosign.pub)".to_owned()));
        }
        crate::verify::bundle::parse_public_key(&pem).map_err(|e| key_error(e.to_string()))?;
        Ok(Self { pem, path: path.to_owned() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The path of `file` relative to `dir`, '/'-separated.
fn relative(dir: &Path, file: &Path) -> Result<String, SignedError> {
    let rel = file.strip_prefix(dir).unwrap_or(file);
    let parts: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    let joined = parts.join("/");
    if joined.contains(['\n', '\r']) || rel.to_str().is_none() {
        return Err(SignedError::BadName { path: file.display().to_string() });
    }
    Ok(joined)
}

fn is_signature_file(rel: &str) -> bool {
    rel == MANIFEST_FILE || rel == SIGNATURE_FILE
}

/// The canonical manifest of the directory's files (as the loader read them).
pub fn manifest(dir: &Path, files: &[(PathBuf, Vec<u8>)]) -> Result<String, SignedError> {
    let mut lines = BTreeMap::new();
    for (path, bytes) in files {
        let rel = relative(dir, path)?;
        if is_signature_file(&rel) {
            continue;
        }
        let hex: String = Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
        lines.insert(rel.into_bytes(), hex);
    }
    let mut out = String::from(HEADER);
    for (rel, hex) in lines {
        out.push_str(&format!("{hex}  {}\n", String::from_utf8_lossy(&rel)));
    }
    Ok(out)
}

/// Check the signature of the directory's files (as the loader read them).
pub fn verify(required: &Requirement, dir: &Path, files: &[(PathBuf, Vec<u8>)]) -> Result<(), SignedError> {
    let shown = dir.display().to_string();
    let file = |name: &str| files.iter().find(|(p, _)| relative(dir, p).is_ok_and(|r| r == name)).map(|(_, b)| b);
    let Some(signature_b64) = file(SIGNATURE_FILE) else {
        return Err(SignedError::Missing { dir: shown });
    };
    let unreadable = |why: &str| SignedError::Unreadable {
        path: dir.join(SIGNATURE_FILE).display().to_string(),
        why: why.to_owned(),
    };
    if signature_b64.len() > MAX_SIGNATURE_BYTES {
        return Err(unreadable("larger than a signature"));
    }
    let text = std::str::from_utf8(signature_b64).map_err(|_| unreadable("not base64 text"))?;
    let signature = B64.decode(text.trim()).map_err(|_| unreadable("not base64 (cosign sign-blob's output)"))?;
    let manifest = manifest(dir, files)?;
    match crate::verify::bundle::verify_raw_signature(&required.pem, manifest.as_bytes(), &signature) {
        Ok(()) => Ok(()),
        Err(e) => {
            let detail = match file(MANIFEST_FILE).map(|b| String::from_utf8_lossy(b).into_owned()) {
                Some(signed) if signed != manifest => changes(&signed, &manifest),
                _ => format!("{e} (signed with another key, or the signature was changed)"),
            };
            Err(SignedError::BadSignature { dir: shown, detail })
        }
    }
}

/// What differs between the committed manifest and the files now.
fn changes(signed: &str, now: &str) -> String {
    let entries = |text: &str| -> BTreeMap<String, String> {
        text.lines().skip(1).filter_map(|l| l.split_once("  ").map(|(h, p)| (p.to_owned(), h.to_owned()))).collect()
    };
    let (before, after) = (entries(signed), entries(now));
    let mut out = Vec::new();
    for (path, hash) in &after {
        match before.get(path) {
            None => out.push(format!("{path} added")),
            Some(old) if old != hash => out.push(format!("{path} changed")),
            Some(_) => {}
        }
    }
    out.extend(before.keys().filter(|p| !after.contains_key(*p)).map(|p| format!("{p} removed")));
    if out.is_empty() {
        "the files are as in policyset.manifest, but the signature does not verify".to_owned()
    } else {
        format!("since it was signed: {}", out.join(", "))
    }
}

/// Sign a manifest with a private key (PEM: PKCS#8 `PRIVATE KEY` or SEC1 `EC PRIVATE KEY`,
/// ECDSA P-256): the base64 signature `cosign sign-blob` would write.
pub fn sign(private_pem: &str, manifest: &[u8]) -> Result<String, SignedError> {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
    let key_error = |why: &str| SignedError::Key { path: "--key".to_owned(), why: why.to_owned() };
    if private_pem.contains("ENCRYPTED") {
        return Err(key_error(
            "an encrypted key (cosign generate-key-pair) is not read here: run `portcullis policy sign \
             --manifest-only DIR`, then `cosign sign-blob --key cosign.key --output-signature DIR/policyset.sig \
             DIR/policyset.manifest`",
        ));
    }
    let body: String = private_pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = B64.decode(body.trim()).map_err(|_| key_error("not a PEM private key"))?;
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &der)
        .or_else(|_| EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_ASN1_SIGNING, &der))
        .map_err(|_| key_error("not an ECDSA P-256 private key (PKCS#8 or SEC1 PEM)"))?;
    let signature = key.sign(&SystemRandom::new(), manifest).map_err(|_| key_error("signing failed"))?;
    Ok(B64.encode(signature.as_ref()))
}

/// `..` and `.` resolved without touching the disk.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// Every key file and trusted root the set's authorities read must be a signed file of `dir`,
/// with the bytes the signature covers. `read` maps each path named to the bytes read.
pub fn check_named_files(
    dir: &Path,
    files: &[(PathBuf, Vec<u8>)],
    read: &BTreeMap<PathBuf, Vec<u8>>,
) -> Result<(), SignedError> {
    let signed: BTreeMap<PathBuf, &Vec<u8>> = files.iter().map(|(p, b)| (lexical(p), b)).collect();
    for (path, bytes) in read {
        let inside = lexical(path).strip_prefix(lexical(dir)).is_ok_and(|rel| !rel.starts_with(".."));
        match signed.get(&lexical(path)) {
            Some(signed_bytes) if inside && *signed_bytes == bytes => {}
            Some(_) if inside => {
                return Err(SignedError::BadSignature {
                    dir: dir.display().to_string(),
                    detail: format!("{} changed while the policies were loading", path.display()),
                });
            }
            _ => {
                return Err(SignedError::OutsideTheSet {
                    path: path.display().to_string(),
                    dir: dir.display().to_string(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
