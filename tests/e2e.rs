//! End-to-end tests through real nginx (being written).
