//! The command line: `serve`, `sign`, `inspect`, `keygen`, `check-config`, `probe`, the state
//! commands `revoke`, `revocations` and `uses` (clients of the running server, see
//! [`crate::remote`]), and the hidden `generate` (man pages and completions for packaging).
//!
//! Thin: each command parses its arguments, calls into the library and prints. `inspect` is
//! the support tool: it shows every field of a token and, with the key, exactly which bytes
//! were signed and why a given request does or does not verify.

use std::path::PathBuf;
use std::str::FromStr;

use clap::{Parser, Subcommand};

use crate::config::{self, Config, KeyOrigin, LinkForm};
use crate::gate::{self, Authorization, MediaRequest, Outcome};
use crate::keys::Secret;
use crate::mint::{mint, MintInput, MintPurpose, ScopeInput};
use crate::path;
use crate::reason::Reason;
use crate::remote::{self, RemoteError};
use crate::store::revoke::RevokeInput;
use crate::store::revoked::Revoked;
use crate::token::{self, mac, Purpose, Token, TokenBuf};
use crate::{clock, config::raw::Duration};

/// Signed, expiring media links, verified next to nginx.
///
/// Configuration: the embedded defaults, then --config FILE (or MEDIAGATE_CONFIG), then
/// environment variables MEDIAGATE_SECTION__KEY, e.g. MEDIAGATE_SERVER__LISTEN.
#[derive(Debug, Parser)]
#[command(name = "mediagate", version, about, long_about)]
pub struct Cli {
    /// TOML configuration file layered over the embedded defaults.
    #[arg(
        long,
        short,
        global = true,
        env = "MEDIAGATE_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
// Parsed once per run; boxing `sign`'s many flags would only make callers clumsier.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the sidecar: /auth and /accel for the media domain, /refresh and /mint internally.
    Serve,
    /// Print a signed URL for PATH (a file, or with --prefix a whole folder).
    ///
    /// Example: mediagate sign /media/report.pdf --ttl 10m
    // Boxed: the flags outweigh every other variant (clippy::large_enum_variant).
    Sign(Box<SignArgs>),
    /// Show every field of a token (or of the token in a URL) and whether it verifies now.
    ///
    /// The verdict is the one /auth would give for the same request. Exit status: 0 allowed,
    /// 1 denied (the reason is printed), 64 no verdict (no configuration or key, or an
    /// exact-path token without a path). Without the key the fields are still shown: the
    /// signature makes a token trustworthy, not secrecy.
    Inspect(InspectArgs),
    /// Print a new random 256-bit key and the configuration lines that use it.
    Keygen {
        /// Key id to print in the configuration snippet (e.g. the month: 2026-11).
        #[arg(long, default_value = "k1")]
        id: String,
    },
    /// Validate the configuration and print it with secrets redacted.
    CheckConfig,
    /// Ask the running mediagate for /healthz (or --path) on one of its listeners; exit 0 on
    /// 200, 1 otherwise. For orchestrators that cannot reach its sockets (a Kubernetes exec
    /// probe in the distroless image).
    Probe(ProbeArgs),
    /// Revoke one token, every token of a subject, or everything a key signed before a time.
    ///
    /// Asks the running server (server.internal_listen, authenticated with internal.secret):
    /// the store is the server's. Exactly one of --token, --token-id, --subject and --key.
    /// Exit status: 0 revoked, 1 the server refused or could not be reached, 64 usage or
    /// configuration error.
    ///
    /// Example: mediagate revoke --subject alice@example.org
    Revoke(RevokeArgs),
    /// List the revocations in force (kind, what, created, expires), from the running server.
    Revocations(JsonArgs),
    /// Show the recorded uses of a counted token (time, client, status, reason, user agent),
    /// from the running server.
    Uses(UsesArgs),
}

/// Arguments of `revoke`.
#[derive(Debug, clap::Args)]
#[command(group(
    clap::ArgGroup::new("what")
        .required(true)
        .args(["token", "token_id", "subject", "key"])
))]
pub struct RevokeArgs {
    /// A whole token, or a URL holding one (query or path form): revokes its key id and token
    /// id until token.max_lifetime past its expiry (its playback grants included).
    #[arg(long, value_name = "TOKEN_OR_URL")]
    pub token: Option<String>,
    /// A token id (the one `sign` printed or `/mint` returned).
    #[arg(long, value_name = "ID")]
    pub token_id: Option<String>,
    /// The key id the token id belongs to (default: the signing key's).
    // `conflicts_with_all` rather than `requires = "token_id"`: clap lets any member of the
    // required group satisfy a `requires` on one of them (clap-rs/clap#4707).
    #[arg(long, value_name = "K", conflicts_with_all = ["token", "subject", "key"])]
    pub kid: Option<String>,
    /// Every token with this subject.
    #[arg(long, value_name = "S")]
    pub subject: Option<String>,
    /// Every token this key id signed before --before (default: now). Then rotate the key.
    #[arg(long, value_name = "K")]
    pub key: Option<String>,
    /// With --key: the cut-off, as unix seconds or RFC 3339 (2026-11-23T04:12:36Z).
    #[arg(long, value_name = "TIME", conflicts_with_all = ["token", "token_id", "subject"])]
    pub before: Option<String>,
}

