#!/usr/bin/env python3
"""Mint mediagate tokens (formats v1 and v2, both frozen) and links without mediagate: a
stdlib-only reference minter.

Written from docs/token-format.md alone, as a template for minters in other languages.
tests/vectors.rs checks that it reproduces every token in tests/vectors/tokens.json (v1) and
tests/vectors/tokens-v2.json (v2), and every link in tests/vectors/path-grants.json.

    # one token for one file, valid for 10 minutes
    python3 examples/mint.py --secret-b64url "$SECRET" --kid k1 --path /media/x.pdf --ttl 600

    # the same file as a link that carries its token in a path segment (spec section 13.3),
    # so that URLs a playlist names relatively carry it too: prints /media/~mg~<token>/x.pdf
    python3 examples/mint.py --secret-b64url "$SECRET" --kid k1 --path /media/x.pdf --form path

    # replay the test vectors: one token per line (for path-grants.json: one link per line)
    python3 examples/mint.py --vectors tests/vectors/tokens.json

The command line is a front end like `mediagate sign` (spec section 8.1): --path is the path
as it appears in a URL, decoded once; a prefix must end with "/"; nothing is repaired.

As a library:

    from mint import mint
    token = mint(secret, "k1", {"path": "/media/x.pdf", "expires": int(time.time()) + 600})

Claims (all but `expires` and one of `path` / `prefix` / `scopes` are optional):

    purpose      "download" (default), "upload", "refresh_state" or "api" (v2 only)
    expires      unix seconds; the token is expired when now >= expires
    not_before   unix seconds
    path         one exact canonical path (bound through the MAC, not carried in the token)
    prefix       a canonical prefix ending in "/" (carried in the token)
    host         media host as nginx's $host: lower case, no port, no trailing dot, or [IPv6]
    methods      list of method names as HTTP spells them, e.g. ["GET", "PUT"] (default on
                 the verifier: GET, HEAD)
    ip           "203.0.113.7", "203.0.113.0/24" or "2001:db8::/32" (not IPv4-mapped)
    token_id     1-64 visible ASCII characters
    subject      1-128 printable ASCII characters (space allowed)
    data         1-255 bytes (or data_b64url: the same as base64url without padding)
    refresh      {"attempt": 1-255, "started": unix seconds}; set by the refresh flow only

Version 2 (spec section 17) fields; claims with any of them are minted as v2, all
others as v1:

    issued_at    unix seconds, earlier than expires
    uses         use limit, 1 to 2^32-1; needs token_id
    max_size     upload tokens only: largest body in bytes, at least 1
    content_types upload tokens only: list of lower-case "type/subtype", ascending, each once
    scopes       instead of path/prefix and methods: at least two entries
                 {"methods": ["GET"], "path": "/api/v1/foo/", "prefix": true}, paths canonical,
                 ascending by (path, prefix), no method granted twice for one request path
    recipient    who the token is handed to: 1-128 printable ASCII characters (space allowed)
    filename     download tokens only: the download file name, 1-255 bytes of UTF-8 without
                 control or bidirectional formatting characters, "/" or "\\", not "." or
                 "..", no space at either end (quotes, ";" and "%" are fine)
    disposition  download tokens only: "inline" or "attachment"
    max_age      download tokens only: Cache-Control max-age seconds, 0 to 2^32-1
    kept_query   refresh_state tokens only: the media URL's query without the token, raw
    file_version_hex exact-path download tokens only: the bound file version, 8 bytes as 16
                 hex digits (mediagate computes it from the file, see `sign --bind-version`)
    playback_of  download tokens only: a playback grant's origin, the expiry (unix seconds,
                 at most `expires`) of the link it was exchanged for (spec section 13.3.1);
                 mediagate's exchange sets it, minters normally do not

The purpose "api" exists in version 2 only: an API token is always minted as v2.

    # an API token: GET and HEAD below /api/v1/foo/, PUT on /uploads/x, for a recipient
    python3 examples/mint.py --secret-b64url "$SECRET" --kid k1 --purpose api \
        --scope GET,HEAD:/api/v1/foo/ --scope PUT:/uploads/x --recipient partner-app
"""

import argparse
import base64
import hashlib
import hmac
import ipaddress
import json
import secrets
import sys
import time
import unicodedata

VERSION_1 = 1  # frozen
VERSION_2 = 2  # frozen: every v1 field plus the ids from ISSUED_AT up (BOUND_PATH aside)
TAG_LEN = 16  # HMAC-SHA256 truncated to 128 bits
MAX_TOKEN_CHARS = 1024
MAX_TOKEN_BYTES = MAX_TOKEN_CHARS // 4 * 3  # 768: body + tag
DOMAIN = b"mediagate\x00"  # MAC domain-separation prefix
MIN_SECRET_LEN = 32
MAX_PATH_LEN = 4096

PURPOSES = {"download": 1, "upload": 2, "refresh_state": 3, "api": 4}
V2_PURPOSES = ("api",)  # a v1 body never carries these
METHOD_BITS = {"GET": 1, "HEAD": 2, "POST": 4, "PUT": 8, "DELETE": 16, "PATCH": 32, "OPTIONS": 64}

