//! Real `corosync` daemons in network namespaces (loopback addresses
//! without root): ring formation over udpu, multicast and IPv6, a killed
//! node noticed within token + consensus, a restarted node rejoining, and a
//! SIGTERM that lets the others reform without waiting for token loss.

use std::time::{Duration, Instant};

use tests::cluster::{Cluster, Mode, Transport};

const FORM: Duration = Duration::from_secs(30);
/// Token timeout for these clusters (ms); 3 nodes add one coefficient.
const TOKEN: u32 = 1000;

fn timings() -> (Duration, Duration) {
    // token + (3 − 2) × 650; consensus = 1.2 × token (Corosync's rules,
    // applied by the configuration reader).
    let token = u64::from(TOKEN) + 650;
    (
        Duration::from_millis(token),
        Duration::from_millis(token * 12 / 10),
    )
}

fn three(t: Transport) -> Cluster {
    let c = Cluster::builder()
        .nodes(3)
        .transport(t)
        .token(TOKEN)
        .start()
        .expect("cluster start");
    c.wait_membership(&[0, 1, 2], FORM)
        .expect("three nodes form one ring");
    for i in 0..3 {
        c.wait_ready(i, FORM).expect("sync completes");
    }
    c
}

#[test]
fn three_nodes_form_one_ring_over_udpu() {
    let c = three(Transport::Udpu);
    for i in 0..3 {
        assert_eq!(c.latest_members(i), Some(c.node_ids()), "node {i}");
    }
}

#[test]
fn three_nodes_form_one_ring_over_multicast() {
    if Cluster::host_mode() != Mode::Namespaces {
        eprintln!("multicast needs namespaces (root and ip): testing udpu on loopback instead");
        three(Transport::Udpu);
        return;
    }
    let c = three(Transport::Udp);
    // The node ids were derived from the IPv4 addresses.
    for i in 0..3 {
        assert_eq!(c.latest_members(i), Some(c.node_ids()), "node {i}");
        assert_eq!(c.node_id(i), u32::from(c.ipv4(i)));
    }
    // Without a nodelist, each node's membership lines still name every
    // member's address (learned from its frames).
    for i in 0..3 {
        let log = c.log(i);
        for j in 0..3 {
            let line = format!("processor {} at {}", c.node_id(j), c.ipv4(j));
            assert!(log.contains(&line), "node {i}'s log lacks {line:?}:\n{log}");
        }
    }
}

#[test]
fn three_nodes_form_one_ring_over_ipv6() {
    if Cluster::host_mode() != Mode::Namespaces {
        eprintln!("IPv6 needs namespaces (root and ip): testing udpu on loopback instead");
        three(Transport::Udpu);
        return;
    }
    let c = three(Transport::Udpu6);
    assert!(c.log(0).contains(&c.ipv6(0).unwrap().to_string()));
}

#[test]
fn killed_node_is_noticed_within_token_plus_consensus_and_rejoins() {
    let c = three(Transport::Udpu);
    let (token, consensus) = timings();
    let offsets: Vec<u64> = (0..2).map(|i| c.log_offset(i)).collect();
    let t0 = Instant::now();
    c.kill9(2).unwrap();
    for (i, &off) in offsets.iter().enumerate() {
        c.wait_log_since(i, off, "Members[2]:", FORM)
            .expect("survivors reform");
    }
    let took = t0.elapsed();
    // Detection (token) plus forming the new ring (consensus), with room
    // for a loaded 2-core machine.
    let bound = token + consensus + Duration::from_millis(1500);
    assert!(took < bound, "took {took:?}, bound {bound:?}");
    eprintln!("kill -9 noticed and the ring reformed in {took:?} (token {token:?} + consensus {consensus:?})");
    c.restart(2).unwrap();
    c.wait_membership(&[0, 1, 2], FORM)
        .expect("restarted node rejoins");
}

