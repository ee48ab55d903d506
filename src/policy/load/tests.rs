use std::path::Path;
use std::sync::Arc;

use sigstore_trust_root::{SIGSTORE_PRODUCTION_TRUSTED_ROOT, SIGSTORE_STAGING_TRUSTED_ROOT};

use super::*;
use crate::policy::ImagePolicy;

const DIGEST_ONLY: &str = "\
apiVersion: portcullis.dev/v1alpha1
kind: ImagePolicy
metadata: {name: signed}
spec:
  images: ['ghcr.io/acme/**']
";

fn keyed(key_path: &Path) -> String {
    format!(
        "{DIGEST_ONLY}  authorities:\n    - name: release\n      key: {{publicKeyFile: {}}}\n      transparencyLog: skip\n",
        key_path.display()
    )
}

fn public_key() -> String {
    rcgen::KeyPair::generate().expect("key pair").public_key_pem()
}

/// Write then rename, so no check sees half a file (unless a test wants one).
fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

fn served(published: &Published) -> Arc<PolicySet> {
    Arc::clone(&published.policies.borrow())
}

fn only_image_policy(set: &PolicySet) -> &ImagePolicy {
    assert_eq!(set.images.len(), 1, "{set:?}");
    &set.images[0]
}

#[test]
fn a_policy_file_without_a_document_is_an_error_that_names_the_fix() {
    for text in ["", "  \n\n", "# policies go here\n", "---\n", "---\n# later\n---\n...\n"] {
        let dir = tempfile::tempdir().expect("tempdir");
        write(&dir.path().join("ok.yaml"), DIGEST_ONLY);
        std::fs::write(dir.path().join("emptied.yaml"), text).expect("write");
        let error = PolicyDir::new(dir.path()).load().expect_err("an empty file does not load");
        let message = error.to_string();
        assert!(matches!(error, LoadError::EmptyFile { .. }), "{text:?}: {message}");
        assert!(message.contains("emptied.yaml") && message.contains("delete the file"), "{message}");
    }
    // A single file (`portcullis verify --policy FILE`) is held to the same rule.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("p.yaml"), "# nothing yet\n").expect("write");
    let error = load_file(&dir.path().join("p.yaml"), &CelEnv::new()).expect_err("empty");
    assert!(error.to_string().contains("p.yaml holds no policy document"), "{error}");
}

#[test]
fn other_files_may_be_empty_and_an_empty_directory_loads() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("README.md"), "").expect("write");
    let (set, _) = PolicyDir::new(dir.path()).load().expect("loads");
    assert!(set.is_empty());
}

#[test]
fn a_change_loads_only_after_two_checks_see_the_same_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = tempfile::tempdir().expect("tempdir");
    let key = keys.path().join("release.pub");
    write(&key, &public_key());
    let file = dir.path().join("signed.yaml");
    write(&file, &keyed(&key));
    let (mut reloader, published) = Reloader::new(PolicyDir::new(dir.path())).expect("first load");
    assert!(only_image_policy(&served(&published)).needs_verification());
    assert_eq!(reloader.check(), Check::Unchanged);

    // The file is being rewritten: a check catches it cut before `authorities:` (a valid,
    // weaker policy). It is recorded, not loaded.
    std::fs::write(&file, DIGEST_ONLY).expect("write");
    assert_eq!(reloader.check(), Check::Pending);
    assert!(published.status.borrow().pending_since.is_some());
    assert!(only_image_policy(&served(&published)).needs_verification(), "the cut file is not served");
    // The writer keeps going: changed again by the next check, still not loaded.
    std::fs::write(&file, keyed(&key).replace("skip\n", "skip\n  platforms: every-platform\n")).expect("write");
    assert_eq!(reloader.check(), Check::Pending);
    // Done writing: the next check sees the same bytes and loads them.
    assert_eq!(reloader.check(), Check::Reloaded { policies: 1 });
    let set = served(&published);
    let policy = only_image_policy(&set);
    assert!(policy.needs_verification() && policy.platforms == crate::policy::Platforms::EveryPlatform);
    let status = published.status.borrow().clone();
    assert!(status.pending_since.is_none() && status.last_error.is_none() && status.reloads_ok == 2, "{status:?}");
}

#[test]
fn a_file_that_changes_at_every_check_is_never_loaded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = tempfile::tempdir().expect("tempdir");
    let key = keys.path().join("release.pub");
    write(&key, &public_key());
    let file = dir.path().join("signed.yaml");
    write(&file, &keyed(&key));
    let (mut reloader, published) = Reloader::new(PolicyDir::new(dir.path())).expect("first load");
    // Two weaker versions alternating: never the same on two consecutive checks.
    for round in 0..6 {
        let text = if round % 2 == 0 { DIGEST_ONLY.to_owned() } else { DIGEST_ONLY.replace("acme", "other") };
        std::fs::write(&file, text).expect("write");
        assert_eq!(reloader.check(), Check::Pending, "round {round}");
    }
    assert!(only_image_policy(&served(&published)).needs_verification());
    assert_eq!(published.status.borrow().reloads_ok, 1);
}

