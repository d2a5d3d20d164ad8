//! Value types of token fields that are more than bytes: method sets, IP networks, the
//! refresh marker, the v2 response overrides (disposition, download name) and the file
//! version. Each knows its exact wire encoding.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// HTTP methods a token allows, as a bit set (one byte on the wire).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Methods(u8);

impl Methods {
    /// The methods in bit order; bit `i` stands for `NAMES[i]`.
    pub const NAMES: [&'static str; 7] =
        ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];
    /// GET and HEAD: what a token allows when it has no methods field.
    pub const READ: Methods = Methods(0b11);
    /// POST and PUT: what a version 2 upload token allows when it has no methods field.
    pub const WRITE: Methods = Methods(0b1100);
    const KNOWN_BITS: u8 = (1 << Self::NAMES.len()) - 1;

    /// The set named by `names`, each spelled exactly as in [`Methods::NAMES`] (methods are
    /// case-sensitive) and named once: minting refuses what it would otherwise have to guess.
    pub fn from_names<'n>(names: impl IntoIterator<Item = &'n str>) -> Result<Methods, String> {
        let mut bits = 0;
        for name in names {
            let bit = Methods::bit_of(name).ok_or_else(|| {
                format!("unknown HTTP method {name:?} (methods are upper case: GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS)")
            })?;
            if bits & bit != 0 {
                return Err(format!("method {name} is named twice"));
            }
            bits |= bit;
        }
        Methods::from_bits(bits).ok_or_else(|| "empty method list".to_owned())
    }

    /// Decodes the wire byte; `None` for zero or unknown bits.
    pub fn from_bits(bits: u8) -> Option<Methods> {
        (bits != 0 && bits & !Self::KNOWN_BITS == 0).then_some(Methods(bits))
    }

    /// The wire byte.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// The bit for one method name (case-sensitive, as HTTP methods are), if we know it.
    pub fn bit_of(method: &str) -> Option<u8> {
        Self::NAMES
            .iter()
            .position(|&name| name == method)
            .map(|index| 1 << index)
    }

    /// True when `method` is in the set. Unknown methods are never allowed.
    pub fn allows(self, method: &str) -> bool {
        Self::bit_of(method).is_some_and(|bit| self.0 & bit != 0)
    }
}

impl FromStr for Methods {
    type Err = String;

    /// Parses `GET,HEAD`: comma-separated, no spaces, each name as in [`Methods::from_names`].
    fn from_str(list: &str) -> Result<Methods, String> {
        Methods::from_names(list.split(','))
    }
}

impl fmt::Display for Methods {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Self::NAMES
            .iter()
            .enumerate()
            .filter(|(index, _)| self.0 & (1 << index) != 0)
            .map(|(_, name)| *name)
            .collect();
        f.write_str(&names.join(","))
    }
}

impl fmt::Debug for Methods {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Methods({self})")
    }
}

/// An IP address or CIDR network a token is bound to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct IpNet {
    addr: IpAddr,
    prefix_len: u8,
}

impl IpNet {
    /// Builds a network; host bits of `addr` must be zero so every network has one spelling.
    pub fn new(addr: IpAddr, prefix_len: u8) -> Result<IpNet, String> {
        let max = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        if prefix_len > max {
            return Err(format!("prefix length {prefix_len} is longer than {max}"));
        }
        let net = IpNet { addr, prefix_len };
        if net.mask(addr) != addr {
            return Err(format!("{addr}/{prefix_len} has host bits set"));
        }
        Ok(net)
    }

    /// True when `client` lies inside the network. IPv4-mapped IPv6 clients count as IPv4.
    pub fn contains(&self, client: IpAddr) -> bool {
        let client = match client {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, client) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                self.mask(client) == self.addr
            }
            _ => false,
        }
    }

    fn mask(&self, addr: IpAddr) -> IpAddr {
        match addr {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(bits & mask))
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(bits & mask))
            }
        }
    }

    /// True for an IPv6 network inside `::ffff:0:0/96`. Clients in that range are compared as
    /// IPv4, so such a network decodes but never contains any client (spec §10, step 11).
    pub fn is_ipv4_mapped(&self) -> bool {
        matches!(self.addr, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some())
    }

    /// Wire form: 4 or 16 address bytes followed by the prefix length (5 or 17 bytes).
    pub fn to_wire(self) -> Vec<u8> {
        let mut out = match self.addr {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        out.push(self.prefix_len);
        out
    }

    /// Parses the wire form; `None` for a wrong length, prefix, or set host bits.
    pub fn from_wire(bytes: &[u8]) -> Option<IpNet> {
        let (addr, prefix_len) = match bytes.len() {
            5 => (
                IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
                bytes[4],
            ),
            17 => {
                let octets: [u8; 16] = bytes[..16].try_into().ok()?;
                (IpAddr::V6(Ipv6Addr::from(octets)), bytes[16])
            }
            _ => return None,
        };
        IpNet::new(addr, prefix_len).ok()
    }
}

