//! The registry fault matrix: one signed image in a real registry, reached through a proxy that
//! breaks exactly one response per row (or a dead port, or a TLS endpoint with a bad
//! certificate). Every row is its own test, reviewed by the engine in `enforce` (must deny, with
//! the expected message) and in `warn` (must allow, with the same message as a warning), within
//! the deadline. A fault must never pass in enforce, never read as "no signatures found" (unless
//! the fault is that the signature is absent), and never stall a review past its deadline.

mod harness;

use std::sync::Arc;
use std::time::Duration;

use portcullis::verify::registry::RegistryConfig;

use crate::support::faults::{BadCert, BadTls, Fault, FaultProxy, Rule};
use crate::support::{OCI_INDEX, OCI_MANIFEST, sha256};
use harness::{DEADLINE, Expect, KEY, KEYLESS, REGISTRY_ERROR, Row, SHORT, World, deny, insecure};

/// One test per row: `name(w) { build the row from the world w }`. Each test takes the shared
/// world, builds its row (proxy, endpoint, policy) in its own runtime and checks both modes.
macro_rules! rows {
    ($($test:ident($w:ident) $build:block)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            let world = harness::shared().await;
            let $w: &World = &world;
            let row: Row = $build;
            harness::check($w, &row).await;
        }
    )*};
}

const LATE: &str = "verification did not finish before the review deadline";

/// A row where the signature tag answers `status`.
async fn server_error(w: &World, name: &'static str, status: u16) -> Row {
    let path = w.sig_path();
    let rule: Rule = Arc::new(move |_, p| (p == path).then(|| Fault::status(status)));
    let expect = deny(&[REGISTRY_ERROR, &format!("registry answered {status} for http://")]);
    w.proxied(name, rule, expect).await
}

/// A row against a TLS endpoint presenting `bad`: the handshake is refused, with the reason.
async fn tls(name: &'static str, bad: BadCert, why: &str) -> Row {
    let tls = BadTls::start(bad).await;
    Row {
        name,
        host: tls.host.clone(),
        image: "team/app:v1",
        config: RegistryConfig { ca_pem: vec![tls.ca_pem.clone().into_bytes()], ..Default::default() },
        authorities: KEY,
        extra: "",
        deadline: DEADLINE,
        expect: deny(&[REGISTRY_ERROR, &format!("registry request https://{}/v2/", tls.host), why]),
        _guard: Some(Box::new(tls)),
    }
}