/// Arguments of `revocations`.
#[derive(Debug, clap::Args)]
pub struct JsonArgs {
    /// Print the server's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `uses`.
#[derive(Debug, clap::Args)]
pub struct UsesArgs {
    /// The token id.
    pub token_id: String,
    /// The key id the token id belongs to (default: the signing key's).
    #[arg(long, value_name = "K")]
    pub kid: Option<String>,
    /// Print the server's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `mediagate generate …`: the man pages and shell completions, derived from [`Cli`]'s
/// definitions. Used by the Debian package build (scripts/build-deb.sh), so the installed
/// copies always match the binary.
///
/// A parser of its own, dispatched before [`Cli`] by the binary, rather than a hidden
/// subcommand: clap_complete's fish and zsh scripts would still offer a hidden subcommand.
#[derive(Debug, Parser)]
#[command(name = "mediagate generate")]
pub struct GenerateCli {
    /// Which artefact.
    #[command(subcommand)]
    pub what: Generated,
}

/// What `generate` produces.
#[derive(Debug, Subcommand)]
pub enum Generated {
    /// Write mediagate.1 and one mediagate-COMMAND.1 per subcommand into DIR.
    Man {
        /// Directory to write the pages into (must exist).
        dir: PathBuf,
    },
    /// Print the completion script for SHELL.
    Completions {
        /// Target shell.
        shell: clap_complete::Shell,
    },
}

/// Arguments of `probe`.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// Which listener: verify (server.listen) or internal (server.internal_listen).
    #[arg(long, default_value = "verify", value_parser = ["verify", "internal"])]
    pub listener: String,
    /// Path to ask: /healthz (alive) or /readyz (ready; 503 while draining).
    #[arg(long, default_value = "/healthz", value_parser = ["/healthz", "/readyz"])]
    pub path: String,
    /// Seconds to wait for each step (connect, send, first line).
    #[arg(long, default_value_t = 2)]
    pub timeout: u64,
}

/// Arguments of `sign`.
#[derive(Debug, clap::Args)]
pub struct SignArgs {
    /// Path of the file (or folder, with --prefix) on the media domain, e.g. /media/a.pdf.
    /// With --scope, optional: the path the printed URL points at (default: the first
    /// scope's).
    #[arg(required_unless_present = "scopes")]
    pub path: Option<String>,
    /// Lifetime: 30s, 10m, 1h, 7d (default: token.default_ttl).
    #[arg(long)]
    pub ttl: Option<String>,
    /// Make the token valid for every file below PATH (HLS/DASH folders).
    #[arg(long)]
    pub prefix: bool,
    /// Allowed method; repeat for several (default: GET and HEAD).
    #[arg(long = "method", value_name = "METHOD")]
    pub methods: Vec<String>,
    /// Several scopes in one token (format v2), instead of --prefix and --method:
    /// METHODS:PATH, e.g. GET,HEAD:/api/v1/foo/ (a PATH ending in '/' is a prefix) or
    /// PUT:/uploads/x. Give at least two; no method twice for the same path.
    #[arg(long = "scope", value_name = "METHODS:PATH", conflicts_with_all = ["prefix", "methods"])]
    pub scopes: Vec<String>,
    /// Who the token is handed to (format v2), passed upstream as X-Mediagate-Recipient:
    /// 1-128 visible ASCII characters or spaces.
    #[arg(long)]
    pub recipient: Option<String>,
    /// How the link carries the token: query (`?token=`) or path (a `~mg~<token>` segment
    /// after the prefix or in the file's folder, which relative URLs in a playlist keep).
    #[arg(long, value_name = "FORM", default_value = "query", value_parser = LinkForm::from_str)]
    pub form: LinkForm,
    /// Bind to a client address or network, e.g. 203.0.113.0/24.
    #[arg(long)]
    pub ip: Option<String>,
    /// Bind to this media host: a site's media_origin host, lower case, no port. Default: with
    /// several sites, the chosen site's media host; with one site, none.
    #[arg(long)]
    pub host: Option<String>,
    /// Subject / recipient recorded in audit logs.
    #[arg(long)]
    pub subject: Option<String>,
    /// Token id, for audit and revocation. A token with a use limit gets a random one when
    /// none is given (printed on stderr).
    #[arg(long = "id")]
    pub token_id: Option<String>,
    /// Use limit: the token works N times (1 = single use). Needs a token id: --id, else a
    /// random one.
    #[arg(long, value_name = "N")]
    pub uses: Option<u32>,
    /// Mint an upload slot (POST and PUT; single-use unless --uses says otherwise) instead
    /// of a download link.
    #[arg(long)]
    pub upload: bool,
    /// Mint an API token (for a location behind protect-api.conf; token format v2) instead of
    /// a download link. A media location refuses it, as an API location refuses media links.
    #[arg(long, conflicts_with = "upload")]
    pub api: bool,
    /// Sign with this key id instead of keys.signing; the key must be allowed the token's
    /// purpose (keys.purposes).
    #[arg(long, value_name = "KID")]
    pub key: Option<String>,
    /// Bind the link to the current version of its file (size, modification time, inode)
    /// under the site's files_root: it stops working once the file is replaced or changed.
    #[arg(long)]
    pub bind_version: bool,
    /// Upload slots only: the largest body, in bytes or with K, M or G (1024-based): 10M.
    #[arg(long, value_name = "SIZE")]
    pub max_size: Option<String>,
    /// Upload slots only: an allowed media type, lower case without parameters (image/png);
    /// repeat, or give a comma-separated list.
    #[arg(long = "content-type", value_name = "TYPE")]
    pub content_types: Vec<String>,
    /// Stamp the token with the time it was minted (token format v2) even when nothing else
    /// needs it, so a revocation by time can cover it.
    #[arg(long)]
    pub issued_at: bool,
    /// Download links only: the name the browser saves the file as (UTF-8, e.g.
    /// "Résumé 2026.pdf"). Needs "filename" in accel.overrides.
    #[arg(long, value_name = "NAME")]
    pub filename: Option<String>,
    /// Download links only: "inline" (show) or "attachment" (save). Needs "disposition" in
    /// accel.overrides.
    #[arg(long, value_name = "KIND")]
    pub disposition: Option<String>,
    /// Download links only: how long the browser may keep the file: 30s, 10m, 1h, 7d
    /// (Cache-Control: private, max-age=N). Needs "max_age" in accel.overrides.
    #[arg(long, value_name = "DURATION")]
    pub max_age: Option<String>,
    /// Site id whose media origin starts the URL (and, with several sites, whose media host
    /// the token is bound to). Default: the first site.
    #[arg(long)]
    pub site: Option<String>,
    /// Origin to prefix the path with (default: the site's media_origin).
    #[arg(long)]
    pub base: Option<String>,
    /// Print only the token, not the URL.
    #[arg(long)]
    pub token_only: bool,
}

/// Arguments of `inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// A URL with a token parameter, a path?query, or a bare token.
    pub input: String,
    /// Request path to check against (default: the URL's path).
    #[arg(long)]
    pub path: Option<String>,
    /// Request method to check against (case-sensitive, as nginx passes it).
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// Media host whose nginx server takes the request ($server_name, which selects the site).
    /// Default: the URL's host, else the first site's media host.
    #[arg(long)]
    pub host: Option<String>,
    /// Client address to check against.
    #[arg(long)]
    pub ip: Option<String>,
}

