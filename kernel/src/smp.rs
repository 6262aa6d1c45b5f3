//! SMP: starting the application processors (APs), the kernel lock, and
//! TLB shootdown. The kernel keeps per-CPU state only (`arch::PerCpu`: the
//! running space, the kernel stack; each CPU's GDT, TSS and IST stacks):
//! no run queues, no process table. What runs on a CPU is init's choice,
//! made on that CPU: an AP is idle in the kernel until its first timer tick
//! finds init's control page for that CPU (`exo_abi::smp_control_va`), and
//! then enters init there with `Reason::Timer` (`r8` = the CPU index).
//!
//! Start-up (Intel SDM vol. 3, 9.4 "Multiple-processor initialization"):
//! the boot CPU copies [`TRAMPOLINE`] to a free RAM page below 1 MiB and,
//! for each AP the MADT lists as enabled (`firmware::ApicIds::to_start`,
//! host-tested), patches in its CPU index and kernel stack, sends INIT,
//! SIPI, SIPI, and waits for it to arrive. The trampoline goes from real
//! mode through 32-bit protected mode to long mode on the boot page table
//! (which still maps the first GiB at 0 for exactly this, and the kernel's
//! half) and jumps to [`ap_entry`].
//!
//! Concurrency: every kernel entry that may walk or edit page tables runs
//! under one kernel lock ([`lock`]); the kernel never blocks and every path
//! is short, so one lock is correct and costs only waiting while another
//! CPU is in the kernel (docs/ARCHITECTURE.md, "SMP"). A TLB shootdown
//! ([`shootdown`]) runs under it: the shooting CPU interrupts every other
//! running CPU and waits until each has reloaded CR3. A CPU waiting for
//! the lock (interrupts off) answers shootdowns while it spins, so the two
//! never deadlock.

use crate::arch::{percpu, TrapFrame, MAX_CPUS, SPURIOUS_VECTOR, TIMER_VECTOR};
use crate::boot::BootInfo;
use crate::phys::{phys_read, phys_write};
use crate::{apic, kinfo};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use exo_abi::{kinfo as ki, Reason};
use firmware::Platform;

/// The interrupt vector of a TLB shootdown request.
pub const SHOOTDOWN_VECTOR: u8 = 0xf0;

/// Bit `i`: CPU index `i` is running (takes interrupts, answers
/// shootdowns).
static ONLINE_MASK: AtomicU64 = AtomicU64::new(1);
/// Bit `i`: CPU `i` has entered an address space (the boot CPU from the
/// start). Only these can hold user translations; a CPU that never left
/// the kernel's idle loop holds none (its page table's user half is the
/// boot identity map, which no call edits), so shootdowns skip it. Set
/// under the kernel lock before the CPU first loads a user page table, so
/// a shooter (which holds the lock) never misses one.
static RUNS_SPACES: AtomicU64 = AtomicU64::new(1);
/// Each CPU's local APIC ID (the shootdown's IPI destination).
static APIC_IDS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// The CPU index the AP being started has reported (it has left the
/// trampoline's parameters behind).
static ARRIVED: AtomicU64 = AtomicU64::new(0);
/// Init's root table, published by the boot CPU as it first enters init;
/// 0 before that (an AP stays idle).
static INIT_ROOT: AtomicU64 = AtomicU64::new(0);

/// The shootdown generation: incremented by the shooter after its edit;
/// CPU `i` has flushed at least up to `ACKED[i]`.
static SHOOT_GEN: AtomicU64 = AtomicU64::new(0);
static ACKED: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

static LOCKED: AtomicBool = AtomicBool::new(false);

/// Holds the kernel lock until dropped.
pub struct KernelLockGuard(());

impl Drop for KernelLockGuard {
    #[inline(always)]
    fn drop(&mut self) {
        LOCKED.store(false, SeqCst);
    }
}

/// Take the kernel lock (interrupts are off in the kernel). The
/// uncontended case — every entry on one CPU — is one `lock cmpxchg` and
/// a branch, inlined into the entry paths; waiting is out of line.
#[inline(always)]
pub fn lock() -> KernelLockGuard {
    if LOCKED.compare_exchange(false, true, SeqCst, SeqCst).is_err() {
        lock_contended();
    }
    KernelLockGuard(())
}

