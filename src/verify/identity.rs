//! Matching a Fulcio certificate against a policy [`Identity`]: OIDC issuer, subject (SAN), the
//! typed GitHub Actions claims and the named Fulcio claims of any issuer (`keyless.claims`).
//!
//! Fulcio records the OIDC token's claims in X.509 extensions under `1.3.6.1.4.1.57264.1`. The
//! current extensions (`.8` and later) hold a DER `UTF8String`; the legacy ones (`.1`–`.6`) hold
//! the raw string bytes. The current form wins when both are present. A certificate carrying one
//! of these extensions twice, or a current one not encoded as a DER `UTF8String`, is refused.
//!
//! This module only reads claims: it must be called on a certificate whose chain, validity and
//! signature have been (or will be) verified, as [`super::bundle::verify_bundle`] does.

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use std::collections::{BTreeMap, HashSet};

use super::bundle::BundleError;
use crate::policy::claims::is_claim_oid;
use crate::policy::matcher::Glob;
use crate::policy::{Identity, SubjectMatch};

/// Fulcio extension OIDs (under `1.3.6.1.4.1.57264.1`) and how their value is encoded.
mod oid {
    /// The arc of every Fulcio extension (with the trailing dot).
    pub const FULCIO_ARC: &str = "1.3.6.1.4.1.57264.1.";
    pub const ISSUER_LEGACY: &str = "1.3.6.1.4.1.57264.1.1";
    pub const TRIGGER_LEGACY: &str = "1.3.6.1.4.1.57264.1.2";
    pub const SHA_LEGACY: &str = "1.3.6.1.4.1.57264.1.3";
    pub const WORKFLOW_NAME_LEGACY: &str = "1.3.6.1.4.1.57264.1.4";
    pub const REPOSITORY_LEGACY: &str = "1.3.6.1.4.1.57264.1.5";
    pub const REF_LEGACY: &str = "1.3.6.1.4.1.57264.1.6";
    pub const ISSUER: &str = "1.3.6.1.4.1.57264.1.8";
    pub const SOURCE_REPOSITORY_URI: &str = "1.3.6.1.4.1.57264.1.12";
    pub const SOURCE_REPOSITORY_DIGEST: &str = "1.3.6.1.4.1.57264.1.13";
    pub const SOURCE_REPOSITORY_REF: &str = "1.3.6.1.4.1.57264.1.14";
    pub const BUILD_CONFIG_URI: &str = "1.3.6.1.4.1.57264.1.18";
    pub const BUILD_TRIGGER: &str = "1.3.6.1.4.1.57264.1.20";
}

const GITHUB: &str = "https://github.com/";

/// The claims of a Fulcio certificate that policies match on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    /// The first URI or email Subject Alternative Name.
    pub subject: Option<String>,
    pub issuer: Option<String>,
    /// `https://github.com/owner/repo` (or the legacy `owner/repo`, normalised to the URI).
    pub source_repository: Option<String>,
    pub source_ref: Option<String>,
    pub source_sha: Option<String>,
    /// `https://github.com/owner/repo/.github/workflows/x.yml@refs/...`.
    pub build_config: Option<String>,
    pub trigger: Option<String>,
    /// Every current Fulcio extension (`.8`–`.22`) and the legacy workflow name (`.4`) by OID,
    /// decoded.
    pub fulcio: BTreeMap<String, String>,
}

