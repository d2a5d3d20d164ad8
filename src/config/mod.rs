//! Configuration: figment layers -> [`RawConfig`] -> validated [`Config`].
//!
//! Layers, later wins: the embedded `default.toml` < a TOML file (`--config` or
//! `MEDIAGATE_CONFIG`) < environment variables `MEDIAGATE_<SECTION>__<KEY>`. Loading reports
//! every problem in one go, before any port is bound: unknown keys, `MEDIAGATE_` variables that
//! name no setting and badly typed values (stage one, `sources`), then values that make no
//! sense (stage two, [`validate`]); each names its key and the file or variable that set it.
//! Key material is read here (files, environment, the development key) and nowhere else.

mod dev_key;
pub mod raw;
mod sources;
pub mod store;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;

pub use raw::{Duration, RawConfig, SecretSource};
pub use sources::{ENV_PREFIX, NOT_SETTINGS};

use crate::cookie;
pub use crate::cookie::{CookieGrant, SameSite};
use crate::keys::{Key, KeyError, KeyRing, Purposes, Secret};
use crate::pages::{self, Pages};
use crate::path;
use crate::token::{IpNet, Limits, Purpose};

/// The embedded default configuration.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// Everything that can be wrong with a configuration, one line per problem, each naming the
/// key and (when not a default) the file or environment variable that set it.
///
/// Occurs when a key or a `MEDIAGATE_` variable names no setting, a value has the wrong
/// type or makes no sense, or key material cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

/// A validated configuration. Constructing one proves every setting was checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listeners and connection handling.
    pub server: ServerConfig,
    /// Log format and level.
    pub log: LogConfig,
    /// Token parameter and lifetimes.
    pub token: TokenConfig,
    /// All keys; one signs.
    pub keys: KeyRing,
    /// Whether the keys came from configuration or are the development key.
    pub key_origin: KeyOrigin,
    /// X-Accel-Redirect mode settings.
    pub accel: AccelConfig,
    /// Refresh-flow settings.
    pub refresh: RefreshConfig,
    /// Secret guarding /mint and /refresh; `None` disables both.
    pub internal_secret: Option<Secret>,
    /// Media domains.
    pub sites: Vec<Site>,
    /// Where counted tokens, revocations and use history live.
    pub store: store::StoreConfig,
}

/// Where a listener listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix socket path (`unix:/run/mediagate/auth.sock`).
    Unix(PathBuf),
}

/// `[server]`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Verify listener (/auth, /accel).
    pub listen: ListenAddr,
    /// Internal listener (/mint, /refresh, /login).
    pub internal_listen: ListenAddr,
    /// Peers trusted to send X-Original-* headers over TCP.
    pub trusted_peers: Vec<IpNet>,
    /// Connection cap of the verify listener. Each listener has its own, so a flood on one
    /// cannot starve the other.
    pub max_connections: usize,
    /// Connection cap of the internal listener.
    pub internal_max_connections: usize,
    /// Time a client has to send a complete request head: from accepting the connection for
    /// the first request, from the request's first byte for later ones.
    pub header_timeout: std::time::Duration,
    /// How long a keep-alive connection may sit idle between requests. Must stay above
    /// nginx's upstream `keepalive_timeout` (60 s by default), so that nginx, not mediagate,
    /// closes idle connections and never sends a request into one mediagate is closing.
    pub idle_timeout: std::time::Duration,
    /// Drain time on shutdown.
    pub shutdown_grace: std::time::Duration,
    /// Runtime worker threads as configured (0 = automatic, see [`ServerConfig::threads`]).
    pub workers: usize,
}

