use super::*;

const KEY: &str = include_str!("../../../policies/tests/keys/release.key");
const PUB: &str = include_str!("../../../policies/keys/release.pub");

fn requirement(pem: &str) -> Requirement {
    Requirement { pem: pem.to_owned(), path: PathBuf::from("release.pub") }
}

/// The files of a directory `d`, signed with `KEY`.
fn signed_files() -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = vec![
        (PathBuf::from("d/a.yaml"), b"kind: ImagePolicy\n".to_vec()),
        (PathBuf::from("d/keys/release.pub"), PUB.as_bytes().to_vec()),
    ];
    let manifest = manifest(Path::new("d"), &files).expect("manifest");
    files.push((PathBuf::from("d").join(MANIFEST_FILE), manifest.clone().into_bytes()));
    files.push((PathBuf::from("d").join(SIGNATURE_FILE), sign(KEY, manifest.as_bytes()).expect("sign").into_bytes()));
    files
}

#[test]
fn the_manifest_is_sorted_hashed_and_leaves_out_the_signature_files() {
    let files = signed_files();
    let text = manifest(Path::new("d"), &files).expect("manifest");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "portcullis-policy-set v1");
    let hex: String = Sha256::digest(b"kind: ImagePolicy\n").iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(lines[1], format!("{hex}  a.yaml"));
    assert!(lines[2].ends_with("  keys/release.pub"), "{text}");
    assert_eq!(lines.len(), 3, "{text}");
}

#[test]
fn a_signed_set_verifies() {
    verify(&requirement(PUB), Path::new("d"), &signed_files()).expect("verifies");
}

#[test]
fn one_changed_byte_is_refused_and_named() {
    let mut files = signed_files();
    files[0].1 = b"kind: ImagePolicY\n".to_vec();
    let err = verify(&requirement(PUB), Path::new("d"), &files).expect_err("changed");
    assert!(err.to_string().contains("a.yaml changed"), "{err}");
}

#[test]
fn an_added_or_removed_file_is_refused() {
    let mut added = signed_files();
    added.push((PathBuf::from("d/extra.yaml"), b"kind: ImagePolicy\n".to_vec()));
    let err = verify(&requirement(PUB), Path::new("d"), &added).expect_err("added");
    assert!(err.to_string().contains("extra.yaml added"), "{err}");
    let mut removed = signed_files();
    removed.remove(1);
    let err = verify(&requirement(PUB), Path::new("d"), &removed).expect_err("removed");
    assert!(err.to_string().contains("keys/release.pub removed"), "{err}");
    // Without the committed manifest to compare, still refused.
    removed.retain(|(p, _)| !p.ends_with(MANIFEST_FILE));
    assert!(matches!(verify(&requirement(PUB), Path::new("d"), &removed), Err(SignedError::BadSignature { .. })));
}

#[test]
fn another_key_or_no_signature_is_refused() {
    let other = aws_lc_rs::signature::EcdsaKeyPair::generate(&aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING)
        .expect("key");
    use aws_lc_rs::encoding::AsDer as _;
    use aws_lc_rs::signature::KeyPair as _;
    let der = other.public_key().as_der().expect("der");
    let other_pem = format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", B64.encode(der.as_ref()));
    let err = verify(&requirement(&other_pem), Path::new("d"), &signed_files()).expect_err("other key");
    assert!(matches!(err, SignedError::BadSignature { .. }), "{err}");
    let mut unsigned = signed_files();
    unsigned.retain(|(p, _)| !p.ends_with(SIGNATURE_FILE));
    assert!(matches!(verify(&requirement(PUB), Path::new("d"), &unsigned), Err(SignedError::Missing { .. })));
}

#[test]
fn named_key_files_must_be_signed_files_with_the_signed_bytes() {
    let files = signed_files();
    let mut read = BTreeMap::new();
    read.insert(PathBuf::from("d/sub/../keys/release.pub"), PUB.as_bytes().to_vec());
    check_named_files(Path::new("d"), &files, &read).expect("inside, same bytes");
    read.insert(PathBuf::from("d/../outside.pub"), PUB.as_bytes().to_vec());
    let err = check_named_files(Path::new("d"), &files, &read).expect_err("outside");
    assert!(matches!(err, SignedError::OutsideTheSet { .. }), "{err}");
    let mut swapped = BTreeMap::new();
    swapped.insert(PathBuf::from("d/keys/release.pub"), b"another key".to_vec());
    assert!(check_named_files(Path::new("d"), &files, &swapped).is_err());
}