#[test]
fn an_emptied_file_is_refused_and_undoing_it_clears_the_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("prod.yaml");
    write(&file, DIGEST_ONLY);
    let (mut reloader, published) = Reloader::new(PolicyDir::new(dir.path())).expect("first load");
    std::fs::write(&file, "").expect("truncate");
    assert_eq!(reloader.check(), Check::Pending);
    let Check::Failed(error) = reloader.check() else { panic!("an emptied file must not load") };
    assert!(error.contains("prod.yaml holds no policy document"), "{error}");
    assert_eq!(served(&published).len(), 1);
    let status = published.status.borrow().clone();
    assert!(status.last_error.is_some() && status.reloads_failed == 1 && status.pending_since.is_none(), "{status:?}");
    // Retried while the directory stays like this, counted once.
    assert!(matches!(reloader.check(), Check::Failed(_)));
    assert_eq!(published.status.borrow().reloads_failed, 1);
    // Put back as it was: the served set matches the directory again, nothing is wrong.
    write(&file, DIGEST_ONLY);
    assert_eq!(reloader.check(), Check::Unchanged);
    assert!(published.status.borrow().last_error.is_none());
}

#[test]
fn a_reload_to_zero_policies_needs_allow_empty() {
    for allow in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("prod.yaml");
        write(&file, DIGEST_ONLY);
        let (mut reloader, published) =
            Reloader::new(PolicyDir::new(dir.path()).allow_empty(allow)).expect("first load");
        std::fs::remove_file(&file).expect("remove");
        assert_eq!(reloader.check(), Check::Pending);
        match (allow, reloader.check()) {
            (false, Check::Failed(error)) => {
                assert!(error.contains("no policies at all") && error.contains("--allow-empty-policies"), "{error}");
                assert_eq!(served(&published).len(), 1, "the last good set is kept");
            }
            (true, Check::Reloaded { policies: 0 }) => assert!(served(&published).is_empty()),
            (allow, other) => panic!("allow_empty {allow}: {other:?}"),
        }
    }
}

#[test]
fn starting_empty_works_and_stays_empty_without_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut reloader, published) = Reloader::new(PolicyDir::new(dir.path())).expect("an empty directory loads");
    assert!(served(&published).is_empty());
    // Not a drop to zero: the set was empty already.
    std::fs::write(dir.path().join("notes.txt"), "x").expect("write");
    assert_eq!(reloader.check(), Check::Pending);
    assert_eq!(reloader.check(), Check::Reloaded { policies: 0 });
    write(&dir.path().join("prod.yaml"), DIGEST_ONLY);
    assert_eq!(reloader.check(), Check::Pending);
    assert_eq!(reloader.check(), Check::Reloaded { policies: 1 });
}

#[test]
fn key_files_and_trusted_roots_are_read_at_load_into_the_fingerprint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = tempfile::tempdir().expect("tempdir");
    let (key, root) = (keys.path().join("release.pub"), keys.path().join("root.json"));
    let pem = public_key();
    write(&key, &pem);
    write(&root, SIGSTORE_PRODUCTION_TRUSTED_ROOT);
    let text = keyed(&key)
        .replace("      transparencyLog", &format!("      trustedRoot: {}\n      transparencyLog", root.display()));
    write(&dir.path().join("signed.yaml"), &text);
    let (set, _) = PolicyDir::new(dir.path()).load().expect("loads");
    let policy = only_image_policy(&set);
    let files = &policy.authorities[0].files;
    assert_eq!(files.key.as_ref().map(|f| &*f.text), Some(pem.as_str()));
    assert_eq!(files.trusted_root.as_ref().map(|f| &*f.text), Some(SIGSTORE_PRODUCTION_TRUSTED_ROOT));
    assert_eq!(set.referenced_files(), vec![key.clone(), root.clone()]);

    // Same files, same fingerprint; another key or root, another fingerprint (another cache key).
    let again = PolicyDir::new(dir.path()).load().expect("loads").0;
    assert_eq!(only_image_policy(&again).fingerprint, policy.fingerprint);
    write(&key, &public_key());
    let rotated = PolicyDir::new(dir.path()).load().expect("loads").0;
    assert_ne!(only_image_policy(&rotated).fingerprint, policy.fingerprint);
    write(&root, SIGSTORE_STAGING_TRUSTED_ROOT);
    let rerooted = PolicyDir::new(dir.path()).load().expect("loads").0;
    assert_ne!(only_image_policy(&rerooted).fingerprint, only_image_policy(&rotated).fingerprint);
}

