//! Logging with `tracing`, to stderr, a file and/or syslog as `logging {}`
//! says, with timestamps. The protocol thread never waits on a log sink:
//! formatted lines go through a bounded queue to a writer thread; when the
//! queue is full a line is dropped and counted, and the count is reported
//! with the next line that gets through. A reload changes the targets and
//! the debug level ([`reconfigure`]); `corosync-cfgtool -L` reopens the log
//! file ([`reopen`], for logrotate).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

use tracing::Level;
use tracing_subscriber::fmt::MakeWriter;

/// Where log lines go (the `logging {}` section, resolved).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogTargets {
    pub to_stderr: bool,
    pub logfile: Option<PathBuf>,
    pub to_syslog: bool,
    /// Syslog facility number (daemon = 3).
    pub syslog_facility: u8,
    pub debug: bool,
    pub timestamp: bool,
}

impl Default for LogTargets {
    fn default() -> Self {
        LogTargets {
            to_stderr: true,
            logfile: None,
            to_syslog: false,
            syslog_facility: 3,
            debug: false,
            timestamp: true,
        }
    }
}

/// Lines queued to the writer thread at most.
const QUEUE_LINES: usize = 4096;

struct Line {
    level: Level,
    text: Vec<u8>,
}

/// What the writer thread receives: lines, and new sinks to write to.
enum Msg {
    Line(Line),
    Sinks(Sinks),
}

#[derive(Clone)]
struct Queue {
    tx: SyncSender<Msg>,
    dropped: Arc<AtomicU64>,
}

type LevelHandle = tracing_subscriber::reload::Handle<
    tracing_subscriber::filter::LevelFilter,
    tracing_subscriber::Registry,
>;

/// What [`reconfigure`] and [`reopen`] need: the queue to the writer, the
/// targets in force, and the level filter's handle.
struct Control {
    tx: SyncSender<Msg>,
    targets: Mutex<LogTargets>,
    level: Option<LevelHandle>,
}

static CONTROL: OnceLock<Control> = OnceLock::new();

/// One formatted line, sent to the queue when the formatter is done.
pub struct LineWriter {
    q: Queue,
    level: Level,
    buf: Vec<u8>,
}

impl Write for LineWriter {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let line = Line {
            level: self.level,
            text: std::mem::take(&mut self.buf),
        };
        match self.q.tx.try_send(Msg::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.q.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl<'a> MakeWriter<'a> for Queue {
    type Writer = LineWriter;
    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            q: self.clone(),
            level: Level::INFO,
            buf: Vec::with_capacity(256),
        }
    }
    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> LineWriter {
        let mut w = self.make_writer();
        w.level = *meta.level();
        w
    }
}

/// Keeps the writer thread; dropping it flushes what is queued.
pub struct LogGuard {
    thread: Option<JoinHandle<()>>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        // The subscriber (holding the sender) is global and lives on; give
        // the writer a moment to drain what is queued.
        if let Some(t) = self.thread.take() {
            let deadline = std::time::Instant::now() + std::time::Duration::from_millis(200);
            while !t.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
                if QUEUE_EMPTY.load(Ordering::Relaxed) {
                    break;
                }
            }
        }
    }
}

static QUEUE_EMPTY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

fn syslog_severity(l: Level) -> u8 {
    match l {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

struct Sinks {
    stderr: bool,
    file: Option<File>,
    syslog: Option<UnixDatagram>,
    facility: u8,
    pid: u32,
}

impl Sinks {
    fn write(&mut self, line: &Line) {
        if self.stderr {
            let _ = io::stderr().write_all(&line.text);
        }
        if let Some(f) = &mut self.file {
            let _ = f.write_all(&line.text);
        }
        if let Some(s) = &self.syslog {
            let pri = u32::from(self.facility) * 8 + u32::from(syslog_severity(line.level));
            let text = String::from_utf8_lossy(&line.text);
            let msg = format!("<{pri}>corosync[{}]: {}", self.pid, text.trim_end());
            let _ = s.send(msg.as_bytes());
        }
    }
}

fn writer(rx: Receiver<Msg>, mut sinks: Sinks, dropped: Arc<AtomicU64>) {
    while let Ok(msg) = rx.recv() {
        let line = match msg {
            Msg::Line(l) => l,
            Msg::Sinks(new) => {
                sinks = new;
                continue;
            }
        };
        QUEUE_EMPTY.store(false, Ordering::Relaxed);
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            sinks.write(&Line {
                level: Level::WARN,
                text: format!("[log] {lost} log lines dropped (log queue full)\n").into_bytes(),
            });
        }
        sinks.write(&line);
        QUEUE_EMPTY.store(true, Ordering::Relaxed);
    }
}

/// Where the local syslog daemon listens.
const SYSLOG_SOCKET: &str = "/dev/log";

/// A datagram socket connected to the syslog daemon at `path`, or `None`
/// (said on stderr) when none listens there.
fn open_syslog(path: &Path) -> Result<Option<UnixDatagram>, String> {
    let s = UnixDatagram::unbound().map_err(|e| format!("syslog socket: {e}"))?;
    match s.connect(path) {
        Ok(()) => Ok(Some(s)),
        Err(e) => {
            eprintln!(
                "corosync: to_syslog: cannot connect to {}: {e}; not logging to syslog",
                path.display()
            );
            Ok(None)
        }
    }
}

/// Opens what `t` names. Errors name the log file that cannot be opened.
fn open_sinks(t: &LogTargets) -> Result<Sinks, String> {
    let file = match &t.logfile {
        Some(p) => Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| format!("logfile {}: {e}", p.display()))?,
        ),
        None => None,
    };
    let syslog = if t.to_syslog {
        open_syslog(Path::new(SYSLOG_SOCKET))?
    } else {
        None
    };
    Ok(Sinks {
        stderr: t.to_stderr,
        file,
        syslog,
        facility: t.syslog_facility,
        pid: std::process::id(),
    })
}

