//! Public keys of every type cosign and Fulcio use, and signatures made with them.
//!
//! `sigstore-verify` knows ECDSA P-256/P-384, RSA and Ed25519, each with ONE hash; cosign signs
//! with the hash its version chose (SHA-256 for every ECDSA curve before cosign 2.4, the curve's
//! own hash since: SHA-384 for P-384, SHA-512 for P-521) and with RSA PKCS#1 v1.5 or PSS. Key
//! signatures without a log entry (`transparencyLog: skip`) are checked here, by the key alone:
//! every scheme that fits the key is tried, and the signature must verify under one of them (a
//! key's holder can make any of them, so accepting them all admits no one else).

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

/// The type of a public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    EcdsaP256,
    EcdsaP384,
    EcdsaP521,
    /// RSA, with the modulus size in bits.
    Rsa {
        bits: usize,
    },
    Ed25519,
}

impl std::fmt::Display for KeyType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::EcdsaP256 => f.write_str("ECDSA P-256"),
            Self::EcdsaP384 => f.write_str("ECDSA P-384"),
            Self::EcdsaP521 => f.write_str("ECDSA P-521"),
            Self::Rsa { bits } => write!(f, "RSA-{bits}"),
            Self::Ed25519 => f.write_str("Ed25519"),
        }
    }
}

/// Why a key or a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the public key is not a DER SubjectPublicKeyInfo: {0}")]
    NotSpki(String),
    #[error(
        "unsupported public key type {0}; supported: ECDSA P-256, P-384, P-521, RSA 2048-8192 bits \
         (PKCS#1 v1.5 or PSS), Ed25519"
    )]
    Unsupported(String),
    #[error("the {key} signature does not verify (tried {tried})")]
    BadSignature { key: KeyType, tried: String },
}

const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
const RSA_PSS: &str = "1.2.840.113549.1.1.10";
const ED25519: &str = "1.3.101.112";
const ED448: &str = "1.3.101.113";
const P256: &str = "1.2.840.10045.3.1.7";
const P384: &str = "1.3.132.0.34";
const P521: &str = "1.3.132.0.35";
const SECP256K1: &str = "1.3.132.0.10";

/// The type of the key in `spki_der`, or an error naming the type that is not supported.
pub fn key_type(spki_der: &[u8]) -> Result<KeyType, KeyError> {
    parse(spki_der).map(|(kind, _)| kind)
}

fn parse(spki_der: &[u8]) -> Result<(KeyType, Vec<u8>), KeyError> {
    let (rest, spki) = SubjectPublicKeyInfo::from_der(spki_der).map_err(|e| KeyError::NotSpki(e.to_string()))?;
    if !rest.is_empty() {
        return Err(KeyError::NotSpki("trailing bytes after the key".to_owned()));
    }
    let algorithm = spki.algorithm.algorithm.to_id_string();
    let raw = spki.subject_public_key.data.to_vec();
    let kind = match algorithm.as_str() {
        EC_PUBLIC_KEY => {
            let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok()).map(|o| o.to_id_string());
            match curve.as_deref() {
                Some(P256) => KeyType::EcdsaP256,
                Some(P384) => KeyType::EcdsaP384,
                Some(P521) => KeyType::EcdsaP521,
                Some(SECP256K1) => return Err(KeyError::Unsupported("ECDSA secp256k1".to_owned())),
                Some(other) => return Err(KeyError::Unsupported(format!("ECDSA on curve {other}"))),
                None => return Err(KeyError::Unsupported("ECDSA without a named curve".to_owned())),
            }
        }
        RSA_ENCRYPTION => {
            let bits = rsa_modulus_bits(&raw).ok_or_else(|| KeyError::NotSpki("unreadable RSA key".to_owned()))?;
            KeyType::Rsa { bits }
        }
        ED25519 => KeyType::Ed25519,
        ED448 => return Err(KeyError::Unsupported("Ed448".to_owned())),
        RSA_PSS => {
            return Err(KeyError::Unsupported(
                "RSA with an RSASSA-PSS-restricted key (id-RSASSA-PSS); export it as rsaEncryption".to_owned(),
            ));
        }
        other => return Err(KeyError::Unsupported(format!("algorithm OID {other}"))),
    };
    if let KeyType::Rsa { bits } = kind
        && !(2048..=8192).contains(&bits)
    {
        return Err(KeyError::Unsupported(format!("RSA-{bits} (RSA keys must have 2048 to 8192 bits)")));
    }
    Ok((kind, raw))
}

