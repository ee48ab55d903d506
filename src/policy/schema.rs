//! The JSON Schema of the policy format (pure), for editors (`# yaml-language-server: $schema=`)
//! and `portcullis policy schema`. Committed as `policies/policy.schema.json`.
//!
//! Written beside the types of [`super::model`] and checked against them: the tests read every
//! struct's field list and every enum's variant list out of serde itself (what
//! `deny_unknown_fields` reports) and require the schema to list exactly those, so a field added
//! to the model without the schema fails the build's tests, and the committed file is compared
//! with [`schema`]'s output.

use serde_json::{Value, json};

use super::model::API_VERSION;

/// The schema's `$id`.
pub const SCHEMA_ID: &str = "https://portcullis.dev/schemas/policy.v1alpha1.json";

fn globs(description: &str) -> Value {
    json!({"type": "array", "items": {"type": "string"}, "description": description})
}

fn object(description: &str, required: &[&str], properties: Value) -> Value {
    json!({
        "type": "object",
        "description": description,
        "additionalProperties": false,
        "required": required,
        "properties": properties,
    })
}

/// `keyless.claims`: every Fulcio claim, exact or (`…RegExp`) an anchored regular expression.
fn claims() -> Value {
    let mut properties = serde_json::Map::new();
    for (name, oid) in super::claims::FULCIO_CLAIMS {
        let exact = format!("Exact value of the Fulcio certificate extension {oid}.");
        properties.insert(name.to_owned(), json!({"type": "string", "description": exact}));
        let regexp = format!("Regular expression (always anchored) over the extension {oid}; instead of {name}.");
        properties.insert(format!("{name}RegExp"), json!({"type": "string", "description": regexp}));
    }
    let mut block = object(
        "Fulcio certificate claims (any issuer: GitLab CI, Buildkite, GitHub, …); each named claim must be \
         present in the certificate with that value.",
        &[],
        Value::Object(properties),
    );
    block["minProperties"] = json!(1);
    block
}

fn metadata() -> Value {
    object(
        "Policy name (used in messages, metrics and audit annotations), labels and annotations.",
        &["name"],
        json!({
            "name": {"type": "string", "minLength": 1},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        }),
    )
}

fn mode() -> Value {
    json!({
        "enum": ["enforce", "warn", "audit"],
        "default": "enforce",
        "description": "enforce: deny (also when a check could not be made); warn: allow with a warning; audit: allow with an audit annotation.",
    })
}

fn match_spec() -> Value {
    object(
        "Which requests the policy applies to; an empty list matches everything.",
        &[],
        json!({
            "namespaces": globs("Namespace globs (e.g. prod, payments-*)."),
            "excludeNamespaces": globs("Namespace globs never matched."),
            "kinds": globs("Object kinds (Pod, Deployment, … or any kind for a ResourcePolicy)."),
            "operations": {
                "type": "array",
                "items": {"enum": ["CREATE", "UPDATE", "DELETE", "CONNECT"]},
                "description": "Admission operations.",
            },
        }),
    )
}

fn condition(what: &str) -> Value {
    object(
        what,
        &["expression"],
        json!({
            "expression": {"type": "string", "description": "A CEL expression that must be true."},
            "message": {"type": "string", "description": "Shown when the expression is false."},
        }),
    )
}

fn authority() -> Value {
    let key = object(
        "A public key: exactly one of publicKeyFile, publicKey, secretRef.",
        &[],
        json!({
            "publicKeyFile": {"type": "string", "description": "PEM public key file, relative to the policy file."},
            "publicKey": {"type": "string", "description": "PEM public key (-----BEGIN PUBLIC KEY-----)."},
            "secretRef": object("A key held in a Kubernetes Secret.", &["name"], json!({
                "name": {"type": "string"},
                "namespace": {"type": "string"},
                "key": {"type": "string"},
            })),
        }),
    );
    let github = object(
        "GitHub Actions claims of the Fulcio certificate (ref is required: write ref: \"**\" to accept every ref).",
        &["repository", "ref"],
        json!({
            "repository": {"type": "string", "description": "owner/name"},
            "workflow": {"type": "string", "description": "e.g. .github/workflows/release.yml"},
            "ref": {"type": "string", "description": "e.g. refs/tags/v* (glob)"},
            "sha": {"type": "string"},
            "trigger": {"type": "string", "description": "e.g. push"},
        }),
    );
    let identity_properties = json!({
        "issuer": {"type": "string", "description": "OIDC issuer, e.g. https://token.actions.githubusercontent.com"},
        "issuerRegExp": {"type": "string", "description": "Regular expression over the OIDC issuer, always anchored; instead of issuer."},
        "subject": {"type": "string", "description": "Exact certificate identity (SAN)."},
        "subjectPattern": {"type": "string", "description": "Glob over the identity."},
        "subjectRegExp": {"type": "string", "description": "Regular expression over the identity, always anchored."},
        "github": github,
        "claims": claims(),
    });
    let identity =
        object("One keyless identity: the issuer and one subject matcher or github.", &[], identity_properties.clone());
    let mut keyless_properties = identity_properties;
    keyless_properties["identities"] = json!({
        "type": "array",
        "minItems": 1,
        "items": identity,
        "description": "Several identities, any one of which may sign; instead of the fields above.",
    });
    let keyless = object(
        "A keyless (Fulcio certificate) identity: the issuer and one subject matcher or github, or identities.",
        &[],
        keyless_properties,
    );
    object(
        "Who may sign: exactly one of key or keyless.",
        &["name"],
        json!({
            "name": {"type": "string", "minLength": 1},
            "key": key,
            "keyless": keyless,
            "transparencyLog": {
                "enum": ["required", "skip", "timestamp"],
                "default": "required",
                "description": "required: a verified Rekor entry; skip: accept signatures without a Rekor entry \
                                (key-based only); timestamp: no Rekor entry needed, but a verified RFC 3161 \
                                timestamp from a timestamp authority of the trusted root (GitHub's artifact \
                                attestations for private repositories).",
            },
            "trustedRoot": {
                "type": "string",
                "description": "A trusted_root.json for a private Sigstore instance, relative to the policy file, \
                                or a built-in root: github (GitHub's artifact attestation instance).",
            },
        }),
    )
}

