//! Placeholder until the SBOM normaliser lands (replaced on merge).
use serde_json::Value;
pub fn packages(_predicate_type: &str, _predicate: &Value) -> Option<Value> {
    None
}
