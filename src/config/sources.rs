//! Where each setting comes from, and the checks that only the sources can make.
//!
//! The layers (embedded defaults < TOML file < `MEDIAGATE_<SECTION>__<KEY>` variables) are
//! merged by figment, one provider per variable, so that every value remembers the file or
//! the variable that set it. Before stage one ([`RawConfig`]) is deserialised, each layer is
//! walked against the known keys, collecting every unknown key and every `MEDIAGATE_`
//! variable that is no setting; deserialisation then collects every value of the wrong type.
//! Each problem names its origin: `/etc/mediagate.toml: server.listn: unknown key`. A secret
//! source (`{ file = … }`, `{ env = … }`) is taken whole from the last layer that sets it.
//!
//! The known keys are the serialised defaults (every field of [`RawConfig`], including the
//! optional ones), so a setting added to `RawConfig` and `default.toml` is known at once.
//! What a value means is not checked here: that is [`super::validate`]'s job. Values under
//! secret paths are never printed.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use figment::error::Kind;
use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Tag, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};
use serde::Deserialize;

use super::{RawConfig, DEFAULT_TOML};

/// Prefix of the environment variables that are settings.
pub const ENV_PREFIX: &str = "MEDIAGATE_";

/// The `MEDIAGATE_` variables the binary reads that are not settings (`--config`'s variable).
/// Any other `MEDIAGATE_` variable must name a setting, so a misspelt one is an error rather
/// than silently ignored.
pub const NOT_SETTINGS: &[&str] = &["MEDIAGATE_CONFIG"];

/// Separator between section and key in a variable name (`MEDIAGATE_SERVER__LISTEN`).
const ENV_SEPARATOR: &str = "__";

/// Paths that hold a secret source (`*`: every entry of that map). Their values are never
/// printed, and a table there may only have `file` or `env`.
const SECRET_PATHS: &[&[&str]] = &[&["internal", "secret"], &["keys", "secrets", "*"]];

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The embedded `default.toml`.
    Default,
    /// The TOML file at this path.
    File(PathBuf),
    /// This environment variable.
    Env(String),
}

impl Origin {
    /// One problem line: `origin: key: message` (the default names no origin).
    fn line(&self, key: &str, message: &str) -> String {
        match self {
            Origin::Default => format!("{key}: {message}"),
            Origin::File(path) => format!("{}: {key}: {message}", path.display()),
            Origin::Env(name) => format!("{name}: {key}: {message}"),
        }
    }
}

/// One `MEDIAGATE_<SECTION>__<KEY>` variable, as a figment provider of its own so that every
/// value it sets carries its name.
#[derive(Clone)]
struct EnvSetting {
    name: String,
    key: String,
    value: String,
}

impl EnvSetting {
    /// The variable as a tree (`server.listen = …`), its value parsed as figment's own Env
    /// provider does: `{ file = "…" }` becomes a table.
    fn tree(&self) -> Value {
        let value: Value = match self.value.parse() {
            Ok(value) => value,
            Err(never) => match never {},
        };
        figment::util::nest(&self.key, value)
    }
}

impl Provider for EnvSetting {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name.clone())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        match self.tree() {
            Value::Dict(_, dict) => Ok(Profile::Default.collect(dict)),
            _ => Err(format!("{}: maps to no setting", self.name).into()),
        }
    }
}

/// The merged layers, with what it takes to name the origin of every value.
pub struct Sources {
    figment: Figment,
    /// The TOML file layered over the defaults.
    file: Option<PathBuf>,
    /// The variables merged as settings, in merge order (later wins).
    settings: Vec<EnvSetting>,
    /// `MEDIAGATE_` variables that are neither settings nor in [`NOT_SETTINGS`].
    strays: Vec<String>,
    /// Problems found while reading the environment (names or values not UTF-8).
    env_problems: Vec<String>,
}

/// Stage one's outcome: the raw configuration when it could be built, and every problem.
pub struct Checked {
    /// `None` when a problem left no value to deserialise (a TOML syntax error, say).
    pub raw: Option<RawConfig>,
    /// One line per problem, each naming its origin.
    pub problems: Vec<String>,
}

