//! gzip on every core: the stream is cut into pieces, each compressed on its own into a gzip
//! member, and the members are written in order. A gzip file may hold several members (RFC
//! 1952, 2.2) and readers of image layers (Go's compress/gzip, pgzip, zlib's gunzip, Python's
//! gzip) read them as one stream. The layer is compressed after the compile, when the cores are
//! idle; the bytes depend on the input alone, never on the number of cores.
//!
//! The cuts are where the content says (FastCDC), not at fixed offsets: a rebuilt kernel's
//! layer holds mostly the bytes of the last one (kernel-dev.tar's headers, the modules that did
//! not change), at other offsets once any file before them changed size. Cut by content, those
//! bytes give the same pieces again, and a piece compressed before is found in a memo
//! ([`Remember`]) instead of being compressed again: a one-option rebuild compresses the few
//! pieces around what changed.

use std::io::Write;

use rayon::prelude::*;

use crate::digest::Digest;

/// Piece sizes: big enough that the 32 KiB window lost at each cut costs little, and that the
/// members of a layer are few files in the memo.
const MIN: usize = 256 << 10;
const AVG: usize = 1 << 20;
const MAX: usize = 4 << 20;
/// Bytes held before cutting: enough pieces for every core, few enough to bound the memory.
const BATCH: usize = 16 << 20;

/// Members compressed before, found again by what they hold.
pub trait Remember: Sync {
    /// The member kept under `key`, if any. It is checked against its piece before use.
    fn recall(&self, key: &Digest) -> Option<Vec<u8>>;
    /// Keeps `member` under `key`; a failure only means compressing it again next time.
    fn keep(&self, key: &Digest, member: &[u8]);
}

/// A memo and what names the code that fills it: members of another compressor, or of another
/// level, are other bytes for the same piece and must not be found.
#[derive(Clone, Copy)]
struct Memo<'m> {
    store: &'m dyn Remember,
    salt: Digest,
}

/// How many pieces a stream was cut into, and how many of their members the memo gave.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pieces {
    pub cut: usize,
    pub recalled: usize,
}

pub struct ParallelGzip<'m, W: Write> {
    inner: W,
    level: flate2::Compression,
    memo: Option<Memo<'m>>,
    pieces: Pieces,
    /// Bytes not yet cut into pieces.
    pending: Vec<u8>,
    /// Whether a member was written: an empty input still gives one (empty) member.
    wrote: bool,
}

impl<'m, W: Write> ParallelGzip<'m, W> {
    pub fn new(inner: W, level: flate2::Compression) -> ParallelGzip<'m, W> {
        ParallelGzip {
            inner,
            level,
            memo: None,
            pieces: Pieces::default(),
            pending: Vec::with_capacity(BATCH + MAX),
            wrote: false,
        }
    }

    /// Looks each piece up in `store` before compressing it, and keeps what it compresses
    /// there. `salt` names the compressing code (the layer kind's recipe code).
    pub fn remembering(mut self, store: &'m dyn Remember, salt: Digest) -> ParallelGzip<'m, W> {
        self.memo = Some(Memo { store, salt });
        self
    }

    /// Compresses what is left and hands back the writer, with the count of pieces.
    pub fn finish(mut self) -> std::io::Result<(W, Pieces)> {
        self.cut(true)?;
        Ok((self.inner, self.pieces))
    }

    /// Cuts the pending bytes into pieces and writes their members. A piece is cut only once
    /// `MAX` bytes after its start are known (or the stream has ended): FastCDC looks that far,
    /// so where the stream was split by writes never moves a cut.
    fn cut(&mut self, end: bool) -> std::io::Result<()> {
        let chunker = fastcdc::v2020::FastCDC::new(&self.pending, MIN, AVG, MAX);
        let mut pieces = Vec::new();
        let mut at = 0;
        while at < self.pending.len() && (end || self.pending.len() - at >= MAX) {
            let (_, next) = chunker.cut(at, self.pending.len() - at);
            pieces.push(at..next);
            at = next;
        }
        if end && !self.wrote && pieces.is_empty() {
            pieces.push(0..0);
        }
        let (level, memo, pending) = (self.level, self.memo, &self.pending);
        let members: Vec<std::io::Result<(Vec<u8>, bool)>> = pieces
            .par_iter()
            .map(|r| member_of(&pending[r.clone()], level, memo))
            .collect();
        for m in members {
            let (member, recalled) = m?;
            self.inner.write_all(&member)?;
            self.pieces.cut += 1;
            self.pieces.recalled += usize::from(recalled);
        }
        self.wrote |= !pieces.is_empty();
        self.pending.drain(..at);
        Ok(())
    }
}

/// The member of `piece`, and whether it was remembered (else compressed, and remembered).
fn member_of(
    piece: &[u8],
    level: flate2::Compression,
    memo: Option<Memo>,
) -> std::io::Result<(Vec<u8>, bool)> {
    let Some(memo) = memo else {
        return Ok((member(piece, level)?, false));
    };
    let mut key = blake3::Hasher::new();
    key.update(b"kbuild gzip member\0");
    key.update(memo.salt.as_bytes());
    key.update(&level.level().to_le_bytes());
    key.update(piece);
    let key = Digest::from_bytes(*key.finalize().as_bytes());
    if let Some(kept) = memo.store.recall(&key).filter(|m| holds(m, piece)) {
        return Ok((kept, true));
    }
    let fresh = member(piece, level)?;
    memo.store.keep(&key, &fresh);
    Ok((fresh, false))
}

