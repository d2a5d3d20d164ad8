//! Counters, a decision-latency histogram and the process figures, in the Prometheus text
//! format (version 0.0.4), served on the internal listener's `/metrics`.
//!
//! The request path only adds to atomics (relaxed, no lock, no allocation, no labels built):
//! one add per counted event, two per latency observation. Everything else happens when
//! `/metrics` is scraped: label strings, the cumulative bucket counts, and reading `/proc`
//! ([`process`]).
//!
//! Every series that can occur is exposed from the start, at 0, so `rate()` and alerts work
//! before the first event; combinations that cannot occur (an allowed request with a reason)
//! are left out unless they were counted after all.

pub mod process;

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::decision::Mode;
use crate::reason::Reason;

/// The exposition format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const REASONS: usize = Reason::ALL.len();
/// Slot for "no reason" (allowed requests, minted refreshes).
const NONE: usize = REASONS;

/// Upper bounds of the decision-latency buckets in nanoseconds, with their `le` labels.
///
/// What is timed (header checks, one HMAC-SHA256, the response, the audit line) takes a few
/// microseconds of CPU on a current server (`docs/benchmarks.md`: `gate::decide` ~0.5 µs,
/// all of mediagate's user-space work ~6 µs per request), so the buckets are dense there;
/// they reach 5 ms so that a slow or overloaded machine, where the thread is descheduled in
/// the middle of a decision, still shows where it lands.
const BUCKETS: [(u64, &str); 13] = [
    (500, "0.0000005"),
    (1_000, "0.000001"),
    (2_500, "0.0000025"),
    (5_000, "0.000005"),
    (10_000, "0.00001"),
    (25_000, "0.000025"),
    (50_000, "0.00005"),
    (100_000, "0.0001"),
    (250_000, "0.00025"),
    (500_000, "0.0005"),
    (1_000_000, "0.001"),
    (2_500_000, "0.0025"),
    (5_000_000, "0.005"),
];

/// Reasons `/refresh` can deny with: the peer and secret check (`untrusted_peer`), the
/// forwarded headers (`bad_request`), `refresh::check_target` and `refresh::approve`.
const REFRESH_DENIALS: [Reason; 7] = [
    Reason::UntrustedPeer,
    Reason::BadRequest,
    Reason::UnknownHost,
    Reason::BadPath,
    Reason::BadState,
    Reason::OutOfScope,
    Reason::RefreshLoop,
];

/// What happened to a request, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Served (token valid or public path).
    Allow,
    /// Sent to the session domain for a fresh token.
    Refresh,
    /// Refused.
    Deny,
    /// A player's first range of a query-form link, sent to the same link in path form with
    /// a playback grant (`gate::exchange`).
    Exchange,
}

impl Verdict {
    const ALL: [Verdict; 4] = [
        Verdict::Allow,
        Verdict::Refresh,
        Verdict::Deny,
        Verdict::Exchange,
    ];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Refresh => "refresh",
            Verdict::Deny => "deny",
            Verdict::Exchange => "exchange",
        }
    }

    /// Whether a media decision can end with this verdict and `reason`: an allowed or exchanged
    /// request has no reason; only what a fresh token cures is refreshed; anything but `bad_state`
    /// (the refresh `state` is read by `/refresh` alone) can be denied.
    fn can_have(self, reason: Option<Reason>) -> bool {
        match (self, reason) {
            (Verdict::Allow | Verdict::Exchange, None) => true,
            (Verdict::Refresh, Some(reason)) => reason.is_refreshable(),
            (Verdict::Deny, Some(reason)) => reason != Reason::BadState,
            _ => false,
        }
    }
}

