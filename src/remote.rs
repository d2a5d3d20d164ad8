//! `mediagate revoke`, `revocations` and `uses`: the operator's side of the store, as a
//! client of the running server's internal endpoints (`POST /revoke`, `GET /revocations`,
//! `GET /uses`, see [`crate::http`]).
//!
//! The CLI never opens the store itself: the embedded database is single-process (the
//! running server holds its lock), and with Redis the server is the one that knows the key
//! prefix and puts a revocation in force at once. It authenticates with `internal.secret`
//! and finds the server at `server.internal_listen`, from the same configuration sources as
//! `serve`.
//!
//! Presentation is pure ([`describe_revocation`], [`revocations_table`], [`uses_table`]):
//! the answer is parsed, checked and rendered without I/O, and every text that came from the
//! store is escaped before it reaches a terminal (a user agent is whatever a client sent).

use std::time::Duration;

use serde::Deserialize;

use crate::clock;
use crate::config::Config;
use crate::probe::{self, Answer, ProbeError, Request};
use crate::store::revoke::RevokeInput;
use crate::store::{HistoryEntry, Revocation, RevocationEntry};

/// Seconds to wait for each step of a request (connect, send, read).
const TIMEOUT: Duration = Duration::from_secs(5);

/// Largest answer read: a revocation is about 100 bytes of JSON, a history entry at most
/// about 400, so this holds tens of thousands of either.
const MAX_ANSWER: usize = 8 * 1024 * 1024;

/// Exit status when the server refused or could not be reached.
pub const EXIT_SERVER: u8 = 1;
/// Exit status of a usage or configuration error (EX_USAGE).
pub const EXIT_USAGE: u8 = 64;

/// Why a state command failed. Messages name the server's address, never the secret.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// Occurs when the command cannot be sent as given: no `internal.secret` configured, or an
    /// argument that does not parse (a `--before` that is neither unix seconds nor RFC 3339).
    #[error("{0}")]
    Usage(String),
    /// Occurs when the server cannot be reached, does not answer in time, or does not answer
    /// HTTP.
    #[error("{0} (is `mediagate serve` running with this configuration?)")]
    Unreachable(ProbeError),
    /// Occurs when the server answers with an error status (a wrong secret, a request it
    /// refuses, a store that is down); the server's own explanation is included.
    #[error("{address} refused: {status} {message}{hint}")]
    Refused {
        /// The internal listener's address.
        address: String,
        /// HTTP status.
        status: u16,
        /// The `error` text of the JSON answer, escaped.
        message: String,
        /// What to check, for the statuses that have a usual cause.
        hint: &'static str,
    },
    /// Occurs when a success answer is not the JSON this command expects (another program
    /// listens at the address, or a server of another version).
    #[error("unexpected answer from {0}: {1}")]
    BadAnswer(String, String),
}

impl RemoteError {
    /// The process exit status: [`EXIT_USAGE`] or [`EXIT_SERVER`].
    pub fn exit_code(&self) -> u8 {
        match self {
            RemoteError::Usage(_) => EXIT_USAGE,
            _ => EXIT_SERVER,
        }
    }
}

/// A request to the internal listener, with the bearer secret, checked for a 200.
fn call(config: &Config, method: &str, target: &str, body: &[u8]) -> Result<Vec<u8>, RemoteError> {
    let secret = config.internal_secret.as_ref().ok_or_else(|| {
        RemoteError::Usage(
            "internal.secret is not set: the state commands authenticate to the running server \
             with it; configure the same secret the server has"
                .into(),
        )
    })?;
    let authorization = format!("Bearer {}", secret.to_base64());
    let mut headers = vec![("Authorization", authorization.as_str())];
    if !body.is_empty() {
        headers.push(("Content-Type", "application/json"));
    }
    let request = Request {
        method,
        target,
        headers: &headers,
        body,
    };
    let addr = &config.server.internal_listen;
    let Answer { status, body, .. } =
        probe::send(addr, &request, TIMEOUT, MAX_ANSWER).map_err(RemoteError::Unreachable)?;
    if status == 200 {
        return Ok(body);
    }
    #[derive(Deserialize)]
    struct ErrorBody {
        error: String,
    }
    let message = serde_json::from_slice::<ErrorBody>(&body)
        .map(|body| body.error)
        .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
    let hint = match status {
        401 => " (is internal.secret the same as the server's?)",
        404 | 405 => " (is this the internal listener of a mediagate with a store?)",
        503 => " (the server's store is unavailable)",
        _ => "",
    };
    Err(RemoteError::Refused {
        address: probe::address_name(addr),
        status,
        message: escape(message.trim()),
        hint,
    })
}

/// Parses a success answer as `T`.
fn parse<'a, T: Deserialize<'a>>(config: &Config, body: &'a [u8]) -> Result<T, RemoteError> {
    serde_json::from_slice(body).map_err(|error| {
        RemoteError::BadAnswer(
            probe::address_name(&config.server.internal_listen),
            error.to_string(),
        )
    })
}

