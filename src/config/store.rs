//! `[store]`: where counted tokens, revocations and use history live, and how long history
//! and upload reservations are kept. Validated into [`StoreConfig`]; the store itself is
//! opened by the server (`crate::http`), never by configuration, so `check-config` and the
//! CLI never lock the embedded database a running server holds.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration as StdDuration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::raw::Duration;
use crate::store::Retention;

/// `[store]` as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawStore {
    pub backend: String,
    pub path: String,
    pub redis_urls: Vec<String>,
    pub cluster: bool,
    pub key_prefix: String,
    pub connect_timeout: Millis,
    pub response_timeout: Millis,
    pub revocation_poll: Millis,
    pub history_entries: u32,
    pub history_max_age: Duration,
    pub upload_lease: Duration,
}

/// A duration in milliseconds, written `250ms`, `2s`, or a bare number of milliseconds: the
/// store's timeouts are shorter than a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Millis(pub u64);

impl Millis {
    /// Parses `250ms`, `2s` or `250`.
    pub fn parse(text: &str) -> Result<Millis, String> {
        let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
            (ms, 1)
        } else if let Some(s) = text.strip_suffix('s') {
            (s, 1000)
        } else {
            (text, 1)
        };
        number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(scale))
            .map(Millis)
            .ok_or_else(|| format!("{text:?} is not a duration like 250ms or 2s"))
    }

    /// As a standard duration.
    pub fn get(self) -> StdDuration {
        StdDuration::from_millis(self.0)
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_multiple_of(1000) {
            write!(f, "{}s", self.0 / 1000)
        } else {
            write!(f, "{}ms", self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Millis, D::Error> {
        struct Visitor;

        impl serde::de::Visitor<'_> for Visitor {
            type Value = Millis;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration like 250ms or 2s, or whole milliseconds")
            }

            fn visit_u64<E: serde::de::Error>(self, ms: u64) -> Result<Millis, E> {
                Ok(Millis(ms))
            }

            fn visit_i64<E: serde::de::Error>(self, ms: i64) -> Result<Millis, E> {
                u64::try_from(ms)
                    .map(Millis)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(ms), &self))
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Millis, E> {
                Millis::parse(text).map_err(E::custom)
            }
        }

        deserializer.deserialize_any(Visitor)
    }
}

impl Serialize for Millis {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Which store backend, with its own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// redb file on this host (one mediagate process per file).
    Embedded {
        /// The database file.
        path: PathBuf,
    },
    /// Redis, shared by every sidecar that names it.
    Redis {
        /// One URL (standalone) or the seed nodes of a cluster.
        urls: Vec<String>,
        /// Redis Cluster.
        cluster: bool,
        /// Prefix of every key mediagate writes.
        key_prefix: String,
        /// Time to connect.
        connect_timeout: StdDuration,
        /// Time to wait for an answer.
        response_timeout: StdDuration,
    },
}

/// `[store]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// The backend.
    pub backend: Backend,
    /// How often each sidecar polls the store for new revocations.
    pub revocation_poll: StdDuration,
    /// Use history kept per counted token.
    pub retention: Retention,
    /// Seconds an upload reservation holds its slot before it lapses.
    pub upload_lease: u64,
}

