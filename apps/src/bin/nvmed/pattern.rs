//! Test data: the content of a block depends only on (seed, LBA), so
//! overlapping random writes agree and any block read back can be checked
//! without remembering which write put it there. A fresh seed per run means
//! stale data from an earlier run never passes.

use exo_rt::mmio::Window;

/// Word `j` of block `lba` under `seed`.
pub fn word(seed: u64, lba: u64, j: u64) -> u64 {
    let x = (lba ^ seed.rotate_left(17)).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ seed;
    x.wrapping_add(j.wrapping_mul(0xd1b5_4a32_d192_ed03))
}

/// Fill `blocks` blocks of `block_size` bytes at `offset` in `win` with the
/// pattern for LBAs `lba..`.
pub fn fill(win: &Window, offset: u64, seed: u64, lba: u64, blocks: u64, block_size: u64) {
    for b in 0..blocks {
        let at = offset + b * block_size;
        for j in 0..block_size / 8 {
            win.write64(at + 8 * j, word(seed, lba + b, j));
        }
    }
}

/// The first mismatch, as (block index, word index, found, expected).
pub fn check(
    win: &Window,
    offset: u64,
    seed: u64,
    lba: u64,
    blocks: u64,
    block_size: u64,
) -> Option<(u64, u64, u64, u64)> {
    for b in 0..blocks {
        let at = offset + b * block_size;
        for j in 0..block_size / 8 {
            let (got, want) = (win.read64(at + 8 * j), word(seed, lba + b, j));
            if got != want {
                return Some((b, j, got, want));
            }
        }
    }
    None
}

/// xorshift64*: a small deterministic generator for LBAs and sizes.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform-enough in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}
