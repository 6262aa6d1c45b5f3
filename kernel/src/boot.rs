//! From the loader's 32-bit entry to Rust in long mode, and the boot
//! information the loader passed.
//!
//! QEMU `-kernel` finds the Xen PVH note (type 18) and enters
//! `pvh_start32` in 32-bit protected mode, paging off, with the physical
//! address of `hvm_start_info` in `ebx`. GRUB (multiboot2) enters the same
//! code with `eax` = 0x36d76289 and `ebx` = the multiboot2 information,
//! on BIOS and on UEFI alike: the header asks for no EFI entry point, so
//! GRUB on x86_64-efi exits boot services and drops to the same 32-bit
//! protected-mode, paging-off state before jumping to the ELF entry. The
//! entry assumes nothing else of the firmware (no VGA text buffer, no
//! legacy BIOS data; a stale EFER.LME or CR4.PAE from UEFI's long mode is
//! harmless, both are set anyway). The kernel never uses a display (on
//! UEFI there is only a framebuffer): it logs to COM1 whatever the
//! console.
//! The entry builds a minimal set of 2 MiB page tables (identity for the
//! first GiB, the same GiB as the *bootstrap* physical-memory window, and
//! the kernel image at -2 GiB), enables long mode and jumps to
//! [`crate::kmain`]. `kmain` replaces the bootstrap window with one built
//! from the memory map (`window.rs`) before it allocates anything above
//! the first GiB.
//!
//! The boot information is read before that window exists, and a loader
//! may put it anywhere (PVH's memory map, module list and command line are
//! 64-bit addresses): [`parse`] reads through [`early_read`], which reaches
//! memory outside the bootstrap window one 4 KiB page at a time through a
//! scratch page table; `firmware::bootinfo` (host-tested) then checks that
//! everything it read lies in the first MiB or in memory the memory map
//! lists (never in a hole).

use crate::phys::{phys_read, phys_write, MemRange};
use firmware::bootinfo;
use firmware::window::Region;

core::arch::global_asm!(
    r#"
    .section .boot.header, "a"
    .align 8
mb2_header_start:
    .long 0xe85250d6                /* multiboot2 magic */
    .long 0                         /* i386 */
    .long mb2_header_end - mb2_header_start
    .long -(0xe85250d6 + 0 + (mb2_header_end - mb2_header_start))
    .align 8
    .short 0, 0                     /* end tag */
    .long 8
mb2_header_end:

    .section .note.Xen, "a", @note
    .align 4
    .long 4                         /* namesz */
    .long 4                         /* descsz */
    .long 18                        /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .long pvh_start32

    .section .boot.bss, "aw", @nobits
    .align 4096
    .global boot_pml4
boot_pml4:   .skip 4096
boot_pdpt:   .skip 4096
boot_pdpt_hi: .skip 4096
boot_pd:     .skip 4096
    .global boot_scratch_pd, boot_scratch_pt
boot_scratch_pd: .skip 4096
boot_scratch_pt: .skip 4096
boot_stack:  .skip 4096
boot_stack_top:

    .section .bss.kernel_stack, "aw", @nobits
    .align 4096
    .global kernel_stack_top
kernel_stack:
    .skip 65536
kernel_stack_top:

    .section .boot.data, "aw"
    .align 16
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff        /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff        /* 0x10: data */
boot_gdt_end:
boot_gdt_ptr:
    .short boot_gdt_end - boot_gdt - 1
    .long boot_gdt

    .section .boot.text, "ax"
    .code32
    .global pvh_start32
pvh_start32:
    cli
    cld
    mov $boot_stack_top, %esp
    mov %ebx, %edi                  /* boot information (physical) */
    mov %eax, %esi                  /* multiboot2 magic, if any */

    /* boot_pd: 512 x 2 MiB, present|write|huge, covering the first GiB */
    mov $boot_pd, %ebx
    xor %ecx, %ecx
1:  mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax
    mov %eax, (%ebx,%ecx,8)
    movl $0, 4(%ebx,%ecx,8)
    inc %ecx
    cmp $512, %ecx
    jne 1b

    mov $boot_pd, %eax
    or $0x3, %eax
    mov %eax, boot_pdpt             /* pdpt[0] -> pd (identity, window) */
    mov %eax, boot_pdpt_hi + 510*8  /* pdpt_hi[510] -> pd (-2 GiB) */
    mov $boot_pdpt, %eax
    or $0x3, %eax
    mov %eax, boot_pml4             /* pml4[0]: identity, dropped later */
    mov %eax, boot_pml4 + 256*8     /* pml4[256]: physical-memory window */
    mov $boot_pdpt_hi, %eax
    or $0x3, %eax
    mov %eax, boot_pml4 + 511*8     /* pml4[511]: kernel image */

    mov %cr4, %eax
    or $(1 << 5), %eax              /* PAE */
    mov %eax, %cr4
    mov $boot_pml4, %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx           /* EFER */
    rdmsr
    or $((1 << 8) | (1 << 11) | (1 << 0)), %eax /* LME, NXE, SCE */
    wrmsr
    mov %cr0, %eax
    or $((1 << 31) | (1 << 16)), %eax /* PG, WP */
    mov %eax, %cr0
    lgdt boot_gdt_ptr
    ljmp $0x08, $long_entry

    .code64
long_entry:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %ax, %ax
    mov %ax, %fs
    mov %ax, %gs
    movabs $kernel_stack_top, %rsp
    movabs $kmain, %rax
    call *%rax
2:  hlt
    jmp 2b
"#,
    options(att_syntax)
);

