//! `import` and `query`: the index from the command line.

use std::path::Path;
use std::time::Instant;

use silo_engine::{Filter, ImportOptions, Order, Query, Schema};

use crate::fail::{Fail, Outcome};
use crate::store::{self, Store};

pub(crate) fn import(dir: &Path, file: &Path, schema: &Path, threads: usize) -> Outcome {
    if threads == 0 {
        return Err(Fail::input("--threads must be at least 1"));
    }
    let text = std::fs::read_to_string(schema)
        .map_err(|e| Fail::input(format!("{}: {e}", schema.display())))?;
    let schema =
        Schema::from_toml(&text).map_err(|e| Fail::input(format!("{}: {e}", schema.display())))?;
    if !file.is_file() {
        return Err(Fail::input(format!("{} is not a file", file.display())));
    }
    let index = store::open_index(dir, schema)?;
    let t = Instant::now();
    let report = index
        .import_json_lines_with(file, ImportOptions::threads(threads))
        .map_err(|e| match e {
            silo_engine::EngineError::Import { line, reason } => Fail::input(format!(
                "{}, line {line}: {reason} (nothing was imported)",
                file.display()
            )),
            e => Fail::engine(dir, e),
        })?;
    let took = t.elapsed();
    index.close().map_err(|e| Fail::engine(dir, e))?;
    println!(
        "imported {} documents ({} replacing earlier ones, {} lines superseded by a later line with the same id) in {:.2?}: {:.0} documents/s",
        report.documents - report.superseded,
        report.replaced,
        report.superseded,
        took,
        report.documents as f64 / took.as_secs_f64().max(1e-9)
    );
    Ok(())
}

pub(crate) fn query(
    dir: &Path,
    filter: &str,
    sort: Option<&str>,
    desc: bool,
    limit: usize,
    count: bool,
) -> Outcome {
    let store = store::open_existing(dir)?;
    let Store::Index(index) = &store else {
        return Err(Fail::input(format!(
            "{} is a plain key-value store, not an index; `silo get` reads its keys",
            dir.display()
        )));
    };
    let f = Filter::parse(filter, index.schema()).map_err(|e| match e {
        silo_engine::EngineError::QuerySyntax { column, reason } => {
            Fail::input(format!("query, column {column}: {reason} (in `{filter}`)"))
        }
        e => Fail::engine(dir, e),
    })?;
    if count {
        println!("{}", index.count(&f).map_err(|e| Fail::engine(dir, e))?);
        return store.close(dir);
    }
    let mut q = Query::new(f, limit);
    if let Some(field) = sort {
        let order = if desc {
            Order::Descending
        } else {
            Order::Ascending
        };
        q = q.sorted_by(field, order);
    }
    let names: Vec<&str> = index
        .schema()
        .fields
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    let q = q.with_fields(&names);
    let result = index.query(&q).map_err(|e| Fail::engine(dir, e))?;
    for hit in &result.hits {
        let doc = names
            .iter()
            .zip(&hit.fields)
            .filter_map(|(n, v)| v.clone().map(|v| ((*n).to_owned(), v)))
            .collect();
        println!("{}", crate::json::document(hit.doc, &doc)?);
    }
    store.close(dir)
}
