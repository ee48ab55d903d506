use std::path::Path;

use super::*;
use crate::policy::{AuthorityKind, DigestRule, KeyRef, Mode, Require};

fn parse(text: &str) -> Result<Vec<Policy>, PolicyError> {
    parse_file(text, "p.yaml", Path::new("pol"), &CelEnv::new())
}

fn image(text: &str) -> ImagePolicy {
    match parse(text).expect("parses").remove(0) {
        Policy::Image(p) => p,
        Policy::Resource(_) => panic!("not an image policy"),
    }
}

const FULL: &str = r#"
apiVersion: portcullis.dev/v1alpha1
kind: ImagePolicy
metadata:
  name: production-images
spec:
  mode: enforce
  match:
    namespaces: ["prod", "payments-*"]
    kinds: [Pod, Deployment, CronJob]
  images: ["registry.example.com/team/**"]
  digest: require
  platforms: index
  require: { atLeast: 2 }
  authorities:
    - name: release-key
      key: { publicKeyFile: keys/release.pub }
    - name: github-release
      keyless:
        issuer: https://token.actions.githubusercontent.com
        github: { repository: acme/app, workflow: .github/workflows/release.yml, ref: "refs/tags/v*" }
      transparencyLog: required
  attestations:
    - name: sbom
      predicateType: cyclonedx
      authorities: [release-key]
      conditions:
        - expression: "!predicate.components.exists(c, c.name == 'log4j-core' && c.version.startsWith('2.14'))"
          message: "log4j-core 2.14 is forbidden"
---
apiVersion: portcullis.dev/v1alpha1
kind: ResourcePolicy
metadata: { name: secrets-from-reconciler }
spec:
  match: { kinds: [Secret], namespaces: ["prod"] }
  rules:
    - expression: "request.userInfo.username == 'system:serviceaccount:argocd:argocd-application-controller'"
      message: "Secrets in prod are written by the GitOps reconciler only"
"#;

#[test]
fn the_design_example_compiles() {
    let policies = parse(FULL).expect("parses");
    assert_eq!(policies.len(), 2);
    let Policy::Image(p) = &policies[0] else { panic!("image policy first") };
    assert_eq!(p.name, "production-images");
    assert_eq!(p.source.line, 2);
    assert_eq!(p.mode, Mode::Enforce);
    assert_eq!(p.digest, DigestRule::Require);
    assert_eq!(p.require, Require::AtLeast(2));
    assert!(
        matches!(&p.authorities[0].kind, AuthorityKind::Key(KeyRef::File(f)) if f == Path::new("pol/keys/release.pub"))
    );
    assert!(matches!(&p.authorities[1].kind, AuthorityKind::Keyless(i) if i.issuer.contains("githubusercontent")));
    assert_eq!(p.attestations[0].predicate_type, "https://cyclonedx.org/bom");
    let Policy::Resource(r) = &policies[1] else { panic!("resource policy second") };
    assert_eq!(r.source.line, 31);
    assert_eq!(r.rules.len(), 1);
}

fn doc(spec: &str) -> String {
    format!("apiVersion: portcullis.dev/v1alpha1\nkind: ImagePolicy\nmetadata:\n  name: p\nspec:\n{spec}")
}

fn error(text: &str) -> String {
    parse(text).expect_err("should fail").to_string()
}

#[test]
fn defaults_are_the_strict_ones() {
    let p = image(&doc("  images: ['**']\n"));
    assert_eq!(p.mode, Mode::Enforce);
    assert_eq!(p.digest, DigestRule::Require);
    assert_eq!(p.require, Require::Any);
}

#[test]
fn typos_name_the_file_and_line() {
    let e = error(&doc("  images: ['**']\n  autorities: []\n"));
    assert!(e.starts_with("p.yaml:7:"), "{e}");
    assert!(e.contains("unknown field `autorities`"), "{e}");
    let e = error(&format!("---\n# leading comment\n{}", doc("  images: ['**']\n  mode: enforcing\n")));
    assert!(e.starts_with("p.yaml:9:"), "{e}");
    assert!(e.contains("enforcing"), "{e}");
}

