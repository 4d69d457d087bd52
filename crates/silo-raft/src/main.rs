//! The `silo-raft` command: run one node of a replicated silo store, or
//! send a client call to one.
//!
//! ```text
//! silo-raft --id 1 --dir d1 --listen 127.0.0.1:7001 --peers 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003 [--schema schema.toml]
//! silo-raft client 127.0.0.1:7001 init 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003
//! silo-raft client 127.0.0.1:7001 put 7 hello | get 7 | get-local 7 | delete 7 | status | digest
//! silo-raft client 127.0.0.1:7001 upsert 3 '{"color":"red"}' | patch 3 '{"tags":[4]}' | delete-doc 3 | get-doc 3
//! silo-raft client 127.0.0.1:7001 query 'color = "red"' [LIMIT] | count 'color = "red"'
//! silo-raft client 127.0.0.1:7001 add-learner 4 127.0.0.1:7004 | change-membership 1,2,3,4
//! silo-raft bench 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 CLIENTS WRITES_PER_CLIENT [VALUE_LEN]
//! silo-raft bench-local DIR CLIENTS WRITES_PER_CLIENT [VALUE_LEN]
//! ```
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

use silo_raft::server::{NodeOptions, run};
use silo_raft::wire::{ClientRequest, client_call};
use silo_raft::{RaftStoreError, Result};

fn usage(msg: impl Into<String>) -> RaftStoreError {
    RaftStoreError::Usage(msg.into())
}

fn parse_u64(what: &str, s: &str) -> Result<u64> {
    s.parse()
        .map_err(|_| usage(format!("{what}: {s:?} is not a number")))
}

/// `1=addr,2=addr` as a map.
fn parse_peers(s: &str) -> Result<BTreeMap<u64, String>> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (id, addr) = p
                .split_once('=')
                .ok_or_else(|| usage(format!("peer {p:?} is not id=address")))?;
            Ok((parse_u64("peer id", id)?, addr.to_owned()))
        })
        .collect()
}

fn node_options(args: &[String]) -> Result<NodeOptions> {
    let mut id = None;
    let mut dir = None;
    let mut listen = None;
    let mut peers = BTreeMap::new();
    let mut snapshot_logs = 1000;
    let mut schema = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| usage(format!("{flag} needs a value")))?;
        match flag.as_str() {
            "--id" => id = Some(parse_u64("--id", value)?),
            "--dir" => dir = Some(value.into()),
            "--listen" => listen = Some(value.clone()),
            "--peers" => peers = parse_peers(value)?,
            "--snapshot-logs" => snapshot_logs = parse_u64("--snapshot-logs", value)?,
            "--schema" => schema = Some(read_schema(value)?),
            other => return Err(usage(format!("unknown flag {other}"))),
        }
    }
    Ok(NodeOptions {
        id: id.ok_or_else(|| usage("--id is required"))?,
        dir: dir.ok_or_else(|| usage("--dir is required"))?,
        listen: listen.ok_or_else(|| usage("--listen is required"))?,
        peers,
        snapshot_logs,
        schema,
    })
}

/// The longest schema file read.
const MAX_SCHEMA_FILE: u64 = 1 << 20;

/// The index schema in the TOML file `path` (read through silo-io).
fn read_schema(path: &str) -> Result<silo_engine::Schema> {
    let file = silo_io::SiloFile::open_read(std::path::Path::new(path))?;
    let len = file.len()?;
    if len > MAX_SCHEMA_FILE {
        return Err(usage(format!(
            "--schema {path}: {len} bytes, at most {MAX_SCHEMA_FILE}"
        )));
    }
    let mut bytes = vec![0_u8; usize::try_from(len).unwrap_or(0)];
    file.read_exact_at(&mut bytes, 0)?;
    let text =
        String::from_utf8(bytes).map_err(|_| usage(format!("--schema {path}: not UTF-8 text")))?;
    Ok(silo_engine::Schema::from_toml(&text)?)
}

fn parse_doc(s: &str) -> Result<u32> {
    s.parse()
        .map_err(|_| usage(format!("document id: {s:?} is not a number below 2^32")))
}

fn parse_fields(s: &str) -> Result<silo_raft::documents::JsonFields> {
    serde_json::from_str(s).map_err(|e| usage(format!("fields: not a JSON object: {e}")))
}

