//! Request-path canonicalisation, prefix matching and path encoding. Pure: no I/O.
//!
//! The path a token is signed for and the path nginx serves must name the same file. nginx
//! decodes `%XX` once, merges slashes and resolves dot segments before it maps `$uri` to a file;
//! if we "fixed" such inputs the same way we would have to replicate nginx exactly. Instead this
//! module *rejects* everything nginx would rewrite, so for every path we accept, our canonical
//! form and nginx's `$uri` are byte-identical. The same function runs when signing and when
//! verifying.
//!
//! Not here: query strings (the caller splits them off first) and anything about tokens.

use std::borrow::Cow;

/// Longest raw request path we look at, in bytes. nginx's default header buffers are smaller.
pub const MAX_PATH_LEN: usize = 4096;

/// Why a path is not canonical. Every variant is a rejection, never a repair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Occurs when the path is empty or does not start with `/`.
    #[error("path must start with '/'")]
    NotAbsolute,
    /// Occurs when the raw path is longer than [`MAX_PATH_LEN`].
    #[error("path is longer than {MAX_PATH_LEN} bytes")]
    TooLong,
    /// Occurs on `%` not followed by two hex digits.
    #[error("malformed percent-encoding")]
    BadPercentEncoding,
    /// Occurs on `%2f` or `%5c`: a separator hidden from the first decoding pass.
    #[error("encoded '/' or '\\'")]
    EncodedSeparator,
    /// Occurs on a raw backslash, which some servers treat as a separator.
    #[error("backslash in path")]
    Backslash,
    /// Occurs on a `.` or `..` segment, also when spelled `%2e`.
    #[error("dot segment in path")]
    DotSegment,
    /// Occurs on `//`: nginx would merge it, so the signed and served paths could differ.
    #[error("repeated slash in path")]
    RepeatedSlash,
    /// Occurs on NUL, other control bytes (also encoded), or a raw `#`.
    #[error("control byte or '#' in path")]
    ForbiddenByte,
    /// Occurs when the decoded bytes are not UTF-8.
    #[error("path is not valid UTF-8")]
    InvalidUtf8,
}

/// Decodes `raw` (a request path without its query) once and checks it is canonical.
///
/// Borrows when there is nothing to decode, which is the common case on the verify path.
pub fn canonicalize(raw: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = raw.as_bytes();
    if bytes.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if bytes.contains(&b'#') {
        // A fragment never reaches a server; a raw '#' means the input is not a request path.
        // (A decoded '#', from %23, is a legal file-name byte.)
        return Err(PathError::ForbiddenByte);
    }
    let decoded: Cow<'_, [u8]> = if bytes.contains(&b'%') {
        Cow::Owned(percent_decode(bytes)?)
    } else {
        Cow::Borrowed(bytes)
    };
    check_segments(&decoded)?;
    match decoded {
        Cow::Borrowed(_) => Ok(Cow::Borrowed(raw)),
        Cow::Owned(vec) => String::from_utf8(vec)
            .map(Cow::Owned)
            .map_err(|_| PathError::InvalidUtf8),
    }
}

fn percent_decode(bytes: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (hi, lo) = match (bytes.get(i + 1), bytes.get(i + 2)) {
                (Some(&hi), Some(&lo)) => (hex_value(hi), hex_value(lo)),
                _ => return Err(PathError::BadPercentEncoding),
            };
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(PathError::BadPercentEncoding);
            };
            let value = (hi << 4) | lo;
            if value == b'/' || value == b'\\' {
                return Err(PathError::EncodedSeparator);
            }
            out.push(value);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Ok(out)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Checks decoded bytes: no control bytes, no backslash, no dot or empty segments
