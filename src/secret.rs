//! Comparing secrets (the admin protocol's and the SOCKS5 front's passwords) without
//! telling an attacker, through timing, where they differ.

/// Whether two byte strings are equal, in time that depends only on the longer one's length.
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let mut difference = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        difference |= x ^ y;
    }
    // Keeps the compiler from turning the loop into an early exit.
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::same_bytes;

    #[test]
    fn equal_only_when_every_byte_and_the_length_agree() {
        assert!(same_bytes(b"", b""));
        assert!(same_bytes(b"s3cret", b"s3cret"));
        assert!(!same_bytes(b"a", b""));
        assert!(!same_bytes(b"s3cret", b"s3cres"));
        assert!(!same_bytes(b"s3cret", b"s3cret!"));
        assert!(!same_bytes(b"\0", b""));
    }
}