/// Wait for the kernel lock. While waiting, answer shootdowns: the holder
/// may be waiting for this CPU.
#[cold]
#[inline(never)]
fn lock_contended() {
    while LOCKED.compare_exchange_weak(false, true, SeqCst, SeqCst).is_err() {
        answer_shootdown();
        core::hint::spin_loop();
    }
}

/// [`lock`] for a kernel entry with frame `f`: while waiting, also answer
/// a park request (a kernel upgrade's holder of the lock waits for this
/// CPU to park; `crate::park::park_waiting` undoes the entry and parks).
/// Every entry from userspace takes the lock this way — system calls
/// included — or an upgrade would find a CPU that cannot park. The
/// uncontended case is the same one `lock cmpxchg` as [`lock`].
#[inline(always)]
pub fn lock_for(f: &mut TrapFrame) -> KernelLockGuard {
    if LOCKED.compare_exchange(false, true, SeqCst, SeqCst).is_err() {
        lock_contended_for(f);
    }
    KernelLockGuard(())
}

#[cold]
#[inline(never)]
fn lock_contended_for(f: &mut TrapFrame) {
    while LOCKED.compare_exchange_weak(false, true, SeqCst, SeqCst).is_err() {
        answer_shootdown();
        crate::park::park_waiting(f);
        core::hint::spin_loop();
    }
}

fn this_cpu() -> usize {
    percpu().index as usize
}

fn reload_cr3() {
    // SAFETY: reloading CR3 with its own value only drops this CPU's
    // non-global translations.
    unsafe {
        core::arch::asm!("mov {t}, cr3", "mov cr3, {t}", t = out(reg) _, options(nostack, preserves_flags));
    }
}

/// Flush this CPU's TLB if a shootdown newer than its last one is pending,
/// and acknowledge it.
fn answer_shootdown() {
    let me = this_cpu();
    let gen = SHOOT_GEN.load(SeqCst);
    if ACKED[me].load(SeqCst) < gen {
        reload_cr3();
        ACKED[me].store(gen, SeqCst);
    }
}

/// The shootdown interrupt: flush, acknowledge, end of interrupt. Runs
/// without the kernel lock (its holder is the one waiting for this).
pub fn on_shootdown_interrupt() {
    answer_shootdown();
    apic::eoi();
}

/// Make every other running CPU drop its translations of user address
/// spaces, and wait until each has: after this, no CPU can use a
/// translation from before the caller's page-table edit. The caller holds
/// the kernel lock (only page-table edits call this, through
/// `mem::KernelTlb`) and has flushed its own TLB. Which CPUs to interrupt
/// is decided without per-space state: every other CPU that has ever run
/// a space (a CPU still idle since boot holds no user translation).
pub fn shootdown() {
    let me = this_cpu();
    let targets = ONLINE_MASK.load(SeqCst) & RUNS_SPACES.load(SeqCst) & !(1 << me);
    if targets == 0 {
        return;
    }
    let t0 = tsc();
    let gen = SHOOT_GEN.fetch_add(1, SeqCst) + 1;
    ACKED[me].store(gen, SeqCst);
    for cpu in (0..MAX_CPUS).filter(|c| targets & (1 << c) != 0) {
        apic::send_fixed(APIC_IDS[cpu].load(SeqCst) as u8, SHOOTDOWN_VECTOR);
    }
    let mut acks = 0;
    for cpu in (0..MAX_CPUS).filter(|c| targets & (1 << c) != 0) {
        while ACKED[cpu].load(SeqCst) < gen {
            core::hint::spin_loop();
        }
        acks += 1;
    }
    kinfo::add(ki::W_SMP_SHOOTDOWNS, 1);
    kinfo::add(ki::W_SMP_SHOOTDOWN_ACKS, acks);
    kinfo::add(ki::W_SMP_SHOOTDOWN_TSC, tsc() - t0);
}

