//! Token verification micro-benchmark.
//!
//! Measures, in one run, the cost of verifying a token against the cost of the one
//! HMAC-SHA256 it needs, plus path canonicalisation and the whole media-domain decision.
//!
//! Before handing over to criterion it prints a summary table measured here:
//!
//! - allocations per call (a counting global allocator, over 10,000 calls per case), and
//! - ns/op from plain `Instant` loops, with every case timed in each of several interleaved
//!   rounds and the median taken, so the verify / bare-HMAC ratio holds on a noisy machine
//!   (criterion's own figures exist only in its output).
//!
//! Then criterion runs the same cases (group `verify`). `cargo bench --bench verify`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::Criterion;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use mediagate::config::Config;
use mediagate::gate::{self, MediaRequest, Outcome};
use mediagate::keys::KeyRing;
use mediagate::mint::{self, MintRequest};
use mediagate::path;
use mediagate::store::revoked::Revoked;
use mediagate::token::{self, mac, Limits, Purpose, Request, TokenBuf};

// ---------------------------------------------------------------------------------------------
// Allocation counting

/// Wraps the system allocator and counts every allocation (and reallocation).
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to `System`, which upholds the contract.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

// ---------------------------------------------------------------------------------------------
// Fixture

/// 32 fixed secret bytes (base64url below); fixed so every run measures the same thing.
const SECRET: [u8; 32] = [
    0x3b, 0x91, 0x0c, 0x57, 0xe2, 0x48, 0xaf, 0x16, 0x7d, 0xc0, 0x25, 0x9e, 0x63, 0xf4, 0x0a, 0xb8,
    0x41, 0xd7, 0x2c, 0x85, 0x1e, 0x6a, 0xf9, 0x33, 0x90, 0x5d, 0xc6, 0x07, 0x7b, 0xe8, 0x24, 0xaa,
];
/// Any fixed unix time; the tokens are minted relative to it.
const NOW: u64 = 1_800_000_000;
const HOST: &str = "media.localhost";
const EXACT_PATH: &str = "/media/videos/2026/lecture-07-intro.mp4";
const PREFIX: &str = "/media/videos/2026/";
const PLAIN_PATH: &str = EXACT_PATH;
const ENCODED_PATH: &str = "/media/videos/2026/caf%C3%A9%20lecture%20%2307.mp4";

struct Fixture {
    config: Config,
    keyring: KeyRing,
    limits: Limits,
    exact_token: String,
    prefix_token: String,
    /// The exact bytes `verify` MACs for `exact_token` on `EXACT_PATH`.
    mac_input: Vec<u8>,
    /// `$request_uri` for the gate: `EXACT_PATH?token=<exact_token>`.
    uri: String,
    client_ip: IpAddr,
    /// No revocations in force: the common case, which costs one length check.
    revoked: Revoked,
}

impl Fixture {
    fn new() -> Fixture {
        let config = load_config();
        let exact = mint::mint(
            &config,
            &MintRequest {
                path: EXACT_PATH.to_owned(),
                subject: Some("user-48213".to_owned()),
                ..MintRequest::default()
            },
            NOW,
        )
        .expect("mint exact-path token");
        let prefix = mint::mint(
            &config,
            &MintRequest {
                path: PREFIX.to_owned(),
                prefix: true,
                subject: Some("user-48213".to_owned()),
                ..MintRequest::default()
            },
            NOW,
        )
        .expect("mint prefix token");
        let mut buf = TokenBuf::new();
        let decoded = token::decode(&exact.token, &mut buf).expect("decode minted token");
        assert!(decoded.prefix.is_none() && decoded.subject.is_some());
        let mac_input = mac::input(decoded.body, Some(EXACT_PATH));
        let uri = format!("{}?{}={}", EXACT_PATH, config.token.param, exact.token);
        Fixture {
            keyring: config.keys.clone(),
            limits: config.token.limits,
            exact_token: exact.token,
            prefix_token: prefix.token,
            mac_input,
            uri,
            client_ip: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 23)),
            revoked: Revoked::default(),
            config,
        }
    }

    fn request(&self) -> Request<'static> {
        Request {
            path: EXACT_PATH,
            method: "GET",
            host: Some(HOST),
            client_ip: Some(self.client_ip),
        }
    }
}

/// The embedded defaults (one site, `media.localhost`) plus one configured key.
fn load_config() -> Config {
    use base64::Engine;
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(SECRET);
    let file = std::env::temp_dir().join(format!("mediagate-bench-{}.toml", std::process::id()));
    std::fs::write(
        &file,
        format!("[keys]\ndev_key = false\n[keys.secrets]\nk1 = \"{secret}\"\n"),
    )
    .expect("write temporary config");
    let config = mediagate::config::load(Some(&file));
    let _ = std::fs::remove_file(&file);
    let config = config.unwrap_or_else(|error| panic!("bench configuration is invalid: {error}"));
    assert!(
        config.site_for_host(HOST).is_some(),
        "default site must serve {HOST}"
    );
    config
}

// ---------------------------------------------------------------------------------------------
// The cases, each one call

