//! The registry fault matrix: one signed image in a real registry, reached through a proxy that
//! breaks exactly one response per row (or a dead port, or a TLS endpoint with a bad
//! certificate). Every row is reviewed by the engine in `enforce` (must deny, with the expected
//! message) and in `warn` (must allow, with the same message as a warning), within the deadline.
//! A fault must never pass in enforce, never read as "no signatures found" (unless the fault is
//! that the signature is absent), and never stall a review past its deadline.

use std::sync::Arc;
use std::time::Duration;

use portcullis::engine::{Engine, Settings};
use portcullis::review::Review;
use portcullis::verify::image::RegistryVerifier;
use portcullis::verify::registry::{Registry, RegistryConfig};
use portcullis::verify::trust::TrustRoot;
use serde_json::json;

use crate::support::faults::{BadCert, BadTls, Fault, FaultProxy, Rule};
use crate::support::{Kind, OCI_INDEX, OCI_MANIFEST, Pusher, SIMPLESIGNING, Signer, TestRegistry, sha256};

const KEY: &str = "    - name: release\n      key: {publicKeyFile: release.pub}\n      transparencyLog: skip\n";
const KEYLESS: &str =
    "    - name: ci\n      keyless:\n        issuer: https://issuer.example\n        subject: ci@example.com\n";
/// The review deadline of rows about time; other rows get [`DEADLINE`].
const SHORT: Duration = Duration::from_millis(1500);
const DEADLINE: Duration = Duration::from_secs(8);
/// How late an answer may be (timer and scheduling latency on a loaded machine).
const SLACK: Duration = Duration::from_secs(1);
const REGISTRY_ERROR: &str = "could not be checked: registry error (not a signature failure): ";

