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

/// The writer thread and its two channels.
pub struct Persister {
    tx: Option<SyncSender<u64>>,
    done: Arc<Mutex<Option<u64>>>,
    thread: Option<JoinHandle<()>>,
}

impl Persister {
    /// Starts the writer; `doorbell` is rung after each completed write.
    pub fn start(state_dir: PathBuf, nodeid: u32, doorbell: Doorbell) -> io::Result<Persister> {
        fs::create_dir_all(&state_dir)?;
        let (tx, rx) = sync_channel::<u64>(64);
        let done = Arc::new(Mutex::new(None));
        let done2 = done.clone();
        let thread = std::thread::Builder::new()
            .name("ringid-writer".into())
            .spawn(move || writer(rx, &state_dir, nodeid, &done2, &doorbell))?;
        Ok(Persister {
            tx: Some(tx),
            done,
            thread: Some(thread),
        })
    }

    /// Asks for `seq` to be written. Never blocks: when the queue is full
    /// the writer is behind, and a later request (higher seq) is queued
    /// anyway, so dropping this one loses nothing but is logged.
    pub fn request(&self, seq: u64) {
        if let Some(tx) = &self.tx {
            match tx.try_send(seq) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    tracing::warn!("ring seq writer queue full; seq {seq} deferred");
                }
                Err(TrySendError::Disconnected(_)) => {
                    tracing::error!("ring seq writer thread is gone");
                }
            }
        }
    }

    /// The highest seq written since the last call.
    pub fn take_completed(&self) -> Option<u64> {
        self.done.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

impl Drop for Persister {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn writer(
    rx: Receiver<u64>,
    dir: &Path,
    nodeid: u32,
    done: &Mutex<Option<u64>>,
    doorbell: &Doorbell,
) {
    while let Ok(mut seq) = rx.recv() {
        while let Ok(s) = rx.try_recv() {
            seq = seq.max(s);
        }
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
            let mut d = done.lock().unwrap_or_else(|e| e.into_inner());
            *d = Some(d.map_or(seq, |old| old.max(seq)));
        }
        doorbell.ring();
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
}
