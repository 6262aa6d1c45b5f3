//! The exokernel's whole memory model: four of the five system calls are
//! page-table edits, and they are implemented here, generic over a
//! [`PhysMem`] so that they run unchanged in the kernel (through the
//! physical-memory window) and on the host (over emulated memory, in tests).
//!
//! The kernel keeps no state of its own about memory: who owns a frame,
//! what rights an entry carries, and which address spaces a process may
//! reach are all bits in x86-64 page-table entries.
//!
//! * A **present leaf** (level 0) maps a 4 KiB frame. Hardware bits carry
//!   WRITE (R/W) and EXEC (NX clear). Software bit 9 = OWN (this entry owns
//!   the frame), bit 10 = GRANT (may be passed on), bit 11 = LENT (the
//!   frame was ever shared; it can never again become a page table).
//! * A **present table link** (levels 1..=3) points at a page-table page.
//!   WRITE/EXEC restrict everything below (the hardware ANDs them); OWN on
//!   a link means "may change entries of that table"; GRANT as for leaves.
//!   Several address spaces may link the same table: that is a shared
//!   region (XOmB's page-table subtree).
//! * A **handle** is a non-present leaf (the hardware ignores every bit of
//!   it) tagged with [`HANDLE_TAG`]: it names another address space (by the
//!   physical address of its root table) with rights OWN (map into / unmap
//!   from it), GRANT and SWITCH (yield to it).
//!
//! Every call checks all of its arguments and every right before it writes
//! anything, so a failed call changes nothing.
//!
//! On several CPUs the calls run one at a time under the kernel lock, but
//! the other CPUs' page walkers and cached translations see every store a
//! call makes, as it makes it. So each call orders its stores to keep
//! every intermediate state safe: it removes translations first, shoots
//! them down ([`Tlb::flush_everywhere`], which returns only when every CPU
//! has dropped them), and only then zeroes a frame it is making a table
//! and links it; stores that add a translation come last. The test module
//! `interleave` checks this with the real call code on 2–4 model CPUs,
//! stopping at every store a walker can see (its module doc lists the
//! rules and what it does not model).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

use exo_abi::{Error, Rights, PAGE_SIZE, USER_END};

/// Physical memory as the page-table code sees it.
pub trait PhysMem {
    /// Read the 8-byte word at physical address `pa` (8-aligned).
    fn read(&self, pa: u64) -> u64;
    /// Write the 8-byte word at physical address `pa` (8-aligned).
    fn write(&mut self, pa: u64, value: u64);
    /// Fill the frame at `pa` (4 KiB-aligned) with zeros.
    fn zero_frame(&mut self, pa: u64) {
        for i in 0..512 {
            self.write(pa + i * 8, 0);
        }
    }
    /// Is the frame at `pa` ordinary RAM that the kernel maps and may read
    /// and write as memory? Device registers, persistent memory and
    /// anything outside the boot memory map are not: the kernel never
    /// makes them tables and never writes an upcall's context into them.
    fn is_ram(&self, pa: u64) -> bool;
}

/// TLB maintenance requested by a call; the kernel performs it, host tests
/// model it.
///
/// Why one operation, and the biggest one: a table may be linked at
/// several addresses of one space and into several spaces (a shared
/// region, or a table linked to itself), and the kernel keeps no reverse
/// map, so when an entry loses a translation it cannot know which virtual
/// addresses reached it. A call that removes or narrows a translation, or
/// changes what a frame *is* (a page becoming a table or a root), therefore
/// makes every cached translation and paging-structure entry of every
/// address space disappear, on every CPU that may hold one, before it
/// returns. Calls that only add translations request nothing.
pub trait Tlb {
    /// Forget every translation of every address space on every CPU that
    /// may cache one (on one CPU that reloads CR3: spaces not running hold
    /// nothing, since every switch reloads it too).
    fn flush_everywhere(&mut self);
}