fn level_of(t: &LogTargets) -> tracing_subscriber::filter::LevelFilter {
    if t.debug {
        tracing_subscriber::filter::LevelFilter::DEBUG
    } else {
        tracing_subscriber::filter::LevelFilter::INFO
    }
}

/// Applies new targets (a configuration reload): the log file, stderr,
/// syslog and its facility, and the debug level change at once; lines
/// queued before go to the old sinks. The timestamp setting keeps its
/// value until a restart. On an error (a log file that cannot be opened)
/// nothing changes.
pub fn reconfigure(t: &LogTargets) -> Result<(), String> {
    let Some(c) = CONTROL.get() else {
        return Err("logging is not initialised".into());
    };
    let mut cur = c.targets.lock().unwrap_or_else(|e| e.into_inner());
    if *cur == *t {
        return Ok(());
    }
    let sinks = open_sinks(t)?;
    c.tx.send(Msg::Sinks(sinks))
        .map_err(|_| "log writer thread has stopped".to_string())?;
    if let Some(h) = &c.level {
        h.reload(level_of(t))
            .map_err(|e| format!("log level: {e}"))?;
    }
    *cur = t.clone();
    Ok(())
}

/// Reopens the log file (after logrotate moved it): later lines go to a
/// file of the configured name again.
pub fn reopen() -> Result<(), String> {
    let Some(c) = CONTROL.get() else {
        return Err("logging is not initialised".into());
    };
    let cur = c.targets.lock().unwrap_or_else(|e| e.into_inner());
    let sinks = open_sinks(&cur)?;
    c.tx.send(Msg::Sinks(sinks))
        .map_err(|_| "log writer thread has stopped".to_string())
}

/// Installs the global subscriber. Errors name the log file that cannot be
/// opened. Calling it twice keeps the first subscriber (tests).
pub fn init(t: &LogTargets) -> Result<LogGuard, String> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let sinks = open_sinks(t)?;
    let (tx, rx) = sync_channel(QUEUE_LINES);
    let dropped = Arc::new(AtomicU64::new(0));
    let d2 = dropped.clone();
    let thread = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || writer(rx, sinks, d2))
        .map_err(|e| format!("log writer thread: {e}"))?;
    let q = Queue {
        tx: tx.clone(),
        dropped,
    };
    let (filter, handle) = tracing_subscriber::reload::Layer::new(level_of(t));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(q)
        .with_ansi(false)
        .with_target(false);
    let registry = tracing_subscriber::registry().with(filter);
    let res = if t.timestamp {
        registry.with(fmt).try_init()
    } else {
        registry.with(fmt.without_time()).try_init()
    };
    // A subscriber may exist already (several runtimes in one test
    // process); lines go there, and the first runtime keeps the control.
    let _ = CONTROL.set(Control {
        tx,
        targets: Mutex::new(t.clone()),
        level: res.is_ok().then_some(handle),
    });
    Ok(LogGuard {
        thread: Some(thread),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A syslog line carries `<facility * 8 + severity>corosync[pid]: `
    /// and the text, to the socket the syslog daemon listens on.
    #[test]
    fn syslog_lines_carry_facility_severity_and_pid() {
        let dir = std::env::temp_dir().join(format!("corosync-rs-syslog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        let server = UnixDatagram::bind(&path).unwrap();
        let mut sinks = Sinks {
            stderr: false,
            file: None,
            syslog: open_syslog(&path).unwrap(),
            facility: 16, // local0
            pid: 4242,
        };
        sinks.write(&Line {
            level: Level::WARN,
            text: b"2026-11-28 something happened\n".to_vec(),
        });
        sinks.write(&Line {
            level: Level::ERROR,
            text: b"worse\n".to_vec(),
        });
        let mut buf = [0u8; 256];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(
            &buf[..n],
            b"<132>corosync[4242]: 2026-11-28 something happened"
        );
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"<131>corosync[4242]: worse");
        assert!(open_syslog(&dir.join("nobody")).unwrap().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
