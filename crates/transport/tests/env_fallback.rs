//! COROSYNC_RS_TRANSPORT=fallback forces the fallback even when the
//! configuration asks for io_uring. Its own test binary: it sets the
//! process environment.

mod common;

use common::*;
use transport::{Dest, EngineChoice, EngineKind, NodeId, Transport};

#[test]
fn environment_variable_forces_fallback() {
    std::env::set_var(transport::ENGINE_ENV_VAR, "fallback");
    let m = [(NodeId(1), unique_lo(5405)), (NodeId(2), unique_lo(5405))];
    let o = Opts::new(EngineChoice::IoUring);
    let mut a = Transport::new(config(1, &m, &o)).unwrap();
    let mut b = Transport::new(config(2, &m, &o)).unwrap();
    assert_eq!(a.status().engine, EngineKind::Fallback);
    assert!(a.status().fallback_reason.is_some());
    a.send_batch(&[(Dest::Multicast, b"x".as_slice())]).unwrap();
    assert_eq!(
        collect(&mut b, 1, std::time::Duration::from_secs(5)).len(),
        1
    );
    std::env::set_var(transport::ENGINE_ENV_VAR, "bogus");
    assert!(Transport::new(config(1, &m, &o)).is_err());
    std::env::remove_var(transport::ENGINE_ENV_VAR);
}