impl ServerConfig {
    /// Runtime threads to start: `workers`, or for 0 one per four CPUs (at least one).
    ///
    /// Why a quarter: per protected request, nginx spends about three to four times the CPU
    /// that mediagate does (docs/benchmarks.md), so nginx saturates every core long before
    /// mediagate needs more than a quarter of them. Fewer threads mean fewer cross-thread
    /// wake-ups: on a 2-core VM one thread (a current-thread runtime) measured ~11.5 µs of CPU
    /// per direct `/auth` against ~14.5 µs for two.
    pub fn threads(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism()
                .map_or(1, usize::from)
                .div_ceil(4),
            workers => workers,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Output format.
    pub format: LogFormat,
    /// tracing filter directive.
    pub level: String,
    /// Emit one audit line per decision.
    pub audit: bool,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[token]`, in seconds.
#[derive(Debug, Clone)]
pub struct TokenConfig {
    /// Query parameter name.
    pub param: String,
    /// Read the token from the query parameter [`TokenConfig::param`].
    pub from_query: bool,
    /// Read the token from an `Authorization` header with one of
    /// [`TokenConfig::auth_schemes`].
    pub from_authorization: bool,
    /// Read the token from a path segment that begins with [`crate::path::GRANT_MARKER`].
    pub from_path: bool,
    /// Authorization schemes that carry a token, as configured (compared ignoring case).
    pub auth_schemes: Vec<String>,
    /// The `WWW-Authenticate` value naming the accepted schemes (`Bearer, TmpToken`).
    pub challenge: String,
    /// Default TTL for minting.
    pub default_ttl: u64,
    /// Verification tolerances and the lifetime cap.
    pub limits: Limits,
}

/// Where a request's token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    /// The query parameter `token.param`.
    Query,
    /// An `Authorization: <scheme> <token>` header.
    Authorization,
    /// A path segment `~mg~<token>` (spec §13.3).
    Path,
    /// The site's grant cookie (`cookie_grant`), read only on a site with one and only when
    /// the request carries no other token. Not a `token.sources` name: the site turns it on.
    Cookie,
}

impl TokenSource {
    /// The name in `token.sources`.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenSource::Query => "query",
            TokenSource::Authorization => "authorization",
            TokenSource::Path => "path",
            TokenSource::Cookie => "cookie",
        }
    }
}

/// Where the key ring came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOrigin {
    /// `[keys.secrets]`.
    Configured,
    /// The development key in this file.
    Development(PathBuf),
}

/// `[accel]`.
#[derive(Debug, Clone)]
pub struct AccelConfig {
    /// Internal location prefix, with leading and trailing slash.
    pub internal_prefix: String,
    /// Content-Disposition type to send, if any.
    pub content_disposition: Option<Disposition>,
    /// X-Accel-Limit-Rate, bytes/s.
    pub limit_rate: Option<u64>,
    /// X-Accel-Buffering.
    pub buffering: Option<bool>,
    /// Cap for X-Accel-Expires, seconds (0 = not sent).
    pub max_expires: u64,
    /// Which per-link response overrides tokens may carry (`accel.overrides`).
    pub overrides: Overrides,
}

/// `accel.overrides`: the per-link response overrides (token format v2 fields `0x14`-`0x16`)
/// this deployment honours. Default: none. A token carrying one that is not allowed is
/// refused (`override_not_allowed`): serving it without the override would hand out
/// something other than what was minted, and honouring it would let any minter shape
/// responses the operator never opted into.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `"filename"`: the download file name.
    pub filename: bool,
    /// `"disposition"`: inline or attachment.
    pub disposition: bool,
    /// `"max_age"`: `Cache-Control: private, max-age=N`.
    pub max_age: bool,
}

impl Overrides {
    /// The names `accel.overrides` takes, in documentation order.
    pub const NAMES: [&'static str; 3] = ["filename", "disposition", "max_age"];

    /// The first override the fields carry that is not allowed, by its configuration name;
    /// `None` when everything they carry is allowed.
    pub fn refused(self, filename: bool, disposition: bool, max_age: bool) -> Option<&'static str> {
        [
            (filename && !self.filename, "filename"),
            (disposition && !self.disposition, "disposition"),
            (max_age && !self.max_age, "max_age"),
        ]
        .into_iter()
        .find_map(|(refused, name)| refused.then_some(name))
    }

    /// True when every override `token` carries is allowed.
    pub fn admit(self, token: &crate::token::Token<'_>) -> bool {
        self.refused(
            token.filename.is_some(),
            token.disposition.is_some(),
            token.max_age.is_some(),
        )
        .is_none()
    }
}

/// Content-Disposition type: the token format's, so a site-wide setting and a per-link one
/// are the same type.
pub use crate::token::Disposition;

/// `[refresh]`, in seconds.
#[derive(Debug, Clone)]
pub struct RefreshConfig {
    /// Lifetime of a refresh `state`.
    pub state_ttl: u64,
    /// Lifetime of refresh-minted tokens.
    pub token_ttl: u64,
    /// Refreshes in a row before a loop is declared.
    pub max_attempts: u8,
    /// Window in which a refreshed token failing again counts as a loop.
    pub loop_window: u64,
}

/// One media domain.
#[derive(Debug, Clone)]
pub struct Site {
    /// Short id, carried in logs.
    pub id: String,
    /// `scheme://host[:port]` of the media domain.
    pub media_origin: String,
    /// Lower-case host name matched against `X-Mediagate-Server-Name` (nginx `$server_name`).
    pub media_host: String,
    /// Refresh settings, when the site has a session domain.
    pub refresh: Option<SiteRefresh>,
    /// Canonical public prefixes (trailing slash).
    pub public_prefixes: Vec<String>,
    /// Denial pages replacing the built-in wording (`pages_dir`), if any.
    pub pages: Option<Pages>,
    /// Where the site's files are (`files_root`, resolved: absolute, no symbolic links),
    /// for links bound to a file version; `None` refuses such links.
    pub files_root: Option<PathBuf>,
    /// The form of the links the refresh flow hands out for this site.
    pub link_form: LinkForm,
    /// Seconds a player's first ranged request of a query-form link is exchanged for (a
    /// path-form link valid that long), so that seeking keeps working after the link the page
    /// started with expires. `None`: no exchange.
    pub playback_grant: Option<u64>,
    /// The grant cookie set on the allow of a prefix link (`cookie_grant`), if any.
    pub cookie_grant: Option<CookieGrant>,
}

/// How a link carries its token (spec §13, §13.3). Spelled `query` or `path` wherever it is
/// chosen (a site's `link_form`, `/mint`'s `"form"`, `sign --form`): one
/// [`FromStr`](std::str::FromStr) reads them all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum LinkForm {
    /// `<path>?token=<token>`.
    #[default]
    Query,
    /// `<folder or prefix>/~mg~<token>/<rest>`: relative URLs in a playlist or page keep it.
    Path,
}

impl std::str::FromStr for LinkForm {
    type Err = String;

    fn from_str(name: &str) -> Result<LinkForm, String> {
        match name {
            "query" => Ok(LinkForm::Query),
            "path" => Ok(LinkForm::Path),
            other => Err(format!("{other:?} is not \"query\" or \"path\"")),
        }
    }
}

impl TryFrom<String> for LinkForm {
    type Error = String;

    fn try_from(name: String) -> Result<LinkForm, String> {
        name.parse()
    }
}

/// The session-domain side of a site.
#[derive(Debug, Clone)]
pub struct SiteRefresh {
    /// `scheme://host[:port]` of the session domain.
    pub session_origin: String,
    /// Lower-case host of `session_origin`: the session `server { }` (nginx `$server_name`)
    /// that may forward this site's refreshes.
    pub session_host: String,
    /// Canonical refresh location path, no trailing slash.
    pub refresh_path: String,
    /// Absolute login URL.
    pub login_url: Option<String>,
    /// Query parameter for the return path.
    pub login_param: String,
}

impl Config {
    /// The site whose media host is `host` (case-insensitive): nginx's `$server_name` of the
    /// media `server { }`.
    pub fn site_for_host(&self, host: &str) -> Option<&Site> {
        self.sites
            .iter()
            .find(|site| site.media_host.eq_ignore_ascii_case(host))
    }

    /// The site with this id.
    pub fn site_by_id(&self, id: &str) -> Option<&Site> {
        self.sites.iter().find(|site| site.id == id)
    }

