//! The format matrix: every place and format cosign writes signatures and attestations to,
//! × key and keyless signers, × signature and attestation, against a registry without the
//! referrers API (Debian's docker-registry: referrers through the fallback tag) and one with
//! it (ferro-oci-server). Every cell is its own test, verified through the engine with the
//! same policy (no per-policy format setting), and has a negative twin: the same artifact
//! signed by another key or identity, refused with the typed failure class asserted.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use portcullis::decision::Decision;
use portcullis::engine::{Engine, Settings};
use portcullis::image::ImageRef;
use portcullis::review::Review;
use portcullis::verify::discovery::Location;
use portcullis::verify::image::RegistryVerifier;
use portcullis::verify::registry::{Registry, RegistryConfig};
use portcullis::verify::trust::TrustRoot;
use portcullis::verify::verdict::{Satisfied, Verification};
use portcullis::verify::{Outcome, Verifier, VerifyRequest};
use serde_json::{Value, json};
use support::sigstore::{KeylessSigner, MiniSigstore, Tamper, Validity};
use support::{BUNDLE_V03, COSIGN_ATT, COSIGN_SIG, CosignReferrer, DSSE, Kind, Pusher, Signer, TestRegistry};

const ISSUER: &str = "https://accounts.example.com";
const RELEASE: &str = "release@example.com";
const MALLORY: &str = "mallory@example.com";
const ROOT_FILE: &str = "mini-root.json";
const CYCLONEDX: &str = "https://cyclonedx.org/bom";
const REPO: &str = "team/matrix";

/// Where the artifact is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// cosign's legacy `sha256-<hex>.sig` / `.att` tag.
    LegacyTag,
    /// cosign's legacy layers as an OCI 1.1 referrer (`--registry-referrers-mode=oci-1-1`).
    CosignReferrer,
    /// A Sigstore bundle v0.3 as an OCI 1.1 referrer (cosign 3).
    BundleReferrer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    Key,
    Keyless,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum What {
    Signature,
    Attestation,
}

/// Who signs the artifact.
enum Signing<'a> {
    Key(&'a Signer),
    Keyless(KeylessSigner),
}

struct Cell {
    registry: TestRegistry,
    push: Pusher,
    dir: tempfile::TempDir,
    sigstore: MiniSigstore,
    release: Signer,
    other: Signer,
}

impl Cell {
    async fn start(kind: Kind) -> Self {
        let registry = TestRegistry::start(kind).await;
        let push = Pusher::new(&registry.host);
        let dir = tempfile::tempdir().expect("tempdir");
        let sigstore = MiniSigstore::new("matrix");
        sigstore.write_trusted_root(dir.path(), ROOT_FILE);
        let release = Signer::new();
        std::fs::write(dir.path().join("release.pub"), release.public_pem()).expect("key");
        Self { registry, push, dir, sigstore, release, other: Signer::new() }
    }

    /// One policy for every format: the authority, and for attestations an SBOM requirement.
    fn policies(&self, auth: Auth, what: What) -> portcullis::policy::PolicySet {
        let authority = match auth {
            Auth::Key => {
                "    - name: release\n      key: {publicKeyFile: release.pub}\n      transparencyLog: skip\n".to_owned()
            }
            Auth::Keyless => format!(
                "    - name: ci\n      trustedRoot: {ROOT_FILE}\n      keyless:\n        issuer: {ISSUER}\n        subject: {RELEASE}\n"
            ),
        };
        let extra = match what {
            What::Signature => "",
            What::Attestation => "  require: none\n  attestations:\n    - name: sbom\n      predicateType: cyclonedx\n",
        };
        support::signed_policy(&self.registry.host, self.dir.path(), &authority, extra)
    }

    fn verifier(&self) -> RegistryVerifier {
        let config = RegistryConfig { insecure: vec![self.registry.host.clone()], ..Default::default() };
        RegistryVerifier::new(Registry::new(config).expect("registry"), TrustRoot::production().expect("root"))
    }

    async fn decide(&self, auth: Auth, what: What, image: &str) -> Decision {
        let engine = Engine::fixed(self.policies(auth, what), Arc::new(self.verifier()), Settings::default());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        engine.review(&Review::for_image(image, "default"), deadline).await
    }

