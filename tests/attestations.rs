//! Attestations end to end against real registries: in-toto statements in DSSE envelopes
//! (legacy `.att` layers and Sigstore bundle referrers) signed in cosign's formats by the test
//! support, carrying real SBOM and provenance documents where the shared fixtures are present.

use crate::support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use portcullis::decision::{Decision, Verdict};
use portcullis::engine::{Engine, Settings};
use portcullis::policy::cel::CelEnv;
use portcullis::policy::load::load_text;
use portcullis::review::Review;
use portcullis::verify::image::RegistryVerifier;
use portcullis::verify::registry::{Registry, RegistryConfig};
use portcullis::verify::trust::TrustRoot;
use serde_json::{Value, json};
use support::{BUNDLE_V03, Kind, Pusher, Signer, TestRegistry, statement};

const CYCLONEDX: &str = "https://cyclonedx.org/bom";
const SPDX: &str = "https://spdx.dev/Document";
const SLSA1: &str = "https://slsa.dev/provenance/v1";

/// The shared third-party fixtures (tests that need them are ignored when they are absent).
fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures")
}

fn fixture_json(relative: &str) -> Value {
    let path = fixtures().join(relative);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A real CycloneDX SBOM (dropwizard) from the fixtures; a plain clone without them uses a small
/// inline one (decided at build time, never by a failed read).
fn cyclonedx() -> Value {
    if cfg!(fixtures) {
        return fixture_json("sbom/cyclonedx/SBOM_dropwizard-1.3.15_bom.json");
    }
    json!({"bomFormat": "CycloneDX", "specVersion": "1.4", "version": 1, "components": [
        {"type": "library", "name": "jackson-databind", "version": "2.9.10", "purl": "pkg:maven/com.fasterxml.jackson.core/jackson-databind@2.9.10"}
    ]})
}

/// A real SLSA v1 predicate from the fixtures, else (plain clone) a small inline one.
fn slsa_v1() -> Value {
    if cfg!(fixtures) {
        let v = fixture_json("slsa/slsa_predicate_v1_0.json");
        return v.get("predicate").cloned().unwrap_or(v);
    }
    json!({"runDetails": {"builder": {"id": "https://github.com/actions/runner"}}})
}

struct Setup {
    registry: TestRegistry,
    push: Pusher,
    dir: tempfile::TempDir,
    release: Signer,
}

async fn setup(kind: Kind) -> Setup {
    let registry = TestRegistry::start(kind).await;
    let push = Pusher::new(&registry.host);
    let dir = tempfile::tempdir().expect("tempdir");
    let release = Signer::new();
    std::fs::write(dir.path().join("release.pub"), release.public_pem()).expect("key");
    Setup { registry, push, dir, release }
}

impl Setup {
    async fn decide(&self, attestations: &str, image: &str) -> Decision {
        let text = format!(
            "apiVersion: portcullis.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {{name: attested}}\nspec:\n  images: ['{host}/**']\n  digest: allow-tags\n  authorities:\n    - name: release\n      key: {{publicKeyFile: release.pub}}\n      transparencyLog: skip\n  attestations:\n{attestations}",
            host = self.registry.host
        );
        let set = load_text(&text, "attested.yaml", self.dir.path(), &CelEnv::new()).expect("policy");
        let config = RegistryConfig { insecure: vec![self.registry.host.clone()], ..Default::default() };
        let verifier =
            RegistryVerifier::new(Registry::new(config).expect("registry"), TrustRoot::production().expect("root"));
        let engine = Engine::fixed(set, Arc::new(verifier), Settings::default());
        engine.review(&Review::for_image(image, "default"), tokio::time::Instant::now() + Duration::from_secs(20)).await
    }

    /// A signed image; returns (reference, digest).
    async fn signed_image(&self, repo: &str) -> (String, String) {
        let (digest, _) = self.push.image(repo, "v1", repo).await;
        self.push.sign_legacy(repo, &digest, &self.release).await;
        (format!("{}/{repo}:v1", self.registry.host), digest)
    }
}

const SBOM: &str = "    - name: sbom\n      predicateType: cyclonedx\n      conditions:\n        - expression: \"predicate.components.exists(c, c.name == 'jackson-databind')\"\n          message: the SBOM lists jackson-databind\n";
const PROVENANCE: &str = "    - name: provenance\n      predicateType: slsaprovenance1\n";

async fn sbom_and_provenance(kind: Kind) {
    let s = setup(kind).await;
    let (image, digest) = s.signed_image("team/app").await;
    let sbom = statement(&digest, CYCLONEDX, cyclonedx(), true);
    s.push.attest_legacy("team/app", &digest, vec![(s.release.envelope(&sbom), CYCLONEDX.to_owned())]).await;
    let raw = s.push.get_manifest("team/app", "v1").await.expect("manifest");
    let provenance = statement(&digest, SLSA1, slsa_v1(), false);
    s.push.referrer("team/app", &digest, &raw, BUNDLE_V03, &s.release.bundle_for_statement(&provenance)).await;

    let d = s.decide(&format!("{SBOM}{PROVENANCE}"), &image).await;
    assert!(d.allowed, "{d:?}");

    // A condition that is false: the message is the policy's.
    let forbid = "    - name: sbom\n      predicateType: cyclonedx\n      conditions:\n        - expression: \"!predicate.components.exists(c, c.name == 'jackson-databind')\"\n          message: jackson-databind is forbidden here\n";
    let d = s.decide(forbid, &image).await;
    assert!(!d.allowed);
    let m = d.message.unwrap_or_default();
    assert!(m.contains("condition failed: jackson-databind is forbidden here") && m.contains(".att layer 0"), "{m}");

    // No SPDX SBOM was attested.
    let d = s.decide("    - name: spdx\n      predicateType: spdx\n", &image).await;
    let m = d.message.unwrap_or_default();
    assert!(!d.allowed && m.contains("attestation \"spdx\" (https://spdx.dev/Document) not satisfied"), "{m}");
}

crate::on_both_registries!(sbom_and_provenance: sbom_and_provenance_docker_distribution, sbom_and_provenance_ferro);

#[tokio::test]
async fn forged_and_mismatched_statements() {
    let s = setup(Kind::Distribution).await;

    // Subject is another digest.
    let (image, digest) = s.signed_image("team/a").await;
    let other = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    let wrong_subject = statement(other, CYCLONEDX, cyclonedx(), true);
    s.push.attest_legacy("team/a", &digest, vec![(s.release.envelope(&wrong_subject), CYCLONEDX.to_owned())]).await;
    let m = s.decide(SBOM, &image).await.message.unwrap_or_default();
    assert!(m.contains(&format!("about another digest, not {digest}")), "{m}");

    // predicateType swapped after signing: the annotation says CycloneDX, the signed statement SPDX.
    let (image, digest) = s.signed_image("team/b").await;
    let spdx = statement(&digest, SPDX, json!({"spdxVersion": "SPDX-2.3", "packages": []}), true);
    s.push.attest_legacy("team/b", &digest, vec![(s.release.envelope(&spdx), CYCLONEDX.to_owned())]).await;
    let m = s.decide(SBOM, &image).await.message.unwrap_or_default();
    assert!(m.contains("signed predicateType is https://spdx.dev/Document, not https://cyclonedx.org/bom"), "{m}");

    // DSSE payloadType is not in-toto.
    let (image, digest) = s.signed_image("team/c").await;
    let sbom = statement(&digest, CYCLONEDX, cyclonedx(), true);
    let odd = s.release.envelope_typed("application/json", &sbom);
    s.push.attest_legacy("team/c", &digest, vec![(odd, CYCLONEDX.to_owned())]).await;
    let m = s.decide(SBOM, &image).await.message.unwrap_or_default();
    assert!(!m.is_empty() && m.contains("application/json"), "{m}");

    // Signed by a key the policy does not trust.
    let (image, digest) = s.signed_image("team/d").await;
    let sbom = statement(&digest, CYCLONEDX, cyclonedx(), true);
    s.push.attest_legacy("team/d", &digest, vec![(Signer::new().envelope(&sbom), CYCLONEDX.to_owned())]).await;
    let d = s.decide(SBOM, &image).await;
    assert!(!d.allowed && d.message.unwrap_or_default().contains("authority \"release\""));

    // Tampered payload: signature over one statement, payload replaced by another.
    let (image, digest) = s.signed_image("team/e").await;
    let honest = statement(&digest, CYCLONEDX, json!({"components": []}), true);
    let mut envelope: Value = serde_json::from_slice(&s.release.envelope(&honest)).expect("json");
    let evil = statement(&digest, CYCLONEDX, cyclonedx(), true);
    use base64::Engine as _;
    envelope["payload"] = Value::from(base64::engine::general_purpose::STANDARD.encode(&evil));
    s.push.attest_legacy("team/e", &digest, vec![(support::cjson(&envelope), CYCLONEDX.to_owned())]).await;
    assert!(!s.decide(SBOM, &image).await.allowed);
}

#[tokio::test]
async fn expression_errors_deny_in_enforce_with_the_error() {
    let s = setup(Kind::Distribution).await;
    let (image, digest) = s.signed_image("team/app").await;
    let sbom = statement(&digest, CYCLONEDX, cyclonedx(), true);
    s.push.attest_legacy("team/app", &digest, vec![(s.release.envelope(&sbom), CYCLONEDX.to_owned())]).await;
    let broken = "    - name: sbom\n      predicateType: cyclonedx\n      conditions:\n        - expression: \"predicate.no_such_field.size() > 0\"\n";
    let d = s.decide(broken, &image).await;
    assert!(!d.allowed);
    let m = d.message.unwrap_or_default();
    assert!(m.contains("could not be checked") && m.contains("predicate.no_such_field.size() > 0"), "{m}");
    assert!(d.findings.iter().any(|f| matches!(f.verdict, Verdict::Error(_))));
}

/// The production bundle for go-containerregistry's empty image is an attestation
/// (`https://cosign.sigstore.dev/attestation/v1`), verified keyless by an attestation-only
/// policy (`require: none`: the image itself carries no signature).
#[cfg_attr(not(fixtures), ignore = "needs ../shared/fixtures, which is absent")]
#[tokio::test]
async fn production_bundle_verifies_as_an_attestation() {
    let fixtures = fixtures();
    let bundle = std::fs::read(fixtures.join("cosign/oci-attestation.sigstore.json")).expect("bundle");
    let s = setup(Kind::Ferro).await;
    let (digest, manifest) = s.push.ggcr_empty_image("ggcr/empty", "v1").await;
    s.push.referrer("ggcr/empty", &digest, &manifest, BUNDLE_V03, &bundle).await;
    let root = fixtures.join("sigstore-root/trusted_root.json");
    let text = format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {{name: prod-attested}}\nspec:\n  images: ['{host}/**']\n  digest: allow-tags\n  require: none\n  authorities:\n    - name: cody\n      keyless: {{issuer: https://github.com/login/oauth, subject: cody@soyland.com}}\n      trustedRoot: {root}\n  attestations:\n    - name: custom\n      predicateType: custom\n      conditions:\n        - expression: \"statement.subject.exists(s, s.digest.sha256 == image.digest.substring(7))\"\n",
        host = s.registry.host,
        root = root.display()
    );
    let set = load_text(&text, "p.yaml", s.dir.path(), &CelEnv::new()).expect("policy");
    let config = RegistryConfig { insecure: vec![s.registry.host.clone()], ..Default::default() };
    let verifier =
        RegistryVerifier::new(Registry::new(config).expect("registry"), TrustRoot::production().expect("root"));
    let engine = Engine::fixed(set.clone(), Arc::new(verifier), Settings::default());
    let image = format!("{}/ggcr/empty:v1", s.registry.host);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let d = engine.review(&Review::for_image(&image, "default"), deadline).await;
    assert!(d.allowed, "{d:?}");

    // Another identity: not satisfied, and the message names the identity found.
    let other = text.replace("subject: cody@soyland.com", "subject: someone@else.com");
    let set = load_text(&other, "p.yaml", s.dir.path(), &CelEnv::new()).expect("policy");
    let config = RegistryConfig { insecure: vec![s.registry.host.clone()], ..Default::default() };
    let verifier =
        RegistryVerifier::new(Registry::new(config).expect("registry"), TrustRoot::production().expect("root"));
    let engine = Engine::fixed(set, Arc::new(verifier), Settings::default());
    let d = engine.review(&Review::for_image(&image, "default"), deadline).await;
    let m = d.message.unwrap_or_default();
    assert!(!d.allowed && m.contains("cody@soyland.com"), "{m}");
}

/// GHSA-w6c6-c85g-mmv6 (cosign did not check the predicateType of new-format bundles): bundles
/// signed by the authority, about this digest, but of another predicateType (an SPDX SBOM, SLSA
/// v0.2 for v1, the image's own signature statement) do not satisfy the requirement.
#[tokio::test]
async fn ghsa_w6c6_a_bundle_of_another_predicate_type_is_not_the_required_attestation() {
    let s = setup(Kind::Ferro).await;
    let (image, digest) = s.signed_image("team/w6c6").await;
    let raw = s.push.get_manifest("team/w6c6", "v1").await.expect("manifest");
    let spdx = statement(&digest, SPDX, json!({"spdxVersion": "SPDX-2.3", "packages": []}), false);
    let slsa02 = statement(&digest, "https://slsa.dev/provenance/v0.2", json!({"builder": {"id": "x"}}), false);
    for bundle in [
        s.release.bundle_for_statement(&spdx),
        s.release.bundle_for_statement(&slsa02),
        s.release.signature_bundle(&digest),
    ] {
        s.push.referrer("team/w6c6", &digest, &raw, BUNDLE_V03, &bundle).await;
    }
    let d = s.decide(SBOM, &image).await;
    let m = d.message.clone().unwrap_or_default();
    assert!(!d.allowed, "{d:?}");
    assert!(
        m.contains("attestation \"sbom\" (https://cyclonedx.org/bom) not satisfied")
            && m.contains("signed predicateType is https://spdx.dev/Document, not https://cyclonedx.org/bom"),
        "{m}"
    );
    let d = s.decide(PROVENANCE, &image).await;
    let m = d.message.clone().unwrap_or_default();
    assert!(
        !d.allowed
            && m.contains(
                "signed predicateType is https://slsa.dev/provenance/v0.2, not https://slsa.dev/provenance/v1"
            ),
        "{m}"
    );

    // The required types, for contrast: satisfied.
    let sbom = statement(&digest, CYCLONEDX, cyclonedx(), false);
    let provenance = statement(&digest, SLSA1, slsa_v1(), false);
    for bundle in [s.release.bundle_for_statement(&sbom), s.release.bundle_for_statement(&provenance)] {
        s.push.referrer("team/w6c6", &digest, &raw, BUNDLE_V03, &bundle).await;
    }
    let d = s.decide(&format!("{SBOM}{PROVENANCE}"), &image).await;
    assert!(d.allowed, "{d:?}");
}

/// cosign's OCI 1.1 attestation referrers (`cosign attest --registry-referrers-mode=oci-1-1`):
/// DSSE layers with cosign's annotations in a referrer of artifactType
/// `application/vnd.dev.cosign.artifact.att.v1+json` (cosign 2.x) or `application/vnd.in-toto+json`
/// (cosign 3), found through the referrers API or the fallback tag.
async fn cosign_oci11_attestation_referrers(kind: Kind) {
    use support::{COSIGN_ATT, COSIGN_SIG, CosignReferrer, DSSE, INTOTO};
    let s = setup(kind).await;
    let repo = "team/oci11";
    let (image, digest) = s.signed_image(repo).await;
    let raw = s.push.get_manifest(repo, "v1").await.expect("manifest");
    let layer = |statement: &[u8], predicate_type: &str| {
        (
            s.release.envelope(statement),
            DSSE,
            json!({"dev.cosignproject.cosign/signature": "", "predicateType": predicate_type}),
        )
    };
    let sbom = layer(&statement(&digest, CYCLONEDX, cyclonedx(), true), CYCLONEDX);
    s.push.cosign_referrer(repo, &digest, &raw, CosignReferrer::ConfigMediaType(COSIGN_ATT), &[sbom]).await;
    let provenance = layer(&statement(&digest, SLSA1, slsa_v1(), false), SLSA1);
    s.push.cosign_referrer(repo, &digest, &raw, CosignReferrer::ArtifactType(INTOTO), &[provenance]).await;
    let d = s.decide(&format!("{SBOM}{PROVENANCE}"), &image).await;
    assert!(d.allowed, "{d:?}");

    // The conditions are judged on the referrer's statement, and the message says where it was.
    let forbid = "    - name: sbom\n      predicateType: cyclonedx\n      conditions:\n        - expression: \"!predicate.components.exists(c, c.name == 'jackson-databind')\"\n          message: jackson-databind is forbidden here\n";
    let m = s.decide(forbid, &image).await.message.unwrap_or_default();
    assert!(m.contains("jackson-databind is forbidden here") && m.contains("referrer sha256:"), "{m}");

    // Moved: a genuine attestation of this image, attached as a referrer of another one.
    let (other, other_digest) = s.signed_image("team/oci11-other").await;
    let other_raw = s.push.get_manifest("team/oci11-other", "v1").await.expect("manifest");
    let moved = layer(&statement(&digest, CYCLONEDX, cyclonedx(), true), CYCLONEDX);
    s.push
        .cosign_referrer(
            "team/oci11-other",
            &other_digest,
            &other_raw,
            CosignReferrer::ConfigMediaType(COSIGN_ATT),
            &[moved],
        )
        .await;
    let m = s.decide(SBOM, &other).await.message.unwrap_or_default();
    assert!(m.contains(&format!("about another digest, not {other_digest}")), "{m}");

    // A DSSE layer in a SIGNATURE referrer is not read as an attestation.
    let (third, third_digest) = s.signed_image("team/oci11-third").await;
    let third_raw = s.push.get_manifest("team/oci11-third", "v1").await.expect("manifest");
    let misfiled = layer(&statement(&third_digest, CYCLONEDX, cyclonedx(), true), CYCLONEDX);
    s.push
        .cosign_referrer(
            "team/oci11-third",
            &third_digest,
            &third_raw,
            CosignReferrer::ArtifactType(COSIGN_SIG),
            &[misfiled],
        )
        .await;
    let m = s.decide(SBOM, &third).await.message.unwrap_or_default();
    assert!(m.contains("no attestation found"), "{m}");
}

crate::on_both_registries!(cosign_oci11_attestation_referrers: cosign_oci11_attestation_referrers_fallback_tag, cosign_oci11_attestation_referrers_api);
