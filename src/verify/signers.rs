//! Who signed, and how `require` counts signers.
//!
//! A [`SignerIdentity`] is what makes two signatures "by the same signer":
//! - a key signature: the public key (SHA-256 of its SubjectPublicKeyInfo DER);
//! - a keyless signature: the certificate identity, OIDC issuer + subject (SAN). One identity
//!   counts once however many certificates or signatures it made: a workflow that signs twice
//!   is still one signer. This is stricter than counting certificates, on purpose.
//!
//! `require: all` and `require: {atLeast: N}` count authorities satisfied by DISTINCT signers:
//! each counted authority must be satisfied by a signer that no other counted authority used.
//! That is a maximum bipartite matching between authorities and signer identities
//! ([`distinct_matching`]); one signature accepted by two authorities counts once.

use crate::policy::Require;

/// The identity of a signer, as `require` counts them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SignerIdentity {
    /// A key: SHA-256 of its SubjectPublicKeyInfo (DER).
    Key { spki_sha256: [u8; 32] },
    /// A Fulcio certificate identity: OIDC issuer and subject (URI or email SAN).
    Certificate { issuer: String, subject: String },
}

impl std::fmt::Display for SignerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Key { spki_sha256 } => write!(f, "key sha256:{}…", &super::dsse::hex(spki_sha256)[..12]),
            Self::Certificate { issuer, subject } => write!(f, "{subject} (issuer {issuer})"),
        }
    }
}

/// One signature that satisfied an authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedBy {
    pub identity: SignerIdentity,
    /// Where the signature was found (`.sig layer 0`, a referrer digest…).
    pub location: String,
}

/// A maximum matching of authorities (by index) to distinct signers: `satisfied[a]` lists the
/// signers that satisfied authority `a`. Returns, per authority, the index into
/// `satisfied[a]` of the signer it is counted with, or None when it is not counted.
pub fn distinct_matching(satisfied: &[Vec<SignedBy>]) -> Vec<Option<usize>> {
    let mut owner: std::collections::HashMap<&SignerIdentity, usize> = std::collections::HashMap::new();
    let mut chosen: Vec<Option<usize>> = vec![None; satisfied.len()];
    for authority in 0..satisfied.len() {
        let mut seen = vec![false; satisfied.len()];
        augment(authority, satisfied, &mut owner, &mut chosen, &mut seen);
    }
    chosen
}

/// Kuhn's augmenting path from `authority`: give it a free signer, or move the signer's
/// current owner to another one.
fn augment<'a>(
    authority: usize,
    satisfied: &'a [Vec<SignedBy>],
    owner: &mut std::collections::HashMap<&'a SignerIdentity, usize>,
    chosen: &mut [Option<usize>],
    seen: &mut [bool],
) -> bool {
    if seen[authority] {
        return false;
    }
    seen[authority] = true;
    for (index, signed) in satisfied[authority].iter().enumerate() {
        let free = match owner.get(&signed.identity).copied() {
            None => true,
            Some(other) => augment(other, satisfied, owner, chosen, seen),
        };
        if free {
            owner.insert(&signed.identity, authority);
            chosen[authority] = Some(index);
            return true;
        }
    }
    false
}

/// Whether `counted` authorities (with distinct signers) out of `total` meet `require`.
pub fn requirement_met(require: Require, counted: usize, total: usize) -> bool {
    match require {
        Require::Any => counted >= 1,
        Require::All => counted == total,
        Require::AtLeast(n) => counted >= n as usize,
        Require::None => true,
    }
}

/// `any one authority`, `all 2 authorities with distinct signers`, `at least 2 of 3 …`.
pub fn describe_require(require: Require, total: usize) -> String {
    match require {
        Require::Any => "any one authority".to_owned(),
        Require::All => format!("all {total} authorities with distinct signers"),
        Require::AtLeast(n) => format!("at least {n} of {total} authorities with distinct signers"),
        Require::None => "no image signature".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SignedBy {
        SignedBy { identity: SignerIdentity::Key { spki_sha256: [n; 32] }, location: format!("sig {n}") }
    }

    fn counted(matching: &[Option<usize>]) -> usize {
        matching.iter().filter(|m| m.is_some()).count()
    }

    #[test]
    fn one_signer_counts_once_however_many_authorities_accept_it() {
        let m = distinct_matching(&[vec![key(1)], vec![key(1)]]);
        assert_eq!(counted(&m), 1);
        assert!(!requirement_met(Require::AtLeast(2), counted(&m), 2));
        assert!(!requirement_met(Require::All, counted(&m), 2));
        assert!(requirement_met(Require::Any, counted(&m), 2));
    }

    #[test]
    fn distinct_signers_count_each() {
        let m = distinct_matching(&[vec![key(1)], vec![key(2)]]);
        assert_eq!(m, vec![Some(0), Some(0)]);
        assert!(requirement_met(Require::All, 2, 2));
    }

    #[test]
    fn the_matching_reassigns_a_signer_when_that_counts_more() {
        // a accepts 1 or 2, b only 1: a greedy first choice (a→1) would count one; the
        // matching moves a to 2.
        let m = distinct_matching(&[vec![key(1), key(2)], vec![key(1)]]);
        assert_eq!(m, vec![Some(1), Some(0)]);
        // Three authorities, two signers: two count.
        let m = distinct_matching(&[vec![key(1), key(2)], vec![key(1), key(2)], vec![key(1), key(2)]]);
        assert_eq!(counted(&m), 2);
        assert!(!requirement_met(Require::AtLeast(3), counted(&m), 3));
    }

    #[test]
    fn a_keyless_identity_is_issuer_and_subject() {
        let cert = |subject: &str| SignedBy {
            identity: SignerIdentity::Certificate { issuer: "https://issuer".into(), subject: subject.into() },
            location: String::new(),
        };
        assert_eq!(counted(&distinct_matching(&[vec![cert("a@x")], vec![cert("a@x")]])), 1);
        assert_eq!(counted(&distinct_matching(&[vec![cert("a@x")], vec![cert("b@x")]])), 2);
        let other_issuer = SignedBy {
            identity: SignerIdentity::Certificate { issuer: "https://other".into(), subject: "a@x".into() },
            location: String::new(),
        };
        assert_eq!(counted(&distinct_matching(&[vec![cert("a@x")], vec![other_issuer]])), 2);
    }
}
