//! One SOPS value: `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]`, AES-256-GCM with a 32-byte nonce and
//! the key path as additional data. Pure: bytes in, bytes out.

use aes_gcm::aead::AeadInOut;
use aes_gcm::aead::KeyInit;
use aes_gcm::aead::consts::U32;
use aes_gcm::aes::Aes256;
use aes_gcm::{AesGcm, Nonce, Tag};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::{Zeroize, Zeroizing};

/// AES-256-GCM with the 32-byte nonce sops uses.
type SopsGcm = AesGcm<Aes256, U32>;

/// Why one value could not be decrypted. Never carries plaintext or key material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ValueError {
    #[error("is not a SOPS value (expected ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]); was it edited by hand?")]
    NotEncrypted,
    #[error("has a malformed ENC[…] field `{0}` (bad base64 or size); the file is damaged: restore it from Git")]
    Malformed(&'static str),
    #[error(
        "fails authentication (AES-GCM): the value was changed, moved to another key, or encrypted \
         with another data key; restore the file from Git or re-encrypt it with sops"
    )]
    Authentication,
    #[error("has the unknown type `{0}` (expected str, int, float, bool, bytes, time or comment)")]
    UnknownType(String),
    #[error("does not hold a valid `{0}` after decryption; the file was not written by sops")]
    BadTypedValue(&'static str),
}

/// The type tag of an encrypted value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    Str,
    Int,
    Float,
    Bool,
    Bytes,
    Time,
    Comment,
}

impl ValueType {
    fn parse(s: &str) -> Result<Self, ValueError> {
        Ok(match s {
            "str" => Self::Str,
            "int" => Self::Int,
            "float" => Self::Float,
            "bool" => Self::Bool,
            "bytes" => Self::Bytes,
            "time" => Self::Time,
            "comment" => Self::Comment,
            other => return Err(ValueError::UnknownType(other.chars().take(16).collect())),
        })
    }
}

/// A decrypted value: the plaintext bytes and the type they were encrypted as.
#[derive(Debug)]
pub struct Decrypted {
    pub plaintext: Zeroizing<Vec<u8>>,
    pub kind: ValueType,
}

/// The marker every SOPS value starts with.
pub const ENC_PREFIX: &str = "ENC[AES256_GCM,";

/// Whether `s` looks like a SOPS encrypted value.
#[must_use]
pub fn is_encrypted(s: &str) -> bool {
    s.starts_with(ENC_PREFIX)
}

struct Parts<'a> {
    data: &'a str,
    iv: &'a str,
    tag: &'a str,
    kind: &'a str,
}

/// Split `ENC[AES256_GCM,data:D,iv:I,tag:T,type:Y]` like sops's regular expression
/// `^ENC\[AES256_GCM,data:(.+),iv:(.+),tag:(.+),type:(.+)\]`.
fn split(s: &str) -> Option<Parts<'_>> {
    let rest = s.strip_prefix("ENC[AES256_GCM,data:")?;
    let close = rest.rfind(']')?;
    let rest = &rest[..close];
    let (data, rest) = rest.split_once(",iv:")?;
    let (iv, rest) = rest.split_once(",tag:")?;
    let (tag, kind) = rest.split_once(",type:")?;
    if data.is_empty() || iv.is_empty() || tag.is_empty() || kind.is_empty() {
        return None;
    }
    Some(Parts { data, iv, tag, kind })
}

/// Decrypt one value with the data key and the additional data (the key path, or `lastmodified`
/// for the MAC).
///
/// # Errors
/// [`ValueError`] when the value is not a SOPS value, is damaged, or fails authentication.
pub fn decrypt(value: &str, key: &[u8], aad: &[u8]) -> Result<Decrypted, ValueError> {
    let parts = split(value).ok_or(ValueError::NotEncrypted)?;
    let kind = ValueType::parse(parts.kind)?;
    let mut data = STANDARD.decode(parts.data).map_err(|_| ValueError::Malformed("data"))?;
    let iv = STANDARD.decode(parts.iv).map_err(|_| ValueError::Malformed("iv"))?;
    let tag = STANDARD.decode(parts.tag).map_err(|_| ValueError::Malformed("tag"))?;
    let nonce = Nonce::<U32>::try_from(iv.as_slice()).map_err(|_| ValueError::Malformed("iv"))?;
    let tag = Tag::try_from(tag.as_slice()).map_err(|_| ValueError::Malformed("tag"))?;
    let cipher = SopsGcm::new_from_slice(key).map_err(|_| ValueError::Malformed("data key"))?;
    if cipher.decrypt_inout_detached(&nonce, aad, data.as_mut_slice().into(), &tag).is_err() {
        data.zeroize();
        return Err(ValueError::Authentication);
    }
    Ok(Decrypted { plaintext: Zeroizing::new(data), kind })
}

/// Encrypt one value (used by tests and fixtures; portcullis itself only decrypts).
///
/// # Errors
/// [`ValueError::Malformed`] when the key is not 32 bytes.
pub fn encrypt(plaintext: &[u8], kind: &str, key: &[u8], iv: &[u8; 32], aad: &[u8]) -> Result<String, ValueError> {
    let cipher = SopsGcm::new_from_slice(key).map_err(|_| ValueError::Malformed("data key"))?;
    let nonce = Nonce::<U32>::try_from(iv.as_slice()).map_err(|_| ValueError::Malformed("iv"))?;
    let mut buf = plaintext.to_vec();
    let tag = cipher
        .encrypt_inout_detached(&nonce, aad, buf.as_mut_slice().into())
        .map_err(|_| ValueError::Authentication)?;
    Ok(format!(
        "ENC[AES256_GCM,data:{},iv:{},tag:{},type:{kind}]",
        STANDARD.encode(&buf),
        STANDARD.encode(iv),
        STANDARD.encode(tag.as_slice())
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    #[test]
    fn round_trip_and_aad() {
        let enc = encrypt(b"hunter2", "str", &KEY, &[1; 32], b"data:password:").unwrap();
        assert!(is_encrypted(&enc));
        let dec = decrypt(&enc, &KEY, b"data:password:").unwrap();
        assert_eq!(dec.plaintext.as_slice(), b"hunter2");
        assert_eq!(dec.kind, ValueType::Str);
        assert_eq!(decrypt(&enc, &KEY, b"data:username:").unwrap_err(), ValueError::Authentication);
        assert_eq!(decrypt(&enc, &[8; 32], b"data:password:").unwrap_err(), ValueError::Authentication);
    }

    #[test]
    fn malformed_values() {
        assert_eq!(decrypt("hello", &KEY, b"").unwrap_err(), ValueError::NotEncrypted);
        let bad = "ENC[AES256_GCM,data:!!,iv:AAAA,tag:AAAA,type:str]";
        assert_eq!(decrypt(bad, &KEY, b"").unwrap_err(), ValueError::Malformed("data"));
        let enc = encrypt(b"x", "weird", &KEY, &[1; 32], b"").unwrap();
        assert!(matches!(decrypt(&enc, &KEY, b""), Err(ValueError::UnknownType(_))));
    }
}
