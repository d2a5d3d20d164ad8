//! Properties of the path canonicaliser and of token segments, stated once for both ways of
//! finding inputs: the proptests in `tests/paths.rs` (a module of the integration tests) and
//! the `path` fuzz target (`fuzz/fuzz_targets/path.rs`, which includes this file by path).
//! Only `mediagate`'s public API and `std` are used here, so both crates compile it.

use mediagate::path::{self, canonicalize, MAX_PATH_LEN};

/// What every path `canonicalize` accepts looks like: absolute, within the length limit, no
/// control byte or backslash, no dot segment, and no empty segment but a trailing one.
pub fn assert_canonical_shape(canonical: &str) {
    assert!(canonical.starts_with('/'), "{canonical:?}");
    assert!(canonical.len() <= MAX_PATH_LEN, "{canonical:?}");
    for needle in ["/./", "/../", "//", "\\"] {
        assert!(
            !canonical.contains(needle),
            "{canonical:?} contains {needle:?}"
        );
    }
    assert!(
        !canonical.ends_with("/.") && !canonical.ends_with("/.."),
        "{canonical:?}"
    );
    assert!(
        !canonical.bytes().any(|b| b < 0x20 || b == 0x7f),
        "{canonical:?} contains a control byte"
    );
    let segments: Vec<&str> = canonical[1..].split('/').collect();
    for (index, segment) in segments.iter().enumerate() {
        assert!(*segment != "." && *segment != "..", "{canonical:?}");
        assert!(
            !segment.is_empty() || index + 1 == segments.len(),
            "{canonical:?} has an empty inner segment"
        );
    }
}

/// The segment-wise meaning of prefix matching: `path` lies below `prefix` when the prefix's
/// segments are a proper prefix of the path's segments.
pub fn segments_below(path: &str, prefix: &str) -> bool {
    let prefix_segments: Vec<&str> = prefix.trim_end_matches('/').split('/').collect();
    let path_segments: Vec<&str> = path.split('/').collect();
    path_segments.len() > prefix_segments.len()
        && path_segments[..prefix_segments.len()] == prefix_segments[..]
}

/// A token segment (spec §13.3) of a canonical path: the first segment that begins with the
/// marker, refused when its token is empty, when no file follows it or when a second one
/// does. The file path is canonical and holds no other one, the base begins it, and the link
/// built from the parts splits back into them.
pub fn assert_grant_splits_back(canonical: &str) {
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
        let url = path::grant_path(&grant.file, Some(grant.base()), token);
        if url.len() <= MAX_PATH_LEN {
            assert_eq!(canonicalize(&url).as_deref(), Ok(canonical));
        }
    }
}