    /// Makes a reloaded configuration keep `running`'s value of every setting that only
    /// takes effect at start-up ([`RESTART_ONLY`]), and returns the names of those that
    /// differed: the listeners are bound, the connection caps are semaphores sized once,
    /// the runtime's threads are started and the log subscriber is installed.
    pub fn keep_restart_only(&mut self, running: &Config) -> Vec<&'static str> {
        let (new, old) = (&mut self.server, &running.server);
        let mut changed = Vec::new();
        let mut keep = |name: &'static str, differs: bool| {
            if differs {
                changed.push(name);
            }
        };
        keep("server.listen", new.listen != old.listen);
        keep(
            "server.internal_listen",
            new.internal_listen != old.internal_listen,
        );
        keep(
            "server.max_connections",
            new.max_connections != old.max_connections,
        );
        keep(
            "server.internal_max_connections",
            new.internal_max_connections != old.internal_max_connections,
        );
        keep("server.workers", new.workers != old.workers);
        keep("log.format", self.log.format != running.log.format);
        keep("log.level", self.log.level != running.log.level);
        keep("store.backend", self.store.backend != running.store.backend);
        keep(
            "store.revocation_poll",
            self.store.revocation_poll != running.store.revocation_poll,
        );
        new.listen = old.listen.clone();
        new.internal_listen = old.internal_listen.clone();
        new.max_connections = old.max_connections;
        new.internal_max_connections = old.internal_max_connections;
        new.workers = old.workers;
        self.log.format = running.log.format;
        self.log.level = running.log.level.clone();
        // The store is opened once, and its revocation poller started once.
        self.store.backend = running.store.backend.clone();
        self.store.revocation_poll = running.store.revocation_poll;
        changed
    }
}

/// Settings a reload does not change (see [`Config::keep_restart_only`]); every other setting,
/// keys included, takes effect for the next request (timeouts and `server.trusted_peers`: for
/// the next connection).
pub const RESTART_ONLY: &[&str] = &[
    "server.listen",
    "server.internal_listen",
    "server.max_connections",
    "server.internal_max_connections",
    "server.workers",
    "log.format",
    "log.level",
    "store.backend",
    "store.revocation_poll",
];

/// The merged layers as [`load`] sees them (this process's environment), without the
/// checks: extract a [`RawConfig`] from it to print the effective configuration.
pub fn figment(file: Option<&Path>) -> Figment {
    sources::Sources::new(file, std::env::vars_os()).effective()
}

/// Loads and validates the configuration from all layers and this process's environment.
pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
    load_with_env(file, std::env::vars_os())
}

