//! State for the tokens that need it: use counters, upload-slot reservations, use history and
//! revocations. Tokens without a use limit never reach this module.
//!
//! Layers, pure core first:
//! - [`state`]: what one counted token's record is and how each operation changes it, as pure
//!   functions of the record, the request and `now`. Every backend applies exactly these
//!   transitions (the embedded store calls them inside a write transaction; the Redis scripts
//!   are their transcription, and one scenario table in the tests runs against both).
//! - [`Store`]: the small async trait the HTTP edge calls. Each operation on one token is
//!   atomic: two concurrent uses of a single-use token can never both be allowed.
//! - Backends: `embedded` (redb, the default, one host) and `redis` (several hosts, standalone
//!   or Cluster).
//!
//! What a "use" is (documented in `docs/operations.md`): a request that asks for a new copy of
//! the resource. A `Range` request from the client that made an earlier use of the same token
//! (same address and user agent, [`Holder`]) continues that use and costs nothing, so a
//! single-use link to a video still plays and seeks; `HEAD` and `OPTIONS` never cost a use.

pub mod embedded;
pub mod redis;
pub mod revoke;
pub mod revoked;
pub mod state;

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

pub use state::{Consume, Consumed, Holder, Reserve, Reserved, Settled, UseRecord};

/// A boxed future, so that [`Store`] can be used as `dyn Store`: one allocation per call to
/// the store, which only counted tokens make.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Which counted token: its key id and token id (a token id is unique per key, not across
/// keys, so both name it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct UseKey {
    /// Key id (`kid`) of the token.
    pub kid: String,
    /// Token id of the token.
    pub token_id: String,
}

/// Occurs when the store cannot answer. Counted tokens then fail closed (503
/// `store_unavailable`); stateless tokens never see it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Occurs when the backend is unreachable, timed out or refused the operation. The text
    /// names the backend and the cause, never a token.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Occurs when a stored record cannot be read back (another program wrote the key, or a
    /// format change without migration).
    #[error("store record unreadable: {0}")]
    Corrupt(String),
}

/// One use of a counted token, as kept in its history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Unix seconds.
    pub at: u64,
    /// The client address from the trusted source (nginx's `$remote_addr`).
    pub client: Option<IpAddr>,
    /// The client's `User-Agent`, cut to [`HistoryEntry::MAX_USER_AGENT`] bytes.
    pub user_agent: Option<String>,
    /// The status mediagate answered (200/204 allowed, 403 used up, ...).
    pub status: u16,
    /// Machine-readable reason for a refusal; `None` when allowed.
    pub reason: Option<String>,
}

impl HistoryEntry {
    /// Longest user agent kept, in bytes.
    pub const MAX_USER_AGENT: usize = 256;
}

/// How long and how much history is kept per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Entries kept per token (the newest).
    pub max_entries: u32,
    /// Seconds an entry is kept after it was written.
    pub max_age: u64,
}

/// What is revoked. Entries are kept until nothing they cover can still be valid.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Revocation {
    /// One token: key id and token id.
    Token {
        /// Key id.
        kid: String,
        /// Token id.
        token_id: String,
    },
    /// Every token whose subject is this.
    Subject {
        /// Subject.
        subject: String,
    },
    /// Every token key `kid` signed before `before` (unix seconds). Tokens without an
    /// issued-at field cannot show when they were signed and count as signed before.
    KeyBefore {
        /// Key id.
        kid: String,
        /// Unix seconds.
        before: u64,
    },
}

/// A revocation as stored: what, when it was made, and when it can be forgotten.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationEntry {
    /// What is revoked.
    #[serde(flatten)]
    pub revocation: Revocation,
    /// Unix seconds when it was made.
    pub created: u64,
    /// Unix seconds after which nothing it covers can still verify.
    pub expires: u64,
}

/// The store behind counted tokens, revocations and history. Every method on one [`UseKey`]
/// is atomic with respect to every other.
pub trait Store: Send + Sync {
    /// Counts a use (or continues one, or peeks), see [`state::consume`].
    fn consume<'a>(&'a self, key: &'a UseKey, request: Consume) -> StoreFuture<'a, Consumed>;

    /// Reserves an upload slot use that becomes final only when settled, see
    /// [`state::reserve`].
    fn reserve<'a>(&'a self, key: &'a UseKey, request: Reserve) -> StoreFuture<'a, Reserved>;

    /// Makes a reservation final (`committed`) or gives it back, see [`state::settle`].
    fn settle<'a>(
        &'a self,
        key: &'a UseKey,
        reservation: [u8; 16],
        committed: bool,
        now: u64,
    ) -> StoreFuture<'a, Settled>;

    /// Appends one history entry, dropping what `retention` no longer keeps.
    fn record<'a>(
        &'a self,
        key: &'a UseKey,
        entry: HistoryEntry,
        retention: Retention,
    ) -> StoreFuture<'a, ()>;

    /// The history of one token, oldest first, without entries older than `retention`.
    fn history<'a>(
        &'a self,
        key: &'a UseKey,
        retention: Retention,
        now: u64,
    ) -> StoreFuture<'a, Vec<HistoryEntry>>;

    /// Stores a revocation (idempotent: the same revocation twice keeps the later expiry).
    fn revoke(&self, entry: RevocationEntry) -> StoreFuture<'_, ()>;

    /// Every revocation that has not expired at `now`.
    fn revocations(&self, now: u64) -> StoreFuture<'_, Vec<RevocationEntry>>;

    /// A number that changes whenever the revocations change, so that sidecars can poll it
    /// cheaply and reload the list only when it moved.
    fn revocations_version(&self) -> StoreFuture<'_, u64>;

    /// Answers when the store can serve requests (readiness).
    fn ping(&self) -> StoreFuture<'_, ()>;
}
