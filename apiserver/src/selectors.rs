//! Label and field selectors: parsing, validation and matching against JSON objects, as upstream Kubernetes does.

mod field;
mod label;
pub(crate) mod validation;

pub use field::{parse_terms as parse_field_terms, FieldSelector};
pub use label::{LabelSelector, Operator, Requirement};

/// A selector that could not be parsed or validated. The API layer returns
/// its message as a 400 BadRequest Status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SelectorError {
    message: String,
}

impl SelectorError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// The upstream-compatible error text.
    pub fn message(&self) -> &str {
        &self.message
    }
}
