//! Upload slots (issue 9): the decision for one upload, from the request's headers alone, and
//! the settle handle that names its reservation. Pure (no hyper, no clock, no store).
//!
//! nginx asks before it reads the body (`auth_request`, `nginx/snippets/upload.conf`): the
//! token must be a version 2 `upload` token that verifies for this path and method, the
//! declared `Content-Length` must fit its `max_size` (a body without one is refused when there
//! is a maximum) and the `Content-Type` must be among its media types. The HTTP edge then
//! reserves one use in the store (`http::state::reserve_upload`) and hands nginx a
//! [`Reservation`] handle; nginx settles it once the upload ended ([`commits`] says how the
//! final status counts). This module does not reserve, settle, or know HTTP.

use std::borrow::Cow;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::config::{Config, Site};
use crate::gate::{self, MediaRequest, TokenProblem};
use crate::path;
use crate::reason::Reason;
use crate::store::revoked::Revoked;
use crate::store::UseKey;
use crate::token::{self, wire::VERSION_2, Purpose, Request, TokenBuf, Verified};

/// The original upload request, as nginx reported it.
#[derive(Debug, Clone, Copy)]
pub struct UploadRequest<'a> {
    /// URI, method, server name, client address and `Authorization`, as for a download.
    pub media: MediaRequest<'a>,
    /// The request's `Content-Length` header as sent (`None`: absent, e.g. a chunked body).
    pub content_length: Option<&'a str>,
    /// The request's `Content-Type` header as sent.
    pub content_type: Option<&'a str>,
}

/// What to do with an upload.
// Lives on the stack for one request, like `gate::Outcome`.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum UploadOutcome<'a> {
    /// Let nginx read the body. A token with a use limit still needs its reservation.
    Allow {
        /// Canonical path the body goes to.
        path: Cow<'a, str>,
        /// The verified upload token.
        token: Verified<'a>,
        /// The site the request belongs to.
        site: &'a Site,
    },
    /// Refuse, with a reason.
    Deny {
        /// Why.
        reason: Reason,
        /// The site, when the server name named one.
        site: Option<&'a Site>,
    },
}

impl UploadOutcome<'_> {
    /// The reason to report: `None` when allowed.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            UploadOutcome::Allow { .. } => None,
            UploadOutcome::Deny { reason, .. } => Some(*reason),
        }
    }
}

