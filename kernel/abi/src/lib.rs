//! The exokernel's system-call ABI, shared by the kernel and userspace.
//!
//! This crate is the single definition of the kernel interface; the prose
//! that goes with it is `docs/syscalls.md`. Everything here is plain data
//! with explicit, checked conversions (`TryFrom`), so that the kernel never
//! trusts a number that came from a register.
//!
//! The kernel has five calls: [`Syscall::Create`], [`Syscall::Map`],
//! [`Syscall::Unmap`], [`Syscall::CreateAs`] and [`Syscall::Yield`].
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

/// Size of a page (and of a page-table page).
pub const PAGE_SIZE: u64 = 4096;

/// Highest user virtual address + 1 (the lower canonical half).
pub const USER_END: u64 = 0x0000_8000_0000_0000;

/// Virtual address of every address space's control page: the page through
/// which the kernel delivers upcalls (entry point, upcall stack, the saved
/// interrupted context). See [`ControlPage`].
pub const CONTROL_VA: u64 = 0x1000;

/// SMP: an address space is entered on CPU `n` > 0 through its control
/// page for that CPU, at [`smp_control_va`]`(n)` (same layout as the one
/// at [`CONTROL_VA`], which is CPU 0's): each CPU has its own entry point,
/// upcall stack, mask and saved context, so a space can run on several
/// CPUs at once. A space with no control page for a CPU is never entered
/// there. The upcall's `r8` carries the CPU index.
pub const SMP_CONTROL_VA: u64 = 0x2_0000;

/// The control page through which a space is entered on CPU `cpu`.
pub const fn smp_control_va(cpu: u64) -> u64 {
    if cpu == 0 {
        CONTROL_VA
    } else {
        SMP_CONTROL_VA + cpu * PAGE_SIZE
    }
}

/// Where the boot kernel maps the kernel info page ([`KernelInfo`]) into
/// init, read-only and not owned.
pub const KINFO_VA: u64 = 0x2000;

/// Where the boot kernel maps all free RAM into init: frame at physical
/// address `p` appears at `RAM_WINDOW_VA + p`, owned and writable.
pub const RAM_WINDOW_VA: u64 = 0x0000_1000_0000_0000;

/// Where the boot kernel maps the boot image (the PVH module) into init,
/// owned and writable.
pub const BOOT_IMAGE_VA: u64 = 0x0000_0800_0000_0000;

/// Where the boot kernel places init's handle to its own address space.
pub const INIT_SELF_HANDLE_VA: u64 = 0x3000;

/// `yield(IDLE_HALT_HANDLE_VA, 0)` by the root scheduler (init): "nothing
/// to run on this CPU: halt it until its next interrupt" (docs/syscalls.md,
/// "Idle: a yield to no space"). From any other space it is the plain
/// `BadAddress` it always was.
pub const IDLE_HALT_HANDLE_VA: u64 = 0;

/// What an idle halt returns in `rdx` when it did not halt because an
/// interrupt is latched in the caller's `pending` words on this CPU (the
/// caller must take them first); 0 when it halted and an interrupt the
/// kernel handles itself (a TLB shootdown, a spurious one) woke it.
pub const IDLE_NOT_HALTED_PENDING: u64 = 1;

/// Where the boot kernel maps the device info page ([`devinfo`]) into init,
/// read-only and not owned.
pub const DEVINFO_VA: u64 = 0x8000;

/// Device `k`'s handle in init (see [`devinfo`]).
pub const DEVICE_HANDLES_VA: u64 = 0x18_0000;

/// Device `k`'s registers in init: its configuration page at
/// `DEVICES_VA + k * devinfo::DEVICE_STRIDE`, memory BAR `i` at
/// `+ (i + 1) * devinfo::BAR_STRIDE`; owned, uncached, never retypable.
pub const DEVICES_VA: u64 = 0x0000_1800_0000_0000;

/// Where the boot kernel maps persistent memory into init: the NFIT's
/// persistent-memory ranges the kernel accepted, back to back (range `i`
/// at the init address the kernel info page gives, `kinfo::pmem_word`),
/// as owned, writable, write-back cacheable pages marked LENT (never
/// retypable into page tables; movable to another process with `map`,
/// keeping their cache attributes). PML4 slot 56; nothing else of init's
/// lives there.
pub const PMEM_VA: u64 = 0x0000_1c00_0000_0000;

/// Where a parent places persistent memory it moves into a child (init's
/// `pmem::grant` convention, not kernel ABI): the child's pmem starts here,
/// up to 64 GiB (the next slot is unused; `SHARED_VA` and the drivers' BAR
/// window lie below).
pub const CHILD_PMEM_VA: u64 = 0x50_0000_0000;

