//! The scopes list (v2 field `0x11`): several (methods, exact path or prefix) pairs in one
//! token, for API-style tokens ("GET below `/api/v1/foo/`, PUT on `/uploads/x`").
//!
//! ```text
//! scopes = entry entry+                       at least two, 2-255 bytes in all
//! entry  = methods:u8 kind:u8 len:u8 path[len]
//! kind   = 0x00 exact path | 0x01 prefix (the path ends with `/`)
//! ```
//!
//! One spelling: entries strictly ascending by (path bytes, kind), paths canonical (spec
//! §7.3), and no method granted twice for the same request path (an entry inside another
//! entry's prefix shares no method with it). Decoding checks all of it; [`Scopes::iter`]
//! then walks the validated bytes in place, so verification allocates nothing.
//!
//! Not here: which other fields may accompany the list (`wire.rs`), the MAC (a token with
//! scopes has no path binding: the paths are in the signed body).

use super::fields::Methods;
use crate::path;

/// Wire byte of an exact-path entry.
pub const KIND_EXACT: u8 = 0x00;
/// Wire byte of a prefix entry.
pub const KIND_PREFIX: u8 = 0x01;
/// Largest scopes field (one length byte).
pub const MAX_BYTES: usize = 255;
/// Bytes an entry takes besides its path.
pub const ENTRY_HEADER: usize = 3;

/// One entry of a scopes list being minted; `path` is canonical (decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeEntry {
    /// Methods the entry allows.
    pub methods: Methods,
    /// True for a prefix (every path below `path`, which ends with `/`), false for exactly
    /// `path`.
    pub prefix: bool,
    /// Canonical path or prefix.
    pub path: String,
}

/// One entry of a decoded (validated) scopes list, borrowing from the token buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScopeRef<'a> {
    /// Methods the entry allows.
    pub methods: Methods,
    /// True for a prefix entry.
    pub prefix: bool,
    /// Canonical path or prefix (ending in `/`).
    pub path: &'a str,
}

impl ScopeRef<'_> {
    /// True when canonical `request_path` is this entry's path (exact) or lies below it at a
    /// `/` boundary (prefix; [`path::is_within`]).
    pub fn covers(&self, request_path: &str) -> bool {
        if self.prefix {
            path::is_within(request_path, self.path)
        } else {
            request_path == self.path
        }
    }

    /// True when every path `other` admits is also admitted by `self`.
    fn contains(&self, other: &ScopeRef<'_>) -> bool {
        match (self.prefix, other.prefix) {
            (true, _) => path::is_within(other.path, self.path),
            (false, false) => self.path == other.path,
            (false, true) => false,
        }
    }
}

/// What a scopes list says about one request (spec §17.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// An entry covers the path and allows the method.
    Allowed,
    /// No entry covers the path: `out_of_scope`.
    NoPath,
    /// Entries cover the path, none of them allows the method: `method`.
    NoMethod,
}

/// A validated scopes field as carried in a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scopes<'a>(&'a [u8]);