/// A fixed-bucket latency histogram.
#[derive(Debug, Default)]
struct Histogram {
    /// Not cumulative: slot `i` counts observations in `(BUCKETS[i-1], BUCKETS[i]]`, the last
    /// slot those above every bound. Cumulated when rendered, so an observation is one add
    /// here, and `_count` (the total of the slots) always equals the `+Inf` bucket.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    /// In integer nanoseconds: exact, where adding float seconds would lose the small
    /// observations once the sum is large. Wraps after 584 years of accumulated latency.
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let slot = BUCKETS
            .iter()
            .position(|&(bound, _)| nanos <= bound)
            .unwrap_or(BUCKETS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

/// All counters of one server.
#[derive(Debug, Default)]
pub struct Metrics {
    /// [mode][verdict][reason or NONE]
    media: [[[AtomicU64; REASONS + 1]; Verdict::ALL.len()]; Mode::ALL.len()],
    /// [mode]
    latency: [Histogram; Mode::ALL.len()],
    /// Refresh endpoint: [minted(0)/denied(1)][reason or NONE]
    refresh: [[AtomicU64; REASONS + 1]; 2],
    /// Tokens minted through POST /mint.
    minted_api: AtomicU64,
    /// Configuration reloads: [succeeded(0), refused(1)].
    reloads: [AtomicU64; 2],
}

impl Metrics {
    /// Counts one media decision.
    pub fn media(&self, mode: Mode, verdict: Verdict, reason: Option<Reason>) {
        self.media[mode_slot(mode)][verdict as usize][slot(reason)].fetch_add(1, Ordering::Relaxed);
    }

    /// Records how long one media decision took, from having the request to having the
    /// response.
    pub fn media_latency(&self, mode: Mode, elapsed: Duration) {
        self.latency[mode_slot(mode)].observe(elapsed);
    }

    /// Counts one refresh request.
    pub fn refresh(&self, result: Result<(), Reason>) {
        let (row, reason) = match result {
            Ok(()) => (0, None),
            Err(reason) => (1, Some(reason)),
        };
        self.refresh[row][slot(reason)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one token minted through the API.
    pub fn minted_api(&self) {
        self.minted_api.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one configuration reload: put in force, or refused (the old one stayed).
    pub fn reloaded(&self, succeeded: bool) {
        self.reloads[usize::from(!succeeded)].fetch_add(1, Ordering::Relaxed);
    }

    /// Reloads so far: (succeeded, refused).
    pub fn reloads(&self) -> (u64, u64) {
        (
            self.reloads[0].load(Ordering::Relaxed),
            self.reloads[1].load(Ordering::Relaxed),
        )
    }

    /// The whole exposition: this server's series, then the process figures read now.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(12 * 1024);
        self.render_own(&mut out);
        process::render(&mut out, &process::Sample::read());
        out
    }

    /// Appends mediagate's own families. Pure: the same counts give the same text.
    pub fn render_own(&self, out: &mut String) {
        family(
            out,
            "mediagate_decisions_total",
            "counter",
            "Media requests decided, by mode, verdict and reason (\"none\" when allowed).",
        );
        for mode in Mode::ALL {
            for verdict in Verdict::ALL {
                let counters = &self.media[mode_slot(mode)][verdict as usize];
                for (index, counter) in counters.iter().enumerate() {
                    let value = counter.load(Ordering::Relaxed);
                    if value > 0 || verdict.can_have(reason_at(index)) {
                        sample(
                            out,
                            "mediagate_decisions_total",
                            &[
                                ("mode", mode.as_str()),
                                ("verdict", verdict.as_str()),
                                ("reason", label(index)),
                            ],
                            value,
                        );
                    }
                }
            }
        }

        let name = "mediagate_decision_duration_seconds";
        family(
            out,
            name,
            "histogram",
            "Time mediagate spent deciding and answering a media request, from having the \
             request to having the response (not the network), by mode.",
        );
        for mode in Mode::ALL {
            let histogram = &self.latency[mode_slot(mode)];
            let mut cumulative = 0;
            for (index, bucket) in histogram.buckets.iter().enumerate() {
                cumulative += bucket.load(Ordering::Relaxed);
                let le = BUCKETS.get(index).map_or("+Inf", |&(_, le)| le);
                sample(
                    out,
                    "mediagate_decision_duration_seconds_bucket",
                    &[("mode", mode.as_str()), ("le", le)],
                    cumulative,
                );
            }
            let sum = histogram.sum_nanos.load(Ordering::Relaxed);
            let labels = [("mode", mode.as_str())];
            sample(
                out,
                "mediagate_decision_duration_seconds_sum",
                &labels,
                format_args!("{}.{:09}", sum / 1_000_000_000, sum % 1_000_000_000),
            );
            sample(
                out,
                "mediagate_decision_duration_seconds_count",
                &labels,
                cumulative,
            );
        }

        family(
            out,
            "mediagate_refresh_total",
            "counter",
            "Refresh requests, by result and reason (\"none\" when minted).",
        );
        for (row, result) in ["minted", "denied"].into_iter().enumerate() {
            for (index, counter) in self.refresh[row].iter().enumerate() {
                let value = counter.load(Ordering::Relaxed);
                let possible = match reason_at(index) {
                    None => row == 0,
                    Some(reason) => row == 1 && REFRESH_DENIALS.contains(&reason),
                };
                if value > 0 || possible {
                    sample(
                        out,
                        "mediagate_refresh_total",
                        &[("result", result), ("reason", label(index))],
                        value,
                    );
                }
            }
        }

        family(
            out,
            "mediagate_minted_total",
            "counter",
            "Tokens minted through POST /mint.",
        );
        sample(
            out,
            "mediagate_minted_total",
            &[],
            self.minted_api.load(Ordering::Relaxed),
        );

        family(
            out,
            "mediagate_config_reloads_total",
            "counter",
            "Configuration reloads (SIGHUP), by result: \"success\" put the new configuration in \
             force, \"failure\" refused it and kept the running one.",
        );
        let (succeeded, refused) = self.reloads();
        for (result, value) in [("success", succeeded), ("failure", refused)] {
            sample(
                out,
                "mediagate_config_reloads_total",
                &[("result", result)],
                value,
            );
        }
    }
}

/// `# HELP` and `# TYPE` lines. `help` is a constant without backslashes or line breaks,
/// which are the only characters HELP text escapes.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// One sample line, label values escaped.
fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (index, (label, value)) in labels.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            out.push_str(label);
            out.push_str("=\"");
            escape_label_value(out, value);
            out.push('"');
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// Label values escape `\`, `"` and line feeds. Ours are fixed snake_case words today; the
/// escaping keeps the output valid whatever a future label holds.
fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// An exhaustive match, so a new mode fails to compile here instead of indexing out of
/// bounds; `mode_slots_match_the_mode_list` checks it against `Mode::ALL`, which sizes the
/// arrays.
fn mode_slot(mode: Mode) -> usize {
    match mode {
        Mode::Auth => 0,
        Mode::Accel => 1,
        Mode::Forward => 2,
    }
}

fn slot(reason: Option<Reason>) -> usize {
    reason.map_or(NONE, |reason| reason as usize)
}

fn reason_at(index: usize) -> Option<Reason> {
    Reason::ALL.get(index).copied()
}

fn label(index: usize) -> &'static str {
    reason_at(index).map_or("none", Reason::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(metrics: &Metrics) -> String {
        let mut out = String::new();
        metrics.render_own(&mut out);
        out
    }

    /// The sample lines of family `name` (its `# HELP`/`# TYPE` excluded).
    fn lines_of<'t>(text: &'t str, name: &str) -> Vec<&'t str> {
        text.lines()
            .filter(|line| {
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(['{', ' ']))
            })
            .collect()
    }

    #[test]
    fn counts_render_with_labels() {
        let metrics = Metrics::default();
        metrics.media(Mode::Auth, Verdict::Deny, Some(Reason::Expired));
        metrics.media(Mode::Auth, Verdict::Deny, Some(Reason::Expired));
        metrics.media(Mode::Accel, Verdict::Allow, None);
        metrics.refresh(Err(Reason::BadState));
        let text = rendered(&metrics);
        assert!(text.contains(
            "mediagate_decisions_total{mode=\"auth\",verdict=\"deny\",reason=\"expired\"} 2\n"
        ));
        assert!(text.contains(
            "mediagate_decisions_total{mode=\"accel\",verdict=\"allow\",reason=\"none\"} 1\n"
        ));
        assert!(
            text.contains("mediagate_refresh_total{result=\"denied\",reason=\"bad_state\"} 1\n")
        );
    }

    #[test]
    fn golden_refresh_minted_reload_and_histogram_families() {
        let metrics = Metrics::default();
        metrics.refresh(Ok(()));
        metrics.refresh(Err(Reason::OutOfScope));
        metrics.minted_api();
        metrics.minted_api();
        metrics.reloaded(true);
        metrics.media_latency(Mode::Accel, Duration::from_nanos(800));
        metrics.media_latency(Mode::Accel, Duration::from_nanos(1_000));
        metrics.media_latency(Mode::Accel, Duration::from_micros(40));
        metrics.media_latency(Mode::Accel, Duration::from_millis(7));
        let text = rendered(&metrics);
        // Denial reasons in Reason::ALL's order; only those /refresh can produce.
        let expected_refresh = r#"# HELP mediagate_refresh_total Refresh requests, by result and reason ("none" when minted).
# TYPE mediagate_refresh_total counter
mediagate_refresh_total{result="minted",reason="none"} 1
mediagate_refresh_total{result="denied",reason="out_of_scope"} 1
mediagate_refresh_total{result="denied",reason="bad_path"} 0
mediagate_refresh_total{result="denied",reason="untrusted_peer"} 0
mediagate_refresh_total{result="denied",reason="bad_request"} 0
mediagate_refresh_total{result="denied",reason="unknown_host"} 0
mediagate_refresh_total{result="denied",reason="refresh_loop"} 0
mediagate_refresh_total{result="denied",reason="bad_state"} 0
# HELP mediagate_minted_total Tokens minted through POST /mint.
# TYPE mediagate_minted_total counter
mediagate_minted_total 2
# HELP mediagate_config_reloads_total Configuration reloads (SIGHUP), by result: "success" put the new configuration in force, "failure" refused it and kept the running one.
# TYPE mediagate_config_reloads_total counter
mediagate_config_reloads_total{result="success"} 1
mediagate_config_reloads_total{result="failure"} 0
"#;
        assert!(text.ends_with(expected_refresh), "{text}");
        let histogram = r#"mediagate_decision_duration_seconds_bucket{mode="accel",le="0.0000005"} 0
mediagate_decision_duration_seconds_bucket{mode="accel",le="0.000001"} 2
mediagate_decision_duration_seconds_bucket{mode="accel",le="0.0000025"} 2
mediagate_decision_duration_seconds_bucket{mode="accel",le="0.000005"} 2
mediagate_decision_duration_seconds_bucket{mode="accel",le="0.00001"} 2
mediagate_decision_duration_seconds_bucket{mode="accel",le="0.000025"} 2
mediagate_decision_duration_seconds_bucket{mode="accel",le="0.00005"} 3
mediagate_decision_duration_seconds_bucket{mode="accel",le="0.0001"} 3
mediagate_decision_duration_seconds_bucket{mode="accel",le="0.00025"} 3
mediagate_decision_duration_seconds_bucket{mode="accel",le="0.0005"} 3
mediagate_decision_duration_seconds_bucket{mode="accel",le="0.001"} 3
mediagate_decision_duration_seconds_bucket{mode="accel",le="0.0025"} 3
mediagate_decision_duration_seconds_bucket{mode="accel",le="0.005"} 3
mediagate_decision_duration_seconds_bucket{mode="accel",le="+Inf"} 4
mediagate_decision_duration_seconds_sum{mode="accel"} 0.007041800
mediagate_decision_duration_seconds_count{mode="accel"} 4
"#;
        assert!(text.contains(histogram), "{text}");
    }

    #[test]
    fn every_possible_series_is_there_from_the_start_and_no_other() {
        let text = rendered(&Metrics::default());
        let decisions = lines_of(&text, "mediagate_decisions_total");
        // Per mode: allow and exchange without a reason, refresh for the three refreshable
        // reasons, deny for every reason but bad_state.
        let refreshable = Reason::ALL.iter().filter(|r| r.is_refreshable()).count();
        assert_eq!(refreshable, 3);
        assert_eq!(
            decisions.len(),
            Mode::ALL.len() * (2 + refreshable + (REASONS - 1)),
            "{text}"
        );
        assert!(decisions.iter().all(|line| line.ends_with(" 0")), "{text}");
        for mode in ["auth", "accel", "forward"] {
            let allow = format!("{{mode=\"{mode}\",verdict=\"allow\",reason=\"none\"}} 0");
            assert!(
                decisions.iter().any(|line| line.ends_with(&allow)),
                "{allow}"
            );
            let exchange = format!("{{mode=\"{mode}\",verdict=\"exchange\",reason=\"none\"}} 0");
            assert!(
                decisions.iter().any(|line| line.ends_with(&exchange)),
                "{exchange}"
            );
            let refresh = format!("{{mode=\"{mode}\",verdict=\"refresh\",reason=\"expired\"}} 0");
            assert!(
                decisions.iter().any(|line| line.ends_with(&refresh)),
                "{refresh}"
            );
            let deny = format!("{{mode=\"{mode}\",verdict=\"deny\",reason=\"untrusted_peer\"}} 0");
            assert!(decisions.iter().any(|line| line.ends_with(&deny)), "{deny}");
        }
        for impossible in [
            r#"verdict="allow",reason="expired""#,
            r#"verdict="refresh",reason="bad_signature""#,
            r#"verdict="exchange",reason="expired""#,
            r#"verdict="refresh",reason="none""#,
            r#"verdict="deny",reason="none""#,
            r#"verdict="deny",reason="bad_state""#,
        ] {
            assert!(!text.contains(impossible), "{impossible}\n{text}");
        }
        let refresh = lines_of(&text, "mediagate_refresh_total");
        assert_eq!(refresh.len(), 1 + REFRESH_DENIALS.len(), "{text}");
        assert!(!text.contains(r#"result="minted",reason="bad"#), "{text}");
        assert!(text.contains("\nmediagate_minted_total 0\n"), "{text}");
        for mode in ["auth", "accel", "forward"] {
            let inf = format!(
                "mediagate_decision_duration_seconds_bucket{{mode=\"{mode}\",le=\"+Inf\"}} 0\n"
            );
            assert!(text.contains(&inf), "{text}");
            let sum =
                format!("mediagate_decision_duration_seconds_sum{{mode=\"{mode}\"}} 0.000000000\n");
            assert!(text.contains(&sum), "{text}");
        }
    }

    #[test]
    fn a_combination_thought_impossible_is_still_shown_once_counted() {
        let metrics = Metrics::default();
        metrics.media(Mode::Auth, Verdict::Deny, Some(Reason::BadState));
        metrics.refresh(Err(Reason::Expired));
        let text = rendered(&metrics);
        assert!(text.contains(
            "mediagate_decisions_total{mode=\"auth\",verdict=\"deny\",reason=\"bad_state\"} 1\n"
        ));
        assert!(text.contains("mediagate_refresh_total{result=\"denied\",reason=\"expired\"} 1\n"));
        assert!(!text.contains(r#"mode="accel",verdict="deny",reason="bad_state""#));
    }

    #[test]
    fn buckets_are_cumulative_and_count_matches_inf() {
        let metrics = Metrics::default();
        // Every bound, one nanosecond either side of it, zero and far above the last.
        let mut observed = vec![0, u64::MAX];
        for &(bound, _) in &BUCKETS {
            observed.extend([bound - 1, bound, bound + 1]);
        }
        for &nanos in &observed {
            metrics.media_latency(Mode::Auth, Duration::from_nanos(nanos));
        }
        let text = rendered(&metrics);
        let buckets = lines_of(&text, "mediagate_decision_duration_seconds_bucket");
        let auth: Vec<&str> = buckets
            .iter()
            .copied()
            .filter(|line| line.contains("mode=\"auth\""))
            .collect();
        assert_eq!(auth.len(), BUCKETS.len() + 1);
        for (line, le) in auth
            .iter()
            .zip(BUCKETS.iter().map(|&(bound, _)| Some(bound)).chain([None]))
        {
            let expected = observed
                .iter()
                .filter(|&&n| le.is_none_or(|le| n <= le))
                .count();
            let value: usize = line.rsplit_once(' ').unwrap().1.parse().unwrap();
            assert_eq!(value, expected, "{line}");
        }
        let count = format!(
            "mediagate_decision_duration_seconds_count{{mode=\"auth\"}} {}\n",
            observed.len()
        );
        assert!(text.contains(&count), "{text}");
        // The other mode is untouched.
        assert!(text.contains("mediagate_decision_duration_seconds_count{mode=\"accel\"} 0\n"));
    }

    #[test]
    fn bucket_labels_are_their_bounds_in_seconds() {
        let mut previous = 0;
        for &(nanos, le) in &BUCKETS {
            assert!(nanos > previous, "bounds must increase");
            previous = nanos;
            assert_eq!(le.parse::<f64>().unwrap(), nanos as f64 / 1e9, "{le}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        sample(
            &mut out,
            "x_total",
            &[("a", "back\\slash \"quoted\"\nline")],
            1,
        );
        assert_eq!(
            out,
            "x_total{a=\"back\\\\slash \\\"quoted\\\"\\nline\"} 1\n"
        );
    }

    #[test]
    fn mode_slots_match_the_mode_list() {
        for (index, mode) in Mode::ALL.into_iter().enumerate() {
            assert_eq!(mode_slot(mode), index, "{}", mode.as_str());
        }
    }

    #[test]
    fn reason_slots_match_the_reason_list() {
        for (index, reason) in Reason::ALL.iter().enumerate() {
            assert_eq!(
                *reason as usize, index,
                "Reason::ALL must list reasons in declaration order"
            );
        }
    }
}
