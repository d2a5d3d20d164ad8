//! The embedded store: one redb file on this host, the default backend. It owns durability
//! and batching; the rules themselves are [`super::state`]'s, applied unchanged.
//!
//! Writes go through one dedicated writer thread (a std thread, so a slow fsync never ties up
//! the tokio blocking pool). Callers queue an operation with a oneshot for its answer; the
//! writer takes every queued operation (at most [`MAX_BATCH`]), applies them in order inside
//! ONE write transaction, commits once with full durability and only then answers each
//! waiter. So a use is never answered before it is on disk (a crash right after the answer
//! cannot let a single-use token work again), concurrent uses cost one fsync between them,
//! and per-token atomicity follows from there being one writer. Reads (history, revocations,
//! ping) run read transactions on the blocking pool and never wait for the writer.
//!
//! redb locks the file: a second process (the CLI, say) cannot open it while the server
//! runs, and gets an error naming the file. Expired records, revocations and history are
//! dropped when an operation touches them and by a bounded sweep the writer runs at most
//! once a minute.
//!
//! Not here: what a use is (see [`super::state`]), Redis, and anything HTTP.

use std::fs::{DirBuilder, OpenOptions};
use std::net::IpAddr;
use std::ops::Bound;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redb::backends::FileBackend;
use redb::{
    Builder, Database, DatabaseError, Durability, ReadableDatabase, ReadableTable, Table,
    TableDefinition, WriteTransaction,
};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use super::state::{self, Holder, Pending, MAX_HOLDERS};
use super::{
    Consume, Consumed, HistoryEntry, Reserve, Reserved, Retention, RevocationEntry, Settled, Store,
    StoreError, StoreFuture, UseKey, UseRecord,
};
use crate::clock;

/// Most operations applied in one write transaction: bounds the transaction's size and the
/// wait of the last waiter in a burst.
pub const MAX_BATCH: usize = 1024;

/// Operations that may wait for the writer; past this, callers wait to queue (backpressure
/// instead of unbounded memory).
const QUEUE: usize = 4 * MAX_BATCH;

/// How often the writer sweeps expired entries, and how many entries per table one sweep
/// examines (so a sweep never makes one batch's waiters wait long).
const SWEEP_EVERY: Duration = Duration::from_secs(60);
const SWEEP_BUDGET: usize = 1000;

/// redb's page cache. The default (1 GiB) is sized for a database server; ours holds small
/// records and the hot ones fit easily.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// Layout version of the tables, kept in [`META`]; a file with another one is refused.
const SCHEMA: u64 = 2;
/// First byte of an encoded [`UseRecord`].
const RECORD_V1: u8 = 1;
/// First byte of an encoded [`StoredHistory`].
const HISTORY_V1: u8 = 1;

/// Use records by [`encode_key`]: the versioned bytes of [`encode_record`].
const USES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("uses");
/// History by [`encode_key`]: the versioned bytes of [`StoredHistory::encode`].
const HISTORY: TableDefinition<&[u8], &[u8]> = TableDefinition::new("history");
/// Revocations by the JSON of what they revoke: JSON of [`RevocationEntry`].
const REVOCATIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("revocations");
/// Counters: [`SCHEMA_KEY`], [`VERSION_KEY`].
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const SCHEMA_KEY: &str = "schema";
const VERSION_KEY: &str = "revocations_version";

/// The redb-backed [`Store`]. Dropping it stops the writer (after the batch in flight) and
/// releases the file.
pub struct EmbeddedStore {
    queue: Option<mpsc::Sender<Op>>,
    writer: Option<JoinHandle<()>>,
    db: Arc<Database>,
    commits: Arc<AtomicU64>,
    path: PathBuf,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.path)
            .field("commits", &self.commits())
            .finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the store at `path`: the parent directory is created 0700 when
    /// missing, a new file 0600. Fails when another process has the file open, naming it.
    pub fn open(path: &Path) -> Result<EmbeddedStore, StoreError> {
        let db = open_database(path)?;
        let (queue, receiver) = mpsc::channel(QUEUE);
        Self::start(db, path, queue, receiver)
    }

    /// Write transactions committed by the writer so far (one per batch); for metrics.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn start(
        db: Database,
        path: &Path,
        queue: mpsc::Sender<Op>,
        receiver: mpsc::Receiver<Op>,
    ) -> Result<EmbeddedStore, StoreError> {
        let db = Arc::new(db);
        let commits = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            db: Arc::clone(&db),
            commits: Arc::clone(&commits),
            sweep: Sweep::default(),
        };
        let writer = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(|e| {
                StoreError::Unavailable(format!(
                    "embedded store {}: cannot start the writer thread: {e}",
                    path.display()
                ))
            })?;
        Ok(EmbeddedStore {
            queue: Some(queue),
            writer: Some(writer),
            db,
            commits,
            path: path.to_owned(),
        })
    }

    /// Queues `op` (built around the reply channel) and waits for the writer's answer, which
    /// comes only after the batch holding it is committed.
    async fn write<T>(&self, op: impl FnOnce(Reply<T>) -> Op) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        let queue = self.queue.as_ref().ok_or_else(writer_stopped)?;
        queue.send(op(reply)).await.map_err(|_| writer_stopped())?;
        answer.await.map_err(|_| writer_stopped())?
    }

    /// Runs `read` in a read transaction on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&redb::ReadTransaction) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(unavailable)?;
            read(&txn)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("embedded store read failed: {e}")))?
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        // Closing the queue ends the writer once it has answered what is queued; joining it
        // releases the file lock before the handle is gone, so the file can be reopened.
        drop(self.queue.take());
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                tracing::error!(path = %self.path.display(), "embedded store writer panicked");
            }
        }
    }
}