# Field ids: each field is id:u8 len:u8 value, in strictly ascending id order.
KID, EXPIRES, NOT_BEFORE, PREFIX, HOST, METHODS, IP = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07
TOKEN_ID, SUBJECT, DATA, REFRESH = 0x08, 0x09, 0x0A, 0x0B
ISSUED_AT, USES, MAX_SIZE, CONTENT_TYPES = 0x0C, 0x0D, 0x0E, 0x0F  # version 2 only
BOUND_PATH = 0x10  # never in the body: introduces the exact path in the MAC input
# Every id from ISSUED_AT up (BOUND_PATH aside) is version 2 only.
SCOPES, RECIPIENT, FILE_VERSION = 0x11, 0x12, 0x13
FILENAME, DISPOSITION, MAX_AGE, KEPT_QUERY = 0x14, 0x15, 0x16, 0x17
PLAYBACK_OF = 0x18
V2_CLAIMS = (
    "issued_at", "uses", "max_size", "content_types", "scopes", "recipient", "file_version_hex",
    "filename", "disposition", "max_age", "kept_query", "playback_of",
)
SCOPE_EXACT, SCOPE_PREFIX = 0x00, 0x01  # the kind byte of a scopes entry
# A path segment that begins with this carries a token (spec section 13.3); case-sensitive,
# and looked for in the decoded path, so "%7Emg%7E" is the marker too.
GRANT_MARKER = "~mg~"
DISPOSITIONS = {"inline": 1, "attachment": 2}
# Bidirectional formatting characters: they make "x<U+202E>fdp.exe" display as "xexe.pdf".
BIDI_FORMATTING = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# RFC 3986 query characters besides letters, digits and percent escapes ("&" separates).
QUERY_CHARS = frozenset(b"-._~!$'()*+,;=:@/?")

KID_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
HOST_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789-.:[]")
HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
# RFC 6838 restricted-name characters, lower case only (spec section 17).
MEDIA_NAME_FIRST = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
MEDIA_NAME_CHARS = MEDIA_NAME_FIRST | frozenset("!#$&-^_.+")
NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
B64URL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


class MintError(ValueError):
    """The claims break a rule of the format; nothing was minted."""


class PathError(ValueError):
    """A request path is not canonical. The message is the reason, e.g. "dot_segment"."""


def b64url(raw: bytes) -> str:
    """base64url without padding."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Inverse of b64url, tolerant of padding (for secrets typed by humans)."""
    text = text.strip().rstrip("=")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --- paths -----------------------------------------------------------------------------------


def check_decoded(decoded: bytes) -> None:
    """The checks on decoded bytes; a canonical path passes them unchanged."""
    if any(b < 0x20 or b == 0x7F for b in decoded):
        raise PathError("forbidden_byte")
    if b"\\" in decoded:
        raise PathError("backslash")
    segments = decoded[1:].split(b"/")
    for index, segment in enumerate(segments):
        if segment in (b".", b".."):
            raise PathError("dot_segment")
        if segment == b"" and index + 1 != len(segments):
            raise PathError("repeated_slash")


def canonicalize(raw: str) -> str:
    """Decodes a raw request path once and checks it is canonical: reject, never repair."""
    data = raw.encode("utf-8")
    if len(data) > MAX_PATH_LEN:
        raise PathError("too_long")
    if not data.startswith(b"/"):
        raise PathError("not_absolute")
    if b"#" in data:
        raise PathError("forbidden_byte")
    decoded = bytearray()
    i = 0
    while i < len(data):
        if data[i] != ord("%"):
            decoded.append(data[i])
            i += 1
            continue
        hex_pair = data[i + 1 : i + 3]
        if len(hex_pair) != 2 or not set(hex_pair) <= HEX_DIGITS:
            raise PathError("bad_percent_encoding")
        value = int(hex_pair, 16)
        if value in (ord("/"), ord("\\")):
            raise PathError("encoded_separator")
        decoded.append(value)
        i += 3
    check_decoded(bytes(decoded))
    try:
        return decoded.decode("utf-8")
    except UnicodeDecodeError:
        raise PathError("invalid_utf8") from None


def is_canonical(path: str) -> bool:
    """True when `path` is something canonicalize() returns: the rule for prefixes and exact
    paths. Not canonicalize(path) == path: a canonical path may contain a literal "%" (from
    "%25"), which a second decoding would misread."""
    try:
        data = path.encode("utf-8")
        if len(data) > MAX_PATH_LEN or not data.startswith(b"/"):
            return False
        check_decoded(data)
    except (PathError, UnicodeEncodeError):
        return False
    return True


# --- fields ----------------------------------------------------------------------------------


def field(field_id: int, value: bytes) -> bytes:
    assert len(value) <= 255
    return bytes([field_id, len(value)]) + value


def ascii_text(name: str, value: str, low: int, high: int, allowed) -> bytes:
    raw = value.encode("utf-8") if isinstance(value, str) else b""
    if not low <= len(raw) <= high or not all(allowed(b) for b in raw):
        raise MintError(f"bad {name}: {value!r}")
    return raw


