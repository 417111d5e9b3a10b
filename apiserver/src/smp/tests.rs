//! Table tests of strategic merge patch against upstream behaviour.