/// An interrupt that arrived while this CPU was idle in the kernel (an AP
/// that has not entered a space yet). The timer tries to enter init on
/// this CPU; true if handled (then `f` is what to return to).
pub fn idle_interrupt(f: &mut TrapFrame) -> bool {
    let pc = percpu();
    if pc.index == 0 || pc.current != 0 {
        return false;
    }
    match f.vector {
        v if v == TIMER_VECTOR as u64 => {
            apic::eoi();
            let init = INIT_ROOT.load(SeqCst);
            if init == 0 {
                return true;
            }
            let _g = lock_for(f);
            kinfo::add(ki::W_TICKS, 1);
            pc.init = init;
            if let Some(e) = crate::upcall::entry_point(init) {
                RUNS_SPACES.fetch_or(1 << pc.index, SeqCst);
                crate::upcall::enter_at(f, init, e, Reason::Timer, 0, 0, 0);
            }
            true
        }
        v if v == SPURIOUS_VECTOR as u64 => true,
        _ => false,
    }
}

/// Called by the boot CPU as it first enters init: from now on an idle AP
/// whose timer finds init's control page for it enters init there.
pub fn publish_init(root: u64) {
    INIT_ROOT.store(root, SeqCst);
}

/// Wait with interrupts on until one arrives, forever: an AP's life
/// before it first enters a space (its timer tick may enter init).
pub fn idle() -> ! {
    loop {
        // SAFETY: `sti; hlt` waits for the next interrupt (STI's one
        // instruction delay means none is missed in between); the handler
        // returns here or enters userspace.
        unsafe { core::arch::asm!("sti", "hlt", "cli", options(nomem, nostack)) };
    }
}

core::arch::global_asm!(
    r#"
    .section .rodata.smp_trampoline, "a"
    .global smp_trampoline_start, smp_trampoline_end
    .global smp_tr_cr3, smp_tr_stack, smp_tr_entry, smp_tr_cpu
    .code16
smp_trampoline_start:
    cli
    cld
    mov %cs, %ax
    mov %ax, %ds
    xor %ebx, %ebx
    mov %cs, %bx
    shl $4, %ebx                      /* ebx = this page's physical address */
    lea (smp_tr_gdt - smp_trampoline_start)(%ebx), %eax
    mov %eax, (smp_tr_gdt_ptr + 2 - smp_trampoline_start)
    lea (smp_tr_pm32 - smp_trampoline_start)(%ebx), %eax
    mov %eax, (smp_tr_far32 - smp_trampoline_start)
    lgdtl (smp_tr_gdt_ptr - smp_trampoline_start)
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl *(smp_tr_far32 - smp_trampoline_start)

    .code32
smp_tr_pm32:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %cr4, %eax
    or $(1 << 5), %eax                /* PAE */
    mov %eax, %cr4
    mov (smp_tr_cr3 - smp_trampoline_start)(%ebx), %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx             /* EFER: LME, NXE, SCE */
    rdmsr
    or $((1 << 8) | (1 << 11) | (1 << 0)), %eax
    wrmsr
    mov %cr0, %eax
    or $((1 << 31) | (1 << 16)), %eax /* PG, WP */
    mov %eax, %cr0
    lea (smp_tr_lm64 - smp_trampoline_start)(%ebx), %eax
    mov %eax, (smp_tr_far64 - smp_trampoline_start)(%ebx)
    ljmp *(smp_tr_far64 - smp_trampoline_start)(%ebx)

    .code64
smp_tr_lm64:
    mov %ebx, %ebx                    /* upper halves are undefined after the switch */
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov (smp_tr_stack - smp_trampoline_start)(%rbx), %rsp
    mov (smp_tr_cpu - smp_trampoline_start)(%rbx), %rdi
    mov (smp_tr_entry - smp_trampoline_start)(%rbx), %rax
    jmp *%rax

    .align 8
smp_tr_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff          /* 0x08: 32-bit code */
    .quad 0x00cf92000000ffff          /* 0x10: data */
    .quad 0x00af9a000000ffff          /* 0x18: 64-bit code */
smp_tr_gdt_ptr:
    .short 31
    .long 0
    .align 4
smp_tr_far32:
    .long 0
    .short 0x08
smp_tr_far64:
    .long 0
    .short 0x18
    .align 8
smp_tr_cr3:   .quad 0
smp_tr_stack: .quad 0
smp_tr_entry: .quad 0
smp_tr_cpu:   .quad 0
smp_trampoline_end:
    .text
"#,
    options(att_syntax)
);

extern "C" {
    static smp_trampoline_start: u8;
    static smp_trampoline_end: u8;
    static smp_tr_cr3: u8;
    static smp_tr_stack: u8;
    static smp_tr_entry: u8;
    static smp_tr_cpu: u8;
}

