//! `portcullis policy lint` (pure): mistakes the loader accepts but that bite users. Runs on the
//! documents as written (the loader has already refused what cannot be compiled: keyless
//! without an issuer, key files that do not parse, CEL that does not compile, unknown predicate
//! short names, globs that can never match an image name).
//!
//! Glob coverage and overlap are decided on sample names built from each glob (every `*`
//! and `**` replaced by a few probes), so they are approximate: a finding is a strong hint,
//! never a proof. Silence a rule for one policy with the annotation
//! `portcullis.dev/lint-ignore: "rule-a, rule-b"` in its `metadata.annotations`, or on the
//! command line with `--ignore RULE[:POLICY]`.

use std::fmt;

use serde_json::{Value, json};

use super::Source;
use super::cel::CelEnv;
use super::compile::{anchored, split_documents};
use super::matcher::Glob;
use super::model::{
    DigestRule, Header, ImagePolicyDoc, ImagePolicySpec, KeylessSpec, MatchSpec, Mode, ResourcePolicyDoc,
    ResourcePolicySpec, TransparencyLog,
};
use crate::review::{ObjectRequest, Review};

/// The annotation that silences rules for one policy (comma-separated rule ids).
pub const IGNORE_ANNOTATION: &str = "portcullis.dev/lint-ignore";

/// Every rule: id, severity, what it finds.
pub const RULES: [(&str, Severity, &str); 10] = [
    ("identity-too-broad", Severity::Error, "a keyless identity pattern that also matches another org, repo or host"),
    ("github-ref-any", Severity::Warning, "a github ref pattern that accepts every ref, pull requests included"),
    (
        "claims-too-broad",
        Severity::Warning,
        "a keyless identity whose only constraints are claims naming no repository, owner or build",
    ),
    ("glob-never-matches", Severity::Error, "an image or namespace glob the policy's own exclusions always remove"),
    (
        "glob-shadowed",
        Severity::Warning,
        "a glob already covered by another glob of the same list, or excluding nothing",
    ),
    (
        "conflicting-modes",
        Severity::Warning,
        "a check another policy makes in a stricter mode on all this policy selects",
    ),
    ("unknown-predicate", Severity::Warning, "a predicateType URI no cosign --type writes (a typo never matches)"),
    (
        "cel-always-errors",
        Severity::Warning,
        "a ResourcePolicy rule that errors on every example object (built-in, and the PolicyTest objects)",
    ),
    ("tlog-skip-enforce", Severity::Warning, "transparencyLog: skip in an enforcing policy"),
    (
        "tlog-timestamp-public-good",
        Severity::Warning,
        "transparencyLog: timestamp on the public-good instance, which logs every signature",
    ),
];

/// How bad a finding is: errors fail the lint, warnings only with `--strict`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lint {
    pub rule: &'static str,
    pub severity: Severity,
    pub policy: String,
    pub source: Source,
    pub message: String,
}

impl fmt::Display for Lint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}[{}]: policy {:?}: {}", self.source, self.severity, self.rule, self.policy, self.message)
    }
}

/// Why a file could not be read as policy documents.
#[derive(Debug, thiserror::Error)]
pub enum LintError {
    #[error("{file}:{line}: {error}")]
    Yaml { file: String, line: usize, error: serde_yaml_ng::Error },
}

/// A policy document as written.
#[derive(Debug, Clone)]
pub struct Doc {
    pub source: Source,
    pub name: String,
    ignored: Vec<String>,
    pub spec: Spec,
}

/// The spec of a document.
#[derive(Debug, Clone)]
pub enum Spec {
    Image(Box<ImagePolicySpec>),
    Resource(ResourcePolicySpec),
}

impl Doc {
    fn mode(&self) -> Mode {
        match &self.spec {
            Spec::Image(s) => s.mode,
            Spec::Resource(s) => s.mode,
        }
    }
    fn match_(&self) -> &MatchSpec {
        match &self.spec {
            Spec::Image(s) => &s.match_,
            Spec::Resource(s) => &s.match_,
        }
    }
}

