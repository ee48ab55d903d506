//! A mini Sigstore, in process, for keyless tests without Fulcio, Rekor or cosign:
//!
//! - Fulcio: a root CA and an intermediate (rcgen, ECDSA P-256) issuing 10-minute leaf
//!   certificates with the SAN, the OIDC issuer extensions (`1.3.6.1.4.1.57264.1.1` raw and `.8`
//!   DER UTF8String) and, for GitHub Actions, the workflow claims (legacy `.2`–`.6`, current
//!   `.9`–`.22`), each with an embedded RFC 6962 precertificate SCT;
//! - a CT log key that signs those SCTs (over the TBS without the SCT extension, with the
//!   intermediate's key hash, as a precert entry);
//! - Rekor: an append-only RFC 6962 Merkle log whose key signs SETs (ECDSA P-256 over the
//!   canonical JSON of `{body, integratedTime, logID, logIndex}`) and checkpoints (signed notes),
//!   with inclusion proofs;
//! - the instance's `trusted_root.json` (certificateAuthorities, tlogs, ctlogs with validity).
//!
//! Signing helpers produce cosign's formats: legacy `.sig` layers (simple-signing payload,
//! signature, certificate, chain and Rekor bundle annotations over a `hashedrekord` entry) and
//! keyless Sigstore bundles v0.3 (DSSE `cosign/sign/v1` statement, `dsse` entry with SET and
//! inclusion proof). [`Tamper`] makes the log evidence wrong in one precise way, for negatives.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, SanType,
    SerialNumber,
};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{BUNDLE_V03, INTOTO, SIMPLESIGNING, cjson, pae};

/// The OIDC issuer of GitHub Actions tokens.
pub const GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";
/// The predicate type of cosign v3 signature statements.
pub const COSIGN_SIGN_V1: &str = "https://sigstore.dev/cosign/sign/v1";

const FULCIO_ARC: [u64; 9] = [1, 3, 6, 1, 4, 1, 57264, 1, 0];
const CT_PRECERT_SCTS: [u64; 10] = [1, 3, 6, 1, 4, 1, 11129, 2, 4, 2];

/// Unix seconds now.
pub fn now() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs())
        .expect("seconds fit i64")
}

fn system_time(unix: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).expect("time after 1970"))
}

/// RFC 3339 UTC (`2026-01-02T03:04:05Z`) for unix seconds.
pub fn rfc3339(unix: i64) -> String {
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// PEM text of a DER certificate.
pub fn cert_pem(der: &[u8]) -> String {
    let b64 = B64.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("ascii")).collect();
    format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n"))
}

/// A DER TLV with a definite length.
fn der_tlv(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match body.len() {
        n if n < 0x80 => out.push(n as u8),
        n if n <= 0xff => out.extend([0x81, n as u8]),
        n => {
            let n = u16::try_from(n).expect("short DER value");
            out.push(0x82);
            out.extend(n.to_be_bytes());
        }
    }
    out.extend_from_slice(body);
    out
}

/// An ECDSA P-256 signing key of a log (Rekor or CT), known by the sha256 of its SPKI DER.
pub struct LogKey {
    key: EcdsaKeyPair,
}

impl Default for LogKey {
    fn default() -> Self {
        Self::new()
    }
}

impl LogKey {
    pub fn new() -> Self {
        Self { key: EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).expect("log key") }
    }

    /// SubjectPublicKeyInfo DER.
    pub fn spki(&self) -> Vec<u8> {
        self.key.public_key().as_der().expect("spki").as_ref().to_vec()
    }

    /// The log ID: sha256 of the SPKI DER (RFC 6962 §3.2, Rekor's logID).
    pub fn id(&self) -> [u8; 32] {
        sha256(&self.spki())
    }

    /// ECDSA-P256-SHA256, ASN.1 DER signature.
    pub fn sign(&self, data: &[u8]) -> Vec<u8> {
        self.key.sign(&SystemRandom::new(), data).expect("sign").as_ref().to_vec()
    }
}

