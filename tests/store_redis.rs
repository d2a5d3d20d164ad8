//! The Redis store against real `redis-server`s: standalone on a Unix socket and a three-node
//! Cluster on free loopback ports, each started by the test in its own temporary directory and
//! killed on drop. `redis-server` is required: a missing one fails these tests (run
//! `bash scripts/test.sh`, which installs it).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mediagate::store::redis::{RedisSettings, RedisStore};
use mediagate::store::state::UseKind;
use mediagate::store::{
    Consume, Consumed, HistoryEntry, Holder, Reserve, Retention, Revocation, RevocationEntry,
    Store, StoreError, UseKey,
};

use crate::store::{conformance, double_spend};
use crate::support::{free_port, wait_for_socket, Process, TempDir};

const TIMEOUT: Duration = Duration::from_millis(500);

/// The real clock: Redis expires keys on its own clock, so the scenarios' `now` must agree.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn key(token_id: &str) -> UseKey {
    UseKey {
        kid: "k1".into(),
        token_id: token_id.into(),
    }
}

fn new_use(limit: u32, now: u64) -> Consume {
    Consume {
        limit,
        expires: now + 600,
        holder: Holder([7; 16]),
        kind: UseKind::New,
        now,
    }
}

fn settings(urls: Vec<String>, cluster: bool) -> RedisSettings {
    RedisSettings {
        urls,
        cluster,
        key_prefix: RedisSettings::DEFAULT_KEY_PREFIX.into(),
        connect_timeout: TIMEOUT,
        response_timeout: TIMEOUT,
    }
}

/// Starts `redis-server` with `args`, its log in `<dir>/<name>.log`.
fn spawn_redis(dir: &TempDir, name: &str, args: &[&str]) -> Process {
    let log = dir.path().join(format!("{name}.log"));
    let spawned = Command::new("redis-server")
        // Defaults first: a later argument overrides an earlier one.
        .args(["--save", "", "--appendonly", "no", "--logfile", ""])
        .args(args)
        .arg("--dir")
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).expect("log file"))
        .stderr(Stdio::null())
        .spawn();
    match spawned {
        Ok(child) => Process { child, log },
        Err(error) => panic!(
            "cannot start redis-server ({error}): these tests need a real Redis; run `bash scripts/test.sh`, which installs it"
        ),
    }
}

/// Runs `redis-cli` with `target` (`-s socket` or `-p port`) and `args`; its stdout, trimmed.
fn redis_cli(target: &[&str], args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(target)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| {
            panic!("cannot run redis-cli ({error}); run `bash scripts/test.sh`, which installs it")
        });
    assert!(output.status.success(), "redis-cli {args:?}: {output:?}");
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// Polls `condition` every 20 ms until it holds, or panics with `what` after 15 s.
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if condition() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

/// One standalone server on `<dir>/redis.sock` (no TCP).
pub struct Standalone {
    dir: TempDir,
    pub socket: PathBuf,
    process: Option<Process>,
    extra: Vec<String>,
}

impl Standalone {
    pub fn start() -> Standalone {
        Standalone::start_with(&[])
    }

    /// A server with extra `redis-server` arguments (e.g. append-only persistence).
    pub fn start_with(extra: &[&str]) -> Standalone {
        let dir = TempDir::new("redis");
        let socket = dir.path().join("redis.sock");
        let mut standalone = Standalone {
            dir,
            socket,
            process: None,
            extra: extra.iter().map(|arg| (*arg).to_owned()).collect(),
        };
        standalone.run();
        standalone
    }

    /// Starts the server (again) on the same socket.
    pub fn run(&mut self) {
        let socket = self.socket.to_str().expect("utf-8 path").to_owned();
        let mut args = vec![
            "--port",
            "0",
            "--unixsocket",
            &socket,
            "--unixsocketperm",
            "700",
        ];
        args.extend(self.extra.iter().map(String::as_str));
        let mut process = spawn_redis(&self.dir, "redis", &args);
        wait_for_socket(&self.socket, &mut process, "redis-server");
        self.process = Some(process);
    }

