//! Cookie grants (issue 10): a site's grant cookie, set on the allow of a prefix link and read
//! back when a later request of the same folder carries no token.
//!
//! Pure: the RFC 6265 syntax of the `Cookie` request header (finding the values of one name)
//! and of the `Set-Cookie` value mediagate sends. Whether a request gets a cookie, and
//! whether a cookie's token is good, is the gate's business (`gate.rs`); putting the header
//! on a response is `decision.rs`'s.

use std::fmt;

use crate::path;

/// Longest grant cookie name accepted in configuration: names are short identifiers, and a
/// bound keeps every `Set-Cookie` far below the browsers' 4096-byte cookie limit.
pub const MAX_NAME_LEN: usize = 64;

/// How many cookies of the grant's name one request may have MAC-checked, in the order the
/// browser sent them (most specific `Path` first, RFC 6265 §5.4): grants for nested folders,
/// and an old cookie next to its replacement, make a few; many more would only multiply the
/// work a single request can ask for. Values that fail before the MAC (not a token, an
/// unknown key) are not counted: decoding is cheap, and counting them would let a few planted
/// junk cookies hide the real grant.
pub const MAX_TRIED: usize = 4;

/// `SameSite` of the grant cookie (a site's `cookie_grant.same_site`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    /// Sent on same-site requests and top-level navigations from other sites.
    Lax,
    /// Sent on same-site requests only.
    Strict,
    /// Sent on cross-site requests too, where the browser still allows third-party cookies.
    None,
}

impl SameSite {
    /// The configuration name: `lax`, `strict` or `none`.
    pub fn from_config(name: &str) -> Option<SameSite> {
        match name {
            "lax" => Some(SameSite::Lax),
            "strict" => Some(SameSite::Strict),
            "none" => Some(SameSite::None),
            _ => None,
        }
    }

    /// The attribute value in `Set-Cookie`.
    pub fn as_attribute(self) -> &'static str {
        match self {
            SameSite::Lax => "Lax",
            SameSite::Strict => "Strict",
            SameSite::None => "None",
        }
    }
}

/// A site's cookie grant (`cookie_grant = { name = "…", same_site = "…" }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieGrant {
    /// The cookie's name: an RFC 6265 `cookie-name` ([`name_problem`] found nothing).
    pub name: String,
    /// Its `SameSite` attribute.
    pub same_site: SameSite,
}

/// Why a configured cookie name cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameProblem {
    /// Occurs when the name is empty or longer than [`MAX_NAME_LEN`].
    Length,
    /// Occurs when the name has a byte outside RFC 6265's `cookie-name` (an RFC 9110 `token`:
    /// no spaces, controls, `=`, `;`, `,`, quotes or other separators).
    NotAToken,
    /// Occurs when the name starts with `__Host-` (any case): browsers keep such a cookie
    /// only with `Path=/`, and a grant's path is its folder.
    HostPrefix,
}

impl fmt::Display for NameProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameProblem::Length => "must be 1 to 64 bytes long",
            NameProblem::NotAToken => {
                "must be an RFC 6265 cookie name (letters, digits and !#$%&'*+-.^_`|~, no spaces)"
            }
            NameProblem::HostPrefix => {
                "must not start with __Host- (browsers keep such cookies only with Path=/, and a grant's path is its folder)"
            }
        })
    }
}

/// What is wrong with `name` as a grant cookie name, if anything.
pub fn name_problem(name: &str) -> Option<NameProblem> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Some(NameProblem::Length);
    }
    if !name.bytes().all(crate::gate::is_tchar) {
        return Some(NameProblem::NotAToken);
    }
    if name
        .get(..7)
        .is_some_and(|head| head.eq_ignore_ascii_case("__Host-"))
    {
        return Some(NameProblem::HostPrefix);
    }
    None
}

/// The values of every cookie named exactly `name` in a `Cookie` header, in the order sent.
///
/// The header is RFC 6265 §5.4's `name=value` pairs joined by `"; "`; a browser sends
/// nothing else, and whatever else arrives is read without panicking or allocating: pairs are
/// split at `;`, spaces and tabs before a name are skipped (`"a=1;b=2"` still reads), a pair
/// without `=` has no value and is skipped, names are compared exactly (cookie names are
/// case-sensitive), and a value is returned as it is, quotes and all (the token decoder
/// refuses what is not a token). Bytes, not text: other cookies of the host may hold any
/// octets.
pub fn values<'h>(header: &'h [u8], name: &'h str) -> impl Iterator<Item = &'h [u8]> + 'h {
    header.split(|&b| b == b';').filter_map(move |pair| {
        let start = pair.iter().position(|&b| b != b' ' && b != b'\t')?;
        let pair = &pair[start..];
        let equals = pair.iter().position(|&b| b == b'=')?;
        (&pair[..equals] == name.as_bytes()).then_some(&pair[equals + 1..])
    })
}

/// `cookie-octet` (RFC 6265 §4.1.1): what a cookie value may hold unquoted.
fn is_cookie_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)
}