impl Sources {
    /// Layers the defaults, `file` and the `MEDIAGATE_` variables among `vars`.
    pub fn new(file: Option<&Path>, vars: impl IntoIterator<Item = (OsString, OsString)>) -> Self {
        let mut settings = Vec::new();
        let mut strays = Vec::new();
        let mut env_problems = Vec::new();
        for (name, value) in vars {
            let prefixed = name
                .as_encoded_bytes()
                .get(..ENV_PREFIX.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(ENV_PREFIX.as_bytes()));
            if !prefixed {
                continue;
            }
            let Some(name) = name.to_str().map(str::to_owned) else {
                let name = name.to_string_lossy();
                env_problems.push(format!("{name}: the name is not valid UTF-8"));
                continue;
            };
            if NOT_SETTINGS.contains(&name.as_str()) {
                continue;
            }
            let parts: Vec<&str> = name[ENV_PREFIX.len()..].split(ENV_SEPARATOR).collect();
            if parts.len() < 2 || parts.iter().any(|part| part.is_empty()) {
                strays.push(name);
                continue;
            }
            let Some(value) = value.to_str().map(str::to_owned) else {
                env_problems.push(format!("{name}: the value is not valid UTF-8"));
                continue;
            };
            // Lower case, as figment's Env provider (and so earlier releases) did.
            let key = parts.join(".").to_ascii_lowercase();
            settings.push(EnvSetting { name, key, value });
        }
        // Sorted, so that two variables setting one key resolve the same way every time.
        settings.sort_by(|a, b| a.name.cmp(&b.name));
        strays.sort();

        let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        for setting in &settings {
            figment = figment.merge(setting.clone());
        }
        Sources {
            figment,
            file: file.map(Path::to_owned),
            settings,
            strays,
            env_problems,
        }
    }

    /// The merged layers as the checks see them, which is what `check-config` prints:
    /// unknown keys dropped, each secret source taken whole from the last layer setting it.
    pub fn effective(&self) -> Figment {
        let Ok(mut tree) = self.figment.find_value("") else {
            // Extracting from it reports the same error.
            return self.figment.clone();
        };
        prune_unknown(&mut tree, &known_tree(), &mut Vec::new(), &mut Vec::new());
        self.check_secret_sources(&mut tree);
        Figment::from(Serialized::defaults(tree))
    }

    /// Where the value tagged `tag` came from.
    fn origin(&self, tag: Tag) -> Origin {
        let Some(metadata) = self.figment.get_metadata(tag) else {
            return Origin::Default;
        };
        match &metadata.source {
            Some(Source::File(path)) => Origin::File(path.clone()),
            _ if self
                .settings
                .iter()
                .any(|setting| setting.name == metadata.name) =>
            {
                Origin::Env(metadata.name.to_string())
            }
            _ => Origin::Default,
        }
    }

    /// The precedence of the layer that set the value tagged `tag` (higher wins).
    fn rank(&self, tag: Tag) -> usize {
        match self.origin(tag) {
            Origin::Default => 0,
            Origin::File(_) => 1,
            Origin::Env(name) => {
                2 + self
                    .settings
                    .iter()
                    .position(|setting| setting.name == name)
                    .unwrap_or(0)
            }
        }
    }

