//! Recorded, offline evidence for `portcullis policy test`: OCI image layouts holding images of
//! the example policies with their signatures and attestations (Sigstore bundles v0.3 as OCI
//! 1.1 referrers, logged in a mini Sigstore whose trusted root is recorded beside them; a
//! `cosign save`-style layout with a legacy `.sig`), read by the webhook's own verifier.
//!
//! `record_policy_test_evidence` (ignored: run it with `--ignored` to re-record) writes
//! `policies/tests/evidence/` and `policies/tests/signatures.yaml`, signing with the test-only
//! key `policies/tests/keys/release.key` (whose public half is `policies/keys/release.pub`).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::common;
use crate::support::sigstore::{COSIGN_SIGN_V1, MiniSigstore};
use crate::support::{BUNDLE_V03, OCI_CONFIG, OCI_EMPTY, OCI_INDEX, OCI_MANIFEST, Signer, cjson, sha256, statement};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");
const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The review time of the recorded cases, and when their scans finished.
const REVIEW_TIME: &str = "2026-11-29T12:00:00Z";
const SCANNED: &str = "2026-11-29T09:00:00Z";

/// An OCI image layout being written.
struct LayoutWriter {
    dir: PathBuf,
    entries: Vec<Value>,
}

impl LayoutWriter {
    fn new(dir: &Path) -> Self {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir.join("blobs/sha256")).expect("layout dir");
        std::fs::write(dir.join("oci-layout"), "{\"imageLayoutVersion\":\"1.0.0\"}").expect("oci-layout");
        Self { dir: dir.to_owned(), entries: Vec::new() }
    }

    fn blob(&self, bytes: &[u8]) -> String {
        let digest = sha256(bytes);
        let hex = digest.trim_start_matches("sha256:");
        std::fs::write(self.dir.join("blobs/sha256").join(hex), bytes).expect("blob");
        digest
    }

    fn list(&mut self, manifest: &[u8], annotations: Value) -> String {
        let digest = self.blob(manifest);
        self.entries.push(
            json!({"mediaType": OCI_MANIFEST, "digest": digest, "size": manifest.len(), "annotations": annotations}),
        );
        digest
    }

    /// A one-layer image, listed under `name` (a whole reference with its tag).
    fn image(&mut self, name: &str, content: &str, annotations: Value) -> (String, Vec<u8>) {
        let layer = content.as_bytes();
        let config = cjson(
            &json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [sha256(layer)]}}),
        );
        let manifest = cjson(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "size": config.len(), "digest": self.blob(&config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "size": layer.len(), "digest": self.blob(layer)}]
        }));
        let mut annotations = annotations;
        if !name.is_empty() {
            annotations[REF_NAME] = json!(name);
        }
        let digest = self.list(&manifest, annotations);
        (digest, manifest)
    }

    /// A Sigstore bundle attached to `subject` as cosign 3 attaches it (an OCI 1.1 referrer).
    fn bundle_referrer(&mut self, subject: &(String, Vec<u8>), predicate_type: &str, bundle: &[u8]) {
        let empty = b"{}";
        let manifest = cjson(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": BUNDLE_V03,
            "config": {"mediaType": OCI_EMPTY, "size": empty.len(), "digest": self.blob(empty)},
            "layers": [{"mediaType": BUNDLE_V03, "size": bundle.len(), "digest": self.blob(bundle)}],
            "subject": {"mediaType": OCI_MANIFEST, "size": subject.1.len(), "digest": subject.0},
            "annotations": {"dev.sigstore.bundle.content": "dsse-envelope", "dev.sigstore.bundle.predicateType": predicate_type}
        }));
        self.list(&manifest, json!({}));
    }

    fn finish(self) {
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.entries});
        std::fs::write(self.dir.join("index.json"), serde_json::to_string_pretty(&index).expect("json") + "\n")
            .expect("index.json");
    }
}

fn cyclonedx(components: Value) -> Value {
    json!({"bomFormat": "CycloneDX", "specVersion": "1.5", "components": components})
}