impl Claims {
    /// Read the claims of a DER certificate.
    pub fn from_der(cert_der: &[u8]) -> Result<Self, BundleError> {
        let (_, cert) = X509Certificate::from_der(cert_der)
            .map_err(|e| BundleError::Certificate(format!("signing certificate is not valid DER X.509: {e}")))?;
        let mut claims = Claims::default();
        let (mut issuer_legacy, mut repo_legacy, mut ref_legacy) = (None, None, None);
        let (mut sha_legacy, mut trigger_legacy) = (None, None);
        let mut seen = HashSet::new();
        for ext in cert.extensions() {
            let id = ext.oid.to_id_string();
            let value = ext.value;
            if id.starts_with(oid::FULCIO_ARC) && !seen.insert(id.clone()) {
                return Err(BundleError::Certificate(format!(
                    "signing certificate carries the Fulcio extension {id} twice"
                )));
            }
            if is_claim_oid(&id) {
                claims.fulcio.insert(id.clone(), der_utf8(value, &id)?);
            }
            match id.as_str() {
                oid::ISSUER_LEGACY => issuer_legacy = Some(raw_string(value, &id)?),
                oid::TRIGGER_LEGACY => trigger_legacy = Some(raw_string(value, &id)?),
                oid::SHA_LEGACY => sha_legacy = Some(raw_string(value, &id)?),
                oid::WORKFLOW_NAME_LEGACY => {
                    claims.fulcio.insert(id.clone(), raw_string(value, &id)?);
                }
                oid::REPOSITORY_LEGACY => repo_legacy = Some(format!("{GITHUB}{}", raw_string(value, &id)?)),
                oid::REF_LEGACY => ref_legacy = Some(raw_string(value, &id)?),
                oid::ISSUER => claims.issuer = Some(der_utf8(value, &id)?),
                oid::SOURCE_REPOSITORY_URI => claims.source_repository = Some(der_utf8(value, &id)?),
                oid::SOURCE_REPOSITORY_DIGEST => claims.source_sha = Some(der_utf8(value, &id)?),
                oid::SOURCE_REPOSITORY_REF => claims.source_ref = Some(der_utf8(value, &id)?),
                oid::BUILD_CONFIG_URI => claims.build_config = Some(der_utf8(value, &id)?),
                oid::BUILD_TRIGGER => claims.trigger = Some(der_utf8(value, &id)?),
                _ => {}
            }
        }
        claims.issuer = claims.issuer.or(issuer_legacy);
        claims.source_repository = claims.source_repository.or(repo_legacy);
        claims.source_ref = claims.source_ref.or(ref_legacy);
        claims.source_sha = claims.source_sha.or(sha_legacy);
        claims.trigger = claims.trigger.or(trigger_legacy);
        let san = cert
            .subject_alternative_name()
            .map_err(|e| BundleError::Certificate(format!("signing certificate has a malformed SAN: {e}")))?;
        claims.subject = san.and_then(|san| {
            san.value.general_names.iter().find_map(|name| match name {
                GeneralName::URI(uri) => Some((*uri).to_owned()),
                GeneralName::RFC822Name(email) => Some((*email).to_owned()),
                _ => None,
            })
        });
        Ok(claims)
    }

    /// "SUBJECT (issuer ISSUER)", for messages and [`super::bundle::Verified::signer`].
    pub fn describe(&self) -> String {
        format!(
            "{} (issuer {})",
            self.subject.as_deref().unwrap_or("<no URI or email SAN>"),
            self.issuer.as_deref().unwrap_or("<none>")
        )
    }

    /// The workflow path (`.github/workflows/x.yml`) of the build config URI, else of the SAN,
    /// when it belongs to `repo_uri`.
    fn workflow_in(&self, repo_uri: &str) -> Option<&str> {
        let prefix = format!("{repo_uri}/");
        [self.build_config.as_deref(), self.subject.as_deref()].into_iter().flatten().find_map(|uri| {
            let rest = uri.strip_prefix(&prefix)?;
            Some(rest.split_once('@').map_or(rest, |(path, _)| path))
        })
    }
}

/// Check a certificate's claims against several identities (`keyless.identities`): the first
/// that matches; if none does, the mismatch lists every identity expected.
pub fn check_any_identity(cert_der: &[u8], identities: &[Identity]) -> Result<String, BundleError> {
    let claims = Claims::from_der(cert_der)?;
    let mut expected = Vec::new();
    let mut found = None;
    for identity in identities {
        match match_claims(&claims, identity) {
            Ok(()) => return Ok(claims.describe()),
            Err(BundleError::IdentityMismatch { expected: e, found: f }) => {
                expected.push(e);
                found.get_or_insert(f);
            }
            Err(other) => return Err(other),
        }
    }
    Err(BundleError::IdentityMismatch {
        expected: if expected.len() == 1 { expected.remove(0) } else { format!("one of [{}]", expected.join("; ")) },
        found: found.unwrap_or_else(|| "no identity to match".to_owned()),
    })
}

/// Check a certificate's claims against `identity`. Returns a description of the identity found
/// ("SAN (issuer URL)"). A mismatch names what was expected and what the certificate carried.
pub fn check_identity(cert_der: &[u8], identity: &Identity) -> Result<String, BundleError> {
    let claims = Claims::from_der(cert_der)?;
    match_claims(&claims, identity)?;
    Ok(claims.describe())
}

fn mismatch(expected: String, found: Option<&str>, what: &str) -> BundleError {
    BundleError::IdentityMismatch {
        expected,
        found: found.map_or_else(|| format!("no {what} in the certificate"), |f| format!("{what} {f}")),
    }
}

