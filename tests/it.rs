//! The integration tests, one binary (one link of the crate, not one per file): each file of
//! `tests/` is a module here. The shared support modules are declared once, at the root.
//! (`tests/conformance.rs` is its own binary with a custom harness: one test per case.)

#[path = "common/mod.rs"]
mod common;
#[path = "sops_support/mod.rs"]
mod sops_support;
#[path = "support/mod.rs"]
mod support;

#[path = "admission.rs"]
mod admission;
#[path = "attestations.rs"]
mod attestations;
#[path = "budget.rs"]
mod budget;
#[path = "ci_recipes.rs"]
mod ci_recipes;
#[path = "cli.rs"]
mod cli;
#[path = "cluster_state.rs"]
mod cluster_state;
#[path = "connections.rs"]
mod connections;
#[path = "format_matrix.rs"]
mod format_matrix;
#[path = "fuzz_regressions.rs"]
mod fuzz_regressions;
#[path = "hostile_policies.rs"]
mod hostile_policies;
#[path = "keyless.rs"]
mod keyless;
#[path = "pinning.rs"]
mod pinning;
#[path = "policy_evidence.rs"]
mod policy_evidence;
#[path = "pull_secrets.rs"]
mod pull_secrets;
#[path = "real_artifacts.rs"]
mod real_artifacts;
#[path = "registry.rs"]
mod registry;
#[path = "registry_auth.rs"]
mod registry_auth;
#[path = "reload.rs"]
mod reload;
#[path = "server.rs"]
mod server;
#[path = "signatures.rs"]
mod signatures;
#[path = "signed_policies.rs"]
mod signed_policies;
#[path = "sops_cli.rs"]
mod sops_cli;
#[path = "sops_compat.rs"]
mod sops_compat;
#[path = "sops_fixtures.rs"]
mod sops_fixtures;
#[path = "sops_metadata.rs"]
mod sops_metadata;
#[path = "sops_robustness.rs"]
mod sops_robustness;
#[path = "sops_secret_ref.rs"]
mod sops_secret_ref;
#[path = "sops_tamper.rs"]
mod sops_tamper;
#[path = "timestamped.rs"]
mod timestamped;
#[path = "verify_cli.rs"]
mod verify_cli;