/// Kernel upgrade (`docs/syscalls.md`, "Rebootless kernel upgrade"): init
/// holds, from boot, a handle to the *upgrade space* here (OWN and SWITCH,
/// never GRANT: it cannot be passed on). Init links the new kernel's
/// upgrade image into that space at [`UPGRADE_IMAGE_VA`] and `yield`s to
/// the handle with `arg = (image length << 12) | offset of the image in its
/// first page`; the kernel checks the image and, if it is good, replaces
/// itself and returns to init as from any `yield` (Ok). A refused image
/// returns `BadTarget` and the reason in `kinfo::W_UPGRADE_LAST_RESULT`.
pub const UPGRADE_HANDLE_VA: u64 = 0x7000;
/// Where the upgrade image lies in the upgrade space (PML4 slot 44, so
/// init can link one level-3 table of its own there).
pub const UPGRADE_IMAGE_VA: u64 = 44 << 39;

/// The five system calls. Number in `rax`; arguments in `rdi`, `rsi`,
/// `rdx`, `r10`, `r8`; result code in `rax` (0 = success, otherwise an
/// [`Error`]), result value in `rdx`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Syscall {
    /// `create(va, level, frame_va)`: turn the owned, never-lent frame
    /// mapped at `frame_va` into an empty page table of `level` (1..=3)
    /// linked at `va` in the caller's address space.
    Create = 0,
    /// `map(src_va, level, dst_as, dst_va, rights)`: link what the caller
    /// holds at `src_va` (a page if `level` is 0, a table of that level
    /// otherwise) into `dst_as` at `dst_va` with `rights` no greater than
    /// the caller's. A page mapped with [`Rights::OWN`] is *moved*.
    Map = 1,
    /// `unmap(as, va, level)`: remove a non-owning entry from an address
    /// space the caller controls, and flush the TLB.
    Unmap = 2,
    /// `create_as(handle_va, frame_va)`: turn an owned, never-lent frame
    /// into the root of a new address space; a handle to it is placed at
    /// `handle_va` in the caller. Returns the new space's id.
    CreateAs = 3,
    /// `yield(handle_va, arg)`: switch to the address space named by the
    /// handle, entering at its upcall entry with [`Reason::Yield`].
    Yield = 4,
}

impl TryFrom<u64> for Syscall {
    type Error = Error;
    fn try_from(n: u64) -> Result<Self, Error> {
        Ok(match n {
            0 => Syscall::Create,
            1 => Syscall::Map,
            2 => Syscall::Unmap,
            3 => Syscall::CreateAs,
            4 => Syscall::Yield,
            _ => return Err(Error::BadSyscall),
        })
    }
}

/// Every error a system call can return (in `rax`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Error {
    /// `rax` did not name one of the five calls.
    BadSyscall = 1,
    /// An address is not page-aligned (or span-aligned for a table), not in
    /// the user half, or collides with a reserved slot.
    BadAddress = 2,
    /// `level` is out of range for this call.
    BadLevel = 3,
    /// Nothing is mapped where the call expected an entry.
    NotMapped = 4,
    /// The intermediate table the call needs does not exist (create it
    /// first with `create`).
    NoTable = 5,
    /// The destination slot is already in use.
    Occupied = 6,
    /// The caller lacks the right the operation needs (OWN to move or
    /// retype a frame, GRANT to pass an entry on, SWITCH to yield, OWN on
    /// an address-space handle to change that space).
    NoRight = 7,
    /// The requested rights exceed the rights the caller holds.
    RightsExceeded = 8,
    /// The frame has been lent (shared) and can never be retyped.
    Lent = 9,
    /// The entry is not what the call needs (e.g. a page where a table was
    /// expected, or not an address-space handle).
    WrongKind = 10,
    /// An owned page or owned table link cannot be unmapped (the frame
    /// would be lost); move it instead.
    Owned = 11,
    /// Reserved bits were set in an argument.
    BadArgument = 12,
    /// `yield`'s target has no usable control page (not mapped writable at
    /// [`CONTROL_VA`], or its entry is not a user address).
    BadTarget = 13,
}

impl Error {
    /// All errors, for tests and documentation.
    pub const ALL: [Error; 13] = [
        Error::BadSyscall,
        Error::BadAddress,
        Error::BadLevel,
        Error::NotMapped,
        Error::NoTable,
        Error::Occupied,
        Error::NoRight,
        Error::RightsExceeded,
        Error::Lent,
        Error::WrongKind,
        Error::Owned,
        Error::BadArgument,
        Error::BadTarget,
    ];