/// When a leaf certificate is valid, unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: i64,
    pub not_after: i64,
}

impl Validity {
    /// As Fulcio issues: ten minutes from now.
    pub fn fulcio() -> Self {
        Self::starting(now() - 5)
    }

    /// Ten minutes from `not_before`.
    pub fn starting(not_before: i64) -> Self {
        Self { not_before, not_after: not_before + 600 }
    }
}

/// The GitHub Actions claims Fulcio records for a workflow run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubClaims {
    /// `owner/repo`.
    pub repository: String,
    /// `.github/workflows/release.yml`.
    pub workflow: String,
    /// `refs/heads/main`, `refs/tags/v1.0.0`.
    pub git_ref: String,
    pub sha: String,
    /// The event name: `push`, `workflow_dispatch`…
    pub trigger: String,
}

impl GithubClaims {
    pub fn new(repository: &str, workflow: &str, git_ref: &str) -> Self {
        Self {
            repository: repository.to_owned(),
            workflow: workflow.to_owned(),
            git_ref: git_ref.to_owned(),
            sha: "4f2c2a3e1d6b0c9a8f7e6d5c4b3a29180716f5e4".to_owned(),
            trigger: "push".to_owned(),
        }
    }

    /// `https://github.com/owner/repo`.
    pub fn repository_uri(&self) -> String {
        format!("https://github.com/{}", self.repository)
    }

    /// The SAN (and build config URI) Fulcio gives the run: the workflow at its ref.
    pub fn san(&self) -> String {
        format!("{}/{}@{}", self.repository_uri(), self.workflow, self.git_ref)
    }
}

/// How to issue a leaf; the defaults are Fulcio's.
#[derive(Debug, Clone)]
pub struct IssueOptions {
    pub validity: Validity,
    /// Sign the SCT with a CT log key that is not in the trusted root.
    pub foreign_sct: bool,
    /// Leave the SCT extension out.
    pub no_sct: bool,
    /// Only the legacy (pre-2023) Fulcio extensions `.1`–`.6`, raw strings, as old
    /// certificates carry them.
    pub legacy_extensions_only: bool,
    /// An ECDSA P-384 leaf key (signing with SHA-384), as sigstore-go and sigstore-python can use.
    pub p384: bool,
    /// More current Fulcio extensions (`1.3.6.1.4.1.57264.1.N`, DER UTF8String), as the claims
    /// of other CI issuers (GitLab, Buildkite) come.
    pub claims: Vec<(u64, String)>,
}

impl Default for IssueOptions {
    fn default() -> Self {
        Self {
            validity: Validity::fulcio(),
            foreign_sct: false,
            no_sct: false,
            legacy_extensions_only: false,
            p384: false,
            claims: Vec::new(),
        }
    }
}

/// A signer holding an ephemeral key and the Fulcio certificate issued for it (what
/// `cosign sign` gets from Fulcio after the OIDC flow).
pub struct KeylessSigner {
    key: EcdsaKeyPair,
    /// The leaf certificate, DER.
    pub cert_der: Vec<u8>,
    pub validity: Validity,
    /// The SAN: a URI or an email address.
    pub subject: String,
    pub issuer: String,
}

impl KeylessSigner {
    pub fn cert_pem(&self) -> String {
        cert_pem(&self.cert_der)
    }

    /// The certified public key, PEM (as `cosign sign --key … --issue-certificate` has one).
    pub fn public_pem(&self) -> String {
        let der = self.key.public_key().as_der().expect("der");
        let b64 = B64.encode(der.as_ref());
        let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("ascii")).collect();
        format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", lines.join("\n"))
    }

    pub fn sign(&self, data: &[u8]) -> Vec<u8> {
        self.key.sign(&SystemRandom::new(), data).expect("sign").as_ref().to_vec()
    }
}