impl Store for EmbeddedStore {
    fn consume<'a>(&'a self, key: &'a UseKey, request: Consume) -> StoreFuture<'a, Consumed> {
        Box::pin(self.write(move |reply| Op::Consume {
            key: encode_key(key),
            request,
            reply,
        }))
    }

    fn reserve<'a>(&'a self, key: &'a UseKey, request: Reserve) -> StoreFuture<'a, Reserved> {
        Box::pin(self.write(move |reply| Op::Reserve {
            key: encode_key(key),
            request,
            reply,
        }))
    }

    fn settle<'a>(
        &'a self,
        key: &'a UseKey,
        reservation: [u8; 16],
        committed: bool,
        now: u64,
    ) -> StoreFuture<'a, Settled> {
        Box::pin(self.write(move |reply| Op::Settle {
            key: encode_key(key),
            reservation,
            committed,
            now,
            reply,
        }))
    }

    fn record<'a>(
        &'a self,
        key: &'a UseKey,
        entry: HistoryEntry,
        retention: Retention,
    ) -> StoreFuture<'a, ()> {
        Box::pin(self.write(move |reply| Op::Record {
            key: encode_key(key),
            entry,
            retention,
            reply,
        }))
    }

    fn history<'a>(
        &'a self,
        key: &'a UseKey,
        retention: Retention,
        now: u64,
    ) -> StoreFuture<'a, Vec<HistoryEntry>> {
        let key = encode_key(key);
        Box::pin(self.read(move |txn| {
            let table = txn.open_table(HISTORY).map_err(unavailable)?;
            let stored = table.get(key.as_slice()).map_err(unavailable)?;
            match stored {
                None => Ok(Vec::new()),
                Some(bytes) => {
                    let mut history = StoredHistory::decode(bytes.value())?;
                    history.retain(retention, now);
                    Ok(history.entries)
                }
            }
        }))
    }

    fn revoke(&self, entry: RevocationEntry) -> StoreFuture<'_, ()> {
        Box::pin(self.write(move |reply| Op::Revoke { entry, reply }))
    }

    fn revocations(&self, now: u64) -> StoreFuture<'_, Vec<RevocationEntry>> {
        Box::pin(self.read(move |txn| {
            let table = txn.open_table(REVOCATIONS).map_err(unavailable)?;
            let mut live = Vec::new();
            for row in table.iter().map_err(unavailable)? {
                let (_, value) = row.map_err(unavailable)?;
                let entry: RevocationEntry = decode_json(value.value(), "revocation")?;
                if entry.expires >= now {
                    live.push(entry);
                }
            }
            Ok(live)
        }))
    }

    fn revocations_version(&self) -> StoreFuture<'_, u64> {
        Box::pin(self.read(|txn| {
            let meta = txn.open_table(META).map_err(unavailable)?;
            let version = meta.get(VERSION_KEY).map_err(unavailable)?;
            Ok(version.map_or(0, |v| v.value()))
        }))
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        let writing = self.queue.as_ref().is_some_and(|queue| !queue.is_closed());
        Box::pin(async move {
            if !writing {
                return Err(writer_stopped());
            }
            self.read(|txn| {
                txn.open_table(META).map_err(unavailable)?;
                Ok(())
            })
            .await
        })
    }
}

/// Opens the file, creating its directory and the tables, and checks the layout version.
fn open_database(path: &Path) -> Result<Database, StoreError> {
    let named = |what: &str, cause: &dyn std::fmt::Display| {
        StoreError::Unavailable(format!(
            "embedded store {}: {what}: {cause}",
            path.display()
        ))
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.exists() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| named("cannot create its directory", &e))?;
        }
    }
    // The mode applies only when the file is created: it names tokens and clients.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| named("cannot open", &e))?;
    let backend = FileBackend::new(file).map_err(|e| named("cannot open", &e))?;
    let db = Builder::new()
        .set_cache_size(CACHE_BYTES)
        // Verify the file on open: redb may panic on a file altered behind its back, and a
        // clear refusal at startup is better than a crash on the first request.
        .set_check_integrity_on_open(true)
        .create_with_backend(backend)
        .map_err(|e| match e {
            DatabaseError::DatabaseAlreadyOpen => StoreError::Unavailable(format!(
                "embedded store {} is already open in another process (only one process \
                 may open it: run CLI commands against the running server instead)",
                path.display()
            )),
            other => named("cannot open", &other),
        })?;
    let txn = db.begin_write().map_err(|e| named("cannot write", &e))?;
    {
        for table in [USES, HISTORY, REVOCATIONS] {
            txn.open_table(table)
                .map_err(|e| named("cannot create tables", &e))?;
        }
        let mut meta = txn
            .open_table(META)
            .map_err(|e| named("cannot create tables", &e))?;
        let schema = meta
            .get(SCHEMA_KEY)
            .map_err(|e| named("cannot read", &e))?
            .map(|v| v.value());
        match schema {
            None => {
                meta.insert(SCHEMA_KEY, SCHEMA)
                    .map_err(|e| named("cannot write", &e))?;
            }
            Some(SCHEMA) => {}
            Some(other) => {
                return Err(StoreError::Corrupt(format!(
                    "embedded store {}: layout version {other}, this mediagate reads {SCHEMA}",
                    path.display()
                )))
            }
        }
    }
    txn.commit().map_err(|e| named("cannot write", &e))?;
    Ok(db)
}

