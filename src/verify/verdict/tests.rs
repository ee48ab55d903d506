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
#[test]
fn each_signature_failure_class_fires_on_its_forgery() {
    let key = Key::new();
    let attacker = Key::new();
    let (_dir, skip) = policy(&key.pem(), KEY_SKIP);
    let (_dir2, logged) = policy(&key.pem(), "  authorities:\n    - name: k\n      key: {publicKeyFile: k.pub}\n");
    let (_dir3, keyless) = policy(
        &key.pem(),
        "  authorities:\n    - name: k\n      keyless: {issuer: https://accounts.example, subject: a@example.com}\n",
    );
    // One payload byte changed after signing (the docker-reference `team/app` → `team/apq`).
    let mut changed = key.sig_layer(&signature(HEX));
    let at = changed.blob.windows(8).position(|w| w == b"team/app").expect("reference") + 7;
    changed.blob[at] = b'q';
    let mut no_annotation = key.sig_layer(&signature(HEX));
    no_annotation.annotations.clear();
    let mut with_cert = key.sig_layer(&signature(HEX));
    with_cert.annotations.insert(ANN_CERTIFICATE.to_owned(), "-----BEGIN CERTIFICATE-----".to_owned());
    let cases: Vec<(&str, &ImagePolicy, LegacyLayer, &str)> = vec![
        ("signed by another key", &skip, attacker.sig_layer(&signature(HEX)), "wrong-key"),
        ("payload changed after signing", &skip, changed, "wrong-key"),
        ("a genuine signature of another image, replayed", &skip, key.sig_layer(&signature(OTHER)), "digest-mismatch"),
        (
            "another payload type",
            &skip,
            key.sig_layer(&simple_signing(HEX, "cosign container image attestation")),
            "payload-type-mismatch",
        ),
        ("not JSON", &skip, key.sig_layer(b"not json"), "malformed"),
        ("no signature annotation", &skip, no_annotation, "malformed"),
        ("log entry stripped", &logged, key.sig_layer(&signature(HEX)), "no-log-entry"),
        ("a key signature for a keyless authority", &keyless, key.sig_layer(&signature(HEX)), "no-certificate"),
        ("a certificate without its log entry", &keyless, with_cert, "no-log-entry"),
    ];
    for (name, policy, layer, class) in cases {
        let failure = only_failure(&run(policy, &signatures(vec![layer])));
        assert_eq!(failure.class(), class, "{name}: {failure:?}");
    }
    // The typed fields say what was found where.
    let replayed = only_failure(&run(&skip, &signatures(vec![key.sig_layer(&signature(OTHER))])));
    assert_eq!(
        replayed,
        Failure::DigestMismatch {
            expected: format!("sha256:{HEX}"),
            found: Some(format!("sha256:{OTHER}")),
            statement: false
        }
    );
    let stripped = only_failure(&run(&logged, &signatures(vec![key.sig_layer(&signature(HEX))])));
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
    let cases: Vec<(&str, LegacyLayer, &str)> = vec![
        ("signed by another key", Key::new().att_layer(&statement(HEX, PROVENANCE)), "wrong-key"),
        ("about another image", key.att_layer(&statement(OTHER, PROVENANCE)), "digest-mismatch"),
        ("not an envelope", key.sig_layer(b"[]"), "malformed"),
    ];
    for (name, layer, class) in cases {
        let failure = only_failure(&run(&policy, &attestations(vec![layer])));
        assert_eq!(failure.class(), class, "{name}: {failure:?}");
    }
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
