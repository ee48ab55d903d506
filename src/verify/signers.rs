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
//! That is a maximum bipartite matching between authorities and signers
//! ([`distinct_matching`]); one signature accepted by two authorities counts once. Signatures
//! made with the same key are one signer too, whatever identity their certificates name.

use std::collections::HashMap;

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
    /// SHA-256 of the SPKI of the key that made the signature (for keyless, the certificate's
    /// key). Signatures that share a key are one signer even under two identities (a key
    /// that also got a Fulcio certificate, `cosign sign --key … --issue-certificate`).
    pub signing_key: [u8; 32],
    /// Where the signature was found (a `.sig` layer, a referrer…).
    pub location: super::discovery::Location,
}

/// How authorities are counted against distinct signers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matching {
    /// Per authority: the index into its signers of the one it is counted with, or None.
    pub chosen: Vec<Option<usize>>,
    /// How many distinct signers satisfied any authority at all.
    pub signers: usize,
}

impl Matching {
    /// How many authorities are counted.
    pub fn counted(&self) -> usize {
        self.chosen.iter().filter(|c| c.is_some()).count()
    }
}

/// A maximum matching of authorities (by index) to distinct signers: `satisfied[a]` lists
/// the signatures that satisfied authority `a`. Signatures are one signer when they share an
/// identity or a signing key (transitively).
pub fn distinct_matching(satisfied: &[Vec<SignedBy>]) -> Matching {
    let classes = signer_classes(satisfied);
    let signers = classes.iter().flatten().collect::<std::collections::HashSet<_>>().len();
    let mut owner: HashMap<usize, usize> = HashMap::new();
    let mut chosen: Vec<Option<usize>> = vec![None; satisfied.len()];
    for authority in 0..satisfied.len() {
        let mut seen = vec![false; satisfied.len()];
        augment(authority, &classes, &mut owner, &mut chosen, &mut seen);
    }
    Matching { chosen, signers }
}

/// The signer class of every signature (union-find over identities and signing keys).
fn signer_classes(satisfied: &[Vec<SignedBy>]) -> Vec<Vec<usize>> {
    #[derive(PartialEq, Eq, Hash)]
    enum Node<'a> {
        Identity(&'a SignerIdentity),
        Key(&'a [u8; 32]),
    }
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    fn node<'a>(ids: &mut HashMap<Node<'a>, usize>, parent: &mut Vec<usize>, n: Node<'a>) -> usize {
        *ids.entry(n).or_insert_with(|| {
            parent.push(parent.len());
            parent.len() - 1
        })
    }
    let mut ids = HashMap::new();
    let mut parent = Vec::new();
    let mut nodes: Vec<Vec<usize>> = Vec::new();
    for signers in satisfied {
        let mut of_authority = Vec::new();
        for signed in signers {
            let a = node(&mut ids, &mut parent, Node::Identity(&signed.identity));
            let b = node(&mut ids, &mut parent, Node::Key(&signed.signing_key));
            let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
            parent[ra] = rb;
            of_authority.push(a);
        }
        nodes.push(of_authority);
    }
    nodes.iter().map(|n| n.iter().map(|&a| find(&mut parent, a)).collect()).collect()
}

/// Kuhn's augmenting path from `authority`: give it a free signer, or move the signer's
/// current owner to another one.
fn augment(
    authority: usize,
    classes: &[Vec<usize>],
    owner: &mut HashMap<usize, usize>,
    chosen: &mut [Option<usize>],
    seen: &mut [bool],
) -> bool {
    if seen[authority] {
        return false;
    }
    seen[authority] = true;
    for (index, class) in classes[authority].iter().enumerate() {
        let free = match owner.get(class).copied() {
            None => true,
            Some(other) => augment(other, classes, owner, chosen, seen),
        };
        if free {
            owner.insert(*class, authority);
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
    use crate::verify::discovery::Location;

    fn key(n: u8) -> SignedBy {
        SignedBy {
            identity: SignerIdentity::Key { spki_sha256: [n; 32] },
            signing_key: [n; 32],
            location: Location::Tag { tag: format!("sig {n}"), layer: 0 },
        }
    }

    fn cert(issuer: &str, subject: &str, key: u8) -> SignedBy {
        SignedBy {
            identity: SignerIdentity::Certificate { issuer: issuer.into(), subject: subject.into() },
            signing_key: [key; 32],
            location: Location::Tag { tag: String::new(), layer: 0 },
        }
    }

    #[test]
    fn one_signer_counts_once_however_many_authorities_accept_it() {
        let m = distinct_matching(&[vec![key(1)], vec![key(1)]]);
        assert_eq!((m.counted(), m.signers), (1, 1));
        assert!(!requirement_met(Require::AtLeast(2), m.counted(), 2));
        assert!(!requirement_met(Require::All, m.counted(), 2));
        assert!(requirement_met(Require::Any, m.counted(), 2));
    }

    #[test]
    fn distinct_signers_count_each() {
        let m = distinct_matching(&[vec![key(1)], vec![key(2)]]);
        assert_eq!(m.chosen, vec![Some(0), Some(0)]);
        assert!(requirement_met(Require::All, m.counted(), 2));
    }

    #[test]
    fn the_matching_reassigns_a_signer_when_that_counts_more() {
        // a accepts 1 or 2, b only 1: a greedy first choice (a→1) would count one; the
        // matching moves a to 2.
        let m = distinct_matching(&[vec![key(1), key(2)], vec![key(1)]]);
        assert_eq!(m.chosen, vec![Some(1), Some(0)]);
        // Three authorities, two signers: two count.
        let m = distinct_matching(&[vec![key(1), key(2)], vec![key(1), key(2)], vec![key(1), key(2)]]);
        assert_eq!((m.counted(), m.signers), (2, 2));
        assert!(!requirement_met(Require::AtLeast(3), m.counted(), 3));
    }

    #[test]
    fn a_keyless_identity_is_issuer_and_subject() {
        let i = "https://issuer";
        // Two certificates (two keys) for one identity: one signer.
        let m = distinct_matching(&[vec![cert(i, "a@x", 1)], vec![cert(i, "a@x", 2)]]);
        assert_eq!((m.counted(), m.signers), (1, 1));
        assert_eq!(distinct_matching(&[vec![cert(i, "a@x", 1)], vec![cert(i, "b@x", 2)]]).counted(), 2);
        let other_issuer = cert("https://other", "a@x", 2);
        assert_eq!(distinct_matching(&[vec![cert(i, "a@x", 1)], vec![other_issuer]]).counted(), 2);
    }

    #[test]
    fn one_key_is_one_signer_under_any_identity() {
        // A key authority and a keyless authority satisfied by one key that also holds a
        // certificate: one signer.
        let m = distinct_matching(&[vec![key(7)], vec![cert("https://issuer", "a@x", 7)]]);
        assert_eq!((m.counted(), m.signers), (1, 1));
        // Two identities certified for one key: one signer, transitively.
        let i = "https://issuer";
        let m = distinct_matching(&[vec![cert(i, "a@x", 7)], vec![cert(i, "b@x", 7)], vec![cert(i, "b@x", 8)]]);
        assert_eq!((m.counted(), m.signers), (1, 1));
    }
}
