//! DSSE pre-authentication encoding and in-toto Statements (v0.1 and v1).
//!
//! Only what callers of [`super::bundle::verify_bundle`] need to check a verified payload:
//! the subjects' sha256 digests and the predicate type. Parse only payloads whose signature
//! has been verified.

use serde::Deserialize;

/// The DSSE payload type of in-toto statements.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// `_type` of in-toto Statement v0.1.
pub const STATEMENT_V01: &str = "https://in-toto.io/Statement/v0.1";
/// `_type` of in-toto Statement v1.
pub const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";

/// An in-toto statement that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DsseError {
    #[error("DSSE payload type is {0:?}, not {IN_TOTO_PAYLOAD_TYPE:?}: it is not an in-toto attestation")]
    PayloadType(String),
    #[error("in-toto statement is not valid JSON of the expected shape: {0}")]
    Json(String),
    #[error("in-toto statement _type is {0:?}; supported: {STATEMENT_V01}, {STATEMENT_V1}")]
    Type(String),
    #[error("in-toto statement has no subject; an attestation must name what it is about")]
    NoSubject,
    #[error("in-toto subject {name:?} has a malformed sha256 digest {digest:?} (want 64 hex digits)")]
    Digest { name: String, digest: String },
}

/// DSSE v1 pre-authentication encoding: what the envelope signature covers.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {} {} ", payload_type.len(), payload_type, payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

/// One subject of a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub name: String,
    pub sha256: Option<[u8; 32]>,
}

/// A parsed in-toto statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// `_type`: v0.1 or v1.
    pub statement_type: String,
    pub subjects: Vec<Subject>,
    pub predicate_type: String,
    /// The predicate (JSON null when absent).
    pub predicate: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawStatement {
    #[serde(rename = "_type")]
    statement_type: String,
    #[serde(default)]
    subject: Vec<RawSubject>,
    predicate_type: String,
    #[serde(default)]
    predicate: serde_json::Value,
}

#[derive(Deserialize)]
struct RawSubject {
    #[serde(default)]
    name: String,
    #[serde(default)]
    digest: std::collections::BTreeMap<String, String>,
}

impl Statement {
    /// Parse a DSSE payload of type [`IN_TOTO_PAYLOAD_TYPE`].
    pub fn from_payload(payload_type: &str, payload: &[u8]) -> Result<Self, DsseError> {
        if payload_type != IN_TOTO_PAYLOAD_TYPE {
            return Err(DsseError::PayloadType(payload_type.to_owned()));
        }
        let raw: RawStatement = serde_json::from_slice(payload).map_err(|e| DsseError::Json(e.to_string()))?;
        if raw.statement_type != STATEMENT_V01 && raw.statement_type != STATEMENT_V1 {
            return Err(DsseError::Type(raw.statement_type));
        }
        if raw.subject.is_empty() {
            return Err(DsseError::NoSubject);
        }
        let subjects = raw
            .subject
            .into_iter()
            .map(|s| {
                let sha256 = match s.digest.get("sha256") {
                    None => None,
                    Some(hex) => Some(
                        decode_sha256(hex)
                            .ok_or_else(|| DsseError::Digest { name: s.name.clone(), digest: hex.clone() })?,
                    ),
                };
                Ok(Subject { name: s.name, sha256 })
            })
            .collect::<Result<_, DsseError>>()?;
        Ok(Self {
            statement_type: raw.statement_type,
            subjects,
            predicate_type: raw.predicate_type,
            predicate: raw.predicate,
        })
    }

    /// Whether some subject has this sha256 digest.
    pub fn has_sha256(&self, digest: &[u8; 32]) -> bool {
        self.subjects.iter().any(|s| s.sha256.as_ref() == Some(digest))
    }

    /// The first subject sha256 digest, if any.
    pub fn first_sha256(&self) -> Option<[u8; 32]> {
        self.subjects.iter().find_map(|s| s.sha256)
    }
}

/// 64 hex digits (either case) → 32 bytes.
pub fn decode_sha256(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = char::from(pair[0]).to_digit(16)?;
        let lo = char::from(pair[1]).to_digit(16)?;
        out[i] = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

/// 32 bytes → lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4";

    #[test]
    fn pae_matches_the_spec_example() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
    }

    #[test]
    fn parses_v01_and_v1() {
        for t in [STATEMENT_V01, STATEMENT_V1] {
            let json = format!(
                r#"{{"_type":"{t}","subject":[{{"name":"x","digest":{{"sha256":"{DIGEST}"}}}}],"predicateType":"p","predicate":{{"a":1}}}}"#
            );
            let s = Statement::from_payload(IN_TOTO_PAYLOAD_TYPE, json.as_bytes()).expect("statement");
            assert_eq!(s.predicate_type, "p");
            assert_eq!(s.first_sha256().map(|d| hex(&d)), Some(DIGEST.to_owned()));
            assert!(s.has_sha256(&decode_sha256(DIGEST).expect("digest")));
            assert!(!s.has_sha256(&[0; 32]));
        }
    }

    #[test]
    fn rejects_bad_statements() {
        let bad = [
            (IN_TOTO_PAYLOAD_TYPE, r#"{"_type":"other","subject":[{"digest":{}}],"predicateType":"p"}"#),
            (IN_TOTO_PAYLOAD_TYPE, r#"{"_type":"https://in-toto.io/Statement/v1","subject":[],"predicateType":"p"}"#),
            (
                IN_TOTO_PAYLOAD_TYPE,
                r#"{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":"zz"}}],"predicateType":"p"}"#,
            ),
            (IN_TOTO_PAYLOAD_TYPE, "not json"),
            ("text/plain", "{}"),
        ];
        for (pt, json) in bad {
            assert!(Statement::from_payload(pt, json.as_bytes()).is_err(), "{json}");
        }
    }
}
