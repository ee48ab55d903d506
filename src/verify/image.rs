//! The [`Verifier`] the webhook and `portcullis verify` use. This is the I/O side: resolve the
//! digest, list the platforms, use the workload's pull secrets, discover the signatures and
//! attestations in the registry; the evidence is then judged by [`super::judge::judge`], a pure
//! function, into a typed [`Outcome`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::cosign::KeyMaterial;
use super::discovery::{Wanted, discover};
use super::judge::{Judgement, Material, judge};
use super::key_secrets::KeySecrets;
use super::platforms::{PlatformError, platforms};
use super::pull_secrets::{PullContext, SecretSource};
use super::registry::{Registry, RegistryError};
use super::trust::TrustRoot;
use super::verdict::{Denial, Failure, Unchecked, Verification};
use super::{BoxFuture, Outcome, Verifier, VerifyRequest};
use crate::image::{Digest, ImageRef};
use crate::policy::{Authority, AuthorityKind, ImagePolicy, KeyRef, Platforms};

/// A trusted root's text and what was parsed from it.
type ParsedRoot = (Arc<str>, Arc<TrustRoot>);

/// Most parsed per-authority trusted roots kept (old contents linger after rotations).
const MAX_ROOTS: usize = 64;
/// Most platforms of an index checked with `platforms: every-platform` unless the server is
/// told otherwise (`--max-platforms`); an index with more is denied, never partly checked.
pub const DEFAULT_MAX_PLATFORMS: usize = 32;

/// Verifies cosign signatures found in OCI registries.
pub struct RegistryVerifier {
    registry: Registry,
    trust: Arc<TrustRoot>,
    /// Per-authority trusted roots (private Sigstore instances), parsed once per content: the
    /// text was read when the policies were loaded (the disk is never read here).
    roots: Mutex<HashMap<u64, ParsedRoot>>,
    /// Where imagePullSecrets are read (the API server), if anywhere.
    secrets: Option<Arc<dyn SecretSource>>,
    /// Where `secretRef` keys are read (watched Secrets), if anywhere.
    key_secrets: Option<Arc<KeySecrets>>,
    /// Most platform manifests of an index verified with `platforms: every-platform`.
    max_platforms: usize,
}

impl std::fmt::Debug for RegistryVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryVerifier").field("registry", &self.registry).finish()
    }
}

impl RegistryVerifier {
    pub fn new(registry: Registry, trust: TrustRoot) -> Self {
        Self {
            registry,
            trust: Arc::new(trust),
            roots: Mutex::new(HashMap::new()),
            secrets: None,
            key_secrets: None,
            max_platforms: DEFAULT_MAX_PLATFORMS,
        }
    }

    /// Verify up to `max` platform manifests of an index under `platforms: every-platform`
    /// (default [`DEFAULT_MAX_PLATFORMS`]); an index with more is denied, saying so.
    pub fn with_max_platforms(mut self, max: usize) -> Self {
        self.max_platforms = max;
        self
    }

    /// Also use the workload's imagePullSecrets (and its service account's) from `source`.
    pub fn with_pull_secrets(mut self, source: Arc<dyn SecretSource>) -> Self {
        self.secrets = Some(source);
        self
    }

    /// Read `secretRef` keys from `keys` (watched Secrets).
    pub fn with_key_secrets(mut self, keys: Arc<KeySecrets>) -> Self {
        self.key_secrets = Some(keys);
        self
    }

    /// The public key of a key authority: from its Secret (`secretRef`) or as loaded.
    async fn key_for(&self, authority: &Authority) -> Option<KeyMaterial> {
        match &self.key_secrets {
            Some(keys) => match keys.key(authority).await {
                Some(key) => Some(key.map_err(|why| Failure::KeyUnavailable { why })),
                None => key_material(authority),
            },
            None => key_material(authority),
        }
    }

