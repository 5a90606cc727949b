//! keygate-gateway.
