//! Keyless (Fulcio certificate) signatures end to end through the registry path: images signed
//! in cosign's formats by the in-process mini Sigstore (`support::sigstore`), pushed to real
//! registries on 127.0.0.1, checked by the same engine and verifier as the webhook, with the
//! mini instance's `trusted_root.json` given per authority (`trustedRoot:`) or as the verifier's
//! root.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use portcullis::decision::Decision;
use portcullis::engine::{Engine, Settings};
use portcullis::image::ImageRef;
use portcullis::policy::PolicySet;
use portcullis::policy::cel::CelEnv;
use portcullis::policy::load::load_text;
use portcullis::review::Review;
use portcullis::verify::identity::Claims;
use portcullis::verify::image::RegistryVerifier;
use portcullis::verify::registry::{Registry, RegistryConfig};
use portcullis::verify::signers::SignerIdentity;
use portcullis::verify::trust::TrustRoot;
use portcullis::verify::verdict::{Denial, Failure, Satisfied, Verification};
use portcullis::verify::{Outcome, Verifier, VerifyRequest};
use serde_json::{Value, json};
use support::sigstore::{
    GITHUB_ISSUER, GithubClaims, IssueOptions, KeylessSigner, MiniSigstore, Tamper, Validity, now, rfc3339,
};
use support::{BUNDLE_V03, Kind, Pusher, TestRegistry};

const ISSUER: &str = "https://accounts.example.com";
const RELEASE: &str = "release@example.com";
const ROOT_FILE: &str = "mini-root.json";

struct Setup {
    registry: TestRegistry,
    push: Pusher,
    dir: tempfile::TempDir,
    sigstore: MiniSigstore,
}

async fn setup(kind: Kind) -> Setup {
    let registry = TestRegistry::start(kind).await;
    let push = Pusher::new(&registry.host);
    let dir = tempfile::tempdir().expect("tempdir");
    let sigstore = MiniSigstore::new("ci");
    sigstore.write_trusted_root(dir.path(), ROOT_FILE);
    Setup { registry, push, dir, sigstore }
}

impl Setup {
    /// The webhook's verifier: the production root by default, private roots per authority.
    fn verifier(&self, root: TrustRoot) -> RegistryVerifier {
        let config = RegistryConfig { insecure: vec![self.registry.host.clone()], ..Default::default() };
        RegistryVerifier::new(Registry::new(config).expect("registry"), root)
    }

    fn policies(&self, authorities: &str, extra: &str) -> PolicySet {
        support::signed_policy(&self.registry.host, self.dir.path(), authorities, extra)
    }

    async fn decide_with(&self, set: PolicySet, image: &str, root: TrustRoot) -> Decision {
        let engine = Engine::fixed(set, Arc::new(self.verifier(root)), Settings::default());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        engine.review(&Review::for_image(image, "default"), deadline).await
    }

    async fn decide(&self, authorities: &str, image: &str) -> Decision {
        self.decide_with(self.policies(authorities, ""), image, TrustRoot::production().expect("root")).await
    }

    /// The verifier's own outcome (it names the signer and the location on success).
    async fn outcome(&self, authorities: &str, image: &str) -> Outcome {
        let set = self.policies(authorities, "");
        let image = ImageRef::parse(image).expect("image reference");
        let verifier = self.verifier(TrustRoot::production().expect("root"));
        verifier.verify(VerifyRequest { image: &image, policy: &set.images[0], pull: None }).await
    }

    /// Push an image with distinct content; returns (repository reference, digest, raw manifest).
    async fn image(&self, repo: &str, tag: &str) -> (String, String, Vec<u8>) {
        let (digest, raw) = self.push.image(repo, tag, &format!("{repo}:{tag}")).await;
        (format!("{}/{repo}", self.registry.host), digest, raw)
    }

    /// Push an image and attach `layer` on its legacy `.sig` tag; returns the tagged reference.
    async fn signed_legacy(
        &self,
        repo: &str,
        tag: &str,
        layer: impl FnOnce(&str, &str) -> (Vec<u8>, &'static str, Value),
    ) -> (String, String) {
        let (reference, digest, _) = self.image(repo, tag).await;
        let sig_tag = format!("{}.sig", digest.replace(':', "-"));
        self.push.artifact(repo, &sig_tag, &[layer(&reference, &digest)]).await;
        (format!("{reference}:{tag}"), digest)
    }

    /// Push an image and attach a keyless signature bundle as a referrer; returns the reference.
    async fn signed_bundle(&self, repo: &str, tag: &str, bundle: impl FnOnce(&str) -> Vec<u8>) -> (String, String) {
        let (reference, digest, raw) = self.image(repo, tag).await;
        self.push.referrer(repo, &digest, &raw, BUNDLE_V03, &bundle(&digest)).await;
        (format!("{reference}:{tag}"), digest)
    }
}

/// A keyless authority trusting the mini instance, with `identity` lines under `keyless:`.
fn keyless(identity: &str) -> String {
    let lines: String = identity.lines().map(|l| format!("        {l}\n")).collect();
    format!("    - name: ci\n      trustedRoot: {ROOT_FILE}\n      keyless:\n{lines}")
}

fn email_subject(subject_line: &str) -> String {
    keyless(&format!("issuer: {ISSUER}\n{subject_line}"))
}

fn message(d: &Decision) -> String {
    d.message.clone().unwrap_or_default()
}

#[track_caller]
/// The digest verified and the signer and location of its one satisfied authority.
fn satisfied_by(outcome: Outcome) -> (String, SignerIdentity, String) {
    let Outcome::Verified { detail: Verification::Checked { digest, by, .. } } = &outcome else {
        panic!("not verified: {outcome:?}")
    };
    let [Satisfied::Authority { signer, location, .. }] = by.as_slice() else { panic!("{outcome:?}") };
    (digest.to_string(), signer.clone(), location.to_string())
}

/// The failures of the one unsatisfied authority, per location.
fn failures(outcome: Outcome) -> Vec<(String, Failure)> {
    let Outcome::Failed { reason: Denial::RequirementNotMet(unmet) } = &outcome else {
        panic!("not a requirement not met: {outcome:?}")
    };
    unmet.unmet[0].tried.iter().map(|t| (t.to_string(), t.failure.clone())).collect()
}

fn assert_denied(d: &Decision, needles: &[&str]) {
    assert!(!d.allowed, "expected a denial: {d:?}");
    let m = message(d);
    for needle in needles {
        assert!(m.contains(needle), "{needle:?} not in: {m}");
    }
}

// ---------------------------------------------------------------------------------------------
// The mini Sigstore itself.

#[test]
fn mini_sigstore_trusted_root_and_certificates() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339(1_795_376_483), "2026-11-22T19:41:23Z");

    let sigstore = MiniSigstore::new("unit");
    let root = TrustRoot::from_json(&sigstore.trusted_root_json()).expect("loads as a trusted root");
    let trusted = root.trusted_root();
    assert_eq!(trusted.certificate_authorities.len(), 1);
    assert_eq!(trusted.tlogs.len(), 1);
    assert_eq!(trusted.ctlogs.len(), 1);

    // An email identity: SAN + issuer, nothing else.
    let signer = sigstore.issue(RELEASE, ISSUER, None, Validity::fulcio());
    let claims = Claims::from_der(&signer.cert_der).expect("claims");
    assert_eq!(claims.subject.as_deref(), Some(RELEASE));
    assert_eq!(claims.issuer.as_deref(), Some(ISSUER));
    assert_eq!(claims.source_repository, None);

    // A GitHub Actions identity: every typed claim the verifier reads.
    let gh = GithubClaims::new("acme/app", ".github/workflows/release.yml", "refs/heads/main");
    let signer = sigstore.issue_github(&gh);
    let claims = Claims::from_der(&signer.cert_der).expect("claims");
    assert_eq!(claims.subject.as_deref(), Some(gh.san().as_str()));
    assert_eq!(claims.issuer.as_deref(), Some(GITHUB_ISSUER));
    assert_eq!(claims.source_repository.as_deref(), Some("https://github.com/acme/app"));
    assert_eq!(claims.source_ref.as_deref(), Some("refs/heads/main"));
    assert_eq!(claims.source_sha.as_deref(), Some(gh.sha.as_str()));
    assert_eq!(claims.build_config.as_deref(), Some(gh.san().as_str()));
    assert_eq!(claims.trigger.as_deref(), Some("push"));
}