/// Loads the configuration, exiting through the caller on error.
pub fn load_config(cli: &Cli) -> Result<Config, config::ConfigError> {
    config::load(cli.config.as_deref())
}

/// What `sign` prints: the URL (or token) for stdout, and a note for stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The signed URL, or the bare token with `--token-only`.
    pub output: String,
    /// Said on stderr (so that stdout stays one URL): the generated token id, when the
    /// token got one.
    pub note: Option<String>,
}

/// `mediagate sign`: the flags become a [`MintInput`], exactly like a `POST /mint` body.
pub fn sign(config: &Config, args: &SignArgs) -> anyhow::Result<Signed> {
    let ttl = args
        .ttl
        .as_deref()
        .map(Duration::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let max_size = args
        .max_size
        .as_deref()
        .map(crate::mint::parse_size)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    // `--content-type a/b --content-type c/d` and `--content-type a/b,c/d` mean the same.
    let content_types: Vec<String> = args
        .content_types
        .iter()
        .flat_map(|list| list.split(','))
        .map(str::to_owned)
        .collect();
    let max_age = args
        .max_age
        .as_deref()
        .map(Duration::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let scopes = args
        .scopes
        .iter()
        .map(|flag| ScopeInput::parse_flag(flag))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    let input = MintInput {
        path: args.path.clone().unwrap_or_default(),
        scopes: (!scopes.is_empty()).then_some(scopes),
        recipient: args.recipient.clone(),
        form: args.form,
        prefix: args.prefix,
        ttl,
        methods: (!args.methods.is_empty()).then(|| args.methods.clone()),
        ip: args.ip.clone(),
        host: args.host.clone(),
        subject: args.subject.clone(),
        token_id: args.token_id.clone(),
        site: args.site.clone(),
        purpose: match (args.upload, args.api) {
            (true, _) => Some(MintPurpose::Upload),
            (false, true) => Some(MintPurpose::Api),
            (false, false) => None,
        },
        key: args.key.clone(),
        bind_version: args.bind_version,
        uses: args.uses,
        max_size,
        content_types: (!args.content_types.is_empty()).then_some(content_types),
        issued_at: args.issued_at,
        filename: args.filename.clone(),
        disposition: args.disposition.clone(),
        max_age,
        ..MintInput::default()
    };
    let (mut request, site) = input.resolve(config)?;
    if let (true, Some(root)) = (
        args.bind_version,
        site.and_then(|site| site.files_root.as_deref()),
    ) {
        request.file_version = Some(crate::mint::resolve_file_version(root, &request)?);
    }
    let minted = mint(config, &request, clock::now())?;
    let note = match (&args.token_id, &minted.token_id) {
        (None, Some(generated)) => Some(format!(
            "token id {generated} (generated: `mediagate uses` and revocation name the token by it)"
        )),
        _ => None,
    };
    if args.token_only {
        return Ok(Signed {
            output: minted.token,
            note,
        });
    }
    let base = match &args.base {
        Some(base) => base.trim_end_matches('/').to_owned(),
        None => site
            .map(|site| site.media_origin.clone())
            .unwrap_or_default(),
    };
    Ok(Signed {
        output: format!("{base}{}", minted.path_and_query),
        note,
    })
}

/// `mediagate generate`: the man pages (written into a directory, returning the file names)
/// or a completion script (returned as text). Both are derived from [`Cli`]'s definitions.
pub fn generate(what: &Generated) -> anyhow::Result<String> {
    use clap::CommandFactory;
    let command = Cli::command();
    match what {
        Generated::Man { dir } => {
            clap_mangen::generate_to(command, dir).map_err(|error| {
                anyhow::anyhow!("cannot write man pages to {}: {error}", dir.display())
            })?;
            let mut pages = std::fs::read_dir(dir)?
                .filter_map(|entry| entry.ok())
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with("mediagate") && name.ends_with(".1"))
                .collect::<Vec<_>>();
            pages.sort();
            Ok(pages.join("\n"))
        }
        Generated::Completions { shell } => {
            let mut command = command;
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut command, "mediagate", &mut script);
            String::from_utf8(script).map_err(|_| anyhow::anyhow!("completion script is not UTF-8"))
        }
    }
}