    /// Kills the server outright (no graceful shutdown) and waits until it is gone.
    pub fn kill(&mut self) {
        let mut process = self.process.take().expect("running");
        process.child.kill().expect("kill redis-server");
        process.child.wait().expect("wait for redis-server");
    }

    fn settings(&self) -> RedisSettings {
        settings(
            vec![format!("redis+unix://{}", self.socket.display())],
            false,
        )
    }

    fn cli(&self, args: &[&str]) -> String {
        redis_cli(&["-s", self.socket.to_str().expect("utf-8 path")], args)
    }
}

/// Three primaries on free loopback ports, slots spread by `redis-cli --cluster create`.
struct Cluster {
    _dir: TempDir,
    ports: Vec<u16>,
    _nodes: Vec<Process>,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = TempDir::new("redis-cluster");
        let mut ports = Vec::new();
        let mut nodes = Vec::new();
        for n in 0..3 {
            let port = free_port();
            let bus = free_port();
            let config = dir.path().join(format!("nodes-{n}.conf"));
            let (port_text, bus_text) = (port.to_string(), bus.to_string());
            let mut process = spawn_redis(
                &dir,
                &format!("node-{n}"),
                &[
                    "--port",
                    &port_text,
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &bus_text,
                    "--cluster-config-file",
                    config.to_str().expect("utf-8 path"),
                ],
            );
            wait_until(&format!("node {n} on port {port}"), || {
                if let Ok(Some(status)) = process.child.try_wait() {
                    panic!("redis-server exited with {status}:\n{}", process.log_text());
                }
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            });
            ports.push(port);
            nodes.push(process);
        }
        let addresses: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let mut create = vec!["--cluster", "create"];
        create.extend(addresses.iter().map(String::as_str));
        create.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        redis_cli(&[], &create);
        for port in &ports {
            wait_until(&format!("cluster_state:ok on port {port}"), || {
                Cluster::cli_at(*port, &["CLUSTER", "INFO"]).contains("cluster_state:ok")
            });
        }
        Cluster {
            _dir: dir,
            ports,
            _nodes: nodes,
        }
    }

    fn settings(&self) -> RedisSettings {
        let urls = self
            .ports
            .iter()
            .map(|port| format!("redis://127.0.0.1:{port}"))
            .collect();
        settings(urls, true)
    }

    fn cli_at(port: u16, args: &[&str]) -> String {
        redis_cli(&["-p", &port.to_string()], args)
    }

    /// The node (port) that holds `key`, by asking each node directly (no redirects).
    fn holder_of(&self, key: &str) -> Vec<u16> {
        self.ports
            .iter()
            .copied()
            .filter(|port| {
                Cluster::cli_at(*port, &["--scan"])
                    .lines()
                    .any(|k| k == key)
            })
            .collect()
    }
}

