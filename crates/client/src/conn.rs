//! One connection to one daemon service: requests with their `CsError`
//! answers, the event loop behind every `dispatch`, finalization, and the
//! mapping of IPC errors to the `cs_error_t` values Corosync returns.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use ipc_shm::proto::Status;
use ipc_shm::ring::RingSizes;
use ipc_shm::{Client, ClientConfig, ClientError, Endpoint, FrameHeader, Wait};
use services::proto::CsError;

use crate::DispatchFlags;

/// Ring capacities a CPG or EVS connection asks for: a 1 MiB message plus
/// headers must fit (a ring carries at most half its capacity per frame),
/// so 4 MiB request and event rings; responses are small.
pub(crate) const RING_SIZES: RingSizes = RingSizes {
    request: 4 << 20,
    response: 1 << 20,
    event: 4 << 20,
};

/// A cmap connection's: its responses carry values (`cmap_get` of the
/// largest value, 1 MiB, must come back as it was set), so its response
/// ring is as large as the request ring.
const CMAP_RING_SIZES: RingSizes = RingSizes {
    response: 4 << 20,
    ..RING_SIZES
};

// Checked at compile time: 1 MiB plus headers fits both rings, a cmap
// value of the largest size fits a cmap response, and the rings stay
// within the daemon's largest (8 MiB).
const _: () = {
    use ipc_shm::ring::max_payload;
    assert!(max_payload(RING_SIZES.request) as usize >= (1 << 20) + 4096);
    assert!(max_payload(RING_SIZES.event) as usize >= (1 << 20) + 4096);
    assert!(
        max_payload(CMAP_RING_SIZES.response) as usize
            >= services::proto::cmap::MAX_VALUE_LEN + 4096
    );
    assert!(RING_SIZES.request <= 8 << 20 && RING_SIZES.event <= 8 << 20);
    assert!(CMAP_RING_SIZES.response <= 8 << 20);
};

/// An event as it lies in the event ring: handed to the handler in place
/// (no copy; Corosync's callbacks get a mutable message, which may be
/// changed in place). Its ring space goes back to the daemon once the
/// handler returns; events after it remain available meanwhile (the
/// handler may dispatch, other threads may).
pub(crate) struct Event<'a> {
    pub kind: u16,
    pub payload: &'a mut [u8],
}

pub(crate) struct Conn {
    client: Client,
    service: u16,
    finalized: AtomicBool,
    /// Written once by `finalize`, so a thread blocked in `dispatch` wakes.
    wake_tx: Mutex<UnixStream>,
    wake_rx: UnixStream,
}

/// The `cs_error_t` for an errno, as Corosync's `qb_to_cs_error` maps it.
pub(crate) fn errno_to_cs(errno: i32) -> CsError {
    match errno {
        0 => CsError::Ok,
        libc::EBADF => CsError::BadHandle,
        libc::ENOMEM => CsError::NoMemory,
        libc::ENOMSG | libc::ENOBUFS | libc::ETIMEDOUT | libc::EAGAIN => CsError::TryAgain,
        libc::EBADE => CsError::FailedOperation,
        libc::ETIME => CsError::Timeout,
        libc::EINVAL => CsError::InvalidParam,
        libc::EBUSY => CsError::Busy,
        libc::EACCES => CsError::Access,
        libc::EOVERFLOW => CsError::NameTooLong,
        libc::EEXIST => CsError::Exist,
        libc::ENOSPC => CsError::NoSpace,
        libc::EINTR => CsError::Interrupt,
        libc::ENOENT | libc::ENODEV => CsError::NotExist,
        libc::ENOSYS | libc::ENOTSUP => CsError::NotSupported,
        libc::EBADMSG => CsError::MessageError,
        libc::EMSGSIZE | libc::E2BIG => CsError::TooBig,
        _ => CsError::Library,
    }
}

/// The error a failed session set-up gives, as libcpg's initialize would
/// (no daemon listening is `CS_ERR_LIBRARY`).
pub(crate) fn connect_error(e: &ClientError) -> CsError {
    match e {
        ClientError::Io(io) => match io.raw_os_error() {
            Some(libc::EACCES) | Some(libc::EPERM) => CsError::Access,
            Some(libc::EAGAIN) => CsError::TryAgain,
            Some(libc::ENOMEM) => CsError::NoMemory,
            Some(libc::EMFILE) | Some(libc::ENFILE) => CsError::NoResources,
            // ECONNREFUSED, ENOENT (no socket), anything else: no daemon.
            _ => CsError::Library,
        },
        ClientError::Refused(Status::NotAuthorized) => CsError::Access,
        ClientError::Refused(Status::BadVersion) => CsError::Version,
        ClientError::Refused(Status::TooManySessions) => CsError::NoResources,
        ClientError::Refused(Status::NoResources) => CsError::NoResources,
        // Corosync refuses connections with EAGAIN until its first sync.
        ClientError::Refused(Status::NotReady) => CsError::TryAgain,
        ClientError::Timeout => CsError::TryAgain,
        other => request_error(other),
    }
}

