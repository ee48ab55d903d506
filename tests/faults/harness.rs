//! The fault matrix's harness: the signed world every row starts from (shared by the rows that
//! run at the same time), what a row is, and how a row is checked.

use std::sync::{Arc, Weak};
use std::time::Duration;

use portcullis::engine::{Engine, Settings};
use portcullis::review::Review;
use portcullis::verify::image::RegistryVerifier;
use portcullis::verify::registry::{Registry, RegistryConfig};
use portcullis::verify::trust::TrustRoot;
use serde_json::json;

use crate::support::faults::{Fault, FaultProxy, Rule};
use crate::support::{Kind, Pusher, SIMPLESIGNING, Signer, TestRegistry, sha256};

pub const KEY: &str = "    - name: release\n      key: {publicKeyFile: release.pub}\n      transparencyLog: skip\n";
pub const KEYLESS: &str =
    "    - name: ci\n      keyless:\n        issuer: https://issuer.example\n        subject: ci@example.com\n";
/// The review deadline of rows about time; other rows get [`DEADLINE`].
pub const SHORT: Duration = Duration::from_millis(1500);
pub const DEADLINE: Duration = Duration::from_secs(8);
/// How late an answer may be (timer and scheduling latency on a loaded machine).
const SLACK: Duration = Duration::from_secs(1);
pub const REGISTRY_ERROR: &str = "could not be checked: registry error (not a signature failure): ";

/// The signed world every row starts from.
pub struct World {
    pub registry: TestRegistry,
    pub dir: tempfile::TempDir,
    /// `team/app:v1`: the image, signed with `release.pub` (legacy `.sig` tag).
    pub digest: String,
    /// The `.sig` tag of `team/app:v1`.
    pub sig_tag: String,
    /// The signature layer's blob digest.
    pub sig_blob: String,
    /// `team/app:half`: an index whose own digest is signed, its one platform manifest not.
    pub half_index: String,
}

async fn world() -> World {
    let registry = TestRegistry::start(Kind::Distribution).await;
    let push = Pusher::new(&registry.host);
    let signer = Signer::new();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("release.pub"), signer.public_pem()).expect("key");
    let (digest, _) = push.image("team/app", "v1", "the signed build").await;
    let layer = signer.signature_layer(Signer::payload(&format!("{}/team/app", registry.host), &digest));
    let sig_blob = sha256(&layer.0);
    let sig_tag = format!("{}.sig", digest.replace(':', "-"));
    push.artifact("team/app", &sig_tag, &[layer]).await;

    // A signature layer whose signature annotation is not base64.
    let (garbage, _) = push.image("team/b64", "v1", "garbage base64").await;
    let payload = Signer::payload(&format!("{}/team/b64", registry.host), &garbage);
    let annotations = json!({"dev.cosignproject.cosign/signature": "%%% not base64 %%%"});
    push.artifact("team/b64", &format!("{}.sig", garbage.replace(':', "-")), &[(payload, SIMPLESIGNING, annotations)])
        .await;

    // A keyless signature layer whose certificate and chain do not parse.
    let (chain, _) = push.image("team/chain", "v1", "bad chain").await;
    let payload = Signer::payload(&format!("{}/team/chain", registry.host), &chain);
    let mut layer = signer.signature_layer(payload);
    let junk = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";
    layer.2["dev.sigstore.cosign/certificate"] = json!(junk);
    let broken = "-----BEGIN CERTIFICATE-----\n%%% not base64 %%%\n-----END CERTIFICATE-----\n";
    layer.2["dev.sigstore.cosign/chain"] = json!(format!("{junk}{broken}"));
    layer.2["dev.sigstore.cosign/bundle"] =
        json!(r#"{"SignedEntryTimestamp":"","Payload":{"body":"","integratedTime":0,"logIndex":0,"logID":""}}"#);
    push.artifact("team/chain", &format!("{}.sig", chain.replace(':', "-")), &[layer]).await;

    // An index whose own digest is signed but whose one platform manifest is not.
    let (platform, raw) = push.image("team/app", "unsigned-platform", "an unsigned platform build").await;
    let half_index = push.index("team/app", "half", &[(platform, raw.len(), "linux", "amd64")]).await;
    push.sign_legacy("team/app", &half_index, &signer).await;

    World { registry, dir, digest, sig_tag, sig_blob, half_index }
}

/// What a row must produce.
#[derive(Clone)]
pub enum Expect {
    /// enforce denies, warn allows with a warning; both messages contain every fragment.
    Deny(Vec<String>),
    /// Both modes allow without a warning (the fault is harmless by design).
    Allow,
}

pub struct Row {
    pub name: &'static str,
    /// `host:port` the engine talks to.
    pub host: String,
    /// The image path after the host.
    pub image: &'static str,
    pub config: RegistryConfig,
    pub authorities: &'static str,
    /// Extra policy spec lines.
    pub extra: &'static str,
    pub deadline: Duration,
    pub expect: Expect,
    /// Keeps the proxy or TLS endpoint alive for the row.
    pub _guard: Option<Box<dyn std::any::Any + Send + Sync>>,
}

