//! Where a physical function's virtual-function BARs go, when firmware
//! left them unassigned (SeaBIOS knows nothing of SR-IOV and leaves every
//! VF BAR at zero).
//!
//! VF `n`'s BAR `i` decodes at `VF BAR i + (n - 1) * size_i`, so each VF
//! BAR needs one naturally aligned span of `num_vfs * size_i` bytes. A
//! function behind a bridge is reachable only through the bridge's memory
//! window, so the spans are placed inside the window firmware already gave
//! the bridge, around everything already decoding there. Moving or growing
//! a bridge window would mean re-placing its siblings up the tree; this
//! module does not, and says `NoRoom` instead (the caller then leaves the
//! VFs off).

use crate::bar::{Bar, BarKind};
use crate::{Address, ConfigSpace};

/// A span of physical addresses, `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: u64,
    pub end: u64,
}

impl Span {
    pub const fn overlaps(&self, o: &Span) -> bool {
        self.start < o.end && o.start < self.end
    }
}

/// Why the VF BARs could not be placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlaceError {
    /// VF BAR `index` reports a size that is not a power of two (or zero).
    BadSize { index: u8, size: u64 },
    /// `num_vfs` copies of VF BAR `index` overflow the address space.
    TooLarge { index: u8 },
    /// No free, aligned span of `bytes` for VF BAR `index` in the window.
    NoRoom { index: u8, bytes: u64 },
    /// A 32-bit VF BAR would have to lie above 4 GiB.
    Above4G { index: u8 },
    /// More busy spans than `MAX_BUSY - 6` were given.
    TooManyBusy { given: usize },
}

impl core::fmt::Display for PlaceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            PlaceError::BadSize { index, size } => write!(f, "VF BAR {index} has size {size:#x}, not a power of two"),
            PlaceError::TooLarge { index } => write!(f, "VF BAR {index} times the VF count overflows"),
            PlaceError::NoRoom { index, bytes } => {
                write!(f, "no free aligned {bytes:#x} bytes for VF BAR {index} in the bridge window")
            }
            PlaceError::Above4G { index } => write!(f, "32-bit VF BAR {index} cannot be placed above 4 GiB"),
            PlaceError::TooManyBusy { given } => write!(f, "{given} busy spans, more than {} supported", MAX_BUSY - 6),
        }
    }
}

/// The non-prefetchable memory window of the PCI-to-PCI bridge at
/// `bridge` (Memory Base/Limit at 0x20, 1 MiB granularity), or `None`
/// when it is closed (limit below base).
pub fn bridge_memory_window(cfg: &impl ConfigSpace, bridge: Address) -> Option<Span> {
    let r = cfg.read32(bridge, 0x20);
    let base = ((r & 0xfff0) as u64) << 16;
    let limit = ((r >> 16 & 0xfff0) as u64) << 16 | 0xf_ffff;
    (limit > base).then_some(Span { start: base, end: limit + 1 })
}

fn align_up(v: u64, align: u64) -> Option<u64> {
    v.checked_add(align - 1).map(|x| x & !(align - 1))
}

/// Lowest `align`-aligned span of `bytes` in `window` that overlaps none
/// of `busy`. Each busy span can push the candidate past itself at most
/// once (the candidate only grows), so this ends after `busy.len() + 1`
/// rounds at most.
fn first_fit(window: Span, busy: &[Span], bytes: u64, align: u64) -> Option<u64> {
    let mut at = align_up(window.start, align)?;
    for _ in 0..=busy.len() {
        let want = Span { start: at, end: at.checked_add(bytes)? };
        if want.end > window.end {
            return None;
        }
        match busy.iter().filter(|b| b.overlaps(&want)).map(|b| b.end).max() {
            None => return Some(at),
            Some(end) => at = align_up(end, align)?,
        }
    }
    None
}

/// At most this many spans are considered busy (the caller's plus the VF
/// BARs already placed).
pub const MAX_BUSY: usize = 64;

/// Places every VF BAR in `vf_bars` (per-VF sizes, as `SrIov::vf_bars`
/// reads them) for `num_vfs` VFs inside `window`, avoiding `busy` (the
/// BARs of every function behind the bridge; at most `MAX_BUSY - 6`).
/// Largest first, so smaller ones fill the gaps. Returns each VF BAR's
/// base address.
pub fn place_vf_bars(
    window: Span,
    busy: &[Span],
    vf_bars: &[Option<Bar>; 6],
    num_vfs: u16,
) -> Result<[Option<u64>; 6], PlaceError> {
    if busy.len() > MAX_BUSY - 6 {
        return Err(PlaceError::TooManyBusy { given: busy.len() });
    }
    let mut taken = [Span { start: 0, end: 0 }; MAX_BUSY];
    taken[..busy.len()].copy_from_slice(busy);
    let mut order: [Option<Bar>; 6] = *vf_bars;
    order.sort_unstable_by(|a, b| b.map(|b| b.size).cmp(&a.map(|a| a.size)));
    let mut out = [None; 6];
    for (n, bar) in (busy.len()..).zip(order.iter().flatten()) {
        if bar.size == 0 || !bar.size.is_power_of_two() {
            return Err(PlaceError::BadSize { index: bar.index, size: bar.size });
        }
        let bytes = bar.size.checked_mul(num_vfs as u64).ok_or(PlaceError::TooLarge { index: bar.index })?;
        let at =
            first_fit(window, &taken[..n], bytes, bar.size).ok_or(PlaceError::NoRoom { index: bar.index, bytes })?;
        if bar.kind == BarKind::Memory32 && at + bytes > 1 << 32 {
            return Err(PlaceError::Above4G { index: bar.index });
        }
        taken[n] = Span { start: at, end: at + bytes };
        out[bar.index as usize] = Some(at);
    }
    Ok(out)
}