    /// The error's name as documented in `docs/syscalls.md`.
    pub fn name(self) -> &'static str {
        match self {
            Error::BadSyscall => "BadSyscall",
            Error::BadAddress => "BadAddress",
            Error::BadLevel => "BadLevel",
            Error::NotMapped => "NotMapped",
            Error::NoTable => "NoTable",
            Error::Occupied => "Occupied",
            Error::NoRight => "NoRight",
            Error::RightsExceeded => "RightsExceeded",
            Error::Lent => "Lent",
            Error::WrongKind => "WrongKind",
            Error::Owned => "Owned",
            Error::BadArgument => "BadArgument",
            Error::BadTarget => "BadTarget",
        }
    }
}

impl TryFrom<u64> for Error {
    type Error = u64;
    fn try_from(n: u64) -> Result<Self, u64> {
        Error::ALL.iter().copied().find(|e| *e as u64 == n).ok_or(n)
    }
}

/// Rights carried by an entry. Page-table hardware bits carry WRITE and
/// EXEC; the others live in the entries' software-available bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Rights(pub u64);

impl Rights {
    pub const NONE: Rights = Rights(0);
    /// Writable (hardware R/W bit). Readability is implied by presence.
    pub const WRITE: Rights = Rights(1 << 0);
    /// Executable (hardware NX bit clear).
    pub const EXEC: Rights = Rights(1 << 1);
    /// Page: owns the frame (may move or retype it). Table link: may change
    /// the table's entries. Address-space handle: may map into / unmap
    /// from that space.
    pub const OWN: Rights = Rights(1 << 2);
    /// May pass this entry on with `map`.
    pub const GRANT: Rights = Rights(1 << 3);
    /// Address-space handle only: may `yield` to that space.
    pub const SWITCH: Rights = Rights(1 << 4);
    /// Every defined bit.
    pub const ALL: Rights = Rights(0x1f);

    pub const fn bits(self) -> u64 {
        self.0
    }
    pub const fn union(self, o: Rights) -> Rights {
        Rights(self.0 | o.0)
    }
    pub const fn intersect(self, o: Rights) -> Rights {
        Rights(self.0 & o.0)
    }
    pub const fn contains(self, o: Rights) -> bool {
        self.0 & o.0 == o.0
    }
    /// Checked conversion from a register: undefined bits are an error.
    pub fn from_bits(bits: u64) -> Result<Rights, Error> {
        if bits & !Rights::ALL.0 != 0 {
            Err(Error::BadArgument)
        } else {
            Ok(Rights(bits))
        }
    }
}

impl core::ops::BitOr for Rights {
    type Output = Rights;
    fn bitor(self, o: Rights) -> Rights {
        self.union(o)
    }
}

/// Why an address space was entered at its upcall entry (in `rdi`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Reason {
    /// Another space yielded here: `rsi` = its argument, `rcx` = its id.
    Yield = 0,
    /// (init only) the timer fired: `rsi` = id of the interrupted space,
    /// `rdx` = 1 if that space's state was discarded because it was masked.
    Timer = 1,
    /// A page fault in this space: `rsi` = faulting address, `rdx` = the
    /// hardware error code. The faulting context is in the control page.
    PageFault = 2,
    /// Another exception in this space: `rsi` = vector, `rdx` = error code.
    Exception = 3,
    /// (init only) a space could not take its own upcall (masked, or its
    /// control page unusable) and was stopped: `rsi` = its id, `rdx` = the
    /// vector (or 0xffff for a bad control page), `rcx` = the address.
    Dead = 4,
    /// (init only) a device interrupt: `rsi` = vector.
    Interrupt = 5,
}

impl TryFrom<u64> for Reason {
    type Error = u64;
    fn try_from(n: u64) -> Result<Self, u64> {
        Ok(match n {
            0 => Reason::Yield,
            1 => Reason::Timer,
            2 => Reason::PageFault,
            3 => Reason::Exception,
            4 => Reason::Dead,
            5 => Reason::Interrupt,
            _ => return Err(n),
        })
    }
}

/// A saved user register context. Layout is shared with the kernel's
/// assembly; do not reorder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Context {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub rsp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub rflags: u64,
}

/// Number of u64 words in a [`Context`].
pub const CONTEXT_WORDS: usize = 18;

/// The layout of the control page at [`CONTROL_VA`]. The address space
/// writes `entry` and `stack`; the kernel writes `saved`/`saved_valid` when
/// it interrupts the space while `masked` is 0, and sets `masked` to 1
/// whenever it enters the space at `entry`. The space clears `masked` when
/// it no longer needs `saved`.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct ControlPage {
    pub entry: u64,
    pub stack: u64,
    pub masked: u64,
    pub saved_valid: u64,
    pub saved: Context,
    /// (init) device-interrupt vectors that arrived while init's handler
    /// was running (bit v of the 256): the kernel sets them, init clears
    /// them with an atomic swap and handles them.
    pub pending: [u64; 4],
    /// How the vector registers of `saved` were stored in the vector save
    /// area at [`control::VECTOR_AREA`] (a [`VectorKind`] value; 0 when
    /// the kernel saved none), and (XSAVE) the state-component bitmap it
    /// saved, which `XRSTOR` is given back.
    pub vector_kind: u64,
    pub vector_mask: u64,
}