/// Loads and validates the configuration with `vars` as the environment, reporting every
/// problem of both stages at once.
pub fn load_with_env(
    file: Option<&Path>,
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<Config, ConfigError> {
    let vars: Vec<(OsString, OsString)> = vars.into_iter().collect();
    let getenv = |name: &str| {
        vars.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let sources = sources::Sources::new(file, vars.iter().cloned());
    let checked = sources.check();
    let mut problems = checked.problems;
    let Some(raw) = checked.raw else {
        return Err(ConfigError(problems));
    };
    // A configuration with a typo must not leave a development key file behind.
    let dev_key = if problems.is_empty() {
        DevKey::Create
    } else {
        DevKey::Skip
    };
    match validate_with(&raw, dev_key, &getenv) {
        Ok(config) if problems.is_empty() => Ok(config),
        Ok(_) => Err(ConfigError(problems)),
        Err(ConfigError(errors)) => {
            problems.extend(sources.locate(errors));
            Err(ConfigError(problems))
        }
    }
}

/// Whether validation may create the development key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DevKey {
    /// Create it when it is needed and missing.
    Create,
    /// Leave the key ring unchecked instead (stage one already failed).
    Skip,
}

/// Reads an environment variable: the process's, or the one given to [`load_with_env`].
type Getenv<'a> = &'a dyn Fn(&str) -> Option<OsString>;

/// Turns a raw configuration into a [`Config`], collecting every problem. `{ env = … }`
/// secret sources read this process's environment.
pub fn validate(raw: &RawConfig) -> Result<Config, ConfigError> {
    validate_with(raw, DevKey::Create, &|name| std::env::var_os(name))
}

fn validate_with(raw: &RawConfig, dev_key: DevKey, getenv: Getenv) -> Result<Config, ConfigError> {
    let mut errors = Vec::new();
    let mut check = |result: Result<(), String>| {
        if let Err(error) = result {
            errors.push(error);
        }
    };

    let listen = parse_listen(&raw.server.listen).map_err(|e| format!("server.listen: {e}"));
    let internal_listen = parse_listen(&raw.server.internal_listen)
        .map_err(|e| format!("server.internal_listen: {e}"));
    let mut trusted_peers = Vec::new();
    for peer in &raw.server.trusted_peers {
        match peer.parse::<IpNet>() {
            Ok(net) => trusted_peers.push(net),
            Err(e) => check(Err(format!("server.trusted_peers: {e}"))),
        }
    }
    if raw.server.max_connections == 0 {
        check(Err("server.max_connections: must be at least 1".into()));
    }
    if raw.server.internal_max_connections == 0 {
        check(Err(
            "server.internal_max_connections: must be at least 1".into()
        ));
    }
    if raw.server.header_timeout.0 == 0 {
        check(Err("server.header_timeout: must be at least 1s".into()));
    }
    if raw.server.idle_timeout.0 == 0 {
        check(Err("server.idle_timeout: must be at least 1s".into()));
    }
    let format = match raw.log.format.as_str() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            check(Err(format!(
                "log.format: {other:?} is not \"text\" or \"json\""
            )));
            LogFormat::Text
        }
    };

    let param_ok = !raw.token.param.is_empty()
        && raw
            .token
            .param
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b));
    if !param_ok {
        check(Err("token.param: use letters, digits, '_' or '-'".into()));
    }
    let sources = token_sources(&raw.token).unwrap_or_else(|problems| {
        for problem in problems {
            check(Err(problem));
        }
        Vec::new()
    });
    let max_lifetime = raw.token.max_lifetime.0;
    if max_lifetime == 0 {
        check(Err(
            "token.max_lifetime: must be positive (non-expiring tokens do not exist)".into(),
        ));
    }
    for (name, ttl) in [
        ("token.default_ttl", raw.token.default_ttl.0),
        ("refresh.token_ttl", raw.refresh.token_ttl.0),
        ("refresh.state_ttl", raw.refresh.state_ttl.0),
    ] {
        if ttl == 0 || ttl > max_lifetime {
            check(Err(format!(
                "{name}: must be between 1s and token.max_lifetime ({})",
                raw.token.max_lifetime
            )));
        }
    }
    if raw.refresh.max_attempts == 0 {
        check(Err("refresh.max_attempts: must be at least 1".into()));
    } else if raw.refresh.max_attempts == 1 && raw.sites.iter().any(|site| site.login_url.is_some())
    {
        // The login detour advances the attempt (so a withheld cookie cannot loop): with one
        // attempt, every user who is not logged in would end on refresh_loop.
        check(Err(
            "refresh.max_attempts: must be at least 2 when a site has a login_url (the login \
             detour counts as an attempt)"
                .into(),
        ));
    }

    let internal_prefix = &raw.accel.internal_prefix;
    if !(internal_prefix.starts_with('/') && internal_prefix.ends_with('/'))
        || path::canonicalize(internal_prefix).ok().as_deref() != Some(internal_prefix.as_str())
    {
        check(Err(format!(
            "accel.internal_prefix: {internal_prefix:?} must be a canonical path with leading and trailing '/'"
        )));
    }
    let content_disposition = match raw.accel.content_disposition.as_str() {
        "none" => None,
        "inline" => Some(Disposition::Inline),
        "attachment" => Some(Disposition::Attachment),
        other => {
            check(Err(format!(
                "accel.content_disposition: {other:?} is not \"none\", \"inline\" or \"attachment\""
            )));
            None
        }
    };
    let mut overrides = Overrides::default();
    for name in &raw.accel.overrides {
        let slot = match name.as_str() {
            "filename" => &mut overrides.filename,
            "disposition" => &mut overrides.disposition,
            "max_age" => &mut overrides.max_age,
            other => {
                check(Err(format!(
                    "accel.overrides: {other:?} is not one of \"filename\", \"disposition\", \"max_age\""
                )));
                continue;
            }
        };
        if std::mem::replace(slot, true) {
            check(Err(format!("accel.overrides: {name:?} is listed twice")));
        }
    }
    let buffering = match raw.accel.buffering.as_str() {
        "default" => None,
        "yes" => Some(true),
        "no" => Some(false),
        other => {
            check(Err(format!(
                "accel.buffering: {other:?} is not \"default\", \"yes\" or \"no\""
            )));
            None
        }
    };

    let mut sites: Vec<Site> = Vec::new();
    for (index, site) in raw.sites.iter().enumerate() {
        match validate_site(site) {
            Ok(site) => {
                // A grant cookie is only ever set by the allow of a link in the URL.
                if site.cookie_grant.is_some()
                    && !sources.contains(&TokenSource::Query)
                    && !sources.contains(&TokenSource::Path)
                {
                    check(Err(format!(
                        "sites[{index}].cookie_grant: only a link with its token in the URL sets \
                         the grant cookie, and token.sources has neither \"query\" nor \"path\""
                    )));
                }
                // Links in path form are refused with the path source off: the refresh flow
                // and the playback exchange would hand out links that can never open.
                if !sources.contains(&TokenSource::Path) {
                    if site.link_form == LinkForm::Path {
                        check(Err(format!(
                            "sites[{index}].link_form: \"path\" hands out links with the token in \
                             the path, and token.sources has no \"path\""
                        )));
                    }
                    if site.playback_grant.is_some() {
                        check(Err(format!(
                            "sites[{index}].playback_grant: the grant is a link in path form, and \
                             token.sources has no \"path\""
                        )));
                    }
                }
                // The grant is a link like any other: never longer-lived than minters may sign.
                if site
                    .playback_grant
                    .is_some_and(|grant| grant > max_lifetime)
                {
                    check(Err(format!(
                        "sites[{index}].playback_grant: longer than token.max_lifetime ({max_lifetime} s)"
                    )));
                }
                if sites.iter().any(|other| other.id == site.id) {
                    check(Err(format!(
                        "sites[{index}].id: {:?} is used twice",
                        site.id
                    )));
                } else if sites
                    .iter()
                    .any(|other| other.media_host == site.media_host)
                {
                    check(Err(format!(
                        "sites[{index}].media_origin: host {:?} is used twice",
                        site.media_host
                    )));
                } else if let Some(other) = sites
                    .iter()
                    .find(|other| shares_refresh_location(other, &site))
                {
                    // The application's access check hears only the media path: behind one
                    // refresh location it could not tell whose file it is approving.
                    check(Err(format!(
                        "sites[{index}].refresh_path: site {:?} already refreshes through {:?} on \
                         the same session domain; the application could not tell the sites' \
                         paths apart, so give each site its own refresh_path",
                        other.id,
                        other
                            .refresh
                            .as_ref()
                            .map_or("", |r| r.refresh_path.as_str()),
                    )));
                }
                sites.push(site);
            }
            Err(problems) => {
                for problem in problems {
                    check(Err(format!("sites[{index}].{problem}")));
                }
            }
        }
    }

    let store = store::validate(&raw.store).map_err(|problems| errors.extend(problems));
    let keys = load_keys(&raw.keys, dev_key, getenv);
    // The refresh flow signs states and the links it mints with the signing key (the session
    // side signs with the key of the state): that key needs both purposes.
    if let Ok(Some((ring, _))) = &keys {
        let signing = ring.signing_key();
        let refreshes = raw.sites.iter().any(|site| site.session_origin.is_some());
        if refreshes
            && !(signing.allows(Purpose::Download) && signing.allows(Purpose::RefreshState))
        {
            errors.push(format!(
                "keys.purposes.{}: the signing key signs refresh states and the links a \
                 refresh mints (a site has a session_origin): it needs \"download\" and \
                 \"refresh_state\" (it has {})",
                signing.id(),
                signing.purposes()
            ));
        }
    }
    let internal_secret = match &raw.internal.secret {
        None => Ok(None),
        Some(source) => resolve_secret(source, getenv)
            .and_then(|secret| {
                if secret.expose().len() < 16 {
                    Err("must be at least 16 bytes".into())
                } else {
                    Ok(Some(secret))
                }
            })
            .map_err(|e| format!("internal.secret: {e}")),
    };

    if let (Ok(listen), Ok(internal_listen)) = (&listen, &internal_listen) {
        if listen == internal_listen {
            errors.push("server.internal_listen: must differ from server.listen".into());
        }
    }
    let (listen, internal_listen, keys, internal_secret, store) =
        match (listen, internal_listen, keys, internal_secret, store) {
            (Ok(a), Ok(b), Ok(Some(c)), Ok(d), Ok(e)) if errors.is_empty() => (a, b, c, d, e),
            (a, b, c, d, _) => {
                errors.extend(a.err());
                errors.extend(b.err());
                // Ok(None) (key ring skipped) only comes with stage-one problems.
                errors.extend(c.err().into_iter().flatten());
                errors.extend(d.err());
                return Err(ConfigError(errors));
            }
        };
    Ok(Config {
        server: ServerConfig {
            listen,
            internal_listen,
            trusted_peers,
            max_connections: raw.server.max_connections,
            internal_max_connections: raw.server.internal_max_connections,
            header_timeout: std::time::Duration::from_secs(raw.server.header_timeout.0),
            idle_timeout: std::time::Duration::from_secs(raw.server.idle_timeout.0),
            shutdown_grace: std::time::Duration::from_secs(raw.server.shutdown_grace.0),
            workers: raw.server.workers,
        },
        log: LogConfig {
            format,
            level: raw.log.level.clone(),
            audit: raw.log.audit,
        },
        token: TokenConfig {
            param: raw.token.param.clone(),
            from_query: sources.contains(&TokenSource::Query),
            from_authorization: sources.contains(&TokenSource::Authorization),
            from_path: sources.contains(&TokenSource::Path),
            auth_schemes: raw.token.auth_schemes.clone(),
            challenge: raw.token.auth_schemes.join(", "),
            default_ttl: raw.token.default_ttl.0,
            limits: Limits {
                leeway: raw.token.leeway.0,
                max_lifetime,
            },
        },
        keys: keys.0,
        key_origin: keys.1,
        accel: AccelConfig {
            internal_prefix: internal_prefix.clone(),
            content_disposition,
            limit_rate: (raw.accel.limit_rate > 0).then_some(raw.accel.limit_rate),
            buffering,
            max_expires: raw.accel.max_expires.0,
            overrides,
        },
        refresh: RefreshConfig {
            state_ttl: raw.refresh.state_ttl.0,
            token_ttl: raw.refresh.token_ttl.0,
            max_attempts: raw.refresh.max_attempts,
            loop_window: raw.refresh.loop_window.0,
        },
        internal_secret,
        sites,
        store,
    })
}

