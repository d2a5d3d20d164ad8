//! The embedded (redb) store: the conformance table and double spends from `store`, the
//! durability promise (answered means on disk, even if the process is killed right after),
//! the single-process lock, and the file's permissions.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use mediagate::clock;
use mediagate::store::embedded::EmbeddedStore;
use mediagate::store::state::UseKind;
use mediagate::store::{Consume, Consumed, Holder, Store, StoreError, UseKey};

use crate::store::{conformance, double_spend};
use crate::support::TempDir;

/// Where the child process of [`a_used_token_stays_used_after_kill_9`] opens its store. Not
/// MEDIAGATE_…: every such variable must name a setting.
const CHILD_STORE: &str = "STORE_EMBEDDED_CHILD_PATH";

fn once() -> UseKey {
    UseKey {
        kid: "k1".into(),
        token_id: "once".into(),
    }
}

fn single_use(now: u64) -> Consume {
    Consume {
        limit: 1,
        expires: now + 600,
        holder: Holder([7; 16]),
        kind: UseKind::New,
        now,
    }
}

#[tokio::test]
async fn embedded_store_passes_the_conformance_table() {
    let dir = TempDir::new("store-conformance");
    let store = EmbeddedStore::open(&dir.path().join("store.redb")).expect("open");
    conformance(&store, clock::now()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_allows_exactly_the_limit_under_parallel_uses() {
    let dir = TempDir::new("store-double-spend");
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&dir.path().join("store.redb")).expect("open"));
    let now = clock::now();
    double_spend(Arc::clone(&store), "single", 1, 20, now).await;
    double_spend(store, "five", 5, 50, now).await;
}

/// Kills its child on drop, so a failing assertion leaves no process behind.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_used_token_stays_used_after_kill_9() {
    let dir = TempDir::new("store-kill");
    let path = dir.path().join("store.redb");
    let child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "store_embedded::child_consumes_then_waits",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_STORE, &path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the child");
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().expect("stdout");
    // libtest prints the test's name on the same line, before the answer. The child prints
    // its answer or fails (and exits), so this never waits for a line that cannot come.
    let answer = BufReader::new(stdout)
        .lines()
        .map(|line| line.expect("read the child"))
        .find_map(|line| line.split_once("answer: ").map(|(_, a)| a.to_owned()));
    assert_eq!(answer.as_deref(), Some("Counted(1)"));

    // SIGKILL right after the answer: no destructor, no clean close of the file.
    child.0.kill().expect("kill");
    child.0.wait().expect("wait");

    let store = EmbeddedStore::open(&path).expect("reopen after the kill");
    let again = store.consume(&once(), single_use(clock::now())).await;
    assert_eq!(again.expect("consume"), Consumed::UsedUp);
}

/// The child half of [`a_used_token_stays_used_after_kill_9`]: uses the token, reports the
/// answer, then waits to be killed (or for its parent to go away).
#[tokio::test]
#[ignore = "run by a_used_token_stays_used_after_kill_9 in a child process"]
async fn child_consumes_then_waits() {
    let path = std::env::var_os(CHILD_STORE).expect("STORE_EMBEDDED_CHILD_PATH");
    let store = EmbeddedStore::open(Path::new(&path)).expect("open");
    let answer = store.consume(&once(), single_use(clock::now())).await;
    println!("answer: {:?}", answer.expect("consume"));
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

#[test]
fn a_second_open_of_the_same_file_is_refused_by_name() {
    let dir = TempDir::new("store-lock");
    let path = dir.path().join("store.redb");
    let first = EmbeddedStore::open(&path).expect("open");
    let second = EmbeddedStore::open(&path).expect_err("already open");
    assert!(matches!(second, StoreError::Unavailable(_)), "{second:?}");
    assert_eq!(
        second.to_string(),
        format!(
            "store unavailable: embedded store {} is already open in another process (only \
             one process may open it: run CLI commands against the running server instead)",
            path.display()
        )
    );
    drop(first);
    EmbeddedStore::open(&path).expect("free again once the first is dropped");
}

#[test]
fn a_new_store_is_private_to_its_owner() {
    let dir = TempDir::new("store-mode");
    let path = dir.path().join("state/mediagate/store.redb");
    let store = EmbeddedStore::open(&path).expect("open");
    let mode = |path: &Path| std::fs::metadata(path).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir.path().join("state/mediagate")), 0o700);
    assert_eq!(mode(&dir.path().join("state")), 0o700);
    assert_eq!(store.path(), path);
}