/// The modulus size of a PKCS#1 RSAPublicKey (SEQUENCE { INTEGER n, INTEGER e }).
fn rsa_modulus_bits(pkcs1: &[u8]) -> Option<usize> {
    use x509_parser::der_parser::ber::BerObjectContent;
    let (_, sequence) = x509_parser::der_parser::parse_der(pkcs1).ok()?;
    let BerObjectContent::Sequence(items) = &sequence.content else { return None };
    let modulus = items.first()?.as_slice().ok()?;
    let modulus = match modulus.iter().position(|b| *b != 0) {
        Some(start) => &modulus[start..],
        None => return None,
    };
    let leading = usize::try_from(modulus[0].leading_zeros()).ok()?;
    Some(modulus.len() * 8 - leading)
}

/// The schemes a key of this type may sign with, as cosign and Sigstore clients use them.
fn schemes(kind: KeyType) -> &'static [(&'static str, &'static dyn VerificationAlgorithm)] {
    match kind {
        KeyType::EcdsaP256 => &[
            ("ECDSA P-256 SHA-256", &signature::ECDSA_P256_SHA256_ASN1),
            ("ECDSA P-256 SHA-384", &signature::ECDSA_P256_SHA384_ASN1),
        ],
        KeyType::EcdsaP384 => &[
            ("ECDSA P-384 SHA-384", &signature::ECDSA_P384_SHA384_ASN1),
            ("ECDSA P-384 SHA-256", &signature::ECDSA_P384_SHA256_ASN1),
        ],
        KeyType::EcdsaP521 => &[
            ("ECDSA P-521 SHA-512", &signature::ECDSA_P521_SHA512_ASN1),
            ("ECDSA P-521 SHA-256", &signature::ECDSA_P521_SHA256_ASN1),
            ("ECDSA P-521 SHA-384", &signature::ECDSA_P521_SHA384_ASN1),
        ],
        KeyType::Rsa { .. } => &[
            ("RSA PKCS#1 v1.5 SHA-256", &signature::RSA_PKCS1_2048_8192_SHA256),
            ("RSA PSS SHA-256", &signature::RSA_PSS_2048_8192_SHA256),
            ("RSA PKCS#1 v1.5 SHA-384", &signature::RSA_PKCS1_2048_8192_SHA384),
            ("RSA PSS SHA-384", &signature::RSA_PSS_2048_8192_SHA384),
            ("RSA PKCS#1 v1.5 SHA-512", &signature::RSA_PKCS1_2048_8192_SHA512),
            ("RSA PSS SHA-512", &signature::RSA_PSS_2048_8192_SHA512),
        ],
        KeyType::Ed25519 => &[("Ed25519", &signature::ED25519)],
    }
}