pub const P: u64 = 1 << 0;
pub const RW: u64 = 1 << 1;
pub const US: u64 = 1 << 2;
pub const PS: u64 = 1 << 7;
pub const OWN: u64 = 1 << 9;
pub const GRANT: u64 = 1 << 10;
pub const LENT: u64 = 1 << 11;
pub const NX: u64 = 1 << 63;
/// Marks a non-present entry as an address-space handle.
pub const HANDLE_TAG: u64 = 1 << 62;
/// With [`HANDLE_TAG`]: the handle names a *device's* I/O address space
/// (its VT-d page table); bits 12.. hold the device's index in the
/// kernel's boot-time device list instead of a root table address.
pub const DEVICE_TAG: u64 = 1 << 61;
/// Cache-control bits that travel with a frame when it is moved or shared
/// (device registers must stay uncached wherever they are mapped).
pub const CACHE_BITS: u64 = (1 << 3) | (1 << 4);
/// Physical address bits of an entry.
pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
/// Handle rights are stored in bits 1..=5 (`Rights` shifted by one).
const HANDLE_RIGHTS_SHIFT: u64 = 1;

/// Bytes covered by one entry at `level` (0 = a 4 KiB page).
pub const fn span(level: u8) -> u64 {
    PAGE_SIZE << (9 * level as u64)
}

/// Index of `va` in a table whose entries are at `level`.
pub const fn index(va: u64, level: u8) -> u64 {
    (va >> (12 + 9 * level as u64)) & 0x1ff
}

/// What an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Empty,
    Page {
        frame: u64,
        rights: Rights,
        lent: bool,
    },
    Table {
        frame: u64,
        rights: Rights,
    },
    Handle {
        root: u64,
        rights: Rights,
    },
    /// A handle to device `index`'s I/O address space.
    Device {
        index: u64,
        rights: Rights,
    },
    /// Something the user half never contains (a huge page, a non-present
    /// entry without the handle tag). Treated as unusable.
    Foreign,
}

/// Rights encoded in a present entry's bits.
pub fn present_rights(e: u64) -> Rights {
    let mut r = Rights::NONE;
    if e & RW != 0 {
        r = r | Rights::WRITE;
    }
    if e & NX == 0 {
        r = r | Rights::EXEC;
    }
    if e & OWN != 0 {
        r = r | Rights::OWN;
    }
    if e & GRANT != 0 {
        r = r | Rights::GRANT;
    }
    r
}

/// Bits of a present user entry carrying `rights` (without address).
pub fn present_bits(rights: Rights) -> u64 {
    let mut e = P | US;
    if rights.contains(Rights::WRITE) {
        e |= RW;
    }
    if !rights.contains(Rights::EXEC) {
        e |= NX;
    }
    if rights.contains(Rights::OWN) {
        e |= OWN;
    }
    if rights.contains(Rights::GRANT) {
        e |= GRANT;
    }
    e
}

/// Encode a handle to the address space whose root table is at `root`.
pub fn handle_entry(root: u64, rights: Rights) -> u64 {
    HANDLE_TAG | (root & ADDR_MASK) | (rights.bits() << HANDLE_RIGHTS_SHIFT)
}

/// Encode a handle to device `index`'s I/O address space.
pub fn device_handle_entry(index: u64, rights: Rights) -> u64 {
    HANDLE_TAG | DEVICE_TAG | ((index << 12) & ADDR_MASK) | (rights.bits() << HANDLE_RIGHTS_SHIFT)
}

/// Decode one entry found at `level`.
pub fn decode(e: u64, level: u8) -> Kind {
    if e == 0 {
        return Kind::Empty;
    }
    if e & P == 0 {
        if level == 0 && e & HANDLE_TAG != 0 {
            let rights = Rights((e >> HANDLE_RIGHTS_SHIFT) & Rights::ALL.bits());
            if e & DEVICE_TAG != 0 {
                return Kind::Device { index: (e & ADDR_MASK) >> 12, rights };
            }
            return Kind::Handle { root: e & ADDR_MASK, rights };
        }
        return Kind::Foreign;
    }
    if e & US == 0 || (level > 0 && e & PS != 0) {
        return Kind::Foreign;
    }
    let frame = e & ADDR_MASK;
    if level == 0 {
        Kind::Page { frame, rights: present_rights(e), lent: e & LENT != 0 }
    } else {
        Kind::Table { frame, rights: present_rights(e) }
    }
}