def is_kid_char(b: int) -> bool:
    return b in KID_CHARS


def is_host_char(b: int) -> bool:
    return b in HOST_CHARS


def is_visible(b: int) -> bool:
    return 0x21 <= b <= 0x7E  # ASCII without space and controls


def is_printable(b: int) -> bool:
    return 0x20 <= b <= 0x7E  # visible ASCII or space


def unix_seconds(name: str, value) -> bytes:
    if not isinstance(value, int) or not 1 <= value < 2**64:
        raise MintError(f"bad {name}: must be unix seconds between 1 and 2^64-1")
    return value.to_bytes(8, "big")


def method_bits(methods) -> int:
    """Method names exactly as HTTP spells them (case-sensitive), each named once."""
    names = methods.split(",") if isinstance(methods, str) else methods
    bits = 0
    for name in names:
        bit = METHOD_BITS.get(name)
        if bit is None:
            raise MintError(f"unknown HTTP method {name!r} (methods are upper case)")
        if bits & bit:
            raise MintError(f"method {name} is named twice")
        bits |= bit
    if bits == 0:
        raise MintError("empty method list")
    return bits


def ip_wire(text: str) -> bytes:
    """An address or CIDR network: no brackets, no zone id, plain decimal prefix length, host
    bits zero, and not IPv4-mapped (such a network never contains a client: verifiers compare
    IPv4-mapped clients as IPv4)."""
    address, _, length = text.partition("/")
    if "%" in address or "[" in address:
        raise MintError(f"bad ip network: {text!r} (no zone id, no brackets)")
    if "/" in text and not (length.isascii() and length.isdigit() and str(int(length)) == length):
        raise MintError(f"bad ip network: {text!r} has a bad prefix length")
    try:
        net = ipaddress.ip_network(text, strict=True)  # strict: host bits must be zero
    except ValueError as error:
        raise MintError(f"bad ip network: {error}") from None
    if net.version == 6 and net.network_address.ipv4_mapped is not None:
        raise MintError(f"bad ip network: {text!r} is IPv4-mapped; write the IPv4 network")
    return net.network_address.packed + bytes([net.prefixlen])


def host_value(host: str) -> bytes:
    """The host alphabet of the format, plus the minting rule: only what nginx's $host can
    be (a lower-case name without port or trailing dot, or an IPv6 literal in brackets)."""
    raw = ascii_text("host", host, 1, 253, is_host_char)
    if host.startswith("["):
        try:
            ok = host.endswith("]") and ipaddress.IPv6Address(host[1:-1]) is not None
        except ValueError:
            ok = False
        ok = ok and "%" not in host
    else:
        labels = host.split(".")
        ok = ":" not in host and all(label and set(label) <= NAME_CHARS for label in labels)
    if not ok:
        raise MintError(f"bad host: {host!r} can never equal nginx's $host (port? trailing dot?)")
    return raw


def is_media_type(text: str) -> bool:
    """A lower-case type/subtype of RFC 6838 restricted names, 1-127 characters each."""
    parts = text.split("/")
    return len(parts) == 2 and all(
        1 <= len(name) <= 127 and name[0] in MEDIA_NAME_FIRST and set(name) <= MEDIA_NAME_CHARS
        for name in parts
    )


def content_types_value(types) -> bytes:
    """The wire form: the list joined with ",", which must already be its one spelling
    (strictly ascending, so no duplicates), 1-255 bytes."""
    if not isinstance(types, list) or not types:
        raise MintError("bad content types: a non-empty list")
    if not all(isinstance(t, str) and is_media_type(t) for t in types):
        raise MintError(f"bad content types: {types!r} (lower-case type/subtype, no parameters)")
    if any(a >= b for a, b in zip(types, types[1:])):
        raise MintError(f"bad content types: {types!r} must be ascending, each named once")
    raw = ",".join(types).encode("ascii")
    if len(raw) > 255:
        raise MintError("bad content types: longer than 255 bytes")
    return raw


def filename_value(name) -> bytes:
    """A download file name (spec section 17.1): refused, never repaired, when it could break
    out of a header (control characters: CR, LF, NUL, ...) or disguise the file."""
    raw = name.encode("utf-8") if isinstance(name, str) else b""
    if not 1 <= len(raw) <= 255:
        raise MintError("bad filename: 1 to 255 bytes of UTF-8")
    for c in name:
        if unicodedata.category(c) == "Cc":
            raise MintError(f"bad filename: {name!r} has a control character")
        if c in "/\\":
            raise MintError(f"bad filename: {name!r} has '/' or '\\' (one name, not a path)")
        if c in BIDI_FORMATTING:
            raise MintError(f"bad filename: {name!r} has a bidirectional formatting character")
    if name in (".", "..") or name.startswith(" ") or name.endswith(" "):
        raise MintError(f"bad filename: {name!r} (not . or .., no space at either end)")
    return raw


