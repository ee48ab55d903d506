//! `portcullis decrypt --tree`, `--check` and `--check-binding`: decrypt the sources before a
//! build (kustomize, Helm) in a private scratch directory, verify files in CI, and check the
//! built resources against the identities their files were encrypted with.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use serde::Deserialize as _;
use zeroize::Zeroizing;

use super::decrypt::{confine, read_limited, read_limited_file};
use super::{EXIT_ALLOWED, EXIT_DENIED, EXIT_ERROR};
use crate::sops::binding::{self, CheckOptions, Manifest};
use crate::sops::tree::Node;
use crate::sops::{self, Error, Format, Identities, Options, json, yaml, yaml_emit};

/// Most files and directories copied by `--tree`.
const MAX_ENTRIES: usize = 20_000;

/// The build output read by `--check-binding` may be this many times `--max-size`.
const BUILD_OUTPUT_FACTOR: u64 = 20;

/// What `--tree` needs.
pub struct TreeJob<'a> {
    pub root: &'a Path,
    pub src: &'a Path,
    pub out: &'a Path,
    pub binding: Option<&'a Path>,
    pub max_size: u64,
    pub ids: &'a Identities,
    pub opts: &'a Options,
}

/// The format of a SOPS file, from its name and a look at its content; `None` for other files.
fn sniff(path: &Path, bytes: &[u8]) -> Option<Format> {
    let text = std::str::from_utf8(bytes).ok()?;
    if !text.contains("sops") || !text.contains("ENC[AES256_GCM,") {
        return None;
    }
    let json_like = text.trim_start().starts_with('{') && text.contains("\"sops\"");
    match Format::from_path(path) {
        Format::Yaml => text.lines().any(|l| l.starts_with("sops:")).then_some(Format::Yaml),
        Format::Json => json_like.then_some(Format::Json),
        Format::Dotenv => text.lines().any(|l| l.starts_with("sops_mac=")).then_some(Format::Dotenv),
        Format::Ini => text.lines().any(|l| l.trim() == "[sops]").then_some(Format::Ini),
        Format::Binary => (json_like && text.contains("\"data\"")).then_some(Format::Binary),
    }
}

/// Random bytes from the kernel.
pub(super) fn random_bytes() -> anyhow::Result<[u8; 32]> {
    let mut buf = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("cannot read random bytes from /dev/urandom")?;
    Ok(buf)
}

/// The top of the Git checkout holding `dir`, if any.
fn git_top(dir: &Path) -> Option<&Path> {
    dir.ancestors().find(|a| a.join(".git").exists())
}

/// Write a new file, readable by its owner only; never follows or replaces an existing path.
pub(super) fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("{}: cannot create the file (it must not exist yet)", path.display()))?;
    f.write_all(bytes).with_context(|| format!("{}: cannot write", path.display()))
}

/// Values of a decrypted dotenv or ini file (the right side of `=`), for the fingerprints.
fn assignment_values(text: &str) -> Vec<&[u8]> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with(';') && !l.starts_with('['))
        .filter_map(|l| l.split_once('=').map(|(_, v)| v.trim().as_bytes()))
        .collect()
}

/// Decrypt one SOPS file and record it in the manifest; returns the plaintext to write.
pub(super) fn decrypt_file(
    rel: &str,
    format: Format,
    input: &[u8],
    ids: &Identities,
    opts: &Options,
    manifest: &mut Manifest,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let plain = sops::decrypt(input, format, format, ids, opts)?;
    match format {
        Format::Yaml => {
            let text = std::str::from_utf8(&plain).map_err(|_| Error::NotText)?;
            let mut roots: Vec<Node> = yaml::parse(text)?.into_iter().map(|d| d.root).collect();
            let before = manifest.origins.len();
            for root in roots.iter_mut().filter(|r| matches!(r, Node::Map(_))) {
                manifest.record_resource(rel, root);
            }
            if manifest.origins[before..].iter().any(|o| o.token.is_some()) {
                return Ok(Zeroizing::new(yaml_emit::emit(&roots.iter().collect::<Vec<_>>()).into_bytes()));
            }
            Ok(plain)
        }
        Format::Json => {
            let text = std::str::from_utf8(&plain).map_err(|_| Error::NotText)?;
            let mut root = json::parse(text)?;
            manifest.record_resource(rel, &mut root);
            if manifest.origins.last().is_some_and(|o| o.token.is_some()) {
                return Ok(Zeroizing::new(json::emit(&root).into_bytes()));
            }
            Ok(plain)
        }
        Format::Dotenv | Format::Ini => {
            let text = std::str::from_utf8(&plain).map_err(|_| Error::NotText)?;
            manifest.record_values(rel, assignment_values(text));
            Ok(plain)
        }
        Format::Binary => {
            manifest.record_values(rel, [plain.as_slice()]);
            Ok(plain)
        }
    }
}

struct Walk<'a> {
    job: &'a TreeJob<'a>,
    src: PathBuf,
    manifest: Manifest,
    entries: usize,
    decrypted: usize,
}

