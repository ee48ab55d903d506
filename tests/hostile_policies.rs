//! Hostile policies: a ResourcePolicy rule whose evaluation explodes is stopped by its cost budget
//! and the review's deadline, and decided by the policy's mode (enforce: denied, warn: allowed
//! with a warning), while an ordinary rule of the same set still decides.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{self, fixture, in_namespace, post};

const EXPLODING: &str = "lists.range(1000).all(a, lists.range(1000).all(b, lists.range(1000).all(c, c >= 0)))";

fn app(mode: &str) -> (tempfile::TempDir, axum::Router) {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: ResourcePolicy\nmetadata: {{name: exploding}}\nspec:\n  \
         mode: {mode}\n  match: {{namespaces: [dev], kinds: [ConfigMap]}}\n  rules:\n  - expression: \"{EXPLODING}\"\n  \
         - expression: \"object.metadata.name != 'forbidden'\"\n    message: the forbidden name\n"
    );
    std::fs::write(dir.path().join("exploding.yaml"), policy).expect("policy");
    let app = common::app_for(dir.path(), Default::default());
    (dir, app)
}

/// POST the review with a 2 s timeout; the response and how long it took.
async fn decide(app: &axum::Router) -> (Value, Duration) {
    let review = in_namespace(fixture("configmap-create.json"), "dev");
    let started = Instant::now();
    let (_, body) = post(app, "/validate?timeout=2s", review.to_string()).await;
    (body["response"].clone(), started.elapsed())
}

#[tokio::test]
async fn an_exploding_rule_is_denied_in_enforce_within_the_deadline() {
    let (_dir, app) = app("enforce");
    let (response, took) = decide(&app).await;
    assert_eq!(response["allowed"], false, "{response}");
    let message = response["status"]["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("exploding") && (message.contains("budget") || message.contains("deadline")), "{message}");
    assert!(took < Duration::from_secs(4), "answered after {took:?}");
}

#[tokio::test]
async fn an_exploding_rule_is_a_warning_in_warn_mode() {
    let (_dir, app) = app("warn");
    let (response, took) = decide(&app).await;
    assert_eq!(response["allowed"], true, "{response}");
    let warnings = response["warnings"].to_string();
    assert!(
        warnings.contains("exploding") && (warnings.contains("budget") || warnings.contains("deadline")),
        "{warnings}"
    );
    assert!(took < Duration::from_secs(4), "answered after {took:?}");
}

#[tokio::test]
async fn an_ordinary_rule_beside_it_still_decides() {
    let (_dir, app) = app("warn");
    let mut review = in_namespace(fixture("configmap-create.json"), "dev");
    review["request"]["object"]["metadata"]["name"] = "forbidden".into();
    // Time enough for the budget, not the deadline, to stop the exploding rule.
    let (_, body) = post(&app, "/validate?timeout=30s", review.to_string()).await;
    let warnings = body["response"]["warnings"].to_string();
    assert!(warnings.contains("evaluation budget") && warnings.contains("the forbidden name"), "{body}");
}

// ---------------------------------------------------------------------------------------------
// YAML bombs and deep nesting, in policy files and in SOPS files: each run in a child process
// under an address-space limit and a timeout (a regression fails instead of exhausting the
// machine), refused with a message naming the problem.

use crate::sops_support::{keygen, portcullis_bounded};

const BOUND: Duration = Duration::from_secs(30);
const MEM_MIB: u64 = 1024;

/// The classic "billion laughs": nine levels of ten aliases, 10^9 strings once expanded.
fn billion_laughs(top: &str) -> String {
    let mut text = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for level in 1..=9 {
        let prev = format!("*a{}", level - 1);
        text.push_str(&format!("a{level}: &a{level} [{}]\n", [prev.as_str(); 10].join(", ")));
    }
    text.push_str(&format!("{top}: *a9\n"));
    text
}

fn deep_flow(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

fn deep_mappings(depth: usize) -> String {
    format!("{}1{}", "{a: ".repeat(depth), "}".repeat(depth))
}

/// `portcullis policy lint DIR` on a directory holding `text` as a policy file: its exit status
/// and stderr.
fn lint_policy(text: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("policies")).expect("dir");
    std::fs::write(dir.path().join("policies/bomb.yaml"), text).expect("policy");
    let run = portcullis_bounded(dir.path(), &["policy", "lint", "policies"], BOUND, MEM_MIB);
    let output =
        format!("{}{}", String::from_utf8_lossy(&run.output.stdout), String::from_utf8_lossy(&run.output.stderr));
    eprintln!("policy lint: {:?} in {:?}: {output}", run.output.status, run.elapsed);
    (run.output.status.code(), output)
}

const POLICY_HEAD: &str = "apiVersion: portcullis.dev/v1alpha1\nkind: ResourcePolicy\nmetadata: {name: bomb}\nspec:\n";

#[test]
fn a_billion_laughs_policy_file_is_refused() {
    let text = format!("{}{POLICY_HEAD}  match: {{kinds: [Pod]}}\n", billion_laughs("laughs"));
    let (code, output) = lint_policy(&text);
    assert_eq!(code, Some(1), "{output}");
    assert!(output.contains("bomb.yaml:6") && output.contains("aliases expand to more than"), "{output}");
}

#[test]
fn a_deeply_nested_policy_file_is_refused() {
    for nested in [deep_flow(100_000), deep_mappings(100_000)] {
        let (code, output) = lint_policy(&format!("{POLICY_HEAD}  match: {nested}\n"));
        assert_eq!(code, Some(1), "{output}");
        assert!(output.contains("bomb.yaml:5") && output.contains("nest more than 64 levels"), "{output}");
    }
}

/// `portcullis decrypt FILE`: its exit status and stderr.
fn decrypt(name: &str, text: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = keygen(dir.path(), "key");
    std::fs::write(dir.path().join(name), text).expect("file");
    let key_file = key.file.to_str().expect("utf-8").to_owned();
    let run = portcullis_bounded(dir.path(), &["decrypt", "--age-key-file", &key_file, name], BOUND, MEM_MIB);
    let stderr = String::from_utf8_lossy(&run.output.stderr).into_owned();
    eprintln!("decrypt {name}: {:?} in {:?}: {stderr}", run.output.status, run.elapsed);
    (run.output.status.code(), stderr)
}

const SOPS_TAIL: &str = "sops:\n  mac: ENC[AES256_GCM,data:AAAA,iv:AAAA,tag:AAAA,type:str]\n  version: 3.11.0\n";

#[test]
fn a_billion_laughs_sops_file_is_refused() {
    let (code, stderr) = decrypt("bomb.yaml", &format!("{}{SOPS_TAIL}", billion_laughs("laughs")));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("alias"), "{stderr}");
}

#[test]
fn a_deeply_nested_sops_yaml_file_is_refused() {
    for nested in [deep_flow(100_000), deep_mappings(100_000)] {
        let (code, stderr) = decrypt("nested.yaml", &format!("data: {nested}\n{SOPS_TAIL}"));
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains("recursion limit exceeded"), "{stderr}");
    }
}

#[test]
fn a_deeply_nested_sops_json_file_is_refused() {
    let nested = format!("{}1{}", "{\"a\": ".repeat(100_000), "}".repeat(100_000));
    let (code, stderr) =
        decrypt("nested.json", &format!("{{\"data\": {nested}, \"sops\": {{\"version\": \"3.11.0\"}}}}"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("nesting too deep"), "{stderr}");
}
