//! Starting a program from the boot image as a new process.
//!
//! Init builds the child's address space from its own frames: a root
//! (`create_as`), then one level-3 table that it links both into the child
//! (at the child's address 0) and into itself (at the child's *window*), so
//! that every later table and page init places in its window appears in
//! the child. The window is an ordinary shared region — XOmB's page-table
//! subtree — which init keeps to give the child more memory or inspect it.

use crate::frames;
use crate::logic::spawn::{self as plan, Kind, Layout};
use crate::sched::{self, state_name, EXITED, MAX_PROCS, RUNNABLE};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::Ordering::SeqCst;
use exo_abi::{Error, Rights, CONTROL_VA, INIT_SELF_HANDLE_VA};
use exo_loader::elf::{self, ElfError};
use exo_rt::layout::*;
use exo_rt::{mem, sys};

pub struct Child {
    pub slot: usize,
    pub handle: u64,
    pub id: u64,
    pub window: u64,
}

impl Child {
    /// Init's address of the child's virtual address `va`.
    pub fn at(&self, va: u64) -> u64 {
        self.window + va
    }
}

#[derive(Debug)]
pub enum SpawnError {
    NotInBootImage,
    Elf(ElfError),
    NoSlot,
    OutOfMemory,
    Sys(&'static str, Error),
}

impl core::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self {
            SpawnError::NotInBootImage => write!(f, "no such program in the boot image"),
            SpawnError::Elf(e) => write!(f, "invalid program: {e}"),
            SpawnError::NoSlot => write!(f, "process table full"),
            SpawnError::OutOfMemory => write!(f, "out of memory"),
            SpawnError::Sys(what, e) => write!(f, "{what}: {}", e.name()),
        }
    }
}

fn frame() -> Result<u64, SpawnError> {
    frames::alloc().ok_or(SpawnError::OutOfMemory)
}

/// The child's fixed addresses.
const LAYOUT: Layout = Layout {
    control: CONTROL_VA,
    parent_handle: PARENT_HANDLE_VA,
    console: CONSOLE_VA,
    args: ARGS_VA,
    mailbox: MAILBOX_VA,
    heap: HEAP_VA,
    spare: SPARE_VA,
};

/// Ensure init has page tables down to level 1 for `window_va` (for a
/// child's window, the tables then appear in the child). Tables come from init's frames.
pub fn ensure_tables(window_va: u64) -> Result<(), SpawnError> {
    for (level, span) in [(3u64, 1u64 << 39), (2, 1 << 30), (1, 1 << 21)] {
        let f = frame()?;
        match sys::create(window_va & !(span - 1), level, f) {
            Ok(()) => {}
            Err(Error::Occupied) => frames::give_back(f),
            Err(e) => return Err(SpawnError::Sys("create table", e)),
        }
    }
    Ok(())
}

/// Move a fresh frame from init's RAM window to `window_va`, filled by
/// `fill` (given the frame's current address) first; returns the frame's
/// address in the RAM window (where it goes back to).
pub fn place_page(window_va: u64, rights: Rights, fill: impl FnOnce(u64)) -> Result<u64, SpawnError> {
    ensure_tables(window_va)?;
    let f = frame()?;
    fill(f);
    sys::map(f, 0, 0, window_va, rights | Rights::OWN | Rights::GRANT).map_err(|e| SpawnError::Sys("map page", e))?;
    Ok(f)
}

/// What init placed in a child, to take back when it is destroyed.
#[derive(Clone, Copy)]
enum Placed {
    /// A page the child owns: its address there, and its frame's address
    /// in init's RAM window.
    Owned { va: u64, frame: u64 },
    /// One of init's pages shared with the child (args, console,
    /// mailbox), or the handle to init.
    Lent { va: u64 },
    /// A page the child owns that init also granted a device's DMA
    /// ([`grant_spare_dma`]): LENT forever, so it goes back to the frame
    /// allocator's lent pool (data pages only), never its general one.
    DeviceLent { va: u64, frame: u64 },
}

/// Per slot: whether the child was spawned destroyable (without GRANT),
/// and every page spawning placed in it.
static PLACED: spin::Mutex<[(bool, Vec<Placed>); MAX_PROCS]> =
    spin::Mutex::new([const { (false, Vec::new()) }; MAX_PROCS]);

pub struct Options<'a> {
    pub args: &'a str,
    pub words: &'a [u64],
    pub heap_pages: u64,
    pub spare_pages: u64,
    /// Leave the child stopped (not yet runnable) so the caller can give it
    /// more before it runs; start it with `sched::start`.
    pub paused: bool,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options { args: "", words: &[], heap_pages: 16, spare_pages: 0, paused: false }
    }
}

