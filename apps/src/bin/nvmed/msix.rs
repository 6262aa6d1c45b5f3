//! MSI-X from the driver's side: the remappable-format message that names
//! one of the device's interrupt-remapping entries, programming a table
//! entry in BAR 0, and the count of interrupts init forwarded (shared by
//! `nvmed irq` and `nvmetest`'s interrupt attacks).

use exo_rt::layout::MAILBOX_VA;
use exo_rt::mem;

/// Mailbox word init increments per forwarded interrupt (init's
/// `devices::MAILBOX_IRQS`).
const MAILBOX_IRQS: u64 = 24;

/// Interrupts init has forwarded to this process so far.
pub fn irqs() -> u64 {
    mem::read(MAILBOX_VA + MAILBOX_IRQS)
}

/// The MSI address and data that send a device's interrupt through
/// interrupt-remapping entry `handle` (VT-d remappable format: handle in
/// address bits 19:5 and 2, bit 4 set, no sub-handle, data 0).
pub fn remappable_msi(handle: u32) -> (u32, u32) {
    (0xfee0_0000 | (handle & 0x7fff) << 5 | 1 << 4 | (handle >> 15) << 2, 0)
}