    /// Stage one: every unknown key, stray variable and badly typed value, and the raw
    /// configuration when one could be built.
    pub fn check(&self) -> Checked {
        let mut problems = self.env_problems.clone();
        let mut tree = match self.figment.find_value("") {
            Ok(tree) => tree,
            Err(error) => {
                // The TOML itself is unreadable: nothing below can be checked.
                problems.extend(error.into_iter().map(|error| describe_load_error(&error)));
                return Checked {
                    raw: None,
                    problems,
                };
            }
        };
        let known = known_tree();

        // Unknown keys layer by layer, so that a key the environment overrides is still
        // reported in the file that has it.
        let mut layers = Vec::new();
        if let Some(file) = &self.file {
            if let Ok(layer) = Figment::from(Toml::file_exact(file)).find_value("") {
                layers.push((Origin::File(file.clone()), layer, None));
            }
        }
        for setting in &self.settings {
            let origin = Origin::Env(setting.name.clone());
            layers.push((origin, setting.tree(), Some(setting.key.as_str())));
        }
        for (origin, mut layer, env_key) in layers {
            let mut unknown = Vec::new();
            prune_unknown(&mut layer, &known, &mut Vec::new(), &mut unknown);
            for (path, _) in unknown {
                let key = display_path(&layer, &path);
                problems.push(match (&origin, env_key) {
                    (Origin::Env(name), Some(full)) => {
                        // Name all of what the variable spells (server.internal.listen),
                        // not just the first part that is unknown (server.internal).
                        let key = if full.starts_with(&key) { full } else { &key };
                        match suggest(name, &known) {
                            Some(better) => {
                                format!("{name}: unknown setting {key} (did you mean {better}?)")
                            }
                            None => format!("{name}: unknown setting {key}"),
                        }
                    }
                    _ => origin.line(&key, "unknown key"),
                });
            }
        }
        prune_unknown(&mut tree, &known, &mut Vec::new(), &mut Vec::new());
        problems.extend(self.check_secret_sources(&mut tree));

        let referenced = env_secret_names(&tree);
        for name in &self.strays {
            // A `{ env = "MEDIAGATE_…" }` secret source names a variable that is no setting.
            if referenced.contains(name) {
                continue;
            }
            problems.push(match suggest(name, &known) {
                Some(better) => format!(
                    "{name}: maps to no setting; did you mean {better}? (section and key are \
                     separated by two underscores)"
                ),
                None => format!(
                    "{name}: maps to no setting; settings are {ENV_PREFIX}<SECTION>__<KEY>, \
                     e.g. {ENV_PREFIX}SERVER__LISTEN"
                ),
            });
        }

        let raw = self.deserialise(&mut tree, &known, &mut problems);
        Checked { raw, problems }
    }

    /// A secret source is base64 text or a table with exactly one of `file` and `env`.
    /// Other keys in the table are unknown; serde's untagged enum would ignore them.
    ///
    /// A source is replaced as a whole by a later layer: figment merges tables key by key,
    /// which would turn `{ file = … }` in the file plus `{ env = … }` from a variable into a
    /// table with both.
    fn check_secret_sources(&self, tree: &mut Value) -> Vec<String> {
        let mut problems = Vec::new();
        for path in secret_paths(tree) {
            let Some(Value::Dict(tag, table)) = lookup_mut(tree, &path) else {
                continue;
            };
            let top = table
                .values()
                .map(|value| self.rank(value.tag()))
                .max()
                .unwrap_or(0);
            table.retain(|_, value| self.rank(value.tag()) == top);
            let tag = table.values().next().map_or(*tag, Value::tag);
            let extra: Vec<(String, Tag)> = table
                .iter()
                .filter(|(key, _)| !matches!(key.as_str(), "file" | "env"))
                .map(|(key, value)| (key.clone(), value.tag()))
                .collect();
            let both = table.contains_key("file") && table.contains_key("env");
            for (key, _) in &extra {
                table.remove(key);
            }
            for (key, value_tag) in extra {
                let mut full = path.clone();
                full.push(key);
                let shown = display_path(tree, &full);
                problems.push(self.origin(value_tag).line(&shown, "unknown key"));
            }
            if both {
                problems.push(self.origin(tag).line(
                    &display_path(tree, &path),
                    "give either file or env, not both",
                ));
            }
        }
        problems
    }

    /// Deserialises [`RawConfig`], collecting every badly typed value: each is reported and
    /// replaced by its default, and deserialisation runs again. Stops (with `None`) when a
    /// value has no default to fall back on, such as a field of a `[[sites]]` entry.
    fn deserialise(
        &self,
        tree: &mut Value,
        known: &Value,
        problems: &mut Vec<String>,
    ) -> Option<RawConfig> {
        // Each round replaces one more value with its default, so this bound is never reached
        // by a configuration that can be repaired at all.
        for _ in 0..=count_nodes(known) {
            let error = match RawConfig::deserialize(&*tree) {
                Ok(raw) => return Some(raw),
                Err(error) => error,
            };
            let mut path = error.path.clone();
            let secret = is_secret_path(&path);
            let message = match &error.kind {
                // Never the value itself: it may be a secret in the wrong place.
                Kind::InvalidType(_, expected) | Kind::InvalidValue(_, expected)
                    if holds_secret(&path) && !secret =>
                {
                    format!("invalid type: expected {expected}")
                }
                Kind::MissingField(field) => {
                    path.push(field.to_string());
                    "missing".to_owned()
                }
                Kind::UnknownField(field, _) => {
                    path.push(field.clone());
                    "unknown key".to_owned()
                }
                _ if secret => {
                    "must be base64 text, { file = \"…\" } or { env = \"VAR\" }".to_owned()
                }
                kind => kind.to_string(),
            };
            let tag = deepest(tree, &path);
            problems.push(self.origin(tag).line(&display_path(tree, &path), &message));
            if matches!(error.kind, Kind::UnknownField(..)) {
                remove(tree, &path)?;
                continue;
            }
            let default = lookup(known, &path).filter(|_| !through_array(known, &path))?;
            if lookup(tree, &path) == Some(default) {
                return None;
            }
            set(tree, &path, default.clone())?;
        }
        None
    }

