//! The virtio-pci *modern* transport (virtio 1.2, 4.1.4) over a register
//! window the driver already holds: the BAR init moved to it, plus the
//! offsets of the virtio structures inside that BAR, which init found in
//! the device's vendor capabilities.
//!
//! Why not `virtio_drivers::transport::pci::PciTransport`: it finds those
//! structures itself by walking the PCI capability list, through a
//! `ConfigurationAccess` to the device's configuration space. Drivers on
//! this system get no configuration space (init keeps it, and with it
//! decoding, bus mastering and MSI-X control); they get the BAR and the
//! layout. This transport is that split.
//!
//! Feature policy: the device's DMA must go through the platform's IOMMU,
//! because the `Hal` hands the device I/O virtual addresses (see
//! [`crate::hal`]). So VIRTIO_F_ACCESS_PLATFORM is accepted whenever it is
//! offered (QEMU with `iommu_platform=on` refuses FEATURES_OK without it),
//! and a device that does not offer it is refused: its DMA would go to
//! physical addresses that are not the driver's.
//!
//! `virtio-drivers`' `Transport` methods cannot return errors, so failures
//! found inside them (features refused, a notify address outside the BAR,
//! a reset that never completes) are recorded in a shared [`TransportStatus`]
//! that the driver checks after bring-up and after each request.

use crate::regs::Registers;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::Cell;
use core::fmt;
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{Error, PhysAddr};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// Offsets in the common configuration structure (virtio 1.2, 4.1.4.3).
pub mod common {
    pub const DEVICE_FEATURE_SELECT: u64 = 0x00;
    pub const DEVICE_FEATURE: u64 = 0x04;
    pub const DRIVER_FEATURE_SELECT: u64 = 0x08;
    pub const DRIVER_FEATURE: u64 = 0x0c;
    pub const CONFIG_MSIX_VECTOR: u64 = 0x10;
    pub const NUM_QUEUES: u64 = 0x12;
    pub const DEVICE_STATUS: u64 = 0x14;
    pub const CONFIG_GENERATION: u64 = 0x15;
    pub const QUEUE_SELECT: u64 = 0x16;
    pub const QUEUE_SIZE: u64 = 0x18;
    pub const QUEUE_MSIX_VECTOR: u64 = 0x1a;
    pub const QUEUE_ENABLE: u64 = 0x1c;
    pub const QUEUE_NOTIFY_OFF: u64 = 0x1e;
    pub const QUEUE_DESC: u64 = 0x20;
    pub const QUEUE_DRIVER: u64 = 0x28;
    pub const QUEUE_DEVICE: u64 = 0x30;
    /// Length of the structure as far as this transport uses it.
    pub const LEN: u64 = 0x38;
    /// "No MSI-X vector": the driver polls.
    pub const NO_VECTOR: u16 = 0xffff;
}

/// VIRTIO_F_VERSION_1 (a modern device).
pub const F_VERSION_1: u64 = 1 << 32;
/// VIRTIO_F_ACCESS_PLATFORM (the device's DMA is translated by the IOMMU).
pub const F_ACCESS_PLATFORM: u64 = 1 << 33;

/// How long (register reads) a reset may take before it counts as hung.
const RESET_POLLS: u32 = 1_000_000;

/// Where the virtio structures are in the BAR (byte offsets), and the
/// notify offset multiplier (virtio 1.2, 4.1.4.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciLayout {
    pub common: u64,
    pub notify: u64,
    pub notify_multiplier: u64,
    pub device: u64,
}

impl PciLayout {
    /// Init's encoding (driver args word 6, `apps/initlib/src/devices.rs`, `virtio_layout`):
    /// four 16-bit fields, common | notify << 16 | multiplier << 32 |
    /// device << 48.
    pub fn from_word(word: u64) -> PciLayout {
        let field = |i: u32| (word >> (16 * i)) & 0xffff;
        PciLayout { common: field(0), notify: field(1), notify_multiplier: field(2), device: field(3) }
    }