impl FromStr for IpNet {
    type Err = String;

    /// Parses `203.0.113.7` (a single address) or `203.0.113.0/24` / `2001:db8::/32`: no
    /// brackets, no zone id, a prefix length in plain decimal (no sign, no leading zero).
    fn from_str(text: &str) -> Result<IpNet, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address"))?;
        // Clients in ::ffff:a.b.c.d form are compared as IPv4, so a mapped network could
        // never match anything: ask for the IPv4 spelling instead of minting a dead token.
        if let IpAddr::V6(v6) = addr {
            if v6.to_ipv4_mapped().is_some() {
                return Err(format!(
                    "{text:?} is IPv4-mapped; write the IPv4 network instead"
                ));
            }
        }
        let decimal = |digits: &str| {
            let plain = !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit())
                && (digits == "0" || !digits.starts_with('0'));
            plain.then(|| digits.parse::<u8>().ok()).flatten()
        };
        let prefix_len = match prefix {
            Some(prefix) => {
                decimal(prefix).ok_or_else(|| format!("{text:?} has a bad prefix length"))?
            }
            None if addr.is_ipv4() => 32,
            None => 128,
        };
        IpNet::new(addr, prefix_len)
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// Set only on tokens minted by the refresh flow: which attempt minted it, and when (by the
/// media side's clock) the refresh chain started. Lets the media side tell a redirect loop
/// from a link that simply grew old.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RefreshMarker {
    /// 1 for the first refresh of a chain.
    pub attempt: u8,
    /// Unix seconds at which the media side started this refresh chain.
    pub started: u64,
}

impl RefreshMarker {
    /// Wire form: attempt byte, then `started` as 8 big-endian bytes.
    pub fn to_wire(self) -> [u8; 9] {
        let mut out = [0; 9];
        out[0] = self.attempt;
        out[1..].copy_from_slice(&self.started.to_be_bytes());
        out
    }

    /// Parses the wire form.
    pub fn from_wire(bytes: &[u8]) -> Option<RefreshMarker> {
        let (&attempt, started) = bytes.split_first()?;
        let started = u64::from_be_bytes(started.try_into().ok()?);
        (attempt >= 1).then_some(RefreshMarker { attempt, started })
    }
}

/// How the browser presents a file: the type of `Content-Disposition` (RFC 6266). One byte on
/// the wire (v2 field `0x15`); also the type of the site-wide `accel.content_disposition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Disposition {
    /// Show in the browser.
    Inline = 1,
    /// Download (save as).
    Attachment = 2,
}

impl Disposition {
    /// Parses the wire byte; `None` for anything but 1 and 2.
    pub fn from_byte(byte: u8) -> Option<Disposition> {
        match byte {
            1 => Some(Disposition::Inline),
            2 => Some(Disposition::Attachment),
            _ => None,
        }
    }

    /// The header's type token: `inline` or `attachment`.
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Inline => "inline",
            Disposition::Attachment => "attachment",
        }
    }
}

impl FromStr for Disposition {
    type Err = String;

    /// `inline` or `attachment`, exactly (lower case): minting refuses other spellings.
    fn from_str(text: &str) -> Result<Disposition, String> {
        match text {
            "inline" => Ok(Disposition::Inline),
            "attachment" => Ok(Disposition::Attachment),
            other => Err(format!(
                "disposition {other:?} is not \"inline\" or \"attachment\""
            )),
        }
    }
}

