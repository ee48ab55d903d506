//! Published cosign verifier advisories: the same forgeries, refused, one test per forgery.

use super::*;

/// GHSA-fx35-mq7g-6g98: cosign took a bare public key found where a legacy bundle carries the
/// certificate and verified with it, skipping the chain and the identity. Here: a signature by
/// the attacker's own key, that public key in the certificate annotation (as is, and relabelled
/// as a certificate), with an honest log entry for it. A keyless authority refuses it (no
/// Fulcio certificate), and so does a key authority (only the policy's key counts).
struct Fx35 {
    s: Setup,
    attacker: support::Signer,
}

impl Fx35 {
    async fn new() -> Self {
        let s = setup(Kind::Distribution).await;
        let attacker = support::Signer::new();
        let release = support::Signer::new();
        std::fs::write(s.dir.path().join("release.pub"), release.public_pem()).expect("key");
        std::fs::write(s.dir.path().join("attacker.pub"), attacker.public_pem()).expect("key");
        Self { s, attacker }
    }

    fn key_authority(file: &str) -> String {
        format!("    - name: release\n      trustedRoot: {ROOT_FILE}\n      key: {{publicKeyFile: {file}}}\n")
    }

    /// Push a `.sig` layer signed by the attacker's key and logged, with `in_certificate` (if
    /// any) in the certificate annotation; returns the image.
    async fn forged(&self, tag: &str, in_certificate: Option<String>) -> String {
        let key_pem = self.attacker.public_pem();
        let (image, _) = self
            .s
            .signed_legacy("team/fx35", tag, |reference, digest| {
                let payload = MiniSigstore::payload(reference, digest);
                let signature = self.attacker.sign(&payload);
                let mut annotations = json!({
                    "dev.cosignproject.cosign/signature": B64.encode(&signature),
                    "dev.sigstore.cosign/bundle": self.s.sigstore.log_hashedrekord(&payload, &signature, &key_pem),
                });
                if let Some(pem) = in_certificate {
                    annotations["dev.sigstore.cosign/certificate"] = Value::String(pem);
                }
                (payload, support::SIMPLESIGNING, annotations)
            })
            .await;
        image
    }

    /// The forged image is refused by the keyless authority (with `keyless_reason`) and by a key
    /// authority for the release key, with or without the log.
    async fn refused(&self, image: &str, keyless_reason: &str) {
        let s = &self.s;
        let d = s.decide(&email_subject(&format!("subject: {RELEASE}")), image).await;
        assert_denied(&d, &[".sig layer 0", keyless_reason]);
        let d = s.decide(&Self::key_authority("release.pub"), image).await;
        assert_denied(&d, &["authority \"release\"", ".sig layer 0"]);
        let skip = Self::key_authority("release.pub") + "      transparencyLog: skip\n";
        assert_denied(&s.decide(&skip, image).await, &["bad signature"]);
    }
}

#[tokio::test]
async fn ghsa_fx35_a_bare_public_key_in_the_certificate_annotation_is_refused() {
    let fx35 = Fx35::new().await;
    let image = fx35.forged("bare-key", Some(fx35.attacker.public_pem())).await;
    fx35.refused(&image, "holds no PEM CERTIFICATE").await;
}

#[tokio::test]
async fn ghsa_fx35_a_public_key_relabelled_as_a_certificate_is_refused() {
    let fx35 = Fx35::new().await;
    let disguised = fx35.attacker.public_pem().replace("PUBLIC KEY", "CERTIFICATE");
    let image = fx35.forged("key-as-certificate", Some(disguised)).await;
    fx35.refused(&image, "signing certificate rejected").await;
}

/// The forgery is otherwise sound: without the key in the certificate's place, the attacker's
/// signature and log entry verify for an authority that does trust that key.
#[tokio::test]
async fn ghsa_fx35_the_forgery_is_otherwise_sound() {
    let fx35 = Fx35::new().await;
    let image = fx35.forged("plain-key", None).await;
    let d = fx35.s.decide(&Fx35::key_authority("attacker.pub"), &image).await;
    assert!(d.allowed, "{d:?}");
    assert_denied(&fx35.s.decide(&Fx35::key_authority("release.pub"), &image).await, &["bad signature"]);
}

/// The same in a bundle: the attacker's public key as verification material, logged.
#[tokio::test]
async fn ghsa_fx35_a_public_key_as_bundle_verification_material_is_refused() {
    let fx35 = Fx35::new().await;
    let s = &fx35.s;
    let (image, _) = s
        .signed_bundle("team/fx35", "bundle-key", |digest| {
            let statement = support::cjson(&json!({
                "_type": "https://in-toto.io/Statement/v1",
                "subject": [{"digest": {"sha256": digest.trim_start_matches("sha256:")}}],
                "predicateType": support::sigstore::COSIGN_SIGN_V1,
                "predicate": {}
            }));
            s.sigstore.key_bundle_logged(&fx35.attacker, &statement)
        })
        .await;
    let d = s.decide(&email_subject(&format!("subject: {RELEASE}")), &image).await;
    assert_denied(&d, &["referrer", "no signing certificate but a keyless identity was required"]);
    assert_denied(&s.decide(&Fx35::key_authority("release.pub"), &image).await, &["referrer", "authority \"release\""]);
    assert!(s.decide(&Fx35::key_authority("attacker.pub"), &image).await.allowed, "the bundle itself is sound");
}

// GHSA-whqx-f9j3-ch6m: cosign accepted a bundle whose Rekor entry did not describe the
// artifact, its signature or its key. Here: valid entries, honestly signed by the log, attached
// to signatures they are not about. Each is refused; the honest entry is accepted.

fn other_digest() -> String {
    format!("sha256:{}", "33".repeat(32))
}