fn unavailable(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Unavailable(format!("embedded store: {}", e.into()))
}

fn writer_stopped() -> StoreError {
    StoreError::Unavailable("embedded store: the writer has stopped".into())
}

/// Where an answer goes once its batch is committed.
type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// One queued write.
enum Op {
    Consume {
        key: Vec<u8>,
        request: Consume,
        reply: Reply<Consumed>,
    },
    Reserve {
        key: Vec<u8>,
        request: Reserve,
        reply: Reply<Reserved>,
    },
    Settle {
        key: Vec<u8>,
        reservation: [u8; 16],
        committed: bool,
        now: u64,
        reply: Reply<Settled>,
    },
    Record {
        key: Vec<u8>,
        entry: HistoryEntry,
        retention: Retention,
        reply: Reply<()>,
    },
    Revoke {
        entry: RevocationEntry,
        reply: Reply<()>,
    },
}

impl Op {
    /// Answers with the batch's failure without applying anything.
    fn fail(self, cause: &str) {
        let error = || StoreError::Unavailable(cause.to_owned());
        // A caller that stopped waiting (its request went away) needs no answer.
        let _ = match self {
            Op::Consume { reply, .. } => reply.send(Err(error())).is_ok(),
            Op::Reserve { reply, .. } => reply.send(Err(error())).is_ok(),
            Op::Settle { reply, .. } => reply.send(Err(error())).is_ok(),
            Op::Record { reply, .. } => reply.send(Err(error())).is_ok(),
            Op::Revoke { reply, .. } => reply.send(Err(error())).is_ok(),
        };
    }
}

/// An applied operation's answer, held until the commit: sent as is when it succeeds,
/// replaced by the commit's failure otherwise.
type Answer = Box<dyn FnOnce(Option<&str>) + Send>;

fn answer<T: Send + 'static>(reply: Reply<T>, result: Result<T, StoreError>) -> Answer {
    Box::new(move |failed: Option<&str>| {
        let result = match failed {
            Some(cause) => Err(StoreError::Unavailable(cause.to_owned())),
            None => result,
        };
        let _ = reply.send(result);
    })
}