fn slsa_v1() -> Value {
    json!({
        "buildDefinition": {
            "buildType": "https://actions.github.io/buildtypes/workflow/v1",
            "externalParameters": {"workflow": {"ref": "refs/tags/v1.0.0", "repository": "https://github.com/acme/app", "path": ".github/workflows/release.yml"}},
            "resolvedDependencies": [{"uri": "git+https://github.com/acme/app@refs/tags/v1.0.0", "digest": {"gitCommit": "4d3c2b1a00000000000000000000000000000000"}}]
        },
        "runDetails": {"builder": {"id": "https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.0.0"}}
    })
}

fn slsa_v02() -> Value {
    json!({
        "builder": {"id": "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_container_slsa3.yml@refs/tags/v2.0.0"},
        "buildType": "https://github.com/slsa-framework/slsa-github-generator/container@v1",
        "invocation": {"configSource": {"uri": "git+https://github.com/acme/app@refs/tags/v1.0.0", "digest": {"sha1": "4d3c2b1a00000000000000000000000000000000"}, "entryPoint": ".github/workflows/release.yml"}}
    })
}

fn trivy_scan(severities: &[&str]) -> Value {
    let vulnerabilities: Vec<Value> = severities
        .iter()
        .enumerate()
        .map(|(i, s)| json!({"VulnerabilityID": format!("CVE-2026-{i:04}"), "PkgName": "openssl", "Severity": s}))
        .collect();
    json!({
        "invocation": {"parameters": null, "uri": "", "event_id": "", "builder.id": ""},
        "scanner": {"uri": "pkg:github/aquasecurity/trivy@0.57.1", "version": "0.57.1", "db": {"uri": "", "version": ""},
            "result": {"SchemaVersion": 2, "Results": [{"Target": "app (debian 12.8)", "Class": "os-pkgs", "Vulnerabilities": vulnerabilities}]}},
        "metadata": {"scanStartedOn": SCANNED, "scanFinishedOn": SCANNED}
    })
}

/// One image of the example registry: its signature and attestations, signed and logged.
fn signed_image(
    layout: &mut LayoutWriter,
    sigstore: &MiniSigstore,
    key: &Signer,
    name: &str,
    attestations: &[(&str, Value)],
) -> String {
    let image = layout.image(name, &format!("layer of {name}"), json!({}));
    let signature = statement(&image.0, COSIGN_SIGN_V1, json!({}), false);
    layout.bundle_referrer(&image, COSIGN_SIGN_V1, &sigstore.key_bundle_logged(key, &signature));
    for (predicate_type, predicate) in attestations {
        let attestation = statement(&image.0, predicate_type, predicate.clone(), false);
        layout.bundle_referrer(&image, predicate_type, &sigstore.key_bundle_logged(key, &attestation));
    }
    image.0
}

fn case(
    name: &str,
    comment: &str,
    image: &str,
    review_time: &str,
    layout: &str,
    decision: &str,
    message: &str,
) -> String {
    let message = if message.is_empty() { String::new() } else { format!("\n    message: {message:?}") };
    let trusted_root = if layout == "evidence/example-registry" {
        "\n    trustedRoot: evidence/example-registry.trusted_root.json"
    } else {
        ""
    };
    format!(
        "---\n# {comment}\napiVersion: portcullis.dev/v1alpha1\nkind: PolicyTest\nmetadata:\n  name: {name}\nspec:\n  \
         namespace: kube-system\n  reviewTime: \"{review_time}\"\n  evidence:\n    ociLayout: {layout}{trusted_root}\n  \
         object:\n    apiVersion: v1\n    kind: Pod\n    metadata: {{name: app}}\n    spec:\n      containers: \
         [{{name: app, image: \"{image}\"}}]\n  expect:\n    decision: {decision}{message}\n"
    )
}

