//! The policy file format as users write it (pure): `apiVersion: portcullis.dev/v1alpha1`,
//! kinds `ImagePolicy` and `ResourcePolicy`. Every struct rejects unknown fields, so a typo is an
//! error with its line rather than a silently ignored rule.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

/// The only API version this release reads.
pub const API_VERSION: &str = "portcullis.dev/v1alpha1";
/// Document kinds this release reads.
pub const KINDS: [&str; 2] = ["ImagePolicy", "ResourcePolicy"];
/// The kind of `portcullis policy test` cases: skipped by the loader, so they can live in the
/// policy directory (`policies/tests/`).
pub const TEST_KIND: &str = "PolicyTest";

/// What every document has, read first to pick the kind.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Header {
    pub api_version: Option<String>,
    pub kind: Option<String>,
}

/// `metadata` of a policy document.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// A whole `ImagePolicy` document.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ImagePolicyDoc {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: ImagePolicySpec,
}

/// A whole `ResourcePolicy` document.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResourcePolicyDoc {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: ResourcePolicySpec,
}

/// What a failed check does to the request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Deny the request (fail-closed on errors).
    #[default]
    Enforce,
    /// Allow, with a warning returned to the client.
    Warn,
    /// Allow, with an audit annotation.
    Audit,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Enforce => "enforce",
            Mode::Warn => "warn",
            Mode::Audit => "audit",
        })
    }
}

/// `spec.match`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MatchSpec {
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default)]
    pub exclude_namespaces: Vec<String>,
    #[serde(default)]
    pub kinds: Vec<String>,
    #[serde(default)]
    pub operations: Vec<String>,
}

/// `spec` of an `ImagePolicy`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ImagePolicySpec {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default, rename = "match")]
    pub match_: MatchSpec,
    /// Image globs this policy applies to.
    pub images: Vec<String>,
    /// Image globs excluded from `images`.
    #[serde(default)]
    pub exclude_images: Vec<String>,
    /// If set, every image this policy applies to must also match one of these globs.
    #[serde(default)]
    pub allowed_images: Option<Vec<String>>,
    #[serde(default)]
    pub digest: DigestRule,
    #[serde(default)]
    pub platforms: Platforms,
    #[serde(default)]
    pub require: Require,
    #[serde(default)]
    pub authorities: Vec<AuthoritySpec>,
    #[serde(default)]
    pub attestations: Vec<AttestationSpec>,
}

/// `spec.digest`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DigestRule {
    /// The reference must carry a digest.
    #[default]
    Require,
    /// Tags are resolved and the reference is rewritten to the digest (mutating webhook).
    Pin,
    /// Tags are allowed; they are resolved to a digest for verification only.
    AllowTags,
}

/// `spec.platforms`: what must be signed for a multi-platform image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Platforms {
    /// A signature on the image index is enough.
    #[default]
    Index,
    /// Every platform manifest must be signed.
    EveryPlatform,
}

/// `spec.require`: how the authorities of one policy combine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Require {
    /// One authority is enough.
    #[default]
    Any,
    /// Every authority must be satisfied.
    All,
    /// At least this many authorities.
    AtLeast(u32),
    /// No image signature is required: the authorities only sign the policy's attestations.
    None,
}

impl<'de> Deserialize<'de> for Require {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RequireVisitor;
        impl<'de> Visitor<'de> for RequireVisitor {
            type Value = Require;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`any`, `all`, `none` or `{ atLeast: N }`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Require, E> {
                match v {
                    "any" => Ok(Require::Any),
                    "all" => Ok(Require::All),
                    "none" => Ok(Require::None),
                    other => Err(E::invalid_value(de::Unexpected::Str(other), &self)),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Require, A::Error> {
                let mut at_least = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "atLeast" if at_least.is_none() => at_least = Some(map.next_value::<u32>()?),
                        "atLeast" => return Err(de::Error::duplicate_field("atLeast")),
                        other => return Err(de::Error::unknown_field(other, &["atLeast"])),
                    }
                }
                match at_least {
                    Some(0) => Err(de::Error::invalid_value(de::Unexpected::Unsigned(0), &"atLeast of 1 or more")),
                    Some(n) => Ok(Require::AtLeast(n)),
                    None => Err(de::Error::missing_field("atLeast")),
                }
            }
        }
        deserializer.deserialize_any(RequireVisitor)
    }
}