/// Why `name` may not be a download file name (v2 field `0x14`), or `None` when it may. The
/// single definition for minting and decoding (spec §17.1). The name reaches a response
/// header, so everything that could break out of `Content-Disposition` or fool the person
/// saving the file is refused, never repaired:
///
/// - 1-255 bytes of UTF-8;
/// - no control character (C0, DEL, C1): CR, LF and NUL never reach a header;
/// - no `/` or `\`: a download name is one name, never a path;
/// - no bidirectional formatting character (U+061C, U+200E, U+200F, U+202A-U+202E,
///   U+2066-U+2069): `invoice\u{202e}fdp.exe` would display as `invoiceexe.pdf`;
/// - not `.` or `..`, and no space at either end (browsers trim or refuse those differently).
///
/// Quotes, `;`, `%` and every other character are allowed in the name: the header carries
/// the exact name percent-encoded in `filename*`, and its ASCII fallback replaces them (see
/// `decision::content_disposition`), so none of them reaches the header as itself.
pub fn download_name_problem(name: &[u8]) -> Option<&'static str> {
    const LIMIT: usize = 255;
    if name.is_empty() || name.len() > LIMIT {
        return Some("a file name has 1 to 255 bytes");
    }
    let Ok(name) = std::str::from_utf8(name) else {
        return Some("a file name is UTF-8");
    };
    for c in name.chars() {
        if c.is_control() {
            return Some("a file name has no control characters (CR, LF, NUL, ...)");
        }
        if c == '/' || c == '\\' {
            return Some("a file name has no '/' or '\\' (it is one name, not a path)");
        }
        if matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        {
            return Some(
                "a file name has no bidirectional formatting characters (they disguise extensions)",
            );
        }
    }
    if name == "." || name == ".." {
        return Some("a file name is not \".\" or \"..\"");
    }
    if name.starts_with(' ') || name.ends_with(' ') {
        return Some("a file name does not start or end with a space");
    }
    None
}

/// The version of one file a token is bound to (v2 field `0x13`): the first 8 bytes of
/// SHA-256 over a domain prefix and the file's size, modification time (seconds and
/// nanoseconds) and inode number. Pure: the caller did the `stat`.
///
/// Why these three: replacing a file the safe way (write a new one, rename it over) gives a
/// new inode; rewriting it in place changes its modification time (and usually its size).
/// A `touch` changes the modification time too, so it also ends the binding: nothing cheaper
/// than reading the content tells a `touch` from a same-size rewrite, and failing closed is
/// the side to err on. Not the device number (it can change across reboots and remounts,
/// which would end every binding) nor the change time (a `chmod` or a new hard link is no
/// new content). Hashed rather than carried, so a link does not show its file's size, time
/// or inode, and the field stays 8 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileVersion([u8; 8]);

impl FileVersion {
    /// Domain prefix of the hashed input, so the hash is of nothing else mediagate hashes.
    const DOMAIN: &'static [u8] = b"mediagate file version\0";

    /// The version of a file with this `size` (bytes), modification time (`mtime` seconds,
    /// may be negative, and `mtime_nsec` nanoseconds) and inode number.
    pub fn of(size: u64, mtime: i64, mtime_nsec: i64, inode: u64) -> FileVersion {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        hash.update(Self::DOMAIN);
        hash.update(size.to_be_bytes());
        hash.update(mtime.to_be_bytes());
        hash.update(mtime_nsec.to_be_bytes());
        hash.update(inode.to_be_bytes());
        let digest = hash.finalize();
        let mut out = [0; 8];
        out.copy_from_slice(&digest[..8]);
        FileVersion(out)
    }

    /// Wraps the 8 wire bytes.
    pub fn from_bytes(bytes: [u8; 8]) -> FileVersion {
        FileVersion(bytes)
    }

    /// The 8 wire bytes.
    pub fn to_bytes(self) -> [u8; 8] {
        self.0
    }

    /// Parses the wire form: exactly 8 bytes.
    pub fn from_wire(bytes: &[u8]) -> Option<FileVersion> {
        bytes.try_into().ok().map(FileVersion)
    }
}