#[test]
fn documents_must_be_policies() {
    assert!(error("apiVersion: v1\nkind: ConfigMap\n").contains("apiVersion \"v1\" is not supported"));
    assert!(error("apiVersion: portcullis.dev/v1alpha1\nkind: Policy\n").contains("not a policy kind"));
    assert!(error("kind: ImagePolicy\n").contains("missing apiVersion"));
    assert!(error("a: [\n").starts_with("p.yaml:"));
    assert!(parse("# only comments\n---\n\n").expect("empty").is_empty());
}

#[test]
fn semantic_errors() {
    let cases = [
        ("  images: []\n", "list at least one image glob"),
        ("  images: ['**']\n  match: { kinds: [Secret] }\n", "carries no images"),
        ("  images: ['**']\n  match: { operations: [DELETE] }\n", "DELETE"),
        ("  images: ['**']\n  authorities: [{name: a}]\n", "exactly one of key or keyless"),
        ("  images: ['**']\n  authorities: [{name: a, key: {}}]\n", "exactly one of publicKeyFile"),
        ("  images: ['**']\n  authorities: [{name: a, key: {publicKey: nope}}]\n", "PEM block"),
        ("  images: ['**']\n  authorities: [{name: a, keyless: {issuer: x}}]\n", "must be explicit"),
        ("  images: ['**']\n  authorities: [{name: a, keyless: {subject: s}}]\n", "needs issuer"),
        (
            "  images: ['**']\n  authorities: [{name: a, keyless: {issuer: i, subject: s, subjectRegExp: r}}]\n",
            "only one of",
        ),
        ("  images: ['**']\n  authorities: [{name: a, keyless: {issuer: i, subjectRegExp: '('}}]\n", "subjectRegExp"),
        (
            "  images: ['**']\n  authorities: [{name: a, keyless: {issuer: i, subject: s}, transparencyLog: skip}]\n",
            "only allowed for key-based",
        ),
        ("  images: ['**']\n  authorities: [{name: Bad_Name, key: {publicKeyFile: k}}]\n", "not a valid name"),
        (
            "  images: ['**']\n  require: {atLeast: 2}\n  authorities: [{name: a, key: {publicKeyFile: k}}]\n",
            "atLeast 2",
        ),
        ("  images: ['**']\n  attestations: [{name: s, predicateType: cyclonedx}]\n", "no authorities"),
        (
            "  images: ['**']\n  authorities: [{name: a, key: {publicKeyFile: k}}]\n  attestations: [{name: s, predicateType: nonsense}]\n",
            "neither a known short name",
        ),
        (
            "  images: ['**']\n  authorities: [{name: a, key: {publicKeyFile: k}}]\n  attestations: [{name: s, predicateType: spdx, authorities: [b]}]\n",
            "not defined",
        ),
        (
            "  images: ['**']\n  authorities: [{name: a, key: {publicKeyFile: k}}]\n  attestations: [{name: s, predicateType: spdx, conditions: [{expression: 'a =='}]}]\n",
            "does not compile",
        ),
        ("  images: ['**']\n  allowedImages: []\n", "empty list"),
        (
            "  images: ['**']\n  require: none\n  authorities: [{name: a, key: {publicKeyFile: k}}]\n",
            "require: none needs attestations",
        ),
        ("  images: ['a/***']\n", "***"),
    ];
    for (spec, want) in cases {
        let e = error(&doc(spec));
        assert!(e.contains(want), "{spec}\n→ {e}");
        assert!(e.starts_with("p.yaml:1: policy \"p\""), "{e}");
    }
}

#[test]
fn regexes_are_anchored() {
    let re = anchored("https://github.com/acme/.*").expect("regex");
    assert!(re.is_match("https://github.com/acme/app"));
    assert!(!re.is_match("https://evil.com/?https://github.com/acme/app"));
    let re = anchored("a|b").expect("regex");
    assert!(!re.is_match("ab"), "alternation must not escape the anchors");
    // A pattern that closes the wrapping group itself would escape the anchors: refused.
    assert!(anchored(r"nobody@example\.com)|(.*").is_err());
    assert!(anchored(r"a)(b").is_err());
}