/// `token.sources` and `token.auth_schemes`: known names, each once, and schemes that are
/// HTTP tokens (RFC 9110 §11.1), since they are matched against headers and named in
/// `WWW-Authenticate`.
fn token_sources(raw: &raw::RawToken) -> Result<Vec<TokenSource>, Vec<String>> {
    let mut errors = Vec::new();
    let mut sources = Vec::new();
    for name in &raw.sources {
        let source = match name.as_str() {
            "query" => TokenSource::Query,
            "authorization" => TokenSource::Authorization,
            "path" => TokenSource::Path,
            // The grant cookie is a site's (it needs the site's name and SameSite).
            "cookie" => {
                errors.push(
                    "token.sources: \"cookie\" is turned on per site, with the site's \
                     cookie_grant"
                        .into(),
                );
                continue;
            }
            other => {
                errors.push(format!(
                    "token.sources: {other:?} is not \"query\", \"path\" or \"authorization\""
                ));
                continue;
            }
        };
        if sources.contains(&source) {
            errors.push(format!("token.sources: {name:?} is listed twice"));
        }
        sources.push(source);
    }
    if raw.sources.is_empty() {
        errors.push(
            "token.sources: name at least one of \"query\", \"path\" and \"authorization\"".into(),
        );
    }
    for (index, scheme) in raw.auth_schemes.iter().enumerate() {
        if scheme.is_empty() || !scheme.bytes().all(crate::gate::is_tchar) {
            errors.push(format!(
                "token.auth_schemes: {scheme:?} is not an HTTP authentication scheme (letters, digits, no spaces)"
            ));
        }
        if raw.auth_schemes[..index]
            .iter()
            .any(|earlier| earlier.eq_ignore_ascii_case(scheme))
        {
            errors.push(format!(
                "token.auth_schemes: {scheme:?} is listed twice (schemes ignore case)"
            ));
        }
    }
    if sources.contains(&TokenSource::Authorization) && raw.auth_schemes.is_empty() {
        errors.push(
            "token.auth_schemes: name at least one scheme when token.sources has \"authorization\""
                .into(),
        );
    }
    if errors.is_empty() {
        Ok(sources)
    } else {
        Err(errors)
    }
}

