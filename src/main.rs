//! The `poolserve` binary: parse the command line, set up logging, bind, install the signal
//! handlers, run, and turn the outcome into an exit code (0 clean stop, 1 failure after
//! start-up, 2 bad usage or a failure to start).

use std::process::ExitCode;

use poolserve::{CliAction, Config, Server};

fn main() -> ExitCode {
    let env = |name: &str| std::env::var_os(name);
    let config = match Config::from_env_and_args(env, std::env::args_os().skip(1)) {
        Ok(CliAction::Run(config)) => config,
        Ok(CliAction::Help) => {
            print!("{}", poolserve::config::usage());
            return ExitCode::SUCCESS;
        }
        Ok(CliAction::Version) => {
            println!("{}", poolserve::config::version_line());
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("poolserve: {e}");
            return ExitCode::from(2);
        }
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let server = match Server::bind(config) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("poolserve: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = poolserve::shutdown::on_signals(server.handle(), server.config().drain_delay) {
        eprintln!("poolserve: cannot install signal handlers: {e}");
        return ExitCode::from(2);
    }
    let c = server.config();
    println!(
        "poolserve listening on http://{}/ (root {}, {} workers, queue {}, {} connections)",
        server.local_addr(),
        c.root.display(),
        c.workers,
        c.queue,
        c.limits.max_connections
    );
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