fn client_request(args: &[String]) -> Result<ClientRequest> {
    let arg = |i: usize| {
        args.get(i)
            .map(String::as_str)
            .ok_or_else(|| usage("missing argument"))
    };
    Ok(match arg(0)? {
        "put" => ClientRequest::Put {
            key: parse_u64("key", arg(1)?)?,
            value: arg(2)?.as_bytes().to_vec(),
        },
        "get" | "get-local" => ClientRequest::Get {
            key: parse_u64("key", arg(1)?)?,
            linearizable: arg(0)? == "get",
        },
        "delete" => ClientRequest::Delete {
            key: parse_u64("key", arg(1)?)?,
        },
        "init" => ClientRequest::Init {
            members: parse_peers(arg(1)?)?,
        },
        "add-learner" => ClientRequest::AddLearner {
            id: parse_u64("id", arg(1)?)?,
            addr: arg(2)?.to_owned(),
        },
        "change-membership" => ClientRequest::ChangeMembership {
            voters: arg(1)?
                .split(',')
                .map(|s| parse_u64("voter", s))
                .collect::<Result<BTreeSet<u64>>>()?,
        },
        "upsert" => ClientRequest::UpsertDoc {
            doc: parse_doc(arg(1)?)?,
            fields: parse_fields(arg(2)?)?,
        },
        "patch" => ClientRequest::PatchDoc {
            doc: parse_doc(arg(1)?)?,
            fields: parse_fields(arg(2)?)?,
        },
        "delete-doc" => ClientRequest::DeleteDoc {
            doc: parse_doc(arg(1)?)?,
        },
        "get-doc" => ClientRequest::GetDoc {
            doc: parse_doc(arg(1)?)?,
            linearizable: true,
        },
        "query" => ClientRequest::Query {
            filter: arg(1)?.to_owned(),
            sort: None,
            descending: false,
            limit: match args.get(2) {
                Some(n) => usize::try_from(parse_u64("limit", n)?)
                    .map_err(|_| usage("limit: too large"))?,
                None => 100,
            },
            fields: Vec::new(),
            linearizable: true,
        },
        "count" => ClientRequest::Count {
            filter: arg(1)?.to_owned(),
            linearizable: true,
        },
        "status" => ClientRequest::Status,
        "digest" => ClientRequest::Digest,
        other => return Err(usage(format!("unknown client call {other}"))),
    })
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    let text = serde_json::to_string(value).map_err(|source| RaftStoreError::Encode {
        what: "output",
        source,
    })?;
    println!("{text}");
    Ok(())
}

fn bench_numbers(args: &[String]) -> Result<(usize, usize, usize)> {
    let n = |i: usize, default: Option<u64>| -> Result<usize> {
        let v = match (args.get(i), default) {
            (Some(s), _) => parse_u64("bench argument", s)?,
            (None, Some(d)) => d,
            (None, None) => return Err(usage("bench needs CLIENTS and WRITES_PER_CLIENT")),
        };
        usize::try_from(v).map_err(|_| usage("bench argument too large"))
    };
    Ok((n(0, None)?, n(1, None)?, n(2, Some(100))?))
}

async fn main_async(args: Vec<String>) -> Result<()> {
    if args.first().map(String::as_str) == Some("client") {
        let addr = args
            .get(1)
            .ok_or_else(|| usage("client needs an address"))?;
        let req = client_request(&args[2..])?;
        let reply = client_call(addr, req).await?;
        return print_json(&reply);
    }
    if args.first().map(String::as_str) == Some("bench") {
        // silo-raft bench ADDR,ADDR,.. CLIENTS WRITES_PER_CLIENT [VALUE_LEN]
        let addrs: Vec<String> = args
            .get(1)
            .ok_or_else(|| usage("bench needs the nodes' addresses"))?
            .split(',')
            .map(str::to_owned)
            .collect();
        let (clients, writes, value_len) = bench_numbers(&args[2..])?;
        let r = silo_raft::bench::replicated(&addrs, clients, writes, value_len).await?;
        return print_json(&r);
    }
    if args.first().map(String::as_str) == Some("bench-local") {
        // silo-raft bench-local DIR CLIENTS WRITES_PER_CLIENT [VALUE_LEN]
        let dir = args
            .get(1)
            .ok_or_else(|| usage("bench-local needs a directory"))?;
        let (clients, writes, value_len) = bench_numbers(&args[2..])?;
        let r = silo_raft::bench::local_sync(dir.as_ref(), clients, writes, value_len)?;
        return print_json(&r);
    }
    let opts = node_options(&args)?;
    run(opts).await
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("silo-raft: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(main_async(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("silo-raft: {e}");
            ExitCode::FAILURE
        }
    }
}
