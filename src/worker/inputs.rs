//! An action's input root, laid out for its command: the directory messages fetched level by
//! level, every file from the worker's own blob store, which fetches each blob once and then
//! serves every action that names it (a kernel tree's 80,000 files cross the network once per
//! worker, not once per action).
//!
//! Everything here comes from a server: each directory and blob is checked against its digest
//! before use, names are checked as the remote cache checks a result's tree (no `..`, no `/`,
//! no empty name), and the tree is written with the remote cache's own layout functions, which
//! never follow a symlink while writing.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use prost::Message;

use crate::remote::layout::{self, TreeLink};
use crate::remote::reapi::{self, TreeEntry};
use crate::remote::{Function, Transport};

/// At most this many directories in one input root: a loop of directory digests cannot be
/// built (a digest names its content), but a huge tree can, and it would fill memory.
const MAX_DIRECTORIES: usize = 1_000_000;
/// Blobs fetched per batch of calls: bounds the memory a batch holds.
const FETCH_BYTES: u64 = 64 << 20;

/// What fetching or laying out an input root failed on; `missing` lists blobs the server does
/// not have (the client uploads them and tries again: REAPI's FAILED_PRECONDITION).
#[derive(Debug)]
pub struct InputError {
    pub message: String,
    pub missing: Vec<re::Digest>,
}

impl InputError {
    fn new(message: impl Into<String>) -> InputError {
        InputError {
            message: message.into(),
            missing: Vec::new(),
        }
    }
}

/// The worker's blob store: `blobs/<hash>` (read-only) and `blobs/<hash>.x` (executable), each
/// verified when it was fetched. Files of an input root are hard links to these.
///
/// Leases run at once share it, and each blob crosses the network once even then: two leases
/// of one kernel tree (its headers and its compile) arrive together, and each fetched the
/// whole 1.3 GB tree while neither had stored it.
pub struct Store {
    dir: PathBuf,
    /// The blobs a lease is fetching now; another lease that wants one waits for it.
    fetching: Mutex<HashSet<BlobKey>>,
    fetched: Condvar,
}

/// A blob as the store holds it: its hash, and whether it is stored executable.
type BlobKey = (String, bool);

/// Blobs one lease fetches, and blobs it waits for.
type Split<'a> = (Vec<&'a (re::Digest, bool)>, Vec<&'a (re::Digest, bool)>);

/// The blobs one lease claimed to fetch: released when it is done with them, whether it
/// stored them or failed, so that no other lease waits for a fetch that ended.
struct Claimed<'a> {
    store: &'a Store,
    keys: Vec<BlobKey>,
}

impl Drop for Claimed<'_> {
    fn drop(&mut self) {
        let mut fetching = self.store.lock();
        for key in &self.keys {
            fetching.remove(key);
        }
        self.store.fetched.notify_all();
    }
}