/// The text of a success answer, for `--json`: checked to be JSON, printed as sent.
fn raw_json(config: &Config, body: &[u8]) -> Result<String, RemoteError> {
    parse::<serde_json::Value>(config, body)?;
    Ok(String::from_utf8_lossy(body).into_owned())
}

/// `mediagate revoke`: sends `input` to `POST /revoke` and describes the stored entry.
pub fn revoke(config: &Config, input: &RevokeInput) -> Result<String, RemoteError> {
    let body = serde_json::to_vec(input).map_err(|error| RemoteError::Usage(error.to_string()))?;
    let answer = call(config, "POST", "/revoke", &body)?;
    let entry: RevocationEntry = parse(config, &answer)?;
    Ok(describe_revocation(&entry))
}

/// `mediagate revocations`: every revocation in force, as a table or the server's JSON.
pub fn revocations(config: &Config, json: bool) -> Result<String, RemoteError> {
    let answer = call(config, "GET", "/revocations", b"")?;
    if json {
        return raw_json(config, &answer);
    }
    let entries: Vec<RevocationEntry> = parse(config, &answer)?;
    Ok(revocations_table(&entries))
}

/// `mediagate uses`: one counted token's use history, as a table or the server's JSON.
/// `kid` defaults (on the server) to the signing key's id.
pub fn uses(
    config: &Config,
    token_id: &str,
    kid: Option<&str>,
    json: bool,
) -> Result<String, RemoteError> {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.append_pair("token_id", token_id);
    if let Some(kid) = kid {
        query.append_pair("kid", kid);
    }
    let answer = call(config, "GET", &format!("/uses?{}", query.finish()), b"")?;
    if json {
        return raw_json(config, &answer);
    }
    let history: History = parse(config, &answer)?;
    Ok(uses_table(&history))
}

/// The answer of `GET /uses`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct History {
    /// Key id of the token.
    pub kid: String,
    /// Token id.
    pub token_id: String,
    /// Its uses, oldest first.
    pub uses: Vec<HistoryEntry>,
}

/// Parses `--before`: unix seconds, or an RFC 3339 time with whole seconds
/// (`2026-11-23T04:12:36Z`, `2026-11-23 05:12:36+01:00`).
pub fn parse_time(text: &str) -> Result<u64, String> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map_err(|_| format!("{text:?}: too large for unix seconds"));
    }
    clock::parse_rfc3339(text).map_err(|why| {
        format!(
            "{text:?}: neither unix seconds nor an RFC 3339 time like 2026-11-23T04:12:36Z ({why})"
        )
    })
}

/// An instant for people: RFC 3339, or `never` for the entries kept for ever.
fn when(secs: u64) -> String {
    if secs == u64::MAX {
        "never".into()
    } else {
        clock::format_utc(secs)
    }
}

/// What a stored revocation covers, as one line.
pub fn describe_revocation(entry: &RevocationEntry) -> String {
    let what = match &entry.revocation {
        Revocation::Token { kid, token_id } => {
            format!(
                "revoked token id {} of key {}",
                escape(token_id),
                escape(kid)
            )
        }
        Revocation::Subject { subject } => {
            format!("revoked every token of subject {:?}", escape(subject))
        }
        Revocation::KeyBefore { kid, before } => format!(
            "revoked every token key {} signed before {} [{before}]",
            escape(kid),
            clock::format_utc(*before)
        ),
    };
    match entry.expires {
        // A key cut-off stays until the key leaves the ring (see RevokeInput::resolve).
        u64::MAX => format!("{what}; kept for ever (remove the key from the ring to forget it)"),
        expires => format!("{what}; in force until {}", clock::format_utc(expires)),
    }
}

/// The revocations as a table: kind, what, created, expires.
pub fn revocations_table(entries: &[RevocationEntry]) -> String {
    if entries.is_empty() {
        return "no revocations in force\n".into();
    }
    let rows = entries
        .iter()
        .map(|entry| {
            let (kind, what) = match &entry.revocation {
                Revocation::Token { kid, token_id } => (
                    "token",
                    format!("kid={} token_id={}", escape(kid), escape(token_id)),
                ),
                Revocation::Subject { subject } => {
                    ("subject", format!("subject={:?}", escape(subject)))
                }
                Revocation::KeyBefore { kid, before } => (
                    "key_before",
                    format!("kid={} before={}", escape(kid), clock::format_utc(*before)),
                ),
            };
            vec![
                kind.to_owned(),
                what,
                clock::format_utc(entry.created),
                when(entry.expires),
            ]
        })
        .collect::<Vec<_>>();
    table(&["KIND", "WHAT", "CREATED", "EXPIRES"], &rows)
}