/// True when both sites refresh through the same session host and one refresh path lies at or
/// below the other's (so one refresh URL could be read as either site's).
fn shares_refresh_location(a: &Site, b: &Site) -> bool {
    let (Some(a), Some(b)) = (&a.refresh, &b.refresh) else {
        return false;
    };
    let nested = |outer: &str, inner: &str| {
        inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    a.session_host == b.session_host
        && (nested(&a.refresh_path, &b.refresh_path) || nested(&b.refresh_path, &a.refresh_path))
}

fn parse_listen(text: &str) -> Result<ListenAddr, String> {
    if let Some(path) = text.strip_prefix("unix:") {
        if !path.starts_with('/') {
            return Err(format!("{text:?}: a Unix socket path must be absolute"));
        }
        return Ok(ListenAddr::Unix(PathBuf::from(path)));
    }
    text.parse()
        .map(ListenAddr::Tcp)
        .map_err(|_| format!("{text:?} is neither host:port nor unix:/path"))
}

/// Parses an origin (`scheme://host[:port]`, nothing else) into its serialisation and host.
fn parse_origin(text: &str) -> Result<(String, String), String> {
    let url = url::Url::parse(text).map_err(|e| format!("{text:?}: {e}"))?;
    let plain = matches!(url.scheme(), "http" | "https")
        && url.username().is_empty()
        && url.password().is_none()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none();
    let host = url.host_str().filter(|_| plain).ok_or_else(|| {
        format!(
            "{text:?} must be an origin like https://media.example.org (no path, user or query)"
        )
    })?;
    Ok((
        url.origin().ascii_serialization(),
        host.to_ascii_lowercase(),
    ))
}

/// One `[[sites]]` entry; every problem, each as `field: message`.
fn validate_site(raw: &raw::RawSite) -> Result<Site, Vec<String>> {
    let mut errors = Vec::new();
    if !crate::token::is_kid(raw.id.as_bytes()) {
        errors.push(format!(
            "id: {:?} must be 1-32 of A-Z a-z 0-9 . _ -",
            raw.id
        ));
    }
    let media = parse_origin(&raw.media_origin)
        .map_err(|e| errors.push(format!("media_origin: {e}")))
        .ok();
    let refresh = raw.session_origin.as_ref().and_then(|origin| {
        let session_origin = parse_origin(origin)
            .map_err(|e| errors.push(format!("session_origin: {e}")))
            .ok();
        let refresh_path = raw.refresh_path.trim_end_matches('/');
        if refresh_path.is_empty()
            || path::canonicalize(refresh_path).ok().as_deref() != Some(refresh_path)
        {
            errors.push(format!(
                "refresh_path: {:?} is not a canonical path",
                raw.refresh_path
            ));
        }
        let login_url = match &raw.login_url {
            None => None,
            Some(login) => match url::Url::parse(login) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.fragment().is_none() => {
                    Some(url.to_string())
                }
                Ok(_) => {
                    errors.push("login_url: must be an http(s) URL without fragment".into());
                    None
                }
                Err(e) => {
                    errors.push(format!("login_url: {e}"));
                    None
                }
            },
        };
        let (session_origin, session_host) = session_origin?;
        Some(SiteRefresh {
            session_origin,
            session_host,
            refresh_path: refresh_path.to_owned(),
            login_url,
            login_param: raw.login_param.clone(),
        })
    });
    let mut public_prefixes = Vec::new();
    for prefix in &raw.public_prefixes {
        match path::canonical_prefix(prefix) {
            Ok(prefix) => public_prefixes.push(prefix),
            Err(e) => errors.push(format!("public_prefixes: {prefix:?}: {e}")),
        }
    }
    let pages = raw.pages_dir.as_deref().and_then(|dir| {
        load_pages(Path::new(dir))
            .map_err(|problems| {
                errors.extend(
                    problems
                        .into_iter()
                        .map(|e| format!("pages_dir: {dir}: {e}")),
                )
            })
            .ok()
    });
    let files_root = raw.files_root.as_deref().and_then(|root| {
        files_root(root)
            .map_err(|e| errors.push(format!("files_root: {e}")))
            .ok()
    });
    let link_form = raw.link_form.parse().unwrap_or_else(|error| {
        errors.push(format!("link_form: {error}"));
        LinkForm::Query
    });
    let playback_grant = match raw.playback_grant {
        Some(raw::Duration(0)) => {
            errors.push("playback_grant: must be longer than 0 s (leave it out for none)".into());
            None
        }
        other => other.map(|duration| duration.0),
    };
    let cookie_grant = raw.cookie_grant.as_ref().and_then(|grant| {
        if let Some(problem) = cookie::name_problem(&grant.name) {
            errors.push(format!("cookie_grant.name: {:?} {problem}", grant.name));
        }
        let same_site = cookie::SameSite::from_config(&grant.same_site);
        if same_site.is_none() {
            errors.push(format!(
                "cookie_grant.same_site: {:?} is not \"lax\", \"strict\" or \"none\"",
                grant.same_site
            ));
        }
        // The cookie is Secure: browsers store one only from a secure context, which an
        // http origin is only on loopback (`localhost`, `*.localhost`, 127.0.0.1, [::1]).
        if let Some((origin, host)) = media.as_ref() {
            if !origin.starts_with("https://") && !is_loopback_host(host) {
                errors.push(format!(
                    "cookie_grant: the grant cookie is Secure, which browsers keep only from \
                     https origins (or localhost), and media_origin is {origin:?}"
                ));
            }
        }
        Some(CookieGrant {
            name: grant.name.clone(),
            same_site: same_site?,
        })
    });
    match media {
        Some((media_origin, media_host)) if errors.is_empty() => Ok(Site {
            id: raw.id.clone(),
            media_origin,
            media_host,
            refresh,
            public_prefixes,
            pages,
            files_root,
            link_form,
            playback_grant,
            cookie_grant,
        }),
        _ => Err(errors),
    }
}

/// Whether browsers treat an http origin on `host` as a secure context (loopback only).
fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host.ends_with(".localhost")
        || host == "[::1]"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `files_root`: an absolute path to an existing directory, resolved once (symbolic links
/// followed), so that a file's resolved path can be checked to lie below it.
fn files_root(text: &str) -> Result<PathBuf, String> {
    let path = Path::new(text);
    if !path.is_absolute() {
        return Err(format!("{text:?} is not an absolute path"));
    }
    let resolved = std::fs::canonicalize(path).map_err(|e| format!("{text:?}: {e}"))?;
    if !resolved.is_dir() {
        return Err(format!("{text:?} is not a directory"));
    }
    Ok(resolved)
}

/// A site's denial pages: every file in `dir` must be `<reason or default>.<html or txt>`,
/// UTF-8, at most [`pages::MAX_PAGE_BYTES`]; anything else is refused (a misspelt name would
/// silently leave the built-in page in place). Dot files are ignored.
fn load_pages(dir: &Path) -> Result<Pages, Vec<String>> {
    let entries = std::fs::read_dir(dir).map_err(|e| vec![e.to_string()])?;
    let mut pages = Pages::default();
    let mut errors = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        };
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if !Pages::is_page_name(&name) {
            errors.push(format!(
                "{name:?} is not <reason>.html, <reason>.txt, default.html or default.txt"
            ));
            continue;
        }
        match read_page(&entry.path()) {
            Ok(bytes) if bytes.len() > pages::MAX_PAGE_BYTES => errors.push(format!(
                "{name}: larger than {} bytes",
                pages::MAX_PAGE_BYTES
            )),
            Ok(bytes) if std::str::from_utf8(&bytes).is_err() => {
                errors.push(format!("{name}: not UTF-8"));
            }
            Ok(bytes) => pages.insert(name, bytes.into()),
            Err(e) => errors.push(format!("{name}: {e}")),
        }
    }
    if errors.is_empty() {
        Ok(pages)
    } else {
        errors.sort();
        Err(errors)
    }
}

