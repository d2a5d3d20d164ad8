//! The revocations in force, held in memory so that the verify path checks them without I/O.
//!
//! The store is the source of truth; each sidecar polls its version and swaps in a new
//! [`Revoked`] when it moved (the edge does that). Checking a token is three hash lookups,
//! whatever the number of revocations. Pure: built from entries, asked with token fields.

use std::collections::{HashMap, HashSet};

use super::{Revocation, RevocationEntry};

/// The fields of an authenticated token that revocation looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revocable<'a> {
    /// Key id.
    pub kid: &'a str,
    /// Token id, if the token has one.
    pub token_id: Option<&'a str>,
    /// Subject, if the token has one.
    pub subject: Option<&'a str>,
    /// Issued-at, if the token has one. A token without it cannot show when it was signed, so
    /// "everything key K signed before T" covers it (fail closed).
    pub issued_at: Option<u64>,
}

/// What is revoked now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revoked {
    /// Token id to the key ids it is revoked under (token ids are unique per key).
    tokens: HashMap<String, Vec<String>>,
    subjects: HashSet<String>,
    /// Per key id, the latest "signed before" time revoked.
    keys_before: HashMap<String, u64>,
    entries: usize,
}

impl Revoked {
    /// The set of `entries` that are still in force at `now`.
    pub fn new<'e>(entries: impl IntoIterator<Item = &'e RevocationEntry>, now: u64) -> Revoked {
        let mut revoked = Revoked::default();
        for entry in entries.into_iter().filter(|entry| entry.expires > now) {
            revoked.entries += 1;
            match &entry.revocation {
                Revocation::Token { kid, token_id } => {
                    let kids = revoked.tokens.entry(token_id.clone()).or_default();
                    if !kids.contains(kid) {
                        kids.push(kid.clone());
                    }
                }
                Revocation::Subject { subject } => {
                    revoked.subjects.insert(subject.clone());
                }
                Revocation::KeyBefore { kid, before } => {
                    let latest = revoked.keys_before.entry(kid.clone()).or_insert(0);
                    *latest = (*latest).max(*before);
                }
            }
        }
        revoked
    }

    /// True when nothing is revoked: the verify path then skips the lookups.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// How many revocations are in force.
    pub fn len(&self) -> usize {
        self.entries
    }

    /// True when `token` is covered by a revocation.
    pub fn covers(&self, token: Revocable<'_>) -> bool {
        if self.is_empty() {
            return false;
        }
        let by_id = token
            .token_id
            .and_then(|token_id| self.tokens.get(token_id))
            .is_some_and(|kids| kids.iter().any(|kid| kid == token.kid));
        if by_id {
            return true;
        }
        if token
            .subject
            .is_some_and(|subject| self.subjects.contains(subject))
        {
            return true;
        }
        self.keys_before
            .get(token.kid)
            .is_some_and(|&before| token.issued_at.is_none_or(|iat| iat < before))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(revocation: Revocation, expires: u64) -> RevocationEntry {
        RevocationEntry {
            revocation,
            created: 0,
            expires,
        }
    }

    fn token<'a>(
        kid: &'a str,
        id: Option<&'a str>,
        subject: Option<&'a str>,
        iat: Option<u64>,
    ) -> Revocable<'a> {
        Revocable {
            kid,
            token_id: id,
            subject,
            issued_at: iat,
        }
    }

    #[test]
    fn each_kind_of_revocation_covers_exactly_its_tokens() {
        let revoked = Revoked::new(
            &[
                entry(
                    Revocation::Token {
                        kid: "k1".into(),
                        token_id: "t1".into(),
                    },
                    100,
                ),
                entry(
                    Revocation::Subject {
                        subject: "user 7".into(),
                    },
                    100,
                ),
                entry(
                    Revocation::KeyBefore {
                        kid: "old".into(),
                        before: 50,
                    },
                    100,
                ),
            ],
            10,
        );
        let cases = [
            (token("k1", Some("t1"), None, None), true),
            (token("k2", Some("t1"), None, None), false),
            (token("k1", Some("t2"), None, None), false),
            (token("k1", None, Some("user 7"), Some(60)), true),
            (token("k1", None, Some("user 77"), None), false),
            (token("old", None, None, Some(49)), true),
            (token("old", None, None, Some(50)), false),
            (token("old", None, None, None), true),
            (token("new", None, None, None), false),
        ];
        for (case, expected) in cases {
            assert_eq!(revoked.covers(case), expected, "{case:?}");
        }
    }

    #[test]
    fn expired_entries_are_not_in_force_and_the_latest_key_cutoff_wins() {
        let revoked = Revoked::new(
            &[
                entry(
                    Revocation::KeyBefore {
                        kid: "k".into(),
                        before: 50,
                    },
                    100,
                ),
                entry(
                    Revocation::KeyBefore {
                        kid: "k".into(),
                        before: 80,
                    },
                    100,
                ),
                entry(
                    Revocation::Subject {
                        subject: "gone".into(),
                    },
                    20,
                ),
            ],
            20,
        );
        assert_eq!(revoked.len(), 2);
        assert!(revoked.covers(token("k", None, None, Some(79))));
        assert!(!revoked.covers(token("k", None, Some("gone"), Some(80))));
    }

    #[test]
    fn an_empty_set_covers_nothing() {
        let revoked = Revoked::new(&[], 0);
        assert!(revoked.is_empty());
        assert!(!revoked.covers(token("k", Some("t"), Some("s"), None)));
    }
}