/// Offset of a trampoline label from its start (only addresses are taken).
fn tr_offset(label: *const u8) -> u64 {
    label as u64 - core::ptr::addr_of!(smp_trampoline_start) as u64
}

/// A 4 KiB page of RAM below 1 MiB for the trampoline (a SIPI names a page
/// below 1 MiB), followed by the upgrade's parking area
/// (`crate::park::AREA_PAGES`), outside the boot information. The kernel
/// never hands out memory below 1 MiB, so the pages are otherwise unused.
fn trampoline_page(bi: &BootInfo) -> Option<u64> {
    let len = 4096 * (1 + crate::park::AREA_PAGES);
    (0x8000u64..0x9_f000 - len).step_by(4096).find(|&p| {
        let pages = crate::phys::MemRange { start: p, end: p + len };
        bi.ram[..bi.ram_count].iter().any(|r| r.start <= p && p + len <= r.end) && !pages.overlaps(&bi.info)
    })
}

fn wait_us(tsc_per_us: u64, us: u64, until: impl Fn() -> bool) -> bool {
    let t0 = tsc();
    while tsc() - t0 < tsc_per_us.max(1) * us {
        if until() {
            return true;
        }
        core::hint::spin_loop();
    }
    until()
}

/// Start every enabled AP the MADT lists (up to the per-CPU tables'
/// size), one at a time, and record the result in the kernel info page.
pub fn start_aps(platform: Option<&Platform<'static>>, bi: &BootInfo, tsc_per_us: u64) {
    kinfo::set(ki::W_SMP_ONLINE, 1);
    kinfo::set(ki::W_SMP_ONLINE_MASK, 1);
    let Some(ids) = platform.filter(|p| p.cpus.is_ok()).map(|p| p.apic_ids) else { return };
    let bsp = apic::id();
    APIC_IDS[0].store(bsp as u64, SeqCst);
    let (list, parked) = ids.to_start(bsp, MAX_CPUS - 1);
    // `nosmp` on the command line keeps every AP parked: one CPU, as
    // before SMP.
    let nosmp = bi.cmdline[..bi.cmdline_len].split(|b| *b == b' ').any(|w| w == b"nosmp");
    if nosmp {
        let all = list.as_slice().len() + parked;
        kinfo::set(ki::W_SMP_PARKED, all as u64);
        return klog!("SMP: `nosmp`: {all} other CPU(s) stay parked");
    }
    kinfo::set(ki::W_SMP_PARKED, parked as u64);
    if parked > 0 {
        klog!("SMP: {parked} enabled CPU(s) stay parked (beyond {MAX_CPUS} CPUs, or not addressable in xAPIC mode)");
    }
    if list.as_slice().is_empty() {
        return;
    }
    let Some(page) = trampoline_page(bi) else {
        return klog!("SMP: no free RAM page below 1 MiB for the start-up trampoline: running on one CPU");
    };
    let pml4 = crate::boot::boot_pml4_phys();
    if phys_read::<u64>(pml4) & 1 == 0 || pml4 >= 1 << 32 {
        return klog!("SMP: the boot page table no longer maps the first GiB at 0: running on one CPU");
    }
    // Only the addresses of the trampoline's labels are taken.
    let (start, end, cr3, stack, entry, cpu_field) = (
        core::ptr::addr_of!(smp_trampoline_start),
        core::ptr::addr_of!(smp_trampoline_end),
        core::ptr::addr_of!(smp_tr_cr3),
        core::ptr::addr_of!(smp_tr_stack),
        core::ptr::addr_of!(smp_tr_entry),
        core::ptr::addr_of!(smp_tr_cpu),
    );
    let len = end as u64 - start as u64;
    for i in 0..len {
        // SAFETY: `start..end` is the trampoline's bytes in the kernel image.
        phys_write::<u8>(page + i, unsafe { *start.add(i as usize) });
    }
    phys_write::<u64>(page + tr_offset(cr3), pml4);
    phys_write::<u64>(page + tr_offset(entry), ap_entry as *const () as u64);
    let cmdline = &bi.cmdline[..bi.cmdline_len];
    crate::park::set_area(page + 4096, cmdline.split(|b| *b == b' ').any(|w| w == b"upsmp_noprk"));

    let t0 = tsc();
    let mut started = 0;
    for (i, &id) in list.as_slice().iter().enumerate() {
        let cpu = i as u64 + 1;
        phys_write::<u64>(page + tr_offset(stack), crate::arch::kernel_stack_top(cpu as usize));
        phys_write::<u64>(page + tr_offset(cpu_field), cpu);
        APIC_IDS[cpu as usize].store(id as u64, SeqCst);
        core::sync::atomic::fence(SeqCst);
        apic::send_init(id);
        wait_us(tsc_per_us, 10_000, || false);
        apic::send_startup(id, (page >> 12) as u8);
        let arrived = || ARRIVED.load(SeqCst) == cpu;
        if !wait_us(tsc_per_us, 200, arrived) {
            apic::send_startup(id, (page >> 12) as u8);
        }
        // Under TCG an AP's first instructions can take a while.
        if !wait_us(tsc_per_us, 1_000_000, arrived) {
            klog!("SMP: CPU with local APIC ID {id} did not start (no answer to INIT/SIPI)");
            continue;
        }
        if !wait_us(tsc_per_us, 1_000_000, || ONLINE_MASK.load(SeqCst) & (1 << cpu) != 0) {
            klog!("SMP: CPU {cpu} (local APIC ID {id}) started but did not come online");
            continue;
        }
        started += 1;
    }
    let ticks = tsc() - t0;
    let mask = ONLINE_MASK.load(SeqCst);
    kinfo::set(ki::W_SMP_ONLINE, mask.count_ones() as u64);
    kinfo::set(ki::W_SMP_ONLINE_MASK, mask);
    kinfo::set(ki::W_SMP_BOOT_TSC, ticks);
    klog!(
        "SMP: {} of {} application processor(s) online (CPU mask {mask:#x}) in {} us, trampoline at {page:#x}",
        started,
        list.as_slice().len(),
        ticks / tsc_per_us.max(1)
    );
}

