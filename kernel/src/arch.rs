//! Descriptor tables and the entry/exit paths: GDT with a TSS (whose I/O
//! bitmap is the only port-I/O permission in the system), the IDT with one
//! assembly stub per vector, the SYSCALL entry, and the two exit paths:
//! `trap_return`, through which every return to userspace goes, and
//! `upcall_return`, the SYSCALL path's exit into a fresh upcall entry
//! (a `yield`'s target).
//!
//! Every entry from ring 3 builds the same [`TrapFrame`] at the top of the
//! one kernel stack; the Rust handler rewrites it (a syscall result, or a
//! whole new context when switching address spaces) and `trap_return`
//! restores it with `iretq`. `upcall_return` reads only the return frame
//! and the upcall's five argument registers from it and zeroes every
//! other register. The kernel never blocks and never nests, so nothing
//! survives on the kernel stack between entries.

use core::mem::size_of;
use x86_64::registers::model_specific::Msr;

/// The register state pushed by every entry stub (lowest address first).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

impl TrapFrame {
    /// Zero every general register but the upcall's five arguments (rdi,
    /// rsi, rdx, rcx, r8): what `upcall_return` does in registers, for a
    /// fresh entry that leaves through `trap_return` instead.
    pub fn clear_other_registers(&mut self) {
        (self.rax, self.rbx, self.rbp, self.r9, self.r10, self.r11) = (0, 0, 0, 0, 0, 0);
        (self.r12, self.r13, self.r14, self.r15) = (0, 0, 0, 0);
    }
}

pub const KERNEL_CS: u16 = 0x08;
pub const KERNEL_DS: u16 = 0x10;
pub const USER_DS: u64 = 0x18 | 3;
pub const USER_CS: u64 = 0x20 | 3;
const TSS_SEL: u16 = 0x28;
/// The pseudo-vector the SYSCALL entry stores in the frame.
pub const SYSCALL_VECTOR: u64 = 0x100;
pub const TIMER_VECTOR: u8 = 32;
pub const SPURIOUS_VECTOR: u8 = 0xff;

/// The most CPUs the kernel runs (per-CPU tables are statics; more
/// enabled CPUs stay parked and are counted in the log).
pub const MAX_CPUS: usize = 8;

/// Per-CPU data reached through GS while in the kernel. Offsets are used by
/// the SYSCALL entry stub and [`percpu`].
#[repr(C)]
pub struct PerCpu {
    /// 0: top of this CPU's kernel stack.
    pub kstack_top: u64,
    /// 8: scratch for the user stack pointer during SYSCALL entry.
    pub user_rsp: u64,
    /// The address space running on this CPU (its root table's address;
    /// 0 on an application processor that has not run one yet).
    pub current: u64,
    /// Init's address space (the root scheduler), fixed at boot.
    pub init: u64,
    /// 32: this structure's own address ([`percpu`] reads it through GS).
    pub this: u64,
    /// This CPU's index: 0 for the boot CPU, then in start order.
    pub index: u64,
    /// This CPU's TSS (its I/O bitmap base changes on every switch of
    /// address space).
    tss: u64,
    /// `exo_abi::smp_control_va(index)`: where every space's control page
    /// for this CPU is (looked up on every yield).
    pub control_va: u64,
}

/// Offset of [`PerCpu::this`].
const PERCPU_THIS: u64 = 32;

#[repr(C, packed)]
struct Tss {
    reserved0: u32,
    rsp: [u64; 3],
    reserved1: u64,
    ist: [u64; 7],
    reserved2: u64,
    reserved3: u16,
    iomap_base: u16,
    /// One bit per port, 0 = allowed; plus the mandatory all-ones byte.
    iomap: [u8; 8193],
}

const TSS_IOMAP_OFFSET: u16 = 104;
const IOMAP_DISABLED: u16 = 0xffff;

#[repr(C, align(16))]
struct Gdt([u64; 7]);

