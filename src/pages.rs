//! Denial pages for people: per reason, what happened and what to do next.
//!
//! Behind `auth_request` nginx discards mediagate's 403 body and shows its own bare page, so
//! the shipped snippets send every 403 of a protected location to `GET /denied` (`error_page
//! 403 @mediagate_denied`, the reason taken from `auth_request_set`), which renders it here.
//! X-Accel-Redirect and forward mode, and the session side's `/refresh` and `/login`, answer
//! with the same page directly.
//!
//! HTML when the client's `Accept` names `text/html` (a browser navigating), plain text for
//! everything else. The built-in wording can be replaced per site by files in the site's
//! `pages_dir` (read and checked by `config`; served as they are, no templating). A page never
//! contains anything from the request: in particular not its URL, whose query holds the token.
//! This module owns rendering; it does not read files or know HTTP.

use std::collections::BTreeMap;

use hyper::body::Bytes;

use crate::reason::Reason;

/// Largest override file accepted (a page, not a site).
pub const MAX_PAGE_BYTES: usize = 64 * 1024;

/// Which form of the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/html; charset=utf-8`, for browsers.
    Html,
    /// `text/plain; charset=utf-8`, for everything else.
    Text,
}

impl Format {
    /// HTML when `accept` lists `text/html` (or `text/*`) without `q=0`; text otherwise
    /// (including `*/*` alone: curl and media players get the short form).
    pub fn from_accept(accept: Option<&[u8]>) -> Format {
        let Some(accept) = accept.and_then(|bytes| std::str::from_utf8(bytes).ok()) else {
            return Format::Text;
        };
        let html = accept.split(',').any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("");
            let refused = parts.any(|param| {
                param
                    .strip_prefix("q=")
                    .or_else(|| param.strip_prefix("Q="))
                    .and_then(|q| q.parse::<f32>().ok())
                    == Some(0.0)
            });
            (media.eq_ignore_ascii_case("text/html") || media.eq_ignore_ascii_case("text/*"))
                && !refused
        });
        if html {
            Format::Html
        } else {
            Format::Text
        }
    }

    /// The `Content-Type` of this form.
    pub const fn content_type(self) -> &'static str {
        match self {
            Format::Html => "text/html; charset=utf-8",
            Format::Text => "text/plain; charset=utf-8",
        }
    }

    /// The override file extension of this form.
    pub const fn extension(self) -> &'static str {
        match self {
            Format::Html => "html",
            Format::Text => "txt",
        }
    }
}

/// A site's replacement pages: `<reason>.html` / `<reason>.txt`, and `default.html` /
/// `default.txt` for every reason without its own file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pages {
    files: BTreeMap<String, Bytes>,
}

impl Pages {
    /// Whether `name` may be an override file: `<reason or default>.<html or txt>`.
    pub fn is_page_name(name: &str) -> bool {
        let Some((stem, extension)) = name.rsplit_once('.') else {
            return false;
        };
        matches!(extension, "html" | "txt")
            && (stem == "default" || Reason::from_wire(stem).is_some())
    }

    /// Adds the page `name` (checked with [`Pages::is_page_name`] by the caller).
    pub fn insert(&mut self, name: String, contents: Bytes) {
        self.files.insert(name, contents);
    }

    fn get(&self, stem: &str, format: Format) -> Option<&Bytes> {
        self.files.get(&format!("{stem}.{}", format.extension()))
    }
}

/// The page for a denial with `status` and `reason` (`None`: a 403 nginx made itself, e.g. a
/// file it may not read) in `format`: the site's override if it has one, else the built-in.
pub fn render(status: u16, reason: Option<Reason>, format: Format, pages: Option<&Pages>) -> Bytes {
    let stem = reason.map_or("default", Reason::as_str);
    if let Some(page) = pages.and_then(|pages| {
        pages
            .get(stem, format)
            .or_else(|| pages.get("default", format))
    }) {
        return page.clone();
    }
    let (title, what, next) = wording(reason);
    let code = reason.map_or(String::new(), |reason| format!(": {reason}"));
    let phrase = match status {
        401 => "Unauthorized",
        _ => "Forbidden",
    };
    let text = match format {
        Format::Text => format!("{status} {phrase}{code}\n\n{what}\n{next}\n"),
        Format::Html => {
            let code = reason.map_or(String::new(), |reason| {
                format!(" &middot; <code>{}</code>", escape(reason.as_str()))
            });
            format!(
                "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
                 <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
                 <title>{title}</title>\n</head>\n<body>\n<h1>{title}</h1>\n<p>{what}</p>\n\
                 <p>{next}</p>\n<p><small>{status} {phrase}{code}</small></p>\n</body>\n</html>\n",
                title = escape(title),
                what = escape(what),
                next = escape(next),
            )
        }
    };
    Bytes::from(text)
}

