//! The stateful edge: the store a running server opened, and the revocations it polls from
//! it. The pure decisions live in `store::state` and `store::revoked`; this module only holds
//! the handles and moves data between the store and memory.

use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;

use super::{App, RefusalLog};
use crate::clock;
use crate::config::store::{Backend, StoreConfig};
use crate::config::Config;
use crate::keys::Key;
use crate::reason::Reason;
use crate::store::embedded::EmbeddedStore;
use crate::store::redis::{RedisSettings, RedisStore};
use crate::store::revoked::Revoked;
use crate::store::state::UseKind;
use crate::store::{
    Consume, Consumed, HistoryEntry, Holder, Reserve, Reserved, Settled, Store, StoreError, UseKey,
};
use crate::token::{mac, Purpose, Verified};
use crate::upload::{self, Reservation};

/// The store and what the verify path needs from it without I/O.
pub struct StateEdge {
    /// Rate limit for the "store did not answer" warning: an outage under load must not
    /// write a line per request.
    outages: RefusalLog,
    /// Set once the store is open (at start-up for the embedded store; when the first
    /// connection succeeds for Redis). Until then counted tokens fail closed.
    store: OnceLock<Arc<dyn Store>>,
    /// The revocations in force, swapped by the poller.
    revoked: ArcSwap<Revoked>,
    /// True while the store has never been read (Redis down since start-up): no token can
    /// be known not to be revoked, so every token is refused until it is.
    pending: AtomicBool,
    /// Permits for history writes in flight ([`MAX_HISTORY_IN_FLIGHT`]).
    history_slots: Arc<tokio::sync::Semaphore>,
    /// Rate limit for the "history entry dropped" warning.
    history_drops: RefusalLog,
}

impl Default for StateEdge {
    fn default() -> Self {
        StateEdge {
            outages: RefusalLog::default(),
            store: OnceLock::new(),
            revoked: ArcSwap::from_pointee(Revoked::default()),
            pending: AtomicBool::new(false),
            history_slots: Arc::new(tokio::sync::Semaphore::new(MAX_HISTORY_IN_FLIGHT)),
            history_drops: RefusalLog::default(),
        }
    }
}

impl fmt::Debug for StateEdge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateEdge")
            .field("store_open", &self.store.get().is_some())
            .field("revocations", &self.revoked.load().len())
            .finish()
    }
}

impl StateEdge {
    /// Opens the configured store and loads the revocations in force, before the server
    /// answers anything: a revoked token must never verify in a server's first second.
    ///
    /// The embedded store must open (a locked or unwritable file is a start-up error). Redis
    /// may be down at start: the server then starts, answers `/healthz`, and refuses every
    /// token with `store_unavailable` (and `/readyz` with 503) until a connection succeeds
    /// (retried every second) and the revocations are loaded: without them no token is known
    /// not to be revoked.
    pub async fn open(self: &Arc<Self>, config: &StoreConfig) -> Result<(), StoreError> {
        match &config.backend {
            Backend::Embedded { path } => {
                let path = path.clone();
                let store = tokio::task::spawn_blocking(move || EmbeddedStore::open(&path))
                    .await
                    .map_err(|error| StoreError::Unavailable(error.to_string()))??;
                tracing::info!(path = %store.path().display(), "embedded store open");
                self.install(Arc::new(store));
                self.refresh_revocations().await?;
            }
            Backend::Redis {
                urls,
                cluster,
                key_prefix,
                connect_timeout,
                response_timeout,
            } => {
                let settings = RedisSettings {
                    urls: urls.clone(),
                    cluster: *cluster,
                    key_prefix: key_prefix.clone(),
                    connect_timeout: *connect_timeout,
                    response_timeout: *response_timeout,
                };
                match self.connect_redis(&settings).await {
                    Ok(()) => {}
                    Err(error) => {
                        self.pending.store(true, Ordering::Relaxed);
                        tracing::warn!(
                            %error,
                            "Redis store unavailable at start; every token is refused \
                             (store_unavailable) until the revocations are loaded, retrying \
                             every second"
                        );
                        let state = Arc::clone(self);
                        tokio::spawn(async move {
                            let mut retry = tokio::time::interval(Duration::from_secs(1));
                            retry.tick().await;
                            loop {
                                retry.tick().await;
                                if state.connect_redis(&settings).await.is_ok() {
                                    break;
                                }
                            }
                        });
                    }
                }
            }
        }
        tokio::spawn(Arc::clone(self).poll_revocations(config.revocation_poll));
        Ok(())
    }