    /// Prefixes each problem line from [`super::validate`] (`key: message`) with the origin
    /// of the value at `key`, so that a bad value set in a file or a variable names it.
    pub fn locate(&self, lines: Vec<String>) -> Vec<String> {
        let Ok(tree) = self.figment.find_value("") else {
            return lines;
        };
        lines
            .into_iter()
            .map(|line| {
                let Some((key, message)) = line.split_once(": ") else {
                    return line;
                };
                let path: Vec<String> = key
                    .split(['.', '['])
                    .map(|part| part.trim_end_matches(']').to_owned())
                    .collect();
                match self.origin(deepest(&tree, &path)) {
                    Origin::Default => line,
                    origin => origin.line(key, message),
                }
            })
            .collect()
    }
}

/// The known keys with their defaults: the embedded defaults as [`RawConfig`] serialises them.
/// Serialising (rather than reading `default.toml`) also lists the optional fields, as empty
/// values; an empty table is a map whose keys the user names (`keys.secrets`).
fn known_tree() -> Value {
    Figment::from(Toml::string(DEFAULT_TOML))
        .extract::<RawConfig>()
        .map_err(|error| error.to_string())
        .and_then(|raw| Value::serialize(&raw).map_err(|error| error.to_string()))
        .unwrap_or_else(|error| unreachable!("the embedded defaults are valid: {error}"))
}

/// Removes every key of `value` that `known` does not have, recording its path and tag.
fn prune_unknown(
    value: &mut Value,
    known: &Value,
    path: &mut Vec<String>,
    unknown: &mut Vec<(Vec<String>, Tag)>,
) {
    match (value, known) {
        // An empty table in the defaults is a map of user-chosen names.
        (Value::Dict(_, table), Value::Dict(_, keys)) if !keys.is_empty() => {
            table.retain(|key, child| match keys.get(key) {
                Some(known) => {
                    path.push(key.clone());
                    prune_unknown(child, known, path, unknown);
                    path.pop();
                    true
                }
                None => {
                    let mut full = path.clone();
                    full.push(key.clone());
                    unknown.push((full, child.tag()));
                    false
                }
            });
        }
        // An array of tables (`[[sites]]`): every entry against the default entry.
        (Value::Array(_, items), Value::Array(_, entries)) => {
            if let Some(entry @ Value::Dict(..)) = entries.first() {
                for (index, item) in items.iter_mut().enumerate() {
                    path.push(index.to_string());
                    prune_unknown(item, entry, path, unknown);
                    path.pop();
                }
            }
        }
        // A type mismatch is deserialisation's to report.
        _ => {}
    }
}

/// The paths of every secret source present in `tree`.
fn secret_paths(tree: &Value) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    for pattern in SECRET_PATHS {
        let mut found = vec![Vec::new()];
        for part in *pattern {
            found = found
                .into_iter()
                .flat_map(|path: Vec<String>| {
                    let keys: Vec<String> = match lookup(tree, &path) {
                        Some(Value::Dict(_, table)) if *part == "*" => {
                            table.keys().cloned().collect()
                        }
                        Some(Value::Dict(_, table)) if table.contains_key(*part) => {
                            vec![(*part).to_owned()]
                        }
                        _ => Vec::new(),
                    };
                    keys.into_iter().map(move |key| {
                        let mut next = path.clone();
                        next.push(key);
                        next
                    })
                })
                .collect();
        }
        paths.extend(found);
    }
    paths
}