/// The bundle a legacy layer becomes verifies with `verify_bundle` directly: certificate chain,
/// SCT, SET and hashedrekord consistency all hold for what the mini instance makes.
#[test]
fn legacy_layer_verifies_as_a_bundle() {
    use portcullis::policy::{Identity, SubjectMatch, TransparencyLog};
    use portcullis::verify::bundle::{Artifact, Signer, bundle_from_legacy, verify_bundle};
    let sigstore = MiniSigstore::new("direct");
    let root = TrustRoot::from_json(&sigstore.trusted_root_json()).expect("root");
    let signer = sigstore.issue(RELEASE, ISSUER, None, Validity::fulcio());
    let payload = MiniSigstore::payload("registry.test/app", &format!("sha256:{}", "ab".repeat(32)));
    let (blob, _, annotations) = sigstore.signature_layer(&signer, payload);
    let ann = |k: &str| annotations[k].as_str().map(str::to_owned);
    let bundle = bundle_from_legacy(
        &blob,
        &ann("dev.cosignproject.cosign/signature").expect("signature"),
        ann("dev.sigstore.cosign/certificate").as_deref(),
        ann("dev.sigstore.cosign/chain").as_deref(),
        ann("dev.sigstore.cosign/bundle").as_deref(),
        None,
    )
    .expect("bundle");
    let identity = Identity {
        issuer: ISSUER.to_owned(),
        subject: SubjectMatch::Exact(RELEASE.to_owned()),
        github: None,
        issuer_regexp: None,
        claims: Vec::new(),
    };
    let verified = verify_bundle(
        &bundle,
        Some(Artifact::Bytes(&blob)),
        &Signer::Keyless(&identity),
        TransparencyLog::Required,
        &root,
    )
    .expect("verifies");
    assert_eq!(verified.signer, format!("{RELEASE} (issuer {ISSUER})"));
    let signed_at = verified.signed_at.expect("a verified signing time");
    assert!((now() - signed_at).abs() < 60, "integrated time {signed_at}");
}

/// P-384 keyless message-signature bundles log the artifact's SHA-384 (`hashedrekord` 0.0.1);
/// they verify, with every check still made (the entry's hash, signature and certificate).
#[test]
fn p384_keyless_bundles_with_sha384_log_entries() {
    use portcullis::policy::{Identity, SubjectMatch, TransparencyLog};
    use portcullis::verify::bundle::{Artifact, BundleError, Signer, verify_bundle};
    let sigstore = MiniSigstore::new("p384");
    let root = TrustRoot::from_json(&sigstore.trusted_root_json()).expect("root");
    let p384 = sigstore.issue_with(RELEASE, ISSUER, None, &IssueOptions { p384: true, ..IssueOptions::default() });
    let identity = Identity {
        issuer: ISSUER.to_owned(),
        subject: SubjectMatch::Exact(RELEASE.to_owned()),
        github: None,
        issuer_regexp: None,
        claims: Vec::new(),
    };
    let keyless = Signer::Keyless(&identity);
    let verify = |bundle: &[u8], artifact: &[u8]| {
        verify_bundle(bundle, Some(Artifact::Bytes(artifact)), &keyless, TransparencyLog::Required, &root)
    };
    let artifact = b"release artifact".as_slice();
    let bundle = sigstore.message_bundle(&p384, artifact, "sha384", &Tamper::default());
    let verified = verify(&bundle, artifact).expect("a P-384 keyless bundle with a sha384 entry verifies");
    assert_eq!(verified.signer, format!("{RELEASE} (issuer {ISSUER})"));
    assert!(verified.signed_at.is_some_and(|t| (now() - t).abs() < 60), "{verified:?}");
    // P-256 with SHA-256, as before.
    let p256 = sigstore.issue(RELEASE, ISSUER, None, Validity::fulcio());
    verify(&sigstore.message_bundle(&p256, artifact, "sha256", &Tamper::default()), artifact).expect("P-256");

    // One byte of the artifact changed.
    assert!(matches!(verify(&bundle, b"release artifacT"), Err(BundleError::ArtifactMismatch(_))));
    // The entry logs another artifact's hash (the message digest and signature are honest).
    let other = Tamper { logged_payload: Some(b"another artifact".to_vec()), ..Tamper::default() };
    let wrong_entry = sigstore.message_bundle(&p384, artifact, "sha384", &other);
    let Err(BundleError::ArtifactMismatch(why)) = verify(&wrong_entry, artifact) else {
        panic!("entry of another artifact")
    };
    assert!(why.contains("the log entry records sha384:"), "{why}");
    // The entry of another signing of the same artifact (another signature), moved into this bundle.
    let second = sigstore.message_bundle(&p384, artifact, "sha384", &Tamper::default());
    let mut moved: Value = serde_json::from_slice(&bundle).expect("json");
    let second: Value = serde_json::from_slice(&second).expect("json");
    moved["verificationMaterial"]["tlogEntries"] = second["verificationMaterial"]["tlogEntries"].clone();
    let Err(BundleError::TransparencyLog(why)) = verify(&support::cjson(&moved), artifact) else {
        panic!("an entry of another signature")
    };
    assert!(why.contains("another signature"), "{why}");
    // The SET is not the log's: refused before any of this.
    let forged =
        sigstore.message_bundle(&p384, artifact, "sha384", &Tamper { foreign_set_key: true, ..Tamper::default() });
    assert!(verify(&forged, artifact).is_err());
    // Another identity.
    let ops = Identity { subject: SubjectMatch::Exact("ops@example.com".to_owned()), ..identity.clone() };
    let refused = verify_bundle(
        &bundle,
        Some(Artifact::Bytes(artifact)),
        &Signer::Keyless(&ops),
        TransparencyLog::Required,
        &root,
    );
    assert!(matches!(refused, Err(BundleError::IdentityMismatch { .. })), "{refused:?}");
    // Only the sha256 of the artifact: the sha384 entry cannot be checked, so it is refused.
    let digest: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(artifact).into();
    let refused = verify_bundle(&bundle, Some(Artifact::Sha256(digest)), &keyless, TransparencyLog::Required, &root);
    assert!(refused.is_err(), "{refused:?}");
}

/// A DSSE envelope over `statement` signed with `sign`, and the `dev.sigstore.cosign/bundle`
/// annotation of an `intoto` 0.0.1 entry for it (as cosign before 2.0 logged attestations),
/// logging `logged_payload` (default: the statement) and `verifier_pem` as the public key.
pub(crate) fn intoto_v001(
    sigstore: &MiniSigstore,
    sign: &dyn Fn(&[u8]) -> Vec<u8>,
    statement: &[u8],
    logged_payload: Option<&[u8]>,
    verifier_pem: &str,
    tamper: &Tamper,
) -> (Vec<u8>, String) {
    let signature = sign(&support::pae(support::INTOTO, statement));
    let envelope = support::cjson(&json!({
        "payloadType": support::INTOTO,
        "payload": B64.encode(statement),
        "signatures": [{"keyid": "", "sig": B64.encode(&signature)}],
    }));
    let hex = |b: &[u8]| support::sha256(b).trim_start_matches("sha256:").to_owned();
    let body = support::cjson(&json!({
        "apiVersion": "0.0.1",
        "kind": "intoto",
        "spec": {
            "content": {"hash": {"algorithm": "sha256", "value": hex(&envelope)},
                        "payloadHash": {"algorithm": "sha256", "value": hex(logged_payload.unwrap_or(statement))}},
            "publicKey": B64.encode(verifier_pem),
        },
    }));
    (envelope, sigstore.rekor_annotation(&sigstore.log(&body, tamper)))
}