/// (a single trailing slash is allowed: `/media/dir/`). `path` starts with `/`.
///
/// One pass over the bytes (this runs on every request). When several problems occur, the
/// reported one follows a fixed precedence, pinned by the test vectors: control byte, then
/// backslash, then the first bad segment.
fn check_segments(path: &[u8]) -> Result<(), PathError> {
    let mut backslash = false;
    let mut bad_segment = None;
    let mut segment_start = 1;
    for (index, &byte) in path.iter().enumerate().skip(1) {
        match byte {
            0x00..=0x1f | 0x7f => return Err(PathError::ForbiddenByte),
            b'\\' => backslash = true,
            b'/' if bad_segment.is_none() => {
                bad_segment = segment_error(&path[segment_start..index], false);
                segment_start = index + 1;
            }
            _ => {}
        }
    }
    if path.first().is_some_and(|&b| b < 0x20 || b == 0x7f) {
        return Err(PathError::ForbiddenByte);
    }
    if backslash {
        return Err(PathError::Backslash);
    }
    if bad_segment.is_none() {
        bad_segment = segment_error(&path[segment_start.min(path.len())..], true);
    }
    bad_segment.map_or(Ok(()), Err)
}

/// What is wrong with one segment, if anything. Only the last may be empty (trailing slash).
fn segment_error(segment: &[u8], last: bool) -> Option<PathError> {
    match segment {
        b"." | b".." => Some(PathError::DotSegment),
        b"" if !last => Some(PathError::RepeatedSlash),
        _ => None,
    }
}

/// True when `path` is already in canonical (decoded) form: what [`canonicalize`] returns.
///
/// Not `canonicalize(path) == path`: a canonical path may contain a literal `%` (from `%25`),
/// which a second decoding would misread. Allocation-free; used when minting and when
/// decoding prefix tokens.
pub fn is_canonical(path: &str) -> bool {
    path.len() <= MAX_PATH_LEN && path.starts_with('/') && check_segments(path.as_bytes()).is_ok()
}

/// Canonicalises a scope prefix and gives it a trailing `/`, so that matching happens only at
/// a segment boundary: prefix `/media/a` becomes `/media/a/` and never matches `/media/ab`.
pub fn canonical_prefix(raw: &str) -> Result<String, PathError> {
    let mut prefix = canonicalize(raw)?.into_owned();
    if !prefix.ends_with('/') {
        prefix.push('/');
    }
    Ok(prefix)
}

/// True when canonical `path` lies inside canonical `prefix` (which ends with `/`).
pub fn is_within(path: &str, prefix: &str) -> bool {
    debug_assert!(
        prefix.ends_with('/'),
        "prefixes are stored with a trailing slash"
    );
    path.starts_with(prefix)
}

/// How a path segment that carries a token begins (spec §13.3): in
/// `/media/clip/~mg~<token>/seg0.ts` the token covers `/media/clip/seg0.ts`, and every URL a
/// playlist there names relatively (`seg1.ts`, `360p/seg0.ts`) carries it too. `~` is
/// unreserved, so the marker needs no encoding and survives [`encode_path`] as it is.
pub const GRANT_MARKER: &str = "~mg~";

/// A canonical request path with its token segment taken out (see [`split_grant`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathGrant {
    /// The path of the file: the canonical path without the segment. This is what the token
    /// is verified for and what nginx serves (its `rewrite` removes the same segment).
    pub file: String,
    /// Where the token is in the canonical path (after the marker). A range rather than a
    /// borrow, so that the caller can keep the file path and the canonical path side by side.
    pub token: std::ops::Range<usize>,
    /// The length of the part before the segment, which begins both the file path and the
    /// canonical path: see [`PathGrant::base`].
    pub base_len: usize,
}

impl PathGrant {
    /// Everything before the segment, ending in `/`: where the token's scope must begin.
    pub fn base(&self) -> &str {
        &self.file[..self.base_len]
    }
}

/// Why a path's token segment cannot be read: the request is `bad_path`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a path carries more than one token segment, or one without a token or a file after it")]
pub struct BadGrantSegment;