/// Whether `path` is a secret source or lies inside one.
fn is_secret_path(path: &[String]) -> bool {
    SECRET_PATHS
        .iter()
        .any(|pattern| path.len() >= pattern.len() && agrees(pattern, path))
}

/// Whether the value at `path` is, holds or lies inside a secret source (`keys` holds one).
fn holds_secret(path: &[String]) -> bool {
    SECRET_PATHS.iter().any(|pattern| agrees(pattern, path))
}

/// Whether `pattern` (`*` for any key) and `path` agree on every position both have.
fn agrees(pattern: &[&str], path: &[String]) -> bool {
    pattern
        .iter()
        .zip(path)
        .all(|(want, have)| *want == "*" || want == have)
}

/// Variables named by `{ env = "…" }` secret sources.
fn env_secret_names(tree: &Value) -> BTreeSet<String> {
    secret_paths(tree)
        .iter()
        .filter_map(|path| match lookup(tree, path) {
            Some(Value::Dict(_, table)) => match table.get("env") {
                Some(Value::String(_, name)) => Some(name.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// The spelling of a known setting that variable `name` most likely meant: same words,
/// with `__` between section and key (`MEDIAGATE_SERVER_LISTEN` -> `…SERVER__LISTEN`).
fn suggest(name: &str, known: &Value) -> Option<String> {
    let words = |text: &str| -> Vec<String> {
        text.split(['_', '.'])
            .filter(|word| !word.is_empty())
            .map(str::to_ascii_lowercase)
            .collect()
    };
    let wanted = words(name.get(ENV_PREFIX.len()..)?);
    let spell = |path: &[String]| {
        let parts: Vec<String> = path.iter().map(|part| part.to_ascii_uppercase()).collect();
        format!("{ENV_PREFIX}{}", parts.join(ENV_SEPARATOR))
    };
    let mut found = None;
    visit_keys(known, &mut Vec::new(), &mut |path, value| {
        let have = words(&path.join("."));
        let is_map = matches!(value, Value::Dict(_, table) if table.is_empty());
        if have == wanted && !matches!(value, Value::Dict(_, table) if !table.is_empty()) {
            found = Some(spell(path));
        } else if is_map && wanted.len() > have.len() && wanted.starts_with(&have) {
            let mut full = path.to_vec();
            full.push(wanted[have.len()..].join("_"));
            found = Some(spell(&full));
        }
    });
    found.filter(|better| better != name)
}

/// Calls `visit` with the path of every table key in `value` (not inside arrays).
fn visit_keys(value: &Value, path: &mut Vec<String>, visit: &mut dyn FnMut(&[String], &Value)) {
    if let Value::Dict(_, table) = value {
        for (key, child) in table {
            path.push(key.clone());
            visit(path, child);
            visit_keys(child, path, visit);
            path.pop();
        }
    }
}

fn count_nodes(value: &Value) -> usize {
    1 + match value {
        Value::Dict(_, table) => table.values().map(count_nodes).sum(),
        Value::Array(_, items) => items.iter().map(count_nodes).sum(),
        _ => 0,
    }
}

fn lookup<'v>(value: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(value, |value, part| match value {
        Value::Dict(_, table) => table.get(part),
        Value::Array(_, items) => items.get(part.parse::<usize>().ok()?),
        _ => None,
    })
}

fn lookup_mut<'v>(value: &'v mut Value, path: &[String]) -> Option<&'v mut Value> {
    path.iter().try_fold(value, |value, part| match value {
        Value::Dict(_, table) => table.get_mut(part),
        Value::Array(_, items) => items.get_mut(part.parse::<usize>().ok()?),
        _ => None,
    })
}

/// The tag of the deepest value that exists along `path`: a missing key is named by the
/// table that lacks it.
fn deepest(value: &Value, path: &[String]) -> Tag {
    let mut current = value;
    for part in path {
        match lookup(current, std::slice::from_ref(part)) {
            Some(next) => current = next,
            None => break,
        }
    }
    current.tag()
}

/// Whether `path` passes through an array in `value` (no default exists per entry).
fn through_array(value: &Value, path: &[String]) -> bool {
    (0..path.len()).any(|end| matches!(lookup(value, &path[..end]), Some(Value::Array(..))))
}

fn set(tree: &mut Value, path: &[String], new: Value) -> Option<()> {
    let (last, parent) = path.split_last()?;
    match lookup_mut(tree, parent)? {
        Value::Dict(_, table) => {
            table.insert(last.clone(), new);
            Some(())
        }
        _ => None,
    }
}

