//! Signature verification end to end against real registries on 127.0.0.1: images signed in
//! cosign's formats by the test support, checked by the same engine and verifier as the webhook.

use crate::support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use portcullis::decision::Decision;
use portcullis::engine::{Engine, Settings};
use portcullis::policy::PolicySet;
use portcullis::review::Review;
use portcullis::verify::discovery::Wanted;
use portcullis::verify::image::RegistryVerifier;
use portcullis::verify::registry::{Registry, RegistryConfig};
use portcullis::verify::trust::TrustRoot;
use serde_json::{Value, json};
use support::{BUNDLE_V03, Kind, Pusher, Signer, TestRegistry};

struct Setup {
    registry: TestRegistry,
    push: Pusher,
    dir: tempfile::TempDir,
}

async fn setup(kind: Kind) -> Setup {
    let registry = TestRegistry::start(kind).await;
    let push = Pusher::new(&registry.host);
    Setup { registry, push, dir: tempfile::tempdir().expect("tempdir") }
}

impl Setup {
    fn verifier(&self) -> RegistryVerifier {
        let config = RegistryConfig { insecure: vec![self.registry.host.clone()], ..Default::default() };
        RegistryVerifier::new(Registry::new(config).expect("registry"), TrustRoot::production().expect("root"))
    }

    fn write_key(&self, name: &str, signer: &Signer) {
        std::fs::write(self.dir.path().join(name), signer.public_pem()).expect("key");
    }

    fn policies(&self, authorities: &str, extra: &str) -> PolicySet {
        support::signed_policy(&self.registry.host, self.dir.path(), authorities, extra)
    }

    async fn decide(&self, set: PolicySet, image: &str) -> Decision {
        self.decide_with(self.verifier(), set, image).await
    }

    async fn decide_with(&self, verifier: RegistryVerifier, set: PolicySet, image: &str) -> Decision {
        let engine = Engine::fixed(set, Arc::new(verifier), Settings::default());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        engine.review(&Review::for_image(image, "default"), deadline).await
    }

    /// Push an image and sign it the legacy way (`.sig` tag); returns (reference, digest).
    async fn signed_legacy(&self, repo: &str, signer: &Signer) -> (String, String) {
        let (digest, _) = self.push.image(repo, "v1", repo).await;
        let reference = format!("{}/{repo}", self.registry.host);
        let tag = format!("{}.sig", digest.replace(':', "-"));
        self.push.artifact(repo, &tag, &[signer.signature_layer(Signer::payload(&reference, &digest))]).await;
        (format!("{reference}:v1"), digest)
    }
}

const KEY_SKIP: &str = "    - name: release\n      key: {publicKeyFile: release.pub}\n      transparencyLog: skip\n";

fn message(d: &Decision) -> String {
    d.message.clone().unwrap_or_default()
}

async fn legacy_key_signatures(kind: Kind) {
    let s = setup(kind).await;
    let release = Signer::new();
    s.write_key("release.pub", &release);
    let (image, digest) = s.signed_legacy("team/app", &release).await;
    let d = s.decide(s.policies(KEY_SKIP, ""), &image).await;
    assert!(d.allowed, "{d:?}");
    let pinned = format!("{}/team/app@{digest}", s.registry.host);
    assert!(s.decide(s.policies(KEY_SKIP, ""), &pinned).await.allowed);

    // Wrong key: the message names the authority, the location and the reason.
    let other = Signer::new();
    s.write_key("release.pub", &other);
    let d = s.decide(s.policies(KEY_SKIP, ""), &image).await;
    assert!(!d.allowed);
    let m = message(&d);
    assert!(m.contains("authority \"release\"") && m.contains(".sig layer 0") && m.contains(&digest), "{m}");

    // The transparency log is required unless the policy says skip.
    s.write_key("release.pub", &release);
    let required = KEY_SKIP.replace("      transparencyLog: skip\n", "");
    let m = message(&s.decide(s.policies(&required, ""), &image).await);
    assert!(m.contains("no transparency log entry"), "{m}");
}

crate::on_both_registries!(legacy_key_signatures: legacy_key_signatures_docker_distribution, legacy_key_signatures_ferro);

async fn bundle_signatures(kind: Kind) {
    let s = setup(kind).await;
    let release = Signer::new();
    s.write_key("release.pub", &release);
    let (digest, raw) = s.push.image("team/bundled", "v1", "bundled").await;
    s.push.referrer("team/bundled", &digest, &raw, BUNDLE_V03, &release.signature_bundle(&digest)).await;
    let image = format!("{}/team/bundled:v1", s.registry.host);
    let d = s.decide(s.policies(KEY_SKIP, ""), &image).await;
    assert!(d.allowed, "{d:?}");

    // A bundle whose statement is about another digest does not count.
    let (other_digest, other_raw) = s.push.image("team/other", "v1", "other").await;
    let wrong = release.signature_bundle("sha256:0000000000000000000000000000000000000000000000000000000000000000");
    s.push.referrer("team/other", &other_digest, &other_raw, BUNDLE_V03, &wrong).await;
    let m = message(&s.decide(s.policies(KEY_SKIP, ""), &format!("{}/team/other:v1", s.registry.host)).await);
    assert!(m.contains("about another digest"), "{m}");
}

