//! What the last execution of an action took, read from the end of its log: how views estimate
//! progress and time left. The engine ends every successful log with one trailer line.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// How long an execution took and how many lines it wrote to its log.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Expected {
    pub seconds: f64,
    pub lines: u64,
}

const PREFIX: &str = "# kbuild: done in ";

/// The trailer line of a log whose execution took `seconds` and wrote `lines` lines.
pub fn trailer(seconds: f64, lines: u64) -> String {
    format!("{PREFIX}{seconds:.3}s, {lines} lines\n")
}

/// The trailer at the end of the log at `path`, if the execution that wrote it succeeded.
pub fn read(path: &Path) -> Option<Expected> {
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    // The trailer is the last line: reading the tail is enough, however long the log.
    file.seek(SeekFrom::Start(len.saturating_sub(256))).ok()?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).ok()?;
    let tail = String::from_utf8_lossy(&tail);
    parse(tail.trim_end().lines().last()?)
}

fn parse(line: &str) -> Option<Expected> {
    let rest = line.strip_prefix(PREFIX)?;
    let (seconds, rest) = rest.split_once("s, ")?;
    let lines = rest.strip_suffix(" lines")?;
    Some(Expected {
        seconds: seconds.parse().ok()?,
        lines: lines.parse().ok()?,
    })
}

/// Newlines in the log at `path`: the lines written so far.
pub fn count_lines(path: &Path) -> u64 {
    std::fs::read(path).map_or(0, |bytes| bytecount(&bytes, 0))
}

/// Newlines in `bytes`, added to `start`.
pub fn bytecount(bytes: &[u8], start: u64) -> u64 {
    start + bytes.iter().filter(|b| **b == b'\n').count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailer_round_trips_at_the_end_of_a_long_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.log");
        let mut text = "  CC      drivers/x.o\n".repeat(1000);
        text.push_str(&trailer(123.4567, 1000));
        std::fs::write(&log, text).unwrap();
        assert_eq!(
            read(&log),
            Some(Expected {
                seconds: 123.457,
                lines: 1000
            })
        );
    }

    #[test]
    fn a_log_without_trailer_says_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.log");
        std::fs::write(&log, "# header\nkbuild: make failed\n").unwrap();
        assert_eq!(read(&log), None);
        assert_eq!(read(&dir.path().join("missing.log")), None);
        assert_eq!(count_lines(&log), 2);
    }
}