#[repr(C, packed)]
struct DescriptorPtr {
    limit: u16,
    base: u64,
}

#[derive(Clone, Copy)]
#[repr(C)]
struct IdtEntry {
    off_lo: u16,
    sel: u16,
    ist: u8,
    attr: u8,
    off_mid: u16,
    off_hi: u32,
    zero: u32,
}

#[repr(C, align(16))]
struct Idt([IdtEntry; 256]);

// Entry `i` of each per-CPU table is written only by CPU `i` (its own
// `init_cpu`, and the TSS I/O map base on each address-space switch, with
// interrupts off) — or by the boot CPU before CPU `i` starts.
const PERCPU_INIT: PerCpu =
    PerCpu { kstack_top: 0, user_rsp: 0, current: 0, init: 0, this: 0, index: 0, tss: 0, control_va: 0 };
static mut PERCPU: [PerCpu; MAX_CPUS] = [PERCPU_INIT; MAX_CPUS];
const TSS_INIT: Tss = Tss {
    reserved0: 0,
    rsp: [0; 3],
    reserved1: 0,
    ist: [0; 7],
    reserved2: 0,
    reserved3: 0,
    iomap_base: IOMAP_DISABLED,
    iomap: [0xff; 8193],
};
static mut TSS: [Tss; MAX_CPUS] = [TSS_INIT; MAX_CPUS];
static mut GDT: [Gdt; MAX_CPUS] = [const { Gdt([0; 7]) }; MAX_CPUS];
static mut IDT: Idt = Idt([IdtEntry { off_lo: 0, sel: 0, ist: 0, attr: 0, off_mid: 0, off_hi: 0, zero: 0 }; 256]);
/// One CPU's stacks: the kernel stack, then the interrupt-stack-table
/// stacks — the CPU switches to them on these vectors whatever the current
/// privilege level and stack, so a double fault, an NMI or a machine
/// check — even one raised in the instructions of the SYSCALL path that
/// still run on the user's stack — gets a good one. Each vector has its
/// own: an NMI during a double fault (or a machine check during an NMI)
/// does not overwrite the frame the other is using.
///
/// The block is 64 KiB-aligned, so every CPU's kernel stack top has the
/// same low 16 bits (0), and so has its double-fault stack top: the entry
/// stubs tell a frame without an error code by comparing only `sp` (they
/// cannot reach per-CPU data before `swapgs`).
#[repr(C, align(65536))]
struct CpuStacks {
    kernel: [u8; KSTACK_SIZE],
    double_fault: [u8; IST_SIZE],
    nmi: [u8; IST_SIZE],
    machine_check: [u8; IST_SIZE],
}
const KSTACK_SIZE: usize = 65536;
const IST_SIZE: usize = 16384;
/// Low 16 bits of `rsp` after the CPU pushed a frame without error code
/// from ring 3 onto the kernel stack (its top is 64 KiB-aligned) ...
const KSTACK_NO_ERROR_SP: u64 = (0x1_0000 - 40) & 0xffff;
/// ... and onto the double-fault stack (its top is 80 KiB into the block).
const DF_NO_ERROR_SP: u64 = (KSTACK_SIZE as u64 + IST_SIZE as u64 - 40) & 0xffff;
static mut STACKS: [CpuStacks; MAX_CPUS] = [const {
    CpuStacks {
        kernel: [0; KSTACK_SIZE],
        double_fault: [0; IST_SIZE],
        nmi: [0; IST_SIZE],
        machine_check: [0; IST_SIZE],
    }
}; MAX_CPUS];

/// Top of CPU `cpu`'s kernel stack (where an application processor's
/// trampoline points its stack).
pub fn kernel_stack_top(cpu: usize) -> u64 {
    assert!(cpu < MAX_CPUS);
    // Only the address is taken; `kernel` is the block's first field.
    core::ptr::addr_of!(STACKS) as u64 + (cpu * size_of::<CpuStacks>() + KSTACK_SIZE) as u64
}

