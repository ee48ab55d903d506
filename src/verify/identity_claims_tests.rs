//! `keyless.claims`: Fulcio extensions of any issuer, on certificates built here.

use rcgen::{CertificateParams, CustomExtension, KeyPair, SanType};

use super::*;
use crate::policy::claims::{ClaimMatch, FULCIO_CLAIMS, compile_claims};

const GITLAB: &str = "https://gitlab.com";
const SAN: &str = "https://gitlab.com/acme/app//.gitlab-ci.yml@refs/heads/main";

fn arc(oid: &str) -> Vec<u64> {
    oid.split('.').map(|n| n.parse().expect("oid arc")).collect()
}

fn utf8(value: &str) -> Vec<u8> {
    let mut out = vec![0x0c, u8::try_from(value.len()).expect("short")];
    out.extend_from_slice(value.as_bytes());
    out
}

/// A self-signed certificate with the SAN and these raw extensions (OID, content).
fn cert(extensions: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::URI(SAN.to_owned().try_into().expect("ia5"))];
    params.custom_extensions =
        extensions.iter().map(|(oid, content)| CustomExtension::from_oid_content(&arc(oid), content.clone())).collect();
    let key = KeyPair::generate().expect("key");
    params.self_signed(&key).expect("certificate").der().to_vec()
}

/// A value per claim, distinct from every other claim's.
fn value_of(name: &str) -> String {
    if name == "issuer" { GITLAB.to_owned() } else { format!("value-of-{name}") }
}

/// A certificate carrying every claim (DER UTF8String), with its own value.
fn full() -> Vec<u8> {
    let extensions: Vec<(&str, Vec<u8>)> = FULCIO_CLAIMS.iter().map(|(n, oid)| (*oid, utf8(&value_of(n)))).collect();
    cert(&extensions)
}

fn identity(claims: Vec<ClaimMatch>) -> Identity {
    Identity { issuer: GITLAB.to_owned(), subject: SubjectMatch::GithubOnly, github: None, issuer_regexp: None, claims }
}

fn one(name: &str, value: &str) -> Identity {
    identity(vec![ClaimMatch::exact(name, value).expect("a Fulcio claim")])
}

fn mismatch_of(result: Result<String, BundleError>) -> (String, String) {
    match result {
        Err(BundleError::IdentityMismatch { expected, found }) => (expected, found),
        other => panic!("want an identity mismatch, got {other:?}"),
    }
}

#[test]
fn every_claim_matches_its_own_value() {
    let cert = full();
    for (name, _) in FULCIO_CLAIMS {
        check_identity(&cert, &one(name, &value_of(name))).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let all = FULCIO_CLAIMS.iter().map(|(n, _)| ClaimMatch::exact(n, &value_of(n)).expect("claim")).collect();
    check_identity(&cert, &identity(all)).expect("all claims together");
}

#[test]
fn every_claim_mismatch_is_typed_and_names_the_claim() {
    let cert = full();
    for (name, _) in FULCIO_CLAIMS {
        let (expected, found) = mismatch_of(check_identity(&cert, &one(name, "other")));
        assert_eq!(expected, format!("{name} other"));
        assert_eq!(found, format!("{name} {}", value_of(name)));
    }
}

#[test]
fn every_absent_claim_is_refused() {
    for (name, oid) in FULCIO_CLAIMS {
        // Every extension but this one (the issuer stays, as extension 1.8 is the one missing).
        let extensions: Vec<(&str, Vec<u8>)> =
            FULCIO_CLAIMS.iter().filter(|(_, o)| *o != oid).map(|(n, o)| (*o, utf8(&value_of(n)))).collect();
        let (_, found) = mismatch_of(check_identity(&cert(&extensions), &one(name, &value_of(name))));
        assert_eq!(found, format!("no {name} in the certificate"));
    }
}

#[test]
fn every_duplicated_claim_is_refused() {
    for (name, oid) in FULCIO_CLAIMS {
        let value = value_of(name);
        let twice = cert(&[(oid, utf8(&value)), (oid, utf8(&value))]);
        match check_identity(&twice, &one(name, &value)) {
            Err(BundleError::Certificate(m)) => assert!(m.contains("twice") && m.contains(oid), "{m}"),
            other => panic!("{name} twice: want a certificate error, got {other:?}"),
        }
    }
}

#[test]
fn a_claim_not_encoded_as_utf8string_is_refused() {
    for (name, oid) in FULCIO_CLAIMS {
        let value = value_of(name);
        // Raw bytes (the legacy encoding) and a PrintableString are both refused for `.8`+.
        for content in [
            value.as_bytes().to_vec(),
            [&[0x13, u8::try_from(value.len()).expect("short")][..], value.as_bytes()].concat(),
        ] {
            let bad = cert(&[(oid, content)]);
            assert!(matches!(check_identity(&bad, &one(name, &value)), Err(BundleError::Certificate(_))), "{name}");
        }
    }
}

#[test]
fn unnamed_claims_are_not_checked_and_regexps_are_anchored() {
    let ref_oid = "1.3.6.1.4.1.57264.1.14";
    let cert = cert(&[("1.3.6.1.4.1.57264.1.8", utf8(GITLAB)), (ref_oid, utf8("refs/heads/main"))]);
    let block = |k: &str, v: &str| [(k.to_owned(), v.to_owned())].into_iter().collect();
    let claims = compile_claims(&block("sourceRepositoryRefRegExp", "refs/heads/.*")).expect("claims");
    check_identity(&cert, &identity(claims)).expect("regexp claim");
    let claims = compile_claims(&block("sourceRepositoryRefRegExp", "heads")).expect("claims");
    let (expected, found) = mismatch_of(check_identity(&cert, &identity(claims)));
    assert!(expected.contains("sourceRepositoryRef matching regexp ^(?:heads)$"), "{expected}");
    assert_eq!(found, "sourceRepositoryRef refs/heads/main");
}

#[test]
fn a_legacy_issuer_does_not_satisfy_the_issuer_claim() {
    // The policy's `issuer` accepts the legacy `.1`; `claims.issuer` names the current `.8` only.
    let legacy = cert(&[("1.3.6.1.4.1.57264.1.1", GITLAB.as_bytes().to_vec())]);
    let plain = Identity { subject: SubjectMatch::Exact(SAN.to_owned()), ..identity(Vec::new()) };
    check_identity(&legacy, &plain).expect("legacy issuer");
    let (_, found) = mismatch_of(check_identity(&legacy, &one("issuer", GITLAB)));
    assert_eq!(found, "no issuer in the certificate");
}
