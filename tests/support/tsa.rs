//! A mini RFC 3161 timestamp authority, in process, for signatures timestamped instead of logged
//! (GitHub's artifact attestations from its own Sigstore instance: a TSA, no Rekor):
//!
//! - a root CA and a TSA leaf certificate (rcgen, ECDSA P-256, extended key usage timeStamping);
//! - `TimeStampResp` tokens (CMS SignedData over a `TSTInfo` whose message imprint is the SHA-256
//!   of the signature, signed attributes contentType + messageDigest, signer by issuer and serial),
//!   written out in DER by hand, as a TSA returns them and a bundle carries them;
//! - its `timestampAuthorities` entry for a `trusted_root.json`, and a GitHub-like root (the mini
//!   Sigstore's Fulcio CA, no transparency log, no CT log, these TSAs).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SerialNumber,
};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::sigstore::{KeylessSigner, MiniSigstore, now, rfc3339};
use super::{BUNDLE_V03, INTOTO, cjson, pae};

/// A DER TLV with a definite length.
fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = body.len();
    if len < 0x80 {
        out.push(len as u8);
    } else if len <= 0xff {
        out.extend([0x81, len as u8]);
    } else {
        out.push(0x82);
        out.extend(u16::try_from(len).expect("short DER value").to_be_bytes());
    }
    out.extend_from_slice(body);
    out
}

fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

/// A DER OBJECT IDENTIFIER from its arcs.
fn oid(arcs: &[u64]) -> Vec<u8> {
    let mut body = vec![u8::try_from(arcs[0] * 40 + arcs[1]).expect("first arcs")];
    for &arc in &arcs[2..] {
        let mut bytes = vec![(arc & 0x7f) as u8];
        let mut rest = arc >> 7;
        while rest > 0 {
            bytes.push((rest & 0x7f) as u8 | 0x80);
            rest >>= 7;
        }
        bytes.reverse();
        body.extend(bytes);
    }
    tlv(0x06, &body)
}

fn int(value: u64) -> Vec<u8> {
    let mut bytes: Vec<u8> = value.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
    if bytes.first().is_none_or(|b| b & 0x80 != 0) {
        bytes.insert(0, 0);
    }
    tlv(0x02, &bytes)
}

/// GeneralizedTime `YYYYMMDDHHMMSSZ` (whole seconds, as DER wants).
fn generalized_time(unix: i64) -> Vec<u8> {
    let text: String = rfc3339(unix).chars().filter(char::is_ascii_digit).collect();
    tlv(0x18, format!("{text}Z").as_bytes())
}

const SHA256: [u64; 9] = [2, 16, 840, 1, 101, 3, 4, 2, 1];
const ECDSA_SHA256: [u64; 7] = [1, 2, 840, 10045, 4, 3, 2];
const SIGNED_DATA: [u64; 7] = [1, 2, 840, 113549, 1, 7, 2];
const TST_INFO: [u64; 9] = [1, 2, 840, 113549, 1, 9, 16, 1, 4];
const CONTENT_TYPE: [u64; 7] = [1, 2, 840, 113549, 1, 9, 3];
const MESSAGE_DIGEST: [u64; 7] = [1, 2, 840, 113549, 1, 9, 4];
const POLICY: [u64; 9] = [1, 3, 6, 1, 4, 1, 57264, 2, 1];

/// The mini timestamp authority.
pub struct MiniTsa {
    name: String,
    root: CertifiedIssuer<'static, KeyPair>,
    leaf_der: Vec<u8>,
    leaf_key: EcdsaKeyPair,
    /// Start of the authority's validity in the trusted root, unix seconds.
    pub valid_from: i64,
}

