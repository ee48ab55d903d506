//! Test support: real registries on 127.0.0.1 (Debian `docker-registry`, `ferro-oci-server`),
//! a small push client, and a cosign-format signer (legacy `.sig`/`.att` tags, Sigstore bundle
//! v0.3 referrers with the fallback tag where the registry has no referrers API), and an
//! in-process mini Sigstore ([`sigstore`]: Fulcio CA, CT log, Rekor) for keyless signatures.
//!
//! The formats follow cosign: simple-signing payloads, ECDSA-P256-SHA256 ASN.1 signatures in
//! the `dev.cosignproject.cosign/signature` annotation, DSSE over PAE for attestations.
#![allow(dead_code)]

pub mod faults;
pub mod kube_api;
pub mod secure;
pub mod sigstore;
pub mod tsa;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const DSSE: &str = "application/vnd.dsse.envelope.v1+json";
pub const INTOTO: &str = "application/vnd.in-toto+json";
pub const BUNDLE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
pub const COSIGN_SIG: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
pub const COSIGN_ATT: &str = "application/vnd.dev.cosign.artifact.att.v1+json";

/// Two tests running one scenario `async fn scenario(kind: Kind)`: against docker-registry (no
/// referrers API) and against ferro-oci-server (with one).
#[macro_export]
macro_rules! on_both_registries {
    ($scenario:ident: $distribution:ident, $ferro:ident) => {
        #[tokio::test]
        async fn $distribution() {
            $scenario($crate::support::Kind::Distribution).await;
        }

        #[tokio::test]
        async fn $ferro() {
            $scenario($crate::support::Kind::Ferro).await;
        }
    };
}

/// One module per case, each with a test on each registry running `$check(kind, args…)`.
#[macro_export]
macro_rules! cases_on_both_registries {
    ($check:ident { $($name:ident: $($arg:expr),+;)* }) => {$(
        mod $name {
            use super::*;

            #[tokio::test]
            async fn docker_distribution() {
                $check($crate::support::Kind::Distribution, $($arg),+).await;
            }

            #[tokio::test]
            async fn ferro() {
                $check($crate::support::Kind::Ferro, $($arg),+).await;
            }
        }
    )*};
}

/// Which registry implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Debian's docker-registry (distribution 2.8): no referrers API.
    Distribution,
    /// ferro-oci-server: OCI 1.1 with the referrers API.
    Ferro,
}

/// A registry process on 127.0.0.1, killed on drop.
pub struct TestRegistry {
    pub kind: Kind,
    pub host: String,
    child: Child,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn require(binary: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).map(|p| p.join(binary)).find(|p| p.is_file()))
        .unwrap_or_default();
    found.unwrap_or_else(|| {
        panic!("{binary} is not installed: run the project's test command (tests/run-all.sh), which installs it")
    })
}