/// Where an entry lives and what the path to it allows.
#[derive(Clone, Copy, Debug)]
pub struct Slot {
    /// Physical address of the 8-byte entry.
    pub pa: u64,
    /// The entry's current value.
    pub entry: u64,
    /// Rights of the links above the entry, ANDed (OWN here means the
    /// caller may change the table holding the entry).
    pub path: Rights,
}

fn check_user_va(va: u64, level: u8) -> Result<(), Error> {
    if va >= USER_END || !va.is_multiple_of(span(level)) {
        return Err(Error::BadAddress);
    }
    // The one entry covering the whole user half from a level-3 link must
    // stay below USER_END too (guaranteed by alignment and va < USER_END).
    Ok(())
}

/// Find the slot for the entry at `level` covering `va` in the address
/// space rooted at `root`. Every link on the way must be a present table.
pub fn walk<M: PhysMem>(mem: &M, root: u64, va: u64, level: u8) -> Result<Slot, Error> {
    if level > 3 {
        return Err(Error::BadLevel);
    }
    if va >= USER_END {
        return Err(Error::BadAddress);
    }
    let mut table = root;
    // The root table itself is managed by whoever names the space.
    let mut path = Rights::ALL;
    let mut l = 3u8;
    loop {
        let pa = table + index(va, l) * 8;
        let entry = mem.read(pa);
        if l == level {
            return Ok(Slot { pa, entry, path });
        }
        match decode(entry, l) {
            Kind::Table { frame, rights } => {
                path = path.intersect(rights);
                table = frame;
            }
            Kind::Empty => return Err(Error::NoTable),
            _ => return Err(Error::WrongKind),
        }
        l -= 1;
    }
}

/// The rights the caller effectively holds on the entry in `slot`.
pub fn effective(slot: &Slot, level: u8) -> Option<(Kind, Rights)> {
    let kind = decode(slot.entry, level);
    let own = match kind {
        Kind::Page { rights, .. } | Kind::Table { rights, .. } => rights,
        Kind::Handle { rights, .. } | Kind::Device { rights, .. } => {
            // A handle's rights are its own; the path must let the caller
            // manage the table it sits in, or it is only borrowed.
            if slot.path.contains(Rights::OWN) {
                rights
            } else {
                rights.intersect(Rights::SWITCH)
            }
        }
        Kind::Empty | Kind::Foreign => return None,
    };
    let eff = match kind {
        Kind::Handle { .. } | Kind::Device { .. } => own,
        _ => own.intersect(slot.path),
    };
    Some((kind, eff))
}

/// Resolve the address space a call targets: `handle_va == 0` is the caller
/// itself; otherwise a handle in the caller carrying `need`.
pub fn resolve_as<M: PhysMem>(mem: &M, caller: u64, handle_va: u64, need: Rights) -> Result<u64, Error> {
    if handle_va == 0 {
        return Ok(caller);
    }
    check_user_va(handle_va, 0)?;
    let slot = walk(mem, caller, handle_va, 0)?;
    match effective(&slot, 0) {
        Some((Kind::Handle { root, .. }, rights)) => {
            if rights.contains(need) {
                Ok(root)
            } else {
                Err(Error::NoRight)
            }
        }
        Some(_) => Err(Error::WrongKind),
        None => Err(Error::NotMapped),
    }
}

/// Where `map`/`unmap` write: a CPU address space or a device's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Space(u64),
    Device(u64),
}

/// Resolve `handle_va` (0 = the caller) to a target the caller may change.
pub fn resolve_target<M: PhysMem>(mem: &M, caller: u64, handle_va: u64) -> Result<Target, Error> {
    if handle_va == 0 {
        return Ok(Target::Space(caller));
    }
    check_user_va(handle_va, 0)?;
    let slot = walk(mem, caller, handle_va, 0)?;
    match effective(&slot, 0) {
        Some((Kind::Handle { root, .. }, rights)) if rights.contains(Rights::OWN) => Ok(Target::Space(root)),
        Some((Kind::Device { index, .. }, rights)) if rights.contains(Rights::OWN) => Ok(Target::Device(index)),
        Some((Kind::Handle { .. } | Kind::Device { .. }, _)) => Err(Error::NoRight),
        Some(_) => Err(Error::WrongKind),
        None => Err(Error::NotMapped),
    }
}

