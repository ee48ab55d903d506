//! TLS for the webhook: certificate files reloaded on change (cert-manager rotation), or a
//! self-signed CA and serving certificate generated in memory for the embedded defaults.
//! ALPN offers HTTP/2 and HTTP/1.1, as the API server expects.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Largest certificate or key file read.
const MAX_PEM_BYTES: u64 = 1024 * 1024;
/// Validity of the generated certificates: they live in memory and are made anew at each start.
const SELF_SIGNED_DAYS: i64 = 2 * 365;
/// Clock skew tolerated between this process and its clients.
const BACKDATE_MINUTES: i64 = 5;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    #[error("{0} is larger than 1 MiB; is it really a PEM file?")]
    TooLarge(PathBuf),
    #[error("{path} holds no PEM certificate: {detail}")]
    NoCertificate { path: PathBuf, detail: String },
    #[error("{path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {detail}")]
    NoKey { path: PathBuf, detail: String },
    #[error("the key in {key} does not fit the certificate in {cert}: {detail}")]
    Mismatch { cert: PathBuf, key: PathBuf, detail: String },
    #[error("cannot generate the self-signed certificate: {0}")]
    Generate(String),
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The certificate the server presents, swappable at run time.
pub struct CertStore {
    current: RwLock<Arc<CertifiedKey>>,
    files: Option<CertFiles>,
}

struct CertFiles {
    cert: PathBuf,
    key: PathBuf,
    last: RwLock<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore").field("from_files", &self.files.is_some()).finish()
    }
}

/// A generated CA and the serving certificate it signed.
pub struct SelfSigned {
    /// The CA certificate in PEM: give it to the API server as the webhook's caBundle.
    pub ca_pem: String,
    pub store: Arc<CertStore>,
}

impl CertStore {
    /// Load a certificate chain and key from PEM files; [`CertStore::reload`] re-reads them.
    pub fn from_files(cert: &Path, key: &Path) -> Result<Arc<Self>, TlsError> {
        let (cert_pem, key_pem) = (read_pem(cert)?, read_pem(key)?);
        let certified = certified_key(cert, &cert_pem, key, &key_pem)?;
        Ok(Arc::new(Self {
            current: RwLock::new(Arc::new(certified)),
            files: Some(CertFiles {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
                last: RwLock::new((cert_pem, key_pem)),
            }),
        }))
    }

    /// Generate a CA and a serving certificate for `localhost`, `127.0.0.1`, `::1` and `names`
    /// (e.g. `portcullis.portcullis.svc`).
    pub fn self_signed(names: &[String]) -> Result<SelfSigned, TlsError> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
        let generate = |e: rcgen::Error| TlsError::Generate(e.to_string());
        let now = time::OffsetDateTime::now_utc();
        let (not_before, not_after) =
            (now - time::Duration::minutes(BACKDATE_MINUTES), now + time::Duration::days(SELF_SIGNED_DAYS));
        let ca_key = KeyPair::generate().map_err(generate)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(generate)?;
        ca_params.distinguished_name.push(DnType::CommonName, "portcullis self-signed CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        (ca_params.not_before, ca_params.not_after) = (not_before, not_after);
        let ca_cert = ca_params.self_signed(&ca_key).map_err(generate)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let mut sans = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
        sans.extend(names.iter().filter(|n| !n.is_empty()).cloned());
        let leaf_key = KeyPair::generate().map_err(generate)?;
        let mut leaf_params = CertificateParams::new(sans).map_err(generate)?;
        leaf_params.distinguished_name.push(DnType::CommonName, "portcullis");
        leaf_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        (leaf_params.not_before, leaf_params.not_after) = (not_before, not_after);
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).map_err(generate)?;

