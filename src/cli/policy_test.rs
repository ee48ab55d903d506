//! `portcullis policy test [DIR]`: the `kind: PolicyTest` cases of a policy directory, each
//! reviewed exactly as `verify -f` reviews an object ([`Review::for_object`] and
//! [`Engine::review`], the webhook's engine) with the directory's policies.
//!
//! Offline: no registry is ever asked. A case may carry recorded evidence
//! (`spec.evidence.ociLayout`: an OCI image layout directory, as `cosign save` writes, with the
//! image and its signatures and attestations): then the webhook's own verifier runs with that
//! layout in place of the registry (every digest checked, the registry's size limits kept), and
//! `spec.evidence.trustedRoot` names the Sigstore instance its log entries were made in (as
//! `serve --trusted-root`; default the public-good instance). `spec.reviewTime` fixes the
//! review's time (`now` in conditions) for evidence that ages. A case without evidence whose
//! decision needs signature or attestation evidence (or a tag resolved for `digest: pin`) is
//! reported as "not run: needs a registry" and never counted as passed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use clap::Args;
use serde::Deserialize;
use serde_json::Value;

use super::serve::UnmatchedArg;
use super::{EXIT_ALLOWED, EXIT_DENIED, EXIT_ERROR};
use crate::decision::Decision;
use crate::engine::{Engine, Settings, Unmatched};
use crate::image::{Digest, ImageRef};
use crate::policy::compile::split_documents;
use crate::policy::load::PolicyDir;
use crate::policy::model::{API_VERSION, Header, Metadata, TEST_KIND};
use crate::review::{ObjectRequest, Review};
use crate::verify::image::RegistryVerifier;
use crate::verify::observe::at_review_time;
use crate::verify::pull_secrets::PullContext;
use crate::verify::registry::Registry;
use crate::verify::trust::TrustRoot;
use crate::verify::{BoxFuture, Outcome, Verifier, VerifyRequest};

/// Flags of `portcullis policy test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// The policy directory; its `kind: PolicyTest` documents (any `*.yaml` in it, by
    /// convention DIR/tests/) are the cases.
    #[arg(default_value = "policies")]
    pub dir: PathBuf,
    /// What the engine does with images no policy matches (as `serve --unmatched-images`).
    #[arg(long, value_enum, default_value_t = UnmatchedArg::Allow)]
    pub unmatched_images: UnmatchedArg,
    /// The gate's own namespace, always allowed (as `serve --own-namespace`).
    #[arg(long)]
    pub own_namespace: Option<String>,
}

/// A `kind: PolicyTest` document.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TestDoc {
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    metadata: Metadata,
    spec: TestSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TestSpec {
    /// The manifest, reviewed as `verify -f` would.
    #[serde(default)]
    object: Option<Value>,
    /// Or a whole AdmissionReview (its namespace, operation and user are used as written).
    #[serde(default)]
    admission_review: Option<Value>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default = "create")]
    operation: String,
    #[serde(default = "default_user")]
    user: String,
    #[serde(default)]
    groups: Vec<String>,
    /// Recorded signature and attestation evidence (paths relative to the test file).
    #[serde(default)]
    evidence: Option<Evidence>,
    /// The time of the review (RFC 3339); default: now.
    #[serde(default)]
    review_time: Option<chrono::DateTime<chrono::Utc>>,
    expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Evidence {
    /// An OCI image layout directory standing in for every registry.
    oci_layout: PathBuf,
    /// The trusted_root.json of the Sigstore instance the evidence was logged in.
    #[serde(default)]
    trusted_root: Option<PathBuf>,
}

fn create() -> String {
    "CREATE".to_owned()
}

fn default_user() -> String {
    "portcullis-policy-test".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    decision: Expected,
    /// A substring of the denial message, a warning or an audit annotation.
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Expected {
    Allowed,
    Denied,
    Warned,
}

impl Expected {
    fn label(self) -> &'static str {
        match self {
            Expected::Allowed => "allowed",
            Expected::Denied => "denied",
            Expected::Warned => "warned",
        }
    }
}

