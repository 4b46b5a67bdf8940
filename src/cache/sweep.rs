//! What killed runs leave in `tmp/`: action scratch directories, staged trees, and the temp files
//! of entries being published. Every kbuild process holds a shared lock on `tmp/.users` for as
//! long as it lives (the kernel drops it when the process dies, however it dies); a process that
//! gets the lock exclusively is the only one alive, so whatever else is in `tmp/` is left over,
//! and goes.

use std::fs::File;
use std::path::Path;

use super::{CacheError, io_err};

const USERS: &str = ".users";

/// Joins the processes using `tmp`, first removing leftovers if no other process uses it.
pub fn enter(tmp: &Path) -> Result<File, CacheError> {
    let path = tmp.join(USERS);
    let users = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err(&path))?;
    if users.try_lock().is_ok() {
        sweep(tmp);
    }
    // From exclusive (or nothing) to shared: other runs may start now.
    users.lock_shared().map_err(io_err(&path))?;
    Ok(users)
}

/// Removes everything in `tmp` but the users' lock. Best effort: what cannot be removed now is
/// tried again by the next process that finds itself alone.
fn sweep(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name() != USERS {
            let _ = super::blobs::remove_any(&entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_go_only_when_no_process_uses_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path();
        std::fs::create_dir_all(tmp.join("action-dead/out")).unwrap();
        std::fs::write(tmp.join(".tmpXYZ"), b"half an entry").unwrap();
        let first = enter(tmp).unwrap();
        assert_eq!(
            std::fs::read_dir(tmp).unwrap().count(),
            1,
            "only .users is left"
        );
        // While `first` lives, a second process must not sweep its work.
        std::fs::create_dir_all(tmp.join("action-live")).unwrap();
        let second = enter(tmp).unwrap();
        assert!(tmp.join("action-live").exists());
        drop((first, second));
        let third = enter(tmp).unwrap();
        assert!(!tmp.join("action-live").exists());
        drop(third);
    }
}
