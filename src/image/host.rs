//! Registry hosts in canonical form (pure).
//!
//! The container runtime reaches a registry by DNS name or IP address, and DNS and TLS names are
//! case-insensitive, so `GHCR.IO`, `Ghcr.io` and `ghcr.io:443` are one registry. Every host is
//! brought to ONE spelling here, for references and policy globs alike:
//!
//! 1. `[v6]` literals are parsed and printed in RFC 5952 form (`[0:0::1]` → `[::1]`); zones refused.
//! 2. Names are lower-cased; only ASCII letters, digits and `-` in dot-separated labels are kept.
//! 3. Port 443 (HTTPS's default, the one the runtime uses) is dropped; other ports stay, without
//!    leading zeros, in 1–65535.
//! 4. Docker Hub's aliases (`index.docker.io`, `registry-1.docker.io`, `registry.hub.docker.com`)
//!    become `docker.io`.
//!
//! Spellings that a resolver would send to another address than the name says, and which cannot
//! be canonicalised safely, are refused: non-ASCII (IDNA) names, a trailing dot, and IPv4 written
//! in any form but four decimal octets (`127.1`, `0x7f.0.0.1`, `2130706433`, `0177.0.0.1`).

use std::net::Ipv6Addr;

use super::ImageRefError;

/// The registry that references without a domain point at.
pub const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_ALIASES: [&str; 3] = ["index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"];
/// HTTPS's port, the runtime's default for registries.
const DEFAULT_PORT: u16 = 443;

/// Whether the first component of a name is a registry host rather than a Docker Hub
/// namespace: it has a `.` or `:`, is `localhost`, is an IPv6 literal, or has an upper-case
/// letter (distribution/reference: repository paths are lower-case, so such a component can
/// only be a host — the runtime pulls `LOCALHOST/app` from host `localhost`).
pub(crate) fn is_domain(first: &str) -> bool {
    first.contains(['.', ':'])
        || first == "localhost"
        || first.starts_with('[')
        || first.bytes().any(|b| b.is_ascii_uppercase())
}

/// The canonical spelling of a registry host `host[:port]`.
pub fn canonical_host(host: &str) -> Result<String, ImageRefError> {
    let invalid = |why: &str| ImageRefError::InvalidRegistry { host: host.to_owned(), why: why.to_owned() };
    if !host.is_ascii() {
        return Err(ImageRefError::NonAsciiHost(host.to_owned()));
    }
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (addr, after) = rest.split_once(']').ok_or_else(|| invalid("an IPv6 literal needs its closing ]"))?;
        if addr.contains('%') {
            return Err(invalid("IPv6 zones (%…) are not allowed in image references"));
        }
        let ip: Ipv6Addr = addr.parse().map_err(|_| invalid("not an IPv6 address"))?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(|| invalid("expected :port after ]"))?),
        };
        (format!("[{ip}]"), port)
    } else {
        let (name, port) = match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        };
        (canonical_name(host, name)?, port)
    };
    let port = match port {
        None => None,
        Some(p) => {
            let ok = !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) && !p.starts_with('0');
            match p.parse::<u16>() {
                Ok(n) if ok && n > 0 => Some(n),
                _ => return Err(invalid("the port must be a number from 1 to 65535 without leading zeros")),
            }
        }
    };
    let host = match port {
        Some(port) if port != DEFAULT_PORT => format!("{name}:{port}"),
        _ => name,
    };
    Ok(if DOCKER_HUB_ALIASES.contains(&host.as_str()) { DOCKER_HUB.to_owned() } else { host })
}

/// A DNS name or IPv4 address, lower-cased; refused if it is a non-canonical IPv4 spelling.
fn canonical_name(host: &str, name: &str) -> Result<String, ImageRefError> {
    let invalid = |why: &str| ImageRefError::InvalidRegistry { host: host.to_owned(), why: why.to_owned() };
    if name.is_empty() {
        return Err(invalid("the host name is empty"));
    }
    if name.ends_with('.') {
        return Err(invalid("a trailing dot names the same host another way; remove it"));
    }
    let name = name.to_ascii_lowercase();
    let labels: Vec<&str> = name.split('.').collect();
    let ok_label = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !labels.iter().all(ok_label) {
        return Err(invalid("use letters, digits and '-' in dot-separated labels"));
    }
    if looks_like_ipv4(&labels) && !is_dotted_quad(&labels) {
        return Err(ImageRefError::NonCanonicalIp(host.to_owned()));
    }
    Ok(name)
}

/// Whether a resolver (inet_aton, getaddrinfo) could read the labels as an IPv4 address: one to
/// four numbers in decimal, octal (leading 0) or hex (0x), or a name whose last label is numeric
/// (no top-level domain is numeric, so resolvers treat it as an address).
fn looks_like_ipv4(labels: &[&str]) -> bool {
    let number = |l: &&str| {
        let l = l.to_ascii_lowercase();
        match l.strip_prefix("0x") {
            Some(hex) => hex.bytes().all(|b| b.is_ascii_hexdigit()),
            None => l.bytes().all(|b| b.is_ascii_digit()),
        }
    };
    let last_numeric = labels.last().is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
    (labels.len() <= 4 && labels.iter().all(number)) || last_numeric
}

/// Four decimal octets, 0–255, without leading zeros.
fn is_dotted_quad(labels: &[&str]) -> bool {
    labels.len() == 4
        && labels.iter().all(|l| {
            l.bytes().all(|b| b.is_ascii_digit()) && (l.len() == 1 || !l.starts_with('0')) && l.parse::<u8>().is_ok()
        })
}