/// The format of the vector save area in the control page: what the
/// kernel used to save the interrupted context's x87/SSE/AVX registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum VectorKind {
    /// Nothing saved (the CPU has no FXSR, or the kernel never saved).
    None = 0,
    /// `FXSAVE64` image (512 bytes): x87 and SSE.
    Fxsave = 1,
    /// Standard-format `XSAVE` image; `vector_mask` names its components.
    Xsave = 2,
}

impl VectorKind {
    pub fn from_word(w: u64) -> Option<VectorKind> {
        match w {
            0 => Some(VectorKind::None),
            1 => Some(VectorKind::Fxsave),
            2 => Some(VectorKind::Xsave),
            _ => None,
        }
    }
}

/// Byte offsets in the control page (used by the kernel and by assembly).
pub mod control {
    pub const ENTRY: u64 = 0;
    pub const STACK: u64 = 8;
    pub const MASKED: u64 = 16;
    pub const SAVED_VALID: u64 = 24;
    pub const SAVED: u64 = 32;
    pub const PENDING: u64 = 176;
    pub const VECTOR_KIND: u64 = 208;
    pub const VECTOR_MASK: u64 = 216;
    /// The vector save area (64-byte aligned, as `XSAVE` requires): the
    /// rest of the page, which the kernel uses only as far as the enabled
    /// components need (`VECTOR_AREA_MAX` bounds what it enables). One per
    /// activation: a control page per activation (per core, later) gives
    /// each its own.
    pub const VECTOR_AREA: u64 = 1024;
    pub const VECTOR_AREA_MAX: u64 = 4096 - VECTOR_AREA;
}