impl MiniTsa {
    /// A new authority; `name` tells authorities apart in certificate subjects.
    pub fn new(name: &str) -> Self {
        let organization = format!("{name}.mini-tsa.test");
        let dn = |cn: &str| {
            let mut dn = DistinguishedName::new();
            dn.push(DnType::OrganizationName, organization.as_str());
            dn.push(DnType::CommonName, cn);
            dn
        };
        let year = 365 * 86_400;
        let at = |unix: i64| {
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(unix).expect("after 1970"))
        };
        let mut root_params = CertificateParams::default();
        root_params.distinguished_name = dn("TSA root");
        root_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        root_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        root_params.not_before = at(now() - year).into();
        root_params.not_after = at(now() + 10 * year).into();
        let root_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("TSA root key");
        let root = CertifiedIssuer::self_signed(root_params, root_key).expect("TSA root");
        let mut leaf_params = CertificateParams::default();
        leaf_params.distinguished_name = dn("TSA Timestamping");
        leaf_params.is_ca = IsCa::ExplicitNoCa;
        leaf_params.serial_number = Some(SerialNumber::from(0x1234_5678_u64));
        leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::TimeStamping];
        leaf_params.use_authority_key_identifier_extension = true;
        leaf_params.not_before = at(now() - year).into();
        leaf_params.not_after = at(now() + 5 * year).into();
        let leaf_rcgen = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("TSA key");
        let leaf_der = leaf_params.signed_by(&leaf_rcgen, &root).expect("TSA certificate").der().to_vec();
        let leaf_key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &leaf_rcgen.serialize_der()).expect("TSA key");
        Self { name: name.to_owned(), root, leaf_der, leaf_key, valid_from: now() - 86_400 }
    }

    /// This authority's entry of `timestampAuthorities` in a `trusted_root.json`.
    pub fn authority(&self) -> Value {
        json!({
            "subject": {"organization": format!("{}.mini-tsa.test", self.name), "commonName": "TSA"},
            "uri": format!("https://timestamp.{}.mini-tsa.test", self.name),
            "certChain": {"certificates": [
                {"rawBytes": B64.encode(&self.leaf_der)},
                {"rawBytes": B64.encode(self.root.der())},
            ]},
            "validFor": {"start": rfc3339(self.valid_from)},
        })
    }

    /// A `TimeStampResp` (status granted) for `signature` at unix time `time`.
    pub fn timestamp(&self, signature: &[u8], time: i64) -> Vec<u8> {
        let sha256 = seq(&[&oid(&SHA256)]);
        let imprint = seq(&[&sha256, &tlv(0x04, &Sha256::digest(signature))]);
        let tst_info =
            seq(&[&int(1), &oid(&POLICY), &imprint, &int(u64::try_from(time).expect("time")), &generalized_time(time)]);
        let attributes = {
            let mut attrs = [
                seq(&[&oid(&CONTENT_TYPE), &tlv(0x31, &oid(&TST_INFO))]),
                seq(&[&oid(&MESSAGE_DIGEST), &tlv(0x31, &tlv(0x04, &Sha256::digest(&tst_info)))]),
            ];
            attrs.sort(); // DER: a SET OF is sorted by encoding
            attrs.concat()
        };
        let signature_value =
            self.leaf_key.sign(&SystemRandom::new(), &tlv(0x31, &attributes)).expect("TSA signature").as_ref().to_vec();
        let (_, leaf) = X509Certificate::from_der(&self.leaf_der).expect("parse TSA certificate");
        let issuer_and_serial =
            seq(&[leaf.tbs_certificate.issuer.as_raw(), &tlv(0x02, leaf.tbs_certificate.raw_serial())]);
        let signer_info = seq(&[
            &int(1),
            &issuer_and_serial,
            &sha256,
            &tlv(0xa0, &attributes),
            &seq(&[&oid(&ECDSA_SHA256)]),
            &tlv(0x04, &signature_value),
        ]);
        let signed_data = seq(&[
            &int(3),
            &tlv(0x31, &sha256),
            &seq(&[&oid(&TST_INFO), &tlv(0xa0, &tlv(0x04, &tst_info))]),
            &tlv(0x31, &signer_info),
        ]);
        let token = seq(&[&oid(&SIGNED_DATA), &tlv(0xa0, &signed_data)]);
        seq(&[&seq(&[&int(0)]), &token])
    }
}

/// A trusted root like GitHub's: the mini Sigstore's Fulcio CA, no Rekor, no CT log, and `tsas`.
pub fn tsa_only_root(sigstore: &MiniSigstore, tsas: &[&MiniTsa]) -> Value {
    let mut root = sigstore.trusted_root();
    root["tlogs"] = json!([]);
    root["ctlogs"] = json!([]);
    root["timestampAuthorities"] = Value::Array(tsas.iter().map(|tsa| tsa.authority()).collect());
    root
}

/// A keyless DSSE bundle v0.3 over `statement` with no log entry and, when `tsa` is given, an
/// RFC 3161 timestamp of its signature at `time` (as `actions/attest-build-provenance` writes
/// them for private repositories).
pub fn timestamped_bundle(signer: &KeylessSigner, statement: &[u8], tsa: Option<(&MiniTsa, i64)>) -> Vec<u8> {
    let signature = signer.sign(&pae(INTOTO, statement));
    let timestamps: Vec<Value> = tsa
        .map(|(tsa, time)| json!({"signedTimestamp": B64.encode(tsa.timestamp(&signature, time))}))
        .into_iter()
        .collect();
    cjson(&json!({
        "mediaType": BUNDLE_V03,
        "verificationMaterial": {
            "certificate": {"rawBytes": B64.encode(&signer.cert_der)},
            "timestampVerificationData": {"rfc3161Timestamps": timestamps},
        },
        "dsseEnvelope": {
            "payload": B64.encode(statement),
            "payloadType": INTOTO,
            "signatures": [{"sig": B64.encode(&signature)}],
        },
    }))
}
