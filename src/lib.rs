//! mediagate: signed, expiring media links, verified next to nginx.
//!
//! Architecture map (pure core first, edges last):
//!
//! - [`path`]: canonicalise and prefix-match request paths; find a token's path segment. Pure.
//! - [`token`]: the token format (v1 and v2, both frozen): mint, decode, verify. Pure; time is a
//!   parameter.
//! - [`keys`]: the key ring and secrets that never print.
//! - [`reason`]: the machine-readable denial vocabulary shared by responses, logs and metrics.
//! - [`mint`]: requests for access -> signed URLs (CLI, `/mint` and refresh share it).
//! - [`gate`]: the media-domain decision: allow, refresh, or deny. Pure.
//! - [`cookie`]: cookie grants: the `Cookie` header's syntax and the grant's `Set-Cookie`. Pure.
//! - [`refresh`]: the session-domain half of the refresh flow. Pure.
//! - [`files`]: the version of a site's file, for links bound to one (blocking; the async
//!   edges run it off the runtime threads).
//! - [`upload`]: the upload-slot decision from the request's headers, and the settle handle.
//!   Pure; [`http`] reserves and settles in the store.
//! - [`decision`]: the one place where outcomes become HTTP responses.
//! - [`pages`]: denial pages for people (what happened, what to do), per reason and site.
//! - [`http`]: hyper listeners, routing, graceful shutdown.
//! - [`config`]: figment layers -> validated [`config::Config`]; the only place that reads
//!   key files.
//! - [`metrics`], [`logging`], [`audit`], [`clock`], [`cli`], [`probe`]: the edges; [`decimal`] helps
//!   the per-request ones.
//! - [`store`]: uses, reservations, use history and revocations: pure transitions
//!   (`store::state`), the in-memory revocations, and the embedded (redb) and Redis backends.
//! - [`remote`]: `revoke`, `revocations` and `uses`, the CLI as a client of the running
//!   server's internal endpoints (it never opens the store itself).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
pub mod cli;
pub mod clock;
pub mod config;
pub mod cookie;
pub mod decimal;
pub mod decision;
pub mod files;
pub mod gate;
pub mod http;
pub mod keys;
pub mod logging;
pub mod metrics;
pub mod mint;
pub mod pages;
pub mod path;
pub mod probe;
pub mod reason;
pub mod refresh;
pub mod remote;
pub mod store;
pub mod token;
pub mod upload;