/// cosign attestations logged before cosign 2.0 (Rekor `intoto` 0.0.1 entries) verify: SET, the
/// certificate at the logged time, the envelope signature, and the entry bound to this envelope
/// (payload hash, signer certificate or key). Each derived forgery is refused with its reason.
#[test]
fn intoto_v001_entries_verify_and_bind_to_the_envelope() {
    use portcullis::policy::{Identity, SubjectMatch, TransparencyLog};
    use portcullis::verify::bundle::{BundleError, Content, Signer, bundle_from_legacy, verify_bundle};
    let sigstore = MiniSigstore::new("intoto");
    let root = TrustRoot::from_json(&sigstore.trusted_root_json()).expect("root");
    let signer = sigstore.issue(RELEASE, ISSUER, None, Validity::fulcio());
    let statement =
        support::statement(&format!("sha256:{}", "ab".repeat(32)), "https://cyclonedx.org/bom", json!({}), true);
    let identity = Identity {
        issuer: ISSUER.to_owned(),
        subject: SubjectMatch::Exact(RELEASE.to_owned()),
        github: None,
        issuer_regexp: None,
        claims: Vec::new(),
    };
    let keyless = |bundle: &[u8], identity: &Identity| {
        verify_bundle(bundle, None, &Signer::Keyless(identity), TransparencyLog::Required, &root)
    };
    let legacy = |envelope: &[u8], rekor: &str, cert: &KeylessSigner| {
        bundle_from_legacy(envelope, "", Some(&cert.cert_pem()), Some(&sigstore.chain_pem()), Some(rekor), None)
            .expect("bundle")
    };
    let sign = |data: &[u8]| signer.sign(data);
    let (envelope, rekor) = intoto_v001(&sigstore, &sign, &statement, None, &signer.cert_pem(), &Tamper::default());
    let bundle = legacy(&envelope, &rekor, &signer);
    let verified = keyless(&bundle, &identity).expect("an intoto 0.0.1 attestation verifies");
    assert!(matches!(verified.content, Content::Dsse { .. }), "{verified:?}");
    assert!(verified.signed_at.is_some_and(|t| (now() - t).abs() < 60), "{verified:?}");

    // The entry logs another statement's payload hash.
    let other =
        support::statement(&format!("sha256:{}", "cd".repeat(32)), "https://cyclonedx.org/bom", json!({}), true);
    let (envelope2, rekor2) =
        intoto_v001(&sigstore, &sign, &statement, Some(&other), &signer.cert_pem(), &Tamper::default());
    let Err(BundleError::TransparencyLog(why)) = keyless(&legacy(&envelope2, &rekor2, &signer), &identity) else {
        panic!("an entry of another payload")
    };
    assert!(why.contains("records payload sha256:"), "{why}");
    // The entry names another certificate (another signer's entry for this very payload).
    let mallory = sigstore.issue(RELEASE, ISSUER, None, Validity::fulcio());
    let (_, rekor3) =
        intoto_v001(&sigstore, &|d| mallory.sign(d), &statement, None, &mallory.cert_pem(), &Tamper::default());
    let Err(BundleError::TransparencyLog(why)) = keyless(&legacy(&envelope, &rekor3, &signer), &identity) else {
        panic!("an entry naming another certificate")
    };
    assert!(why.contains("another certificate"), "{why}");
    // A SET that is not the log's.
    let foreign = Tamper { foreign_set_key: true, ..Tamper::default() };
    let (envelope4, rekor4) = intoto_v001(&sigstore, &sign, &statement, None, &signer.cert_pem(), &foreign);
    assert!(keyless(&legacy(&envelope4, &rekor4, &signer), &identity).is_err());
    // The payload changed after signing (the entry logs the changed payload: still refused).
    let mut edited: Value = serde_json::from_slice(&envelope).expect("json");
    edited["payload"] = json!(B64.encode(&other));
    let (_, rekor5) = intoto_v001(&sigstore, &sign, &statement, Some(&other), &signer.cert_pem(), &Tamper::default());
    assert!(matches!(
        keyless(&legacy(&support::cjson(&edited), &rekor5, &signer), &identity),
        Err(BundleError::Signature(_))
    ));
    // Another identity.
    let ops = Identity { subject: SubjectMatch::Exact("ops@example.com".to_owned()), ..identity.clone() };
    assert!(matches!(keyless(&bundle, &ops), Err(BundleError::IdentityMismatch { .. })));
    // Two entries: not the one-entry case, named rather than "malformed".
    let mut two: Value = serde_json::from_slice(&bundle).expect("json");
    let entry = two["verificationMaterial"]["tlogEntries"][0].clone();
    two["verificationMaterial"]["tlogEntries"].as_array_mut().expect("entries").push(entry);
    let Err(e @ BundleError::UnsupportedEntry { .. }) = keyless(&support::cjson(&two), &identity) else {
        panic!("two intoto 0.0.1 entries")
    };
    assert!(
        e.to_string().contains("unsupported Rekor entry kind intoto 0.0.1") && !e.to_string().contains("malformed"),
        "{e}"
    );

    // Key-based: the entry names the key.
    let key = support::Signer::new();
    let (envelope6, rekor6) =
        intoto_v001(&sigstore, &|d| key.sign(d), &statement, None, &key.public_pem(), &Tamper::default());
    let keyed = bundle_from_legacy(&envelope6, "", None, None, Some(&rekor6), None).expect("bundle");
    let pem = key.public_pem();
    verify_bundle(&keyed, None, &Signer::Key { pem: &pem }, TransparencyLog::Required, &root)
        .expect("key-based intoto 0.0.1");
    let other_key = support::Signer::new().public_pem();
    assert!(verify_bundle(&keyed, None, &Signer::Key { pem: &other_key }, TransparencyLog::Required, &root).is_err());
}

/// The same through a registry: a keyless `.att` layer logged as `intoto` 0.0.1, required by a
/// policy that needs no image signature.
async fn intoto_v001_attestation_in_a_registry(kind: Kind) {
    let s = setup(kind).await;
    let signer = s.sigstore.issue(RELEASE, ISSUER, None, Validity::fulcio());
    let (reference, digest, _) = s.image("team/old-cosign", "v1").await;
    let statement = support::statement(&digest, "https://cyclonedx.org/bom", json!({"components": []}), true);
    let (envelope, rekor) =
        intoto_v001(&s.sigstore, &|d| signer.sign(d), &statement, None, &signer.cert_pem(), &Tamper::default());
    let annotations = json!({
        "dev.cosignproject.cosign/signature": "",
        "predicateType": "https://cyclonedx.org/bom",
        "dev.sigstore.cosign/certificate": signer.cert_pem(),
        "dev.sigstore.cosign/chain": s.sigstore.chain_pem(),
        "dev.sigstore.cosign/bundle": rekor,
    });
    let tag = format!("{}.att", digest.replace(':', "-"));
    s.push.artifact("team/old-cosign", &tag, &[(envelope, support::DSSE, annotations)]).await;
    let extra = "  require: none
  attestations:
    - name: sbom
      predicateType: cyclonedx
";
    let set = s.policies(&email_subject(&format!("subject: {RELEASE}")), extra);
    let d = s.decide_with(set, &format!("{reference}:v1"), TrustRoot::production().expect("root")).await;
    assert!(d.allowed, "{d:?}");
    let set = s.policies(&email_subject("subject: ops@example.com"), extra);
    let d = s.decide_with(set, &format!("{reference}:v1"), TrustRoot::production().expect("root")).await;
    assert_denied(&d, &["expected subject ops@example.com"]);

    // The same keyless attestation layer as a cosign OCI 1.1 referrer of another image.
    let (_, digest2, raw2) = s.image("team/old-cosign", "v2").await;
    let statement = support::statement(&digest2, "https://cyclonedx.org/bom", json!({"components": []}), true);
    let (envelope, rekor) =
        intoto_v001(&s.sigstore, &|d| signer.sign(d), &statement, None, &signer.cert_pem(), &Tamper::default());
    let annotations = json!({
        "dev.cosignproject.cosign/signature": "",
        "predicateType": "https://cyclonedx.org/bom",
        "dev.sigstore.cosign/certificate": signer.cert_pem(),
        "dev.sigstore.cosign/chain": s.sigstore.chain_pem(),
        "dev.sigstore.cosign/bundle": rekor,
    });
    let style = support::CosignReferrer::ConfigMediaType(support::COSIGN_ATT);
    s.push.cosign_referrer("team/old-cosign", &digest2, &raw2, style, &[(envelope, support::DSSE, annotations)]).await;
    let set = s.policies(&email_subject(&format!("subject: {RELEASE}")), extra);
    let d = s.decide_with(set, &format!("{reference}:v2"), TrustRoot::production().expect("root")).await;
    assert!(d.allowed, "{d:?}");
}