/// A verifier that never reaches a registry and remembers being asked.
#[derive(Debug, Default)]
struct Offline {
    asked: AtomicBool,
}

impl Verifier for Offline {
    fn verify<'a>(&'a self, request: VerifyRequest<'a>) -> BoxFuture<'a, Outcome> {
        self.asked.store(true, Ordering::SeqCst);
        let reason = format!("policy {:?} needs signature evidence from a registry", request.policy.name);
        let reason = crate::verify::verdict::Unchecked::Unavailable { detail: reason };
        Box::pin(async move { Outcome::Error { reason } })
    }

    fn resolve<'a>(
        &'a self,
        image: &'a ImageRef,
        _: Option<&'a PullContext>,
    ) -> BoxFuture<'a, Result<Digest, crate::verify::verdict::Unchecked>> {
        self.asked.store(true, Ordering::SeqCst);
        let detail = format!("resolving {image} needs a registry");
        Box::pin(async move { Err(crate::verify::verdict::Unchecked::TagResolution { detail }) })
    }
}

struct Case {
    at: String,
    name: String,
    /// The directory of the test file (evidence paths are relative to it).
    base: PathBuf,
    spec: TestSpec,
}

/// The verifier of a case with recorded evidence: the registry verifier over its layout.
fn evidence_verifier(case: &Case, evidence: &Evidence) -> anyhow::Result<RegistryVerifier> {
    let layout = case.base.join(&evidence.oci_layout);
    let registry = Registry::from_layout(&layout)
        .with_context(|| format!("evidence.ociLayout {}: not a usable OCI image layout", layout.display()))?;
    let trust = match &evidence.trusted_root {
        Some(path) => TrustRoot::from_file(&case.base.join(path))
            .with_context(|| format!("evidence.trustedRoot {}", case.base.join(path).display()))?,
        None => TrustRoot::production()?,
    };
    Ok(RegistryVerifier::new(registry, trust))
}

/// Run `portcullis policy test`.
pub fn run(args: &TestArgs) -> anyhow::Result<ExitCode> {
    let dir = PolicyDir::new(&args.dir);
    let (set, _) = match dir.load() {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("error: the policies do not load: {e}");
            return Ok(ExitCode::from(EXIT_ERROR));
        }
    };
    let cases = match read_cases(&dir) {
        Ok(cases) if cases.is_empty() => {
            eprintln!(
                "error: no `kind: {TEST_KIND}` document in {}: write the cases in {}/tests/*.yaml",
                args.dir.display(),
                args.dir.display()
            );
            return Ok(ExitCode::from(EXIT_ERROR));
        }
        Ok(cases) => cases,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(ExitCode::from(EXIT_ERROR));
        }
    };
    let offline = Arc::new(Offline::default());
    let unmatched = match args.unmatched_images {
        UnmatchedArg::Allow => Unmatched::Allow,
        UnmatchedArg::Deny => Unmatched::Deny,
    };
    let settings = Settings { own_namespace: args.own_namespace.clone(), unmatched };
    let engine = Engine::fixed(set.clone(), offline.clone(), settings.clone());
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the runtime")?;
    let (mut passed, mut failed, mut not_run) = (0, 0, 0);
    for case in &cases {
        let review = match review_of(case) {
            Ok(review) => review,
            Err(e) => {
                eprintln!("error: {}: test {:?}: {e:#}", case.at, case.name);
                return Ok(ExitCode::from(EXIT_ERROR));
            }
        };
        offline.asked.store(false, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        let time = case.spec.review_time.unwrap_or_else(chrono::Utc::now);
        let decision = match &case.spec.evidence {
            None => runtime.block_on(at_review_time(time, engine.review(&review, deadline))),
            Some(evidence) => {
                let verifier = match evidence_verifier(case, evidence) {
                    Ok(verifier) => verifier,
                    Err(e) => {
                        eprintln!("error: {}: test {:?}: {e:#}", case.at, case.name);
                        return Ok(ExitCode::from(EXIT_ERROR));
                    }
                };
                let engine = Engine::fixed(set.clone(), Arc::new(verifier), settings.clone());
                runtime.block_on(at_review_time(time, engine.review(&review, deadline)))
            }
        };
        if offline.asked.load(Ordering::SeqCst) {
            not_run += 1;
            println!(
                "not run  {} ({}): needs a registry (signature, attestation or tag evidence); record it in an OCI \
                 layout (cosign save) and name it in spec.evidence.ociLayout",
                case.name, case.at
            );
            continue;
        }
        match diff(&case.spec.expect, &decision) {
            None => {
                passed += 1;
                println!("ok       {} ({})", case.name, case.at);
            }
            Some(diff) => {
                failed += 1;
                println!("FAILED   {} ({})\n{diff}", case.name, case.at);
            }
        }
    }
    println!("{passed} passed, {failed} failed, {not_run} not run (need a registry or recorded evidence)");
    Ok(ExitCode::from(if failed > 0 { EXIT_DENIED } else { EXIT_ALLOWED }))
}

