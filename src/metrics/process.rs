//! The standard `process_*` series of Prometheus clients, read from `/proc` when `/metrics`
//! is scraped (never on the request path).
//!
//! Names, units and sources follow the Go client's process collector, so dashboards made for
//! any Prometheus-instrumented program work unchanged. Each figure is optional: a file that
//! cannot be read or parsed (another kernel, a hardened `/proc`) leaves its series out and
//! logs at debug level; a scrape never fails because of it. Parsing is pure and tested on
//! fixed text; [`Sample::read`] is the only I/O.

use std::fmt::Write;

use super::family;

/// Clock ticks per second in `/proc/<pid>/stat` (`USER_HZ`). The kernel fixes it at 100 for
/// user space on every architecture Linux supports today; reading `sysconf(_SC_CLK_TCK)`
/// would need `libc` and `unsafe` for a constant (the Go client hard-codes it too).
const TICKS_PER_SECOND: u64 = 100;

/// One reading of the process figures; `None` where the source could not be read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sample {
    /// User plus system CPU time, in clock ticks.
    pub cpu_ticks: Option<u64>,
    /// Resident set size, bytes.
    pub resident_bytes: Option<u64>,
    /// Virtual memory size, bytes.
    pub virtual_bytes: Option<u64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// Soft limit on open file descriptors.
    pub max_fds: Option<u64>,
    /// Start time since the Unix epoch, in clock ticks.
    pub start_ticks: Option<u64>,
}

/// The fields of `/proc/self/stat` we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// `utime + stime`, clock ticks.
    pub cpu_ticks: u64,
    /// `starttime`: clock ticks after boot.
    pub start_ticks_after_boot: u64,
    /// `vsize`, bytes.
    pub virtual_bytes: u64,
}

impl Sample {
    /// Reads `/proc/self/{stat,status,limits,fd}` and `/proc/stat` (boot time).
    pub fn read() -> Sample {
        let stat =
            read("/proc/self/stat").and_then(|text| logged("/proc/self/stat", parse_stat(&text)));
        let boot = read("/proc/stat").and_then(|text| logged("/proc/stat", parse_boot_time(&text)));
        let open_fds = match std::fs::read_dir("/proc/self/fd") {
            // Counts the descriptor read_dir itself holds, as other clients do.
            Ok(entries) => Some(entries.count() as u64),
            Err(error) => {
                tracing::debug!(file = "/proc/self/fd", %error, "process metric left out");
                None
            }
        };
        Sample {
            cpu_ticks: stat.map(|stat| stat.cpu_ticks),
            resident_bytes: read("/proc/self/status")
                .and_then(|text| logged("/proc/self/status", parse_resident_bytes(&text))),
            virtual_bytes: stat.map(|stat| stat.virtual_bytes),
            open_fds,
            max_fds: read("/proc/self/limits")
                .and_then(|text| logged("/proc/self/limits", parse_max_fds(&text))),
            start_ticks: stat.zip(boot).and_then(|(stat, boot)| {
                boot.checked_mul(TICKS_PER_SECOND)?
                    .checked_add(stat.start_ticks_after_boot)
            }),
        }
    }
}

fn read(file: &str) -> Option<String> {
    std::fs::read_to_string(file)
        .map_err(|error| tracing::debug!(file, %error, "process metric left out"))
        .ok()
}

fn logged<T>(file: &str, parsed: Option<T>) -> Option<T> {
    if parsed.is_none() {
        tracing::debug!(file, "process metric left out: unexpected format");
    }
    parsed
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may itself
/// hold spaces and `)`, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let (_, rest) = text.rsplit_once(')')?;
    // rest[0] is field 3 (state); field n is rest[n - 3].
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        cpu_ticks: field(14)?.checked_add(field(15)?)?,
        start_ticks_after_boot: field(22)?,
        virtual_bytes: field(23)?,
    })
}