/// The signed world every row starts from.
struct World {
    registry: TestRegistry,
    dir: tempfile::TempDir,
    /// `team/app:v1`: the image, signed with `release.pub` (legacy `.sig` tag).
    digest: String,
    /// The `.sig` tag of `team/app:v1`.
    sig_tag: String,
    /// The signature layer's blob digest.
    sig_blob: String,
    /// `team/app:half`: an index whose own digest is signed, its one platform manifest not.
    half_index: String,
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
enum Expect {
    /// enforce denies, warn allows with a warning; both messages contain every fragment.
    Deny(Vec<String>),
    /// Both modes allow without a warning (the fault is harmless by design).
    Allow,
}

struct Row {
    name: &'static str,
    /// `host:port` the engine talks to.
    host: String,
    /// The image path after the host.
    image: &'static str,
    config: RegistryConfig,
    authorities: &'static str,
    /// Extra policy spec lines.
    extra: &'static str,
    deadline: Duration,
    expect: Expect,
    /// Keeps the proxy or TLS endpoint alive for the row.
    _guard: Option<Box<dyn std::any::Any + Send + Sync>>,
}

fn deny(fragments: &[&str]) -> Expect {
    Expect::Deny(fragments.iter().map(|f| (*f).to_owned()).collect())
}

fn insecure(host: &str) -> RegistryConfig {
    RegistryConfig { insecure: vec![host.to_owned()], ..Default::default() }
}

impl World {
    /// A row through a proxy that applies `rule`.
    async fn proxied(&self, name: &'static str, rule: Rule, expect: Expect) -> Row {
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
    async fn on_path(&self, name: &'static str, path: String, fault: fn() -> Fault, expect: Expect) -> Row {
        let rule: Rule = Arc::new(move |_, p| (p == path).then(fault));
        self.proxied(name, rule, expect).await
    }

    fn manifest_path(&self, reference: &str) -> String {
        format!("/v2/team/app/manifests/{reference}")
    }

    fn blob_path(&self) -> String {
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

async fn rows(w: &World) -> Vec<Row> {
    let image = w.manifest_path("v1");
    let sig = w.manifest_path(&w.sig_tag);
    let blob = w.blob_path();
    let fallback = w.manifest_path(&w.digest.replace(':', "-"));
    let mut rows = Vec::new();

    // Control: the proxy itself changes nothing.
    rows.push(w.proxied("no fault (control)", Arc::new(|_, _| None), Expect::Allow).await);

    // Connection refused: nothing listens on the port.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").to_string();
    rows.push(Row {
        name: "connection refused",
        host: dead.clone(),
        image: "team/app:v1",
        config: insecure(&dead),
        authorities: KEY,
        extra: "",
        deadline: DEADLINE,
        expect: deny(&[REGISTRY_ERROR, &format!("registry request http://{dead}/v2/team/app/manifests/v1 failed")]),
        _guard: None,
    });

    // Time: a hang and a 1 byte/s body are cut at the review deadline.
    let late = "verification did not finish before the review deadline";
    let mut hang = w.on_path("hangs past the deadline", image.clone(), || Fault::Hang, deny(&[late])).await;
    hang.deadline = SHORT;
    rows.push(hang);
    let mut slow = w.on_path("slow body (1 byte/s)", sig.clone(), || Fault::SlowBody, deny(&[late])).await;
    slow.deadline = SHORT;
    rows.push(slow);

    // Auth.
    rows.push(
        w.on_path(
            "401 without a challenge",
            image.clone(),
            || Fault::status(401),
            deny(&[REGISTRY_ERROR, "authentication failed (401 without a usable WWW-Authenticate challenge)"]),
        )
        .await,
    );
    rows.push(
        w.on_path(
            "401 with a Basic challenge, no credentials",
            image.clone(),
            || Fault::Replace {
                status: 401,
                headers: vec![("www-authenticate", "Basic realm=\"test\"".to_owned())],
                body: Vec::new(),
            },
            deny(&[REGISTRY_ERROR, "the registry wants credentials and none are configured for 127.0.0.1:"]),
        )
        .await,
    );
    rows.push(
        w.on_path(
            "403",
            image.clone(),
            || Fault::status(403),
            deny(&[REGISTRY_ERROR, "registry answered 403 for http://"]),
        )
        .await,
    );

    // A Bearer challenge whose token realm is plain HTTP on a host that is not an insecure
    // registry: the token fetch (with any credentials) is refused, not sent in the clear.
    let realm = format!("http://{}/token", w.registry.host);
    let plain_realm: Rule = {
        let (path, realm) = (image.clone(), realm.clone());
        Arc::new(move |_, p| {
            (p == path).then(|| Fault::Replace {
                status: 401,
                headers: vec![("www-authenticate", format!("Bearer realm=\"{realm}\",service=\"registry\""))],
                body: Vec::new(),
            })
        })
    };
    let expect = deny(&[
        REGISTRY_ERROR,
        &format!("token realm {realm} is not HTTPS and its host is not an --insecure-registry"),
    ]);
    rows.push(w.proxied("401 with a Bearer realm over plain HTTP", plain_realm, expect).await);
    rows.push(
        w.on_path(
            "401 on the signature blob",
            blob.clone(),
            || Fault::status(401),
            deny(&[
                REGISTRY_ERROR,
                "/blobs/sha256:",
                "authentication failed (401 without a usable WWW-Authenticate challenge)",
            ]),
        )
        .await,
    );

    // 404s: a missing image is an error; a missing signature tag is "unsigned" (that is what a
    // 404 there means); a blob the signature manifest lists but the registry lacks is an error.
    rows.push(
        w.on_path(
            "404 on the image",
            image.clone(),
            || Fault::status(404),
            deny(&[REGISTRY_ERROR, "registry answered 404 for http://"]),
        )
        .await,
    );
    rows.push(
        w.on_path(
            "404 on the signature tag",
            sig.clone(),
            || Fault::status(404),
            deny(&["no signatures found", &format!("tag {}: absent", w.sig_tag)]),
        )
        .await,
    );
    rows.push(
        w.on_path(
            "404 on the signature blob",
            blob.clone(),
            || Fault::status(404),
            deny(&[REGISTRY_ERROR, "registry answered 404 for http://", &w.sig_blob]),
        )
        .await,
    );

    // Throttling and server errors (on the signature tag: the image resolves, then this fails).
    rows.push(
        w.on_path(
            "429 without Retry-After",
            sig.clone(),
            || Fault::status(429),
            deny(&[REGISTRY_ERROR, "registry answered 429 for http://"]),
        )
        .await,
    );
    for (name, status) in [("500", 500u16), ("502", 502), ("503", 503)] {
        let path = sig.clone();
        let rule: Rule = Arc::new(move |_, p| (p == path).then(|| Fault::status(status)));
        let expect = deny(&[REGISTRY_ERROR, &format!("registry answered {status} for http://")]);
        rows.push(w.proxied(name, rule, expect).await);
    }

    // Size limits.
    rows.push(
        w.on_path(
            "manifest over its limit (Content-Length)",
            sig.clone(),
            || Fault::body(OCI_MANIFEST, vec![b' '; 4 * 1024 * 1024 + 1]),
            deny(&[REGISTRY_ERROR, "the response is larger than the 4194304-byte limit"]),
        )
        .await,
    );
    rows.push(
        w.on_path(
            "endless chunked manifest",
            sig.clone(),
            || Fault::Endless,
            deny(&[REGISTRY_ERROR, "the response is larger than the 4194304-byte limit"]),
        )
        .await,
    );
    rows.push(
        w.on_path(
            "blob over its limit",
            blob.clone(),
            || Fault::body("application/octet-stream", vec![0; 32 * 1024 * 1024 + 1]),
            deny(&[REGISTRY_ERROR, "the response is larger than the 33554432-byte limit"]),
        )
        .await,
    );
    rows.push(
        w.on_path(
            "endless chunked blob",
            blob.clone(),
            || Fault::Endless,
            deny(&[REGISTRY_ERROR, "the response is larger than the 33554432-byte limit"]),
        )
        .await,
    );

    // Content that is not what was asked for.
    rows.push(
        w.on_path(
            "blob whose digest does not match",
            blob.clone(),
            || Fault::body("application/octet-stream", b"substituted content".to_vec()),
            deny(&[REGISTRY_ERROR, "does not match the requested"]),
        )
        .await,
    );

    // Redirects: a loop is an error; another host serving the right bytes (a CDN) is fine
    // because the digest is checked; another host serving other bytes is a digest mismatch.
    let proxy_self: Rule = {
        let path = image.clone();
        Arc::new(move |_, p| (p == path).then(|| Fault::Redirect(p.to_owned())))
    };
    rows.push(w.proxied("redirect loop", proxy_self, deny(&[REGISTRY_ERROR, "too many redirects"])).await);
    let upstream_blob = format!("http://{}{blob}", w.registry.host);
    let to_cdn: Rule = {
        let (path, to) = (blob.clone(), upstream_blob.clone());
        Arc::new(move |_, p| (p == path).then(|| Fault::Redirect(to.clone())))
    };
    rows.push(w.proxied("redirect of a blob to another host (same bytes)", to_cdn, Expect::Allow).await);
    let other = FaultProxy::start(
        &w.registry.host,
        Arc::new(|_, _| Some(Fault::body("application/octet-stream", b"other host, other bytes".to_vec()))),
    )
    .await;
    let to_evil: Rule = {
        let (path, to) = (blob.clone(), format!("http://{}{blob}", other.host));
        Arc::new(move |_, p| (p == path).then(|| Fault::Redirect(to.clone())))
    };
    let mut evil = w
        .proxied(
            "redirect of a blob to another host (other bytes)",
            to_evil,
            deny(&[REGISTRY_ERROR, "does not match the requested"]),
        )
        .await;
    evil._guard = Some(Box::new((evil._guard.take(), other)));
    rows.push(evil);

    // Malformed JSON and wrong media types.
    rows.push(
        w.on_path(
            "malformed JSON signature manifest",
            sig.clone(),
            || Fault::body(OCI_MANIFEST, b"{\"schemaVersion\": 2, \"layers\": [".to_vec()),
            deny(&[REGISTRY_ERROR, "not JSON"]),
        )
        .await,
    );
    rows.push(
        w.on_path(
            "malformed JSON referrers index (fallback tag)",
            fallback.clone(),
            || Fault::body(OCI_INDEX, b"{\"manifests\": [{\"digest\": ".to_vec()),
            deny(&[REGISTRY_ERROR, "not JSON"]),
        )
        .await,
    );
    rows.push(
        w.on_path(
            "signature manifest with an HTML media type",
            sig.clone(),
            || Fault::body("text/html", b"<html>login</html>".to_vec()),
            deny(&[REGISTRY_ERROR, "not JSON"]),
        )
        .await,
    );
    rows.push(
        w.on_path(
            "signature manifest that is JSON but not a manifest",
            sig.clone(),
            || Fault::body(OCI_MANIFEST, br#"{"layers": "not a list"}"#.to_vec()),
            deny(&[REGISTRY_ERROR, "not an image manifest"]),
        )
        .await,
    );

    // A malformed image index (under `platforms: every-platform`, which reads it), served for
    // the tag and for its digest.
    let broken_index =
        br#"{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": ["#;
    let by_digest = w.manifest_path(&sha256(broken_index));
    let index_rule: Rule = {
        let image = image.clone();
        Arc::new(move |_, p| (p == image || p == by_digest).then(|| Fault::body(OCI_INDEX, broken_index.to_vec())))
    };
    let mut index = w.proxied("malformed JSON image index", index_rule, deny(&[])).await;
    index.extra = "  platforms: every-platform\n";
    index.expect =
        deny(&[REGISTRY_ERROR, "/team/app@sha256:", "the image index is not JSON: EOF while parsing a list"]);
    rows.push(index);

    // An index served as if it were a plain manifest (wrong media type) must not skip the
    // platform checks of `platforms: every-platform`: its unsigned platform is still found.
    let retyped: Rule = {
        let (tag, by_digest) = (w.manifest_path("half"), w.manifest_path(&w.half_index));
        Arc::new(move |_, p| (p == tag || p == by_digest).then_some(Fault::Retype(OCI_MANIFEST)))
    };
    let mut control =
        w.proxied("image index with an unsigned platform (control)", Arc::new(|_, _| None), deny(&[])).await;
    control.image = "team/app:half";
    control.extra = "  platforms: every-platform\n";
    control.expect = deny(&["platform linux/amd64 (sha256:", "no signatures found"]);
    rows.push(control);
    let mut half = w.proxied("image index served with a manifest media type", retyped, deny(&[])).await;
    half.image = "team/app:half";
    half.extra = "  platforms: every-platform\n";
    half.expect = deny(&["platform linux/amd64 (sha256:", "no signatures found"]);
    rows.push(half);

    // The registry client's own timeout, shorter than the review deadline, also ends a hang.
    let mut timeout =
        w.on_path("hang, client timeout before the deadline", sig.clone(), || Fault::Hang, deny(&[])).await;
    timeout.config.timeout = Some(Duration::from_secs(1));
    timeout.expect = deny(&[REGISTRY_ERROR, "manifests/sha256-", "operation timed out"]);
    timeout.deadline = Duration::from_secs(4);
    rows.push(timeout);

    // Hostile signature content (no proxy fault; pushed that way).
    let mut b64 = w.proxied("signature layer with garbage base64", Arc::new(|_, _| None), deny(&[])).await;
    b64.image = "team/b64:v1";
    b64.expect = deny(&["the signature annotation is not base64"]);
    rows.push(b64);
    let mut chain = w.proxied("certificate chain that does not parse", Arc::new(|_, _| None), deny(&[])).await;
    chain.image = "team/chain:v1";
    chain.authorities = KEYLESS;
    chain.expect = deny(&["layer 0: malformed Sigstore bundle", "dev.sigstore.cosign/chain: PEM is not base64"]);
    rows.push(chain);

    // TLS: the handshake is refused, with the reason.
    for (name, bad, why) in [
        ("TLS: unknown CA", BadCert::UnknownCa, "invalid peer certificate: UnknownIssuer"),
        (
            "TLS: wrong name",
            BadCert::WrongName,
            "invalid peer certificate: certificate not valid for name \"127.0.0.1\"",
        ),
        ("TLS: expired", BadCert::Expired, "invalid peer certificate: certificate expired"),
    ] {
        let tls = BadTls::start(bad).await;
        rows.push(Row {
            name,
            host: tls.host.clone(),
            image: "team/app:v1",
            config: RegistryConfig { ca_pem: vec![tls.ca_pem.clone().into_bytes()], ..Default::default() },
            authorities: KEY,
            extra: "",
            deadline: DEADLINE,
            expect: deny(&[REGISTRY_ERROR, &format!("registry request https://{}/v2/", tls.host), why]),
            _guard: Some(Box::new(tls)),
        });
    }
    rows
}

/// Every row, one after the other (so that one row's load does not eat another's deadline),
/// each in enforce and warn; reports every failing row, not just the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_fault_matrix() {
    let world = world().await;
    let mut results = Vec::new();
    for row in rows(&world).await {
        let enforce = run(&world, &row, "enforce").await;
        let warn = run(&world, &row, "warn").await;
        results.push((row.name, enforce, warn));
    }
    let mut failures = Vec::new();
    for (name, enforce, warn) in results {
        for result in [enforce, warn] {
            match result {
                Ok(text) => println!("ok   {name}: {text}"),
                Err(why) => {
                    println!("FAIL {name}: {why}");
                    failures.push(format!("{name}: {why}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} failing row(s):\n{}", failures.len(), failures.join("\n"));
}