def kept_query_value(query) -> bytes:
    """The raw query a refresh keeps: 1-255 bytes, non-empty "&"-separated pairs of RFC 3986
    query characters, "%" only before two hex digits. Nothing is normalised."""
    raw = query.encode("ascii") if isinstance(query, str) and query.isascii() else b""
    if not 1 <= len(raw) <= 255:
        raise MintError("bad kept query: 1 to 255 ASCII bytes")
    for pair in raw.split(b"&"):
        if not pair:
            raise MintError(f"bad kept query: {query!r} has an empty pair")
        for at, b in enumerate(pair):
            if b == ord("%"):
                if not set(pair[at + 1 : at + 3]) <= HEX_DIGITS or len(pair[at + 1 : at + 3]) != 2:
                    raise MintError(f"bad kept query: {query!r} has a bad percent escape")
            elif not (chr(b).isalnum() or b in QUERY_CHARS):
                raise MintError(f"bad kept query: {query!r} has a byte outside the query set")
    return raw


def scope_covers(outer: dict, inner: dict) -> bool:
    """True when every path `inner` admits is admitted by `outer`."""
    if outer.get("prefix", False):
        return inner["path"].startswith(outer["path"])
    return not inner.get("prefix", False) and inner["path"] == outer["path"]


def scopes_value(entries) -> bytes:
    """The wire form (entries of methods:u8 kind:u8 len:u8 path), which must already be its one
    spelling: at least two entries, canonical paths, prefixes ending in "/", strictly ascending
    by (path, kind), and no entry inside another granting one of its methods again."""
    if not isinstance(entries, list) or len(entries) < 2:
        raise MintError("bad scopes: at least two entries")
    raw = b""
    for entry in entries:
        path, prefix = entry["path"], entry.get("prefix", False)
        if not is_canonical(path) or (prefix and not path.endswith("/")):
            raise MintError(f"bad scopes: {path!r} is not a canonical path (a prefix ends in '/')")
        data = path.encode("utf-8")
        if len(data) > 255:
            raise MintError("bad scopes: longer than 255 bytes")
        kind = SCOPE_PREFIX if prefix else SCOPE_EXACT
        raw += bytes([method_bits(entry["methods"]), kind, len(data)]) + data
    keys = [(e["path"], e.get("prefix", False)) for e in entries]
    if any(a >= b for a, b in zip(keys, keys[1:])):
        raise MintError("bad scopes: entries out of order or repeated")
    for i, outer in enumerate(entries):
        for inner in entries[i + 1 :]:
            nested = scope_covers(outer, inner) or scope_covers(inner, outer)
            if nested and method_bits(outer["methods"]) & method_bits(inner["methods"]):
                raise MintError("bad scopes: an entry inside another grants one of its methods")
    if len(raw) > 255:
        raise MintError("bad scopes: longer than 255 bytes")
    return raw


def u64_at_least_1(name: str, value) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2**64:
        raise MintError(f"bad {name}: between 1 and 2^64-1")
    return value.to_bytes(8, "big")


