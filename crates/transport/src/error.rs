use std::io;

use crate::crypto::CryptoError;
use crate::NodeId;

/// Errors that reach the caller; dropped packets are counted, not returned.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("invalid transport configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("socket set-up failed ({what}): {source}")]
    Socket {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("io_uring engine unavailable: {0}")]
    UringUnavailable(String),
    #[error("frame of {len} bytes exceeds max_frame {max}")]
    FrameTooLarge { len: usize, max: usize },
    #[error("unknown destination node {0:?}")]
    UnknownNode(NodeId),
    #[error("fatal engine error: {0}")]
    Fatal(#[source] io::Error),
}

pub(crate) fn sock_err(what: &'static str) -> impl FnOnce(io::Error) -> TransportError {
    move |source| TransportError::Socket { what, source }
}
