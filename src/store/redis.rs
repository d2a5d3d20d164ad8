//! The Redis store: counted uses, upload reservations, use history and revocations shared by
//! every mediagate host that points at one Redis (standalone, or a Redis Cluster).
//!
//! It owns the key layout, the Lua scripts and the connection handling; it does not own the
//! rules. Each transition of [`super::state`] (`consume`, `reserve`, `settle`) is one Lua
//! script, a line-by-line transcription of the Rust function, so one transition is one atomic
//! step on the server (Redis runs a script without interleaving any other command). `now`
//! comes from the request (the edge's clock), exactly as in `state`; Redis's own clock only
//! expires keys.
//!
//! # Keys
//!
//! With the default prefix `mediagate:`, the token with key id `k1` and token id `t-9` has
//! - `mediagate:{2:k1/t-9}:use`: its [`super::UseRecord`] as JSON (`cjson`), with an
//!   absolute expiry (`SET … PXAT keep_until*1000`), so a counter disappears with its token;
//! - `mediagate:{2:k1/t-9}:hist`: its history, a list of JSON [`HistoryEntry`]s, trimmed to
//!   `max_entries` and expiring `max_age` after its newest entry.
//!
//! The part in braces is the Redis Cluster hash tag, so both keys of one token live in one
//! slot (one node). The key id is length-prefixed, so `a/b` + `c` and `a` + `b/c` are
//! different keys. Revocations live in `mediagate:{revocations}` (a hash: field = canonical
//! JSON of the [`super::Revocation`], value = JSON [`RevocationEntry`]) and
//! `mediagate:{revocations}:version` (a counter), one slot, written by one script.
//!
//! # No automatic re-send
//!
//! A counting script that reached the server and is sent again counts twice, so a command is
//! never re-sent after it may have been written to the socket. What redis-rs 1.8 retries
//! (checked in its sources, `src/aio/connection_manager.rs` and
//! `src/cluster_handling/async_connection/request.rs`):
//! - `ConnectionManager` never re-sends a command: an error is returned to the caller and only
//!   *reconnects* in the background (`reconnect_if_dropped!`); `number_of_retries` counts
//!   connection attempts, not command re-sends. We keep it small so that a request waiting for
//!   a connection fails fast.
//! - The cluster client's `retries` re-sends a request after `MOVED`/`ASK`, `TRYAGAIN`,
//!   `CLUSTERDOWN`, but also after an I/O error or a dropped connection
//!   (`RetryMethod::Reconnect` / `RetryImmediately`), when the script may already have run.
//!   So we set `retries(0)`. Instead this module itself sends a command once more after a
//!   `MOVED` reply only: that reply means the node refused the command without running it,
//!   and the client refreshes its slot map on it. Every other failure is answered
//!   [`StoreError::Unavailable`] (fail closed).
//!
//! Every operation is bounded by `connect_timeout + response_timeout` as a whole (waiting for
//! a reconnect included). A timed-out request is abandoned, not re-sent: its script may still
//! run once, which can only cost a use, never grant one twice.
//!
//! Redis 7.0 or later is needed (`PEXPIREAT … NX|GT`). Replication to replicas is
//! asynchronous: when a primary fails over, the uses it counted in its last moments may not
//! have reached the replica that takes over, so a limited-use token can be used again up to
//! that many times. `WAIT` would narrow the window but not close it; deployments that cannot
//! accept it run without failover (or with the embedded store).

use std::fmt;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ErrorKind, FromRedisValue, RedisError, RedisFuture, Script, ServerErrorKind};

use super::state::{Holder, UseKind, MAX_HOLDERS};
use super::{
    Consume, Consumed, HistoryEntry, Reserve, Reserved, Retention, RevocationEntry, Settled, Store,
    StoreError, StoreFuture, UseKey,
};

/// How to reach Redis. The configuration layer builds it.
#[derive(Clone)]
pub struct RedisSettings {
    /// One URL for a standalone server (`redis://host:port/db`, `rediss://…`,
    /// `redis+unix:///path` or `unix:///path`); for a Cluster, one or more seed nodes.
    pub urls: Vec<String>,
    /// Talk the Cluster protocol (hash slots, redirects) instead of standalone.
    pub cluster: bool,
    /// Prepended to every key; must not contain `{` or `}` (they would change the hash tag).
    pub key_prefix: String,
    /// Longest wait for one connection attempt.
    pub connect_timeout: Duration,
    /// Longest wait for one answer.
    pub response_timeout: Duration,
}