def encode_body(kid: str, claims: dict) -> bytes:
    """The body: version, purpose, then every present field in ascending id order. The
    version is 2 exactly when a v2-only claim is present (one spelling per set of claims)."""
    purpose = claims.get("purpose", "download")
    if purpose not in PURPOSES:
        raise MintError(f"unknown purpose {purpose!r}")
    if sum(name in claims for name in ("path", "prefix", "scopes")) != 1:
        raise MintError("give exactly one of path, prefix and scopes")
    if "scopes" in claims and "methods" in claims:
        raise MintError("a token with scopes carries no methods field")
    v2 = purpose in V2_PURPOSES or any(name in claims for name in V2_CLAIMS)
    version = VERSION_2 if v2 else VERSION_1

    body = bytes([version, PURPOSES[purpose]])
    body += field(KID, ascii_text("kid", kid, 1, 32, is_kid_char))
    body += field(EXPIRES, unix_seconds("expires", claims.get("expires")))
    if "not_before" in claims:
        body += field(NOT_BEFORE, unix_seconds("not_before", claims["not_before"]))
    if "prefix" in claims:
        prefix = claims["prefix"]
        raw = prefix.encode("utf-8")
        if len(raw) > 255 or not prefix.endswith("/") or not is_canonical(prefix):
            raise MintError("prefix is not a canonical path ending in '/'")
        body += field(PREFIX, raw)
    if "host" in claims:
        body += field(HOST, host_value(claims["host"]))
    if "methods" in claims:
        body += field(METHODS, bytes([method_bits(claims["methods"])]))
    if "ip" in claims:
        body += field(IP, ip_wire(claims["ip"]))
    if "token_id" in claims:
        body += field(TOKEN_ID, ascii_text("token id", claims["token_id"], 1, 64, is_visible))
    if "subject" in claims:
        body += field(SUBJECT, ascii_text("subject", claims["subject"], 1, 128, is_printable))
    data = claims.get("data")
    if "data_b64url" in claims:
        data = b64url_decode(claims["data_b64url"])
    if data is not None:
        if not 1 <= len(data) <= 255:
            raise MintError("bad data: 1 to 255 bytes")
        body += field(DATA, bytes(data))
    if "refresh" in claims:
        attempt, started = claims["refresh"]["attempt"], claims["refresh"]["started"]
        if not 1 <= attempt <= 255 or not 0 <= started < 2**64:
            raise MintError("bad refresh marker")
        body += field(REFRESH, bytes([attempt]) + started.to_bytes(8, "big"))
    if "issued_at" in claims:
        body += field(ISSUED_AT, unix_seconds("issued_at", claims["issued_at"]))
        if claims["issued_at"] >= claims["expires"]:
            raise MintError("issued_at must be earlier than expires")
    if "uses" in claims:
        uses = claims["uses"]
        if isinstance(uses, bool) or not isinstance(uses, int) or not 1 <= uses < 2**32:
            raise MintError("bad uses: between 1 and 2^32-1")
        if "token_id" not in claims:
            raise MintError("a use limit needs a token id")
        body += field(USES, uses.to_bytes(4, "big"))
    if "max_size" in claims:
        body += field(MAX_SIZE, u64_at_least_1("max_size", claims["max_size"]))
    if "content_types" in claims:
        body += field(CONTENT_TYPES, content_types_value(claims["content_types"]))
    if ("max_size" in claims or "content_types" in claims) and purpose != "upload":
        raise MintError("max_size and content types belong in upload tokens only")
    # Ids ascend: scopes and recipient (0x11, 0x12), the file version (0x13), the overrides
    # (0x14-0x16), the kept query (0x17), a playback grant's origin (0x18).
    if "scopes" in claims:
        body += field(SCOPES, scopes_value(claims["scopes"]))
    if "recipient" in claims:
        body += field(RECIPIENT, ascii_text("recipient", claims["recipient"], 1, 128, is_printable))
    if "file_version_hex" in claims:
        text = claims["file_version_hex"]
        if not isinstance(text, str) or len(text) != 16 or not set(text.encode()) <= HEX_DIGITS:
            raise MintError("bad file version: exactly 8 bytes (16 hex digits)")
        if purpose != "download" or "prefix" in claims or "scopes" in claims:
            raise MintError("a file version belongs in exact-path download tokens only")
        body += field(FILE_VERSION, bytes.fromhex(text))
    if "filename" in claims:
        body += field(FILENAME, filename_value(claims["filename"]))
    if "disposition" in claims:
        if claims["disposition"] not in DISPOSITIONS:
            raise MintError(f"bad disposition {claims['disposition']!r}: inline or attachment")
        body += field(DISPOSITION, bytes([DISPOSITIONS[claims["disposition"]]]))
    if "max_age" in claims:
        age = claims["max_age"]
        if isinstance(age, bool) or not isinstance(age, int) or not 0 <= age < 2**32:
            raise MintError("bad max_age: between 0 and 2^32-1 seconds")
        body += field(MAX_AGE, age.to_bytes(4, "big"))
    if any(name in claims for name in ("filename", "disposition", "max_age")) \
            and purpose != "download":
        raise MintError("filename, disposition and max_age belong in download tokens only")
    if "kept_query" in claims:
        if purpose != "refresh_state":
            raise MintError("a kept query belongs in refresh_state tokens only")
        body += field(KEPT_QUERY, kept_query_value(claims["kept_query"]))
    if "playback_of" in claims:
        origin = unix_seconds("playback_of", claims["playback_of"])
        if purpose != "download" or claims["playback_of"] > claims["expires"]:
            raise MintError("a playback grant's origin belongs in download tokens, no later "
                            "than their expiry")
        body += field(PLAYBACK_OF, origin)

    if "path" in claims and not is_canonical(claims["path"]):
        raise MintError("exact path is not canonical")
    if len(body) + TAG_LEN > MAX_TOKEN_BYTES:
        raise MintError("token would be longer than 1024 characters")
    return body


# --- front end: a request as a person or a backend writes it (spec section 8.1) ----------