/// Finds the token segment of a canonical path (decoded, so `%7Emg%7E` counts as the marker,
/// as it does in nginx's decoded `$uri`): `Ok(None)` when no segment begins with
/// [`GRANT_MARKER`]. Refused rather than guessed at: a second such segment (which token, which
/// file?), an empty token, and a segment that ends the path (`/a/~mg~T` names no file; a
/// folder is `/a/~mg~T/`).
pub fn split_grant(canonical: &str) -> Result<Option<PathGrant>, BadGrantSegment> {
    let Some(slash) = find_grant_segment(canonical) else {
        return Ok(None);
    };
    let start = slash + 1 + GRANT_MARKER.len();
    let Some(length) = canonical[start..].find('/') else {
        return Err(BadGrantSegment);
    };
    let end = start + length;
    if length == 0 || find_grant_segment(&canonical[end..]).is_some() {
        return Err(BadGrantSegment);
    }
    let base_len = slash + 1;
    let mut file = String::with_capacity(canonical.len() - (end - slash));
    file.push_str(&canonical[..base_len]);
    file.push_str(&canonical[end + 1..]);
    Ok(Some(PathGrant {
        file,
        token: start..end,
        base_len,
    }))
}

/// Where the first segment that begins with [`GRANT_MARKER`] starts in `path` (at its `/`).
/// Every request path comes through here: looking only at its `~` bytes, which `str::find`
/// finds a word at a time, costs less than setting up a substring search.
fn find_grant_segment(path: &str) -> Option<usize> {
    let bytes = path.as_bytes();
    let mut from = 0;
    while let Some(offset) = path[from..].find('~') {
        let tilde = from + offset;
        if tilde > 0
            && bytes[tilde - 1] == b'/'
            && bytes[tilde..].starts_with(GRANT_MARKER.as_bytes())
        {
            return Some(tilde - 1);
        }
        from = tilde + 1;
    }
    None
}

/// A raw request path fit for a log line: wherever the token marker [`GRANT_MARKER`] begins,
/// however it is spelled (percent-decoded once) and whatever precedes it (a `/`, an encoded
/// `%2F`, the middle of a name), it and everything up to the next `/` become `~mg~-`. Logs
/// never hold a working link, not even of a request refused for its odd spelling; a path
/// without the marker is borrowed.
pub fn redact_grants(raw: &str) -> Cow<'_, str> {
    let marker = GRANT_MARKER.as_bytes();
    let bytes = raw.as_bytes();
    // The marker begins with `~`, spelled `~` or `%7E`: only those bytes start a candidate
    // (this runs for every audited request).
    let found = |from: usize| {
        (from..bytes.len())
            .find(|&i| matches!(bytes[i], b'~' | b'%') && decoded_starts_with(&bytes[i..], marker))
    };
    let Some(mut at) = found(0) else {
        return Cow::Borrowed(raw);
    };
    let mut out = String::with_capacity(raw.len());
    let mut copied = 0;
    loop {
        out.push_str(&raw[copied..at]);
        out.push_str("~mg~-");
        copied = raw[at..].find('/').map_or(raw.len(), |slash| at + slash);
        match found(copied) {
            Some(next) => at = next,
            None => break,
        }
    }
    out.push_str(&raw[copied..]);
    Cow::Owned(out)
}

/// What a log line shows of a raw request URI (`$request_uri`): its path without the query
/// (where a token travels) and with every token segment redacted ([`redact_grants`]).
pub fn logged_path(uri: &str) -> Cow<'_, str> {
    redact_grants(split_uri(uri).0)
}

/// True when `bytes`, percent-decoded once (a malformed escape stays as it is), begin with
/// `prefix`.
fn decoded_starts_with(bytes: &[u8], prefix: &[u8]) -> bool {
    let mut i = 0;
    for &want in prefix {
        let escape = match bytes.get(i..i + 3) {
            Some([b'%', high, low]) => hex_value(*high).zip(hex_value(*low)),
            _ => None,
        };
        let got = match escape {
            Some((high, low)) => {
                i += 3;
                (high << 4) | low
            }
            None => match bytes.get(i) {
                Some(&b) => {
                    i += 1;
                    b
                }
                None => return false,
            },
        };
        if got != want {
            return false;
        }
    }
    true
}

