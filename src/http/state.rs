//! The stateful edge: the store a running server opened, and the revocations it polls from
//! it. The pure decisions live in `store::state` and `store::revoked`; this module only holds
//! the handles and moves data between the store and memory.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::clock;
use crate::store::revoked::Revoked;
use crate::store::{Store, StoreError};

/// The store and what the verify path needs from it without I/O.
pub struct StateEdge {
    /// Set once the store is open (at start-up for the embedded store; when the first
    /// connection succeeds for Redis). Until then counted tokens fail closed.
    store: OnceLock<Arc<dyn Store>>,
    /// The revocations in force, swapped by the poller.
    revoked: ArcSwap<Revoked>,
}

impl Default for StateEdge {
    fn default() -> Self {
        StateEdge {
            store: OnceLock::new(),
            revoked: ArcSwap::from_pointee(Revoked::default()),
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