fn other_payload() -> Vec<u8> {
    MiniSigstore::payload("registry.test/other", &other_digest())
}

/// Legacy keyless: the entry the same certificate got for another artifact.
#[tokio::test]
async fn ghsa_whqx_legacy_entry_of_another_artifact_is_refused() {
    let s = setup(Kind::Ferro).await;
    let signer = s.sigstore.issue(RELEASE, ISSUER, None, Validity::fulcio());
    let (image, _) = s
        .signed_legacy("team/whqx", "entry-of-another-artifact", |reference, digest| {
            let (_, _, other) = s.sigstore.signature_layer(&signer, other_payload());
            let no_log = Tamper { no_rekor_bundle: true, ..Tamper::default() };
            let (payload, media_type, mut annotations) =
                s.sigstore.signature_layer_with(&signer, MiniSigstore::payload(reference, digest), &no_log);
            annotations["dev.sigstore.cosign/bundle"] = other["dev.sigstore.cosign/bundle"].clone();
            (payload, media_type, annotations)
        })
        .await;
    assert_denied(
        &s.decide(&email_subject(&format!("subject: {RELEASE}")), &image).await,
        &[".sig layer 0", "artifact hash mismatch for hashedrekord entry"],
    );
}

/// Legacy keyless: this signature and certificate, logged with another artifact's hash.
#[tokio::test]
async fn ghsa_whqx_legacy_hash_of_another_artifact_is_refused() {
    let s = setup(Kind::Ferro).await;
    let signer = s.sigstore.issue(RELEASE, ISSUER, None, Validity::fulcio());
    let tamper = Tamper { logged_payload: Some(other_payload()), ..Tamper::default() };
    let (image, _) =
        s.signed_legacy("team/whqx", "hash-of-another-artifact", legacy_layer(&s.sigstore, &signer, tamper)).await;
    assert_denied(
        &s.decide(&email_subject(&format!("subject: {RELEASE}")), &image).await,
        &["artifact hash mismatch for hashedrekord entry"],
    );
}

/// Bundle keyless: the log entry of the same signer's bundle for another digest.
#[tokio::test]
async fn ghsa_whqx_bundle_entry_of_another_digest_is_refused() {
    let s = setup(Kind::Ferro).await;
    let signer = s.sigstore.issue(RELEASE, ISSUER, None, Validity::fulcio());
    let (image, _) = s
        .signed_bundle("team/whqx", "bundle-entry-of-another-digest", |digest| {
            let mut bundle: Value =
                serde_json::from_slice(&s.sigstore.signature_bundle(&signer, digest)).expect("json");
            let other: Value =
                serde_json::from_slice(&s.sigstore.signature_bundle(&signer, &other_digest())).expect("json");
            bundle["verificationMaterial"]["tlogEntries"] = other["verificationMaterial"]["tlogEntries"].clone();
            serde_json::to_vec(&bundle).expect("json")
        })
        .await;
    let d = s.decide(&email_subject(&format!("subject: {RELEASE}")), &image).await;
    assert_denied(&d, &["referrer", "log entry does not match the bundle: DSSE payload hash mismatch"]);
}

/// The log entry on a key signature under `transparencyLog: required`.
enum KeyEntry {
    /// The entry the same key got for another artifact.
    OfAnotherArtifact,
    /// An entry for this artifact and signature that names another key.
    OfAnotherKey,
    /// The honest entry.
    Honest,
}

/// A `.sig` layer signed by the policy's key, with `entry` as its log entry; the decision of a
/// key authority for that key.
async fn key_signature_with(entry: KeyEntry) -> Decision {
    let s = setup(Kind::Ferro).await;
    let release = support::Signer::new();
    std::fs::write(s.dir.path().join("release.pub"), release.public_pem()).expect("key");
    let key =
        format!("    - name: release\n      trustedRoot: {ROOT_FILE}\n      key: {{publicKeyFile: release.pub}}\n");
    let stranger = support::Signer::new();
    let (image, _) = s
        .signed_legacy("team/whqx", "key-entry", |reference, digest| {
            let payload = MiniSigstore::payload(reference, digest);
            let signature = release.sign(&payload);
            let rekor = match entry {
                KeyEntry::OfAnotherArtifact => {
                    let other = other_payload();
                    s.sigstore.log_hashedrekord(&other, &release.sign(&other), &release.public_pem())
                }
                KeyEntry::OfAnotherKey => s.sigstore.log_hashedrekord(&payload, &signature, &stranger.public_pem()),
                KeyEntry::Honest => s.sigstore.log_hashedrekord(&payload, &signature, &release.public_pem()),
            };
            let annotations = json!({
                "dev.cosignproject.cosign/signature": B64.encode(&signature),
                "dev.sigstore.cosign/bundle": rekor,
            });
            (payload, support::SIMPLESIGNING, annotations)
        })
        .await;
    s.decide(&key, &image).await
}

#[tokio::test]
async fn ghsa_whqx_key_entry_of_another_artifact_is_refused() {
    let d = key_signature_with(KeyEntry::OfAnotherArtifact).await;
    assert_denied(&d, &[".sig layer 0", "artifact hash mismatch for hashedrekord entry"]);
}

#[tokio::test]
async fn ghsa_whqx_key_entry_of_another_key_is_refused() {
    let d = key_signature_with(KeyEntry::OfAnotherKey).await;
    assert_denied(&d, &[".sig layer 0", "public key in Rekor entry does not match"]);
}

#[tokio::test]
async fn ghsa_whqx_key_honest_entry_is_accepted() {
    let d = key_signature_with(KeyEntry::Honest).await;
    assert!(d.allowed, "{d:?}");
}
