//! Image references: parse and normalise the way the container runtime does (pure).
//!
//! `nginx` is `docker.io/library/nginx:latest`; `ghcr.io/acme/app@sha256:…` keeps its digest and
//! has no tag. The grammar is the one of `distribution/reference`: a domain is the first
//! component when it contains `.` or `:` or is `localhost`; path components are lowercase
//! alphanumerics joined by `.`, `_`, `__` or runs of `-`.

use std::fmt;

/// The registry that references without a domain point at.
pub const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_ALIASES: [&str; 2] = ["index.docker.io", "registry-1.docker.io"];
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A parsed and normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// A content digest `algorithm:hex`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Digest {
    algorithm: String,
    hex: String,
}

/// Why an image reference does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageRefError {
    #[error("the image reference is empty")]
    Empty,
    #[error("the image reference is longer than {MAX_NAME_LEN} characters")]
    TooLong,
    #[error("invalid path component {0:?}: use lowercase letters, digits and . _ - separators")]
    InvalidComponent(String),
    #[error("invalid registry host {0:?}")]
    InvalidRegistry(String),
    #[error("invalid tag {0:?}: up to 128 of [A-Za-z0-9_.-], not starting with . or -")]
    InvalidTag(String),
    #[error("invalid digest {0:?}: expected sha256:<64 lowercase hex> or sha512:<128 lowercase hex>")]
    InvalidDigest(String),
}

impl Digest {
    /// Parse `sha256:<64 hex>` or `sha512:<128 hex>` (lowercase hex only, as OCI requires).
    pub fn parse(s: &str) -> Result<Self, ImageRefError> {
        let bad = || ImageRefError::InvalidDigest(s.to_owned());
        let (algorithm, hex) = s.split_once(':').ok_or_else(bad)?;
        let want = match algorithm {
            "sha256" => 64,
            "sha512" => 128,
            _ => return Err(bad()),
        };
        let lower_hex = hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if hex.len() != want || !lower_hex {
            return Err(bad());
        }
        Ok(Self { algorithm: algorithm.to_owned(), hex: hex.to_owned() })
    }

    /// The algorithm, `sha256` or `sha512`.
    pub fn algorithm(&self) -> &str {
        &self.algorithm
    }

    /// The lowercase hex encoding of the hash.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.hex)
    }
}

impl ImageRef {
    /// Parse and normalise a reference as written in a pod spec.
    pub fn parse(input: &str) -> Result<Self, ImageRefError> {
        if input.is_empty() {
            return Err(ImageRefError::Empty);
        }
        let (rest, digest) = match input.split_once('@') {
            Some((rest, digest)) => (rest, Some(Digest::parse(digest)?)),
            None => (input, None),
        };
        // A tag follows the last ':' that comes after the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if name.len() > MAX_NAME_LEN {
            return Err(ImageRefError::TooLong);
        }
        if let Some(tag) = tag {
            validate_tag(tag)?;
        }
        let (registry, path) = split_registry(name)?;
        let mut repository = path.to_owned();
        if registry == DOCKER_HUB && !repository.contains('/') {
            repository = format!("library/{repository}");
        }
        for component in repository.split('/') {
            validate_component(component)?;
        }
        let tag = match (tag, &digest) {
            (Some(tag), _) => Some(tag.to_owned()),
            (None, None) => Some("latest".to_owned()),
            (None, Some(_)) => None,
        };
        Ok(Self { registry, repository, tag, digest })
    }

    /// The registry host (with port, if any), e.g. `docker.io`, `localhost:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry, e.g. `library/nginx`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if the reference has one (`latest` is implied only without a digest).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference is pinned.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`, the part image globs are matched against.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same image pinned to `digest` (the tag is kept for readability).
    pub fn with_digest(&self, digest: Digest) -> Self {
        Self { digest: Some(digest), ..self.clone() }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for ImageRef {
    type Err = ImageRefError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Split `host[:port]/path` into a normalised registry and the path.
fn split_registry(name: &str) -> Result<(String, &str), ImageRefError> {
    match name.split_once('/') {
        Some((first, path)) if is_domain(first) => {
            validate_registry(first)?;
            let registry = if DOCKER_HUB_ALIASES.contains(&first) { DOCKER_HUB } else { first };
            Ok((registry.to_owned(), path))
        }
        _ => Ok((DOCKER_HUB.to_owned(), name)),
    }
}

/// Whether the first component names a registry rather than a Docker Hub namespace.
pub(crate) fn is_domain(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost" || first.starts_with('[')
}

fn validate_registry(host: &str) -> Result<(), ImageRefError> {
    let bad = || ImageRefError::InvalidRegistry(host.to_owned());
    let (hostname, port) = if let Some(rest) = host.strip_prefix('[') {
        // [IPv6]:port
        let (addr, after) = rest.split_once(']').ok_or_else(bad)?;
        if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err(bad());
        }
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(bad)?),
        };
        (None, port)
    } else {
        match host.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(host), None),
        }
    };
    if let Some(hostname) = hostname {
        let ok_label = |l: &str| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if !hostname.split('.').all(ok_label) {
            return Err(bad());
        }
    }
    if let Some(port) = port
        && (port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad());
    }
    Ok(())
}