REQUEST_KEYS = {
    "path", "prefix", "ttl", "methods", "ip", "host", "subject", "token_id", "data", "not_before",
    "purpose", "uses", "max_size", "content_types", "issued_at", "scopes", "recipient", "filename",
    "disposition", "max_age", "form",
}
FORMS = ("query", "path")  # how a link carries its token (spec sections 13 and 13.3)
SCOPE_KEYS = {"methods", "path", "prefix"}
TTL_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(value) -> int:
    """600, "600", "600s", "10m", "1h" or "7d"."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value)
    digits = len(text) - len(text.lstrip("0123456789"))
    number, unit = text[:digits], text[digits:]
    if not number or unit not in TTL_UNITS:
        raise MintError(f"bad ttl {value!r}: use 30s, 10m, 1h or 7d")
    return int(number) * TTL_UNITS[unit]


def claims_from_request(request: dict, now: int, max_lifetime: int = 604800) -> dict:
    """The checks `mediagate sign` and POST /mint make: refuse, never repair."""
    unknown = set(request) - REQUEST_KEYS
    if unknown:
        raise MintError(f"unknown field(s): {sorted(unknown)}")
    if "scopes" in request:
        scopes = canonical_scopes(request["scopes"])
        if request.get("prefix", False) or "methods" in request:
            raise MintError("scopes replace prefix and methods")
        if "path" in request:
            link = {"path": url_path(request["path"])}
            if not any(scope_covers(entry, link) for entry in scopes):
                raise MintError("the path is outside every scope")
    else:
        raw = request["path"]
        canonical = url_path(raw)
    ttl = parse_ttl(request.get("ttl", 3600))
    if not 1 <= ttl <= max_lifetime:
        raise MintError(f"ttl must be between 1 and {max_lifetime} seconds")
    claims = {"purpose": "download", "expires": now + ttl}
    if "scopes" in request:
        claims["scopes"] = scopes
    elif request.get("prefix", False):
        if not canonical.endswith("/"):
            raise MintError(f"prefix {raw!r} must end with '/'")
        claims["prefix"] = canonical
    else:
        claims["path"] = canonical
    if "not_before" in request and request["not_before"] >= claims["expires"]:
        raise MintError("not_before must be earlier than the expiry")
    if "data" in request:
        data = request["data"]
        if "=" in data or not set(data) <= B64URL_CHARS or len(data) % 4 == 1:
            raise MintError("data must be base64url without padding")
        claims["data_b64url"] = data
    for name in ("methods", "ip", "host", "subject", "token_id", "not_before", "recipient"):
        if name in request:
            claims[name] = request[name]
    v2_request(request, claims, now)
    form = request.get("form", "query")
    if form not in FORMS:
        raise MintError(f"form must be query or path, not {form!r}")
    # Only media locations read a token from the path, and a scopes list has no one place in
    # a path for it.
    if form == "path" and (claims["purpose"] != "download" or "scopes" in claims):
        raise MintError("a link in path form is a download link for one path or prefix")
    return claims


def folder(path: str) -> str:
    """The folder of a canonical path, with its "/": /a/b.mp4 gives /a/, /a/ gives /a/."""
    return path[: path.rindex("/") + 1]


def grant_path(file: str, base: str, token: str) -> str:
    """The URL path of a link that carries `token` as a segment right after `base` (spec
    section 13.3): base, "~mg~" and the token, "/", then the rest of the file path, each
    part percent-encoded like encode_path. "~" is unreserved: the marker stays as it is."""
    assert base.endswith("/") and file.startswith(base)
    return encode_path(base) + GRANT_MARKER + token + "/" + encode_path(file[len(base) :])


def request_link(request: dict, claims: dict, token: str, param: str = "token") -> str:
    """The link's path and query, without an origin: the percent-encoded path with
    ?<param>=<token>, or in path form the segment right after the token's prefix, or in the
    folder of its exact path (the one place a gate accepts it, spec section 13.3)."""
    if "scopes" in claims:  # query form only (claims_from_request refuses the path form)
        path = url_path(request["path"]) if request.get("path") else claims["scopes"][0]["path"]
        return f"{encode_path(path)}?{param}={token}"
    path = claims.get("prefix", claims.get("path"))
    if request.get("form", "query") == "query":
        return f"{encode_path(path)}?{param}={token}"
    base = claims["prefix"] if "prefix" in claims else folder(path)
    return grant_path(path, base, token)


def url_path(raw: str) -> str:
    """A path as it appears in a URL, decoded once: no raw "?", URL form at most 4096 bytes."""
    if "?" in raw:
        raise MintError(f"path {raw!r} contains '?': a query is not part of the signed path")
    try:
        canonical = canonicalize(raw)
    except PathError as error:
        raise MintError(f"path {raw!r} is not canonical: {error}") from None
    # Such a segment carries a token: a gate takes it out of the path (and nginx serves the
    # path without it), so no link could ever name this path.
    if any(segment.startswith(GRANT_MARKER) for segment in canonical.split("/")):
        raise MintError(f"path {raw!r} has a segment beginning with {GRANT_MARKER!r}")
    if len(encode_path(canonical)) > MAX_PATH_LEN:
        raise MintError("the path's URL form is longer than 4096 bytes")
    return canonical


def canonical_scopes(entries) -> list:
    """Scopes as a person wrote them: each path decoded once, a prefix ending in "/", then
    sorted; refuses (never merges) duplicates, a method granted twice for one path, fewer than
    two entries, or more than fit."""
    if not isinstance(entries, list) or not entries:
        raise MintError("empty scope list")
    if len(entries) == 1:
        raise MintError("a single scope is a plain token: give its path, prefix and methods")
    out = []
    for entry in entries:
        if not isinstance(entry, dict) or set(entry) - SCOPE_KEYS or "path" not in entry \
                or "methods" not in entry:
            raise MintError(f"bad scope {entry!r}: give methods, path and optionally prefix")
        prefix = entry.get("prefix", False)
        path = url_path(entry["path"])
        if prefix and not path.endswith("/"):
            raise MintError(f"scope prefix {entry['path']!r} must end with '/'")
        method_bits(entry["methods"])
        out.append({"methods": entry["methods"], "path": path, "prefix": prefix})
    out.sort(key=lambda e: (e["path"], e["prefix"]))
    scopes_value(out)  # the remaining rules, exactly as the minter checks them
    return out


def canonical_content_types(types) -> list:
    """Refuses (never repairs) what is not already one spelling, then sorts."""
    if not isinstance(types, list) or not types:
        raise MintError("empty content type list")
    for media_type in types:
        if not isinstance(media_type, str):
            raise MintError(f"content type {media_type!r} is not a string")
        if ";" in media_type:
            raise MintError(f"content type {media_type!r} has parameters")
        if media_type != media_type.lower():
            raise MintError(f"content type {media_type!r} must be lower case")
        if not is_media_type(media_type):
            raise MintError(f"content type {media_type!r} is not a media type type/subtype")
    if len(set(types)) != len(types):
        raise MintError("a content type is named twice")
    return sorted(types)


def v2_request(request: dict, claims: dict, now: int) -> None:
    """The v2 part of the front end, as mediagate's: upload slots are single-use by default,
    a counted token gets a random token id, and every v2 token is stamped with now."""
    purpose = request.get("purpose", "download")
    if purpose not in ("download", "upload", "api"):
        raise MintError(f"purpose must be download, upload or api, not {purpose!r}")
    upload = purpose == "upload"
    claims["purpose"] = purpose
    if not upload and ("max_size" in request or "content_types" in request):
        raise MintError("max_size and content types need an upload token")
    granted = list(request.get("methods", []))
    for entry in request.get("scopes", []):
        granted += entry["methods"]
    if upload and not set(granted) <= {"POST", "PUT"}:
        raise MintError("an upload token allows POST and/or PUT only")
    uses = request.get("uses", 1 if upload else None)
    if uses is not None:
        if uses == 0:
            raise MintError("uses must be at least 1")
        claims["uses"] = uses
        # 16 random bytes: a counter is keyed by key id and token id.
        claims.setdefault("token_id", b64url(secrets.token_bytes(16)))
    if "max_size" in request:
        claims["max_size"] = request["max_size"]
    if "content_types" in request:
        claims["content_types"] = canonical_content_types(request["content_types"])
    overrides = [name for name in ("filename", "disposition", "max_age") if name in request]
    if overrides and purpose != "download":
        raise MintError("filename, disposition and max_age need a download token")
    for name in overrides:
        claims[name] = request[name]
    if "max_age" in request:
        claims["max_age"] = parse_ttl(request["max_age"])
    if upload or purpose in V2_PURPOSES or uses is not None or "max_size" in request \
            or "content_types" in request or overrides or request.get("issued_at", False) \
            or "scopes" in request or "recipient" in request:
        claims["issued_at"] = now


def parse_size(text: str) -> int:
    """A byte count, or a number with K, M or G (1024-based): 10M."""
    unit = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    digits = text[:-1] if unit > 1 else text
    if not (digits.isascii() and digits.isdigit()) or (digits != "0" and digits.startswith("0")):
        raise MintError(f"bad size {text!r}: use a byte count or K, M, G, e.g. 10M")
    if int(digits) == 0:
        raise MintError(f"size {text!r} must be at least 1 byte")
    return int(digits) * unit


def encode_path(path: str) -> str:
    """Percent-encodes a canonical path for a URL: all but unreserved characters and "/"."""
    keep = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~/"
    return "".join(chr(b) if b in keep else f"%{b:02X}" for b in path.encode("utf-8"))


# --- MAC and token ---------------------------------------------------------------------------


def mac_input(body: bytes, bound_path) -> bytes:
    """"mediagate\\0" || body || binding; the binding is empty for prefix tokens."""
    binding = b""
    if bound_path is not None:
        path = bound_path.encode("utf-8")
        binding = bytes([BOUND_PATH]) + len(path).to_bytes(2, "big") + path
    return DOMAIN + body + binding


def tag(secret: bytes, body: bytes, bound_path) -> bytes:
    return hmac.new(secret, mac_input(body, bound_path), hashlib.sha256).digest()[:TAG_LEN]


def mint(secret: bytes, kid: str, claims: dict) -> str:
    """Mints a token; raises MintError when a claim breaks the format's rules."""
    if len(secret) < MIN_SECRET_LEN:
        raise MintError(f"secret has {len(secret)} bytes; at least {MIN_SECRET_LEN} are required")
    body = encode_body(kid, claims)
    return b64url(body + tag(secret, body, claims.get("path")))