impl RedisSettings {
    /// The key prefix when none is configured.
    pub const DEFAULT_KEY_PREFIX: &'static str = "mediagate:";
}

impl fmt::Debug for RedisSettings {
    /// URLs may carry a password (`redis://:secret@host`), so they print without it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<String> = self.urls.iter().map(|url| redact(url)).collect();
        f.debug_struct("RedisSettings")
            .field("urls", &urls)
            .field("cluster", &self.cluster)
            .field("key_prefix", &self.key_prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .finish()
    }
}

/// `url` with its user info replaced by `***` (or unchanged when it has none or is no URL).
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() || !parsed.username().is_empty() => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) => "<unparsable url>".to_owned(),
    }
}

/// Retries of a failed connection attempt by the standalone manager (so two attempts in all):
/// requests waiting on a dead server are answered within their deadline, and the next request
/// after that starts a fresh reconnect.
const CONNECTION_ATTEMPTS: usize = 1;

/// Times are unix seconds that Lua handles as doubles and Redis as milliseconds; past
/// 9999-12-31 they are refused rather than rounded.
const MAX_TIME: u64 = 253_402_300_799;

/// The Lua helpers every use-record script starts with: read the record (or an empty one),
/// write it back with its absolute expiry. A record another program wrote is reported, never
/// overwritten.
const RECORD_LUA: &str = r#"
local function load(key)
  local raw = redis.pcall('GET', key)
  if type(raw) == 'table' and raw.err then return nil end
  if not raw then return {count = 0, keep_until = 0, holders = {}, pending = {}} end
  local ok, rec = pcall(cjson.decode, raw)
  if not ok or type(rec) ~= 'table' or type(rec.count) ~= 'number'
     or type(rec.keep_until) ~= 'number' or type(rec.holders) ~= 'table'
     or type(rec.pending) ~= 'table' then
    return nil
  end
  for _, h in ipairs(rec.holders) do
    if type(h) ~= 'string' then return nil end
  end
  for _, p in ipairs(rec.pending) do
    if type(p) ~= 'table' or type(p.id) ~= 'string' or type(p.lease_until) ~= 'number' then
      return nil
    end
  end
  return rec
end
-- Redis expires the key on its own clock, the record's times are the sidecars': five minutes
-- of margin, so a Redis clock running ahead cannot forget a use while its token still verifies.
local function save(key, rec)
  redis.call('SET', key, cjson.encode(rec), 'PXAT', string.format('%.0f', (rec.keep_until + 300) * 1000))
end
local function live_pending(rec, now)
  local n = 0
  for _, p in ipairs(rec.pending) do
    if p.lease_until > now then n = n + 1 end
  end
  return n
end
local function taken(rec, now)
  return rec.count + live_pending(rec, now)
end
local function forget_lapsed(rec, now)
  local kept = {}
  for _, p in ipairs(rec.pending) do
    if p.lease_until > now then table.insert(kept, p) end
  end
  rec.pending = kept
end
"#;

/// `state::consume`. KEYS[1] = use record; ARGV = limit, expires, holder (hex), kind
/// (`new`/`continue`/`peek`), now, MAX_HOLDERS.
const CONSUME_LUA: &str = r#"
local rec = load(KEYS[1])
if not rec then return 'corrupt' end
local limit = tonumber(ARGV[1])
local expires = tonumber(ARGV[2])
local holder = ARGV[3]
local kind = ARGV[4]
local now = tonumber(ARGV[5])
local max_holders = tonumber(ARGV[6])
local holds = false
for _, h in ipairs(rec.holders) do
  if h == holder then holds = true end
end
local room = taken(rec, now) < limit
if kind == 'peek' then
  if holds or room then return 'peeked' else return 'used_up' end
