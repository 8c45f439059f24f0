//! Serial-number arithmetic (RFC 1982 style) for the 32-bit sequence numbers
//! Totem puts on the wire: message seq, aru, token_seq. Every comparison of
//! such numbers in this crate goes through these helpers so that rings keep
//! working across wraparound.

/// `a < b` in serial arithmetic.
#[inline]
pub fn lt(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < 0x8000_0000
}

/// `a <= b` in serial arithmetic.
#[inline]
pub fn le(a: u32, b: u32) -> bool {
    a == b || lt(a, b)
}

/// `a > b` in serial arithmetic.
#[inline]
pub fn gt(a: u32, b: u32) -> bool {
    lt(b, a)
}

/// The serially larger of two numbers.
#[inline]
pub fn max(a: u32, b: u32) -> u32 {
    if lt(a, b) {
        b
    } else {
        a
    }
}

/// The serially smaller of two numbers.
#[inline]
pub fn min(a: u32, b: u32) -> u32 {
    if lt(a, b) {
        a
    } else {
        b
    }
}

/// Distance from `a` forward to `b` (b - a), meaningful when `le(a, b)`.
#[inline]
pub fn dist(a: u32, b: u32) -> u32 {
    b.wrapping_sub(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps() {
        assert!(lt(0xffff_fffe, 0xffff_ffff));
        assert!(lt(0xffff_ffff, 0));
        assert!(lt(0xffff_ff00, 5));
        assert!(!lt(5, 0xffff_ff00));
        assert!(le(7, 7));
        assert!(gt(3, 0xffff_fff0));
        assert_eq!(max(0xffff_fff0, 3), 3);
        assert_eq!(min(0xffff_fff0, 3), 0xffff_fff0);
        assert_eq!(dist(0xffff_fffe, 1), 3);
    }
}
