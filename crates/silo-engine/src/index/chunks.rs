//! A lines file read in chunks of whole lines, and work run on the chunks
//! by many threads: one thread reads (sequentially, through silo-io), the
//! workers take chunks as they come. The results come back in file order;
//! an error is the one of the earliest failing chunk, so the line it names
//! is the first bad line whatever the threads did.

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam::channel;
use parking_lot::Mutex;

use crate::error::{EngineError, Result};

/// The longest line a chunk may hold: a longer one is an error, not an
/// allocation as large as the file.
pub const MAX_LINE_BYTES: usize = 64 << 20;

/// Whole lines of the input and where they start.
#[derive(Debug)]
pub(crate) struct Chunk {
    /// Its place among the chunks, from 0.
    pub(crate) index: usize,
    /// The number of its first line, from 1.
    pub(crate) first_line: u64,
    /// Its bytes: whole lines, each ended by a newline except perhaps the
    /// file's last.
    pub(crate) text: Vec<u8>,
}

impl Chunk {
    /// Its lines (without their newline) with their numbers, blank lines
    /// included.
    pub(crate) fn lines(&self) -> impl Iterator<Item = (u64, &[u8])> {
        let text = self.text.strip_suffix(b"\n").unwrap_or(&self.text);
        let lines = (!self.text.is_empty()).then(|| text.split(|b| *b == b'\n'));
        lines
            .into_iter()
            .flatten()
            .zip(self.first_line..)
            .map(|(l, n)| (n, l))
    }
}

/// Whether a line holds nothing but whitespace.
pub(crate) fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

fn unreadable(path: &Path, e: impl std::fmt::Display) -> EngineError {
    EngineError::Import {
        line: 0,
        reason: format!("reading {}: {e}", path.display()),
    }
}

/// A file opened through silo-io, read from start to end.
struct ReadFile(silo_io::SiloFile);

impl Read for ReadFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.as_std().read(buf)
    }
}

/// Reads `path` in chunks of about `chunk_bytes` of whole lines, giving each
/// to `each` in order until it returns `false`.
pub(crate) fn read_chunks(
    path: &Path,
    chunk_bytes: usize,
    mut each: impl FnMut(Chunk) -> bool,
) -> Result<()> {
    let chunk_bytes = chunk_bytes.max(1);
    let mut file = ReadFile(silo_io::SiloFile::open_read(path).map_err(|e| unreadable(path, e))?);
    let mut carry: Vec<u8> = Vec::new();
    let mut next_line = 1u64;
    for index in 0.. {
        let mut text = std::mem::take(&mut carry);
        let mut eof = false;
        // Read until the chunk holds a newline past `chunk_bytes`, or the
        // file ends.
        let mut want = chunk_bytes;
        let end = loop {
            if text.len() < want {
                let limit = (want - text.len()) as u64;
                let got = (&mut file)
                    .take(limit)
                    .read_to_end(&mut text)
                    .map_err(|e| unreadable(path, e))?;
                eof = got == 0 || (got as u64) < limit;
            }
            if eof {
                break text.len();
            }
            match text.iter().rposition(|b| *b == b'\n') {
                Some(at) => break at + 1,
                None if text.len() >= MAX_LINE_BYTES => {
                    return Err(EngineError::Import {
                        line: next_line,
                        reason: format!("longer than {MAX_LINE_BYTES} bytes"),
                    });
                }
                None => want = text.len() + chunk_bytes,
            }
        };
        carry = text.split_off(end);
        if text.is_empty() {
            return Ok(());
        }
        let first_line = next_line;
        next_line += text.iter().filter(|b| **b == b'\n').count() as u64;
        if !each(Chunk {
            index,
            first_line,
            text,
        }) || (eof && carry.is_empty())
        {
            return Ok(());
        }
    }
    Ok(())
}