/// Physical address of the boot PML4 (in `.boot.bss`).
pub fn boot_pml4_phys() -> u64 {
    extern "C" {
        static boot_pml4: u8;
    }
    // Only the symbol's address is taken (no unsafe needed); `.boot` is
    // linked at its physical address, so the address is the physical one.
    core::ptr::addr_of!(boot_pml4) as u64
}

/// Kernel image bounds (physical).
pub fn kernel_image_phys() -> (u64, u64) {
    extern "C" {
        static __kernel_phys_start: u8;
        static __kernel_phys_end: u8;
    }
    // Linker-defined symbols; only their addresses are used.
    (core::ptr::addr_of!(__kernel_phys_start) as u64, core::ptr::addr_of!(__kernel_phys_end) as u64)
}

pub const MAX_RANGES: usize = bootinfo::MAX_RAM;

/// What the loader told us (parsed by `firmware::bootinfo`, host-tested).
pub struct BootInfo {
    pub protocol: &'static str,
    pub ram: [MemRange; MAX_RANGES],
    pub ram_count: usize,
    /// The whole memory map (every type), for the physical window.
    pub map: [Region; bootinfo::MAX_MAP],
    pub map_count: usize,
    pub module: Option<MemRange>,
    pub cmdline: [u8; bootinfo::CMDLINE_MAX],
    pub cmdline_len: usize,
    pub rsdp: u64,
    pub rsdp_source: bootinfo::RsdpSource,
    pub firmware: bootinfo::Firmware,
    /// Physical range of the boot information itself (not to be reused).
    pub info: MemRange,
}

impl BootInfo {
    pub fn map(&self) -> &[Region] {
        &self.map[..self.map_count]
    }
}

/// The bootstrap window built by the entry code: the first GiB.
const BOOTSTRAP_WINDOW: u64 = 1 << 30;
/// Where the scratch page table shows one page (PML4 slot 511, PDPT slot
/// 509: 3 GiB below the top, 1 GiB below the kernel image).
const SCRATCH_VA: u64 = 0xffff_ffff_4000_0000;

