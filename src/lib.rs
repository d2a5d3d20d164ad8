//! mediagate: signed, expiring media links, verified next to nginx.
//!
//! Architecture map (pure core first, edges last):
//!
//! - [`path`]: canonicalise and prefix-match request paths. Pure.
//! - [`token`]: the v1 token format: mint, decode, verify. Pure; time is a parameter.
//! - [`keys`]: the key ring and secrets that never print.
//! - [`config`]: figment layers -> validated [`config::Config`]; the only place that reads key files.
//! - [`reason`]: the machine-readable denial vocabulary shared by responses, logs and metrics.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod keys;
pub mod path;
pub mod reason;
pub mod config;
pub mod token;