#[test]
#[ignore = "writes policies/tests/evidence and policies/tests/signatures.yaml: run with --ignored to re-record"]
fn record_policy_test_evidence() {
    let tests = common::root().join("policies/tests");
    let key = Signer::from_pkcs8_pem(&std::fs::read_to_string(tests.join("keys/release.key")).expect("test key"));
    let committed = std::fs::read_to_string(common::root().join("policies/keys/release.pub")).expect("release.pub");
    assert_eq!(key.public_pem(), committed, "policies/keys/release.pub is not the public half of the test key");
    let sigstore = MiniSigstore::new("policy-evidence");
    std::fs::create_dir_all(tests.join("evidence")).expect("evidence dir");
    sigstore.write_trusted_root(&tests.join("evidence"), "example-registry.trusted_root.json");

    let mut layout = LayoutWriter::new(&tests.join("evidence/example-registry"));
    let lib = |name: &str, version: &str, license: &str| json!({"type": "library", "name": name, "version": version, "licenses": [{"license": {"id": license}}]});
    let clean_sbom = cyclonedx(json!([lib("log4j-core", "2.17.1", "Apache-2.0"), lib("zlib", "1.3.1", "Zlib")]));
    let vuln = "https://cosign.sigstore.dev/attestation/vuln/v1";
    let (cdx, spdx, slsa1, slsa02) = (
        "https://cyclonedx.org/bom",
        "https://spdx.dev/Document",
        "https://slsa.dev/provenance/v1",
        "https://slsa.dev/provenance/v0.2",
    );
    let app = signed_image(
        &mut layout,
        &sigstore,
        &key,
        "registry.example.com/team/app:v1",
        &[(cdx, clean_sbom.clone()), (slsa1, slsa_v1()), (vuln, trivy_scan(&["HIGH", "LOW"]))],
    );
    let log4j = signed_image(
        &mut layout,
        &sigstore,
        &key,
        "registry.example.com/team/search:v1",
        &[
            (cdx, cyclonedx(json!([lib("log4j-core", "2.14.1", "Apache-2.0")]))),
            (slsa1, slsa_v1()),
            (vuln, trivy_scan(&[])),
        ],
    );
    let critical = signed_image(
        &mut layout,
        &sigstore,
        &key,
        "registry.example.com/team/web:v1",
        &[(cdx, clean_sbom.clone()), (slsa1, slsa_v1()), (vuln, trivy_scan(&["CRITICAL"]))],
    );
    let spdx_db = signed_image(
        &mut layout,
        &sigstore,
        &key,
        "registry.example.com/spdx/db:v1",
        &[
            (
                spdx,
                json!({"spdxVersion": "SPDX-2.3", "packages": [{"name": "postgresql", "versionInfo": "16.4", "licenseDeclared": "PostgreSQL"}]}),
            ),
            (slsa1, slsa_v1()),
            (vuln, trivy_scan(&["MEDIUM"])),
        ],
    );
    let legacy = signed_image(
        &mut layout,
        &sigstore,
        &key,
        "registry.example.com/legacy/tool:v1",
        &[(cdx, clean_sbom), (slsa02, slsa_v02()), (vuln, trivy_scan(&[]))],
    );
    let unsigned = layout.image("registry.example.com/team/unsigned:v1", "an image nobody signed", json!({})).0;
    layout.finish();

    // As `cosign save` writes it: no tag names, a `kind` annotation per entry; the `.sig` of
    // the portcullis image made with another key than the policy's.
    let mut saved = LayoutWriter::new(&tests.join("evidence/portcullis-other-key"));
    let portcullis = saved.image("", "a portcullis image", json!({"kind": "dev.cosignproject.cosign/image"}));
    let other = Signer::new();
    let reference = "ghcr.io/portcullis-dev/portcullis";
    let (payload, media_type, annotations) = other.signature_layer(Signer::payload(reference, &portcullis.0));
    let config = b"{}";
    let sig = cjson(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "size": config.len(), "digest": saved.blob(config)},
        "layers": [{"mediaType": media_type, "size": payload.len(), "digest": saved.blob(&payload), "annotations": annotations}]
    }));
    saved.list(&sig, json!({"kind": "dev.cosignproject.cosign/sigs"}));
    saved.finish();

    let at = |image: &str, digest: &str| format!("{image}@{digest}");
    let registry = "evidence/example-registry";
    let cases = [
        case(
            "signed-image-with-every-attestation-is-allowed",
            "Signed, with a clean CycloneDX SBOM, SLSA v1 provenance from acme/app's release workflow and a fresh scan with nothing CRITICAL.",
            &at("registry.example.com/team/app", &app),
            REVIEW_TIME,
            registry,
            "allowed",
            "",
        ),
        case(
            "a-scan-older-than-7-days-is-denied",
            "The same evidence, reviewed 10 days after the scan.",
            &at("registry.example.com/team/app", &app),
            "2026-12-09T09:00:00Z",
            registry,
            "denied",
            "the vulnerability scan is older than 7 days",
        ),
        case(
            "log4shell-in-the-sbom-is-denied",
            "Signed, but its SBOM lists log4j-core 2.14.1.",
            &at("registry.example.com/team/search", &log4j),
            REVIEW_TIME,
            registry,
            "denied",
            "log4j-core before 2.17.1 is denied",
        ),
        case(
            "a-critical-finding-is-denied",
            "Signed, but its scan found a CRITICAL vulnerability.",
            &at("registry.example.com/team/web", &critical),
            REVIEW_TIME,
            registry,
            "denied",
            "the scan found CRITICAL vulnerabilities",
        ),
        case(
            "an-spdx-sbom-is-read-under-spdx",
            "Under registry.example.com/spdx/: an SPDX JSON SBOM.",
            &at("registry.example.com/spdx/db", &spdx_db),
            REVIEW_TIME,
            registry,
            "allowed",
            "",
        ),
        case(
            "legacy-images-carry-slsa-v02",
            "Under registry.example.com/legacy/: SLSA v0.2 provenance from the SLSA GitHub generator.",
            &at("registry.example.com/legacy/tool", &legacy),
            REVIEW_TIME,
            registry,
            "allowed",
            "",
        ),
        case(
            "an-unsigned-image-is-denied",
            "In the layout, with no signature and no attestation.",
            &at("registry.example.com/team/unsigned", &unsigned),
            REVIEW_TIME,
            registry,
            "denied",
            "no signatures found",
        ),
        case(
            "portcullis-signed-with-another-key-is-denied",
            "A `cosign save` layout: the portcullis image signed with a key that is not portcullis-release.",
            &at(reference, &portcullis.0),
            REVIEW_TIME,
            "evidence/portcullis-other-key",
            "denied",
            "bad signature",
        ),
    ];
    let header = "# Test cases of `portcullis policy test policies` for the example policies that need signatures\n\
        # and attestations, with recorded evidence: `evidence.ociLayout` is an OCI image layout (as\n\
        # `cosign save` writes) that stands in for the registry, `evidence.trustedRoot` the Sigstore\n\
        # instance its log entries were made in, `reviewTime` the time of the review (scans age).\n\
        # Written by `record_policy_test_evidence` in tests/policy_evidence.rs; the images live in\n\
        # kube-system, which allowed-registries.yaml does not cover (registry.example.com is not listed).\n";
    std::fs::write(tests.join("signatures.yaml"), format!("{header}{}", cases.concat())).expect("cases");
}