impl TestRegistry {
    pub async fn start(kind: Kind) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let child = match kind {
            Kind::Distribution => secure::start_distribution(dir.path(), &host, ""),
            Kind::Ferro => Command::new(require("ferro-oci-server"))
                .env("FERRO_OCI_LISTEN", &host)
                .env("FERRO_OCI_STORAGE_DIR", dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start ferro-oci-server"),
        };
        let registry = Self { kind, host, child, _dir: Some(dir) };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client.get(format!("http://{}/v2/", registry.host)).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "{kind:?} registry did not come up on {}", registry.host);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        registry
    }
}

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Canonical JSON bytes (sorted keys, no spaces), like cosign's payloads.
pub fn cjson(value: &Value) -> Vec<u8> {
    fn sort(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<_> = m.keys().collect();
                keys.sort();
                Value::Object(keys.into_iter().map(|k| (k.clone(), sort(&m[k]))).collect())
            }
            Value::Array(a) => Value::Array(a.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    serde_json::to_vec(&sort(value)).expect("json")
}

/// A minimal push client (monolithic uploads).
pub struct Pusher {
    pub host: String,
    http: reqwest::Client,
}

impl Pusher {
    pub fn new(host: &str) -> Self {
        Self { host: host.to_owned(), http: reqwest::Client::new() }
    }

    pub async fn blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256(data);
        let start = self
            .http
            .post(format!("http://{}/v2/{repo}/blobs/uploads/", self.host))
            .send()
            .await
            .expect("start upload");
        assert!(start.status().is_success(), "upload start: {}", start.status());
        let location = start.headers()["location"].to_str().expect("location").to_owned();
        let url = if location.starts_with("http") { location } else { format!("http://{}{location}", self.host) };
        let sep = if url.contains('?') { '&' } else { '?' };
        let put = self
            .http
            .put(format!("{url}{sep}digest={digest}"))
            .header("content-type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .await
            .expect("upload");
        assert!(put.status().is_success(), "upload: {} {}", put.status(), put.text().await.unwrap_or_default());
        digest
    }

    pub async fn manifest(&self, repo: &str, reference: &str, raw: &[u8], media_type: &str) -> String {
        let response = self
            .http
            .put(format!("http://{}/v2/{repo}/manifests/{reference}", self.host))
            .header("content-type", media_type)
            .body(raw.to_vec())
            .send()
            .await
            .expect("put manifest");
        assert!(
            response.status().is_success(),
            "manifest {reference}: {} {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
        sha256(raw)
    }

    pub async fn get_manifest(&self, repo: &str, reference: &str) -> Option<Vec<u8>> {
        let response = self
            .http
            .get(format!("http://{}/v2/{repo}/manifests/{reference}", self.host))
            .header("accept", format!("{OCI_MANIFEST}, {OCI_INDEX}"))
            .send()
            .await
            .expect("get manifest");
        response.status().is_success().then_some(response.bytes().await.expect("body").to_vec())
    }

    pub async fn has_referrers_api(&self, repo: &str, digest: &str) -> bool {
        let response = self
            .http
            .get(format!("http://{}/v2/{repo}/referrers/{digest}", self.host))
            .send()
            .await
            .expect("referrers");
        response.status().is_success()
    }

    /// Push a one-layer OCI image; returns (digest, raw manifest).
    pub async fn image(&self, repo: &str, tag: &str, content: &str) -> (String, Vec<u8>) {
        let layer = content.as_bytes().to_vec();
        let config = cjson(
            &json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [sha256(&layer)]}}),
        );
        let config_digest = self.blob(repo, &config).await;
        let layer_digest = self.blob(repo, &layer).await;
        let manifest = cjson(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "size": config.len(), "digest": config_digest},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "size": layer.len(), "digest": layer_digest}]
        }));
        let digest = self.manifest(repo, tag, &manifest, OCI_MANIFEST).await;
        (digest, manifest)
    }

    /// Push go-containerregistry's `empty.Image` byte for byte (digest
    /// sha256:732112270d7e…, the subject of cosign's production attestation bundle); returns
    /// (digest, raw manifest). ggcr writes struct fields in declaration order, not sorted.
    pub async fn ggcr_empty_image(&self, repo: &str, tag: &str) -> (String, Vec<u8>) {
        let config = br#"{"architecture":"","created":"0001-01-01T00:00:00Z","os":"","rootfs":{"type":"layers","diff_ids":null},"config":{}}"#;
        let config_digest = self.blob(repo, config).await;
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":{},"digest":"{config_digest}"}},"layers":[]}}"#,
            config.len()
        )
        .into_bytes();
        let digest = self.manifest(repo, tag, &manifest, "application/vnd.docker.distribution.manifest.v2+json").await;
        (digest, manifest)
    }

    /// Push an image index over platform manifests (digest, size, os, architecture).
    pub async fn index(&self, repo: &str, tag: &str, platforms: &[(String, usize, &str, &str)]) -> String {
        let manifests: Vec<Value> = platforms
            .iter()
            .map(|(digest, size, os, arch)| {
                json!({"mediaType": OCI_MANIFEST, "size": size, "digest": digest, "platform": {"os": os, "architecture": arch}})
            })
            .collect();
        let index = cjson(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}));
        self.manifest(repo, tag, &index, OCI_INDEX).await
    }

    /// Sign `digest` the legacy way (a `.sig` tag in `repo`).
    pub async fn sign_legacy(&self, repo: &str, digest: &str, signer: &Signer) {
        let reference = format!("{}/{repo}", self.host);
        let tag = format!("{}.sig", digest.replace(':', "-"));
        self.artifact(repo, &tag, &[signer.signature_layer(Signer::payload(&reference, digest))]).await;
    }

    /// Attach legacy attestations (a `.att` tag, one DSSE layer per envelope) to `digest`.
    /// `layers` are (envelope, predicateType annotation).
    pub async fn attest_legacy(&self, repo: &str, digest: &str, layers: Vec<(Vec<u8>, String)>) {
        let tag = format!("{}.att", digest.replace(':', "-"));
        let layers: Vec<(Vec<u8>, &str, Value)> = layers
            .into_iter()
            .map(|(envelope, predicate_type)| {
                (envelope, DSSE, json!({"dev.cosignproject.cosign/signature": "", "predicateType": predicate_type}))
            })
            .collect();
        self.artifact(repo, &tag, &layers).await;
    }

    /// Push a manifest whose layers are (blob, mediaType, annotations), tagged `tag`.
    pub async fn artifact(&self, repo: &str, tag: &str, layers: &[(Vec<u8>, &str, Value)]) -> String {
        let config = b"{}".to_vec();
        let config_digest = self.blob(repo, &config).await;
        let mut descriptors = Vec::new();
        for (blob, media_type, annotations) in layers {
            let digest = self.blob(repo, blob).await;
            descriptors.push(
                json!({"mediaType": media_type, "size": blob.len(), "digest": digest, "annotations": annotations}),
            );
        }
        let manifest = cjson(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "size": config.len(), "digest": config_digest},
            "layers": descriptors
        }));
        self.manifest(repo, tag, &manifest, OCI_MANIFEST).await
    }

    /// Attach `blob` as an OCI 1.1 referrer of `subject`; where the registry has no referrers
    /// API, also maintain the fallback index at tag `sha256-<hex>` (as go-containerregistry does).
    pub async fn referrer(
        &self,
        repo: &str,
        subject: &str,
        subject_raw: &[u8],
        artifact_type: &str,
        blob: &[u8],
    ) -> String {
        let empty = b"{}".to_vec();
        let empty_digest = self.blob(repo, &empty).await;
        let blob_digest = self.blob(repo, blob).await;
        let manifest = cjson(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
            "config": {"mediaType": OCI_EMPTY, "size": empty.len(), "digest": empty_digest},
            "layers": [{"mediaType": artifact_type, "size": blob.len(), "digest": blob_digest}],
            "subject": {"mediaType": OCI_MANIFEST, "size": subject_raw.len(), "digest": subject},
            "annotations": {"dev.sigstore.bundle.content": "dsse-envelope", "org.opencontainers.image.created": "2026-01-01T00:00:00Z"}
        }));
        self.put_referrer(repo, subject, &manifest, Some(artifact_type)).await
    }
}