impl Store {
    pub fn open(dir: &Path) -> std::io::Result<Store> {
        let dir = dir.join("blobs");
        std::fs::create_dir_all(&dir)?;
        Ok(Store {
            dir,
            fetching: Mutex::new(HashSet::new()),
            fetched: Condvar::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<BlobKey>> {
        // A lease that panicked while holding the lock left the set as it was: still usable.
        self.fetching.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Splits `lacking` into the blobs this lease fetches (claimed, and given again as a
    /// list) and those another lease is fetching now.
    fn claim<'a>(&'a self, lacking: Vec<&'a (re::Digest, bool)>) -> (Claimed<'a>, Split<'a>) {
        let mut fetching = self.lock();
        let mut claimed = Claimed {
            store: self,
            keys: Vec::new(),
        };
        let (mut mine, mut theirs) = (Vec::new(), Vec::new());
        for item in lacking {
            let key = (item.0.hash.clone(), item.1);
            if fetching.insert(key.clone()) {
                claimed.keys.push(key);
                mine.push(item);
            } else {
                theirs.push(item);
            }
        }
        (claimed, (mine, theirs))
    }

    /// Waits until no lease is fetching any of `items`; gives those still not stored (the
    /// lease that fetched them failed).
    fn wait_for<'a>(&self, items: Vec<&'a (re::Digest, bool)>) -> Vec<&'a (re::Digest, bool)> {
        let mut fetching = self.lock();
        while items
            .iter()
            .any(|(d, x)| fetching.contains(&(d.hash.clone(), *x)))
        {
            fetching = self
                .fetched
                .wait(fetching)
                .unwrap_or_else(|e| e.into_inner());
        }
        drop(fetching);
        (items.into_iter())
            .filter(|(d, x)| !self.path(d, *x).exists())
            .collect()
    }

    fn path(&self, digest: &re::Digest, executable: bool) -> PathBuf {
        let x = if executable { ".x" } else { "" };
        self.dir.join(format!("{}{x}", digest.hash))
    }

    /// Fetches every blob of `wanted` the store lacks, verified against its digest.
    fn ensure(
        &self,
        cas: &dyn Transport,
        function: Function,
        wanted: &[(re::Digest, bool)],
    ) -> Result<(), InputError> {
        let mut seen = HashSet::new();
        let lacking: Vec<&(re::Digest, bool)> = wanted
            .iter()
            .filter(|(d, x)| seen.insert((d.hash.clone(), *x)) && !self.path(d, *x).exists())
            .collect();
        let (claimed, (mine, theirs)) = self.claim(lacking);
        self.fetch_batches(cas, function, &mine)?;
        // Released before waiting: a lease never waits while others wait for it.
        drop(claimed);
        // What another lease failed to store is fetched here; two leases may then fetch
        // the same blob, which `put` makes harmless.
        let left = self.wait_for(theirs);
        self.fetch_batches(cas, function, &left)
    }

    /// Fetches `lacking` in batches of about [`FETCH_BYTES`].
    fn fetch_batches(
        &self,
        cas: &dyn Transport,
        function: Function,
        lacking: &[&(re::Digest, bool)],
    ) -> Result<(), InputError> {
        let mut batch = Vec::new();
        let mut bytes = 0u64;
        for (i, item) in lacking.iter().enumerate() {
            batch.push(*item);
            bytes += item.0.size_bytes.max(0) as u64;
            if bytes >= FETCH_BYTES || i + 1 == lacking.len() {
                self.fetch(cas, function, &batch)?;
                batch.clear();
                bytes = 0;
            }
        }
        Ok(())
    }

    fn fetch(
        &self,
        cas: &dyn Transport,
        function: Function,
        batch: &[&(re::Digest, bool)],
    ) -> Result<(), InputError> {
        let digests: Vec<re::Digest> = batch.iter().map(|(d, _)| d.clone()).collect();
        let missing = cas
            .find_missing(function, &digests)
            .map_err(|e| InputError::new(format!("asking for the input blobs: {e}")))?;
        if !missing.is_empty() {
            return Err(InputError {
                message: format!("the server lacks {} input blob(s)", missing.len()),
                missing,
            });
        }
        let blobs = cas
            .read_blobs(function, &digests)
            .map_err(|e| InputError::new(format!("reading the input blobs: {e}")))?;
        let by_hash: BTreeMap<&str, &Vec<u8>> =
            blobs.iter().map(|(d, b)| (d.hash.as_str(), b)).collect();
        for (digest, executable) in batch {
            let bytes = by_hash.get(digest.hash.as_str()).ok_or_else(|| {
                InputError::new(format!("the server did not send the blob {}", digest.hash))
            })?;
            if function.of_bytes(bytes) != *digest {
                return Err(InputError::new(format!(
                    "the server sent other bytes for the blob {}",
                    digest.hash
                )));
            }
            self.put(digest, *executable, bytes)
                .map_err(|e| InputError::new(format!("storing the blob {}: {e}", digest.hash)))?;
        }
        Ok(())
    }

    /// Writes a verified blob under a temporary name, then renames it into place: a store entry
    /// is whole or absent, even if the worker dies while writing.
    fn put(&self, digest: &re::Digest, executable: bool, bytes: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        tmp.write_all(bytes)?;
        let mode = if executable { 0o555 } else { 0o444 };
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))?;
        tmp.persist(self.path(digest, executable))
            .map(drop)
            .map_err(|e| e.error)
    }
}