crate::on_both_registries!(bundle_signatures: bundle_signatures_fallback_tag, bundle_signatures_referrers_api);

#[tokio::test]
async fn both_formats_in_one_repository_and_require_all() {
    let s = setup(Kind::Distribution).await;
    let (a, b) = (Signer::new(), Signer::new());
    s.write_key("a.pub", &a);
    s.write_key("b.pub", &b);
    let (image, digest) = s.signed_legacy("team/both", &a).await;
    let raw = s.push.get_manifest("team/both", "v1").await.expect("manifest");
    s.push.referrer("team/both", &digest, &raw, BUNDLE_V03, &b.signature_bundle(&digest)).await;
    let two = "    - name: a\n      key: {publicKeyFile: a.pub}\n      transparencyLog: skip\n    - name: b\n      key: {publicKeyFile: b.pub}\n      transparencyLog: skip\n";
    assert!(s.decide(s.policies(two, "  require: all\n"), &image).await.allowed);
    assert!(s.decide(s.policies(two, "  require: {atLeast: 2}\n"), &image).await.allowed);
    // Drop b's key: `all` fails and says which authority is missing.
    s.write_key("b.pub", &Signer::new());
    let d = s.decide(s.policies(two, "  require: all\n"), &image).await;
    assert!(!d.allowed);
    let m = message(&d);
    assert!(
        m.contains("requires all 2 authorities with distinct signers; 1 counted") && m.contains("authority \"b\""),
        "{m}"
    );
    assert!(s.decide(s.policies(two, "  require: any\n"), &image).await.allowed);
}

#[tokio::test]
async fn forged_signatures_are_rejected() {
    let s = setup(Kind::Distribution).await;
    let release = Signer::new();
    s.write_key("release.pub", &release);
    let reference = format!("{}/team/forged", s.registry.host);

    // 1. A valid signature, but for another digest, copied onto this image's .sig tag.
    let (digest, _) = s.push.image("team/forged", "v1", "one").await;
    let other = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    let tag = format!("{}.sig", digest.replace(':', "-"));
    s.push.artifact("team/forged", &tag, &[release.signature_layer(Signer::payload(&reference, other))]).await;
    let m = message(&s.decide(s.policies(KEY_SKIP, ""), &format!("{reference}:v1")).await);
    assert!(m.contains(&format!("the payload signs digest {other}, not {digest}")), "{m}");

    // 2. A tampered payload: signed for this digest, then edited.
    let (digest2, _) = s.push.image("team/forged", "v2", "two").await;
    let (payload, media_type, annotations) = release.signature_layer(Signer::payload(&reference, &digest2));
    let tampered = String::from_utf8(payload)
        .expect("utf8")
        .replace("cosign container image signature", "cosign container image signature ")
        .into_bytes();
    let tag2 = format!("{}.sig", digest2.replace(':', "-"));
    s.push.artifact("team/forged", &tag2, &[(tampered, media_type, annotations)]).await;
    let d = s.decide(s.policies(KEY_SKIP, ""), &format!("{reference}:v2")).await;
    assert!(!d.allowed, "{d:?}");

    // 3. Unsigned: denied, saying where it looked.
    let (_, _) = s.push.image("team/forged", "v3", "three").await;
    let m = message(&s.decide(s.policies(KEY_SKIP, ""), &format!("{reference}:v3")).await);
    assert!(m.contains("no signatures found") && m.contains(".sig: absent"), "{m}");
}

#[tokio::test]
async fn registry_errors_are_not_signature_failures() {
    let s = setup(Kind::Distribution).await;
    s.write_key("release.pub", &Signer::new());
    let d = s.decide(s.policies(KEY_SKIP, ""), &format!("{}/team/absent:v1", s.registry.host)).await;
    assert!(!d.allowed, "fail-closed in enforce");
    let m = message(&d);
    assert!(m.contains("could not be checked: registry error (not a signature failure)") && m.contains("404"), "{m}");
    let warn = s.policies(KEY_SKIP, "  mode: warn\n");
    let d = s.decide(warn, &format!("{}/team/absent:v1", s.registry.host)).await;
    assert!(d.allowed && d.warnings[0].contains("registry error"), "{d:?}");
}

