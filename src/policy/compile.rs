//! Policy files → compiled policies (pure): split YAML documents, read each strictly, validate
//! it, compile its globs, regexes and CEL expressions. Errors name the file and the line.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::cel::CelEnv;
use super::claims::compile_claims;
use super::matcher::{Glob, Selector};
use super::model::{
    API_VERSION, AttestationSpec, AuthoritySpec, ConditionSpec, Header, ImagePolicyDoc, KINDS, KeylessSpec, MatchSpec,
    ResourcePolicyDoc, TEST_KIND, TransparencyLog,
};
use super::{
    Attestation, Authority, AuthorityFiles, AuthorityKind, Condition, FileContent, Identity, ImagePolicy, KeyRef,
    Policy, ResourcePolicy, Source, SubjectMatch, predicate_type_uri,
};
use crate::workload::pod_spec_pointer;

/// What is wrong with a policy file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    #[error("{file}:{line}:{column}: {message}")]
    Syntax { file: String, line: usize, column: usize, message: String },
    #[error("{file}:{line}: {message}")]
    Document { file: String, line: usize, message: String },
    #[error("{file}:{line}: policy {name:?}: {message}")]
    Invalid { file: String, line: usize, name: String, message: String },
    #[error("policy name {name:?} is used twice: {first} and {second}; names must be unique")]
    Duplicate { name: String, first: String, second: String },
}

/// Workload kinds an `ImagePolicy` may select.
const IMAGE_KINDS: [(&str, &str); 9] = [
    ("", "Pod"),
    ("", "PodTemplate"),
    ("", "ReplicationController"),
    ("apps", "Deployment"),
    ("apps", "ReplicaSet"),
    ("apps", "StatefulSet"),
    ("apps", "DaemonSet"),
    ("batch", "Job"),
    ("batch", "CronJob"),
];
const OPERATIONS: [&str; 4] = ["CREATE", "UPDATE", "DELETE", "CONNECT"];

/// Split a YAML stream into documents, with the 1-based line each starts on.
pub fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    for (index, line) in text.lines().enumerate() {
        let is_marker = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        let is_end = line == "..." || line.starts_with("... ");
        if is_marker || is_end {
            docs.push((start, std::mem::take(&mut current)));
            start = index + 2;
            // A marker line may carry content after it (`--- # comment`, `--- {a: 1}`).
            if let Some(rest) = line.strip_prefix("---").filter(|r| is_marker && !r.trim().is_empty()) {
                current.push_str(rest.trim_start());
                current.push('\n');
                start = index + 1;
            }
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    docs.push((start, current));
    docs.retain(|(_, doc)| !is_blank_document(doc));
    // Start each document at its first line of content, so errors point at `apiVersion`.
    docs.into_iter()
        .map(|(start, doc)| {
            let skip = doc.lines().take_while(|l| l.trim().is_empty() || l.trim_start().starts_with('#')).count();
            let text: String = doc.lines().skip(skip).flat_map(|l| [l, "\n"]).collect();
            (start + skip, text)
        })
        .collect()
}

fn is_blank_document(doc: &str) -> bool {
    doc.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#')
    })
}