fn validate_component(c: &str) -> Result<(), ImageRefError> {
    let bad = || ImageRefError::InvalidComponent(c.to_owned());
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err(bad());
    }
    // Separators: '.', '_', '__', or one or more '-'.
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if alnum(b) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let valid = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !valid {
            return Err(bad());
        }
    }
    Ok(())
}

fn validate_tag(tag: &str) -> Result<(), ImageRefError> {
    let bad = || ImageRefError::InvalidTag(tag.to_owned());
    let first_ok = tag.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    let rest_ok = tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if tag.len() > MAX_TAG_LEN || !first_ok || !rest_ok {
        return Err(bad());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0000000000000000000000000000000000000000000000000000000000000001";

    fn n(s: &str) -> String {
        ImageRef::parse(s).expect(s).to_string()
    }

    #[test]
    fn docker_hub_defaults() {
        assert_eq!(n("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(n("nginx:1.27"), "docker.io/library/nginx:1.27");
        assert_eq!(n("bitnami/redis"), "docker.io/bitnami/redis:latest");
        assert_eq!(n("index.docker.io/library/nginx"), "docker.io/library/nginx:latest");
        assert_eq!(n("docker.io/nginx"), "docker.io/library/nginx:latest");
    }

    #[test]
    fn registries_ports_and_digests() {
        assert_eq!(n("localhost:5000/app:v1"), "localhost:5000/app:v1");
        assert_eq!(n("localhost/app"), "localhost/app:latest");
        assert_eq!(n("ghcr.io/acme/team/app:v1.2.3"), "ghcr.io/acme/team/app:v1.2.3");
        let pinned = format!("ghcr.io/acme/app@sha256:{HEX}");
        let r = ImageRef::parse(&pinned).expect("parses");
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().map(|d| d.hex()), Some(HEX));
        assert_eq!(r.to_string(), pinned);
        let both = format!("ghcr.io/acme/app:v1@sha256:{HEX}");
        assert_eq!(n(&both), both);
        assert_eq!(n("[::1]:5000/app:v1"), "[::1]:5000/app:v1");
        assert_eq!(ImageRef::parse("127.0.0.1:5000/a/b").expect("ip").registry(), "127.0.0.1:5000");
    }

    #[test]
    fn rejects_what_the_runtime_rejects() {
        for bad in [
            "",
            "Nginx",
            "nginx:",
            "nginx:-x",
            "ghcr.io/acme/app@sha256:abc",
            &format!("ghcr.io/acme/app@sha256:{}", HEX.to_uppercase().replace('0', "A")),
            &format!("ghcr.io/acme/app@md5:{HEX}"),
            "ghcr.io//app",
            "ghcr.io/acme/-app",
            "ghcr.io/acme/app_",
            "ghcr.io/a..b",
            "bad_host.io:port/app",
            "ghcr.io:/app",
            "app name",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} should not parse");
        }
        assert_eq!(ImageRef::parse(&"a".repeat(300)), Err(ImageRefError::TooLong));
    }

    #[test]
    fn separators() {
        assert_eq!(n("a__b/c.d/e--f_g"), "docker.io/a__b/c.d/e--f_g:latest");
        assert!(ImageRef::parse("a___b").is_err());
    }

    #[test]
    fn name_and_with_digest() {
        let r = ImageRef::parse("nginx:1").expect("parses");
        assert_eq!(r.name(), "docker.io/library/nginx");
        let d = Digest::parse(&format!("sha256:{HEX}")).expect("digest");
        assert_eq!(r.with_digest(d).to_string(), format!("docker.io/library/nginx:1@sha256:{HEX}"));
    }
}