    /// Every structure must start inside a `bar_len`-byte BAR, the common
    /// configuration must fit, and the offsets must be aligned as their
    /// accesses need.
    pub fn validate(&self, bar_len: u64) -> Result<(), TransportError> {
        let fits = |what: &'static str, offset: u64, len: u64, align: u64| {
            if offset.checked_add(len).is_none_or(|end| end > bar_len) || !offset.is_multiple_of(align) {
                Err(TransportError::LayoutOutsideBar { what, offset, len, bar_len })
            } else {
                Ok(())
            }
        };
        fits("common configuration", self.common, common::LEN, 4)?;
        fits("notify region", self.notify, 2, 2)?;
        fits("device configuration", self.device, 4, 4)?;
        if !self.notify_multiplier.is_multiple_of(2) {
            return Err(TransportError::OddNotifyMultiplier(self.notify_multiplier));
        }
        Ok(())
    }
}

/// What went wrong in the transport, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportError {
    /// A structure (or its needed length) lies outside the BAR, or is
    /// misaligned.
    LayoutOutsideBar { what: &'static str, offset: u64, len: u64, bar_len: u64 },
    /// The notify offset multiplier must be even (virtio 1.2, 4.1.4.4).
    OddNotifyMultiplier(u64),
    /// A legacy-only device.
    NoVersion1 { offered: u64 },
    /// The device's DMA bypasses the IOMMU (`iommu_platform=off`): it
    /// would not see the I/O virtual addresses the `Hal` gives it.
    NoPlatformDma { offered: u64 },
    /// FEATURES_OK did not stick after writing these driver features.
    FeaturesRefused { wanted: u64 },
    /// A queue's notify address falls outside the BAR.
    NotifyOutsideBar { queue: u16, offset: u64, bar_len: u64 },
    /// The device status did not read back 0 after a reset.
    ResetTimeout { status: u8 },
    /// The device set DEVICE_NEEDS_RESET.
    DeviceNeedsReset { status: u8 },
    /// Bring-up did not end with DRIVER_OK set.
    NotLive { status: u8 },
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use TransportError::*;
        match *self {
            LayoutOutsideBar { what, offset, len, bar_len } => {
                write!(f, "virtio {what} at BAR offset {offset:#x} (+{len:#x}) is outside or misaligned in the {bar_len:#x}-byte BAR")
            }
            OddNotifyMultiplier(m) => write!(f, "virtio notify offset multiplier {m} is odd"),
            NoVersion1 { offered } => write!(f, "device offers features {offered:#x} without VIRTIO_F_VERSION_1 (legacy-only)"),
            NoPlatformDma { offered } => write!(
                f,
                "device offers features {offered:#x} without VIRTIO_F_ACCESS_PLATFORM: its DMA bypasses the IOMMU (iommu_platform=off?), refusing it"
            ),
            FeaturesRefused { wanted } => write!(f, "device refused driver features {wanted:#x} (FEATURES_OK did not stick)"),
            NotifyOutsideBar { queue, offset, bar_len } => {
                write!(f, "queue {queue}'s notify address {offset:#x} is outside the {bar_len:#x}-byte BAR")
            }
            ResetTimeout { status } => write!(f, "device reset did not complete (status {status:#x})"),
            DeviceNeedsReset { status } => write!(f, "device needs reset (status {status:#x})"),
            NotLive { status } => write!(f, "device is not live after bring-up (status {status:#x})"),
        }
    }
}

/// State shared between the transport (owned by a `virtio-drivers`
/// device) and the driver's [`TransportStatus`] handle.
#[derive(Default)]
struct Shared {
    offered: Cell<u64>,
    negotiated: Cell<u64>,
    notifies: Cell<u64>,
    error: Cell<Option<TransportError>>,
}

impl Shared {
    /// Keep the first error: later ones are usually its consequences.
    fn fail(&self, e: TransportError) {
        if self.error.get().is_none() {
            self.error.set(Some(e));
        }
    }
}

