//! Real third-party artifacts (tests/fixtures/cosign, sources in its README), judged by the
//! same pure judgement as the webhook against the embedded production Sigstore root: the
//! genuine artifact verifies, and each derived forgery is refused with its typed class.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use portcullis::image::ImageRef;
use portcullis::policy::ImagePolicy;
use portcullis::policy::cel::CelEnv;
use portcullis::verify::discovery::{ANN_BUNDLE, Evidence, LegacyLayer, Location};
use portcullis::verify::image::key_material;
use portcullis::verify::judge::{Judgement, Material, judge};
use portcullis::verify::trust::TrustRoot;
use portcullis::verify::verdict::{AttestationFound, Denial, Failure, Satisfied};
use serde_json::Value;

/// The image `ghcr.io/zlabjp/slsa-provenance-test:v0.0.5`, attested by slsa-github-generator's
/// container workflow with cosign 1.x (Rekor `intoto` 0.0.1 entry, logged 2023-03-07).
const SLSA_IMAGE: &str = "sha256:3dbd76ff6dc789a8bfd7b3303b15dd6fbac052af442f830b2eb527ab26976cf3";
const SLSA_WORKFLOW: &str = "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_container_slsa3.yml@refs/heads/main";
const GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cosign").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `.att` layer as discovery reads it: the DSSE blob and its manifest annotations.
fn slsa_att_layer() -> LegacyLayer {
    let manifest: Value =
        serde_json::from_slice(&fixture("slsa-provenance-test-v0.0.5.att.manifest.json")).expect("manifest");
    let descriptor = &manifest["layers"][0];
    let blob = fixture("slsa-provenance-test-v0.0.5.att.layer0.dsse.json");
    // The blob is the layer the manifest names, byte for byte.
    assert_eq!(
        format!("sha256:{}", hex(&<sha2::Sha256 as sha2::Digest>::digest(&blob))),
        descriptor["digest"].as_str().expect("digest")
    );
    let annotations: BTreeMap<String, String> = descriptor["annotations"]
        .as_object()
        .expect("annotations")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("string").to_owned()))
        .collect();
    let tag = format!("{}.att", SLSA_IMAGE.replace(':', "-"));
    LegacyLayer { location: Location::Tag { tag, layer: 0 }, blob, annotations }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A policy requiring SLSA v0.2 provenance from a keyless authority with this identity.
fn policy(identity: &str) -> ImagePolicy {
    let text = format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {{name: real}}\nspec:\n  images: ['**']\n  require: none\n  authorities:\n    - name: slsa\n      keyless:\n{identity}  attestations:\n    - name: provenance\n      predicateType: https://slsa.dev/provenance/v0.2\n"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let mut set = portcullis::policy::load::load_text(&text, "real.yaml", dir.path(), &CelEnv::new()).expect("policy");
    set.images.remove(0)
}

fn genuine_identity() -> String {
    format!(
        "        issuer: {GITHUB_ISSUER}\n        subjectRegExp: 'https://github\\.com/slsa-framework/slsa-github-generator/.*'\n"
    )
}

fn run(policy: &ImagePolicy, digest: &str, layer: LegacyLayer) -> Judgement {
    let image = ImageRef::parse(&format!("ghcr.io/zlabjp/slsa-provenance-test@{digest}")).expect("image");
    let digest = image.digest().expect("digest").clone();
    let evidence = Evidence { attestations: vec![layer], looked: vec!["tag".to_owned()], ..Evidence::default() };
    let trust = Arc::new(TrustRoot::production().expect("root"));
    let material: Vec<Material<'_>> = policy
        .authorities
        .iter()
        .map(|authority| Material { authority, key: key_material(authority), trust: trust.clone() })
        .collect();
    judge(policy, &image, &digest, &evidence, &material, chrono::Utc::now())
}

/// The one failure of the one attestation requirement.
#[track_caller]
fn failure(judgement: Judgement) -> Failure {
    let Judgement::Denied(Denial::Attestations(unmet)) = &judgement else { panic!("not denied: {judgement:?}") };
    let [unmet] = unmet.as_slice() else { panic!("{judgement:?}") };
    let AttestationFound::Tried(tried) = &unmet.found else { panic!("{judgement:?}") };
    let [tried] = tried.as_slice() else { panic!("{judgement:?}") };
    tried.failure.clone()
}