#[test]
fn a_key_file_outside_the_directory_is_rechecked_at_every_reload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = tempfile::tempdir().expect("tempdir");
    let key = keys.path().join("release.pub");
    write(&key, &public_key());
    write(&dir.path().join("signed.yaml"), &keyed(&key));
    let (mut reloader, published) = Reloader::new(PolicyDir::new(dir.path())).expect("first load");
    let before = only_image_policy(&served(&published)).fingerprint;
    assert_eq!(reloader.check(), Check::Unchanged);
    // Rotated: the directory did not change, the key did.
    let rotated = public_key();
    write(&key, &rotated);
    assert_eq!(reloader.check(), Check::Pending);
    assert_eq!(reloader.check(), Check::Reloaded { policies: 1 });
    let set = served(&published);
    let policy = only_image_policy(&set);
    assert_ne!(policy.fingerprint, before);
    assert_eq!(policy.authorities[0].files.key.as_ref().map(|f| &*f.text), Some(rotated.as_str()));

    // Revoked by deleting it: the reload fails naming policy, authority and path; the loaded key
    // stays in the served set (nothing reads the disk while verifying).
    std::fs::remove_file(&key).expect("remove");
    assert_eq!(reloader.check(), Check::Pending);
    let Check::Failed(error) = reloader.check() else { panic!("a missing key file must not load") };
    for part in ["policy \"signed\"", "authority \"release\"", "publicKeyFile", &key.display().to_string()] {
        assert!(error.contains(part), "{part}: {error}");
    }
    assert_eq!(
        served(&published).images[0].authorities[0].files.key.as_ref().map(|f| &*f.text),
        Some(rotated.as_str())
    );
}

#[test]
fn missing_or_unusable_key_files_and_trusted_roots_are_load_errors() {
    let keys = tempfile::tempdir().expect("tempdir");
    let missing = keys.path().join("absent.pub");
    let error = load_text(&keyed(&missing), "p.yaml", keys.path(), &CelEnv::new()).expect_err("missing key");
    let message = error.to_string();
    assert!(message.starts_with("p.yaml:1: policy \"signed\": authority \"release\": publicKeyFile"), "{message}");
    assert!(message.contains("absent.pub: cannot read it") && message.contains("restore the file"), "{message}");

    let garbage = keys.path().join("garbage.pub");
    write(&garbage, "-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n");
    let error = load_text(&keyed(&garbage), "p.yaml", keys.path(), &CelEnv::new()).expect_err("garbage key");
    assert!(error.to_string().contains("it must hold the PEM public key"), "{error}");

    let key = keys.path().join("release.pub");
    write(&key, &public_key());
    let with_root = |root: &str| {
        keyed(&key).replace("      transparencyLog", &format!("      trustedRoot: {root}\n      transparencyLog"))
    };
    let error = load_text(&with_root("absent-root.json"), "p.yaml", keys.path(), &CelEnv::new()).expect_err("missing");
    assert!(error.to_string().contains("trustedRoot") && error.to_string().contains("absent-root.json"), "{error}");
    write(&keys.path().join("garbage-root.json"), "{\"mediaType\": 1}");
    let error = load_text(&with_root("garbage-root.json"), "p.yaml", keys.path(), &CelEnv::new()).expect_err("garbage");
    assert!(error.to_string().contains("not a valid trusted_root.json"), "{error}");
    let big = keys.path().join("big.pub");
    std::fs::write(&big, vec![b'a'; MAX_KEY_BYTES as usize + 1]).expect("write");
    let error = load_text(&keyed(&big), "p.yaml", keys.path(), &CelEnv::new()).expect_err("too large");
    assert!(error.to_string().contains("larger than"), "{error}");
}

#[test]
fn policy_test_documents_are_skipped_but_do_not_hide_an_empty_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(&dir.path().join("p.yaml"), DIGEST_ONLY);
    std::fs::create_dir(dir.path().join("tests")).expect("mkdir");
    let case = "apiVersion: portcullis.dev/v1alpha1\nkind: PolicyTest\nmetadata: {name: t}\nspec: {}\n";
    write(&dir.path().join("tests/t.yaml"), case);
    let (set, _) = PolicyDir::new(dir.path()).load().expect("a file of test cases is not an empty policy file");
    assert_eq!(set.len(), 1, "{set:?}");
    // A policy beside a test case in one file still loads.
    write(&dir.path().join("tests/t.yaml"), &format!("{case}---\n{}", DIGEST_ONLY.replace("signed", "second")));
    assert_eq!(PolicyDir::new(dir.path()).load().expect("load").0.len(), 2);
    // A blank file is still refused.
    write(&dir.path().join("tests/t.yaml"), "# nothing yet\n");
    let error = PolicyDir::new(dir.path()).load().expect_err("blank");
    assert!(matches!(error, LoadError::EmptyFile { .. }), "{error}");
}