crate::on_both_registries!(intoto_v001_attestation_in_a_registry: intoto_v001_attestation_docker_distribution, intoto_v001_attestation_ferro);

// ---------------------------------------------------------------------------------------------
// Legacy `.sig` layers.

async fn legacy_keyless_subjects(kind: Kind) {
    let s = setup(kind).await;
    let signer = s.sigstore.issue(RELEASE, ISSUER, None, Validity::fulcio());
    let (image, digest) = s
        .signed_legacy("team/app", "v1", |reference, digest| {
            s.sigstore.signature_layer(&signer, MiniSigstore::payload(reference, digest))
        })
        .await;

    // Each subject form, exact and anchored.
    for subject in [
        format!("subject: {RELEASE}"),
        "subjectPattern: 'release@*.com'".to_owned(),
        "subjectRegExp: '(release|ops)@example\\.com'".to_owned(),
        "subjectRegExp: '.*'".to_owned(),
    ] {
        let d = s.decide(&email_subject(&subject), &image).await;
        assert!(d.allowed, "{subject}: {d:?}");
    }
    // The verifier says which signature satisfied which authority, and by whom.
    let (verified, signer, location) =
        satisfied_by(s.outcome(&email_subject(&format!("subject: {RELEASE}")), &image).await);
    assert_eq!(verified, digest);
    assert_eq!(signer, SignerIdentity::Certificate { issuer: ISSUER.to_owned(), subject: RELEASE.to_owned() });
    assert!(location.ends_with(".sig layer 0"), "{location}");

    // Another identity: the message names the identity the certificate carries.
    let d = s.decide(&email_subject("subject: someone@example.com"), &image).await;
    assert_denied(&d, &["authority \"ci\"", "expected subject someone@example.com", &format!("subject {RELEASE}")]);
    // The same, as a type: an identity mismatch naming both sides.
    let tried = failures(s.outcome(&email_subject("subject: someone@example.com"), &image).await);
    let [(_, Failure::IdentityMismatch { expected, found })] = tried.as_slice() else { panic!("{tried:?}") };
    assert!(expected.contains("someone@example.com") && found.contains(RELEASE), "{expected} / {found}");

    // Another issuer.
    let other_issuer = keyless(&format!("issuer: https://issuer.example.org\nsubject: {RELEASE}"));
    let d = s.decide(&other_issuer, &image).await;
    assert_denied(&d, &["expected issuer https://issuer.example.org", &format!("issuer {ISSUER}")]);

    // Regular expressions are anchored: `subject_regexp_matches_the_whole_san!` below.
    // So are globs.
    let d = s.decide(&email_subject("subjectPattern: 'release@*'"), &image).await;
    assert!(d.allowed, "a glob may match the whole SAN: {d:?}");
    let d = s.decide(&email_subject("subjectPattern: 'release@example'"), &image).await;
    assert_denied(&d, &["subject matching glob"]);

    // Without the mini instance's trusted root, the production root does not trust the CA.
    let production = format!("    - name: ci\n      keyless:\n        issuer: {ISSUER}\n        subject: {RELEASE}\n");
    let d = s.decide(&production, &image).await;
    assert_denied(&d, &["authority \"ci\"", "invalid inclusion promise: No log key valid"]);
}

crate::on_both_registries!(legacy_keyless_subjects: legacy_keyless_subjects_docker_distribution, legacy_keyless_subjects_ferro);

/// A `subjectRegExp` that matches only a part of the SAN does not match: the expression is
/// anchored.
async fn subject_regexp_partial_match(kind: Kind, unanchored: &str) {
    let s = setup(kind).await;
    let signer = s.sigstore.issue(RELEASE, ISSUER, None, Validity::fulcio());
    let (image, _) = s.signed_legacy("team/app", "v1", legacy_layer(&s.sigstore, &signer, Tamper::default())).await;
    let d = s.decide(&email_subject(&format!("subjectRegExp: '{unanchored}'")), &image).await;
    assert_denied(&d, &["subject matching regexp", &format!("subject {RELEASE}")]);
}

crate::cases_on_both_registries!(subject_regexp_partial_match {
    subject_regexp_prefix_of_the_san: "release@example";
    subject_regexp_suffix_of_the_san: "example\\.com";
    subject_regexp_inside_the_san: "elease@example\\.co";
});

/// Keyless simple-signing layers attached as cosign OCI 1.1 referrers
/// (`cosign sign --registry-referrers-mode=oci-1-1`), through the referrers API or the fallback tag.
async fn keyless_cosign_oci11_referrers(kind: Kind) {
    use support::{COSIGN_SIG, CosignReferrer};
    let s = setup(kind).await;
    let signer = s.sigstore.issue(RELEASE, ISSUER, None, Validity::fulcio());
    for (tag, style) in
        [("v1", CosignReferrer::ConfigMediaType(COSIGN_SIG)), ("v2", CosignReferrer::ArtifactType(COSIGN_SIG))]
    {
        let (reference, digest, raw) = s.image("team/oci11", tag).await;
        let layer = s.sigstore.signature_layer(&signer, MiniSigstore::payload(&reference, &digest));
        s.push.cosign_referrer("team/oci11", &digest, &raw, style, &[layer]).await;
        let image = format!("{reference}:{tag}");
        let (_, _, location) = satisfied_by(s.outcome(&email_subject(&format!("subject: {RELEASE}")), &image).await);
        assert!(location.starts_with("referrer sha256:"), "{style:?}: {location}");
        let d = s.decide(&email_subject("subject: someone@example.com"), &image).await;
        assert_denied(&d, &["referrer sha256:", "expected subject someone@example.com", &format!("subject {RELEASE}")]);
    }
    // Without its log entry, a keyless referrer layer does not count.
    let (reference, digest, raw) = s.image("team/oci11", "unlogged").await;
    let tamper = Tamper { no_rekor_bundle: true, ..Tamper::default() };
    let layer = s.sigstore.signature_layer_with(&signer, MiniSigstore::payload(&reference, &digest), &tamper);
    s.push.cosign_referrer("team/oci11", &digest, &raw, CosignReferrer::ConfigMediaType(COSIGN_SIG), &[layer]).await;
    let d = s.decide(&email_subject(&format!("subject: {RELEASE}")), &format!("{reference}:unlogged")).await;
    assert_denied(&d, &["no transparency log entry"]);
}

crate::on_both_registries!(keyless_cosign_oci11_referrers: keyless_cosign_oci11_referrers_fallback_tag, keyless_cosign_oci11_referrers_api);

/// A `github:` authority; `ref` is required, so specs without one accept every ref explicitly.
fn github(spec: &str) -> String {
    let spec = if spec.contains("ref:") { spec.to_owned() } else { format!("{spec}, ref: '**'") };
    keyless(&format!("github: {{{spec}}}"))
}

/// The claims of acme/app's release workflow at `refs/tags/v1.2.0`.
fn release_claims() -> GithubClaims {
    GithubClaims::new("acme/app", ".github/workflows/release.yml", "refs/tags/v1.2.0")
}

/// A setup with `acme/app:v1.2.0` signed by [`release_claims`]: (setup, image, claims).
async fn github_signed(kind: Kind) -> (Setup, String, GithubClaims) {
    let s = setup(kind).await;
    let claims = release_claims();
    let signer = s.sigstore.issue_github(&claims);
    let (image, _) = s
        .signed_legacy("acme/app", "v1.2.0", |reference, digest| {
            s.sigstore.signature_layer(&signer, MiniSigstore::payload(reference, digest))
        })
        .await;
    (s, image, claims)
}

