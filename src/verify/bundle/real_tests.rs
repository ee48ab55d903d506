//! Real bundles that older releases refused although they are genuine: GitHub artifact
//! attestations from GitHub's own instance (an RFC 3161 timestamp, no log entry), and npm
//! provenance bundles v0.1 that carry the Fulcio root in their chain. Positives verify; each
//! derived negative is refused with its own failure class. Provenance: tests/fixtures/sigstore/README.md.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;

use super::*;
use crate::policy::SubjectMatch;
use crate::policy::model::GithubSpec;
use crate::verify::dsse::decode_sha256;

const LOCAL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sigstore");
const SHARED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures");
const GH_ISSUER: &str = "https://token.actions.githubusercontent.com";
const GH_BUNDLE: &str = "github-attest-build-provenance-private.sigstore.json";
const GH_BUNDLE_2: &str = "github-attest-build-provenance-private-2.sigstore.json";
const GH_SUBJECT: &str = "b03d18ed0a16864ef2d2e559c660159a2170b9d086a1f42f570b1679326b90e6";
const PROBER: &str = "https://github.com/actions/attest-build-provenance/.github/workflows/prober.yml@refs/heads/main";
const NPM_SIGNER: &str = "https://github.com/sigstore/sigstore-js/.github/workflows/release.yml@refs/heads/main";

fn read(path: String) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn local(name: &str) -> Vec<u8> {
    read(format!("{LOCAL}/{name}"))
}

fn shared(name: &str) -> Vec<u8> {
    read(format!("{SHARED}/{name}"))
}

fn identity(subject: &str) -> Identity {
    Identity {
        issuer: GH_ISSUER.to_owned(),
        subject: SubjectMatch::Exact(subject.to_owned()),
        github: None,
        issuer_regexp: None,
        claims: Vec::new(),
    }
}

fn edit(bundle: &[u8], change: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut json: Value = serde_json::from_slice(bundle).expect("bundle JSON");
    change(&mut json);
    serde_json::to_vec(&json).expect("serialise")
}

fn github_root() -> TrustRoot {
    TrustRoot::github().expect("built-in GitHub root")
}

fn gh_digest() -> [u8; 32] {
    decode_sha256(GH_SUBJECT).expect("digest")
}

/// Verify the GitHub bundle for its subject digest.
fn gh(bundle: &[u8], who: &Identity, tlog: TransparencyLog, trust: &TrustRoot) -> Result<Verified, BundleError> {
    verify_bundle(bundle, Some(Artifact::Sha256(gh_digest())), &Signer::Keyless(who), tlog, trust)
}

#[test]
fn github_private_attestation_verifies_by_its_timestamp() {
    let bundle = local(GH_BUNDLE);
    let verified = gh(&bundle, &identity(PROBER), TransparencyLog::Timestamp, &github_root()).expect("genuine");
    // The TSA's time, inside the 10-minute certificate (2025-11-18 07:58:34–08:08:34Z).
    let at = verified.signed_at.expect("a verified time");
    assert!((1_763_452_714..=1_763_453_314).contains(&at), "{at}");
    assert!(matches!(verified.content, Content::Dsse { .. }));
    // Also bound to its own subject when no artifact is given, and by the typed GitHub claims:
    // the build's workflow is prober-github.yml, which calls the signing workflow prober.yml (the SAN).
    let claims = Identity {
        subject: SubjectMatch::GithubOnly,
        github: Some(GithubSpec {
            repository: "actions/attest-build-provenance".to_owned(),
            workflow: Some(".github/workflows/prober-github.yml".to_owned()),
            git_ref: Some("refs/heads/main".to_owned()),
            sha: None,
            trigger: None,
        }),
        ..identity(PROBER)
    };
    verify_bundle(&bundle, None, &Signer::Keyless(&claims), TransparencyLog::Timestamp, &github_root())
        .expect("typed claims");
    // The same policy over the second real bundle (another run, another subject).
    verify_bundle(
        &local(GH_BUNDLE_2),
        None,
        &Signer::Keyless(&identity(PROBER)),
        TransparencyLog::Timestamp,
        &github_root(),
    )
    .expect("second bundle");
}