/// A device's I/O page tables (VT-d second-level format, programmed by the
/// kernel's I/O-MMU code). `map` and `unmap` must either succeed or change
/// nothing, and must have invalidated the IOTLB before they return.
pub trait DeviceTables {
    /// Let device `index` reach frame `pa` at `iova`, writable by the device
    /// if `write`. Errors: `BadAddress` (outside the device's DMA window or
    /// unaligned), `Occupied`, `NotMapped` (no such device).
    fn map(&mut self, index: u64, iova: u64, pa: u64, write: bool) -> Result<(), Error>;
    /// Remove the mapping at `iova`: `NotMapped` if there is none.
    fn unmap(&mut self, index: u64, iova: u64) -> Result<(), Error>;
}

/// Check that the caller owns an unlent page at `frame_va` and may give it
/// up; returns its slot and frame.
fn owned_fresh_frame<M: PhysMem>(mem: &M, caller: u64, frame_va: u64) -> Result<(Slot, u64), Error> {
    check_user_va(frame_va, 0)?;
    let slot = walk(mem, caller, frame_va, 0)?;
    match effective(&slot, 0) {
        Some((Kind::Page { frame, lent, .. }, rights)) => {
            if !rights.contains(Rights::OWN) {
                Err(Error::NoRight)
            } else if lent || !mem.is_ram(frame) {
                // A frame that may be reachable elsewhere (shared, or by a
                // device), or that is not RAM, never becomes a table.
                Err(Error::Lent)
            } else {
                Ok((slot, frame))
            }
        }
        Some(_) => Err(Error::WrongKind),
        None => Err(Error::NotMapped),
    }
}

/// Find an empty slot the caller may fill at `level` covering `va` in `root`.
fn empty_slot<M: PhysMem>(mem: &M, root: u64, va: u64, level: u8) -> Result<Slot, Error> {
    check_user_va(va, level)?;
    let slot = walk(mem, root, va, level)?;
    if !slot.path.contains(Rights::OWN) {
        return Err(Error::NoRight);
    }
    if slot.entry != 0 {
        return Err(Error::Occupied);
    }
    Ok(slot)
}

/// Entry bits for a fresh table link: full rights (the creator manages it).
fn fresh_table_link(frame: u64) -> u64 {
    frame | present_bits(Rights::WRITE | Rights::EXEC | Rights::OWN | Rights::GRANT)
}

/// `create(va, level, frame_va)`: see `docs/syscalls.md`.
pub fn create<M: PhysMem, T: Tlb>(
    mem: &mut M,
    tlb: &mut T,
    caller: u64,
    va: u64,
    level: u64,
    frame_va: u64,
) -> Result<(), Error> {
    if !(1..=3).contains(&level) {
        return Err(Error::BadLevel);
    }
    let level = level as u8;
    let dst = empty_slot(mem, caller, va, level)?;
    let (src, frame) = owned_fresh_frame(mem, caller, frame_va)?;
    // All checks passed: take the frame away from the caller first, so that
    // no user mapping of it survives once it becomes a table. The order of
    // the three steps is what the interleaving checker (`interleave`)
    // verifies: a CPU may write the frame through a cached translation
    // until the shootdown is acknowledged, so the frame is zeroed only
    // after it; and a CPU's walker may follow the link as soon as it is
    // stored, so the link comes last.
    mem.write(src.pa, 0);
    if mutated(Mutation::ZeroBeforeShootdown) {
        mem.zero_frame(frame);
    }
    tlb.flush_everywhere();
    if mutated(Mutation::LinkBeforeZero) {
        mem.write(dst.pa, fresh_table_link(frame));
    }
    mem.zero_frame(frame);
    mem.write(dst.pa, fresh_table_link(frame));
    Ok(())
}