    async fn outcome(&self, auth: Auth, what: What, image: &str) -> Outcome {
        let set = self.policies(auth, what);
        let image = ImageRef::parse(image).expect("image reference");
        self.verifier().verify(VerifyRequest { image: &image, policy: &set.images[0], pull: None }).await
    }

    /// The signer of a cell: the authority's own (`genuine`), or another key / identity.
    fn signing(&self, auth: Auth, genuine: bool) -> Signing<'_> {
        match (auth, genuine) {
            (Auth::Key, true) => Signing::Key(&self.release),
            (Auth::Key, false) => Signing::Key(&self.other),
            (Auth::Keyless, true) => Signing::Keyless(self.sigstore.issue(RELEASE, ISSUER, None, Validity::fulcio())),
            (Auth::Keyless, false) => Signing::Keyless(self.sigstore.issue(MALLORY, ISSUER, None, Validity::fulcio())),
        }
    }

    /// A cosign legacy layer (simple signing, or DSSE with cosign's annotations) for `digest`.
    fn legacy_layer(&self, signing: &Signing<'_>, what: What, digest: &str) -> (Vec<u8>, &'static str, Value) {
        let reference = format!("{}/{REPO}", self.registry.host);
        let statement = support::statement(digest, CYCLONEDX, json!({"components": []}), true);
        match (signing, what) {
            (Signing::Key(key), What::Signature) => key.signature_layer(Signer::payload(&reference, digest)),
            (Signing::Keyless(cert), What::Signature) => {
                self.sigstore.signature_layer(cert, Signer::payload(&reference, digest))
            }
            (Signing::Key(key), What::Attestation) => (
                key.envelope(&statement),
                DSSE,
                json!({"dev.cosignproject.cosign/signature": "", "predicateType": CYCLONEDX}),
            ),
            (Signing::Keyless(cert), What::Attestation) => {
                let (envelope, rekor) = crate::keyless::intoto_v001(
                    &self.sigstore,
                    &|d| cert.sign(d),
                    &statement,
                    None,
                    &cert.cert_pem(),
                    &Tamper::default(),
                );
                let annotations = json!({
                    "dev.cosignproject.cosign/signature": "",
                    "predicateType": CYCLONEDX,
                    "dev.sigstore.cosign/certificate": cert.cert_pem(),
                    "dev.sigstore.cosign/chain": self.sigstore.chain_pem(),
                    "dev.sigstore.cosign/bundle": rekor,
                });
                (envelope, DSSE, annotations)
            }
        }
    }

    /// A Sigstore bundle v0.3 (DSSE) for `digest`, as cosign 3 writes it.
    fn bundle(&self, signing: &Signing<'_>, what: What, digest: &str) -> Vec<u8> {
        let statement = support::statement(digest, CYCLONEDX, json!({"components": []}), false);
        match (signing, what) {
            (Signing::Key(key), What::Signature) => key.signature_bundle(digest),
            (Signing::Key(key), What::Attestation) => key.bundle_for_statement(&statement),
            (Signing::Keyless(cert), What::Signature) => self.sigstore.signature_bundle(cert, digest),
            (Signing::Keyless(cert), What::Attestation) => {
                self.sigstore.bundle_for_statement(cert, &statement, &Tamper::default())
            }
        }
    }

    /// Push an image and attach its artifact in `format`; returns the tagged reference.
    async fn publish(&self, format: Format, auth: Auth, what: What, genuine: bool) -> (String, String) {
        let (digest, raw) = self.push.image(REPO, "v1", "matrix").await;
        let signing = self.signing(auth, genuine);
        let cosign_type = match what {
            What::Signature => COSIGN_SIG,
            What::Attestation => COSIGN_ATT,
        };
        match format {
            Format::LegacyTag => {
                let suffix = if what == What::Signature { "sig" } else { "att" };
                let tag = format!("{}.{suffix}", digest.replace(':', "-"));
                self.push.artifact(REPO, &tag, &[self.legacy_layer(&signing, what, &digest)]).await;
            }
            Format::CosignReferrer => {
                let layer = self.legacy_layer(&signing, what, &digest);
                let style = CosignReferrer::ArtifactType(cosign_type);
                self.push.cosign_referrer(REPO, &digest, &raw, style, &[layer]).await;
            }
            Format::BundleReferrer => {
                let bundle = self.bundle(&signing, what, &digest);
                self.push.referrer(REPO, &digest, &raw, BUNDLE_V03, &bundle).await;
            }
        }
        (format!("{}/{REPO}:v1", self.registry.host), digest)
    }
}