/// The production-signed bundle for go-containerregistry's empty image: rebuilt byte for byte,
/// attached as a referrer, found, and verified keyless against the production trusted root.
#[cfg_attr(not(fixtures), ignore = "needs ../shared/fixtures, which is absent")]
#[tokio::test]
async fn production_bundle_as_a_referrer() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures");
    let bundle = std::fs::read(fixtures.join("cosign/oci-attestation.sigstore.json")).expect("bundle");
    let root = TrustRoot::from_file(&fixtures.join("sigstore-root/trusted_root.json")).expect("root");
    for kind in [Kind::Distribution, Kind::Ferro] {
        let s = setup(kind).await;
        let (digest, manifest) = s.push.ggcr_empty_image("ggcr/empty", "v1").await;
        assert_eq!(digest, "sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4");
        s.push.referrer("ggcr/empty", &digest, &manifest, BUNDLE_V03, &bundle).await;

        let registry =
            Registry::new(RegistryConfig { insecure: vec![s.registry.host.clone()], ..Default::default() }).expect("r");
        let image = portcullis::image::ImageRef::parse(&format!("{}/ggcr/empty:v1", s.registry.host)).expect("ref");
        let d = portcullis::image::Digest::parse(&digest).expect("digest");
        let evidence =
            portcullis::verify::discovery::discover(&registry, &image, &d, Wanted::ALL).await.expect("discover");
        assert_eq!(evidence.bundles.len(), 1, "{kind:?}: {:?}", evidence.looked);
        let identity = portcullis::policy::Identity {
            issuer: "https://github.com/login/oauth".to_owned(),
            subject: portcullis::policy::SubjectMatch::Exact("cody@soyland.com".to_owned()),
            github: None,
            issuer_regexp: None,
            claims: Vec::new(),
        };
        let signer = portcullis::verify::bundle::Signer::Keyless(&identity);
        let verified = portcullis::verify::bundle::verify_bundle(
            &evidence.bundles[0].json,
            None,
            &signer,
            portcullis::policy::TransparencyLog::Required,
            &root,
        )
        .expect("verifies keyless against the production root");
        let portcullis::verify::bundle::Content::Dsse { payload_type, payload } = verified.content else {
            panic!("a DSSE bundle");
        };
        let statement = portcullis::verify::dsse::Statement::from_payload(&payload_type, &payload).expect("statement");
        let want = portcullis::verify::cosign::digest_bytes(&d).expect("sha256");
        assert!(statement.has_sha256(&want), "the statement is about this image");
        assert_eq!(statement.predicate_type, "https://cosign.sigstore.dev/attestation/v1");

        // Another identity is refused, naming what the certificate carried.
        let other = portcullis::policy::Identity {
            issuer: "https://github.com/login/oauth".to_owned(),
            subject: portcullis::policy::SubjectMatch::Exact("someone@else.com".to_owned()),
            github: None,
            issuer_regexp: None,
            claims: Vec::new(),
        };
        let err = portcullis::verify::bundle::verify_bundle(
            &evidence.bundles[0].json,
            None,
            &portcullis::verify::bundle::Signer::Keyless(&other),
            portcullis::policy::TransparencyLog::Required,
            &root,
        )
        .expect_err("identity mismatch");
        assert!(err.to_string().contains("cody@soyland.com"), "{err}");
    }
}

#[tokio::test]
async fn multi_platform_images() {
    let s = setup(Kind::Distribution).await;
    let release = Signer::new();
    s.write_key("release.pub", &release);
    let (amd64, amd64_raw) = s.push.image("team/multi", "amd64", "amd64 build").await;
    let (arm64, arm64_raw) = s.push.image("team/multi", "arm64", "arm64 build").await;
    let index = s
        .push
        .index(
            "team/multi",
            "v1",
            &[(amd64.clone(), amd64_raw.len(), "linux", "amd64"), (arm64.clone(), arm64_raw.len(), "linux", "arm64")],
        )
        .await;
    s.push.sign_legacy("team/multi", &index, &release).await;
    let image = format!("{}/team/multi:v1", s.registry.host);
    assert!(s.decide(s.policies(KEY_SKIP, "  platforms: index\n"), &image).await.allowed, "the index is signed");

    let every = "  platforms: every-platform\n";
    let d = s.decide(s.policies(KEY_SKIP, every), &image).await;
    assert!(!d.allowed);
    let m = message(&d);
    assert!(m.contains(&format!("platform linux/amd64 ({amd64})")) && m.contains("no signatures found"), "{m}");

    s.push.sign_legacy("team/multi", &amd64, &release).await;
    let m = message(&s.decide(s.policies(KEY_SKIP, every), &image).await);
    assert!(m.contains(&format!("platform linux/arm64 ({arm64})")), "{m}");
    s.push.sign_legacy("team/multi", &arm64, &release).await;
    let d = s.decide(s.policies(KEY_SKIP, every), &image).await;
    assert!(d.allowed, "{d:?}");
}

/// Push an index over `entries` (raw descriptors) at `tag`; returns its digest.
async fn raw_index(push: &Pusher, repo: &str, tag: &str, entries: Vec<Value>) -> String {
    let index = support::cjson(&json!({"schemaVersion": 2, "mediaType": support::OCI_INDEX, "manifests": entries}));
    push.manifest(repo, tag, &index, support::OCI_INDEX).await
}

fn descriptor(digest: &str, size: usize, platform: Option<(&str, &str)>) -> Value {
    let mut entry = json!({"mediaType": support::OCI_MANIFEST, "size": size, "digest": digest});
    if let Some((os, architecture)) = platform {
        entry["platform"] = json!({"os": os, "architecture": architecture});
    }
    entry
}

