//! The judgement, table-driven: each failure class fires on its evidence, and the forgery it
//! stands for (another key, a replayed signature, a stripped log entry, an unsigned annotation)
//! is refused with that class. Pure: no registry, the evidence is built here.

use std::collections::BTreeMap;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::json;

use super::*;
use crate::image::ImageRef;
use crate::policy::ImagePolicy;
use crate::policy::cel::CelEnv;
use crate::verify::discovery::{ANN_BUNDLE, ANN_CERTIFICATE, ANN_SIGNATURE, Evidence, LegacyLayer, Location};
use crate::verify::image::key_material;
use crate::verify::judge::{Judgement, Material, judge};
use crate::verify::trust::TrustRoot;

const HEX: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const OTHER: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const PROVENANCE: &str = "https://slsa.dev/provenance/v1";
fn sig_at() -> Location {
    Location::Tag { tag: "sha256-aaaa.sig".to_owned(), layer: 0 }
}

fn att_at() -> Location {
    Location::Referrer { digest: format!("sha256:{OTHER}"), layer: Some(0) }
}

struct Key(EcdsaKeyPair);

impl Key {
    fn new() -> Self {
        Self(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).expect("key"))
    }

    fn pem(&self) -> String {
        let der = self.0.public_key().as_der().expect("der");
        let b64 = B64.encode(der.as_ref());
        let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("ascii")).collect();
        format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", lines.join("\n"))
    }

    fn sign(&self, data: &[u8]) -> Vec<u8> {
        self.0.sign(&SystemRandom::new(), data).expect("sign").as_ref().to_vec()
    }

    /// A legacy `.sig` layer: `payload` signed by this key.
    fn sig_layer(&self, payload: &[u8]) -> LegacyLayer {
        let mut annotations = BTreeMap::new();
        annotations.insert(ANN_SIGNATURE.to_owned(), B64.encode(self.sign(payload)));
        LegacyLayer { location: sig_at(), blob: payload.to_vec(), annotations }
    }

    /// A legacy `.att` layer: a DSSE envelope of `statement`, signed by this key.
    fn att_layer(&self, statement: &serde_json::Value) -> LegacyLayer {
        let payload = statement.to_string().into_bytes();
        let payload_type = "application/vnd.in-toto+json";
        let sig = self.sign(&crate::verify::dsse::pae(payload_type, &payload));
        let envelope = json!({"payloadType": payload_type, "payload": B64.encode(&payload),
            "signatures": [{"sig": B64.encode(sig)}]});
        let mut annotations = BTreeMap::new();
        annotations.insert("predicateType".to_owned(), PROVENANCE.to_owned());
        LegacyLayer { location: att_at(), blob: envelope.to_string().into_bytes(), annotations }
    }
}

fn simple_signing(hex: &str, kind: &str) -> Vec<u8> {
    json!({"critical": {"identity": {"docker-reference": "registry.example/team/app"},
        "image": {"docker-manifest-digest": format!("sha256:{hex}")}, "type": kind}, "optional": null})
    .to_string()
    .into_bytes()
}

fn signature(hex: &str) -> Vec<u8> {
    simple_signing(hex, "cosign container image signature")
}

fn statement(hex: &str, predicate_type: &str) -> serde_json::Value {
    json!({"_type": "https://in-toto.io/Statement/v1", "subject": [{"name": "app", "digest": {"sha256": hex}}],
        "predicateType": predicate_type, "predicate": {"builder": {"id": "ci"}}})
}

/// An image policy with `spec` (YAML lines under `spec:`), `k.pub` holding `pem`.
fn policy(pem: &str, spec: &str) -> (tempfile::TempDir, ImagePolicy) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("k.pub"), pem).expect("write key");
    let text = format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {{name: p}}\nspec:\n  images: ['**']\n{spec}"
    );
    let mut set = crate::policy::load::load_text(&text, "p.yaml", dir.path(), &CelEnv::new()).expect("policy");
    (dir, set.images.remove(0))
}

const KEY_SKIP: &str =
    "  authorities:\n    - name: k\n      key: {publicKeyFile: k.pub}\n      transparencyLog: skip\n";

