//! The registry client and signature discovery against real registries on 127.0.0.1:
//! Debian's docker-registry (no referrers API: the fallback tag) and ferro-oci-server
//! (OCI 1.1 referrers API).

use crate::support;

use portcullis::image::{Digest, ImageRef};
use portcullis::verify::discovery::{ANN_SIGNATURE, Wanted, discover};
use portcullis::verify::registry::{Registry, RegistryConfig, RegistryError};
use support::{BUNDLE_V03, Kind, Pusher, Signer, TestRegistry};

fn client(host: &str) -> Registry {
    Registry::new(RegistryConfig { insecure: vec![host.to_owned()], ..Default::default() }).expect("client")
}

async fn discovery_on(kind: Kind) {
    let registry = TestRegistry::start(kind).await;
    let push = Pusher::new(&registry.host);
    let (digest, raw) = push.image("team/app", "v1", "hello").await;
    let signer = Signer::new();
    let reference = format!("{}/team/app", registry.host);
    let sig_tag = format!("{}.sig", digest.replace(':', "-"));
    push.artifact("team/app", &sig_tag, &[signer.signature_layer(Signer::payload(&reference, &digest))]).await;
    push.referrer("team/app", &digest, &raw, BUNDLE_V03, &signer.signature_bundle(&digest)).await;

    let client = client(&registry.host);
    let image = ImageRef::parse(&format!("{reference}:v1")).expect("ref");
    let resolved = client.resolve(image.registry(), image.repository(), "v1").await.expect("resolves");
    assert_eq!(resolved.to_string(), digest);
    let evidence = discover(&client, &image, &resolved, Wanted::ALL).await.expect("discovers");
    assert_eq!(evidence.signatures.len(), 1, "{:?}", evidence.looked);
    assert!(evidence.signatures[0].annotation(ANN_SIGNATURE).is_some());
    assert!(evidence.attestations.is_empty());
    assert_eq!(evidence.bundles.len(), 1, "{:?}", evidence.looked);
    let via = if kind == Kind::Ferro { "(referrers API)" } else { "(referrers fallback tag sha256-" };
    assert!(evidence.bundles[0].location.to_string().contains(via), "{}", evidence.bundles[0].location);
    let typed = matches!(evidence.bundles[0].location, portcullis::verify::discovery::Location::Referrer { .. });
    assert_eq!(typed, kind == Kind::Ferro, "{:?}", evidence.bundles[0].location);
    assert!(client.requests() > 0);

    // Nothing signed: discovery finds nothing and says where it looked.
    let (bare, _) = push.image("team/bare", "v1", "bare").await;
    let bare_image = ImageRef::parse(&format!("{}/team/bare:v1", registry.host)).expect("ref");
    let empty =
        discover(&client, &bare_image, &Digest::parse(&bare).expect("digest"), Wanted::ALL).await.expect("discovers");
    assert!(empty.signatures.is_empty() && empty.bundles.is_empty());
    assert!(empty.looked.iter().any(|l| l.ends_with(".sig: absent")), "{:?}", empty.looked);

    // Missing repositories and tags are registry errors with the status, not "unsigned".
    let err = client.resolve(image.registry(), "team/missing", "v1").await.expect_err("404");
    assert!(matches!(err, RegistryError::Status { status: 404, .. }), "{err}");
}

crate::on_both_registries!(discovery_on: discovery_with_docker_distribution, discovery_with_ferro_referrers_api);

#[tokio::test]
async fn unreachable_registries_are_errors() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("a").port();
    let host = format!("127.0.0.1:{port}");
    let err = client(&host).resolve(&host, "a/b", "v1").await.expect_err("nothing listens");
    assert!(matches!(err, RegistryError::Transport { .. }), "{err}");
    assert!(err.to_string().contains(&host), "{err}");
}

/// The registry fault matrix (issue 15): one module, in this binary.
mod faults;