/// Whether `member` is one of ours for `piece`: our header, and a trailer with the piece's
/// CRC-32 and length (RFC 1952, 2.3.1). What lies between is the memo's to vouch for.
fn holds(member: &[u8], piece: &[u8]) -> bool {
    const HEADER: [u8; 4] = [0x1f, 0x8b, 8, 0];
    let Some(trailer) = member.len().checked_sub(8).map(|at| &member[at..]) else {
        return false;
    };
    let mut crc = flate2::Crc::new();
    crc.update(piece);
    member.starts_with(&HEADER)
        && trailer[..4] == crc.sum().to_le_bytes()
        && trailer[4..] == (piece.len() as u32).to_le_bytes()
}

/// One gzip member without a name or a time, as every layer byte must be reproducible.
fn member(piece: &[u8], level: flate2::Compression) -> std::io::Result<Vec<u8>> {
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::with_capacity(piece.len() / 2 + 64), level);
    gz.write_all(piece)?;
    gz.finish()
}

impl<W: Write> Write for ParallelGzip<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        if self.pending.len() >= BATCH + MAX {
            self.cut(false)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::Read;
    use std::sync::Mutex;

    fn gzip_in(data: &[u8], part: usize, memo: Option<&dyn Remember>) -> Vec<u8> {
        counted(data, part, memo).0
    }

    fn counted(data: &[u8], part: usize, memo: Option<&dyn Remember>) -> (Vec<u8>, Pieces) {
        let mut gz = ParallelGzip::new(Vec::new(), flate2::Compression::fast());
        if let Some(memo) = memo {
            gz = gz.remembering(memo, Digest::of_bytes(b"test"));
        }
        for part in data.chunks(part.max(1)) {
            gz.write_all(part).unwrap();
        }
        let (packed, pieces) = gz.finish().unwrap();
        (packed, pieces)
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        gzip_in(data, 7919, None)
    }

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    /// Bytes with no period, compressible like text: FastCDC finds cuts in them.
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..len)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                b'a' + ((x >> 59) as u8 % 16)
            })
            .collect()
    }

    /// A memo in memory.
    #[derive(Default)]
    struct InMemory(Mutex<HashMap<Digest, Vec<u8>>>);

    impl Remember for InMemory {
        fn recall(&self, key: &Digest) -> Option<Vec<u8>> {
            self.0.lock().unwrap().get(key).cloned()
        }
        fn keep(&self, key: &Digest, member: &[u8]) {
            self.0.lock().unwrap().insert(*key, member.to_vec());
        }
    }

    #[test]
    fn every_size_comes_back_whole_and_the_same_each_time() {
        let data: Vec<u8> = (0..(3 * BATCH / 2 + 12345))
            .map(|i| (i % 251) as u8 ^ (i / 4093) as u8)
            .collect();
        for len in [
            0,
            1,
            MIN - 1,
            MIN + 1,
            MAX,
            MAX + 1,
            BATCH + MAX,
            data.len(),
        ] {
            let packed = gzip(&data[..len]);
            assert_eq!(gunzip(&packed), &data[..len], "{len} bytes");
            assert_eq!(packed, gzip(&data[..len]), "{len} bytes, twice");
        }
    }

    #[test]
    fn how_the_stream_was_written_never_moves_a_cut() {
        let data = noise(BATCH + 3 * MAX + 777, 1);
        let whole = gzip_in(&data, data.len(), None);
        for part in [1 << 10, 7919, MAX - 1, BATCH] {
            assert_eq!(
                gzip_in(&data, part, None),
                whole,
                "written {part} bytes at a time"
            );
        }
        assert_eq!(gunzip(&whole), data);
    }

    #[test]
    fn bytes_seen_before_at_other_offsets_are_recalled_not_compressed() {
        let memo = InMemory::default();
        let data = noise(12 * AVG, 2);
        let (first, pieces) = counted(&data, 7919, Some(&memo));
        assert_eq!(first, gzip(&data), "the memo changes no byte");
        assert!(pieces.cut >= 6 && pieces.recalled == 0, "{pieces:?}");
        // A file before the others grew: every later byte moved.
        let mut moved = noise(1000, 3);
        moved.extend_from_slice(&data);
        let (second, again) = counted(&moved, 7919, Some(&memo));
        assert_eq!(second, gzip(&moved), "a recalled member is the member");
        assert_eq!(gunzip(&second), moved);
        assert!(
            again.cut - again.recalled <= 2,
            "{again:?} after {pieces:?}"
        );
    }

    #[test]
    fn a_member_that_is_not_the_pieces_is_compressed_again() {
        let memo = InMemory::default();
        let data = noise(3 * AVG, 4);
        let right = gzip_in(&data, 7919, Some(&memo));
        // Every kept member swapped for another piece's, or for bytes that are no member.
        let other = member(b"other", flate2::Compression::fast()).unwrap();
        for bad in [other, b"junk".to_vec()] {
            for m in memo.0.lock().unwrap().values_mut() {
                *m = bad.clone();
            }
            let (packed, pieces) = counted(&data, 7919, Some(&memo));
            assert_eq!(packed, right);
            assert_eq!(pieces.recalled, 0);
        }
    }

    #[test]
    fn gzip_itself_reads_the_members_as_one_stream() {
        let data = noise(2 * MAX + 99, 5);
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