#[test]
fn github_private_attestation_needs_the_timestamp_mode() {
    let bundle = local(GH_BUNDLE);
    let err = gh(&bundle, &identity(PROBER), TransparencyLog::Required, &github_root()).expect_err("no log entry");
    assert!(matches!(err, BundleError::NoLogEntry), "{err}");
    let err = gh(&bundle, &identity(PROBER), TransparencyLog::Skip, &github_root()).expect_err("keyless skip");
    assert!(matches!(err, BundleError::TransparencyLog(_)), "{err}");
}

#[test]
fn github_private_attestation_derived_negatives() {
    let (bundle, root) = (local(GH_BUNDLE), github_root());
    let ts = TransparencyLog::Timestamp;
    // Wrong identity, wrong issuer.
    let err = gh(&bundle, &identity(&PROBER.replace("prober.yml", "release.yml")), ts, &root).expect_err("identity");
    assert!(matches!(err, BundleError::IdentityMismatch { .. }), "{err}");
    let other_issuer = Identity { issuer: "https://accounts.google.com".to_owned(), ..identity(PROBER) };
    let err = gh(&bundle, &other_issuer, ts, &root).expect_err("issuer");
    assert!(matches!(err, BundleError::IdentityMismatch { .. }), "{err}");
    // One payload byte changed: the envelope signature no longer verifies.
    let tampered = edit(&bundle, |json| {
        let mut payload = B64.decode(json["dsseEnvelope"]["payload"].as_str().expect("payload")).expect("base64");
        let at = payload.len() / 2;
        payload[at] ^= 0x01;
        json["dsseEnvelope"]["payload"] = Value::String(B64.encode(payload));
    });
    let err = verify_bundle(&tampered, None, &Signer::Keyless(&identity(PROBER)), ts, &root).expect_err("payload");
    assert!(matches!(err, BundleError::Signature(_) | BundleError::Unsupported(_)), "{err}");
    // Moved to another digest.
    let err = verify_bundle(&bundle, Some(Artifact::Sha256([7; 32])), &Signer::Keyless(&identity(PROBER)), ts, &root)
        .expect_err("another digest");
    assert!(matches!(err, BundleError::ArtifactMismatch(_)), "{err}");
    // Timestamp removed (the bundle then has no evidence at all).
    let bare = edit(&bundle, |json| {
        json["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"] = Value::Array(vec![]);
    });
    let err = gh(&bare, &identity(PROBER), ts, &root).expect_err("no timestamp");
    assert!(matches!(err, BundleError::NoVerifiedTimestamp(_)), "{err}");
    // A genuine GitHub timestamp, but over another bundle's signature.
    let other: Value = serde_json::from_slice(&local(GH_BUNDLE_2)).expect("json");
    let borrowed = edit(&bundle, |json| {
        json["verificationMaterial"]["timestampVerificationData"] =
            other["verificationMaterial"]["timestampVerificationData"].clone();
    });
    let err = gh(&borrowed, &identity(PROBER), ts, &root).expect_err("borrowed timestamp");
    assert!(matches!(err, BundleError::Timestamp(_)), "{err}");
}

#[cfg_attr(not(fixtures), ignore = "needs ../shared/fixtures, which is absent")]
#[test]
fn github_timestamp_from_an_authority_the_root_does_not_list() {
    let bundle = local(GH_BUNDLE);
    // The public-good root lists Sigstore's TSA, not GitHub's.
    let public_good =
        TrustRoot::from_json(&String::from_utf8(shared("sigstore-root/trusted_root.json")).expect("UTF-8"))
            .expect("root");
    assert!(public_good.has_timestamp_authorities());
    let err = gh(&bundle, &identity(PROBER), TransparencyLog::Timestamp, &public_good).expect_err("foreign TSA");
    assert!(matches!(err, BundleError::TimestampAuthorityNotTrusted(_)), "{err}");
    // GitHub's root without its timestamp authorities.
    let mut root: Value = serde_json::from_str(sigstore_trust_root::SIGSTORE_GITHUB_TRUSTED_ROOT).expect("json");
    root["timestampAuthorities"] = Value::Array(vec![]);
    let no_tsa = TrustRoot::from_json(&root.to_string()).expect("root");
    let err = gh(&bundle, &identity(PROBER), TransparencyLog::Timestamp, &no_tsa).expect_err("no TSA");
    assert!(matches!(err, BundleError::TimestampAuthorityNotTrusted(_)), "{err}");
}

fn npm_root() -> TrustRoot {
    TrustRoot::from_json(&String::from_utf8(shared("sigstore-root/trusted_root.json")).expect("UTF-8")).expect("root")
}