/// A token's history as a table: time, client, status, reason, user agent (last, since it is
/// the long one).
pub fn uses_table(history: &History) -> String {
    let title = format!(
        "token id {} of key {}: {} use{} recorded\n",
        escape(&history.token_id),
        escape(&history.kid),
        history.uses.len(),
        if history.uses.len() == 1 { "" } else { "s" }
    );
    if history.uses.is_empty() {
        return title;
    }
    let rows = history
        .uses
        .iter()
        .map(|entry| {
            vec![
                clock::format_utc(entry.at),
                entry
                    .client
                    .map_or_else(|| "-".into(), |client| client.to_string()),
                entry.status.to_string(),
                entry.reason.as_deref().map_or_else(|| "-".into(), escape),
                entry
                    .user_agent
                    .as_deref()
                    .map_or_else(|| "-".into(), escape),
            ]
        })
        .collect::<Vec<_>>();
    title + &table(&["TIME", "CLIENT", "STATUS", "REASON", "USER AGENT"], &rows)
}

/// Left-aligned columns two spaces apart, the last one unpadded.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|name| name.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|name| (*name).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        for (column, cell) in row.iter().enumerate() {
            if column == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[column]));
            }
        }
        out.push('\n');
    }
    out
}

/// Text from the server or the store, safe for a terminal: control characters (escape
/// sequences, newlines that would forge table rows) become `\u{..}`.
fn escape(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(revocation: Revocation, created: u64, expires: u64) -> RevocationEntry {
        RevocationEntry {
            revocation,
            created,
            expires,
        }
    }

    #[test]
    fn revocations_render_as_an_aligned_table_with_never_for_key_cutoffs() {
        let entries = [
            entry(
                Revocation::Token {
                    kid: "k1".into(),
                    token_id: "inv-42".into(),
                },
                1_795_000_000,
                1_795_090_000,
            ),
            entry(
                Revocation::Subject {
                    subject: "alice smith".into(),
                },
                1_795_000_000,
                1_795_090_000,
            ),
            entry(
                Revocation::KeyBefore {
                    kid: "k1".into(),
                    before: 1_795_000_000,
                },
                1_795_000_001,
                u64::MAX,
            ),
        ];
        assert_eq!(
            revocations_table(&entries),
            "KIND        WHAT                                CREATED               EXPIRES\n\
             token       kid=k1 token_id=inv-42              2026-11-18T11:06:40Z  2026-11-19T12:06:40Z\n\
             subject     subject=\"alice smith\"               2026-11-18T11:06:40Z  2026-11-19T12:06:40Z\n\
             key_before  kid=k1 before=2026-11-18T11:06:40Z  2026-11-18T11:06:41Z  never\n"
        );
        assert_eq!(revocations_table(&[]), "no revocations in force\n");
        assert_eq!(
            describe_revocation(&entries[0]),
            "revoked token id inv-42 of key k1; in force until 2026-11-19T12:06:40Z"
        );
        assert_eq!(
            describe_revocation(&entries[2]),
            "revoked every token key k1 signed before 2026-11-18T11:06:40Z [1795000000]; \
             kept for ever (remove the key from the ring to forget it)"
        );
    }

    #[test]
    fn a_hostile_user_agent_cannot_reach_the_terminal_raw() {
        let history = History {
            kid: "k1".into(),
            token_id: "t1".into(),
            uses: vec![
                HistoryEntry {
                    at: 1_795_000_000,
                    client: Some("203.0.113.5".parse().unwrap()),
                    user_agent: Some("evil\u{1b}[2J\nforged row".into()),
                    status: 200,
                    reason: None,
                },
                HistoryEntry {
                    at: 1_795_000_060,
                    client: None,
                    user_agent: None,
                    status: 403,
                    reason: Some("used_up".into()),
                },
            ],
        };
        assert_eq!(
            uses_table(&history),
            "token id t1 of key k1: 2 uses recorded\n\
             TIME                  CLIENT       STATUS  REASON   USER AGENT\n\
             2026-11-18T11:06:40Z  203.0.113.5  200     -        evil\\u{1b}[2J\\u{a}forged row\n\
             2026-11-18T11:07:40Z  -            403     used_up  -\n"
        );
    }

    #[test]
    fn before_takes_unix_seconds_or_rfc3339() {
        assert_eq!(parse_time("1795000000"), Ok(1_795_000_000));
        assert_eq!(parse_time("2026-11-18T11:06:40Z"), Ok(1_795_000_000));
        assert_eq!(parse_time("2026-11-18 12:06:40+01:00"), Ok(1_795_000_000));
        assert!(parse_time("99999999999999999999999").is_err());
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("").is_err());
        assert!(parse_time("-5").is_err());
    }

    #[test]
    fn exit_codes_separate_usage_from_server_failures() {
        assert_eq!(RemoteError::Usage("x".into()).exit_code(), 64);
        let refused = RemoteError::Refused {
            address: "127.0.0.1:8089".into(),
            status: 401,
            message: "missing or wrong bearer secret".into(),
            hint: "",
        };
        assert_eq!(refused.exit_code(), 1);
        assert_eq!(
            refused.to_string(),
            "127.0.0.1:8089 refused: 401 missing or wrong bearer secret"
        );
    }
}
