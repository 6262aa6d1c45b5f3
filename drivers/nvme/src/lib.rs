//! NVMe queue logic for a userspace driver, with no MMIO of its own.
//!
//! The driver process supplies two things: [`Registers`] (its mapping of
//! the controller's BAR 0) and [`DmaMemory`] (memory it owns that is mapped
//! into the device's I/O address space, addressed by I/O virtual address).
//! Everything else is computed here and tested on the host against a fake
//! controller running on a thread.
//!
//! * [`regs`]: controller register layout (CAP, CC, CSTS, AQA, doorbells).
//! * [`command`]: 64-byte submission entries (admin and NVM commands).
//! * [`status`]: completion entries and status codes as readable errors.
//! * [`queue`]: submission/completion rings with phase tags and doorbells.
//! * [`prp`]: PRP1/PRP2/PRP-list construction and MDTS splitting.
//! * [`identify`]: Identify Controller / Namespace parsing.
//! * [`blockq`]: the block service's shared-memory rings (to become its
//!   own crate).
//! * [`select`]: which controller a job gets (class, bus position,
//!   SR-IOV), confirmed by serial number.
//! * [`window`]: LBA windows derived from the namespace's size and block
//!   size (never fixed LBA numbers).
//! * [`driver`]: bring-up (reset, enable, identify, I/O queues) and
//!   read/write/flush on top of all of that.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod command;
pub mod driver;
pub mod identify;
pub mod prp;
pub mod queue;
pub mod regs;
pub mod select;
pub mod status;
pub mod window;

/// Memory the controller reaches by DMA. Addresses are the ones the device
/// uses (I/O virtual addresses behind the IOMMU); the implementation maps
/// them to the driver's own view of the memory.
pub trait DmaMemory {
    fn read(&self, addr: u64, buf: &mut [u8]);
    fn write(&mut self, addr: u64, data: &[u8]);

    fn read_u32(&self, addr: u64) -> u32 {
        let mut b = [0; 4];
        self.read(addr, &mut b);
        u32::from_le_bytes(b)
    }
    fn write_u32(&mut self, addr: u64, v: u32) {
        self.write(addr, &v.to_le_bytes());
    }
    fn write_u64(&mut self, addr: u64, v: u64) {
        self.write(addr, &v.to_le_bytes());
    }
    fn read_u64(&self, addr: u64) -> u64 {
        let mut b = [0; 8];
        self.read(addr, &mut b);
        u64::from_le_bytes(b)
    }
}

/// The controller's register window (BAR 0): the tree's one
/// register-window trait (`drivers/regs`), shared with the virtio driver.
pub use ::regs::Registers;