/// Parse and compile every policy in one file. `base` is the directory relative key and
/// trusted-root paths are resolved against.
pub fn parse_file(text: &str, file: &str, base: &Path, env: &CelEnv) -> Result<Vec<Policy>, PolicyError> {
    let mut policies = Vec::new();
    for (line, doc) in split_documents(text) {
        let syntax = |e: serde_yaml_ng::Error| {
            let (l, c) = e.location().map_or((0, 0), |loc| (loc.line(), loc.column()));
            PolicyError::Syntax {
                file: file.to_owned(),
                line: line + l.saturating_sub(1),
                column: c,
                message: strip_location(&e.to_string()),
            }
        };
        let document = |message: String| PolicyError::Document { file: file.to_owned(), line, message };
        let header: Header = serde_yaml_ng::from_str(&doc).map_err(syntax)?;
        match header.api_version.as_deref() {
            Some(API_VERSION) => {}
            Some(other) => {
                return Err(document(format!("apiVersion {other:?} is not supported; use {API_VERSION:?}")));
            }
            None => return Err(document(format!("missing apiVersion; use {API_VERSION:?}"))),
        }
        let source = Source { file: file.to_owned(), line };
        let policy = match header.kind.as_deref() {
            Some("ImagePolicy") => {
                let fingerprint = fingerprint(file, &doc);
                let doc: ImagePolicyDoc = serde_yaml_ng::from_str(&doc).map_err(syntax)?;
                let mut policy = compile_image(doc, source, base, env)?;
                policy.fingerprint = fingerprint;
                Policy::Image(policy)
            }
            Some("ResourcePolicy") => {
                let doc: ResourcePolicyDoc = serde_yaml_ng::from_str(&doc).map_err(syntax)?;
                Policy::Resource(compile_resource(doc, source, env)?)
            }
            // Test cases of `portcullis policy test`, kept next to the policies.
            Some(TEST_KIND) => continue,
            Some(other) => {
                return Err(document(format!("kind {other:?} is not a policy kind; use one of {KINDS:?}")));
            }
            None => return Err(document(format!("missing kind; use one of {KINDS:?}"))),
        };
        policies.push(policy);
    }
    Ok(policies)
}

/// A hash of a policy document's text and file: equal fingerprints, equal policies.
fn fingerprint(file: &str, text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (file, text).hash(&mut hasher);
    hasher.finish()
}

/// serde_yaml puts " at line L column C" in its messages; we print our own absolute location.
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// Check that policy names are unique across a whole set.
pub fn check_unique(policies: &[Policy]) -> Result<(), PolicyError> {
    let mut seen: Vec<(&str, &Source)> = Vec::new();
    for policy in policies {
        let (name, source) = (policy.name(), policy.source());
        if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
            return Err(PolicyError::Duplicate {
                name: name.to_owned(),
                first: first.to_string(),
                second: source.to_string(),
            });
        }
        seen.push((name, source));
    }
    Ok(())
}

struct Ctx<'a> {
    source: &'a Source,
    name: &'a str,
}

impl Ctx<'_> {
    fn err(&self, message: impl Into<String>) -> PolicyError {
        PolicyError::Invalid {
            file: self.source.file.clone(),
            line: self.source.line,
            name: self.name.to_owned(),
            message: message.into(),
        }
    }
}

fn check_name(ctx: &Ctx<'_>, what: &str, name: &str) -> Result<(), PolicyError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(ctx.err(format!(
            "{what} {name:?} is not a valid name: use up to 63 lowercase letters, digits, '-' and '.', \
             starting and ending with a letter or digit"
        )))
    }
}

fn globs(ctx: &Ctx<'_>, field: &str, patterns: &[String], image: bool) -> Result<Vec<Glob>, PolicyError> {
    patterns
        .iter()
        .map(|p| {
            let compiled = if image { Glob::image(p) } else { Glob::new(p) };
            compiled.map_err(|e| ctx.err(format!("{field}: {e}")))
        })
        .collect()
}

fn selector(ctx: &Ctx<'_>, spec: &MatchSpec, allowed_ops: &[&str]) -> Result<Selector, PolicyError> {
    for op in &spec.operations {
        if !allowed_ops.contains(&op.as_str()) {
            return Err(ctx.err(format!("match.operations: {op:?} is not one of {allowed_ops:?}")));
        }
    }
    Ok(Selector {
        namespaces: globs(ctx, "match.namespaces", &spec.namespaces, false)?,
        exclude_namespaces: globs(ctx, "match.excludeNamespaces", &spec.exclude_namespaces, false)?,
        kinds: spec.kinds.clone(),
        operations: spec.operations.clone(),
    })
}

fn conditions(
    ctx: &Ctx<'_>,
    field: &str,
    specs: &[ConditionSpec],
    env: &CelEnv,
) -> Result<Vec<Condition>, PolicyError> {
    specs
        .iter()
        .map(|c| {
            let expression = env.compile(&c.expression).map_err(|e| ctx.err(format!("{field}: {e}")))?;
            Ok(Condition { expression, message: c.message.clone() })
        })
        .collect()
}

