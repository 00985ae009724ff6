//! The `charrnn` binary: parse the command line, run one subcommand, report errors as one
//! line `charrnn: <what went wrong>` with a non-zero exit code.

mod cli;
mod cmd;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Train(args) => cmd::train::run(*args),
        cli::Command::Sample(args) => cmd::sample::run(args),
        cli::Command::Eval(args) => cmd::eval::run(args),
        cli::Command::Bench(args) => cmd::bench::run(args),
        cli::Command::Score(args) => cmd::score::run(args),
        cli::Command::Predict(args) => cmd::predict::run(args),
        cli::Command::Plot(args) => cmd::plot::run(args),
        cli::Command::Export(args) => cmd::export::run(args),
        cli::Command::Viz(args) => cmd::viz::run(args),
        cli::Command::Completions(args) => {
            use clap::CommandFactory;
            let mut cmd = cli::Cli::command();
            clap_complete::generate(args.shell, &mut cmd, "charrnn", &mut std::io::stdout());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // Output piped into `head` and the like: stopping is what the reader asked for.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) if e.is::<cmd::world::Exit>() => {
            ExitCode::from(e.downcast_ref::<cmd::world::Exit>().unwrap().0)
        }
        Err(e) => {
            match cmd::world::rank() {
                0 => eprintln!("charrnn: {e:#}"),
                r => eprintln!("charrnn: rank {r}: {e:#}"),
            }
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
