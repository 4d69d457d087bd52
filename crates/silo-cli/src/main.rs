//! The `silo` command. Its verbs (demo, stats, verify, repair, compact, dump,
//! import, query, bench) arrive with the engine; today it only names itself.
#![forbid(unsafe_code)]

fn main() {
    println!(
        "silo {}: the command-line verbs arrive with silo-engine",
        env!("CARGO_PKG_VERSION")
    );
}