/// `create_as(handle_va, frame_va)`: `kernel_half` supplies the 256 entries
/// of the kernel half that every address space shares. Returns the new
/// space's id (its root's physical address).
pub fn create_as<M: PhysMem, T: Tlb>(
    mem: &mut M,
    tlb: &mut T,
    caller: u64,
    handle_va: u64,
    frame_va: u64,
    kernel_half: &[u64; 256],
) -> Result<u64, Error> {
    let dst = empty_slot(mem, caller, handle_va, 0)?;
    let (src, frame) = owned_fresh_frame(mem, caller, frame_va)?;
    mem.write(src.pa, 0);
    tlb.flush_everywhere();
    mem.zero_frame(frame);
    for (i, e) in kernel_half.iter().enumerate() {
        mem.write(frame + (256 + i as u64) * 8, *e);
    }
    mem.write(dst.pa, handle_entry(frame, Rights::OWN | Rights::GRANT | Rights::SWITCH));
    Ok(frame)
}

/// `map(src_va, level, dst_as, dst_va, rights)`.
#[allow(clippy::too_many_arguments)]
pub fn map<M: PhysMem, T: Tlb, D: DeviceTables>(
    mem: &mut M,
    tlb: &mut T,
    dev: &mut D,
    caller: u64,
    src_va: u64,
    level: u64,
    dst_handle_va: u64,
    dst_va: u64,
    rights: u64,
) -> Result<(), Error> {
    if level > 3 {
        return Err(Error::BadLevel);
    }
    let level = level as u8;
    let want = Rights::from_bits(rights)?;
    check_user_va(src_va, level)?;
    let dst_root = match resolve_target(mem, caller, dst_handle_va)? {
        Target::Space(root) => root,
        Target::Device(index) => return map_to_device(mem, dev, caller, src_va, level, index, dst_va, want),
    };
    let src = walk(mem, caller, src_va, level)?;
    let (kind, mut held) = effective(&src, level).ok_or(Error::NotMapped)?;
    if matches!(kind, Kind::Page { .. }) && held.contains(Rights::OWN) && want.contains(Rights::OWN) {
        // The owner of a frame holds every right to it: moving it may set
        // its protection anew (write, execute) — W^X is the owner's policy.
        held = held | Rights::WRITE | Rights::EXEC;
    }
    if !held.contains(want) {
        return Err(Error::RightsExceeded);
    }
    if mutated(Mutation::StoreBeforeCheck) && src.entry & OWN != 0 {
        mem.write(src.pa, src.entry | LENT);
    }
    let dst = empty_slot(mem, dst_root, dst_va, level)?;
    match kind {
        Kind::Page { frame, lent, .. } => {
            if want.contains(Rights::SWITCH) {
                return Err(Error::BadArgument);
            }
            if want.contains(Rights::OWN) {
                // A move: ownership changes hands, the source entry goes.
                let mut e = frame | present_bits(want) | (src.entry & CACHE_BITS);
                if lent {
                    e |= LENT;
                }
                mem.write(src.pa, 0);
                if !mutated(Mutation::MoveWithoutShootdown) {
                    tlb.flush_everywhere();
                }
                mem.write(dst.pa, e);
            } else {
                if !held.contains(Rights::GRANT) {
                    return Err(Error::NoRight);
                }
                // A share: the frame is now reachable twice, so mark its
                // owning entry LENT, forever barring it from becoming a table.
                if src.entry & OWN != 0 && src.entry & LENT == 0 {
                    mem.write(src.pa, src.entry | LENT);
                }
                mem.write(dst.pa, frame | present_bits(want) | (src.entry & CACHE_BITS));
            }
        }
        Kind::Table { frame, .. } => {
            if !held.contains(Rights::GRANT) {
                return Err(Error::NoRight);
            }
            if want.contains(Rights::SWITCH) {
                return Err(Error::BadArgument);
            }
            mem.write(dst.pa, frame | present_bits(want));
        }
        Kind::Handle { root, .. } => {
            if !held.contains(Rights::GRANT) {
                return Err(Error::NoRight);
            }
            if want.contains(Rights::WRITE) || want.contains(Rights::EXEC) {
                return Err(Error::BadArgument);
            }
            mem.write(dst.pa, handle_entry(root, want));
        }
        Kind::Device { index, .. } => {
            if !held.contains(Rights::GRANT) {
                return Err(Error::NoRight);
            }
            if want.contains(Rights::WRITE) || want.contains(Rights::EXEC) {
                return Err(Error::BadArgument);
            }
            mem.write(dst.pa, device_handle_entry(index, want));
        }
        Kind::Empty | Kind::Foreign => return Err(Error::NotMapped),
    }
    Ok(())
}