/// The tables one batch writes, opened once per transaction.
struct Tables<'t> {
    uses: Table<'t, &'static [u8], &'static [u8]>,
    history: Table<'t, &'static [u8], &'static [u8]>,
    revocations: Table<'t, &'static [u8], &'static [u8]>,
    meta: Table<'t, &'static str, u64>,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Tables<'t>, redb::Error> {
        Ok(Tables {
            uses: txn.open_table(USES)?,
            history: txn.open_table(HISTORY)?,
            revocations: txn.open_table(REVOCATIONS)?,
            meta: txn.open_table(META)?,
        })
    }

    /// The live record of `key` at `now`: an expired one reads as never used (as it would
    /// once Redis expired it) and is dropped. `Ok(Err(_))`: a record that cannot be read.
    fn use_record(
        &mut self,
        key: &[u8],
        now: u64,
    ) -> Result<Result<Option<UseRecord>, StoreError>, redb::Error> {
        let stored = self
            .uses
            .get(key)?
            .map(|bytes| decode_record(bytes.value()));
        match stored {
            None => Ok(Ok(None)),
            Some(Err(corrupt)) => Ok(Err(corrupt)),
            Some(Ok(record)) if record.keep_until < now => {
                self.uses.remove(key)?;
                Ok(Ok(None))
            }
            Some(Ok(record)) => Ok(Ok(Some(record))),
        }
    }

    /// Applies `transition` to the record of `key` and writes back what it returns.
    fn transition<T>(
        &mut self,
        key: &[u8],
        now: u64,
        transition: impl FnOnce(Option<&UseRecord>) -> (Option<UseRecord>, T),
    ) -> Result<Result<T, StoreError>, redb::Error> {
        let current = match self.use_record(key, now)? {
            Ok(current) => current,
            Err(corrupt) => return Ok(Err(corrupt)),
        };
        let (next, outcome) = transition(current.as_ref());
        if let Some(next) = next {
            self.uses.insert(key, encode_record(&next).as_slice())?;
        }
        Ok(Ok(outcome))
    }

    fn record(
        &mut self,
        key: &[u8],
        entry: HistoryEntry,
        retention: Retention,
    ) -> Result<Result<(), StoreError>, redb::Error> {
        let stored = self
            .history
            .get(key)?
            .map(|bytes| StoredHistory::decode(bytes.value()));
        let mut history = match stored {
            None => StoredHistory::default(),
            Some(Ok(history)) => history,
            Some(Err(corrupt)) => return Ok(Err(corrupt)),
        };
        let now = entry.at;
        history.entries.push(entry);
        history.retain(retention, now);
        if history.entries.is_empty() {
            self.history.remove(key)?;
            return Ok(Ok(()));
        }
        self.history.insert(key, history.encode().as_slice())?;
        Ok(Ok(()))
    }

    fn revoke(&mut self, entry: RevocationEntry) -> Result<Result<(), StoreError>, redb::Error> {
        let (Ok(key), Ok(value)) = (
            serde_json::to_vec(&entry.revocation),
            serde_json::to_vec(&entry),
        ) else {
            return Ok(Err(StoreError::Corrupt("revocation: cannot encode".into())));
        };
        let existing = self
            .revocations
            .get(key.as_slice())?
            .map(|bytes| decode_json::<RevocationEntry>(bytes.value(), "revocation"));
        // The same revocation again keeps the later expiry; an unreadable one is replaced,
        // since the new entry says everything that matters about it.
        let keep_existing = matches!(existing, Some(Ok(ref old)) if old.expires >= entry.expires);
        if !keep_existing {
            self.revocations.insert(key.as_slice(), value.as_slice())?;
        }
        let version = self.meta.get(VERSION_KEY)?.map_or(0, |v| v.value());
        self.meta.insert(VERSION_KEY, version.wrapping_add(1))?;
        Ok(Ok(()))
    }

    /// Applies one operation; `Err` is a storage failure that fails the whole batch (the
    /// operation itself is answered with it already).
    fn apply(&mut self, op: Op) -> Result<Answer, redb::Error> {
        match op {
            Op::Consume {
                key,
                request,
                reply,
            } => held(
                reply,
                self.transition(&key, request.now, |r| state::consume(r, &request)),
            ),
            Op::Reserve {
                key,
                request,
                reply,
            } => held(
                reply,
                self.transition(&key, request.now, |r| state::reserve(r, &request)),
            ),
            Op::Settle {
                key,
                reservation,
                committed,
                now,
                reply,
            } => held(
                reply,
                self.transition(&key, now, |r| state::settle(r, reservation, committed, now)),
            ),
            Op::Record {
                key,
                entry,
                retention,
                reply,
            } => held(reply, self.record(&key, entry, retention)),
            Op::Revoke { entry, reply } => held(reply, self.revoke(entry)),
        }
    }
}

/// Holds an applied operation's answer for the commit, or answers a storage failure now.
fn held<T: Send + 'static>(
    reply: Reply<T>,
    applied: Result<Result<T, StoreError>, redb::Error>,
) -> Result<Answer, redb::Error> {
    match applied {
        Ok(result) => Ok(answer(reply, result)),
        Err(e) => {
            let _ = reply.send(Err(StoreError::Unavailable(format!("embedded store: {e}"))));
            Err(e)
        }
    }
}

/// The writer thread's state.
struct Writer {
    db: Arc<Database>,
    commits: Arc<AtomicU64>,
    sweep: Sweep,
}

impl Writer {
    fn run(mut self, mut queue: mpsc::Receiver<Op>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        // Returns 0 only when every sender is gone and the queue is empty.
        while queue.blocking_recv_many(&mut batch, MAX_BATCH) > 0 {
            let count = batch.len();
            if let Err(cause) = self.commit(batch.drain(..)) {
                // No token in the cause: redb's errors name pages and files, not keys.
                tracing::error!(operations = count, error = %cause, "embedded store commit failed");
            }
        }
    }

    /// Applies `ops` in one transaction and answers them after the commit; returns the
    /// failure every waiter was answered with, if any.
    fn commit(&mut self, mut ops: impl ExactSizeIterator<Item = Op>) -> Result<(), String> {
        let mut answers: Vec<Answer> = Vec::with_capacity(ops.len());
        let outcome = self.apply_all(&mut ops, &mut answers);
        match outcome {
            Ok(()) => {
                self.commits.fetch_add(1, Ordering::Relaxed);
                for answer in answers {
                    answer(None);
                }
                Ok(())
            }
            Err(e) => {
                let cause = format!("embedded store: {e}");
                for answer in answers {
                    answer(Some(&cause));
                }
                for op in ops {
                    op.fail(&cause);
                }
                Err(cause)
            }
        }
    }

