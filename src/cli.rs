//! The command line: `serve`, `sign`, `inspect`, `keygen`, `check-config`.
//!
//! Thin: each command parses its arguments, calls into the library and prints. `inspect` is
//! the support tool: it shows every field of a token and, with the key, exactly which bytes
//! were signed and why a given request does or does not verify.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{self, Config, KeyOrigin};
use crate::keys::Secret;
use crate::mint::{mint, MintRequest};
use crate::path;
use crate::token::{self, mac, verify::check_claims, Methods, Purpose, Request, TokenBuf};
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
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the sidecar: /auth and /accel for the media domain, /refresh and /mint internally.
    Serve,
    /// Print a signed URL for PATH (a file, or with --prefix a whole folder).
    ///
    /// Example: mediagate sign /media/report.pdf --ttl 10m
    Sign(SignArgs),
    /// Show every field of a token (or of the token in a URL) and whether it verifies now.
    ///
    /// Without the key the fields are still shown: the signature makes a token
    /// trustworthy, not secrecy.
    Inspect(InspectArgs),
    /// Print a new random 256-bit key and the configuration lines that use it.
    Keygen {
        /// Key id to print in the configuration snippet (e.g. the month: 2026-11).
        #[arg(long, default_value = "k1")]
        id: String,
    },
    /// Validate the configuration and print it with secrets redacted.
    CheckConfig,
}

