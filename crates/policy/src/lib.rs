//! keygate-policy.
