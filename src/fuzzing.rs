//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz) and for the stable test that replays
//! every input they found (`tests/fuzz_regressions.rs`): each takes arbitrary bytes, runs one
//! parser of untrusted input the way the webhook or the CLI runs it, and must return (never
//! panic, never run unbounded) whatever the bytes are.

use std::path::Path;

use serde_json::json;

use crate::image::{Digest, ImageRef, canonical_glob};
use crate::policy::TransparencyLog;
use crate::policy::cel::CelEnv;
use crate::sops::{Format, Identities, Options};
use crate::verify::bundle::{Signer, verify_bundle};
use crate::verify::trust::TrustRoot;

/// One entry point: arbitrary bytes in, nothing out (a panic is the failure).
pub type Target = fn(&[u8]);

/// The targets, by name (the directory names under `tests/fixtures/fuzz/`).
pub const TARGETS: [(&str, Target); 8] = [
    ("admission_review", admission_review),
    ("image_ref", image_ref),
    ("policy_load", policy_load),
    ("cel", cel),
    ("sops_decrypt", sops_decrypt),
    ("dsse_statement", dsse_statement),
    ("bundle", bundle),
    ("registry_response", registry_response),
];

/// An AdmissionReview body, read as the server reads it, then its images listed.
pub fn admission_review(data: &[u8]) {
    if let Ok(review) = crate::review::Review::from_slice(data) {
        let _ = review.describe();
    }
}

/// Image references, globs and digests through the canonicaliser.
pub fn image_ref(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(reference) = ImageRef::parse(text) {
        // Canonical form is a fixed point.
        let again = ImageRef::parse(&reference.to_string());
        assert!(again.is_ok_and(|r| r == reference), "{text:?} → {reference} does not parse back to itself");
    }
    let _ = canonical_glob(text);
    let _ = Digest::parse(text);
}

/// A policy file, loaded as `--policies` loads one (key paths point nowhere).
pub fn policy_load(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = crate::policy::load::load_text(text, "fuzz.yaml", Path::new("/nonexistent"), &CelEnv::new());
}

/// A CEL expression: compiled, then evaluated over a small object.
pub fn cel(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let env = CelEnv::new();
    let Ok(expression) = env.compile(text) else { return };
    let object = json!({"metadata": {"name": "x", "labels": {"a": "b"}}, "spec": {"containers": [{"image": "i"}]}});
    if let Ok(bindings) = env.bind(&[("object", &object)], chrono::Utc::now()) {
        let _ = expression.eval_bool_in(&bindings);
    }
}

/// A SOPS file in the format the first byte picks, decrypted without keys (everything up to the
/// data key is parsed and checked).
pub fn sops_decrypt(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else { return };
    let formats = [Format::Yaml, Format::Json, Format::Dotenv, Format::Ini, Format::Binary];
    let format = formats[usize::from(first) % formats.len()];
    let _ = crate::sops::decrypt(rest, format, format, &Identities::new(), &Options::default());
}

/// An in-toto statement as a DSSE payload.
pub fn dsse_statement(data: &[u8]) {
    let _ = crate::verify::dsse::Statement::from_payload(crate::verify::dsse::IN_TOTO_PAYLOAD_TYPE, data);
}

const FUZZ_KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEOIljBfwxo7OkOwsvlx9n65J1UkjP
WD4TeCMLTNMc8WNezU143UlpEbSBKBVtysw1CezT+DSPN3yC0Dvr3CmZqw==
-----END PUBLIC KEY-----
";

/// A Sigstore bundle, verified against a key and the production trusted root (with and without
/// the transparency log).
pub fn bundle(data: &[u8]) {
    let Ok(trust) = TrustRoot::production() else { return };
    let signer = Signer::Key { pem: FUZZ_KEY };
    for tlog in [TransparencyLog::Required, TransparencyLog::Skip] {
        let _ = verify_bundle(data, None, &signer, tlog, &trust);
    }
}

/// Registry responses: a `WWW-Authenticate` challenge (the first line) and a manifest or index
/// (the rest) as discovery reads it.
pub fn registry_response(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (header, body) = text.split_once('\n').unwrap_or((text, ""));
    let _ = crate::verify::registry::auth::parse_challenge(header);
    if let Ok(manifest) = serde_json::from_str::<serde_json::Value>(body) {
        let _ = crate::verify::discovery::ReferrerKind::of_manifest(&manifest);
    }
}