    fn apply_all(
        &mut self,
        ops: &mut impl Iterator<Item = Op>,
        answers: &mut Vec<Answer>,
    ) -> Result<(), redb::Error> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut tables = Tables::open(&txn)?;
            for op in ops {
                answers.push(tables.apply(op)?);
            }
            if self.sweep.due(Instant::now()) {
                self.sweep.run(&mut tables, clock::now())?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}

/// The periodic sweep: where each table's last one stopped, and when it ran.
#[derive(Default)]
struct Sweep {
    last: Option<Instant>,
    uses: Option<Vec<u8>>,
    history: Option<Vec<u8>>,
    revocations: Option<Vec<u8>>,
}

impl Sweep {
    fn due(&mut self, at: Instant) -> bool {
        match self.last {
            Some(last) if at.duration_since(last) < SWEEP_EVERY => false,
            _ => {
                self.last = Some(at);
                true
            }
        }
    }

    fn run(&mut self, tables: &mut Tables<'_>, now: u64) -> Result<(), redb::Error> {
        let dropped = sweep_table(&mut tables.uses, &mut self.uses, |bytes| {
            decode_record(bytes).is_ok_and(|record| record.keep_until < now)
        })? + sweep_table(&mut tables.history, &mut self.history, |bytes| {
            StoredHistory::decode(bytes).is_ok_and(|h| h.until < now)
        })? + sweep_table(&mut tables.revocations, &mut self.revocations, |bytes| {
            decode_json::<RevocationEntry>(bytes, "revocation").is_ok_and(|r| r.expires < now)
        })?;
        tracing::debug!(dropped, "embedded store swept expired entries");
        Ok(())
    }
}

/// Examines at most [`SWEEP_BUDGET`] entries after `cursor`, removes the expired ones and
/// moves the cursor (back to the start at the end of the table). Unreadable entries stay:
/// removing what cannot be read could forget a use.
fn sweep_table(
    table: &mut Table<'_, &'static [u8], &'static [u8]>,
    cursor: &mut Option<Vec<u8>>,
    expired: impl Fn(&[u8]) -> bool,
) -> Result<usize, redb::Error> {
    let lower = match cursor.as_deref() {
        Some(after) => Bound::Excluded(after),
        None => Bound::Unbounded,
    };
    let mut examined = 0;
    let mut last = None;
    let mut doomed = Vec::new();
    for row in table.range::<&[u8]>((lower, Bound::Unbounded))? {
        let (key, value) = row?;
        examined += 1;
        if expired(value.value()) {
            doomed.push(key.value().to_vec());
        }
        if examined == SWEEP_BUDGET {
            last = Some(key.value().to_vec());
            break;
        }
    }
    for key in &doomed {
        table.remove(key.as_slice())?;
    }
    *cursor = last;
    Ok(doomed.len())
}

/// A token's history as stored: its entries, oldest first, and the second after which all
/// of them are past the retention they were written with (what the sweep looks at).
#[derive(Debug, Default, PartialEq)]
struct StoredHistory {
    until: u64,
    entries: Vec<HistoryEntry>,
}

impl StoredHistory {
    /// Keeps the newest `max_entries` entries that are at most `max_age` old at `now`.
    fn retain(&mut self, retention: Retention, now: u64) {
        self.entries
            .retain(|e| e.at.saturating_add(retention.max_age) >= now);
        let excess = self
            .entries
            .len()
            .saturating_sub(retention.max_entries as usize);
        self.entries.drain(..excess);
        let newest = self.entries.iter().map(|e| e.at).max().unwrap_or(0);
        self.until = newest.saturating_add(retention.max_age);
    }

    /// Format 1, binary (it is rewritten on every counted use, so no JSON; integers little
    /// endian): `1 | until u64 | entries u16 | entry…` with each entry
    /// `at u64 | status u16 | client (0 | 4 [4] | 6 [16]) | agent len u16 + bytes, 0xffff = none |
    /// reason len u8 + bytes, 0xff = none`.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(11 + self.entries.len() * 64);
        out.push(HISTORY_V1);
        out.extend_from_slice(&self.until.to_le_bytes());
        out.extend_from_slice(
            &(self.entries.len().min(usize::from(u16::MAX)) as u16).to_le_bytes(),
        );
        for entry in self.entries.iter().take(usize::from(u16::MAX)) {
            out.extend_from_slice(&entry.at.to_le_bytes());
            out.extend_from_slice(&entry.status.to_le_bytes());
            match entry.client {
                None => out.push(0),
                Some(IpAddr::V4(v4)) => {
                    out.push(4);
                    out.extend_from_slice(&v4.octets());
                }
                Some(IpAddr::V6(v6)) => {
                    out.push(6);
                    out.extend_from_slice(&v6.octets());
                }
            }
            // The edge cuts agents to 256 bytes and reasons are short words; longer values
            // (never written by mediagate) are cut, not refused, to keep a use recordable.
            match &entry.user_agent {
                None => out.extend_from_slice(&u16::MAX.to_le_bytes()),
                Some(agent) => {
                    let agent = &agent.as_bytes()[..agent.len().min(usize::from(u16::MAX) - 1)];
                    out.extend_from_slice(&(agent.len() as u16).to_le_bytes());
                    out.extend_from_slice(agent);
                }
            }
            match &entry.reason {
                None => out.push(u8::MAX),
                Some(reason) => {
                    let reason = &reason.as_bytes()[..reason.len().min(usize::from(u8::MAX) - 1)];
                    out.push(reason.len() as u8);
                    out.extend_from_slice(reason);
                }
            }
        }
        out
    }

