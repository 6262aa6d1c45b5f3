//! Parking the other CPUs for a rebootless kernel upgrade (`upgrade.rs`).
//!
//! The switch overwrites the spare kernel slot and then runs a different
//! kernel, so no other CPU may be executing (or about to return into) the
//! old kernel's code, data or stacks. Before the copy the upgrading CPU
//! ([`park_others`]) sends every other online CPU the [`PARK_VECTOR`]
//! interrupt. Each one saves the user context it interrupted (if any) and
//! the space it was running into its own slot of the *parking area*, loads
//! the parking area's page table, and spins in the area's few instructions
//! with interrupts off until its slot's release word names where to go.
//! The area is four pages of low RAM (below 1 MiB, next to the start-up
//! trampoline): outside both kernel slots, so neither the copy nor the new
//! kernel disturbs a parked CPU. The upgrading CPU waits (bounded) for
//! every slot to report parked; if one does not, the upgrade is refused
//! (`CpuDidNotPark`) and the parked ones are released back into the old
//! kernel ([`unpark_entry`]), which returns each to what it interrupted.
//!
//! After the switch the new kernel releases each parked CPU into its own
//! [`upgrade_ap_entry`]: it loads its descriptor tables, per-CPU data,
//! vector state and LAPIC (adopting the running timer's count), comes
//! online for shootdowns, and returns to the user context it had
//! interrupted, in the space it was running, or goes idle (on the area's
//! page table, which maps no user space). No CPU is sent INIT/SIPI again.
//!
//! Area layout (physical, `AREA_PAGES` pages):
//!
//! ```text
//! +0x000   the parking code (position independent, copied from PARK_STUB)
//! +0x800   one slot of 32 words per CPU index (SLOT_*)
//! +0x1000  PML4: [0] identity map of the first 2 MiB (supervisor,
//!          executable, for the parking code), [256..512] the kernel half
//! +0x2000  PDPT, +0x3000 PD (one 2 MiB page at 0)
//! ```

use crate::arch::{percpu, TrapFrame, MAX_CPUS, SPURIOUS_VECTOR, SYSCALL_VECTOR, TIMER_VECTOR};
use crate::phys::{phys_read, phys_write, PHYS_OFFSET};
use crate::{apic, kinfo};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use exo_upgrade::handover::{ParkedCpu, FRAME_WORDS, MAX_APS};

/// The park request's interrupt vector (next to the shootdown's).
pub const PARK_VECTOR: u8 = 0xf1;
/// Pages of the parking area.
pub const AREA_PAGES: u64 = 4;

const SLOTS_OFFSET: u64 = 0x800;
const SLOT_BYTES: u64 = 256;
const PML4_OFFSET: u64 = 0x1000;
const PDPT_OFFSET: u64 = 0x2000;
const PD_OFFSET: u64 = 0x3000;

// Words of a CPU's slot (the parking code knows the first four).
/// Where to jump when released (0: stay parked).
const SLOT_RELEASE: u64 = 0;
/// The stack pointer to jump with.
const SLOT_STACK: u64 = 1;
/// The CPU index, passed to the release target in rdi.
const SLOT_CPU: u64 = 2;
/// 1 once the CPU spins in the parking code.
const SLOT_PARKED: u64 = 3;
/// The space it was running (0: idle).
const SLOT_RUNNING: u64 = 4;
/// Its CR3 when it parked (the old kernel's release restores it).
const SLOT_CR3: u64 = 5;
/// 1: the interrupted user context follows.
const SLOT_HAS_CONTEXT: u64 = 6;
const SLOT_FRAME: u64 = 7;
const _: () = assert!((SLOT_FRAME + FRAME_WORDS as u64) * 8 <= SLOT_BYTES);
const _: () = assert!(SLOTS_OFFSET + MAX_CPUS as u64 * SLOT_BYTES <= PML4_OFFSET);
const _: () = assert!(MAX_CPUS <= MAX_APS + 1);

/// The parking area's physical address (0: none, one CPU).
static AREA: AtomicU64 = AtomicU64::new(0);
/// A park request is out: a CPU taking [`PARK_VECTOR`], or waiting for
/// the kernel lock, parks.
static REQUESTED: AtomicBool = AtomicBool::new(false);
/// Test only (`upsmp_noprk` on the command line): the highest-numbered
/// CPU ignores park requests, so an upgrade must refuse `CpuDidNotPark`.
static IGNORE_CPU: AtomicU64 = AtomicU64::new(0);