const EVERY_PLATFORM: &str = "  platforms: every-platform\n";

/// `platforms: every-platform` used to check the first 32 entries of an index and pass the
/// rest unchecked: now an index beyond the limit is denied, saying which flag raises it, and
/// with the limit raised every entry is verified.
#[tokio::test]
async fn an_unsigned_33rd_platform_is_denied() {
    let s = setup(Kind::Distribution).await;
    let release = Signer::new();
    s.write_key("release.pub", &release);
    let mut entries = Vec::new();
    let mut digests = Vec::new();
    for i in 1..=33 {
        let (digest, raw) = s.push.image("team/wide", &format!("p{i}"), &format!("platform {i}")).await;
        entries.push(descriptor(&digest, raw.len(), Some(("linux", &format!("arch{i}")))));
        digests.push(digest);
    }
    let index = raw_index(&s.push, "team/wide", "v1", entries).await;
    s.push.sign_legacy("team/wide", &index, &release).await;
    for digest in &digests[..32] {
        s.push.sign_legacy("team/wide", digest, &release).await;
    }
    let image = format!("{}/team/wide:v1", s.registry.host);
    let policies = || s.policies(KEY_SKIP, EVERY_PLATFORM);

    // The default limit (32): denied, saying why and how to raise it.
    let d = s.decide(policies(), &image).await;
    assert!(!d.allowed, "{d:?}");
    let m = message(&d);
    assert!(
        m.contains(&format!("the index {index} has 33 platform manifests, more than the 32 checked"))
            && m.contains("--max-platforms (PORTCULLIS_MAX_PLATFORMS)"),
        "{m}"
    );

    // Raised to 40: the 33rd platform is checked, and it is unsigned.
    let wide = || s.verifier().with_max_platforms(40);
    let m = message(&s.decide_with(wide(), policies(), &image).await);
    assert!(
        m.contains(&format!("platform linux/arch33 ({})", digests[32])) && m.contains("no signatures found"),
        "{m}"
    );

    // Signed: verified with the raised limit, still denied (not partly checked) with the default.
    s.push.sign_legacy("team/wide", &digests[32], &release).await;
    let d = s.decide_with(wide(), policies(), &image).await;
    assert!(d.allowed, "{d:?}");
    assert!(message(&s.decide(policies(), &image).await).contains("more than the 32 checked"));
    // `platforms: index` checks the index signature only, whatever the number of entries.
    assert!(s.decide(s.policies(KEY_SKIP, "  platforms: index\n"), &image).await.allowed);
}

/// An index entry whose digest does not parse used to be skipped; it is a denial naming it.
/// (docker-registry refuses such an index; ferro-oci-server stores it, as other registries may.)
async fn a_platform_entry_with_a_bad_digest_is_denied(tag: &str, bad: Option<Value>) {
    let s = setup(Kind::Ferro).await;
    let release = Signer::new();
    s.write_key("release.pub", &release);
    let (amd64, amd64_raw) = s.push.image("team/baddigest", "amd64", "amd64").await;
    s.push.sign_legacy("team/baddigest", &amd64, &release).await;
    let mut broken =
        json!({"mediaType": support::OCI_MANIFEST, "size": 10, "platform": {"os": "linux", "architecture": "arm64"}});
    if let Some(bad) = bad {
        broken["digest"] = bad;
    }
    let entries = vec![descriptor(&amd64, amd64_raw.len(), Some(("linux", "amd64"))), broken];
    let index = raw_index(&s.push, "team/baddigest", tag, entries).await;
    s.push.sign_legacy("team/baddigest", &index, &release).await;
    let image = format!("{}/team/baddigest:{tag}", s.registry.host);
    let d = s.decide(s.policies(KEY_SKIP, EVERY_PLATFORM), &image).await;
    assert!(!d.allowed, "{tag}: {d:?}");
    let m = message(&d);
    assert!(m.contains("platform linux/arm64 (manifests[1])") && m.contains("not a valid digest"), "{tag}: {m}");
}

#[tokio::test]
async fn a_platform_entry_without_a_digest_is_denied() {
    a_platform_entry_with_a_bad_digest_is_denied("missing", None).await;
}

#[tokio::test]
async fn a_platform_entry_with_a_number_for_its_digest_is_denied() {
    a_platform_entry_with_a_bad_digest_is_denied("number", Some(json!(5))).await;
}

/// Only buildkit attestation manifests (`unknown/unknown` with the attestation annotation)
/// are left out of `every-platform`; an `unknown/unknown` entry without the annotation, an
/// entry without a platform, or a real platform wearing the annotation are images a runtime
/// may pick, and are verified (one test per case).
#[derive(Clone, Copy)]
enum Entry {
    PlainUnknown,
    NoPlatform,
    AnnotatedArm64,
    BuildkitAttestation,
}