/// Reads the directory `digest` names and every directory below it, as a `Tree`.
pub fn fetch_tree(
    cas: &dyn Transport,
    function: Function,
    digest: &re::Digest,
) -> Result<re::Tree, InputError> {
    let mut messages: BTreeMap<String, re::Directory> = BTreeMap::new();
    let mut level = vec![digest.clone()];
    while !level.is_empty() {
        let read = cas
            .read_blobs(function, &level)
            .map_err(|e| InputError::new(format!("reading the input root's directories: {e}")))?;
        let mut next = Vec::new();
        for (d, bytes) in read {
            if function.of_bytes(&bytes) != d || !level.contains(&d) {
                return Err(InputError::new(format!(
                    "the server sent other bytes for the directory {}",
                    d.hash
                )));
            }
            let dir = re::Directory::decode(&bytes[..]).map_err(|e| {
                InputError::new(format!("the directory {} does not decode: {e}", d.hash))
            })?;
            for sub in &dir.directories {
                let sub = sub
                    .digest
                    .clone()
                    .ok_or_else(|| InputError::new(format!("`{}` has no digest", sub.name)))?;
                if !messages.contains_key(&sub.hash) && !next.contains(&sub) {
                    next.push(sub);
                }
            }
            messages.insert(d.hash, dir);
            if messages.len() > MAX_DIRECTORIES {
                return Err(InputError::new(format!(
                    "the input root has more than {MAX_DIRECTORIES} directories"
                )));
            }
        }
        next.retain(|d| !messages.contains_key(&d.hash));
        level = next;
    }
    let root = messages
        .remove(&digest.hash)
        .ok_or_else(|| InputError::new("the server did not send the input root"))?;
    Ok(re::Tree {
        root: Some(root),
        children: messages.into_values().collect(),
    })
}

/// Lays the input root out at `dest` (which must not exist): directories, files linked from
/// the store, the empty directories a command may need, then symlinks.
pub fn lay_out(
    cas: &dyn Transport,
    function: Function,
    store: &Store,
    root: &re::Digest,
    dest: &Path,
) -> Result<(), InputError> {
    let tree = fetch_tree(cas, function, root)?;
    let entries = reapi::entries(function, &tree).map_err(InputError::new)?;
    let files: Vec<(re::Digest, bool)> = entries
        .iter()
        .filter_map(|e| match e {
            TreeEntry::File {
                digest, executable, ..
            } => Some((digest.clone(), *executable)),
            TreeEntry::Symlink { .. } => None,
        })
        .collect();
    store.ensure(cas, function, &files)?;
    let failed = |e: std::io::Error| InputError::new(format!("laying out the input root: {e}"));
    layout::create_root(dest).map_err(failed)?;
    let mut links = Vec::new();
    for entry in &entries {
        match entry {
            TreeEntry::File {
                path,
                digest,
                executable,
            } => {
                let at = layout::create_parents(dest, path).map_err(failed)?;
                std::fs::hard_link(store.path(digest, *executable), at).map_err(failed)?;
            }
            TreeEntry::Symlink { path, target } => links.push(TreeLink { path, target }),
        }
    }
    for dir in empty_directories(&tree, function) {
        layout::create_parents(dest, &format!("{dir}/.")).map_err(failed)?;
    }
    layout::make_links(dest, &links).map_err(failed)
}