fn compile_image(doc: ImagePolicyDoc, source: Source, base: &Path, env: &CelEnv) -> Result<ImagePolicy, PolicyError> {
    let ImagePolicyDoc { api_version: _, kind: _, metadata, spec } = doc;
    let ctx = Ctx { source: &source, name: &metadata.name };
    check_name(&ctx, "metadata.name", &metadata.name)?;
    for kind in &spec.match_.kinds {
        if !IMAGE_KINDS.iter().any(|(_, k)| k == kind) {
            let known: Vec<_> = IMAGE_KINDS.iter().map(|(_, k)| *k).collect();
            return Err(ctx.err(format!("match.kinds: {kind:?} carries no images; use some of {known:?}")));
        }
        debug_assert!(IMAGE_KINDS.iter().any(|(g, k)| k == kind && pod_spec_pointer(g, k).is_some()));
    }
    if spec.images.is_empty() {
        return Err(ctx.err("images: list at least one image glob (`**` for every image)"));
    }
    let mut authorities = Vec::new();
    for a in &spec.authorities {
        check_name(&ctx, "authorities[].name", &a.name)?;
        if authorities.iter().any(|x: &Authority| x.name == a.name) {
            return Err(ctx.err(format!("authority name {:?} is used twice", a.name)));
        }
        authorities.push(compile_authority(&ctx, a, base)?);
    }
    if let super::model::Require::AtLeast(n) = spec.require
        && n as usize > authorities.len()
    {
        return Err(
            ctx.err(format!("require: atLeast {n} but the policy lists only {} authorities", authorities.len()))
        );
    }
    if spec.require == super::model::Require::None && spec.attestations.is_empty() {
        return Err(ctx.err("require: none needs attestations: without them the authorities would check nothing"));
    }
    let mut attestations = Vec::new();
    for a in &spec.attestations {
        attestations.push(compile_attestation(&ctx, a, &authorities, env)?);
    }
    Ok(ImagePolicy {
        selector: selector(&ctx, &spec.match_, &["CREATE", "UPDATE"])?,
        images: globs(&ctx, "images", &spec.images, true)?,
        exclude_images: globs(&ctx, "excludeImages", &spec.exclude_images, true)?,
        allowed_images: match &spec.allowed_images {
            Some(list) if list.is_empty() => {
                return Err(
                    ctx.err("allowedImages: an empty list would deny every image; remove the field or list globs")
                );
            }
            Some(list) => Some(globs(&ctx, "allowedImages", list, true)?),
            None => None,
        },
        name: metadata.name,
        source,
        fingerprint: 0,
        mode: spec.mode,
        digest: spec.digest,
        platforms: spec.platforms,
        require: spec.require,
        authorities,
        attestations,
    })
}

