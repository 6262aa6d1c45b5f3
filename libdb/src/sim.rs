//! A simulated block device that can crash, for tests.
//!
//! Writes land in a volatile write-back cache; `flush` makes them durable.
//! On a crash any subset of the writes since the last flush may have
//! reached the medium, block by block (a multi-block write can tear at
//! block boundaries), in any order (so for a block written twice, either
//! version may win). With [`SimBlockDevice::enable_trace`] every write and
//! every flush is a crash point.

use alloc::vec::Vec;

use pmem::sim::XorShift;

use crate::error::IoError;
use crate::storage::BlockDevice;

pub struct SimBlockDevice {
    block_size: usize,
    durable: Vec<u8>,
    current: Vec<u8>,
    /// Block writes since the last flush, in issue order.
    unflushed: Vec<(u64, Vec<u8>)>,
    trace: Option<BlockTrace>,
    pub writes: u64,
    pub flushes: u64,
}

/// Every crash point since `enable_trace`.
#[derive(Default)]
pub struct BlockTrace {
    block_size: usize,
    base: Vec<u8>,
    /// Every block written, in order.
    writes: Vec<(u64, Vec<u8>)>,
    /// Per point: (writes durable, writes issued).
    points: Vec<(usize, usize)>,
    flushed_upto: usize,
}

/// The device as it could be found after a crash at one point.
pub struct BlockCrashPoint<'a> {
    block_size: usize,
    durable: &'a [u8],
    unflushed: &'a [(u64, Vec<u8>)],
}

fn apply(img: &mut [u8], bs: usize, lba: u64, data: &[u8]) {
    let off = lba as usize * bs;
    img[off..off + data.len()].copy_from_slice(data);
}

impl SimBlockDevice {
    pub fn new(block_size: usize, blocks: u64) -> Self {
        Self::from_image(block_size, alloc::vec![0; block_size * blocks as usize])
    }

    /// A device holding `image` (truncated down to whole blocks).
    pub fn from_image(block_size: usize, mut image: Vec<u8>) -> Self {
        image.truncate(image.len() / block_size * block_size);
        SimBlockDevice {
            block_size,
            durable: image.clone(),
            current: image,
            unflushed: Vec::new(),
            trace: None,
            writes: 0,
            flushes: 0,
        }
    }

    /// What reads return now.
    pub fn image(&self) -> &[u8] {
        &self.current
    }

    pub fn enable_trace(&mut self) {
        self.trace =
            Some(BlockTrace { block_size: self.block_size, base: self.durable.clone(), ..BlockTrace::default() });
    }

    pub fn trace_len(&self) -> usize {
        self.trace.as_ref().map_or(0, |t| t.points.len())
    }

    pub fn take_trace(&mut self) -> Option<BlockTrace> {
        self.trace.take()
    }

    fn point(&self) -> BlockCrashPoint<'_> {
        BlockCrashPoint { block_size: self.block_size, durable: &self.durable, unflushed: &self.unflushed }
    }

    /// Only flushed writes survive.
    pub fn crash_image_strict(&self) -> Vec<u8> {
        self.durable.clone()
    }

    /// A random subset of the unflushed blocks survives, in random order.
    pub fn crash_image_random(&self, seed: u64) -> Vec<u8> {
        self.point().random(seed)
    }
}

impl BlockDevice for SimBlockDevice {
    fn block_size(&self) -> usize {
        self.block_size
    }
    fn blocks(&self) -> u64 {
        (self.current.len() / self.block_size) as u64
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let off = lba as usize * self.block_size;
        if !buf.len().is_multiple_of(self.block_size) {
            return Err(IoError::Unaligned);
        }
        let src = self.current.get(off..off + buf.len()).ok_or(IoError::OutOfRange)?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn write(&mut self, lba: u64, data: &[u8]) -> Result<(), IoError> {
        let off = lba as usize * self.block_size;
        if !data.len().is_multiple_of(self.block_size) {
            return Err(IoError::Unaligned);
        }
        if off + data.len() > self.current.len() {
            return Err(IoError::OutOfRange);
        }
        self.writes += 1;
        apply(&mut self.current, self.block_size, lba, data);
        for (i, block) in data.chunks(self.block_size).enumerate() {
            self.unflushed.push((lba + i as u64, block.to_vec()));
            if let Some(t) = self.trace.as_mut() {
                t.writes.push((lba + i as u64, block.to_vec()));
            }
        }
        if let Some(t) = self.trace.as_mut() {
            t.points.push((t.flushed_upto, t.writes.len()));
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), IoError> {
        self.flushes += 1;
        for (lba, data) in core::mem::take(&mut self.unflushed) {
            apply(&mut self.durable, self.block_size, lba, &data);
        }
        if let Some(t) = self.trace.as_mut() {
            t.flushed_upto = t.writes.len();
            t.points.push((t.flushed_upto, t.writes.len()));
        }
        Ok(())
    }
}

impl BlockTrace {
    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Calls `f(index, point)` for every crash point in order.
    pub fn for_each_point(&self, mut f: impl FnMut(usize, &BlockCrashPoint<'_>)) {
        let mut durable = self.base.clone();
        let mut applied = 0;
        for (i, &(flushed, issued)) in self.points.iter().enumerate() {
            while applied < flushed {
                let (lba, data) = &self.writes[applied];
                apply(&mut durable, self.block_size, *lba, data);
                applied += 1;
            }
            let p = BlockCrashPoint {
                block_size: self.block_size,
                durable: &durable,
                unflushed: &self.writes[flushed..issued],
            };
            f(i, &p);
        }
    }
}

impl BlockCrashPoint<'_> {
    pub fn strict(&self) -> Vec<u8> {
        self.durable.to_vec()
    }

    /// Every unflushed block reached the medium, in order.
    pub fn all_survive(&self) -> Vec<u8> {
        let mut img = self.durable.to_vec();
        for (lba, data) in self.unflushed {
            apply(&mut img, self.block_size, *lba, data);
        }
        img
    }

    pub fn unflushed_blocks(&self) -> usize {
        self.unflushed.len()
    }

    /// A random subset of the unflushed blocks, applied in random order.
    pub fn random(&self, seed: u64) -> Vec<u8> {
        let mut rng = XorShift::new(seed);
        let mut chosen: Vec<&(u64, Vec<u8>)> = self.unflushed.iter().filter(|_| rng.below(2) == 1).collect();
        for i in (1..chosen.len()).rev() {
            chosen.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let mut img = self.durable.to_vec();
        for (lba, data) in chosen {
            apply(&mut img, self.block_size, *lba, data);
        }
        img
    }
}