/// How cosign spells the type of a legacy-layer referrer (`--registry-referrers-mode=oci-1-1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CosignReferrer {
    /// cosign 2.x: no `artifactType` field, the type is `config.mediaType` (config = the
    /// signature image's config); the fallback index entry carries it as go-containerregistry does.
    ConfigMediaType(&'static str),
    /// cosign 3: top-level `artifactType`, empty config.
    ArtifactType(&'static str),
    /// As `ConfigMediaType`, but the fallback index entry has no `artifactType` (older tools).
    Untyped(&'static str),
}

impl Pusher {
    /// Attach cosign legacy layers (blob, mediaType, annotations) as an OCI 1.1 referrer of
    /// `subject`, the way `cosign sign|attest --registry-referrers-mode=oci-1-1` writes them.
    pub async fn cosign_referrer(
        &self,
        repo: &str,
        subject: &str,
        subject_raw: &[u8],
        style: CosignReferrer,
        layers: &[(Vec<u8>, &str, Value)],
    ) -> String {
        let mut descriptors = Vec::new();
        for (blob, media_type, annotations) in layers {
            let digest = self.blob(repo, blob).await;
            descriptors.push(
                json!({"mediaType": media_type, "size": blob.len(), "digest": digest, "annotations": annotations}),
            );
        }
        let subject_descriptor = json!({"mediaType": OCI_MANIFEST, "size": subject_raw.len(), "digest": subject});
        let (manifest, index_type) = match style {
            CosignReferrer::ConfigMediaType(kind) | CosignReferrer::Untyped(kind) => {
                let config = cjson(
                    &json!({"architecture": "", "os": "", "config": {}, "rootfs": {"type": "layers", "diff_ids": []}}),
                );
                let config_digest = self.blob(repo, &config).await;
                let manifest = json!({
                    "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": kind, "size": config.len(), "digest": config_digest},
                    "layers": descriptors, "subject": subject_descriptor
                });
                (manifest, matches!(style, CosignReferrer::ConfigMediaType(_)).then_some(kind))
            }
            CosignReferrer::ArtifactType(kind) => {
                let empty = b"{}".to_vec();
                let empty_digest = self.blob(repo, &empty).await;
                let manifest = json!({
                    "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": kind,
                    "config": {"mediaType": OCI_EMPTY, "size": empty.len(), "digest": empty_digest, "artifactType": kind},
                    "layers": descriptors, "subject": subject_descriptor,
                    "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"}
                });
                (manifest, Some(kind))
            }
        };
        self.put_referrer(repo, subject, &cjson(&manifest), index_type).await
    }

    /// Push a referrer manifest by digest; where the registry has no referrers API, also add it
    /// to the fallback index at tag `sha256-<hex>` (as go-containerregistry does).
    async fn put_referrer(&self, repo: &str, subject: &str, manifest: &[u8], artifact_type: Option<&str>) -> String {
        let digest = sha256(manifest);
        self.manifest(repo, &digest, manifest, OCI_MANIFEST).await;
        if !self.has_referrers_api(repo, subject).await {
            let tag = subject.replace(':', "-");
            let mut index = match self.get_manifest(repo, &tag).await {
                Some(raw) => serde_json::from_slice(&raw).expect("index"),
                None => json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}),
            };
            let mut entry = json!({"mediaType": OCI_MANIFEST, "size": manifest.len(), "digest": digest});
            if let Some(artifact_type) = artifact_type {
                entry["artifactType"] = json!(artifact_type);
            }
            index["manifests"].as_array_mut().expect("manifests").push(entry);
            self.manifest(repo, &tag, &cjson(&index), OCI_INDEX).await;
        }
        digest
    }
}

