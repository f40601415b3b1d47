//! Lint rules (being written).