/// The kernel info page, mapped read-only into init at [`KINFO_VA`]. Word
/// offsets (each a u64).
pub mod kinfo {
    /// Magic value at word 0: b"EXOKINFO" little-endian.
    pub const MAGIC: u64 = u64::from_le_bytes(*b"EXOKINFO");
    pub const W_MAGIC: usize = 0;
    /// Timer ticks since boot.
    pub const W_TICKS: usize = 1;
    /// Timer period in microseconds.
    pub const W_TICK_US: usize = 2;
    /// Frames the kernel allocated after boot finished (must stay 0).
    pub const W_FRAMES_AFTER_BOOT: usize = 3;
    /// System calls handled.
    pub const W_SYSCALLS: usize = 4;
    /// Upcalls delivered (faults, timer, yields).
    pub const W_UPCALLS: usize = 5;
    /// Init's address-space id (physical address of its root table).
    pub const W_INIT_AS: usize = 6;
    /// Bytes of RAM handed to init in the RAM window.
    pub const W_RAM_BYTES: usize = 7;
    /// Physical address and length of the boot image.
    pub const W_BOOT_IMAGE_PHYS: usize = 8;
    pub const W_BOOT_IMAGE_LEN: usize = 9;
    /// TSC ticks per microsecond (0 if unknown).
    pub const W_TSC_PER_US: usize = 10;
    /// Number of free-RAM ranges that follow, then (start, len) pairs.
    pub const W_RAM_RANGES: usize = 11;
    pub const W_RAM_RANGE0: usize = 12;
    pub const MAX_RAM_RANGES: usize = 32;
    /// DMA faults the I/O-MMU recorded (every requester, including ones
    /// that are not in the device info page), and the last one's requester
    /// id and page address. Per-device counts are in the device info page
    /// (`devinfo::E_DMA_FAULTS`).
    pub const W_DMA_FAULTS: usize = 100;
    pub const W_DMA_FAULT_SOURCE: usize = 101;
    pub const W_DMA_FAULT_ADDR: usize = 102;
    /// Interrupts that arrived on an exception vector (0..=31) from a
    /// device — forged with a compatibility-format MSI, which QEMU's VT-d
    /// model does not block — and were dropped.
    pub const W_FORGED_INTERRUPTS: usize = 103;
    /// Enabled CPUs the ACPI MADT lists (0 if it could not be read); how
    /// many of them run is `W_SMP_ONLINE`.
    pub const W_CPUS: usize = 104;
    /// Non-maskable interrupts the kernel took (on their own IST stack)
    /// and returned from, by where they arrived: in the kernel (ring 0) or
    /// in a process (ring 3). An NMI is counted, never delivered.
    pub const W_NMI_KERNEL: usize = 105;
    pub const W_NMI_USER: usize = 106;
    /// How the machine was booted: [`BOOT_PVH`] (QEMU `-kernel`),
    /// [`BOOT_MB2_BIOS`] or [`BOOT_MB2_UEFI`] (GRUB's multiboot2 on BIOS or
    /// UEFI firmware, `cargo xtask image`); and where the ACPI RSDP came
    /// from: [`RSDP_NONE`], [`RSDP_LOADER`], [`RSDP_SCAN`] (legacy BIOS
    /// areas) or [`RSDP_EFI_TABLE`] (the UEFI configuration table).
    pub const W_BOOT_LOADER: usize = 107;
    pub const W_RSDP_SOURCE: usize = 108;
    pub const BOOT_PVH: u64 = 1;
    pub const BOOT_MB2_BIOS: u64 = 2;
    pub const BOOT_MB2_UEFI: u64 = 3;
    pub const RSDP_NONE: u64 = 0;
    pub const RSDP_LOADER: u64 = 1;
    pub const RSDP_SCAN: u64 = 2;
    pub const RSDP_EFI_TABLE: u64 = 3;
    /// Persistent memory (NVDIMMs from the ACPI NFIT) mapped into init at
    /// `PMEM_VA`: the number of ranges, the number of NFIT
    /// persistent-memory ranges the kernel refused (misaligned, overlapping
    /// RAM, the kernel, the boot image or devices, or over the budget; see
    /// the boot log), then per range `PMEM_RANGE_WORDS` words from
    /// `W_PMEM_RANGE0`: physical address, bytes, init's virtual address.
    /// The ranges lie back to back from `PMEM_VA`. All 0 on a machine
    /// without an NFIT.
    pub const W_PMEM_RANGES: usize = 110;
    pub const W_PMEM_REFUSED: usize = 111;
    pub const W_PMEM_RANGE0: usize = 112;
    pub const PMEM_RANGE_WORDS: usize = 3;
    pub const MAX_PMEM_RANGES: usize = 8;
    /// Within a range's words.
    pub const PMEM_PHYS: usize = 0;
    pub const PMEM_BYTES: usize = 1;
    pub const PMEM_VA: usize = 2;
    /// The word holding `field` (`PMEM_PHYS`, `PMEM_BYTES`, `PMEM_VA`) of
    /// persistent-memory range `i`.
    pub const fn pmem_word(i: usize, field: usize) -> usize {
        W_PMEM_RANGE0 + i * PMEM_RANGE_WORDS + field
    }
    /// Idle halts (`yield(IDLE_HALT_HANDLE_VA, 0)` by init): halts done,
    /// the TSC ticks CPUs spent halted in them, requests that did not halt
    /// because an interrupt was latched in init's `pending` words, and a
    /// mask of the CPUs that have halted (bit `n` = CPU `n`). What woke a
    /// halt: the timer, a device interrupt, or neither (a TLB shootdown or
    /// another interrupt the kernel handles itself; the call returns).
    pub const W_IDLE_HALTS: usize = 200;
    pub const W_IDLE_HALT_TSC: usize = 201;
    pub const W_IDLE_HALT_PENDING: usize = 202;
    pub const W_IDLE_HALT_CPUS: usize = 203;
    pub const W_IDLE_WAKE_TIMER: usize = 204;
    pub const W_IDLE_WAKE_DEVICE: usize = 205;
    pub const W_IDLE_WAKE_OTHER: usize = 206;
    /// SMP: the CPUs running (the boot CPU and every application
    /// processor that came up), a bit mask of their indexes, the local
    /// APIC IDs left parked (not started: beyond the kernel's per-CPU
    /// tables, or not addressable in xAPIC mode), and the TSC ticks from
    /// the first INIT to the last application processor reporting in.
    pub const W_SMP_ONLINE: usize = 230;
    pub const W_SMP_ONLINE_MASK: usize = 231;
    pub const W_SMP_PARKED: usize = 232;
    pub const W_SMP_BOOT_TSC: usize = 233;
    /// TLB shootdowns (one per `flush_everywhere` of the page-table code
    /// while another CPU runs), the TSC ticks the shooting CPU spent in
    /// them (interrupting the others and waiting for every one to
    /// acknowledge), and the acknowledgements received.
    pub const W_SMP_SHOOTDOWNS: usize = 234;
    pub const W_SMP_SHOOTDOWN_TSC: usize = 235;
    pub const W_SMP_SHOOTDOWN_ACKS: usize = 236;
    /// Byte offset and maximum length of the NUL-terminated command line.
    pub const CMDLINE_OFFSET: usize = 2048;
    pub const CMDLINE_MAX: usize = 1024;
    /// Kernel upgrade words (`exo_upgrade`): the running build's name (16
    /// bytes, NUL padded, two words), upgrades done, upgrades refused, the
    /// last request's result (0 = done, else `exo_upgrade::Refusal`), the
    /// kernel slot running, and TSC stamps of the last upgrade: request
    /// taken by the old kernel, its jump to the new one (its last
    /// instruction), the new kernel's first Rust instruction, and its
    /// return to userspace.
    pub const W_UPGRADE_BUILD: usize = 240;
    pub const W_UPGRADE_DONE: usize = 242;
    pub const W_UPGRADE_REFUSED: usize = 243;
    pub const W_UPGRADE_LAST_RESULT: usize = 244;
    pub const W_UPGRADE_SLOT: usize = 245;
    pub const W_UPGRADE_TSC_REQUEST: usize = 246;
    pub const W_UPGRADE_TSC_JUMP: usize = 247;
    pub const W_UPGRADE_TSC_NEW: usize = 248;
    pub const W_UPGRADE_TSC_RETURN: usize = 249;
    /// Kernel upgrade with several CPUs online: the other CPUs the last
    /// upgrade parked, the TSC ticks from its first park request to the
    /// last CPU parked (old kernel), and from the new kernel's first Rust
    /// instruction to every parked CPU back online in it.
    pub const W_UPSMP_PARKED: usize = 250;
    pub const W_UPSMP_PARK_TSC: usize = 251;
    pub const W_UPSMP_RELEASE_TSC: usize = 252;
}

