//! Blobs being sent right now, so that two actions needing the same blob at once (the headers
//! and the compile of one tree, both finding its 80,000 files missing) send it once: the second
//! waits for the first, and sends only what the first failed to.

use std::collections::HashSet;
use std::sync::{Condvar, Mutex};

#[derive(Default)]
pub struct InFlight {
    sending: Mutex<HashSet<String>>,
    landed: Condvar,
}

impl InFlight {
    /// Splits `hashes` into those this caller now sends (claimed) and those another is sending.
    pub fn claim(&self, hashes: impl IntoIterator<Item = String>) -> (Vec<String>, Vec<String>) {
        let mut sending = self.sending.lock().unwrap_or_else(|e| e.into_inner());
        hashes.into_iter().partition(|h| sending.insert(h.clone()))
    }

    /// Ends this caller's claims, sent or not, and wakes those waiting for them.
    pub fn release(&self, mine: &[String]) {
        let mut sending = self.sending.lock().unwrap_or_else(|e| e.into_inner());
        for hash in mine {
            sending.remove(hash);
        }
        self.landed.notify_all();
    }

    /// Returns once no one is sending any of `theirs` any more.
    pub fn wait(&self, theirs: &[String]) {
        let mut sending = self.sending.lock().unwrap_or_else(|e| e.into_inner());
        while theirs.iter().any(|h| sending.contains(h)) {
            sending = self.landed.wait(sending).unwrap_or_else(|e| e.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_claimed_once_is_waited_for_by_the_second_caller() {
        let flight = InFlight::default();
        let (mine, theirs) = flight.claim(["a".to_string(), "b".to_string()]);
        assert_eq!((mine.len(), theirs.len()), (2, 0));
        let (mine2, theirs2) = flight.claim(["b".to_string(), "c".to_string()]);
        assert_eq!(
            (mine2, theirs2.clone()),
            (vec!["c".to_string()], vec!["b".to_string()])
        );
        std::thread::scope(|s| {
            let waiter = s.spawn(|| flight.wait(&theirs2));
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert!(!waiter.is_finished(), "b is still being sent");
            flight.release(&mine);
            waiter.join().unwrap();
        });
        // Released, a hash can be claimed again (a failed send is sent by the next caller).
        assert_eq!(flight.claim(["b".to_string()]).0, ["b"]);
    }
}