fn bare_hmac(f: &Fixture) {
    let mut mac = Hmac::<Sha256>::new_from_slice(black_box(&SECRET)).expect("any key length");
    mac.update(black_box(&f.mac_input));
    black_box(mac.finalize().into_bytes());
}

fn verify_exact(f: &Fixture) {
    verify_one(f, &f.exact_token);
}

fn verify_prefix(f: &Fixture) {
    verify_one(f, &f.prefix_token);
}

fn verify_one(f: &Fixture, token_text: &str) {
    let mut buf = TokenBuf::new();
    let result = token::verify(
        black_box(token_text),
        &mut buf,
        Purpose::Download,
        &black_box(f.request()),
        &f.keyring,
        f.limits,
        black_box(NOW),
    );
    black_box(&result);
}

fn canonicalize_plain(_: &Fixture) {
    black_box(path::canonicalize(black_box(PLAIN_PATH)).is_ok());
}

fn canonicalize_encoded(_: &Fixture) {
    black_box(path::canonicalize(black_box(ENCODED_PATH)).is_ok());
}

fn gate_decide(f: &Fixture) {
    let mut buf = TokenBuf::new();
    let request = MediaRequest {
        uri: black_box(&f.uri),
        method: "GET",
        server_name: HOST,
        client_ip: Some(f.client_ip),
        authorization: mediagate::gate::Authorization::Absent,
        cookie: mediagate::gate::CookieHeader::Absent,
        purpose: Purpose::Download,
    };
    let outcome = gate::decide(&f.config, &request, &mut buf, black_box(NOW), &f.revoked);
    black_box(&outcome);
}

