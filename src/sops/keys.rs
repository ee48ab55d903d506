//! age identities and the data key: decrypt a key group's age stanza, combine Shamir shares
//! (GF(2^8), sops's copy of HashiCorp Vault's implementation). Pure: identities come in as text.

use std::io::Read as _;
use std::str::FromStr as _;

use zeroize::Zeroizing;

use super::metadata::{KeyGroup, Metadata};

/// Why no data key could be recovered. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{source_name} holds no age identity (no line starting with AGE-SECRET-KEY-1)")]
    NoIdentityIn { source_name: String },
    #[error("{source_name}, line {line}: not a valid age X25519 identity; generate one with age-keygen")]
    InvalidIdentity { source_name: String, line: usize },
    #[error(
        "no age identity was given: pass --age-key-file FILE or --age-key-secret FILE, or set SOPS_AGE_KEY_FILE \
         or SOPS_AGE_KEY"
    )]
    NoIdentities,
    #[error(
        "no key for any recipient: none of the {given} age identities given decrypts the data key (recipients: \
         {recipients}); pass the identity of one of these recipients"
    )]
    NoMatchingKey { given: usize, recipients: String },
    #[error(
        "only {got} of the {needed} key groups needed (Shamir threshold) could be decrypted; key groups without \
         a matching identity: {missing}; pass identities for more key groups"
    )]
    Threshold { got: usize, needed: usize, missing: String },
    #[error("the decrypted data key has {0} bytes instead of 32; the file is damaged: restore it from Git")]
    BadDataKey(usize),
    #[error("the Shamir shares of the data key are inconsistent ({0}); the file is damaged: restore it from Git")]
    Shamir(&'static str),
}

/// A set of age X25519 identities (private keys). Zeroized on drop by the age crate.
pub struct Identities {
    list: Vec<age::x25519::Identity>,
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identities({} keys)", self.list.len())
    }
}

impl Identities {
    #[must_use]
    pub fn new() -> Self {
        Self { list: Vec::new() }
    }

    /// Add every `AGE-SECRET-KEY-1…` line of an identity file's text (comments and blank lines
    /// skipped). `source_name` names the origin in errors (a file name, an env var).
    ///
    /// # Errors
    /// [`KeyError::InvalidIdentity`] for a malformed key line, [`KeyError::NoIdentityIn`] when the
    /// text has no key at all.
    pub fn add_text(&mut self, text: &str, source_name: &str) -> Result<usize, KeyError> {
        let mut added = 0;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let id = age::x25519::Identity::from_str(line)
                .map_err(|_| KeyError::InvalidIdentity { source_name: source_name.to_owned(), line: i + 1 })?;
            self.list.push(id);
            added += 1;
        }
        if added == 0 {
            return Err(KeyError::NoIdentityIn { source_name: source_name.to_owned() });
        }
        Ok(added)
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.list.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Decrypt an armored age file with any of the identities.
    fn decrypt(&self, armored: &str) -> Option<Zeroizing<Vec<u8>>> {
        let reader = age::armor::ArmoredReader::new(armored.trim().as_bytes());
        let decryptor = age::Decryptor::new_buffered(reader).ok()?;
        let mut out = Zeroizing::new(Vec::with_capacity(33));
        let mut stream = decryptor.decrypt(self.list.iter().map(|i| i as &dyn age::Identity)).ok()?;
        stream.read_to_end(&mut out).ok()?;
        Some(out)
    }

    fn decrypt_group(&self, group: &KeyGroup) -> Option<Zeroizing<Vec<u8>>> {
        group.age.iter().find_map(|stanza| self.decrypt(&stanza.enc))
    }
}

impl Default for Identities {
    fn default() -> Self {
        Self::new()
    }
}

fn describe(group: &KeyGroup) -> String {
    let mut names: Vec<String> = group.age.iter().map(|s| s.recipient.clone()).collect();
    names.extend(group.other.iter().map(|k| format!("{k} key (not supported by portcullis)")));
    if names.is_empty() { "(empty key group)".to_owned() } else { names.join(", ") }
}

/// Recover the 32-byte data key of a file.
///
/// # Errors
/// [`KeyError`] when no identity matches, too few Shamir groups match, or the key is malformed.
pub fn data_key(meta: &Metadata, ids: &Identities) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    if ids.is_empty() {
        return Err(KeyError::NoIdentities);
    }
    let key = if meta.groups.len() == 1 {
        ids.decrypt_group(&meta.groups[0])
            .ok_or_else(|| KeyError::NoMatchingKey { given: ids.len(), recipients: describe(&meta.groups[0]) })?
    } else {
        // Without a threshold sops combines whatever shares it recovered (at least two, as its
        // Shamir code requires); too few give a wrong key, which the values then fail to open with.
        let needed = if meta.shamir_threshold == 0 { 2 } else { meta.shamir_threshold };
        let mut parts = Vec::new();
        let mut missing = Vec::new();
        for group in &meta.groups {
            match ids.decrypt_group(group) {
                Some(p) => parts.push(p),
                None => missing.push(format!("[{}]", describe(group))),
            }
        }
        if parts.len() < needed {
            return Err(KeyError::Threshold { got: parts.len(), needed, missing: missing.join(" ") });
        }
        combine(&parts)?
    };
    if key.len() != 32 {
        return Err(KeyError::BadDataKey(key.len()));
    }
    Ok(key)
}

/// GF(2^8) multiplication modulo x^8 + x^4 + x^3 + x + 1 (constant time, as in sops).
fn mult(a: u8, b: u8) -> u8 {
    let mut acc: u8 = 0;
    for i in (0..8).rev() {
        let bit = (b >> i) & 1;
        let a_or_zero = bit.wrapping_neg() & a;
        let reduce = ((acc >> 7) & 1).wrapping_neg() & 0x1B;
        acc = a_or_zero ^ (reduce ^ acc.wrapping_add(acc));
    }
    acc
}