/// `map` into a device's I/O address space: the device may then read (and
/// with WRITE, write) the frame by DMA at `iova`. It is a share: the caller
/// needs GRANT, and the frame's owning entry is marked LENT, so a frame a
/// device can reach never becomes a page table.
///
/// Only the frame's owner (OWN held on the page) may grant DMA to it.
/// Revoking a share unmaps page-table entries, and the kernel keeps no
/// record of which devices a frame was granted to; a borrower that could
/// pass its borrowed page on to a device would keep DMA access after the
/// lender revoked the share. Owners cannot be revoked, so nothing is lost.
#[allow(clippy::too_many_arguments)]
fn map_to_device<M: PhysMem, D: DeviceTables>(
    mem: &mut M,
    dev: &mut D,
    caller: u64,
    src_va: u64,
    level: u8,
    index: u64,
    iova: u64,
    want: Rights,
) -> Result<(), Error> {
    if level != 0 {
        return Err(Error::BadLevel);
    }
    if want.bits() & !Rights::WRITE.bits() != 0 {
        return Err(Error::BadArgument);
    }
    if !iova.is_multiple_of(PAGE_SIZE) {
        return Err(Error::BadAddress);
    }
    let src = walk(mem, caller, src_va, 0)?;
    let (kind, held) = effective(&src, 0).ok_or(Error::NotMapped)?;
    let Kind::Page { frame, .. } = kind else {
        return Err(Error::WrongKind);
    };
    if !held.contains(want) {
        return Err(Error::RightsExceeded);
    }
    if !held.contains(Rights::GRANT) || !held.contains(Rights::OWN) {
        return Err(Error::NoRight);
    }
    dev.map(index, iova, frame, want.contains(Rights::WRITE))?;
    if src.entry & OWN != 0 && src.entry & LENT == 0 {
        mem.write(src.pa, src.entry | LENT);
    }
    Ok(())
}

/// `unmap(as, va, level)`.
pub fn unmap<M: PhysMem, T: Tlb, D: DeviceTables>(
    mem: &mut M,
    tlb: &mut T,
    dev: &mut D,
    caller: u64,
    handle_va: u64,
    va: u64,
    level: u64,
) -> Result<(), Error> {
    if level > 3 {
        return Err(Error::BadLevel);
    }
    let level = level as u8;
    let root = match resolve_target(mem, caller, handle_va)? {
        Target::Space(root) => root,
        Target::Device(index) => {
            if level != 0 {
                return Err(Error::BadLevel);
            }
            if !va.is_multiple_of(PAGE_SIZE) {
                return Err(Error::BadAddress);
            }
            return dev.unmap(index, va);
        }
    };
    check_user_va(va, level)?;
    let slot = walk(mem, root, va, level)?;
    if !slot.path.contains(Rights::OWN) {
        return Err(Error::NoRight);
    }
    match decode(slot.entry, level) {
        Kind::Empty | Kind::Foreign => Err(Error::NotMapped),
        Kind::Page { .. } if slot.entry & OWN != 0 => Err(Error::Owned),
        Kind::Page { .. } | Kind::Table { .. } => {
            mem.write(slot.pa, 0);
            tlb.flush_everywhere();
            Ok(())
        }
        Kind::Handle { .. } | Kind::Device { .. } => {
            mem.write(slot.pa, 0);
            Ok(())
        }
    }
}

/// Resolve `yield`'s target: a handle carrying SWITCH.
pub fn yield_target<M: PhysMem>(mem: &M, caller: u64, handle_va: u64) -> Result<u64, Error> {
    if handle_va == 0 {
        return Err(Error::BadAddress);
    }
    resolve_as(mem, caller, handle_va, Rights::SWITCH)
}

