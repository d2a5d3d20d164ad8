//! Stage one of configuration: the shape of the TOML/env input, exactly as written.
//!
//! Nothing here is checked beyond types; [`super::validate`] turns a [`RawConfig`] into a
//! [`super::Config`] and reports every bad setting at once. Unknown keys are errors, so a typo
//! never silently falls back to a default. Each field is documented where users read it:
//! `default.toml` beside this file.
#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The whole configuration as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub server: RawServer,
    pub log: RawLog,
    pub token: RawToken,
    pub keys: RawKeys,
    pub accel: RawAccel,
    pub refresh: RawRefresh,
    pub internal: RawInternal,
    pub store: super::store::RawStore,
    #[serde(default)]
    pub sites: Vec<RawSite>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: String,
    pub internal_listen: String,
    pub trusted_peers: Vec<String>,
    pub max_connections: usize,
    pub internal_max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub shutdown_grace: Duration,
    pub workers: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub format: String,
    pub level: String,
    pub audit: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    pub param: String,
    pub sources: Vec<String>,
    pub auth_schemes: Vec<String>,
    pub default_ttl: Duration,
    pub max_lifetime: Duration,
    pub leeway: Duration,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawKeys {
    pub dev_key: bool,
    pub dev_key_file: String,
    #[serde(default)]
    pub signing: Option<String>,
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretSource>,
    /// Key id -> the purposes it may sign and have accepted; keys without an entry keep all.
    #[serde(default)]
    pub purposes: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccel {
    pub internal_prefix: String,
    pub content_disposition: String,
    pub limit_rate: u64,
    pub buffering: String,
    pub max_expires: Duration,
    pub overrides: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRefresh {
    pub state_ttl: Duration,
    pub token_ttl: Duration,
    pub max_attempts: u8,
    pub loop_window: Duration,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawInternal {
    #[serde(default)]
    pub secret: Option<SecretSource>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSite {
    pub id: String,
    pub media_origin: String,
    #[serde(default)]
    pub session_origin: Option<String>,
    #[serde(default = "default_refresh_path")]
    pub refresh_path: String,
    #[serde(default)]
    pub login_url: Option<String>,
    #[serde(default = "default_login_param")]
    pub login_param: String,
    #[serde(default)]
    pub public_prefixes: Vec<String>,
    /// A directory of denial pages replacing the built-in wording (`<reason>.html`, …).
    #[serde(default)]
    pub pages_dir: Option<String>,
    /// The directory nginx serves this site's files from (its `root`), for tokens bound to a
    /// file version.
    #[serde(default)]
    pub files_root: Option<String>,
    /// The form of links the refresh flow hands out: `"query"` (`?token=`) or `"path"` (a
    /// `~mg~<token>` segment, which relative URLs in playlists inherit).
    #[serde(default = "default_link_form")]
    pub link_form: String,
    /// How long a media player may keep reading a file after its first ranged request
    /// (exchanged for a path-form link); unset: no exchange.
    #[serde(default)]
    pub playback_grant: Option<Duration>,
    /// The grant cookie a prefix link sets on its allow (issue 10); absent: none.
    #[serde(default)]
    pub cookie_grant: Option<RawCookieGrant>,
}

fn default_link_form() -> String {
    "query".to_owned()
}

/// `cookie_grant = { name = "…", same_site = "…" }`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCookieGrant {
    #[serde(default = "default_cookie_name")]
    pub name: String,
    #[serde(default = "default_same_site")]
    pub same_site: String,
}

fn default_cookie_name() -> String {
    "mediagate_grant".to_owned()
}

fn default_same_site() -> String {
    "lax".to_owned()
}

fn default_refresh_path() -> String {
    "/_mediagate/refresh".to_owned()
}

fn default_login_param() -> String {
    "next".to_owned()
}

/// Where a secret comes from: inline base64, a file (Docker/Kubernetes secrets, systemd
/// credentials), or an environment variable. Serialises redacted, so printing the effective
/// configuration never leaks an inline secret.
#[derive(Clone, Deserialize)]
#[serde(untagged)]
pub enum SecretSource {
    /// Base64 (either alphabet) inline in the configuration.
    Inline(String),
    /// Read from this file at start-up.
    File { file: String },
    /// Read from this environment variable at start-up.
    Env { env: String },
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Inline(_) => f.write_str("Inline(***)"),
            SecretSource::File { file } => write!(f, "File({file:?})"),
            SecretSource::Env { env } => write!(f, "Env({env:?})"),
        }
    }
}

impl Serialize for SecretSource {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            SecretSource::Inline(_) => serializer.serialize_str("***"),
            SecretSource::File { file } => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("file", file)?;
                map.end()
            }
            SecretSource::Env { env } => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("env", env)?;
                map.end()
            }
        }
    }
}

/// A duration in whole seconds, written as `30s`, `10m`, `1h`, `7d`, or a bare number of
/// seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duration(pub u64);

impl Duration {
    /// Parses `90`, `90s`, `15m`, `2h` or `7d`.
    pub fn parse(text: &str) -> Result<Duration, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: u64 = number
            .parse()
            .map_err(|_| format!("{text:?} is not a duration like 30s, 10m, 1h or 7d"))?;
        let scale = match unit {
            "" | "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => {
                return Err(format!(
                    "{text:?}: unknown unit {unit:?} (use s, m, h or d)"
                ))
            }
        };
        number
            .checked_mul(scale)
            .map(Duration)
            .ok_or_else(|| format!("{text:?} is too long"))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0;
        match secs {
            0 => f.write_str("0s"),
            _ if secs.is_multiple_of(86_400) => write!(f, "{}d", secs / 86_400),
            _ if secs.is_multiple_of(3600) => write!(f, "{}h", secs / 3600),
            _ if secs.is_multiple_of(60) => write!(f, "{}m", secs / 60),
            _ => write!(f, "{secs}s"),
        }
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        /// A visitor rather than an untagged enum, whose error would only say that no variant
        /// matched.
        struct Visitor;

        impl serde::de::Visitor<'_> for Visitor {
            type Value = Duration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration like 30s, 10m, 1h or 7d, or whole seconds")
            }

            fn visit_u64<E: serde::de::Error>(self, secs: u64) -> Result<Duration, E> {
                Ok(Duration(secs))
            }

            fn visit_i64<E: serde::de::Error>(self, secs: i64) -> Result<Duration, E> {
                u64::try_from(secs)
                    .map(Duration)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(secs), &self))
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Duration, E> {
                Duration::parse(text).map_err(E::custom)
            }
        }

        deserializer.deserialize_any(Visitor)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(Duration::parse("90").unwrap(), Duration(90));
        assert_eq!(Duration::parse("10m").unwrap(), Duration(600));
        assert_eq!(Duration::parse("7d").unwrap(), Duration(604_800));
        assert!(Duration::parse("1y").is_err());
        assert!(Duration::parse("m").is_err());
        assert_eq!(Duration(3600).to_string(), "1h");
        assert_eq!(Duration(90).to_string(), "90s");
    }

    #[test]
    fn inline_secrets_serialise_redacted() {
        let source = SecretSource::Inline("c2VjcmV0".into());
        assert_eq!(serde_json::to_string(&source).unwrap(), "\"***\"");
        assert_eq!(format!("{source:?}"), "Inline(***)");
    }
}
