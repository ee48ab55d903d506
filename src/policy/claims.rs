//! Fulcio's certificate extensions as typed claims (`keyless.claims`), for any OIDC issuer:
//! GitHub Actions, GitLab CI, Buildkite, … Each claim is named as Fulcio's `docs/oid-info.md`
//! names it (camelCase) and given an exact value, or with the `RegExp` suffix an anchored
//! regular expression. Every claim named must be present with a matching value; a claim not
//! named is not checked.

use std::collections::BTreeMap;

use super::compile::anchored;

/// The claims a policy can name, with their extension OID (each a DER `UTF8String`).
pub const FULCIO_CLAIMS: [(&str, &str); 15] = [
    ("issuer", "1.3.6.1.4.1.57264.1.8"),
    ("buildSignerURI", "1.3.6.1.4.1.57264.1.9"),
    ("buildSignerDigest", "1.3.6.1.4.1.57264.1.10"),
    ("runnerEnvironment", "1.3.6.1.4.1.57264.1.11"),
    ("sourceRepositoryURI", "1.3.6.1.4.1.57264.1.12"),
    ("sourceRepositoryDigest", "1.3.6.1.4.1.57264.1.13"),
    ("sourceRepositoryRef", "1.3.6.1.4.1.57264.1.14"),
    ("sourceRepositoryIdentifier", "1.3.6.1.4.1.57264.1.15"),
    ("sourceRepositoryOwnerURI", "1.3.6.1.4.1.57264.1.16"),
    ("sourceRepositoryOwnerIdentifier", "1.3.6.1.4.1.57264.1.17"),
    ("buildConfigURI", "1.3.6.1.4.1.57264.1.18"),
    ("buildConfigDigest", "1.3.6.1.4.1.57264.1.19"),
    ("buildTrigger", "1.3.6.1.4.1.57264.1.20"),
    ("runInvocationURI", "1.3.6.1.4.1.57264.1.21"),
    ("sourceRepositoryVisibilityAtSigning", "1.3.6.1.4.1.57264.1.22"),
];

/// The suffix of a claim given as a regular expression: `sourceRepositoryRefRegExp`.
pub const REGEXP_SUFFIX: &str = "RegExp";

/// How a claim's value is matched.
#[derive(Debug, Clone)]
pub enum ClaimValue {
    Exact(String),
    /// Anchored at both ends, as `subjectRegExp`.
    RegExp(regex::Regex),
}

/// One required claim of a keyless identity.
#[derive(Debug, Clone)]
pub struct ClaimMatch {
    /// The claim's name (`sourceRepositoryRef`).
    pub name: &'static str,
    /// Its extension OID.
    pub oid: &'static str,
    pub value: ClaimValue,
}

impl ClaimMatch {
    /// An exact claim by name; `None` for a name Fulcio does not define.
    pub fn exact(name: &str, value: &str) -> Option<Self> {
        let (name, oid) = FULCIO_CLAIMS.iter().find(|(n, _)| *n == name)?;
        Some(Self { name, oid, value: ClaimValue::Exact(value.to_owned()) })
    }

    pub fn matches(&self, found: &str) -> bool {
        match &self.value {
            ClaimValue::Exact(v) => v == found,
            ClaimValue::RegExp(re) => re.is_match(found),
        }
    }

    /// "sourceRepositoryRef refs/heads/main", for mismatch messages.
    pub fn describe(&self) -> String {
        match &self.value {
            ClaimValue::Exact(v) => format!("{} {v}", self.name),
            ClaimValue::RegExp(re) => format!("{} matching regexp {}", self.name, re.as_str()),
        }
    }
}

/// Compile a `claims:` block. The error names the offending key and the fix.
pub fn compile_claims(block: &BTreeMap<String, String>) -> Result<Vec<ClaimMatch>, String> {
    let mut out: Vec<ClaimMatch> = Vec::new();
    for (key, value) in block {
        let (base, regexp) = match key.strip_suffix(REGEXP_SUFFIX) {
            Some(base) => (base, true),
            None => (key.as_str(), false),
        };
        let Some((name, oid)) = FULCIO_CLAIMS.iter().find(|(n, _)| *n == base) else {
            let known: Vec<&str> = FULCIO_CLAIMS.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "claims.{key}: not a Fulcio certificate claim; use one of {} (or the same with a RegExp suffix)",
                known.join(", ")
            ));
        };
        if out.iter().any(|c| c.name == *name) {
            return Err(format!("claims: give only one of {name} and {name}{REGEXP_SUFFIX}"));
        }
        let value = if regexp {
            ClaimValue::RegExp(anchored(value).map_err(|e| format!("claims.{key}: {e}"))?)
        } else {
            ClaimValue::Exact(value.clone())
        };
        out.push(ClaimMatch { name, oid, value });
    }
    Ok(out)
}

/// Whether `oid` is one of [`FULCIO_CLAIMS`].
pub fn is_claim_oid(oid: &str) -> bool {
    FULCIO_CLAIMS.iter().any(|(_, o)| *o == oid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn exact_and_anchored_regexp_claims() {
        let claims = compile_claims(&block(&[
            ("sourceRepositoryURI", "https://gitlab.com/acme/app"),
            ("sourceRepositoryRefRegExp", "refs/tags/v.*"),
        ]))
        .expect("claims");
        assert_eq!(claims.len(), 2);
        let re = claims.iter().find(|c| c.name == "sourceRepositoryRef").expect("ref");
        assert!(re.matches("refs/tags/v1"));
        assert!(!re.matches("refs/heads/x/refs/tags/v1"), "regexps are anchored");
        let uri = claims.iter().find(|c| c.name == "sourceRepositoryURI").expect("uri");
        assert!(uri.matches("https://gitlab.com/acme/app"));
        assert!(!uri.matches("https://gitlab.com/acme/app2"));
    }

    #[test]
    fn unknown_or_doubled_claims_are_refused() {
        let err = compile_claims(&block(&[("sourceRepo", "x")])).expect_err("unknown");
        assert!(err.contains("sourceRepositoryURI"), "{err}");
        let err = compile_claims(&block(&[("buildTrigger", "push"), ("buildTriggerRegExp", "p.*")])).expect_err("both");
        assert!(err.contains("only one of buildTrigger"), "{err}");
        assert!(compile_claims(&block(&[("buildTriggerRegExp", "x)|(.*")])).is_err());
    }
}
