//! `verify_bundle` against real bundles from the shared fixtures: positive cases, and the
//! negatives a gate must refuse.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;

use super::*;
use crate::policy::SubjectMatch;
use crate::verify::dsse::decode_sha256;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures");
const CONFORMANCE: &str = "sigstore-conformance/bundle-verify";
const BEACON: &str = "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main";
const GH_ISSUER: &str = "https://token.actions.githubusercontent.com";
const OCI_SUBJECT: &str = "732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4";

/// A fixture file. Tests that read one are ignored (with the reason) when the fixtures are
/// absent; when they are present, a missing file is a failure.
fn fixture(relative: &str) -> Vec<u8> {
    let path = format!("{FIXTURES}/{relative}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn text(relative: &str) -> String {
    String::from_utf8(fixture(relative)).expect("UTF-8 fixture")
}

fn root() -> TrustRoot {
    TrustRoot::from_file(std::path::Path::new(&format!("{FIXTURES}/sigstore-root/trusted_root.json")))
        .or_else(|_| TrustRoot::production())
        .expect("trusted root")
}

fn keyless(issuer: &str, subject: SubjectMatch) -> Identity {
    Identity { issuer: issuer.to_owned(), subject, github: None, issuer_regexp: None, claims: Vec::new() }
}

fn beacon() -> Identity {
    keyless(GH_ISSUER, SubjectMatch::Exact(BEACON.to_owned()))
}

fn cody() -> Identity {
    keyless("https://github.com/login/oauth", SubjectMatch::Exact("cody@soyland.com".to_owned()))
}

fn oci_digest() -> [u8; 32] {
    decode_sha256(OCI_SUBJECT).expect("digest")
}

fn edit(bundle: &[u8], change: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut json: Value = serde_json::from_slice(bundle).expect("bundle JSON");
    change(&mut json);
    serde_json::to_vec(&json).expect("serialise")
}

#[cfg_attr(not(fixtures), ignore = "needs ../shared/fixtures, which is absent")]
#[test]
fn production_dsse_attestation_verifies_against_fixture_and_embedded_roots() {
    let bundle = fixture("cosign/oci-attestation.sigstore.json");
    let identity = cody();
    for trust in [root(), TrustRoot::production().expect("embedded root")] {
        for artifact in [Some(Artifact::Sha256(oci_digest())), None] {
            let verified =
                verify_bundle(&bundle, artifact, &Signer::Keyless(&identity), TransparencyLog::Required, &trust)
                    .expect("verifies");
            assert_eq!(verified.signer, "cody@soyland.com (issuer https://github.com/login/oauth)");
            assert!(verified.signed_at.is_some_and(|t| t > 1_740_000_000), "{:?}", verified.signed_at);
            let Content::Dsse { payload_type, payload } = verified.content else { panic!("DSSE expected") };
            assert_eq!(payload_type, "application/vnd.in-toto+json");
            let statement = Statement::from_payload(&payload_type, &payload).expect("statement");
            assert!(statement.has_sha256(&oci_digest()));
            assert_eq!(statement.predicate_type, "https://cosign.sigstore.dev/attestation/v1");
        }
    }
}

#[cfg_attr(not(fixtures), ignore = "needs ../shared/fixtures, which is absent")]
#[test]
fn dsse_for_another_artifact_is_refused() {
    let bundle = fixture("cosign/oci-attestation.sigstore.json");
    let identity = cody();
    let err = verify_bundle(
        &bundle,
        Some(Artifact::Sha256([7; 32])),
        &Signer::Keyless(&identity),
        TransparencyLog::Required,
        &root(),
    )
    .expect_err("wrong subject");
    assert!(matches!(err, BundleError::ArtifactMismatch(_)), "{err}");
}

#[cfg_attr(not(fixtures), ignore = "needs ../shared/fixtures, which is absent")]
#[test]
fn tampered_payload_is_refused() {
    let bundle = fixture("cosign/oci-attestation.sigstore.json");
    let tampered = edit(&bundle, |json| {
        let payload = json["dsseEnvelope"]["payload"].as_str().expect("payload");
        let mut statement: Value = serde_json::from_slice(&B64.decode(payload).expect("b64")).expect("statement");
        statement["predicate"] = serde_json::json!({ "evil": true });
        json["dsseEnvelope"]["payload"] = B64.encode(serde_json::to_vec(&statement).expect("json")).into();
    });
    let identity = cody();
    let err = verify_bundle(&tampered, None, &Signer::Keyless(&identity), TransparencyLog::Required, &root())
        .expect_err("tampered payload");
    assert!(matches!(err, BundleError::Signature(_) | BundleError::TransparencyLog(_)), "{err}");
}

#[cfg_attr(not(fixtures), ignore = "needs ../shared/fixtures, which is absent")]
#[test]
fn identity_of_another_subject_is_refused() {
    let bundle = fixture("cosign/oci-attestation.sigstore.json");
    let other = keyless("https://github.com/login/oauth", SubjectMatch::Exact("mallory@example.com".to_owned()));
    let err = verify_bundle(&bundle, None, &Signer::Keyless(&other), TransparencyLog::Required, &root())
        .expect_err("other subject");
    let BundleError::IdentityMismatch { expected, found } = err else { panic!("identity mismatch expected: {err}") };
    assert!(expected.contains("mallory@example.com") && found.contains("cody@soyland.com"), "{expected} / {found}");
}

#[cfg_attr(not(fixtures), ignore = "needs ../shared/fixtures, which is absent")]
#[test]
fn regexp_matching_only_unanchored_is_refused() {
    let bundle = fixture("cosign/oci-attestation.sigstore.json");
    let re = regex::Regex::new("^(?:soyland)$").expect("regex");
    let identity = keyless("https://github.com/login/oauth", SubjectMatch::RegExp(re));
    let err = verify_bundle(&bundle, None, &Signer::Keyless(&identity), TransparencyLog::Required, &root())
        .expect_err("unanchored only");
    assert!(matches!(err, BundleError::IdentityMismatch { .. }), "{err}");
}

#[cfg_attr(not(fixtures), ignore = "needs ../shared/fixtures, which is absent")]
#[test]
fn message_signature_needs_the_artifact_and_checks_it() {
    let dir = format!("{CONFORMANCE}/happy-path-v0.3");
    let (bundle, artifact) =
        (fixture(&format!("{dir}/bundle.sigstore.json")), fixture(&format!("{CONFORMANCE}/a.txt")));
    let identity = beacon();
    let signer = Signer::Keyless(&identity);
    let verified =
        verify_bundle(&bundle, Some(Artifact::Bytes(&artifact)), &signer, TransparencyLog::Required, &root())
            .expect("verifies");
    assert_eq!(verified.content, Content::MessageSignature);
    let digest = *sigstore_verify::crypto::sha256(&artifact).as_bytes();
    verify_bundle(&bundle, Some(Artifact::Sha256(digest)), &signer, TransparencyLog::Required, &root())
        .expect("by digest");
    let err = verify_bundle(&bundle, None, &signer, TransparencyLog::Required, &root()).expect_err("no artifact");
    assert!(matches!(err, BundleError::ArtifactRequired(_)), "{err}");
    let err = verify_bundle(&bundle, Some(Artifact::Bytes(b"other")), &signer, TransparencyLog::Required, &root())
        .expect_err("other artifact");
    assert!(matches!(err, BundleError::ArtifactMismatch(_)), "{err}");
    let err = verify_bundle(&bundle, Some(Artifact::Bytes(&artifact)), &signer, TransparencyLog::Skip, &root())
        .expect_err("keyless skip");
    assert!(matches!(err, BundleError::TransparencyLog(_)), "{err}");
}

#[cfg_attr(not(fixtures), ignore = "needs ../shared/fixtures, which is absent")]
#[test]
fn expired_certificate_without_verified_time_is_refused() {
    let dir = format!("{CONFORMANCE}/happy-path-v0.3");
    let (bundle, artifact) =
        (fixture(&format!("{dir}/bundle.sigstore.json")), fixture(&format!("{CONFORMANCE}/a.txt")));
    // Without its SET the entry's integratedTime is unauthenticated: no verified time is left,
    // and the 10-minute certificate expired long ago.
    let stripped = edit(&bundle, |json| {
        for entry in json["verificationMaterial"]["tlogEntries"].as_array_mut().expect("entries") {
            entry.as_object_mut().expect("entry").remove("inclusionPromise");
        }
    });
    let identity = beacon();
    let err = verify_bundle(
        &stripped,
        Some(Artifact::Bytes(&artifact)),
        &Signer::Keyless(&identity),
        TransparencyLog::Required,
        &root(),
    )
    .expect_err("no verified time");
    assert!(
        matches!(
            err,
            BundleError::NoVerifiedTimestamp(_)
                | BundleError::Timestamp(_)
                | BundleError::Certificate(_)
                | BundleError::CertificateNotValidAt(_)
        ),
        "{err}"
    );
}

#[cfg_attr(not(fixtures), ignore = "needs ../shared/fixtures, which is absent")]
#[test]
fn rekor_entry_for_another_artifact_is_refused() {
    let (dsse, message) = (
        fixture(&format!("{CONFORMANCE}/happy-path-intoto-in-dsse-v3/bundle.sigstore.json")),
        fixture(&format!("{CONFORMANCE}/happy-path-v0.3/bundle.sigstore.json")),
    );
    // The message-signature bundle, carrying the log entry of the DSSE bundle (same signer).
    let other: Value = serde_json::from_slice(&dsse).expect("json");
    let swapped = edit(&message, |json| {
        json["verificationMaterial"]["tlogEntries"] = other["verificationMaterial"]["tlogEntries"].clone();
    });
    let artifact = fixture(&format!("{CONFORMANCE}/a.txt"));
    let identity = beacon();
    let result = verify_bundle(
        &swapped,
        Some(Artifact::Bytes(&artifact)),
        &Signer::Keyless(&identity),
        TransparencyLog::Required,
        &root(),
    );
    assert!(result.is_err(), "a log entry of another signature must not verify: {result:?}");
}

#[cfg_attr(not(fixtures), ignore = "needs ../shared/fixtures, which is absent")]
#[test]
fn keys_right_and_wrong() {
    let dir = format!("{CONFORMANCE}/managed-key-happy-path");
    let (bundle, pem, artifact, other_pem) = (
        fixture(&format!("{dir}/bundle.sigstore.json")),
        text(&format!("{dir}/key.pub")),
        fixture(&format!("{CONFORMANCE}/a.txt")),
        text("generated/cosign-key-signed/cosign.pub"),
    );
    let verified = verify_bundle(
        &bundle,
        Some(Artifact::Bytes(&artifact)),
        &Signer::Key { pem: &pem },
        TransparencyLog::Required,
        &root(),
    )
    .expect("right key");
    assert!(verified.signer.starts_with("key sha256:"), "{}", verified.signer);
    let err = verify_bundle(
        &bundle,
        Some(Artifact::Bytes(&artifact)),
        &Signer::Key { pem: &other_pem },
        TransparencyLog::Required,
        &root(),
    )
    .expect_err("wrong key");
    assert!(matches!(err, BundleError::Signature(_) | BundleError::TransparencyLog(_)), "{err}");
    let err = verify_bundle(
        &bundle,
        Some(Artifact::Bytes(&artifact)),
        &Signer::Key { pem: "garbage" },
        TransparencyLog::Required,
        &root(),
    )
    .expect_err("bad key");
    assert!(matches!(err, BundleError::Key(_)), "{err}");
    // A keyless bundle is not accepted by key.
    let keyless_bundle = fixture(&format!("{CONFORMANCE}/happy-path-v0.3/bundle.sigstore.json"));
    let result = verify_bundle(
        &keyless_bundle,
        Some(Artifact::Bytes(&artifact)),
        &Signer::Key { pem: &pem },
        TransparencyLog::Required,
        &root(),
    );
    assert!(result.is_err());
}

#[cfg_attr(not(fixtures), ignore = "needs ../shared/fixtures, which is absent")]
#[test]
fn offline_key_bundle_needs_skip() {
    let dir = "generated/cosign-key-signed";
    let (bundle, pem) = (fixture(&format!("{dir}/keybundle.sigstore.json")), text(&format!("{dir}/cosign.pub")));
    let signer = Signer::Key { pem: &pem };
    let err = verify_bundle(&bundle, None, &signer, TransparencyLog::Required, &root()).expect_err("no log entry");
    assert!(matches!(err, BundleError::NoLogEntry), "{err}");
    let verified = verify_bundle(&bundle, None, &signer, TransparencyLog::Skip, &root()).expect("signed by the key");
    assert!(matches!(verified.content, Content::Dsse { .. }));
    assert_eq!(verified.signed_at, None);
    let err = verify_bundle(&bundle, Some(Artifact::Sha256([1; 32])), &signer, TransparencyLog::Skip, &root())
        .expect_err("other artifact");
    assert!(matches!(err, BundleError::ArtifactMismatch(_)), "{err}");
    let identity_pem = text(&format!("{CONFORMANCE}/managed-key-happy-path/key.pub"));
    let err = verify_bundle(&bundle, None, &Signer::Key { pem: &identity_pem }, TransparencyLog::Skip, &root())
        .expect_err("wrong key");
    assert!(matches!(err, BundleError::Signature(_)), "{err}");
}

#[cfg_attr(not(fixtures), ignore = "needs ../shared/fixtures, which is absent")]
#[test]
fn legacy_key_signature_and_attestation() {
    let dir = "generated/cosign-key-signed";
    let (pushed, pem, envelope) =
        (text(&format!("{dir}/pushed.json")), text(&format!("{dir}/cosign.pub")), fixture(&format!("{dir}/env.json")));
    let pushed: Value = serde_json::from_str(&pushed).expect("pushed.json");
    let payload = pushed["signature"]["payload"].as_str().expect("payload").as_bytes();
    let signature = pushed["signature"]["signature_b64"].as_str().expect("signature");
    verify_raw_signature(&pem, payload, &B64.decode(signature).expect("b64")).expect("raw signature");
    assert!(matches!(
        verify_raw_signature(&pem, b"other", &B64.decode(signature).expect("b64")),
        Err(BundleError::Signature(_))
    ));

    let signer = Signer::Key { pem: &pem };
    let bundle = bundle_from_legacy(payload, signature, None, None, None, None).expect("legacy bundle");
    let verified = verify_bundle(&bundle, Some(Artifact::Bytes(payload)), &signer, TransparencyLog::Skip, &root())
        .expect("legacy .sig");
    assert_eq!(verified.content, Content::MessageSignature);
    let err = verify_bundle(&bundle, Some(Artifact::Bytes(b"{}")), &signer, TransparencyLog::Skip, &root())
        .expect_err("payload");
    assert!(matches!(err, BundleError::ArtifactMismatch(_)), "{err}");

    let bundle = bundle_from_legacy(&envelope, "", None, None, None, None).expect("legacy .att");
    let verified = verify_bundle(&bundle, None, &signer, TransparencyLog::Skip, &root()).expect("legacy .att verifies");
    assert!(matches!(verified.content, Content::Dsse { .. }));
}

#[cfg_attr(not(fixtures), ignore = "needs ../shared/fixtures, which is absent")]
#[test]
fn legacy_keyless_from_annotations() {
    // A v0.1 keyless bundle (SET only) taken apart into cosign annotations and put back together.
    let original = fixture(&format!("{CONFORMANCE}/happy-path-v0.1/bundle.sigstore.json"));
    let artifact = fixture(&format!("{CONFORMANCE}/a.txt"));
    let json: Value = serde_json::from_slice(&original).expect("json");
    let material = &json["verificationMaterial"];
    let der = B64
        .decode(material["x509CertificateChain"]["certificates"][0]["rawBytes"].as_str().expect("cert"))
        .expect("b64");
    let pem = format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", B64.encode(der));
    let entry = &material["tlogEntries"][0];
    let log_id: String = B64
        .decode(entry["logId"]["keyId"].as_str().expect("log id"))
        .expect("b64")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let number = |v: &Value| v.as_str().and_then(|s| s.parse::<i64>().ok()).or_else(|| v.as_i64()).expect("number");
    let rekor = serde_json::json!({
        "SignedEntryTimestamp": entry["inclusionPromise"]["signedEntryTimestamp"],
        "Payload": {
            "body": entry["canonicalizedBody"],
            "integratedTime": number(&entry["integratedTime"]),
            "logIndex": number(&entry["logIndex"]),
            "logID": log_id,
        }
    })
    .to_string();
    let signature = json["messageSignature"]["signature"].as_str().expect("signature");
    let rebuilt =
        bundle_from_legacy(&artifact, signature, Some(&pem), Some(&pem), Some(&rekor), None).expect("rebuilt");
    let identity = beacon();
    let signer = Signer::Keyless(&identity);
    verify_bundle(&rebuilt, Some(Artifact::Bytes(&artifact)), &signer, TransparencyLog::Required, &root())
        .expect("legacy keyless");
    let without_log = bundle_from_legacy(&artifact, signature, Some(&pem), None, None, None).expect("rebuilt");
    assert!(
        verify_bundle(&without_log, Some(Artifact::Bytes(&artifact)), &signer, TransparencyLog::Required, &root())
            .is_err()
    );
    assert!(matches!(
        bundle_from_legacy(&artifact, signature, Some("no pem"), None, None, None),
        Err(BundleError::Malformed(_))
    ));
    assert!(matches!(
        bundle_from_legacy(&artifact, signature, None, None, Some("{}"), None),
        Err(BundleError::Malformed(_))
    ));
}

#[test]
fn malformed_and_unknown_versions() {
    let identity = beacon();
    let signer = Signer::Keyless(&identity);
    let err = verify_bundle(b"{", None, &signer, TransparencyLog::Required, &root()).expect_err("not JSON");
    assert!(matches!(err, BundleError::Malformed(_)), "{err}");
    let err = verify_bundle(
        br#"{"mediaType":"application/vnd.dev.sigstore.bundle+json;version=9"}"#,
        None,
        &signer,
        TransparencyLog::Required,
        &root(),
    )
    .expect_err("unknown version");
    assert!(matches!(err, BundleError::UnsupportedVersion(_)), "{err}");
}