/// `VmRSS` from `/proc/<pid>/status`, in bytes.
pub fn parse_resident_bytes(text: &str) -> Option<u64> {
    let value = text
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim();
    value.parse::<u64>().ok()?.checked_mul(1024)
}

/// The soft limit of "Max open files" in `/proc/<pid>/limits`; `None` when unlimited.
pub fn parse_max_fds(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("Max open files"))?
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `btime` (boot time, seconds since the epoch) from `/proc/stat`.
pub fn parse_boot_time(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// Appends the families of `sample` that have a value.
pub fn render(out: &mut String, sample: &Sample) {
    let seconds = |ticks: u64| {
        format!(
            "{}.{:02}",
            ticks / TICKS_PER_SECOND,
            ticks % TICKS_PER_SECOND
        )
    };
    let families = [
        (
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            sample.cpu_ticks.map(seconds),
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            sample.resident_bytes.map(|value| value.to_string()),
        ),
        (
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            sample.virtual_bytes.map(|value| value.to_string()),
        ),
        (
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            sample.open_fds.map(|value| value.to_string()),
        ),
        (
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            sample.max_fds.map(|value| value.to_string()),
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            sample.start_ticks.map(seconds),
        ),
    ];
    for (name, kind, help, value) in families {
        if let Some(value) = value {
            family(out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real line's shape, with a command name that tries to shift the fields.
    const STAT: &str = "4242 (media) gate) 2) S 1 4242 4242 0 -1 4194560 1021 0 0 0 \
        731 245 0 0 20 0 2 0 123456 27262976 1400 18446744073709551615 1 1 0 0 0 0 0 4096 \
        17664 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        assert_eq!(
            parse_stat(STAT),
            Some(Stat {
                cpu_ticks: 731 + 245,
                start_ticks_after_boot: 123_456,
                virtual_bytes: 27_262_976,
            })
        );
        assert_eq!(parse_stat("4242 (mediagate) S 1 2 3"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn status_limits_and_boot_time_parse() {
        let status = "Name:\tmediagate\nVmPeak:\t   30000 kB\nVmRSS:\t    5120 kB\nThreads:\t2\n";
        assert_eq!(parse_resident_bytes(status), Some(5120 * 1024));
        assert_eq!(parse_resident_bytes("Name:\tmediagate\n"), None);
        let limits =
            "Limit                     Soft Limit           Hard Limit           Units     \n\
            Max processes             63704                63704                processes \n\
            Max open files            1024                 524288               files     \n";
        assert_eq!(parse_max_fds(limits), Some(1024));
        assert_eq!(
            parse_max_fds(
                "Max open files            unlimited            unlimited            files\n"
            ),
            None
        );
        assert_eq!(
            parse_boot_time("cpu  1 2 3\nintr 5\nbtime 1764000000\nprocesses 9\n"),
            Some(1_764_000_000)
        );
    }

    #[test]
    fn missing_figures_leave_their_family_out() {
        let mut out = String::new();
        render(
            &mut out,
            &Sample {
                cpu_ticks: Some(976),
                start_ticks: Some(176_400_000_005),
                ..Sample::default()
            },
        );
        assert_eq!(
            out,
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n\
             # TYPE process_cpu_seconds_total counter\n\
             process_cpu_seconds_total 9.76\n\
             # HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n\
             # TYPE process_start_time_seconds gauge\n\
             process_start_time_seconds 1764000000.05\n"
        );
    }

    #[test]
    fn this_process_reads_every_figure() {
        let sample = Sample::read();
        for (name, value) in [
            ("cpu_ticks", sample.cpu_ticks),
            ("resident_bytes", sample.resident_bytes),
            ("virtual_bytes", sample.virtual_bytes),
            ("open_fds", sample.open_fds),
            ("max_fds", sample.max_fds),
            ("start_ticks", sample.start_ticks),
        ] {
            assert!(value.is_some(), "{name}: {sample:?}");
        }
        assert!(
            sample.resident_bytes > Some(0) && sample.open_fds > Some(2),
            "{sample:?}"
        );
    }
}