/// The policy documents of one file (other kinds, such as `PolicyTest`, are skipped).
pub fn parse_docs(text: &str, file: &str) -> Result<Vec<Doc>, LintError> {
    let mut docs = Vec::new();
    for (line, doc) in split_documents(text) {
        let err = |error| LintError::Yaml { file: file.to_owned(), line, error };
        let header: Header = serde_yaml_ng::from_str(&doc).map_err(err)?;
        let source = Source { file: file.to_owned(), line };
        let (metadata, spec) = match header.kind.as_deref() {
            Some("ImagePolicy") => {
                let d: ImagePolicyDoc = serde_yaml_ng::from_str(&doc).map_err(err)?;
                (d.metadata, Spec::Image(Box::new(d.spec)))
            }
            Some("ResourcePolicy") => {
                let d: ResourcePolicyDoc = serde_yaml_ng::from_str(&doc).map_err(err)?;
                (d.metadata, Spec::Resource(d.spec))
            }
            _ => continue,
        };
        let ignored = metadata
            .annotations
            .get(IGNORE_ANNOTATION)
            .map(|v| v.split(',').map(|r| r.trim().to_owned()).filter(|r| !r.is_empty()).collect())
            .unwrap_or_default();
        docs.push(Doc { source, name: metadata.name, ignored, spec });
    }
    Ok(docs)
}

/// The objects of the `kind: PolicyTest` cases in one file (`spec.object`): more examples for
/// `cel-always-errors`, custom resources included.
pub fn test_objects(text: &str) -> Vec<Value> {
    split_documents(text)
        .into_iter()
        .filter_map(|(_, doc)| serde_yaml_ng::from_str::<Value>(&doc).ok())
        .filter(|v| v["kind"] == super::model::TEST_KIND)
        .filter_map(|v| v.pointer("/spec/object").cloned())
        .filter(Value::is_object)
        .collect()
}

/// Lint a whole set of documents. `ignore` holds `RULE` or `RULE:POLICY` entries; `objects`
/// are example objects besides the built-in ones (the test cases' objects).
pub fn lint(docs: &[Doc], ignore: &[String], env: &CelEnv, objects: &[Value]) -> Vec<Lint> {
    let mut out = Vec::new();
    for doc in docs {
        let mut add = |rule: &'static str, message: String| out.push(finding(doc, rule, message));
        match &doc.spec {
            Spec::Image(spec) => image_rules(spec, &mut add),
            Spec::Resource(spec) => cel_rules(doc, spec, env, objects, &mut add),
        }
        namespace_rules(doc.match_(), &mut add);
    }
    conflicting_modes(docs, &mut out);
    out.sort_by(|a, b| (&a.source.file, a.source.line).cmp(&(&b.source.file, b.source.line)));
    out.retain(|l| {
        let doc_ignores = docs.iter().any(|d| d.name == l.policy && d.ignored.iter().any(|r| r == l.rule));
        let flag_ignores = ignore.iter().any(|i| match i.split_once(':') {
            Some((rule, policy)) => rule == l.rule && policy == l.policy,
            None => i == l.rule,
        });
        !doc_ignores && !flag_ignores
    });
    out
}

fn severity(rule: &str) -> Severity {
    RULES.iter().find(|(id, ..)| *id == rule).map_or(Severity::Error, |(_, s, _)| *s)
}

fn finding(doc: &Doc, rule: &'static str, message: String) -> Lint {
    Lint { rule, severity: severity(rule), policy: doc.name.clone(), source: doc.source.clone(), message }
}