/// A production cosign `.att` from before cosign 2.0: its Rekor entry is `intoto` 0.0.1 (SET by
/// the production Rekor, certificate from the production Fulcio valid for ten minutes in 2023).
#[test]
fn cosign_1_att_with_intoto_v001_entry_verifies() {
    let judgement = run(&policy(&genuine_identity()), SLSA_IMAGE, slsa_att_layer());
    let Judgement::Met(by) = &judgement else { panic!("not verified: {judgement:?}") };
    let [Satisfied::Attestation { predicate_type, signer, location, .. }] = by.as_slice() else {
        panic!("{judgement:?}")
    };
    assert_eq!(predicate_type, "https://slsa.dev/provenance/v0.2");
    assert!(signer.contains(SLSA_WORKFLOW), "{signer}");
    assert!(matches!(location, Location::Tag { .. }), "{location}");
}

#[test]
fn cosign_1_att_wrong_identity_is_refused() {
    let other = format!(
        "        issuer: {GITHUB_ISSUER}\n        subject: https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main\n"
    );
    let Failure::IdentityMismatch { expected, found } = failure(run(&policy(&other), SLSA_IMAGE, slsa_att_layer()))
    else {
        panic!("another workflow")
    };
    assert!(expected.contains("acme/app") && found.contains(SLSA_WORKFLOW), "{expected} / {found}");
}

#[test]
fn cosign_1_att_wrong_issuer_is_refused() {
    let other = "        issuer: https://accounts.google.com\n        subjectRegExp: '.*'\n";
    let Failure::IdentityMismatch { expected, found } = failure(run(&policy(other), SLSA_IMAGE, slsa_att_layer()))
    else {
        panic!("another issuer")
    };
    assert!(expected.contains("accounts.google.com") && found.contains(GITHUB_ISSUER), "{expected} / {found}");
}

/// One byte of the statement changed (re-encoded in the envelope): the certificate's signature
/// no longer covers it (keyless: a bad signature is a changed payload, not another key).
#[test]
fn cosign_1_att_one_payload_byte_changed_is_refused() {
    let mut layer = slsa_att_layer();
    let mut envelope: Value = serde_json::from_slice(&layer.blob).expect("envelope");
    let mut statement = B64.decode(envelope["payload"].as_str().expect("payload")).expect("base64");
    let at = statement.windows(6).position(|w| w == b"v0.0.5").expect("the tag in the statement");
    statement[at + 5] = b'6';
    envelope["payload"] = Value::String(B64.encode(&statement));
    layer.blob = serde_json::to_vec(&envelope).expect("json");
    let class = failure(run(&policy(&genuine_identity()), SLSA_IMAGE, layer));
    assert!(matches!(class, Failure::BadSignature { .. }), "{class:?}");
}

/// The genuine `.att` attached to another image: its statement is about another digest.
#[test]
fn cosign_1_att_moved_to_another_digest_is_refused() {
    let other = format!("sha256:{}", "ab".repeat(32));
    let class = failure(run(&policy(&genuine_identity()), &other, slsa_att_layer()));
    let Failure::DigestMismatch { expected, .. } = &class else { panic!("{class:?}") };
    assert_eq!(expected, &other);
}

/// The Rekor bundle annotation removed: no log entry, refused (the log is required by default).
#[test]
fn cosign_1_att_log_entry_removed_is_refused() {
    let mut layer = slsa_att_layer();
    layer.annotations.remove(ANN_BUNDLE);
    let class = failure(run(&policy(&genuine_identity()), SLSA_IMAGE, layer));
    assert!(matches!(class, Failure::NoLogEntry { .. }), "{class:?}");
}

// ---------------------------------------------------------------------------------------------
// sigstore-java's production keyless bundles, one per key type Fulcio issues certificates for
// (P-256, P-384 with SHA-384, P-521 with SHA-512, RSA 2048/3072/4096 PKCS#1 v1.5): messageSignature
// bundles v0.3 over sigstore-conformance's `a.txt`, `hashedrekord` entries in the production Rekor.

const CONFORMANCE_SA: &str = "untrusted-sa@sigstore-conformance.iam.gserviceaccount.com";
const GOOGLE_ISSUER: &str = "https://accounts.google.com";

fn java_fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sigstore-java").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn identity(issuer: &str, subject: &str) -> portcullis::policy::Identity {
    portcullis::policy::Identity {
        issuer: issuer.to_owned(),
        subject: portcullis::policy::SubjectMatch::Exact(subject.to_owned()),
        github: None,
        issuer_regexp: None,
        claims: Vec::new(),
    }
}

