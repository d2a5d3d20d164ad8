//! mediagate's integration tests: one binary, one module per concern.
//!
//! - `deploy`: the Docker Compose and Kubernetes configurations, run with real nginx.
//! - `vectors`: the token spec's test vectors, replayed in Rust and by the Python minter.
//! - `paths`: hostile request paths and canonicaliser properties.
//! - `server`: the server in-process on pre-bound TCP listeners (no nginx needed).
//! - `e2e`: real nginx + real mediagate over real HTTP (needs nginx; see `support`).
//! - `cors`: CORS for players on the session origin (issue 10), through real nginx.
//! - `denials`: readable denial pages (issue 10), through real nginx.
//! - `edges`: the trust boundaries at the edges (issue 8), through real nginx.
//! - `reload`: configuration and key reload on SIGHUP under `wrk` load, through real nginx.
//! - `proxies`: Caddy (real) and Traefik (its request shape) in front of `/forward`.
//! - `browser`: a real Chromium (playwright-core) through real nginx on loopback TCP.
//! - `shared_store`: two mediagates sharing Redis behind one nginx (issue 9).
//! - `store`: the conformance table every store backend passes (issue 9).
//! - `store_embedded`: the redb store: conformance, double spends, kill -9 durability, lock.
//! - `store_redis`: the Redis store against real `redis-server`s, standalone and a 3-node Cluster.
//! - `uses`: limited-use links and revocation through real nginx (issue 9).
//! - `uploads`: upload slots through real nginx, to a handler and to DAV (issue 9).
//! - `overrides`: per-link response overrides and the refresh keeping other query parameters,
//!   through real nginx (issue 11).
//! - `purposes`: per-purpose keys and links bound to a file version (issue 11), in-process
//!   and through real nginx.
//! - `tokensrc`: where the token comes from (query or `Authorization` header), in-process and
//!   through real nginx (issue 11).
//! - `cookies`: cookie grants (issue 10), both nginx modes, through real nginx.
//! - `scopes`: one token with several scopes, and its recipient, through real nginx (issue 11).
//! - `grants`: tokens carried in a path segment, through real nginx in both modes (issue 10).
//! - `playback`: long playback, a player's first range exchanged for a path-form grant,
//!   through real nginx in both modes (issue 10).

mod browser;
mod cli;
mod cookies;
mod cors;
mod denials;
mod deploy;
mod e2e;
mod edges;
mod grants;
mod overrides;
mod path_properties;
mod paths;
mod playback;
mod proxies;
mod purposes;
mod reload;
mod scopes;
mod server;
mod shared_store;
mod store;
mod store_embedded;
mod store_redis;
mod support;
mod tokensrc;
mod uploads;
mod uses;
mod vectors;