async fn legacy_keyless_github(kind: Kind) {
    let (s, image, claims) = github_signed(kind).await;

    let full = format!(
        "repository: acme/app, workflow: .github/workflows/release.yml, ref: 'refs/tags/v*', sha: '{}', trigger: push",
        claims.sha.to_uppercase()
    );
    for spec in ["repository: acme/app", "repository: acme/app, ref: 'refs/tags/v1.2.0'", full.as_str()] {
        let d = s.decide(&github(spec), &image).await;
        assert!(d.allowed, "{spec}: {d:?}");
    }
    // Claims together with a subject (the SAN is the workflow at its ref).
    let with_subject = keyless(
        "subjectPattern: 'https://github.com/acme/*/.github/workflows/*@refs/tags/*'\ngithub: {repository: acme/app, ref: '**'}",
    );
    assert!(s.decide(&with_subject, &image).await.allowed);
    // An explicit issuer must still be GitHub's.
    let wrong_issuer = keyless(&format!("issuer: {ISSUER}\ngithub: {{repository: acme/app, ref: '**'}}"));
    assert_denied(&s.decide(&wrong_issuer, &image).await, &[&format!("expected issuer {ISSUER}")]);

    // Mismatches of each claim: `github_claim_mismatches!` below, one test per case.

    // A certificate of another repository does not satisfy acme/app's authority, even with the
    // same workflow path and ref.
    let fork = GithubClaims::new("mallory/app", ".github/workflows/release.yml", "refs/tags/v1.2.0");
    let fork_signer = s.sigstore.issue_github(&fork);
    let (forked, _) = s
        .signed_legacy("acme/app", "v1.2.1", |reference, digest| {
            s.sigstore.signature_layer(&fork_signer, MiniSigstore::payload(reference, digest))
        })
        .await;
    assert_denied(&s.decide(&github("repository: acme/app"), &forked).await, &["https://github.com/mallory/app"]);
    let by_san = keyless(&format!("issuer: {GITHUB_ISSUER}\nsubjectPattern: 'https://github.com/acme/**'"));
    assert_denied(&s.decide(&by_san, &forked).await, &["subject matching glob", &fork.san()]);
}

crate::on_both_registries!(legacy_keyless_github: legacy_keyless_github_claims_docker_distribution, legacy_keyless_github_claims_ferro);

/// `github:{spec}` against [`release_claims`]: an identity mismatch naming each of `needles`.
async fn github_claim_mismatch(kind: Kind, spec: &str, needles: &[&str]) {
    let (s, image, _) = github_signed(kind).await;
    let d = s.decide(&github(spec), &image).await;
    let mut all = vec!["certificate identity mismatch"];
    all.extend(needles.iter().copied());
    assert_denied(&d, &all);
}

// Mismatches of each claim, each named with what the certificate carried.
crate::cases_on_both_registries!(github_claim_mismatch {
    github_mismatch_another_repository: "repository: acme/other",
        &["GitHub repository https://github.com/acme/other", "https://github.com/acme/app"];
    github_mismatch_owner_only: "repository: acme",
        &["GitHub repository https://github.com/acme", "source repository https://github.com/acme/app"];
    github_mismatch_another_branch: "repository: acme/app, ref: 'refs/heads/main'",
        &["ref matching refs/heads/main", "ref refs/tags/v1.2.0"];
    github_mismatch_another_tag_pattern: "repository: acme/app, ref: 'refs/tags/v2*'",
        &["ref matching refs/tags/v2*"];
    github_mismatch_another_workflow: "repository: acme/app, workflow: .github/workflows/ci.yml",
        &["workflow .github/workflows/ci.yml", "workflow .github/workflows/release.yml"];
    github_mismatch_another_commit: "repository: acme/app, sha: '0000000000000000000000000000000000000000'",
        &["commit 0000000000000000000000000000000000000000", &release_claims().sha];
    github_mismatch_another_trigger: "repository: acme/app, trigger: workflow_dispatch",
        &["trigger workflow_dispatch", "trigger push"];
});

// ---------------------------------------------------------------------------------------------
// Sigstore bundle v0.3 referrers.

async fn bundle_keyless(kind: Kind) {
    let s = setup(kind).await;
    let claims = GithubClaims::new("acme/app", ".github/workflows/release.yml", "refs/heads/main");
    let signer = s.sigstore.issue_github(&claims);
    let (image, digest) =
        s.signed_bundle("acme/bundled", "v1", |digest| s.sigstore.signature_bundle(&signer, digest)).await;
    let authority = github("repository: acme/app, workflow: .github/workflows/release.yml, ref: refs/heads/main");
    let d = s.decide(&authority, &image).await;
    assert!(d.allowed, "{d:?}");
    let (verified, by, location) = satisfied_by(s.outcome(&authority, &image).await);
    assert_eq!(verified, digest);
    assert!(matches!(&by, SignerIdentity::Certificate { subject, .. } if *subject == claims.san()), "{by:?}");
    assert!(location.starts_with("referrer"), "{location}");
    let d = s.decide(&keyless(&format!("issuer: {GITHUB_ISSUER}\nsubject: {}", claims.san())), &image).await;
    assert!(d.allowed, "{d:?}");

    // Identity mismatches through the bundle path.
    assert_denied(&s.decide(&github("repository: acme/other"), &image).await, &["https://github.com/acme/app"]);
    let d = s.decide(&email_subject(&format!("subject: {RELEASE}")), &image).await;
    assert_denied(&d, &[&format!("expected issuer {ISSUER}"), GITHUB_ISSUER]);

    // A valid keyless bundle, but about another digest.
    let (other, _) = s
        .signed_bundle("acme/bundled", "v2", |_| {
            s.sigstore.signature_bundle(&signer, &format!("sha256:{}", "11".repeat(32)))
        })
        .await;
    assert_denied(&s.decide(&authority, &other).await, &["about another digest"]);

    // A keyless attestation bundle about this digest is not a signature.
    let (attested, _) = s
        .signed_bundle("acme/bundled", "v3", |digest| {
            let statement = support::cjson(&serde_json::json!({
                "_type": "https://in-toto.io/Statement/v1",
                "subject": [{"digest": {"sha256": digest.trim_start_matches("sha256:")}}],
                "predicateType": "https://slsa.dev/provenance/v1",
                "predicate": {"buildDefinition": {"buildType": "https://example.com/build/v1"}}
            }));
            s.sigstore.bundle_for_statement(&signer, &statement, &Tamper::default())
        })
        .await;
    assert_denied(&s.decide(&authority, &attested).await, &["is an attestation (https://slsa.dev/provenance/v1)"]);
}

crate::on_both_registries!(bundle_keyless: bundle_keyless_fallback_tag, bundle_keyless_referrers_api);

const GITLAB: &str = "https://gitlab.com";

/// A GitLab CI signer as gitlab.com's Fulcio claims describe it: the SAN is the pipeline config at
/// its ref; the ref in `sourceRepositoryRef` (`.14`) is `git_ref`.
fn gitlab_signer(sigstore: &MiniSigstore, git_ref: &str) -> KeylessSigner {
    let san = "https://gitlab.com/acme/app//.gitlab-ci.yml@refs/heads/main";
    let claims = [
        (9, san),
        (11, "gitlab-hosted"),
        (12, "https://gitlab.com/acme/app"),
        (13, "4f2c2a3e1d6b0c9a8f7e6d5c4b3a29180716f5e4"),
        (14, git_ref),
        (15, "42"),
        (16, "https://gitlab.com/acme"),
        (18, san),
        (20, "push"),
        (21, "https://gitlab.com/acme/app/-/jobs/1"),
        (22, "public"),
    ];
    let claims = claims.iter().map(|(n, v)| (*n, (*v).to_owned())).collect();
    sigstore.issue_with(san, GITLAB, None, &IssueOptions { claims, ..IssueOptions::default() })
}

