use serde_json::json;

use super::*;

/// A layout in a temporary directory; `add` writes a blob and returns its digest.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(entries: impl FnOnce(&Self) -> Vec<Value>) -> Self {
        let fixture = Self { dir: tempfile::tempdir().expect("tempdir") };
        std::fs::create_dir_all(fixture.dir.path().join("blobs/sha256")).expect("blobs");
        std::fs::write(fixture.dir.path().join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("marker");
        let manifests = entries(&fixture);
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
        std::fs::write(fixture.dir.path().join("index.json"), index.to_string()).expect("index");
        fixture
    }

    fn add(&self, bytes: &[u8]) -> Digest {
        let digest = sha256_digest(bytes);
        std::fs::write(self.dir.path().join("blobs/sha256").join(digest.hex()), bytes).expect("blob");
        digest
    }

    fn open(&self) -> Layout {
        Layout::open(self.dir.path()).expect("layout")
    }
}

fn manifest(subject: Option<&Digest>) -> Vec<u8> {
    let mut m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", "size": 2}, "layers": []});
    if let Some(subject) = subject {
        m["subject"] = json!({"mediaType": OCI_MANIFEST, "digest": subject.to_string(), "size": 1});
        m["artifactType"] = json!("application/vnd.dev.sigstore.bundle.v0.3+json");
    }
    serde_json::to_vec(&m).expect("json")
}

fn entry(digest: &Digest, annotations: Value) -> Value {
    json!({"mediaType": OCI_MANIFEST, "digest": digest.to_string(), "size": 1, "annotations": annotations})
}

#[test]
fn tags_are_ref_names_and_manifests_are_read_by_digest() {
    let image = manifest(None);
    let f = Fixture::new(|f| {
        let d = f.add(&image);
        vec![entry(&d, json!({REF_NAME: "registry.example.com/team/app:v1"}))]
    });
    let layout = f.open();
    let digest = sha256_digest(&image);
    assert_eq!(layout.resolve("v1").expect("tag"), digest);
    let got = layout.manifest(&digest.to_string()).expect("read").expect("present");
    assert_eq!((got.bytes, got.media_type.as_str()), (image, OCI_MANIFEST));
    assert!(layout.manifest("v2").expect("read").is_none());
    assert!(layout.manifest(&sha256_digest(b"other").to_string()).expect("read").is_none());
}

#[test]
fn a_tampered_blob_is_a_digest_mismatch() {
    let image = manifest(None);
    let f = Fixture::new(|f| vec![entry(&f.add(&image), json!({REF_NAME: "v1"}))]);
    let digest = sha256_digest(&image);
    std::fs::write(f.dir.path().join("blobs/sha256").join(digest.hex()), b"{\"tampered\":1}").expect("write");
    let layout = f.open();
    assert!(matches!(layout.manifest("v1"), Err(RegistryError::DigestMismatch { .. })));
    assert!(matches!(layout.blob(&digest, 1024), Err(RegistryError::DigestMismatch { .. })));
}

#[test]
fn the_size_limit_is_kept() {
    let f = Fixture::new(|_| Vec::new());
    let digest = f.add(&[b'x'; 100]);
    assert!(matches!(f.open().blob(&digest, 99), Err(RegistryError::TooLarge { limit: 99, .. })));
    assert_eq!(f.open().blob(&digest, 100).expect("at the limit").len(), 100);
}

#[test]
fn cosign_save_entries_answer_the_sig_and_att_tags_of_their_image() {
    let image = manifest(None);
    let sigs = serde_json::to_vec(&json!({"schemaVersion": 2, "layers": [], "n": "sigs"})).expect("json");
    let f = Fixture::new(|f| {
        vec![
            entry(&f.add(&image), json!({COSIGN_KIND: COSIGN_IMAGE})),
            entry(&f.add(&sigs), json!({COSIGN_KIND: COSIGN_SIGS})),
        ]
    });
    let layout = f.open();
    let image_digest = sha256_digest(&image);
    let tag = format!("sha256-{}.sig", image_digest.hex());
    assert_eq!(layout.resolve(&tag).expect("sig tag"), sha256_digest(&sigs));
    assert!(layout.manifest(&format!("sha256-{}.att", image_digest.hex())).expect("read").is_none());
    let other = format!("sha256-{}.sig", sha256_digest(b"another image").hex());
    assert!(layout.manifest(&other).expect("read").is_none(), "the sigs belong to the layout's image only");
}

#[test]
fn referrers_are_the_listed_manifests_with_that_subject() {
    let image = manifest(None);
    let image_digest = sha256_digest(&image);
    let referrer = manifest(Some(&image_digest));
    let unrelated = manifest(Some(&sha256_digest(b"another image")));
    let f = Fixture::new(|f| {
        vec![
            entry(&f.add(&image), json!({REF_NAME: "v1"})),
            entry(&f.add(&referrer), json!({})),
            entry(&f.add(&unrelated), json!({})),
        ]
    });
    let layout = f.open();
    let index = layout.referrers(&image_digest).expect("read").expect("some");
    let listed: Vec<&str> =
        index["manifests"].as_array().expect("list").iter().filter_map(|m| m["digest"].as_str()).collect();
    assert_eq!(listed, [sha256_digest(&referrer).to_string()]);
    assert_eq!(index["manifests"][0]["artifactType"], "application/vnd.dev.sigstore.bundle.v0.3+json");
    assert!(layout.referrers(&sha256_digest(&referrer)).expect("read").is_none());
}

#[test]
fn a_directory_that_is_not_a_layout_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(Layout::open(dir.path()).is_err());
    std::fs::write(dir.path().join("oci-layout"), r#"{"imageLayoutVersion":"2.0"}"#).expect("write");
    std::fs::write(dir.path().join("index.json"), "{}").expect("write");
    let err = Layout::open(dir.path()).expect_err("wrong version");
    assert!(err.to_string().contains("imageLayoutVersion 1.0.0"), "{err}");
}
