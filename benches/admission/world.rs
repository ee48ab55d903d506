//! The images the benchmark reviews, pushed to the test registry and signed in cosign's
//! legacy `.sig` format: key-based (one or several keys), keyless (the test Sigstore), and
//! thousands of distinct digests cheaply (shared blobs, one manifest and one signature each).

use futures_util::StreamExt as _;
use serde_json::json;

use crate::support::sigstore::{KeylessSigner, MiniSigstore};
use crate::support::{OCI_CONFIG, OCI_MANIFEST, Pusher, Signer, cjson, sha256};

/// Push an image with unique `content` tagged `tag`, signed by every one of `signers` (one
/// `.sig` layer each), the signatures naming `host/repo`; returns its digest.
pub async fn signed(push: &Pusher, host: &str, repo: &str, tag: &str, content: &str, signers: &[&Signer]) -> String {
    let (digest, _) = push.image(repo, tag, content).await;
    let layers: Vec<_> =
        signers.iter().map(|s| s.signature_layer(Signer::payload(&format!("{host}/{repo}"), &digest))).collect();
    push.artifact(repo, &format!("{}.sig", digest.replace(':', "-")), &layers).await;
    digest
}

/// Push an image signed keyless by `signer` (a Fulcio leaf of the test Sigstore, with its
/// Rekor entry); returns its digest.
pub async fn keyless(
    push: &Pusher,
    sigstore: &MiniSigstore,
    signer: &KeylessSigner,
    repo: &str,
    content: &str,
) -> String {
    let (digest, _) = push.image(repo, "v1", content).await;
    let payload = MiniSigstore::payload(&format!("{}/{repo}", push.host), &digest);
    let layer = sigstore.signature_layer(signer, payload);
    push.artifact(repo, &format!("{}.sig", digest.replace(':', "-")), &[layer]).await;
    digest
}

/// Push `n` distinct images in `repo` (shared config and layer; the manifests differ by an
/// annotation), each signed by `signer`; returns their digests.
pub async fn many(push: &Pusher, repo: &str, n: usize, signer: &Signer) -> Vec<String> {
    let layer = b"one layer for all".to_vec();
    let config = cjson(
        &json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [sha256(&layer)]}}),
    );
    let config_digest = push.blob(repo, &config).await;
    let layer_digest = push.blob(repo, &layer).await;
    let empty = b"{}".to_vec();
    let empty_digest = push.blob(repo, &empty).await;
    let reference = format!("{}/{repo}", push.host);
    futures_util::stream::iter(0..n)
        .map(|i| {
            let (config_digest, layer_digest, empty_digest, reference) =
                (config_digest.clone(), layer_digest.clone(), empty_digest.clone(), reference.clone());
            let (config_len, layer_len, empty_len) = (config.len(), layer.len(), empty.len());
            async move {
                let manifest = cjson(&json!({
                    "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": OCI_CONFIG, "size": config_len, "digest": config_digest},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "size": layer_len, "digest": layer_digest}],
                    "annotations": {"bench.index": i.to_string()}
                }));
                let digest = push.manifest(repo, &format!("n{i}"), &manifest, OCI_MANIFEST).await;
                let (payload, media_type, annotations) = signer.signature_layer(Signer::payload(&reference, &digest));
                let payload_digest = push.blob(repo, &payload).await;
                let signature = cjson(&json!({
                    "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": OCI_CONFIG, "size": empty_len, "digest": empty_digest},
                    "layers": [{"mediaType": media_type, "size": payload.len(), "digest": payload_digest, "annotations": annotations}]
                }));
                push.manifest(repo, &format!("{}.sig", digest.replace(':', "-")), &signature, OCI_MANIFEST).await;
                digest
            }
        })
        .buffer_unordered(16)
        .collect()
        .await
}