#[test]
fn sigterm_lets_the_others_reform_without_waiting_for_token_loss() {
    let c = three(Transport::Udpu);
    let (token, _) = timings();
    let offsets: Vec<u64> = (0..2).map(|i| c.log_offset(i)).collect();
    let t0 = Instant::now();
    c.sigterm(2).unwrap();
    for (i, &off) in offsets.iter().enumerate() {
        c.wait_log_since(i, off, "Members[2]:", FORM)
            .expect("survivors reform");
    }
    let took = t0.elapsed();
    assert!(
        took < token,
        "a graceful leave took {took:?}: as long as a token loss ({token:?})"
    );
    eprintln!("SIGTERM: the others reformed in {took:?} (token timeout {token:?})");
    let status = c.wait_exit(2, FORM).expect("the daemon exits");
    assert!(status.success(), "{status:?}");
    assert!(c.log(2).contains("SIGTERM: leaving the ring"));
}

/// The `nodelist { … }` section of a harness-written config.
fn nodelist_section(text: &str) -> &str {
    let start = text.find("nodelist {").expect("a nodelist");
    let end = start + text[start..].find("\n}\n").expect("its end") + 3;
    &text[start..end]
}

/// The same section without the last `node { … }` block.
fn without_last_node(section: &str) -> String {
    let last = section.rfind("\tnode {").expect("a node");
    let end = last + section[last..].find("\t}\n").expect("block end") + 3;
    format!("{}{}", &section[..last], &section[end..])
}

fn cfgtool_reload(c: &Cluster, i: usize) {
    let tool = tests::cluster::cprog::artifacts().join("corosync-cfgtool");
    let out = c
        .exec_in(i, &[tool.to_str().unwrap(), "-R"])
        .expect("run corosync-cfgtool");
    assert!(
        out.status.success(),
        "corosync-cfgtool -R: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_reloaded_node_list_adds_and_removes_a_node() {
    // Nodes 0 and 1 start with a node list of two; node 2 lists all three.
    let c = Cluster::builder()
        .nodes(3)
        .transport(Transport::Udpu)
        .token(TOKEN)
        .config_edit(|i, text| {
            if i < 2 {
                let full = nodelist_section(&text).to_owned();
                text.replacen(&full, &without_last_node(&full), 1)
            } else {
                text
            }
        })
        .start()
        .expect("cluster start");
    c.wait_membership(&[0, 1], FORM)
        .expect("ring of the two listed");
    // Node 2's joins reach them but it is not on their list: not heard.
    std::thread::sleep(Duration::from_secs(3));
    let mut two = vec![c.node_id(0), c.node_id(1)];
    two.sort_unstable();
    assert_eq!(c.latest_members(0), Some(two.clone()), "node 2 kept out");

    // Add node 2 to their lists and reload: the ring of three forms.
    let full = nodelist_section(&std::fs::read_to_string(c.config_path(2)).unwrap()).to_owned();
    for i in 0..2 {
        let text = std::fs::read_to_string(c.config_path(i)).unwrap();
        let short = nodelist_section(&text).to_owned();
        std::fs::write(c.config_path(i), text.replacen(&short, &full, 1)).unwrap();
    }
    cfgtool_reload(&c, 0);
    c.wait_membership(&[0, 1, 2], FORM)
        .expect("node 2 joins once listed");
    for i in 0..2 {
        c.wait_log(i, "node list now:", FORM)
            .expect("reload applied");
    }

    // Remove it again: the two go on without it.
    for i in 0..2 {
        let text = std::fs::read_to_string(c.config_path(i)).unwrap();
        std::fs::write(
            c.config_path(i),
            text.replacen(&full, &without_last_node(&full), 1),
        )
        .unwrap();
    }
    cfgtool_reload(&c, 1);
    let (token, consensus) = timings();
    c.wait_membership(&[0, 1], FORM + token + consensus)
        .expect("the two re-form without node 2");
    assert!(c.is_running(2), "the removed node keeps running on its own");
}