fn run(policy: &ImagePolicy, evidence: &Evidence) -> Judgement {
    let image = ImageRef::parse(&format!("registry.example/team/app@sha256:{HEX}")).expect("image");
    let digest = image.digest().expect("digest").clone();
    let trust = std::sync::Arc::new(TrustRoot::production().expect("root"));
    let material: Vec<Material<'_>> = policy
        .authorities
        .iter()
        .map(|authority| Material { authority, key: key_material(authority), trust: trust.clone() })
        .collect();
    judge(policy, &image, &digest, evidence, &material, chrono::Utc::now())
}

fn signatures(layers: Vec<LegacyLayer>) -> Evidence {
    Evidence { signatures: layers, looked: vec!["tag sha256-aaaa.sig: 1 layer(s)".to_owned()], ..Evidence::default() }
}

/// The one failure of the one artifact the judgement tried.
fn only_failure(judgement: &Judgement) -> Failure {
    let tried = match judgement {
        Judgement::Denied(Denial::RequirementNotMet(unmet)) => &unmet.unmet[0].tried,
        Judgement::Denied(Denial::Attestations(unmet)) | Judgement::Unchecked(Unchecked::Conditions(unmet)) => {
            match &unmet[0].found {
                AttestationFound::Tried(tried) => tried,
                AttestationFound::Nothing { .. } => panic!("nothing tried: {judgement:?}"),
            }
        }
        other => panic!("not a per-artifact failure: {other:?}"),
    };
    assert_eq!(tried.len(), 1, "{tried:?}");
    tried[0].failure.clone()
}

#[test]
fn a_genuine_signature_is_verified_naming_authority_signer_and_location() {
    let key = Key::new();
    let (_dir, policy) = policy(&key.pem(), KEY_SKIP);
    let Judgement::Met(by) = run(&policy, &signatures(vec![key.sig_layer(&signature(HEX))])) else {
        panic!("a genuine signature must verify")
    };
    let [Satisfied::Authority { authority, signer, location }] = by.as_slice() else { panic!("{by:?}") };
    assert_eq!((authority.as_str(), location), ("k", &sig_at()));
    assert_eq!(location.to_string(), "tag sha256-aaaa.sig layer 0");
    assert!(matches!(signer, crate::verify::signers::SignerIdentity::Key { .. }), "{signer:?}");
}

#[test]
fn nothing_found_is_no_signatures_never_a_wrong_signature() {
    let key = Key::new();
    let (_dir, policy) = policy(&key.pem(), KEY_SKIP);
    let judgement = run(&policy, &Evidence::default());
    assert!(matches!(judgement, Judgement::Denied(Denial::NoSignatures { total: 1, .. })), "{judgement:?}");
    // A layer that is there but wrong is not "no signatures".
    let forged = run(&policy, &signatures(vec![Key::new().sig_layer(&signature(HEX))]));
    assert!(matches!(forged, Judgement::Denied(Denial::RequirementNotMet(_))), "{forged:?}");
}

/// Each row: evidence (with the forgery it stands for), and the failure class it must get.
/// The signature forgeries' setting: the policy's key and three policies trusting it.
struct Forgeries {
    key: Key,
    /// The key, without the transparency log.
    skip: ImagePolicy,
    /// The key, with the transparency log required.
    logged: ImagePolicy,
    /// A keyless identity.
    keyless: ImagePolicy,
    _dirs: [tempfile::TempDir; 3],
}

impl Forgeries {
    fn new() -> Self {
        let key = Key::new();
        let (skip_dir, skip) = policy(&key.pem(), KEY_SKIP);
        let (logged_dir, logged) =
            policy(&key.pem(), "  authorities:\n    - name: k\n      key: {publicKeyFile: k.pub}\n");
        let (keyless_dir, keyless) = policy(
            &key.pem(),
            "  authorities:\n    - name: k\n      keyless: {issuer: https://accounts.example, subject: a@example.com}\n",
        );
        Self { key, skip, logged, keyless, _dirs: [skip_dir, logged_dir, keyless_dir] }
    }
}