/// IST slots (1-based, as the IDT entry names them).
pub const IST_DOUBLE_FAULT: u8 = 1;
pub const IST_NMI: u8 = 2;
pub const IST_MACHINE_CHECK: u8 = 3;
pub const NMI_VECTOR: u64 = 2;
pub const MACHINE_CHECK_VECTOR: u64 = 18;

/// The IST slot vector `v` runs on (0: the current or ring-0 stack).
const fn ist_of(v: usize) -> u8 {
    match v {
        8 => IST_DOUBLE_FAULT,
        2 => IST_NMI,
        18 => IST_MACHINE_CHECK,
        _ => 0,
    }
}

/// This CPU's per-CPU data. Only for code running with the kernel's GS
/// (every trap handler; not the NMI path, which may interrupt SYSCALL
/// before its `swapgs`).
pub fn percpu() -> &'static mut PerCpu {
    let p: u64;
    // SAFETY: GS base is this CPU's `PERCPU` entry from `init_cpu` on
    // (nothing calls this earlier), and its `this` field holds its address.
    unsafe {
        core::arch::asm!("mov {}, gs:[{off}]", out(reg) p, off = const PERCPU_THIS, options(nostack, readonly, preserves_flags))
    };
    // SAFETY: only this CPU uses its entry, and the kernel never nests on
    // a CPU, so no two references to it are live at once (each entry
    // takes it afresh).
    unsafe { &mut *(p as *mut PerCpu) }
}

/// Ports init may use: COM1 and the isa-debug-exit device.
const INIT_PORTS: [core::ops::RangeInclusive<u16>; 2] = [0x3f8..=0x3ff, 0xf4..=0xf7];

/// Give the I/O bitmap to the space about to run: init gets its ports,
/// everyone else none (the bitmap base points past the TSS limit).
pub fn set_io_permission(init_running: bool) {
    // SAFETY: a 16-bit store into this CPU's TSS (its address, set by
    // `init_cpu` before GS made `percpu` usable) with interrupts disabled;
    // the CPU reads the field only on I/O instructions in ring 3.
    unsafe {
        let tss = &mut *(percpu().tss as *mut Tss);
        tss.iomap_base = if init_running { TSS_IOMAP_OFFSET } else { IOMAP_DISABLED };
    }
}

extern "C" {
    fn syscall_entry();
    static trap_stubs: [u64; 256];
    pub fn trap_return(frame: *const TrapFrame) -> !;
}

/// On the boot CPU: build the IDT (shared by every CPU), then load this
/// CPU's descriptor tables ([`init_cpu`] for CPU 0).
pub fn init() {
    // SAFETY: single-threaded boot, before any other CPU runs; the IDT is
    // a static that lives forever, in the SDM's format (vol. 3, ch. 6).
    unsafe {
        let idt = &mut *core::ptr::addr_of_mut!(IDT);
        let stubs = &*core::ptr::addr_of!(trap_stubs);
        for (v, (&h, entry)) in stubs.iter().zip(idt.0.iter_mut()).enumerate() {
            *entry = IdtEntry {
                off_lo: h as u16,
                sel: KERNEL_CS,
                ist: ist_of(v),
                attr: 0x8e, // present, DPL 0, interrupt gate (IF cleared)
                off_mid: (h >> 16) as u16,
                off_hi: (h >> 32) as u32,
                zero: 0,
            };
        }
    }
    init_cpu(0);
}

