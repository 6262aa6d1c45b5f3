//! `libdb::PmemRegion` over a mapped region: stores are ordinary stores
//! into the mapping, `persist` writes the cache lines back (clwb, else
//! clflushopt, else clflush, by CPUID) and `fence` is an `sfence`; the
//! `unsafe` this needs lives in `exo_rt::region`.

use exo_rt::region::Region;
use libdb::{IoError, PmemRegion};

pub struct MappedPmem {
    region: Region,
    /// `persist` calls and cache lines they covered, and fences.
    pub persists: u64,
    pub lines: u64,
    pub fences: u64,
}

impl MappedPmem {
    pub fn new(region: Region) -> MappedPmem {
        MappedPmem { region, persists: 0, lines: 0, fences: 0 }
    }
}

impl PmemRegion for MappedPmem {
    fn as_slice(&self) -> &[u8] {
        self.region.as_slice()
    }
    fn write(&mut self, offset: usize, data: &[u8]) {
        // libdb's PmemStorage checked the range against `as_slice().len()`.
        self.region.as_mut_slice()[offset..offset + data.len()].copy_from_slice(data);
    }
    fn persist(&mut self, offset: usize, len: usize) {
        self.persists += 1;
        if len > 0 {
            self.lines += ((offset + len - 1) / pmem::CACHE_LINE - offset / pmem::CACHE_LINE + 1) as u64;
        }
        self.region.persist(offset, len)
    }
    fn fence(&mut self) -> Result<(), IoError> {
        self.fences += 1;
        self.region.fence();
        Ok(())
    }
}