/// A signed index of a signed amd64 image and an unsigned entry of the given kind: the decision.
async fn index_with_an_unsigned(entry: Entry, sign_the_entry: bool) -> (Decision, String) {
    let s = setup(Kind::Distribution).await;
    let release = Signer::new();
    s.write_key("release.pub", &release);
    let repo = "team/unknown";
    let (amd64, amd64_raw) = s.push.image(repo, "amd64", "amd64").await;
    let (other, other_raw) = s.push.image(repo, "other", "other").await;
    s.push.sign_legacy(repo, &amd64, &release).await;
    if sign_the_entry {
        s.push.sign_legacy(repo, &other, &release).await;
    }
    let attestation = |platform: (&str, &str)| {
        let mut entry = descriptor(&other, other_raw.len(), Some(platform));
        entry["annotations"] =
            json!({"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": amd64});
        entry
    };
    let entry = match entry {
        Entry::PlainUnknown => descriptor(&other, other_raw.len(), Some(("unknown", "unknown"))),
        Entry::NoPlatform => descriptor(&other, other_raw.len(), None),
        Entry::AnnotatedArm64 => attestation(("linux", "arm64")),
        Entry::BuildkitAttestation => attestation(("unknown", "unknown")),
    };
    let amd64_entry = descriptor(&amd64, amd64_raw.len(), Some(("linux", "amd64")));
    let index = raw_index(&s.push, repo, "index", vec![amd64_entry, entry]).await;
    s.push.sign_legacy(repo, &index, &release).await;
    let d = s.decide(s.policies(KEY_SKIP, EVERY_PLATFORM), &format!("{}/{repo}:index", s.registry.host)).await;
    (d, other)
}

async fn an_unsigned_entry_is_denied(entry: Entry, named: &str) {
    let (d, other) = index_with_an_unsigned(entry, false).await;
    assert!(!d.allowed, "{d:?}");
    let m = message(&d);
    assert!(m.contains(&format!("{named} ({other})")) && m.contains("no signatures found"), "{m}");
}

#[tokio::test]
async fn an_unsigned_unknown_platform_without_the_annotation_is_denied() {
    an_unsigned_entry_is_denied(Entry::PlainUnknown, "platform unknown/unknown").await;
}

#[tokio::test]
async fn an_unsigned_entry_without_a_platform_is_denied() {
    an_unsigned_entry_is_denied(Entry::NoPlatform, "platform (no platform)").await;
}

#[tokio::test]
async fn an_unsigned_real_platform_wearing_the_attestation_annotation_is_denied() {
    an_unsigned_entry_is_denied(Entry::AnnotatedArm64, "platform linux/arm64").await;
}

/// A real buildkit attestation manifest is not a platform: skipped.
#[tokio::test]
async fn a_buildkit_attestation_manifest_is_not_a_platform() {
    let (d, _) = index_with_an_unsigned(Entry::BuildkitAttestation, false).await;
    assert!(d.allowed, "{d:?}");
}

/// Once the entry is signed, the plain unknown/unknown index verifies too.
#[tokio::test]
async fn a_signed_unknown_platform_entry_verifies() {
    let (d, _) = index_with_an_unsigned(Entry::PlainUnknown, true).await;
    assert!(d.allowed, "{d:?}");
}

/// Two authorities with the same key, written as two files.
const SAME_KEY_TWICE: &str = "    - name: a\n      key: {publicKeyFile: a.pub}\n      transparencyLog: skip\n    - name: b\n      key: {publicKeyFile: b.pub}\n      transparencyLog: skip\n";

/// `atLeast: 2` / `all` used to count satisfied authorities: one signature accepted by two
/// authorities (the same key under two names) passed. They count distinct signers now.
async fn one_signer_does_not_satisfy_two_authorities(require: &str) {
    let s = setup(Kind::Distribution).await;
    let (one, two) = (Signer::new(), Signer::new());
    s.write_key("a.pub", &one);
    s.write_key("b.pub", &one);
    let (image, digest) = s.signed_legacy("team/counted", &one).await;
    let d = s.decide(s.policies(SAME_KEY_TWICE, require), &image).await;
    assert!(!d.allowed, "{require}: {d:?}");
    let m = message(&d);
    assert!(
        m.contains("authorities with distinct signers; 1 counted")
            && m.contains("1 distinct signer satisfied authorities \"a\", \"b\""),
        "{m}"
    );

    // How one would get past it: more signatures by the same key, in both formats. Still one
    // signer.
    let reference = format!("{}/team/counted", s.registry.host);
    let again = one.signature_layer(Signer::payload(&reference, &digest));
    let first = one.signature_layer(Signer::payload(&reference, &digest));
    s.push.artifact("team/counted", &format!("{}.sig", digest.replace(':', "-")), &[first, again]).await;
    let raw = s.push.get_manifest("team/counted", "v1").await.expect("manifest");
    s.push.referrer("team/counted", &digest, &raw, BUNDLE_V03, &one.signature_bundle(&digest)).await;
    let m = message(&s.decide(s.policies(SAME_KEY_TWICE, require), &image).await);
    assert!(m.contains("1 distinct signer satisfied authorities \"a\", \"b\""), "{require}: {m}");

    // Two keys, two signatures: allowed.
    s.write_key("b.pub", &two);
    s.push.referrer("team/counted", &digest, &raw, BUNDLE_V03, &two.signature_bundle(&digest)).await;
    let d = s.decide(s.policies(SAME_KEY_TWICE, require), &image).await;
    assert!(d.allowed, "{require}: {d:?}");
}

