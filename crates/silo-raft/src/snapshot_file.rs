//! [`SnapshotFile`]: openraft's snapshot data type, a snapshot archive file
//! read and written at a cursor through silo-io (never held in memory).

use std::io::SeekFrom;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use silo_io::SiloFile;
use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

/// Largest read or write done in one poll.
const MAX_IO: usize = 1 << 20;

/// A snapshot archive file with a cursor: what openraft streams to a
/// follower (read) and what a follower receives chunks into (write at an
/// offset). Reads and writes are positional calls through `SiloFile`,
/// done inline in the poll (a local file, like openraft's own examples).
#[derive(Debug)]
pub struct SnapshotFile {
    file: SiloFile,
    pos: u64,
}

impl SnapshotFile {
    /// Opens the archive at `path` for reading.
    pub fn open_read(path: &Path) -> Result<SnapshotFile, silo_io::IoError> {
        Ok(SnapshotFile {
            file: SiloFile::open_read(path)?,
            pos: 0,
        })
    }

    /// Creates a new, empty file at `path` to receive an archive.
    pub fn create_new(path: &Path) -> Result<SnapshotFile, silo_io::IoError> {
        Ok(SnapshotFile {
            file: SiloFile::create_new(path)?,
            pos: 0,
        })
    }

    /// The file.
    pub fn file(&self) -> &SiloFile {
        &self.file
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

fn io_err(e: silo_io::IoError) -> std::io::Error {
    std::io::Error::other(e)
}

impl AsyncRead for SnapshotFile {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let len = match this.file.len() {
            Ok(len) => len,
            Err(e) => return Poll::Ready(Err(io_err(e))),
        };
        let left = len.saturating_sub(this.pos);
        let n = usize::try_from(left)
            .unwrap_or(usize::MAX)
            .min(buf.remaining())
            .min(MAX_IO);
        if n == 0 {
            return Poll::Ready(Ok(()));
        }
        let dst = buf.initialize_unfilled_to(n);
        if let Err(e) = this.file.read_exact_at(dst, this.pos) {
            return Poll::Ready(Err(io_err(e)));
        }
        buf.advance(n);
        this.pos += n as u64;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for SnapshotFile {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let n = buf.len().min(MAX_IO);
        if let Err(e) = this.file.write_all_at(&buf[..n], this.pos) {
            return Poll::Ready(Err(io_err(e)));
        }
        this.pos += n as u64;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(self.file.sync_data().map_err(io_err))
    }
}

impl AsyncSeek for SnapshotFile {
    fn start_seek(self: Pin<&mut Self>, position: SeekFrom) -> std::io::Result<()> {
        let this = self.get_mut();
        let base = match position {
            SeekFrom::Start(n) => {
                this.pos = n;
                return Ok(());
            }
            SeekFrom::Current(d) => (this.pos, d),
            SeekFrom::End(d) => (this.file.len().map_err(io_err)?, d),
        };
        this.pos = base.0.checked_add_signed(base.1).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "seek to a negative or overflowing position",
            )
        })?;
        Ok(())
    }

    fn poll_complete(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<u64>> {
        Poll::Ready(Ok(self.pos))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

    use super::*;

    /// Chunks written at their offsets (as openraft's receiver does) read
    /// back whole from the start.
    #[tokio::test]
    async fn writes_at_offsets_and_reads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("recv");
        let mut f = SnapshotFile::create_new(&path).expect("create");
        f.seek(SeekFrom::Start(5)).await.expect("seek");
        f.write_all(b"world").await.expect("write");
        f.seek(SeekFrom::Start(0)).await.expect("seek");
        f.write_all(b"hello").await.expect("write");
        f.shutdown().await.expect("sync");
        assert_eq!(f.seek(SeekFrom::End(-3)).await.expect("seek"), 7);
        assert!(f.seek(SeekFrom::Current(-100)).await.is_err());
        let mut r = SnapshotFile::open_read(&path).expect("open");
        let mut all = Vec::new();
        r.read_to_end(&mut all).await.expect("read");
        assert_eq!(all, b"helloworld");
        // At the end a read returns nothing.
        let mut more = [0_u8; 4];
        assert_eq!(r.read(&mut more).await.expect("read"), 0);
    }
}
