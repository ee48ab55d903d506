//! `portcullis verify`: the CI command. The same engine, verifier and policies as the webhook
//! decide, over the same AdmissionReview: `verify -f` reads manifests and reviews every object as
//! the API server would submit it (built by [`Review::for_object`], read by the webhook's own
//! mapping); `verify IMAGE…` reviews a workload of `--kind` running each image. Exit 0 allowed
//! (warnings included), 1 denied, 2 could not decide.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::{Value, json};

use super::registry_args::RegistryArgs;
use super::serve::UnmatchedArg;
use crate::engine::{Engine, Settings, Unmatched};
use crate::image::ImageRef;
use crate::policy::cel::CelEnv;
use crate::policy::load::PolicyDir;
use crate::policy::matcher::{Glob, Selector};
use crate::policy::signed::Requirement;
use crate::policy::{
    Attestation, Authority, AuthorityKind, DigestRule, ImagePolicy, KeyRef, Mode, Platforms, PolicySet, Require,
    Source, SubjectMatch, TransparencyLog,
};
use crate::review::{ObjectRequest, Review};
use crate::verify::cache::CachedVerifier;

mod claims;
pub(super) use claims::CertificateClaimArgs;
mod input;
mod output;

pub use output::Format;

const EXAMPLES: &str = "\
Examples:
  # Rendered manifests, as the cluster's webhook would decide them (policies from ./policies)
  kustomize build overlays/prod | portcullis verify -f - --policies policies/
  helm template app charts/app | portcullis verify -f - --output github
  portcullis verify -f manifests/ --namespace prod --user system:serviceaccount:argocd:argocd-application-controller

  # Key-signed image (cosign sign --key cosign.key)
  portcullis verify ghcr.io/acme/app@sha256:… --key cosign.pub

  # Keyless, signed in GitHub Actions
  portcullis verify ghcr.io/acme/app:v1.2.3 \\
      --certificate-identity-regexp '^https://github.com/acme/app/\\.github/workflows/release\\.yml@refs/tags/v.*$' \\
      --certificate-oidc-issuer https://token.actions.githubusercontent.com

  # Signed and with a signed CycloneDX SBOM attestation
  portcullis verify ghcr.io/acme/app@sha256:… --key cosign.pub --attestation cyclonedx

  # The cluster's own policies, as the webhook would decide for a Deployment in namespace prod
  portcullis verify ghcr.io/acme/app@sha256:… --policies policies/ --namespace prod --kind Deployment

Exit codes: 0 allowed (warnings included), 1 denied, 2 could not decide (registry or log error,
bad flags, unreadable or invalid manifests, policies or keys).";

/// Flags of `portcullis verify`.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct VerifyArgs {
    /// Image references to verify, each as a workload of --kind would run it.
    #[arg(required_unless_present = "filename", conflicts_with = "filename")]
    pub images: Vec<String>,
    /// Manifests to review: a file, a directory (walked for *.yaml, *.yml, *.json) or - for
    /// stdin; multi-document YAML, JSON and Lists (repeatable).
    #[arg(short = 'f', long = "filename", value_name = "FILE|DIR|-")]
    pub filename: Vec<PathBuf>,
    /// The workload kind each IMAGE is checked as (Pod, Deployment, ReplicaSet, StatefulSet,
    /// DaemonSet, Job, CronJob, ReplicationController, PodTemplate).
    #[arg(long, conflicts_with = "filename")]
    pub kind: Option<String>,
    /// The admission operation reviewed.
    #[arg(long, default_value = "CREATE", ignore_case = true,
          value_parser = clap::builder::PossibleValuesParser::new(["CREATE", "UPDATE", "DELETE", "CONNECT"]))]
    pub operation: String,
    /// Namespace of the request (default: the object's, else `default`). An object whose own
    /// namespace differs is an error, as for kubectl apply.
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// request.userInfo.username, as CEL rules see it.
    #[arg(long, default_value = "portcullis-verify")]
    pub user: String,
    /// request.userInfo.groups (repeatable).
    #[arg(long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Text)]
    pub output: Format,
    #[command(flatten)]
    pub expect: ExpectArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// What to verify against: a key, a keyless identity, or policy files.