impl Walk<'_> {
    fn dir(&mut self, from: &Path, to: &Path, rel: &Path) -> anyhow::Result<()> {
        let mut names: Vec<_> = fs::read_dir(from)
            .with_context(|| format!("{}: cannot read the directory", from.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .with_context(|| format!("{}: cannot read the directory", from.display()))?;
        names.sort();
        for name in names {
            if name == ".git" {
                continue;
            }
            self.entries += 1;
            if self.entries > MAX_ENTRIES {
                bail!("{}: more than {MAX_ENTRIES} files and directories; decrypt a smaller tree", self.src.display());
            }
            let (path, dest, rel) = (from.join(&name), to.join(&name), rel.join(&name));
            let meta = fs::symlink_metadata(&path).with_context(|| format!("{}: cannot read", rel.display()))?;
            let file = if meta.file_type().is_symlink() {
                let real = path.canonicalize().with_context(|| format!("{}: a broken symlink", rel.display()))?;
                if !real.starts_with(&self.src) {
                    bail!(
                        "{}: the symlink leads outside the tree {} ({}); copy the file into the tree instead",
                        rel.display(),
                        self.src.display(),
                        real.display()
                    );
                }
                if real.is_dir() {
                    bail!("{}: a symlink to a directory is not followed; make it a directory", rel.display());
                }
                real
            } else if meta.is_dir() {
                DirBuilder::new()
                    .mode(0o700)
                    .create(&dest)
                    .with_context(|| format!("{}: cannot create the directory", dest.display()))?;
                self.dir(&path, &dest, &rel)?;
                continue;
            } else if meta.is_file() {
                path
            } else {
                bail!("{}: not a regular file, directory or symlink", rel.display());
            };
            let input = read_limited_file(&file, self.job.max_size)?;
            let out = match sniff(&rel, &input) {
                Some(format) => {
                    let shown = rel.display().to_string();
                    let plain = decrypt_file(&shown, format, &input, self.job.ids, self.job.opts, &mut self.manifest)
                        .with_context(|| format!("decrypting {shown} ({} file)", format.name()))?;
                    self.decrypted += 1;
                    plain
                }
                None => input,
            };
            write_private(&dest, &out)?;
        }
        Ok(())
    }
}

/// `portcullis decrypt --tree SRC --out DIR`.
pub fn tree(job: &TreeJob<'_>) -> anyhow::Result<ExitCode> {
    let src = confine(job.root, job.src, true)?;
    if !src.is_dir() {
        bail!("--tree {}: not a directory", job.src.display());
    }
    let out_name = job.out.file_name().with_context(|| format!("--out {}: not a directory name", job.out.display()))?;
    let out_parent = match job.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let out_parent = out_parent
        .canonicalize()
        .with_context(|| format!("--out {}: its parent directory does not exist", job.out.display()))?;
    let out = out_parent.join(out_name);
    let forbidden = git_top(&src).unwrap_or(&src);
    if out.starts_with(forbidden) {
        bail!(
            "--out {}: the plaintext would land inside {} (the source tree or its Git checkout); use a private \
             scratch directory, e.g. --out \"$(mktemp -d)/tree\"",
            job.out.display(),
            forbidden.display()
        );
    }
    match fs::symlink_metadata(&out) {
        Ok(m) if m.is_dir() && fs::read_dir(&out).is_ok_and(|mut d| d.next().is_none()) => {
            fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .with_context(|| format!("--out {}: cannot restrict the directory", job.out.display()))?;
        }
        Ok(_) => bail!("--out {}: exists and is not an empty directory", job.out.display()),
        Err(_) => DirBuilder::new()
            .mode(0o700)
            .create(&out)
            .with_context(|| format!("--out {}: cannot create the directory", job.out.display()))?,
    }
    let binding = match job.binding {
        Some(b) => b.to_path_buf(),
        None => out_parent.join(format!("{}.binding.json", out_name.to_string_lossy())),
    };
    let mut walk = Walk { job, src: src.clone(), manifest: Manifest::new(&random_bytes()?), entries: 0, decrypted: 0 };
    let result =
        walk.dir(&src, &out, Path::new("")).and_then(|()| write_private(&binding, walk.manifest.to_json().as_bytes()));
    if let Err(e) = result {
        // Never leave a partial plaintext tree behind, nor one without its binding manifest.
        let _ = fs::remove_dir_all(&out);
        return Err(e);
    }
    tracing::info!(
        decrypted = walk.decrypted,
        out = %out.display(),
        binding = %binding.display(),
        "decrypted the tree; check the build with --check-binding"
    );
    Ok(ExitCode::SUCCESS)
}

/// `portcullis decrypt --check FILE…`: 0 every file decrypts with its MAC verified, 1 a file was
/// tampered with, 2 a file could not be checked.
pub fn check(
    root: &Path,
    files: &[PathBuf],
    max_size: u64,
    ids: &Identities,
    opts: &Options,
) -> anyhow::Result<ExitCode> {
    let mut code = EXIT_ALLOWED;
    for f in files {
        let result = confine(root, f, true).and_then(|p: PathBuf| {
            let input = read_limited_file(&p, max_size)?;
            let format = Format::from_path(&p);
            sops::decrypt(&input, format, format, ids, opts).map_err(anyhow::Error::from)
        });
        match result {
            Ok(_) => println!("{}: OK (decrypted, MAC verified)", f.display()),
            Err(e) => {
                let tampered = matches!(
                    e.downcast_ref::<Error>(),
                    Some(Error::MacMismatch | Error::MacUnreadable(_) | Error::Tree(_) | Error::MacOnlyEncrypted)
                );
                eprintln!("{}: {} {e:#}", f.display(), if tampered { "FAILED:" } else { "ERROR:" });
                code = code.max(if tampered { EXIT_DENIED } else { EXIT_ERROR });
            }
        }
    }
    Ok(ExitCode::from(code))
}

/// The manifest file, or every `*.json` file of a directory (the generator writes one per run).
fn read_manifests(path: &Path, max_size: u64) -> anyhow::Result<Vec<Manifest>> {
    let files = if path.is_dir() {
        let mut files: Vec<PathBuf> = fs::read_dir(path)
            .with_context(|| format!("--check-binding {}: cannot read the directory", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    files
        .iter()
        .map(|f| {
            let bytes = read_limited_file(f, max_size)?;
            Manifest::from_json(&bytes).with_context(|| format!("--check-binding {}", f.display()))
        })
        .collect()
}

/// `portcullis decrypt --check-binding MANIFEST`: the build output (stdin or FILE) checked
/// against the manifest and written to stdout without the origin annotations; exit 1 when a
/// resource breaks the binding or still holds SOPS ciphertext.
pub fn check_binding(
    manifest: &Path,
    input: Option<&Path>,
    max_size: u64,
    opts: &CheckOptions,
) -> anyhow::Result<ExitCode> {
    // The build output first: in `kustomize build | portcullis decrypt --check-binding DIR` the
    // generator writes its manifests while the build runs, so they are complete only at its end.
    let limit = max_size.saturating_mul(BUILD_OUTPUT_FACTOR);
    let build = match input {
        Some(p) => read_limited_file(p, limit)?,
        None => read_limited(std::io::stdin().lock(), limit, "standard input")?,
    };
    let manifests = read_manifests(manifest, max_size)?;
    let text = std::str::from_utf8(&build).context("the build output is not UTF-8 text")?;
    let mut objects = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = serde_json::Value::deserialize(doc).with_context(|| format!("build output document {}", i + 1))?;
        if !value.is_null() {
            objects.push(value);
        }
    }
    if objects.is_empty() {
        bail!(
            "--check-binding: the build output holds no resources; did the build fail? (in a pipeline, use \
             `set -o pipefail` so its failure stops the script)"
        );
    }
    let (problems, notes): (Vec<_>, Vec<_>) =
        binding::check_all(&manifests, &mut objects, opts).into_iter().partition(binding::Violation::refuses);
    for n in &notes {
        eprintln!("note: {n}");
    }
    let mut problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
    for obj in &objects {
        if let Some(found) = sops::detect::find_ciphertext(obj) {
            let kind = obj.get("kind").and_then(serde_json::Value::as_str).unwrap_or("resource");
            let name = obj.pointer("/metadata/name").and_then(serde_json::Value::as_str).unwrap_or("(no name)");
            problems.push(format!("{kind} {name}: {found}; it was not decrypted before the build"));
        }
    }
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("refused: {p}");
        }
        return Ok(ExitCode::from(EXIT_DENIED));
    }
    let mut out = String::new();
    for obj in &objects {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(obj).context("cannot write the resources")?);
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes()).context("cannot write to standard output")?;
    stdout.flush().context("cannot write to standard output")?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffing() {
        let enc = "ENC[AES256_GCM,data:x]";
        let yaml = format!("a: {enc}\nsops:\n    mac: {enc}\n");
        assert_eq!(sniff(Path::new("s.yaml"), yaml.as_bytes()), Some(Format::Yaml));
        assert_eq!(sniff(Path::new("kustomization.yaml"), b"resources: [sops.yaml]\n"), None);
        let env = format!("A={enc}\nsops_mac={enc}\n");
        assert_eq!(sniff(Path::new("a.env"), env.as_bytes()), Some(Format::Dotenv));
        let bin = format!("{{\"data\": \"{enc}\", \"sops\": {{}}}}");
        assert_eq!(sniff(Path::new("tls.crt"), bin.as_bytes()), Some(Format::Binary));
        assert_eq!(sniff(Path::new("x.png"), &[0xff, 0xfe]), None);
        assert_eq!(assignment_values("# c\nA=b c\n[s]\nk = v\n"), vec![b"b c".as_slice(), b"v"]);
    }
}