/// `keyless.claims` for a non-GitHub issuer: a GitLab pipeline signature on main is accepted; one
/// with the same subject but made from another ref (`sourceRepositoryRef`) is refused, typed.
#[tokio::test]
async fn gitlab_claims_through_a_registry() {
    let s = setup(Kind::Ferro).await;
    let main = gitlab_signer(&s.sigstore, "refs/heads/main");
    let forged = gitlab_signer(&s.sigstore, "refs/heads/feature");
    let authority = keyless(&format!(
        "issuer: {GITLAB}\nsubject: {}\nclaims: {{sourceRepositoryURI: 'https://gitlab.com/acme/app', sourceRepositoryRef: refs/heads/main}}",
        main.subject
    ));
    let (image, _) = s.signed_bundle("acme/gitlab", "v1", |digest| s.sigstore.signature_bundle(&main, digest)).await;
    let d = s.decide(&authority, &image).await;
    assert!(d.allowed, "{d:?}");
    let (legacy, _) = s
        .signed_legacy("acme/gitlab", "v2", |reference, digest| {
            s.sigstore.signature_layer(&main, MiniSigstore::payload(reference, digest))
        })
        .await;
    assert!(s.decide(&authority, &legacy).await.allowed);

    assert_eq!(forged.subject, main.subject);
    let (image, _) = s.signed_bundle("acme/gitlab", "v3", |digest| s.sigstore.signature_bundle(&forged, digest)).await;
    assert_denied(&s.decide(&authority, &image).await, &["sourceRepositoryRef refs/heads/main", "refs/heads/feature"]);
    let failures = failures(s.outcome(&authority, &image).await);
    assert!(
        failures.iter().any(|(_, f)| matches!(f, Failure::IdentityMismatch { expected, found }
            if expected == "sourceRepositoryRef refs/heads/main" && found == "sourceRepositoryRef refs/heads/feature")),
        "{failures:?}"
    );
    // Without the claims, the subject alone cannot tell them apart.
    let by_subject = keyless(&format!("issuer: {GITLAB}\nsubject: {}", main.subject));
    assert!(s.decide(&by_subject, &image).await.allowed);
}

/// Both formats on one image, a keyless authority and a GitHub one, `require: all`.
#[tokio::test]
async fn legacy_and_bundle_keyless_together() {
    let s = setup(Kind::Ferro).await;
    let email = s.sigstore.issue(RELEASE, ISSUER, None, Validity::fulcio());
    let claims = GithubClaims::new("acme/app", ".github/workflows/release.yml", "refs/heads/main");
    let gha = s.sigstore.issue_github(&claims);
    let (image, digest) = s
        .signed_legacy("acme/both", "v1", |reference, digest| {
            s.sigstore.signature_layer(&email, MiniSigstore::payload(reference, digest))
        })
        .await;
    let raw = s.push.get_manifest("acme/both", "v1").await.expect("manifest");
    s.push.referrer("acme/both", &digest, &raw, BUNDLE_V03, &s.sigstore.signature_bundle(&gha, &digest)).await;
    let two = format!(
        "{}{}",
        email_subject(&format!("subject: {RELEASE}")),
        github("repository: acme/app").replace("name: ci", "name: gha")
    );
    let set = s.policies(&two, "  require: all\n");
    let d = s.decide_with(set, &image, TrustRoot::production().expect("root")).await;
    assert!(d.allowed, "{d:?}");
    let set = s.policies(&two.replace("acme/app", "acme/other"), "  require: all\n");
    let d = s.decide_with(set, &image, TrustRoot::production().expect("root")).await;
    assert_denied(&d, &["requires all 2 authorities with distinct signers; 1 counted", "authority \"gha\""]);
}

/// The mini instance as the verifier's trusted root (`--trusted-root`), no `trustedRoot:`.
#[tokio::test]
async fn verifier_trusted_root_without_per_authority_root() {
    let s = setup(Kind::Distribution).await;
    let signer = s.sigstore.issue(RELEASE, ISSUER, None, Validity::fulcio());
    let (image, _) = s
        .signed_legacy("team/app", "v1", |reference, digest| {
            s.sigstore.signature_layer(&signer, MiniSigstore::payload(reference, digest))
        })
        .await;
    let mini = TrustRoot::from_json(&s.sigstore.trusted_root_json()).expect("root");
    let authority = format!("    - name: ci\n      keyless:\n        issuer: {ISSUER}\n        subject: {RELEASE}\n");
    let d = s.decide_with(s.policies(&authority, ""), &image, mini.clone()).await;
    assert!(d.allowed, "{d:?}");
    // Another instance's root, per authority, overrides the verifier's: refused.
    let other = MiniSigstore::new("other");
    other.write_trusted_root(s.dir.path(), "other-root.json");
    let pinned = authority.replace("keyless:", "trustedRoot: other-root.json\n      keyless:");
    let d = s.decide_with(s.policies(&pinned, ""), &image, mini).await;
    assert_denied(&d, &["invalid inclusion promise: No log key valid"]);

    // A per-authority root that is missing or not a trusted root does not load (it is read when
    // the policies load, never while verifying): the error names the authority and the file.
    let load_error = |authorities: &str| {
        let text = format!(
            "apiVersion: portcullis.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {{name: signed}}\nspec:\n  images: ['{}/**']\n  digest: allow-tags\n  authorities:\n{authorities}",
            s.registry.host
        );
        load_text(&text, "signed.yaml", s.dir.path(), &CelEnv::new()).expect_err("does not load").to_string()
    };
    let missing = authority.replace("keyless:", "trustedRoot: absent-root.json\n      keyless:");
    let error = load_error(&missing);
    for part in ["policy \"signed\"", "authority \"ci\"", "trustedRoot", "absent-root.json", "cannot read it"] {
        assert!(error.contains(part), "{part}: {error}");
    }
    std::fs::write(s.dir.path().join("garbage-root.json"), "{\"mediaType\": 1}").expect("write");
    let garbage = authority.replace("keyless:", "trustedRoot: garbage-root.json\n      keyless:");
    let error = load_error(&garbage);
    assert!(error.contains("garbage-root.json") && error.contains("not a valid trusted_root.json"), "{error}");
}

