//! What [`super::check_all`] reports.

use std::fmt;

use super::ANNOTATION;

/// A built resource that breaks the binding (or, for [`Violation::RenamedAllowed`], a change that
/// is only reported).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    Namespace {
        origin: String,
        file: String,
        bound: String,
        built: Option<String>,
        resource: String,
    },
    Renamed {
        origin: String,
        file: String,
        built: String,
    },
    /// A rename accepted by `--renamed allow`: reported, not refused.
    RenamedAllowed {
        origin: String,
        file: String,
        built: String,
    },
    Changed {
        origin: String,
        file: String,
        built: String,
    },
    UnknownToken {
        resource: String,
    },
    /// Bound to a namespace that `--expect-namespace` does not list.
    Unexpected {
        origin: String,
        file: String,
        expected: String,
    },
    Value {
        resource: String,
        built: Option<String>,
        origins: Vec<String>,
    },
}

impl Violation {
    /// Whether the build must be refused for it.
    #[must_use]
    pub fn refuses(&self) -> bool {
        !matches!(self, Self::RenamedAllowed { .. })
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Namespace { origin, file, bound, built, resource } => {
                let built = built.as_deref().map_or_else(
                    || "no namespace (the applier's default; pass --default-namespace)".to_owned(),
                    str::to_owned,
                );
                write!(
                    f,
                    "{origin} was encrypted for namespace {bound}; this build puts it in {built} (as {resource}, from \
                     {file}). Encrypt a copy for that namespace instead of moving this one"
                )
            }
            Self::Renamed { origin, file, built } => write!(
                f,
                "{origin} (from {file}) is renamed by namePrefix/nameSuffix to {built}; renaming an encrypted resource is \
                 refused by default: pass --renamed allow to accept it"
            ),
            Self::RenamedAllowed { origin, file, built } => write!(
                f,
                "{origin} (from {file}) is renamed by namePrefix/nameSuffix to {built} (accepted: --renamed allow)"
            ),
            Self::Changed { origin, file, built } => write!(
                f,
                "{origin} (from {file}) became {built} in the build: only a namePrefix/nameSuffix may change an encrypted \
                 resource's name, never its kind"
            ),
            Self::UnknownToken { resource } => write!(
                f,
                "{resource} carries a {ANNOTATION} annotation that this decryption did not write (copied or forged); \
                 remove it from the sources"
            ),
            Self::Unexpected { origin, file, expected } => write!(
                f,
                "{origin} (from {file}) was encrypted for a namespace that is not expected ({expected}); the MAC binds the \
                 values of metadata.name and metadata.namespace but not which key holds which, so a file with the two keys \
                 swapped still decrypts: restore the file, or add the namespace to --expect-namespace"
            ),
            Self::Value { resource, built, origins } => write!(
                f,
                "{resource} holds a secret value of {} encrypted for another namespace; this build puts it in {}",
                origins.join(", "),
                built.as_deref().unwrap_or("no namespace")
            ),
        }
    }
}