fn inverse(a: u8) -> u8 {
    let mut b = mult(a, a);
    let c = mult(a, b);
    b = mult(c, c);
    b = mult(b, b);
    let c = mult(b, c);
    b = mult(b, b);
    b = mult(b, b);
    b = mult(b, c);
    b = mult(b, b);
    b = mult(a, b);
    mult(b, b)
}

/// Combine Shamir shares (the last byte of each share is its x coordinate).
///
/// # Errors
/// [`KeyError::Shamir`] for fewer than two shares, unequal lengths or duplicate x coordinates.
pub fn combine(parts: &[Zeroizing<Vec<u8>>]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    if parts.len() < 2 {
        return Err(KeyError::Shamir("fewer than two shares"));
    }
    let len = parts[0].len();
    if len < 2 || parts.iter().any(|p| p.len() != len) {
        return Err(KeyError::Shamir("shares of different lengths"));
    }
    let xs: Vec<u8> = parts.iter().map(|p| p[len - 1]).collect();
    for (i, x) in xs.iter().enumerate() {
        if xs[..i].contains(x) || *x == 0 {
            return Err(KeyError::Shamir("duplicate shares"));
        }
    }
    let mut secret = Zeroizing::new(vec![0u8; len - 1]);
    for (idx, out) in secret.iter_mut().enumerate() {
        let mut result = 0u8;
        for (i, xi) in xs.iter().enumerate() {
            let mut basis = 1u8;
            for (j, xj) in xs.iter().enumerate() {
                if i != j {
                    // Evaluating at x = 0: num = 0 ^ xj, denom = xi ^ xj.
                    basis = mult(basis, mult(*xj, inverse(xi ^ xj)));
                }
            }
            result ^= mult(parts[i][idx], basis);
        }
        *out = result;
    }
    Ok(secret)
}

/// The age identities of a Kubernetes Secret manifest (YAML or JSON): every `data` (base64) or
/// `stringData` key whose name ends in `.agekey`, as Flux reads them. Returns (key name, text).
///
/// # Errors
/// [`KeyError::NoIdentityIn`] when the manifest is not a Secret or has no `.agekey` key.
pub fn identities_from_secret(
    manifest: &[u8],
    source_name: &str,
) -> Result<Vec<(String, Zeroizing<String>)>, KeyError> {
    use super::tree::Entry;
    use base64::Engine as _;
    let none = || KeyError::NoIdentityIn { source_name: format!("{source_name} (a Secret with `*.agekey` keys)") };
    let text = std::str::from_utf8(manifest).map_err(|_| none())?;
    let docs = super::yaml::parse(text).map_err(|_| none())?;
    let mut out = Vec::new();
    for doc in &docs {
        if doc.root.get("kind").and_then(super::tree::Node::as_str) != Some("Secret") {
            continue;
        }
        for (field, b64) in [("data", true), ("stringData", false)] {
            let Some(super::tree::Node::Map(entries)) = doc.root.get(field) else {
                continue;
            };
            for e in entries {
                let Entry::Pair(k, v) = e else { continue };
                let Some(s) = v.as_str() else { continue };
                if !k.ends_with(".agekey") {
                    continue;
                }
                let value = if b64 {
                    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
                    let bytes =
                        Zeroizing::new(base64::engine::general_purpose::STANDARD.decode(compact).map_err(|_| none())?);
                    Zeroizing::new(std::str::from_utf8(&bytes).map_err(|_| none())?.to_owned())
                } else {
                    Zeroizing::new(s.to_owned())
                };
                out.push((k.clone(), value));
            }
        }
    }
    if out.is_empty() {
        return Err(none());
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Evaluate a polynomial (coefficients lowest first) at x, as sops's `evaluate`.
    fn eval(coeffs: &[u8], x: u8) -> u8 {
        coeffs.iter().rev().fold(0, |acc, c| mult(acc, x) ^ c)
    }

    #[test]
    fn gf256_inverse() {
        for a in 1..=255u8 {
            assert_eq!(mult(a, inverse(a)), 1, "a={a}");
        }
    }

    #[test]
    fn shamir_combines_any_threshold_subset() {
        let secret = [0x42u8, 0x00, 0xff];
        // threshold 2: random linear polynomials per byte
        let slopes = [17u8, 200, 3];
        let share = |x: u8| -> Zeroizing<Vec<u8>> {
            let mut s: Vec<u8> = secret.iter().zip(slopes).map(|(c, m)| eval(&[*c, m], x)).collect();
            s.push(x);
            Zeroizing::new(s)
        };
        let got = combine(&[share(1), share(3)]).unwrap();
        assert_eq!(got.as_slice(), &secret);
        let got = combine(&[share(2), share(1), share(3)]).unwrap();
        assert_eq!(got.as_slice(), &secret);
        assert!(combine(&[share(1)]).is_err());
        assert!(combine(&[share(1), share(1)]).is_err());
    }

    #[test]
    fn identities_reject_bad_lines_without_echoing() {
        let mut ids = Identities::new();
        let err = ids.add_text("# comment\nAGE-SECRET-KEY-1NOTAKEY\n", "key.txt").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("key.txt, line 2"), "{msg}");
        assert!(!msg.contains("NOTAKEY"), "{msg}");
        assert!(matches!(ids.add_text("# nothing\n", "x").unwrap_err(), KeyError::NoIdentityIn { .. }));
        let fresh = age::x25519::Identity::generate();
        use age::secrecy::ExposeSecret as _;
        assert_eq!(ids.add_text(fresh.to_string().expose_secret(), "gen").unwrap(), 1);
    }
}
