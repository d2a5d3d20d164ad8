//! Counters for decisions, in Prometheus text format. Lock-free: one relaxed atomic add per
//! request, no allocation, no labels built on the hot path.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::decision::Mode;
use crate::reason::Reason;

const REASONS: usize = Reason::ALL.len();
/// Slot for "no reason" (allowed requests).
const NONE: usize = REASONS;

/// What happened to a request, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Served (token valid or public path).
    Allow,
    /// Sent to the session domain for a fresh token.
    Refresh,
    /// Refused.
    Deny,
}

impl Verdict {
    const ALL: [Verdict; 3] = [Verdict::Allow, Verdict::Refresh, Verdict::Deny];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Refresh => "refresh",
            Verdict::Deny => "deny",
        }
    }
}

/// All counters of one server.
#[derive(Debug, Default)]
pub struct Metrics {
    /// [mode][verdict][reason or NONE]
    media: [[[AtomicU64; REASONS + 1]; 3]; Mode::ALL.len()],
    /// Refresh endpoint: [minted(0)/denied(1)][reason or NONE]
    refresh: [[AtomicU64; REASONS + 1]; 2],
    /// Tokens minted through POST /mint.
    minted_api: AtomicU64,
}

impl Metrics {
    /// Counts one media decision.
    pub fn media(&self, mode: Mode, verdict: Verdict, reason: Option<Reason>) {
        self.media[mode as usize][verdict as usize][slot(reason)].fetch_add(1, Ordering::Relaxed);
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

    /// Prometheus text exposition; zero series are omitted.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        out.push_str("# HELP mediagate_decisions_total Media requests decided, by mode, verdict and reason.\n");
        out.push_str("# TYPE mediagate_decisions_total counter\n");
        for mode in Mode::ALL {
            for verdict in Verdict::ALL {
                for (index, counter) in self.media[mode as usize][verdict as usize]
                    .iter()
                    .enumerate()
                {
                    let value = counter.load(Ordering::Relaxed);
                    if value > 0 {
                        let _ = writeln!(
                            out,
                            "mediagate_decisions_total{{mode=\"{}\",verdict=\"{}\",reason=\"{}\"}} {value}",
                            mode.as_str(),
                            verdict.as_str(),
                            label(index)
                        );
                    }
                }
            }
        }
        out.push_str("# HELP mediagate_refresh_total Refresh requests, by result and reason.\n");
        out.push_str("# TYPE mediagate_refresh_total counter\n");
        for (row, result) in ["minted", "denied"].iter().enumerate() {
            for (index, counter) in self.refresh[row].iter().enumerate() {
                let value = counter.load(Ordering::Relaxed);
                if value > 0 {
                    let _ = writeln!(
                        out,
                        "mediagate_refresh_total{{result=\"{result}\",reason=\"{}\"}} {value}",
                        label(index)
                    );
                }
            }
        }
        out.push_str("# HELP mediagate_minted_total Tokens minted through POST /mint.\n");
        out.push_str("# TYPE mediagate_minted_total counter\n");
        let _ = writeln!(
            out,
            "mediagate_minted_total {}",
            self.minted_api.load(Ordering::Relaxed)
        );
        out
    }
}

fn slot(reason: Option<Reason>) -> usize {
    reason.map_or(NONE, |reason| reason as usize)
}

fn label(index: usize) -> &'static str {
    Reason::ALL
        .get(index)
        .map_or("none", |reason| reason.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_render_with_labels() {
        let metrics = Metrics::default();
        metrics.media(Mode::Auth, Verdict::Deny, Some(Reason::Expired));
        metrics.media(Mode::Auth, Verdict::Deny, Some(Reason::Expired));
        metrics.media(Mode::Accel, Verdict::Allow, None);
        metrics.refresh(Err(Reason::BadState));
        let text = metrics.render();
        assert!(text.contains(
            "mediagate_decisions_total{mode=\"auth\",verdict=\"deny\",reason=\"expired\"} 2"
        ));
        assert!(text.contains(
            "mediagate_decisions_total{mode=\"accel\",verdict=\"allow\",reason=\"none\"} 1"
        ));
        assert!(text.contains("mediagate_refresh_total{result=\"denied\",reason=\"bad_state\"} 1"));
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
