//! The certificate-claim flags `verify` and `verify-attestation` share: cosign's
//! `--certificate-github-workflow-*` and `--certificate-claim NAME=VALUE` for any issuer.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use clap::Args;

use crate::policy::claims::{ClaimMatch, ClaimValue, compile_claims};
use crate::policy::model::GithubSpec;
use crate::policy::{Identity, SubjectMatch};

/// The legacy Fulcio extension holding the GitHub workflow's name (raw string).
const WORKFLOW_NAME_OID: &str = "1.3.6.1.4.1.57264.1.4";

/// Claims of the Fulcio certificate a keyless signature must carry.
#[derive(Debug, Clone, Default, Args)]
pub struct CertificateClaimArgs {
    /// The GitHub repository (owner/name) the certificate's workflow ran in (Fulcio extension
    /// `1.3.6.1.4.1.57264.1.12`, or the legacy `.5`).
    #[arg(long, value_name = "OWNER/NAME", conflicts_with = "key")]
    pub certificate_github_workflow_repository: Option<String>,
    /// The git ref the workflow ran for (a glob, as `github.ref` in policies).
    #[arg(long, value_name = "REF", requires = "certificate_github_workflow_repository")]
    pub certificate_github_workflow_ref: Option<String>,
    /// The commit the workflow ran at.
    #[arg(long, value_name = "SHA", requires = "certificate_github_workflow_repository")]
    pub certificate_github_workflow_sha: Option<String>,
    /// The event that triggered the workflow (push, release, workflow_dispatch, …).
    #[arg(long, value_name = "EVENT", requires = "certificate_github_workflow_repository")]
    pub certificate_github_workflow_trigger: Option<String>,
    /// The workflow's name (the legacy Fulcio extension `1.3.6.1.4.1.57264.1.4`, exact).
    #[arg(long, value_name = "NAME", requires = "certificate_github_workflow_repository")]
    pub certificate_github_workflow_name: Option<String>,
    /// A Fulcio certificate claim that must hold, for any issuer, named as in a policy's
    /// `keyless.claims` (e.g. sourceRepositoryRef=refs/heads/main; sourceRepositoryRefRegExp=…
    /// for an anchored regular expression). Repeatable; each must hold.
    #[arg(long = "certificate-claim", value_name = "NAME=VALUE", conflicts_with = "key")]
    pub certificate_claims: Vec<String>,
}

impl CertificateClaimArgs {
    /// Whether any claim flag was given.
    pub fn given(&self) -> bool {
        self.certificate_github_workflow_repository.is_some() || !self.certificate_claims.is_empty()
    }

    /// The keyless identity of the flags: `subject` (or, with none, the claims alone decide).
    pub fn identity(
        &self,
        issuer: String,
        issuer_regexp: Option<regex::Regex>,
        subject: Option<SubjectMatch>,
    ) -> anyhow::Result<Identity> {
        let github = self.certificate_github_workflow_repository.as_ref().map(|repository| GithubSpec {
            repository: repository.clone(),
            workflow: None,
            git_ref: self.certificate_github_workflow_ref.clone(),
            sha: self.certificate_github_workflow_sha.clone(),
            trigger: self.certificate_github_workflow_trigger.clone(),
        });
        let mut block = BTreeMap::new();
        for flag in &self.certificate_claims {
            let (name, value) =
                flag.split_once('=').with_context(|| format!("--certificate-claim {flag:?}: write NAME=VALUE"))?;
            if block.insert(name.to_owned(), value.to_owned()).is_some() {
                bail!("--certificate-claim {name} is given twice");
            }
        }
        let mut claims = compile_claims(&block).map_err(|e| anyhow::anyhow!("--certificate-claim: {e}"))?;
        if let Some(name) = &self.certificate_github_workflow_name {
            claims.push(ClaimMatch {
                name: "githubWorkflowName",
                oid: WORKFLOW_NAME_OID,
                value: ClaimValue::Exact(name.clone()),
            });
        }
        let subject = match subject {
            Some(subject) => subject,
            None if github.is_some() || !claims.is_empty() => SubjectMatch::GithubOnly,
            None => bail!("keyless needs --certificate-identity[-regexp] or certificate claims"),
        };
        Ok(Identity { issuer, subject, github, issuer_regexp, claims })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(claims: &[&str]) -> CertificateClaimArgs {
        CertificateClaimArgs {
            certificate_claims: claims.iter().map(|c| (*c).to_owned()).collect(),
            ..CertificateClaimArgs::default()
        }
    }

    #[test]
    fn certificate_claim_flags_become_claims() {
        let flags =
            args(&["sourceRepositoryURI=https://gitlab.com/acme/app", "sourceRepositoryRefRegExp=refs/heads/.*"]);
        let identity = flags.identity("https://gitlab.com".to_owned(), None, None).expect("identity");
        assert!(matches!(identity.subject, SubjectMatch::GithubOnly));
        let names: Vec<&str> = identity.claims.iter().map(|c| c.name).collect();
        assert_eq!(names, ["sourceRepositoryRef", "sourceRepositoryURI"]);
        let named = CertificateClaimArgs {
            certificate_github_workflow_repository: Some("acme/app".to_owned()),
            certificate_github_workflow_name: Some("Release".to_owned()),
            ..CertificateClaimArgs::default()
        };
        let identity =
            named.identity("https://token.actions.githubusercontent.com".to_owned(), None, None).expect("id");
        assert!(identity.github.is_some());
        assert_eq!(identity.claims[0].oid, WORKFLOW_NAME_OID);
    }

    #[test]
    fn malformed_certificate_claim_flags_are_refused() {
        let issuer = || "https://gitlab.com".to_owned();
        for bad in [&["sourceRepositoryURI"][..], &["sourceRepo=x"], &["buildTrigger=push", "buildTrigger=tag"]] {
            assert!(args(bad).identity(issuer(), None, None).is_err(), "{bad:?}");
        }
        assert!(CertificateClaimArgs::default().identity(issuer(), None, None).is_err(), "no subject and no claims");
    }
}
