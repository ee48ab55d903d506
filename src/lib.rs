//! portcullis: a supply-chain security gate for Kubernetes.
//!
//! Data flow of one admission review:
//!
//! ```text
//! HTTPS (server) → AdmissionReview JSON (review) → Engine::review (engine)
//!   → images and their JSON paths (workload, image)
//!   → policies that match namespace, kind and image (policy::matcher)
//!   → digest rule, allowed images, CEL rules (policy::cel) and signatures (verify::Verifier)
//!   → findings folded with each policy's mode (decision) → AdmissionResponse (review)
//! ```
//!
//! Layers, lowest first; a lower layer never imports a higher one:
//!
//! - pure core, no I/O: [`image`], [`workload`], [`policy`] (model, compile, matcher, cel),
//!   [`decision`], [`review`], [`duration`];
//! - verification and loading: [`verify`], [`policy::load`];
//! - the engine: [`engine`];
//! - edges: [`server`], [`telemetry`], [`cli`].

pub mod cli;
pub mod decision;
pub mod duration;
pub mod engine;
#[doc(hidden)]
pub mod fuzzing;
pub mod image;
pub mod policy;
pub mod review;
pub mod server;
pub mod sops;
pub mod telemetry;
pub mod verify;
pub mod workload;