end
if kind == 'continue' and holds then return 'continued' end
if not room then return 'used_up' end
forget_lapsed(rec, now)
rec.count = rec.count + 1
if expires > rec.keep_until then rec.keep_until = expires end
local holders = {}
for _, h in ipairs(rec.holders) do
  if h ~= holder then table.insert(holders, h) end
end
if #holders == max_holders then table.remove(holders, 1) end
table.insert(holders, holder)
rec.holders = holders
save(KEYS[1], rec)
return 'counted ' .. string.format('%.0f', rec.count)
"#;

/// `state::reserve`. KEYS[1] = use record; ARGV = limit, expires, reservation id (hex),
/// lease_until, now.
const RESERVE_LUA: &str = r#"
local rec = load(KEYS[1])
if not rec then return 'corrupt' end
local limit = tonumber(ARGV[1])
local expires = tonumber(ARGV[2])
local id = ARGV[3]
local lease_until = tonumber(ARGV[4])
local now = tonumber(ARGV[5])
forget_lapsed(rec, now)
if taken(rec, now) >= limit then return 'full' end
table.insert(rec.pending, {id = id, lease_until = lease_until})
if expires > rec.keep_until then rec.keep_until = expires end
if lease_until > rec.keep_until then rec.keep_until = lease_until end
save(KEYS[1], rec)
return 'granted'
"#;

/// `state::settle`. KEYS[1] = use record; ARGV = reservation id (hex), committed (`1`/`0`),
/// now.
const SETTLE_LUA: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 'unknown' end
local rec = load(KEYS[1])
if not rec then return 'corrupt' end
local id = ARGV[1]
local committed = ARGV[2] == '1'
local now = tonumber(ARGV[3])
local found = false
for _, p in ipairs(rec.pending) do
  if p.id == id and p.lease_until > now then found = true end
end
forget_lapsed(rec, now)
local rest = {}
for _, p in ipairs(rec.pending) do
  if p.id ~= id then table.insert(rest, p) end
end
rec.pending = rest
if committed then
  -- u32 saturating_add: a late commit still counts, up to the counter's width.
  if rec.count < 4294967295 then rec.count = rec.count + 1 end
  save(KEYS[1], rec)
  if found then return 'committed' else return 'unknown' end
end
if found then
  save(KEYS[1], rec)
  return 'released'
end
return 'unknown'
"#;

/// Appends one history entry. KEYS[1] = history list; ARGV = entry JSON, max_entries,
/// expiry in unix milliseconds (empty: none). The list expires with its newest entry (NX sets
/// a first expiry, GT only ever moves it later).
const RECORD_HISTORY_LUA: &str = r#"
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
if ARGV[3] ~= '' then
  redis.call('PEXPIREAT', KEYS[1], ARGV[3], 'NX')
  redis.call('PEXPIREAT', KEYS[1], ARGV[3], 'GT')
end
return 'ok'
"#;

/// Stores a revocation. KEYS[1] = revocation hash, KEYS[2] = version counter; ARGV = field
/// (canonical JSON of the revocation), entry JSON, expires, now. Drops entries that expired,
/// keeps the later expiry of the same revocation, and moves the version when anything changed.
const REVOKE_LUA: &str = r#"
local field = ARGV[1]
local entry = ARGV[2]
local expires = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
local changed = false
local function expiry(raw)
  local ok, e = pcall(cjson.decode, raw)
  if ok and type(e) == 'table' and type(e.expires) == 'number' then return e.expires end
  return nil
end
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local e = expiry(all[i + 1])
  if e and e <= now then
    redis.call('HDEL', KEYS[1], all[i])
    changed = true
  end
end
if expires > now then
  local existing = redis.call('HGET', KEYS[1], field)
  local current = existing and expiry(existing)
  if not (current and current >= expires) then
    redis.call('HSET', KEYS[1], field, entry)
    changed = true
  end
end
if changed then redis.call('INCR', KEYS[2]) end
return 'ok'
"#;