#[test]
fn duplicate_names_across_files() {
    let a = parse(&doc("  images: ['**']\n")).expect("a");
    let b = parse_file(&doc("  images: ['**']\n"), "q.yaml", Path::new("."), &CelEnv::new()).expect("b");
    let all: Vec<_> = a.into_iter().chain(b).collect();
    let e = check_unique(&all).expect_err("duplicate").to_string();
    assert!(e.contains("p.yaml:1") && e.contains("q.yaml:1"), "{e}");
}

#[test]
fn document_splitting() {
    let docs = split_documents("a: 1\n---\nb: 2\n--- # c\nd: 3\n...\n");
    let starts: Vec<_> = docs.iter().map(|(l, _)| *l).collect();
    assert_eq!(starts, vec![1, 3, 5]);
}

#[test]
fn timestamp_mode_and_the_built_in_github_root() {
    let head =
        "apiVersion: portcullis.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: gh}\nspec:\n  images: ['**']\n";
    let policy = image(&format!(
        "{head}  authorities:\n    - name: gh\n      keyless: {{issuer: i, subject: s}}\n      transparencyLog: timestamp\n      \
         trustedRoot: github\n    - name: file\n      keyless: {{issuer: i, subject: s}}\n      trustedRoot: ./github\n    \
         - name: key\n      key: {{publicKeyFile: k}}\n      transparencyLog: timestamp\n"
    ));
    let [gh, file, key] = &policy.authorities[..] else { panic!("three authorities") };
    // Keyless and key-based authorities may both ask for a timestamp instead of the log.
    assert_eq!((gh.transparency_log, key.transparency_log), (TransparencyLog::Timestamp, TransparencyLog::Timestamp));
    // `github` names the built-in root: its content, no file to read.
    assert_eq!(gh.trusted_root, None);
    let text = gh.files.trusted_root.as_ref().map(|f| &*f.text);
    assert_eq!(text, Some(sigstore_trust_root::SIGSTORE_GITHUB_TRUSTED_ROOT));
    assert_eq!(gh.file_paths().count(), 0);
    // A file of that name is written as a path.
    assert_eq!(file.trusted_root.as_deref(), Some(Path::new("pol/./github")));
    assert!(file.files.trusted_root.is_none());
}

#[test]
fn keyless_claims_compile_and_refuse_mistakes() {
    let ok = "  images: ['**']\n  authorities: [{name: a, keyless: {issuer: https://gitlab.com, claims: \
              {sourceRepositoryURI: 'https://gitlab.com/acme/app', sourceRepositoryRefRegExp: 'refs/heads/.*'}}}]\n";
    let policy = image(&doc(ok));
    let AuthorityKind::Keyless(identity) = &policy.authorities[0].kind else { panic!("keyless") };
    assert!(matches!(identity.subject, SubjectMatch::GithubOnly));
    let names: Vec<&str> = identity.claims.iter().map(|c| c.name).collect();
    assert_eq!(names, ["sourceRepositoryRef", "sourceRepositoryURI"]);
    let cases = [
        ("{issuer: i, claims: {}}", "claims is empty"),
        ("{issuer: i, claims: {sourceRepository: x}}", "not a Fulcio certificate claim"),
        ("{issuer: i, claims: {buildTrigger: a, buildTriggerRegExp: b}}", "only one of buildTrigger"),
        ("{issuer: i, claims: {buildTriggerRegExp: '('}}", "claims.buildTriggerRegExp"),
        ("{claims: {buildTrigger: push}}", "needs issuer"),
        ("{claims: {buildTrigger: push}, identities: [{issuer: i, subject: s}]}", "replaces issuer"),
    ];
    for (keyless, needle) in cases {
        let text = doc(&format!("  images: ['**']\n  authorities: [{{name: a, keyless: {keyless}}}]\n"));
        let e = error(&text);
        assert!(e.contains(needle), "{keyless}: {e}");
    }
}
