//! Herald's development tasks: `cargo xtask <command>`, see [`flags::USAGE`].
//!
//! One module per command; `flags` is the command line, `services` the table of
//! service binaries, `util` what the commands share.

#![allow(
    clippy::print_stdout,
    reason = "xtask is a command-line tool: stdout is its interface"
)]

mod flags;

mod bench;
mod cluster;
mod dev;
mod e2e;
mod fuzz;
mod gen_operations;
mod postgres;
mod services;
mod test;
mod util;

#[cfg(test)]
mod layers;
#[cfg(test)]
mod tidy;

use std::process::ExitCode;

use crate::flags::Cmd;

fn main() -> ExitCode {
    let cmd = match flags::parse(std::env::args_os().skip(1)) {
        Ok(cmd) => cmd,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    let result = match cmd {
        Cmd::Help => {
            println!("{}", flags::USAGE);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Dev(flags) => dev::run(&flags).map(|()| ExitCode::SUCCESS),
        Cmd::Test => test::run().map(|()| ExitCode::SUCCESS),
        Cmd::E2e => e2e::run().map(|()| ExitCode::SUCCESS),
        Cmd::Bench(flags) => bench::run(&flags),
        Cmd::Fuzz(flags) => fuzz::run(&flags).map(|()| ExitCode::SUCCESS),
        Cmd::GenOperations(flags) => gen_operations::run(&flags).map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|err| {
        eprintln!("error: {err}");
        ExitCode::FAILURE
    })
}