/// The connection: one standalone manager or one cluster connection. Both are cheap handles
/// to a shared multiplexed connection, cloned per request.
#[derive(Clone)]
enum Connection {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, redis::Value> {
        match self {
            Connection::Standalone(connection) => connection.req_packed_command(cmd),
            Connection::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Connection::Standalone(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
            Connection::Cluster(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Standalone(connection) => connection.get_db(),
            Connection::Cluster(connection) => connection.get_db(),
        }
    }
}

/// What one request sends: a script with its keys and arguments, or a plain command.
enum Request<'a> {
    Script(&'a Script, Vec<String>, Vec<String>),
    Command(Cmd),
}

/// The Redis backend of [`Store`]. Cheap to share: every request clones a connection handle.
pub struct RedisStore {
    connection: Connection,
    prefix: String,
    deadline: Duration,
    consume: Script,
    reserve: Script,
    settle: Script,
    record: Script,
    revoke: Script,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.connection {
            Connection::Standalone(_) => "standalone",
            Connection::Cluster(_) => "cluster",
        };
        f.debug_struct("RedisStore")
            .field("mode", &mode)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// Every Redis failure as the store reports it: what failed and why, never a key (keys carry
/// token ids) or a URL (URLs may carry a password).
fn unavailable(what: &str, error: &RedisError) -> StoreError {
    let detail = match error.kind() {
        ErrorKind::Server(kind) => format!("server error {kind:?}"),
        _ if error.is_timeout() => "timed out".to_owned(),
        _ if error.is_connection_refusal() => "connection refused".to_owned(),
        _ if error.is_connection_dropped() => "connection dropped".to_owned(),
        other => format!("{other:?}"),
    };
    StoreError::Unavailable(format!("redis: {what}: {detail}"))
}

fn out_of_range() -> StoreError {
    StoreError::Unavailable("redis: time beyond 9999-12-31 refused".to_owned())
}

fn check_time(seconds: u64) -> Result<u64, StoreError> {
    if seconds > MAX_TIME {
        Err(out_of_range())
    } else {
        Ok(seconds)
    }
}

fn hex(bytes: &[u8; 16]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl RedisStore {
    /// Connects to Redis (standalone or Cluster, see [`RedisSettings`]) and checks that it
    /// answers.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the settings are unusable (no URL, several URLs for a
    /// standalone server, braces in the prefix, a zero timeout, an unparsable URL) or the
    /// server cannot be reached within the timeouts.
    pub async fn connect(settings: &RedisSettings) -> Result<RedisStore, StoreError> {
        let refuse = |why: &str| Err(StoreError::Unavailable(format!("redis: {why}")));
        if settings.urls.is_empty() {
            return refuse("no URL configured");
        }
        if !settings.cluster && settings.urls.len() > 1 {
            return refuse("several URLs need cluster mode");
        }
        if settings.key_prefix.contains(['{', '}']) {
            return refuse("the key prefix must not contain `{` or `}`");
        }
        if settings.connect_timeout.is_zero() || settings.response_timeout.is_zero() {
            return refuse("timeouts must be positive");
        }
        let deadline = settings.connect_timeout + settings.response_timeout;
        let connecting = async {
            if settings.cluster {
                let client = ClusterClientBuilder::new(settings.urls.iter().map(String::as_str))
                    // No re-send after an I/O error (see the module doc); MOVED is followed
                    // by `RedisStore::send`.
                    .retries(0)
                    .connection_timeout(settings.connect_timeout)
                    .response_timeout(settings.response_timeout)
                    .build()
                    .map_err(|error| unavailable("cluster settings", &error))?;
                let connection = client
                    .get_async_connection()
                    .await
                    .map_err(|error| unavailable("connect to cluster", &error))?;
                Ok(Connection::Cluster(connection))
            } else {
                let client = redis::Client::open(settings.urls[0].as_str())
                    .map_err(|error| unavailable("settings", &error))?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(settings.connect_timeout))
                    .set_response_timeout(Some(settings.response_timeout))
                    .set_number_of_retries(CONNECTION_ATTEMPTS);
                let manager = client
                    .get_connection_manager_with_config(config)
                    .await
                    .map_err(|error| unavailable("connect", &error))?;
                Ok(Connection::Standalone(manager))
            }
        };
        let connection = tokio::time::timeout(deadline, connecting)
            .await
            .map_err(|_| StoreError::Unavailable("redis: connect timed out".to_owned()))??;
        let store = RedisStore {
            connection,
            prefix: settings.key_prefix.clone(),
            deadline,
            consume: Script::new(&format!("{RECORD_LUA}{CONSUME_LUA}")),
            reserve: Script::new(&format!("{RECORD_LUA}{RESERVE_LUA}")),
            settle: Script::new(&format!("{RECORD_LUA}{SETTLE_LUA}")),
            record: Script::new(RECORD_HISTORY_LUA),
            revoke: Script::new(REVOKE_LUA),
        };
        store.ping_now().await?;
        Ok(store)
    }

    /// The key of a token's use record.
    pub fn use_key(&self, key: &UseKey) -> String {
        format!("{}:use", token_tag(&self.prefix, key))
    }

    /// The key of a token's history list.
    pub fn history_key(&self, key: &UseKey) -> String {
        format!("{}:hist", token_tag(&self.prefix, key))
    }

    fn revocations_key(&self) -> String {
        format!("{}{{revocations}}", self.prefix)
    }

    fn version_key(&self) -> String {
        format!("{}{{revocations}}:version", self.prefix)
    }

    /// Sends `request` once (once more after a `MOVED` reply, which means it did not run),
    /// within the operation deadline.
    async fn send<T: FromRedisValue>(
        &self,
        what: &'static str,
        request: Request<'_>,
    ) -> Result<T, StoreError> {
        let attempt = async {
            let mut connection = self.connection.clone();
            let mut moved = false;
            loop {
                let result = match &request {
                    Request::Script(script, keys, args) => {
                        let mut invocation = script.prepare_invoke();
                        for key in keys {
                            invocation.key(key);
                        }
                        for arg in args {
                            invocation.arg(arg);
                        }
                        invocation.invoke_async::<T>(&mut connection).await
                    }
                    Request::Command(cmd) => cmd.query_async::<T>(&mut connection).await,
                };
                match result {
                    Err(error)
                        if !moved && error.kind() == ErrorKind::Server(ServerErrorKind::Moved) =>
                    {
                        moved = true;
                    }
                    other => return other.map_err(|error| unavailable(what, &error)),
                }
            }
        };
        match tokio::time::timeout(self.deadline, attempt).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable(format!("redis: {what}: timed out"))),
        }
    }

