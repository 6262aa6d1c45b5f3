//! Test doubles: physical memory as a sparse map of quadwords and frames
//! from a list (the tests' generator is `testrng::Rng`).
#![allow(dead_code)]

use iommu::vtd::{FrameSource, PhysMem};
use std::collections::HashMap;

/// Sparse emulated RAM. Unwritten memory reads as a fixed garbage pattern,
/// not zero, so code that forgets to clear a table frame is caught.
#[derive(Default)]
pub struct EmulatedMemory {
    words: HashMap<u64, u64>,
    pub writes: usize,
}

pub const GARBAGE: u64 = 0xdead_beef_f00d_cafe;

impl PhysMem for EmulatedMemory {
    fn read_u64(&self, pa: u64) -> u64 {
        assert_eq!(pa % 8, 0, "unaligned quadword read at {pa:#x}");
        *self.words.get(&pa).unwrap_or(&GARBAGE)
    }
    fn write_u64(&mut self, pa: u64, v: u64) {
        assert_eq!(pa % 8, 0, "unaligned quadword write at {pa:#x}");
        self.writes += 1;
        self.words.insert(pa, v);
    }
}

/// Hands out frames from a list (lowest first).
pub struct Frames {
    pub free: Vec<u64>,
    pub taken: Vec<u64>,
}

impl Frames {
    /// `count` frames starting at `base`.
    pub fn new(base: u64, count: u64) -> Frames {
        Frames { free: (0..count).rev().map(|i| base + i * 4096).collect(), taken: Vec::new() }
    }
}

impl FrameSource for Frames {
    fn take_frame(&mut self) -> Option<u64> {
        let f = self.free.pop()?;
        self.taken.push(f);
        Some(f)
    }
}