    /// Reads [`StoredHistory::encode`]'s format back; anything else is refused.
    fn decode(bytes: &[u8]) -> Result<StoredHistory, StoreError> {
        let corrupt = |why: &str| StoreError::Corrupt(format!("embedded store history: {why}"));
        let truncated = || corrupt("truncated");
        let mut reader = Reader(bytes);
        match reader.take::<1>() {
            Some([HISTORY_V1]) => {}
            Some([version]) => return Err(corrupt(&format!("unknown format {version}"))),
            None => return Err(corrupt("empty")),
        }
        let until = u64::from_le_bytes(reader.take().ok_or_else(truncated)?);
        let count = u16::from_le_bytes(reader.take().ok_or_else(truncated)?);
        let mut entries = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let at = u64::from_le_bytes(reader.take().ok_or_else(truncated)?);
            let status = u16::from_le_bytes(reader.take().ok_or_else(truncated)?);
            let client = match reader.take::<1>().ok_or_else(truncated)? {
                [0] => None,
                [4] => Some(IpAddr::from(reader.take::<4>().ok_or_else(truncated)?)),
                [6] => Some(IpAddr::from(reader.take::<16>().ok_or_else(truncated)?)),
                _ => return Err(corrupt("bad client tag")),
            };
            let user_agent = match u16::from_le_bytes(reader.take().ok_or_else(truncated)?) {
                u16::MAX => None,
                len => Some(reader.text(usize::from(len)).ok_or_else(truncated)?),
            };
            let reason = match reader.take::<1>().ok_or_else(truncated)? {
                [u8::MAX] => None,
                [len] => Some(reader.text(usize::from(len)).ok_or_else(truncated)?),
            };
            entries.push(HistoryEntry {
                at,
                client,
                user_agent,
                status,
                reason,
            });
        }
        if !reader.0.is_empty() {
            return Err(corrupt("wrong length"));
        }
        Ok(StoredHistory { until, entries })
    }
}

fn decode_json<'a, T: Deserialize<'a>>(bytes: &'a [u8], what: &str) -> Result<T, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Corrupt(format!("embedded store {what}: {e}")))
}

/// A [`UseKey`] as a table key: the key id's length (4 bytes, little endian), the key id,
/// the token id. The length keeps `("ab", "c")` and `("a", "bc")` apart.
pub(crate) fn encode_key(key: &UseKey) -> Vec<u8> {
    let kid = key.kid.as_bytes();
    let mut out = Vec::with_capacity(4 + kid.len() + key.token_id.len());
    out.extend_from_slice(&(kid.len() as u32).to_le_bytes());
    out.extend_from_slice(kid);
    out.extend_from_slice(key.token_id.as_bytes());
    out
}

/// A [`UseRecord`] as stored, format 1 (integers little endian):
/// `1 | count u32 | keep_until u64 | holders u8 | holder [16]… | pending u32 |
/// (id [16], lease_until u64)…`. Compact because it is written on every counted use.
pub(crate) fn encode_record(record: &UseRecord) -> Vec<u8> {
    let holders = record.holders.len().min(MAX_HOLDERS);
    let mut out = Vec::with_capacity(1 + 4 + 8 + 1 + holders * 16 + 4 + record.pending.len() * 24);
    out.push(RECORD_V1);
    out.extend_from_slice(&record.count.to_le_bytes());
    out.extend_from_slice(&record.keep_until.to_le_bytes());
    out.push(holders as u8);
    // `state` keeps at most MAX_HOLDERS; the newest are the ones worth keeping.
    for holder in &record.holders[record.holders.len() - holders..] {
        out.extend_from_slice(&holder.0);
    }
    out.extend_from_slice(&(record.pending.len() as u32).to_le_bytes());
    for pending in &record.pending {
        out.extend_from_slice(&pending.id);
        out.extend_from_slice(&pending.lease_until.to_le_bytes());
    }
    out
}