    async fn ping_now(&self) -> Result<(), StoreError> {
        let answer: String = self
            .send("ping", Request::Command(redis::cmd("PING")))
            .await?;
        if answer == "PONG" {
            Ok(())
        } else {
            Err(StoreError::Unavailable(
                "redis: ping: unexpected answer".to_owned(),
            ))
        }
    }

    async fn consume_now(&self, key: &UseKey, request: Consume) -> Result<Consumed, StoreError> {
        let kind = match request.kind {
            UseKind::New => "new",
            UseKind::Continue => "continue",
            UseKind::Peek => "peek",
        };
        let Holder(holder) = request.holder;
        let args = vec![
            request.limit.to_string(),
            check_time(request.expires)?.to_string(),
            hex(&holder),
            kind.to_owned(),
            check_time(request.now)?.to_string(),
            MAX_HOLDERS.to_string(),
        ];
        let reply: String = self
            .send(
                "consume",
                Request::Script(&self.consume, vec![self.use_key(key)], args),
            )
            .await?;
        match reply.as_str() {
            "continued" => Ok(Consumed::Continued),
            "peeked" => Ok(Consumed::Peeked),
            "used_up" => Ok(Consumed::UsedUp),
            "corrupt" => Err(corrupt_record()),
            other => other
                .strip_prefix("counted ")
                .and_then(|number| number.parse().ok())
                .map(Consumed::Counted)
                .ok_or_else(|| unexpected("consume")),
        }
    }

    async fn reserve_now(&self, key: &UseKey, request: Reserve) -> Result<Reserved, StoreError> {
        let args = vec![
            request.limit.to_string(),
            check_time(request.expires)?.to_string(),
            hex(&request.reservation),
            check_time(request.lease_until)?.to_string(),
            check_time(request.now)?.to_string(),
        ];
        let reply: String = self
            .send(
                "reserve",
                Request::Script(&self.reserve, vec![self.use_key(key)], args),
            )
            .await?;
        match reply.as_str() {
            "granted" => Ok(Reserved::Granted),
            "full" => Ok(Reserved::Full),
            "corrupt" => Err(corrupt_record()),
            _ => Err(unexpected("reserve")),
        }
    }