    /// Connects to Redis, installs the store and loads the revocations.
    async fn connect_redis(&self, settings: &RedisSettings) -> Result<(), StoreError> {
        if self.store().is_none() {
            let store = RedisStore::connect(settings).await?;
            self.install(Arc::new(store));
        }
        self.refresh_revocations().await?;
        tracing::info!(cluster = settings.cluster, "Redis store connected");
        Ok(())
    }

    /// The open store, if any.
    pub fn store(&self) -> Option<&Arc<dyn Store>> {
        self.store.get()
    }

    /// The store, or the error a counted request answers with.
    pub fn require(&self) -> Result<&Arc<dyn Store>, StoreError> {
        self.store
            .get()
            .ok_or_else(|| StoreError::Unavailable("the store is not open yet".into()))
    }

    /// Installs the opened store; a second call is ignored (the store is restart-only).
    pub fn install(&self, store: Arc<dyn Store>) {
        let _ = self.store.set(store);
    }

    /// True until the revocations have been read once from a store that was down at
    /// start-up; see [`StateEdge::open`].
    pub fn revocations_pending(&self) -> bool {
        self.pending.load(Ordering::Relaxed)
    }

    /// The revocations in force: one lock-free load.
    pub fn revoked(&self) -> arc_swap::Guard<Arc<Revoked>> {
        self.revoked.load()
    }

    /// Reads every revocation from the store and swaps them in.
    pub async fn refresh_revocations(&self) -> Result<(), StoreError> {
        let store = self.require()?;
        let now = clock::now();
        let entries = store.revocations(now).await?;
        self.revoked
            .store(Arc::new(Revoked::new(entries.iter(), now)));
        self.pending.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// Polls the store's revocation version every `every` and reloads the list when it
    /// moved, for ever. Errors are logged at most once per change of state (down, then up).
    pub async fn poll_revocations(self: Arc<Self>, every: Duration) {
        let mut seen: Option<u64> = None;
        let mut failing = false;
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let Some(store) = self.store() else { continue };
            let result = match store.revocations_version().await {
                Ok(version) if seen == Some(version) => Ok(()),
                Ok(version) => self.refresh_revocations().await.map(|()| {
                    seen = Some(version);
                }),
                Err(error) => Err(error),
            };
            match result {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("revocations readable again");
                }
                Err(error) if !failing => {
                    failing = true;
                    // The last list stays in force: a store outage never un-revokes.
                    tracing::warn!(%error, "cannot read revocations; keeping the last list");
                }
                _ => {}
            }
        }
    }
}

/// The request facts a use is judged by.
#[derive(Debug, Clone, Copy)]
pub struct Use<'r> {
    /// Original method.
    pub method: &'r str,
    /// The request has a `Range` header.
    pub ranged: bool,
    /// Client address from the trusted source.
    pub client: Option<IpAddr>,
    /// The client's `User-Agent`.
    pub user_agent: Option<&'r str>,
}

impl Use<'_> {
    /// What the request is, for counting a token of `purpose`. For a file (`download`):
    /// `HEAD` and `OPTIONS` look and never count, a ranged `GET` may continue its client's
    /// use (a player seeking), anything else is a new use. For everything else (an `api`
    /// token in front of an application) every request is a new use: the application, not
    /// nginx, answers it, and may act on a `HEAD` or a ranged `POST` as on any other.
    pub fn kind(&self, purpose: Purpose) -> UseKind {
        match (purpose, self.method) {
            (Purpose::Download, "HEAD" | "OPTIONS") => UseKind::Peek,
            (Purpose::Download, "GET") if self.ranged => UseKind::Continue,
            _ => UseKind::New,
        }
    }
}