/// The error a request or dispatch on an open session gives.
pub(crate) fn request_error(e: &ClientError) -> CsError {
    match e {
        ClientError::TryAgain => CsError::TryAgain,
        // libqb reports a lost daemon as ENOTCONN: CS_ERR_LIBRARY.
        ClientError::Disconnected => CsError::Library,
        ClientError::TooLarge => CsError::TooBig,
        ClientError::Timeout => CsError::Timeout,
        ClientError::Io(io) => io.raw_os_error().map_or(CsError::Library, errno_to_cs),
        ClientError::Refused(_) | ClientError::UnknownService | ClientError::Protocol(_) => {
            CsError::Library
        }
    }
}

/// Splits a response payload into its `CsError` and body.
pub(crate) fn split_response(payload: &[u8]) -> Result<&[u8], CsError> {
    let Some((code, body)) = payload.split_first_chunk::<4>() else {
        return Err(CsError::Library);
    };
    match CsError::from_code(u32::from_le_bytes(*code)) {
        CsError::Ok => Ok(body),
        e => Err(e),
    }
}

impl Conn {
    pub(crate) fn connect(service: u16) -> Result<Conn, CsError> {
        let cfg = ClientConfig {
            endpoint: Endpoint::default(),
            sizes: if service == services::proto::service::CMAP {
                CMAP_RING_SIZES
            } else {
                RING_SIZES
            },
            ..ClientConfig::default()
        };
        let client = Client::connect(&cfg).map_err(|e| connect_error(&e))?;
        let (wake_tx, wake_rx) = UnixStream::pair().map_err(|e| io_error(&e))?;
        wake_tx.set_nonblocking(true).map_err(|e| io_error(&e))?;
        wake_rx.set_nonblocking(true).map_err(|e| io_error(&e))?;
        Ok(Conn {
            client,
            service,
            finalized: AtomicBool::new(false),
            wake_tx: Mutex::new(wake_tx),
            wake_rx,
        })
    }

    /// The pollable fd: readable when events wait or the daemon went away.
    pub(crate) fn fd(&self) -> RawFd {
        self.client.fd()
    }

    /// The largest request payload the request ring carries.
    pub(crate) fn max_request(&self) -> usize {
        self.client.max_request()
    }

    /// Unconsumed request bytes and the request ring's size
    /// (`BadHandle` once finalized).
    pub(crate) fn request_backlog(&self) -> Result<(u64, u64), CsError> {
        self.check_open()?;
        Ok(self.client.request_backlog())
    }

    pub(crate) fn is_finalized(&self) -> bool {
        self.finalized.load(Ordering::Acquire)
    }

    fn check_open(&self) -> Result<(), CsError> {
        if self.is_finalized() {
            Err(CsError::BadHandle)
        } else {
            Ok(())
        }
    }

    /// Sends a request and returns the body of its answer (after the
    /// error code), or the error the daemon answered.
    pub(crate) fn call(&self, kind: u16, payload: &[u8]) -> Result<Vec<u8>, CsError> {
        self.check_open()?;
        self.call_unchecked(kind, payload)
    }

    fn call_unchecked(&self, kind: u16, payload: &[u8]) -> Result<Vec<u8>, CsError> {
        if payload.len() > self.max_request() {
            return Err(CsError::TooBig);
        }
        let r = self
            .client
            .call(self.service, kind, payload, Wait::Park, None)
            .map_err(|e| request_error(&e))?;
        if r.header.kind != kind {
            return Err(CsError::Library);
        }
        split_response(&r.payload).map(<[u8]>::to_vec)
    }

    /// Puts a request that gets no response into the request ring:
    /// `TryAgain` when the ring is full (the daemon is behind or applies
    /// back-pressure), `Library` when the daemon is gone. The payload is
    /// `parts`, written one after the other.
    pub(crate) fn send_parts(&self, kind: u16, parts: &[&[u8]]) -> Result<(), CsError> {
        self.check_open()?;
        if parts.iter().map(|p| p.len()).sum::<usize>() > self.max_request() {
            return Err(CsError::TooBig);
        }
        self.client
            .send_parts(self.service, kind, parts)
            .map(drop)
            .map_err(|e| request_error(&e))
    }

    /// Marks the connection finalized (a second call is `BadHandle`),
    /// sends `request` if given (its answer is not waited on when the
    /// daemon is gone) and wakes a thread blocked in `dispatch`.
    pub(crate) fn finalize(&self, request: Option<u16>) -> Result<(), CsError> {
        if self.finalized.swap(true, Ordering::AcqRel) {
            return Err(CsError::BadHandle);
        }
        if let Some(kind) = request {
            // As libcpg: the handle is gone whatever the daemon answers.
            let _ = self.call_unchecked(kind, &[]);
        }
        let tx = self.wake_tx.lock().unwrap_or_else(|p| p.into_inner());
        let _ = (&*tx).write(&[1]);
        Ok(())
    }