/// `mediagate probe`: one health request to the configured listener.
pub fn probe(config: &Config, args: &ProbeArgs) -> anyhow::Result<String> {
    let addr = match args.listener.as_str() {
        "internal" => &config.server.internal_listen,
        _ => &config.server.listen,
    };
    let timeout = std::time::Duration::from_secs(args.timeout.max(1));
    crate::probe::probe(addr, &args.path, timeout)?;
    Ok(format!("{} {}: ok", args.listener, args.path))
}

/// `mediagate revoke`: the flags become a [`RevokeInput`], exactly like a `POST /revoke` body.
pub fn revoke(config: &Config, args: &RevokeArgs) -> Result<String, RemoteError> {
    let before = args
        .before
        .as_deref()
        .map(remote::parse_time)
        .transpose()
        .map_err(|why| RemoteError::Usage(format!("--before {why}")))?;
    let input = RevokeInput {
        token: args.token.clone(),
        token_id: args.token_id.clone(),
        kid: args.kid.clone(),
        subject: args.subject.clone(),
        key: args.key.clone(),
        before,
    };
    remote::revoke(config, &input)
}

/// `mediagate keygen`.
pub fn keygen(id: &str) -> anyhow::Result<String> {
    if !token::is_kid(id.as_bytes()) {
        anyhow::bail!("key id {id:?} must be 1-32 characters of A-Z a-z 0-9 . _ -");
    }
    let secret = Secret::generate()?;
    Ok(format!(
        "{secret}\n\n# In mediagate.toml (or keep the secret in a file: {{ file = \"/run/secrets/{id}\" }}):\n\
         [keys]\nsigning = \"{id}\"\ndev_key = false\n[keys.secrets]\n\"{id}\" = \"{secret}\"\n",
        secret = secret.to_base64()
    ))
}