fn attestation() -> Value {
    object(
        "A signed in-toto attestation the image must carry.",
        &["name", "predicateType"],
        json!({
            "name": {"type": "string", "minLength": 1},
            "predicateType": {"type": "string", "description": "A short name (cyclonedx, spdxjson, slsaprovenance1, vuln, …) or a URI."},
            "authorities": {"type": "array", "items": {"type": "string"}, "description": "Names of this policy's authorities that may sign it; empty = any."},
            "conditions": {"type": "array", "items": condition("A CEL condition over predicate, statement, image, sbom, now.")},
        }),
    )
}

fn image_policy_spec() -> Value {
    object(
        "What images must satisfy.",
        &["images"],
        json!({
            "mode": mode(),
            "match": match_spec(),
            "images": globs("Image globs this policy applies to (canonical names: docker.io/library/nginx)."),
            "excludeImages": globs("Image globs excluded from images."),
            "allowedImages": globs("If set, every image this policy applies to must also match one of these."),
            "digest": {
                "enum": ["require", "pin", "allow-tags"],
                "default": "require",
                "description": "require: references carry a digest; pin: /mutate rewrites tags to digests; allow-tags.",
            },
            "platforms": {
                "enum": ["index", "every-platform"],
                "default": "index",
                "description": "What must be signed for a multi-platform image.",
            },
            "require": {
                "description": "How the authorities combine: any, all, none (attestations only) or {atLeast: N}.",
                "default": "any",
                "oneOf": [
                    {"enum": ["any", "all", "none"]},
                    object("At least N distinct authorities.", &["atLeast"], json!({
                        "atLeast": {"type": "integer", "minimum": 1},
                    })),
                ],
            },
            "authorities": {"type": "array", "items": authority()},
            "attestations": {"type": "array", "items": attestation()},
        }),
    )
}

fn resource_policy_spec() -> Value {
    object(
        "CEL rules over any admitted object.",
        &[],
        json!({
            "mode": mode(),
            "match": match_spec(),
            "rules": {"type": "array", "items": condition("A rule over object, oldObject and request.")},
            "sopsCiphertext": {
                "enum": ["deny", "allow"],
                "description": "allow: let objects this policy matches carry SOPS ciphertext (denied by default).",
            },
        }),
    )
}

fn document(kind: &str, spec: Value) -> Value {
    let mut doc = object(
        &format!("A portcullis {kind}."),
        &["apiVersion", "kind", "metadata", "spec"],
        json!({
            "apiVersion": {"const": API_VERSION},
            "kind": {"const": kind},
            "metadata": metadata(),
            "spec": spec,
        }),
    );
    doc["title"] = Value::from(kind);
    doc
}

/// The whole schema: one document is an ImagePolicy or a ResourcePolicy (chosen by `kind`).
pub fn schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "portcullis policy",
        "description": "A portcullis policy document (generated by `portcullis policy schema`; do not edit).",
        "type": "object",
        "required": ["apiVersion", "kind"],
        "properties": {"kind": {"enum": super::model::KINDS}},
        "oneOf": [
            document("ImagePolicy", image_policy_spec()),
            document("ResourcePolicy", resource_policy_spec()),
        ],
    })
}