/// `spawn`, with the error as a message naming the program and arguments.
pub fn spawn_named(name: &str, opts: &Options) -> Result<Child, String> {
    spawn(name, opts).map_err(|e| format!("spawning {name} {:?}: {e}", opts.args))
}

/// Create a process running `name` from the boot image.
pub fn spawn(name: &str, opts: &Options) -> Result<Child, SpawnError> {
    let image = exo_loader::bootimage::BootImage::parse(exo_rt::boot_image())
        .ok()
        .and_then(|b| b.find(name))
        .ok_or(SpawnError::NotInBootImage)?;
    spawn_image(image.data, opts)
}

pub fn spawn_image(bytes: &[u8], opts: &Options) -> Result<Child, SpawnError> {
    spawn_image_linked(bytes, opts, Rights::WRITE | Rights::EXEC | Rights::OWN | Rights::GRANT, 1)
}

/// [`spawn_named`] on the CPUs of the mask `cpus`: the child gets a
/// control page for each of them and for no other, so those are the only
/// CPUs the kernel can ever enter it on. `1 << n` pins it to CPU `n`,
/// where init's scheduler for that CPU runs it (`sched::on_core`, once
/// `sched::give_core(n)`); a child with several bits may run on several
/// CPUs at once, one activation per CPU (`exo_rt::smp`). Pinning is this
/// mask and nothing else: the kernel keeps no affinity.
pub fn spawn_on(name: &str, opts: &Options, cpus: u64) -> Result<Child, String> {
    let what = || format!("spawning {name} {:?} on CPUs {cpus:#x}", opts.args);
    let image = exo_loader::bootimage::BootImage::parse(exo_rt::boot_image())
        .ok()
        .and_then(|b| b.find(name))
        .ok_or_else(|| format!("{}: {}", what(), SpawnError::NotInBootImage))?;
    spawn_image_linked(image.data, opts, Rights::WRITE | Rights::EXEC | Rights::OWN | Rights::GRANT, cpus)
        .map_err(|e| format!("{}: {e}", what()))
}

/// Spawn a child that init may [`destroy`] and [`respawn`] in place: its
/// space is linked without GRANT, so it can share none of its pages —
/// with itself (an alias), another space or a device — and every page
/// init takes back from it is reachable from nowhere else. A driver
/// spawned this way cannot grant DMA itself: init grants it for it
/// ([`grant_spare_dma`]), knowing every I/O address to revoke.
pub fn spawn_destroyable(name: &str, opts: &Options) -> Result<Child, String> {
    let image = exo_loader::bootimage::BootImage::parse(exo_rt::boot_image())
        .ok()
        .and_then(|b| b.find(name))
        .ok_or_else(|| format!("spawning {name}: {}", SpawnError::NotInBootImage))?;
    spawn_image_linked(image.data, opts, Rights::WRITE | Rights::EXEC | Rights::OWN, 1)
        .map_err(|e| format!("spawning {name} {:?}: {e}", opts.args))
}

fn spawn_image_linked(bytes: &[u8], opts: &Options, link: Rights, cpus: u64) -> Result<Child, SpawnError> {
    let elf_plan = elf::plan(bytes, 64 << 20).map_err(SpawnError::Elf)?;
    let slot = (0..MAX_PROCS)
        .find(|i| sched::slot(*i).state.load(SeqCst) == sched::FREE && sched::slot(*i).id.load(SeqCst) == 0)
        .ok_or(SpawnError::NoSlot)?;
    let (handle, window) = plan::slot_layout(HANDLES_VA, slot);

    let root_frame = frame()?;
    let id = sys::create_as(handle, root_frame).map_err(|e| SpawnError::Sys("create_as", e))?;
    let pdpt = frame()?;
    sys::create(window, 3, pdpt).map_err(|e| SpawnError::Sys("create window", e))?;
    sys::map(window, 3, handle, 0, link).map_err(|e| SpawnError::Sys("link window", e))?;
    let child = fill(Child { slot, handle, id, window }, &elf_plan, bytes, opts, false, cpus)?;
    PLACED.lock()[slot].0 = !link.contains(Rights::GRANT);
    Ok(child)
}

/// A program again in the address space of a child [`destroy`]ed after
/// [`spawn_destroyable`]: the same space, slot, handle and window — the
/// kernel keeps no process, so a space is reused by filling it anew. What
/// the previous program moved away from where init placed it (into tables
/// it made itself) stays in the space, visible to the new program and to
/// no one else; respawn the same program.
pub fn respawn(dead: &Child, name: &str, opts: &Options) -> Result<Child, String> {
    respawn_in(dead, name, opts, false)
}

