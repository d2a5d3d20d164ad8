//! Machine-readable reasons for every denial.
//!
//! One vocabulary for responses (`X-Mediagate-Reason`), audit logs and metrics, so an operator
//! can grep for the same word everywhere. nginx `secure_link` and CDNs answer a bare 403; we
//! say why. The strings are part of the public interface (see `docs/token-format.md`): add new
//! ones, never rename.

use std::fmt;

/// Declares [`Reason`], its wire names and [`Reason::ALL`] from one list, so a variant can
/// never be missing from `ALL`: metrics index their counters by `reason as usize` through it,
/// and the documentation tests below walk it.
macro_rules! reasons {
    ($($(#[$doc:meta])* $variant:ident = $wire:literal,)*) => {
        /// Why a request was not allowed.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Reason {
            $($(#[$doc])* $variant,)*
        }

        impl Reason {
            /// The stable wire name, e.g. `bad_signature`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$variant => $wire,)*
                }
            }

            /// Every reason in declaration order, for metrics registration and documentation
            /// tests.
            pub const ALL: [Reason; [$(Reason::$variant),*].len()] = [$(Reason::$variant),*];
        }
    };
}

reasons! {
    /// No token in the request.
    MissingToken = "missing_token",
    /// The token is not a well-formed token of a known version (encoding, length, field layout).
    Malformed = "malformed",
    /// The token was made for another purpose (e.g. a refresh `state` used as a download token).
    WrongPurpose = "wrong_purpose",
    /// The token names a key id this server does not know.
    UnknownKey = "unknown_key",
    /// The MAC does not match: forged, tampered with, or signed for another path.
    BadSignature = "bad_signature",
    /// `now >= exp`.
    Expired = "expired",
    /// `now + leeway < nbf`.
    NotYetValid = "not_yet_valid",
    /// The token claims a lifetime beyond the configured maximum.
    Lifetime = "lifetime",
    /// The token is bound to another media host.
    WrongHost = "wrong_host",
    /// The request path is outside the token's prefix.
    OutOfScope = "out_of_scope",
    /// The request method is not among the token's methods.
    Method = "method",
    /// The client address is outside the token's IP/CIDR.
    Ip = "ip",
    /// The request path is not canonical (dot segments, encoded slashes, control bytes, ...).
    BadPath = "bad_path",
    /// The request came from a peer that may not send `X-Original-*` headers, or lacked the
    /// internal secret.
    UntrustedPeer = "untrusted_peer",
    /// A required header is missing, duplicated or unreadable.
    BadRequest = "bad_request",
    /// `X-Mediagate-Server-Name` (nginx `$server_name`) is not a configured media host, or no
    /// site refreshes through the session server that forwarded a refresh.
    UnknownHost = "unknown_host",
    /// A freshly refreshed token failed again: stop instead of redirecting forever.
    RefreshLoop = "refresh_loop",
    /// The refresh `state` did not verify.
    BadState = "bad_state",
    /// A token with a use limit has been used that many times (issue 9).
    UsedUp = "used_up",
    /// The token is revoked: by its token id, its subject, or its key and issue time.
    Revoked = "revoked",
    /// The token needs the store (it has a use limit) and the store did not answer: counted
    /// tokens fail closed, with 503.
    StoreUnavailable = "store_unavailable",
    /// An upload's declared `Content-Length` is above the slot's `max_size` (413 at nginx).
    TooLarge = "too_large",
    /// An upload to a slot with a `max_size` declares no `Content-Length` (a chunked body):
    /// its size cannot be checked before nginx reads it (411 at nginx).
    LengthRequired = "length_required",
    /// An upload's `Content-Type` is missing or not among the slot's media types (415 at
    /// nginx).
    ContentType = "content_type",
    /// The token carries a per-link response override (download name, disposition, cache
    /// max-age) that this deployment does not allow (`accel.overrides`).
    OverrideNotAllowed = "override_not_allowed",
    /// The token is authentic, but its key is not allowed the token's purpose
    /// (`[keys.purposes]`): e.g. a media link signed with a key kept for API tokens.
    KeyPurpose = "key_purpose",
    /// The token is bound to a version of its file and the file under the site's
    /// `files_root` is no longer that version: replaced, modified, touched, or gone (or the
    /// site has no `files_root` to check it against).
    FileChanged = "file_changed",
}

impl Reason {
    /// The reason whose wire name is `name` (e.g. an `X-Mediagate-Reason` value nginx passes
    /// back); `None` for anything else.
    pub fn from_wire(name: &str) -> Option<Reason> {
        Reason::ALL
            .into_iter()
            .find(|reason| reason.as_str() == name)
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn read_doc(relative: &str) -> String {
        let path = format!("{}/{relative}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
    }

    fn wire_names() -> BTreeSet<&'static str> {
        Reason::ALL.iter().map(|reason| reason.as_str()).collect()
    }

    /// The words between backticks in `text`.
    fn quoted(text: &str) -> BTreeSet<&str> {
        text.split('`').skip(1).step_by(2).collect()
    }

    #[test]
    fn all_lists_every_reason_once_in_declaration_order() {
        for (index, reason) in Reason::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, index, "{reason}");
        }
        assert_eq!(
            wire_names().len(),
            Reason::ALL.len(),
            "two reasons share a wire name"
        );
        for name in wire_names() {
            assert!(
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name:?} is not snake_case"
            );
        }
    }

    #[test]
    fn every_reason_is_in_the_spec_table_and_nothing_else_is() {
        let spec = read_doc("docs/token-format.md");
        let section = spec
            .split_once("## 11. Reason codes")
            .and_then(|(_, rest)| rest.split_once("\n## 12."))
            .expect("docs/token-format.md has sections 11 and 12")
            .0;
        // Rows look like "| `expired` | token | ... |": the first cell names the reason.
        let rows: BTreeSet<&str> = section
            .lines()
            .filter_map(|line| line.strip_prefix("| `"))
            .filter_map(|rest| rest.split_once('`'))
            .map(|(name, _)| name)
            .collect();
        assert_eq!(rows, wire_names(), "docs/token-format.md §11 table");
    }

    #[test]
    fn every_reason_is_in_the_readme_list_and_nothing_else_is() {
        let readme = read_doc("README.md");
        // "Reason codes: `missing_token`, ..., `bad_state`." — up to the sentence's end.
        let list = readme
            .split_once("Reason codes:")
            .and_then(|(_, rest)| rest.split_once("`."))
            .map(|(list, _)| format!("{list}`"))
            .expect("README.md has a \"Reason codes:\" sentence");
        assert_eq!(quoted(&list), wire_names(), "README.md reason list");
    }
}