/// Reads [`encode_record`]'s format back; anything else (another version, a wrong length)
/// is refused, never guessed at.
pub(crate) fn decode_record(bytes: &[u8]) -> Result<UseRecord, StoreError> {
    let corrupt = |why: &str| StoreError::Corrupt(format!("embedded store use record: {why}"));
    let mut reader = Reader(bytes);
    match reader.take::<1>() {
        Some([RECORD_V1]) => {}
        Some([version]) => return Err(corrupt(&format!("unknown format {version}"))),
        None => return Err(corrupt("empty")),
    }
    let truncated = || corrupt("truncated");
    let count = u32::from_le_bytes(reader.take().ok_or_else(truncated)?);
    let keep_until = u64::from_le_bytes(reader.take().ok_or_else(truncated)?);
    let [holders] = reader.take().ok_or_else(truncated)?;
    if usize::from(holders) > MAX_HOLDERS {
        return Err(corrupt("too many holders"));
    }
    let holders = (0..holders)
        .map(|_| reader.take().map(Holder).ok_or_else(truncated))
        .collect::<Result<Vec<_>, _>>()?;
    let pending = u32::from_le_bytes(reader.take().ok_or_else(truncated)?);
    if reader.0.len() != pending as usize * 24 {
        return Err(corrupt("wrong length"));
    }
    let pending = (0..pending)
        .map(|_| {
            let id = reader.take().ok_or_else(truncated)?;
            let lease_until = u64::from_le_bytes(reader.take().ok_or_else(truncated)?);
            Ok(Pending { id, lease_until })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(UseRecord {
        count,
        keep_until,
        holders,
        pending,
    })
}

/// Reads fixed-size pieces off the front of a byte slice.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    /// `len` bytes of UTF-8 text; `None` when short or not UTF-8.
    fn text(&mut self, len: usize) -> Option<String> {
        let (head, rest) = self.0.split_at_checked(len)?;
        let text = std::str::from_utf8(head).ok()?.to_owned();
        self.0 = rest;
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::state::UseKind;
    use redb::ReadableTableMetadata;

    fn key(token_id: &str) -> UseKey {
        UseKey {
            kid: "k1".into(),
            token_id: token_id.into(),
        }
    }

    fn new_use(limit: u32, n: u8) -> Consume {
        Consume {
            limit,
            expires: 2_000_000_000,
            holder: Holder([n; 16]),
            kind: UseKind::New,
            now: 1_900_000_000,
        }
    }

    #[test]
    fn histories_round_trip_and_anything_else_is_refused() {
        let history = StoredHistory {
            until: 1_900_000_600,
            entries: vec![
                HistoryEntry {
                    at: 1_900_000_000,
                    client: Some("198.51.100.7".parse().expect("ip")),
                    user_agent: Some("player/1.0 (ünïcode)".into()),
                    status: 200,
                    reason: None,
                },
                HistoryEntry {
                    at: 1_900_000_001,
                    client: Some("2001:db8::1".parse().expect("ip")),
                    user_agent: Some(String::new()),
                    status: 403,
                    reason: Some("used_up".into()),
                },
                HistoryEntry {
                    at: 1_900_000_002,
                    client: None,
                    user_agent: None,
                    status: 503,
                    reason: Some(String::new()),
                },
            ],
        };
        let bytes = history.encode();
        assert_eq!(StoredHistory::decode(&bytes).expect("decodes"), history);
        let mut future = bytes.clone();
        future[0] = 2;
        assert!(matches!(
            StoredHistory::decode(&future),
            Err(StoreError::Corrupt(_))
        ));
        for cut in 0..bytes.len() {
            assert!(
                StoredHistory::decode(&bytes[..cut]).is_err(),
                "cut at {cut} decoded"
            );
        }
        let mut longer = bytes;
        longer.push(0);
        assert!(StoredHistory::decode(&longer).is_err());
    }

    #[test]
    fn records_round_trip_and_other_versions_are_refused() {
        let record = UseRecord {
            count: 7,
            keep_until: 1_900_000_600,
            holders: vec![Holder([1; 16]), Holder([2; 16])],
            pending: vec![Pending {
                id: [9; 16],
                lease_until: 1_900_000_060,
            }],
        };
        let bytes = encode_record(&record);
        assert_eq!(bytes.len(), 1 + 4 + 8 + 1 + 32 + 4 + 24);
        assert_eq!(decode_record(&bytes).expect("decodes"), record);

        let mut future = bytes.clone();
        future[0] = 2;
        let refused = decode_record(&future).expect_err("version 2 is unknown");
        assert_eq!(
            refused.to_string(),
            "store record unreadable: embedded store use record: unknown format 2"
        );
        for cut in [0, 1, 5, 13, bytes.len() - 1] {
            assert!(
                matches!(decode_record(&bytes[..cut]), Err(StoreError::Corrupt(_))),
                "cut at {cut}"
            );
        }
        let mut longer = bytes;
        longer.push(0);
        assert!(matches!(
            decode_record(&longer),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn keys_keep_kid_and_token_id_apart() {
        let split = |kid: &str, token_id: &str| {
            encode_key(&UseKey {
                kid: kid.into(),
                token_id: token_id.into(),
            })
        };
        assert_ne!(split("ab", "c"), split("a", "bc"));
        assert_eq!(split("k", "t"), [1, 0, 0, 0, b'k', b't']);
    }

    /// Opens a store whose writer starts only after `queued` operations are in its queue,
    /// so the batch they form does not depend on thread timing.
    fn open_with_queued(
        dir: &tempfile::TempDir,
        prepare: impl FnOnce(&Database),
        queued: Vec<Op>,
    ) -> EmbeddedStore {
        let path = dir.path().join("store.redb");
        let db = open_database(&path).expect("open");
        prepare(&db);
        let (queue, receiver) = mpsc::channel(QUEUE);
        for op in queued {
            assert!(queue.try_send(op).is_ok(), "queue has room");
        }
        EmbeddedStore::start(db, &path, queue, receiver).expect("start")
    }

    fn queued_consume(
        name: &str,
        request: Consume,
    ) -> (Op, oneshot::Receiver<Result<Consumed, StoreError>>) {
        let (reply, answer) = oneshot::channel();
        let op = Op::Consume {
            key: encode_key(&key(name)),
            request,
            reply,
        };
        (op, answer)
    }

    #[tokio::test]
    async fn queued_uses_are_applied_in_order_and_committed_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (ops, answers): (Vec<_>, Vec<_>) = (0..64)
            .map(|n| queued_consume("many", new_use(50, n)))
            .unzip();
        let store = open_with_queued(&dir, |_| {}, ops);
        let mut got = Vec::new();
        for answer in answers {
            got.push(answer.await.expect("answered").expect("consumed"));
        }
        let mut want: Vec<Consumed> = (1..=50).map(Consumed::Counted).collect();
        want.extend([Consumed::UsedUp; 14]);
        assert_eq!(got, want);
        assert_eq!(store.commits(), 1, "64 queued uses, one commit");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_uses_share_commits() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(EmbeddedStore::open(&dir.path().join("s.redb")).expect("open"));
        let mut tasks = Vec::new();
        for n in 0..200u8 {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                store.consume(&key("shared"), new_use(1000, n)).await
            }));
        }
        let mut numbers = Vec::new();
        for task in tasks {
            match task.await.expect("task").expect("consume") {
                Consumed::Counted(number) => numbers.push(number),
                other => panic!("unexpected {other:?}"),
            }
        }
        numbers.sort_unstable();
        assert_eq!(numbers, (1..=200).collect::<Vec<_>>());
        // Only one task can be the first in the queue; everyone queued behind a commit in
        // flight shares the next one.
        assert!(store.commits() < 200, "{} commits", store.commits());
    }

    #[tokio::test]
    async fn a_corrupt_record_fails_alone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (first, first_answer) = queued_consume("good", new_use(1, 1));
        let (bad, bad_answer) = queued_consume("bad", new_use(1, 1));
        let (second, second_answer) = queued_consume("good", new_use(1, 2));
        let store = open_with_queued(
            &dir,
            |db| {
                let txn = db.begin_write().expect("write");
                {
                    let mut uses = txn.open_table(USES).expect("table");
                    let garbage: &[u8] = &[7, 1, 2];
                    uses.insert(encode_key(&key("bad")).as_slice(), garbage)
                        .expect("insert");
                }
                txn.commit().expect("commit");
            },
            vec![first, bad, second],
        );
        assert_eq!(
            first_answer.await.expect("answered").expect("consume"),
            Consumed::Counted(1)
        );
        let refused = bad_answer.await.expect("answered").expect_err("corrupt");
        assert_eq!(
            refused.to_string(),
            "store record unreadable: embedded store use record: unknown format 7"
        );
        assert_eq!(
            second_answer.await.expect("answered").expect("consume"),
            Consumed::UsedUp
        );
        assert_eq!(store.commits(), 1);
    }

    #[test]
    fn the_sweep_drops_what_expired_and_keeps_the_rest() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = open_database(&dir.path().join("s.redb")).expect("open");
        let now = 1_900_000_000;
        let txn = db.begin_write().expect("write");
        let mut tables = Tables::open(&txn).expect("tables");
        let record = |keep_until| UseRecord {
            count: 1,
            keep_until,
            ..UseRecord::default()
        };
        // Expired a second ago, expiring now (the token is already refused, but nothing is
        // dropped early), and live.
        for (name, keep_until) in [("gone", now - 1), ("edge", now), ("live", now + 600)] {
            let bytes = encode_record(&record(keep_until));
            tables
                .uses
                .insert(encode_key(&key(name)).as_slice(), bytes.as_slice())
                .expect("insert");
        }
        let entry = |expires| RevocationEntry {
            revocation: crate::store::Revocation::Subject {
                subject: format!("s{expires}"),
            },
            created: now - 1000,
            expires,
        };
        tables.revoke(entry(now - 1)).expect("revoke").expect("ok");
        tables.revoke(entry(now + 1)).expect("revoke").expect("ok");
        let retention = Retention {
            max_entries: 5,
            max_age: 100,
        };
        for (name, at) in [("old", now - 101), ("recent", now - 100)] {
            let use_entry = HistoryEntry {
                at,
                client: None,
                user_agent: None,
                status: 200,
                reason: None,
            };
            tables
                .record(&encode_key(&key(name)), use_entry, retention)
                .expect("record")
                .expect("ok");
        }

        let mut sweep = Sweep::default();
        sweep.run(&mut tables, now).expect("sweep");

        let left = |table: &str| -> usize {
            let table = match table {
                "uses" => &tables.uses,
                "history" => &tables.history,
                _ => &tables.revocations,
            };
            table.len().expect("len") as usize
        };
        assert_eq!(
            (left("uses"), left("history"), left("revocations")),
            (2, 1, 1)
        );
        for name in ["edge", "live"] {
            let kept = tables.uses.get(encode_key(&key(name)).as_slice());
            assert!(kept.expect("get").is_some(), "{name}");
        }
        let recent = tables.history.get(encode_key(&key("recent")).as_slice());
        assert!(recent.expect("get").is_some());
    }
}
