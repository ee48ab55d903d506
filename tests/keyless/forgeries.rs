//! Forgeries and broken evidence, one test per case so that one failure does not hide the
//! rest: each case gets its own registry and mini Sigstore (cheap: a process started on port 0
//! and a few key pairs), is denied, and names its reason.

use super::*;

/// A `.sig` layer maker that owns its signer (for signers made inside a case's expression).
fn layer_by(
    sigstore: &MiniSigstore,
    signer: KeylessSigner,
    tamper: Tamper,
) -> impl FnOnce(&str, &str) -> (Vec<u8>, &'static str, Value) + '_ {
    move |reference, digest| sigstore.signature_layer_with(&signer, MiniSigstore::payload(reference, digest), &tamper)
}

fn expired(s: &Setup) -> KeylessSigner {
    s.sigstore.issue(RELEASE, ISSUER, None, Validity::starting(now() - 3600))
}

fn issued_with(s: &Setup, options: IssueOptions) -> KeylessSigner {
    s.sigstore.issue_with(RELEASE, ISSUER, None, &options)
}

// ---------------------------------------------------------------------------------------------
// Legacy `.sig` layers.

/// One test per forged `.sig` layer: `$layer` (given the setup `$s` and the honest `$signer`
/// for RELEASE) is pushed on its own tag and must be denied with every one of `$needles`.
macro_rules! legacy_forgeries {
    ($($(#[$doc:meta])* $name:ident: |$s:ident, $signer:ident| $layer:expr => $needles:expr;)*) => {$(
        $(#[$doc])*
        #[tokio::test]
        async fn $name() {
            let setup = setup(Kind::Distribution).await;
            let $s = &setup;
            let $signer = $s.sigstore.issue(RELEASE, ISSUER, None, Validity::fulcio());
            let (image, _) = $s.signed_legacy("team/forged", stringify!($name), $layer).await;
            let d = $s.decide(&email_subject(&format!("subject: {RELEASE}")), &image).await;
            assert_denied(&d, &$needles);
        }
    )*};
}

/// The honest signature, for contrast with every forgery below.
#[tokio::test]
async fn legacy_honest_signature_is_accepted() {
    let s = setup(Kind::Distribution).await;
    let signer = s.sigstore.issue(RELEASE, ISSUER, None, Validity::fulcio());
    let (image, _) =
        s.signed_legacy("team/forged", "honest", legacy_layer(&s.sigstore, &signer, Tamper::default())).await;
    assert!(s.decide(&email_subject(&format!("subject: {RELEASE}")), &image).await.allowed);
}

legacy_forgeries! {
    /// A certificate from another CA (same identity, its own SCT), logged in the trusted log.
    legacy_certificate_of_another_ca: |s, _signer|
        layer_by(&s.sigstore, MiniSigstore::new("other").issue(RELEASE, ISSUER, None, Validity::fulcio()), Tamper::default())
        => ["signing certificate rejected", "certificate chain validation failed"];
    /// The SET signed by another key that claims to be the log.
    legacy_set_by_another_key: |s, signer|
        layer_by(&s.sigstore, signer, Tamper { foreign_set_key: true, ..Tamper::default() })
        => ["SET verification failed"];
    /// The Rekor entry is for another artifact: the hash of a different payload.
    legacy_entry_for_another_artifact: |s, signer|
        layer_by(&s.sigstore, signer, Tamper { logged_payload: Some(b"another payload".to_vec()), ..Tamper::default() })
        => ["artifact hash mismatch for hashedrekord entry"];
    /// An expired certificate: logged (honest SET) after its ten minutes, no other timestamp.
    legacy_expired_certificate: |s, _signer| layer_by(&s.sigstore, expired(s), Tamper::default())
        => ["signing certificate rejected", "CertExpired"];
    /// ... and the same with the integrated time backdated into the validity: the SET no
    /// longer covers the entry.
    legacy_backdated_integrated_time: |s, _signer| {
        let expired = expired(s);
        let tamper = Tamper { rewrite_integrated_time: Some(expired.validity.not_before + 60), ..Tamper::default() };
        layer_by(&s.sigstore, expired, tamper)
    } => ["SET verification failed"];
    /// A certificate not yet valid when logged.
    legacy_certificate_not_yet_valid: |s, _signer|
        layer_by(&s.sigstore, s.sigstore.issue(RELEASE, ISSUER, None, Validity::starting(now() + 3600)), Tamper::default())
        => ["signing certificate rejected", "CertNotValidYet"];
    /// A tampered payload (signature and log entry are for the original).
    legacy_tampered_payload: |s, signer| |reference, digest| {
        let (payload, media_type, annotations) =
            s.sigstore.signature_layer(&signer, MiniSigstore::payload(reference, digest));
        let edited = String::from_utf8(payload).expect("utf8").replace("\"optional\":null", "\"optional\":{}");
        (edited.into_bytes(), media_type, annotations)
    } => ["bad signature", "signature verification failed"];
    /// No Rekor bundle: a keyless signature needs the log.
    legacy_without_log_entry: |s, signer|
        layer_by(&s.sigstore, signer, Tamper { no_rekor_bundle: true, ..Tamper::default() })
        => [".sig layer 0", "keyless signature has no transparency log entry"];
    /// The certificate's SCT is from a CT log the trusted root does not know.
    legacy_sct_from_an_unknown_ct_log: |s, _signer|
        layer_by(&s.sigstore, issued_with(s, IssueOptions { foreign_sct: true, ..IssueOptions::default() }), Tamper::default())
        => ["SCT"];
    /// The certificate has no SCT.
    legacy_certificate_without_sct: |s, _signer|
        layer_by(&s.sigstore, issued_with(s, IssueOptions { no_sct: true, ..IssueOptions::default() }), Tamper::default())
        => ["SCT"];
    /// Another certificate on a signature made by the original key.
    legacy_another_certificate_on_the_signature: |s, signer| {
        let imposter = s.sigstore.issue(RELEASE, ISSUER, None, Validity::fulcio());
        move |reference: &str, digest: &str| {
            let (payload, media_type, mut annotations) =
                s.sigstore.signature_layer(&signer, MiniSigstore::payload(reference, digest));
            annotations["dev.sigstore.cosign/certificate"] = Value::String(imposter.cert_pem());
            (payload, media_type, annotations)
        }
    } => ["bad signature", "signature verification failed"];
    /// A well-signed payload whose log entry is borrowed from another signature (another
    /// certificate and signature were logged): the entry does not describe this signature.
    legacy_log_entry_borrowed_from_another_signature: |s, signer| {
        let imposter = s.sigstore.issue(RELEASE, ISSUER, None, Validity::fulcio());
        move |reference: &str, digest: &str| {
            let payload = MiniSigstore::payload(reference, digest);
            let (_, media_type, honest) = s.sigstore.signature_layer(&signer, payload.clone());
            let no_log = Tamper { no_rekor_bundle: true, ..Tamper::default() };
            let (payload, _, mut annotations) = s.sigstore.signature_layer_with(&imposter, payload, &no_log);
            annotations["dev.sigstore.cosign/bundle"] = honest["dev.sigstore.cosign/bundle"].clone();
            (payload, media_type, annotations)
        }
    } => ["log entry does not match the bundle"];
}

/// A valid keyless signature whose payload is for another digest, copied onto this tag.
#[tokio::test]
async fn legacy_payload_for_another_digest() {
    let s = setup(Kind::Distribution).await;
    let signer = s.sigstore.issue(RELEASE, ISSUER, None, Validity::fulcio());
    let other_digest = format!("sha256:{}", "22".repeat(32));
    let (image, digest) = s
        .signed_legacy("team/forged", "other-digest", |reference, _| {
            s.sigstore.signature_layer(&signer, MiniSigstore::payload(reference, &other_digest))
        })
        .await;
    assert_denied(
        &s.decide(&email_subject(&format!("subject: {RELEASE}")), &image).await,
        &[&format!("the payload signs digest {other_digest}, not {digest}")],
    );
}

// ---------------------------------------------------------------------------------------------
// Sigstore bundle v0.3 referrers.

/// One test per forged bundle: `$bundle` (given `$s`, the honest `$signer` and the image's
/// digest) is attached as a referrer and must be denied with every one of `$needles`.
macro_rules! bundle_forgeries {
    ($($(#[$doc:meta])* $name:ident: |$s:ident, $signer:ident| $bundle:expr => $needles:expr;)*) => {$(
        $(#[$doc])*
        #[tokio::test]
        async fn $name() {
            let setup = setup(Kind::Ferro).await;
            let $s = &setup;
            let $signer = $s.sigstore.issue(RELEASE, ISSUER, None, Validity::fulcio());
            let (image, _) = $s.signed_bundle("team/bundles", stringify!($name), $bundle).await;
            let d = $s.decide(&email_subject(&format!("subject: {RELEASE}")), &image).await;
            assert_denied(&d, &$needles);
        }
    )*};
}

bundle_forgeries! {
    /// A certificate from another CA.
    bundle_certificate_of_another_ca: |s, _signer| {
        let stranger = MiniSigstore::new("other").issue(RELEASE, ISSUER, None, Validity::fulcio());
        move |digest: &str| s.sigstore.signature_bundle(&stranger, digest)
    } => ["certificate chain validation failed"];
    /// The SET signed by another key.
    bundle_set_by_another_key: |s, signer| |digest| {
        s.sigstore.signature_bundle_with(&signer, digest, &Tamper { foreign_set_key: true, ..Tamper::default() })
    } => ["SET verification failed"];
    /// The dsse entry records the hash of another statement.
    bundle_entry_for_another_payload: |s, signer| |digest| {
        let tamper = Tamper { logged_payload: Some(b"{}".to_vec()), ..Tamper::default() };
        s.sigstore.signature_bundle_with(&signer, digest, &tamper)
    } => ["DSSE payload hash mismatch"];
    /// An expired certificate.
    bundle_expired_certificate: |s, _signer| {
        let expired = expired(s);
        move |digest: &str| s.sigstore.signature_bundle(&expired, digest)
    } => ["CertExpired"];
}

/// The honest bundle passes, in the same kind of registry and repository as the forgeries.
#[tokio::test]
async fn bundle_honest_signature_is_accepted() {
    let s = setup(Kind::Ferro).await;
    let signer = s.sigstore.issue(RELEASE, ISSUER, None, Validity::fulcio());
    let (image, _) = s.signed_bundle("team/bundles", "honest", |d| s.sigstore.signature_bundle(&signer, d)).await;
    assert!(s.decide(&email_subject(&format!("subject: {RELEASE}")), &image).await.allowed);
}

// ---------------------------------------------------------------------------------------------
// The validity windows of the trusted root count: a CA or a log key that was no longer trusted
// when the signature was logged does not vouch for it. Each test first sees the honest
// signature accepted, then edits one window in the policy directory's root.

async fn with_window_ended(edit: impl FnOnce(&mut Value, Value), needle: &str) {
    let s = setup(Kind::Distribution).await;
    let signer = s.sigstore.issue(RELEASE, ISSUER, None, Validity::fulcio());
    let (image, _) = s.signed_legacy("team/windows", "v1", legacy_layer(&s.sigstore, &signer, Tamper::default())).await;
    let authority = email_subject(&format!("subject: {RELEASE}"));
    assert!(s.decide(&authority, &image).await.allowed);
    let mut root = s.sigstore.trusted_root();
    edit(&mut root, Value::String(rfc3339(now() - 3600)));
    std::fs::write(s.dir.path().join(ROOT_FILE), root.to_string()).expect("write root");
    assert_denied(&s.decide(&authority, &image).await, &[needle]);
}

/// The Fulcio CA's window ended an hour ago.
#[tokio::test]
async fn trusted_root_ca_window_ended() {
    with_window_ended(
        |root, ended| root["certificateAuthorities"][0]["validFor"]["end"] = ended,
        "signing certificate rejected",
    )
    .await;
}

/// The Rekor key's window ended an hour ago.
#[tokio::test]
async fn trusted_root_rekor_key_window_ended() {
    with_window_ended(
        |root, ended| root["tlogs"][0]["publicKey"]["validFor"]["end"] = ended,
        "No log key valid at integrated time",
    )
    .await;
}

/// The CT log key's window ended before the certificate was issued.
#[tokio::test]
async fn trusted_root_ct_log_key_window_ended() {
    with_window_ended(|root, ended| root["ctlogs"][0]["publicKey"]["validFor"]["end"] = ended, "SCT").await;
}