/// Verify `signature` over `data` with the key in `spki_der`; returns the key type and the
/// scheme that verified.
pub fn verify(spki_der: &[u8], data: &[u8], signature: &[u8]) -> Result<(KeyType, &'static str), KeyError> {
    let (kind, raw) = parse(spki_der)?;
    let schemes = schemes(kind);
    for (name, algorithm) in schemes {
        if UnparsedPublicKey::new(*algorithm, &raw).verify(data, signature).is_ok() {
            return Ok((kind, name));
        }
    }
    let tried: Vec<&str> = schemes.iter().map(|(name, _)| *name).collect();
    Err(KeyError::BadSignature { key: kind, tried: tried.join(", ") })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::rsa::KeySize;
    use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};

    fn ecdsa(alg: &'static signature::EcdsaSigningAlgorithm) -> (Vec<u8>, Vec<u8>) {
        let key = EcdsaKeyPair::generate(alg).expect("key");
        let spki = key.public_key().as_der().expect("der").as_ref().to_vec();
        let sig = key.sign(&SystemRandom::new(), b"payload").expect("sign").as_ref().to_vec();
        (spki, sig)
    }

    #[test]
    fn every_ecdsa_curve_and_hash_verifies_and_names_its_scheme() {
        let cases: [(&'static signature::EcdsaSigningAlgorithm, KeyType, &str); 5] = [
            (&signature::ECDSA_P256_SHA256_ASN1_SIGNING, KeyType::EcdsaP256, "ECDSA P-256 SHA-256"),
            (&signature::ECDSA_P384_SHA384_ASN1_SIGNING, KeyType::EcdsaP384, "ECDSA P-384 SHA-384"),
            (&signature::ECDSA_P521_SHA512_ASN1_SIGNING, KeyType::EcdsaP521, "ECDSA P-521 SHA-512"),
            (&signature::ECDSA_P521_SHA256_ASN1_SIGNING, KeyType::EcdsaP521, "ECDSA P-521 SHA-256"),
            (&signature::ECDSA_P521_SHA384_ASN1_SIGNING, KeyType::EcdsaP521, "ECDSA P-521 SHA-384"),
        ];
        for (alg, kind, scheme) in cases {
            let (spki, sig) = ecdsa(alg);
            assert_eq!(verify(&spki, b"payload", &sig), Ok((kind, scheme)));
            // One byte of the data changed: refused, naming the key type and what was tried.
            let Err(KeyError::BadSignature { key, tried }) = verify(&spki, b"payloaD", &sig) else {
                panic!("{scheme}: a changed payload verified");
            };
            assert_eq!(key, kind);
            assert!(tried.contains(scheme), "{tried}");
        }
    }

    #[test]
    fn another_key_of_the_same_type_does_not_verify() {
        let (_, sig) = ecdsa(&signature::ECDSA_P384_SHA384_ASN1_SIGNING);
        let (other, _) = ecdsa(&signature::ECDSA_P384_SHA384_ASN1_SIGNING);
        assert!(matches!(verify(&other, b"payload", &sig), Err(KeyError::BadSignature { .. })));
    }

    #[test]
    fn rsa_pkcs1_and_pss_2048_to_4096() {
        let rng = SystemRandom::new();
        for (size, bits) in [(KeySize::Rsa2048, 2048), (KeySize::Rsa3072, 3072), (KeySize::Rsa4096, 4096)] {
            let key = RsaKeyPair::generate(size).expect("rsa key");
            let spki = key.public_key().as_der().expect("der").as_ref().to_vec();
            assert_eq!(key_type(&spki), Ok(KeyType::Rsa { bits }));
            for (padding, name) in [
                (&signature::RSA_PKCS1_SHA256 as &dyn signature::RsaEncoding, "RSA PKCS#1 v1.5 SHA-256"),
                (&signature::RSA_PSS_SHA256, "RSA PSS SHA-256"),
                (&signature::RSA_PSS_SHA512, "RSA PSS SHA-512"),
            ] {
                let mut sig = vec![0; key.public_modulus_len()];
                key.sign(padding, &rng, b"payload", &mut sig).expect("sign");
                assert_eq!(verify(&spki, b"payload", &sig), Ok((KeyType::Rsa { bits }, name)));
                assert!(verify(&spki, b"other", &sig).is_err());
            }
        }
    }

    #[test]
    fn ed25519() {
        let key = Ed25519KeyPair::generate().expect("key");
        let spki = key.public_key().as_der().expect("der").as_ref().to_vec();
        let sig = key.sign(b"payload");
        assert_eq!(verify(&spki, b"payload", sig.as_ref()), Ok((KeyType::Ed25519, "Ed25519")));
        assert!(verify(&spki, b"payloaD", sig.as_ref()).is_err());
    }

    #[test]
    fn unsupported_types_are_named() {
        // secp256k1 (an ECDSA curve cosign does not use): SPKI with the curve OID.
        let secp256k1 = "3056301006072a8648ce3d020106052b8104000a034200\
            04"
        .to_owned()
            + &"11".repeat(64);
        let der: Vec<u8> = (0..secp256k1.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&secp256k1[i..i + 2], 16).expect("hex"))
            .collect();
        let Err(e) = key_type(&der) else { panic!("secp256k1 accepted") };
        assert!(e.to_string().contains("unsupported public key type ECDSA secp256k1"), "{e}");
        assert!(matches!(key_type(b"not a key"), Err(KeyError::NotSpki(_))));
    }
}