/// Verify `bundle` over `artifact` for `identity` against the production root; the typed
/// failure class of a refusal (as the judgement maps bundle errors).
fn java_verify(bundle: &[u8], artifact: &[u8], identity: &portcullis::policy::Identity) -> Result<(), Failure> {
    use portcullis::policy::TransparencyLog;
    use portcullis::verify::bundle::{Artifact, Signer, verify_bundle};
    let root = TrustRoot::production().expect("root");
    verify_bundle(bundle, Some(Artifact::Bytes(artifact)), &Signer::Keyless(identity), TransparencyLog::Required, &root)
        .map(|_| ())
        .map_err(|e| Failure::from_bundle(e, true))
}

/// The genuine bundle verifies; each derived forgery is refused with its class.
fn java_bundle(name: &str) {
    let bundle = java_fixture(name);
    let artifact = java_fixture("artifact.txt");
    let genuine = identity(GOOGLE_ISSUER, CONFORMANCE_SA);
    java_verify(&bundle, &artifact, &genuine).unwrap_or_else(|f| panic!("{name} does not verify: {f:?}"));

    // Another identity, another issuer.
    let r = java_verify(&bundle, &artifact, &identity(GOOGLE_ISSUER, "release@example.com"));
    assert!(matches!(&r, Err(Failure::IdentityMismatch { found, .. }) if found.contains(CONFORMANCE_SA)), "{r:?}");
    let r = java_verify(&bundle, &artifact, &identity(GITHUB_ISSUER, CONFORMANCE_SA));
    assert!(matches!(&r, Err(Failure::IdentityMismatch { found, .. }) if found.contains(GOOGLE_ISSUER)), "{r:?}");
    // One byte of the signed artifact changed.
    let mut changed = artifact.clone();
    changed[0] ^= 1;
    let r = java_verify(&bundle, &changed, &genuine);
    assert!(matches!(r, Err(Failure::ArtifactMismatch { .. })), "{r:?}");
    // The bundle moved to another artifact (its digest recorded for this one).
    let r = java_verify(&bundle, b"another artifact\n", &genuine);
    assert!(matches!(r, Err(Failure::ArtifactMismatch { .. })), "{r:?}");
    // One byte of the signature changed.
    let mut json: Value = serde_json::from_slice(&bundle).expect("json");
    let mut signature = B64.decode(json["messageSignature"]["signature"].as_str().expect("sig")).expect("b64");
    let last = signature.len() - 1;
    signature[last] ^= 1;
    json["messageSignature"]["signature"] = Value::String(B64.encode(&signature));
    let r = java_verify(&serde_json::to_vec(&json).expect("json"), &artifact, &genuine);
    assert!(r.is_err(), "a changed signature verified");
    // The log entry removed.
    let mut json: Value = serde_json::from_slice(&bundle).expect("json");
    json["verificationMaterial"]["tlogEntries"] = Value::Array(Vec::new());
    let r = java_verify(&serde_json::to_vec(&json).expect("json"), &artifact, &genuine);
    assert!(matches!(r, Err(Failure::NoLogEntry { .. })), "{r:?}");
}

macro_rules! java_bundles {
    ($($test:ident: $file:literal;)*) => {$(
        #[test]
        fn $test() {
            java_bundle($file);
        }
    )*};
}

java_bundles! {
    sigstore_java_keyless_ecdsa_p256: "PKIX_ECDSA_P256_SHA_256.sigstore.json";
    sigstore_java_keyless_ecdsa_p384_sha384: "PKIX_ECDSA_P384_SHA_384.sigstore.json";
    sigstore_java_keyless_rsa_2048: "PKIX_RSA_PKCS1V15_2048_SHA256.sigstore.json";
    sigstore_java_keyless_rsa_3072: "PKIX_RSA_PKCS1V15_3072_SHA256.sigstore.json";
    sigstore_java_keyless_rsa_4096: "PKIX_RSA_PKCS1V15_4096_SHA256.sigstore.json";
}

/// A P-521 Fulcio certificate: not verifiable by this build yet, refused with a typed class that
/// names the key type (not "malformed certificate", not a wrong trusted root).
#[test]
fn sigstore_java_keyless_ecdsa_p521_is_refused_as_unsupported() {
    let bundle = java_fixture("PKIX_ECDSA_P521_SHA_512.sigstore.json");
    let r = java_verify(&bundle, &java_fixture("artifact.txt"), &identity(GOOGLE_ISSUER, CONFORMANCE_SA));
    let Err(Failure::UnsupportedFormat { what }) = &r else { panic!("{r:?}") };
    assert!(what.contains("ECDSA P-521") && what.contains("not supported yet"), "{what}");
}