        let chain = vec![leaf.der().clone(), ca_cert.der().clone()];
        let key = PrivateKeyDer::try_from(leaf_key.serialize_der()).map_err(|e| TlsError::Generate(e.to_string()))?;
        let certified =
            CertifiedKey::from_der(chain, key, provider().as_ref()).map_err(|e| TlsError::Generate(e.to_string()))?;
        Ok(SelfSigned {
            ca_pem: ca_cert.pem(),
            store: Arc::new(Self { current: RwLock::new(Arc::new(certified)), files: None }),
        })
    }

    /// Re-read the files; swap the certificate if they changed and are valid. Returns whether
    /// it swapped. On error the current certificate stays.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let Some(files) = &self.files else {
            return Ok(false);
        };
        let (cert_pem, key_pem) = (read_pem(&files.cert)?, read_pem(&files.key)?);
        {
            let last = files.last.read().unwrap_or_else(|p| p.into_inner());
            if last.0 == cert_pem && last.1 == key_pem {
                return Ok(false);
            }
        }
        let certified = certified_key(&files.cert, &cert_pem, &files.key, &key_pem)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(certified);
        *files.last.write().unwrap_or_else(|p| p.into_inner()) = (cert_pem, key_pem);
        Ok(true)
    }

    /// When the serving certificate (the first of the chain) expires, in seconds since the epoch.
    pub fn not_after(&self) -> Option<i64> {
        let current = Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()));
        let leaf = current.cert.first()?;
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
        Some(parsed.validity().not_after.timestamp())
    }

    /// Whether the certificate comes from files (and so can be reloaded).
    pub fn reloadable(&self) -> bool {
        self.files.is_some()
    }

    /// A rustls server configuration presenting this store's certificate, with ALPN h2 and
    /// http/1.1.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, TlsError> {
        self.config(None)
    }

    /// The server configuration, requiring a client certificate signed by a CA of `client_ca`
    /// (PEM) when given: only the API server (whose `--admission-control-config-file` kubeconfig
    /// holds that certificate) can then send reviews.
    pub fn server_config_with_client_ca(
        self: &Arc<Self>,
        client_ca: Option<&Path>,
    ) -> Result<Arc<ServerConfig>, TlsError> {
        let verifier = match client_ca {
            None => None,
            Some(path) => {
                let bytes = read_pem(path)?;
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(&bytes) {
                    let cert =
                        cert.map_err(|e| TlsError::NoCertificate { path: path.to_path_buf(), detail: e.to_string() })?;
                    roots
                        .add(cert)
                        .map_err(|e| TlsError::NoCertificate { path: path.to_path_buf(), detail: e.to_string() })?;
                }
                if roots.is_empty() {
                    let detail = "no CERTIFICATE block".to_owned();
                    return Err(TlsError::NoCertificate { path: path.to_path_buf(), detail });
                }
                // Probes and scrapers connect without one; the routes that take reviews refuse
                // them (a certificate that IS presented must verify, or the handshake fails).
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| TlsError::Config(format!("client CA {}: {e}", path.display())))?;
                Some(verifier)
            }
        };
        self.config(verifier)
    }

    fn config(
        self: &Arc<Self>,
        client_verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    ) -> Result<Arc<ServerConfig>, TlsError> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match client_verifier {
            Some(verifier) => builder.with_client_cert_verifier(verifier),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner())))
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn read_pem(path: &Path) -> Result<Vec<u8>, TlsError> {
    let read = |error| TlsError::Read { path: path.to_path_buf(), error };
    let file = std::fs::File::open(path).map_err(read)?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES + 1).read_to_end(&mut bytes).map_err(read)?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(TlsError::TooLarge(path.to_path_buf()));
    }
    Ok(bytes)
}

fn certified_key(cert: &Path, cert_pem: &[u8], key: &Path, key_pem: &[u8]) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::NoCertificate { path: cert.to_path_buf(), detail: e.to_string() })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: cert.to_path_buf(), detail: "no CERTIFICATE block".to_owned() });
    }
    let private = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| TlsError::NoKey { path: key.to_path_buf(), detail: e.to_string() })?;
    CertifiedKey::from_der(chain, private, provider().as_ref()).map_err(|e| TlsError::Mismatch {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certificates_have_a_bounded_validity() {
        let generated = CertStore::self_signed(&["portcullis.ops.svc".to_owned()]).expect("generate");
        let der = CertificateDer::from_pem_slice(generated.ca_pem.as_bytes()).expect("pem");
        let (_, ca) = x509_parser::parse_x509_certificate(&der).expect("x509");
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let (from, until) = (ca.validity().not_before.timestamp(), ca.validity().not_after.timestamp());
        assert!(from <= now && now - from <= 600, "not before: {from}, now {now}");
        let days = (until - now) / 86_400;
        assert!((729..=730).contains(&days), "valid for {days} days, not decades");
        let leaf = generated.store.current.read().expect("lock").cert[0].clone();
        let (_, leaf) = x509_parser::parse_x509_certificate(&leaf).expect("x509");
        assert!(leaf.validity().not_after.timestamp() <= until);
        assert_eq!(generated.store.not_after(), Some(leaf.validity().not_after.timestamp()));
        let eku = leaf.extended_key_usage().expect("eku").expect("present");
        assert!(eku.value.server_auth);
    }
}
