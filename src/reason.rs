//! Machine-readable reasons for every denial.
//!
//! One vocabulary for responses (`X-Mediagate-Reason`), audit logs and metrics, so an operator
//! can grep for the same word everywhere. nginx `secure_link` and CDNs answer a bare 403; we
//! say why. The strings are part of the public interface (see `docs/token-format.md`): add new
//! ones, never rename.

use std::fmt;

/// Why a request was not allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// No token in the request.
    MissingToken,
    /// The token is not a well-formed v1 token (encoding, length, field layout).
    Malformed,
    /// The token was made for another purpose (e.g. a refresh `state` used as a download token).
    WrongPurpose,
    /// The token names a key id this server does not know.
    UnknownKey,
    /// The MAC does not match: forged, tampered with, or signed for another path.
    BadSignature,
    /// `now >= exp`.
    Expired,
    /// `now + leeway < nbf`.
    NotYetValid,
    /// The token claims a lifetime beyond the configured maximum.
    Lifetime,
    /// The token is bound to another media host.
    WrongHost,
    /// The request path is outside the token's prefix.
    OutOfScope,
    /// The request method is not among the token's methods.
    Method,
    /// The client address is outside the token's IP/CIDR.
    Ip,
    /// The request path is not canonical (dot segments, encoded slashes, control bytes, ...).
    BadPath,
    /// The request came from a peer that may not send `X-Original-*` headers, or lacked the
    /// internal secret.
    UntrustedPeer,
    /// A required header is missing, duplicated or unreadable.
    BadRequest,
    /// `X-Mediagate-Server-Name` (nginx `$server_name`) is not a configured media host, or no
    /// site refreshes through the session server that forwarded a refresh.
    UnknownHost,
    /// A freshly refreshed token failed again: stop instead of redirecting forever.
    RefreshLoop,
    /// The refresh `state` did not verify.
    BadState,
}

impl Reason {
    /// The stable wire name, e.g. `bad_signature`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::MissingToken => "missing_token",
            Reason::Malformed => "malformed",
            Reason::WrongPurpose => "wrong_purpose",
            Reason::UnknownKey => "unknown_key",
            Reason::BadSignature => "bad_signature",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::Lifetime => "lifetime",
            Reason::WrongHost => "wrong_host",
            Reason::OutOfScope => "out_of_scope",
            Reason::Method => "method",
            Reason::Ip => "ip",
            Reason::BadPath => "bad_path",
            Reason::UntrustedPeer => "untrusted_peer",
            Reason::BadRequest => "bad_request",
            Reason::UnknownHost => "unknown_host",
            Reason::RefreshLoop => "refresh_loop",
            Reason::BadState => "bad_state",
        }
    }

    /// Every reason, for metrics registration and documentation tests.
    pub const ALL: [Reason; 18] = [
        Reason::MissingToken,
        Reason::Malformed,
        Reason::WrongPurpose,
        Reason::UnknownKey,
        Reason::BadSignature,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::Lifetime,
        Reason::WrongHost,
        Reason::OutOfScope,
        Reason::Method,
        Reason::Ip,
        Reason::BadPath,
        Reason::UntrustedPeer,
        Reason::BadRequest,
        Reason::UnknownHost,
        Reason::RefreshLoop,
        Reason::BadState,
    ];

    /// Reasons a new token from the session domain can cure: the link is merely old, or was
    /// signed with a key that has since been retired. Everything else (forgery, wrong scope, a
    /// deliberate not-before) is a hard 403 that no redirect should paper over.
    pub const fn is_refreshable(self) -> bool {
        matches!(
            self,
            Reason::MissingToken | Reason::Expired | Reason::UnknownKey
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
