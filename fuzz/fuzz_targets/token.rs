//! Fuzzes token decoding and verification.
//!
//! Two passes per input:
//! 1. The bytes as token text, verified against a fixed key ring and request. Such input is
//!    malformed or forged, so it must be denied (and never panic).
//! 2. The bytes as a token *body*, signed with a key named after the body's own key id, so
//!    verification gets past the MAC and every claim check runs on fuzzer-chosen values. A
//!    signed body that decodes must never be denied as malformed or unauthentic; one that
//!    verifies must satisfy every claim; and on even-length input the request is built to
//!    match the claims, so a current download token must then verify, unless its `ip` is
//!    an IPv4-mapped network, which contains no client and must be denied as `ip`.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use mediagate::keys::{Key, KeyRing, Secret};
use mediagate::path;
use mediagate::reason::Reason;
use mediagate::token::{self, mac, wire, Limits, Methods, Purpose, Request, TokenBuf};

const NOW: u64 = 1_800_000_000;
const LIMITS: Limits = Limits {
    leeway: 30,
    max_lifetime: 86_400,
};
const PATH: &str = "/media/a/report.pdf";
const HOST: &str = "media.example";

fn secret() -> Secret {
    Secret::new(vec![0x42; 32])
}

fuzz_target!(|data: &[u8]| {
    text_pass(data);
    signed_body_pass(data);
});

fn text_pass(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let k1 = Key::new("k1", &secret()).unwrap();
    let k2 = Key::new("k2", &Secret::new(vec![0x17; 32])).unwrap();
    let ring = KeyRing::new(vec![k1, k2], "k1").unwrap();
    let request = Request {
        path: PATH,
        method: "GET",
        host: Some(HOST),
        client_ip: Some([203, 0, 113, 7].into()),
    };
    let mut buf = TokenBuf::new();
    let _ = token::decode(text, &mut buf);
    let mut buf = TokenBuf::new();
    let verified = token::verify(
        text,
        &mut buf,
        Purpose::Download,
        &request,
        &ring,
        LIMITS,
        NOW,
    );
    // Without the secret, passing the MAC would be a forgery: a finding.
    assert!(verified.is_err(), "unsigned input verified: {verified:?}");
}

fn signed_body_pass(body: &[u8]) {
    if body.len() + wire::TAG_LEN > wire::MAX_TOKEN_BYTES {
        return;
    }
    let placeholder = wire::encode_token(body, &[0; wire::TAG_LEN]);
    let mut buf = TokenBuf::new();
    let Ok(claims) = token::decode(&placeholder, &mut buf) else {
        return;
    };
    let key = Key::new(claims.kid, &secret()).expect("decode accepted an invalid kid");
    let ring = KeyRing::new(vec![key], claims.kid).unwrap();

    // Even-length input: a request that matches every claim. Odd: a fixed one.
    let cooperative = body.len().is_multiple_of(2);
    let within;
    // A scopes list (v2): the first entry's path (below it, for a prefix) and first method.
    let first_scope = claims.scopes.and_then(|scopes| scopes.iter().next());
    let (request_path, host, client_ip, method) = if cooperative {
        within = match first_scope {
            Some(entry) if entry.prefix => Some(format!("{}x", entry.path)),
            Some(entry) => Some(entry.path.to_owned()),
            None => claims.prefix.map(|prefix| format!("{prefix}x")),
        };
        let ip: Option<IpAddr> = claims.ip.map(|net| {
            let text = net.to_string();
            text.split_once('/').unwrap().0.parse().unwrap()
        });
        let methods = first_scope.map_or(claims.methods(), |entry| entry.methods);
        let method = Methods::NAMES
            .into_iter()
            .find(|name| methods.allows(name))
            .expect("a method set with no method");
        (
            within.as_deref().unwrap_or(PATH),
            claims.host.or(Some(HOST)),
            ip.or(Some([203, 0, 113, 7].into())),
            method,
        )
    } else {
        (PATH, Some(HOST), Some([203, 0, 113, 7].into()), "GET")
    };
    // Spread `now` around the expiry so expired, current and too-long-lived all occur.
    let now = match body.last().copied().unwrap_or(0) {
        0 => NOW,
        step => claims.expires.saturating_sub(u64::from(step) * 997),
    };
    let request = Request {
        path: request_path,
        method,
        host,
        client_ip,
    };
    let bound_path = claims.binds_path().then_some(request_path);
    let key = ring.signing_key();
    let text = wire::encode_token(body, &mac::tag(key, body, bound_path));
    let mut buf = TokenBuf::new();
    let verified = token::verify(
        &text,
        &mut buf,
        Purpose::Download,
        &request,
        &ring,
        LIMITS,
        now,
    );
    match verified {
        Ok(token) => {
            assert_eq!(token.purpose, Purpose::Download);
            assert!(!token.ip.is_some_and(|net| net.is_ipv4_mapped()));
            assert!(now < token.expires && token.expires - now <= LIMITS.max_lifetime);
            assert!(token
                .not_before
                .is_none_or(|nbf| nbf <= now.saturating_add(LIMITS.leeway)));
            assert!(token.host.is_none_or(|h| Some(h) == request.host));
            assert!(token
                .prefix
                .is_none_or(|prefix| path::is_within(request_path, prefix)));
            match token.scopes {
                Some(scopes) => assert_eq!(
                    scopes.admit(request_path, method),
                    token::Admission::Allowed
                ),
                None => assert!(token.methods().allows(method)),
            }
            assert!(token
                .ip
                .is_none_or(|net| client_ip.is_some_and(|ip| net.contains(ip))));
        }
        Err(denied) => {
            assert!(
                !matches!(
                    denied.reason,
                    Reason::Malformed | Reason::UnknownKey | Reason::BadSignature
                ),
                "signed body denied as {:?}",
                denied.reason
            );
            let current = claims.purpose == Purpose::Download
                && now < claims.expires
                && claims.expires - now <= LIMITS.max_lifetime
                && claims
                    .not_before
                    .is_none_or(|nbf| nbf <= now.saturating_add(LIMITS.leeway));
            // An IPv4-mapped network decodes but contains no client (spec §4 minting rules,
            // §10 step 11): minters refuse it, and a verifier can only deny it, with `ip`.
            let unmatchable_ip = claims.ip.is_some_and(|net| net.is_ipv4_mapped());
            if cooperative && current && unmatchable_ip {
                assert_eq!(denied.reason, Reason::Ip, "{claims:?}");
                return;
            }
            assert!(
                !(cooperative && current),
                "matching request denied as {:?}: {claims:?}",
                denied.reason
            );
        }
    }
}
