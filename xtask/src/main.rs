//! `cargo xtask <verb>`: the project's automation. Each verb is one function
//! in [`verbs`]; adding a verb means adding a function and a match arm.

mod layering;
mod results;
mod tidy;
mod verbs;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <verb> [args]

verbs:
  ci                          fmt, clippy, tests, docs, layering and tidy checks (fail fast)
  layering                    only the layering check
  fuzz <target|all> [--seconds N]
                              cargo-fuzz targets on nightly (default 60 s each): frame_reader,
                              document_decoder, bitmap_decoder, query_parser, directory_image, workload
  crash [--iterations N] [--kill | --power-cut] [--layer core|engine|index|all]
                              crash tests: SIGKILL and power cut (default 500 each, every layer)
  faults                      the fault matrix of every layer, a full disk, low
                              descriptor and address-space limits
  bench [--quick]             the peer and index comparisons, written to
                              docs/bench/RESULTS.md with docs/bench/ratio.svg
                              (the only verb that builds the peers)
  sanitize [--address | --thread]
                              the tests under ASan and TSan (nightly)
  soak [--minutes M]          a mixed workload with the scheduler, reads checked,
                              resources sampled (default 10 minutes)
  mutants [--crate C] [--file F]... [--output DIR] [--iterate] [--report DIR]
                              cargo-mutants over silo-core's data path (installs it if missing)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((verb, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = match verb.as_str() {
        "ci" => verbs::ci(),
        "layering" => layering::check(),
        "fuzz" => verbs::fuzz(rest),
        "crash" => verbs::crash(rest),
        "faults" => verbs::faults(rest),
        "bench" => results::bench(rest),
        "mutants" => verbs::mutants(rest),
        "soak" => verbs::soak(rest),
        "sanitize" => verbs::sanitize(rest),
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown verb `{other}`\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}
