//! From the loader's 32-bit entry to Rust in long mode, and the boot
//! information the loader passed.
//!
//! QEMU `-kernel` finds the Xen PVH note (type 18) and enters
//! `pvh_start32` in 32-bit protected mode, paging off, with the physical
//! address of `hvm_start_info` in `ebx`. GRUB (multiboot2) enters the same
//! code with `eax` = 0x36d76289 and `ebx` = the multiboot2 information.
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
//! scratch page table, and then checks that everything it read lies in the
//! first MiB or in memory the memory map lists (never in a hole).

use crate::mem::{phys_read, phys_write, MemRange};
use firmware::window::{Kind, Region};

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

pub const MAX_RANGES: usize = 32;
/// Memory-map entries kept (of every type; the window is planned from
/// them).
pub const MAX_MAP: usize = 64;

/// What the loader told us.
pub struct BootInfo {
    pub protocol: &'static str,
    pub ram: [MemRange; MAX_RANGES],
    pub ram_count: usize,
    /// The whole memory map (every type), for the physical window.
    pub map: [Region; MAX_MAP],
    pub map_count: usize,
    pub module: Option<MemRange>,
    pub cmdline: [u8; 1024],
    pub cmdline_len: usize,
    pub rsdp: u64,
    /// Physical range of the boot information itself (not to be reused).
    pub info: MemRange,
}

impl BootInfo {
    pub fn map(&self) -> &[Region] {
        &self.map[..self.map_count]
    }
}

const PVH_MAGIC: u32 = 0x336e_c578;
const MB2_MAGIC: u32 = 0x36d7_6289;

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

fn r32(pa: u64) -> u32 {
    let mut b = [0u8; 4];
    early_read(pa, &mut b);
    u32::from_le_bytes(b)
}
fn r64(pa: u64) -> u64 {
    let mut b = [0u8; 8];
    early_read(pa, &mut b);
    u64::from_le_bytes(b)
}

/// Parse the boot information. Errors name what was wrong; the caller
/// halts the machine with that message (there is nothing to boot without).
pub fn parse(info_pa: u64, magic: u32) -> Result<BootInfo, &'static str> {
    if info_pa == 0 || info_pa > u64::MAX - (1 << 20) {
        return Err("boot information pointer is null or at the end of the address space");
    }
    let mut bi = BootInfo {
        protocol: "",
        ram: [MemRange::EMPTY; MAX_RANGES],
        ram_count: 0,
        map: [Region::EMPTY; MAX_MAP],
        map_count: 0,
        module: None,
        cmdline: [0; 1024],
        cmdline_len: 0,
        rsdp: 0,
        info: MemRange { start: info_pa & !0xfff, end: (info_pa & !0xfff) + 0x1000 },
    };
    if r32(info_pa) == PVH_MAGIC {
        parse_pvh(info_pa, &mut bi)?;
    } else if magic == MB2_MAGIC {
        parse_mb2(info_pa, &mut bi)?;
    } else {
        return Err("neither a PVH start_info nor multiboot2 information");
    }
    // Everything the loader handed over must be memory: the first MiB
    // (where firmware and option ROMs keep such things) or memory the
    // memory map lists. Not necessarily RAM: QEMU places the PVH module
    // (initrd) below the end of low RAM minus 128 KiB, which can run into
    // the range SeaBIOS reserves at the top of RAM (seen: the module's last
    // 16 KiB with an NVMe and a virtio disk attached); the window maps the
    // module whatever range it lies in (`window.rs`).
    if !in_memory(&bi, bi.info.start, bi.info.len()) {
        return Err("boot information outside the memory map");
    }
    if let Some(m) = bi.module {
        if m.end <= m.start || !in_memory(&bi, m.start, m.len()) {
            return Err("boot image (module) empty or outside the memory map");
        }
    }
    Ok(bi)
}

/// `[pa, pa + len)` lies in the first MiB or in memory the memory map
/// lists (of any type: never a hole).
fn in_memory(bi: &BootInfo, pa: u64, len: u64) -> bool {
    pa.checked_add(len).is_some_and(|e| e <= 0x10_0000) || firmware::window::listed(bi.map(), pa, len)
}