impl<'a> Scopes<'a> {
    /// Wraps a field value after [`check`] accepted it.
    pub(crate) fn validated(value: &'a [u8]) -> Scopes<'a> {
        Scopes(value)
    }

    /// The entries in wire order.
    pub fn iter(&self) -> impl Iterator<Item = ScopeRef<'a>> + 'a {
        let mut rest = self.0;
        std::iter::from_fn(move || {
            // Validated: the walk cannot fail; an error only ends it.
            let (entry, tail) = next_entry(rest).ok()??;
            rest = tail;
            Some(entry)
        })
    }

    /// Decides `method` on canonical `request_path`: allowed when some entry covers the
    /// path and allows the method; otherwise `NoPath` when no entry covers the path at all,
    /// else `NoMethod`. Entries are walked in place, nothing is allocated.
    pub fn admit(&self, request_path: &str, method: &str) -> Admission {
        let mut covered = false;
        for entry in self.iter() {
            if entry.covers(request_path) {
                if entry.methods.allows(method) {
                    return Admission::Allowed;
                }
                covered = true;
            }
        }
        if covered {
            Admission::NoMethod
        } else {
            Admission::NoPath
        }
    }
}

/// Reads the entry at the start of `rest`: `Ok(None)` at the end, the entry and what follows
/// it, or why the bytes are no entry.
fn next_entry(rest: &[u8]) -> Result<Option<(ScopeRef<'_>, &[u8])>, &'static str> {
    let [methods, kind, len, tail @ ..] = rest else {
        return match rest.is_empty() {
            true => Ok(None),
            false => Err("scopes: an entry header is cut short"),
        };
    };
    let methods = Methods::from_bits(*methods).ok_or("scopes: an entry has bad methods")?;
    let prefix = match *kind {
        KIND_EXACT => false,
        KIND_PREFIX => true,
        _ => return Err("scopes: an entry kind is neither exact (0) nor prefix (1)"),
    };
    let len = usize::from(*len);
    let raw = tail
        .get(..len)
        .ok_or("scopes: an entry runs past the end")?;
    let path = std::str::from_utf8(raw).map_err(|_| "scopes: a path is not UTF-8")?;
    if !path::is_canonical(path) {
        return Err("scopes: a path is not canonical");
    }
    if prefix && !path.ends_with('/') {
        return Err("scopes: a prefix entry does not end with '/'");
    }
    Ok(Some((
        ScopeRef {
            methods,
            prefix,
            path,
        },
        &tail[len..],
    )))
}

/// Checks a scopes field value against every rule of the one spelling (module docs). The
/// same function guards minting and decoding.
pub fn check(value: &[u8]) -> Result<(), &'static str> {
    if value.len() > MAX_BYTES {
        return Err("scopes: longer than 255 bytes");
    }
    let mut rest = value;
    let mut previous: Option<ScopeRef<'_>> = None;
    let mut count = 0usize;
    while let Some((entry, tail)) = next_entry(rest)? {
        if let Some(previous) = previous {
            if (previous.path, previous.prefix) >= (entry.path, entry.prefix) {
                return Err(
                    "scopes: entries out of order or repeated (ascending by path, exact before prefix)",
                );
            }
        }
        previous = Some(entry);
        count += 1;
        rest = tail;
    }
    if count < 2 {
        return Err(
            "scopes: fewer than two entries (one is spelled as a v1 path or prefix with methods)",
        );
    }
    let scopes = Scopes(value);
    for (index, outer) in scopes.iter().enumerate() {
        for inner in scopes.iter().skip(index + 1) {
            let nested = outer.contains(&inner) || inner.contains(&outer);
            if nested && outer.methods.bits() & inner.methods.bits() != 0 {
                return Err("scopes: an entry inside another grants one of its methods again");
            }
        }
    }
    Ok(())
}

/// The wire form of `entries` in the order given (the minter refuses, via [`check`], any
/// order but the canonical one).
pub fn encode(entries: &[ScopeEntry]) -> Result<Vec<u8>, &'static str> {
    let mut out = Vec::with_capacity(MAX_BYTES);
    for entry in entries {
        let len = u8::try_from(entry.path.len()).map_err(|_| "scopes: longer than 255 bytes")?;
        out.push(entry.methods.bits());
        out.push(if entry.prefix {
            KIND_PREFIX
        } else {
            KIND_EXACT
        });
        out.push(len);
        out.extend_from_slice(entry.path.as_bytes());
    }
    check(&out)?;
    Ok(out)
}

