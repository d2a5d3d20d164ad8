//! Fuzzes the path canonicaliser: arbitrary bytes -> `canonicalize`; whatever it accepts must
//! have the canonical shape, survive `encode_path` and re-canonicalise to itself, and match
//! prefixes only at segment boundaries. The same properties are proptests in `tests/paths.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mediagate::path::{
    self, canonical_prefix, canonicalize, encode_path, is_within, PathError, MAX_PATH_LEN,
};

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(canonical) = canonicalize(raw) else {
        // Rejection is fine; canonical_prefix must agree and must not panic either.
        assert!(canonical_prefix(raw).is_err());
        return;
    };
    let canonical = canonical.into_owned();
    check_shape(&canonical);
    check_grant(&canonical);
    // A logged path never holds a token segment, so redacting it again changes nothing.
    let logged = path::redact_grants(raw);
    assert_eq!(path::redact_grants(&logged), logged);

    // Round trip: the URL we would hand out names the same canonical path.
    let encoded = encode_path(&canonical);
    assert!(encoded.is_ascii());
    if encoded.len() <= MAX_PATH_LEN {
        assert_eq!(
            canonicalize(&encoded).as_deref(),
            Ok(canonical.as_str()),
            "raw {raw:?}"
        );
    } else {
        // Bytes browsers send raw but encode_path escapes triple in length, so the URL form
        // can be over the limit (found by this target; `mint` now refuses such paths, see
        // `encode_path_can_triple_a_path_past_max_path_len` in tests/paths.rs).
        assert_eq!(canonicalize(&encoded), Err(PathError::TooLong));
    }

    // Idempotence: re-encoding the only bytes a canonical path may hold but a raw path may not
    // carry literally ('%' and '#') gives back the same canonical path.
    let reencoded = canonical.replace('%', "%25").replace('#', "%23");
    if reencoded.len() <= MAX_PATH_LEN {
        assert_eq!(canonicalize(&reencoded).as_deref(), Ok(canonical.as_str()));
    }
    if !canonical.contains(['%', '#']) {
        assert_eq!(canonicalize(&canonical).as_deref(), Ok(canonical.as_str()));
    }
    assert!(path::is_canonical(&canonical));

    // Prefix matching only at a segment boundary.
    let prefix = canonical_prefix(raw).expect("canonical_prefix rejected an accepted path");
    assert!(prefix.ends_with('/'));
    assert!(prefix == canonical || prefix == format!("{canonical}/"));
    assert!(is_within(&format!("{prefix}x"), &prefix));
    if canonical != "/" && !canonical.ends_with('/') {
        assert!(!is_within(&canonical, &prefix));
        assert!(!is_within(&format!("{canonical}x"), &prefix));
        assert!(!is_within(&format!("{canonical}.x/y"), &prefix));
    }
    for fixed in ["/", "/media/", "/media/a/", "/caf\u{e9}/"] {
        let within = is_within(&canonical, fixed);
        assert_eq!(
            within,
            segments_below(&canonical, fixed),
            "{canonical:?} in {fixed:?}"
        );
        if within {
            assert_eq!(canonical.as_bytes()[fixed.len() - 1], b'/');
        }
    }
});

/// A token segment (spec §13.3): the file path is canonical and holds no other one, the base
/// begins it, and the link built from the parts splits back into them. The same property is
/// a proptest in `tests/paths.rs`.
fn check_grant(canonical: &str) {
    // The segment is the first one that begins with the marker; without one, there is none.
    // Refused: an empty token, none with a file after it, a second segment after it.
    let found = path::split_grant(canonical);
    let first = canonical.find("/~mg~");
    assert_eq!(matches!(found, Ok(None)), first.is_none(), "{canonical:?}");
    let refused = first.is_some_and(|at| {
        let rest = &canonical[at + "/~mg~".len()..];
        rest.find('/')
            .is_none_or(|end| end == 0 || rest[end..].contains("/~mg~"))
    });
    assert_eq!(found.is_err(), refused, "{canonical:?}");
    let Ok(Some(grant)) = found else {
        return;
    };
    assert_eq!(Some(grant.base_len - 1), first, "{canonical:?}");
    assert!(path::is_canonical(&grant.file), "{canonical:?}");
    assert_eq!(path::split_grant(&grant.file), Ok(None));
    assert!(grant.base().ends_with('/') && grant.file.starts_with(grant.base()));
    let token = &canonical[grant.token.clone()];
    if token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        let url = path::grant_path(&grant.file, grant.base(), token);
        if url.len() <= MAX_PATH_LEN {
            assert_eq!(canonicalize(&url).as_deref(), Ok(canonical));
        }
    }
}

fn check_shape(canonical: &str) {
    assert!(canonical.starts_with('/'));
    assert!(canonical.len() <= MAX_PATH_LEN);
    for needle in ["/./", "/../", "//", "\\"] {
        assert!(
            !canonical.contains(needle),
            "{canonical:?} contains {needle:?}"
        );
    }
    assert!(!canonical.ends_with("/.") && !canonical.ends_with("/.."));
    assert!(!canonical.bytes().any(|b| b < 0x20 || b == 0x7f));
}

/// True when `prefix`'s segments are a proper prefix of `path`'s segments.
fn segments_below(path: &str, prefix: &str) -> bool {
    let prefix_segments: Vec<&str> = prefix.trim_end_matches('/').split('/').collect();
    let path_segments: Vec<&str> = path.split('/').collect();
    path_segments.len() > prefix_segments.len()
        && path_segments[..prefix_segments.len()] == prefix_segments[..]
}