fn add_region(bi: &mut BootInfo, start: u64, len: u64, ty: u32) {
    if len == 0 {
        return;
    }
    let kind = Kind::from_e820(ty);
    if bi.map_count < MAX_MAP {
        bi.map[bi.map_count] = Region { start, end: start.saturating_add(len), kind };
        bi.map_count += 1;
    }
    if kind == Kind::Ram {
        add_ram(bi, start, len);
    }
}

fn add_ram(bi: &mut BootInfo, start: u64, len: u64) {
    if bi.ram_count < MAX_RANGES && len > 0 {
        bi.ram[bi.ram_count] = MemRange { start, end: start.saturating_add(len) };
        bi.ram_count += 1;
    }
}

/// Copy the NUL-terminated command line at `pa` (at most 1023 bytes).
/// Called once the memory map is known: a command line outside the first
/// MiB and RAM is an error.
fn copy_cmdline(bi: &mut BootInfo, pa: u64) -> Result<(), &'static str> {
    if pa == 0 {
        return Ok(());
    }
    let mut n = 0;
    while n < bi.cmdline.len() - 1 {
        if !in_memory(bi, pa.wrapping_add(n as u64), 1) {
            return Err("command line outside the memory map");
        }
        let mut b = [0u8];
        early_read(pa + n as u64, &mut b);
        if b[0] == 0 {
            break;
        }
        bi.cmdline[n] = b[0];
        n += 1;
    }
    bi.cmdline_len = n;
    Ok(())
}

fn parse_pvh(pa: u64, bi: &mut BootInfo) -> Result<(), &'static str> {
    bi.protocol = "PVH";
    let version = r32(pa + 4);
    let nr_modules = r32(pa + 12);
    let modlist = r64(pa + 16);
    let cmdline = r64(pa + 24);
    bi.rsdp = r64(pa + 32);
    if version < 1 {
        return Err("PVH start_info version 0 has no memory map");
    }
    let memmap = r64(pa + 40);
    let entries = r32(pa + 48);
    if memmap == 0 || entries == 0 || entries > 128 || memmap > u64::MAX - 128 * 24 {
        return Err("PVH memory map missing or implausible");
    }
    for i in 0..entries as u64 {
        let e = memmap + i * 24;
        add_region(bi, r64(e), r64(e + 8), r32(e + 16));
    }
    if bi.ram_count == 0 {
        return Err("PVH memory map lists no RAM");
    }
    if !in_memory(bi, memmap, entries as u64 * 24) {
        return Err("PVH memory map outside the memory map it describes");
    }
    if nr_modules > 0 && modlist != 0 {
        if !in_memory(bi, modlist, 32) {
            return Err("PVH module list outside the memory map");
        }
        let start = r64(modlist);
        let size = r64(modlist + 8);
        bi.module = Some(MemRange { start, end: start.saturating_add(size) });
    }
    copy_cmdline(bi, cmdline)
}

fn parse_mb2(pa: u64, bi: &mut BootInfo) -> Result<(), &'static str> {
    bi.protocol = "multiboot2";
    let total = r32(pa) as u64;
    if !(16..=(1 << 20)).contains(&total) {
        return Err("multiboot2 information has an implausible size");
    }
    bi.info = MemRange { start: pa & !0xfff, end: (pa + total + 0xfff) & !0xfff };
    let mut off = 8u64;
    let mut cmdline = 0;
    while off + 8 <= total {
        let tag = pa + off;
        let ty = r32(tag);
        let size = r32(tag + 4) as u64;
        if size < 8 || off + size > total {
            return Err("multiboot2 tag overruns the information block");
        }
        match ty {
            0 => break,
            1 => cmdline = tag + 8,
            3 if bi.module.is_none() => {
                let start = r32(tag + 8) as u64;
                let end = r32(tag + 12) as u64;
                bi.module = Some(MemRange { start, end });
            }
            6 => {
                let esize = r32(tag + 8) as u64;
                if esize < 24 {
                    return Err("multiboot2 memory map entry size below 24");
                }
                let mut e = tag + 16;
                while e + esize <= tag + size {
                    add_region(bi, r64(e), r64(e + 8), r32(e + 16));
                    e += esize;
                }
            }
            14 | 15 if bi.rsdp == 0 => bi.rsdp = tag + 8,
            _ => {}
        }
        off = (off + size + 7) & !7;
    }
    if bi.ram_count == 0 {
        return Err("multiboot2 information has no memory map");
    }
    copy_cmdline(bi, cmdline)
}
