//! `transparencyLog: timestamp` end to end: keyless attestations signed the way GitHub's own
//! Sigstore instance signs them for private repositories (Fulcio certificate without SCT, an
//! RFC 3161 timestamp, no Rekor entry), by the mini Sigstore and mini TSA of `tests/support`,
//! attached as bundle v0.3 referrers in real registries (with and without the referrers API),
//! checked by the webhook's engine against a GitHub-like `trusted_root.json` given per authority.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use portcullis::decision::Decision;
use portcullis::engine::{Engine, Settings};
use portcullis::review::Review;
use portcullis::verify::image::RegistryVerifier;
use portcullis::verify::registry::{Registry, RegistryConfig};
use portcullis::verify::trust::TrustRoot;
use serde_json::json;
use support::sigstore::{GITHUB_ISSUER, GithubClaims, IssueOptions, KeylessSigner, MiniSigstore, Validity};
use support::tsa::{MiniTsa, timestamped_bundle, tsa_only_root};
use support::{BUNDLE_V03, Kind, Pusher, TestRegistry};

const ROOT_FILE: &str = "github-like-root.json";
const PROVENANCE: &str = "https://slsa.dev/provenance/v1";
const IDENTITY_REGEXP: &str = r"^https://github\.com/acme/app/\.github/workflows/release\.yml@.*$";

struct Setup {
    registry: TestRegistry,
    push: Pusher,
    dir: tempfile::TempDir,
    sigstore: MiniSigstore,
    tsa: MiniTsa,
    claims: GithubClaims,
}

async fn setup(kind: Kind) -> Setup {
    let registry = TestRegistry::start(kind).await;
    let push = Pusher::new(&registry.host);
    let dir = tempfile::tempdir().expect("tempdir");
    let (sigstore, tsa) = (MiniSigstore::new("gh"), MiniTsa::new("gh"));
    let root = tsa_only_root(&sigstore, &[&tsa]);
    std::fs::write(dir.path().join(ROOT_FILE), root.to_string()).expect("write root");
    let claims = GithubClaims::new("acme/app", ".github/workflows/release.yml", "refs/heads/main");
    Setup { registry, push, dir, sigstore, tsa, claims }
}

/// A keyless authority for the GitHub workflow, trusting the GitHub-like root, `tlog` mode, and
/// a provenance attestation it must have signed (the image carries no signature: `require: none`).
fn policy(repository: &str, tlog: &str) -> String {
    format!(
        "    - name: gh\n      trustedRoot: {ROOT_FILE}\n      transparencyLog: {tlog}\n      keyless:\n        \
         issuer: {GITHUB_ISSUER}\n        github: {{repository: {repository}, workflow: .github/workflows/release.yml, ref: refs/heads/main}}\n"
    )
}

const ATTESTATIONS: &str = "  require: none\n  attestations:\n    - name: provenance\n      predicateType: slsaprovenance1\n      authorities: [gh]\n";

impl Setup {
    /// A certificate as GitHub's Fulcio issues it: no SCT (its instance has no CT log).
    fn signer(&self) -> KeylessSigner {
        let options = IssueOptions { no_sct: true, ..IssueOptions::default() };
        self.sigstore.issue_with(&self.claims.san(), GITHUB_ISSUER, Some(&self.claims), &options)
    }

    /// Push an image; attach the bundle `bundle(digest)` as a referrer; returns the reference.
    async fn attested(&self, tag: &str, bundle: impl FnOnce(&str) -> Vec<u8>) -> String {
        let (digest, raw) = self.push.image("acme/private", tag, &format!("private:{tag}")).await;
        self.push.referrer("acme/private", &digest, &raw, BUNDLE_V03, &bundle(&digest)).await;
        format!("{}/acme/private:{tag}", self.registry.host)
    }

    async fn decide(&self, authorities: &str, image: &str) -> Decision {
        self.decide_with(authorities, image, TrustRoot::production().expect("root")).await
    }

    /// Decide with `default` as the verifier's own root (`--trusted-root`).
    async fn decide_with(&self, authorities: &str, image: &str, default: TrustRoot) -> Decision {
        let set = support::signed_policy(&self.registry.host, self.dir.path(), authorities, ATTESTATIONS);
        let config = RegistryConfig { insecure: vec![self.registry.host.clone()], ..Default::default() };
        let verifier = RegistryVerifier::new(Registry::new(config).expect("registry"), default);
        let engine = Engine::fixed(set, Arc::new(verifier), Settings::default());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        engine.review(&Review::for_image(image, "default"), deadline).await
    }
}