/// The device info page, mapped read-only into init at [`DEVINFO_VA`].
/// Word offsets (each a u64).
pub mod devinfo {
    pub const MAGIC: u64 = u64::from_le_bytes(*b"EXODEVS1");
    pub const W_MAGIC: usize = 0;
    /// Number of device entries.
    pub const W_COUNT: usize = 1;
    /// 1 if the I/O-MMU translates DMA (devices have handles).
    pub const W_IOMMU: usize = 2;
    /// Bytes of I/O virtual address space every device has: `[0, this)`.
    pub const W_DMA_WINDOW: usize = 3;
    /// First entry; entry `k` starts at `W_ENTRY0 + k * ENTRY_WORDS`.
    pub const W_ENTRY0: usize = 16;
    pub const ENTRY_WORDS: usize = 24;
    pub const MAX_DEVICES: usize = 20;
    /// Within an entry: requester id (bus << 8 | device << 3 | function).
    pub const E_BDF: usize = 0;
    /// vendor | device << 16 | class code (24 bits) << 32.
    pub const E_IDS: usize = 1;
    /// Init's address of the device's 4 KiB configuration space.
    pub const E_CONFIG_VA: usize = 2;
    /// Init's address of the device handle (0: no DMA for this device).
    pub const E_HANDLE_VA: usize = 3;
    /// Init's address of memory BAR i (0: absent, I/O or too large).
    pub const E_BAR_VA0: usize = 4;
    /// Size of BAR i in bytes.
    pub const E_BAR_SIZE0: usize = 10;
    /// With interrupt remapping on (0 otherwise): the first of the
    /// device's `IRQS_PER_DEVICE` remapping-table handles (program MSI-X
    /// entry j with the remappable-format address for handle + j, data 0),
    /// and the vector handle + j arrives on (as a `Reason::Interrupt`
    /// upcall to init).
    pub const E_IRQ_HANDLE: usize = 16;
    pub const E_IRQ_VECTOR: usize = 17;
    /// DMA faults the I/O-MMU recorded with this device as the requester,
    /// and the page address of the last one (written by the kernel's
    /// fault-event handler; init reports them to the device's driver).
    pub const E_DMA_FAULTS: usize = 18;
    pub const E_DMA_FAULT_ADDR: usize = 19;
    /// The SR-IOV capability of a physical function (0: none), packed by
    /// [`sriov_word`]; read with [`SrIovInfo::from_word`].
    pub const E_SRIOV: usize = 20;
    /// For an SR-IOV virtual function the kernel enabled at boot (0
    /// otherwise): which VF of which physical function it is, packed by
    /// [`vf_word`]; read with [`VfInfo::from_word`]. Its `E_IDS` are the
    /// PF's vendor and the SR-IOV capability's VF device id (a VF's own
    /// vendor/device registers read 0xFFFF).
    pub const E_VF: usize = 21;
    /// For a physical function: how many VFs the kernel enabled at boot
    /// and lists as devices (0: none; the boot log says why).
    pub const E_VFS_ENABLED: usize = 22;
    /// The kernel enables at most this many VFs per physical function.
    pub const MAX_VFS_PER_PF: u16 = 4;