    /// The registry client (for request counts).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    fn trust_for(&self, authority: &Authority) -> Result<Arc<TrustRoot>, String> {
        // A built-in root (`trustedRoot: github`) has content and no path.
        let name = authority
            .trusted_root
            .as_ref()
            .map_or_else(|| "the built-in trusted root".to_owned(), |p| p.display().to_string());
        let Some(content) = &authority.files.trusted_root else {
            return match &authority.trusted_root {
                None => Ok(Arc::clone(&self.trust)),
                Some(_) => Err(format!("{name} was not read when the policies were loaded")),
            };
        };
        let mut roots = self.roots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((text, root)) = roots.get(&content.hash)
            && (Arc::ptr_eq(text, &content.text) || **text == *content.text)
        {
            return Ok(Arc::clone(root));
        }
        let root = Arc::new(TrustRoot::from_json(&content.text).map_err(|e| format!("{name}: {e}"))?);
        if roots.len() >= MAX_ROOTS {
            roots.clear();
        }
        roots.insert(content.hash, (Arc::clone(&content.text), Arc::clone(&root)));
        Ok(root)
    }

    async fn verify_image(&self, registry: &Registry, image: &ImageRef, policy: &ImagePolicy) -> Outcome {
        let digest = match image.digest() {
            Some(d) => d.clone(),
            None => {
                let tag = image.tag().unwrap_or("latest");
                match registry.resolve(image.registry(), image.repository(), tag).await {
                    Ok(d) => d,
                    Err(e) => return registry_error(e),
                }
            }
        };
        let mut targets = vec![(String::new(), digest.clone())];
        if policy.platforms == Platforms::EveryPlatform {
            match platforms(registry, image, &digest, self.max_platforms).await {
                Ok(platforms) => targets.extend(platforms),
                Err(PlatformError::Registry(e)) => return registry_error(e),
                Err(PlatformError::Unverifiable(reason)) => {
                    return Outcome::Failed { reason: Denial::PlatformsUnverifiable { reason } };
                }
            }
        }
        let mut by = Vec::new();
        for (platform, target) in &targets {
            match self.verify_digest(registry, image, target, policy).await {
                Judgement::Met(satisfied) => by.extend(satisfied),
                Judgement::Denied(reason) if platform.is_empty() => return Outcome::Failed { reason },
                Judgement::Denied(reason) => {
                    let reason = Denial::Platform {
                        platform: platform.clone(),
                        digest: target.clone(),
                        denial: Box::new(reason),
                    };
                    return Outcome::Failed { reason };
                }
                Judgement::Unchecked(reason) => return Outcome::Error { reason },
            }
        }
        Outcome::Verified { detail: Verification::Checked { digest, platforms: targets.len() - 1, by } }
    }

    /// Fetch the evidence for one digest (I/O), then judge it ([`judge`], pure).
    async fn verify_digest(
        &self,
        registry: &Registry,
        image: &ImageRef,
        digest: &Digest,
        policy: &ImagePolicy,
    ) -> Judgement {
        let wanted = Wanted {
            signatures: policy.require != crate::policy::Require::None,
            attestations: !policy.attestations.is_empty(),
        };
        let evidence = match discover(registry, image, digest, wanted).await {
            Ok(e) => e,
            Err(error) => return Judgement::Unchecked(Unchecked::Registry { error }),
        };
        let mut material = Vec::new();
        for authority in &policy.authorities {
            let key = self.key_for(authority).await;
            match self.trust_for(authority) {
                Ok(trust) => material.push(Material { authority, key, trust }),
                Err(detail) => {
                    return Judgement::Unchecked(Unchecked::TrustedRoot { authority: authority.name.clone(), detail });
                }
            }
        }
        judge(policy, image, digest, &evidence, &material, super::observe::review_time())
    }
}