type Case = (&'static str, fn(&Fixture));

const CASES: [Case; 6] = [
    ("bare_hmac", bare_hmac),
    ("verify_exact", verify_exact),
    ("verify_prefix", verify_prefix),
    ("canonicalize/plain", canonicalize_plain),
    ("canonicalize/encoded", canonicalize_encoded),
    ("gate_decide", gate_decide),
];

/// Every case must do the real thing (an allowed request), or the figures mean nothing.
fn sanity_check(f: &Fixture) {
    let mut buf = TokenBuf::new();
    let request = f.request();
    let run = |token: &str, buf: &mut TokenBuf| {
        token::verify(
            token,
            buf,
            Purpose::Download,
            &request,
            &f.keyring,
            f.limits,
            NOW,
        )
        .map(|_| ())
        .map_err(|denied| denied.reason)
    };
    run(&f.exact_token, &mut buf).expect("exact-path token verifies");
    run(&f.prefix_token, &mut buf).expect("prefix token verifies");

    let mut mac = Hmac::<Sha256>::new_from_slice(&SECRET).expect("any key length");
    mac.update(&f.mac_input);
    let full = mac.finalize().into_bytes();
    let token = token::decode(&f.exact_token, &mut buf).expect("decodes");
    assert_eq!(
        &full[..token::wire::TAG_LEN],
        token.tag,
        "bare_hmac must MAC exactly the bytes verify MACs"
    );

    assert!(path::canonicalize(PLAIN_PATH).is_ok());
    assert_eq!(
        path::canonicalize(ENCODED_PATH).as_deref(),
        Ok("/media/videos/2026/café lecture #07.mp4")
    );
    let request = MediaRequest {
        uri: &f.uri,
        method: "GET",
        server_name: HOST,
        client_ip: Some(f.client_ip),
        authorization: mediagate::gate::Authorization::Absent,
        cookie: mediagate::gate::CookieHeader::Absent,
        purpose: Purpose::Download,
    };
    let outcome = gate::decide(&f.config, &request, &mut buf, NOW, &f.revoked);
    assert!(
        matches!(outcome, Outcome::Allow { token: Some(_), .. }),
        "gate must allow the request: {outcome:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The summary table

const ALLOC_CALLS: u64 = 10_000;
/// Short samples and many rounds: on a shared machine a whole sample is either clean or
/// slowed down (by ~2.5x here when another build shares the core), so the more samples, the
/// more clean ones.
const ROUNDS: usize = 31;
const TIMED_CALLS: u32 = 4_000;

fn allocs_per_call(f: &Fixture, case: fn(&Fixture)) -> f64 {
    case(f); // warm any lazy one-time state
    let before = allocations();
    for _ in 0..ALLOC_CALLS {
        case(f);
    }
    (allocations() - before) as f64 / ALLOC_CALLS as f64
}

fn ns_per_call(f: &Fixture, case: fn(&Fixture)) -> f64 {
    let start = Instant::now();
    for _ in 0..TIMED_CALLS {
        case(black_box(f));
    }
    start.elapsed().as_nanos() as f64 / f64::from(TIMED_CALLS)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

fn summary(f: &Fixture) {
    let allocs: Vec<f64> = CASES
        .iter()
        .map(|&(_, case)| allocs_per_call(f, case))
        .collect();

    // Warm up, then time every case once per round, interleaved, so slow phases of the
    // machine hit all cases alike; the baseline is timed right before each subject.
    for &(_, case) in &CASES {
        ns_per_call(f, case);
    }
    let mut samples = vec![Vec::with_capacity(ROUNDS); CASES.len()];
    let mut ratios = vec![Vec::with_capacity(ROUNDS); CASES.len()];
    for _ in 0..ROUNDS {
        for (index, &(_, case)) in CASES.iter().enumerate().skip(1) {
            let base = ns_per_call(f, CASES[0].1);
            let subject = ns_per_call(f, case);
            samples[0].push(base);
            samples[index].push(subject);
            ratios[index].push(subject / base);
        }
    }
    let base_min = min(&samples[0]);
    // Interference only ever adds time: a sample 30% above the fastest one was disturbed.
    let disturbed = samples
        .iter()
        .map(|case| {
            let fastest = min(case);
            case.iter().filter(|&&ns| ns > 1.3 * fastest).count()
        })
        .sum::<usize>();
    let total: usize = samples.iter().map(Vec::len).sum();

    println!();
    println!(
        "mediagate token verify: {ROUNDS} interleaved rounds x {TIMED_CALLS} calls per sample; \
         allocations over {ALLOC_CALLS} calls"
    );
    println!(
        "  token {} chars, MAC input {} bytes, path {:?}",
        f.exact_token.len(),
        f.mac_input.len(),
        EXACT_PATH
    );
    println!(
        "  x bare_hmac: 'median' = median of per-round ratios (baseline timed right before); \
         'best' = fastest sample / fastest baseline sample"
    );
    println!();
    println!(
        "  {:<22} {:>10} {:>10} {:>12} {:>9} {:>9}",
        "case", "median ns", "best ns", "allocs/call", "x median", "x best"
    );
    println!("  {}", "-".repeat(77));
    for (index, &(name, _)) in CASES.iter().enumerate() {
        let (ratio, best_ratio) = if index == 0 {
            (1.0, 1.0)
        } else {
            (median(&ratios[index]), min(&samples[index]) / base_min)
        };
        println!(
            "  {:<22} {:>10.1} {:>10.1} {:>12.3} {:>9.2} {:>9.2}",
            name,
            median(&samples[index]),
            min(&samples[index]),
            allocs[index],
            ratio,
            best_ratio
        );
    }
    println!();
    let verify_ratio = median(&ratios[1]);
    let verify_best = min(&samples[1]) / base_min;
    println!(
        "  verify_exact / bare_hmac = {verify_ratio:.2} (median), {verify_best:.2} (best) -> {}",
        if verify_ratio.min(verify_best) <= 2.0 {
            "within the 2x target"
        } else {
            "OVER the 2x target"
        }
    );
    if disturbed * 5 > total {
        println!(
            "  note: {disturbed} of {total} samples ran >30% slower than their case's best: \
             the machine is busy, trust the 'best' column"
        );
    }
    for (index, &(name, _)) in CASES.iter().enumerate() {
        if allocs[index] > 0.0 && name != "canonicalize/encoded" {
            println!(
                "  WARNING: {name} allocates {:.3} times per call",
                allocs[index]
            );
        }
    }
    println!("  (canonicalize/encoded returns an owned decoded path by design: 1 allocation)");
    println!();
}

// ---------------------------------------------------------------------------------------------
// criterion

fn criterion_benches(c: &mut Criterion, f: &Fixture) {
    let mut group = c.benchmark_group("verify");
    for &(name, case) in &CASES {
        group.bench_function(name, |b| b.iter(|| case(f)));
    }
    group.finish();
}

/// `VERIFY_BENCH_PROFILE=<case>[:<calls>]` runs one case in a loop and exits: a small driver
/// for `valgrind --tool=callgrind` (or perf) that skips the table and criterion.
fn profile(f: &Fixture, spec: &str) {
    let (name, calls) = spec.split_once(':').unwrap_or((spec, "100000"));
    let calls: u64 = calls
        .parse()
        .expect("VERIFY_BENCH_PROFILE calls must be a number");
    let Some(&(_, case)) = CASES.iter().find(|(case, _)| *case == name) else {
        let names: Vec<&str> = CASES.iter().map(|(name, _)| *name).collect();
        panic!("unknown case {name:?}; one of {names:?}");
    };
    for _ in 0..calls {
        case(f);
    }
    println!("ran {name} {calls} times");
}

fn main() {
    let fixture = Fixture::new();
    sanity_check(&fixture);
    if let Ok(spec) = std::env::var("VERIFY_BENCH_PROFILE") {
        profile(&fixture, &spec);
        return;
    }

    // `cargo test --benches` runs this binary without `--bench`: criterion then only checks
    // each case once, and the timed summary is skipped too.
    let args: Vec<String> = std::env::args().collect();
    let benchmarking = args.iter().any(|arg| arg == "--bench")
        && !args.iter().any(|arg| arg == "--test" || arg == "--list");
    if benchmarking {
        summary(&fixture);
    }

    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
        .configure_from_args();
    criterion_benches(&mut criterion, &fixture);
    criterion.final_summary();
}