/// Counts one use of `token` (which has a use limit) in the store. `Err` is the reason to
/// deny: `used_up`, or `store_unavailable` when the store did not answer (fail closed). New
/// uses and refusals are added to the token's history in the background.
pub async fn count_use(
    app: &App,
    config: &Config,
    token: &Verified<'_>,
    request: Use<'_>,
    now: u64,
) -> Result<(), Reason> {
    let (Some(limit), Some(token_id), Some(key)) =
        (token.uses, token.token_id, config.keys.get(token.kid))
    else {
        // The format makes a use limit carry a token id, and the token verified, so its key
        // exists: this is unreachable for a verified token, and fails closed if it is not.
        return Err(Reason::Malformed);
    };
    let store = match app.state.require() {
        Ok(store) => Arc::clone(store),
        Err(error) => return Err(app.state.unavailable(&error)),
    };
    let key_id = UseKey {
        kid: token.kid.to_owned(),
        token_id: token_id.to_owned(),
    };
    let consume = Consume {
        limit,
        expires: token.expires,
        holder: holder(key, request.client, request.user_agent),
        kind: request.kind(token.purpose),
        now,
    };
    let answer = match store.consume(&key_id, consume).await {
        Ok(answer) => answer,
        Err(error) => return Err(app.state.unavailable(&error)),
    };
    let (status, reason) = match answer {
        Consumed::Counted(_) => (200, None),
        Consumed::UsedUp => (403, Some(Reason::UsedUp)),
        // Continuing or peeking is not a use: the history keeps the uses, not every range.
        Consumed::Continued | Consumed::Peeked => return Ok(()),
    };
    let entry = history_entry(now, request.client, request.user_agent, status, reason);
    app.state.record_later(config, store, key_id, entry);
    reason.map_or(Ok(()), Err)
}

/// Reserves one use of an upload slot (a verified v2 `upload` token) until
/// `now + store.upload_lease`: `Ok(None)` for a slot without a use limit (nothing to reserve,
/// the store is not asked), `Ok(Some(reservation))` when a use is held for it, `Err(used_up)`
/// when every use is final or reserved, `Err(store_unavailable)` when the store did not
/// answer (fail closed). A refusal is added to the token's history in the background; a
/// granted reservation is recorded when it is settled ([`settle_upload`]).
pub async fn reserve_upload(
    app: &App,
    config: &Config,
    token: &Verified<'_>,
    client: Option<IpAddr>,
    user_agent: Option<&str>,
    now: u64,
) -> Result<Option<Reservation>, Reason> {
    let Some(limit) = token.uses else {
        return Ok(None);
    };
    let Some(token_id) = token.token_id else {
        // The format makes a use limit carry a token id: unreachable, and fails closed.
        return Err(Reason::Malformed);
    };
    let store = match app.state.require() {
        Ok(store) => Arc::clone(store),
        Err(error) => return Err(app.state.unavailable(&error)),
    };
    let mut id = [0u8; 16];
    if let Err(error) = getrandom::getrandom(&mut id) {
        // Without randomness a reservation id could be guessed: refuse, never weaken it.
        tracing::error!(%error, "no randomness for an upload reservation id");
        return Err(Reason::StoreUnavailable);
    }
    let reservation = Reservation {
        key: UseKey {
            kid: token.kid.to_owned(),
            token_id: token_id.to_owned(),
        },
        id,
    };
    let request = Reserve {
        limit,
        expires: token.expires,
        reservation: id,
        // Never shorter than the token's life: nginx bounds each read of the body, not the
        // whole upload, so a slow client could outlast a shorter lease, a second upload then
        // reserve the lapsed slot, and both commit. A reservation nginx never settles (nginx
        // killed mid-upload) keeps its slot until the token expires.
        lease_until: now
            .saturating_add(config.store.upload_lease)
            .max(token.expires),
        now,
    };
    match store.reserve(&reservation.key, request).await {
        Ok(Reserved::Granted) => Ok(Some(reservation)),
        Ok(Reserved::Full) => {
            let entry = history_entry(now, client, user_agent, 403, Some(Reason::UsedUp));
            app.state
                .record_later(config, store, reservation.key, entry);
            Err(Reason::UsedUp)
        }
        Err(error) => Err(app.state.unavailable(&error)),
    }
}

/// Settles an upload reservation after the upload ended with `status` (nginx's `$status`):
/// a final use when [`upload::commits`] says it succeeded, given back otherwise. The upload
/// is added to the token's history (with its status) in the background.
pub async fn settle_upload(
    app: &App,
    config: &Config,
    reservation: Reservation,
    status: u16,
    client: Option<IpAddr>,
    user_agent: Option<&str>,
    now: u64,
) -> Result<Settled, StoreError> {
    let store = Arc::clone(app.state.require()?);
    let committed = upload::commits(status);
    let settled = store
        .settle(&reservation.key, reservation.id, committed, now)
        .await?;
    let entry = history_entry(now, client, user_agent, status, None);
    app.state
        .record_later(config, store, reservation.key, entry);
    Ok(settled)
}

