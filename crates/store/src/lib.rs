//! keygate-store.
