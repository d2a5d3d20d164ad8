//! Fuzzes the path canonicaliser: arbitrary bytes -> `canonicalize`; whatever it accepts must
//! have the canonical shape, survive `encode_path` and re-canonicalise to itself, and match
//! prefixes only at segment boundaries. The properties live in `tests/path_properties.rs`,
//! shared with the proptests in `tests/paths.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
// The properties, as the proptests in tests/paths.rs state them.
#[path = "../../tests/path_properties.rs"]
mod path_properties;
use mediagate::path::{
    self, canonical_prefix, canonicalize, encode_path, is_within, PathError, MAX_PATH_LEN,
};
use path_properties::{assert_canonical_shape, assert_grant_splits_back, segments_below};

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
    assert_canonical_shape(&canonical);
    assert_grant_splits_back(&canonical);
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