fn read_cases(dir: &PolicyDir) -> anyhow::Result<Vec<Case>> {
    let mut cases = Vec::new();
    for (path, text) in dir.policy_texts()? {
        for (line, doc) in split_documents(&text) {
            let at = format!("{}:{line}", path.display());
            let header: Header = serde_yaml_ng::from_str(&doc).with_context(|| at.clone())?;
            if header.kind.as_deref() != Some(TEST_KIND) {
                continue;
            }
            if header.api_version.as_deref() != Some(API_VERSION) {
                anyhow::bail!("{at}: a {TEST_KIND} needs apiVersion {API_VERSION:?}");
            }
            let test: TestDoc = serde_yaml_ng::from_str(&doc).with_context(|| at.clone())?;
            if test.spec.object.is_some() == test.spec.admission_review.is_some() {
                anyhow::bail!(
                    "{at}: test {:?}: give exactly one of spec.object and spec.admissionReview",
                    test.metadata.name
                );
            }
            let base = path.parent().map(PathBuf::from).unwrap_or_default();
            cases.push(Case { at, name: test.metadata.name, base, spec: test.spec });
        }
    }
    Ok(cases)
}

fn review_of(case: &Case) -> anyhow::Result<Review> {
    let spec = &case.spec;
    if let Some(review) = &spec.admission_review {
        return Ok(Review::from_value(review.clone())?);
    }
    let object = spec.object.as_ref().context("no object")?;
    let namespace = super::verify::request_namespace(object, spec.namespace.as_deref())?;
    let request = ObjectRequest {
        object,
        operation: &spec.operation.to_ascii_uppercase(),
        namespace: namespace.as_deref(),
        username: &spec.user,
        groups: &spec.groups,
        uid: "portcullis-policy-test",
    };
    Ok(Review::for_object(&request)?)
}

/// What differs between the expectation and the decision (None: the case passed).
fn diff(expect: &Expect, decision: &Decision) -> Option<String> {
    let got = decision.label();
    let texts: Vec<&str> = decision
        .message
        .iter()
        .map(String::as_str)
        .chain(decision.warnings.iter().map(String::as_str))
        .chain(decision.audit_annotations.values().map(String::as_str))
        .collect();
    let message_ok = expect.message.as_deref().is_none_or(|m| texts.iter().any(|t| t.contains(m)));
    if got == expect.decision.label() && message_ok {
        return None;
    }
    let mut out = format!("  - decision: {}\n  + decision: {got}\n", expect.decision.label());
    if let Some(m) = &expect.message {
        out.push_str(&format!("  - message containing: {m:?}\n"));
    }
    if texts.is_empty() {
        out.push_str("  + (no message, warning or audit annotation)\n");
    }
    for text in texts {
        out.push_str(&format!("  + {}\n", text.replace('\n', "\n    ")));
    }
    Some(out)
}