/// `mediagate check-config`.
pub fn check_config(cli: &Cli, config: &Config) -> anyhow::Result<String> {
    let raw: config::RawConfig = config::figment(cli.config.as_deref()).extract()?;
    let mut out = toml::to_string_pretty(&raw)?;
    out.push_str("\n# Effective key ring (signing key first): ");
    out.push_str(&config.keys.ids().join(", "));
    if let KeyOrigin::Development(file) = &config.key_origin {
        out.push_str(&format!(
            "\n# WARNING: development key from {}; not for production (set keys.dev_key = false)",
            file.display()
        ));
    }
    if config.internal_secret.is_none() {
        out.push_str(
            "\n# NOTE: internal.secret is not set: /mint and /refresh refuse every request",
        );
    }
    out.push('\n');
    Ok(out)
}

/// Exit status of `inspect` when the request would be denied.
pub const EXIT_DENIED: u8 = 1;
/// Exit status of `inspect` when no verdict is possible (no configuration or key, or not
/// enough of a request to judge): the same code as every usage or configuration error.
pub const EXIT_NO_VERDICT: u8 = 64;

/// What `inspect` found: the report to print and the verdict it ends with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// The report, one `name  value` line per field, the verdict last.
    pub text: String,
    /// `/auth`'s verdict for the request.
    pub verdict: Verdict,
}

/// `inspect`'s conclusion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// `/auth` would allow the request (a valid token, or a public path).
    Allowed,
    /// `/auth` would deny the request (or send the browser for a fresh link) for this reason.
    Denied(Reason),
    /// No verdict: the configuration (and so the key) or the request path is missing.
    Unknown,
}

impl Inspection {
    /// The process exit status: 0 allowed, [`EXIT_DENIED`], or [`EXIT_NO_VERDICT`].
    pub fn exit_code(&self) -> u8 {
        match self.verdict {
            Verdict::Allowed => 0,
            Verdict::Denied(_) => EXIT_DENIED,
            Verdict::Unknown => EXIT_NO_VERDICT,
        }
    }
}

