//! `portcullis certs generate`: the webhook's CA and serving certificate, for clusters without
//! cert-manager.
//!
//! Writes `ca.crt`, `ca.key`, `tls.crt` and `tls.key` (keys 0600) into `--out` and prints the
//! CA as the base64 `caBundle` the webhook configurations need. `--renew` re-issues the serving
//! certificate from the CA already in `--out`, so the caBundle in the cluster stays valid and the
//! server picks up the new files without a restart.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use clap::{Args, Subcommand};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

const EXAMPLES: &str = "\
Examples:
  # A CA and a serving certificate for the Service portcullis in namespace portcullis
  portcullis certs generate --service portcullis --namespace portcullis --out certs/
  kubectl -n portcullis create secret tls portcullis-tls --cert certs/tls.crt --key certs/tls.key
  helm install portcullis charts/portcullis -n portcullis \\
      --set tls.certManager=false --set tls.existingSecret=portcullis-tls \\
      --set tls.caBundle=\"$(base64 -w0 certs/ca.crt)\"

  # Before the serving certificate expires: a new one from the same CA (the caBundle stays)
  portcullis certs generate --service portcullis --namespace portcullis --out certs/ --renew";

/// Clock skew tolerated between this machine and the API server.
const BACKDATE: Duration = Duration::minutes(5);
/// A renewal warns when the CA has less than this left.
const CA_WARN: Duration = Duration::days(30);

/// `portcullis certs`.
#[derive(Debug, Args)]
pub struct CertsArgs {
    #[command(subcommand)]
    pub command: CertsCommand,
}

/// Subcommands of `portcullis certs`.
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Generate a CA and the webhook's serving certificate (or renew the serving certificate).
    Generate(GenerateArgs),
}

/// Flags of `portcullis certs generate`.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct GenerateArgs {
    /// The webhook's Service name.
    #[arg(long, value_name = "NAME")]
    pub service: String,
    /// The Service's namespace.
    #[arg(long, value_name = "NS")]
    pub namespace: String,
    /// Directory for ca.crt, ca.key, tls.crt, tls.key (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Re-issue the serving certificate from the CA already in --out (the caBundle stays).
    #[arg(long)]
    pub renew: bool,
    /// Validity of the serving certificate, in days (capped by the CA's).
    #[arg(long, value_name = "DAYS", default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=825))]
    pub days: u32,
    /// Validity of a new CA, in days.
    #[arg(long, value_name = "DAYS", default_value_t = 3650, value_parser = clap::value_parser!(u32).range(1..=7300))]
    pub ca_days: u32,
}

/// Run `portcullis certs`.
pub fn run(args: CertsArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        CertsCommand::Generate(args) => generate(&args, OffsetDateTime::now_utc()),
    }
}