/// A virtio-pci modern device in a register window.
pub struct ModernTransport<R: Registers + Clone> {
    regs: R,
    layout: PciLayout,
    device_type: DeviceType,
    /// Notify address of each queue set up, read once in `queue_set`.
    notify_at: Vec<(u16, u64)>,
    shared: Rc<Shared>,
}

impl<R: Registers + Clone> ModernTransport<R> {
    /// A transport over `regs` with the structures at `layout`.
    /// `device_type` comes from whoever read the PCI device ID (init): the
    /// transport has no configuration space to read it from.
    pub fn new(regs: R, layout: PciLayout, device_type: DeviceType) -> Result<Self, TransportError> {
        layout.validate(regs.len())?;
        Ok(ModernTransport { regs, layout, device_type, notify_at: Vec::new(), shared: Rc::default() })
    }

    /// A handle that outlives handing the transport to a device driver.
    pub fn status(&self) -> TransportStatus<R> {
        TransportStatus { regs: self.regs.clone(), common: self.layout.common, shared: self.shared.clone() }
    }

    fn c(&self, field: u64) -> u64 {
        self.layout.common + field
    }

    /// Bytes of device configuration reachable in the BAR.
    fn device_config_len(&self) -> u64 {
        self.regs.len() - self.layout.device
    }

    fn write64_split(&self, field: u64, value: u64) {
        // Two 32-bit accesses, low half first, as the spec's 64-bit
        // common-configuration fields allow on any platform.
        self.regs.write32(self.c(field), value as u32);
        self.regs.write32(self.c(field) + 4, (value >> 32) as u32);
    }

    fn select(&self, queue: u16) {
        self.regs.write16(self.c(common::QUEUE_SELECT), queue);
    }

    /// The notify address of the selected `queue`, checked against the BAR.
    fn notify_address(&self, queue: u16) -> Result<u64, TransportError> {
        self.select(queue);
        let off = self.regs.read16(self.c(common::QUEUE_NOTIFY_OFF)) as u64;
        let at = self.layout.notify + off * self.layout.notify_multiplier;
        if at + 2 > self.regs.len() {
            return Err(TransportError::NotifyOutsideBar { queue, offset: at, bar_len: self.regs.len() });
        }
        Ok(at)
    }

    fn reset(&mut self) {
        self.regs.write8(self.c(common::DEVICE_STATUS), 0);
        for _ in 0..RESET_POLLS {
            if self.regs.read8(self.c(common::DEVICE_STATUS)) == 0 {
                self.notify_at.clear();
                return;
            }
            core::hint::spin_loop();
        }
        let status = self.regs.read8(self.c(common::DEVICE_STATUS));
        self.shared.fail(TransportError::ResetTimeout { status });
    }

    /// Config-space access widths (virtio 1.2, 4.1.3.1): 8/16/32-bit fields
    /// with their own width, 64-bit ones as two 32-bit halves; anything
    /// else bytewise.
    fn config_range(&self, offset: usize, len: usize) -> Result<u64, Error> {
        let end = offset.checked_add(len).ok_or(Error::InvalidParam)?;
        if end as u64 > self.device_config_len() {
            return Err(Error::ConfigSpaceTooSmall);
        }
        Ok(self.layout.device + offset as u64)
    }
}

fn chunks(at: u64, len: usize) -> impl Iterator<Item = (usize, usize)> {
    let width = match len {
        1 | 2 | 4 if at.is_multiple_of(len as u64) => len,
        _ if at.is_multiple_of(4) && len.is_multiple_of(4) => 4,
        _ => 1,
    };
    (0..len).step_by(width).map(move |i| (i, width))
}

impl<R: Registers + Clone> Transport for ModernTransport<R> {
    fn device_type(&self) -> DeviceType {
        self.device_type
    }

    fn read_device_features(&mut self) -> u64 {
        let mut features = 0;
        for half in 0..2u32 {
            self.regs.write32(self.c(common::DEVICE_FEATURE_SELECT), half);
            features |= (self.regs.read32(self.c(common::DEVICE_FEATURE)) as u64) << (32 * half);
        }
        self.shared.offered.set(features);
        features
    }