fn compile_authority(ctx: &Ctx<'_>, a: &AuthoritySpec, base: &Path) -> Result<Authority, PolicyError> {
    let what = format!("authority {:?}", a.name);
    let kind = match (&a.key, &a.keyless) {
        (Some(key), None) => {
            let sources = [key.public_key_file.is_some(), key.public_key.is_some(), key.secret_ref.is_some()];
            if sources.iter().filter(|s| **s).count() != 1 {
                return Err(ctx.err(format!("{what}: key needs exactly one of publicKeyFile, publicKey, secretRef")));
            }
            AuthorityKind::Key(if let Some(file) = &key.public_key_file {
                KeyRef::File(resolve(base, file))
            } else if let Some(pem) = &key.public_key {
                if !pem.contains("-----BEGIN PUBLIC KEY-----") {
                    return Err(ctx.err(format!("{what}: publicKey must be a PEM block (-----BEGIN PUBLIC KEY-----)")));
                }
                KeyRef::Pem(pem.clone())
            } else if let Some(s) = &key.secret_ref {
                KeyRef::Secret { name: s.name.clone(), namespace: s.namespace.clone(), key: s.key.clone() }
            } else {
                unreachable!("exactly one key source was checked above")
            })
        }
        (None, Some(k)) => {
            if a.transparency_log == TransparencyLog::Skip {
                return Err(ctx.err(format!(
                    "{what}: transparencyLog: skip is only allowed for key-based authorities; keyless signatures need the log"
                )));
            }
            match &k.identities {
                None => AuthorityKind::Keyless(keyless_identity(ctx, &what, k)?),
                Some(list) => {
                    let alone = k.issuer.is_none()
                        && k.issuer_reg_exp.is_none()
                        && k.subject.is_none()
                        && k.subject_pattern.is_none()
                        && k.subject_reg_exp.is_none()
                        && k.github.is_none()
                        && k.claims.is_none();
                    if !alone || list.is_empty() {
                        return Err(ctx.err(format!(
                            "{what}: identities is a non-empty list of identities, each with its issuer and \
                             subject (or github or claims); it replaces issuer, subject, github and claims at the keyless level"
                        )));
                    }
                    let mut identities = Vec::new();
                    for (i, spec) in list.iter().enumerate() {
                        let at = format!("{what}: identities[{i}]");
                        if spec.identities.is_some() {
                            return Err(ctx.err(format!("{at}: identities do not nest")));
                        }
                        identities.push(keyless_identity(ctx, &at, spec)?);
                    }
                    AuthorityKind::KeylessAny(identities)
                }
            }
        }
        _ => return Err(ctx.err(format!("{what}: needs exactly one of key or keyless"))),
    };
    // A built-in root by name is its content already: no file to read at load.
    let (trusted_root, files) = match a.trusted_root.as_deref().and_then(builtin_trusted_root) {
        Some(text) => (None, AuthorityFiles { key: None, trusted_root: Some(FileContent::new(text)) }),
        None => (a.trusted_root.as_deref().map(|p| resolve(base, p)), AuthorityFiles::default()),
    };
    Ok(Authority { name: a.name.clone(), kind, transparency_log: a.transparency_log, trusted_root, files })
}

/// The trusted roots built in, by the name `trustedRoot:` gives them (a file of that name is
/// written `./github`): `github` is GitHub's artifact attestation instance (Fulcio and TSA at
/// githubapp.com, no transparency log), as shipped by `sigstore-trust-root` from GitHub's TUF
/// repository.
pub fn builtin_trusted_root(name: &str) -> Option<&'static str> {
    match name {
        "github" => Some(sigstore_trust_root::SIGSTORE_GITHUB_TRUSTED_ROOT),
        _ => None,
    }
}

/// One keyless identity: issuer (or issuerRegExp), subject form, github claims.
fn keyless_identity(ctx: &Ctx<'_>, what: &str, k: &KeylessSpec) -> Result<Identity, PolicyError> {
    let subjects = [k.subject.is_some(), k.subject_pattern.is_some(), k.subject_reg_exp.is_some()];
    let claims = match &k.claims {
        Some(block) if block.is_empty() => {
            return Err(ctx.err(format!("{what}: claims is empty; name at least one claim or leave it out")));
        }
        Some(block) => compile_claims(block).map_err(|e| ctx.err(format!("{what}: {e}")))?,
        None => Vec::new(),
    };
    let subject = match (subjects.iter().filter(|s| **s).count(), &k.github) {
        (0, Some(_)) => SubjectMatch::GithubOnly,
        (0, None) if !claims.is_empty() => SubjectMatch::GithubOnly,
        (0, None) => {
            return Err(ctx.err(format!(
                "{what}: keyless needs subject, subjectPattern, subjectRegExp, github or claims; \
                 accepting any identity must be explicit (subjectRegExp: \".*\")"
            )));
        }
        (1, _) => {
            if let Some(s) = &k.subject {
                SubjectMatch::Exact(s.clone())
            } else if let Some(p) = &k.subject_pattern {
                SubjectMatch::Pattern(Glob::new(p).map_err(|e| ctx.err(format!("{what}: subjectPattern: {e}")))?)
            } else if let Some(r) = &k.subject_reg_exp {
                SubjectMatch::RegExp(anchored(r).map_err(|e| ctx.err(format!("{what}: subjectRegExp: {e}")))?)
            } else {
                unreachable!("one subject form was counted")
            }
        }
        _ => {
            return Err(ctx.err(format!("{what}: use only one of subject, subjectPattern, subjectRegExp")));
        }
    };
    if let Some(github) = &k.github {
        match &github.git_ref {
            None => {
                return Err(ctx.err(format!(
                    "{what}: github needs ref: without it a signature made from ANY branch is \
                     accepted, and anyone who can push a branch can edit the workflow there and sign; \
                     write e.g. ref: \"refs/tags/v*\" or ref: \"refs/heads/main\" (ref: \"**\" accepts \
                     every ref, explicitly)"
                )));
            }
            Some(pattern) => {
                Glob::new(pattern).map_err(|e| ctx.err(format!("{what}: github.ref: {e}")))?;
            }
        }
    }
    let (issuer, issuer_regexp) = match (&k.issuer, &k.issuer_reg_exp, &k.github) {
        (Some(_), Some(_), _) => {
            return Err(ctx.err(format!("{what}: use only one of issuer and issuerRegExp")));
        }
        (Some(i), None, _) => (i.clone(), None),
        (None, Some(r), _) => {
            let re = anchored(r).map_err(|e| ctx.err(format!("{what}: issuerRegExp: {e}")))?;
            (r.clone(), Some(re))
        }
        (None, None, Some(_)) => (GITHUB_ISSUER.to_owned(), None),
        (None, None, None) => return Err(ctx.err(format!("{what}: keyless needs issuer or issuerRegExp"))),
    };
    Ok(Identity { issuer, subject, github: k.github.clone(), issuer_regexp, claims })
}