/// [`respawn`] a driver: its spare frames (its DMA memory) come from the
/// frame allocator's lent pool first — the previous driver's DMA pages,
/// which [`destroy`] put there — so restarting a driver costs no new
/// frames, and frames a device could reach stay data pages.
pub fn respawn_driver(dead: &Child, name: &str, opts: &Options) -> Result<Child, String> {
    respawn_in(dead, name, opts, true)
}

fn respawn_in(dead: &Child, name: &str, opts: &Options, spare_from_lent: bool) -> Result<Child, String> {
    let what = || format!("respawning {name} {:?} in slot {}", opts.args, dead.slot);
    let s = sched::slot(dead.slot);
    if s.state.load(SeqCst) != sched::FREE || s.id.load(SeqCst) != dead.id {
        return Err(format!("{}: the slot holds no destroyed space", what()));
    }
    let image = exo_loader::bootimage::BootImage::parse(exo_rt::boot_image())
        .ok()
        .and_then(|b| b.find(name))
        .ok_or_else(|| format!("{}: {}", what(), SpawnError::NotInBootImage))?;
    let elf_plan = elf::plan(image.data, 64 << 20).map_err(|e| format!("{}: {}", what(), SpawnError::Elf(e)))?;
    fill(Child { ..*dead }, &elf_plan, image.data, opts, spare_from_lent, 1).map_err(|e| format!("{}: {e}", what()))
}

/// Grant `device` (init's handle address) DMA to the first `count` spare
/// pages of a destroyable child, page `i` at `iova + i` pages, writable:
/// for a driver that holds no GRANT (it cannot map into a device itself).
/// Init knows every I/O address it granted, so it can revoke them all
/// before [`destroy`] takes the pages back; the pages become LENT and go
/// back to the lent pool.
pub fn grant_spare_dma(child: &Child, device: u64, iova: u64, count: u64) -> Result<(), String> {
    let mut placed = PLACED.lock();
    let list = &mut placed[child.slot].1;
    for i in 0..count {
        let va = SPARE_VA + i * exo_abi::PAGE_SIZE;
        let at = list.iter().position(|p| matches!(p, Placed::Owned { va: v, .. } if *v == va));
        let Some(Placed::Owned { frame, .. }) = at.map(|k| list[k]) else {
            return Err(format!("spare page {i} of slot {} was not placed by init", child.slot));
        };
        sys::map(child.at(va), 0, device, iova + i * exo_abi::PAGE_SIZE, Rights::WRITE)
            .map_err(|e| format!("granting the device DMA to spare page {i}: {}", e.name()))?;
        if let Some(k) = at {
            list[k] = Placed::DeviceLent { va, frame };
        }
    }
    Ok(())
}

/// Stop a child from ever being scheduled again (the first step of
/// taking a driver down: nothing it does after this can happen).
pub fn halt(child: &Child) {
    let s = sched::slot(child.slot);
    if s.id.load(SeqCst) == child.id {
        s.state.store(sched::KILLED, SeqCst);
    }
}

/// Let `child` run on CPU `cpu` as well (an activation there, beside the
/// ones it has): a control page for that CPU naming the same entry as its
/// others, and the CPU's scheduler may run it from now on. Taken back by
/// [`destroy`] like every page init placed.
pub fn add_cpu(child: &Child, cpu: u64) -> Result<(), String> {
    let s = sched::slot(child.slot);
    let cpus = s.cpus.load(SeqCst);
    let have = plan::child_cpus(cpus).next().ok_or("the child has no control page to copy the entry from")?;
    if cpu >= plan::MAX_CPUS || cpus & (1 << cpu) != 0 {
        return Err(format!("CPU {cpu}: out of range, or the child has its page already (CPUs {cpus:#x})"));
    }
    let entry = mem::read(child.at(plan::control_va(&LAYOUT, have)) + exo_abi::control::ENTRY);
    let va = plan::control_va(&LAYOUT, cpu);
    let frame = place_page(child.at(va), Rights::WRITE, |f| {
        mem::write(f + exo_abi::control::ENTRY, entry);
        mem::write(f + exo_abi::control::STACK, 0);
    })
    .map_err(|e| format!("control page for CPU {cpu}: {e}"))?;
    PLACED.lock()[child.slot].1.push(Placed::Owned { va, frame });
    s.cpus.fetch_or(1 << cpu, SeqCst);
    Ok(())
}

