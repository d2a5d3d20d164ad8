//! The front end of revocation: a request as `mediagate revoke`'s flags or `POST /revoke`'s
//! JSON body write it, checked and turned into a [`RevocationEntry`] with the expiry after
//! which nothing it covers can still verify. Pure: configuration and `now` are inputs.

use serde::{Deserialize, Serialize};

use super::{Revocation, RevocationEntry};
use crate::config::Config;
use crate::token::wire::limit;
use crate::token::{self, TokenBuf};

/// What to revoke, as written. Exactly one of `token`, `token_id`, `subject` and `key`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeInput {
    /// A whole token (or URL holding one): revokes its key id and token id until it expires.
    pub token: Option<String>,
    /// A token id; with `kid`, or the signing key's id when absent.
    pub token_id: Option<String>,
    /// The key id for `token_id`, or the key for `before`.
    pub kid: Option<String>,
    /// Every token with this subject.
    pub subject: Option<String>,
    /// Every token key `kid` signed before this unix second (`before`), or before now when
    /// `before` is absent.
    pub key: Option<String>,
    /// Unix seconds, with `key`.
    pub before: Option<u64>,
}

impl RevokeInput {
    /// The entry to store, or why the input is refused.
    ///
    /// Expiry: a revocation by token id or subject is kept for `token.max_lifetime` plus the
    /// leeway after it is made (every token valid then has expired by that time; a token with
    /// an expiry beyond `max_lifetime`, refused as `lifetime` now, would outlive it: minters
    /// never make one). A whole token is kept until its own expiry (however far) plus
    /// `token.max_lifetime` and the leeway: a playback grant exchanged for it (spec §13.3.1)
    /// carries its key id and token id and may outlive it by up to a site's `playback_grant`,
    /// which is at most `max_lifetime`. A key cut-off is kept for ever: a token may carry an expiry
    /// further out than `max_lifetime` and become valid later, and the key's own signature is
    /// all that could tell. Remove the key from the ring to forget it.
    pub fn resolve(&self, config: &Config, now: u64) -> Result<RevocationEntry, String> {
        let given = [
            self.token.is_some(),
            self.token_id.is_some(),
            self.subject.is_some(),
            self.key.is_some(),
        ];
        if given.iter().filter(|&&g| g).count() != 1 {
            return Err("name exactly one of token, token_id, subject and key".into());
        }
        if self.before.is_some() && self.key.is_none() {
            return Err("before goes with key".into());
        }
        if self.kid.is_some() && self.token_id.is_none() {
            return Err("kid goes with token_id (a key cut-off names the key as key)".into());
        }
        let limits = config.token.limits;
        let horizon = now
            .saturating_add(limits.max_lifetime)
            .saturating_add(limits.leeway);
        let (revocation, expires) = if let Some(text) = &self.token {
            let text = token_of(text, &config.token.param);
            let mut buf = TokenBuf::new();
            let token = token::decode(text, &mut buf).map_err(|e| e.to_string())?;
            let token_id = token.token_id.ok_or(
                "the token has no token id: revoke its subject, or its key with a cut-off",
            )?;
            // Kept as long as a playback grant of it may play: up to `max_lifetime` past
            // the token's own expiry. A link that expired a minute ago may still have grants.
            let expires = token
                .expires
                .saturating_add(limits.leeway)
                .saturating_add(limits.max_lifetime);
            if expires <= now {
                return Err(
                    "the token and any playback grant of it have expired: nothing to revoke".into(),
                );
            }
            let revocation = Revocation::Token {
                kid: token.kid.to_owned(),
                token_id: token_id.to_owned(),
            };
            // The token's own expiry, even beyond the horizon: such a token is refused as
            // `lifetime` now but becomes valid later, and must still be revoked then.
            (revocation, expires)
        } else if let Some(token_id) = &self.token_id {
            if !is_token_id(token_id) {
                return Err("token_id: 1-64 visible ASCII characters".into());
            }
            let kid = self
                .kid
                .clone()
                .unwrap_or_else(|| config.keys.signing_key().id().to_owned());
            if !token::is_kid(kid.as_bytes()) {
                return Err("kid: 1-32 of A-Z a-z 0-9 . _ -".into());
            }
            let revocation = Revocation::Token {
                kid,
                token_id: token_id.clone(),
            };
            (revocation, horizon)
        } else if let Some(subject) = &self.subject {
            if !is_subject(subject) {
                return Err("subject: 1-128 visible ASCII characters or spaces".into());
            }
            let revocation = Revocation::Subject {
                subject: subject.clone(),
            };
            (revocation, horizon)
        } else {
            let kid = self.key.clone().unwrap_or_default();
            if !token::is_kid(kid.as_bytes()) {
                return Err("key: 1-32 of A-Z a-z 0-9 . _ -".into());
            }
            let before = self.before.unwrap_or(now);
            (Revocation::KeyBefore { kid, before }, u64::MAX)
        };
        Ok(RevocationEntry {
            revocation,
            created: now,
            expires,
        })
    }
}

/// The token id rule of the format (spec §4): 1-64 visible ASCII characters.
fn is_token_id(text: &str) -> bool {
    (1..=limit::TOKEN_ID).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_graphic())
}

/// The subject rule of the format (spec §4): 1-128 visible ASCII characters or spaces.
fn is_subject(text: &str) -> bool {
    (1..=limit::SUBJECT).contains(&text.len())
        && text.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
}

/// The token in `text`: the value of the `param` query parameter when `text` is a URL or
/// path with one, the token of its `~mg~` segment when it is a link in path form (spec
/// §13.3), else `text` itself.
fn token_of<'t>(text: &'t str, param: &str) -> &'t str {
    let (before, query) = text.split_once('?').unwrap_or((text, ""));
    if let Some(token) = query
        .split('&')
        .find_map(|pair| pair.strip_prefix(param)?.strip_prefix('='))
    {
        return token;
    }
    // The segment as minters write it: `~mg~` and base64url, never percent-encoded.
    match crate::path::split_grant(before) {
        Ok(Some(grant)) => &before[grant.token],
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::token_of;

    #[test]
    fn the_token_is_found_in_a_query_link_a_path_link_or_alone() {
        assert_eq!(token_of("AQEB", "token"), "AQEB");
        assert_eq!(
            token_of("https://media.example.org/a/b.mp4?x=1&token=AQEB", "token"),
            "AQEB"
        );
        assert_eq!(
            token_of("https://media.example.org/a/~mg~AQEB/b.mp4?x=1", "token"),
            "AQEB"
        );
        assert_eq!(token_of("/a/~mg~AQEB/", "token"), "AQEB");
        // Nothing to find: the text as it is, which then fails to decode.
        assert_eq!(token_of("/a/b.mp4?x=1", "token"), "/a/b.mp4?x=1");
    }
}