/// The URL path of a link to `file` that carries `token` as a segment where
/// [`grant_base`] puts it: after `prefix` (the token's, which holds `file`), or for an
/// exact-path token (`None`) in `file`'s folder. Percent-encoded like [`encode_path`]; see
/// [`GRANT_MARKER`].
pub fn grant_path(file: &str, prefix: Option<&str>, token: &str) -> String {
    let base = grant_base(prefix, file);
    debug_assert!(base.ends_with('/') && file.starts_with(base));
    let mut out = String::with_capacity(file.len() + token.len() + 16);
    append_encoded(&mut out, base.as_bytes(), b"/");
    out.push_str(GRANT_MARKER);
    out.push_str(token);
    out.push('/');
    append_encoded(&mut out, &file.as_bytes()[base.len()..], b"/");
    out
}

/// Where a link's token segment goes (spec §13.3), the one rule minters and the gate share:
/// right after the token's prefix, or for an exact-path token in the folder of its `file`.
pub fn grant_base<'a>(prefix: Option<&'a str>, file: &'a str) -> &'a str {
    prefix.unwrap_or_else(|| folder(file))
}

/// The folder of a canonical path, with its trailing `/`: `/a/b.mp4` gives `/a/`, `/a/` gives
/// `/a/`. Where an exact-path token's segment goes.
pub fn folder(path: &str) -> &str {
    path.rfind('/').map_or("/", |slash| &path[..=slash])
}

/// Splits a raw request URI (`$request_uri`) into its path and its query (without `?`).
pub fn split_uri(uri: &str) -> (&str, Option<&str>) {
    match uri.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (uri, None),
    }
}

/// Percent-encodes a canonical path for a URL or an `X-Accel-Redirect` value: every byte but
/// unreserved characters (RFC 3986) and `/` is encoded, so spaces, `%`, `?`, `#` and non-ASCII
/// survive exactly one decoding by nginx or a browser.
pub fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 8);
    append_encoded(&mut out, path.as_bytes(), b"/");
    out
}

/// Percent-encodes a query-string component (keeps only unreserved characters).
pub fn encode_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    append_encoded(&mut out, value.as_bytes(), b"");
    out
}

fn append_encoded(out: &mut String, bytes: &[u8], keep: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0x0f)] as char);
        }
    }
}

/// Finds the value of `name` in a raw query string, without decoding it (spec §13).
///
/// Parameters are separated by `&` only (`;` is an ordinary byte). A parameter without `=`
/// has an empty value. Returns `Err(())`, ambiguity being a denial, when
/// - `name` occurs more than once, whatever the values (`token=&token=x` too), or
/// - a parameter is another spelling of `name`: equal to it after one percent-decoding or
///   ignoring ASCII case (`%74oken`, `TOKEN`). Other parsers (nginx's `$arg_token` ignores
///   case, applications decode) would read such a parameter as the token.
#[allow(clippy::result_unit_err)]
pub fn query_param<'q>(query: &'q str, name: &str) -> Result<Option<&'q str>, ()> {
    let mut found = None;
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == name {
            if found.is_some() {
                return Err(());
            }
            found = Some(value);
        } else if spells(key.as_bytes(), name.as_bytes()) {
            return Err(());
        }
    }
    Ok(found)
}