/// Give `child` its pages (`logic::spawn::child_pages`) and its slot.
fn fill(
    child: Child,
    elf_plan: &elf::LoadPlan,
    bytes: &[u8],
    opts: &Options,
    spare_from_lent: bool,
    cpus: u64,
) -> Result<Child, SpawnError> {
    let slot = child.slot;
    let mut placed = Vec::new();
    // Every page the child gets, in order (`logic::spawn::child_pages`).
    let (mut ring, mut mailbox) = (0, 0);
    for p in plan::child_pages(elf_plan, opts.heap_pages, opts.spare_pages, cpus, &LAYOUT) {
        let va = child.at(p.va);
        let lent = matches!(p.kind, Kind::Args | Kind::Console | Kind::Mailbox | Kind::ParentHandle);
        match p.kind {
            Kind::Program => {
                let page =
                    elf_plan.page_bytes(bytes, p.va).map_err(|_| SpawnError::Elf(ElfError::NoLoadableSegments))?;
                let frame = place_page(va, p.rights, |f| mem::write_bytes(f, &page))?;
                placed.push(Placed::Owned { va: p.va, frame });
            }
            // Where the kernel enters the child.
            Kind::Control => {
                let frame = place_page(va, p.rights, |f| {
                    mem::write(f + exo_abi::control::ENTRY, elf_plan.entry);
                    mem::write(f + exo_abi::control::STACK, 0);
                })?;
                placed.push(Placed::Owned { va: p.va, frame });
            }
            Kind::Args => {
                let args = frame()?;
                mem::write_bytes(args, &opts.args.as_bytes()[..opts.args.len().min(2000)]);
                let words = plan::args_words(opts.heap_pages, opts.spare_pages, SPARE_VA, opts.words);
                for (i, w) in words.iter().enumerate() {
                    mem::write(args + ARGS_WORDS_OFFSET + 8 * i as u64, *w);
                }
                ensure_tables(va)?;
                sys::map(args, 0, 0, va, p.rights).map_err(|e| SpawnError::Sys("lend args", e))?;
            }
            Kind::Console => {
                ring = frame()?;
                sys::map(ring, 0, 0, va, p.rights).map_err(|e| SpawnError::Sys("lend console", e))?;
            }
            Kind::Mailbox => {
                mailbox = frame()?;
                ensure_tables(va)?;
                sys::map(mailbox, 0, 0, va, p.rights).map_err(|e| SpawnError::Sys("lend mailbox", e))?;
            }
            Kind::ParentHandle => {
                sys::map(INIT_SELF_HANDLE_VA, 0, 0, va, p.rights).map_err(|e| SpawnError::Sys("parent handle", e))?
            }
            Kind::Spare if spare_from_lent => {
                // A previous driver's DMA page (zeroed by `destroy`): LENT,
                // so a data page only — which a driver's DMA memory is.
                let frame = match frames::alloc_lent() {
                    Some(f) => {
                        ensure_tables(va)?;
                        sys::map(f, 0, 0, va, p.rights | Rights::OWN | Rights::GRANT)
                            .map_err(|e| SpawnError::Sys("map lent page", e))?;
                        f
                    }
                    None => place_page(va, p.rights, |_| {})?,
                };
                placed.push(Placed::Owned { va: p.va, frame });
            }
            Kind::Heap | Kind::Spare => {
                let frame = place_page(va, p.rights, |_| {})?;
                placed.push(Placed::Owned { va: p.va, frame });
            }
        }
        if lent {
            placed.push(Placed::Lent { va: p.va });
        }
    }
    PLACED.lock()[slot].1 = placed;

    let s = sched::slot(slot);
    s.handle.store(child.handle, SeqCst);
    s.id.store(child.id, SeqCst);
    s.ring.store(ring, SeqCst);
    s.code.store(0, SeqCst);
    s.addr.store(0, SeqCst);
    s.mailbox.store(mailbox, SeqCst);
    s.cpus.store(cpus, SeqCst);
    s.ran_on.store(0, SeqCst);
    s.state.store(if opts.paused { sched::STOPPED } else { RUNNABLE }, SeqCst);
    Ok(child)
}

/// What [`destroy`] took back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reclaimed {
    /// Pages init had placed that came back to its frame allocator.
    pub pages: u64,
    /// Pages init had placed that the child no longer held where they were
    /// placed (it moved them, or made them page tables): lost until reboot.
    pub lost: u64,
    /// Shares of init's own pages (args, console, mailbox) removed.
    pub unshared: u64,
    /// Of `pages`: pages a device could reach (DMA granted by init), which
    /// went to the lent pool; the caller revoked the device's access first.
    pub device_pages: u64,
}