#[tokio::test]
async fn one_signature_does_not_satisfy_at_least_two_authorities() {
    one_signer_does_not_satisfy_two_authorities("  require: {atLeast: 2}\n").await;
}

#[tokio::test]
async fn one_signature_does_not_satisfy_require_all() {
    one_signer_does_not_satisfy_two_authorities("  require: all\n").await;
}

/// Three authorities, two of them trusting the same key, and two signatures (one per key):
/// `atLeast: 2` is met (a or b with the first key, c with the second), `all` and `atLeast: 3`
/// are not (a and b share a signer).
#[tokio::test]
async fn two_signers_count_for_two_of_three_authorities() {
    let s = setup(Kind::Ferro).await;
    let (one, two) = (Signer::new(), Signer::new());
    s.write_key("a.pub", &one);
    s.write_key("b.pub", &one);
    s.write_key("c.pub", &two);
    let (digest, raw) = s.push.image("team/matched", "v1", "matched").await;
    s.push.referrer("team/matched", &digest, &raw, BUNDLE_V03, &one.signature_bundle(&digest)).await;
    s.push.referrer("team/matched", &digest, &raw, BUNDLE_V03, &two.signature_bundle(&digest)).await;
    let three =
        format!("{SAME_KEY_TWICE}    - name: c\n      key: {{publicKeyFile: c.pub}}\n      transparencyLog: skip\n");
    let image = format!("{}/team/matched:v1", s.registry.host);
    assert!(s.decide(s.policies(&three, "  require: {atLeast: 2}\n"), &image).await.allowed);
    let d = s.decide(s.policies(&three, "  require: all\n"), &image).await;
    assert!(!d.allowed, "{d:?}");
    let m = message(&d);
    assert!(m.contains("requires all 3 authorities with distinct signers; 2 counted"), "{m}");
    assert!(m.contains("2 distinct signers satisfied authorities \"a\", \"b\", \"c\""), "{m}");
    let d = s.decide(s.policies(&three, "  require: {atLeast: 3}\n"), &image).await;
    assert!(!d.allowed, "{d:?}");
}

/// GHSA-w6c6-c85g-mmv6 (cosign did not check the predicateType of bundles): a correctly signed
/// bundle for this very digest, by the authority's key, whose statement is an attestation (SLSA
/// provenance), is not an image signature.
#[tokio::test]
async fn ghsa_w6c6_an_attestation_bundle_is_not_a_signature() {
    let s = setup(Kind::Ferro).await;
    let release = Signer::new();
    s.write_key("release.pub", &release);
    let (digest, raw) = s.push.image("team/attested-only", "v1", "attested only").await;
    let provenance = support::statement(&digest, "https://slsa.dev/provenance/v1", json!({}), false);
    s.push.referrer("team/attested-only", &digest, &raw, BUNDLE_V03, &release.bundle_for_statement(&provenance)).await;
    let image = format!("{}/team/attested-only:v1", s.registry.host);
    let d = s.decide(s.policies(KEY_SKIP, ""), &image).await;
    assert!(!d.allowed, "{d:?}");
    let m = message(&d);
    assert!(m.contains("the bundle is an attestation (https://slsa.dev/provenance/v1), not a signature"), "{m}");
    // The same with the signature predicate: a signature.
    s.push.referrer("team/attested-only", &digest, &raw, BUNDLE_V03, &release.signature_bundle(&digest)).await;
    assert!(s.decide(s.policies(KEY_SKIP, ""), &image).await.allowed);
}

// ---------------------------------------------------------------------------------------------
// cosign's OCI 1.1 referrers (`cosign sign --registry-referrers-mode=oci-1-1`): the legacy
// simple-signing layers attached as a referrer, through the referrers API or the fallback tag.

const OCI11_REPO: &str = "team/oci11";

/// Push `OCI11_REPO:tag` with the release key's signature layer attached in `style`; returns
/// the setup and the image's repository reference.
async fn oci11_signed(kind: Kind, tag: &str, style: support::CosignReferrer) -> (Setup, String) {
    let s = setup(kind).await;
    let release = Signer::new();
    s.write_key("release.pub", &release);
    let reference = format!("{}/{OCI11_REPO}", s.registry.host);
    let (digest, raw) = s.push.image(OCI11_REPO, tag, tag).await;
    let layer = release.signature_layer(Signer::payload(&reference, &digest));
    s.push.cosign_referrer(OCI11_REPO, &digest, &raw, style, &[layer]).await;
    (s, reference)
}

