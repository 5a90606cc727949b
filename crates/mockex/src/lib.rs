//! keygate-mockex.
