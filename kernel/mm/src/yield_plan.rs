//! `yield`'s page-table work in one pass: the handle in the caller, the
//! target's control page and the caller's own control page. The result is
//! exactly what [`yield_target`](crate::yield_target) followed by two
//! [`translate`](crate::translate)s of `CONTROL_VA` gives (host-tested
//! against them, hostile tables included), but each entry is checked with
//! one mask compare instead of a full [`decode`](crate::decode), and the
//! caller's control-page walk reuses the links it shares with the handle's
//! walk (a child's parent handle sits in the same level-1 table as its
//! control page). `yield` is the one call on the path of every message
//! between two spaces, so its cost is the round trip's.

use crate::{index, span, PhysMem, ADDR_MASK, DEVICE_TAG, HANDLE_RIGHTS_SHIFT, HANDLE_TAG, LENT, P, PS, RW, US};
use exo_abi::{Error, Rights, PAGE_SIZE, USER_END};

/// What `yield` needs to switch: where it goes and the two control pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct YieldPlan {
    /// The target space's root table.
    pub target: u64,
    /// Physical address of the target's control page (usable: present,
    /// user and writable at every level, RAM, not lent).
    pub target_ctl: u64,
    /// The caller's control page, if it has a usable one (if not, its
    /// context is simply not saved).
    pub caller_ctl: Option<u64>,
}

/// The bits that make an entry at levels 1..=3 a table link [`decode`]
/// accepts: present, user, not a huge page.
///
/// [`decode`]: crate::decode
const LINK_MASK: u64 = P | US | PS;
const LINK: u64 = P | US;

/// Resolve a `yield`: the handle at `handle_va` in `caller` (it must carry
/// SWITCH) and the target's control page at `ctl_va` (the control page of
/// the CPU the yield runs on). Errors as `yield_target`, then `BadTarget`
/// if the target has no usable control page.
#[inline]
pub fn yield_plan<M: PhysMem>(mem: &M, caller: u64, handle_va: u64, ctl_va: u64) -> Result<YieldPlan, Error> {
    // Every CPU's control page lies in the first 2 MiB
    // (`exo_abi::smp_control_va`), reached through entry 0 of the tables
    // at levels 3..1: in this copy the compiler knows those indices are 0
    // and drops their computation from both control-page walks.
    if ctl_va < span(1) {
        plan(mem, caller, handle_va, ctl_va, [0, 0, 0, index(ctl_va, 0) * 8])
    } else {
        let off = [3u8, 2, 1, 0].map(|level| index(ctl_va, level) * 8);
        plan(mem, caller, handle_va, ctl_va, off)
    }
}

/// [`yield_plan`] with the byte offsets of `ctl_va`'s entries in the
/// tables at levels 3, 2, 1, 0 (`ctl_off`) worked out.
#[inline(always)]
fn plan<M: PhysMem>(mem: &M, caller: u64, handle_va: u64, ctl_va: u64, ctl_off: [u64; 4]) -> Result<YieldPlan, Error> {
    if handle_va == 0 || handle_va >= USER_END || !handle_va.is_multiple_of(PAGE_SIZE) {
        return Err(Error::BadAddress);
    }
    // The links at levels 3, 2, 1 on the handle's path.
    let mut links = [0u64; 3];
    let mut table = caller;
    for (slot, level) in links.iter_mut().zip([3u8, 2, 1]) {
        let e = mem.read(table + index(handle_va, level) * 8);
        if e & LINK_MASK != LINK {
            return Err(if e == 0 { Error::NoTable } else { Error::WrongKind });
        }
        *slot = e;
        table = e & ADDR_MASK;
    }
    let target = handle_root(mem.read(table + index(handle_va, 0) * 8))?;
    let target_ctl = control_page(mem, target, ctl_va, ctl_off, &[]).ok_or(Error::BadTarget)?;
    // The caller's walk to `ctl_va` starts down the same tables as long
    // as the indices agree: those links were read already.
    let shared = match handle_va ^ ctl_va {
        d if d < span(1) => 3,
        d if d < span(2) => 2,
        d if d < span(3) => 1,
        _ => 0,
    };
    let caller_ctl = control_page(mem, caller, ctl_va, ctl_off, &links[..shared]);
    Ok(YieldPlan { target, target_ctl, caller_ctl })
}

/// The space a level-0 entry names, if it is a CPU address-space handle
/// carrying SWITCH (as `resolve_as` with `Rights::SWITCH` decides: a
/// borrowed handle keeps exactly SWITCH, so the path's rights never
/// matter here).
#[inline(always)]
fn handle_root(e: u64) -> Result<u64, Error> {
    // The usual case in one compare: a CPU space handle carrying SWITCH.
    const KIND: u64 = P | HANDLE_TAG | DEVICE_TAG | (Rights::SWITCH.bits() << HANDLE_RIGHTS_SHIFT);
    if e & KIND == HANDLE_TAG | (Rights::SWITCH.bits() << HANDLE_RIGHTS_SHIFT) {
        return Ok(e & ADDR_MASK);
    }
    if e & P != 0 {
        // A page (WrongKind), or something no user table holds (NotMapped).
        return Err(if e & US != 0 { Error::WrongKind } else { Error::NotMapped });
    }
    if e & HANDLE_TAG == 0 {
        return Err(Error::NotMapped);
    }
    if e & DEVICE_TAG != 0 {
        return Err(Error::WrongKind);
    }
    if (e >> HANDLE_RIGHTS_SHIFT) & Rights::SWITCH.bits() == 0 {
        return Err(Error::NoRight);
    }
    Ok(e & ADDR_MASK)
}

/// `translate(root, ctl_va, true)`: present, user and writable links
/// (no huge page), then a present, user, writable, never lent page of RAM.
/// `known` holds the first links of the walk when they were already read;
/// `off` the byte offsets of `ctl_va`'s entries at levels 3, 2, 1, 0.
#[inline(always)]
fn control_page<M: PhysMem>(mem: &M, root: u64, ctl_va: u64, off: [u64; 4], known: &[u64]) -> Option<u64> {
    let mut table = root;
    for (i, &off) in off[..3].iter().enumerate() {
        let e = match known.get(i) {
            Some(&e) => e,
            None => mem.read(table + off),
        };
        if e & (LINK_MASK | RW) != LINK | RW {
            return None;
        }
        table = e & ADDR_MASK;
    }
    let e = mem.read(table + off[3]);
    if e & (P | US | RW | LENT) != P | US | RW {
        return None;
    }
    let frame = e & ADDR_MASK;
    if !mem.is_ram(frame) {
        return None;
    }
    Some(frame + (ctl_va & (PAGE_SIZE - 1)))
}