#[derive(Debug, Args)]
pub struct ExpectArgs {
    /// Public key (PEM) the image must be signed with.
    #[arg(long, conflicts_with_all = ["certificate_identity", "certificate_identity_regexp", "policies"])]
    pub key: Option<PathBuf>,
    /// Exact certificate identity (SAN: URI or email) of a keyless signature.
    #[arg(long, requires = "certificate_oidc_issuer", conflicts_with = "policies")]
    pub certificate_identity: Option<String>,
    /// Certificate identity as a regular expression (always anchored).
    #[arg(long, requires = "certificate_oidc_issuer", conflicts_with_all = ["certificate_identity", "policies"])]
    pub certificate_identity_regexp: Option<String>,
    /// OIDC issuer of the keyless certificate.
    #[arg(long)]
    pub certificate_oidc_issuer: Option<String>,
    #[command(flatten)]
    pub claims: CertificateClaimArgs,
    /// Accept signatures without a transparency log entry (key-based only).
    #[arg(long, requires = "key")]
    pub insecure_ignore_tlog: bool,
    /// Also require a signed attestation of this predicate type (short name such as
    /// cyclonedx, spdxjson, slsaprovenance1, vuln, or a URI); repeatable. With --policies, the
    /// applying policies must require it.
    #[arg(long = "attestation", value_name = "TYPE")]
    pub attestations: Vec<String>,
    /// Policy files (a directory, as `serve --policies`, or one file) to verify against
    /// (default: ./policies when no --key or --certificate-identity is given).
    #[arg(long, visible_alias = "policy", value_name = "DIR")]
    pub policies: Option<PathBuf>,
    /// Load the policy directory only when its signature (`portcullis policy sign`) verifies
    /// with this public key, as `serve --require-signed-policies` (exit 2 otherwise).
    #[arg(long, value_name = "PUBKEY")]
    pub require_signed_policies: Option<PathBuf>,
    /// What to do with an image that no ImagePolicy matches (as `serve`).
    #[arg(long, value_enum, default_value_t = UnmatchedArg::Allow)]
    pub unmatched_images: UnmatchedArg,
    /// Namespace portcullis runs in: requests there are always allowed (as `serve`).
    #[arg(long)]
    pub own_namespace: Option<String>,
    /// Time allowed for each object's verification.
    #[arg(long, default_value = "30s", value_parser = super::serve::parse_duration)]
    pub timeout: Duration,
}