fn npm(bundle: &[u8], who: &str) -> Result<Verified, BundleError> {
    let tarball = local("npm-sigstore-1.3.0.tgz");
    verify_bundle(
        bundle,
        Some(Artifact::Bytes(&tarball)),
        &Signer::Keyless(&identity(who)),
        TransparencyLog::Required,
        &npm_root(),
    )
}

/// The certificates of a bundle's chain, base64.
fn chain(bundle: &[u8]) -> Vec<Value> {
    let json: Value = serde_json::from_slice(bundle).expect("json");
    json["verificationMaterial"]["x509CertificateChain"]["certificates"].as_array().expect("chain").clone()
}

fn with_chain(bundle: &[u8], certificates: Vec<Value>) -> Vec<u8> {
    edit(bundle, |json| {
        json["verificationMaterial"]["x509CertificateChain"]["certificates"] = Value::Array(certificates)
    })
}

#[cfg_attr(not(fixtures), ignore = "needs ../shared/fixtures, which is absent")]
#[test]
fn npm_provenance_v01_with_the_trusted_root_in_its_chain() {
    let bundle = shared("sigstore-go/bundle-provenance.json");
    assert_eq!(chain(&bundle).len(), 3, "leaf, intermediate, root");
    let verified = npm(&bundle, NPM_SIGNER).expect("genuine npm provenance");
    assert!(verified.signed_at.is_some());
    // The same bundle with the chain as current clients write it.
    npm(&with_chain(&bundle, chain(&bundle)[..2].to_vec()), NPM_SIGNER).expect("without the root");
    // Wrong identity; one payload byte changed.
    let err = npm(&bundle, &NPM_SIGNER.replace("release.yml", "ci.yml")).expect_err("identity");
    assert!(matches!(err, BundleError::IdentityMismatch { .. }), "{err}");
    let tampered = edit(&bundle, |json| {
        let mut payload = B64.decode(json["dsseEnvelope"]["payload"].as_str().expect("payload")).expect("base64");
        let at = payload.len() / 2;
        payload[at] ^= 0x01;
        json["dsseEnvelope"]["payload"] = Value::String(B64.encode(payload));
    });
    let err = npm(&tampered, NPM_SIGNER).expect_err("payload");
    assert!(!matches!(err, BundleError::RootInChain { .. }), "{err}");
}

#[cfg_attr(not(fixtures), ignore = "needs ../shared/fixtures, which is absent")]
#[test]
fn a_root_in_the_chain_that_is_not_the_trusted_ca_is_refused() {
    let bundle = shared("sigstore-go/bundle-provenance.json");
    let certificates = chain(&bundle);
    // Another root the trusted root also lists (Fulcio's 2021 root), in place of the chain's own.
    let root: Value = serde_json::from_slice(&shared("sigstore-root/trusted_root.json")).expect("json");
    let old_root = root["certificateAuthorities"][0]["certChain"]["certificates"][0].clone();
    let swapped = with_chain(&bundle, vec![certificates[0].clone(), certificates[1].clone(), old_root]);
    let err = npm(&swapped, NPM_SIGNER).expect_err("not the CA's own chain");
    assert!(matches!(err, BundleError::RootInChain { .. }), "{err}");
    // The root out of place (before the intermediate).
    let reordered =
        with_chain(&bundle, vec![certificates[0].clone(), certificates[2].clone(), certificates[1].clone()]);
    let err = npm(&reordered, NPM_SIGNER).expect_err("out of order");
    assert!(matches!(err, BundleError::RootInChain { .. }), "{err}");
    // A root that is not in the trusted root at all: the conformance suite's case.
    let case = shared("sigstore-conformance/bundle-verify/bundle-with-root-cert_fail/bundle.sigstore.json");
    let artifact = shared("sigstore-conformance/bundle-verify/bundle-with-root-cert_fail/artifact");
    let err = verify_bundle(
        &case,
        Some(Artifact::Bytes(&artifact)),
        &Signer::Keyless(&identity(PROBER)),
        TransparencyLog::Required,
        &npm_root(),
    )
    .expect_err("untrusted root");
    assert!(matches!(err, BundleError::RootInChain { .. }), "{err}");
    // The trusted root's own chain, but in a v0.3 bundle: refused as the conformance suite requires.
    let v03 =
        edit(&bundle, |json| json["mediaType"] = Value::String("application/vnd.dev.sigstore.bundle.v0.3+json".into()));
    let err = npm(&v03, NPM_SIGNER).expect_err("v0.3");
    assert!(matches!(err, BundleError::RootInChain { .. } | BundleError::Malformed(_)), "{err}");
}