/// Puts entries a person wrote (paths already canonicalised by the front end) into their one
/// order, after refusing what has no one spelling: a prefix without its `/`, the same path
/// and kind twice, an entry granting a method an enclosing entry already grants, fewer than
/// two entries, more than fit. Never merges or repairs; the error says what to change.
pub fn canonical_scopes(mut entries: Vec<ScopeEntry>) -> Result<Vec<ScopeEntry>, String> {
    if let Some(entry) = entries.iter().find(|e| e.prefix && !e.path.ends_with('/')) {
        return Err(format!(
            "scope prefix {:?} must end with '/' (a prefix names a folder)",
            entry.path
        ));
    }
    match entries.len() {
        0 => return Err("empty scope list".into()),
        1 => {
            return Err(
                "a single scope is a plain token: give its path (with --prefix for a folder) and \
                 --method instead"
                    .into(),
            )
        }
        _ => {}
    }
    entries.sort_by(|a, b| (&a.path, a.prefix).cmp(&(&b.path, b.prefix)));
    for pair in entries.windows(2) {
        if (&pair[0].path, pair[0].prefix) == (&pair[1].path, pair[1].prefix) {
            return Err(format!(
                "scope {} is named twice: give all its methods in one entry",
                describe(&pair[0])
            ));
        }
    }
    for (index, outer) in entries.iter().enumerate() {
        for inner in &entries[index + 1..] {
            let (a, b) = (borrowed(outer), borrowed(inner));
            if (a.contains(&b) || b.contains(&a)) && a.methods.bits() & b.methods.bits() != 0 {
                return Err(format!(
                    "scopes {} and {} overlap and both grant {}: grant each method once",
                    describe(outer),
                    describe(inner),
                    Methods::from_bits(a.methods.bits() & b.methods.bits())
                        .map_or_else(String::new, |m| m.to_string())
                ));
            }
        }
    }
    let bytes: usize = entries.iter().map(|e| ENTRY_HEADER + e.path.len()).sum();
    if bytes > MAX_BYTES {
        return Err(format!(
            "scopes take {bytes} bytes (3 + path length each); at most {MAX_BYTES} fit in a token"
        ));
    }
    Ok(entries)
}

fn borrowed(entry: &ScopeEntry) -> ScopeRef<'_> {
    ScopeRef {
        methods: entry.methods,
        prefix: entry.prefix,
        path: &entry.path,
    }
}

/// `GET,HEAD below /api/` or `PUT on /uploads/x`, for messages and `inspect`.
pub fn describe_ref(entry: &ScopeRef<'_>) -> String {
    let place = if entry.prefix { "below" } else { "on" };
    format!("{} {place} {}", entry.methods, entry.path)
}

