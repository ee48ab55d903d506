//! Keyless bundles from a private instance: `@sigstore/mock` Fulcio/Rekor/TSA and
//! sigstore-python, verified against that instance's `trusted_root.json`.

use super::*;
use crate::policy::SubjectMatch;
use crate::policy::model::GithubSpec;

const MOCK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/generated/mock-sigstore");
const SUBJECT: &str = "https://github.com/example/app/.github/workflows/release.yml@refs/heads/main";
const STATEMENT_SUBJECT: &str = "93f02d50c94474b68d5f76a964f4097911fc414b8a53cc66e62d333daea6fac8";

/// A file of the mock Sigstore fixtures (tests reading one are ignored when they are absent).
fn mock(name: &str) -> Vec<u8> {
    let path = format!("{MOCK}/{name}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn mock_root() -> TrustRoot {
    TrustRoot::from_json(&String::from_utf8_lossy(&mock("trusted_root.json"))).expect("mock root")
}

fn release_workflow() -> Identity {
    Identity {
        issuer: "https://token.actions.githubusercontent.com".to_owned(),
        subject: SubjectMatch::Exact(SUBJECT.to_owned()),
        github: None,
        issuer_regexp: None,
        claims: Vec::new(),
    }
}

#[cfg_attr(not(fixtures), ignore = "needs ../shared/fixtures, which is absent")]
#[test]
fn message_signatures_from_js_and_python_clients() {
    let (trust, blob) = (mock_root(), mock("blob.txt"));
    let identity = release_workflow();
    for name in ["keyless-blob.sigstore.json", "py-signed.sigstore.json"] {
        let bundle = mock(name);
        let verified = verify_bundle(
            &bundle,
            Some(Artifact::Bytes(&blob)),
            &Signer::Keyless(&identity),
            TransparencyLog::Required,
            &trust,
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(verified.signed_at.is_some(), "{name}");
        // Not against the public-good root: another instance.
        let production = TrustRoot::production().expect("production root");
        assert!(
            verify_bundle(
                &bundle,
                Some(Artifact::Bytes(&blob)),
                &Signer::Keyless(&identity),
                TransparencyLog::Required,
                &production
            )
            .is_err(),
            "{name} must not verify against the public-good root"
        );
    }
}

#[cfg_attr(not(fixtures), ignore = "needs ../shared/fixtures, which is absent")]
#[test]
fn dsse_with_fractional_second_timestamp() {
    let (trust, bundle) = (mock_root(), mock("keyless-dsse.sigstore.json"));
    let digest = crate::verify::dsse::decode_sha256(STATEMENT_SUBJECT).expect("digest");
    let identity = release_workflow();
    let verified = verify_bundle(
        &bundle,
        Some(Artifact::Sha256(digest)),
        &Signer::Keyless(&identity),
        TransparencyLog::Required,
        &trust,
    )
    .expect("verifies");
    let Content::Dsse { payload_type, payload } = verified.content else { panic!("DSSE expected") };
    let statement = Statement::from_payload(&payload_type, &payload).expect("statement");
    assert_eq!(statement.predicate_type, "https://slsa.dev/provenance/v1");
    // The mock Fulcio sets no GitHub claims: requiring them fails, saying so.
    let github = Identity {
        subject: SubjectMatch::GithubOnly,
        github: Some(GithubSpec {
            repository: "example/app".to_owned(),
            workflow: None,
            git_ref: None,
            sha: None,
            trigger: None,
        }),
        ..release_workflow()
    };
    let err = verify_bundle(
        &bundle,
        Some(Artifact::Sha256(digest)),
        &Signer::Keyless(&github),
        TransparencyLog::Required,
        &trust,
    )
    .expect_err("no GitHub claims");
    let BundleError::IdentityMismatch { found, .. } = err else { panic!("identity mismatch expected: {err}") };
    assert!(found.contains("no source repository"), "{found}");
}

#[cfg_attr(not(fixtures), ignore = "needs ../shared/fixtures, which is absent")]
#[test]
fn an_unparseable_timestamp_does_not_replace_the_log() {
    let (trust, blob, bundle) = (mock_root(), mock("blob.txt"), mock("keyless-blob.sigstore.json"));
    // Without the SET, the only time left would be the timestamp sigstore-tsa cannot parse.
    let mut json: serde_json::Value = serde_json::from_slice(&bundle).expect("json");
    for entry in json["verificationMaterial"]["tlogEntries"].as_array_mut().expect("entries") {
        entry.as_object_mut().expect("entry").remove("inclusionPromise");
    }
    let stripped = serde_json::to_vec(&json).expect("json");
    let identity = release_workflow();
    let err = verify_bundle(
        &stripped,
        Some(Artifact::Bytes(&blob)),
        &Signer::Keyless(&identity),
        TransparencyLog::Required,
        &trust,
    )
    .expect_err("no verified time");
    assert!(matches!(err, BundleError::NoVerifiedTimestamp(_)), "{err}");
}
