//! The `mediagate` binary: parse the command line, load configuration, run. Configuration
//! errors exit with 64 (EX_USAGE) before anything is bound.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use mediagate::cli::{self, Cli, Command, GenerateCli};
use mediagate::http::ConfigSource;
use mediagate::{clock, http, logging};

const EX_USAGE: u8 = 64;

fn main() -> ExitCode {
    // Build-time only and not part of `Cli` (so not in --help, the man page or completions);
    // needs no configuration (the package build has none).
    if std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == "generate")
    {
        let generate = GenerateCli::parse_from(std::env::args_os().skip(1));
        return print(cli::generate(&generate.what));
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version end here too, successfully; a usage error exits 64 (EX_USAGE)
        // like every configuration error, not clap's default 2.
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(EX_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match &cli.command {
        Command::Keygen { id } => return print(cli::keygen(id)),
        Command::Inspect(args) => {
            // Inspect still shows the fields when the configuration (and so the key) is absent.
            let config = cli::load_config(&cli).ok();
            return match cli::inspect(config.as_ref(), args, clock::now()) {
                // Denied or undecided is not a success: scripts can test the exit status.
                Ok(inspection) => {
                    let code = inspection.exit_code();
                    match print(Ok(inspection.text)) {
                        printed if printed == ExitCode::SUCCESS => ExitCode::from(code),
                        failed => failed,
                    }
                }
                Err(error) => {
                    eprintln!("mediagate: {error:#}");
                    ExitCode::from(EX_USAGE)
                }
            };
        }
        _ => {}
    }
    let config = match cli::load_config(&cli) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("mediagate: {error}");
            return ExitCode::from(EX_USAGE);
        }
    };
    match &cli.command {
        Command::Sign(args) => print(cli::sign(&config, args).map(|signed| {
            if let Some(note) = signed.note {
                eprintln!("mediagate: {note}");
            }
            signed.output
        })),
        Command::CheckConfig => print(cli::check_config(&cli, &config)),
        // A reload reads the same file and the same environment as this start did.
        Command::Serve => serve(config, ConfigSource::capture(cli.config.clone())),
        Command::Probe(args) => print(cli::probe(&config, args)),
        Command::Revoke(args) => remote(cli::revoke(&config, args)),
        Command::Revocations(args) => remote(mediagate::remote::revocations(&config, args.json)),
        Command::Uses(args) => remote(mediagate::remote::uses(
            &config,
            &args.token_id,
            args.kid.as_deref(),
            args.json,
        )),
        Command::Keygen { .. } | Command::Inspect(_) => unreachable!("handled above"),
    }
}

fn serve(config: mediagate::config::Config, source: ConfigSource) -> ExitCode {
    // Held until the end of serve so queued log lines are flushed on exit.
    let _log_guard = logging::init(&config.log);
    http::warn_about_risks(&config);
    // One worker: a current-thread runtime, with no work-stealing or cross-thread wake-ups.
    let mut runtime = match config.server.threads() {
        1 => tokio::runtime::Builder::new_current_thread(),
        workers => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(workers);
            builder
        }
    };
    let runtime = match runtime.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("mediagate: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let app = http::App::reloadable(config, source);
    match runtime.block_on(http::serve(app)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "mediagate stopped");
            eprintln!("mediagate: {error}");
            ExitCode::FAILURE
        }
    }
}

/// A state command's result: printed, or its error with the exit status it calls for.
fn remote(result: Result<String, mediagate::remote::RemoteError>) -> ExitCode {
    match result {
        Ok(text) => print(Ok(text)),
        Err(error) => {
            eprintln!("mediagate: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

fn print(result: anyhow::Result<String>) -> ExitCode {
    match result {
        Ok(text) => {
            // Not println!: it panics when the reader went away (`mediagate keygen | head -1`).
            let mut stdout = std::io::stdout().lock();
            match writeln!(stdout, "{}", text.trim_end()).and_then(|()| stdout.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("mediagate: cannot write output: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(error) => {
            eprintln!("mediagate: {error:#}");
            ExitCode::FAILURE
        }
    }
}
