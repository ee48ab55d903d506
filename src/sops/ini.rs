//! INI store (placeholder until implemented).

use super::tree::Node;

/// Why an INI file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum IniError {
    #[error("invalid INI line {0}")]
    BadLine(usize),
}

/// Parse an INI file.
///
/// # Errors
/// [`IniError`] for invalid input.
pub fn parse(_text: &str) -> Result<(Node, Vec<(String, String)>), IniError> {
    Err(IniError::BadLine(0))
}

/// Emit a tree as INI.
#[must_use]
pub fn emit(_root: &Node) -> String {
    String::new()
}