async fn connect(settings: &RedisSettings) -> Arc<dyn Store> {
    let store = RedisStore::connect(settings)
        .await
        .expect("connect to redis");
    Arc::new(store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn standalone_passes_the_conformance_table() {
    let server = Standalone::start();
    let store = connect(&server.settings()).await;
    conformance(store.as_ref(), now()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn standalone_never_counts_more_uses_than_the_limit_under_parallel_requests() {
    let server = Standalone::start();
    let store = connect(&server.settings()).await;
    let now = now();
    double_spend(Arc::clone(&store), "single", 1, 20, now).await;
    double_spend(Arc::clone(&store), "five", 5, 50, now).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_passes_the_conformance_table() {
    let cluster = Cluster::start();
    let store = connect(&cluster.settings()).await;
    conformance(store.as_ref(), now()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_never_counts_more_uses_than_the_limit_under_parallel_requests() {
    let cluster = Cluster::start();
    let store = connect(&cluster.settings()).await;
    let now = now();
    double_spend(Arc::clone(&store), "single", 1, 20, now).await;
    double_spend(Arc::clone(&store), "five", 5, 50, now).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_spreads_tokens_over_the_nodes_and_keeps_each_tokens_keys_together() {
    let cluster = Cluster::start();
    let store = RedisStore::connect(&cluster.settings())
        .await
        .expect("connect");
    let now = now();
    let retention = Retention {
        max_entries: 10,
        max_age: 600,
    };
    let mut nodes_used = Vec::new();
    for n in 0..10 {
        let token = key(&format!("t{n}"));
        let counted = store.consume(&token, new_use(1, now)).await;
        assert_eq!(counted.expect("consume"), Consumed::Counted(1));
        let entry = HistoryEntry {
            at: now,
            client: None,
            user_agent: None,
            status: 200,
            reason: None,
        };
        store
            .record(&token, entry, retention)
            .await
            .expect("record");
        let (use_key, history_key) = (store.use_key(&token), store.history_key(&token));
        let use_node = cluster.holder_of(&use_key);
        assert_eq!(use_node.len(), 1, "{use_key} on exactly one node");
        assert_eq!(cluster.holder_of(&history_key), use_node, "{history_key}");
        let slot = |k: &str| Cluster::cli_at(cluster.ports[0], &["CLUSTER", "KEYSLOT", k]);
        assert_eq!(slot(&use_key), slot(&history_key));
        nodes_used.push(use_node[0]);
    }
    nodes_used.sort_unstable();
    nodes_used.dedup();
    assert_eq!(nodes_used.len(), 3, "ten tokens land on all three nodes");
}

/// A slot that moved to another node answers `MOVED`: the command did not run there, so the
/// store sends it once more (to the new owner) and counts exactly one use.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_follows_a_moved_slot_and_counts_once() {
    let cluster = Cluster::start();
    let store = RedisStore::connect(&cluster.settings())
        .await
        .expect("connect");
    let now = now();
    let token = key("moving");
    let first = store.consume(&token, new_use(3, now)).await;
    assert_eq!(first.expect("consume"), Consumed::Counted(1));

    let use_key = store.use_key(&token);
    let source = cluster.holder_of(&use_key)[0];
    let target = *cluster.ports.iter().find(|p| **p != source).expect("node");
    let id = |port: u16| Cluster::cli_at(port, &["CLUSTER", "MYID"]);
    let (source_id, target_id) = (id(source), id(target));
    let slot = Cluster::cli_at(source, &["CLUSTER", "KEYSLOT", &use_key]);
    Cluster::cli_at(
        target,
        &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &source_id],
    );
    Cluster::cli_at(
        source,
        &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &target_id],
    );
    let target_port = target.to_string();
    let moved = Cluster::cli_at(
        source,
        &[
            "MIGRATE",
            "127.0.0.1",
            &target_port,
            "",
            "0",
            "5000",
            "KEYS",
            &use_key,
        ],
    );
    assert_eq!(moved, "OK");
    // The new owner first, then the old one (which from then on answers MOVED), then the
    // third node, as the Redis Cluster resharding procedure prescribes.
    let third = *cluster
        .ports
        .iter()
        .find(|p| **p != source && **p != target)
        .expect("node");
    for port in [target, source, third] {
        let set = Cluster::cli_at(port, &["CLUSTER", "SETSLOT", &slot, "NODE", &target_id]);
        assert_eq!(set, "OK");
    }

    let second = store.consume(&token, new_use(3, now)).await;
    assert_eq!(
        second.expect("consume after the move"),
        Consumed::Counted(2)
    );
    assert_eq!(cluster.holder_of(&use_key), [target]);
    let third = store.consume(&token, new_use(3, now)).await;
    assert_eq!(third.expect("consume"), Consumed::Counted(3));
}

/// With the server gone every operation fails closed within its deadline (connect plus
/// response timeout, 1 s here), never naming the token; once the server is back on the same
/// socket the store serves again without being rebuilt.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_server_answers_unavailable_in_time_and_the_store_recovers() {
    let mut server = Standalone::start();
    let store = connect(&server.settings()).await;
    let now = now();
    let token = key("secret-token-id-1234");
    let counted = store.consume(&token, new_use(5, now)).await;
    assert_eq!(counted.expect("consume"), Consumed::Counted(1));

    server.kill();
    let retention = Retention {
        max_entries: 5,
        max_age: 60,
    };
    let revocation = RevocationEntry {
        revocation: Revocation::Subject {
            subject: "s".into(),
        },
        created: now,
        expires: now + 60,
    };
    let reserve = Reserve {
        limit: 5,
        expires: now + 600,
        reservation: [1; 16],
        lease_until: now + 60,
        now,
    };
    let entry = HistoryEntry {
        at: now,
        client: None,
        user_agent: None,
        status: 200,
        reason: None,
    };
    let bound = Duration::from_secs(5);
    macro_rules! unavailable {
        ($name:literal, $call:expr) => {{
            let started = Instant::now();
            let result = $call.await;
            let took = started.elapsed();
            assert!(took < bound, "{} took {took:?}", $name);
            match result {
                Err(StoreError::Unavailable(text)) => {
                    assert!(!text.contains("secret-token-id"), "{}: {text}", $name);
                    assert!(text.starts_with("redis: "), "{}: {text}", $name);
                }
                other => panic!("{}: expected Unavailable, got {other:?}", $name),
            }
        }};
    }
    unavailable!("consume", store.consume(&token, new_use(5, now)));
    unavailable!("reserve", store.reserve(&token, reserve));
    unavailable!("settle", store.settle(&token, [1; 16], true, now));
    unavailable!("record", store.record(&token, entry.clone(), retention));
    unavailable!("history", store.history(&token, retention, now));
    unavailable!("revoke", store.revoke(revocation.clone()));
    unavailable!("revocations", store.revocations(now));
    unavailable!("revocations_version", store.revocations_version());
    unavailable!("ping", store.ping());

    server.run();
    let deadline = Instant::now() + Duration::from_secs(15);
    while store.ping().await.is_err() {
        assert!(Instant::now() < deadline, "the store did not reconnect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The restarted server kept nothing (no persistence): counting starts over.
    let again = store.consume(&token, new_use(5, now)).await;
    assert_eq!(again.expect("consume after restart"), Consumed::Counted(1));
    let revoked = store.revoke(revocation).await;
    revoked.expect("revoke after restart");
    assert_eq!(store.revocations_version().await.expect("version"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_record_another_program_wrote_is_reported_and_left_alone() {
    let server = Standalone::start();
    let store = RedisStore::connect(&server.settings())
        .await
        .expect("connect");
    let token = key("foreign");
    let use_key = store.use_key(&token);
    assert_eq!(server.cli(&["SET", &use_key, "{\"count\":\"many\"}"]), "OK");
    let answer = store.consume(&token, new_use(1, now())).await;
    assert!(
        matches!(answer, Err(StoreError::Corrupt(_))),
        "expected Corrupt, got {answer:?}"
    );
    assert_eq!(server.cli(&["GET", &use_key]), "{\"count\":\"many\"}");
}

#[tokio::test]
async fn settings_that_cannot_work_are_refused_before_connecting() {
    let mut several = settings(vec!["redis://a".into(), "redis://b".into()], false);
    let refused = RedisStore::connect(&several).await.map(|_| ());
    assert_eq!(
        refused.map_err(|e| e.to_string()),
        Err("store unavailable: redis: several URLs need cluster mode".to_owned())
    );
    several.urls.truncate(1);
    several.key_prefix = "app{x}:".into();
    let refused = RedisStore::connect(&several).await.map(|_| ());
    assert_eq!(
        refused.map_err(|e| e.to_string()),
        Err("store unavailable: redis: the key prefix must not contain `{` or `}`".to_owned())
    );
}