/// One entry of `spec.authorities`: exactly one of `key` or `keyless`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthoritySpec {
    pub name: String,
    #[serde(default)]
    pub key: Option<KeySpec>,
    #[serde(default)]
    pub keyless: Option<KeylessSpec>,
    #[serde(default)]
    pub transparency_log: TransparencyLog,
    /// A `trusted_root.json` for a private Sigstore instance, relative to the policy file, or
    /// a built-in root by name: `github` (GitHub's artifact attestation instance).
    #[serde(default)]
    pub trusted_root: Option<String>,
}

/// `authorities[].key`: exactly one source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KeySpec {
    #[serde(default)]
    pub public_key_file: Option<String>,
    #[serde(default)]
    pub public_key: Option<String>,
    #[serde(default)]
    pub secret_ref: Option<SecretRef>,
}

/// A key held in a Kubernetes Secret.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecretRef {
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
}

/// `authorities[].keyless`: the Fulcio certificate identity.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KeylessSpec {
    #[serde(default)]
    pub issuer: Option<String>,
    /// The OIDC issuer as a regular expression (always anchored), instead of `issuer`.
    #[serde(default)]
    pub issuer_reg_exp: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub subject_pattern: Option<String>,
    #[serde(default)]
    pub subject_reg_exp: Option<String>,
    #[serde(default)]
    pub github: Option<GithubSpec>,
    /// Fulcio certificate extensions by name (`sourceRepositoryURI`, …; `…RegExp` for an
    /// anchored regular expression), for any issuer: see [`super::claims`].
    #[serde(default)]
    pub claims: Option<std::collections::BTreeMap<String, String>>,
    /// Several identities, any one of which may sign; instead of the fields above.
    #[serde(default)]
    pub identities: Option<Vec<KeylessSpec>>,
}

/// Typed GitHub Actions claims read from the Fulcio certificate extensions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GithubSpec {
    pub repository: String,
    #[serde(default)]
    pub workflow: Option<String>,
    #[serde(default, rename = "ref")]
    pub git_ref: Option<String>,
    #[serde(default)]
    pub sha: Option<String>,
    #[serde(default)]
    pub trigger: Option<String>,
}

/// `authorities[].transparencyLog`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransparencyLog {
    #[default]
    Required,
    /// Only for key-based authorities.
    Skip,
    /// No log entry needed: a verified RFC 3161 timestamp from a timestamp authority of the
    /// trusted root instead (GitHub's artifact attestations for private repositories).
    Timestamp,
}

/// One entry of `spec.attestations`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AttestationSpec {
    pub name: String,
    pub predicate_type: String,
    /// Names of the policy's authorities that may have signed it; empty = any of them.
    #[serde(default)]
    pub authorities: Vec<String>,
    #[serde(default)]
    pub conditions: Vec<ConditionSpec>,
}

/// A CEL condition with the message shown when it is false.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConditionSpec {
    pub expression: String,
    #[serde(default)]
    pub message: Option<String>,
}

/// `spec` of a `ResourcePolicy`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResourcePolicySpec {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default, rename = "match")]
    pub match_: MatchSpec,
    #[serde(default)]
    pub rules: Vec<ConditionSpec>,
    /// The built-in check that refuses objects still carrying SOPS metadata or ciphertext:
    /// `deny` (the default everywhere) or `allow` for the objects this policy matches.
    #[serde(default)]
    pub sops_ciphertext: Option<SopsCiphertext>,
}

/// `spec.sopsCiphertext` of a `ResourcePolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SopsCiphertext {
    /// Objects with SOPS ciphertext are refused (the default).
    Deny,
    /// Objects with SOPS ciphertext are let through (e.g. a namespace that stores encrypted
    /// files on purpose).
    Allow,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn require_forms() {
        let r = |s: &str| serde_yaml_ng::from_str::<Require>(s);
        assert_eq!(r("any").expect("any"), Require::Any);
        assert_eq!(r("all").expect("all"), Require::All);
        assert_eq!(r("none").expect("none"), Require::None);
        assert_eq!(r("{atLeast: 2}").expect("n"), Require::AtLeast(2));
        assert!(r("{atLeast: 0}").is_err());
        assert!(r("{atleast: 2}").is_err());
        assert!(r("some").is_err());
    }

    #[test]
    fn unknown_fields_are_errors() {
        let spec = "images: ['**']\nauthorites: []\n";
        let err = serde_yaml_ng::from_str::<ImagePolicySpec>(spec).expect_err("typo");
        assert!(err.to_string().contains("authorites"), "{err}");
    }
}