/// A page file's bytes, reading at most one byte past the limit: a FIFO or a device named like
/// a page must not hang start-up or a reload, nor a huge file fill memory.
fn read_page(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    if !std::fs::metadata(path)?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(pages::MAX_PAGE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The key ring, or `None` when it needs the development key and `dev_key` is
/// [`DevKey::Skip`]. Every problem names its key (`keys.secrets.<id>: …`).
fn load_keys(
    raw: &raw::RawKeys,
    dev_key: DevKey,
    getenv: Getenv,
) -> Result<Option<(KeyRing, KeyOrigin)>, Vec<String>> {
    if raw.secrets.is_empty() {
        if !raw.dev_key {
            return Err(vec![
                "keys.dev_key: no keys configured and keys.dev_key = false; add [keys.secrets] \
                 (generate one with `mediagate keygen`)"
                    .into(),
            ]);
        }
        if dev_key == DevKey::Skip {
            return Ok(None);
        }
        let development = || -> Result<(KeyRing, KeyOrigin), String> {
            let file = dev_key::location(&raw.dev_key_file)?;
            let secret = dev_key::load_or_create(&file)?;
            let key = Key::new(dev_key::KEY_ID, &secret).map_err(|e| e.to_string())?;
            let ring = KeyRing::new(vec![key], dev_key::KEY_ID).map_err(|e| e.to_string())?;
            Ok((ring, KeyOrigin::Development(file)))
        };
        return development()
            .map(Some)
            .map_err(|e| vec![format!("keys.dev_key_file: {e}")]);
    }
    let mut keys = Vec::new();
    let mut errors = Vec::new();
    for (id, source) in &raw.secrets {
        match resolve_secret(source, getenv)
            .and_then(|secret| Key::new(id, &secret).map_err(|e| e.to_string()))
        {
            Ok(key) => keys.push(key),
            Err(e) => errors.push(format!("keys.secrets.{id}: {e}")),
        }
    }
    let signing = match (&raw.signing, raw.secrets.len()) {
        (Some(signing), _) => signing.clone(),
        (None, 1) => raw.secrets.keys().next().cloned().unwrap_or_default(),
        (None, _) => {
            errors.push("keys.signing: name the key new tokens are signed with".into());
            String::new()
        }
    };
    if !errors.is_empty() {
        if !signing.is_empty() && !raw.secrets.contains_key(&signing) {
            errors.push(format!(
                "keys.signing: {}",
                KeyError::UnknownSigningKey(signing)
            ));
        }
        return Err(errors);
    }
    let keys = limit_purposes(keys, &raw.purposes)?;
    let ring = KeyRing::new(keys, &signing).map_err(|e| vec![format!("keys.signing: {e}")])?;
    Ok(Some((ring, KeyOrigin::Configured)))
}

/// Applies `[keys.purposes]`: each entry names a configured key and a non-empty list of
/// known purposes, each once. Keys without an entry keep every purpose.
fn limit_purposes(
    keys: Vec<Key>,
    raw: &std::collections::BTreeMap<String, Vec<String>>,
) -> Result<Vec<Key>, Vec<String>> {
    let mut errors = Vec::new();
    for id in raw.keys() {
        if !keys.iter().any(|key| key.id() == id) {
            errors.push(format!(
                "keys.purposes.{id}: no key {id:?} in [keys.secrets]"
            ));
        }
    }
    let mut limited = Vec::with_capacity(keys.len());
    for key in keys {
        let Some(names) = raw.get(key.id()) else {
            limited.push(key);
            continue;
        };
        let mut purposes = Vec::new();
        for name in names {
            match Purpose::from_name(name) {
                Some(purpose) if purposes.contains(&purpose) => errors.push(format!(
                    "keys.purposes.{}: {name:?} is named twice",
                    key.id()
                )),
                Some(purpose) => purposes.push(purpose),
                None => errors.push(format!(
                    "keys.purposes.{}: {name:?} is not \"download\", \"upload\", \"refresh_state\" or \"api\"",
                    key.id()
                )),
            }
        }
        match Purposes::of(purposes) {
            Some(purposes) => limited.push(key.with_purposes(purposes)),
            None if names.is_empty() => errors.push(format!(
                "keys.purposes.{}: empty list (a key for nothing; remove the key instead)",
                key.id()
            )),
            None => {}
        }
    }
    if errors.is_empty() {
        Ok(limited)
    } else {
        Err(errors)
    }
}

fn resolve_secret(source: &SecretSource, getenv: Getenv) -> Result<Secret, String> {
    match source {
        SecretSource::Inline(text) => Secret::from_base64(text).map_err(|e| e.to_string()),
        SecretSource::File { file } => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read secret file {file:?}: {e}"))?;
            Secret::from_base64(&text).map_err(|e| format!("{file:?}: {e}"))
        }
        SecretSource::Env { env } => {
            let text = getenv(env)
                .ok_or_else(|| format!("environment variable {env} is not set"))?
                .into_string()
                .map_err(|_| format!("environment variable {env} is not valid UTF-8"))?;
            Secret::from_base64(&text).map_err(|e| format!("${env}: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(workers: usize) -> ServerConfig {
        ServerConfig {
            listen: ListenAddr::Unix("verify.sock".into()),
            internal_listen: ListenAddr::Unix("internal.sock".into()),
            trusted_peers: Vec::new(),
            max_connections: 1,
            internal_max_connections: 1,
            header_timeout: std::time::Duration::from_secs(1),
            idle_timeout: std::time::Duration::from_secs(1),
            shutdown_grace: std::time::Duration::from_secs(1),
            workers,
        }
    }

    /// Loads `sites` (TOML `[[sites]]` entries) with a fixed key and no environment.
    fn load_sites(name: &str, sites: &str) -> Result<Config, ConfigError> {
        let file =
            std::env::temp_dir().join(format!("mediagate-{name}-{}.toml", std::process::id()));
        std::fs::write(
            &file,
            format!(
                "[keys]\ndev_key = false\n[keys.secrets]\n\
                 k1 = \"QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI\"\n{sites}"
            ),
        )
        .unwrap();
        let result = load_with_env(Some(&file), Vec::new());
        std::fs::remove_file(&file).unwrap();
        result
    }

    #[test]
    fn sites_sharing_a_refresh_location_are_refused() {
        let site = |id: &str, media: &str, refresh_path: &str| {
            format!(
                "[[sites]]\nid = \"{id}\"\nmedia_origin = \"https://{media}\"\n\
                 session_origin = \"https://www.example.org\"\nrefresh_path = \"{refresh_path}\"\n"
            )
        };
        let a = site("a", "media-a.example.org", "/_mediagate/refresh");
        for (b, refused) in [
            (
                site("b", "media-b.example.org", "/_mediagate/refresh"),
                true,
            ),
            (
                site("b", "media-b.example.org", "/_mediagate/refresh/b"),
                true,
            ),
            (
                site("b", "media-b.example.org", "/_mediagate/refresh-b"),
                false,
            ),
            (site("b", "media-b.example.org", "/_mediagate/b"), false),
        ] {
            let result = load_sites("sharedrefresh", &format!("{a}{b}"));
            match (result, refused) {
                (Err(error), true) => {
                    let text = error.to_string();
                    assert!(
                        text.contains("sites[1].refresh_path: site \"a\" already refreshes"),
                        "{text}"
                    );
                }
                (Ok(config), false) => assert_eq!(config.sites.len(), 2),
                (result, _) => panic!("{b}: {result:?}"),
            }
        }
        // Another session domain may use the same path.
        let other_session = a
            .replace("a\"", "c\"")
            .replace("media-a", "media-c")
            .replace("www.", "www2.");
        assert!(load_sites("othersession", &format!("{a}{other_session}")).is_ok());
    }

    #[test]
    fn one_refresh_attempt_is_refused_when_a_login_detour_needs_another() {
        let site = "[[sites]]\nid = \"a\"\nmedia_origin = \"https://media.example.org\"\n\
                    session_origin = \"https://www.example.org\"\n";
        let login = "login_url = \"https://www.example.org/login\"\n";
        let error = load_sites(
            "oneattempt",
            &format!("[refresh]\nmax_attempts = 1\n{site}{login}"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("refresh.max_attempts: must be at least 2 when a site has a login_url"),
            "{error}"
        );
        assert!(load_sites(
            "oneattempt-nologin",
            &format!("[refresh]\nmax_attempts = 1\n{site}")
        )
        .is_ok());
    }

    #[test]
    fn a_page_that_is_not_a_regular_file_is_refused_without_reading_it() {
        let dir = std::env::temp_dir().join(format!("mediagate-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("default.html");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        // Reading a FIFO nobody writes to would block forever.
        let error = load_pages(&dir).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(error, ["default.html: not a regular file"]);
    }

    #[test]
    fn automatic_threads_are_a_quarter_of_the_cpus_and_at_least_one() {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(server(0).threads(), cpus.div_ceil(4));
        assert!(server(0).threads() >= 1);
        assert_eq!(server(3).threads(), 3);
    }

    #[test]
    fn a_reload_keeps_every_restart_only_setting_and_names_the_changed_ones() {
        let running = load_sites("restartonly-running", "").unwrap();
        let mut reloaded = load_sites(
            "restartonly-new",
            "[server]\nlisten = \"unix:/elsewhere.sock\"\n\
             internal_listen = \"unix:/elsewhere-internal.sock\"\n\
             max_connections = 7\ninternal_max_connections = 7\nworkers = 7\n\
             idle_timeout = \"99s\"\n[log]\nformat = \"json\"\nlevel = \"debug\"\naudit = false\n\
             [store]\npath = \"/elsewhere/state.redb\"\nrevocation_poll = \"900ms\"\n\
             history_entries = 3\n",
        )
        .unwrap();
        assert_eq!(reloaded.keep_restart_only(&running), RESTART_ONLY);
        assert_eq!(reloaded.server.listen, running.server.listen);
        assert_eq!(
            reloaded.server.internal_listen,
            running.server.internal_listen
        );
        assert_eq!(
            reloaded.server.max_connections,
            running.server.max_connections
        );
        assert_eq!(
            reloaded.server.internal_max_connections,
            running.server.internal_max_connections
        );
        assert_eq!(reloaded.server.workers, running.server.workers);
        assert_eq!(reloaded.log.format, running.log.format);
        assert_eq!(reloaded.log.level, running.log.level);
        assert_eq!(reloaded.store.backend, running.store.backend);
        assert_eq!(
            reloaded.store.revocation_poll,
            running.store.revocation_poll
        );
        // Everything else is the new value.
        assert_eq!(reloaded.server.idle_timeout.as_secs(), 99);
        assert_eq!(reloaded.store.retention.max_entries, 3);
        assert!(!reloaded.log.audit);
        // Unchanged settings are not reported.
        let mut same = load_sites("restartonly-same", "").unwrap();
        assert!(same.keep_restart_only(&running).is_empty());
    }

    #[test]
    fn a_cookie_grant_is_validated_and_off_unless_configured() {
        let site = |origin: &str, grant: &str| {
            format!("[[sites]]\nid = \"a\"\nmedia_origin = \"{origin}\"\n{grant}\n")
        };
        let config = load_sites("cookie-off", &site("https://m.example.org", "")).unwrap();
        assert_eq!(config.sites[0].cookie_grant, None);
        let config = load_sites(
            "cookie-default",
            &site("https://m.example.org", "cookie_grant = {}"),
        )
        .unwrap();
        assert_eq!(
            config.sites[0].cookie_grant,
            Some(CookieGrant {
                name: "mediagate_grant".into(),
                same_site: SameSite::Lax,
            })
        );
        for (origin, same_site) in [
            ("http://media.localhost:8080", "none"),
            ("http://media.example.localhost", "strict"),
            ("http://127.0.0.1:8080", "lax"),
            ("http://[::1]", "lax"),
        ] {
            let grant = format!("cookie_grant = {{ name = \"g\", same_site = \"{same_site}\" }}");
            let config = load_sites("cookie-ok", &site(origin, &grant)).unwrap();
            assert_eq!(
                config.sites[0].cookie_grant.as_ref().map(|g| g.same_site),
                SameSite::from_config(same_site),
                "{origin}"
            );
        }
        for (origin, grant, expected) in [
            (
                "https://m.example.org",
                "cookie_grant = { name = \"a b\" }",
                "sites[0].cookie_grant.name: \"a b\" must be an RFC 6265 cookie name",
            ),
            (
                "https://m.example.org",
                "cookie_grant = { name = \"__Host-g\" }",
                "sites[0].cookie_grant.name: \"__Host-g\" must not start with __Host-",
            ),
            (
                "https://m.example.org",
                "cookie_grant = { name = \"\" }",
                "sites[0].cookie_grant.name: \"\" must be 1 to 64 bytes long",
            ),
            (
                "https://m.example.org",
                "cookie_grant = { same_site = \"Lax\" }",
                "sites[0].cookie_grant.same_site: \"Lax\" is not \"lax\", \"strict\" or \"none\"",
            ),
            (
                "http://media.example.org",
                "cookie_grant = {}",
                "sites[0].cookie_grant: the grant cookie is Secure",
            ),
            (
                "https://m.example.org",
                "cookie_grant = { domain = \"example.org\" }",
                "domain",
            ),
            (
                "https://m.example.org",
                "cookie_grant = {}\n[token]\nsources = [\"authorization\"]\nauth_schemes = [\"Bearer\"]",
                "sites[0].cookie_grant: only a link with its token in the URL sets the grant cookie",
            ),
        ] {
            let text = load_sites("cookie-bad", &site(origin, grant))
                .unwrap_err()
                .to_string();
            assert!(text.contains(expected), "{grant}: {text}");
        }
    }
}
