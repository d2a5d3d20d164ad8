//! The token spec's test vectors, replayed against the implementation and against the Python
//! reference minter (`examples/mint.py`): `tests/vectors/tokens.json` (v1, frozen) and
//! `tests/vectors/tokens-v2.json` (v2, frozen too; same schema). Each check runs once per file.
//! `tests/vectors/path-grants.json` pins links that carry the token in a path segment (spec
//! §13.3, §15.1): how a request path splits, where the segment may sit, and the links minters
//! make; its checks are at the end.
//!
//! The JSON is the source of truth: when one of these tests fails, the implementation (or the
//! minter) has drifted from the format, not the other way round.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;

use mediagate::keys::{Key, KeyRing, Secret};
use mediagate::path::{self, PathError};
use mediagate::reason::Reason;
use mediagate::token::{
    self, mac, Claims, Disposition, FileVersion, IpNet, Limits, Methods, Purpose, RefreshMarker,
    Request, Scope, ScopeEntry, TokenBuf,
};

#[derive(Deserialize)]
struct Vectors {
    keys: Vec<KeyVector>,
    now: u64,
    limits: LimitsVector,
    mint: Vec<MintVector>,
    mint_rejects: Vec<RejectVector>,
    verify: Vec<VerifyVector>,
    #[serde(default)]
    paths: Vec<PathVector>,
    #[serde(default)]
    requests: Vec<RequestVector>,
}

/// The frozen v1 vectors.
const V1: &str = "tokens.json";
/// The v2 vectors (frozen).
const V2: &str = "tokens-v2.json";

/// A request as the front ends take it (`mediagate sign`, `POST /mint`, `mint.py`'s command
/// line), with the claims it must become or `refuse`.
#[derive(Deserialize)]
struct RequestVector {
    name: String,
    input: serde_json::Value,
    claims: Option<ClaimsVector>,
    token: Option<String>,
    #[serde(default)]
    refuse: bool,
}

#[derive(Deserialize, Clone)]
struct KeyVector {
    id: String,
    secret_hex: String,
    secret_b64url: String,
}

#[derive(Deserialize, Clone)]
struct LimitsVector {
    leeway: u64,
    max_lifetime: u64,
}

#[derive(Deserialize)]
struct MintVector {
    name: String,
    kid: String,
    claims: ClaimsVector,
    body_hex: String,
    mac_input_hex: String,
    tag_hex: String,
    token: String,
}

#[derive(Deserialize)]
struct RejectVector {
    name: String,
    kid: String,
    /// Whose secret signs, when `kid` names no key (bad key ids).
    key: Option<String>,
    claims: ClaimsVector,
}

/// Claims exactly as the JSON spells them; unknown names are an error so a typo in the
/// vectors cannot silently drop a field.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimsVector {
    purpose: String,
    expires: u64,
    not_before: Option<u64>,
    path: Option<String>,
    prefix: Option<String>,
    host: Option<String>,
    methods: Option<Vec<String>>,
    ip: Option<String>,
    token_id: Option<String>,
    subject: Option<String>,
    data_b64url: Option<String>,
    refresh: Option<RefreshVector>,
    /// v2: issued-at, unix seconds.
    issued_at: Option<u64>,
    /// v2: use limit.
    uses: Option<u32>,
    /// v2, upload: largest body in bytes.
    max_size: Option<u64>,
    /// v2, upload: media types in the order the vector gives them (joined with `,`, not
    /// sorted: the reject vectors hold lists a minter must refuse).
    content_types: Option<Vec<String>>,
    /// v2, exact-path downloads: the bound file version, 8 bytes as 16 hex digits.
    file_version_hex: Option<String>,
    /// v2, download: the download file name.
    filename: Option<String>,
    /// v2, download: `inline` or `attachment`.
    disposition: Option<String>,
    /// v2, download: `Cache-Control` max-age seconds.
    max_age: Option<u32>,
    /// v2, refresh state: the kept query.
    kept_query: Option<String>,
    /// v2: the scopes list in the order the vector gives it (not sorted: the reject vectors
    /// hold lists a minter must refuse).
    scopes: Option<Vec<ScopeVector>>,
    /// v2: recipient.
    recipient: Option<String>,
    /// v2: a playback grant's origin (unix seconds), set by the exchange only.
    playback_of: Option<u64>,
}

/// One scopes entry: canonical path, `prefix` true for a prefix entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScopeVector {
    methods: Vec<String>,
    path: String,
    #[serde(default)]
    prefix: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshVector {
    attempt: u8,
    started: u64,
}