/// Run `portcullis verify`.
pub fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let VerifyArgs { images, filename, kind, operation, namespace, user, groups, output, expect, registry } = args;
    let operation = operation.to_ascii_uppercase();
    // Inputs first: a typo in a path fails before any registry is asked.
    let documents = if filename.is_empty() {
        Vec::new()
    } else {
        let (documents, errors) = input::read(&filename);
        if !errors.is_empty() {
            output::print(output, &[], &errors);
            return Ok(ExitCode::from(super::EXIT_ERROR));
        }
        documents
    };
    let kind = kind.as_deref().unwrap_or("Pod");
    let image_objects = images
        .iter()
        .map(|image| {
            ImageRef::parse(image).with_context(|| format!("{image:?} is not an image reference"))?;
            workload_object(kind, image)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let timeout = expect.timeout;
    let own_namespace = expect.own_namespace.clone();
    let settings = Settings {
        own_namespace: expect.own_namespace.clone(),
        unmatched: match expect.unmatched_images {
            UnmatchedArg::Allow => Unmatched::Allow,
            UnmatchedArg::Deny => Unmatched::Deny,
        },
    };
    let set = policy_set(expect)?;
    let verifier = CachedVerifier::new(Arc::new(registry.verifier()?), Duration::from_secs(300));
    let engine = Engine::fixed(set, Arc::new(verifier), settings);
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")?;

    let mut requests = Vec::new();
    for (index, document) in documents.into_iter().enumerate() {
        let at = format!("{}:{}", document.file, document.line);
        let ns = request_namespace(&document.object, namespace.as_deref()).with_context(|| at.clone())?;
        requests.push((Some((document.file, document.line)), None, document.object, ns, index));
    }
    for (index, (image, object)) in images.iter().zip(image_objects).enumerate() {
        let ns = Some(namespace.clone().unwrap_or_else(|| "default".to_owned()));
        requests.push((None, Some(image.clone()), object, ns, index));
    }
    let mut records = Vec::new();
    for (source, image, object, ns, index) in requests {
        let uid = format!("portcullis-verify-{index}");
        let request = ObjectRequest {
            object: &object,
            operation: &operation,
            namespace: ns.as_deref(),
            username: &user,
            groups: &groups,
            uid: &uid,
        };
        let review = Review::for_object(&request).map_err(|e| match &source {
            Some((file, line)) => anyhow::anyhow!("{file}:{line}: {e}"),
            None => anyhow::anyhow!("{e}"),
        })?;
        let decision = runtime.block_on(engine.review(&review, tokio::time::Instant::now() + timeout));
        let checked = review.object.as_ref().map(|o| crate::workload::images(&review.kind.group, &review.kind.kind, o));
        records.push(output::Record {
            source,
            label: image.unwrap_or_else(|| review.describe()),
            images: checked.unwrap_or_default(),
            own_namespace: own_namespace.is_some() && review.namespace == own_namespace,
            review,
            decision,
        });
    }
    output::print(output, &records, &[]);
    Ok(ExitCode::from(output::exit_code(&records)))
}

/// The namespace of the request for `object`: None for cluster-scoped kinds; else the
/// object's, `--namespace`, or `default`. A conflict between the two is an error (kubectl
/// refuses it too).
pub(crate) fn request_namespace(object: &Value, flag: Option<&str>) -> anyhow::Result<Option<String>> {
    let api_version = object.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    let group = api_version.split_once('/').map_or("", |(group, _)| group);
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or_default();
    if cluster_scoped(group, kind) {
        return Ok(None);
    }
    let own = object.pointer("/metadata/namespace").and_then(Value::as_str).filter(|s| !s.is_empty());
    match (own, flag) {
        (Some(own), Some(flag)) if own != flag => {
            bail!("the object's namespace {own:?} differs from --namespace {flag:?} (kubectl would refuse it)")
        }
        (Some(ns), _) | (None, Some(ns)) => Ok(Some(ns.to_owned())),
        (None, None) => Ok(Some("default".to_owned())),
    }
}

/// The built-in cluster-scoped kinds (custom resources are taken as namespaced).
fn cluster_scoped(group: &str, kind: &str) -> bool {
    matches!(
        (group, kind),
        ("", "Namespace" | "Node" | "PersistentVolume" | "ComponentStatus")
            | ("rbac.authorization.k8s.io", "ClusterRole" | "ClusterRoleBinding")
            | ("apiextensions.k8s.io", "CustomResourceDefinition")
            | ("apiregistration.k8s.io", "APIService")
            | (
                "admissionregistration.k8s.io",
                "ValidatingWebhookConfiguration"
                    | "MutatingWebhookConfiguration"
                    | "ValidatingAdmissionPolicy"
                    | "ValidatingAdmissionPolicyBinding"
                    | "MutatingAdmissionPolicy"
                    | "MutatingAdmissionPolicyBinding"
            )
            | ("storage.k8s.io", "StorageClass" | "CSIDriver" | "CSINode" | "VolumeAttachment")
            | ("scheduling.k8s.io", "PriorityClass")
            | ("node.k8s.io", "RuntimeClass")
            | ("networking.k8s.io", "IngressClass" | "IPAddress" | "ServiceCIDR")
            | ("certificates.k8s.io", "CertificateSigningRequest" | "ClusterTrustBundle")
            | ("flowcontrol.apiserver.k8s.io", "FlowSchema" | "PriorityLevelConfiguration")
    )
}

/// A workload of `kind` whose one container runs `image` (`verify IMAGE --kind`).
fn workload_object(kind: &str, image: &str) -> anyhow::Result<Value> {
    let api_version = match kind {
        "Pod" | "ReplicationController" | "PodTemplate" => "v1",
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => "apps/v1",
        "Job" | "CronJob" => "batch/v1",
        other => bail!(
            "--kind {other:?} is not a workload kind: use Pod, Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, \
             CronJob, ReplicationController or PodTemplate (or verify -f with a manifest)"
        ),
    };
    let group = api_version.split_once('/').map_or("", |(group, _)| group);
    let pointer = crate::workload::pod_spec_pointer(group, kind).context("a workload kind has a pod spec")?;
    let mut spec = json!({"containers": [{"name": "image", "image": image}]});
    for segment in pointer.split('/').skip(1).collect::<Vec<_>>().into_iter().rev() {
        spec = json!({ segment: spec });
    }
    let mut object = spec;
    object["apiVersion"] = Value::from(api_version);
    object["kind"] = Value::from(kind);
    object["metadata"] = json!({"name": "portcullis-verify"});
    Ok(object)
}

fn policy_set(expect: ExpectArgs) -> anyhow::Result<PolicySet> {
    let ExpectArgs {
        key,
        certificate_identity,
        certificate_identity_regexp,
        certificate_oidc_issuer,
        claims,
        insecure_ignore_tlog,
        attestations,
        policies,
        require_signed_policies,
        unmatched_images: _,
        own_namespace: _,
        timeout: _,
    } = expect;
    let mut required = Vec::new();
    for name in &attestations {
        let uri = crate::policy::predicate_type_uri(name)
            .with_context(|| format!("--attestation {name:?} is neither a known short name nor a URI"))?;
        required.push(Attestation {
            name: name.clone(),
            predicate_type: uri,
            authorities: Vec::new(),
            conditions: Vec::new(),
        });
    }
    let flags_given =
        key.is_some() || certificate_identity.is_some() || certificate_identity_regexp.is_some() || claims.given();
    if policies.is_some() && claims.given() {
        bail!("certificate claim flags describe their own keyless identity: use them without --policies");
    }
    let default_dir = PathBuf::from("policies");
    let policies = match policies {
        Some(path) => Some(path),
        None if !flags_given && default_dir.is_dir() => Some(default_dir),
        None if !flags_given => bail!(
            "nothing to verify against: pass --key, --certificate-identity[-regexp] or --policies DIR \
             (./policies, the default, is not a directory here)"
        ),
        None => None,
    };
    let signed = require_signed_policies.as_deref().map(Requirement::from_file).transpose()?;
    if signed.is_some() && !policies.as_ref().is_some_and(|p| p.is_dir()) {
        bail!("--require-signed-policies needs a policy directory (--policies DIR)");
    }
    if let Some(path) = policies {
        let set = if path.is_dir() {
            PolicyDir::new(&path).require_signature(signed).load().map(|(set, _)| set)
        } else {
            crate::policy::load::load_file(&path, &CelEnv::new())
        };
        let set = set.with_context(|| format!("cannot load policies from {}", path.display()))?;
        for attestation in &required {
            let covered = set
                .images
                .iter()
                .any(|p| p.attestations.iter().any(|a| a.predicate_type == attestation.predicate_type));
            if !covered {
                bail!(
                    "--attestation {}: no policy in {} requires a {} attestation",
                    attestation.name,
                    path.display(),
                    attestation.predicate_type
                );
            }
        }
        return Ok(set);
    }
    let kind = match (key, certificate_identity, certificate_identity_regexp) {
        (Some(path), None, None) => AuthorityKind::Key(KeyRef::File(path)),
        (None, identity, regexp) if identity.is_some() || regexp.is_some() || claims.given() => {
            let issuer = certificate_oidc_issuer.context("--certificate-oidc-issuer is required for keyless")?;
            let subject =
                if identity.is_some() || regexp.is_some() { Some(subject_from_flags(identity, regexp)?) } else { None };
            AuthorityKind::Keyless(claims.identity(issuer, None, subject)?)
        }
        _ => bail!("pass one of --key, --certificate-identity, --certificate-identity-regexp"),
    };
    let tlog = if insecure_ignore_tlog { TransparencyLog::Skip } else { TransparencyLog::Required };
    command_line_policies(kind, tlog, Require::Any, required)
}

/// The subject matcher of `--certificate-identity` or `--certificate-identity-regexp` (one of them).
pub(super) fn subject_from_flags(identity: Option<String>, regexp: Option<String>) -> anyhow::Result<SubjectMatch> {
    match (identity, regexp) {
        (Some(exact), None) => Ok(SubjectMatch::Exact(exact)),
        (None, Some(re)) => Ok(SubjectMatch::RegExp(
            crate::policy::compile::anchored(&re).with_context(|| format!("--certificate-identity-regexp {re:?}"))?,
        )),
        _ => bail!("use one of --certificate-identity and --certificate-identity-regexp"),
    }
}

/// The policy set the command-line flags describe: one enforcing policy over every image, with
/// the one authority of `kind` (its key read now, like a policy's key file, never while verifying).
pub(super) fn command_line_policies(
    kind: AuthorityKind,
    transparency_log: TransparencyLog,
    require: Require,
    attestations: Vec<Attestation>,
) -> anyhow::Result<PolicySet> {
    let authority =
        Authority { name: "cli".to_owned(), kind, transparency_log, trusted_root: None, files: Default::default() };
    let policy = ImagePolicy {
        name: "command-line".to_owned(),
        source: Source { file: "(flags)".to_owned(), line: 0 },
        fingerprint: 0,
        mode: Mode::Enforce,
        selector: Selector::default(),
        images: vec![Glob::new("**")?],
        exclude_images: Vec::new(),
        allowed_images: None,
        digest: DigestRule::AllowTags,
        platforms: Platforms::Index,
        require,
        authorities: vec![authority],
        attestations,
    };
    let mut set = PolicySet { images: vec![policy], resources: Vec::new() };
    crate::policy::load::read_authority_files(&mut set).context("--key")?;
    Ok(set)
}