# --- command line ----------------------------------------------------------------------------


def replay_vectors(path: str, section: str) -> None:
    """Prints one line per vector: the token, or "rejected: ..." when minting was refused."""
    with open(path, encoding="utf-8") as file:
        vectors = json.load(file)
    secrets = {key["id"]: b64url_decode(key["secret_b64url"]) for key in vectors["keys"]}
    for vector in vectors[section]:
        secret = secrets[vector.get("key", vector.get("kid", "k1"))]  # "key": another kid
        try:
            if "input" in vector:  # front-end vectors: signed with k1 at vectors["now"]
                claims = claims_from_request(
                    vector["input"], vectors["now"], vectors["limits"]["max_lifetime"]
                )
                token = mint(secret, "k1", claims)
                # tokens.json's requests: the token; path-grants.json's mint: the link.
                print(token if section == "requests" else request_link(vector["input"], claims, token))
            else:
                print(mint(secret, vector["kid"], vector["claims"]))
        except MintError as error:
            print(f"rejected: {error}")


def scope_flag(text: str) -> dict:
    """--scope METHODS:PATH, as `mediagate sign --scope`: a PATH ending in "/" is a prefix."""
    methods, sep, path = text.partition(":")
    if not sep:
        raise MintError(f"scope {text!r}: write METHODS:PATH, e.g. GET,HEAD:/api/v1/foo/")
    return {"methods": methods.split(","), "path": path, "prefix": path.endswith("/")}