#[derive(Deserialize)]
struct VerifyVector {
    name: String,
    token: String,
    /// The purpose the verifier expects; `download` when absent.
    purpose: Option<String>,
    request: VerifyRequest,
    expect: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyRequest {
    path: String,
    method: String,
    host: Option<String>,
    client_ip: Option<String>,
}

#[derive(Deserialize)]
struct PathVector {
    raw: String,
    canonical: Option<String>,
    reject: Option<String>,
}

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn vectors_file(file: &str) -> PathBuf {
    manifest_dir().join("tests/vectors").join(file)
}

fn load(file: &str) -> Vectors {
    let text = std::fs::read_to_string(vectors_file(file))
        .unwrap_or_else(|error| panic!("read tests/vectors/{file}: {error}"));
    serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("tests/vectors/{file} matches the vector schema: {error}"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn purpose(name: &str) -> Result<Purpose, String> {
    match name {
        "download" => Ok(Purpose::Download),
        "upload" => Ok(Purpose::Upload),
        "refresh_state" => Ok(Purpose::RefreshState),
        "api" => Ok(Purpose::Api),
        other => Err(format!("unknown purpose {other:?}")),
    }
}

/// A file version from its 16 hex digits.
fn file_version(text: &str) -> Result<FileVersion, String> {
    let bytes: Vec<u8> = (0..text.len())
        .step_by(2)
        .map(|at| {
            text.get(at..at + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect::<Option<_>>()
        .ok_or_else(|| format!("file_version_hex {text:?} is not hex"))?;
    let bytes: [u8; 8] = bytes
        .try_into()
        .map_err(|_| format!("file_version_hex {text:?} is not 8 bytes"))?;
    Ok(FileVersion::from_bytes(bytes))
}

impl Vectors {
    fn secret(&self, id: &str) -> Secret {
        let key = self
            .keys
            .iter()
            .find(|key| key.id == id)
            .unwrap_or_else(|| panic!("no key {id:?} in the vectors"));
        let bytes = URL_SAFE_NO_PAD
            .decode(&key.secret_b64url)
            .expect("secret_b64url is base64url without padding");
        assert_eq!(
            hex(&bytes),
            key.secret_hex,
            "key {id}: hex and base64 differ"
        );
        Secret::new(bytes)
    }

    fn key(&self, id: &str) -> Key {
        Key::new(id, &self.secret(id)).expect("vector keys are valid")
    }

    fn ring(&self) -> KeyRing {
        let keys = self.keys.iter().map(|key| self.key(&key.id)).collect();
        KeyRing::new(keys, &self.keys[0].id).expect("vector keys form a ring")
    }

    fn limits(&self) -> Limits {
        Limits {
            leeway: self.limits.leeway,
            max_lifetime: self.limits.max_lifetime,
        }
    }
}

impl ClaimsVector {
    /// Builds the library's claims. Fails only where the Rust types cannot represent the
    /// value at all (unknown purpose or method, bad IP network, no single scope).
    fn to_claims(&self) -> Result<Claims, String> {
        let scope = match (&self.path, &self.prefix, &self.scopes) {
            (Some(path), None, None) => Scope::Exact(path.clone()),
            (None, Some(prefix), None) => Scope::Prefix(prefix.clone()),
            (None, None, Some(entries)) => Scope::List(
                entries
                    .iter()
                    .map(|entry| {
                        Ok(ScopeEntry {
                            methods: Methods::from_names(entry.methods.iter().map(String::as_str))?,
                            prefix: entry.prefix,
                            path: entry.path.clone(),
                        })
                    })
                    .collect::<Result<_, String>>()?,
            ),
            _ => return Err("exactly one of path, prefix and scopes".into()),
        };
        let methods = self
            .methods
            .as_ref()
            .map(|names| Methods::from_names(names.iter().map(String::as_str)))
            .transpose()?;
        let ip = self.ip.as_deref().map(str::parse::<IpNet>).transpose()?;
        let data = self
            .data_b64url
            .as_deref()
            .map(|text| URL_SAFE_NO_PAD.decode(text))
            .transpose()
            .map_err(|error| format!("data_b64url: {error}"))?;
        Ok(Claims {
            purpose: purpose(&self.purpose)?,
            expires: self.expires,
            not_before: self.not_before,
            scope,
            host: self.host.clone(),
            methods,
            ip,
            token_id: self.token_id.clone(),
            subject: self.subject.clone(),
            data,
            refresh: self.refresh.as_ref().map(|marker| RefreshMarker {
                attempt: marker.attempt,
                started: marker.started,
            }),
            issued_at: self.issued_at,
            uses: self.uses,
            max_size: self.max_size,
            content_types: self.content_types.as_ref().map(|types| types.join(",")),
            recipient: self.recipient.clone(),
            file_version: self
                .file_version_hex
                .as_deref()
                .map(file_version)
                .transpose()?,
            filename: self.filename.clone(),
            disposition: self
                .disposition
                .as_deref()
                .map(str::parse::<Disposition>)
                .transpose()?,
            max_age: self.max_age,
            kept_query: self.kept_query.clone(),
            playback_of: self.playback_of,
        })
    }
}

/// Fails with every mismatch at once, so one run shows the whole extent of a drift.
fn assert_no_failures(what: &str, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} {what} disagree with the vectors:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// One `#[test]` per vector file for each check below.
macro_rules! for_both_files {
    ($($check:ident => $v1:ident, $v2:ident;)*) => {$(
        #[test]
        fn $v1() {
            $check(V1);
        }

        #[test]
        fn $v2() {
            $check(V2);
        }
    )*};
}

for_both_files! {
    mint_vectors_sign => every_mint_vector_signs_to_the_recorded_bytes_and_token,
        every_v2_mint_vector_signs_to_the_recorded_bytes_and_token;
    mint_vectors_decode => every_mint_vector_decodes_back_to_its_claims,
        every_v2_mint_vector_decodes_back_to_its_claims;
    reject_vectors_refused => every_rejected_mint_vector_is_refused,
        every_rejected_v2_mint_vector_is_refused;
    verify_vectors => every_verify_vector_gives_the_recorded_outcome,
        every_v2_verify_vector_gives_the_recorded_outcome;
    python_mint => python_minter_agrees_with_every_mint_vector,
        python_minter_agrees_with_every_v2_mint_vector;
    python_rejects => python_minter_refuses_every_rejected_mint_vector,
        python_minter_refuses_every_rejected_v2_mint_vector;
    front_end_requests => every_request_vector_is_minted_or_refused_by_the_front_end,
        every_v2_request_vector_is_minted_or_refused_by_the_front_end;
    python_requests => python_front_end_agrees_with_every_request_vector,
        python_front_end_agrees_with_every_v2_request_vector;
}

fn mint_vectors_sign(file: &str) {
    let vectors = load(file);
    assert!(!vectors.mint.is_empty());
    let mut failures = Vec::new();
    for vector in &vectors.mint {
        let name = &vector.name;
        let key = vectors.key(&vector.kid);
        let claims = vector
            .claims
            .to_claims()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let body = match claims.encode_body(&vector.kid) {
            Ok(body) => body,
            Err(error) => {
                failures.push(format!("{name}: refused to mint: {error}"));
                continue;
            }
        };
        if hex(&body) != vector.body_hex {
            failures.push(format!(
                "{name}: body {} != {}",
                hex(&body),
                vector.body_hex
            ));
        }
        let bound_path = vector.claims.path.as_deref();
        let input = hex(&mac::input(&body, bound_path));
        if input != vector.mac_input_hex {
            failures.push(format!(
                "{name}: MAC input {input} != {}",
                vector.mac_input_hex
            ));
        }
        let tag = hex(&mac::tag(&key, &body, bound_path));
        if tag != vector.tag_hex {
            failures.push(format!("{name}: tag {tag} != {}", vector.tag_hex));
        }
        match token::sign(&claims, &key) {
            Ok(token) if token == vector.token => {}
            Ok(token) => failures.push(format!("{name}: token {token} != {}", vector.token)),
            Err(error) => failures.push(format!("{name}: sign failed: {error}")),
        }
        let raw = URL_SAFE_NO_PAD
            .decode(&vector.token)
            .expect("vector tokens decode");
        if hex(&raw) != format!("{}{}", vector.body_hex, vector.tag_hex) {
            failures.push(format!("{name}: token is not base64url(body || tag)"));
        }
    }
    assert_no_failures("mint vectors", &failures);
}

fn mint_vectors_decode(file: &str) {
    let vectors = load(file);
    let mut failures = Vec::new();
    for vector in &vectors.mint {
        let claims = vector.claims.to_claims().expect("mint vector claims");
        let mut buf = TokenBuf::new();
        let decoded = match token::decode(&vector.token, &mut buf) {
            Ok(decoded) => decoded,
            Err(error) => {
                failures.push(format!("{}: {error}", vector.name));
                continue;
            }
        };
        let prefix = match &claims.scope {
            Scope::Prefix(prefix) => Some(prefix.as_str()),
            Scope::Exact(_) | Scope::List(_) => None,
        };
        let scopes: Option<Vec<(u8, bool, String)>> = match &claims.scope {
            Scope::List(entries) => Some(
                entries
                    .iter()
                    .map(|e| (e.methods.bits(), e.prefix, e.path.clone()))
                    .collect(),
            ),
            _ => None,
        };
        let decoded_scopes: Option<Vec<(u8, bool, String)>> = decoded.scopes.map(|scopes| {
            scopes
                .iter()
                .map(|e| (e.methods.bits(), e.prefix, e.path.to_owned()))
                .collect()
        });
        let same = decoded.purpose == claims.purpose
            && decoded.kid == vector.kid
            && decoded.expires == claims.expires
            && decoded.not_before == claims.not_before
            && decoded.prefix == prefix
            && decoded.host == claims.host.as_deref()
            && decoded.methods_field == claims.methods
            && decoded.ip == claims.ip
            && decoded.token_id == claims.token_id.as_deref()
            && decoded.subject == claims.subject.as_deref()
            && decoded.data == claims.data.as_deref()
            && decoded.refresh == claims.refresh
            && decoded.issued_at == claims.issued_at
            && decoded.uses == claims.uses
            && decoded.max_size == claims.max_size
            && decoded.content_types == claims.content_types.as_deref()
            && decoded_scopes == scopes
            && decoded.recipient == claims.recipient.as_deref()
            && decoded.file_version == claims.file_version
            && decoded.filename == claims.filename.as_deref()
            && decoded.disposition == claims.disposition
            && decoded.max_age == claims.max_age
            && decoded.kept_query == claims.kept_query.as_deref()
            && decoded.version == claims.version()
            && format!("{:02x}", decoded.version) == vector.body_hex[..2];
        if !same {
            failures.push(format!("{}: decoded {decoded:?}", vector.name));
        }
    }
    assert_no_failures("decoded mint vectors", &failures);
}

fn reject_vectors_refused(file: &str) {
    let vectors = load(file);
    assert!(!vectors.mint_rejects.is_empty());
    let mut failures = Vec::new();
    for vector in &vectors.mint_rejects {
        let name = &vector.name;
        let secret = vectors.secret(vector.key.as_deref().unwrap_or(&vector.kid));
        // Refusals the Rust API makes before `sign` are accepted only where they belong.
        let Ok(key) = Key::new(&vector.kid, &secret) else {
            if !name.starts_with("kid_") {
                failures.push(format!("{name}: refused as a bad key id"));
            }
            continue;
        };
        let claims = match vector.claims.to_claims() {
            Ok(claims) => claims,
            Err(error) => {
                let unrepresentable = [
                    "unknown_purpose",
                    "path_and_prefix",
                    "neither_path_nor_prefix",
                    "scopes_and_prefix",
                    "scopes_and_path",
                ];
                let by_type = ["methods_", "ip_", "disposition_"];
                if !unrepresentable.contains(&name.as_str())
                    && !by_type.iter().any(|start| name.starts_with(start))
                {
                    failures.push(format!("{name}: refused while building claims: {error}"));
                }
                continue;
            }
        };
        if let Ok(token) = token::sign(&claims, &key) {
            failures.push(format!("{name}: minted {token}"));
        }
    }
    assert_no_failures("rejected mint vectors", &failures);
}

fn verify_vectors(file: &str) {
    let vectors = load(file);
    let ring = vectors.ring();
    let mut failures = Vec::new();
    for vector in &vectors.verify {
        let name = &vector.name;
        let request = &vector.request;
        // Canonical: some raw spelling canonicalises to it. (Canonicalising the canonical form
        // again would misread a literal '%'.)
        let raw = path::encode_path(&request.path);
        assert_eq!(
            path::canonicalize(&raw).as_deref(),
            Ok(request.path.as_str()),
            "{name}: verify vectors carry canonical request paths"
        );
        let client_ip = request
            .client_ip
            .as_deref()
            .map(|ip| ip.parse::<IpAddr>().expect("client_ip is an address"));
        let expected_purpose = purpose(vector.purpose.as_deref().unwrap_or("download")).unwrap();
        let mut buf = TokenBuf::new();
        let outcome = token::verify(
            &vector.token,
            &mut buf,
            expected_purpose,
            &Request {
                path: &request.path,
                method: &request.method,
                host: request.host.as_deref(),
                client_ip,
            },
            &ring,
            vectors.limits(),
            vectors.now,
        );
        let got = match outcome {
            Ok(_) => "valid",
            Err(denied) => denied.reason.as_str(),
        };
        if got != vector.expect {
            failures.push(format!("{name}: got {got}, expected {}", vector.expect));
        }
    }
    assert_no_failures("verify vectors", &failures);
}

#[test]
fn verify_vectors_cover_every_token_reason() {
    let vectors = load(V1);
    let covered: BTreeSet<&str> = vectors.verify.iter().map(|v| v.expect.as_str()).collect();
    let token_reasons = [
        Reason::Malformed,
        Reason::WrongPurpose,
        Reason::UnknownKey,
        Reason::BadSignature,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::Lifetime,
        Reason::WrongHost,
        Reason::OutOfScope,
        Reason::Method,
        Reason::Ip,
    ];
    let wanted: BTreeSet<&str> = token_reasons
        .iter()
        .map(|reason| reason.as_str())
        .chain(["valid"])
        .collect();
    assert_eq!(
        covered, wanted,
        "verify vectors cover exactly the token outcomes"
    );

    let mut names = BTreeSet::new();
    let all = vectors.mint.iter().map(|v| &v.name);
    let all = all.chain(vectors.mint_rejects.iter().map(|v| &v.name));
    let all = all.chain(vectors.requests.iter().map(|v| &v.name));
    for name in all.chain(vectors.verify.iter().map(|v| &v.name)) {
        assert!(names.insert(name), "vector name {name} is used twice");
    }
}

#[test]
fn every_path_vector_canonicalises_as_recorded() {
    let vectors = load(V1);
    let mut failures = Vec::new();
    for vector in &vectors.paths {
        let got = match path::canonicalize(&vector.raw) {
            Ok(canonical) => Ok(canonical.into_owned()),
            Err(error) => Err(match error {
                PathError::NotAbsolute => "not_absolute",
                PathError::TooLong => "too_long",
                PathError::BadPercentEncoding => "bad_percent_encoding",
                PathError::EncodedSeparator => "encoded_separator",
                PathError::Backslash => "backslash",
                PathError::DotSegment => "dot_segment",
                PathError::RepeatedSlash => "repeated_slash",
                PathError::ForbiddenByte => "forbidden_byte",
                PathError::InvalidUtf8 => "invalid_utf8",
            }),
        };
        let expected = match (&vector.canonical, &vector.reject) {
            (Some(canonical), None) => Ok(canonical.clone()),
            (None, Some(reject)) => Err(reject.as_str()),
            _ => panic!("{:?}: give exactly one of canonical and reject", vector.raw),
        };
        if got != expected {
            failures.push(format!(
                "{:?}: got {got:?}, expected {expected:?}",
                vector.raw
            ));
        }
    }
    assert_no_failures("path vectors", &failures);
}

/// Runs the Python reference minter and returns its stdout lines.
fn python_minter(args: &[&str]) -> Vec<String> {
    let script = manifest_dir().join("examples/mint.py");
    let output = Command::new("python3")
        .arg(&script)
        .args(args)
        .output()
        .expect("python3 runs (it is required for the vector tests)");
    assert!(
        output.status.success(),
        "python3 examples/mint.py {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("mint.py prints UTF-8")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn python_mint(file: &str) {
    let vectors = load(file);
    let file = vectors_file(file);
    let lines = python_minter(&["--vectors", file.to_str().unwrap()]);
    assert_eq!(lines.len(), vectors.mint.len(), "one line per mint vector");
    let failures: Vec<String> = vectors
        .mint
        .iter()
        .zip(&lines)
        .filter(|(vector, line)| **line != vector.token)
        .map(|(vector, line)| format!("{}: python minted {line}", vector.name))
        .collect();
    assert_no_failures("python tokens", &failures);
}

fn python_rejects(file: &str) {
    let vectors = load(file);
    let file = vectors_file(file);
    let lines = python_minter(&[
        "--vectors",
        file.to_str().unwrap(),
        "--section",
        "mint_rejects",
    ]);
    assert_eq!(
        lines.len(),
        vectors.mint_rejects.len(),
        "one line per reject vector"
    );
    let failures: Vec<String> = vectors
        .mint_rejects
        .iter()
        .zip(&lines)
        .filter(|(_, line)| !line.starts_with("rejected: "))
        .map(|(vector, line)| format!("{}: python minted {line}", vector.name))
        .collect();
    assert_no_failures("python refusals", &failures);
}

#[test]
fn python_cli_canonicalises_raw_paths_like_mediagate() {
    let vectors = load(V1);
    let now = vectors.now.to_string();
    let secret = vectors.secret("k1").to_base64();
    let mint = |extra: &[&str]| {
        let mut args = vec!["--secret-b64url", &secret, "--kid", "k1", "--now", &now];
        args.extend_from_slice(extra);
        python_minter(&args).join("\n")
    };
    let key = vectors.key("k1");
    let expected = |scope| token::sign(&Claims::download(scope, vectors.now + 600), &key).unwrap();

    let exact = mint(&["--path", "/media/caf%C3%A9%20noir.pdf", "--ttl", "600"]);
    assert_eq!(exact, expected(Scope::Exact("/media/café noir.pdf".into())));
    let percent = mint(&["--path", "/media/100%25.pdf", "--ttl", "600"]);
    assert_eq!(percent, expected(Scope::Exact("/media/100%.pdf".into())));
    let prefix = mint(&["--path", "/media/a/", "--prefix", "--ttl", "600"]);
    assert_eq!(prefix, expected(Scope::Prefix("/media/a/".into())));

    // Refused, never repaired, exactly like `mediagate sign` (spec §8.1).
    let script = manifest_dir().join("examples/mint.py");
    for extra in [
        &["--path", "/media/a", "--prefix"][..],
        &["--path", "/media/a.pdf?x=1"],
        &["--path", "/media/a.pdf", "--host", "Media.Example.com"],
        &["--path", "/media/a.pdf", "--methods", "get"],
        &["--path", "/media/a.pdf", "--ip", "::ffff:0.0.0.0/108"],
        // A refresh state is no media link, in either form.
        &[
            "--path",
            "/media/a.pdf",
            "--purpose",
            "refresh_state",
            "--form",
            "path",
        ],
        &[
            "--path",
            "/media/a.pdf",
            "--purpose",
            "refresh_state",
            "--form",
            "query",
        ],
    ] {
        let output = Command::new("python3")
            .arg(&script)
            .args(["--secret-b64url", &secret, "--kid", "k1", "--now", &now])
            .args(extra)
            .output()
            .expect("python3 runs");
        assert!(
            !output.status.success(),
            "mint.py {extra:?} minted {}",
            String::from_utf8_lossy(&output.stdout)
        );
    }
}

/// The vectors' keys and limits as a mediagate configuration with one site and path tokens
/// on (spec §15.1), so the front end (`MintInput`) and `mint` run exactly as `sign` and
/// `/mint` run them.
fn vector_config(vectors: &Vectors) -> mediagate::config::Config {
    use figment::providers::{Format, Toml};
    let toml = format!(
        "[keys]\ndev_key = false\nsigning = \"k1\"\n[keys.secrets]\nk1 = \"{}\"\n\
         [token]\nsources = [\"query\", \"path\"]\ndefault_ttl = \"1h\"\nmax_lifetime = {}\nleeway = {}\n\
         [accel]\noverrides = [\"filename\", \"disposition\", \"max_age\"]\n\
         [[sites]]\nid = \"vectors\"\nmedia_origin = \"https://media.example.com\"\n",
        vectors.secret("k1").to_base64(),
        vectors.limits.max_lifetime,
        vectors.limits.leeway,
    );
    let raw: mediagate::config::RawConfig =
        figment::Figment::from(Toml::string(mediagate::config::DEFAULT_TOML))
            .merge(Toml::string(&toml))
            .extract()
            .expect("vector configuration parses");
    mediagate::config::validate(&raw).expect("vector configuration is valid")
}

fn front_end_requests(file: &str) {
    use mediagate::mint::{mint, MintInput};
    let vectors = load(file);
    assert!(!vectors.requests.is_empty());
    let config = vector_config(&vectors);
    let key = vectors.key("k1");
    let mut failures = Vec::new();
    for vector in &vectors.requests {
        let name = &vector.name;
        let minted = serde_json::from_value::<MintInput>(vector.input.clone())
            .map_err(|error| error.to_string())
            .and_then(|input| input.resolve(&config).map_err(|error| error.to_string()))
            .and_then(|(request, _)| {
                mint(&config, &request, vectors.now).map_err(|error| error.to_string())
            });
        match (&minted, vector.refuse, &vector.claims, &vector.token) {
            (Err(_), true, None, None) => {}
            (Ok(minted), false, Some(claims), Some(token)) => {
                let claims = claims.to_claims().unwrap_or_else(|e| panic!("{name}: {e}"));
                let expected = token::sign(&claims, &key).expect("request vector claims sign");
                if &expected != token {
                    failures.push(format!("{name}: the recorded token is not its claims'"));
                }
                if &minted.token != token {
                    failures.push(format!("{name}: minted {}", minted.token));
                }
            }
            (Ok(minted), true, _, _) => failures.push(format!("{name}: minted {}", minted.token)),
            (Err(error), false, _, _) => failures.push(format!("{name}: refused: {error}")),
            _ => failures.push(format!("{name}: give claims and token, or refuse")),
        }
    }
    assert_no_failures("request vectors", &failures);
}

fn python_requests(file: &str) {
    let vectors = load(file);
    let file = vectors_file(file);
    let lines = python_minter(&["--vectors", file.to_str().unwrap(), "--section", "requests"]);
    assert_python_agrees(
        "python front-end results",
        &lines,
        vectors
            .requests
            .iter()
            .map(|vector| (vector.name.as_str(), vector.token.as_deref())),
    );
}

/// The Python minter's lines against what the vectors expect, one line per vector: the
/// expected token or link, or a line beginning `rejected: ` where the vector is refused.
fn assert_python_agrees<'a>(
    what: &str,
    lines: &[String],
    expected: impl ExactSizeIterator<Item = (&'a str, Option<&'a str>)>,
) {
    assert_eq!(lines.len(), expected.len(), "{what}: one line per vector");
    let failures: Vec<String> = expected
        .zip(lines)
        .filter(|((_, want), line)| match want {
            Some(want) => line != want,
            None => !line.starts_with("rejected: "),
        })
        .map(|((name, _), line)| format!("{name}: python printed {line}"))
        .collect();
    assert_no_failures(what, &failures);
}

#[test]
fn spec_documents_every_reason_and_the_worked_example() {
    let spec = std::fs::read_to_string(manifest_dir().join("docs/token-format.md"))
        .expect("read docs/token-format.md");
    for reason in Reason::ALL {
        assert!(
            spec.contains(&format!("`{}`", reason.as_str())),
            "docs/token-format.md does not list reason {reason}"
        );
    }
    let vectors = load(V1);
    let example = vectors
        .mint
        .iter()
        .find(|vector| vector.name == "minimal_exact_path")
        .expect("the worked example's vector");
    assert!(
        spec.contains(&example.token),
        "the worked example in docs/token-format.md is not the minimal_exact_path vector"
    );
}

#[test]
fn v2_vectors_cover_the_v2_outcomes_and_are_all_version_2() {
    let vectors = load(V2);
    let covered: BTreeSet<&str> = vectors.verify.iter().map(|v| v.expect.as_str()).collect();
    let wanted: BTreeSet<&str> = [
        "valid",
        "malformed",
        "wrong_purpose",
        "bad_signature",
        "out_of_scope",
        "method",
    ]
    .into_iter()
    .collect();
    assert_eq!(covered, wanted);
    let spec = std::fs::read_to_string(manifest_dir().join("docs/token-format.md")).unwrap();
    let example = vectors.mint.iter().find(|v| v.name == "v2_upload_minimal");
    assert!(
        spec.contains(&example.expect("the v2 example's vector").token),
        "the v2 example in docs/token-format.md §17.4 is not the v2_upload_minimal vector"
    );
    for vector in &vectors.mint {
        assert!(
            vector.body_hex.starts_with("02"),
            "{}: a v2 mint vector",
            vector.name
        );
    }
    let mut names = BTreeSet::new();
    let all = vectors.mint.iter().map(|v| &v.name);
    let all = all.chain(vectors.mint_rejects.iter().map(|v| &v.name));
    let all = all.chain(vectors.requests.iter().map(|v| &v.name));
    for name in all.chain(vectors.verify.iter().map(|v| &v.name)) {
        assert!(names.insert(name), "vector name {name} is used twice");
    }
}

/// A counted token without a token id gets a fresh random one (16 bytes, base64url), which
/// the front end returns; two mints never share it.
#[test]
fn upload_slot_without_token_id_gets_a_generated_one_and_is_single_use() {
    use mediagate::mint::{mint, MintInput, MintPurpose, GENERATED_TOKEN_ID_BYTES};
    let vectors = load(V2);
    let config = vector_config(&vectors);
    let input = MintInput {
        path: "/uploads/a.bin".into(),
        purpose: Some(MintPurpose::Upload),
        ..MintInput::default()
    };
    let (request, _) = input.resolve(&config).unwrap();
    let first = mint(&config, &request, vectors.now).unwrap();
    let second = mint(&config, &request, vectors.now).unwrap();
    let id = first.token_id.clone().expect("a generated token id");
    assert_eq!(id.len(), 22);
    assert_eq!(
        URL_SAFE_NO_PAD.decode(&id).unwrap().len(),
        GENERATED_TOKEN_ID_BYTES
    );
    assert_ne!(first.token_id, second.token_id);
    assert_eq!(first.issued_at, Some(vectors.now));
    let mut buf = TokenBuf::new();
    let token = token::decode(&first.token, &mut buf).unwrap();
    assert_eq!(
        (token.version, token.purpose, token.uses, token.token_id),
        (2, Purpose::Upload, Some(1), Some(id.as_str()))
    );
    assert_eq!(token.issued_at, Some(vectors.now));
    assert_eq!(token.methods(), Methods::WRITE);

    // A plain download stays v1 and gets no token id.
    let plain = MintInput {
        path: "/media/report.pdf".into(),
        ..MintInput::default()
    };
    let (request, _) = plain.resolve(&config).unwrap();
    let minted = mint(&config, &request, vectors.now).unwrap();
    assert_eq!((minted.token_id, minted.issued_at), (None, None));
    assert!(minted.token.starts_with("AQ"), "v1: {}", minted.token);
}

#[test]
fn sizes_take_plain_bytes_and_1024_based_suffixes() {
    use mediagate::mint::parse_size;
    assert_eq!(parse_size("1"), Ok(1));
    assert_eq!(parse_size("1048576"), Ok(1 << 20));
    assert_eq!(parse_size("512K"), Ok(512 << 10));
    assert_eq!(parse_size("10M"), Ok(10 << 20));
    assert_eq!(parse_size("2G"), Ok(2 << 30));
    for bad in [
        "",
        "0",
        "0M",
        "K",
        "10k",
        "10 M",
        "010M",
        "-1",
        "1.5M",
        "10MB",
        "99999999999999G",
    ] {
        assert!(parse_size(bad).is_err(), "{bad:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Path-form links (spec §13.3, vectors in §15.1): `tests/vectors/path-grants.json`.

/// Links that carry their token in a `~mg~` path segment.
const PATH_GRANTS: &str = "path-grants.json";

#[derive(Deserialize)]
struct PathGrantVectors {
    keys: Vec<KeyVector>,
    now: u64,
    limits: LimitsVector,
    split: Vec<SplitVector>,
    place: Vec<PlaceVector>,
    mint: Vec<LinkVector>,
}

/// A raw request path and what it splits into: `file` (with `base` and `token` when it has a
/// token segment), or `reject`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SplitVector {
    name: String,
    #[allow(dead_code)]
    note: Option<String>,
    raw: String,
    file: Option<String>,
    base: Option<String>,
    token: Option<String>,
    reject: Option<String>,
}

/// A token (from its claims) in a request, and the gate's verdict.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlaceVector {
    name: String,
    #[allow(dead_code)]
    note: Option<String>,
    claims: ClaimsVector,
    token: String,
    request: PlaceRequest,
    expect: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlaceRequest {
    /// Raw `$request_uri`: path and query.
    uri: String,
    method: String,
    /// The location's purpose; `download` when absent.
    purpose: Option<String>,
}

/// A front-end request with its `form`, and the link it becomes (or `refuse`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkVector {
    name: String,
    #[allow(dead_code)]
    note: Option<String>,
    input: serde_json::Value,
    claims: Option<ClaimsVector>,
    token: Option<String>,
    path_and_query: Option<String>,
    #[serde(default)]
    refuse: bool,
}

fn load_path_grants() -> PathGrantVectors {
    let text = std::fs::read_to_string(vectors_file(PATH_GRANTS))
        .unwrap_or_else(|error| panic!("read tests/vectors/{PATH_GRANTS}: {error}"));
    serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("tests/vectors/{PATH_GRANTS} matches its schema: {error}"))
}

impl PathGrantVectors {
    /// The keys, time and limits in the shape the other checks take.
    fn common(&self) -> Vectors {
        Vectors {
            keys: self.keys.clone(),
            now: self.now,
            limits: self.limits.clone(),
            mint: Vec::new(),
            mint_rejects: Vec::new(),
            verify: Vec::new(),
            paths: Vec::new(),
            requests: Vec::new(),
        }
    }
}

/// What the gate says about `uri`: `valid` (with the file it serves) or the reason.
fn gate_verdict(
    config: &mediagate::config::Config,
    uri: &str,
    method: &str,
    purpose: Purpose,
    now: u64,
) -> (String, Option<String>) {
    use mediagate::gate::{self, Authorization, CookieHeader, MediaRequest, Outcome};
    use mediagate::store::revoked::Revoked;
    let request = MediaRequest {
        uri,
        method,
        server_name: &config.sites[0].media_host,
        client_ip: None,
        authorization: Authorization::Absent,
        cookie: CookieHeader::Absent,
        purpose,
    };
    let mut buf = TokenBuf::new();
    match gate::decide(config, &request, &mut buf, now, &Revoked::default()) {
        Outcome::Allow { path, .. } => ("valid".to_owned(), Some(path.into_owned())),
        outcome => match outcome.reason() {
            Some(reason) => (reason.as_str().to_owned(), None),
            None => (format!("{outcome:?}"), None),
        },
    }
}

/// A canonical path split as the vectors spell it: `(file, base, token)`, or the rejection.
type Split = Result<(String, Option<String>, Option<String>), &'static str>;

fn split_raw(raw: &str) -> Split {
    let canonical = path::canonicalize(raw).map_err(|_| "bad_path")?;
    match path::split_grant(&canonical) {
        Ok(None) => Ok((canonical.into_owned(), None, None)),
        Ok(Some(grant)) => Ok((
            grant.file.clone(),
            Some(grant.base().to_owned()),
            Some(canonical[grant.token.clone()].to_owned()),
        )),
        Err(path::BadGrantSegment) => Err("bad_path"),
    }
}

#[test]
fn every_split_vector_splits_as_recorded_and_the_gate_agrees() {
    let vectors = load_path_grants();
    assert!(!vectors.split.is_empty());
    let config = vector_config(&vectors.common());
    let mut failures = Vec::new();
    for vector in &vectors.split {
        let name = &vector.name;
        let expected: Split = match (&vector.file, &vector.reject) {
            (Some(file), None) if vector.base.is_some() == vector.token.is_some() => {
                Ok((file.clone(), vector.base.clone(), vector.token.clone()))
            }
            (None, Some(reject)) if vector.base.is_none() && vector.token.is_none() => {
                assert_eq!(reject, "bad_path", "{name}: the only rejection is bad_path");
                Err("bad_path")
            }
            _ => panic!("{name}: give file (with base and token, or neither) or reject"),
        };
        let got = split_raw(&vector.raw);
        if got != expected {
            failures.push(format!("{name}: got {got:?}, expected {expected:?}"));
            continue;
        }
        // The path a minter builds from the parts splits back into them.
        if let Ok((file, Some(base), Some(token))) = &got {
            let url = path::grant_path(file, Some(base), token);
            if split_raw(&url) != got {
                failures.push(format!(
                    "{name}: grant_path gives {url}, which splits otherwise"
                ));
            }
        }
        // The gate refuses exactly the rejected paths as `bad_path` (the others go on to the
        // token: a placeholder is `malformed`, no token `missing_token`).
        let (verdict, _) =
            gate_verdict(&config, &vector.raw, "GET", Purpose::Download, vectors.now);
        if (verdict == "bad_path") != got.is_err() {
            failures.push(format!("{name}: the gate says {verdict}"));
        }
    }
    assert_no_failures("split vectors", &failures);
}

/// The one-place rule of spec §13.3, from the path functions alone: what a gate in another
/// language would write. Only for a download request without a query.
fn place_from_the_spec(vectors: &Vectors, vector: &PlaceVector) -> String {
    let (file, base, token) = match split_raw(&vector.request.uri) {
        Ok((file, Some(base), Some(token))) => (file, base, token),
        Ok(_) => return "missing_token".into(),
        Err(reject) => return reject.into(),
    };
    let mut buf = TokenBuf::new();
    let verified = token::verify(
        &token,
        &mut buf,
        Purpose::Download,
        &Request {
            path: &file,
            method: &vector.request.method,
            host: None,
            client_ip: None,
        },
        &vectors.ring(),
        vectors.limits(),
        vectors.now,
    );
    match verified {
        Err(denied) => denied.reason.as_str().into(),
        Ok(token) => {
            let in_place = match (token.prefix, &token.scopes) {
                (Some(prefix), None) => prefix == base,
                (None, None) => path::folder(&file) == base,
                _ => false,
            };
            if in_place { "valid" } else { "out_of_scope" }.into()
        }
    }
}

#[test]
fn every_place_vector_gets_the_recorded_verdict_from_the_gate() {
    let vectors = load_path_grants();
    assert!(!vectors.place.is_empty());
    let common = vectors.common();
    let config = vector_config(&common);
    let key = common.key("k1");
    let mut failures = Vec::new();
    for vector in &vectors.place {
        let name = &vector.name;
        let claims = vector
            .claims
            .to_claims()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        match token::sign(&claims, &key) {
            Ok(token) if token == vector.token => {}
            other => failures.push(format!("{name}: the claims sign to {other:?}")),
        }
        let request = &vector.request;
        assert!(
            request.uri.contains(&vector.token),
            "{name}: the request carries the token"
        );
        let purpose = purpose(request.purpose.as_deref().unwrap_or("download")).unwrap();
        let (verdict, served) =
            gate_verdict(&config, &request.uri, &request.method, purpose, vectors.now);
        if verdict != vector.expect {
            failures.push(format!(
                "{name}: the gate says {verdict}, expected {}",
                vector.expect
            ));
        }
        // An allowed request serves the file: the path without the segment.
        if let Some(served) = served {
            let (path, _) = path::split_uri(&request.uri);
            let file = split_raw(path).map(|(file, _, _)| file);
            if file.as_ref().ok() != Some(&served) {
                failures.push(format!("{name}: served {served}, split gives {file:?}"));
            }
        }
        if purpose == Purpose::Download && !request.uri.contains('?') {
            let pure = place_from_the_spec(&common, vector);
            if pure != vector.expect {
                failures.push(format!("{name}: the spec's rule gives {pure}"));
            }
        }
    }
    assert_no_failures("place vectors", &failures);
}

#[test]
fn every_link_vector_is_minted_or_refused_and_opens_at_the_gate() {
    use mediagate::mint::{mint, MintInput};
    let vectors = load_path_grants();
    assert!(!vectors.mint.is_empty());
    let common = vectors.common();
    let config = vector_config(&common);
    let key = common.key("k1");
    let mut failures = Vec::new();
    for vector in &vectors.mint {
        let name = &vector.name;
        let minted = serde_json::from_value::<MintInput>(vector.input.clone())
            .map_err(|error| error.to_string())
            .and_then(|input| input.resolve(&config).map_err(|error| error.to_string()))
            .and_then(|(request, _)| {
                mint(&config, &request, vectors.now).map_err(|error| error.to_string())
            });
        let expected = (&vector.claims, &vector.token, &vector.path_and_query);
        match (&minted, vector.refuse, expected) {
            (Err(_), true, (None, None, None)) => {}
            (Ok(minted), false, (Some(claims), Some(token), Some(link))) => {
                let claims = claims.to_claims().unwrap_or_else(|e| panic!("{name}: {e}"));
                if token::sign(&claims, &key).as_ref() != Ok(token) {
                    failures.push(format!("{name}: the recorded token is not its claims'"));
                }
                if &minted.token != token {
                    failures.push(format!("{name}: minted {}", minted.token));
                }
                if &minted.path_and_query != link {
                    failures.push(format!("{name}: linked {}", minted.path_and_query));
                }
                // Every link a minter makes opens its file.
                let (verdict, served) =
                    gate_verdict(&config, link, "GET", Purpose::Download, vectors.now);
                if (verdict.as_str(), served.as_deref()) != ("valid", Some(minted.path.as_str())) {
                    failures.push(format!("{name}: the gate says {verdict} for {link}"));
                }
            }
            (Ok(minted), true, _) => {
                failures.push(format!("{name}: linked {}", minted.path_and_query));
            }
            (Err(error), false, _) => failures.push(format!("{name}: refused: {error}")),
            _ => failures.push(format!(
                "{name}: give claims, token and path_and_query, or refuse"
            )),
        }
    }
    assert_no_failures("link vectors", &failures);
}

#[test]
fn python_minter_agrees_with_every_link_vector() {
    let vectors = load_path_grants();
    let file = vectors_file(PATH_GRANTS);
    let lines = python_minter(&["--vectors", file.to_str().unwrap()]);
    assert_python_agrees(
        "python links",
        &lines,
        vectors
            .mint
            .iter()
            .map(|vector| (vector.name.as_str(), vector.path_and_query.as_deref())),
    );
}

#[test]
fn python_cli_prints_links_in_either_form() {
    let vectors = load_path_grants();
    let now = vectors.now.to_string();
    let secret = vectors.common().secret("k1").to_base64();
    let mint = |extra: &[&str]| {
        let mut args = vec!["--secret-b64url", &secret, "--kid", "k1", "--now", &now];
        args.extend_from_slice(&["--ttl", "600"]);
        args.extend_from_slice(extra);
        python_minter(&args).join("\n")
    };
    let link = |name: &str| {
        let vector = vectors.mint.iter().find(|v| v.name == name);
        vector
            .and_then(|v| v.path_and_query.clone())
            .unwrap_or_else(|| panic!("the link vector {name}"))
    };
    let exact = mint(&["--path", "/media/caf%C3%A9/a%20b.mp4", "--form", "path"]);
    assert_eq!(exact, link("path_exact_encoded_names"));
    let prefix = mint(&["--path", "/media/clip/", "--prefix", "--form", "path"]);
    assert_eq!(prefix, link("path_prefix"));
    let query = mint(&["--path", "/media/a%20b.pdf", "--form", "query"]);
    assert_eq!(query, link("query_form"));
}

#[test]
fn path_grant_vectors_cover_the_rules_and_are_named_once() {
    let vectors = load_path_grants();
    let covered: BTreeSet<&str> = vectors.place.iter().map(|v| v.expect.as_str()).collect();
    let wanted: BTreeSet<&str> = [
        "valid",
        "out_of_scope",
        "bad_path",
        "bad_signature",
        "method",
        "expired",
        "malformed",
    ]
    .into_iter()
    .collect();
    assert_eq!(covered, wanted);
    // Split vectors of all three kinds: rejected, a token segment, no token segment.
    let kinds: BTreeSet<(bool, bool)> = vectors
        .split
        .iter()
        .map(|v| (v.reject.is_some(), v.token.is_some()))
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from([(false, false), (false, true), (true, false)])
    );
    assert!(vectors.mint.iter().any(|v| v.refuse));
    let mut names = BTreeSet::new();
    let all = vectors.split.iter().map(|v| &v.name);
    let all = all.chain(vectors.place.iter().map(|v| &v.name));
    for name in all.chain(vectors.mint.iter().map(|v| &v.name)) {
        assert!(names.insert(name), "vector name {name} is used twice");
    }
    let spec = std::fs::read_to_string(manifest_dir().join("docs/token-format.md")).unwrap();
    assert!(
        spec.contains("### 15.1 Path-form vectors") && spec.contains(PATH_GRANTS),
        "docs/token-format.md documents {PATH_GRANTS}"
    );
}