/// An AP's first Rust code, on its own kernel stack, with interrupts off
/// and the boot page table loaded.
extern "C" fn ap_entry(cpu: u64) -> ! {
    ARRIVED.store(cpu, SeqCst);
    crate::arch::init_cpu(cpu as usize);
    crate::enable_cpu_protections();
    crate::vector::init_this_cpu();
    apic::init_this_cpu();
    ACKED[cpu as usize].store(SHOOT_GEN.load(SeqCst), SeqCst);
    ONLINE_MASK.fetch_or(1 << cpu, SeqCst);
    idle()
}

fn tsc() -> u64 {
    // SAFETY: RDTSC only reads the time-stamp counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Bit `i`: CPU `i` is online.
pub fn online_mask() -> u64 {
    ONLINE_MASK.load(SeqCst)
}

/// CPU `cpu`'s local APIC id.
pub fn apic_id_of(cpu: usize) -> u32 {
    APIC_IDS[cpu].load(SeqCst) as u32
}

/// A kernel upgrade's new kernel (boot CPU, before releasing the parked
/// CPUs): CPU `cpu` has local APIC id `apic_id`; init is `init`.
pub fn adopt_cpu(cpu: usize, apic_id: u32) {
    APIC_IDS[cpu].store(apic_id as u64, SeqCst);
}

/// A kernel upgrade's new kernel, on a released AP: come online (answer
/// shootdowns from now on) and enter `running` (its root table; 0: stay
/// idle), under the kernel lock so that no shootdown misses this CPU once
/// it holds translations of a space. The vector registers are left as they
/// are: they hold the interrupted context's state.
pub fn come_online_after_upgrade(running: u64) {
    let pc = percpu();
    let cpu = pc.index as usize;
    let _g = lock();
    ACKED[cpu].store(SHOOT_GEN.load(SeqCst), SeqCst);
    ONLINE_MASK.fetch_or(1 << cpu, SeqCst);
    if running != 0 {
        RUNS_SPACES.fetch_or(1 << cpu, SeqCst);
        pc.init = INIT_ROOT.load(SeqCst);
        // SAFETY: `running` is the root table this CPU ran when it parked
        // (a space the kernel built, sharing the kernel half).
        unsafe { core::arch::asm!("mov cr3, {}", in(reg) running, options(nostack, preserves_flags)) };
        pc.current = running;
        crate::arch::set_io_permission(running == pc.init);
    }
}