/// `mediagate inspect`: fields, MAC input and verdict. `config` is `None` when the
/// configuration (and so the key) could not be loaded; the fields are still shown.
///
/// The verdict is [`gate::decide`]'s, for the request `/auth` would see: the same steps in the
/// same order (site, path, public prefix, token parameter, then the token checks of spec
/// §10), so `inspect` and `/auth` cannot disagree. The input is taken verbatim (no trimming).
/// Errors are usage errors (an unreadable `--ip`).
pub fn inspect(
    config: Option<&Config>,
    args: &InspectArgs,
    now: u64,
) -> anyhow::Result<Inspection> {
    let param = config.map_or("token", |config| config.token.param.as_str());
    let input = InspectInput::parse(&args.input);
    let client_ip = args
        .ip
        .as_deref()
        .map(|ip| {
            ip.parse::<std::net::IpAddr>()
                .map_err(|_| anyhow::anyhow!("--ip {ip:?} is not an IP address"))
        })
        .transpose()?;
    // The token text exactly as /auth would read it from the query.
    let token_text = match input.query {
        None => Ok(Some(input.token)),
        Some(query) => path::query_param(query, param),
    };
    let mut out = String::new();
    let mut buf = TokenBuf::new();
    let decoded = match token_text {
        Ok(Some(text)) if !text.is_empty() => Some(token::decode(text, &mut buf)),
        _ => None,
    };
    match &decoded {
        Some(Ok(token)) => describe(&mut out, token, config, now),
        Some(Err(error)) => out.push_str(&format!("token       {error}\n")),
        None => {}
    }
    let unknown = |mut out: String, why: &str| {
        out.push_str(&format!("verdict     unknown: {why}\n"));
        Ok(Inspection {
            text: out,
            verdict: Verdict::Unknown,
        })
    };
    let Some(config) = config else {
        return unknown(out, "no configuration/key available to check the signature");
    };
    // The request path as nginx would pass it (percent-encoded): --path, else the URL's, else
    // a prefix token's own prefix.
    let prefix = decoded
        .as_ref()
        .and_then(|decoded| decoded.as_ref().ok())
        .and_then(|token| {
            token.prefix.or_else(|| {
                token
                    .scopes
                    .and_then(|scopes| scopes.iter().next())
                    .map(|e| e.path)
            })
        });
    let raw_path = match (args.path.as_deref(), input.path, prefix) {
        (Some(path), _, _) | (None, Some(path), _) => path.to_owned(),
        (None, None, Some(prefix)) => path::encode_path(prefix),
        (None, None, None) => {
            return unknown(out, "an exact-path token needs --path (or a URL) to check")
        }
    };
    let uri = match (input.query, args.path.is_some()) {
        (Some(query), false) => format!("{raw_path}?{query}"),
        _ => match token_text {
            Ok(Some(text)) => format!("{raw_path}?{param}={text}"),
            _ => format!("{raw_path}?{}", input.query.unwrap_or("")),
        },
    };
    // The media `server { }` that takes the request (nginx's $server_name): it selects the
    // site, whose configured media host is the request host a token's `host` must equal.
    let server_name = match (args.host.as_deref(), input.host) {
        (Some(host), _) => host.to_owned(),
        (None, Some(host)) => host.to_ascii_lowercase(),
        (None, None) => config
            .sites
            .first()
            .map(|site| site.media_host.clone())
            .unwrap_or_default(),
    };
    if let Some(Ok(token)) = &decoded {
        let canonical = path::split_uri(&uri).0;
        if let Ok(canonical) = path::canonicalize(canonical) {
            let bound = token.binds_path().then_some(&*canonical);
            out.push_str(&format!(
                "signed      {}\n",
                escape(&mac::input(token.body, bound))
            ));
        }
    }
    let request = MediaRequest {
        uri: &uri,
        method: &args.method,
        server_name: &server_name,
        client_ip,
        // `inspect` judges the URL: a token given to it is read as the query parameter.
        authorization: Authorization::Absent,
        cookie: crate::gate::CookieHeader::Absent,
        // An API token is judged as at an API location (`protect-api.conf`), anything else
        // as at a media location.
        purpose: match &decoded {
            Some(Ok(token)) if token.purpose == Purpose::Api => Purpose::Api,
            _ => Purpose::Download,
        },
    };
    let mut gate_buf = TokenBuf::new();
    let outcome = gate::decide(config, &request, &mut gate_buf, now, &Revoked::default());
    let canonical_path = path::canonicalize(path::split_uri(&uri).0)
        .map(|path| path.into_owned())
        .unwrap_or_default();
    let summary = format!(
        "request: {} {canonical_path} server={server_name} ip={}",
        args.method,
        args.ip.as_deref().unwrap_or("-")
    );
    let verdict = match &outcome {
        // `inspect` does not run the playback exchange (it has no Range); kept for the match.
        Outcome::Allow { token: Some(_), .. } | Outcome::Exchange { .. } => {
            out.push_str(&format!("verdict     valid now ({summary})\n"));
            Verdict::Allowed
        }
        Outcome::Allow { token: None, .. } => {
            out.push_str(&format!(
                "verdict     allowed: public path, no token needed ({summary})\n"
            ));
            Verdict::Allowed
        }
        Outcome::Refresh { reason, .. } => {
            out.push_str(&format!(
                "verdict     denied: {reason} ({}; a browser is sent to the session domain for a fresh link; {summary})\n",
                hint(*reason, decoded.as_ref().and_then(|d| d.as_ref().ok()))
            ));
            Verdict::Denied(*reason)
        }
        Outcome::Challenge { reason, .. } | Outcome::Deny { reason, .. } => {
            out.push_str(&format!(
                "verdict     denied: {reason} ({}; {summary})\n",
                hint(*reason, decoded.as_ref().and_then(|d| d.as_ref().ok()))
            ));
            Verdict::Denied(*reason)
        }
    };
    Ok(Inspection { text: out, verdict })
}