    /// A virtual function as the device info page describes it.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct VfInfo {
        /// The physical function's device index (its entry in this page).
        pub pf_index: u16,
        /// The VF number, 1-based (its secondary controller's VFN on NVMe).
        pub vf_number: u16,
    }

    pub const fn vf_word(pf_index: u16, vf_number: u16) -> u64 {
        vf_number as u64 | (pf_index as u64) << 16
    }

    impl VfInfo {
        /// `None` for 0 (not a VF) and for a VF number of 0 (malformed).
        pub const fn from_word(w: u64) -> Option<VfInfo> {
            if w as u16 == 0 {
                return None;
            }
            Some(VfInfo { pf_index: (w >> 16) as u16, vf_number: w as u16 })
        }
    }

    /// An SR-IOV physical function as the device info page describes it.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct SrIovInfo {
        pub total_vfs: u16,
        /// VF n's routing id is the PF's + first_vf_offset + (n-1) * vf_stride.
        pub first_vf_offset: u16,
        pub vf_stride: u16,
        pub vf_device_id: u16,
    }

    pub const fn sriov_word(total_vfs: u16, first_vf_offset: u16, vf_stride: u16, vf_device_id: u16) -> u64 {
        total_vfs as u64 | (first_vf_offset as u64) << 16 | (vf_stride as u64) << 32 | (vf_device_id as u64) << 48
    }

    impl SrIovInfo {
        pub const fn from_word(w: u64) -> Option<SrIovInfo> {
            if w == 0 {
                return None;
            }
            Some(SrIovInfo {
                total_vfs: w as u16,
                first_vf_offset: (w >> 16) as u16,
                vf_stride: (w >> 32) as u16,
                vf_device_id: (w >> 48) as u16,
            })
        }
    }
    pub const IRQS_PER_DEVICE: u64 = 4;
    pub const IRQ_VECTOR0: u8 = 0x40;
    pub const DMA_WINDOW: u64 = 128 << 20;
    pub const DEVICE_STRIDE: u64 = 64 << 20;
    pub const BAR_STRIDE: u64 = 8 << 20;
}