fn history_entry(
    now: u64,
    client: Option<IpAddr>,
    user_agent: Option<&str>,
    status: u16,
    reason: Option<Reason>,
) -> HistoryEntry {
    HistoryEntry {
        at: now,
        client,
        user_agent: user_agent.map(|agent| {
            let mut end = agent.len().min(HistoryEntry::MAX_USER_AGENT);
            while !agent.is_char_boundary(end) {
                end -= 1;
            }
            agent[..end].to_owned()
        }),
        status,
        reason: reason.map(|reason| reason.as_str().to_owned()),
    }
}

/// Appends `entry` to the history of `key` off the answer's path (an answer must not wait
/// for a history write).
/// History writes in flight at most: past this (a flood of refusals of a used-up link, a
/// slow store), an entry is dropped and counted, rather than a task piling up per request.
const MAX_HISTORY_IN_FLIGHT: usize = 1024;

impl StateEdge {
    /// Appends `entry` to the token's history off the answer's path, unless
    /// [`MAX_HISTORY_IN_FLIGHT`] writes are already waiting (then it is dropped, and the drops
    /// are logged at most once a second with their count).
    fn record_later(
        &self,
        config: &Config,
        store: Arc<dyn Store>,
        key: UseKey,
        entry: HistoryEntry,
    ) {
        let retention = config.store.retention;
        if retention.max_entries == 0 {
            return;
        }
        let Ok(permit) = Arc::clone(&self.history_slots).try_acquire_owned() else {
            if let Some(unlogged) = self.history_drops.note(std::time::Instant::now()) {
                tracing::warn!(
                    not_logged = unlogged,
                    "use history entry dropped: {MAX_HISTORY_IN_FLIGHT} writes already waiting"
                );
            }
            return;
        };
        tokio::spawn(async move {
            if let Err(error) = store.record(&key, entry, retention).await {
                tracing::warn!(%error, "use history not recorded");
            }
            drop(permit);
        });
    }

    /// Logs a counted request refused for a store error (at most one line a second, with
    /// the number of refusals not logged) and gives the reason to answer.
    fn unavailable(&self, error: &StoreError) -> Reason {
        if let Some(unlogged) = self.outages.note(std::time::Instant::now()) {
            tracing::warn!(%error, not_logged = unlogged, "counted token refused: the store did not answer");
        }
        Reason::StoreUnavailable
    }
}

/// The client that makes a use, as the store remembers it: a MAC of its address and user
/// agent under the token's own key, so the store holds no address in clear and every
/// sidecar sharing the keys computes the same value. The input starts with 0xff, never a
/// token version byte, so it can never be mistaken for a token body.
pub fn holder(key: &Key, client: Option<IpAddr>, user_agent: Option<&str>) -> Holder {
    let mut input = Vec::with_capacity(96);
    input.extend_from_slice(b"\xffholder\0");
    if let Some(client) = client {
        input.extend_from_slice(client.to_string().as_bytes());
    }
    input.push(0);
    input.extend_from_slice(user_agent.unwrap_or("").as_bytes());
    Holder(mac::tag(key, &input, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_files_ranged_get_continues_and_only_a_files_head_or_options_peeks() {
        let cases = [
            (Purpose::Download, "GET", false, UseKind::New),
            (Purpose::Download, "GET", true, UseKind::Continue),
            (Purpose::Download, "HEAD", true, UseKind::Peek),
            (Purpose::Download, "OPTIONS", false, UseKind::Peek),
            (Purpose::Download, "POST", true, UseKind::New),
            (Purpose::Api, "GET", true, UseKind::New),
            (Purpose::Api, "POST", true, UseKind::New),
            (Purpose::Api, "HEAD", false, UseKind::New),
            (Purpose::Api, "OPTIONS", false, UseKind::New),
        ];
        for (purpose, method, ranged, expected) in cases {
            let request = Use {
                method,
                ranged,
                client: None,
                user_agent: None,
            };
            assert_eq!(
                request.kind(purpose),
                expected,
                "{purpose:?} {method} {ranged}"
            );
        }
    }
}