    async fn settle_now(
        &self,
        key: &UseKey,
        reservation: [u8; 16],
        committed: bool,
        now: u64,
    ) -> Result<Settled, StoreError> {
        let args = vec![
            hex(&reservation),
            if committed { "1" } else { "0" }.to_owned(),
            check_time(now)?.to_string(),
        ];
        let reply: String = self
            .send(
                "settle",
                Request::Script(&self.settle, vec![self.use_key(key)], args),
            )
            .await?;
        match reply.as_str() {
            "committed" => Ok(Settled::Committed),
            "released" => Ok(Settled::Released),
            "unknown" => Ok(Settled::Unknown),
            "corrupt" => Err(corrupt_record()),
            _ => Err(unexpected("settle")),
        }
    }

    async fn record_now(
        &self,
        key: &UseKey,
        entry: HistoryEntry,
        retention: Retention,
    ) -> Result<(), StoreError> {
        if retention.max_entries == 0 {
            // Nothing is kept; `LTRIM -0 -1` would keep everything instead.
            return Ok(());
        }
        let at = check_time(entry.at)?;
        // An entry exactly `max_age` old is still kept, so it goes one second later. Past the
        // representable range the list simply does not expire by age (it is still trimmed by
        // count, and reads filter by age).
        let expiry = at
            .checked_add(retention.max_age)
            .and_then(|seconds| seconds.checked_add(1))
            .filter(|seconds| *seconds <= MAX_TIME)
            .map(|seconds| (seconds * 1000).to_string())
            .unwrap_or_default();
        let json = serde_json::to_string(&entry)
            .map_err(|error| StoreError::Unavailable(format!("redis: history entry: {error}")))?;
        let args = vec![json, retention.max_entries.to_string(), expiry];
        let _: String = self
            .send(
                "record history",
                Request::Script(&self.record, vec![self.history_key(key)], args),
            )
            .await?;
        Ok(())
    }

    async fn history_now(
        &self,
        key: &UseKey,
        retention: Retention,
        now: u64,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let mut lrange = redis::cmd("LRANGE");
        lrange.arg(self.history_key(key)).arg(0).arg(-1);
        let raw: Vec<String> = self.send("history", Request::Command(lrange)).await?;
        let mut entries = raw
            .iter()
            .map(|json| serde_json::from_str::<HistoryEntry>(json))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| StoreError::Corrupt("redis: unreadable history entry".to_owned()))?;
        entries.retain(|entry| now.saturating_sub(entry.at) <= retention.max_age);
        let excess = entries.len().saturating_sub(retention.max_entries as usize);
        entries.drain(..excess);
        Ok(entries)
    }

    async fn revoke_now(&self, entry: RevocationEntry) -> Result<(), StoreError> {
        let field = serde_json::to_string(&entry.revocation)
            .map_err(|error| StoreError::Unavailable(format!("redis: revocation: {error}")))?;
        let value = serde_json::to_string(&entry)
            .map_err(|error| StoreError::Unavailable(format!("redis: revocation: {error}")))?;
        let args = vec![
            field,
            value,
            // A key cut-off never expires (`u64::MAX`): Lua's doubles and Redis's
            // milliseconds stop at 9999-12-31, which is "never" as well. The JSON value keeps
            // the exact expiry.
            check_time(entry.expires.min(MAX_TIME))?.to_string(),
            check_time(entry.created)?.to_string(),
        ];
        let keys = vec![self.revocations_key(), self.version_key()];
        let _: String = self
            .send("revoke", Request::Script(&self.revoke, keys, args))
            .await?;
        Ok(())
    }