/// Every spelling cosign (2.x, 3) and registries use for the type verifies, with no setting;
/// under another key it is refused, naming the referrer and its layer.
async fn cosign_oci11_signature_referrer(kind: Kind, tag: &str, style: support::CosignReferrer) {
    let (s, reference) = oci11_signed(kind, tag, style).await;
    let d = s.decide(s.policies(KEY_SKIP, ""), &format!("{reference}:{tag}")).await;
    assert!(d.allowed, "{style:?}: {d:?}");
    s.write_key("other.pub", &Signer::new());
    let other = KEY_SKIP.replace("release.pub", "other.pub");
    let d = s.decide(s.policies(&other, ""), &format!("{reference}:{tag}")).await;
    assert!(!d.allowed, "{style:?}: {d:?}");
    let m = message(&d);
    assert!(m.contains("referrer sha256:") && m.contains("layer 0") && m.contains("bad signature"), "{m}");
}

crate::cases_on_both_registries!(cosign_oci11_signature_referrer {
    cosign_oci11_referrer_config_media_type: "v1", support::CosignReferrer::ConfigMediaType(support::COSIGN_SIG);
    cosign_oci11_referrer_artifact_type: "v2", support::CosignReferrer::ArtifactType(support::COSIGN_SIG);
    cosign_oci11_referrer_untyped: "v3", support::CosignReferrer::Untyped(support::COSIGN_SIG);
});

/// Moved: a genuine referrer layer for another image's digest, attached to this one.
async fn cosign_oci11_signature_referrer_moved(kind: Kind) {
    use support::{COSIGN_SIG, CosignReferrer};
    let s = setup(kind).await;
    let release = Signer::new();
    s.write_key("release.pub", &release);
    let reference = format!("{}/{OCI11_REPO}", s.registry.host);
    let (v1_digest, _) = s.push.image(OCI11_REPO, "v1", "v1").await;
    let (moved, moved_raw) = s.push.image(OCI11_REPO, "moved", "moved").await;
    let layer = release.signature_layer(Signer::payload(&reference, &v1_digest));
    s.push.cosign_referrer(OCI11_REPO, &moved, &moved_raw, CosignReferrer::ConfigMediaType(COSIGN_SIG), &[layer]).await;
    let m = message(&s.decide(s.policies(KEY_SKIP, ""), &format!("{reference}:moved")).await);
    assert!(m.contains(&format!("the payload signs digest {v1_digest}, not {moved}")), "{m}");
}

crate::on_both_registries!(cosign_oci11_signature_referrer_moved: cosign_oci11_signature_referrer_moved_fallback_tag, cosign_oci11_signature_referrer_moved_api);

/// A type portcullis does not read, and an attestation referrer, are not signatures.
async fn cosign_oci11_not_a_signature(kind: Kind, tag: &str, style: support::CosignReferrer) {
    let (s, reference) = oci11_signed(kind, tag, style).await;
    let d = s.decide(s.policies(KEY_SKIP, ""), &format!("{reference}:{tag}")).await;
    assert!(!d.allowed, "{tag}: {d:?}");
    assert!(message(&d).contains("no signatures found"), "{tag}: {}", message(&d));
}

crate::cases_on_both_registries!(cosign_oci11_not_a_signature {
    cosign_oci11_referrer_of_an_unknown_type_is_not_a_signature:
        "unknown", support::CosignReferrer::ArtifactType("application/vnd.example.signature.v1+json");
    cosign_oci11_attestation_referrer_is_not_a_signature:
        "att-only", support::CosignReferrer::ConfigMediaType(support::COSIGN_ATT);
});

// ---------------------------------------------------------------------------------------------
// Every key type cosign signs with, on legacy `.sig` layers and OCI 1.1 referrers.

/// A key type's name, its public key PEM, and a signing function.
type KeyCase = (&'static str, String, Box<dyn Fn(&[u8]) -> Vec<u8>>);

/// (name, public key PEM, signing function) for every key type and hash cosign uses.
fn key_types() -> Vec<KeyCase> {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::rsa::KeySize;
    use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
    fn pem(der: &[u8]) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("ascii")).collect();
        format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", lines.join("\n"))
    }
    let mut out: Vec<KeyCase> = Vec::new();
    let ecdsa: [(&'static str, &'static sig::EcdsaSigningAlgorithm); 4] = [
        ("ECDSA P-256 SHA-256", &sig::ECDSA_P256_SHA256_ASN1_SIGNING),
        ("ECDSA P-384 SHA-384", &sig::ECDSA_P384_SHA384_ASN1_SIGNING),
        ("ECDSA P-521 SHA-512", &sig::ECDSA_P521_SHA512_ASN1_SIGNING),
        ("ECDSA P-521 SHA-256 (cosign < 2.4)", &sig::ECDSA_P521_SHA256_ASN1_SIGNING),
    ];
    for (name, alg) in ecdsa {
        let key = EcdsaKeyPair::generate(alg).expect("key");
        let public = pem(key.public_key().as_der().expect("der").as_ref());
        out.push((
            name,
            public,
            Box::new(move |data| key.sign(&SystemRandom::new(), data).expect("sign").as_ref().to_vec()),
        ));
    }
    let rsa: [(&'static str, KeySize, &'static dyn sig::RsaEncoding); 3] = [
        ("RSA-2048 PKCS#1 v1.5 SHA-256", KeySize::Rsa2048, &sig::RSA_PKCS1_SHA256),
        ("RSA-3072 PSS SHA-256", KeySize::Rsa3072, &sig::RSA_PSS_SHA256),
        ("RSA-4096 PKCS#1 v1.5 SHA-256", KeySize::Rsa4096, &sig::RSA_PKCS1_SHA256),
    ];
    for (name, size, padding) in rsa {
        let key = RsaKeyPair::generate(size).expect("rsa");
        let public = pem(key.public_key().as_der().expect("der").as_ref());
        out.push((
            name,
            public,
            Box::new(move |data| {
                let mut signature = vec![0; key.public_modulus_len()];
                key.sign(padding, &SystemRandom::new(), data, &mut signature).expect("sign");
                signature
            }),
        ));
    }
    let ed = Ed25519KeyPair::generate().expect("ed25519");
    let public = pem(ed.public_key().as_der().expect("der").as_ref());
    out.push(("Ed25519", public, Box::new(move |data| ed.sign(data).as_ref().to_vec())));
    out
}