    /// Waits until an event may wait, the daemon went away, or another
    /// thread finalized the connection (then `BadHandle`).
    fn wait(&self) -> Result<(), CsError> {
        let ready = crate::sys::wait_readable(self.fd(), self.wake_rx.as_raw_fd(), -1)
            .map_err(|e| io_error(&e))?;
        // The wake-up byte is never read: it keeps waking every thread
        // that waits on this finalized connection.
        if ready.second || self.is_finalized() {
            return Err(CsError::BadHandle);
        }
        Ok(())
    }

    /// The dispatch loop shared by every service: hands events one at a
    /// time, in place, to `handle` (no lock held, so `handle` may call
    /// anything on the connection, finalize and dispatch included). Returns
    /// as Corosync's `*_dispatch` does; `BadHandle` once the connection was
    /// finalized.
    pub(crate) fn dispatch(
        &self,
        flags: DispatchFlags,
        mut handle: impl FnMut(&mut Event<'_>) -> Result<(), CsError>,
    ) -> Result<(), CsError> {
        loop {
            self.check_open()?;
            let handled = self
                .client
                .dispatch_in_place(|h: FrameHeader, payload: &mut [u8]| {
                    handle(&mut Event {
                        kind: h.kind,
                        payload,
                    })
                })
                .map_err(|e| request_error(&e))?;
            match handled {
                Some(r) => {
                    // The event's room goes back to the daemon in batches;
                    // a call that returns before finding the ring empty
                    // gives back the rest.
                    if let Err(e) = r.and_then(|()| self.check_open()) {
                        self.client.release_dispatched();
                        return Err(e);
                    }
                    if matches!(flags, DispatchFlags::One | DispatchFlags::OneNonblocking) {
                        self.client.release_dispatched();
                        return Ok(());
                    }
                }
                None => match flags {
                    DispatchFlags::All => return Ok(()),
                    DispatchFlags::OneNonblocking => return Err(CsError::TryAgain),
                    DispatchFlags::One | DispatchFlags::Blocking => {
                        if self.client.is_gone() {
                            // The ring is drained: what remains is the end.
                            return Err(CsError::Library);
                        }
                        self.wait()?;
                    }
                },
            }
        }
    }
}

fn io_error(e: &io::Error) -> CsError {
    e.raw_os_error().map_or(CsError::Library, errno_to_cs)
}

/// A poll timeout for tests that must not hang.
#[cfg(test)]
pub(crate) const TEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_mapping_follows_qb_to_cs_error() {
        assert_eq!(errno_to_cs(0), CsError::Ok);
        assert_eq!(errno_to_cs(libc::EAGAIN), CsError::TryAgain);
        assert_eq!(errno_to_cs(libc::EBADF), CsError::BadHandle);
        assert_eq!(errno_to_cs(libc::EMSGSIZE), CsError::TooBig);
        assert_eq!(errno_to_cs(libc::ECONNREFUSED), CsError::Library);
        assert_eq!(errno_to_cs(libc::ENOTCONN), CsError::Library);
        assert_eq!(errno_to_cs(libc::ENOENT), CsError::NotExist);
    }

    #[test]
    fn ipc_errors_map_to_corosync_codes() {
        let refused = ClientError::Io(io::Error::from_raw_os_error(libc::ECONNREFUSED));
        assert_eq!(connect_error(&refused), CsError::Library);
        let missing = ClientError::Io(io::Error::from_raw_os_error(libc::ENOENT));
        assert_eq!(connect_error(&missing), CsError::Library);
        assert_eq!(
            connect_error(&ClientError::Refused(Status::NotAuthorized)),
            CsError::Access
        );
        assert_eq!(
            connect_error(&ClientError::Refused(Status::BadVersion)),
            CsError::Version
        );
        // Before the daemon's first sync, as Corosync's EAGAIN.
        assert_eq!(
            connect_error(&ClientError::Refused(Status::NotReady)),
            CsError::TryAgain
        );
        assert_eq!(request_error(&ClientError::TryAgain), CsError::TryAgain);
        assert_eq!(request_error(&ClientError::Disconnected), CsError::Library);
        assert_eq!(request_error(&ClientError::TooLarge), CsError::TooBig);
        assert_eq!(request_error(&ClientError::Protocol("x")), CsError::Library);
    }

    #[test]
    fn responses_split_on_their_error_code() {
        assert_eq!(split_response(&[1, 0, 0, 0, 7]), Ok(&[7u8][..]));
        assert_eq!(split_response(&[6, 0, 0, 0]), Err(CsError::TryAgain));
        assert_eq!(split_response(&[1, 0]), Err(CsError::Library));
        assert_eq!(split_response(&[99, 0, 0, 0]), Err(CsError::Library));
    }

    #[test]
    fn no_daemon_is_library_error() {
        // A name unique to this process: nobody listens there.
        let name = format!("corosync-rs-test-none-{}", std::process::id());
        std::env::set_var(ipc_shm::ENDPOINT_ENV, &name);
        let t = std::time::Instant::now();
        assert_eq!(Conn::connect(0).err(), Some(CsError::Library));
        assert!(t.elapsed() < TEST_TIMEOUT);
    }
}