/// One test per forged `.sig` layer: `$layer` (given the setting `$f`), judged under the
/// policy `$policy`, fails with the class `$class` and nothing else.
macro_rules! signature_forgeries {
    ($($(#[$doc:meta])* $name:ident: |$f:ident| $policy:ident, $layer:expr => $class:expr;)*) => {$(
        $(#[$doc])*
        #[test]
        fn $name() {
            let $f = Forgeries::new();
            let failure = only_failure(&run(&$f.$policy, &signatures(vec![$layer])));
            assert_eq!(failure.class(), $class, "{failure:?}");
        }
    )*};
}

signature_forgeries! {
    signed_by_another_key_is_wrong_key: |f| skip, Key::new().sig_layer(&signature(HEX)) => "wrong-key";
    /// One payload byte changed after signing (the docker-reference `team/app` → `team/apq`).
    payload_changed_after_signing_is_wrong_key: |f| skip, {
        let mut changed = f.key.sig_layer(&signature(HEX));
        let at = changed.blob.windows(8).position(|w| w == b"team/app").expect("reference") + 7;
        changed.blob[at] = b'q';
        changed
    } => "wrong-key";
    replayed_signature_of_another_image_is_digest_mismatch: |f| skip, f.key.sig_layer(&signature(OTHER))
        => "digest-mismatch";
    another_payload_type_is_payload_type_mismatch: |f| skip,
        f.key.sig_layer(&simple_signing(HEX, "cosign container image attestation")) => "payload-type-mismatch";
    a_payload_not_json_is_malformed: |f| skip, f.key.sig_layer(b"not json") => "malformed";
    no_signature_annotation_is_malformed: |f| skip, {
        let mut no_annotation = f.key.sig_layer(&signature(HEX));
        no_annotation.annotations.clear();
        no_annotation
    } => "malformed";
    log_entry_stripped_is_no_log_entry: |f| logged, f.key.sig_layer(&signature(HEX)) => "no-log-entry";
    a_key_signature_for_a_keyless_authority_is_no_certificate: |f| keyless, f.key.sig_layer(&signature(HEX))
        => "no-certificate";
    a_certificate_without_its_log_entry_is_no_log_entry: |f| keyless, {
        let mut with_cert = f.key.sig_layer(&signature(HEX));
        with_cert.annotations.insert(ANN_CERTIFICATE.to_owned(), "-----BEGIN CERTIFICATE-----".to_owned());
        with_cert
    } => "no-log-entry";
}

/// The typed fields of a signature failure say what was found where.
#[test]
fn signature_failures_name_what_was_found() {
    let f = Forgeries::new();
    let replayed = only_failure(&run(&f.skip, &signatures(vec![f.key.sig_layer(&signature(OTHER))])));
    assert_eq!(
        replayed,
        Failure::DigestMismatch {
            expected: format!("sha256:{HEX}"),
            found: Some(format!("sha256:{OTHER}")),
            statement: false
        }
    );
    let stripped = only_failure(&run(&f.logged, &signatures(vec![f.key.sig_layer(&signature(HEX))])));
    assert_eq!(stripped, Failure::NoLogEntry { carrier: Carrier::KeySignature });
}

#[test]
fn a_key_not_loaded_is_key_unavailable_before_any_artifact() {
    let key = Key::new();
    let (_dir, mut policy) = policy(&key.pem(), KEY_SKIP);
    policy.authorities[0].files.key = None;
    let judgement = run(&policy, &signatures(vec![key.sig_layer(&signature(HEX))]));
    let Judgement::Denied(Denial::RequirementNotMet(unmet)) = &judgement else { panic!("{judgement:?}") };
    assert_eq!(unmet.unmet[0].tried[0].location, None);
    assert!(unmet.unmet[0].tried[0].to_string().starts_with("key: "), "{judgement:?}");
    assert!(matches!(unmet.unmet[0].tried[0].failure, Failure::KeyUnavailable { .. }), "{judgement:?}");
}

#[test]
fn one_signer_for_two_authorities_is_requirement_not_met() {
    let key = Key::new();
    let two = "  require: all\n  authorities:\n    - name: a\n      key: {publicKeyFile: k.pub}\n      transparencyLog: skip\n    - name: b\n      key: {publicKeyFile: k.pub}\n      transparencyLog: skip\n";
    let (_dir, policy) = policy(&key.pem(), two);
    let judgement = run(&policy, &signatures(vec![key.sig_layer(&signature(HEX))]));
    let Judgement::Denied(Denial::RequirementNotMet(unmet)) = &judgement else { panic!("{judgement:?}") };
    assert_eq!((unmet.counted, unmet.total, unmet.signers), (1, 2, 1));
    assert_eq!(unmet.satisfied, ["a", "b"]);
    let json = Denial::RequirementNotMet(unmet.clone()).to_json();
    assert_eq!(
        (json["class"].as_str(), json["require"].as_str(), json["counted"].as_u64()),
        (Some("requirement-not-met"), Some("all"), Some(1))
    );
}

const ATTESTED: &str = "  require: none\n  authorities:\n    - name: k\n      key: {publicKeyFile: k.pub}\n      transparencyLog: skip\n  attestations:\n    - name: prov\n      predicateType: https://slsa.dev/provenance/v1\n";

fn attestations(layers: Vec<LegacyLayer>) -> Evidence {
    Evidence { attestations: layers, looked: vec!["tag sha256-aaaa.att: 1 layer(s)".to_owned()], ..Evidence::default() }
}

#[test]
fn attestation_classes_fire_on_their_forgeries() {
    let key = Key::new();
    let (_dir, policy) = policy(&key.pem(), ATTESTED);
    let Judgement::Met(by) = run(&policy, &attestations(vec![key.att_layer(&statement(HEX, PROVENANCE))])) else {
        panic!("a genuine attestation must verify")
    };
    assert!(
        matches!(&by[..], [Satisfied::Attestation { name, location, .. }] if name == "prov" && *location == att_at())
    );
    assert_eq!(att_at().to_string(), format!("referrer sha256:{OTHER} (referrers API) layer 0"));
    // Nothing found: its own class.
    let none = run(&policy, &attestations(Vec::new()));
    let Judgement::Denied(Denial::Attestations(unmet)) = &none else { panic!("{none:?}") };
    assert!(matches!(unmet[0].found, AttestationFound::Nothing { .. }), "{none:?}");
    // The unsigned annotation says provenance; the signed statement is an SBOM.
    let relabelled = key.att_layer(&statement(HEX, "https://spdx.dev/Document"));
    assert_eq!(
        only_failure(&run(&policy, &attestations(vec![relabelled]))),
        Failure::PredicateTypeMismatch {
            expected: PROVENANCE.to_owned(),
            found: "https://spdx.dev/Document".to_owned()
        }
    );
}

/// One test per forged attestation layer: `$layer` (given the policy's key `$key`) fails the
/// required provenance attestation with the class `$class`.
macro_rules! attestation_forgeries {
    ($($name:ident: |$key:ident| $layer:expr => $class:expr;)*) => {$(
        #[test]
        fn $name() {
            let $key = Key::new();
            let (_dir, policy) = policy(&$key.pem(), ATTESTED);
            let failure = only_failure(&run(&policy, &attestations(vec![$layer])));
            assert_eq!(failure.class(), $class, "{failure:?}");
        }
    )*};
}

attestation_forgeries! {
    an_attestation_signed_by_another_key_is_wrong_key: |_key| Key::new().att_layer(&statement(HEX, PROVENANCE))
        => "wrong-key";
    an_attestation_about_another_image_is_digest_mismatch: |key| key.att_layer(&statement(OTHER, PROVENANCE))
        => "digest-mismatch";
    an_attestation_not_an_envelope_is_malformed: |key| key.sig_layer(b"[]") => "malformed";
}

#[test]
fn a_false_condition_fails_and_an_unevaluable_one_is_unchecked() {
    let key = Key::new();
    let layer = key.att_layer(&statement(HEX, PROVENANCE));
    let (_dir, false_policy) = policy(
        &key.pem(),
        &format!(
            "{ATTESTED}      conditions:\n        - expression: \"predicate.builder.id == 'other'\"\n          message: built elsewhere\n"
        ),
    );
    let failure = only_failure(&run(&false_policy, &attestations(vec![layer.clone()])));
    assert_eq!(failure, Failure::ConditionFailed { message: "built elsewhere".to_owned() });
    let (_dir, error_policy) = policy(
        &key.pem(),
        &format!("{ATTESTED}      conditions:\n        - expression: \"predicate.no_such.size() > 0\"\n"),
    );
    let judgement = run(&error_policy, &attestations(vec![layer]));
    assert!(matches!(judgement, Judgement::Unchecked(Unchecked::Conditions(_))), "{judgement:?}");
    assert!(matches!(only_failure(&judgement), Failure::ConditionError { .. }));
}

#[test]
fn bundle_errors_map_to_their_classes() {
    use crate::verify::bundle::BundleError as B;
    let cases = [
        (B::IdentityMismatch { expected: "a".into(), found: "b".into() }, false, "identity-mismatch"),
        (B::Signature("x".into()), false, "wrong-key"),
        (B::Signature("x".into()), true, "bad-signature"),
        (B::NoLogEntry, false, "no-log-entry"),
        (B::TransparencyLog("x".into()), true, "log-entry-invalid"),
        (B::CertificateNotValidAt("x".into()), true, "certificate-not-valid-at"),
        (B::Certificate("x".into()), true, "certificate-rejected"),
        (B::Timestamp("x".into()), true, "timestamp-invalid"),
        (B::Malformed("x".into()), true, "malformed"),
        (B::UnsupportedVersion("v9".into()), true, "unsupported-format"),
        (B::UnsupportedEntry { kind: "k".into(), version: "v".into(), hint: "" }, true, "unsupported-format"),
        (B::Material("x".into()), true, "material-mismatch"),
        (B::Key("x".into()), false, "key-unavailable"),
        (B::TrustRoot("x".into()), true, "trust-root-unusable"),
    ];
    for (error, keyless, class) in cases {
        let message = error.to_string();
        let failure = Failure::from_bundle(error, keyless);
        assert_eq!(failure.class(), class, "{message}");
        // The message is the bundle error's, and the JSON class is the same as `class()`.
        assert_eq!(failure.to_string(), message);
        assert_eq!(serde_json::to_value(&failure).expect("json")["class"], class);
    }
    assert_eq!(
        Failure::from_bundle(B::IdentityMismatch { expected: "a".into(), found: "b".into() }, true),
        Failure::IdentityMismatch { expected: "a".into(), found: "b".into() }
    );
}

#[test]
fn could_not_check_classes_carry_the_status_and_never_read_as_unsigned() {
    let error = crate::verify::registry::RegistryError::Status {
        url: "https://r/v2/x".into(),
        status: 503,
        detail: String::new(),
    };
    let unchecked = Unchecked::Registry { error };
    assert_eq!(unchecked.status(), Some(503));
    let json = unchecked.to_json();
    assert_eq!((json["class"].as_str(), json["status"].as_u64()), (Some("registry-error"), Some(503)));
    assert!(unchecked.to_string().starts_with("registry error (not a signature failure): "), "{unchecked}");
    assert_eq!(Unchecked::Timeout { slow: None }.to_json()["class"], "timeout");
    assert!(!Unchecked::Timeout { slow: None }.to_string().contains("unsigned"));
}

#[test]
fn tried_json_flattens_the_class() {
    let tried = Tried {
        location: Some(sig_at()),
        authority: None,
        failure: Failure::IdentityMismatch { expected: "a@x".into(), found: "b@x".into() },
    };
    assert_eq!(
        serde_json::to_value(&tried).expect("json"),
        json!({"location": {"kind": "tag", "tag": "sha256-aaaa.sig", "layer": 0}, "class": "identity-mismatch",
            "expected": "a@x", "found": "b@x"})
    );
    assert!(!format!("{:?}", ANN_BUNDLE).is_empty());
}