core::arch::global_asm!(
    ".section .rodata.park_stub, \"a\"",
    ".global park_stub_start, park_stub_end",
    // rdi = this CPU's slot (an identity-mapped physical address).
    "park_stub_start:",
    "mov qword ptr [rdi + {parked}], 1",
    "2:",
    "pause",
    "mov rax, qword ptr [rdi + {release}]",
    "test rax, rax",
    "jz 2b",
    "mov rsp, qword ptr [rdi + {stack}]",
    "mov rdi, qword ptr [rdi + {cpu}]",
    "jmp rax",
    "park_stub_end:",
    ".text",
    parked = const SLOT_PARKED * 8,
    release = const SLOT_RELEASE * 8,
    stack = const SLOT_STACK * 8,
    cpu = const SLOT_CPU * 8,
);

extern "C" {
    static park_stub_start: u8;
    static park_stub_end: u8;
}

fn slot(area: u64, cpu: u64) -> u64 {
    area + SLOTS_OFFSET + cpu * SLOT_BYTES
}

/// A word of the parking area, shared with CPUs that run outside the
/// kernel's code (volatile, ordered).
fn word(slot: u64, w: u64) -> &'static AtomicU64 {
    let pa = slot + w * 8;
    // Checked once: the area lies in the window (it is RAM below 1 MiB).
    let _ = phys_read::<u64>(pa);
    // SAFETY: `pa` is an aligned word of the parking area, RAM the window
    // maps; the area is only ever accessed as atomic words.
    unsafe { &*((PHYS_OFFSET + pa) as *const AtomicU64) }
}

/// Boot (the boot CPU, before starting the APs): the parking area is
/// `pa` (AREA_PAGES pages of free low RAM). `ignore_flag`: `upsmp_noprk`
/// was on the command line.
pub fn set_area(pa: u64, ignore_flag: bool) {
    AREA.store(pa, SeqCst);
    if ignore_flag {
        IGNORE_CPU.store(u64::MAX, SeqCst);
    }
}

/// The parking area (for the handover).
pub fn area() -> u64 {
    AREA.load(SeqCst)
}

fn ignores(cpu: u64) -> bool {
    let ig = IGNORE_CPU.load(SeqCst);
    ig != 0 && cpu == 63 - crate::smp::online_mask().leading_zeros() as u64
}

/// Write the area's code and page table (the kernel half as it is now).
fn prepare(area: u64) {
    let (start, end) = (core::ptr::addr_of!(park_stub_start), core::ptr::addr_of!(park_stub_end));
    for i in 0..(end as u64 - start as u64) {
        // SAFETY: `start..end` are the stub's bytes in the kernel image.
        phys_write::<u8>(area + i, unsafe { *start.add(i as usize) });
    }
    // Every word gets its final value directly, never a transient one: a
    // CPU that came back idle from the last upgrade runs on this table.
    let (pml4, pdpt, pd) = (area + PML4_OFFSET, area + PDPT_OFFSET, area + PD_OFFSET);
    phys_write::<u64>(pd, 0x83); // 2 MiB at 0: present, writable, huge
    for i in 1..512 {
        phys_write::<u64>(pd + i * 8, 0);
        phys_write::<u64>(pdpt + i * 8, 0);
    }
    for i in 1..256 {
        phys_write::<u64>(pml4 + i * 8, 0);
    }
    phys_write::<u64>(pdpt, pd | 3);
    phys_write::<u64>(pml4, pdpt | 3);
    // SAFETY: read-only use of the kernel half; the upgrading CPU holds
    // the kernel lock, so no call edits it meanwhile.
    let half = unsafe { &*core::ptr::addr_of!(crate::trap::KERNEL_HALF) };
    for (i, e) in half.iter().enumerate() {
        phys_write::<u64>(pml4 + (256 + i as u64) * 8, *e);
    }
}

/// The park interrupt (without the kernel lock: the upgrading CPU holds
/// it). Parks this CPU if a request is out; otherwise (a request that
/// arrived after it was withdrawn, or one left pending in the LAPIC while
/// this CPU parked from the lock) it is acknowledged and dropped.
pub fn on_park_interrupt(f: &TrapFrame) {
    apic::eoi();
    if !REQUESTED.load(SeqCst) || ignores(percpu().index) {
        return;
    }
    if f.cs & 3 == 3 {
        park(Some(f));
    }
    if percpu().current == 0 {
        // Idle in the kernel (`sti; hlt`): nothing to resume.
        park(None);
    }
}