/// Destroy a child that is not running (init main runs this; a child runs
/// only when init yields to it): it is never scheduled again, every page
/// init placed comes back (moved from the child's window to the frame's
/// home in init's RAM window), init's shared pages and the `extra` links
/// the caller made (child address, level: a region, a shared info page)
/// are removed — each removal flushes every TLB, so nothing the child
/// held stays reachable. The tables stay (the kernel cannot turn a table
/// back into a page) and so does the space, empty, for [`respawn`].
/// For a child whose pages init granted a device ([`grant_spare_dma`]),
/// the caller must first stop the device and revoke every I/O address it
/// granted: destroy zeroes and reuses those frames.
pub fn destroy(child: &Child, extra: &[(u64, u64)]) -> Result<Reclaimed, String> {
    let s = sched::slot(child.slot);
    if s.id.load(SeqCst) != child.id {
        return Err(format!("destroy: slot {} does not hold space {:#x}", child.slot, child.id));
    }
    if !PLACED.lock()[child.slot].0 {
        return Err(format!(
            "destroy: the child in slot {} could share its pages (spawned with GRANT): they cannot be taken back safely",
            child.slot
        ));
    }
    s.state.store(sched::KILLED, SeqCst);
    s.ring.store(0, SeqCst);
    let mut r = Reclaimed::default();
    for &(va, level) in extra {
        sys::unmap(0, child.at(va), level).map_err(|e| format!("destroy: unlinking {va:#x}: {}", e.name()))?;
    }
    let placed = core::mem::take(&mut PLACED.lock()[child.slot].1);
    for p in placed {
        match p {
            Placed::Owned { va, frame } => {
                match sys::map(child.at(va), 0, 0, frame, Rights::WRITE | Rights::OWN | Rights::GRANT) {
                    Ok(()) => {
                        // `frames::alloc` zeroes it before the next owner
                        // gets it: nothing of this one is seen.
                        frames::give_back(frame);
                        r.pages += 1;
                    }
                    Err(_) => r.lost += 1,
                }
            }
            Placed::Lent { va } => {
                if sys::unmap(0, child.at(va), 0).is_ok() {
                    r.unshared += 1;
                }
            }
            // The caller revoked the device's access first (see
            // `grant_spare_dma`): nothing can reach the frame now.
            Placed::DeviceLent { va, frame } => {
                match sys::map(child.at(va), 0, 0, frame, Rights::WRITE | Rights::OWN | Rights::GRANT) {
                    Ok(()) => {
                        mem::zero_page(frame);
                        frames::give_back_lent(frame);
                        r.pages += 1;
                        r.device_pages += 1;
                    }
                    Err(_) => r.lost += 1,
                }
            }
        }
    }
    s.state.store(sched::FREE, SeqCst);
    Ok(r)
}

/// Init's address of a child's mailbox page.
pub fn mailbox(child: &Child) -> u64 {
    sched::slot(child.slot).mailbox.load(SeqCst)
}

/// Start `prog` from the boot image with `args`, `spare` spare frames and
/// argument words `words`; it is runnable at once.
pub fn start(prog: &str, args: &str, spare: u64, words: &[u64]) -> Result<Child, String> {
    spawn_named(prog, &Options { args, words, spare_pages: spare, ..Options::default() })
}

/// Spawn without running: the caller finishes setting the child up, then
/// `sched::start`s it (a timer tick could otherwise run it too early).
pub fn start_paused(prog: &str, args: &str, spare: u64) -> Result<Child, String> {
    spawn_named(prog, &Options { args, spare_pages: spare, paused: true, ..Options::default() })
}

/// Wait for a child; its exit code, or an error naming how it ended.
pub fn finish(c: &Child, what: &str) -> Result<u64, String> {
    let st = sched::wait(c.slot);
    let s = sched::slot(c.slot);
    let code = s.code.load(SeqCst);
    if st == EXITED {
        Ok(code)
    } else {
        Err(format!("{what}: process {} (vector/code {code:#x}, address {:#x})", state_name(st), s.addr.load(SeqCst)))
    }
}

/// Run `prog` with `args` to completion; it must exit with `want`.
pub fn expect_exit(prog: &str, args: &str, spare: u64, want: u64) -> Result<(), String> {
    let code = finish(&start(prog, args, spare, &[])?, args)?;
    if code == want {
        Ok(())
    } else {
        Err(format!("{prog} {args:?} exited with {code}, expected {want}"))
    }
}

/// Wait for a child that must exit 0.
pub fn expect_zero(c: &Child, what: &str) -> Result<(), String> {
    match finish(c, what)? {
        0 => Ok(()),
        code => Err(format!("{what} exited with {code}")),
    }
}