/// What to get wrong in the transparency log evidence, one thing at a time.
#[derive(Debug, Clone, Default)]
pub struct Tamper {
    /// Log the entry at this time (the SET honestly covers it) instead of now.
    pub integrated_time: Option<i64>,
    /// After the SET was signed, change the integrated time to this (a backdated entry).
    pub rewrite_integrated_time: Option<i64>,
    /// Log a hashedrekord for these bytes instead of the signed payload (another artifact).
    pub logged_payload: Option<Vec<u8>>,
    /// Sign the SET with a key that is not the log's (still claiming the log's ID).
    pub foreign_set_key: bool,
    /// Leave the Rekor bundle annotation out of a legacy layer.
    pub no_rekor_bundle: bool,
}

/// One logged entry.
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub body: Vec<u8>,
    pub integrated_time: i64,
    pub log_index: u64,
    pub set: Vec<u8>,
    /// `inclusionProof` JSON (with the signed checkpoint) as a bundle carries it.
    pub inclusion_proof: Value,
}

/// The mini Sigstore instance.
pub struct MiniSigstore {
    name: String,
    root: CertifiedIssuer<'static, KeyPair>,
    intermediate: CertifiedIssuer<'static, KeyPair>,
    ct: LogKey,
    rekor: LogKey,
    leaves: Mutex<Vec<[u8; 32]>>,
    serial: AtomicU64,
    /// Start of the validity of every CA and log key, unix seconds.
    pub valid_from: i64,
}

fn ca_params(common_name: &str, organization: &str, path_len: Option<u8>) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, organization);
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(path_len.map_or(BasicConstraints::Unconstrained, BasicConstraints::Constrained));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = system_time(now() - 365 * 86_400).into();
    params.not_after = system_time(now() + 10 * 365 * 86_400).into();
    params.use_authority_key_identifier_extension = path_len.is_some();
    params
}

impl MiniSigstore {
    /// A new instance; `name` tells instances apart in certificate subjects.
    pub fn new(name: &str) -> Self {
        let organization = format!("{name}.mini-sigstore.test");
        let root_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("root key");
        let root = CertifiedIssuer::self_signed(ca_params("sigstore", &organization, None), root_key).expect("root");
        let inter_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("intermediate key");
        let mut inter_params = ca_params("sigstore-intermediate", &organization, Some(0));
        inter_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        let intermediate = CertifiedIssuer::signed_by(inter_params, inter_key, &root).expect("intermediate");
        Self {
            name: name.to_owned(),
            root,
            intermediate,
            ct: LogKey::new(),
            rekor: LogKey::new(),
            leaves: Mutex::new(Vec::new()),
            serial: AtomicU64::new(1),
            valid_from: now() - 86_400,
        }
    }

    pub fn root_der(&self) -> Vec<u8> {
        self.root.der().to_vec()
    }

    pub fn intermediate_der(&self) -> Vec<u8> {
        self.intermediate.der().to_vec()
    }

    /// The chain cosign puts in `dev.sigstore.cosign/chain`: intermediate, then root.
    pub fn chain_pem(&self) -> String {
        format!("{}{}", cert_pem(&self.intermediate_der()), cert_pem(&self.root_der()))
    }

    /// The log's host name: its checkpoint origin and signer name, its `baseUrl` in the root.
    pub fn rekor_host(&self) -> String {
        format!("rekor.{}.mini-sigstore.test", self.name)
    }

    /// The Rekor log ID (sha256 of its public key).
    pub fn rekor_log_id(&self) -> [u8; 32] {
        self.rekor.id()
    }

    /// This instance's `trusted_root.json`.
    pub fn trusted_root_json(&self) -> String {
        serde_json::to_string_pretty(&self.trusted_root()).expect("json")
    }