/// The `Set-Cookie` value granting `token` for the folder `prefix` (a canonical prefix with a
/// trailing slash) for `max_age` seconds:
/// `<name>=<token>; Path=<encoded prefix>; Max-Age=<max_age>; Secure; HttpOnly; SameSite=<…>`.
///
/// No `Domain`: the cookie stays with the media host that set it. `Path` is the prefix
/// percent-encoded as mediagate encodes paths in URLs, so a browser sends the cookie for the
/// prefix's files only. `None` when the token holds a byte a cookie value cannot (a verified
/// token never does; this is the edge not trusting that) or `max_age` is 0.
pub fn set_cookie(grant: &CookieGrant, token: &str, prefix: &str, max_age: u64) -> Option<String> {
    if token.is_empty() || !token.bytes().all(is_cookie_octet) || max_age == 0 {
        return None;
    }
    Some(format!(
        "{}={token}; Path={}; Max-Age={max_age}; Secure; HttpOnly; SameSite={}",
        grant.name,
        path::encode_path(prefix),
        grant.same_site.as_attribute(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found<'h>(header: &'h [u8], name: &'h str) -> Vec<&'h [u8]> {
        values(header, name).collect()
    }

    #[test]
    fn the_values_of_one_name_are_found_in_order_whatever_the_header_holds() {
        let table: &[(&[u8], &[&[u8]])] = &[
            (b"", &[]),
            (b"mg=a", &[b"a"]),
            (b"mg=a; mg=b", &[b"a", b"b"]),
            (b"sid=1; mg=a; theme=dark; mg=b", &[b"a", b"b"]),
            // Not our name: other names, other cases, a prefix of it, a longer one.
            (b"MG=a; m=b; mgx=c; xmg=d", &[]),
            // Lenient on separators a browser never sends, exact on everything else.
            (b"sid=1;mg=a;;  \tmg=b", &[b"a", b"b"]),
            (b"mg=", &[b""]),
            (b"mg==x=", &[b"=x="]),
            (b"mg=\"a\"", &[b"\"a\""]),
            (b"mg=a ; mg= b", &[b"a ", b" b"]),
            // A pair without '=', a name with a space inside, bytes that are no text.
            (b"mg; mg a=1; \xff\xfe=2; mg=\xc3\x28", &[b"\xc3\x28"]),
            (b";;;;", &[]),
            (b"   ", &[]),
            (b"=mg; =", &[]),
        ];
        for (header, expected) in table {
            assert_eq!(
                &found(header, "mg"),
                expected,
                "{:?}",
                String::from_utf8_lossy(header)
            );
        }
    }

    #[test]
    fn a_hostile_header_is_read_lazily_without_panicking() {
        // 32 KiB of separators or of one name: read lazily, as far as the caller goes.
        let separators = vec![b';'; 32 * 1024];
        assert_eq!(values(&separators, "mg").count(), 0);
        let many = b"mg=a; ".repeat(5000);
        assert_eq!(values(&many, "mg").take(MAX_TRIED).count(), MAX_TRIED);
        let no_equals = b"mg".repeat(10_000);
        assert_eq!(values(&no_equals, "mg").count(), 0);
    }

    #[test]
    fn names_are_rfc_6265_tokens_of_bounded_length() {
        for good in ["mediagate_grant", "mg", "__Secure-mg", "a.b-c!#$%&'*+^`|~"] {
            assert_eq!(name_problem(good), None, "{good}");
        }
        assert_eq!(name_problem(""), Some(NameProblem::Length));
        assert_eq!(
            name_problem(&"a".repeat(MAX_NAME_LEN + 1)),
            Some(NameProblem::Length)
        );
        assert_eq!(name_problem(&"a".repeat(MAX_NAME_LEN)), None);
        for bad in [
            "a b", "a=b", "a;b", "a,b", "\"a\"", "a\tb", "é", "a/b", "a(b)", "a\x7f",
        ] {
            assert_eq!(name_problem(bad), Some(NameProblem::NotAToken), "{bad:?}");
        }
        for host in ["__Host-mg", "__host-mg", "__HOST-"] {
            assert_eq!(name_problem(host), Some(NameProblem::HostPrefix), "{host}");
        }
    }

    #[test]
    fn the_grant_cookie_is_host_only_secure_http_only_and_scoped_to_the_folder() {
        let grant = CookieGrant {
            name: "mg".into(),
            same_site: SameSite::Lax,
        };
        assert_eq!(
            set_cookie(&grant, "AQEB.x-y_z", "/media/photos/", 600).as_deref(),
            Some("mg=AQEB.x-y_z; Path=/media/photos/; Max-Age=600; Secure; HttpOnly; SameSite=Lax")
        );
        let strict = CookieGrant {
            same_site: SameSite::Strict,
            ..grant.clone()
        };
        assert_eq!(
            set_cookie(&strict, "t", "/a b/é/", 1).as_deref(),
            Some("mg=t; Path=/a%20b/%C3%A9/; Max-Age=1; Secure; HttpOnly; SameSite=Strict")
        );
        let none = CookieGrant {
            same_site: SameSite::None,
            ..grant.clone()
        };
        assert_eq!(
            set_cookie(&none, "t", "/", 5).as_deref(),
            Some("mg=t; Path=/; Max-Age=5; Secure; HttpOnly; SameSite=None")
        );
        // Nothing a cookie value cannot hold unquoted, and no cookie that is already gone.
        for bad in ["", "a;b", "a b", "a,b", "a\"b", "a\\b", "a\r\nb", "é"] {
            assert_eq!(set_cookie(&grant, bad, "/m/", 600), None, "{bad:?}");
        }
        assert_eq!(set_cookie(&grant, "t", "/m/", 0), None);
    }
}
