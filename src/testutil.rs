//! Test-only helpers shared by the unit tables: a tiny seeded PRNG, so randomized tests need
//! no crates and every failure reproduces from its seed.

/// xorshift64: fast, deterministic, good enough to pick split points and mutations.
pub(crate) struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits. The seed must not be 0.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// An index in `0..n` (`n` > 0).
    pub fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }
}
