//! Register access, kept behind a trait so that the transport's protocol
//! runs against a fake register window on the host. On the exokernel the
//! runtime's `mmio::Window` over the moved BAR implements it (see
//! `exo_rt::virtio`).

/// A window of device registers. Offsets are bytes from the window's
/// start; implementations check bounds and alignment (the transport
/// validates every offset it derives before using it).
///
/// `Clone` because the driver keeps a second handle (for status checks)
/// while `virtio-drivers` owns the transport.
pub trait Registers: Clone {
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
}