/// Load CPU `cpu`'s GDT, TSS, the shared IDT, its per-CPU GS base and the
/// SYSCALL MSRs. Runs on that CPU, once, with interrupts off.
pub fn init_cpu(cpu: usize) {
    assert!(cpu < MAX_CPUS);
    // SAFETY: entry `cpu` of the per-CPU tables is touched only by this
    // CPU from here on (the boot CPU finished with it before starting this
    // one); the tables are statics that live forever; the values follow
    // the SDM's formats (vol. 3, ch. 3, 6, 7, and 5.8.8 for SYSCALL).
    unsafe {
        let stack_top = kernel_stack_top(cpu);
        let stacks = core::ptr::addr_of!(STACKS[cpu]);
        let pc = &mut *core::ptr::addr_of_mut!(PERCPU[cpu]);
        pc.kstack_top = stack_top;
        pc.this = pc as *mut PerCpu as u64;
        pc.index = cpu as u64;
        pc.tss = core::ptr::addr_of_mut!(TSS[cpu]) as u64;
        pc.control_va = exo_abi::smp_control_va(cpu as u64);

        let tss = &mut *core::ptr::addr_of_mut!(TSS[cpu]);
        tss.rsp[0] = stack_top;
        tss.ist[IST_DOUBLE_FAULT as usize - 1] = core::ptr::addr_of!((*stacks).double_fault) as u64 + IST_SIZE as u64;
        tss.ist[IST_NMI as usize - 1] = core::ptr::addr_of!((*stacks).nmi) as u64 + IST_SIZE as u64;
        tss.ist[IST_MACHINE_CHECK as usize - 1] = core::ptr::addr_of!((*stacks).machine_check) as u64 + IST_SIZE as u64;
        debug_assert_eq!(stack_top.wrapping_sub(40) & 0xffff, KSTACK_NO_ERROR_SP);
        debug_assert_eq!(tss.ist[IST_DOUBLE_FAULT as usize - 1].wrapping_sub(40) & 0xffff, DF_NO_ERROR_SP);
        for r in INIT_PORTS {
            for p in r {
                tss.iomap[p as usize / 8] &= !(1 << (p % 8));
            }
        }
        tss.iomap[8192] = 0xff;

        let tss_base = tss as *const Tss as u64;
        let tss_limit = (size_of::<Tss>() - 1) as u64;
        let gdt = &mut *core::ptr::addr_of_mut!(GDT[cpu]);
        gdt.0[1] = 0x00af_9a00_0000_ffff; // kernel code
        gdt.0[2] = 0x00cf_9200_0000_ffff; // kernel data
        gdt.0[3] = 0x00cf_f200_0000_ffff; // user data
        gdt.0[4] = 0x00af_fa00_0000_ffff; // user code
        gdt.0[5] = (tss_limit & 0xffff)
            | ((tss_base & 0xff_ffff) << 16)
            | (0x89 << 40)
            | (((tss_limit >> 16) & 0xf) << 48)
            | (((tss_base >> 24) & 0xff) << 56);
        gdt.0[6] = tss_base >> 32;
        let ptr = DescriptorPtr { limit: (size_of::<Gdt>() - 1) as u16, base: gdt as *const _ as u64 };
        core::arch::asm!(
            "lgdt [{p}]",
            "push {cs}",
            "lea {t}, [rip + 2f]",
            "push {t}",
            "retfq",
            "2:",
            "mov ds, {ds:x}",
            "mov es, {ds:x}",
            "mov ss, {ds:x}",
            "ltr {tss:x}",
            p = in(reg) &ptr,
            cs = in(reg) KERNEL_CS as u64,
            t = out(reg) _,
            ds = in(reg) KERNEL_DS as u64,
            tss = in(reg) TSS_SEL as u64,
        );

        let idt = core::ptr::addr_of!(IDT);
        let iptr = DescriptorPtr { limit: (size_of::<Idt>() - 1) as u16, base: idt as u64 };
        core::arch::asm!("lidt [{}]", in(reg) &iptr);

        // GS base = per-CPU data while in the kernel; user GS (0) is parked
        // in KERNEL_GS_BASE and swapped on every ring crossing.
        Msr::new(0xc000_0101).write(pc as *const PerCpu as u64);
        Msr::new(0xc000_0102).write(0);
        // STAR: kernel CS/SS from 0x08; SYSRET base 0x10 (user SS 0x18, CS 0x20).
        Msr::new(0xc000_0081).write((0x10u64 << 48) | ((KERNEL_CS as u64) << 32));
        Msr::new(0xc000_0082).write(syscall_entry as *const () as u64);
        // SFMASK: clear IF, TF, DF, AC and IOPL/NT on entry.
        Msr::new(0xc000_0084).write(0x4_7700);
    }
}

