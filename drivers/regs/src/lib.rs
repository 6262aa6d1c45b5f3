//! A device's register window (a memory BAR), as every driver in the tree
//! sees it: byte offsets from the window's start, 8-, 16- and 32-bit
//! accesses, 64-bit registers as two dword accesses. On the exokernel the
//! runtime's `mmio::Window` over the BAR init moved to the driver
//! implements it (`exo_rt::nvme`, `exo_rt::virtio`); on the host, each
//! driver's fake device does, so the protocol code runs under `cargo test`.
//!
//! Writes take `&self`: a register write is a side effect on the device,
//! not on the window, and a driver may hold the window twice (virtio keeps
//! a second handle for status checks while `virtio-drivers` owns the
//! transport). Implementations check bounds and alignment.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub trait Registers {
    /// Length of the window in bytes.
    fn len(&self) -> u64;
    fn read8(&self, offset: u64) -> u8;
    fn read16(&self, offset: u64) -> u16;
    fn read32(&self, offset: u64) -> u32;
    fn write8(&self, offset: u64, value: u8);
    fn write16(&self, offset: u64, value: u16);
    fn write32(&self, offset: u64, value: u32);

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A 64-bit register as two dword accesses, low first, which NVMe
    /// requires every controller to accept (and virtio's 64-bit fields are
    /// two 32-bit halves anyway).
    fn read64(&self, offset: u64) -> u64 {
        self.read32(offset) as u64 | (self.read32(offset + 4) as u64) << 32
    }
    fn write64(&self, offset: u64, value: u64) {
        self.write32(offset, value as u32);
        self.write32(offset + 4, (value >> 32) as u32);
    }
    /// Called on every turn of a polling loop: a spin hint on hardware, a
    /// thread yield in tests (where the device is another thread).
    fn relax(&self) {
        core::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    struct Words(RefCell<Vec<(u64, u32)>>, [u32; 4]);
    impl Registers for Words {
        fn len(&self) -> u64 {
            16
        }
        fn read8(&self, o: u64) -> u8 {
            (self.read32(o & !3) >> ((o & 3) * 8)) as u8
        }
        fn read16(&self, o: u64) -> u16 {
            (self.read32(o & !3) >> ((o & 2) * 8)) as u16
        }
        fn read32(&self, o: u64) -> u32 {
            self.1[o as usize / 4]
        }
        fn write8(&self, _: u64, _: u8) {}
        fn write16(&self, _: u64, _: u16) {}
        fn write32(&self, o: u64, v: u32) {
            self.0.borrow_mut().push((o, v));
        }
    }

    #[test]
    fn sixty_four_bit_registers_are_two_dwords_low_first() {
        let w = Words(RefCell::new(vec![]), [0x1111_2222, 0x3333_4444, 0, 0]);
        assert_eq!(w.read64(0), 0x3333_4444_1111_2222);
        w.write64(8, 0xaaaa_bbbb_cccc_dddd);
        assert_eq!(*w.0.borrow(), vec![(8, 0xcccc_dddd), (12, 0xaaaa_bbbb)]);
        assert!(!w.is_empty());
    }
}