fn image_rules(spec: &ImagePolicySpec, add: &mut impl FnMut(&'static str, String)) {
    let compile = |patterns: &[String]| -> Vec<Glob> { patterns.iter().filter_map(|p| Glob::image(p).ok()).collect() };
    let images = compile(&spec.images);
    let excludes = compile(&spec.exclude_images);
    for glob in &images {
        if covered(glob, &excludes) {
            add("glob-never-matches", format!("images glob {:?} is removed entirely by excludeImages", glob.as_str()));
        }
    }
    shadowed("images", &images, add);
    shadowed("excludeImages", &excludes, add);
    for glob in &excludes {
        if !images.iter().any(|i| overlaps(i, glob)) {
            add("glob-shadowed", format!("excludeImages glob {:?} excludes nothing `images` selects", glob.as_str()));
        }
    }
    if let Some(allowed) = &spec.allowed_images {
        let allowed = compile(allowed);
        if !images.iter().any(|i| allowed.iter().any(|a| overlaps(i, a))) {
            add(
                "glob-never-matches",
                "no allowedImages glob overlaps `images`: every image this policy applies to is denied".to_owned(),
            );
        }
    }
    for authority in &spec.authorities {
        if authority.transparency_log == TransparencyLog::Skip && spec.mode == Mode::Enforce {
            add(
                "tlog-skip-enforce",
                format!(
                    "authority {:?} skips the transparency log in enforce mode: a leaked key signs unnoticed and \
                     no log proves when it signed; upload signatures to Rekor (cosign sign --tlog-upload) or \
                     silence this rule with the {IGNORE_ANNOTATION} annotation if the key is the only anchor on purpose",
                    authority.name
                ),
            );
        }
        if authority.transparency_log == TransparencyLog::Timestamp && authority.trusted_root.is_none() {
            add(
                "tlog-timestamp-public-good",
                format!(
                    "authority {:?} accepts a timestamp instead of the transparency log, on the public-good \
                     instance, where every signature is logged: a signature kept out of the log (never seen \
                     by its owner's monitors) would pass; require the log, or name the instance that has \
                     no log (trustedRoot: github for GitHub's artifact attestations)",
                    authority.name
                ),
            );
        }
        if let Some(keyless) = &authority.keyless {
            let mut identities = vec![keyless];
            identities.extend(keyless.identities.iter().flatten());
            for identity in identities {
                identity_rules(&authority.name, identity, add);
            }
        }
    }
    for attestation in &spec.attestations {
        let t = attestation.predicate_type.as_str();
        if t.contains("://") && !KNOWN_PREDICATES.contains(&t) {
            add(
                "unknown-predicate",
                format!(
                    "attestation {:?}: predicateType {t:?} is not one cosign writes (a misspelt URI never matches, \
                     so every image is denied); known: {}",
                    attestation.name,
                    KNOWN_PREDICATES.join(", ")
                ),
            );
        }
    }
}

/// Predicate type URIs cosign and the common generators write.
const KNOWN_PREDICATES: [&str; 12] = [
    "https://slsa.dev/provenance/v0.2",
    "https://slsa.dev/provenance/v1",
    "https://spdx.dev/Document",
    "https://spdx.dev/Document/v2.3",
    "https://cyclonedx.org/bom",
    "https://cyclonedx.org/bom/v1.4",
    "https://cyclonedx.org/bom/v1.5",
    "https://cosign.sigstore.dev/attestation/vuln/v1",
    "https://openvex.dev/ns",
    "https://openvex.dev/ns/v0.2.0",
    "https://in-toto.io/Link/v1",
    "https://cosign.sigstore.dev/attestation/v1",
];

/// Claims that name who built: a claims block with none of them accepts any project of the issuer.
const IDENTIFYING_CLAIMS: [&str; 8] = [
    "sourceRepositoryURI",
    "sourceRepositoryIdentifier",
    "sourceRepositoryOwnerURI",
    "sourceRepositoryOwnerIdentifier",
    "buildSignerURI",
    "buildSignerDigest",
    "buildConfigURI",
    "runInvocationURI",
];

fn identity_rules(authority: &str, k: &KeylessSpec, add: &mut impl FnMut(&'static str, String)) {
    let checks = [
        ("subjectRegExp", k.subject_reg_exp.as_deref(), true),
        ("issuerRegExp", k.issuer_reg_exp.as_deref(), true),
        ("subjectPattern", k.subject_pattern.as_deref(), false),
    ];
    for (field, pattern, regexp) in checks {
        let Some(pattern) = pattern else { continue };
        let matcher: Box<dyn Fn(&str) -> bool> = if regexp {
            match anchored(pattern) {
                Ok(re) => Box::new(move |s| re.is_match(s)),
                Err(_) => continue,
            }
        } else {
            match Glob::new(pattern) {
                Ok(g) => Box::new(move |s| g.matches(s)),
                Err(_) => continue,
            }
        };
        let prefix = if regexp { regex_prefix(pattern) } else { glob_prefix(pattern) };
        if let Some(example) = too_broad(&prefix, &tail(pattern, &prefix), &*matcher) {
            add(
                "identity-too-broad",
                format!(
                    "authority {authority:?}: {field} {pattern:?} also matches {example:?}: end the org/repo \
                     (or host) name with `/` before any wildcard, e.g. {:?}",
                    format!("{}/.*", prefix.trim_end_matches('/'))
                ),
            );
        }
    }
    if let Some(claims) = &k.claims
        && k.subject.is_none()
        && k.subject_pattern.is_none()
        && k.subject_reg_exp.is_none()
        && k.github.is_none()
        && !claims.keys().any(|name| IDENTIFYING_CLAIMS.iter().any(|c| name.starts_with(c)))
    {
        let named: Vec<&str> = claims.keys().map(String::as_str).collect();
        add(
            "claims-too-broad",
            format!(
                "authority {authority:?}: claims {} name no repository, owner or build, so any project of \
                 the issuer may sign; add sourceRepositoryURI (or sourceRepositoryOwnerURI, buildSignerURI)",
                named.join(", ")
            ),
        );
    }
    if let Some(github) = &k.github
        && let Some(r) = github.git_ref.as_deref()
        && Glob::new(r).is_ok_and(|g| g.matches("refs/pull/1/merge") && g.matches("refs/heads/x"))
    {
        add(
            "github-ref-any",
            format!(
                "authority {authority:?}: github ref {r:?} accepts every ref, pull requests and forks' branches \
                 included; name the release refs, e.g. \"refs/tags/v*\" or \"refs/heads/main\""
            ),
        );
    }
}

/// An identity a URL-like pattern accepts although it names another host, org or repo: the
/// literal prefix stops inside the host, the org or the repo name (or right after the host),
/// and the pattern matches the prefix continued without a `/`.
fn too_broad(prefix: &str, tail: &str, matches: &dyn Fn(&str) -> bool) -> Option<String> {
    let rest = prefix.strip_prefix("https://").or_else(|| prefix.strip_prefix("http://"))?;
    let slashes = rest.matches('/').count();
    let tails = [
        "",
        "/x",
        "/x/y",
        "/x/.github/workflows/w.yml@refs/heads/main",
        "/x/y/.github/workflows/w.yml@refs/heads/main",
        tail,
    ];
    let continuations: &[&str] = match (slashes, prefix.ends_with('/')) {
        (0..=2, false) => &["-evil", "evil", ".evil.example"],
        (1, true) => &["evil-org"],
        _ => return None,
    };
    continuations.iter().flat_map(|c| tails.iter().map(move |t| format!("{prefix}{c}{t}"))).find(|probe| matches(probe))
}

/// The literal text a regular expression starts with (`\.` and a `.` between letters read as
/// a dot, which the expression also matches); stops at the first operator.
fn regex_prefix(re: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = re.trim_start_matches('^').chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' if chars.get(i + 1).is_some_and(|n| n.is_ascii_punctuation()) => {
                out.push(chars[i + 1]);
                i += 2;
                continue;
            }
            '.' if chars.get(i + 1).is_some_and(|n| n.is_ascii_alphanumeric()) => out.push('.'),
            '*' | '+' | '?' | '{' => {
                out.pop();
                break;
            }
            // Groups are transparent (`(?:https://github.com/acme).*`), flags too (`(?i)`); the
            // probes confirm whatever the prefix assumes.
            '(' => {
                let flags = chars[i + 1..].iter().position(|c| *c == ')').filter(|&n| {
                    n >= 2 && chars[i + 1] == '?' && chars[i + 2..i + 1 + n].iter().all(|c| c.is_ascii_alphabetic())
                });
                i += match (flags, chars.get(i + 1), chars.get(i + 2)) {
                    (Some(n), ..) => n + 2,
                    (None, Some('?'), Some(':')) => 3,
                    _ => 1,
                };
                continue;
            }
            ')' if !matches!(chars.get(i + 1), Some('*' | '?' | '{')) => {}
            // A one-character class is that character: `github[.]com`.
            '[' if chars.get(i + 2) == Some(&']') && !matches!(chars.get(i + 1), Some('^' | '\\' | ']')) => {
                out.push(chars[i + 1]);
                i += 3;
                continue;
            }
            '[' | '|' | '$' | '.' | '\\' | ')' => break,
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// What the pattern asks for after the segment its prefix stops in, wildcards replaced by `x`
/// (`…/acme[^/]*/app/.*` → `/app/x`): the probes continue with it.
fn tail(pattern: &str, prefix: &str) -> String {
    let n = prefix.matches('/').count();
    let mut in_class = false;
    let mut slashes = pattern.char_indices().filter(|(_, c)| {
        match c {
            '[' => in_class = true,
            ']' => in_class = false,
            _ => {}
        }
        *c == '/' && !in_class
    });
    let Some((at, _)) = slashes.nth(n) else { return String::new() };
    pattern[at..]
        .replace("\\.", ".")
        .replace(".*", "x")
        .replace(".+", "x")
        .replace("**", "x")
        .replace('*', "x")
        .replace('$', "")
}

fn glob_prefix(glob: &str) -> String {
    glob.chars().take_while(|c| *c != '*' && *c != '?').collect()
}

/// Names a glob matches (its wildcards replaced by probes).
fn samples(glob: &Glob) -> Vec<String> {
    let pattern = glob.as_str();
    [("x", "x/y"), ("lint-probe", "lint-probe")]
        .iter()
        .map(|(star, deep)| pattern.replace("**", "\u{0}").replace('*', star).replace('?', "q").replace('\u{0}', deep))
        .filter(|s| glob.matches(s))
        .collect()
}

/// Whether every sample of `glob` is matched by one of `by`.
fn covered(glob: &Glob, by: &[Glob]) -> bool {
    let s = samples(glob);
    !s.is_empty() && s.iter().all(|n| by.iter().any(|b| b.matches(n)))
}

fn overlaps(a: &Glob, b: &Glob) -> bool {
    samples(a).iter().any(|n| b.matches(n)) || samples(b).iter().any(|n| a.matches(n))
}

fn shadowed(field: &str, globs: &[Glob], add: &mut impl FnMut(&'static str, String)) {
    for (i, glob) in globs.iter().enumerate() {
        let others: Vec<Glob> = globs.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, g)| g.clone()).collect();
        if let Some(by) = others.iter().find(|o| covered(glob, std::slice::from_ref(o)) && o.as_str() != glob.as_str())
        {
            add("glob-shadowed", format!("{field} glob {:?} is already covered by {:?}", glob.as_str(), by.as_str()));
        }
    }
}

fn namespace_rules(m: &MatchSpec, add: &mut impl FnMut(&'static str, String)) {
    let excludes: Vec<Glob> = m.exclude_namespaces.iter().filter_map(|p| Glob::new(p).ok()).collect();
    for ns in m.namespaces.iter().filter_map(|p| Glob::new(p).ok()) {
        if covered(&ns, &excludes) {
            add(
                "glob-never-matches",
                format!("match.namespaces glob {:?} is removed by excludeNamespaces", ns.as_str()),
            );
        }
    }
}

/// Whether `strong` selects every request `weak` selects (namespaces, kinds, operations).
fn scope_covers(strong: &MatchSpec, weak: &MatchSpec) -> bool {
    let list = |s: &[String], w: &[String]| s.is_empty() || (!w.is_empty() && w.iter().all(|k| s.contains(k)));
    let globs = |l: &[String]| l.iter().filter_map(|p| Glob::new(p).ok()).collect::<Vec<_>>();
    let (s_ns, w_ns, s_excl) = (globs(&strong.namespaces), globs(&weak.namespaces), globs(&strong.exclude_namespaces));
    let namespaces = if w_ns.is_empty() {
        s_ns.is_empty() && s_excl.is_empty()
    } else {
        w_ns.iter().all(|w| (s_ns.is_empty() || covered(w, &s_ns)) && !s_excl.iter().any(|e| overlaps(w, e)))
    };
    list(&strong.kinds, &weak.kinds) && list(&strong.operations, &weak.operations) && namespaces
}

/// The checks an image policy makes that another can make differently.
fn image_checks(spec: &ImagePolicySpec) -> Vec<&'static str> {
    let mut checks = Vec::new();
    if matches!(spec.digest, DigestRule::Require | DigestRule::Pin) {
        checks.push("the digest rule");
    }
    if !spec.authorities.is_empty() {
        checks.push("signatures");
    }
    if spec.allowed_images.is_some() {
        checks.push("allowedImages");
    }
    checks
}

/// A policy whose check another policy makes in a stricter mode for everything it selects: its
/// own mode never decides (every policy applies, the strictest failure wins).
fn conflicting_modes(docs: &[Doc], out: &mut Vec<Lint>) {
    let rank = |m: Mode| match m {
        Mode::Enforce => 2,
        Mode::Warn => 1,
        Mode::Audit => 0,
    };
    for weak in docs {
        for strong in docs {
            if rank(strong.mode()) <= rank(weak.mode()) || !scope_covers(strong.match_(), weak.match_()) {
                continue;
            }
            let shared: Vec<&str> = match (&weak.spec, &strong.spec) {
                (Spec::Image(w), Spec::Image(s)) => {
                    let globs = |l: &[String]| l.iter().filter_map(|p| Glob::image(p).ok()).collect::<Vec<_>>();
                    let (wi, si, se) = (globs(&w.images), globs(&s.images), globs(&s.exclude_images));
                    if !wi.iter().all(|g| covered(g, &si) && !se.iter().any(|e| overlaps(g, e))) {
                        continue;
                    }
                    let cs = image_checks(s);
                    image_checks(w).into_iter().filter(|c| cs.contains(c)).collect()
                }
                (Spec::Resource(w), Spec::Resource(s))
                    if w.sops_ciphertext.is_some() && s.sops_ciphertext.is_some() =>
                {
                    vec!["the SOPS ciphertext check"]
                }
                _ => continue,
            };
            if shared.is_empty() {
                continue;
            }
            out.push(finding(
                weak,
                "conflicting-modes",
                format!(
                    "{} is in {} mode here but policy {:?} ({}) makes the same check in {} mode on everything this \
                     policy selects: every policy applies, so this policy's mode never decides; narrow {:?}'s match or \
                     images, or drop the check here",
                    shared.join(" and "),
                    weak.mode(),
                    strong.name,
                    strong.source,
                    strong.mode(),
                    strong.name,
                ),
            ));
        }
    }
}

/// Example objects of the kinds a ResourcePolicy matches.
fn examples(kinds: &[String]) -> Vec<Value> {
    let pod = json!({"containers": [{"name": "app", "image": "ghcr.io/acme/app:v1"}]});
    let all = [
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "example", "labels": {}}, "spec": pod}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "example"},
               "spec": {"replicas": 1, "template": {"metadata": {}, "spec": pod}}}),
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "example"},
               "spec": {"replicas": 1, "template": {"metadata": {}, "spec": pod}}}),
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "example"},
               "spec": {"template": {"metadata": {}, "spec": pod}}}),
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "example"},
               "spec": {"template": {"metadata": {}, "spec": pod}}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "example"}, "type": "Opaque",
               "data": {"k": "dg=="}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "example"}, "data": {"k": "v"}}),
    ];
    all.into_iter().filter(|o| kinds.is_empty() || kinds.iter().any(|k| o["kind"] == k.as_str())).collect()
}