def main() -> None:
    parser = argparse.ArgumentParser(description="Mint a mediagate token (v1 or v2) or link.")
    parser.add_argument("--vectors", metavar="FILE", help="replay test vectors instead")
    parser.add_argument(
        "--section", default="mint", help="vector section (mint, mint_rejects, requests)"
    )
    parser.add_argument("--secret-b64url", help="the signing key's secret")
    parser.add_argument("--kid", help="the signing key's id")
    parser.add_argument("--path", help="raw request path; canonicalised here")
    parser.add_argument("--prefix", action="store_true", help="scope to everything below --path")
    parser.add_argument(
        "--ttl", type=int, default=3600, help="lifetime in seconds (verifiers cap it, 7 days by default)"
    )
    parser.add_argument("--now", type=int, help="unix seconds (default: the clock)")
    parser.add_argument("--purpose", default="download", choices=sorted(PURPOSES))
    parser.add_argument("--not-before", type=int)
    parser.add_argument("--host")
    parser.add_argument("--methods", help="e.g. GET,HEAD")
    parser.add_argument("--ip", help="address or CIDR network")
    parser.add_argument("--token-id")
    parser.add_argument("--subject")
    parser.add_argument("--upload", action="store_true", help="an upload slot (v2)")
    parser.add_argument("--uses", type=int, help="use limit (v2; generates a token id)")
    parser.add_argument("--max-size", help="upload slots: largest body, e.g. 10M")
    parser.add_argument(
        "--content-type", action="append", default=[], help="upload slots: allowed media type"
    )
    parser.add_argument("--issued-at", action="store_true", help="stamp the mint time (v2)")
    parser.add_argument("--filename", help="download links: the name to save the file as (v2)")
    parser.add_argument("--disposition", choices=sorted(DISPOSITIONS), help="inline or attachment (v2)")
    parser.add_argument("--max-age", help="download links: browser cache lifetime, e.g. 1h (v2)")
    parser.add_argument(
        "--scope", action="append", default=[],
        help="METHODS:PATH (v2), e.g. GET,HEAD:/api/v1/foo/; a PATH ending in / is a prefix",
    )
    parser.add_argument("--recipient", help="who the token is handed to (v2)")
    parser.add_argument(
        "--form", choices=FORMS,
        help="print the link's path and query instead of the token: ?token=... (query) or a "
        "~mg~ path segment (path)",
    )
    args = parser.parse_args()
    sys.stdout.reconfigure(encoding="utf-8")

    if args.vectors:
        replay_vectors(args.vectors, args.section)
        return
    if not (args.secret_b64url and args.kid and (args.path or args.scope)):
        parser.error("--secret-b64url, --kid and --path (or --scope) are required")
    try:
        now = args.now if args.now is not None else int(time.time())
        request = {
            "path": args.path,
            "prefix": args.prefix,
            "ttl": args.ttl,
            "not_before": args.not_before,
            "host": args.host,
            "methods": args.methods and args.methods.split(","),
            "ip": args.ip,
            "token_id": args.token_id,
            "subject": args.subject,
            "purpose": "upload" if args.upload else
            args.purpose if args.purpose in ("upload", "api") else None,
            "uses": args.uses,
            "max_size": parse_size(args.max_size) if args.max_size else None,
            "content_types": [t for item in args.content_type for t in item.split(",")] or None,
            "issued_at": args.issued_at or None,
            "filename": args.filename,
            "disposition": args.disposition,
            "max_age": args.max_age,
            "scopes": [scope_flag(flag) for flag in args.scope] or None,
            "recipient": args.recipient,
            "form": args.form,
        }
        request = {name: value for name, value in request.items() if value is not None}
        claims = claims_from_request(request, now, max_lifetime=2**63)  # verifiers cap it
        if args.purpose == "refresh_state":
            # A refresh state travels in the session domain's URL, never as a media link.
            if args.form:
                raise MintError("--form makes a media link; a refresh_state token is none")
            claims["purpose"] = args.purpose
        token = mint(b64url_decode(args.secret_b64url), args.kid, claims)
        print(request_link(request, claims, token) if args.form else token)
    except (MintError, ValueError) as error:
        sys.exit(f"mint.py: {error}")


if __name__ == "__main__":
    main()
