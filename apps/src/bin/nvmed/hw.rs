//! The driver's grants as init gives them (args words 3..=7, see init's
//! `devices.rs`), and the controller bring-up every job does. The glue
//! between the `nvme` crate and this runtime — BAR 0 as its registers,
//! spare frames mapped into the device as its DMA memory — lives in
//! `exo_rt::nvme`, shared with `kvdb`, which drives an SR-IOV virtual
//! function itself with the same driver linked in.

use exo_rt::args_word;
use exo_rt::mmio::Window;
pub use exo_rt::nvme::{spare_dma, DmaPages, Nvme};
use nvme::driver::Config;

/// What init gave us (args words 3..=7, see init's `devices.rs`).
pub struct Grants {
    pub bar: Window,
    pub handle: u64,
    pub extra: [u64; 2],
}

pub fn grants() -> Result<Grants, &'static str> {
    let bar = Window::new(args_word(3), args_word(4)).ok_or("no BAR was given to this driver")?;
    let handle = args_word(5);
    if handle == 0 {
        return Err("no device handle was given to this driver");
    }
    Ok(Grants { bar, handle, extra: [args_word(6), args_word(7)] })
}

/// Bring the controller up (reset, admin queue, identify, `io_queues` I/O
/// queue pairs) on the first pages of `dma`; returns the driver and the
/// pages left for data buffers.
pub fn bring_up(g: &Grants, dma: DmaPages, io_queues: u16) -> Result<(Nvme, DmaPages), alloc::string::String> {
    bring_up_with(g, dma, Config { io_queues, io_queue_entries: 64, ..Config::default() })
}

/// [`bring_up`] with a full configuration (e.g. MSI-X completion). If
/// init named the controller (`serial=NAME` in the arguments), the one in
/// the BAR must report that serial number, or the job stops before any I/O.
pub fn bring_up_with(g: &Grants, dma: DmaPages, config: Config) -> Result<(Nvme, DmaPages), alloc::string::String> {
    let (d, rest) = exo_rt::nvme::bring_up("nvmed", g.bar, dma, config)?;
    exo_rt::nvme::check_serial(&d, exo_rt::nvme::wanted_serial())?;
    Ok((d, rest))
}

/// An area of the namespace a job uses, given in bytes (so it is the same
/// part of the disk whatever the block size), as an LBA window of this
/// controller's namespace; refused by name if it does not fit or is not a
/// whole number of its blocks.
pub fn area(d: &Nvme, what: &str, offset: u64, len: u64) -> Result<nvme::window::LbaWindow, alloc::string::String> {
    nvme::window::LbaWindow::from_bytes(offset, len, d.block_size(), d.namespace().size).map_err(|e| {
        alloc::format!("{what}: {e} (namespace of {} blocks of {} bytes)", d.namespace().size, d.block_size())
    })
}
