//! keygate-audit.