/// True when `key`, percent-decoded once (a malformed escape stays as is), equals `name`
/// ignoring ASCII case. Allocation-free: this runs on every request.
fn spells(key: &[u8], name: &[u8]) -> bool {
    let mut at = 0;
    for &want in name {
        let got = match key.get(at..at + 3) {
            Some([b'%', hi, lo]) => match (hex_value(*hi), hex_value(*lo)) {
                (Some(hi), Some(lo)) => {
                    at += 3;
                    (hi << 4) | lo
                }
                _ => {
                    at += 1;
                    b'%'
                }
            },
            _ => match key.get(at) {
                Some(&byte) => {
                    at += 1;
                    byte
                }
                None => return false,
            },
        };
        if !got.eq_ignore_ascii_case(&want) {
            return false;
        }
    }
    at == key.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_are_borrowed_unchanged() {
        let path = canonicalize("/media/report.pdf").unwrap();
        assert!(matches!(path, Cow::Borrowed("/media/report.pdf")));
    }

    #[test]
    fn percent_encoding_is_decoded_once() {
        assert_eq!(canonicalize("/a%20b/%25zz").unwrap(), "/a b/%zz");
        assert_eq!(canonicalize("/caf%C3%A9").unwrap(), "/café");
    }

    #[test]
    fn trailing_slash_is_allowed_but_not_repeated() {
        assert_eq!(canonicalize("/media/dir/").unwrap(), "/media/dir/");
        assert_eq!(canonicalize("/").unwrap(), "/");
        assert_eq!(canonicalize("/media//x"), Err(PathError::RepeatedSlash));
        assert_eq!(canonicalize("/media/dir//"), Err(PathError::RepeatedSlash));
    }

    #[test]
    fn prefix_matches_only_at_segment_boundary() {
        let prefix = canonical_prefix("/media/a").unwrap();
        assert_eq!(prefix, "/media/a/");
        assert!(is_within("/media/a/x.ts", &prefix));
        assert!(!is_within("/media/ab", &prefix));
        assert!(!is_within("/media/a", &prefix));
    }

    #[test]
    fn encoding_round_trips_through_canonicalize() {
        for path in ["/a b/100%/q?#x", "/ünï/çødé", "/plain/x.pdf", "/semi;colon"] {
            assert_eq!(canonicalize(&encode_path(path)).unwrap(), path);
        }
        assert_eq!(encode_path("/a b/%?#é"), "/a%20b/%25%3F%23%C3%A9");
    }

    #[test]
    fn decoded_paths_with_percent_are_canonical() {
        let decoded = canonicalize("/files/100%25.txt").unwrap();
        assert_eq!(decoded, "/files/100%.txt");
        assert!(is_canonical(&decoded));
        assert!(!is_canonical("/a/../b") && !is_canonical("a") && !is_canonical("/a//b"));
    }

    #[test]
    fn duplicate_query_parameter_is_ambiguous() {
        assert_eq!(query_param("a=1&token=x", "token"), Ok(Some("x")));
        assert_eq!(query_param("a=1", "token"), Ok(None));
        assert_eq!(query_param("token=x&token=y", "token"), Err(()));
        assert_eq!(query_param("tokens=x", "token"), Ok(None));
        assert_eq!(query_param("token=&token=x", "token"), Err(()));
        assert_eq!(query_param("TOKEN=x", "token"), Err(()));
        assert_eq!(query_param("%74oken=x", "token"), Err(()));
        assert_eq!(query_param("%zzoken=x&token=y", "token"), Ok(Some("y")));
    }

    #[test]
    fn a_token_segment_is_taken_out_of_the_path() {
        let split = |path: &'static str| {
            split_grant(path)
                .map(|found| found.map(|g| (g.file.clone(), g.base().to_owned(), &path[g.token])))
        };
        assert_eq!(split("/media/a/b.ts"), Ok(None));
        assert_eq!(
            split("/media/clip/~mg~AQ/seg0.ts"),
            Ok(Some((
                "/media/clip/seg0.ts".into(),
                "/media/clip/".into(),
                "AQ"
            )))
        );
        assert_eq!(
            split("/~mg~AQ/media/x/y.ts"),
            Ok(Some(("/media/x/y.ts".into(), "/".into(), "AQ")))
        );
        // A folder (nginx's index) is a file path too.
        assert_eq!(
            split("/media/clip/~mg~AQ/"),
            Ok(Some(("/media/clip/".into(), "/media/clip/".into(), "AQ")))
        );
        // Only a segment that begins with the marker is one, before or after the real one.
        assert_eq!(split("/media/x~mg~AQ/y.ts"), Ok(None));
        assert_eq!(split("/media/~MG~AQ/y.ts"), Ok(None));
        assert_eq!(
            split("/a/~mg~AQ/x~mg~y"),
            Ok(Some(("/a/x~mg~y".into(), "/a/".into(), "AQ")))
        );
        assert_eq!(
            split("/x~mg~y/~~mg~z/~mg~AQ/f"),
            Ok(Some((
                "/x~mg~y/~~mg~z/f".into(),
                "/x~mg~y/~~mg~z/".into(),
                "AQ"
            )))
        );
        for refused in [
            "/media/clip/~mg~AQ",
            "/media/~mg~/seg0.ts",
            "/media/~mg~AQ/~mg~AQ/seg0.ts",
            "/~mg~AQ/media/~mg~BQ/seg0.ts",
            "/media/~mg~AQ/x/~mg~",
        ] {
            assert_eq!(split(refused), Err(BadGrantSegment), "{refused}");
        }
    }

    #[test]
    fn a_grant_path_splits_back_into_file_base_and_token() {
        for (file, base) in [
            ("/media/clip/seg0.ts", "/media/clip/"),
            ("/media/a b/ünï/100%.ts", "/media/a b/"),
            ("/media/clip/", "/media/clip/"),
            ("/x.pdf", "/"),
        ] {
            let url = grant_path(file, Some(base), "AQEB-_x");
            let canonical = canonicalize(&url).unwrap();
            let grant = split_grant(&canonical).unwrap().unwrap();
            assert_eq!(
                (
                    grant.file.as_str(),
                    grant.base(),
                    &canonical[grant.token.clone()]
                ),
                (file, base, "AQEB-_x")
            );
        }
        assert_eq!(
            grant_path("/media/a b/c.ts", Some("/media/"), "T"),
            "/media/~mg~T/a%20b/c.ts"
        );
        assert_eq!(folder("/media/a/b.mp4"), "/media/a/");
        assert_eq!(folder("/media/a/"), "/media/a/");
        assert_eq!(folder("/b.mp4"), "/");
        assert_eq!(folder(""), "/");
    }

    #[test]
    fn logged_paths_never_hold_a_token_segment() {
        assert_eq!(redact_grants("/media/a/b.ts"), "/media/a/b.ts");
        assert!(matches!(redact_grants("/media/a/b.ts"), Cow::Borrowed(_)));
        for (raw, logged) in [
            ("/media/clip/~mg~AQEB/seg0.ts", "/media/clip/~mg~-/seg0.ts"),
            ("/media/%7Emg%7EAQEB/seg0.ts", "/media/~mg~-/seg0.ts"),
            ("/media/%7emg~AQEB/x", "/media/~mg~-/x"),
            ("/media/~%6Dg~AQEB/x", "/media/~mg~-/x"),
            ("/~mg~A/b/~mg~B", "/~mg~-/b/~mg~-"),
            ("/media/~mg~", "/media/~mg~-"),
        ] {
            assert_eq!(redact_grants(raw), logged, "{raw}");
        }
        // Wherever the marker begins: inside a name, after an encoded slash.
        for (raw, logged) in [
            ("/media/x~mg~AQ/y", "/media/x~mg~-/y"),
            ("/media%2F~mg~AQEB/x", "/media%2F~mg~-/x"),
            ("/media%2f%7Emg~AQEB", "/media%2f~mg~-"),
            ("/a\\~mg~AQ/b", "/a\\~mg~-/b"),
        ] {
            assert_eq!(redact_grants(raw), logged, "{raw}");
        }
        // Not the marker: another case, a broken escape.
        for kept in ["/media/~MG~AQ/y", "/media/%7~mg"] {
            assert_eq!(redact_grants(kept), kept);
        }
    }
}