/// The paths of the directories that hold no file or symlink anywhere below them: laying out
/// the files does not make them, and a command may expect them (an empty `obj/`).
fn empty_directories(tree: &re::Tree, function: Function) -> Vec<String> {
    let children: BTreeMap<String, &re::Directory> = tree
        .children
        .iter()
        .map(|d| (reapi::Blob::of(function, d).digest.hash, d))
        .collect();
    let mut out = Vec::new();
    let mut stack: Vec<(String, &re::Directory)> =
        tree.root.iter().map(|r| (String::new(), r)).collect();
    while let Some((prefix, dir)) = stack.pop() {
        if dir.files.is_empty() && dir.symlinks.is_empty() && dir.directories.is_empty() {
            out.push(prefix.trim_end_matches('/').to_string());
        }
        for sub in &dir.directories {
            let hash = sub.digest.as_ref().map(|d| d.hash.as_str()).unwrap_or("");
            if let Some(child) = children.get(hash) {
                stack.push((format!("{prefix}{}/", sub.name), child));
            }
        }
    }
    out.retain(|p| !p.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::remote::{Capabilities, RemoteError, Source};

    /// A CAS that counts the blobs it sends. Its first read tells `entered` and then waits for
    /// `go`: a lease caught in the middle of a fetch. With `garble_first`, that read answers
    /// other bytes.
    struct HeldCas {
        sent: AtomicUsize,
        entered: Mutex<Option<mpsc::Sender<()>>>,
        go: Mutex<mpsc::Receiver<()>>,
        garble_first: bool,
        blobs: Vec<Vec<u8>>,
    }

    impl Transport for HeldCas {
        fn capabilities(&self) -> Result<Capabilities, RemoteError> {
            unreachable!("the store never asks")
        }
        fn get_action_result(
            &self,
            _: Function,
            _: &re::Digest,
        ) -> Result<Option<re::ActionResult>, RemoteError> {
            unreachable!("the store never asks")
        }
        fn update_action_result(
            &self,
            _: Function,
            _: &re::Digest,
            _: &re::ActionResult,
        ) -> Result<(), RemoteError> {
            unreachable!("the store never asks")
        }
        fn find_missing(
            &self,
            _: Function,
            _: &[re::Digest],
        ) -> Result<Vec<re::Digest>, RemoteError> {
            Ok(Vec::new())
        }
        fn read_blob(
            &self,
            _: Function,
            _: &re::Digest,
            _: &mut dyn Write,
        ) -> Result<(), RemoteError> {
            unreachable!("the store reads in batches")
        }
        fn read_blobs(
            &self,
            function: Function,
            digests: &[re::Digest],
        ) -> Result<Vec<(re::Digest, Vec<u8>)>, RemoteError> {
            self.sent.fetch_add(digests.len(), Ordering::SeqCst);
            let first = self.entered.lock().unwrap().take();
            if let Some(entered) = &first {
                entered.send(()).unwrap();
                self.go.lock().unwrap().recv().unwrap();
            }
            let garble = first.is_some() && self.garble_first;
            Ok((self.blobs.iter())
                .map(|b| (function.of_bytes(b), b.clone()))
                .filter(|(d, _)| digests.contains(d))
                .map(|(d, b)| {
                    if garble {
                        (d, b"other".to_vec())
                    } else {
                        (d, b)
                    }
                })
                .collect())
        }
        fn write_blobs(
            &self,
            _: Function,
            _: &[(re::Digest, Source<'_>)],
        ) -> Result<(), RemoteError> {
            unreachable!("the store never uploads")
        }
    }

    /// Two leases ask for the same 40 blobs while the first is fetching them; gives what
    /// each `ensure` returned and how many blobs the server sent.
    fn two_leases_at_once(garble_first: bool) -> (Vec<Result<(), String>>, usize, Store) {
        let dir = tempfile::tempdir().unwrap().keep();
        let store = Store::open(&dir).unwrap();
        let function = Function::Sha256;
        let blobs: Vec<Vec<u8>> = (0..40).map(|i| format!("blob {i}").into_bytes()).collect();
        let wanted: Vec<(re::Digest, bool)> = (blobs.iter())
            .map(|b| (function.of_bytes(b), false))
            .collect();
        let (entered, entered_rx) = mpsc::channel();
        let (go, go_rx) = mpsc::channel();
        let cas = HeldCas {
            sent: AtomicUsize::new(0),
            entered: Mutex::new(Some(entered)),
            go: Mutex::new(go_rx),
            garble_first,
            blobs,
        };
        let results = std::thread::scope(|s| {
            let ensure = || store.ensure(&cas, function, &wanted).map_err(|e| e.message);
            let first = s.spawn(ensure);
            entered_rx.recv().unwrap();
            let second = s.spawn(ensure);
            // Time for the second lease to ask the server too, were it to.
            std::thread::sleep(Duration::from_millis(300));
            go.send(()).unwrap();
            vec![first.join().unwrap(), second.join().unwrap()]
        });
        for (digest, x) in &wanted {
            assert!(
                store.path(digest, *x).exists(),
                "{} not stored",
                digest.hash
            );
        }
        (results, cas.sent.load(Ordering::SeqCst), store)
    }

    #[test]
    fn leases_that_want_the_same_blobs_at_once_fetch_them_once() {
        let (results, sent, store) = two_leases_at_once(false);
        assert_eq!(results, vec![Ok(()), Ok(())]);
        assert_eq!(sent, 40, "each blob crosses the network once");
        assert!(store.lock().is_empty());
        std::fs::remove_dir_all(store.dir.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_lease_whose_fetch_fails_leaves_its_blobs_to_the_lease_that_waited() {
        let (results, sent, store) = two_leases_at_once(true);
        let error = results[0].as_ref().unwrap_err();
        assert!(error.contains("other bytes"), "{error}");
        assert_eq!(results[1], Ok(()), "the waiting lease fetches them itself");
        assert_eq!(sent, 80);
        assert!(store.lock().is_empty());
        std::fs::remove_dir_all(store.dir.parent().unwrap()).unwrap();
    }
}