/// Check already-read claims against `identity`.
pub fn match_claims(claims: &Claims, identity: &Identity) -> Result<(), BundleError> {
    match &identity.issuer_regexp {
        Some(re) if !claims.issuer.as_deref().is_some_and(|i| re.is_match(i)) => {
            let expected = format!("issuer matching regexp {}", identity.issuer);
            return Err(mismatch(expected, claims.issuer.as_deref(), "issuer"));
        }
        Some(_) => {}
        None if claims.issuer.as_deref() != Some(identity.issuer.as_str()) => {
            return Err(mismatch(format!("issuer {}", identity.issuer), claims.issuer.as_deref(), "issuer"));
        }
        None => {}
    }
    let subject = claims.subject.as_deref();
    let subject_ok = match &identity.subject {
        SubjectMatch::Exact(s) => subject == Some(s.as_str()),
        SubjectMatch::Pattern(glob) => subject.is_some_and(|s| glob.matches(s)),
        SubjectMatch::RegExp(re) => subject.is_some_and(|s| re.is_match(s)),
        // Compiled policies pair `GithubOnly` with `github` claims or `claims`; without, refuse.
        SubjectMatch::GithubOnly => identity.github.is_some() || !identity.claims.is_empty(),
    };
    if !subject_ok {
        let expected = match &identity.subject {
            SubjectMatch::Exact(s) => format!("subject {s}"),
            SubjectMatch::Pattern(g) => format!("subject matching glob {g}"),
            SubjectMatch::RegExp(re) => format!("subject matching regexp {}", re.as_str()),
            SubjectMatch::GithubOnly => "a subject, GitHub claims or claims (the policy gives neither)".to_owned(),
        };
        return Err(mismatch(expected, subject, "subject"));
    }
    if let Some(github) = &identity.github {
        let repo_uri = format!("{GITHUB}{}", github.repository.trim_end_matches('/'));
        if claims.source_repository.as_deref() != Some(repo_uri.as_str()) {
            return Err(mismatch(
                format!("GitHub repository {repo_uri}"),
                claims.source_repository.as_deref(),
                "source repository",
            ));
        }
        if let Some(workflow) = &github.workflow {
            let found = claims.workflow_in(&repo_uri);
            if found != Some(workflow.trim_start_matches('/')) {
                let found = found.map(str::to_owned).or_else(|| claims.build_config.clone());
                return Err(mismatch(format!("workflow {workflow}"), found.as_deref(), "workflow"));
            }
        }
        if let Some(pattern) = &github.git_ref {
            let glob = Glob::new(pattern).map_err(|e| BundleError::IdentityMismatch {
                expected: format!("ref matching {pattern:?}"),
                found: format!("nothing checked: the pattern is invalid ({e})"),
            })?;
            if !claims.source_ref.as_deref().is_some_and(|r| glob.matches(r)) {
                return Err(mismatch(format!("ref matching {pattern}"), claims.source_ref.as_deref(), "ref"));
            }
        }
        if let Some(sha) = &github.sha
            && !claims.source_sha.as_deref().is_some_and(|s| s.eq_ignore_ascii_case(sha))
        {
            return Err(mismatch(format!("commit {sha}"), claims.source_sha.as_deref(), "commit"));
        }
        if let Some(trigger) = &github.trigger
            && claims.trigger.as_deref() != Some(trigger.as_str())
        {
            return Err(mismatch(format!("trigger {trigger}"), claims.trigger.as_deref(), "trigger"));
        }
    }
    for claim in &identity.claims {
        let found = claims.fulcio.get(claim.oid).map(String::as_str);
        if !found.is_some_and(|f| claim.matches(f)) {
            return Err(mismatch(claim.describe(), found, claim.name));
        }
    }
    Ok(())
}

/// A legacy extension value: the raw UTF-8 bytes.
fn raw_string(value: &[u8], oid: &str) -> Result<String, BundleError> {
    String::from_utf8(value.to_vec())
        .map_err(|_| BundleError::Certificate(format!("certificate extension {oid} is not UTF-8")))
}

/// A DER `UTF8String` (tag 12), with its definite length covering the whole value.
fn der_utf8(value: &[u8], oid: &str) -> Result<String, BundleError> {
    let bad = || BundleError::Certificate(format!("certificate extension {oid} is not a DER UTF8String"));
    let (&tag, rest) = value.split_first().ok_or_else(bad)?;
    let (&first, rest) = rest.split_first().ok_or_else(bad)?;
    if tag != 0x0c {
        return Err(bad());
    }
    let (len, body) = match first {
        n if n < 0x80 => (usize::from(n), rest),
        0x81 | 0x82 => {
            let n = usize::from(first - 0x80);
            let (len_bytes, body) = (rest.get(..n).ok_or_else(bad)?, rest.get(n..).ok_or_else(bad)?);
            (len_bytes.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b)), body)
        }
        _ => return Err(bad()),
    };
    if body.len() != len {
        return Err(bad());
    }
    String::from_utf8(body.to_vec()).map_err(|_| bad())
}

#[cfg(test)]
#[path = "identity_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "identity_claims_tests.rs"]
mod claims_tests;