/// One line of explanation for a denial reason.
fn hint(reason: Reason, token: Option<&Token<'_>>) -> &'static str {
    match reason {
        Reason::UnknownKey => "rotated out, or signed by another deployment",
        Reason::KeyPurpose => "its key is not allowed this token's purpose (keys.purposes)",
        Reason::FileChanged => {
            "bound to an earlier version of the file (replaced, changed or gone)"
        }
        Reason::WrongPurpose => match token.map(|token| token.purpose) {
            Some(Purpose::RefreshState) => {
                "a refresh_state token: only /refresh reads it, /auth never accepts it"
            }
            Some(Purpose::Upload) => "an upload token: /auth accepts only download tokens",
            Some(Purpose::Api) => {
                "an API token: only a location behind protect-api.conf accepts it"
            }
            Some(Purpose::Download) => "a download token: an API location accepts only API tokens",
            _ => "not a download token",
        },
        Reason::BadSignature => match token.map(Token::binds_path) {
            Some(false) => "the token was altered or signed with another key",
            _ => "signed for another path, with another key, or altered",
        },
        Reason::OutOfScope if token.is_some_and(|token| token.scopes.is_some()) => {
            "no scope of the token covers this path"
        }
        Reason::Method if token.is_some_and(|token| token.scopes.is_some()) => {
            "the scopes covering this path do not allow this method"
        }
        Reason::Malformed => "not a well-formed token (v1 or v2), or the parameter given twice",
        Reason::MissingToken => "no token parameter in the URL",
        Reason::BadPath => "the request path is not canonical",
        Reason::UnknownHost => "the host is not a configured media host",
        Reason::OverrideNotAllowed => {
            "the token carries a response override (filename, disposition, max-age) that accel.overrides does not list"
        }
        _ => "see docs/token-format.md, section 11",
    }
}

/// The field lines of a decoded token.
fn describe(out: &mut String, token: &Token<'_>, config: Option<&Config>, now: u64) {
    let mut line = |name: &str, value: String| out.push_str(&format!("{name:<12}{value}\n"));
    let none = || "-".to_owned();
    line("version", token.version.to_string());
    line("purpose", token.purpose.as_str().into());
    let known = config.map(|config| config.keys.get(token.kid).is_some());
    line(
        "key id",
        format!(
            "{}{}",
            token.kid,
            match known {
                Some(true) => " (known)",
                Some(false) => " (NOT among this server's keys)",
                None => "",
            }
        ),
    );
    let relative = |at: u64| {
        if at > now {
            format!("in {}", clock::format_span(at - now))
        } else {
            format!("{} ago", clock::format_span(now - at))
        }
    };
    line(
        "expires",
        format!(
            "{} ({}) [{}]",
            clock::format_utc(token.expires),
            relative(token.expires),
            token.expires
        ),
    );
    line(
        "not before",
        token.not_before.map_or_else(none, |nbf| {
            format!("{} ({})", clock::format_utc(nbf), relative(nbf))
        }),
    );
    line(
        "scope",
        match (token.prefix, token.scopes) {
            (Some(prefix), _) => format!("every path below {prefix}"),
            (None, Some(scopes)) => format!(
                "{} scopes (methods per path; carried, not bound)",
                scopes.iter().count()
            ),
            (None, None) => "one exact path (bound through the signature, not carried)".into(),
        },
    );
    for entry in token.scopes.iter().flat_map(|scopes| scopes.iter()) {
        line("  scope", token::scopes::describe_ref(&entry));
    }
    line("host", token.host.map_or_else(none, str::to_owned));
    line(
        "methods",
        match (token.methods_field, token.scopes) {
            (Some(methods), _) => methods.to_string(),
            (None, Some(_)) => "per scope (above)".into(),
            (None, None) => "GET,HEAD (default)".into(),
        },
    );
    line("ip", token.ip.map_or_else(none, |ip| ip.to_string()));
    line("token id", token.token_id.map_or_else(none, str::to_owned));
    line("subject", token.subject.map_or_else(none, str::to_owned));
    line(
        "data",
        token.data.map_or_else(none, |data| {
            format!("{} bytes: {}", data.len(), escape(data))
        }),
    );
    line(
        "refresh",
        token.refresh.map_or_else(none, |marker| {
            format!(
                "attempt {}, chain started {}",
                marker.attempt,
                clock::format_utc(marker.started)
            )
        }),
    );
    // Version 2 fields: shown only for v2 tokens, so v1 output stays as it was.
    if token.version < token::wire::VERSION_2 {
        return;
    }
    line(
        "issued at",
        token.issued_at.map_or_else(none, |iat| {
            format!("{} ({}) [{iat}]", clock::format_utc(iat), relative(iat))
        }),
    );
    line(
        "recipient",
        token.recipient.map_or_else(none, str::to_owned),
    );
    line(
        "uses",
        token.uses.map_or_else(
            || "unlimited".into(),
            |uses| match uses {
                1 => "1 (single use; counted per key id and token id)".into(),
                n => format!("{n} (counted per key id and token id)"),
            },
        ),
    );
    if token.purpose == Purpose::Download {
        line(
            "filename",
            token
                .filename
                .map_or_else(none, |name| format!("{name:?} (per-link download name)")),
        );
        line(
            "disposition",
            token
                .disposition
                .map_or_else(none, |kind| kind.as_str().into()),
        );
        line(
            "max-age",
            token.max_age.map_or_else(none, |seconds| {
                format!("{seconds} s (Cache-Control: private, max-age={seconds})")
            }),
        );
        // Only on grants, so that the output of every other token stays as it was.
        if let Some(origin) = token.playback_of {
            line(
                "playback of",
                format!(
                    "a link that expires {} [{origin}] (a playback grant: never exchanged again)",
                    clock::format_utc(origin)
                ),
            );
        }
        if token.has_overrides() {
            if let Some(config) = config {
                line(
                    "overrides",
                    if config.accel.overrides.admit(token) {
                        "allowed by accel.overrides".into()
                    } else {
                        "NOT allowed by accel.overrides: refused as override_not_allowed".into()
                    },
                );
            }
        }
    }
    if token.purpose == Purpose::RefreshState {
        line(
            "kept query",
            token.kept_query.map_or_else(none, str::to_owned),
        );
    }
    if let Some(version) = token.file_version {
        line(
            "file version",
            format!("{version} (the server compares it with the file under files_root)"),
        );
    }
    if token.purpose == Purpose::Upload {
        line(
            "max size",
            token.max_size.map_or_else(
                || "- (no limit in the token)".into(),
                |size| format!("{size} bytes"),
            ),
        );
        line(
            "types",
            token.content_types.map_or_else(
                || "- (any content type)".into(),
                |_| token.content_types_iter().collect::<Vec<_>>().join(", "),
            ),
        );
    }
}

/// The parts of `inspect`'s input: a bare token, a path with its query, or a URL.
struct InspectInput<'a> {
    /// The whole input, when it is a bare token.
    token: &'a str,
    /// The raw path, when the input is a URL or starts with `/`.
    path: Option<&'a str>,
    /// The raw query (without `?`), when the input is a URL or a path.
    query: Option<&'a str>,
    /// The URL's host, without port.
    host: Option<&'a str>,
}