/// A `.sig` layer maker for [`Setup::signed_legacy`], with the log evidence tampered.
fn legacy_layer<'a>(
    sigstore: &'a MiniSigstore,
    signer: &'a KeylessSigner,
    tamper: Tamper,
) -> impl FnOnce(&str, &str) -> (Vec<u8>, &'static str, Value) + 'a {
    move |reference, digest| sigstore.signature_layer_with(signer, MiniSigstore::payload(reference, digest), &tamper)
}

// ---------------------------------------------------------------------------------------------
// Forgeries and broken evidence: each denied, with the reason, one test per case (in
// `keyless/forgeries.rs`), as are the published cosign advisories (`keyless/advisories.rs`).

#[path = "keyless/advisories.rs"]
mod advisories;
#[path = "keyless/forgeries.rs"]
mod forgeries;

/// Certificates from before Fulcio's current extensions carry only the legacy raw-string ones
/// (`.1` issuer, `.2`–`.6` GitHub claims, the repository as `owner/repo`): still matched.
#[tokio::test]
async fn legacy_fulcio_extensions_only() {
    let s = setup(Kind::Distribution).await;
    let claims = GithubClaims::new("acme/app", ".github/workflows/release.yml", "refs/heads/main");
    let options = IssueOptions { legacy_extensions_only: true, ..IssueOptions::default() };
    let signer = s.sigstore.issue_with(&claims.san(), GITHUB_ISSUER, Some(&claims), &options);
    let parsed = Claims::from_der(&signer.cert_der).expect("claims");
    assert_eq!(parsed.source_repository.as_deref(), Some("https://github.com/acme/app"));
    assert_eq!(parsed.build_config, None, "no build config URI in a legacy certificate");
    let (image, _) = s.signed_legacy("acme/app", "v1", legacy_layer(&s.sigstore, &signer, Tamper::default())).await;
    let full = format!(
        "repository: acme/app, workflow: .github/workflows/release.yml, ref: refs/heads/main, sha: '{}', trigger: push",
        claims.sha
    );
    let d = s.decide(&github(&full), &image).await;
    assert!(d.allowed, "{d:?}");
    assert_denied(
        &s.decide(&github("repository: acme/app, ref: refs/heads/dev"), &image).await,
        &["ref refs/heads/main"],
    );
}

/// An entry logged "in the future" (integrated time after now) is not a signing time.
#[tokio::test]
async fn integrated_time_in_the_future() {
    let s = setup(Kind::Distribution).await;
    let later = s.sigstore.issue(RELEASE, ISSUER, None, Validity::starting(now() + 3000));
    let tamper = Tamper { integrated_time: Some(now() + 3300), ..Tamper::default() };
    let (image, _) = s.signed_legacy("team/future", "v1", legacy_layer(&s.sigstore, &later, tamper)).await;
    assert_denied(&s.decide(&email_subject(&format!("subject: {RELEASE}")), &image).await, &["in the future"]);
}

/// Editing `trusted_root.json` in the policy directory hot-reloads the policies (the file is
/// part of the directory fingerprint); the running webhook keeps ONE verifier across reloads,
/// so the edited root must be what the next review uses. Here the file is rotated to another
/// instance, so the old CA, whose signature is on the image, is no longer trusted.
#[tokio::test]
async fn edited_trusted_root_is_used_after_reload() {
    let s = setup(Kind::Distribution).await;
    let signer = s.sigstore.issue(RELEASE, ISSUER, None, Validity::fulcio());
    let (image, _) = s.signed_legacy("team/rotated", "v1", legacy_layer(&s.sigstore, &signer, Tamper::default())).await;
    let authority = email_subject(&format!("subject: {RELEASE}"));
    let verifier: Arc<RegistryVerifier> = Arc::new(s.verifier(TrustRoot::production().expect("root")));
    let review = async |set: PolicySet| {
        let engine = Engine::fixed(set, verifier.clone(), Settings::default());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        engine.review(&Review::for_image(&image, "default"), deadline).await
    };
    let d = review(s.policies(&authority, "")).await;
    assert!(d.allowed, "{d:?}");

    // Rotate the root file to another instance; the reload compiles the policies again.
    MiniSigstore::new("rotated").write_trusted_root(s.dir.path(), ROOT_FILE);
    // A fresh verifier (a restart) refuses the old CA's signature...
    let fresh = s.decide(&authority, &image).await;
    assert_denied(&fresh, &["authority \"ci\""]);
    // ... and so must the running one after the reload.
    let d = review(s.policies(&authority, "")).await;
    assert!(!d.allowed, "the rotated-out trusted root is still used: {d:?}");
}

/// `subjectRegExp` is anchored as `^(?:…)$`. A pattern that closes the group itself is not a
/// valid regular expression on its own, yet once wrapped it compiles to an alternation whose
/// second branch is unanchored: `nobody@example\.com)|(.*` then accepts every identity.
#[tokio::test]
async fn subject_regexp_cannot_escape_its_anchors() {
    let s = setup(Kind::Distribution).await;
    let stranger = s.sigstore.issue("mallory@evil.example", ISSUER, None, Validity::fulcio());
    let (image, _) =
        s.signed_legacy("team/regexp", "v1", legacy_layer(&s.sigstore, &stranger, Tamper::default())).await;
    let authority = email_subject("subjectRegExp: 'nobody@example\\.com)|(.*'");
    let text = format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {{name: signed}}\nspec:\n  images: ['{}/**']\n  digest: allow-tags\n  authorities:\n{authority}",
        s.registry.host
    );
    match load_text(&text, "signed.yaml", s.dir.path(), &CelEnv::new()) {
        Err(e) => assert!(e.to_string().contains("subjectRegExp"), "{e}"),
        Ok(set) => {
            let d = s.decide_with(set, &image, TrustRoot::production().expect("root")).await;
            assert!(!d.allowed, "an identity outside the pattern was accepted: {d:?}");
        }
    }
}