impl RegistryVerifier {
    /// The registry client to use for a workload: with its pull secrets, if any.
    async fn registry_for(&self, pull: Option<&PullContext>) -> Result<Option<Registry>, Unchecked> {
        match (pull, &self.secrets) {
            (Some(context), Some(source)) => match source.keychain(context).await {
                Ok(keychain) if keychain.is_empty() => Ok(None),
                Ok(keychain) => Ok(Some(self.registry.with_credentials(keychain))),
                Err(e) => Err(Unchecked::PullSecrets { detail: e.to_string() }),
            },
            _ => Ok(None),
        }
    }
}

impl Verifier for RegistryVerifier {
    fn cache_salt(&self, policy: &ImagePolicy) -> u64 {
        let Some(keys) = &self.key_secrets else { return 0 };
        policy.authorities.iter().fold(0, |salt, authority| salt.rotate_left(7) ^ keys.version(authority))
    }

    fn resolve<'a>(
        &'a self,
        image: &'a ImageRef,
        pull: Option<&'a PullContext>,
    ) -> BoxFuture<'a, Result<Digest, Unchecked>> {
        Box::pin(async move {
            let with_pull_secrets = self.registry_for(pull).await?;
            let registry = with_pull_secrets.as_ref().unwrap_or(&self.registry);
            let tag = image.tag().unwrap_or("latest");
            registry
                .resolve(image.registry(), image.repository(), tag)
                .await
                .map_err(|error| Unchecked::Registry { error })
        })
    }

    fn verify<'a>(&'a self, request: VerifyRequest<'a>) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            if request.policy.authorities.is_empty() {
                return Outcome::Verified { detail: Verification::NothingRequired };
            }
            let with_pull_secrets = match self.registry_for(request.pull).await {
                Ok(registry) => registry,
                Err(reason) => return Outcome::Error { reason },
            };
            let registry = with_pull_secrets.as_ref().unwrap_or(&self.registry);
            self.verify_image(registry, request.image, request.policy).await
        })
    }
}

fn registry_error(error: RegistryError) -> Outcome {
    Outcome::Error { reason: Unchecked::Registry { error } }
}

/// The public key of a key authority (None for keyless), as read when the policies were loaded.
pub fn key_material(authority: &Authority) -> Option<KeyMaterial> {
    let AuthorityKind::Key(key) = &authority.kind else {
        return None;
    };
    let unavailable = |why: String| Err(Failure::KeyUnavailable { why });
    Some(match key {
        KeyRef::Pem(pem) => Ok(pem.clone()),
        KeyRef::File(path) => match &authority.files.key {
            Some(content) => Ok(content.text.to_string()),
            None => unavailable(format!("public key {} was not read when the policies were loaded", path.display())),
        },
        KeyRef::Secret { name, .. } => unavailable(format!(
            "key from Secret {name:?}: secretRef keys are read from the API server by `portcullis serve` in a \
             cluster only; elsewhere use publicKeyFile or publicKey"
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::cel::CelEnv;
    use crate::policy::compile::parse_file;
    use crate::policy::{FileContent, Policy};

    fn authority(dir: &std::path::Path) -> Authority {
        let text = "apiVersion: portcullis.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: p}\nspec:\n  images: ['**']\n  authorities: [{name: k, key: {publicKeyFile: k.pub}}]\n";
        match parse_file(text, "p.yaml", dir, &CelEnv::new()).expect("policy").remove(0) {
            Policy::Image(mut p) => p.authorities.remove(0),
            Policy::Resource(_) => panic!("image policy"),
        }
    }

    #[test]
    fn keys_come_from_the_load_never_from_the_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("k.pub"), "-----BEGIN PUBLIC KEY-----\non disk\n").expect("write");
        // Compiled but not loaded: the file exists, yet the verifier does not read it.
        let mut authority = authority(dir.path());
        let Some(Err(Failure::KeyUnavailable { why })) = key_material(&authority) else {
            panic!("an unloaded key must not verify")
        };
        assert!(why.contains("k.pub was not read when the policies were loaded"), "{why}");
        authority.files.key = Some(FileContent::new("loaded"));
        assert_eq!(key_material(&authority), Some(Ok("loaded".to_owned())));
    }
}