/// Decides an upload at unix time `now`, with the revocations in force.
///
/// Order: site, path, token source, verification as an `upload` token (which checks path,
/// method, host, client address and times), version 2, the several-sites host rule,
/// revocation, then the headers: method POST or PUT, declared length against `max_size`,
/// media type against the token's list. Public prefixes do not apply: they open files for
/// reading, never for writing. Nothing here redirects: an upload client follows no refresh
/// flow.
pub fn decide_upload<'a>(
    config: &'a Config,
    request: &UploadRequest<'a>,
    buf: &'a mut TokenBuf,
    now: u64,
    revoked: &Revoked,
) -> UploadOutcome<'a> {
    let media = &request.media;
    let Some(site) = config.site_for_host(media.server_name) else {
        return UploadOutcome::Deny {
            reason: Reason::UnknownHost,
            site: None,
        };
    };
    let deny = |reason| UploadOutcome::Deny {
        reason,
        site: Some(site),
    };
    let Ok(canonical) = path::canonicalize(path::split_uri(media.uri).0) else {
        return deny(Reason::BadPath);
    };
    // A segment that begins with `~mg~` carries a token on media locations: a file stored
    // under such a name could never be downloaded, and minters refuse to sign it.
    if path::split_grant(&canonical) != Ok(None) {
        return deny(Reason::BadPath);
    }
    let text = match gate::request_token(config, media, None) {
        Ok(Some((text, _))) => text,
        Ok(None) => return deny(Reason::MissingToken),
        Err(TokenProblem::Malformed | TokenProblem::Challenge) => return deny(Reason::Malformed),
    };
    let verified = token::verify(
        text,
        buf,
        Purpose::Upload,
        &Request {
            path: &canonical,
            method: media.method,
            host: Some(&site.media_host),
            client_ip: media.client_ip,
        },
        &config.keys,
        config.token.limits,
        now,
    );
    let token = match verified {
        Ok(token) => token,
        Err(denied) => return deny(denied.reason),
    };
    // A v1 token with the (then reserved) upload purpose decodes and verifies, but v1 gave
    // it no upload semantics (its default methods are GET and HEAD, it has no size or type
    // limits): the upload edge serves v2 slots only (spec §17).
    if token.version != VERSION_2 {
        return deny(Reason::WrongPurpose);
    }
    if token.host.is_none() && config.sites.len() > 1 {
        return deny(Reason::WrongHost);
    }
    if revoked.covers(gate::revocable(&token)) {
        return deny(Reason::Revoked);
    }
    // The token's methods are POST/PUT at most (minting refuses others), but the edge says
    // so itself: whatever a slot's token allows, this edge only takes bodies.
    if !matches!(media.method, "POST" | "PUT") {
        return deny(Reason::Method);
    }
    let length = match request.content_length.map(parse_length) {
        None => None,
        Some(Some(length)) => Some(length),
        Some(None) => return deny(Reason::BadRequest),
    };
    if let Some(max_size) = token.max_size {
        match length {
            // Its size could only be learned by reading it: refused before it is read.
            None => return deny(Reason::LengthRequired),
            Some(length) if length > max_size => return deny(Reason::TooLarge),
            Some(_) => {}
        }
    }
    if !token.content_type_allowed(request.content_type.unwrap_or("")) {
        return deny(Reason::ContentType);
    }
    UploadOutcome::Allow {
        path: canonical,
        token,
        site,
    }
}

/// A `Content-Length` value: 1 to 19 ASCII digits (what nginx itself accepts fits in an
/// `off_t`), nothing else; `None` for anything that is not a plain number.
fn parse_length(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 19 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// True when an upload that ended with `status` (nginx's `$status` for the original request)
/// succeeded, so its reservation becomes a final use: 2xx (the handler took it, or DAV wrote
/// it) and 3xx (a handler's "303 See Other" after a form upload). Anything else gives the
/// slot back: the handler's 4xx and 5xx, nginx's 502 when the handler is unreachable, DAV
/// errors, and a client that disconnected before a response (`$status` is then the 400 or
/// 499 nginx logs, or `009` when no status was ever set).
pub fn commits(status: u16) -> bool {
    (200..400).contains(&status)
}

/// An upload reservation as nginx carries it between the check and the settle: which token
/// and which reservation of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The token's key id and token id.
    pub key: UseKey,
    /// The random reservation id (128 bits: guessing one is hopeless, so a handle cannot be
    /// forged for a reservation that exists).
    pub id: [u8; 16],
}

/// Longest handle [`Reservation::parse`] reads: three base64url parts of at most 64 bytes
/// (kid and token id) and 16 bytes, and two dots.
pub const MAX_HANDLE_LEN: usize = 86 + 1 + 86 + 1 + 22;

impl Reservation {
    /// The handle `X-Mediagate-Reservation` carries: `base64url(kid).base64url(token
    /// id).base64url(id)`. Each part is encoded because a token id may contain `/` or `.`;
    /// base64url contains neither `.` nor anything a header or log line would mangle.
    pub fn handle(&self) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(&self.key.kid),
            URL_SAFE_NO_PAD.encode(&self.key.token_id),
            URL_SAFE_NO_PAD.encode(self.id)
        )
    }

    /// Reads a handle made by [`Reservation::handle`]; `None` for anything else (the key id
    /// and token id must be what a token can carry).
    pub fn parse(handle: &str) -> Option<Reservation> {
        if handle.len() > MAX_HANDLE_LEN {
            return None;
        }
        let mut parts = handle.split('.');
        let (Some(kid), Some(token_id), Some(id), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let kid = URL_SAFE_NO_PAD.decode(kid).ok()?;
        let token_id = URL_SAFE_NO_PAD.decode(token_id).ok()?;
        let id: [u8; 16] = URL_SAFE_NO_PAD.decode(id).ok()?.try_into().ok()?;
        let visible = |bytes: &[u8]| {
            (1..=64).contains(&bytes.len()) && bytes.iter().all(|b| (0x21..=0x7e).contains(b))
        };
        if !token::is_kid(&kid) || !visible(&token_id) {
            return None;
        }
        Some(Reservation {
            key: UseKey {
                kid: String::from_utf8(kid).ok()?,
                token_id: String::from_utf8(token_id).ok()?,
            },
            id,
        })
    }
}