async fn every_key_type(kind: Kind) {
    use base64::Engine as _;
    use support::{COSIGN_SIG, CosignReferrer, SIMPLESIGNING};
    let s = setup(kind).await;
    let repo = "team/keys";
    let reference = format!("{}/{repo}", s.registry.host);
    for (i, (name, public, sign)) in key_types().into_iter().enumerate() {
        std::fs::write(s.dir.path().join("release.pub"), &public).expect("key");
        let (tag, referrer_tag) = (format!("k{i}"), format!("r{i}"));
        let layer = |digest: &str| {
            let payload = Signer::payload(&reference, digest);
            let signature = base64::engine::general_purpose::STANDARD.encode(sign(&payload));
            (payload, SIMPLESIGNING, json!({"dev.cosignproject.cosign/signature": signature}))
        };
        // A legacy .sig tag and a cosign OCI 1.1 referrer.
        let (digest, _) = s.push.image(repo, &tag, &tag).await;
        s.push.artifact(repo, &format!("{}.sig", digest.replace(':', "-")), &[layer(&digest)]).await;
        let (referred, raw) = s.push.image(repo, &referrer_tag, &referrer_tag).await;
        s.push
            .cosign_referrer(repo, &referred, &raw, CosignReferrer::ArtifactType(COSIGN_SIG), &[layer(&referred)])
            .await;
        for image in [format!("{reference}:{tag}"), format!("{reference}:{referrer_tag}")] {
            let d = s.decide(s.policies(KEY_SKIP, ""), &image).await;
            assert!(d.allowed, "{name}: {d:?}");
        }
        // The payload edited after signing: refused, naming the key type.
        let (edited, _) = s.push.image(repo, &format!("e{i}"), &format!("e{i}")).await;
        let (payload, media_type, annotations) = layer(&edited);
        let tampered = String::from_utf8(payload).expect("utf8").replace("\"optional\":null", "\"optional\":{}");
        s.push
            .artifact(
                repo,
                &format!("{}.sig", edited.replace(':', "-")),
                &[(tampered.into_bytes(), media_type, annotations)],
            )
            .await;
        let d = s.decide(s.policies(KEY_SKIP, ""), &format!("{reference}:e{i}")).await;
        assert!(!d.allowed, "{name}: {d:?}");
        let m = message(&d);
        let key_name = name.split(' ').take(2).collect::<Vec<_>>().join(" ");
        let key_name = if key_name.starts_with("RSA") { "RSA-".to_owned() } else { key_name };
        assert!(m.contains("bad signature") && m.contains(&key_name), "{name}: {m}");
    }
}

crate::on_both_registries!(every_key_type: every_key_type_docker_distribution, every_key_type_ferro);

/// An Ed448 key (a type neither cosign nor portcullis verifies) is refused when the policy is
/// loaded, naming the type.
#[test]
fn unsupported_key_types_are_named_at_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Ed448 SubjectPublicKeyInfo (RFC 8410 example key).
    let ed448 = "-----BEGIN PUBLIC KEY-----\nMEMwBQYDK2VxAzoAX9dEm1m0Yf0s54fsYWrUah2hNCSFpw4fig6nXYDpZ3jt8SR2\nm0bHBhvWeD3x5Q9s0foavq/oJWGA\n-----END PUBLIC KEY-----\n";
    std::fs::write(dir.path().join("release.pub"), ed448).expect("key");
    let text = format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {{name: signed}}\nspec:\n  images: ['registry.test/**']\n  authorities:\n{KEY_SKIP}"
    );
    let env = portcullis::policy::cel::CelEnv::new();
    let Err(e) = portcullis::policy::load::load_text(&text, "signed.yaml", dir.path(), &env) else {
        panic!("an Ed448 key was accepted")
    };
    let e = format!("{e:#}");
    assert!(e.contains("unsupported public key type Ed448") && e.contains("release.pub"), "{e}");
}
