//! gzip on every core: the stream is cut into fixed-size pieces, each compressed on its own
//! into a gzip member, and the members are written in order. A gzip file may hold several
//! members (RFC 1952, 2.2) and readers of image layers (Go's compress/gzip, pgzip, zlib's
//! gunzip, Python's gzip) read them as one stream. The layer is compressed after the compile,
//! when the cores are idle; the bytes depend on the input alone, never on the number of cores.

use std::io::Write;

use rayon::prelude::*;

/// The bytes of one member: big enough that the 32 KiB window lost at each cut costs little.
const PIECE: usize = 1 << 20;
/// Pieces compressed at once: enough for every core, few enough to bound the memory held.
const BATCH: usize = 16;

pub struct ParallelGzip<W: Write> {
    inner: W,
    level: flate2::Compression,
    /// Full pieces waiting for a batch.
    full: Vec<Vec<u8>>,
    piece: Vec<u8>,
    /// Whether a member was written: an empty input still gives one (empty) member.
    wrote: bool,
}

impl<W: Write> ParallelGzip<W> {
    pub fn new(inner: W, level: flate2::Compression) -> ParallelGzip<W> {
        ParallelGzip {
            inner,
            level,
            full: Vec::with_capacity(BATCH),
            piece: Vec::with_capacity(PIECE),
            wrote: false,
        }
    }

    /// Compresses what is left and hands back the writer.
    pub fn finish(mut self) -> std::io::Result<W> {
        if !self.piece.is_empty() || !self.wrote {
            let last = std::mem::take(&mut self.piece);
            self.full.push(last);
        }
        self.compress_full()?;
        Ok(self.inner)
    }

    fn compress_full(&mut self) -> std::io::Result<()> {
        let level = self.level;
        let members: Vec<std::io::Result<Vec<u8>>> =
            self.full.par_iter().map(|p| member(p, level)).collect();
        for m in members {
            self.inner.write_all(&m?)?;
        }
        self.wrote |= !self.full.is_empty();
        self.full.clear();
        Ok(())
    }
}

/// One gzip member without a name or a time, as every layer byte must be reproducible.
fn member(piece: &[u8], level: flate2::Compression) -> std::io::Result<Vec<u8>> {
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::with_capacity(piece.len() / 2 + 64), level);
    gz.write_all(piece)?;
    gz.finish()
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len().min(PIECE - self.piece.len());
        self.piece.extend_from_slice(&buf[..n]);
        if self.piece.len() == PIECE {
            let full = std::mem::replace(&mut self.piece, Vec::with_capacity(PIECE));
            self.full.push(full);
            if self.full.len() == BATCH {
                self.compress_full()?;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut gz = ParallelGzip::new(Vec::new(), flate2::Compression::fast());
        for part in data.chunks(7919) {
            gz.write_all(part).unwrap();
        }
        gz.finish().unwrap()
    }

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn every_size_comes_back_whole_and_the_same_each_time() {
        let data: Vec<u8> = (0..(3 * PIECE * BATCH / 2 + 12345))
            .map(|i| (i % 251) as u8 ^ (i / 4093) as u8)
            .collect();
        for len in [0, 1, PIECE - 1, PIECE, PIECE + 1, PIECE * BATCH, data.len()] {
            let packed = gzip(&data[..len]);
            assert_eq!(gunzip(&packed), &data[..len], "{len} bytes");
            assert_eq!(packed, gzip(&data[..len]), "{len} bytes, twice");
        }
    }

    #[test]
    fn gzip_itself_reads_the_members_as_one_stream() {
        let data: Vec<u8> = (0..(2 * PIECE + 99)).map(|i| (i % 97) as u8).collect();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("layer.gz");
        std::fs::write(&file, gzip(&data)).unwrap();
        let out = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(&file)
            .output()
            .expect("gzip runs");
        assert!(out.status.success());
        assert_eq!(out.stdout, data);
    }
}