fn policy_test(dir: &Path) -> (Option<i32>, String) {
    let out = Command::new(BIN).args(["policy", "test"]).arg(dir).current_dir(common::root()).output().expect("run");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[test]
fn every_example_case_runs_offline_with_recorded_evidence() {
    let (code, out) = policy_test(Path::new("policies"));
    assert_eq!(code, Some(0), "{out}");
    for name in [
        "signed-image-with-every-attestation-is-allowed",
        "a-scan-older-than-7-days-is-denied",
        "log4shell-in-the-sbom-is-denied",
        "a-critical-finding-is-denied",
        "an-spdx-sbom-is-read-under-spdx",
        "legacy-images-carry-slsa-v02",
        "an-unsigned-image-is-denied",
        "portcullis-signed-with-another-key-is-denied",
    ] {
        assert!(out.contains(&format!("ok       {name} (")), "{name}: {out}");
    }
    assert!(out.contains(" 0 failed, 0 not run"), "{out}");
}

/// A copy of the example policies, the recorded cases only, to change.
fn cases_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = dir.path().join("policies");
    copy_dir(&common::root().join("policies"), &policies);
    std::fs::remove_file(policies.join("tests/images.yaml")).expect("rm");
    std::fs::remove_file(policies.join("tests/resources.yaml")).expect("rm");
    (dir, policies)
}