rows! {
    // Control: the proxy itself changes nothing.
    no_fault_control(w) { w.proxied("no fault (control)", Arc::new(|_, _| None), Expect::Allow).await }

    // Connection refused: nothing listens on the port.
    connection_refused(w) {
        let dead =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").to_string();
        Row {
            name: "connection refused",
            host: dead.clone(),
            image: "team/app:v1",
            config: insecure(&dead),
            authorities: KEY,
            extra: "",
            deadline: DEADLINE,
            expect: deny(&[REGISTRY_ERROR, &format!("registry request http://{dead}/v2/team/app/manifests/v1 failed")]),
            _guard: None,
        }
    }

    // Time: a hang and a 1 byte/s body are cut at the review deadline.
    hangs_past_the_deadline(w) {
        let mut row = w.on_path("hangs past the deadline", w.image_path(), || Fault::Hang, deny(&[LATE])).await;
        row.deadline = SHORT;
        row
    }
    slow_body(w) {
        let mut row = w.on_path("slow body (1 byte/s)", w.sig_path(), || Fault::SlowBody, deny(&[LATE])).await;
        row.deadline = SHORT;
        row
    }

    // Auth.
    status_401_without_a_challenge(w) {
        w.on_path(
            "401 without a challenge",
            w.image_path(),
            || Fault::status(401),
            deny(&[REGISTRY_ERROR, "authentication failed (401 without a usable WWW-Authenticate challenge)"]),
        )
        .await
    }
    status_401_basic_challenge_no_credentials(w) {
        w.on_path(
            "401 with a Basic challenge, no credentials",
            w.image_path(),
            || Fault::Replace {
                status: 401,
                headers: vec![("www-authenticate", "Basic realm=\"test\"".to_owned())],
                body: Vec::new(),
            },
            deny(&[REGISTRY_ERROR, "the registry wants credentials and none are configured for 127.0.0.1:"]),
        )
        .await
    }
    status_403(w) {
        let expect = deny(&[REGISTRY_ERROR, "registry answered 403 for http://"]);
        w.on_path("403", w.image_path(), || Fault::status(403), expect).await
    }
    // A Bearer challenge whose token realm is plain HTTP on a host that is not an insecure
    // registry: the token fetch (with any credentials) is refused, not sent in the clear.
    status_401_bearer_realm_over_plain_http(w) {
        let realm = format!("http://{}/token", w.registry.host);
        let plain_realm: Rule = {
            let (path, realm) = (w.image_path(), realm.clone());
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
        w.proxied("401 with a Bearer realm over plain HTTP", plain_realm, expect).await
    }
    status_401_on_the_signature_blob(w) {
        w.on_path(
            "401 on the signature blob",
            w.blob_path(),
            || Fault::status(401),
            deny(&[
                REGISTRY_ERROR,
                "/blobs/sha256:",
                "authentication failed (401 without a usable WWW-Authenticate challenge)",
            ]),
        )
        .await
    }

    // 404s: a missing image is an error; a missing signature tag is "unsigned" (that is what a
    // 404 there means); a blob the signature manifest lists but the registry lacks is an error.
    status_404_on_the_image(w) {
        w.on_path(
            "404 on the image",
            w.image_path(),
            || Fault::status(404),
            deny(&[REGISTRY_ERROR, "registry answered 404 for http://"]),
        )
        .await
    }
    status_404_on_the_signature_tag(w) {
        w.on_path(
            "404 on the signature tag",
            w.sig_path(),
            || Fault::status(404),
            deny(&["no signatures found", &format!("tag {}: absent", w.sig_tag)]),
        )
        .await
    }
    status_404_on_the_signature_blob(w) {
        w.on_path(
            "404 on the signature blob",
            w.blob_path(),
            || Fault::status(404),
            deny(&[REGISTRY_ERROR, "registry answered 404 for http://", &w.sig_blob]),
        )
        .await
    }

    // Throttling and server errors (on the signature tag: the image resolves, then this fails).
    status_429_without_retry_after(w) {
        w.on_path(
            "429 without Retry-After",
            w.sig_path(),
            || Fault::status(429),
            deny(&[REGISTRY_ERROR, "registry answered 429 for http://"]),
        )
        .await
    }
    status_500(w) { server_error(w, "500", 500).await }
    status_502(w) { server_error(w, "502", 502).await }
    status_503(w) { server_error(w, "503", 503).await }

    // Size limits.
    manifest_over_its_limit(w) {
        w.on_path(
            "manifest over its limit (Content-Length)",
            w.sig_path(),
            || Fault::body(OCI_MANIFEST, vec![b' '; 4 * 1024 * 1024 + 1]),
            deny(&[REGISTRY_ERROR, "the response is larger than the 4194304-byte limit"]),
        )
        .await
    }
    endless_chunked_manifest(w) {
        w.on_path(
            "endless chunked manifest",
            w.sig_path(),
            || Fault::Endless,
            deny(&[REGISTRY_ERROR, "the response is larger than the 4194304-byte limit"]),
        )
        .await
    }
    blob_over_its_limit(w) {
        w.on_path(
            "blob over its limit",
            w.blob_path(),
            || Fault::body("application/octet-stream", vec![0; 32 * 1024 * 1024 + 1]),
            deny(&[REGISTRY_ERROR, "the response is larger than the 33554432-byte limit"]),
        )
        .await
    }
    endless_chunked_blob(w) {
        w.on_path(
            "endless chunked blob",
            w.blob_path(),
            || Fault::Endless,
            deny(&[REGISTRY_ERROR, "the response is larger than the 33554432-byte limit"]),
        )
        .await
    }

    // Content that is not what was asked for.
    blob_whose_digest_does_not_match(w) {
        w.on_path(
            "blob whose digest does not match",
            w.blob_path(),
            || Fault::body("application/octet-stream", b"substituted content".to_vec()),
            deny(&[REGISTRY_ERROR, "does not match the requested"]),
        )
        .await
    }

    // Redirects: a loop is an error; another host serving the right bytes (a CDN) is fine
    // because the digest is checked; another host serving other bytes is a digest mismatch.
    redirect_loop(w) {
        let proxy_self: Rule = {
            let path = w.image_path();
            Arc::new(move |_, p| (p == path).then(|| Fault::Redirect(p.to_owned())))
        };
        w.proxied("redirect loop", proxy_self, deny(&[REGISTRY_ERROR, "too many redirects"])).await
    }
    redirect_of_a_blob_to_another_host_same_bytes(w) {
        let to_cdn: Rule = {
            let (path, to) = (w.blob_path(), format!("http://{}{}", w.registry.host, w.blob_path()));
            Arc::new(move |_, p| (p == path).then(|| Fault::Redirect(to.clone())))
        };
        w.proxied("redirect of a blob to another host (same bytes)", to_cdn, Expect::Allow).await
    }
    redirect_of_a_blob_to_another_host_other_bytes(w) {
        let other = FaultProxy::start(
            &w.registry.host,
            Arc::new(|_, _| Some(Fault::body("application/octet-stream", b"other host, other bytes".to_vec()))),
        )
        .await;
        let to_evil: Rule = {
            let (path, to) = (w.blob_path(), format!("http://{}{}", other.host, w.blob_path()));
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
        evil
    }

    // Malformed JSON and wrong media types.
    malformed_json_signature_manifest(w) {
        w.on_path(
            "malformed JSON signature manifest",
            w.sig_path(),
            || Fault::body(OCI_MANIFEST, b"{\"schemaVersion\": 2, \"layers\": [".to_vec()),
            deny(&[REGISTRY_ERROR, "not JSON"]),
        )
        .await
    }
    malformed_json_referrers_index_fallback_tag(w) {
        w.on_path(
            "malformed JSON referrers index (fallback tag)",
            w.fallback_path(),
            || Fault::body(OCI_INDEX, b"{\"manifests\": [{\"digest\": ".to_vec()),
            deny(&[REGISTRY_ERROR, "not JSON"]),
        )
        .await
    }
    signature_manifest_with_an_html_media_type(w) {
        w.on_path(
            "signature manifest with an HTML media type",
            w.sig_path(),
            || Fault::body("text/html", b"<html>login</html>".to_vec()),
            deny(&[REGISTRY_ERROR, "not JSON"]),
        )
        .await
    }
    signature_manifest_that_is_json_but_not_a_manifest(w) {
        w.on_path(
            "signature manifest that is JSON but not a manifest",
            w.sig_path(),
            || Fault::body(OCI_MANIFEST, br#"{"layers": "not a list"}"#.to_vec()),
            deny(&[REGISTRY_ERROR, "not an image manifest"]),
        )
        .await
    }

    // A malformed image index (under `platforms: every-platform`, which reads it), served for
    // the tag and for its digest.
    malformed_json_image_index(w) {
        let broken_index =
            br#"{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": ["#;
        let by_digest = w.manifest_path(&sha256(broken_index));
        let index_rule: Rule = {
            let image = w.image_path();
            Arc::new(move |_, p| (p == image || p == by_digest).then(|| Fault::body(OCI_INDEX, broken_index.to_vec())))
        };
        let mut index = w.proxied("malformed JSON image index", index_rule, deny(&[])).await;
        index.extra = "  platforms: every-platform\n";
        index.expect =
            deny(&[REGISTRY_ERROR, "/team/app@sha256:", "the image index is not JSON: EOF while parsing a list"]);
        index
    }

    // An index served as if it were a plain manifest (wrong media type) must not skip the
    // platform checks of `platforms: every-platform`: its unsigned platform is still found.
    image_index_with_an_unsigned_platform_control(w) {
        let mut control =
            w.proxied("image index with an unsigned platform (control)", Arc::new(|_, _| None), deny(&[])).await;
        control.image = "team/app:half";
        control.extra = "  platforms: every-platform\n";
        control.expect = deny(&["platform linux/amd64 (sha256:", "no signatures found"]);
        control
    }
    image_index_served_with_a_manifest_media_type(w) {
        let retyped: Rule = {
            let (tag, by_digest) = (w.manifest_path("half"), w.manifest_path(&w.half_index));
            Arc::new(move |_, p| (p == tag || p == by_digest).then_some(Fault::Retype(OCI_MANIFEST)))
        };
        let mut half = w.proxied("image index served with a manifest media type", retyped, deny(&[])).await;
        half.image = "team/app:half";
        half.extra = "  platforms: every-platform\n";
        half.expect = deny(&["platform linux/amd64 (sha256:", "no signatures found"]);
        half
    }

    // The registry client's own timeout, shorter than the review deadline, also ends a hang.
    hang_client_timeout_before_the_deadline(w) {
        let mut timeout =
            w.on_path("hang, client timeout before the deadline", w.sig_path(), || Fault::Hang, deny(&[])).await;
        timeout.config.timeout = Some(Duration::from_secs(1));
        timeout.expect = deny(&[REGISTRY_ERROR, "manifests/sha256-", "operation timed out"]);
        timeout.deadline = Duration::from_secs(4);
        timeout
    }

    // Hostile signature content (no proxy fault; pushed that way).
    signature_layer_with_garbage_base64(w) {
        let mut b64 = w.proxied("signature layer with garbage base64", Arc::new(|_, _| None), deny(&[])).await;
        b64.image = "team/b64:v1";
        b64.expect = deny(&["the signature annotation is not base64"]);
        b64
    }
    certificate_chain_that_does_not_parse(w) {
        let mut chain = w.proxied("certificate chain that does not parse", Arc::new(|_, _| None), deny(&[])).await;
        chain.image = "team/chain:v1";
        chain.authorities = KEYLESS;
        chain.expect = deny(&["layer 0: malformed Sigstore bundle", "dev.sigstore.cosign/chain: PEM is not base64"]);
        chain
    }

    // TLS: the handshake is refused, with the reason.
    tls_unknown_ca(w) { tls("TLS: unknown CA", BadCert::UnknownCa, "invalid peer certificate: UnknownIssuer").await }
    tls_wrong_name(w) {
        tls(
            "TLS: wrong name",
            BadCert::WrongName,
            "invalid peer certificate: certificate not valid for name \"127.0.0.1\"",
        )
        .await
    }
    tls_expired(w) { tls("TLS: expired", BadCert::Expired, "invalid peer certificate: certificate expired").await }
}