/// Called while waiting for the kernel lock (interrupts off) when a park
/// request is out: the upgrading CPU holds the lock, so this entry cannot
/// proceed; park with the entry undone where that loses nothing (a system
/// call is replayed — its instruction is 2 bytes before the return
/// address —, a fault re-executes its instruction, a timer tick is
/// dropped). A device interrupt cannot be undone: then this CPU does not
/// park, and the upgrade is refused after its bound.
pub fn park_waiting(f: &mut TrapFrame) {
    let cpu = percpu().index;
    if !REQUESTED.load(SeqCst) || ignores(cpu) {
        return;
    }
    if f.cs & 3 != 3 {
        // The idle loop's timer tick (already acknowledged).
        if percpu().current == 0 {
            park(None);
        }
        return;
    }
    match f.vector {
        SYSCALL_VECTOR => f.rip -= 2,
        v if v == TIMER_VECTOR as u64 => apic::eoi(),
        v if v == SPURIOUS_VECTOR as u64 => {}
        v if v < 32 && !apic::in_service(v as u8) => {}
        _ => return,
    }
    park(Some(f));
}

/// Save what this CPU ran into its slot, switch to the area's page table
/// and spin there.
fn park(f: Option<&TrapFrame>) -> ! {
    let area = AREA.load(SeqCst);
    let pc = percpu();
    let s = slot(area, pc.index);
    let cr3 = x86_64::registers::control::Cr3::read_raw().0.start_address().as_u64();
    word(s, SLOT_RUNNING).store(pc.current, SeqCst);
    word(s, SLOT_CR3).store(cr3, SeqCst);
    word(s, SLOT_HAS_CONTEXT).store(f.is_some() as u64, SeqCst);
    if let Some(f) = f {
        for (i, v) in crate::upgrade::frame_words(f).iter().enumerate() {
            word(s, SLOT_FRAME + i as u64).store(*v, SeqCst);
        }
    }
    // SAFETY: the area's page table maps the kernel half (this code and
    // stack stay reachable for the next instruction) and the parking code
    // at its physical address; the code only touches this CPU's slot, and
    // leaves through the release word with a fresh stack.
    unsafe {
        core::arch::asm!(
            "mov cr3, {pml4}",
            "jmp {code}",
            pml4 = in(reg) area + PML4_OFFSET,
            code = in(reg) area,
            in("rdi") s,
            options(noreturn)
        )
    }
}