fn remove(tree: &mut Value, path: &[String]) -> Option<()> {
    let (last, parent) = path.split_last()?;
    match lookup_mut(tree, parent)? {
        Value::Dict(_, table) => table.remove(last).map(drop),
        _ => None,
    }
}

/// `server.listen`, `sites[0].id`: array indices in brackets.
fn display_path(tree: &Value, path: &[String]) -> String {
    let mut out = String::new();
    for (depth, part) in path.iter().enumerate() {
        if matches!(lookup(tree, &path[..depth]), Some(Value::Array(..))) {
            out.push_str(&format!("[{part}]"));
        } else {
            if depth > 0 {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

/// A file that cannot be read or parsed. The TOML parser quotes the offending line, which
/// may hold a secret, so only its position and the reason are kept.
fn describe_load_error(error: &figment::Error) -> String {
    let message = error.kind.to_string();
    let message: Vec<&str> = message
        .lines()
        .filter(|line| {
            let quoted = line
                .trim_start()
                .trim_start_matches(|c: char| c.is_ascii_digit());
            !line.trim().is_empty() && !quoted.trim_start().starts_with('|')
        })
        .collect();
    let message = message.join(": ");
    match error
        .metadata
        .as_ref()
        .and_then(|metadata| metadata.source.as_ref())
    {
        Some(Source::File(path)) => format!("{}: {message}", path.display()),
        _ => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::{load_with_env, ConfigError};

    const KEY: &str = "a2V5LWEta2V5LWEta2V5LWEta2V5LWEta2V5LWEta2U";

    /// Loads `toml` (with a configured key, so no development key is written) under `vars`.
    fn load(name: &str, toml: &str, vars: &[(&str, &str)]) -> (PathBuf, Vec<String>) {
        let file = std::env::temp_dir().join(format!(
            "mediagate-sources-{name}-{}.toml",
            std::process::id()
        ));
        std::fs::write(&file, format!("[keys.secrets]\nk1 = \"{KEY}\"\n{toml}")).unwrap();
        let vars = vars
            .iter()
            .map(|(name, value)| (OsString::from(name), OsString::from(value)));
        let result = load_with_env(Some(&file), vars);
        let _ = std::fs::remove_file(&file);
        match result {
            Ok(_) => (file, Vec::new()),
            Err(ConfigError(problems)) => (file, problems),
        }
    }

    #[test]
    fn every_mediagate_variable_must_be_a_setting_the_config_file_or_a_named_secret() {
        let (_, problems) = load(
            "strays",
            "[internal]\nsecret = { env = \"MEDIAGATE_INTERNAL_SECRET_VALUE\" }\n",
            &[
                ("MEDIAGATE_CONFIG", "/ignored/by/load"),
                ("MEDIAGATE_INTERNAL_SECRET_VALUE", KEY),
                ("MEDIAGATE_LOG__LEVEL", "debug"),
                ("MEDIAGATE_KEEP_TEST_DIRS", "1"),
                ("MEDIAGATE_SERVER__", "x"),
                ("OTHER_SERVER_LISTEN", "x"),
            ],
        );
        assert_eq!(
            problems,
            [
                "MEDIAGATE_KEEP_TEST_DIRS: maps to no setting; settings are \
                 MEDIAGATE_<SECTION>__<KEY>, e.g. MEDIAGATE_SERVER__LISTEN",
                "MEDIAGATE_SERVER__: maps to no setting; settings are \
                 MEDIAGATE_<SECTION>__<KEY>, e.g. MEDIAGATE_SERVER__LISTEN",
            ]
        );
    }

    #[test]
    fn every_badly_typed_value_is_reported_not_only_the_first() {
        let (file, problems) = load(
            "types",
            "[server]\nmax_connections = -1\nworkers = \"two\"\n\
             [log]\naudit = \"yes\"\n[refresh]\nmax_attempts = 300\n",
            &[("MEDIAGATE_TOKEN__LEEWAY", "[1, 2]")],
        );
        let file = file.display();
        // In key order: serde reads the merged tables alphabetically.
        assert_eq!(
            problems,
            [
                format!(
                    "{file}: log.audit: invalid type: found string \"yes\", expected a boolean"
                ),
                format!(
                    "{file}: refresh.max_attempts: invalid value signed int `300`, expected u8"
                ),
                format!(
                    "{file}: server.max_connections: invalid value signed int `-1`, expected usize"
                ),
                format!(
                    "{file}: server.workers: invalid type: found string \"two\", expected usize"
                ),
                "MEDIAGATE_TOKEN__LEEWAY: token.leeway: invalid type: found sequence, expected a \
                 duration like 30s, 10m, 1h or 7d, or whole seconds"
                    .to_owned(),
            ]
        );
    }

    #[test]
    fn a_later_layer_replaces_a_secret_source_as_a_whole() {
        let file_source = "[internal]\nsecret = { file = \"/nonexistent/internal\" }\n";
        let (_, problems) = load(
            "replace",
            file_source,
            &[
                ("MEDIAGATE_INTERNAL__SECRET", "{ env = \"TEST_INTERNAL\" }"),
                ("TEST_INTERNAL", KEY),
            ],
        );
        assert_eq!(problems, Vec::<String>::new());
        // Within one layer, both is a mistake rather than an override.
        let (file, problems) = load(
            "both",
            "[internal]\nsecret = { file = \"/x\", env = \"Y\", mode = \"0600\" }\n",
            &[],
        );
        let file = file.display();
        assert_eq!(
            problems[..2],
            [
                format!("{file}: internal.secret.mode: unknown key"),
                format!("{file}: internal.secret: give either file or env, not both"),
            ]
        );
    }

    #[test]
    fn misplaced_secrets_are_reported_without_their_value() {
        for (name, toml) in [
            ("map", format!("[keys]\nsecrets = \"{KEY}\"\n")),
            ("list", format!("[internal]\nsecret = [\"{KEY}\"]\n")),
            (
                "number",
                "[keys.secrets]\nk2 = 12345678901234567890\n".to_owned(),
            ),
        ] {
            let (_, problems) = load(name, &toml, &[]);
            assert!(!problems.is_empty(), "{name}");
            for problem in &problems {
                assert!(
                    !problem.contains(KEY) && !problem.contains("1234567890"),
                    "{name}: {problem}"
                );
            }
        }
    }

    #[test]
    fn known_keys_include_optional_fields_and_site_entries() {
        let known = known_tree();
        let has = |path: &str| {
            let path: Vec<String> = path.split('.').map(str::to_owned).collect();
            lookup(&known, &path).is_some()
        };
        for path in [
            "server.listen",
            "keys.signing",
            "keys.secrets",
            "internal.secret",
            "sites.0.session_origin",
            "sites.0.login_url",
        ] {
            assert!(has(path), "{path} is not a known key");
        }
    }

    #[test]
    fn suggestions_use_double_underscores() {
        let known = known_tree();
        for (name, better) in [
            ("MEDIAGATE_SERVER_LISTEN", Some("MEDIAGATE_SERVER__LISTEN")),
            (
                "MEDIAGATE_SERVER_INTERNAL_LISTEN",
                Some("MEDIAGATE_SERVER__INTERNAL_LISTEN"),
            ),
            (
                "MEDIAGATE_SERVER__INTERNAL__LISTEN",
                Some("MEDIAGATE_SERVER__INTERNAL_LISTEN"),
            ),
            (
                "MEDIAGATE_KEYS_SECRETS_K1",
                Some("MEDIAGATE_KEYS__SECRETS__K1"),
            ),
            (
                "MEDIAGATE_INTERNAL_SECRET",
                Some("MEDIAGATE_INTERNAL__SECRET"),
            ),
            ("MEDIAGATE_SERVER__LISTN", None),
            ("MEDIAGATE_SERVER", None),
            ("MEDIAGATE_REQUIRE_NGINX", None),
        ] {
            assert_eq!(suggest(name, &known).as_deref(), better, "{name}");
        }
    }

    #[test]
    fn secret_paths_match_internal_secret_and_every_key() {
        let path = |text: &str| -> Vec<String> { text.split('.').map(str::to_owned).collect() };
        assert!(is_secret_path(&path("internal.secret")));
        assert!(is_secret_path(&path("keys.secrets.k1.file")));
        assert!(!is_secret_path(&path("keys.signing")));
    }
}