/// Title, what happened, what to do next.
fn wording(reason: Option<Reason>) -> (&'static str, &'static str, &'static str) {
    const OPEN_AGAIN: &str =
        "Go back to the page that linked here and open the file from there again.";
    const OPERATORS: &str =
        "This is a problem on the site's side: if it persists, contact the site's operators.";
    match reason {
        None => (
            "Access denied",
            "You may not open this file.",
            OPEN_AGAIN,
        ),
        Some(Reason::MissingToken) => (
            "Link required",
            "This file can only be opened through a link from the site it belongs to.",
            OPEN_AGAIN,
        ),
        Some(Reason::Expired) => ("Link expired", "This link has expired.", OPEN_AGAIN),
        Some(Reason::NotYetValid) => (
            "Link not valid yet",
            "This link only becomes valid later.",
            "Try again later; if it persists, check that your device's clock is right.",
        ),
        Some(Reason::Malformed | Reason::WrongPurpose | Reason::BadSignature | Reason::UnknownKey) => (
            "Invalid link",
            "This link is damaged or was not issued for this file.",
            "Open the file again from the page that linked here; if you copied the link, copy all of it.",
        ),
        Some(Reason::KeyPurpose) => (
            "Invalid link",
            "This link was signed with a key the site keeps for something else.",
            OPERATORS,
        ),
        Some(Reason::FileChanged) => (
            "File has changed",
            "This link was made for an earlier version of this file, which has since been replaced or changed.",
            "Open the file again from the page that linked here, to get a link to its current version.",
        ),
        Some(Reason::Lifetime) => (
            "Invalid link",
            "This link claims to be valid for longer than this site allows.",
            OPEN_AGAIN,
        ),
        Some(Reason::WrongHost) => (
            "Link for another site",
            "This link was issued for another site.",
            OPEN_AGAIN,
        ),
        Some(Reason::OutOfScope) => (
            "File not covered by this link",
            "This link does not cover this file.",
            OPEN_AGAIN,
        ),
        Some(Reason::Method) => (
            "Request not allowed",
            "This link does not allow this kind of request.",
            OPEN_AGAIN,
        ),
        Some(Reason::Ip) => (
            "Link tied to another network",
            "This link was issued for another network address.",
            "Open it from the network you received it on, or open the file again from the page that linked here.",
        ),
        Some(Reason::BadPath) => (
            "Invalid address",
            "The address of this file is not valid.",
            "Check the address, or open the file again from the page that linked here.",
        ),
        Some(Reason::UntrustedPeer | Reason::BadRequest | Reason::UnknownHost) => (
            "Request could not be checked",
            "This request could not be checked.",
            OPERATORS,
        ),
        Some(Reason::RefreshLoop) => (
            "Link could not be renewed",
            "This link could not be renewed: a fresh link was refused again (a clock or key \
             mismatch between the sites, or a browser that does not keep the site's login).",
            "Reload the page that linked here; if it persists, contact the site's operators.",
        ),
        Some(Reason::BadState) => (
            "Renewal link invalid",
            "The link to renew your access is damaged or too old.",
            OPEN_AGAIN,
        ),
        Some(Reason::UsedUp) => (
            "Link already used",
            "This link could be used a limited number of times, and it has been.",
            "Ask whoever sent you the link for a new one.",
        ),
        Some(Reason::Revoked) => (
            "Link withdrawn",
            "This link has been withdrawn by the site.",
            "Ask whoever sent you the link for a new one.",
        ),
        Some(Reason::TooLarge) => (
            "File too large",
            "This file is larger than this upload link allows.",
            "Choose a smaller file, or ask for a link that allows larger ones.",
        ),
        Some(Reason::LengthRequired) => (
            "Size required",
            "This upload did not say how large it is, and this upload link limits the size.",
            "Send the file with a Content-Length header (not as a chunked stream).",
        ),
        Some(Reason::ContentType) => (
            "File type not allowed",
            "This upload link does not accept this type of file.",
            "Choose a file of an accepted type, or send it with its right Content-Type.",
        ),
        Some(Reason::OverrideNotAllowed) => (
            "Link not accepted here",
            "This link asks for something this site does not allow.",
            "Ask whoever sent you the link for a new one.",
        ),
        Some(Reason::StoreUnavailable) => (
            "Temporarily unavailable",
            "This link could not be checked right now.",
            "Try again in a minute; if it persists, contact the site's operators.",
        ),
    }
}

/// `text` with the five HTML-special characters escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_chooses_html_only_when_a_browser_asks_for_it() {
        let html = [
            "text/html",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            "TEXT/HTML; q=0.5",
            "text/*",
        ];
        for accept in html {
            assert_eq!(
                Format::from_accept(Some(accept.as_bytes())),
                Format::Html,
                "{accept}"
            );
        }
        let text = [
            "*/*",
            "text/plain",
            "text/html;q=0",
            "video/*",
            "",
            "\u{ff}",
        ];
        for accept in text {
            assert_eq!(
                Format::from_accept(Some(accept.as_bytes())),
                Format::Text,
                "{accept}"
            );
        }
        assert_eq!(Format::from_accept(None), Format::Text);
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn every_reason_has_a_page_in_both_forms() {
        for reason in Reason::ALL {
            for format in [Format::Html, Format::Text] {
                let page = render(403, Some(reason), format, None);
                let page = std::str::from_utf8(&page).unwrap();
                assert!(page.contains(reason.as_str()), "{reason} {format:?}");
                assert_eq!(page.contains("<html"), format == Format::Html);
                // Nothing that looks like a query: pages never show one.
                assert!(!page.contains('?'), "{reason} {format:?}");
            }
        }
    }

    #[test]
    fn overrides_replace_per_reason_then_default() {
        let mut pages = Pages::default();
        pages.insert("expired.txt".into(), Bytes::from_static(b"old link\n"));
        pages.insert("default.txt".into(), Bytes::from_static(b"no\n"));
        let page = |reason| render(403, Some(reason), Format::Text, Some(&pages));
        assert_eq!(page(Reason::Expired), "old link\n");
        assert_eq!(page(Reason::Ip), "no\n");
        // No HTML override: the built-in one.
        let html = render(403, Some(Reason::Expired), Format::Html, Some(&pages));
        assert!(html.starts_with(b"<!doctype html>"));
        assert!(Pages::is_page_name("refresh_loop.html") && Pages::is_page_name("default.txt"));
        assert!(!Pages::is_page_name("refresh-loop.html") && !Pages::is_page_name("expired.htm"));
    }
}