fn cel_rules(
    doc: &Doc,
    spec: &ResourcePolicySpec,
    env: &CelEnv,
    extra: &[Value],
    add: &mut impl FnMut(&'static str, String),
) {
    let kinds = &spec.match_.kinds;
    let mut objects = examples(kinds);
    objects.extend(extra.iter().filter(|o| kinds.is_empty() || kinds.iter().any(|k| o["kind"] == k.as_str())).cloned());
    if objects.is_empty() {
        return;
    }
    let operation = spec.match_.operations.first().map_or("CREATE", String::as_str);
    let reviews: Vec<Review> = objects
        .iter()
        .filter_map(|object| {
            let request = ObjectRequest {
                object,
                operation,
                namespace: Some("default"),
                username: "system:serviceaccount:default:example",
                groups: &[],
                uid: "portcullis-lint",
            };
            Review::for_object(&request).ok()
        })
        .collect();
    for rule in &spec.rules {
        let Ok(expression) = env.compile(&rule.expression) else { continue };
        let mut last = None;
        let all_error = reviews.iter().all(|review| {
            let null = Value::Null;
            let vars = [
                ("object", review.object.as_ref().unwrap_or(&null)),
                ("oldObject", review.old_object.as_ref().unwrap_or(&null)),
                ("request", &review.request),
            ];
            match expression.eval_bool(&vars) {
                Err(e) => {
                    last = Some(e.to_string());
                    true
                }
                Ok(_) => false,
            }
        });
        if all_error && let Some(error) = last {
            add(
                "cel-always-errors",
                format!(
                    "rule `{}` errors on every example object ({error}); in {} mode an error {}; guard optional \
                     fields with has(...)",
                    rule.expression,
                    doc.mode(),
                    if doc.mode() == Mode::Enforce { "denies" } else { "is reported" }
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests;