fn statement(digest: &str) -> Vec<u8> {
    support::cjson(&json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "image", "digest": {"sha256": digest.trim_start_matches("sha256:")}}],
        "predicateType": PROVENANCE,
        "predicate": {"buildDefinition": {"buildType": "https://actions.github.io/buildtypes/workflow/v1"}},
    }))
}

#[track_caller]
fn assert_denied(d: &Decision, needles: &[&str]) {
    assert!(!d.allowed, "expected a denial: {d:?}");
    let message = d.message.clone().unwrap_or_default();
    for needle in needles {
        assert!(message.contains(needle), "{needle:?} not in: {message}");
    }
}

async fn timestamp_instead_of_the_log(kind: Kind) {
    let s = setup(kind).await;
    let signer = s.signer();
    let at = signer.validity.not_before + 60;
    let image = s.attested("v1", |d| timestamped_bundle(&signer, &statement(d), Some((&s.tsa, at)))).await;
    let d = s.decide(&policy("acme/app", "timestamp"), &image).await;
    assert!(d.allowed, "{d:?}");

    // The same attestation where the authority requires the log (the default): refused.
    assert_denied(&s.decide(&policy("acme/app", "required"), &image).await, &["no transparency log entry"]);
    // Another repository's identity.
    assert_denied(&s.decide(&policy("acme/other", "timestamp"), &image).await, &["acme/app"]);

    // No timestamp at all: nothing proves when the 10-minute certificate signed.
    let bare = s.attested("v2", |d| timestamped_bundle(&signer, &statement(d), None)).await;
    assert_denied(&s.decide(&policy("acme/app", "timestamp"), &bare).await, &["no verified timestamp"]);

    // A well-formed timestamp from an authority the trusted root does not list.
    let rogue = MiniTsa::new("rogue");
    let foreign = s.attested("v3", |d| timestamped_bundle(&signer, &statement(d), Some((&rogue, at)))).await;
    assert_denied(&s.decide(&policy("acme/app", "timestamp"), &foreign).await, &["timestamp authority not trusted"]);

    // A trusted timestamp, but after the certificate expired.
    let late = signer.validity.not_after + 3600;
    let expired = s.attested("v4", |d| timestamped_bundle(&signer, &statement(d), Some((&s.tsa, late)))).await;
    let d = s.decide(&policy("acme/app", "timestamp"), &expired).await;
    assert_denied(&d, &["signing certificate rejected", "CertExpired"]);

    // A genuine timestamped attestation, but about another image.
    let other =
        s.attested("v5", |_| timestamped_bundle(&signer, &statement(&"22".repeat(32)), Some((&s.tsa, at)))).await;
    assert_denied(&s.decide(&policy("acme/app", "timestamp"), &other).await, &["another digest"]);

    // A certificate from another Fulcio than the root's, timestamped by the trusted TSA.
    let elsewhere = MiniSigstore::new("elsewhere");
    let options = IssueOptions { no_sct: true, validity: Validity::fulcio(), ..IssueOptions::default() };
    let outsider = elsewhere.issue_with(&s.claims.san(), GITHUB_ISSUER, Some(&s.claims), &options);
    let forged = s.attested("v6", |d| timestamped_bundle(&outsider, &statement(d), Some((&s.tsa, at)))).await;
    assert_denied(&s.decide(&policy("acme/app", "timestamp"), &forged).await, &["UnknownIssuer"]);
}

crate::on_both_registries!(timestamp_instead_of_the_log: timestamp_instead_of_the_log_fallback_tag, timestamp_instead_of_the_log_referrers_api);

