//! The ring seq in the state directory: loaded at start, written by a
//! helper thread so the protocol thread never blocks on the disk.
//!
//! File `<state_dir>/ringid_<nodeid>` holds the seq as 8 bytes in host
//! order, as Corosync writes it. A write goes to a temporary file, is
//! synced and renamed over the old one, so a crash leaves either the old
//! or the new value, never a torn one. Completions come back through a
//! doorbell the run loop waits on; requests that arrive while a write is
//! running are coalesced into one write of the highest seq.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use transport::Doorbell;

/// Path of the ring seq file of `nodeid` in `state_dir`.
pub fn ring_seq_path(state_dir: &Path, nodeid: u32) -> PathBuf {
    state_dir.join(format!("ringid_{nodeid}"))
}

/// The stored seq, 0 when there is no file yet. A file of the wrong size
/// is an error naming it (something other than us wrote it).
pub fn load_ring_seq(state_dir: &Path, nodeid: u32) -> Result<u64, String> {
    let path = ring_seq_path(state_dir, nodeid);
    match fs::read(&path) {
        Ok(b) if b.len() == 8 => {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b);
            Ok(u64::from_ne_bytes(a))
        }
        Ok(b) => Err(format!(
            "{}: {} bytes, expected 8 (remove the file to start from ring seq 0)",
            path.display(),
            b.len()
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn write_ring_seq(state_dir: &Path, nodeid: u32, seq: u64) -> io::Result<()> {
    let path = ring_seq_path(state_dir, nodeid);
    let tmp = state_dir.join(format!(".ringid_{nodeid}.tmp"));
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&seq.to_ne_bytes())?;
        f.sync_all()?;
    }
    fs::rename(&tmp, &path)?;
    // The rename itself must reach the disk too.
    fs::File::open(state_dir)?.sync_all()
}

/// The writer thread, the highest seq asked for and the highest written.
///
/// Requests are not queued: the protocol thread records the highest seq it
/// wants and pokes the writer through a channel of one slot, so no request
/// is ever lost to a full queue, however far the disk falls behind (the
/// writer always writes the latest wanted seq, which covers every earlier
/// one).
pub struct Persister {
    poke: Option<SyncSender<()>>,
    wanted: Arc<Mutex<Option<u64>>>,
    done: Arc<Mutex<Option<u64>>>,
    thread: Option<JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Persister {
    /// Starts the writer; `doorbell` is rung after each completed write.
    pub fn start(state_dir: PathBuf, nodeid: u32, doorbell: Doorbell) -> io::Result<Persister> {
        Persister::start_with(state_dir, nodeid, move || doorbell.ring())
    }

    /// [`Persister::start`] with `notify` called after each completed write.
    fn start_with(
        state_dir: PathBuf,
        nodeid: u32,
        notify: impl Fn() + Send + 'static,
    ) -> io::Result<Persister> {
        fs::create_dir_all(&state_dir)?;
        let (poke, rx) = sync_channel::<()>(1);
        let wanted = Arc::new(Mutex::new(None));
        let done = Arc::new(Mutex::new(None));
        let (wanted2, done2) = (wanted.clone(), done.clone());
        let thread = std::thread::Builder::new()
            .name("ringid-writer".into())
            .spawn(move || writer(rx, &state_dir, nodeid, &wanted2, &done2, &notify))?;
        Ok(Persister {
            poke: Some(poke),
            wanted,
            done,
            thread: Some(thread),
        })
    }

    /// Asks for `seq` to be written (or a higher one already asked for).
    /// Never blocks beyond a short lock the writer holds only to take the
    /// value.
    pub fn request(&self, seq: u64) {
        {
            let mut w = lock(&self.wanted);
            *w = Some(w.map_or(seq, |old| old.max(seq)));
        }
        if let Some(poke) = &self.poke {
            match poke.try_send(()) {
                // Full: a poke is pending, and the writer takes the value
                // recorded above when it gets to it.
                Ok(()) | Err(TrySendError::Full(())) => {}
                Err(TrySendError::Disconnected(())) => {
                    tracing::error!("ring seq writer thread is gone");
                }
            }
        }
    }

    /// The highest seq written since the last call.
    pub fn take_completed(&self) -> Option<u64> {
        lock(&self.done).take()
    }
}

impl Drop for Persister {
    fn drop(&mut self) {
        self.poke.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn writer(
    rx: Receiver<()>,
    dir: &Path,
    nodeid: u32,
    wanted: &Mutex<Option<u64>>,
    done: &Mutex<Option<u64>>,
    notify: &dyn Fn(),
) {
    // A poke left in the channel when the sender is dropped is still
    // received, so a last request is written before the thread ends.
    while rx.recv().is_ok() {
        let Some(seq) = lock(wanted).take() else {
            continue;
        };
        loop {
            match write_ring_seq(dir, nodeid, seq) {
                Ok(()) => break,
                Err(e) => {
                    // Totem will not use a ring whose seq is not stored;
                    // keep trying and say why.
                    tracing::error!(
                        "cannot store ring seq {seq} in {}: {e}; retrying",
                        ring_seq_path(dir, nodeid).display()
                    );
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
        {
            let mut d = lock(done);
            *d = Some(d.map_or(seq, |old| old.max(seq)));
        }
        notify();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_store_round_trip_and_bad_file() {
        let dir = std::env::temp_dir().join(format!("corosync-rs-persist-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        assert_eq!(load_ring_seq(&dir, 7), Ok(0));
        write_ring_seq(&dir, 7, 0x1_0000_0004).unwrap();
        assert_eq!(load_ring_seq(&dir, 7), Ok(0x1_0000_0004));
        fs::write(ring_seq_path(&dir, 8), b"abc").unwrap();
        let e = load_ring_seq(&dir, 8).unwrap_err();
        assert!(e.contains("ringid_8") && e.contains("3 bytes"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Requests far faster than the disk syncs are never lost: the last
    /// (highest) one is always written and reported, where a bounded queue
    /// of requests used to drop the newest when full.
    #[test]
    fn a_burst_of_requests_ends_with_the_highest_written() {
        let dir = std::env::temp_dir().join(format!("corosync-rs-burst-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let (tx, rx) = std::sync::mpsc::channel();
        let p = Persister::start_with(dir.clone(), 3, move || {
            let _ = tx.send(());
        })
        .unwrap();
        for seq in 1..=2000u64 {
            p.request(seq);
        }
        let mut highest = 0;
        while highest < 2000 {
            rx.recv_timeout(Duration::from_secs(30))
                .expect("the writer reports the highest request");
            if let Some(s) = p.take_completed() {
                assert!(s > highest, "completions only move up: {s} after {highest}");
                highest = s;
            }
        }
        assert_eq!(load_ring_seq(&dir, 3), Ok(2000));
        drop(p);
        fs::remove_dir_all(&dir).unwrap();
    }
}
