//! Token format (v1 and v2, both frozen): mint, decode and verify signed, expiring
//! capabilities. Pure: no I/O, no clock (time is a parameter), no allocation on the verify path.
//!
//! - [`wire`]: field layout, limits, zero-copy decoding.
//! - [`mac`]: which bytes are signed, and the tag.
//! - [`fields`]: method sets, IP networks, refresh markers, dispositions, download names and
//!   file versions.
//! - [`scopes`]: the v2 scopes list (several method sets on paths and prefixes).
//! - [`mod@verify`]: checks a token against a request, in a fixed order, to one [`Reason`].
//!
//! The normative description is `docs/token-format.md`; `tests/vectors/tokens.json` pins it.
//!
//! [`Reason`]: crate::reason::Reason

pub mod fields;
pub mod mac;
pub mod scopes;
pub mod verify;
pub mod wire;

pub use fields::{download_name_problem, Disposition, FileVersion, IpNet, Methods, RefreshMarker};
pub use scopes::{Admission, ScopeEntry, ScopeRef, Scopes};
pub use verify::{verify, Authentic, Denied, Limits, Request, Verified};
pub use wire::{
    canonical_content_types, decode, is_canonical_content_types, is_canonical_media_type,
    is_kept_query, is_kid, Claims, Malformed, Scope, Token, TokenBuf,
};

use crate::keys::Key;

/// What a token may be used for. Carried in the body, so it is inside the MAC: a token of one
/// purpose can never be accepted where another is expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum Purpose {
    /// Fetch a file (GET/HEAD unless the token says otherwise). The default.
    #[default]
    Download = 1,
    /// An upload slot: PUT/POST to one path or prefix (version 2; the byte was reserved in v1
    /// so the tag is never reused for anything else).
    Upload = 2,
    /// The `state` a media domain hands to the refresh endpoint.
    RefreshState = 3,
    /// A call to an application endpoint behind `protect-api.conf` (version 2 only). Its own
    /// byte, inside the MAC, so that an API token never opens a media location and a media
    /// link never calls an API, whatever the paths: which one a location expects is set by
    /// nginx's configuration (`X-Mediagate-Purpose`), never by the client.
    Api = 4,
}

impl Purpose {
    /// Parses the wire byte.
    pub fn from_byte(byte: u8) -> Option<Purpose> {
        match byte {
            1 => Some(Purpose::Download),
            2 => Some(Purpose::Upload),
            3 => Some(Purpose::RefreshState),
            4 => Some(Purpose::Api),
            _ => None,
        }
    }

    /// Every purpose, in byte order.
    pub const ALL: [Purpose; 4] = [
        Purpose::Download,
        Purpose::Upload,
        Purpose::RefreshState,
        Purpose::Api,
    ];

    /// The purpose named `name` (as [`Purpose::as_str`] spells it), for configuration.
    pub fn from_name(name: &str) -> Option<Purpose> {
        Purpose::ALL
            .into_iter()
            .find(|purpose| purpose.as_str() == name)
    }

    /// True for a purpose that exists in version 2 only: a v1 body with its byte is an
    /// unknown purpose (v1 is frozen), and claims with it are encoded as version 2.
    pub fn is_v2_only(self) -> bool {
        self == Purpose::Api
    }

    /// Lower-case name for inspect output and docs.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Download => "download",
            Purpose::Upload => "upload",
            Purpose::RefreshState => "refresh_state",
            Purpose::Api => "api",
        }
    }
}

/// Mints a token string for `claims` with `key`.
pub fn sign(claims: &Claims, key: &Key) -> Result<String, Malformed> {
    let body = claims.encode_body(key.id())?;
    let bound_path = match &claims.scope {
        Scope::Exact(path) => Some(path.as_str()),
        Scope::Prefix(_) | Scope::List(_) => None,
    };
    let tag = mac::tag(key, &body, bound_path);
    Ok(wire::encode_token(&body, &tag))
}