/// `trustedRoot: github` is GitHub's real root, built in: it overrides the verifier's own root.
async fn built_in_github_root(kind: Kind) {
    let s = setup(kind).await;
    let signer = s.signer();
    let at = signer.validity.not_before + 60;
    let image = s.attested("v1", |d| timestamped_bundle(&signer, &statement(d), Some((&s.tsa, at)))).await;
    let mini = std::fs::read_to_string(s.dir.path().join(ROOT_FILE)).expect("root");
    let mini = || TrustRoot::from_json(&mini).expect("mini root");
    // The mini instance as the verifier's root, no `trustedRoot:`: verified.
    let unpinned = policy("acme/app", "timestamp").replace(&format!("      trustedRoot: {ROOT_FILE}\n"), "");
    let d = s.decide_with(&unpinned, &image, mini()).await;
    assert!(d.allowed, "{d:?}");
    // Pinned to GitHub's instance, which never timestamped (or certified) this: refused.
    let github = policy("acme/app", "timestamp").replace(ROOT_FILE, "github");
    assert_denied(&s.decide_with(&github, &image, mini()).await, &["timestamp authority not trusted"]);
}

crate::on_both_registries!(built_in_github_root: built_in_github_root_fallback_tag, built_in_github_root_referrers_api);

/// From CI: `verify-attestation --use-signed-timestamps` (with `--trusted-root`), as
/// `gh attestation verify` checks a private repository's attestation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_attestation_with_signed_timestamps() {
    let s = setup(Kind::Ferro).await;
    let signer = s.signer();
    let at = signer.validity.not_before + 60;
    let image = s.attested("v1", |d| timestamped_bundle(&signer, &statement(d), Some((&s.tsa, at)))).await;
    let root = s.dir.path().join(ROOT_FILE);
    let root = root.to_str().expect("UTF-8 path");
    let run = |extra: &[&str]| {
        let mut args = vec!["verify-attestation", image.as_str(), "--type", "slsaprovenance1"];
        args.extend(["--certificate-identity-regexp", IDENTITY_REGEXP, "--certificate-oidc-issuer", GITHUB_ISSUER]);
        args.extend(["--insecure-registry", s.registry.host.as_str()]);
        args.extend(extra);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis")).args(&args).output().expect("run");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code(), text)
    };
    let (code, out) = run(&["--trusted-root", root, "--use-signed-timestamps"]);
    assert_eq!(code, Some(0), "{out}");
    // The log is required unless the flag says otherwise.
    let (code, out) = run(&["--trusted-root", root]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("no transparency log entry"), "{out}");
    // GitHub's real root (built in) never timestamped this.
    let (code, out) = run(&["--trusted-root", "github", "--use-signed-timestamps"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("timestamp authority not trusted"), "{out}");
}

/// `verify-bundle --trusted-root github --use-signed-timestamps` on a real GitHub artifact
/// attestation (tests/fixtures/sigstore: `actions/attest-build-provenance`, GitHub's instance).
#[test]
fn verify_bundle_real_github_attestation() {
    let bundle = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sigstore/github-attest-build-provenance-private.sigstore.json"
    );
    let run = |extra: &[&str]| {
        let signer = "https://github.com/actions/attest-build-provenance/.github/workflows/prober.yml@refs/heads/main";
        let mut args = vec!["verify-bundle", "--bundle", bundle, "--certificate-identity", signer];
        args.extend(["--certificate-oidc-issuer", GITHUB_ISSUER]);
        args.extend(extra);
        args.push("sha256:b03d18ed0a16864ef2d2e559c660159a2170b9d086a1f42f570b1679326b90e6");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis")).args(&args).output().expect("run");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code(), text)
    };
    let (code, out) = run(&["--trusted-root", "github", "--use-signed-timestamps"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = run(&["--trusted-root", "github"]);
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("no transparency log entry"), "{out}");
    // The public-good root (the default) does not list GitHub's timestamp authority.
    let (code, out) = run(&["--use-signed-timestamps"]);
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("timestamp authority not trusted"), "{out}");
}