/// Checks `[store]`; every problem is reported, prefixed with its setting's name.
pub fn validate(raw: &RawStore) -> Result<StoreConfig, Vec<String>> {
    let mut errors = Vec::new();
    let backend = match raw.backend.as_str() {
        "embedded" => {
            if !raw.redis_urls.is_empty() || raw.cluster {
                errors.push(
                    "store.redis_urls: set only with backend = \"redis\" (the embedded store \
                     would silently ignore it)"
                        .into(),
                );
            }
            match embedded_path(&raw.path) {
                Ok(path) => Some(Backend::Embedded { path }),
                Err(e) => {
                    errors.push(format!("store.path: {e}"));
                    None
                }
            }
        }
        "redis" => {
            if !raw.path.is_empty() {
                errors.push("store.path: set only with backend = \"embedded\"".into());
            }
            match (raw.redis_urls.len(), raw.cluster) {
                (0, _) => errors.push("store.redis_urls: name the Redis server".into()),
                (2.., false) => errors.push(
                    "store.redis_urls: several URLs are the seed nodes of a Redis Cluster; \
                     set store.cluster = true, or name one server"
                        .into(),
                ),
                _ => {}
            }
            for url in &raw.redis_urls {
                let ok = ["redis://", "rediss://", "redis+unix://", "unix://"]
                    .iter()
                    .any(|scheme| url.starts_with(scheme));
                if !ok {
                    errors.push(format!(
                        "store.redis_urls: {url:?} is not a redis://, rediss://, redis+unix:// or unix:// URL"
                    ));
                }
            }
            if raw.connect_timeout.0 == 0 || raw.response_timeout.0 == 0 {
                errors.push(
                    "store.connect_timeout and store.response_timeout: must be positive (a \
                     request must never wait forever on the store)"
                        .into(),
                );
            }
            Some(Backend::Redis {
                urls: raw.redis_urls.clone(),
                cluster: raw.cluster,
                key_prefix: raw.key_prefix.clone(),
                connect_timeout: raw.connect_timeout.get(),
                response_timeout: raw.response_timeout.get(),
            })
        }
        other => {
            errors.push(format!(
                "store.backend: {other:?} is not \"embedded\" or \"redis\""
            ));
            None
        }
    };
    if raw.key_prefix.is_empty() || raw.key_prefix.contains(['{', '}']) {
        errors.push(
            "store.key_prefix: must be non-empty and free of '{' and '}' (they pick Redis \
             Cluster hash slots)"
                .into(),
        );
    }
    if !(1..=1000).contains(&raw.revocation_poll.0) {
        errors.push(
            "store.revocation_poll: must be between 1ms and 1s (revocations must take effect \
             within a second)"
                .into(),
        );
    }
    if raw.history_entries > 10_000 {
        errors.push("store.history_entries: at most 10000".into());
    }
    if raw.upload_lease.0 == 0 {
        errors.push("store.upload_lease: must be at least 1s".into());
    }
    match backend {
        Some(backend) if errors.is_empty() => Ok(StoreConfig {
            backend,
            revocation_poll: raw.revocation_poll.get(),
            retention: Retention {
                max_entries: raw.history_entries,
                max_age: raw.history_max_age.0,
            },
            upload_lease: raw.upload_lease.0,
        }),
        _ => Err(errors),
    }
}

/// `store.path`; empty means `$XDG_STATE_HOME/mediagate/state.redb` (or
/// `~/.local/state/mediagate/state.redb`), beside the development key.
fn embedded_path(configured: &str) -> Result<PathBuf, String> {
    if !configured.is_empty() {
        return Ok(PathBuf::from(configured));
    }
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state")))
        .ok_or("neither XDG_STATE_HOME nor HOME is set; set store.path")?;
    Ok(state.join("mediagate").join("state.redb"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> RawStore {
        RawStore {
            backend: "embedded".into(),
            path: "/var/lib/mediagate/state.redb".into(),
            redis_urls: Vec::new(),
            cluster: false,
            key_prefix: "mediagate:".into(),
            connect_timeout: Millis(1000),
            response_timeout: Millis(500),
            revocation_poll: Millis(250),
            history_entries: 20,
            history_max_age: Duration(30 * 86_400),
            upload_lease: Duration(300),
        }
    }

    #[test]
    fn milliseconds_parse_with_and_without_units() {
        assert_eq!(Millis::parse("250ms"), Ok(Millis(250)));
        assert_eq!(Millis::parse("2s"), Ok(Millis(2000)));
        assert_eq!(Millis::parse("40"), Ok(Millis(40)));
        assert!(Millis::parse("1m").is_err());
        assert!(Millis::parse(" 5ms").is_err());
        assert_eq!(Millis(1500).to_string(), "1500ms");
        assert_eq!(Millis(2000).to_string(), "2s");
    }

    #[test]
    fn the_embedded_default_validates() {
        let config = validate(&raw()).expect("valid");
        assert_eq!(
            config.backend,
            Backend::Embedded {
                path: "/var/lib/mediagate/state.redb".into()
            }
        );
    }

    #[test]
    fn every_redis_mistake_is_reported_at_once() {
        let mut bad = raw();
        bad.backend = "redis".into();
        bad.redis_urls = vec!["http://x".into(), "redis://y".into()];
        bad.response_timeout = Millis(0);
        bad.revocation_poll = Millis(5000);
        let errors = validate(&bad).expect_err("invalid");
        assert_eq!(errors.len(), 5, "{errors:#?}");
        for setting in [
            "store.path",
            "store.redis_urls: several",
            "store.redis_urls: \"http://x\"",
            "store.response_timeout",
            "store.revocation_poll",
        ] {
            assert!(
                errors.iter().any(|e| e.contains(setting)),
                "{setting} missing from {errors:#?}"
            );
        }
    }

    #[test]
    fn a_cluster_takes_several_seed_nodes() {
        let mut cluster = raw();
        cluster.backend = "redis".into();
        cluster.path = String::new();
        cluster.cluster = true;
        cluster.redis_urls = vec![
            "redis://127.0.0.1:7000".into(),
            "redis://127.0.0.1:7001".into(),
        ];
        let config = validate(&cluster).expect("valid");
        assert!(matches!(
            config.backend,
            Backend::Redis { cluster: true, .. }
        ));
    }
}