impl fmt::Display for FileVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for FileVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileVersion({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_names_refuse_what_could_leave_the_header_or_disguise_the_file() {
        for good in [
            "Résumé 2026 \"final\".pdf",
            "a;b.txt",
            "100%.pdf",
            "x",
            "日本語.txt",
            "a..b",
            "...",
        ] {
            assert_eq!(download_name_problem(good.as_bytes()), None, "{good:?}");
        }
        for bad in [
            &b""[..],
            b"a\r\nSet-Cookie: x=1",
            b"a\nb",
            b"a\rb",
            b"a\0b",
            b"a\x7fb",
            "a\u{85}b".as_bytes(),
            b"../etc/passwd",
            b"a\\b",
            "invoice\u{202e}fdp.exe".as_bytes(),
            "a\u{2066}b".as_bytes(),
            b".",
            b"..",
            b" a.pdf",
            b"a.pdf ",
            b"\xff.pdf",
            &[b'a'; 256],
        ] {
            assert!(download_name_problem(bad).is_some(), "{bad:?}");
        }
        assert_eq!(download_name_problem(&[b'a'; 255]), None);
    }

    #[test]
    fn disposition_has_two_bytes_and_two_spellings() {
        assert_eq!(Disposition::from_byte(1), Some(Disposition::Inline));
        assert_eq!(Disposition::from_byte(2), Some(Disposition::Attachment));
        assert!(Disposition::from_byte(0).is_none() && Disposition::from_byte(3).is_none());
        assert_eq!("attachment".parse(), Ok(Disposition::Attachment));
        assert!("Inline".parse::<Disposition>().is_err());
    }

    #[test]
    fn methods_parse_and_print() {
        let methods: Methods = "PUT,GET".parse().unwrap();
        assert_eq!(methods.to_string(), "GET,PUT");
        assert!(methods.allows("PUT") && !methods.allows("HEAD") && !methods.allows("put"));
        assert!(Methods::from_bits(0).is_none() && Methods::from_bits(0x80).is_none());
        for refused in ["BREW", "get", "PUT, GET", "GET,GET", ""] {
            assert!(refused.parse::<Methods>().is_err(), "{refused:?}");
        }
    }

    #[test]
    fn ip_spellings_other_than_the_plain_one_are_refused() {
        for refused in [
            "[2001:db8::1]",
            "fe80::1%eth0",
            "203.0.113.0/+24",
            "203.0.113.0/024",
            "203.0.113.0/",
            "203.0.113.07",
            "::ffff:0.0.0.0/108",
        ] {
            assert!(refused.parse::<IpNet>().is_err(), "{refused:?}");
        }
        assert!("0.0.0.0/0".parse::<IpNet>().is_ok());
    }

    #[test]
    fn cidr_contains_and_round_trips() {
        let net: IpNet = "203.0.113.0/24".parse().unwrap();
        assert!(net.contains("203.0.113.99".parse().unwrap()));
        assert!(net.contains("::ffff:203.0.113.5".parse().unwrap()));
        assert!(!net.contains("203.0.114.1".parse().unwrap()));
        assert!(!net.contains("2001:db8::1".parse().unwrap()));
        assert_eq!(IpNet::from_wire(&net.to_wire()), Some(net));
        let any: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(any.contains("198.51.100.1".parse().unwrap()));
        let v6: IpNet = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::1".parse().unwrap()));
        assert_eq!(IpNet::from_wire(&v6.to_wire()), Some(v6));
    }

    #[test]
    fn mapped_networks_are_refused_in_favour_of_ipv4() {
        assert!("::ffff:198.51.100.0/120".parse::<IpNet>().is_err());
        assert!("198.51.100.0/24".parse::<IpNet>().is_ok());
    }

    #[test]
    fn cidr_with_host_bits_is_rejected() {
        assert!("203.0.113.7/24".parse::<IpNet>().is_err());
        assert!("203.0.113.0/33".parse::<IpNet>().is_err());
        assert!(IpNet::from_wire(&[203, 0, 113, 7, 24]).is_none());
    }

    #[test]
    fn file_version_changes_with_each_input_and_prints_as_hex() {
        let base = FileVersion::of(1024, 1_800_000_000, 5, 77);
        assert_eq!(base, FileVersion::of(1024, 1_800_000_000, 5, 77));
        for other in [
            FileVersion::of(1025, 1_800_000_000, 5, 77),
            FileVersion::of(1024, 1_800_000_001, 5, 77),
            FileVersion::of(1024, 1_800_000_000, 6, 77),
            FileVersion::of(1024, 1_800_000_000, 5, 78),
        ] {
            assert_ne!(base, other);
        }
        assert_eq!(base.to_string().len(), 16);
        assert_eq!(FileVersion::from_wire(&base.to_bytes()), Some(base));
        assert_eq!(FileVersion::from_wire(&[0; 7]), None);
    }
}