/// `cosign sign` run twice appends a layer to the `.sig` image: one matching layer is enough,
/// and a denial lists why each layer failed.
#[tokio::test]
async fn several_keyless_signatures_on_one_image() {
    let s = setup(Kind::Ferro).await;
    let other = MiniSigstore::new("other");
    let stranger = other.issue(RELEASE, ISSUER, None, Validity::fulcio());
    let ops = s.sigstore.issue("ops@example.com", ISSUER, None, Validity::fulcio());
    let release = s.sigstore.issue(RELEASE, ISSUER, None, Validity::fulcio());
    let (reference, digest, _) = s.image("team/multi", "v1").await;
    let payload = MiniSigstore::payload(&reference, &digest);
    let layers = [
        other.signature_layer(&stranger, payload.clone()),
        s.sigstore.signature_layer(&ops, payload.clone()),
        s.sigstore.signature_layer(&release, payload),
    ];
    s.push.artifact("team/multi", &format!("{}.sig", digest.replace(':', "-")), &layers).await;
    let image = format!("{reference}:v1");
    let (_, _, location) = satisfied_by(s.outcome(&email_subject(&format!("subject: {RELEASE}")), &image).await);
    assert!(location.ends_with(".sig layer 2"), "{location}");
    let tried = failures(s.outcome(&email_subject("subject: dev@example.com"), &image).await);
    let classes: Vec<&str> = tried.iter().map(|(_, f)| f.class()).collect();
    assert_eq!(classes, ["log-entry-invalid", "identity-mismatch", "identity-mismatch"], "{tried:?}");
    let d = s.decide(&email_subject("subject: dev@example.com"), &image).await;
    assert_denied(
        &d,
        &[
            ".sig layer 0: transparency log check failed",
            ".sig layer 1: certificate identity mismatch",
            ".sig layer 2: certificate identity mismatch",
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// `require` counts distinct signers.

/// Two keyless authorities that accept the same identity: two signatures by it (two
/// certificates, as two CI runs get) are one signer, and `atLeast: 2` needs another identity.
/// With one, the authority that accepts either identity is counted with the other one.
async fn one_keyless_identity_does_not_satisfy_two_authorities(require: &str) {
    let s = setup(Kind::Ferro).await;
    let run1 = s.sigstore.issue(RELEASE, ISSUER, None, Validity::fulcio());
    let run2 = s.sigstore.issue(RELEASE, ISSUER, None, Validity::fulcio());
    let (reference, digest, raw) = s.image("team/twice", "v1").await;
    let payload = MiniSigstore::payload(&reference, &digest);
    let sig_tag = format!("{}.sig", digest.replace(':', "-"));
    let layers =
        [s.sigstore.signature_layer(&run1, payload.clone()), s.sigstore.signature_layer(&run2, payload.clone())];
    s.push.artifact("team/twice", &sig_tag, &layers).await;
    s.push.referrer("team/twice", &digest, &raw, BUNDLE_V03, &s.sigstore.signature_bundle(&run2, &digest)).await;
    let two = format!(
        "{}{}",
        email_subject("subjectRegExp: '(release|ops)@example\\.com'").replace("name: ci", "name: either"),
        email_subject(&format!("subject: {RELEASE}")).replace("name: ci", "name: release"),
    );
    let image = format!("{reference}:v1");
    let root = || TrustRoot::production().expect("root");
    let d = s.decide_with(s.policies(&two, require), &image, root()).await;
    assert_denied(
        &d,
        &[
            "authorities with distinct signers; 1 counted",
            &format!("1 distinct signer satisfied authorities \"either\", \"release\" ({RELEASE} (issuer {ISSUER}))"),
        ],
    );

    // Another identity signs: "either" is counted with it, "release" with the release identity.
    let ops = s.sigstore.issue("ops@example.com", ISSUER, None, Validity::fulcio());
    let mut layers = layers.to_vec();
    layers.push(s.sigstore.signature_layer(&ops, payload));
    s.push.artifact("team/twice", &sig_tag, &layers).await;
    let d = s.decide_with(s.policies(&two, require), &image, root()).await;
    assert!(d.allowed, "{require}: {d:?}");
}

#[tokio::test]
async fn one_keyless_identity_does_not_satisfy_two_authorities_at_least_2() {
    one_keyless_identity_does_not_satisfy_two_authorities("  require: {atLeast: 2}\n").await;
}

#[tokio::test]
async fn one_keyless_identity_does_not_satisfy_two_authorities_require_all() {
    one_keyless_identity_does_not_satisfy_two_authorities("  require: all\n").await;
}

/// A key that also holds a Fulcio certificate (`cosign sign --key … --issue-certificate`) signs
/// once: a key authority for that key and a keyless authority for the certificate's identity
/// both accept the signature, and it is still one signer.
#[tokio::test]
async fn one_certified_key_does_not_satisfy_a_key_and_a_keyless_authority() {
    let s = setup(Kind::Distribution).await;
    let signer = s.sigstore.issue(RELEASE, ISSUER, None, Validity::fulcio());
    std::fs::write(s.dir.path().join("certified.pub"), signer.public_pem()).expect("key");
    let (image, _) = s
        .signed_legacy("team/certified", "v1", |reference, digest| {
            s.sigstore.signature_layer(&signer, MiniSigstore::payload(reference, digest))
        })
        .await;
    // (Under `transparencyLog: required` a key authority refuses a bundle with a certificate;
    // a legacy signature checked with the key alone is accepted.)
    let key = "    - name: key\n      key: {publicKeyFile: certified.pub}\n      transparencyLog: skip\n".to_owned();
    let identity = email_subject(&format!("subject: {RELEASE}"));
    let root = || TrustRoot::production().expect("root");
    // Each authority alone accepts it.
    let d = s.decide(&key, &image).await;
    assert!(d.allowed, "{d:?}");
    assert!(s.decide(&identity, &image).await.allowed);
    let both = format!("{key}{identity}");
    let d = s.decide_with(s.policies(&both, "  require: all\n"), &image, root()).await;
    assert_denied(
        &d,
        &[
            "requires all 2 authorities with distinct signers; 1 counted",
            "1 distinct signer satisfied authorities \"key\", \"ci\"",
        ],
    );
}

/// `issuerRegExp`: the OIDC issuer matched by an anchored regular expression; a partial match,
/// an issuer outside it, and both `issuer` and `issuerRegExp` at once are refused.
#[tokio::test]
async fn issuer_regexp_is_anchored() {
    let s = setup(Kind::Distribution).await;
    let signer = s.sigstore.issue(RELEASE, ISSUER, None, Validity::fulcio());
    let (image, _) = s.signed_legacy("team/issuer", "v1", legacy_layer(&s.sigstore, &signer, Tamper::default())).await;
    let with = |issuer_line: &str| keyless(&format!("{issuer_line}\nsubject: {RELEASE}"));
    for accepted in ["issuerRegExp: 'https://accounts\\.example\\.(com|org)'", "issuerRegExp: 'https://.*'"] {
        let d = s.decide(&with(accepted), &image).await;
        assert!(d.allowed, "{accepted}: {d:?}");
    }
    // Refused issuers: `issuer_regexp_refused` below, one test per case.
    let both = with(&format!("issuer: {ISSUER}\nissuerRegExp: '.*'"));
    let text = format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {{name: signed}}\nspec:\n  images: ['{}/**']\n  authorities:\n{both}",
        s.registry.host
    );
    let Err(e) = load_text(&text, "signed.yaml", s.dir.path(), &CelEnv::new()) else { panic!("both accepted") };
    assert!(e.to_string().contains("use only one of issuer and issuerRegExp"), "{e}");
}

/// An `issuerRegExp` the certificate's issuer does not wholly match is refused.
async fn issuer_regexp_refused(issuer_regexp: &str) {
    let s = setup(Kind::Distribution).await;
    let signer = s.sigstore.issue(RELEASE, ISSUER, None, Validity::fulcio());
    let (image, _) = s.signed_legacy("team/issuer", "v1", legacy_layer(&s.sigstore, &signer, Tamper::default())).await;
    let d = s.decide(&keyless(&format!("issuerRegExp: '{issuer_regexp}'\nsubject: {RELEASE}")), &image).await;
    assert_denied(&d, &["expected issuer matching regexp", &format!("issuer {ISSUER}")]);
}

#[tokio::test]
async fn issuer_regexp_prefix_of_the_issuer_is_refused() {
    issuer_regexp_refused("https://accounts\\.example").await;
}

#[tokio::test]
async fn issuer_regexp_without_the_scheme_is_refused() {
    issuer_regexp_refused("accounts\\.example\\.com").await;
}

#[tokio::test]
async fn issuer_regexp_of_another_issuer_is_refused() {
    issuer_regexp_refused("https://token\\.actions\\..*").await;
}

/// `keyless.identities`: several identities in one authority, any one of which may sign; the
/// authority still counts once. Nothing outside the list passes, and a denial lists them all.
#[tokio::test]
async fn several_identities_in_one_authority() {
    let s = setup(Kind::Ferro).await;
    let email = s.sigstore.issue(RELEASE, ISSUER, None, Validity::fulcio());
    let claims = GithubClaims::new("acme/app", ".github/workflows/release.yml", "refs/tags/v1.0.0");
    let workflow = s.sigstore.issue_github(&claims);
    let stranger = s.sigstore.issue("mallory@example.com", ISSUER, None, Validity::fulcio());
    let (by_email, _) = s.signed_legacy("team/ids", "a", legacy_layer(&s.sigstore, &email, Tamper::default())).await;
    let (by_workflow, _) =
        s.signed_bundle("team/ids", "b", |digest| s.sigstore.signature_bundle(&workflow, digest)).await;
    let (by_stranger, _) =
        s.signed_legacy("team/ids", "c", legacy_layer(&s.sigstore, &stranger, Tamper::default())).await;
    let authority = format!(
        "    - name: ci\n      trustedRoot: {ROOT_FILE}\n      keyless:\n        identities:\n          - issuer: {ISSUER}\n            subject: {RELEASE}\n          - github: {{repository: acme/app, workflow: .github/workflows/release.yml, ref: 'refs/tags/v*'}}\n"
    );
    for image in [&by_email, &by_workflow] {
        let d = s.decide(&authority, image).await;
        assert!(d.allowed, "{image}: {d:?}");
    }
    let d = s.decide(&authority, &by_stranger).await;
    assert_denied(&d, &["one of [", &format!("subject {RELEASE}"), "subject mallory@example.com"]);
    // The list is one authority: `atLeast: 2` cannot be met by it.
    let text = format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {{name: signed}}\nspec:\n  images: ['{}/**']\n  require: {{atLeast: 2}}\n  authorities:\n{authority}",
        s.registry.host
    );
    let Err(e) = load_text(&text, "signed.yaml", s.dir.path(), &CelEnv::new()) else { panic!("atLeast 2 of one") };
    assert!(e.to_string().contains("lists only 1 authorities"), "{e}");
}

// Malformed identity lists are load errors, naming the field: one test per case.

fn malformed_identities_are_a_load_error(keyless_body: &str, needle: &str) {
    let text = format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {{name: signed}}\nspec:\n  images: ['registry.example/**']\n  authorities:\n    - name: ci\n      keyless:\n        {keyless_body}\n"
    );
    let Err(e) = load_text(&text, "signed.yaml", std::path::Path::new("."), &CelEnv::new()) else {
        panic!("{keyless_body} accepted")
    };
    assert!(e.to_string().contains(needle), "{needle}: {e}");
}

macro_rules! malformed_identities {
    ($($name:ident: $body:expr => $needle:expr;)*) => {$(
        #[test]
        fn $name() {
            malformed_identities_are_a_load_error(&$body, $needle);
        }
    )*};
}

malformed_identities! {
    an_empty_identity_list_is_a_load_error: String::from("identities: []") => "non-empty list";
    an_issuer_beside_identities_is_a_load_error:
        format!("issuer: {ISSUER}\n        identities:\n          - {{issuer: {ISSUER}, subject: {RELEASE}}}")
            => "replaces issuer";
    an_identity_without_a_subject_is_a_load_error:
        format!("identities:\n          - {{issuer: {ISSUER}}}") => "identities[0]: keyless needs subject";
    nested_identity_lists_are_a_load_error:
        format!("identities:\n          - identities: [{{issuer: {ISSUER}, subject: {RELEASE}}}]")
            => "identities do not nest";
}
