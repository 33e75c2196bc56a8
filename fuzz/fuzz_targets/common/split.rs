//! Cuts a byte stream into pieces as socket reads would (1 byte up to 64 KiB), from a seed, so
//! the session targets see every split of the same bytes.

/// A xorshift32 sequence of piece sizes.
pub struct Splitter(pub u32);

impl Splitter {
    /// The next piece size.
    pub fn next(&mut self) -> usize {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        let max = [1usize, 7, 64, 200, 1536, 4096, 65536][(x & 7) as usize % 7];
        1 + (x >> 8) as usize % max
    }
}
