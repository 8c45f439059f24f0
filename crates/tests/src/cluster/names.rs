//! Unique per-run names.
//!
//! A run's prefix is `crh<pid base36>-<tag>`: `crh` marks the harness, the
//! pid says whose run it is (so [`super::sweep_stale`] can tell dead runs
//! from live ones), and the three-character tag is a per-process counter
//! started at a random point (unique within the process, and unlikely to
//! meet a leftover of a dead process that had the same pid). The prefix is
//! at most 12 characters, so interface names built from it
//! (`<prefix>v<i>`, `<prefix>p<i>`, `<prefix>br`) stay within the kernel's
//! 15 for node indexes below 100.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// Marks every name the harness creates.
pub const MARK: &str = "crh";
/// Base-36 digits in a tag.
const TAG_LEN: usize = 3;
const TAG_SPACE: u32 = 36 * 36 * 36;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A random u64 from std's per-process hash keys (no extra dependency).
pub fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.finish()
}

fn tag_start() -> u32 {
    static START: OnceLock<u32> = OnceLock::new();
    *START.get_or_init(|| (random_u64() % u64::from(TAG_SPACE)) as u32)
}

pub fn base36(mut n: u64, min_len: usize) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    while n > 0 || out.len() < min_len {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
    }
    out.reverse();
    String::from_utf8(out).expect("ascii digits")
}

/// A fresh prefix for this process: unique among the process's runs.
pub fn new_prefix() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tag = (tag_start() + n) % TAG_SPACE;
    prefix_for(std::process::id(), tag)
}

pub fn prefix_for(pid: u32, tag: u32) -> String {
    format!(
        "{MARK}{}-{}",
        base36(u64::from(pid), 1),
        base36(u64::from(tag % TAG_SPACE), TAG_LEN)
    )
}

/// The pid encoded in a harness namespace name (`<prefix>-br` or
/// `<prefix>-n<i>`), or None when the name is not one of ours.
pub fn pid_of_netns(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(MARK)?;
    let mut parts = rest.splitn(3, '-');
    let pid = parts.next()?;
    let tag = parts.next()?;
    let role = parts.next()?;
    let is_b36 = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    };
    if pid.is_empty() || pid.len() > 7 || !is_b36(pid) || tag.len() != TAG_LEN || !is_b36(tag) {
        return None;
    }
    let node = role
        .strip_prefix('n')
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
    if role != "br" && !node {
        return None;
    }
    u32::from_str_radix(pid, 36).ok()
}

/// The prefix of a harness namespace or temp-dir name (`<prefix>-…`).
pub fn prefix_of(name: &str) -> Option<&str> {
    let after_mark = name.strip_prefix(MARK)?;
    let first_dash = after_mark.find('-')?;
    let end = MARK.len() + first_dash + 1 + TAG_LEN;
    name.get(..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_parse_back() {
        let p = prefix_for(4_194_304, 46_655);
        assert!(p.len() <= 12, "{p}");
        assert_eq!(pid_of_netns(&format!("{p}-br")), Some(4_194_304));
        assert_eq!(pid_of_netns(&format!("{p}-n12")), Some(4_194_304));
        assert_eq!(prefix_of(&format!("{p}-n12")), Some(p.as_str()));
        assert_eq!(pid_of_netns(&format!("{p}-x")), None);
        assert_eq!(pid_of_netns("crs-123-4-a0"), None);
        assert_eq!(pid_of_netns("crh12-ab-n0"), None);
        assert_ne!(new_prefix(), new_prefix());
    }
}
