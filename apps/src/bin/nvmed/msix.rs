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

/// The MSI address and data for interrupt-remapping entry `handle` (one
/// definition, init's: it programs them for the block service too).
pub use initlib::devices::remappable_msi;