    /// This instance's trusted root as JSON, to edit (validity windows…) before writing it.
    pub fn trusted_root(&self) -> Value {
        let start = rfc3339(self.valid_from);
        let log = |key: &LogKey, url: &str| {
            json!({
                "baseUrl": url,
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": B64.encode(key.spki()),
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                    "validFor": {"start": start},
                },
                "logId": {"keyId": B64.encode(key.id())},
            })
        };
        json!({
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [log(&self.rekor, &format!("https://{}", self.rekor_host()))],
            "certificateAuthorities": [{
                "subject": {"organization": format!("{}.mini-sigstore.test", self.name), "commonName": "sigstore"},
                "uri": format!("https://fulcio.{}.mini-sigstore.test", self.name),
                "certChain": {"certificates": [
                    {"rawBytes": B64.encode(self.intermediate_der())},
                    {"rawBytes": B64.encode(self.root_der())},
                ]},
                "validFor": {"start": start},
            }],
            "ctlogs": [log(&self.ct, &format!("https://ctfe.{}.mini-sigstore.test", self.name))],
            "timestampAuthorities": [],
        })
    }

    /// Write `trusted_root.json` as `dir/file`; returns the path.
    pub fn write_trusted_root(&self, dir: &Path, file: &str) -> PathBuf {
        let path = dir.join(file);
        std::fs::write(&path, self.trusted_root_json()).expect("write trusted root");
        path
    }

    /// Issue a Fulcio leaf for `subject` (a URI or an email address) from `issuer`.
    pub fn issue(
        &self,
        subject: &str,
        issuer: &str,
        github: Option<&GithubClaims>,
        validity: Validity,
    ) -> KeylessSigner {
        self.issue_with(subject, issuer, github, &IssueOptions { validity, ..IssueOptions::default() })
    }

    /// Issue a GitHub Actions leaf: the SAN is the workflow URI at its ref.
    pub fn issue_github(&self, claims: &GithubClaims) -> KeylessSigner {
        self.issue(&claims.san(), GITHUB_ISSUER, Some(claims), Validity::fulcio())
    }

    pub fn issue_with(
        &self,
        subject: &str,
        issuer: &str,
        github: Option<&GithubClaims>,
        options: &IssueOptions,
    ) -> KeylessSigner {
        let (rcgen_alg, signing_alg) = if options.p384 {
            (&PKCS_ECDSA_P384_SHA384, &ECDSA_P384_SHA384_ASN1_SIGNING)
        } else {
            (&PKCS_ECDSA_P256_SHA256, &ECDSA_P256_SHA256_ASN1_SIGNING)
        };
        let leaf_key = KeyPair::generate_for(rcgen_alg).expect("leaf key");
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.serial_number = Some(SerialNumber::from(self.serial.fetch_add(1, Ordering::Relaxed) + 1000));
        params.not_before = system_time(options.validity.not_before).into();
        params.not_after = system_time(options.validity.not_after).into();
        let name = subject.to_owned().try_into().expect("IA5 subject");
        params.subject_alt_names =
            vec![if subject.contains("://") { SanType::URI(name) } else { SanType::Rfc822Name(name) }];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        params.use_authority_key_identifier_extension = true;
        params.custom_extensions = fulcio_extensions(issuer, github, options);
        let precert = params.signed_by(&leaf_key, &self.intermediate).expect("precertificate");
        let cert_der = if options.no_sct {
            precert.der().to_vec()
        } else {
            let (_, parsed) = X509Certificate::from_der(precert.der()).expect("parse precertificate");
            let tbs = parsed.tbs_certificate.as_ref().to_vec();
            let timestamp_ms = u64::try_from(options.validity.not_before).expect("positive") * 1000;
            let foreign = LogKey::new();
            let ct = if options.foreign_sct { &foreign } else { &self.ct };
            params
                .custom_extensions
                .push(CustomExtension::from_oid_content(&CT_PRECERT_SCTS, self.sct_extension(ct, &tbs, timestamp_ms)));
            params.signed_by(&leaf_key, &self.intermediate).expect("certificate").der().to_vec()
        };
        let key = EcdsaKeyPair::from_pkcs8(signing_alg, &leaf_key.serialize_der()).expect("leaf key for signing");
        KeylessSigner {
            key,
            cert_der,
            validity: options.validity,
            subject: subject.to_owned(),
            issuer: issuer.to_owned(),
        }
    }

    /// The SCT list extension value: an OCTET STRING holding a TLS `SignedCertificateTimestampList`
    /// with one v1 SCT over the precert entry (issuer key hash, TBS without the SCT extension).
    fn sct_extension(&self, ct: &LogKey, tbs: &[u8], timestamp_ms: u64) -> Vec<u8> {
        let (_, intermediate) = X509Certificate::from_der(self.intermediate.der()).expect("parse intermediate");
        let issuer_key_hash = sha256(intermediate.tbs_certificate.subject_pki.raw);
        let mut signed = vec![0u8, 0u8]; // v1, certificate_timestamp
        signed.extend(timestamp_ms.to_be_bytes());
        signed.extend(1u16.to_be_bytes()); // precert_entry
        signed.extend(issuer_key_hash);
        let tbs_len = u32::try_from(tbs.len()).expect("tbs length").to_be_bytes();
        signed.extend(&tbs_len[1..]);
        signed.extend(tbs);
        signed.extend(0u16.to_be_bytes()); // no extensions
        let signature = ct.sign(&signed);
        let mut sct = vec![0u8]; // v1
        sct.extend(ct.id());
        sct.extend(timestamp_ms.to_be_bytes());
        sct.extend(0u16.to_be_bytes());
        sct.extend([4u8, 3u8]); // sha256, ecdsa
        sct.extend(u16::try_from(signature.len()).expect("sig length").to_be_bytes());
        sct.extend(signature);
        let mut list = Vec::new();
        list.extend(u16::try_from(sct.len() + 2).expect("list length").to_be_bytes());
        list.extend(u16::try_from(sct.len()).expect("sct length").to_be_bytes());
        list.extend(sct);
        der_tlv(0x04, &list)
    }

    /// Append a body to the log: index, SET, checkpoint and inclusion proof.
    pub fn log(&self, body: &[u8], tamper: &Tamper) -> LogEntry {
        let integrated_time = tamper.integrated_time.unwrap_or_else(now);
        let mut leaf_input = vec![0u8];
        leaf_input.extend(body);
        let (log_index, leaves) = {
            let mut leaves = self.leaves.lock().expect("log");
            leaves.push(sha256(&leaf_input));
            (leaves.len() as u64 - 1, leaves.clone())
        };
        let log_id = self.rekor.id();
        let payload = cjson(&json!({
            "body": B64.encode(body),
            "integratedTime": integrated_time,
            "logID": hex(&log_id),
            "logIndex": log_index,
        }));
        let set = if tamper.foreign_set_key { LogKey::new().sign(&payload) } else { self.rekor.sign(&payload) };
        let index = usize::try_from(log_index).expect("index");
        let root = merkle_root(&leaves);
        let hashes: Vec<String> = inclusion_path(index, &leaves).iter().map(|h| B64.encode(h)).collect();
        let origin = self.rekor_host();
        let note = format!(
            "{origin} - {}\n{}\n{}\nTimestamp: {}\n",
            u64::from_be_bytes(log_id[..8].try_into().expect("8 bytes")) >> 1,
            leaves.len(),
            B64.encode(root),
            i128::from(integrated_time) * 1_000_000_000
        );
        let mut signature = log_id[..4].to_vec();
        signature.extend(self.rekor.sign(note.as_bytes()));
        let envelope = format!("{note}\n\u{2014} {origin} {}\n", B64.encode(signature));
        LogEntry {
            body: body.to_vec(),
            integrated_time: tamper.rewrite_integrated_time.unwrap_or(integrated_time),
            log_index,
            set,
            inclusion_proof: json!({
                "logIndex": log_index.to_string(),
                "rootHash": B64.encode(root),
                "treeSize": leaves.len().to_string(),
                "hashes": hashes,
                "checkpoint": {"envelope": envelope},
            }),
        }
    }

    /// A cosign simple-signing payload, as cosign writes it.
    pub fn payload(docker_reference: &str, digest: &str) -> Vec<u8> {
        super::Signer::payload(docker_reference, digest)
    }

    /// A keyless legacy `.sig` layer: (payload, mediaType, annotations).
    pub fn signature_layer(&self, signer: &KeylessSigner, payload: Vec<u8>) -> (Vec<u8>, &'static str, Value) {
        self.signature_layer_with(signer, payload, &Tamper::default())
    }

    /// A keyless legacy `.sig` layer with the log evidence tampered as `tamper` says.
    pub fn signature_layer_with(
        &self,
        signer: &KeylessSigner,
        payload: Vec<u8>,
        tamper: &Tamper,
    ) -> (Vec<u8>, &'static str, Value) {
        let signature = signer.sign(&payload);
        let logged = tamper.logged_payload.as_deref().unwrap_or(&payload);
        let body = cjson(&json!({
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": "sha256", "value": hex(&sha256(logged))}},
                "signature": {
                    "content": B64.encode(&signature),
                    "publicKey": {"content": B64.encode(signer.cert_pem())},
                },
            },
        }));
        let mut annotations = json!({
            "dev.cosignproject.cosign/signature": B64.encode(&signature),
            "dev.sigstore.cosign/certificate": signer.cert_pem(),
            "dev.sigstore.cosign/chain": self.chain_pem(),
        });
        if !tamper.no_rekor_bundle {
            let entry = self.log(&body, tamper);
            let rekor = json!({
                "SignedEntryTimestamp": B64.encode(&entry.set),
                "Payload": {
                    "body": B64.encode(&entry.body),
                    "integratedTime": entry.integrated_time,
                    "logIndex": entry.log_index,
                    "logID": hex(&self.rekor.id()),
                },
            });
            annotations["dev.sigstore.cosign/bundle"] = Value::String(rekor.to_string());
        }
        (payload, SIMPLESIGNING, annotations)
    }

    /// The `dev.sigstore.cosign/bundle` annotation (Rekor SET bundle) of a logged entry.
    pub fn rekor_annotation(&self, entry: &LogEntry) -> String {
        json!({
            "SignedEntryTimestamp": B64.encode(&entry.set),
            "Payload": {
                "body": B64.encode(&entry.body),
                "integratedTime": entry.integrated_time,
                "logIndex": entry.log_index,
                "logID": hex(&self.rekor.id()),
            },
        })
        .to_string()
    }

    /// Log a hashedrekord entry (as cosign uploads one) for `artifact`, `signature` and the
    /// verifier PEM (`verifier_pem`: a certificate, or a public key for key signatures); returns
    /// the `dev.sigstore.cosign/bundle` annotation.
    pub fn log_hashedrekord(&self, artifact: &[u8], signature: &[u8], verifier_pem: &str) -> String {
        let body = cjson(&json!({
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": "sha256", "value": hex(&sha256(artifact))}},
                "signature": {
                    "content": B64.encode(signature),
                    "publicKey": {"content": B64.encode(verifier_pem)},
                },
            },
        }));
        self.rekor_annotation(&self.log(&body, &Tamper::default()))
    }

    /// A key-signed DSSE bundle v0.3 (public-key hint, no certificate) over `statement`,
    /// logged in this instance's Rekor as a `dsse` entry naming the key.
    pub fn key_bundle_logged(&self, signer: &super::Signer, statement: &[u8]) -> Vec<u8> {
        let mut bundle: Value = serde_json::from_slice(&signer.bundle_for_statement(statement)).expect("bundle");
        let sig = bundle["dsseEnvelope"]["signatures"][0]["sig"].as_str().expect("sig").to_owned();
        let envelope = cjson(&bundle["dsseEnvelope"]);
        let body = cjson(&json!({
            "apiVersion": "0.0.1",
            "kind": "dsse",
            "spec": {
                "envelopeHash": {"algorithm": "sha256", "value": hex(&sha256(&envelope))},
                "payloadHash": {"algorithm": "sha256", "value": hex(&sha256(statement))},
                "signatures": [{"signature": sig, "verifier": B64.encode(signer.public_pem())}],
            },
        }));
        let entry = self.log(&body, &Tamper::default());
        bundle["verificationMaterial"]["tlogEntries"] = json!([{
            "logIndex": entry.log_index.to_string(),
            "logId": {"keyId": B64.encode(self.rekor.id())},
            "kindVersion": {"kind": "dsse", "version": "0.0.1"},
            "integratedTime": entry.integrated_time.to_string(),
            "inclusionPromise": {"signedEntryTimestamp": B64.encode(&entry.set)},
            "inclusionProof": entry.inclusion_proof,
            "canonicalizedBody": B64.encode(&entry.body),
        }]);
        cjson(&bundle)
    }

    /// A keyless messageSignature bundle v0.3 over `artifact`, whose message digest and
    /// `hashedrekord` 0.0.1 entry use `hash` ("sha256", "sha384" or "sha512"), as sigstore-go
    /// and sigstore-python write them for P-384 / P-521 keys.
    pub fn message_bundle(&self, signer: &KeylessSigner, artifact: &[u8], hash: &str, tamper: &Tamper) -> Vec<u8> {
        use sha2::{Sha384, Sha512};
        let digest = |bytes: &[u8]| -> Vec<u8> {
            match hash {
                "sha256" => Sha256::digest(bytes).to_vec(),
                "sha384" => Sha384::digest(bytes).to_vec(),
                _ => Sha512::digest(bytes).to_vec(),
            }
        };
        let signature = signer.sign(artifact);
        let logged = tamper.logged_payload.as_deref().unwrap_or(artifact);
        let body = cjson(&json!({
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": hash, "value": hex(&digest(logged))}},
                "signature": {"content": B64.encode(&signature), "publicKey": {"content": B64.encode(signer.cert_pem())}},
            },
        }));
        let entry = self.log(&body, tamper);
        let algorithm = match hash {
            "sha256" => "SHA2_256",
            "sha384" => "SHA2_384",
            _ => "SHA2_512",
        };
        cjson(&json!({
            "mediaType": BUNDLE_V03,
            "verificationMaterial": self.keyless_material(signer, &entry, "hashedrekord"),
            "messageSignature": {
                "messageDigest": {"algorithm": algorithm, "digest": B64.encode(digest(artifact))},
                "signature": B64.encode(&signature),
            },
        }))
    }

    /// A bundle's `verificationMaterial`: the signer's certificate and its log entry of `kind`.
    fn keyless_material(&self, signer: &KeylessSigner, entry: &LogEntry, kind: &str) -> Value {
        json!({
            "certificate": {"rawBytes": B64.encode(&signer.cert_der)},
            "tlogEntries": [{
                "logIndex": entry.log_index.to_string(),
                "logId": {"keyId": B64.encode(self.rekor.id())},
                "kindVersion": {"kind": kind, "version": "0.0.1"},
                "integratedTime": entry.integrated_time.to_string(),
                "inclusionPromise": {"signedEntryTimestamp": B64.encode(&entry.set)},
                "inclusionProof": entry.inclusion_proof,
                "canonicalizedBody": B64.encode(&entry.body),
            }],
        })
    }

    /// A cosign v3 keyless signature bundle (v0.3, DSSE, `cosign/sign/v1`) for an image digest.
    pub fn signature_bundle(&self, signer: &KeylessSigner, digest: &str) -> Vec<u8> {
        self.signature_bundle_with(signer, digest, &Tamper::default())
    }

    pub fn signature_bundle_with(&self, signer: &KeylessSigner, digest: &str, tamper: &Tamper) -> Vec<u8> {
        let statement = cjson(&json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"digest": {"sha256": digest.trim_start_matches("sha256:")}}],
            "predicateType": COSIGN_SIGN_V1,
            "predicate": {}
        }));
        self.bundle_for_statement(signer, &statement, tamper)
    }

    /// A keyless DSSE bundle v0.3 over an in-toto statement, logged as a `dsse` 0.0.1 entry.
    pub fn bundle_for_statement(&self, signer: &KeylessSigner, statement: &[u8], tamper: &Tamper) -> Vec<u8> {
        let signature = signer.sign(&pae(INTOTO, statement));
        let envelope = cjson(&json!({
            "payload": B64.encode(statement),
            "payloadType": INTOTO,
            "signatures": [{"keyid": "", "sig": B64.encode(&signature)}],
        }));
        let logged = tamper.logged_payload.as_deref().unwrap_or(statement);
        let body = cjson(&json!({
            "apiVersion": "0.0.1",
            "kind": "dsse",
            "spec": {
                "envelopeHash": {"algorithm": "sha256", "value": hex(&sha256(&envelope))},
                "payloadHash": {"algorithm": "sha256", "value": hex(&sha256(logged))},
                "signatures": [{"signature": B64.encode(&signature), "verifier": B64.encode(signer.cert_pem())}],
            },
        }));
        let entry = self.log(&body, tamper);
        cjson(&json!({
            "mediaType": BUNDLE_V03,
            "verificationMaterial": self.keyless_material(signer, &entry, "dsse"),
            "dsseEnvelope": {
                "payload": B64.encode(statement),
                "payloadType": INTOTO,
                "signatures": [{"sig": B64.encode(&signature)}],
            },
        }))
    }
}