/// A system call's raw result as returned in `rax`/`rdx`.
#[inline]
pub fn decode_result(rax: u64, rdx: u64) -> Result<u64, Error> {
    if rax == 0 {
        Ok(rdx)
    } else {
        Err(Error::try_from(rax).unwrap_or(Error::BadArgument))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sriov_word_round_trips() {
        let w = devinfo::sriov_word(4, 1, 1, 0x5845);
        let info = devinfo::SrIovInfo::from_word(w).unwrap();
        assert_eq!((info.total_vfs, info.first_vf_offset, info.vf_stride, info.vf_device_id), (4, 1, 1, 0x5845));
        assert_eq!(devinfo::SrIovInfo::from_word(0), None);
        let max = devinfo::SrIovInfo::from_word(devinfo::sriov_word(u16::MAX, u16::MAX, u16::MAX, u16::MAX)).unwrap();
        assert_eq!(
            (max.total_vfs, max.first_vf_offset, max.vf_stride, max.vf_device_id),
            (u16::MAX, u16::MAX, u16::MAX, u16::MAX)
        );
    }

    #[test]
    fn vf_word_round_trips() {
        let info = devinfo::VfInfo::from_word(devinfo::vf_word(3, 1)).unwrap();
        assert_eq!((info.pf_index, info.vf_number), (3, 1));
        assert_eq!(devinfo::VfInfo::from_word(0), None);
        assert_eq!(devinfo::VfInfo::from_word(devinfo::vf_word(2, 0)), None, "VF numbers start at 1");
        const { assert!(devinfo::E_VFS_ENABLED < devinfo::ENTRY_WORDS) };
    }

    #[test]
    fn syscall_numbers_round_trip_and_unknown_are_refused() {
        for n in 0..5u64 {
            assert_eq!(Syscall::try_from(n).unwrap() as u64, n);
        }
        for n in [5u64, 6, 100, u64::MAX] {
            assert_eq!(Syscall::try_from(n), Err(Error::BadSyscall));
        }
    }

    #[test]
    fn errors_round_trip_and_have_distinct_names() {
        for e in Error::ALL {
            assert_eq!(Error::try_from(e as u64), Ok(e));
        }
        let mut names: Vec<_> = Error::ALL.iter().map(|e| e.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Error::ALL.len());
        assert_eq!(Error::try_from(0), Err(0));
        assert_eq!(Error::try_from(999), Err(999));
    }

    #[test]
    fn rights_reject_undefined_bits() {
        assert_eq!(Rights::from_bits(0x1f), Ok(Rights::ALL));
        assert_eq!(Rights::from_bits(0x20), Err(Error::BadArgument));
        assert!(Rights::ALL.contains(Rights::OWN | Rights::WRITE));
        assert!(!Rights::WRITE.contains(Rights::OWN));
    }

    #[test]
    fn control_page_offsets_match_layout() {
        assert_eq!(core::mem::size_of::<Context>(), CONTEXT_WORDS * 8);
        assert_eq!(core::mem::offset_of!(ControlPage, entry) as u64, control::ENTRY);
        assert_eq!(core::mem::offset_of!(ControlPage, stack) as u64, control::STACK);
        assert_eq!(core::mem::offset_of!(ControlPage, masked) as u64, control::MASKED);
        assert_eq!(core::mem::offset_of!(ControlPage, saved_valid) as u64, control::SAVED_VALID);
        assert_eq!(core::mem::offset_of!(ControlPage, saved) as u64, control::SAVED);
        assert_eq!(core::mem::offset_of!(ControlPage, pending) as u64, control::PENDING);
        assert_eq!(core::mem::offset_of!(ControlPage, vector_kind) as u64, control::VECTOR_KIND);
        assert_eq!(core::mem::offset_of!(ControlPage, vector_mask) as u64, control::VECTOR_MASK);
        assert!(core::mem::size_of::<ControlPage>() as u64 <= control::VECTOR_AREA);
        assert_eq!(control::VECTOR_AREA % 64, 0);
        for k in [VectorKind::None, VectorKind::Fxsave, VectorKind::Xsave] {
            assert_eq!(VectorKind::from_word(k as u64), Some(k));
        }
        assert_eq!(VectorKind::from_word(3), None);
    }

    #[test]
    fn kinfo_words_do_not_collide() {
        use kinfo::*;
        let pmem_end = pmem_word(MAX_PMEM_RANGES, 0);
        const { assert!(W_RAM_RANGE0 + 2 * MAX_RAM_RANGES <= W_DMA_FAULTS) };
        const { assert!(W_CPUS < W_PMEM_RANGES && W_PMEM_REFUSED < W_PMEM_RANGE0) };
        assert_eq!(pmem_word(1, PMEM_PHYS), pmem_word(0, PMEM_VA) + 1);
        assert!(pmem_end * 8 <= CMDLINE_OFFSET, "pmem words end before the command line");
    }

    /// Every `W_*` word of the kernel info page, read from this file's
    /// `kinfo` module, with the words it spans: no two overlap and all lie
    /// before the command line. (Two features once took the same numbers
    /// on two branches; the compiler cannot see that.)
    #[test]
    fn every_kinfo_word_is_its_own() {
        use kinfo::*;
        let src = include_str!("lib.rs");
        let body = &src[src.find("pub mod kinfo {").unwrap()..];
        let body = &body[..body.find("\n}\n").unwrap()];
        let spans = |name: &str| match name {
            "W_RAM_RANGE0" => 2 * MAX_RAM_RANGES,
            "W_PMEM_RANGE0" => MAX_PMEM_RANGES * PMEM_RANGE_WORDS,
            "W_UPGRADE_BUILD" => 2,
            _ => 1,
        };
        let mut owner: std::collections::BTreeMap<usize, String> = Default::default();
        let mut seen = 0;
        for line in body.lines().map(str::trim) {
            let Some(rest) = line.strip_prefix("pub const W_") else { continue };
            let (name, value) = rest.split_once(": usize = ").expect("a W_ word is a usize");
            let name = format!("W_{name}");
            let word: usize = value.trim_end_matches(';').parse().expect("a W_ word is a literal");
            for w in word..word + spans(&name) {
                if let Some(other) = owner.insert(w, name.clone()) {
                    panic!("kernel info word {w} is both {other} and {name}");
                }
            }
            assert!((word + spans(&name)) * 8 <= CMDLINE_OFFSET, "{name} runs into the command line");
            seen += 1;
        }
        assert!(seen > 30, "read the W_ words ({seen})");
    }

    #[test]
    fn pmem_slots_are_free() {
        // Init's PML4 slots: RAM window 32, boot image 16, devices 48,
        // child windows from 64; pmem gets 56 to itself.
        let slot = |va: u64| va >> 39;
        assert_eq!(slot(PMEM_VA), 56);
        for other in [RAM_WINDOW_VA, BOOT_IMAGE_VA, DEVICES_VA] {
            assert_ne!(slot(other), slot(PMEM_VA));
        }
        assert_eq!(PMEM_VA % (1 << 39), 0);
        // A child's pmem lies in its first 512 GiB (init's window on a child
        // covers exactly that) and is 1 GiB aligned.
        const { assert!(CHILD_PMEM_VA + (64 << 30) <= 1 << 39) };
        assert_eq!(CHILD_PMEM_VA % (1 << 30), 0);
    }

    #[test]
    fn results_decode() {
        assert_eq!(decode_result(0, 42), Ok(42));
        assert_eq!(decode_result(Error::Lent as u64, 0), Err(Error::Lent));
    }

    #[test]
    fn reasons_round_trip() {
        for n in 0..6u64 {
            assert_eq!(Reason::try_from(n).unwrap() as u64, n);
        }
        assert!(Reason::try_from(6).is_err());
    }
}