/// A legacy `.sig` layer signed keyless without the log but timestamped (`cosign sign
/// --tlog-upload=false --timestamp-server-url …`: the `dev.sigstore.cosign/rfc3161timestamp`
/// annotation): verified under `transparencyLog: timestamp`, refused otherwise.
async fn legacy_signature_with_a_timestamp(kind: Kind) {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64;
    use support::sigstore::Tamper;
    let s = setup(kind).await;
    let signer = s.signer();
    let at = signer.validity.not_before + 60;
    let (digest, _) = s.push.image("acme/legacy", "v1", "legacy timestamped").await;
    let reference = format!("{}/acme/legacy", s.registry.host);
    let sig_tag = format!("{}.sig", digest.replace(':', "-"));
    let layer = |timestamp: Option<&MiniTsa>| {
        let payload = MiniSigstore::payload(&reference, &digest);
        let no_log = Tamper { no_rekor_bundle: true, ..Tamper::default() };
        let (blob, media_type, mut annotations) = s.sigstore.signature_layer_with(&signer, payload, &no_log);
        if let Some(tsa) = timestamp {
            let signature = annotations["dev.cosignproject.cosign/signature"].as_str().expect("signature");
            let token = tsa.timestamp(&B64.decode(signature).expect("base64"), at);
            annotations["dev.sigstore.cosign/rfc3161timestamp"] =
                json!({"SignedRFC3161Timestamp": B64.encode(token)}).to_string().into();
        }
        (blob, media_type, annotations)
    };
    s.push.artifact("acme/legacy", &sig_tag, &[layer(Some(&s.tsa))]).await;
    let image = format!("{reference}:v1");
    let decide = |tlog: &str| {
        let authority = policy("acme/app", tlog);
        let set = support::signed_policy(&s.registry.host, s.dir.path(), &authority, "");
        let config = RegistryConfig { insecure: vec![s.registry.host.clone()], ..Default::default() };
        let verifier =
            RegistryVerifier::new(Registry::new(config).expect("registry"), TrustRoot::production().expect("root"));
        let engine = Engine::fixed(set, Arc::new(verifier), Settings::default());
        let image = image.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            engine.review(&Review::for_image(&image, "default"), deadline).await
        }
    };
    let d = decide("timestamp").await;
    assert!(d.allowed, "{d:?}");
    assert_denied(&decide("required").await, &["no transparency log entry"]);
    // Without the timestamp annotation: nothing proves when it was signed.
    s.push.artifact("acme/legacy", &sig_tag, &[layer(None)]).await;
    assert_denied(&decide("timestamp").await, &["no verified timestamp"]);
    // Timestamped by an authority the root does not list.
    let rogue = MiniTsa::new("rogue");
    s.push.artifact("acme/legacy", &sig_tag, &[layer(Some(&rogue))]).await;
    assert_denied(&decide("timestamp").await, &["timestamp authority not trusted"]);
}

crate::on_both_registries!(legacy_signature_with_a_timestamp: legacy_signature_with_a_timestamp_fallback_tag, legacy_signature_with_a_timestamp_referrers_api);

/// A legacy `.att` layer (DSSE envelope) signed keyless without the log, its signature
/// timestamped: verified under `transparencyLog: timestamp`, refused under `required`.
async fn legacy_attestation_with_a_timestamp(kind: Kind) {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64;
    let s = setup(kind).await;
    let signer = s.signer();
    let at = signer.validity.not_before + 60;
    let (digest, _) = s.push.image("acme/legacy-att", "v1", "legacy attested").await;
    let statement = statement(&digest);
    let signature = signer.sign(&support::pae(support::INTOTO, &statement));
    let envelope = support::cjson(&json!({
        "payloadType": support::INTOTO,
        "payload": B64.encode(&statement),
        "signatures": [{"keyid": "", "sig": B64.encode(&signature)}],
    }));
    let annotations = json!({
        "dev.cosignproject.cosign/signature": "",
        "predicateType": PROVENANCE,
        "dev.sigstore.cosign/certificate": signer.cert_pem(),
        "dev.sigstore.cosign/chain": s.sigstore.chain_pem(),
        "dev.sigstore.cosign/rfc3161timestamp":
            json!({"SignedRFC3161Timestamp": B64.encode(s.tsa.timestamp(&signature, at))}).to_string(),
    });
    let tag = format!("{}.att", digest.replace(':', "-"));
    s.push.artifact("acme/legacy-att", &tag, &[(envelope, support::DSSE, annotations)]).await;
    let image = format!("{}/acme/legacy-att:v1", s.registry.host);
    let d = s.decide(&policy("acme/app", "timestamp"), &image).await;
    assert!(d.allowed, "{d:?}");
    assert_denied(&s.decide(&policy("acme/app", "required"), &image).await, &["no transparency log entry"]);
}

crate::on_both_registries!(legacy_attestation_with_a_timestamp: legacy_attestation_with_a_timestamp_fallback_tag, legacy_attestation_with_a_timestamp_referrers_api);