    fn write_driver_features(&mut self, driver_features: u64) {
        let offered = self.shared.offered.get();
        if offered & F_VERSION_1 == 0 {
            self.shared.fail(TransportError::NoVersion1 { offered });
        }
        if offered & F_ACCESS_PLATFORM == 0 {
            self.shared.fail(TransportError::NoPlatformDma { offered });
        }
        // The device driver (e.g. `VirtIOBlk`) negotiates its own feature
        // bits; the DMA platform bit is the transport's and the Hal's.
        let wanted = driver_features | (offered & F_ACCESS_PLATFORM);
        for half in 0..2u32 {
            self.regs.write32(self.c(common::DRIVER_FEATURE_SELECT), half);
            self.regs.write32(self.c(common::DRIVER_FEATURE), (wanted >> (32 * half)) as u32);
        }
        self.shared.negotiated.set(wanted);
    }

    fn max_queue_size(&mut self, queue: u16) -> u32 {
        self.select(queue);
        self.regs.read16(self.c(common::QUEUE_SIZE)).into()
    }

    fn notify(&mut self, queue: u16) {
        let at = match self.notify_at.iter().find(|(q, _)| *q == queue) {
            Some((_, at)) => *at,
            None => match self.notify_address(queue) {
                Ok(at) => at,
                Err(e) => return self.shared.fail(e),
            },
        };
        self.regs.write16(at, queue);
        self.shared.notifies.set(self.shared.notifies.get() + 1);
    }

    fn get_status(&self) -> DeviceStatus {
        DeviceStatus::from_bits_truncate(self.regs.read8(self.c(common::DEVICE_STATUS)).into())
    }

    fn set_status(&mut self, status: DeviceStatus) {
        if status.is_empty() {
            return self.reset();
        }
        let mut bits = status.bits() as u8;
        // A refused device is told so (virtio 1.2, 3.1.1 step 8) and is
        // never set live.
        if self.shared.error.get().is_some() {
            bits = DeviceStatus::FAILED.bits() as u8;
        }
        self.regs.write8(self.c(common::DEVICE_STATUS), bits);
        if status.contains(DeviceStatus::FEATURES_OK) && !status.contains(DeviceStatus::DRIVER_OK) && bits & 0x80 == 0 {
            let back = self.regs.read8(self.c(common::DEVICE_STATUS));
            if back & DeviceStatus::FEATURES_OK.bits() as u8 == 0 {
                self.shared.fail(TransportError::FeaturesRefused { wanted: self.shared.negotiated.get() });
                self.regs.write8(self.c(common::DEVICE_STATUS), DeviceStatus::FAILED.bits() as u8);
            }
        }
    }

    fn set_guest_page_size(&mut self, _guest_page_size: u32) {
        // Legacy MMIO only; PCI has no such register.
    }