fn tsc() -> u64 {
    // SAFETY: RDTSC only reads the time-stamp counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// The CPUs parked for a switch.
pub struct Parked {
    pub cpus: [ParkedCpu; MAX_APS],
    pub count: usize,
    /// TSC ticks from the first IPI to the last CPU parked.
    pub ticks: u64,
}

/// On the upgrading CPU (kernel lock held, interrupts off): park every
/// other online CPU, waiting at most `bound_us`. Err: one did not park in
/// time (its CPU index); the others were released back.
pub fn park_others(bound_us: u64) -> Result<Parked, u64> {
    let mut out = Parked { cpus: [ParkedCpu::default(); MAX_APS], count: 0, ticks: 0 };
    let me = percpu().index;
    let others = crate::smp::online_mask() & !(1 << me);
    let area = AREA.load(SeqCst);
    if others == 0 {
        return Ok(out);
    }
    if area == 0 {
        // Cannot happen (the area is set before any AP starts); never
        // switch with a CPU running.
        return Err(others.trailing_zeros() as u64);
    }
    let cpus = || (0..MAX_CPUS as u64).filter(move |c| others & (1 << c) != 0);
    prepare(area);
    for c in cpus() {
        word(slot(area, c), SLOT_RELEASE).store(0, SeqCst);
        word(slot(area, c), SLOT_PARKED).store(0, SeqCst);
    }
    REQUESTED.store(true, SeqCst);
    let t0 = tsc();
    for c in cpus() {
        apic::send_fixed(crate::smp::apic_id_of(c as usize) as u8, PARK_VECTOR);
    }
    let tsc_per_us = phys_read::<u64>(kinfo::frame() + 8 * exo_abi::kinfo::W_TSC_PER_US as u64).max(1);
    let all_parked = || cpus().all(|c| word(slot(area, c), SLOT_PARKED).load(SeqCst) == 1);
    while !all_parked() && tsc() - t0 < bound_us * tsc_per_us {
        core::hint::spin_loop();
    }
    if !all_parked() {
        // Withdraw the request first: a CPU that has not yet checked it
        // will not park; one that checked it before and parks late finds
        // its release word already set and comes straight back.
        REQUESTED.store(false, SeqCst);
        let stuck = cpus().find(|&c| word(slot(area, c), SLOT_PARKED).load(SeqCst) != 1).unwrap_or(0);
        for c in cpus() {
            release(area, c, crate::arch::kernel_stack_top(c as usize), unpark_entry as *const () as u64);
        }
        return Err(stuck);
    }
    out.ticks = tsc() - t0;
    REQUESTED.store(false, SeqCst);
    for c in cpus() {
        let s = slot(area, c);
        out.cpus[out.count] = ParkedCpu {
            index: c as u8,
            apic_id: crate::smp::apic_id_of(c as usize),
            running: word(s, SLOT_RUNNING).load(SeqCst),
            has_context: word(s, SLOT_HAS_CONTEXT).load(SeqCst) == 1,
        };
        out.count += 1;
    }
    Ok(out)
}

fn release(area: u64, cpu: u64, stack_top: u64, entry: u64) {
    let s = slot(area, cpu);
    // Entered by a jump: the stack as a call would leave it (16n + 8).
    word(s, SLOT_STACK).store(stack_top - 8, SeqCst);
    word(s, SLOT_CPU).store(cpu, SeqCst);
    word(s, SLOT_RELEASE).store(entry, SeqCst);
}

/// The context CPU `cpu` saved in its slot, if any.
fn saved_context(area: u64, cpu: u64) -> Option<TrapFrame> {
    let s = slot(area, cpu);
    if word(s, SLOT_HAS_CONTEXT).load(SeqCst) != 1 {
        return None;
    }
    let mut w = [0u64; FRAME_WORDS];
    for (i, v) in w.iter_mut().enumerate() {
        *v = word(s, SLOT_FRAME + i as u64).load(SeqCst);
    }
    Some(crate::upgrade::frame_from(&w))
}

/// A refused upgrade's release, in the old kernel: this CPU's tables and
/// per-CPU data are as it left them; restore its page table and return to
/// what it interrupted.
extern "C" fn unpark_entry(cpu: u64) -> ! {
    let area = AREA.load(SeqCst);
    let s = slot(area, cpu);
    let cr3 = word(s, SLOT_CR3).load(SeqCst);
    let f = saved_context(area, cpu);
    word(s, SLOT_RELEASE).store(0, SeqCst);
    word(s, SLOT_PARKED).store(0, SeqCst);
    // SAFETY: the page table this CPU ran on when it parked (a space's
    // root, or the boot table while idle); nothing edited tables since
    // (the upgrading CPU held the kernel lock throughout).
    unsafe { core::arch::asm!("mov cr3, {}", in(reg) cr3, options(nostack, preserves_flags)) };
    match f {
        // SAFETY: the complete user context this CPU saved when it parked.
        Some(f) => unsafe { crate::arch::trap_return(&f) },
        None => crate::smp::idle(),
    }
}

/// The new kernel, on the upgrading CPU: adopt the parking area and
/// release every parked CPU into this kernel's AP entry; wait (bounded)
/// until each is online. Returns how many came online.
pub fn release_all(area: u64, parked: &[ParkedCpu], bound_us: u64, tsc_per_us: u64) -> usize {
    AREA.store(area, SeqCst);
    for c in parked {
        // The record and the slot the CPU wrote must agree: anything else
        // is a kernel bug, and resuming a wrong context would be worse.
        let s = slot(area, c.index as u64);
        let (running, context) = (word(s, SLOT_RUNNING).load(SeqCst), word(s, SLOT_HAS_CONTEXT).load(SeqCst) == 1);
        if word(s, SLOT_PARKED).load(SeqCst) != 1 || running != c.running || context != c.has_context {
            crate::fatal(format_args!("upgrade: CPU {}'s parking slot does not match the handover", c.index));
        }
        crate::smp::adopt_cpu(c.index as usize, c.apic_id);
    }
    for c in parked {
        let top = crate::arch::kernel_stack_top(c.index as usize);
        release(area, c.index as u64, top, upgrade_ap_entry as *const () as u64);
    }
    let t0 = tsc();
    let want: u64 = parked.iter().map(|c| 1u64 << c.index).sum();
    while crate::smp::online_mask() & want != want && tsc() - t0 < bound_us * tsc_per_us.max(1) {
        core::hint::spin_loop();
    }
    (crate::smp::online_mask() & want).count_ones() as usize
}

/// A parked CPU's first code in the new kernel (from the parking code,
/// on this kernel's stack for it, on the area's page table).
extern "C" fn upgrade_ap_entry(cpu: u64) -> ! {
    crate::arch::init_cpu(cpu as usize);
    crate::enable_cpu_protections();
    // The vector registers still hold the interrupted context's state.
    crate::vector::adopt_this_cpu();
    apic::init_this_cpu();
    let area = AREA.load(SeqCst);
    let s = slot(area, cpu);
    let running = word(s, SLOT_RUNNING).load(SeqCst);
    let f = saved_context(area, cpu);
    word(s, SLOT_RELEASE).store(0, SeqCst);
    word(s, SLOT_PARKED).store(0, SeqCst);
    crate::smp::come_online_after_upgrade(running);
    match f {
        // SAFETY: the complete user context this CPU saved when it parked,
        // in `running`, which `come_online_after_upgrade` loaded.
        Some(f) => unsafe { crate::arch::trap_return(&f) },
        None => crate::smp::idle(),
    }
}