pub fn deny(fragments: &[&str]) -> Expect {
    Expect::Deny(fragments.iter().map(|f| (*f).to_owned()).collect())
}

pub fn insecure(host: &str) -> RegistryConfig {
    RegistryConfig { insecure: vec![host.to_owned()], ..Default::default() }
}

impl World {
    /// A row through a proxy that applies `rule`.
    pub async fn proxied(&self, name: &'static str, rule: Rule, expect: Expect) -> Row {
        let proxy = FaultProxy::start(&self.registry.host, rule).await;
        Row {
            name,
            host: proxy.host.clone(),
            image: "team/app:v1",
            config: insecure(&proxy.host),
            authorities: KEY,
            extra: "",
            deadline: DEADLINE,
            expect,
            _guard: Some(Box::new(proxy)),
        }
    }

    /// A row where one path (any method) gets `fault`.
    pub async fn on_path(&self, name: &'static str, path: String, fault: fn() -> Fault, expect: Expect) -> Row {
        let rule: Rule = Arc::new(move |_, p| (p == path).then(fault));
        self.proxied(name, rule, expect).await
    }

    pub fn manifest_path(&self, reference: &str) -> String {
        format!("/v2/team/app/manifests/{reference}")
    }

    /// The image's tag `v1`.
    pub fn image_path(&self) -> String {
        self.manifest_path("v1")
    }

    /// The image's `.sig` tag.
    pub fn sig_path(&self) -> String {
        self.manifest_path(&self.sig_tag)
    }

    /// The image's referrers fallback tag.
    pub fn fallback_path(&self) -> String {
        self.manifest_path(&self.digest.replace(':', "-"))
    }

    pub fn blob_path(&self) -> String {
        format!("/v2/team/app/blobs/{}", self.sig_blob)
    }
}

/// Review the row's image in `mode`; Ok(decision text) or Err(why the row failed).
async fn run(world: &World, row: &Row, mode: &str) -> Result<String, String> {
    let extra = format!("{}{}", row.extra, if mode == "warn" { "  mode: warn\n" } else { "" });
    let set = crate::support::signed_policy(&row.host, world.dir.path(), row.authorities, &extra);
    let registry = Registry::new(row.config.clone()).map_err(|e| e.to_string())?;
    let verifier = RegistryVerifier::new(registry, TrustRoot::production().expect("root"));
    let engine = Engine::fixed(set, Arc::new(verifier), Settings::default());
    let started = tokio::time::Instant::now();
    let image = format!("{}/{}", row.host, row.image);
    let decision = engine.review(&Review::for_image(&image, "default"), started + row.deadline).await;
    let took = started.elapsed();
    let text = format!("allowed={} message={:?} warnings={:?}", decision.allowed, decision.message, decision.warnings);
    if took > row.deadline + SLACK {
        return Err(format!("{mode}: took {took:?}, past the {:?} deadline: {text}", row.deadline));
    }
    match (&row.expect, mode) {
        (Expect::Allow, _) if decision.allowed && decision.warnings.is_empty() => Ok(text),
        (Expect::Allow, _) => Err(format!("{mode}: expected allowed without warnings: {text}")),
        (Expect::Deny(fragments), "enforce") => {
            let message = decision.message.clone().unwrap_or_default();
            let missing: Vec<_> = fragments.iter().filter(|f| !message.contains(f.as_str())).collect();
            if decision.allowed || !missing.is_empty() {
                return Err(format!("enforce: expected a denial containing {missing:?}: {text}"));
            }
            Ok(text)
        }
        (Expect::Deny(fragments), _) => {
            let warning = decision.warnings.join(" | ");
            let missing: Vec<_> = fragments.iter().filter(|f| !warning.contains(f.as_str())).collect();
            if !decision.allowed || !missing.is_empty() {
                return Err(format!("warn: expected allowed with a warning containing {missing:?}: {text}"));
            }
            Ok(text)
        }
    }
}

/// The world of the rows running at the same time: the first builds it, the last to finish drops
/// it (which kills the registry process and removes the key directory), so nothing outlives the
/// test binary; a row that starts after that builds a new one. The world is immutable (rows only
/// read it); each row's clients, proxies and engine live in that row's own runtime.
static SHARED: tokio::sync::Mutex<Weak<World>> = tokio::sync::Mutex::const_new(Weak::new());

pub async fn shared() -> Arc<World> {
    let mut slot = SHARED.lock().await;
    if let Some(world) = slot.upgrade() {
        return world;
    }
    let world = Arc::new(world().await);
    *slot = Arc::downgrade(&world);
    world
}

/// Review the row in `enforce` and in `warn`; fails with every mode that did not produce the
/// row's expectation.
pub async fn check(world: &World, row: &Row) {
    let mut failures = Vec::new();
    for mode in ["enforce", "warn"] {
        match run(world, row, mode).await {
            Ok(text) => println!("ok   {}: {text}", row.name),
            Err(why) => failures.push(why),
        }
    }
    assert!(failures.is_empty(), "row {:?} failed:\n{}", row.name, failures.join("\n"));
}