/// Arguments of `sign`.
#[derive(Debug, clap::Args)]
pub struct SignArgs {
    /// Path of the file (or folder, with --prefix) on the media domain, e.g. /media/a.pdf.
    pub path: String,
    /// Lifetime: 30s, 10m, 1h, 7d (default: token.default_ttl).
    #[arg(long)]
    pub ttl: Option<String>,
    /// Make the token valid for every file below PATH (HLS/DASH folders).
    #[arg(long)]
    pub prefix: bool,
    /// Allowed method; repeat for several (default: GET and HEAD).
    #[arg(long = "method", value_name = "METHOD")]
    pub methods: Vec<String>,
    /// Bind to a client address or network, e.g. 203.0.113.0/24.
    #[arg(long)]
    pub ip: Option<String>,
    /// Bind to this media host, as nginx's $host (no port). Default: valid on any host.
    #[arg(long)]
    pub host: Option<String>,
    /// Subject / recipient recorded in audit logs.
    #[arg(long)]
    pub subject: Option<String>,
    /// Token id, for audit and revocation.
    #[arg(long = "id")]
    pub token_id: Option<String>,
    /// Origin to prefix the path with (default: the first site's media_origin).
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
    /// Request method to check against.
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// Request host to check against (default: the URL's host).
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

/// `mediagate sign`.
pub fn sign(config: &Config, args: &SignArgs) -> anyhow::Result<String> {
    let ttl = args
        .ttl
        .as_deref()
        .map(Duration::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?
        .map(|ttl| ttl.0);
    let methods = if args.methods.is_empty() {
        None
    } else {
        Some(
            args.methods
                .join(",")
                .parse::<Methods>()
                .map_err(anyhow::Error::msg)?,
        )
    };
    let request = MintRequest {
        path: args.path.clone(),
        prefix: args.prefix,
        ttl,
        methods,
        ip: args
            .ip
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(anyhow::Error::msg)?,
        host: args.host.clone(),
        subject: args.subject.clone(),
        token_id: args.token_id.clone(),
        ..MintRequest::default()
    };
    let minted = mint(config, &request, clock::now())?;
    if args.token_only {
        return Ok(minted.token);
    }
    let base = match &args.base {
        Some(base) => base.trim_end_matches('/').to_owned(),
        None => config
            .sites
            .first()
            .map(|site| site.media_origin.clone())
            .unwrap_or_default(),
    };
    Ok(format!("{base}{}", minted.path_and_query))
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

/// `mediagate inspect`: fields, MAC input and verdict. `config` is `None` when the
/// configuration (and so the key) could not be loaded; the fields are still shown.
pub fn inspect(config: Option<&Config>, args: &InspectArgs, now: u64) -> anyhow::Result<String> {
    let param = config.map_or("token", |config| config.token.param.as_str());
    let parsed = InspectInput::parse(&args.input, param)?;
    let mut buf = TokenBuf::new();
    let token = token::decode(parsed.token, &mut buf)?;
    let mut out = String::new();
    let mut line = |name: &str, value: String| out.push_str(&format!("{name:<12}{value}\n"));
    let none = || "-".to_owned();
    line("version", "1".into());
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
        match token.prefix {
            Some(prefix) => format!("every path below {prefix}"),
            None => "one exact path (bound through the signature, not carried)".into(),
        },
    );
    line("host", token.host.map_or_else(none, str::to_owned));
    line(
        "methods",
        match token.methods_field {
            Some(methods) => methods.to_string(),
            None => "GET,HEAD (default)".into(),
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

    let Some(config) = config else {
        out.push_str(
            "verdict     unknown: no configuration/key available to check the signature\n",
        );
        return Ok(out);
    };
    let request_path = args.path.as_deref().or(parsed.path);
    let canonical = match request_path.map(path::canonicalize) {
        Some(Ok(canonical)) => Some(canonical.into_owned()),
        Some(Err(error)) => {
            out.push_str(&format!("verdict     denied: bad_path ({error})\n"));
            return Ok(out);
        }
        None => None,
    };
    let bound = match (token.prefix, canonical.as_deref()) {
        (Some(_), _) => None,
        (None, Some(path)) => Some(path),
        (None, None) => {
            out.push_str(
                "verdict     unknown: an exact-path token needs --path (or a URL) to check\n",
            );
            return Ok(out);
        }
    };
    out.push_str(&format!(
        "signed      {}\n",
        escape(&mac::input(token.body, bound))
    ));
    let Some(key) = config.keys.get(token.kid) else {
        out.push_str(
            "verdict     denied: unknown_key (rotated out, or signed by another deployment)\n",
        );
        return Ok(out);
    };
    if token.purpose != Purpose::Download {
        out.push_str("verdict     denied: wrong_purpose (not a download token)\n");
        return Ok(out);
    }
    if !mac::tag_matches(key, token.body, bound, token.tag) {
        let hint = match bound {
            Some(path) => format!(
                "the signature does not match for path {path:?}: the token was signed for another path, with another key, or altered"
            ),
            None => "the token was altered or signed with another key".into(),
        };
        out.push_str(&format!("verdict     denied: bad_signature ({hint})\n"));
        return Ok(out);
    }
    let request = Request {
        path: canonical.as_deref().unwrap_or("/"),
        method: &args.method,
        host: args.host.as_deref().or(parsed.host),
        client_ip: args.ip.as_deref().and_then(|ip| ip.parse().ok()),
    };
    match check_claims(&token, &request, config.token.limits, now) {
        Ok(()) => out.push_str(&format!(
            "verdict     valid now for {} {}\n",
            args.method,
            canonical
                .as_deref()
                .unwrap_or("(any path below the prefix)")
        )),
        Err(reason) => out.push_str(&format!(
            "verdict     denied: {reason} (request: {} {} host={} ip={})\n",
            request.method,
            request.path,
            request.host.unwrap_or("-"),
            args.ip.as_deref().unwrap_or("-")
        )),
    }
    Ok(out)
}

/// The parts of `inspect`'s input: a bare token or a URL carrying one.
struct InspectInput<'a> {
    token: &'a str,
    path: Option<&'a str>,
    host: Option<&'a str>,
}

impl<'a> InspectInput<'a> {
    fn parse(input: &'a str, param: &str) -> anyhow::Result<InspectInput<'a>> {
        let input = input.trim();
        let (host, rest) = match input.split_once("://") {
            Some((_, after)) => {
                let end = after.find('/').unwrap_or(after.len());
                let authority = &after[..end];
                let host = authority
                    .rsplit_once(':')
                    .map_or(authority, |(host, _)| host);
                (Some(host), &after[end..])
            }
            None => (None, input),
        };
        if !rest.starts_with('/') {
            return Ok(InspectInput {
                token: input,
                path: None,
                host: None,
            });
        }
        let (path, query) = path::split_uri(rest);
        let token = path::query_param(query.unwrap_or(""), param)
            .map_err(|()| anyhow::anyhow!("the URL carries {param}= twice"))?
            .ok_or_else(|| anyhow::anyhow!("the URL has no {param}= parameter"))?;
        Ok(InspectInput {
            token,
            path: Some(path),
            host,
        })
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