core::arch::global_asm!(
    r#"
    .section .text.entry, "ax"
    .global syscall_entry
syscall_entry:
    swapgs
    mov gs:[8], rsp
    mov rsp, gs:[0]
    push {user_ds}
    push qword ptr gs:[8]
    push r11
    push {user_cs}
    push rcx
    push 0
    push {sysvec}
    /* Its own copy of trap_push: a system call goes straight to
       `syscall_handler`, past the checks only interrupts and exceptions
       need (NMI, shootdown, ring 0, forged vectors). */
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    /* No `cld`: SFMASK clears DF on SYSCALL (`init_cpu`). */
    mov rdi, rsp
    call syscall_handler
    test al, al
    jnz upcall_return
    mov rdi, rsp
    jmp trap_return

    /* A fresh upcall entry (`upcall::enter_at_fresh`): the frame holds the
       return frame and the five argument registers; every other register
       is zeroed here, so the space entered sees nothing of the last one's
       (cheaper than storing zeros in the frame and popping them). */
upcall_return:
    mov r8, [rsp + 7*8]
    mov rdi, [rsp + 9*8]
    mov rsi, [rsp + 10*8]
    mov rdx, [rsp + 11*8]
    mov rcx, [rsp + 12*8]
    xor eax, eax
    xor ebx, ebx
    xor ebp, ebp
    xor r9d, r9d
    xor r10d, r10d
    xor r11d, r11d
    xor r12d, r12d
    xor r13d, r13d
    xor r14d, r14d
    xor r15d, r15d
    add rsp, 17*8
    swapgs
    iretq

trap_common:
    test qword ptr [rsp + 24], 3
    jz trap_push
    swapgs
trap_push:
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    cld
    mov rdi, rsp
    call trap_handler
    mov rdi, rsp
    .global trap_return
trap_return:
    mov rsp, rdi
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    pop rax
    test qword ptr [rsp + 24], 3
    jz 2f
    swapgs
2:
    add rsp, 16
    iretq

    .altmacro
    .macro stub n
    .align 16
trap_stub_\n:
    .if \n == 8 || \n == 10 || \n == 11 || \n == 12 || \n == 13 || \n == 14 || \n == 17 || \n == 21 || \n == 29 || \n == 30
    /* From ring 3 the CPU starts the frame at the top of the (IST or
       kernel) stack: 40 bytes below it without an error code, 48 with.
       A device can raise this vector as an interrupt (no error code):
       then push a 0 and mark the vector as forged. */
    .if \n == 8
    cmp sp, {df_no_error}
    .else
    cmp sp, {kstack_no_error}
    .endif
    jne 3f
    push 0
    push \n | {forged}
    jmp trap_common
3:
    .else
    push 0
    .endif
    push \n
    jmp trap_common
    .endm
    .set i, 0
    .rept 256
    stub %i
    .set i, i + 1
    .endr

    .macro stubaddr n
    .quad trap_stub_\n
    .endm
    .section .rodata.trap_stubs, "a"
    .align 8
    .global trap_stubs
trap_stubs:
    .set i, 0
    .rept 256
    stubaddr %i
    .set i, i + 1
    .endr
"#,
    forged = const 0x1000,
    df_no_error = const DF_NO_ERROR_SP,
    kstack_no_error = const KSTACK_NO_ERROR_SP,
    user_ds = const USER_DS,
    user_cs = const USER_CS,
    sysvec = const SYSCALL_VECTOR,
);
