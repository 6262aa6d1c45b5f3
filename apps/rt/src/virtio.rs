//! The exokernel glue for `virtio-exo` (as `nvme.rs` is for the NVMe
//! driver): the runtime's `mmio::Window` as the driver's [`Registers`], and
//! its DMA pool installed from a window of device-mapped frames.

use crate::mmio::Window;
use virtio_exo::hal::{self, DmaError, DmaRegion};
use virtio_exo::virtio_drivers::PAGE_SIZE;
use virtio_exo::Registers;

/// The BAR window init moved to the driver (mapped uncached): every access
/// is volatile and bounds-checked by `Window`.
impl Registers for Window {
    fn len(&self) -> u64 {
        Window::len(self)
    }
    fn read8(&self, offset: u64) -> u8 {
        Window::read8(self, offset)
    }
    fn read16(&self, offset: u64) -> u16 {
        Window::read16(self, offset)
    }
    fn read32(&self, offset: u64) -> u32 {
        Window::read32(self, offset)
    }
    fn write8(&self, offset: u64, value: u8) {
        Window::write8(self, offset, value)
    }
    fn write16(&self, offset: u64, value: u16) {
        Window::write16(self, offset, value)
    }
    fn write32(&self, offset: u64, value: u32) {
        Window::write32(self, offset, value)
    }
}

/// Install `win` (this process's frames, already mapped into the device
/// at `iova` page for page, e.g. by nvmed's `hw::spare_dma`) as the DMA
/// pool. The caller must not use `win` itself any more: the pool's
/// buffers become Rust slices.
pub fn install_window(win: Window, iova: u64) -> Result<(), DmaError> {
    let region = DmaRegion { va: win.base() as usize, iova, pages: (win.len() / PAGE_SIZE as u64) as usize };
    // If the frames were not mapped, an access would raise a page-fault
    // upcall in this process, not touch anyone else's memory; if they were
    // not mapped into the device, its DMA would be refused by VT-d (a
    // recorded fault), not land elsewhere.
    // A `Window` lies at or above `mmio::WINDOW_FLOOR`, where the runtime
    // places no image, stack or heap, page aligned, in the user half.
    // SAFETY: no Rust object lives in the window, and the caller hands over
    // its only use of these frames (documented above).
    unsafe { hal::install(region) }
}
