//! Identity matching against real Fulcio certificates from the shared fixtures.

use base64::Engine as _;

use super::*;
use crate::policy::model::GithubSpec;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures");
const BEACON: &str = "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main";
const GH_ISSUER: &str = "https://token.actions.githubusercontent.com";

/// The leaf certificate (DER) of a fixture bundle (tests reading one are ignored when the
/// fixtures are absent).
fn leaf(relative: &str) -> Vec<u8> {
    let path = format!("{FIXTURES}/{relative}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let json: serde_json::Value = serde_json::from_str(&text).expect("bundle JSON");
    let material = &json["verificationMaterial"];
    let b64 = material["certificate"]["rawBytes"]
        .as_str()
        .or_else(|| material["x509CertificateChain"]["certificates"][0]["rawBytes"].as_str())
        .expect("a certificate");
    base64::engine::general_purpose::STANDARD.decode(b64).expect("base64")
}

fn beacon() -> Vec<u8> {
    leaf("sigstore-conformance/bundle-verify/happy-path-v0.3/bundle.sigstore.json")
}

fn identity(subject: SubjectMatch, github: Option<GithubSpec>) -> Identity {
    Identity { issuer: GH_ISSUER.to_owned(), subject, github, issuer_regexp: None, claims: Vec::new() }
}

fn github(repository: &str) -> GithubSpec {
    GithubSpec { repository: repository.to_owned(), workflow: None, git_ref: None, sha: None, trigger: None }
}

/// The verdict class of a refused identity is `identity-mismatch`, naming both sides.
fn expect_mismatch(result: Result<String, BundleError>, expected_part: &str, found_part: &str) {
    match result.map_err(|e| crate::verify::verdict::Failure::from_bundle(e, true)) {
        Err(crate::verify::verdict::Failure::IdentityMismatch { expected, found }) => {
            assert!(expected.contains(expected_part), "expected {expected:?} to mention {expected_part:?}");
            assert!(found.contains(found_part), "found {found:?} to mention {found_part:?}");
        }
        other => panic!("want an identity mismatch, got {other:?}"),
    }
}

#[cfg_attr(not(fixtures), ignore = "needs ../shared/fixtures, which is absent")]
#[test]
fn reads_github_claims() {
    let cert = beacon();
    let claims = Claims::from_der(&cert).expect("claims");
    assert_eq!(claims.subject.as_deref(), Some(BEACON));
    assert_eq!(claims.issuer.as_deref(), Some(GH_ISSUER));
    assert_eq!(
        claims.source_repository.as_deref(),
        Some("https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon")
    );
    assert_eq!(claims.source_ref.as_deref(), Some("refs/heads/main"));
    assert_eq!(claims.source_sha.as_deref(), Some("c7b3dfb335f051e1c86bda4c716fac97df62ad81"));
    assert_eq!(claims.trigger.as_deref(), Some("workflow_dispatch"));
    assert_eq!(
        claims.workflow_in("https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon"),
        Some(".github/workflows/extremely-dangerous-oidc-beacon.yml")
    );
}

#[cfg_attr(not(fixtures), ignore = "needs ../shared/fixtures, which is absent")]
#[test]
fn exact_glob_and_regexp_subjects() {
    let cert = beacon();
    let found = check_identity(&cert, &identity(SubjectMatch::Exact(BEACON.to_owned()), None)).expect("exact");
    assert_eq!(found, format!("{BEACON} (issuer {GH_ISSUER})"));
    let glob = Glob::new("https://github.com/sigstore-conformance/**@refs/heads/main").expect("glob");
    check_identity(&cert, &identity(SubjectMatch::Pattern(glob), None)).expect("glob");
    let re = regex::Regex::new(r"^(?:https://github\.com/sigstore-conformance/.+)$").expect("regex");
    check_identity(&cert, &identity(SubjectMatch::RegExp(re), None)).expect("regexp");
}

#[cfg_attr(not(fixtures), ignore = "needs ../shared/fixtures, which is absent")]
#[test]
fn identity_of_another_subject_is_refused() {
    let cert = beacon();
    let other = "https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1";
    expect_mismatch(check_identity(&cert, &identity(SubjectMatch::Exact(other.to_owned()), None)), other, BEACON);
}

#[cfg_attr(not(fixtures), ignore = "needs ../shared/fixtures, which is absent")]
#[test]
fn regexp_matching_only_unanchored_is_refused() {
    let cert = beacon();
    // Compiled policies anchor every regexp: `oidc-beacon` becomes `^(?:oidc-beacon)$`.
    let re = regex::Regex::new("^(?:oidc-beacon)$").expect("regex");
    assert!(regex::Regex::new("oidc-beacon").expect("regex").is_match(BEACON));
    expect_mismatch(check_identity(&cert, &identity(SubjectMatch::RegExp(re), None)), "oidc-beacon", BEACON);
}

#[cfg_attr(not(fixtures), ignore = "needs ../shared/fixtures, which is absent")]
#[test]
fn issuer_mismatch_names_both() {
    let cert = beacon();
    let mut wanted = identity(SubjectMatch::Exact(BEACON.to_owned()), None);
    wanted.issuer = "https://accounts.google.com".to_owned();
    expect_mismatch(check_identity(&cert, &wanted), "https://accounts.google.com", GH_ISSUER);
}

#[cfg_attr(not(fixtures), ignore = "needs ../shared/fixtures, which is absent")]
#[test]
fn github_claims_match() {
    let cert = beacon();
    let mut spec = github("sigstore-conformance/extremely-dangerous-public-oidc-beacon");
    spec.workflow = Some(".github/workflows/extremely-dangerous-oidc-beacon.yml".to_owned());
    spec.git_ref = Some("refs/heads/*".to_owned());
    spec.sha = Some("C7B3DFB335F051E1C86BDA4C716FAC97DF62AD81".to_owned());
    spec.trigger = Some("workflow_dispatch".to_owned());
    check_identity(&cert, &identity(SubjectMatch::GithubOnly, Some(spec))).expect("github claims");
}

#[cfg_attr(not(fixtures), ignore = "needs ../shared/fixtures, which is absent")]
#[test]
fn github_claim_mismatches_name_both() {
    let cert = beacon();
    let repo = "sigstore-conformance/extremely-dangerous-public-oidc-beacon";
    expect_mismatch(
        check_identity(&cert, &identity(SubjectMatch::GithubOnly, Some(github("acme/app")))),
        "https://github.com/acme/app",
        repo,
    );
    let mut spec = github(repo);
    spec.git_ref = Some("refs/tags/v*".to_owned());
    expect_mismatch(
        check_identity(&cert, &identity(SubjectMatch::GithubOnly, Some(spec))),
        "refs/tags/v*",
        "refs/heads/main",
    );
    let mut spec = github(repo);
    spec.workflow = Some(".github/workflows/release.yml".to_owned());
    expect_mismatch(
        check_identity(&cert, &identity(SubjectMatch::GithubOnly, Some(spec))),
        "release.yml",
        "extremely-dangerous-oidc-beacon.yml",
    );
    let mut spec = github(repo);
    spec.trigger = Some("push".to_owned());
    expect_mismatch(
        check_identity(&cert, &identity(SubjectMatch::GithubOnly, Some(spec))),
        "push",
        "workflow_dispatch",
    );
    let mut spec = github(repo);
    spec.sha = Some("0".repeat(40));
    expect_mismatch(check_identity(&cert, &identity(SubjectMatch::GithubOnly, Some(spec))), "0000", "c7b3dfb3");
}

#[cfg_attr(not(fixtures), ignore = "needs ../shared/fixtures, which is absent")]
#[test]
fn email_identity_and_oauth_issuer() {
    let cert = leaf("cosign/oci-attestation.sigstore.json");
    let wanted = Identity {
        issuer: "https://github.com/login/oauth".to_owned(),
        subject: SubjectMatch::Exact("cody@soyland.com".to_owned()),
        github: None,
        issuer_regexp: None,
        claims: Vec::new(),
    };
    let found = check_identity(&cert, &wanted).expect("email identity");
    assert!(found.starts_with("cody@soyland.com"), "{found}");
    // A GitHub requirement on a certificate without GitHub claims says what is missing.
    let wanted = Identity { github: Some(github("acme/app")), ..wanted };
    expect_mismatch(check_identity(&cert, &wanted), "acme/app", "no source repository");
}

#[test]
fn der_utf8_is_strict() {
    assert_eq!(der_utf8(b"\x0c\x03abc", "x").expect("utf8"), "abc");
    assert!(der_utf8(b"\x0c\x04abc", "x").is_err());
    assert!(der_utf8(b"\x13\x03abc", "x").is_err());
    assert!(der_utf8(b"", "x").is_err());
    let long = [&[0x0c, 0x81, 0x80][..], &[b'a'; 128]].concat();
    assert_eq!(der_utf8(&long, "x").expect("long form").len(), 128);
}

#[test]
fn garbage_is_a_certificate_error() {
    assert!(matches!(Claims::from_der(b"not a certificate"), Err(BundleError::Certificate(_))));
}

#[cfg_attr(not(fixtures), ignore = "needs ../shared/fixtures, which is absent")]
#[test]
fn no_constraint_at_all_is_refused() {
    let cert = beacon();
    expect_mismatch(check_identity(&cert, &identity(SubjectMatch::GithubOnly, None)), "neither", BEACON);
}