/// The DNS names the API server uses for a Service reference.
pub fn service_names(service: &str, namespace: &str) -> anyhow::Result<Vec<String>> {
    for (flag, value) in [("--service", service), ("--namespace", namespace)] {
        if !is_dns_label(value) {
            bail!(
                "{flag} {value:?} is not a Kubernetes name: lower-case letters, digits and '-', at most 63, starting and ending with a letter or digit"
            );
        }
    }
    Ok(vec![format!("{service}.{namespace}.svc"), format!("{service}.{namespace}.svc.cluster.local")])
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn generate(args: &GenerateArgs, now: OffsetDateTime) -> anyhow::Result<ExitCode> {
    let names = service_names(&args.service, &args.namespace)?;
    let out = &args.out;
    let files = Files::new(out);
    let (ca_pem, ca_key, ca_not_after) = if args.renew {
        load_ca(&files, now)?
    } else {
        if let Some(existing) =
            [&files.ca_crt, &files.ca_key, &files.tls_crt, &files.tls_key].into_iter().find(|p| p.exists())
        {
            bail!(
                "{} already exists: pass --renew to re-issue the serving certificate from the CA in {}, or choose an empty --out (a new CA means a new caBundle in the cluster)",
                existing.display(),
                out.display()
            );
        }
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
        let (pem, key, not_after) = new_ca(args, now)?;
        write_file(&files.ca_key, key.serialize_pem().as_bytes(), true)?;
        write_file(&files.ca_crt, pem.as_bytes(), false)?;
        (pem, key, not_after)
    };

    let issuer = Issuer::from_ca_cert_pem(&ca_pem, &ca_key)
        .with_context(|| format!("cannot use {} as an issuer", files.ca_crt.display()))?;
    let leaf_key = KeyPair::generate().context("cannot generate the serving key")?;
    let mut params = CertificateParams::new(names.clone()).context("invalid DNS name")?;
    params.distinguished_name.push(DnType::CommonName, names[0].clone());
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = now - BACKDATE;
    params.not_after = (now + Duration::days(i64::from(args.days))).min(ca_not_after);
    let leaf = params.signed_by(&leaf_key, &issuer).context("cannot sign the serving certificate")?;
    // Key first: a server reloading between the two writes sees a mismatch and keeps its
    // current pair until the next check.
    write_file(&files.tls_key, leaf_key.serialize_pem().as_bytes(), true)?;
    write_file(&files.tls_crt, leaf.pem().as_bytes(), false)?;

    eprintln!(
        "{} the serving certificate for {} (valid until {}) in {}",
        if args.renew { "renewed" } else { "generated a CA and" },
        names.join(", "),
        params.not_after.date(),
        out.display()
    );
    if ca_not_after - now < CA_WARN {
        eprintln!(
            "warning: the CA in {} expires on {}: generate a new one into an empty directory and roll out its caBundle before then",
            files.ca_crt.display(),
            ca_not_after.date()
        );
    }
    eprintln!("caBundle (base64 of {}):", files.ca_crt.display());
    println!("{}", base64::engine::general_purpose::STANDARD.encode(ca_pem.as_bytes()));
    Ok(ExitCode::SUCCESS)
}

struct Files {
    ca_crt: PathBuf,
    ca_key: PathBuf,
    tls_crt: PathBuf,
    tls_key: PathBuf,
}

impl Files {
    fn new(dir: &Path) -> Self {
        Self {
            ca_crt: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            tls_crt: dir.join("tls.crt"),
            tls_key: dir.join("tls.key"),
        }
    }
}

fn new_ca(args: &GenerateArgs, now: OffsetDateTime) -> anyhow::Result<(String, KeyPair, OffsetDateTime)> {
    let key = KeyPair::generate().context("cannot generate the CA key")?;
    let mut params = CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
    params
        .distinguished_name
        .push(DnType::CommonName, format!("portcullis webhook CA ({}.{})", args.service, args.namespace));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = now - BACKDATE;
    params.not_after = now + Duration::days(i64::from(args.ca_days));
    let cert = params.self_signed(&key).context("cannot sign the CA certificate")?;
    Ok((cert.pem(), key, params.not_after))
}

/// The CA in `--out` for `--renew`: its key must fit its certificate and it must still be valid.
fn load_ca(files: &Files, now: OffsetDateTime) -> anyhow::Result<(String, KeyPair, OffsetDateTime)> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).with_context(|| {
            format!(
                "--renew needs the CA generated earlier: cannot read {} (run without --renew first)",
                path.display()
            )
        })
    };
    let ca_pem = read(&files.ca_crt)?;
    let key = KeyPair::from_pem(&read(&files.ca_key)?)
        .with_context(|| format!("{} holds no usable private key", files.ca_key.display()))?;
    let der = rustls::pki_types::pem::PemObject::from_pem_slice(ca_pem.as_bytes())
        .map(|c: rustls::pki_types::CertificateDer<'static>| c.to_vec())
        .with_context(|| format!("{} holds no PEM certificate", files.ca_crt.display()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| anyhow::anyhow!("{} is not a valid certificate: {e}", files.ca_crt.display()))?;
    if !cert.is_ca() {
        bail!("{} is not a CA certificate", files.ca_crt.display());
    }
    if cert.public_key().raw != rcgen::PublicKeyData::subject_public_key_info(&key).as_slice() {
        bail!("{} does not belong to the CA in {}", files.ca_key.display(), files.ca_crt.display());
    }
    let not_after = OffsetDateTime::from_unix_timestamp(cert.validity().not_after.timestamp())
        .context("the CA's expiry is out of range")?;
    if not_after <= now + Duration::days(1) {
        bail!(
            "the CA in {} expires on {}: generate a new CA into an empty directory and roll out its caBundle",
            files.ca_crt.display(),
            not_after.date()
        );
    }
    Ok((ca_pem, key, not_after))
}

/// Write through a temporary file and rename, so a reader never sees half a file; private keys
/// are created 0600.
fn write_file(path: &Path, bytes: &[u8], private: bool) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    let _ = private;
    let written = (|| {
        let _ = std::fs::remove_file(&tmp);
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    written.with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_are_checked() {
        let names = service_names("portcullis", "ops").expect("valid");
        assert_eq!(names, ["portcullis.ops.svc", "portcullis.ops.svc.cluster.local"]);
        for (service, namespace) in [("Portcullis", "ops"), ("a.b", "ops"), ("x", ""), ("x", "-ops"), ("x", "ops/..")] {
            assert!(service_names(service, namespace).is_err(), "{service:?} {namespace:?}");
        }
    }
}