#[test]
fn a_tampered_layout_blob_fails_the_case() {
    let (_dir, policies) = cases_copy();
    // Change one byte of every referrer manifest carrying a CycloneDX attestation: its digest no
    // longer matches the one it is fetched by.
    let blobs = policies.join("tests/evidence/example-registry/blobs/sha256");
    let mut tampered = 0;
    for entry in std::fs::read_dir(&blobs).expect("blobs") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("blob");
        if String::from_utf8_lossy(&bytes)
            .contains("\"dev.sigstore.bundle.predicateType\":\"https://cyclonedx.org/bom\"")
        {
            let text = String::from_utf8(bytes).expect("utf8").replacen("dsse-envelope", "dsse-envelopE", 1);
            std::fs::write(&path, text).expect("tamper");
            tampered += 1;
        }
    }
    assert!(tampered >= 3, "{tampered}");
    let (code, out) = policy_test(&policies);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FAILED   signed-image-with-every-attestation-is-allowed"), "{out}");
    assert!(out.contains("does not match the requested"), "the digest check says why: {out}");
}

#[test]
fn an_unsigned_layout_is_denied_and_a_signed_one_is_not_trusted_for_another_image() {
    let (_dir, policies) = cases_copy();
    let cases = policies.join("tests/signatures.yaml");
    let text = std::fs::read_to_string(&cases).expect("cases");
    // Expect the unsigned image to be allowed: the case fails, the verifier found nothing.
    let flipped = text
        .replace("metadata:\n  name: an-unsigned-image-is-denied", "metadata:\n  name: an-unsigned-image-is-allowed");
    let flipped = flipped.replacen(
        "decision: denied\n    message: \"no signatures found\"",
        "decision: allowed\n    message: \"no signatures found\"",
        1,
    );
    assert_ne!(flipped, text);
    std::fs::write(&cases, flipped).expect("write");
    let (code, out) = policy_test(&policies);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FAILED   an-unsigned-image-is-allowed"), "{out}");
    assert!(out.contains("+ decision: denied"), "{out}");
    // The portcullis layout, given for the example registry's image: nothing there is about
    // that digest, so it is denied too.
    let swapped =
        text.replacen("ociLayout: evidence/example-registry\n", "ociLayout: evidence/portcullis-other-key\n", 1);
    std::fs::write(&cases, swapped).expect("write");
    let (code, out) = policy_test(&policies);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FAILED   signed-image-with-every-attestation-is-allowed"), "{out}");
}

#[test]
fn a_missing_layout_is_an_error_naming_the_case() {
    let (_dir, policies) = cases_copy();
    std::fs::remove_dir_all(policies.join("tests/evidence/portcullis-other-key")).expect("rm");
    let (code, out) = policy_test(&policies);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("portcullis-signed-with-another-key-is-denied") && out.contains("evidence.ociLayout"),
        "{out}"
    );
}

#[test]
fn a_signature_case_without_evidence_is_not_run_never_passed() {
    let (_dir, policies) = cases_copy();
    let cases = policies.join("tests/signatures.yaml");
    let text = std::fs::read_to_string(&cases).expect("cases");
    let without = text.replacen(
        "  evidence:\n    ociLayout: evidence/example-registry\n    trustedRoot: evidence/example-registry.trusted_root.json\n",
        "",
        1,
    );
    assert_ne!(without, text);
    std::fs::write(&cases, without).expect("write");
    let (code, out) = policy_test(&policies);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("not run  signed-image-with-every-attestation-is-allowed ("), "{out}");
    assert!(out.ends_with("7 passed, 0 failed, 1 not run (need a registry or recorded evidence)\n"), "{out}");
}