impl<'a> InspectInput<'a> {
    fn parse(input: &'a str) -> InspectInput<'a> {
        let (host, rest) = match input.split_once("://") {
            Some((_, after)) => {
                let end = after.find(['/', '?']).unwrap_or(after.len());
                let authority = &after[..end];
                // `[v6]:port` keeps its brackets, as in nginx's $host.
                let host = match authority.rsplit_once(':') {
                    Some((host, port)) if !port.contains(']') => host,
                    _ => authority,
                };
                (Some(host), &after[end..])
            }
            None => (None, input),
        };
        if host.is_none() && !rest.starts_with('/') {
            return InspectInput {
                token: input,
                path: None,
                query: None,
                host: None,
            };
        }
        let (path, query) = path::split_uri(rest);
        InspectInput {
            token: "",
            path: Some(if path.is_empty() { "/" } else { path }),
            query: Some(query.unwrap_or("")),
            host,
        }
    }
}

/// Bytes as text, with non-printable bytes as `\xNN` (for the MAC input and opaque data).
fn escape(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| match b {
            b'\\' => "\\\\".to_owned(),
            0x20..=0x7e => (b as char).to_string(),
            _ => format!("\\x{b:02x}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every visible subcommand is in the man pages and each shell's completions, and the
    /// packaging-only `generate` is in none of them.
    #[test]
    fn generated_man_pages_and_completions_cover_every_visible_subcommand() {
        use clap::CommandFactory;
        let visible: Vec<String> = Cli::command()
            .get_subcommands()
            .map(|sub| sub.get_name().to_owned())
            .collect();
        assert!(visible.contains(&"check-config".to_owned()), "{visible:?}");

        let dir = std::env::temp_dir().join(format!("mediagate-man-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let listed = generate(&Generated::Man { dir: dir.clone() }).unwrap();
        let page = std::fs::read_to_string(dir.join("mediagate.1")).unwrap();
        assert!(
            page.starts_with(".ie \\n(.g .ds Aq"),
            "not roff: {page:.80}"
        );
        assert!(page.contains(".TH mediagate 1"), "{page:.200}");
        for name in &visible {
            assert!(
                listed
                    .lines()
                    .any(|line| line == format!("mediagate-{name}.1")),
                "{listed}"
            );
            // roff escapes every hyphen.
            let roff_name = format!("mediagate\\-{}(1)", name.replace('-', "\\-"));
            assert!(page.contains(&roff_name), "{roff_name} not in the page");
        }
        assert!(!page.contains("generate"));
        std::fs::remove_dir_all(&dir).unwrap();

        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let script = generate(&Generated::Completions { shell }).unwrap();
            for name in &visible {
                assert!(script.contains(name.as_str()), "{shell}: no {name}");
            }
            assert!(!script.contains("generate"), "{shell} offers generate");
        }
    }
}