fn describe(entry: &ScopeEntry) -> String {
    describe_ref(&borrowed(entry))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(methods: &str, path: &str) -> ScopeEntry {
        ScopeEntry {
            methods: methods.parse().unwrap(),
            prefix: path.ends_with('/'),
            path: path.into(),
        }
    }

    fn wire(entries: &[(u8, u8, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (methods, kind, path) in entries {
            out.extend_from_slice(&[*methods, *kind, path.len() as u8]);
            out.extend_from_slice(path.as_bytes());
        }
        out
    }

    #[test]
    fn admit_decides_path_first_then_method() {
        let bytes = encode(&[
            entry("GET,HEAD", "/api/v1/foo/"),
            entry("PUT", "/uploads/x"),
        ])
        .unwrap();
        let scopes = Scopes::validated(&bytes);
        assert_eq!(scopes.admit("/api/v1/foo/bar", "GET"), Admission::Allowed);
        assert_eq!(scopes.admit("/api/v1/foo/", "HEAD"), Admission::Allowed);
        assert_eq!(scopes.admit("/uploads/x", "PUT"), Admission::Allowed);
        assert_eq!(scopes.admit("/api/v1/foo/bar", "PUT"), Admission::NoMethod);
        assert_eq!(scopes.admit("/uploads/x", "GET"), Admission::NoMethod);
        // Boundaries at `/` only: django's `/foo` would admit these.
        assert_eq!(
            scopes.admit("/api/v1/foobar/secret", "GET"),
            Admission::NoPath
        );
        assert_eq!(scopes.admit("/api/v1/foo", "GET"), Admission::NoPath);
        assert_eq!(scopes.admit("/uploads/x/y", "PUT"), Admission::NoPath);
        assert_eq!(scopes.admit("/uploads/xy", "PUT"), Admission::NoPath);
    }

    #[test]
    fn nested_entries_add_methods_and_the_union_decides() {
        let entries =
            canonical_scopes(vec![entry("PUT", "/api/up/x"), entry("GET", "/api/")]).unwrap();
        assert_eq!(entries[0].path, "/api/");
        let bytes = encode(&entries).unwrap();
        let scopes = Scopes::validated(&bytes);
        assert_eq!(scopes.admit("/api/up/x", "GET"), Admission::Allowed);
        assert_eq!(scopes.admit("/api/up/x", "PUT"), Admission::Allowed);
        assert_eq!(scopes.admit("/api/up/y", "PUT"), Admission::NoMethod);
        assert_eq!(scopes.iter().count(), 2);
    }

    #[test]
    fn every_rule_of_the_one_spelling_is_checked() {
        let ok = wire(&[(1, 1, "/a/"), (8, 0, "/b")]);
        assert_eq!(check(&ok), Ok(()));
        for (bad, why) in [
            (wire(&[(8, 0, "/b"), (1, 1, "/a/")]), "out of order"),
            (wire(&[(1, 0, "/b"), (8, 0, "/b")]), "out of order"),
            (wire(&[(1, 1, "/a/")]), "fewer than two"),
            (Vec::new(), "fewer than two"),
            (
                wire(&[(1, 1, "/a/"), (3, 0, "/a/b")]),
                "grants one of its methods",
            ),
            (
                wire(&[(1, 0, "/a/"), (1, 1, "/a/")]),
                "grants one of its methods",
            ),
            (
                wire(&[(1, 1, "/a/"), (1, 1, "/a/b/")]),
                "grants one of its methods",
            ),
            (wire(&[(1, 1, "/a"), (8, 0, "/b")]), "does not end with '/'"),
            (wire(&[(1, 0, "/a//b"), (8, 0, "/b")]), "not canonical"),
            (wire(&[(1, 0, "/a/../b"), (8, 0, "/b")]), "not canonical"),
            (wire(&[(1, 0, "a"), (8, 0, "/b")]), "not canonical"),
            (wire(&[(0, 0, "/a"), (8, 0, "/b")]), "bad methods"),
            (wire(&[(0x80, 0, "/a"), (8, 0, "/b")]), "bad methods"),
            (wire(&[(1, 2, "/a"), (8, 0, "/b")]), "kind"),
            ([wire(&[(1, 0, "/a")]), vec![8, 0]].concat(), "cut short"),
        ] {
            let error = check(&bad).unwrap_err();
            assert!(error.contains(why), "{bad:?}: {error}");
        }
        let mut long = wire(&[(1, 0, "/a"), (8, 0, "/b")]);
        long[2] = 9;
        assert!(check(&long).unwrap_err().contains("past the end"));
        // Disjoint methods may nest; the exact `/a/` and the prefix `/a/` are two entries.
        assert_eq!(check(&wire(&[(8, 0, "/a/"), (1, 1, "/a/")])), Ok(()));
    }

    #[test]
    fn front_end_sorts_but_never_merges_or_repairs() {
        let sorted = canonical_scopes(vec![entry("PUT", "/b"), entry("GET", "/a/")]).unwrap();
        assert_eq!(
            sorted.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(),
            ["/a/", "/b"]
        );
        for (entries, says) in [
            (vec![], "empty"),
            (vec![entry("GET", "/a/")], "single scope"),
            (vec![entry("GET", "/a"), entry("PUT", "/a")], "named twice"),
            (
                vec![entry("GET", "/a/"), entry("GET,PUT", "/a/b")],
                "both grant GET",
            ),
            (
                vec![
                    ScopeEntry {
                        prefix: true,
                        ..entry("GET", "/a")
                    },
                    entry("PUT", "/b"),
                ],
                "must end with '/'",
            ),
            (
                (0..20)
                    .map(|i| entry("GET", &format!("/{i:0>10}")))
                    .collect(),
                "at most 255",
            ),
        ] {
            let error = canonical_scopes(entries).unwrap_err();
            assert!(error.contains(says), "{error}");
        }
    }
}
