//! Hostile policy directories: too many files or bytes, symlink loops, deep nesting, links out.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

use super::*;

const POLICY: &str = "\
apiVersion: portcullis.dev/v1alpha1
kind: ImagePolicy
metadata: {name: signed}
spec:
  images: ['ghcr.io/acme/**']
";

fn load(dir: &Path) -> Result<usize, LoadError> {
    PolicyDir::new(dir).load().map(|(set, _)| set.len())
}

#[test]
fn ten_thousand_files_are_refused_with_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    for i in 0..10_000 {
        std::fs::write(dir.path().join(format!("p{i:05}.yaml")), POLICY).expect("write");
    }
    let started = Instant::now();
    let error = load(dir.path()).expect_err("too many files");
    assert!(matches!(error, LoadError::TooManyFiles { ref path } if path == dir.path()), "{error}");
    assert!(error.to_string().contains("more than 2000 files"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
}

#[test]
fn a_directory_at_the_file_limit_loads() {
    let dir = tempfile::tempdir().expect("tempdir");
    for i in 0..MAX_FILES - 1 {
        std::fs::write(dir.path().join(format!("notes-{i}.txt")), "x").expect("write");
    }
    std::fs::write(dir.path().join("p.yaml"), POLICY).expect("write");
    assert_eq!(load(dir.path()).expect("loads"), 1);
    std::fs::write(dir.path().join("one-more.txt"), "x").expect("write");
    assert!(matches!(load(dir.path()), Err(LoadError::TooManyFiles { .. })));
}

#[test]
fn files_holding_too_many_bytes_together_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let megabyte = "x".repeat(MAX_FILE_BYTES as usize);
    for i in 0..=(MAX_TOTAL_BYTES / MAX_FILE_BYTES) {
        std::fs::write(dir.path().join(format!("blob-{i}.txt")), &megabyte).expect("write");
    }
    let error = load(dir.path()).expect_err("too many bytes");
    assert!(matches!(error, LoadError::TooManyBytes { .. }), "{error}");
}

#[test]
fn a_symlink_loop_is_an_error_naming_the_link() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("team")).expect("dir");
    std::fs::write(dir.path().join("team/p.yaml"), POLICY).expect("write");
    symlink("..", dir.path().join("team/back")).expect("symlink");
    let started = Instant::now();
    let error = load(dir.path()).expect_err("loop");
    assert!(matches!(error, LoadError::DirectoryTwice { ref path, .. } if path.ends_with("team/back")), "{error}");
    assert!(error.to_string().contains("symlink loop"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_link_to_itself_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("p.yaml"), POLICY).expect("write");
    symlink("self", dir.path().join("self")).expect("symlink");
    let error = load(dir.path()).expect_err("self loop");
    assert!(matches!(error, LoadError::Io { ref path, .. } if path.ends_with("self")), "{error}");
}

/// Two links to one directory would read its policies twice: refused, not loaded twice.
#[test]
fn two_links_to_one_directory_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outside = tempfile::tempdir().expect("tempdir");
    std::fs::write(outside.path().join("p.yaml"), POLICY).expect("write");
    symlink(outside.path(), dir.path().join("a")).expect("symlink");
    symlink(outside.path(), dir.path().join("b")).expect("symlink");
    assert!(matches!(load(dir.path()), Err(LoadError::DirectoryTwice { .. })));
}

/// Documented behaviour: symlinks are followed wherever they lead (ConfigMap mounts and git-sync
/// publish through symlinks; whoever writes the policy directory is trusted with what it loads).
#[test]
fn symlinks_out_of_the_directory_are_followed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outside = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(outside.path().join("team")).expect("dir");
    std::fs::write(outside.path().join("team/p.yaml"), POLICY).expect("write");
    std::fs::write(outside.path().join("q.yaml"), POLICY.replace("signed", "other")).expect("write");
    symlink(outside.path().join("team"), dir.path().join("team")).expect("symlink");
    symlink(outside.path().join("q.yaml"), dir.path().join("q.yaml")).expect("symlink");
    assert_eq!(load(dir.path()).expect("loads"), 2);
}

#[test]
fn a_dangling_symlink_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("p.yaml"), POLICY).expect("write");
    symlink("/nonexistent/policy.yaml", dir.path().join("gone.yaml")).expect("symlink");
    let error = load(dir.path()).expect_err("dangling");
    assert!(matches!(error, LoadError::Io { ref path, .. } if path.ends_with("gone.yaml")), "{error}");
}

/// A policy nested deeper than the limit was skipped silently (a policy missing from the set):
/// it is an error now.
#[test]
fn directories_nested_past_the_limit_are_an_error_not_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut deep = dir.path().to_path_buf();
    for level in 0..MAX_DEPTH {
        deep.push(format!("d{level}"));
    }
    std::fs::create_dir_all(&deep).expect("dirs");
    std::fs::write(deep.join("p.yaml"), POLICY).expect("write");
    let error = load(dir.path()).expect_err("too deep");
    assert!(matches!(error, LoadError::TooDeepDirectory { .. }), "{error}");
    // `ok` and its subdirectories: MAX_DEPTH - 1 levels under the policy directory.
    let mut fits = dir.path().join("ok");
    for level in 0..MAX_DEPTH - 2 {
        fits.push(format!("d{level}"));
    }
    std::fs::remove_dir_all(dir.path().join("d0")).expect("rm");
    std::fs::create_dir_all(&fits).expect("dirs");
    std::fs::write(fits.join("p.yaml"), POLICY).expect("write");
    assert_eq!(load(dir.path()).expect("loads"), 1);
}