    fn requires_legacy_layout(&self) -> bool {
        false
    }

    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        let at = match self.notify_address(queue) {
            Ok(at) => at,
            Err(e) => return self.shared.fail(e),
        };
        // Polled: no MSI-X vector for the configuration or the queue.
        self.regs.write16(self.c(common::CONFIG_MSIX_VECTOR), common::NO_VECTOR);
        self.select(queue);
        self.regs.write16(self.c(common::QUEUE_SIZE), size as u16);
        self.regs.write16(self.c(common::QUEUE_MSIX_VECTOR), common::NO_VECTOR);
        self.write64_split(common::QUEUE_DESC, descriptors);
        self.write64_split(common::QUEUE_DRIVER, driver_area);
        self.write64_split(common::QUEUE_DEVICE, device_area);
        self.regs.write16(self.c(common::QUEUE_ENABLE), 1);
        self.notify_at.retain(|(q, _)| *q != queue);
        self.notify_at.push((queue, at));
    }

    fn queue_unset(&mut self, _queue: u16) {
        // A modern PCI queue cannot be disabled on its own without
        // VIRTIO_F_RING_RESET; the caller is about to free the queue's
        // memory, so stop all of the device's DMA by resetting it.
        self.reset();
    }

    fn queue_used(&mut self, queue: u16) -> bool {
        self.select(queue);
        self.regs.read16(self.c(common::QUEUE_ENABLE)) == 1
    }

    fn ack_interrupt(&mut self) -> InterruptStatus {
        // Polled driver with no MSI-X vectors, and init does not pass the
        // ISR structure's offset: there is never an interrupt to ack.
        InterruptStatus::empty()
    }

    fn read_config_generation(&self) -> u32 {
        self.regs.read8(self.c(common::CONFIG_GENERATION)).into()
    }

    fn read_config_space<T: FromBytes + IntoBytes>(&self, offset: usize) -> Result<T, Error> {
        let at = self.config_range(offset, size_of::<T>())?;
        let mut value = T::new_zeroed();
        let bytes = value.as_mut_bytes();
        for (i, width) in chunks(at, bytes.len()) {
            let a = at + i as u64;
            match width {
                4 => bytes[i..i + 4].copy_from_slice(&self.regs.read32(a).to_le_bytes()),
                2 => bytes[i..i + 2].copy_from_slice(&self.regs.read16(a).to_le_bytes()),
                _ => bytes[i] = self.regs.read8(a),
            }
        }
        Ok(value)
    }

    fn write_config_space<T: IntoBytes + Immutable>(&mut self, offset: usize, value: T) -> Result<(), Error> {
        let at = self.config_range(offset, size_of::<T>())?;
        let bytes = value.as_bytes();
        for (i, width) in chunks(at, bytes.len()) {
            let a = at + i as u64;
            match width {
                4 => self.regs.write32(a, u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap())),
                2 => self.regs.write16(a, u16::from_le_bytes([bytes[i], bytes[i + 1]])),
                _ => self.regs.write8(a, bytes[i]),
            }
        }
        Ok(())
    }
}

/// The driver's view of a transport it handed to a device driver: the
/// errors recorded inside `Transport` calls, the negotiated features, the
/// notify count, and the live device status.
pub struct TransportStatus<R: Registers + Clone> {
    regs: R,
    common: u64,
    shared: Rc<Shared>,
}

impl<R: Registers + Clone> TransportStatus<R> {
    pub fn device_status(&self) -> u8 {
        self.regs.read8(self.common + common::DEVICE_STATUS)
    }

    /// Features offered by the device and accepted by the driver.
    pub fn features(&self) -> (u64, u64) {
        (self.shared.offered.get(), self.shared.negotiated.get())
    }

    /// Reset the device (status 0): it stops all DMA and forgets its
    /// queues. For a driver that must take buffers back from a device
    /// that stopped answering. Returns whether the reset completed.
    pub fn reset_device(&self) -> bool {
        self.regs.write8(self.common + common::DEVICE_STATUS, 0);
        for _ in 0..RESET_POLLS {
            if self.device_status() == 0 {
                return true;
            }
            core::hint::spin_loop();
        }
        self.shared.fail(TransportError::ResetTimeout { status: self.device_status() });
        false
    }

    /// Queue notifications written so far.
    pub fn notifies(&self) -> u64 {
        self.shared.notifies.get()
    }

    /// The first error recorded, else whether the device is live
    /// (DRIVER_OK and FEATURES_OK set, no FAILED or DEVICE_NEEDS_RESET).
    pub fn check(&self) -> Result<(), TransportError> {
        if let Some(e) = self.shared.error.get() {
            return Err(e);
        }
        let status = self.device_status();
        if status & DeviceStatus::DEVICE_NEEDS_RESET.bits() as u8 != 0 {
            return Err(TransportError::DeviceNeedsReset { status });
        }
        let live = (DeviceStatus::DRIVER_OK | DeviceStatus::FEATURES_OK).bits() as u8;
        if status & live != live || status & DeviceStatus::FAILED.bits() as u8 != 0 {
            return Err(TransportError::NotLive { status });
        }
        Ok(())
    }
}