/// The Fulcio extensions for an OIDC issuer and, for GitHub Actions, the workflow claims.
fn fulcio_extensions(issuer: &str, github: Option<&GithubClaims>, options: &IssueOptions) -> Vec<CustomExtension> {
    let oid = |n: u64| {
        let mut arc = FULCIO_ARC.to_vec();
        arc[8] = n;
        arc
    };
    // Legacy extensions hold the raw string; current ones a DER UTF8String.
    let raw = |n: u64, value: &str| CustomExtension::from_oid_content(&oid(n), value.as_bytes().to_vec());
    let utf8 = |n: u64, value: &str| CustomExtension::from_oid_content(&oid(n), der_tlv(0x0c, value.as_bytes()));
    let mut out = vec![raw(1, issuer)];
    if let Some(g) = github {
        let workflow_name = g.workflow.rsplit('/').next().unwrap_or_default().trim_end_matches(".yml");
        out.extend([
            raw(2, &g.trigger),
            raw(3, &g.sha),
            raw(4, workflow_name),
            raw(5, &g.repository),
            raw(6, &g.git_ref),
        ]);
    }
    if options.legacy_extensions_only {
        return out;
    }
    out.push(utf8(8, issuer));
    out.extend(options.claims.iter().map(|(n, value)| utf8(*n, value)));
    if let Some(g) = github {
        let run = format!("{}/actions/runs/1234567890/attempts/1", g.repository_uri());
        let owner = g.repository.split('/').next().unwrap_or_default();
        out.extend([
            utf8(9, &g.san()),
            utf8(10, &g.sha),
            utf8(11, "github-hosted"),
            utf8(12, &g.repository_uri()),
            utf8(13, &g.sha),
            utf8(14, &g.git_ref),
            utf8(15, "123456789"),
            utf8(16, &format!("https://github.com/{owner}")),
            utf8(17, "987654321"),
            utf8(18, &g.san()),
            utf8(19, &g.sha),
            utf8(20, &g.trigger),
            utf8(21, &run),
            utf8(22, "public"),
        ]);
    }
    out
}

fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update([1u8]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The largest power of two smaller than `n` (n > 1).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// RFC 6962 Merkle tree hash of leaf hashes.
fn merkle_root(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves.len() {
        0 => sha256(b""),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&merkle_root(&leaves[..k]), &merkle_root(&leaves[k..]))
        }
    }
}

/// RFC 6962 audit path of leaf `m`.
fn inclusion_path(m: usize, leaves: &[[u8; 32]]) -> Vec<[u8; 32]> {
    let n = leaves.len();
    if n <= 1 {
        return Vec::new();
    }
    let k = split(n);
    if m < k {
        let mut path = inclusion_path(m, &leaves[..k]);
        path.push(merkle_root(&leaves[k..]));
        path
    } else {
        let mut path = inclusion_path(m - k, &leaves[k..]);
        path.push(merkle_root(&leaves[..k]));
        path
    }
}