/// The schema as committed: pretty JSON with a final newline.
pub fn schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&schema()).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use serde::de::DeserializeOwned;

    use super::*;
    use crate::policy::model::*;

    /// The names serde lists after "expected" in an error (`a`, `b`, …).
    fn expected_names(error: &str) -> Vec<String> {
        let tail = error.split("expected").nth(1).unwrap_or_default();
        tail.split('`').skip(1).step_by(2).map(str::to_owned).collect()
    }

    /// Every field of a struct, as serde's `deny_unknown_fields` reports them.
    fn fields<T: DeserializeOwned + std::fmt::Debug>() -> Vec<String> {
        let error = serde_json::from_value::<T>(json!({"portcullis-no-such-field": 0})).expect_err("unknown field");
        let mut names = expected_names(&error.to_string());
        names.sort();
        names
    }

    /// Every variant of an enum, as serde reports them.
    fn variants<T: DeserializeOwned + std::fmt::Debug>() -> Vec<String> {
        let error = serde_json::from_value::<T>(json!("portcullis-no-such-variant")).expect_err("unknown variant");
        let mut names = expected_names(&error.to_string());
        names.sort();
        names
    }

    fn properties(schema: &Value) -> Vec<String> {
        let mut names: Vec<String> = schema["properties"].as_object().expect("properties").keys().cloned().collect();
        names.sort();
        names
    }

    fn enumerated(schema: &Value) -> Vec<String> {
        let mut names: Vec<String> =
            schema["enum"].as_array().expect("enum").iter().map(|v| v.as_str().expect("str").to_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn the_schema_lists_exactly_the_fields_and_values_of_the_model() {
        let s = schema();
        let image = &s["oneOf"][0]["properties"];
        let resource = &s["oneOf"][1]["properties"];
        let spec = &image["spec"];
        let authority = &spec["properties"]["authorities"]["items"];
        let keyless = &authority["properties"]["keyless"];
        let checks: Vec<(&str, Vec<String>, Vec<String>)> = vec![
            ("ImagePolicy", fields::<ImagePolicyDoc>(), properties(&s["oneOf"][0])),
            ("ResourcePolicy", fields::<ResourcePolicyDoc>(), properties(&s["oneOf"][1])),
            ("metadata", fields::<Metadata>(), properties(&image["metadata"])),
            ("ImagePolicy spec", fields::<ImagePolicySpec>(), properties(spec)),
            ("ResourcePolicy spec", fields::<ResourcePolicySpec>(), properties(&resource["spec"])),
            ("match", fields::<MatchSpec>(), properties(&spec["properties"]["match"])),
            ("authority", fields::<AuthoritySpec>(), properties(authority)),
            ("key", fields::<KeySpec>(), properties(&authority["properties"]["key"])),
            (
                "secretRef",
                fields::<SecretRef>(),
                properties(&authority["properties"]["key"]["properties"]["secretRef"]),
            ),
            ("keyless", fields::<KeylessSpec>(), properties(keyless)),
            ("github", fields::<GithubSpec>(), properties(&keyless["properties"]["github"])),
            ("attestation", fields::<AttestationSpec>(), properties(&spec["properties"]["attestations"]["items"])),
            ("condition", fields::<ConditionSpec>(), properties(&resource["spec"]["properties"]["rules"]["items"])),
            ("mode", variants::<Mode>(), enumerated(&spec["properties"]["mode"])),
            ("digest", variants::<DigestRule>(), enumerated(&spec["properties"]["digest"])),
            ("platforms", variants::<Platforms>(), enumerated(&spec["properties"]["platforms"])),
            ("transparencyLog", variants::<TransparencyLog>(), enumerated(&authority["properties"]["transparencyLog"])),
            (
                "sopsCiphertext",
                variants::<SopsCiphertext>(),
                enumerated(&resource["spec"]["properties"]["sopsCiphertext"]),
            ),
        ];
        for (what, from_model, in_schema) in checks {
            assert!(!from_model.is_empty(), "{what}: serde listed nothing");
            assert_eq!(from_model, in_schema, "{what}: the schema and the model disagree");
        }
        // `require` has a hand-written deserializer: its spellings, one by one.
        for word in ["any", "all", "none"] {
            assert!(serde_json::from_value::<Require>(json!(word)).is_ok(), "{word}");
        }
        assert!(serde_json::from_value::<Require>(json!({"atLeast": 2})).is_ok());
        assert!(serde_json::from_value::<Require>(json!("most")).is_err());
    }

    #[test]
    fn the_committed_schema_is_current() {
        let committed = include_str!("../../policies/policy.schema.json");
        assert!(
            committed == schema_text(),
            "policies/policy.schema.json is out of date: run `portcullis policy schema > policies/policy.schema.json`"
        );
    }

    #[test]
    fn every_example_policy_names_the_schema() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("policies/") {
            let path = entry.expect("entry").path();
            if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read");
            assert!(
                text.starts_with("# yaml-language-server: $schema=./policy.schema.json\n"),
                "{} does not start with the schema line",
                path.display()
            );
            seen += 1;
        }
        assert!(seen >= 8, "the examples were found");
    }
}