/// The `kind` a cell's artifact must be found at (as the typed location serializes it).
fn expected_location(kind: Kind, format: Format) -> &'static str {
    match (format, kind) {
        (Format::LegacyTag, _) => "tag",
        (_, Kind::Ferro) => "referrer",
        (_, Kind::Distribution) => "fallback-tag",
    }
}

fn location_kind(location: &Location) -> &'static str {
    match location {
        Location::Tag { .. } => "tag",
        Location::Referrer { .. } => "referrer",
        Location::FallbackTag { .. } => "fallback-tag",
    }
}

/// One cell: the genuine artifact verifies, found where the format puts it.
async fn accepted(kind: Kind, format: Format, auth: Auth, what: What) {
    let cell = Cell::start(kind).await;
    assert_eq!(
        cell.push.has_referrers_api(REPO, &format!("sha256:{}", "0".repeat(64))).await,
        kind == Kind::Ferro,
        "the registry's referrers API"
    );
    let (image, digest) = cell.publish(format, auth, what, true).await;
    let d = cell.decide(auth, what, &image).await;
    assert!(d.allowed, "{format:?} {auth:?} {what:?} on {kind:?}: {d:?}");
    let outcome = cell.outcome(auth, what, &image).await;
    let Outcome::Verified { detail: Verification::Checked { digest: verified, by, .. } } = &outcome else {
        panic!("not verified: {outcome:?}")
    };
    assert_eq!(verified.to_string(), digest);
    let location = match (what, by.as_slice()) {
        (What::Signature, [Satisfied::Authority { location, .. }]) => location,
        (What::Attestation, [Satisfied::Attestation { location, predicate_type, .. }]) => {
            assert_eq!(predicate_type, CYCLONEDX);
            location
        }
        _ => panic!("{what:?}: {outcome:?}"),
    };
    assert_eq!(location_kind(location), expected_location(kind, format), "{location}");
}

/// Its negative twin: the same artifact by another key or identity is refused, with the
/// typed failure class of that artifact, found at the same place.
async fn refused(kind: Kind, format: Format, auth: Auth, what: What) {
    let cell = Cell::start(kind).await;
    let (image, _) = cell.publish(format, auth, what, false).await;
    let d = cell.decide(auth, what, &image).await;
    assert!(!d.allowed, "{format:?} {auth:?} {what:?} on {kind:?}: {d:?}");
    let [finding] = d.findings.as_slice() else { panic!("{d:?}") };
    let failure = finding.failure.clone().unwrap_or_else(|| panic!("no typed failure: {d:?}"));
    let tried = match what {
        What::Signature => {
            assert_eq!(failure["class"], "requirement-not-met", "{failure}");
            failure["authorities"][0]["tried"].clone()
        }
        What::Attestation => {
            assert_eq!(failure["class"], "attestations-not-satisfied", "{failure}");
            assert_eq!(failure["requirements"][0]["class"], "not-satisfied", "{failure}");
            failure["requirements"][0]["tried"].clone()
        }
    };
    let [tried] = tried.as_array().map(Vec::as_slice).unwrap_or_default() else { panic!("{failure}") };
    let class = match auth {
        Auth::Key => "wrong-key",
        Auth::Keyless => "identity-mismatch",
    };
    assert_eq!(tried["class"], class, "{failure}");
    assert_eq!(tried["location"]["kind"], expected_location(kind, format), "{failure}");
    if auth == Auth::Keyless {
        let (expected, found) = (tried["expected"].as_str().unwrap_or(""), tried["found"].as_str().unwrap_or(""));
        assert!(expected.contains(RELEASE) && found.contains(MALLORY), "{failure}");
    }
}