/// nginx's `$status`: exactly three ASCII digits (`009` when no status was set).
pub fn parse_status(text: &str) -> Option<u16> {
    (text.len() == 3 && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::Authorization;
    use crate::mint::{mint, MintRequest};
    use crate::token::{Claims, Methods, Scope};

    const NOW: u64 = 1_800_000_000;

    /// One site with a public prefix, a fixed key and no environment.
    fn config() -> Config {
        let mut random = [0u8; 8];
        getrandom::getrandom(&mut random).unwrap();
        let file = std::env::temp_dir().join(format!(
            "mediagate-upload-{}.toml",
            URL_SAFE_NO_PAD.encode(random)
        ));
        std::fs::write(
            &file,
            "[keys]\ndev_key = false\n[keys.secrets]\n\
             k1 = \"QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI\"\n\
             [[sites]]\nid = \"a\"\nmedia_origin = \"https://media.example.org\"\n\
             public_prefixes = [\"/public/\"]\n",
        )
        .unwrap();
        let config = crate::config::load_with_env(Some(&file), Vec::new());
        std::fs::remove_file(&file).unwrap();
        config.unwrap()
    }

    fn slot(config: &Config, path: &str, tweak: impl FnOnce(&mut Claims)) -> String {
        let mut claims = Claims::download(Scope::Exact(path.into()), NOW + 600);
        claims.purpose = Purpose::Upload;
        claims.uses = Some(1);
        claims.token_id = Some("slot/1".into());
        claims.issued_at = Some(NOW);
        tweak(&mut claims);
        let token = token::sign(&claims, config.keys.signing_key()).unwrap();
        format!("{path}?token={token}")
    }

    fn decide(
        config: &Config,
        uri: &str,
        method: &str,
        length: Option<&str>,
        content_type: Option<&str>,
    ) -> Result<String, Reason> {
        let request = UploadRequest {
            media: MediaRequest {
                purpose: Purpose::Download,
                uri,
                method,
                server_name: &config.sites[0].media_host,
                client_ip: None,
                authorization: Authorization::Absent,
                cookie: crate::gate::CookieHeader::Absent,
            },
            content_length: length,
            content_type,
        };
        let mut buf = TokenBuf::new();
        match decide_upload(config, &request, &mut buf, NOW, &Revoked::default()) {
            UploadOutcome::Allow { path, .. } => Ok(path.into_owned()),
            UploadOutcome::Deny { reason, .. } => Err(reason),
        }
    }

    #[test]
    fn a_v2_slot_takes_post_and_put_within_its_size_and_types() {
        let config = config();
        let uri = slot(&config, "/uploads/a.png", |claims| {
            claims.max_size = Some(10);
            claims.content_types = Some("image/png,text/plain".into());
        });
        for method in ["POST", "PUT"] {
            assert_eq!(
                decide(&config, &uri, method, Some("10"), Some("Image/PNG; x=1")),
                Ok("/uploads/a.png".into())
            );
        }
        let cases: [(&str, Option<&str>, Option<&str>, Reason); 8] = [
            ("POST", Some("11"), Some("image/png"), Reason::TooLarge),
            ("POST", None, Some("image/png"), Reason::LengthRequired),
            ("POST", Some("5"), Some("image/jpeg"), Reason::ContentType),
            ("POST", Some("5"), None, Reason::ContentType),
            ("POST", Some("5"), Some(""), Reason::ContentType),
            ("POST", Some("+5"), Some("image/png"), Reason::BadRequest),
            ("GET", Some("5"), Some("image/png"), Reason::Method),
            ("DELETE", Some("5"), Some("image/png"), Reason::Method),
        ];
        for (method, length, content_type, reason) in cases {
            assert_eq!(
                decide(&config, &uri, method, length, content_type),
                Err(reason),
                "{method} {length:?} {content_type:?}"
            );
        }
    }

    #[test]
    fn without_a_maximum_a_body_of_unknown_length_may_come() {
        let config = config();
        let uri = slot(&config, "/uploads/a.bin", |_| {});
        assert_eq!(
            decide(&config, &uri, "PUT", None, None),
            Ok("/uploads/a.bin".into())
        );
    }

    #[test]
    fn download_tokens_and_v1_upload_tokens_never_upload() {
        let config = config();
        let download = mint(
            &config,
            &MintRequest {
                path: "/uploads/a.bin".into(),
                methods: Some(Methods::WRITE),
                ..MintRequest::default()
            },
            NOW,
        )
        .unwrap()
        .path_and_query;
        assert_eq!(
            decide(&config, &download, "PUT", Some("1"), None),
            Err(Reason::WrongPurpose)
        );
        // v1 has no use limit, issued-at or upload limits: the same slot without them.
        let v1 = slot(&config, "/uploads/a.bin", |claims| {
            claims.uses = None;
            claims.issued_at = None;
            claims.methods = Some(Methods::WRITE);
        });
        assert_eq!(
            decide(&config, &v1, "PUT", Some("1"), None),
            Err(Reason::WrongPurpose)
        );
    }

    #[test]
    fn public_prefixes_never_open_a_path_for_writing_and_paths_must_be_canonical() {
        let config = config();
        let public = config.sites[0].public_prefixes[0].clone();
        assert_eq!(
            decide(&config, &format!("{public}x.bin"), "PUT", Some("1"), None),
            Err(Reason::MissingToken)
        );
        let uri = slot(&config, "/uploads/a.bin", |_| {});
        let dotted = uri.replace("/uploads/a.bin", "/uploads/../uploads/a.bin");
        assert_eq!(
            decide(&config, &dotted, "PUT", Some("1"), None),
            Err(Reason::BadPath)
        );
    }

    #[test]
    fn handles_round_trip_and_anything_else_is_refused() {
        let reservation = Reservation {
            key: UseKey {
                kid: "k1".into(),
                token_id: "a/b.c".into(),
            },
            id: [7; 16],
        };
        let handle = reservation.handle();
        assert_eq!(handle, "azE.YS9iLmM.BwcHBwcHBwcHBwcHBwcHBw");
        assert_eq!(Reservation::parse(&handle), Some(reservation));
        for bad in [
            "",
            "azE.YS9iLmM",
            "azE.YS9iLmM.BwcHBwcHBwcHBwcHBwcHBw.x",
            "azE.YS9iLmM.BwcHBwcHBwcHBwcHBwcH",
            "azE..BwcHBwcHBwcHBwcHBwcHBw",
            "azE.YS9 iLmM.BwcHBwcHBwcHBwcHBwcHBw",
            // A token id with a space: no token carries one.
            "azE.YSBi.BwcHBwcHBwcHBwcHBwcHBw",
        ] {
            assert_eq!(Reservation::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn success_is_2xx_or_3xx_and_statuses_are_three_digits() {
        for (status, commit) in [
            (200, true),
            (201, true),
            (204, true),
            (303, true),
            (9, false),
            (400, false),
            (413, false),
            (499, false),
            (500, false),
            (502, false),
        ] {
            assert_eq!(commits(status), commit, "{status}");
        }
        assert_eq!(parse_status("201"), Some(201));
        assert_eq!(parse_status("009"), Some(9));
        for bad in ["", "20", "2011", "+01", "abc"] {
            assert_eq!(parse_status(bad), None, "{bad:?}");
        }
    }
}