/// Runs `work` on every chunk of `path` from `threads` threads and returns
/// the results in chunk order. On errors, chunks after the earliest failing
/// one are skipped and that chunk's error is returned.
pub(crate) fn run_chunks<R: Send>(
    path: &Path,
    chunk_bytes: usize,
    threads: usize,
    work: impl Fn(&Chunk) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let first_bad = AtomicUsize::new(usize::MAX);
    let results: Mutex<Vec<Option<R>>> = Mutex::new(Vec::new());
    let failure: Mutex<Option<(usize, EngineError)>> = Mutex::new(None);
    let fail = |index: usize, e: EngineError| {
        let mut f = failure.lock();
        if f.as_ref().is_none_or(|(at, _)| index < *at) {
            *f = Some((index, e));
        }
        first_bad.fetch_min(index, Ordering::SeqCst);
    };
    std::thread::scope(|s| {
        let (tx, rx) = channel::bounded::<Chunk>(threads.max(1));
        for _ in 0..threads.max(1) {
            let rx = rx.clone();
            let (work, fail, first_bad, results) = (&work, &fail, &first_bad, &results);
            s.spawn(move || {
                for chunk in rx {
                    if chunk.index > first_bad.load(Ordering::SeqCst) {
                        continue;
                    }
                    match work(&chunk) {
                        Ok(r) => {
                            let mut results = results.lock();
                            if results.len() <= chunk.index {
                                results.resize_with(chunk.index + 1, || None);
                            }
                            results[chunk.index] = Some(r);
                        }
                        Err(e) => fail(chunk.index, e),
                    }
                }
            });
        }
        drop(rx);
        let read = read_chunks(path, chunk_bytes, |chunk| {
            first_bad.load(Ordering::SeqCst) == usize::MAX && tx.send(chunk).is_ok()
        });
        drop(tx);
        if let Err(e) = read {
            fail(usize::MAX - 1, e);
        }
    });
    if let Some((_, e)) = failure.into_inner() {
        return Err(e);
    }
    results
        .into_inner()
        .into_iter()
        .map(|r| {
            r.ok_or_else(|| EngineError::Import {
                line: 0,
                reason: "an import worker stopped before its chunk was done".to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks_of(text: &str, chunk_bytes: usize) -> Vec<(usize, u64, String)> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in");
        std::fs::write(&path, text).unwrap();
        let mut out = Vec::new();
        read_chunks(&path, chunk_bytes, |c| {
            out.push((
                c.index,
                c.first_line,
                String::from_utf8(c.text.clone()).unwrap(),
            ));
            true
        })
        .unwrap();
        out
    }

    #[test]
    fn chunks_hold_whole_lines_and_number_them() {
        let text = "a\nbb\n\nccc\ndddd";
        for size in 1..20 {
            let chunks = chunks_of(text, size);
            let joined: String = chunks.iter().map(|(_, _, t)| t.as_str()).collect();
            assert_eq!(joined, text, "size {size}");
            let mut line = 1;
            for (i, (index, first, t)) in chunks.iter().enumerate() {
                assert_eq!(*index, i);
                assert_eq!(*first, line, "size {size}");
                assert!(i + 1 == chunks.len() || t.ends_with('\n'), "size {size}");
                line += t.matches('\n').count() as u64;
            }
        }
        assert!(chunks_of("", 4).is_empty());
        let c = Chunk {
            index: 0,
            first_line: 7,
            text: b"x\n\ny\n".to_vec(),
        };
        let lines: Vec<(u64, &[u8])> = c.lines().collect();
        assert_eq!(lines, vec![(7, &b"x"[..]), (8, &b""[..]), (9, &b"y"[..])]);
        assert!(is_blank(b" \t\r") && !is_blank(b" x"));
    }

    #[test]
    fn results_come_in_order_and_the_earliest_error_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in");
        let text: String = (0..500).map(|i| format!("{i}\n")).collect();
        std::fs::write(&path, &text).unwrap();
        let firsts = run_chunks(&path, 16, 3, |c| Ok(c.first_line)).unwrap();
        assert!(firsts.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(firsts[0], 1);
        let err = run_chunks(&path, 16, 3, |c| {
            match c.lines().find(|(_, l)| *l == b"250" || *l == b"400") {
                Some((n, _)) => Err(EngineError::Import {
                    line: n,
                    reason: "bad".into(),
                }),
                None => Ok(()),
            }
        })
        .unwrap_err();
        assert!(
            matches!(err, EngineError::Import { line: 251, .. }),
            "{err:?}"
        );
        assert!(matches!(
            run_chunks(&dir.path().join("none"), 16, 2, |_| Ok(())),
            Err(EngineError::Import { line: 0, .. })
        ));
    }
}