    async fn revocations_now(&self, now: u64) -> Result<Vec<RevocationEntry>, StoreError> {
        let mut hvals = redis::cmd("HVALS");
        hvals.arg(self.revocations_key());
        let raw: Vec<String> = self.send("revocations", Request::Command(hvals)).await?;
        let mut entries = raw
            .iter()
            .map(|json| serde_json::from_str::<RevocationEntry>(json))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| StoreError::Corrupt("redis: unreadable revocation".to_owned()))?;
        // Like a token (`now >= expires` is expired), a revocation ends at its expiry.
        entries.retain(|entry| entry.expires > now);
        Ok(entries)
    }

    async fn revocations_version_now(&self) -> Result<u64, StoreError> {
        let mut get = redis::cmd("GET");
        get.arg(self.version_key());
        let version: Option<u64> = self
            .send("revocations version", Request::Command(get))
            .await?;
        Ok(version.unwrap_or(0))
    }
}

/// `{prefix}{<len(kid)>:<kid>/<token id>}`: the hash tag holds the whole identity, so a
/// token's keys share a slot while different tokens spread over the cluster. A `}` inside
/// an id ends the tag early, which only makes more tokens share a slot; the key as a whole
/// stays distinct because the key id's length is spelled out.
fn token_tag(prefix: &str, key: &UseKey) -> String {
    format!("{prefix}{{{}:{}/{}}}", key.kid.len(), key.kid, key.token_id)
}

fn corrupt_record() -> StoreError {
    StoreError::Corrupt("redis: unreadable use record".to_owned())
}

fn unexpected(what: &str) -> StoreError {
    StoreError::Unavailable(format!("redis: {what}: unexpected script answer"))
}

impl Store for RedisStore {
    fn consume<'a>(&'a self, key: &'a UseKey, request: Consume) -> StoreFuture<'a, Consumed> {
        Box::pin(self.consume_now(key, request))
    }

    fn reserve<'a>(&'a self, key: &'a UseKey, request: Reserve) -> StoreFuture<'a, Reserved> {
        Box::pin(self.reserve_now(key, request))
    }

    fn settle<'a>(
        &'a self,
        key: &'a UseKey,
        reservation: [u8; 16],
        committed: bool,
        now: u64,
    ) -> StoreFuture<'a, Settled> {
        Box::pin(self.settle_now(key, reservation, committed, now))
    }

    fn record<'a>(
        &'a self,
        key: &'a UseKey,
        entry: HistoryEntry,
        retention: Retention,
    ) -> StoreFuture<'a, ()> {
        Box::pin(self.record_now(key, entry, retention))
    }

    fn history<'a>(
        &'a self,
        key: &'a UseKey,
        retention: Retention,
        now: u64,
    ) -> StoreFuture<'a, Vec<HistoryEntry>> {
        Box::pin(self.history_now(key, retention, now))
    }

    fn revoke(&self, entry: RevocationEntry) -> StoreFuture<'_, ()> {
        Box::pin(self.revoke_now(entry))
    }

    fn revocations(&self, now: u64) -> StoreFuture<'_, Vec<RevocationEntry>> {
        Box::pin(self.revocations_now(now))
    }

    fn revocations_version(&self) -> StoreFuture<'_, u64> {
        Box::pin(self.revocations_version_now())
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(self.ping_now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kid: &str, token_id: &str) -> UseKey {
        UseKey {
            kid: kid.into(),
            token_id: token_id.into(),
        }
    }

    #[test]
    fn a_tokens_keys_share_one_hash_tag_holding_its_whole_identity() {
        let tag = token_tag("mediagate:", &key("k1", "t-9"));
        assert_eq!(tag, "mediagate:{2:k1/t-9}");
    }

    #[test]
    fn a_slash_in_the_key_id_cannot_make_two_tokens_share_a_key() {
        let left = token_tag("p:", &key("a/b", "c"));
        let right = token_tag("p:", &key("a", "b/c"));
        assert_eq!(
            (left.as_str(), right.as_str()),
            ("p:{3:a/b/c}", "p:{1:a/b/c}")
        );
    }

    #[test]
    fn passwords_in_urls_never_print() {
        let settings = RedisSettings {
            urls: vec!["redis://user:hunter2@cache:6379/0".into()],
            cluster: false,
            key_prefix: RedisSettings::DEFAULT_KEY_PREFIX.into(),
            connect_timeout: Duration::from_millis(500),
            response_timeout: Duration::from_millis(500),
        };
        let printed = format!("{settings:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!printed.contains("user"), "{printed}");
        assert!(printed.contains("redis://:***@cache:6379/0"), "{printed}");
    }
}