/// The OIDC issuer of GitHub Actions tokens.
pub const GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";

/// Compile a user regex anchored at both ends: `foo` means `^(?:foo)$`.
///
/// The pattern must be a valid regex on its own first: otherwise `x)|(.*` would wrap into
/// `^(?:x)|(.*)$`, whose second branch is unanchored and matches anything.
pub fn anchored(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(pattern).size_limit(1 << 20).build()?;
    regex::RegexBuilder::new(&format!("^(?:{pattern})$")).size_limit(1 << 20).build()
}

fn compile_attestation(
    ctx: &Ctx<'_>,
    a: &AttestationSpec,
    authorities: &[Authority],
    env: &CelEnv,
) -> Result<Attestation, PolicyError> {
    let what = format!("attestation {:?}", a.name);
    if authorities.is_empty() {
        return Err(ctx.err(format!("{what}: the policy lists no authorities to check its signature with")));
    }
    let mut seen = HashSet::new();
    for name in &a.authorities {
        if !authorities.iter().any(|x| &x.name == name) {
            return Err(ctx.err(format!("{what}: authority {name:?} is not defined in this policy")));
        }
        if !seen.insert(name) {
            return Err(ctx.err(format!("{what}: authority {name:?} is listed twice")));
        }
    }
    let predicate_type = predicate_type_uri(&a.predicate_type).ok_or_else(|| {
        ctx.err(format!("{what}: predicateType {:?} is neither a known short name nor a URI", a.predicate_type))
    })?;
    Ok(Attestation {
        name: a.name.clone(),
        predicate_type,
        authorities: a.authorities.clone(),
        conditions: conditions(ctx, &format!("{what}: conditions"), &a.conditions, env)?,
    })
}

fn compile_resource(doc: ResourcePolicyDoc, source: Source, env: &CelEnv) -> Result<ResourcePolicy, PolicyError> {
    let ResourcePolicyDoc { api_version: _, kind: _, metadata, spec } = doc;
    let ctx = Ctx { source: &source, name: &metadata.name };
    check_name(&ctx, "metadata.name", &metadata.name)?;
    if spec.rules.is_empty() && spec.sops_ciphertext.is_none() {
        return Err(ctx.err("rules: list at least one rule (or set sopsCiphertext)"));
    }
    Ok(ResourcePolicy {
        selector: selector(&ctx, &spec.match_, &OPERATIONS)?,
        rules: conditions(&ctx, "rules", &spec.rules, env)?,
        sops_ciphertext: spec.sops_ciphertext,
        name: metadata.name,
        source,
        mode: spec.mode,
    })
}

fn resolve(base: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() { p.to_path_buf() } else { base.join(p) }
}

#[cfg(test)]
mod tests;
