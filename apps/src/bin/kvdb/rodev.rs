//! `libdb::PmemRegion` over persistent memory this process may only read
//! (the readers of `readrandom.rs`). Its own module: `pmemdev.rs` is also
//! compiled into `fsbench`, which has no use for it.

use exo_rt::region::Region;
use libdb::{IoError, PmemRegion};

/// Persistent memory this process may only read: pages init shared
/// read-only with every reader of a database (`readrandom.rs`). Nothing
/// changes them while the readers live (the database's writer has exited
/// and init, their owner, does not write them), so a [`Region`]'s shared
/// slice stays sound. libdb opened read-only never writes; should it try,
/// the write is refused here (a store would fault) and counted, and the
/// next fence fails, naming it as a device error.
pub struct ReadOnlyPmem {
    region: Region,
    pub refused_writes: u64,
}

/// The `IoError::Device` code a refused write turns into (EROFS).
pub const READ_ONLY_DEVICE_CODE: i32 = -30;

impl ReadOnlyPmem {
    pub fn new(region: Region) -> ReadOnlyPmem {
        ReadOnlyPmem { region, refused_writes: 0 }
    }
}

impl PmemRegion for ReadOnlyPmem {
    fn as_slice(&self) -> &[u8] {
        self.region.as_slice()
    }
    fn write(&mut self, _offset: usize, _data: &[u8]) {
        self.refused_writes += 1;
    }
    fn persist(&mut self, _offset: usize, _len: usize) {}
    fn fence(&mut self) -> Result<(), IoError> {
        if self.refused_writes > 0 {
            return Err(IoError::Device(READ_ONLY_DEVICE_CODE));
        }
        Ok(())
    }
}