/// Translate a user address for the kernel's own access (the control page):
/// present, user, and writable at every level if `write`; and a frame the
/// kernel may touch: RAM (never device registers or persistent memory,
/// which a process may legitimately hold at any address) and never lent
/// (a lent frame may be reachable by a device or another space).
pub fn translate<M: PhysMem>(mem: &M, root: u64, va: u64, write: bool) -> Option<u64> {
    let slot = walk(mem, root, va & !(PAGE_SIZE - 1), 0).ok()?;
    match decode(slot.entry, 0) {
        Kind::Page { frame, rights, lent } => {
            let eff = rights.intersect(slot.path);
            if write && !eff.contains(Rights::WRITE) {
                return None;
            }
            if lent || !mem.is_ram(frame) {
                return None;
            }
            Some(frame + (va & (PAGE_SIZE - 1)))
        }
        _ => None,
    }
}

/// Boot-time construction of an address space (init's). Only the boot
/// kernel uses this, with its boot frame allocator; after boot the kernel
/// allocates nothing.
pub struct BootMapper<'a, M: PhysMem, F: FnMut() -> Option<u64>> {
    pub mem: &'a mut M,
    pub alloc: F,
    pub root: u64,
}

impl<'a, M: PhysMem, F: FnMut() -> Option<u64>> BootMapper<'a, M, F> {
    /// Map `frame` at `va` with the raw leaf bits `leaf` (an entry value
    /// without address), creating owned tables as needed.
    pub fn map_leaf(&mut self, va: u64, frame: u64, leaf: u64) -> Result<(), Error> {
        let slot = self.leaf_slot(va)?;
        if slot.entry != 0 {
            return Err(Error::Occupied);
        }
        self.mem.write(slot.pa, frame | leaf);
        Ok(())
    }

    /// Ensure the level-0 slot for `va` exists (creating tables).
    pub fn leaf_slot(&mut self, va: u64) -> Result<Slot, Error> {
        if va >= USER_END {
            return Err(Error::BadAddress);
        }
        let mut table = self.root;
        for l in (1..=3u8).rev() {
            let pa = table + index(va, l) * 8;
            let e = self.mem.read(pa);
            table = match decode(e, l) {
                Kind::Table { frame, .. } => frame,
                Kind::Empty => {
                    let f = (self.alloc)().ok_or(Error::NoTable)?;
                    self.mem.zero_frame(f);
                    self.mem.write(pa, fresh_table_link(f));
                    f
                }
                _ => return Err(Error::WrongKind),
            };
        }
        let pa = table + index(va, 0) * 8;
        Ok(Slot { pa, entry: self.mem.read(pa), path: Rights::ALL })
    }

    /// Place a raw entry (e.g. a handle) at `va`'s leaf slot.
    pub fn put_entry(&mut self, va: u64, entry: u64) -> Result<(), Error> {
        let slot = self.leaf_slot(va)?;
        if slot.entry != 0 {
            return Err(Error::Occupied);
        }
        self.mem.write(slot.pa, entry);
        Ok(())
    }
}

mod yield_plan;
pub use yield_plan::{yield_plan, YieldPlan};

/// Deliberate misorderings of the calls' stores, which only the
/// interleaving checker's own tests switch on (to show that it catches
/// each by name). Outside `cfg(test)` [`mutated`] is the constant `false`
/// and the branches compile away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mutation {
    /// `create` zeroes the frame before the TLB shootdown.
    ZeroBeforeShootdown,
    /// `create` links the new table before zeroing it.
    LinkBeforeZero,
    /// A move in `map` clears the source without a shootdown.
    MoveWithoutShootdown,
    /// A share in `map` marks the source LENT before checking the
    /// destination slot (so a failing call stores).
    StoreBeforeCheck,
}

#[cfg(not(test))]
#[inline(always)]
const fn mutated(_: Mutation) -> bool {
    false
}

#[cfg(test)]
fn mutated(m: Mutation) -> bool {
    interleave::mutation_is_on(m)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod interleave;