/// sigstore-go's key-signed bundle with an RFC 3161 timestamp and no log entry, against its
/// trusted root that lists only the timestamp authority: `transparencyLog: timestamp` by key.
#[cfg_attr(not(fixtures), ignore = "needs ../shared/fixtures, which is absent")]
#[test]
fn key_signed_bundle_with_only_a_timestamp() {
    let bundle = shared("sigstore-go/public-key-validity.sigstore.json");
    let pem = String::from_utf8(shared("sigstore-go/public-key-validity.pem")).expect("PEM");
    let root = String::from_utf8(shared("sigstore-go/public-key-validity.json")).expect("root");
    let root = TrustRoot::from_json(&root).expect("root");
    let digest = decode_sha256("6ae8a75555209fd6c44157c0aed8016e763ff435a19cf186f76863140143ff72").expect("digest");
    let key = Signer::Key { pem: &pem };
    let verify = |bundle: &[u8], digest: [u8; 32], tlog| {
        verify_bundle(bundle, Some(Artifact::Sha256(digest)), &key, tlog, &root)
    };
    let verified = verify(&bundle, digest, TransparencyLog::Timestamp).expect("genuine");
    assert!(verified.signed_at.is_some(), "the timestamp is the verified time");
    let err = verify(&bundle, digest, TransparencyLog::Required).expect_err("no log entry");
    assert!(matches!(err, BundleError::NoLogEntry), "{err}");
    let err = verify(&bundle, [9; 32], TransparencyLog::Timestamp).expect_err("another artifact");
    assert!(matches!(err, BundleError::ArtifactMismatch(_)), "{err}");
    let bare = edit(&bundle, |json| {
        json["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"] = Value::Array(vec![]);
    });
    let err = verify(&bare, digest, TransparencyLog::Timestamp).expect_err("no timestamp");
    assert!(matches!(err, BundleError::NoVerifiedTimestamp(_)), "{err}");
    // The same bundle and timestamp, checked against GitHub's root: not its authority.
    let err = verify_bundle(&bundle, Some(Artifact::Sha256(digest)), &key, TransparencyLog::Timestamp, &github_root())
        .expect_err("foreign TSA");
    assert!(matches!(err, BundleError::TimestampAuthorityNotTrusted(_)), "{err}");
}

/// A v0.2 bundle (the conformance suite's happy path) with the trusted CA's chain copied in
/// after the leaf, as slsa-github-generator wrote them: the same rule as for v0.1.
#[cfg_attr(not(fixtures), ignore = "needs ../shared/fixtures, which is absent")]
#[test]
fn v02_bundle_with_the_trusted_ca_chain_copied_in() {
    let case = "sigstore-conformance/bundle-verify";
    let (happy, artifact) =
        (shared(&format!("{case}/happy-path-v0.2/bundle.sigstore.json")), shared(&format!("{case}/a.txt")));
    let root: Value = serde_json::from_slice(&shared("sigstore-root/trusted_root.json")).expect("json");
    let ca_chain = root["certificateAuthorities"][1]["certChain"]["certificates"].as_array().expect("chain").clone();
    let leaf = chain(&happy)[0].clone();
    let with_ca = with_chain(&happy, [&[leaf.clone()][..], &ca_chain[..]].concat());
    let beacon = "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main";
    let v02 = |bundle: &[u8]| {
        let signer = identity(beacon);
        verify_bundle(
            bundle,
            Some(Artifact::Bytes(&artifact)),
            &Signer::Keyless(&signer),
            TransparencyLog::Required,
            &npm_root(),
        )
    };
    v02(&happy).expect("the original");
    assert_eq!(chain(&with_ca).len(), 3);
    v02(&with_ca).expect("v0.2 with the trusted CA chain");
    // Another trusted root in its place: refused.
    let old_root = root["certificateAuthorities"][0]["certChain"]["certificates"][0].clone();
    let err = v02(&with_chain(&with_ca, vec![leaf, ca_chain[0].clone(), old_root])).expect_err("another root");
    assert!(matches!(err, BundleError::RootInChain { .. }), "{err}");
}
