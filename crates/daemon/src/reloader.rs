//! Reading the configuration file again for a reload, off the protocol
//! thread: the file may sit on a slow disk and its host names may wait on
//! DNS, neither of which may stall Totem's token.
//!
//! The run loop starts a read with [`Reloader::request`]; a thread reads and
//! parses the file, leaves the result and rings the run loop's doorbell,
//! and [`Reloader::take`] hands it over. A request made while a read runs
//! is remembered and started once that one has been taken, so the file is
//! read at least once after every request, and at most one read runs.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::config::Config;

/// The outcome of one read: the configuration, or why it could not be had.
pub type ReadResult = Result<Config, String>;

pub struct Reloader {
    /// The file to read (`None`: the built-in one-node configuration).
    path: Option<PathBuf>,
    notify: Arc<dyn Fn() + Send + Sync>,
    result: Arc<Mutex<Option<ReadResult>>>,
    in_flight: bool,
    again: bool,
    /// Requests made so far.
    requested: u64,
    /// How many requests the read in flight was started after.
    covers: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reads and parses `path` (host names resolved), or the built-in default.
pub fn read(path: Option<&std::path::Path>) -> ReadResult {
    match path {
        Some(path) => Config::load(path)
            .map(|(c, _)| c)
            .map_err(|e| e.to_string()),
        None => Ok(Config::default_one_node()),
    }
}

impl Reloader {
    /// `notify` is called (on the reading thread) when a result is ready.
    pub fn new(path: Option<PathBuf>, notify: impl Fn() + Send + Sync + 'static) -> Reloader {
        Reloader {
            path,
            notify: Arc::new(notify),
            result: Arc::new(Mutex::new(None)),
            in_flight: false,
            again: false,
            requested: 0,
            covers: 0,
        }
    }

    /// Asks for the file to be read (again).
    pub fn request(&mut self) {
        self.requested += 1;
        if self.in_flight {
            self.again = true;
        } else {
            self.start();
        }
    }

    fn start(&mut self) {
        self.in_flight = true;
        self.covers = self.requested;
        let path = self.path.clone();
        let result = self.result.clone();
        let notify = self.notify.clone();
        let spawned = std::thread::Builder::new()
            .name("config-reader".into())
            .spawn(move || {
                let r = read(path.as_deref());
                *lock(&result) = Some(r);
                notify();
            });
        if let Err(e) = spawned {
            *lock(&self.result) = Some(Err(format!("cannot start a thread to read it: {e}")));
            (self.notify)();
        }
    }

    /// The finished read, if one is ready, with the number of requests it
    /// was started after (it answers those); starts the next read when a
    /// request came in meanwhile.
    pub fn take(&mut self) -> Option<(ReadResult, u64)> {
        let r = lock(&self.result).take()?;
        let covers = self.covers;
        self.in_flight = false;
        if std::mem::take(&mut self.again) {
            self.start();
        }
        Some((r, covers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn reads_off_thread_and_coalesces_requests() {
        let dir = std::env::temp_dir().join(format!("corosync-rs-reloader-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("corosync.conf");
        let conf = |token: u32| {
            format!(
                "totem {{\n version: 2\n cluster_name: c\n token: {token}\n}}\nnodelist {{\n node {{\n  ring0_addr: 127.0.0.1\n  nodeid: 1\n }}\n}}\n"
            )
        };
        // Written whole (a new file renamed over the old), so that a read
        // running meanwhile sees the old text or the new, never a part.
        let write = |text: &str| {
            let tmp = dir.join("corosync.conf.new");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, &path).unwrap();
        };
        write(&conf(1000));
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let mut r = Reloader::new(Some(path.clone()), move || {
            let _ = lock(&tx).send(());
        });
        r.request();
        r.request(); // while the first read runs: one more read after it
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let (first, covers) = r.take().expect("a result after the doorbell");
        assert_eq!(first.unwrap().totem.timings.token_configured, 1000);
        assert_eq!(covers, 1, "the first read answers the first request only");
        write(&conf(1200));
        // The second read started when the first was taken; it may have
        // read either version of the file, but a third request made now
        // must see the new one.
        r.request();
        loop {
            rx.recv_timeout(Duration::from_secs(10))
                .expect("a read after the request sees the new file");
            if let Some((got, covers)) = r.take() {
                if got.unwrap().totem.timings.token_configured == 1200 {
                    assert!(covers >= 2);
                    break;
                }
            }
        }
        while r.in_flight {
            rx.recv_timeout(Duration::from_secs(10)).unwrap();
            let _ = r.take();
        }
        write("totem {\n token: x\n}\n");
        r.request();
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let (e, covers) = r.take().unwrap();
        assert_eq!(covers, 4);
        let e = e.unwrap_err();
        assert!(e.contains("corosync.conf:2"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
