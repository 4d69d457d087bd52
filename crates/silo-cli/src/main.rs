//! The `silo` command: silo's main job (`silo demo`) and the tools an
//! operator expects around a storage engine: stats, compaction,
//! checkpoints, point reads and writes, dump and load, JSON lines import
//! and queries. `silo --help` and `silo VERB --help` document each.
//!
//! | module | what it holds |
//! |---|---|
//! | `main.rs` | the command line (clap) and the exit codes |
//! | `fail.rs` | failures as one line and an exit code |
//! | `store.rs` | opening an index or a plain store |
//! | `json.rs` | values and documents as JSON |
//! | `kv.rs` | `get`, `put`, `del` |
//! | `dump.rs` | `dump` and `load` |
//! | `admin.rs` | `stats`, `compact`, `checkpoint` |
//! | `check.rs` | `verify`, `repair` |
//! | `search.rs` | `import` and `query` |
//! | `demo.rs` | `demo`: the main job |
//! | `progress.rs` | progress bars on a terminal, plain lines otherwise |
#![forbid(unsafe_code)]

mod admin;
mod check;
mod demo;
mod dump;
mod fail;
mod json;
mod kv;
mod progress;
mod search;
mod store;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::fail::{Outcome, code};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  a check found a problem (verify: damage; repair: something could not
     be saved; the demo's answers changed; get: no such key)
  2  the command line is wrong
  3  the store cannot be used: missing, locked by another process, corrupt,
     or of an unknown format version
  4  the input is wrong: a query, a schema, a file to import or load, a key
     or a value
  5  the system failed: I/O, a full disk";

/// silo: an embedded storage engine for u64-keyed values, roaring bitmaps
/// and documents, and a filter-and-sort index over them.
#[derive(Debug, Parser)]
#[command(name = "silo", version, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Debug, Subcommand)]
enum Verb {
    /// silo's main job: generates a synthetic product catalogue, imports it
    /// into an index over the sharded engine, streams updates and deletes
    /// while the background scheduler compacts, answers filter-and-sort
    /// queries, reopens, checks the answers are unchanged, and reports.
    #[command(after_help = EXIT_CODES)]
    Demo {
        /// Work in this directory (created; it must not hold a store)
        /// instead of a new one under the system's temporary directory.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Documents in the catalogue.
        #[arg(long, default_value_t = 1_000_000)]
        docs: u32,
        /// Keep the store afterwards (`silo stats DIR` then shows what the
        /// report says).
        #[arg(long)]
        keep: bool,
    },
    /// Shards, keys, live, dead and log bytes, pending operations,
    /// compactions, format version, open files and maps.
    #[command(after_help = EXIT_CODES)]
    Stats {
        /// The store.
        dir: PathBuf,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Checks every checksum (log frames, headers and manifests at open,
    /// every record of every data file), each shard's index against its
    /// data, and an index's bitmaps, sort layers and alive bitmap against
    /// its documents. Read-only: it changes no byte, and works beside other
    /// read-only opens and beside a writer in another process (it checks
    /// the state the store was in when it opened). Exit 0 only if all is
    /// well; otherwise each
    /// problem is listed with its file and byte offset, and the exit code
    /// is 1.
    #[command(after_help = EXIT_CODES)]
    Verify {
        /// The store.
        dir: PathBuf,
    },
    /// Salvages a store that no longer opens: every record and logged
    /// operation whose checksum holds (the index files are not needed),
    /// written into a new store at OUT with a new index. DIR is never
    /// changed. Each stretch that could not be saved is listed with its
    /// file, byte offset and length; the exit code is 1 if there is one,
    /// 0 if nothing was lost.
    #[command(after_help = EXIT_CODES)]
    Repair {
        /// The damaged store.
        dir: PathBuf,
        /// Where the new store goes (a new or empty directory).
        #[arg(long)]
        out: PathBuf,
    },
    /// Compacts every shard that has something to compact.
    #[command(after_help = EXIT_CODES)]
    Compact {
        /// The store.
        dir: PathBuf,
        /// Also rewrite the data files to reclaim dead space (a cold
        /// compaction).
        #[arg(long)]
        cold: bool,
        /// Shards compacted at once (default: the engine's choice).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Writes a consistent copy of the store to DEST (a new directory).
    #[command(after_help = EXIT_CODES)]
    Checkpoint {
        /// The store.
        dir: PathBuf,
        /// Where the copy goes; must not exist or be empty.
        dest: PathBuf,
    },
    /// Prints the value of KEY (an index: document KEY, as JSON).
    #[command(after_help = EXIT_CODES)]
    Get {
        /// The store.
        dir: PathBuf,
        /// A key: decimal, or hex with 0x.
        key: String,
    },
    /// Sets KEY to VALUE (an index: upserts document KEY from a JSON
    /// object of its fields). Creates a plain store if DIR holds none.
    #[command(after_help = EXIT_CODES)]
    Put {
        /// The store.
        dir: PathBuf,
        /// A key: decimal, or hex with 0x.
        key: String,
        /// The value (UTF-8 text), or for an index a JSON object.
        value: String,
    },
    /// Deletes KEY (an index: document KEY, with its bitmap bits).
    #[command(after_help = EXIT_CODES)]
    Del {
        /// The store.
        dir: PathBuf,
        /// A key: decimal, or hex with 0x.
        key: String,
    },
    /// Writes the store to standard output as JSON lines: a header line,
    /// then one line per key (`{"key":K,"value":"text"}` or
    /// `{"key":K,"hex":"..."}`), or for an index one line per document
    /// in the import format. `silo load` reads it back.
    #[command(after_help = EXIT_CODES)]
    Dump {
        /// The store.
        dir: PathBuf,
    },
    /// Loads a dump (see `silo dump`) into DIR, which must hold no store.
    #[command(after_help = EXIT_CODES)]
    Load {
        /// The new store.
        dir: PathBuf,
        /// The dump.
        file: PathBuf,
    },
    /// Imports documents from JSON lines into the index in DIR (created
    /// with SCHEMA if new): every line is checked first (a bad line names
    /// itself and nothing is written), then the documents are written.
    #[command(after_help = EXIT_CODES)]
    Import {
        /// The index.
        dir: PathBuf,
        /// One JSON object per line, with an "id" (0 to 2^32-1) and
        /// schema fields.
        file: PathBuf,
        /// The schema, in TOML: one `[[field]]` table per field with `name`,
        /// `type` (i64, u64, f64, bool, str, tags) and optional `filter`
        /// and `sort` (true/false).
        #[arg(long)]
        schema: PathBuf,
        /// Threads parsing and writing.
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// Asks the index in DIR for the documents matching FILTER.
    ///
    /// FILTER: tests joined by `and`, `or`, `not` and parentheses (`and`
    /// binds tighter than `or`). A test is `FIELD = VALUE`, `FIELD !=
    /// VALUE`, `FIELD in (V1, V2, ...)`, `FIELD not in (...)` on filter
    /// fields, `FIELD < VALUE` (or <=, >, >=) on sort fields, or `all`.
    /// Values take their field's type; quote strings with spaces or
    /// symbols ("dark blue"). Example: 'tags = 5 and user = 3'.
    #[command(after_help = EXIT_CODES)]
    Query {
        /// The index.
        dir: PathBuf,
        /// The filter (see above).
        filter: String,
        /// Sort by this sort field (default: document id order).
        #[arg(long)]
        sort: Option<String>,
        /// Sort descending (with --sort).
        #[arg(long, requires = "sort")]
        desc: bool,
        /// At most this many documents.
        #[arg(long, default_value_t = 10)]
        limit: usize,
        /// Print only the count of matching documents.
        #[arg(long, conflicts_with_all = ["sort", "desc"])]
        count: bool,
    },
}

fn run(verb: Verb) -> Outcome {
    match verb {
        Verb::Demo { dir, docs, keep } => demo::run(dir, docs, keep),
        Verb::Stats { dir, json } => admin::stats(&dir, json),
        Verb::Verify { dir } => check::verify(&dir),
        Verb::Repair { dir, out } => check::repair(&dir, &out),
        Verb::Compact { dir, cold, threads } => admin::compact(&dir, cold, threads),
        Verb::Checkpoint { dir, dest } => admin::checkpoint(&dir, &dest),
        Verb::Get { dir, key } => kv::get(&dir, &key),
        Verb::Put { dir, key, value } => kv::put(&dir, &key, &value),
        Verb::Del { dir, key } => kv::del(&dir, &key),
        Verb::Dump { dir } => dump::dump(&dir),
        Verb::Load { dir, file } => dump::load(&dir, &file),
        Verb::Import {
            dir,
            file,
            schema,
            threads,
        } => search::import(&dir, &file, &schema, threads),
        Verb::Query {
            dir,
            filter,
            sort,
            desc,
            limit,
            count,
        } => search::query(&dir, &filter, sort.as_deref(), desc, limit, count),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { code::USAGE } else { 0 });
        }
    };
    match run(cli.verb) {
        Ok(()) => ExitCode::SUCCESS,
        Err(fail) => {
            eprintln!("silo: {fail}");
            ExitCode::from(fail.code)
        }
    }
}