/// One test per cell and one for its negative twin.
macro_rules! cells {
    ($($accepted:ident / $refused:ident: $kind:ident $format:ident $auth:ident $what:ident;)*) => {$(
        #[tokio::test]
        async fn $accepted() {
            accepted(Kind::$kind, Format::$format, Auth::$auth, What::$what).await;
        }
        #[tokio::test]
        async fn $refused() {
            refused(Kind::$kind, Format::$format, Auth::$auth, What::$what).await;
        }
    )*};
}

cells! {
    // Legacy `.sig` / `.att` tags, on both registries.
    legacy_tag_key_signature_distribution / legacy_tag_key_signature_distribution_refused: Distribution LegacyTag Key Signature;
    legacy_tag_key_signature_ferro / legacy_tag_key_signature_ferro_refused: Ferro LegacyTag Key Signature;
    legacy_tag_keyless_signature_distribution / legacy_tag_keyless_signature_distribution_refused: Distribution LegacyTag Keyless Signature;
    legacy_tag_keyless_signature_ferro / legacy_tag_keyless_signature_ferro_refused: Ferro LegacyTag Keyless Signature;
    legacy_tag_key_attestation_distribution / legacy_tag_key_attestation_distribution_refused: Distribution LegacyTag Key Attestation;
    legacy_tag_key_attestation_ferro / legacy_tag_key_attestation_ferro_refused: Ferro LegacyTag Key Attestation;
    legacy_tag_keyless_attestation_distribution / legacy_tag_keyless_attestation_distribution_refused: Distribution LegacyTag Keyless Attestation;
    legacy_tag_keyless_attestation_ferro / legacy_tag_keyless_attestation_ferro_refused: Ferro LegacyTag Keyless Attestation;
    // cosign OCI 1.1 legacy-layer referrers: referrers API (ferro), fallback tag (distribution).
    cosign_referrer_key_signature_api / cosign_referrer_key_signature_api_refused: Ferro CosignReferrer Key Signature;
    cosign_referrer_key_signature_fallback_tag / cosign_referrer_key_signature_fallback_tag_refused: Distribution CosignReferrer Key Signature;
    cosign_referrer_keyless_signature_api / cosign_referrer_keyless_signature_api_refused: Ferro CosignReferrer Keyless Signature;
    cosign_referrer_keyless_signature_fallback_tag / cosign_referrer_keyless_signature_fallback_tag_refused: Distribution CosignReferrer Keyless Signature;
    cosign_referrer_key_attestation_api / cosign_referrer_key_attestation_api_refused: Ferro CosignReferrer Key Attestation;
    cosign_referrer_key_attestation_fallback_tag / cosign_referrer_key_attestation_fallback_tag_refused: Distribution CosignReferrer Key Attestation;
    cosign_referrer_keyless_attestation_api / cosign_referrer_keyless_attestation_api_refused: Ferro CosignReferrer Keyless Attestation;
    cosign_referrer_keyless_attestation_fallback_tag / cosign_referrer_keyless_attestation_fallback_tag_refused: Distribution CosignReferrer Keyless Attestation;
    // Sigstore bundle v0.3 referrers: referrers API (ferro), fallback tag (distribution).
    bundle_referrer_key_signature_api / bundle_referrer_key_signature_api_refused: Ferro BundleReferrer Key Signature;
    bundle_referrer_key_signature_fallback_tag / bundle_referrer_key_signature_fallback_tag_refused: Distribution BundleReferrer Key Signature;
    bundle_referrer_keyless_signature_api / bundle_referrer_keyless_signature_api_refused: Ferro BundleReferrer Keyless Signature;
    bundle_referrer_keyless_signature_fallback_tag / bundle_referrer_keyless_signature_fallback_tag_refused: Distribution BundleReferrer Keyless Signature;
    bundle_referrer_key_attestation_api / bundle_referrer_key_attestation_api_refused: Ferro BundleReferrer Key Attestation;
    bundle_referrer_key_attestation_fallback_tag / bundle_referrer_key_attestation_fallback_tag_refused: Distribution BundleReferrer Key Attestation;
    bundle_referrer_keyless_attestation_api / bundle_referrer_keyless_attestation_api_refused: Ferro BundleReferrer Keyless Attestation;
    bundle_referrer_keyless_attestation_fallback_tag / bundle_referrer_keyless_attestation_fallback_tag_refused: Distribution BundleReferrer Keyless Attestation;
}
