//! `portcullis decrypt`: decrypt SOPS files (age keys), manifest streams and KRM ResourceLists.

use std::io::{Read as _, Write as _};
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;
use zeroize::Zeroizing;

use crate::sops::{self, Format, Options, manifests};

const EXAMPLES: &str = "\
Examples:
  # Decrypt a file to stdout (format from the extension), with an age key file
  portcullis decrypt --age-key-file key.txt secret.enc.yaml

  # The key from the environment, like sops; write to a file
  SOPS_AGE_KEY_FILE=key.txt portcullis decrypt -o app.env app.enc.env

  # A binary file encrypted with `sops -e blob.bin > blob.enc.json`
  portcullis decrypt --input-type binary --output-type binary blob.enc.json > blob.bin

  # A stream of manifests (multi-document YAML or a JSON List), keys from a Flux-style Secret
  kustomize build . | portcullis decrypt --manifests --age-key-secret sops-age.yaml -

  # Only resources encrypted for the application's namespace (a reconciler: Argo CD, Flux)
  portcullis decrypt --manifests --expect-namespace \"$ARGOCD_APP_NAMESPACE\" build.yaml

  # As a KRM function / exec plugin: ResourceList on stdin, ResourceList on stdout
  portcullis decrypt --krm --age-key-file /keys/age.agekey

  # Decrypt the sources before the build, then check the build against the encryption identities
  work=$(mktemp -d); portcullis decrypt --tree . --out \"$work/tree\"
  kubectl kustomize \"$work/tree/overlays/prod\" | portcullis decrypt --check-binding \"$work/tree.binding.json\"

  # In CI: every encrypted file decrypts with its MAC verified (exit 1 if one was tampered with)
  portcullis decrypt --check secrets/*.enc.yaml

Exit codes: 0 decrypted, 1 (--check, --check-binding) a file was tampered with or the build breaks the
binding, 2 error (no key for any recipient, MAC mismatch, tampered value, unsupported
format, a path outside --root, a file larger than --max-size).";

/// Flags of `portcullis decrypt`.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct DecryptArgs {
    /// The encrypted file, or `-` for standard input (the default with --manifests and --krm).
    pub file: Option<PathBuf>,
    /// Input format; by default from the file extension (.yaml/.yml, .json, .env, .ini, else binary).
    #[arg(long, value_enum)]
    pub input_type: Option<Format>,
    /// Output format; by default the input format.
    #[arg(long, value_enum)]
    pub output_type: Option<Format>,
    /// Write the plaintext to this file instead of standard output (never the input file). The
    /// file is created anew, readable by its owner only; a symlink there is replaced, not followed.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Treat the input as a stream of Kubernetes manifests: resources with `sops` metadata and
    /// Secret values that are SOPS documents are decrypted, the rest passes through.
    #[arg(long, conflicts_with_all = ["krm", "input_type", "output_type"])]
    pub manifests: bool,
    /// Run as a KRM function / kustomize exec plugin: a ResourceList on stdin, one on stdout.
    #[arg(long, conflicts_with_all = ["input_type", "output_type", "output"])]
    pub krm: bool,
    /// age identity file (repeatable). Also read: SOPS_AGE_KEY_FILE, SOPS_AGE_KEY, and, when no key
    /// is given at all, sops's default key file (~/.config/sops/age/keys.txt).
    #[arg(long = "age-key-file", value_name = "FILE")]
    pub age_key_file: Vec<PathBuf>,
    /// A Kubernetes Secret manifest (YAML or JSON, `-` for stdin) whose `data` / `stringData` keys
    /// ending in `.agekey` hold age identities, as Flux's `decryption.secretRef` (repeatable).
    #[arg(long = "age-key-secret", value_name = "FILE")]
    pub age_key_secret: Vec<PathBuf>,
    /// A Kubernetes Secret read from the API server (in-cluster config or KUBECONFIG), as
    /// NAMESPACE/NAME, whose keys ending in `.agekey` hold age identities (repeatable). Needs
    /// `get` on that Secret.
    #[arg(long = "age-key-secret-ref", value_name = "NAMESPACE/NAME")]
    pub age_key_secret_ref: Vec<String>,
    /// Directory that input and output paths must stay in (no `..`, no symlink escaping it).
    #[arg(long, default_value = ".")]
    pub root: PathBuf,
    /// Largest input accepted, in bytes (suffixes KiB, MiB, GiB allowed).
    #[arg(long, default_value = "5MiB", value_parser = parse_size)]
    pub max_size: u64,
    /// Verify the MAC (always on: the MAC is what binds unencrypted values such as a Secret's name
    /// and namespace to the ciphertext). Accepted for explicitness.
    #[arg(long, default_value_t = true)]
    pub require_mac: bool,
    /// Accept files written with `--mac-only-encrypted`, whose MAC does not cover unencrypted values.
    #[arg(long)]
    pub allow_mac_only_encrypted: bool,
    /// With --manifests/--krm: accept encrypted resources without metadata.namespace (nothing
    /// then binds them to a namespace: they land wherever the reconciler applies them).
    #[arg(long)]
    pub allow_no_namespace: bool,
    /// With --manifests/--krm: decrypt SOPS documents embedded in a Secret's data/stringData (the
    /// Flux style); their MAC does not bind the Secret's namespace, so a copy decrypts anywhere.
    #[arg(long)]
    pub allow_unbound_embedded: bool,
    /// With --manifests/--krm/--check-binding: refuse an encrypted resource bound to another
    /// namespace (repeatable, or comma-separated; Argo CD: $ARGOCD_APP_NAMESPACE, Flux: the
    /// Kustomization's targetNamespace). The MAC binds the values of metadata.name and
    /// metadata.namespace, not which key holds which: this catches a file with the two swapped.
    #[arg(long = "expect-namespace", value_name = "NAMESPACE", value_delimiter = ',')]
    pub expect_namespace: Vec<String>,
    #[command(flatten)]
    pub tree: TreeArgs,
}

/// Decrypting a source tree before a build, verifying files in CI, checking a build's output.
#[derive(Debug, Args)]
pub struct TreeArgs {
    /// Copy the directory SRC (inside --root) to --out with every SOPS file decrypted in place
    /// (MAC verified, files 0600), for `kustomize build` / `helm template` on plaintext; writes the
    /// binding manifest that --check-binding reads.
    #[arg(long, value_name = "SRC", requires = "out", conflicts_with_all = ["manifests", "krm", "output", "check"])]
    pub tree: Option<PathBuf>,
    /// The new (or empty) private directory --tree writes; never inside SRC or its Git checkout.
    #[arg(long, value_name = "DIR", requires = "tree")]
    pub out: Option<PathBuf>,
    /// Where --tree writes the binding manifest (default: DIR.binding.json beside DIR).
    #[arg(long, value_name = "FILE", requires = "tree")]
    pub binding: Option<PathBuf>,
    /// Decrypt these files to nowhere (for CI): exit 0 all verified, 1 a file was tampered with
    /// (MAC mismatch, altered value), 2 a file could not be checked (no key, not a SOPS file).
    #[arg(long, value_name = "FILE", num_args = 1.., conflicts_with_all = ["manifests", "krm", "output"])]
    pub check: Vec<PathBuf>,
    /// Check a build's output (stdin, or the FILE argument) against the manifest written by
    /// --tree (or a directory of manifests, as --generator writes them): a resource moved to
    /// another namespace, renamed, or still holding ciphertext is refused (exit 1); otherwise the
    /// output is written without the origin annotations.
    #[arg(long, value_name = "MANIFEST", conflicts_with_all = ["manifests", "krm", "output", "check", "tree"])]
    pub check_binding: Option<PathBuf>,
    /// Run as a kustomize generator (legacy exec plugin): decrypt the SOPS files the CONFIG lists
    /// under `files:` (relative to the kustomization) and print them; binding manifests go to
    /// $PORTCULLIS_BINDING_DIR for --check-binding.
    #[arg(long, value_name = "CONFIG", conflicts_with_all = ["manifests", "krm", "output", "check", "tree", "check_binding"])]
    pub generator: Option<PathBuf>,
    /// With --check-binding: a resource renamed by namePrefix/nameSuffix is refused (deny) or accepted.
    #[arg(long, value_enum, default_value = "deny", requires = "check_binding")]
    pub renamed: crate::sops::binding::Renamed,
    /// With --check-binding: the namespace resources without one are applied to (Argo CD:
    /// $ARGOCD_APP_NAMESPACE).
    #[arg(long, value_name = "NAMESPACE", requires = "check_binding")]
    pub default_namespace: Option<String>,
}

fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10), ("B", 1)]
        .iter()
        .find_map(|(suffix, m)| s.strip_suffix(suffix).map(|n| (n.trim(), *m)))
        .unwrap_or((s, 1));
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("invalid size {s:?}: use a number of bytes, e.g. 5MiB or 1048576"))
}

/// Run `portcullis decrypt`.
pub fn run(args: DecryptArgs) -> anyhow::Result<ExitCode> {
    let DecryptArgs {
        file,
        input_type,
        output_type,
        output,
        manifests,
        krm,
        age_key_file,
        age_key_secret,
        age_key_secret_ref,
        root,
        max_size,
        require_mac,
        allow_mac_only_encrypted,
        allow_no_namespace,
        allow_unbound_embedded,
        expect_namespace,
        tree,
    } = args;
    if !require_mac {
        bail!("--require-mac cannot be turned off: portcullis always verifies the MAC");
    }
    let expect_applies = manifests || krm || tree.check_binding.is_some();
    if !expect_namespace.is_empty() && !expect_applies {
        bail!("--expect-namespace applies to --manifests, --krm and --check-binding; add one of them or drop it");
    }
    if let Some(bad) = expect_namespace.iter().find(|ns| !is_namespace_name(ns)) {
        bail!("--expect-namespace {bad:?}: not a namespace name (lower-case letters, digits and `-`, at most 63)");
    }
    let root = root.canonicalize().with_context(|| format!("--root {}: cannot open the directory", root.display()))?;
    if let Some(manifest) = &tree.check_binding {
        let input = file.as_deref().filter(|p| p.as_os_str() != "-").map(|p| confine(&root, p, true)).transpose()?;
        let opts = crate::sops::binding::CheckOptions {
            renamed: tree.renamed,
            default_namespace: tree.default_namespace,
            expect_namespaces: expect_namespace,
        };
        return super::decrypt_tree::check_binding(manifest, input.as_deref(), max_size, &opts);
    }
    let mut ids = super::decrypt_keys::load_identities(&age_key_file, &age_key_secret)?;
    for reference in &age_key_secret_ref {
        let bytes = super::decrypt_keys::fetch_secret(reference)?;
        let name = format!("--age-key-secret-ref {reference}");
        for (key, text) in sops::keys::identities_from_secret(&bytes, &name)? {
            ids.add_text(&text, &format!("{name} key {key}"))?;
        }
    }
    let opts = Options {
        allow_mac_only_encrypted,
        allow_no_namespace,
        allow_unbound_embedded,
        expect_namespaces: expect_namespace,
    };
    if let Some(config) = &tree.generator {
        return super::decrypt_generator::generate(config, max_size, &ids, &opts);
    }
    if !tree.check.is_empty() {
        return super::decrypt_tree::check(&root, &tree.check, max_size, &ids, &opts);
    }
    if let (Some(src), Some(out)) = (&tree.tree, &tree.out) {
        let job = super::decrypt_tree::TreeJob {
            root: &root,
            src,
            out,
            binding: tree.binding.as_deref(),
            max_size,
            ids: &ids,
            opts: &opts,
        };
        return super::decrypt_tree::tree(&job);
    }

    let stdin_default = manifests || krm;
    let input_path = match &file {
        Some(p) if p.as_os_str() != "-" => Some(confine(&root, p, true)?),
        Some(_) => None,
        None if stdin_default => None,
        None => bail!("no input file: give the encrypted file, or `-` for standard input"),
    };
    let name = file.as_ref().map_or_else(|| "standard input".to_owned(), |p| p.display().to_string());
    let input = match &input_path {
        Some(p) => read_limited_file(p, max_size)?,
        None => read_limited(std::io::stdin().lock(), max_size, "standard input")?,
    };

    let plaintext = if krm {
        manifests::decrypt_resource_list(&input, &ids, &opts).with_context(|| format!("decrypting {name}"))?
    } else if manifests {
        manifests::decrypt_stream(&input, &ids, &opts).with_context(|| format!("decrypting {name}"))?
    } else {
        let in_format = input_type
            .or_else(|| input_path.as_deref().map(Format::from_path))
            .context("reading standard input needs --input-type (yaml, json, dotenv, ini or binary)")?;
        let out_format = output_type.unwrap_or(in_format);
        sops::decrypt(&input, in_format, out_format, &ids, &opts)
            .with_context(|| format!("decrypting {name} ({} file)", in_format.name()))?
    };

    match output {
        Some(out) => {
            let out_path = confine(&root, &out, false)?;
            if let Some(inp) = &input_path
                && out_path.canonicalize().is_ok_and(|o| &o == inp)
            {
                bail!("-o {}: refusing to overwrite the input file; write the plaintext elsewhere", out.display());
            }
            write_private(&out_path, plaintext.as_slice())
                .with_context(|| format!("-o {}: cannot write the file", out.display()))?;
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&plaintext).context("cannot write to standard output")?;
            stdout.flush().context("cannot write to standard output")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A Kubernetes namespace name (RFC 1123 label): an empty value (an unset variable) is refused
/// rather than read as "no expectation".
fn is_namespace_name(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Resolve `path` (relative to the current directory): no `..`, and the real path (symlinks
/// followed) inside `root`.
/// For an output file that does not exist yet, its directory is checked.
pub(super) fn confine(root: &Path, path: &Path, must_exist: bool) -> anyhow::Result<PathBuf> {
    if path.components().any(|c| matches!(c, Component::ParentDir)) {
        bail!("{}: `..` is not allowed in paths; give a path inside --root {}", path.display(), root.display());
    }
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().context("cannot read the current directory")?.join(path)
    };
    let real = match joined.canonicalize() {
        Ok(real) => real,
        Err(e) if must_exist => {
            return Err(e).with_context(|| format!("{}: cannot open the file", path.display()));
        }
        Err(_) => {
            let parent = joined.parent().unwrap_or(root);
            let file_name = joined.file_name().with_context(|| format!("{}: not a file name", path.display()))?;
            parent
                .canonicalize()
                .with_context(|| format!("{}: the directory does not exist", path.display()))?
                .join(file_name)
        }
    };
    if !real.starts_with(root) {
        bail!(
            "{}: the path leads outside --root {} (through a symlink or an absolute path); pass --root to allow it",
            path.display(),
            root.display()
        );
    }
    Ok(real)
}

/// Write the plaintext to `path` (whose directory [`confine`] checked) without following a symlink
/// at `path` itself: a new file, readable by its owner only, is created next to it (`O_EXCL`, which
/// never follows symlinks) and renamed over it. A symlink at `path` is replaced, never written
/// through, so a dangling link pointing outside `--root` cannot place the plaintext there.
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"));
    };
    let tmp = dir.join(format!(".{}.{}.portcullis-tmp", name.to_string_lossy(), std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(data).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

pub(super) fn read_limited_file(path: &Path, max: u64) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let meta = std::fs::metadata(path).with_context(|| format!("{}: cannot open the file", path.display()))?;
    if !meta.is_file() {
        bail!("{}: not a regular file", path.display());
    }
    if meta.len() > max {
        bail!(
            "{}: {} bytes is larger than --max-size {max}; raise --max-size if the file is expected",
            path.display(),
            meta.len()
        );
    }
    let f = std::fs::File::open(path).with_context(|| format!("{}: cannot open the file", path.display()))?;
    read_limited(f, max, &path.display().to_string())
}

pub(super) fn read_limited(r: impl std::io::Read, max: u64, name: &str) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(Vec::new());
    r.take(max.saturating_add(1)).read_to_end(&mut buf).with_context(|| format!("{name}: cannot read"))?;
    if buf.len() as u64 > max {
        bail!("{name}: larger than --max-size {max}; raise --max-size if the input is expected");
    }
    Ok(buf)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("5MiB").unwrap(), 5 << 20);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("0").is_err());
    }
}
