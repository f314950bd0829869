use clap::Parser;
use std::process::ExitCode;
use warpforge_runtime::cli::{self, Cli};

fn main() -> ExitCode {
    // A closed pipe (`warpforge kernels | head -1`) ends the process quietly, as it does
    // for other Unix tools, instead of panicking in `println!`.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of one signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WARPFORGE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli::run(Cli::parse()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            cli::exit_code_of(&err)
        }
    }
}
