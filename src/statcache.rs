//! Remembered file digests and tool versions, trusted while a file's stat data is unchanged.
//!
//! Mtimes never enter a key; here they only decide whether a file must be hashed again, as in
//! git's index. A file changed within the last two seconds is not remembered (a write in the same
//! timestamp tick would otherwise go unseen).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::saved::State;

/// The stat data that says a file is still the one that was hashed.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Stamp {
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    pub ino: u64,
}

impl Stamp {
    pub fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            size: meta.len(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            ctime_ns: meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
            ino: meta.ino(),
        }
    }

    fn settled(&self) -> bool {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        now - self.mtime_ns.max(self.ctime_ns) > 2_000_000_000
    }
}

#[derive(Default, Debug, Serialize, Deserialize)]
struct Stored {
    files: HashMap<PathBuf, (Stamp, Digest)>,
    /// Answers of a program to one question (`gcc -print-prog-name=cc1`), by program and question.
    #[serde(default)]
    probes: HashMap<String, (Stamp, String)>,
}

/// The stat cache of one pass over the graph; loaded once, saved if anything new was learnt.
#[derive(Debug)]
pub struct StatCache {
    cache_root: PathBuf,
    stored: Stored,
    dirty: bool,
    /// The host programs found in this pass, by name (never saved: `PATH` and the files on it
    /// are looked at again by the next pass).
    programs: HashMap<String, crate::exec::Program>,
    /// Where `PATH` found each program in this pass.
    found: HashMap<String, Option<PathBuf>>,
}

impl StatCache {
    /// The stat cache of the cache at `cache_root` (binary: read on the path of every plan,
    /// where JSON took a millisecond).
    pub fn open(cache_root: &Path) -> Result<StatCache, crate::saved::NewerState> {
        let stored = crate::saved::load(cache_root, State::Stat)?.unwrap_or_default();
        Ok(StatCache {
            cache_root: cache_root.to_path_buf(),
            stored,
            dirty: false,
            programs: HashMap::new(),
            found: HashMap::new(),
        })
    }

    /// The content digest of `path`, hashing only when its stat data changed.
    pub fn digest(&mut self, path: &Path) -> std::io::Result<Digest> {
        let stamp = Stamp::of(&std::fs::metadata(path)?);
        if let Some((known, digest)) = self.stored.files.get(path)
            && *known == stamp
        {
            return Ok(*digest);
        }
        let digest = Digest::of_file(path)?;
        if stamp.settled() {
            self.stored
                .files
                .insert(path.to_path_buf(), (stamp, digest));
            self.dirty = true;
        }
        Ok(digest)
    }

    /// The cached answer of the program at `path` to `question`, asked again (by `probe`) when
    /// the program changed.
    pub fn answer(
        &mut self,
        path: &Path,
        question: &str,
        probe: impl FnOnce() -> String,
    ) -> String {
        let Ok(meta) = std::fs::metadata(path) else {
            return probe();
        };
        let stamp = Stamp::of(&meta);
        let key = format!("{}\0{question}", path.display());
        if let Some((known, answer)) = self.stored.probes.get(&key)
            && *known == stamp
        {
            return answer.clone();
        }
        let answer = probe();
        self.stored.probes.insert(key, (stamp, answer.clone()));
        self.dirty = true;
        answer
    }

    /// Writes what this pass learnt. Losing the file costs only hashing again, so a failure is
    /// the caller's to tell as a warning, never a failed build.
    pub fn save(&self) -> Result<(), crate::fsutil::SaveError> {
        if !self.dirty {
            return Ok(());
        }
        crate::saved::save(&self.cache_root, State::Stat, &self.stored)
    }
}

impl crate::exec::Probe for StatCache {
    fn digest(&mut self, path: &Path) -> std::io::Result<Digest> {
        StatCache::digest(self, path)
    }

    fn answer(&mut self, path: &Path, question: &str, ask: &mut dyn FnMut() -> String) -> String {
        StatCache::answer(self, path, question, ask)
    }

    fn program(&self, tool: &str) -> Option<crate::exec::Program> {
        self.programs.get(tool).copied()
    }

    fn remember_program(&mut self, tool: &str, state: &crate::exec::Program) {
        self.programs.insert(tool.to_string(), *state);
    }

    fn which(&mut self, program: &str) -> Option<PathBuf> {
        (self.found.entry(program.to_string()))
            .or_insert_with(|| crate::exec::which(program))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_digest_survives_save_and_load_and_holds_while_the_file_does() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config");
        std::fs::write(&file, "CONFIG_A=y\n").unwrap();
        let mut stat = StatCache::open(dir.path()).unwrap();
        // A digest the file does not have: only the stored one can give it back.
        let remembered = Digest::of_bytes(b"remembered");
        let stamp = Stamp::of(&std::fs::metadata(&file).unwrap());
        stat.stored.files.insert(file.clone(), (stamp, remembered));
        stat.dirty = true;
        stat.save().unwrap();
        let mut again = StatCache::open(dir.path()).unwrap();
        assert_eq!(again.digest(&file).unwrap(), remembered);
        std::fs::write(&file, "CONFIG_A=n\nCONFIG_B=y\n").unwrap();
        assert_eq!(
            again.digest(&file).unwrap(),
            Digest::of_file(&file).unwrap(),
            "a changed file is hashed again"
        );
    }

    #[test]
    fn a_damaged_store_is_no_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = State::Stat.path(dir.path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"\xff\xff\xff not postcard").unwrap();
        let mut stat = StatCache::open(dir.path()).unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        assert_eq!(stat.digest(&file).unwrap(), Digest::of_file(&file).unwrap());
    }
}
