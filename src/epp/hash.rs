//! xxHash64, the reference picker's prefix hash, from the `xxhash-rust` crate; the tests
//! pin it to the published test vectors, since prefix-cache affinity depends on hashing
//! exactly as model servers and other pickers do.

pub use xxhash_rust::xxh64::xxh64;

#[cfg(test)]
mod tests {
    use super::xxh64;

    #[test]
    fn matches_reference_vectors() {
        assert_eq!(xxh64(b"", 0), 0xEF46_DB37_51D8_E999);
        assert_eq!(xxh64(b"a", 0), 0xD24E_C4F1_A98C_6E5B);
        assert_eq!(xxh64(b"abc", 0), 0x44BC_2CF5_AD77_0999);
    }

    #[test]
    fn long_inputs_use_every_byte() {
        let a = [7u8; 100];
        let mut b = a;
        b[99] = 8;
        assert_ne!(xxh64(&a, 0), xxh64(&b, 0));
        assert_ne!(xxh64(&a, 0), xxh64(&a, 1));
    }
}