/// An `ImagePolicy` named `signed` over every image of `host`, tags allowed, with these
/// authorities (YAML list items) and extra spec lines; key paths resolve against `dir`.
pub fn signed_policy(
    host: &str,
    dir: &std::path::Path,
    authorities: &str,
    extra: &str,
) -> portcullis::policy::PolicySet {
    let text = format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {{name: signed}}\nspec:\n  images: ['{host}/**']\n  digest: allow-tags\n{extra}  authorities:\n{authorities}"
    );
    let env = portcullis::policy::cel::CelEnv::new();
    // Loaded as the server loads policies: key files and trusted roots are read now.
    portcullis::policy::load::load_text(&text, "signed.yaml", dir, &env).expect("policy")
}

/// An ECDSA P-256 signing key, as `cosign generate-key-pair` makes.
pub struct Signer {
    key: EcdsaKeyPair,
    rng: SystemRandom,
}

impl Default for Signer {
    fn default() -> Self {
        Self::new()
    }
}

impl Signer {
    pub fn new() -> Self {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).expect("key");
        Self { key, rng: SystemRandom::new() }
    }

    /// A key from a PKCS#8 PEM file (`-----BEGIN PRIVATE KEY-----`, as `openssl genpkey` writes).
    pub fn from_pkcs8_pem(pem: &str) -> Self {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = B64.decode(body).expect("PEM base64");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &der).expect("P-256 PKCS#8 key");
        Self { key, rng: SystemRandom::new() }
    }

    /// The public key as cosign writes it (`-----BEGIN PUBLIC KEY-----`, SPKI).
    pub fn public_pem(&self) -> String {
        let der = self.key.public_key().as_der().expect("der");
        let b64 = B64.encode(der.as_ref());
        let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("ascii")).collect();
        format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", lines.join("\n"))
    }

    pub fn sign(&self, data: &[u8]) -> Vec<u8> {
        self.key.sign(&self.rng, data).expect("sign").as_ref().to_vec()
    }

    /// A cosign simple-signing payload for `digest`.
    pub fn payload(docker_reference: &str, digest: &str) -> Vec<u8> {
        cjson(&json!({
            "critical": {
                "identity": {"docker-reference": docker_reference},
                "image": {"docker-manifest-digest": digest},
                "type": "cosign container image signature"
            },
            "optional": null
        }))
    }

    /// A legacy `.sig` layer: (payload, mediaType, annotations).
    pub fn signature_layer(&self, payload: Vec<u8>) -> (Vec<u8>, &'static str, Value) {
        let signature = B64.encode(self.sign(&payload));
        (payload, SIMPLESIGNING, json!({"dev.cosignproject.cosign/signature": signature}))
    }

    /// A DSSE envelope over an in-toto statement.
    pub fn envelope(&self, statement: &[u8]) -> Vec<u8> {
        self.envelope_typed(INTOTO, statement)
    }

    /// A DSSE envelope with any payloadType.
    pub fn envelope_typed(&self, payload_type: &str, statement: &[u8]) -> Vec<u8> {
        let signature = self.sign(&pae(payload_type, statement));
        cjson(&json!({
            "payloadType": payload_type,
            "payload": B64.encode(statement),
            "signatures": [{"keyid": "", "sig": B64.encode(signature)}]
        }))
    }

    /// A cosign v3 signature bundle (v0.3, DSSE, key-signed, no tlog) for an image digest.
    pub fn signature_bundle(&self, digest: &str) -> Vec<u8> {
        let statement = cjson(&json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"digest": {"sha256": digest.trim_start_matches("sha256:")}}],
            "predicateType": "https://sigstore.dev/cosign/sign/v1",
            "predicate": {}
        }));
        self.bundle_for_statement(&statement)
    }

    pub fn bundle_for_statement(&self, statement: &[u8]) -> Vec<u8> {
        let der = self.key.public_key().as_der().expect("der");
        let hint = B64.encode(Sha256::digest(der.as_ref()));
        let signature = self.sign(&pae(INTOTO, statement));
        cjson(&json!({
            "mediaType": BUNDLE_V03,
            "verificationMaterial": {"publicKey": {"hint": hint}, "tlogEntries": []},
            "dsseEnvelope": {"payload": B64.encode(statement), "payloadType": INTOTO, "signatures": [{"sig": B64.encode(signature)}]}
        }))
    }
}

/// An in-toto statement (v1) about `digest` (or v0.1 with `v01`).
pub fn statement(digest: &str, predicate_type: &str, predicate: Value, v01: bool) -> Vec<u8> {
    let kind = if v01 { "https://in-toto.io/Statement/v0.1" } else { "https://in-toto.io/Statement/v1" };
    cjson(&json!({
        "_type": kind,
        "subject": [{"name": "image", "digest": {"sha256": digest.trim_start_matches("sha256:")}}],
        "predicateType": predicate_type,
        "predicate": predicate
    }))
}

/// DSSE pre-authentication encoding.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {} {} ", payload_type.len(), payload_type, payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}