/// Read `out.len()` bytes at physical `pa` before the physical window is
/// built: through the bootstrap window inside the first GiB, otherwise one
/// page at a time through the scratch page table. Boot only (single CPU).
pub fn early_read(pa: u64, out: &mut [u8]) {
    let mut done = 0;
    while done < out.len() {
        let at = pa.wrapping_add(done as u64);
        let in_page = (0x1000 - (at & 0xfff)) as usize;
        let n = in_page.min(out.len() - done);
        if at.checked_add(n as u64).is_some_and(|e| e <= BOOTSTRAP_WINDOW) {
            for (i, b) in out[done..done + n].iter_mut().enumerate() {
                *b = phys_read::<u8>(at + i as u64);
            }
        } else {
            scratch_map(at & !0xfff);
            for (i, b) in out[done..done + n].iter_mut().enumerate() {
                let va = SCRATCH_VA + (at & 0xfff) + i as u64;
                // SAFETY: `scratch_map` just mapped the page holding `at`
                // at SCRATCH_VA (read-only use, supervisor, NX); `va` lies
                // inside that page.
                *b = unsafe { core::ptr::read_volatile(va as *const u8) };
            }
        }
        done += n;
    }
}

/// Point the scratch page table's only entry at the 4 KiB frame `pa`.
fn scratch_map(pa: u64) {
    extern "C" {
        static boot_scratch_pd: u8;
        static boot_scratch_pt: u8;
    }
    // `.boot.bss` is linked at its physical address, inside the bootstrap
    // window.
    let pd = core::ptr::addr_of!(boot_scratch_pd) as u64;
    let pt = core::ptr::addr_of!(boot_scratch_pt) as u64;
    let pdpt_hi = phys_read::<u64>(boot_pml4_phys() + 511 * 8) & exo_mm::ADDR_MASK;
    phys_write::<u64>(pdpt_hi + 509 * 8, pd | 0x3);
    phys_write::<u64>(pd, pt | 0x3);
    // Present, writable (the mapping is only read), no execute; the
    // physical address masked to 52 bits.
    phys_write::<u64>(pt, (pa & exo_mm::ADDR_MASK) | 0x3 | 1 << 63);
    x86_64::instructions::tlb::flush(x86_64::VirtAddr::new(SCRATCH_VA));
}

/// Remove the scratch mapping (the kernel half, slot 511 included, is
/// copied into every address space: nothing the parser looked at stays
/// mapped there).
pub fn drop_scratch() {
    let pdpt_hi = phys_read::<u64>(boot_pml4_phys() + 511 * 8) & exo_mm::ADDR_MASK;
    if phys_read::<u64>(pdpt_hi + 509 * 8) != 0 {
        phys_write::<u64>(pdpt_hi + 509 * 8, 0);
        x86_64::instructions::tlb::flush(x86_64::VirtAddr::new(SCRATCH_VA));
    }
}

/// The parser's view of physical memory: [`early_read`].
struct Early;

impl bootinfo::PhysRead for Early {
    fn read(&self, pa: u64, out: &mut [u8]) {
        early_read(pa, out)
    }
}

/// Parse the boot information (`firmware::bootinfo`: PVH or multiboot2,
/// every structure checked against the first MiB and the memory map).
/// Errors name what was wrong; the caller halts the machine with that
/// message (there is nothing to boot without).
pub fn parse(info_pa: u64, magic: u32) -> Result<BootInfo, bootinfo::BootError> {
    let f = bootinfo::parse(&Early, info_pa, magic)?;
    let range = |r: bootinfo::Range| MemRange { start: r.start, end: r.end };
    let mut ram = [MemRange::EMPTY; MAX_RANGES];
    for (d, s) in ram.iter_mut().zip(f.ram()) {
        *d = range(*s);
    }
    Ok(BootInfo {
        protocol: f.protocol,
        ram,
        ram_count: f.ram_count,
        map: f.map,
        map_count: f.map_count,
        module: f.module.map(range),
        cmdline: f.cmdline,
        cmdline_len: f.cmdline_len,
        rsdp: f.rsdp,
        rsdp_source: f.rsdp_source,
        firmware: f.firmware,
        info: range(f.info),
    })
}
