//! The standard machine: the one QEMU configuration that `run`, `test` and
//! `eval` (including the Linux baseline guest) all boot, defined once here
//! so that every comparison runs on identical emulated hardware.
//!
//! Every device argument below was checked against QEMU 7.2 (Debian
//! 1:7.2+dfsg-7+deb12u18); each was checked by hand, and why it is there:
//! * `q35,kernel-irqchip=split`: VT-d interrupt remapping needs a split
//!   irqchip under KVM (harmless under TCG); `nvdimm=on` puts the NVDIMM in
//!   the ACPI NFIT.
//! * `-m 512M,slots=2,maxmem=4G`: an NVDIMM is a memory device and needs a
//!   hotplug slot and room above RAM.
//! * `intel-iommu,intremap=on,caching-mode=on`: VT-d; caching mode makes
//!   QEMU observe every invalidation (needed for assigned devices).
//! * `virtio-blk-pci,...,iommu_platform=on`: without it virtio DMA bypasses
//!   the IOMMU; `disable-legacy=on` keeps it modern-only.
//! * `isa-debug-exit` on port 0xf4: the guest ends a run by writing a code;
//!   QEMU exits with `(code << 1) | 1`.
//! * `-nic none`: q35 would add an e1000e otherwise.
//! * KVM here is nested and paravirtual: `-cpu max` and plain `-cpu host`
//!   abort on MSR 0x10a, so KVM uses `host,-arch-capabilities`.

use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const QEMU: &str = crate::setup::QEMU_BINARY;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Tcg,
    Kvm,
}

impl std::fmt::Display for Accel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        })
    }
}

/// The firmware the machine starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// QEMU's default, SeaBIOS (legacy BIOS).
    SeaBios,
    /// UEFI: Debian's OVMF build (`-bios`, no persistent variables).
    Ovmf,
}

/// Where the guest's COM1 goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Serial {
    /// QEMU's stdout (the runner captures and tees it).
    Stdio,
    /// stdio multiplexed with the QEMU monitor (`mon:stdio`), for people at
    /// a terminal: Ctrl-A X quits, Ctrl-A C toggles the monitor, Ctrl-C
    /// goes to the guest instead of killing QEMU.
    StdioWithMonitor,
    /// A file (for runs whose stdout is used for something else, e.g. eval).
    #[allow(dead_code)] // API for the eval helpers
    File(PathBuf),
}

/// A backing file the standard machine attaches, created sparse on first use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskImage {
    pub file: &'static str,
    pub bytes: u64,
}

const MIB: u64 = 1 << 20;
/// 512 MiB: below 256 MiB the driver and database tests (see
/// `initlib::kvdb`), 256..384 MiB libfs on NVMe (`libfs_nvme`, `libfs_big`),
/// 384..448 MiB libdb on a libfs file (`libdb_on_libfs`).
pub const NVME_IMAGE: DiskImage = DiskImage { file: "nvme.img", bytes: 512 * MIB };
pub const VIRTIO_IMAGE: DiskImage = DiskImage { file: "virtio.img", bytes: 64 * MIB };
pub const NVDIMM_IMAGE: DiskImage = DiskImage { file: "nvdimm.img", bytes: 128 * MIB };
/// The second NVMe controller's namespace (machine variant `two-nvme`).
pub const NVME2_IMAGE: DiskImage = DiskImage { file: "nvme2.img", bytes: 64 * MIB };
pub const IMAGES: [DiskImage; 4] = [NVME_IMAGE, VIRTIO_IMAGE, NVDIMM_IMAGE, NVME2_IMAGE];

/// Create missing images as sparse files, and grow (never shrink or
/// overwrite) ones that are too small; existing contents are kept.
pub fn ensure_images(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for img in IMAGES {
        let path = dir.join(img.file);
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening disk image {}", path.display()))?;
        let len = f.metadata()?.len();
        if len < img.bytes {
            if len == 0 {
                println!("creating sparse {} ({} MiB)", path.display(), img.bytes / MIB);
            }
            f.set_len(img.bytes).with_context(|| format!("sizing {}", path.display()))?;
        }
    }
    Ok(())
}

/// Exclusive use of an images directory while QEMU runs on it. Two QEMUs on
/// the same images would fail (QEMU's own image locks) or, for the NVDIMM
/// backing file, silently share it; with several people or agents running
/// `cargo xtask` in one checkout, runs wait for each other instead.
pub struct ImagesLock {
    _file: std::fs::File,
}

/// Take the lock on `dir` (blocking; says so when it has to wait). The
/// lock is released when the guard is dropped or the process dies.
pub fn lock_images(dir: &Path) -> Result<ImagesLock> {
    use std::os::unix::io::AsRawFd;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(".lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    let fd = file.as_raw_fd();
    // SAFETY: flock only takes an advisory lock on our own open descriptor.
    if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        println!("waiting for {} (another QEMU run is using these images)", dir.display());
        // SAFETY: as above; this call blocks until the other holder is done.
        if unsafe { libc::flock(fd, libc::LOCK_EX) } != 0 {
            bail!("locking {}: {}", path.display(), std::io::Error::last_os_error());
        }
    }
    Ok(ImagesLock { _file: file })
}

/// QEMU option values are comma-separated; a literal comma is doubled.
pub fn qemu_escape(p: &Path) -> String {
    p.to_string_lossy().replace(',', ",,")
}

/// The board under the standard devices. Only tests of what the kernel
/// does without a piece of firmware use anything but `Q35Iommu`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chipset {
    /// q35 (PCI Express, ECAM in an MCFG) with the VT-d I/O-MMU (a DMAR).
    Q35Iommu,
    /// q35 without an I/O-MMU: QEMU builds no DMAR.
    Q35NoIommu,
    /// i440fx (`pc`): conventional PCI, QEMU builds no MCFG and no DMAR.
    I440fx,
}

/// The hardware knobs in which real machines differ from the standard one
/// (RAM size, CPUs, I/O-MMU address width, the NVMe namespace's block size,
/// how many I/O queues and how large a transfer the controller grants, a
/// second controller). `Hardware::STANDARD` is the standard machine; the
/// named variants in [`VARIANTS`] change one knob each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hardware {
    /// Guest RAM in MiB (`-m`).
    pub ram_mib: u64,
    /// CPUs (`-smp`).
    pub cpus: u32,
    /// VT-d address width (`intel-iommu,aw-bits=`); `None` = QEMU's default (39).
    pub iommu_aw_bits: Option<u8>,
    /// The NVMe namespace's logical (and physical) block size; `None` = 512.
    pub nvme_block_bytes: Option<u32>,
    /// `max_ioqpairs` of the (non-SR-IOV) NVMe controller; `None` = QEMU's default (64).
    pub nvme_max_ioqpairs: Option<u32>,
    /// `mdts` of the NVMe controller (2^mdts minimum pages); `None` = QEMU's default (7).
    pub nvme_mdts: Option<u8>,
    /// A second NVMe controller (serial `exo1`, on [`NVME2_IMAGE`]).
    pub second_nvme: bool,
    /// The CPU offers 1 GiB pages (CPUID 0x80000001 EDX bit 26); `false`
    /// adds `pdpe1gb=off` to `-cpu`, so the kernel's physical window is
    /// built from 2 MiB pages.
    pub gib_pages: bool,
    /// Multi-threaded TCG (`-accel tcg,thread=multi`): one host thread per
    /// guest CPU, so the CPUs really run at once (what the SMP tests need;
    /// `-icount` cannot be combined with it).
    pub smp_mttcg: bool,
}

impl Hardware {
    pub const STANDARD: Hardware = Hardware {
        ram_mib: 512,
        cpus: 1,
        iommu_aw_bits: None,
        nvme_block_bytes: None,
        nvme_max_ioqpairs: None,
        nvme_mdts: None,
        second_nvme: false,
        gib_pages: true,
        smp_mttcg: false,
    };

    /// The SMP tests' machines: the standard one with `cpus` CPUs under
    /// multi-threaded TCG.
    pub const fn smp_mttcg(cpus: u32) -> Hardware {
        Hardware { cpus, smp_mttcg: true, ..Hardware::STANDARD }
    }

    /// `-m` argument: RAM plus room above it for the NVDIMM (a memory
    /// device needs a hotplug slot and `maxmem` above RAM).
    fn memory_arg(&self) -> String {
        if self.ram_mib == 512 {
            "512M,slots=2,maxmem=4G".to_string()
        } else {
            format!("{}M,slots=2,maxmem={}M", self.ram_mib, self.ram_mib + 4096)
        }
    }

    /// Extra `nvme` device properties this hardware sets (each starts with `,`).
    fn nvme_props(&self) -> String {
        let mut p = self.block_props();
        if let Some(q) = self.nvme_max_ioqpairs {
            p += &format!(",max_ioqpairs={q}");
        }
        if let Some(m) = self.nvme_mdts {
            p += &format!(",mdts={m}");
        }
        p
    }

    /// The block size properties (on the `nvme` device, or on the
    /// `nvme-ns` of the SR-IOV definition).
    fn block_props(&self) -> String {
        match self.nvme_block_bytes {
            Some(b) => format!(",logical_block_size={b},physical_block_size={b}"),
            None => String::new(),
        }
    }

    /// The SR-IOV controller's queue properties. QEMU 7.2 requires
    /// `max_ioqpairs - sriov_vq_flexible >= 2` (the primary keeps at least
    /// two private I/O pairs) and `sriov_vq_flexible >= 2 * sriov_max_vfs`,
    /// so the primary itself cannot be cut to one pair; instead each
    /// secondary (VF) is limited to 2 flexible queues — its admin queue
    /// and one I/O pair (`sriov_max_vq_per_vf`, reported to the PF's
    /// driver as VQFRSM) — and the primary to the fewest QEMU allows.
    fn sriov_queue_props(&self) -> String {
        match self.nvme_max_ioqpairs {
            Some(1) => "sriov_vq_flexible=16,sriov_vi_flexible=8,max_ioqpairs=18,sriov_max_vq_per_vf=2".to_string(),
            Some(q) => format!("sriov_vq_flexible=16,sriov_vi_flexible=8,max_ioqpairs={}", q.max(18)),
            None => "sriov_vq_flexible=16,sriov_vi_flexible=8,max_ioqpairs=20".to_string(),
        }
    }
}

/// A named variant of the standard machine (`cargo xtask test --machine NAME`,
/// and the rows of the machine matrix).
#[allow(dead_code)] // `what` is printed by the machine matrix
pub struct Variant {
    pub name: &'static str,
    pub what: &'static str,
    pub hardware: Hardware,
}

const fn variant(name: &'static str, what: &'static str, hardware: Hardware) -> Variant {
    Variant { name, what, hardware }
}

const S: Hardware = Hardware::STANDARD;

/// Every machine variant the kernel must boot and pass its tests on.
pub const VARIANTS: &[Variant] = &[
    variant("standard", "q35, 512 MiB, 1 CPU, VT-d 39-bit, NVMe 512 B blocks", S),
    variant("ram-128m", "128 MiB of RAM", Hardware { ram_mib: 128, ..S }),
    variant("ram-2g", "2 GiB of RAM (ACPI tables above the first GiB)", Hardware { ram_mib: 2048, ..S }),
    variant("ram-4g", "4 GiB of RAM (RAM above the 32-bit PCI hole)", Hardware { ram_mib: 4096, ..S }),
    variant("ram-8g", "8 GiB of RAM", Hardware { ram_mib: 8192, ..S }),
    variant(
        "no-1g-pages",
        "a CPU without 1 GiB pages, 8 GiB of RAM (the window in 2 MiB pages)",
        Hardware { gib_pages: false, ram_mib: 8192, ..S },
    ),
    variant("smp-2", "2 CPUs", Hardware { cpus: 2, ..S }),
    variant("smp-4", "4 CPUs", Hardware { cpus: 4, ..S }),
    variant("smp-2-mttcg", "2 CPUs under multi-threaded TCG (truly concurrent)", Hardware::smp_mttcg(2)),
    variant("smp-4-mttcg", "4 CPUs under multi-threaded TCG (truly concurrent)", Hardware::smp_mttcg(4)),
    variant("iommu-aw48", "VT-d with 48-bit addresses (4-level I/O tables)", Hardware { iommu_aw_bits: Some(48), ..S }),
    variant("nvme-4kn", "NVMe namespace with 4 KiB logical blocks", Hardware { nvme_block_bytes: Some(4096), ..S }),
    variant(
        "nvme-1q",
        "an NVMe controller that grants one I/O queue pair",
        Hardware { nvme_max_ioqpairs: Some(1), ..S },
    ),
    variant("nvme-mdts1", "an NVMe controller with MDTS = 1 (8 KiB transfers)", Hardware { nvme_mdts: Some(1), ..S }),
    variant("two-nvme", "two NVMe controllers", Hardware { second_nvme: true, ..S }),
];

/// The variant named `name`.
pub fn variant_named(name: &str) -> Option<&'static Variant> {
    VARIANTS.iter().find(|v| v.name == name)
}

/// `eval --recovery`'s media: 1.125 GiB each (a 1 GiB database, its
/// 8 MiB log and room to spare), so the NVMe namespace and the NVDIMM are
/// ≥ 1.1 GiB.
pub const RECOVERY_MEDIUM_BYTES: u64 = 1152 * MIB;

/// `eval --recovery`'s machine: the standard machine with the NVMe drive on
/// `nvme_image` and the NVDIMM on `nvdimm_file`, each
/// [`RECOVERY_MEDIUM_BYTES`] (the standard machine's images and sizes stay
/// as they are).
pub fn recovery_machine(images_dir: &Path, nvme_image: &Path, nvdimm_file: &Path) -> Machine {
    Machine::new(images_dir)
        .nvme_drive(format!("file={},format=raw", qemu_escape(nvme_image)))
        .nvdimm(nvdimm_file, RECOVERY_MEDIUM_BYTES)
}

/// Builder for the standard machine's command line.
#[derive(Debug, Clone)]
pub struct Machine {
    pub images_dir: PathBuf,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub append: Option<String>,
    pub accel: Accel,
    pub serial: Serial,
    /// `-icount shift=0`: guest time becomes an instruction count (TCG only).
    pub icount: bool,
    /// The NVMe device's `ioeventfd` (default on). Off, doorbell writes are
    /// handled as MMIO and pass the `pci_nvme_mmio_doorbell_*` trace points;
    /// on, QEMU takes them as eventfd kicks that no trace point sees.
    pub nvme_ioeventfd: bool,
    /// The NVMe controller as an SR-IOV physical function (4 VFs) behind a
    /// PCIe root port, in an NVMe subsystem with a shared namespace on the
    /// same image (the form QEMU 7.2 accepts, checked by hand). Off by default: the standard
    /// machine, which the Linux baseline also boots, keeps the NVMe on the
    /// root bus.
    pub nvme_sriov: bool,
    /// Which board and I/O-MMU (the standard machine: q35 with VT-d).
    pub chipset: Chipset,
    /// RAM, CPUs and device knobs (the standard machine's unless a variant
    /// is chosen).
    pub hardware: Hardware,
    /// QEMU trace event patterns (`-trace enable=...`).
    pub trace_events: Vec<String>,
    /// Where trace output goes (`-trace file=...`); stderr if unset.
    pub trace_file: Option<PathBuf>,
    /// A QMP control socket (`-qmp unix:PATH,server=on,wait=off`).
    pub qmp_socket: Option<PathBuf>,
    /// `-s -S`: gdb stub on :1234, CPU halted until gdb continues.
    pub gdb: bool,
    /// Appended verbatim after everything else.
    pub extra_args: Vec<OsString>,
    /// The NVMe drive's `-drive` options instead of the raw image in the
    /// images directory (`id=nvm` is added); the power-fail pass puts the
    /// drive behind `blklogwrites`.
    pub nvme_drive: Option<String>,
    /// The NVDIMM's backing file and size instead of the images
    /// directory's `nvdimm.img` (`eval --recovery`'s 1.125 GiB NVDIMM).
    pub nvdimm: Option<(PathBuf, u64)>,
    pub firmware: Firmware,
    /// A disk the firmware boots (raw image on the AHCI controller,
    /// first in the boot order), as a real machine boots from a USB stick;
    /// instead of `-kernel`.
    pub boot_disk: Option<PathBuf>,
}

impl Machine {
    pub fn new(images_dir: impl Into<PathBuf>) -> Self {
        Self {
            images_dir: images_dir.into(),
            kernel: None,
            initrd: None,
            append: None,
            accel: Accel::Tcg,
            serial: Serial::Stdio,
            icount: false,
            nvme_ioeventfd: true,
            nvme_sriov: false,
            chipset: Chipset::Q35Iommu,
            hardware: Hardware::STANDARD,
            trace_events: vec![],
            trace_file: None,
            qmp_socket: None,
            gdb: false,
            extra_args: vec![],
            nvme_drive: None,
            nvdimm: None,
            firmware: Firmware::SeaBios,
            boot_disk: None,
        }
    }
    pub fn firmware(mut self, f: Firmware) -> Self {
        self.firmware = f;
        self
    }
    pub fn boot_disk(mut self, p: impl Into<PathBuf>) -> Self {
        self.boot_disk = Some(p.into());
        self
    }

    pub fn kernel(mut self, p: impl Into<PathBuf>) -> Self {
        self.kernel = Some(p.into());
        self
    }
    pub fn initrd(mut self, p: impl Into<PathBuf>) -> Self {
        self.initrd = Some(p.into());
        self
    }
    pub fn append(mut self, s: impl Into<String>) -> Self {
        self.append = Some(s.into());
        self
    }
    pub fn accel(mut self, a: Accel) -> Self {
        self.accel = a;
        self
    }
    pub fn serial(mut self, s: Serial) -> Self {
        self.serial = s;
        self
    }
    pub fn icount(mut self, on: bool) -> Self {
        self.icount = on;
        self
    }
    /// Only for runs that time nothing (see `nvme_ioeventfd`): every other
    /// use keeps the standard machine's `ioeventfd=on`.
    pub fn nvme_ioeventfd(mut self, on: bool) -> Self {
        self.nvme_ioeventfd = on;
        self
    }
    pub fn nvme_sriov(mut self, on: bool) -> Self {
        self.nvme_sriov = on;
        self
    }
    pub fn chipset(mut self, c: Chipset) -> Self {
        self.chipset = c;
        self
    }
    pub fn hardware(mut self, h: Hardware) -> Self {
        self.hardware = h;
        self
    }
    pub fn trace(mut self, event_pattern: impl Into<String>) -> Self {
        self.trace_events.push(event_pattern.into());
        self
    }
    pub fn trace_file(mut self, p: impl Into<PathBuf>) -> Self {
        self.trace_file = Some(p.into());
        self
    }
    pub fn qmp(mut self, socket: impl Into<PathBuf>) -> Self {
        self.qmp_socket = Some(socket.into());
        self
    }
    pub fn gdb(mut self, on: bool) -> Self {
        self.gdb = on;
        self
    }
    pub fn nvme_drive(mut self, options: impl Into<String>) -> Self {
        self.nvme_drive = Some(options.into());
        self
    }
    pub fn nvdimm(mut self, backing_file: impl Into<PathBuf>, bytes: u64) -> Self {
        self.nvdimm = Some((backing_file.into(), bytes));
        self
    }
    pub fn arg(mut self, a: impl Into<OsString>) -> Self {
        self.extra_args.push(a.into());
        self
    }

    /// The full argument list (without the program name).
    pub fn args(&self) -> Result<Vec<OsString>> {
        if self.icount && self.accel == Accel::Kvm {
            bail!("-icount needs TCG: it cannot count instructions under KVM");
        }
        if self.icount && self.hardware.smp_mttcg {
            bail!("-icount needs single-threaded TCG: it cannot count instructions under multi-threaded TCG");
        }
        if self.initrd.is_some() && self.kernel.is_none() {
            bail!("an initrd needs a kernel");
        }
        if self.boot_disk.is_some() && (self.kernel.is_some() || self.append.is_some()) {
            bail!(
                "a machine boots from its boot disk or from -kernel, not both (the disk's GRUB holds the command line)"
            );
        }
        let img = |i: DiskImage| qemu_escape(&self.images_dir.join(i.file));
        let mut a: Vec<OsString> = vec![];
        let mut push = |words: &[&str]| a.extend(words.iter().map(OsString::from));
        push(&[
            "-machine",
            match self.chipset {
                Chipset::Q35Iommu | Chipset::Q35NoIommu => "q35,kernel-irqchip=split,nvdimm=on",
                Chipset::I440fx => "pc,nvdimm=on",
            },
        ]);
        let hw = self.hardware;
        push(&["-m", &hw.memory_arg(), "-smp", &hw.cpus.to_string()]);
        let no_gib = if hw.gib_pages { "" } else { ",pdpe1gb=off" };
        match self.accel {
            Accel::Tcg => push(&[
                "-accel",
                if hw.smp_mttcg { "tcg,thread=multi" } else { "tcg" },
                "-cpu",
                &format!("max{no_gib}"),
            ]),
            Accel::Kvm => push(&["-accel", "kvm", "-cpu", &format!("host,-arch-capabilities{no_gib}")]),
        }
        if self.chipset == Chipset::Q35Iommu {
            let aw = hw.iommu_aw_bits.map(|b| format!(",aw-bits={b}")).unwrap_or_default();
            push(&["-device", &format!("intel-iommu,intremap=on,caching-mode=on{aw}")]);
        }
        let nvme = match &self.nvme_drive {
            Some(options) => format!("{options},if=none,id=nvm"),
            None => format!("file={},if=none,id=nvm,format=raw", img(NVME_IMAGE)),
        };
        let ioeventfd = if self.nvme_ioeventfd { "on" } else { "off" };
        if self.nvme_sriov {
            push(&["-drive", &nvme, "-device", "pcie-root-port,id=rp0,chassis=1"]);
            push(&["-device", "nvme-subsys,id=subsys0"]);
            let queues = hw.sriov_queue_props();
            let mdts = hw.nvme_mdts.map(|m| format!(",mdts={m}")).unwrap_or_default();
            push(&[
                "-device",
                &format!(
                    "nvme,id=nvme0,serial=exo0,bus=rp0,subsys=subsys0,ioeventfd={ioeventfd},sriov_max_vfs=4,\
                 {queues},msix_qsize=12{mdts}"
                ),
            ]);
            let block = hw.block_props();
            push(&["-device", &format!("nvme-ns,drive=nvm,bus=nvme0,nsid=1,shared=true{block}")]);
        } else {
            let props = hw.nvme_props();
            push(&["-drive", &nvme, "-device", &format!("nvme,serial=exo0,drive=nvm,ioeventfd={ioeventfd}{props}")]);
        }
        if hw.second_nvme {
            let nvme2 = format!("file={},if=none,id=nvm2,format=raw", img(NVME2_IMAGE));
            push(&["-drive", &nvme2, "-device", &format!("nvme,serial=exo1,drive=nvm2,ioeventfd={ioeventfd}")]);
        }
        let vblk = format!("file={},if=none,id=vblk,format=raw", img(VIRTIO_IMAGE));
        push(&["-drive", &vblk]);
        push(&["-device", "virtio-blk-pci,drive=vblk,disable-legacy=on,iommu_platform=on"]);
        let (nvdimm_path, nvdimm_bytes) = match &self.nvdimm {
            Some((p, bytes)) => (qemu_escape(p), *bytes),
            None => (img(NVDIMM_IMAGE), NVDIMM_IMAGE.bytes),
        };
        let pmem = format!("memory-backend-file,id=pmem0,share=on,mem-path={nvdimm_path},size={}M", nvdimm_bytes / MIB);
        push(&["-object", &pmem, "-device", "nvdimm,memdev=pmem0,id=nvdimm0"]);
        push(&["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
        push(&["-nic", "none", "-display", "none", "-no-reboot"]);
        let serial = match &self.serial {
            Serial::Stdio => "stdio".to_string(),
            Serial::StdioWithMonitor => "mon:stdio".to_string(),
            Serial::File(p) => format!("file:{}", p.to_string_lossy()),
        };
        push(&["-serial", &serial]);
        if self.icount {
            push(&["-icount", "shift=0"]);
        }
        for ev in &self.trace_events {
            push(&["-trace", &format!("enable={ev}")]);
        }
        if let Some(f) = &self.trace_file {
            push(&["-trace", &format!("file={}", qemu_escape(f))]);
        }
        if let Some(s) = &self.qmp_socket {
            push(&["-qmp", &format!("unix:{},server=on,wait=off", qemu_escape(s))]);
        }
        if self.gdb {
            push(&["-s", "-S"]);
        }
        if self.firmware == Firmware::Ovmf {
            a.push("-bios".into());
            a.push(crate::setup::OVMF_FIRMWARE.into());
        }
        if let Some(d) = &self.boot_disk {
            a.push("-drive".into());
            a.push(format!("file={},if=none,id=bootdisk,format=raw", qemu_escape(d)).into());
            a.push("-device".into());
            a.push("ide-hd,drive=bootdisk,bootindex=0".into());
        }
        if let Some(k) = &self.kernel {
            a.push("-kernel".into());
            a.push(k.into());
        }
        if let Some(i) = &self.initrd {
            a.push("-initrd".into());
            a.push(i.into());
        }
        if let Some(s) = &self.append {
            a.push("-append".into());
            a.push(s.into());
        }
        a.extend(self.extra_args.iter().cloned());
        Ok(a)
    }

    /// Create the disk images if needed and return the QEMU command.
    pub fn command(&self) -> Result<Command> {
        let args = self.args()?;
        ensure_images(&self.images_dir)?;
        let mut c = Command::new(QEMU);
        c.args(args);
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::display;

    fn line(m: &Machine) -> String {
        let mut c = Command::new(QEMU);
        c.args(m.args().unwrap());
        display(&c)
    }

    #[test]
    fn chipsets_differ_only_in_board_and_iommu() {
        let std = line(&Machine::new("/i"));
        let no_iommu = line(&Machine::new("/i").chipset(Chipset::Q35NoIommu));
        let pc = line(&Machine::new("/i").chipset(Chipset::I440fx));
        let iommu = " -device intel-iommu,intremap=on,caching-mode=on";
        assert!(std.contains(iommu));
        assert_eq!(std.replace(iommu, ""), no_iommu);
        assert_eq!(no_iommu.replace("q35,kernel-irqchip=split,nvdimm=on", "pc,nvdimm=on"), pc);
    }

    #[test]
    fn sriov_variant_moves_only_the_nvme() {
        let std = line(&Machine::new("/i"));
        let sriov = line(&Machine::new("/i").nvme_sriov(true));
        let nvme_dev = "-device nvme,serial=exo0,drive=nvm,ioeventfd=on ";
        assert!(std.contains(nvme_dev));
        assert!(!sriov.contains(nvme_dev));
        assert!(sriov.contains(
            "-device pcie-root-port,id=rp0,chassis=1 -device nvme-subsys,id=subsys0 \
             -device nvme,id=nvme0,serial=exo0,bus=rp0,subsys=subsys0,ioeventfd=on,sriov_max_vfs=4,\
             sriov_vq_flexible=16,sriov_vi_flexible=8,max_ioqpairs=20,msix_qsize=12 \
             -device nvme-ns,drive=nvm,bus=nvme0,nsid=1,shared=true "
        ));
        // Everything else is the standard machine, in the same order.
        let strip = |l: &str| {
            l.split(" -device ")
                .filter(|d| !d.starts_with("nvme") && !d.starts_with("pcie-root-port"))
                .collect::<Vec<_>>()
                .join(" -device ")
        };
        assert_eq!(strip(&std), strip(&sriov));
    }

    #[test]
    fn standard_tcg_line_is_exact() {
        let m = Machine::new("/r/images").kernel("/k").initrd("/boot.img").append("demo batch");
        assert_eq!(
            line(&m),
            "qemu-system-x86_64 -machine q35,kernel-irqchip=split,nvdimm=on \
             -m 512M,slots=2,maxmem=4G -smp 1 -accel tcg -cpu max \
             -device intel-iommu,intremap=on,caching-mode=on \
             -drive file=/r/images/nvme.img,if=none,id=nvm,format=raw \
             -device nvme,serial=exo0,drive=nvm,ioeventfd=on \
             -drive file=/r/images/virtio.img,if=none,id=vblk,format=raw \
             -device virtio-blk-pci,drive=vblk,disable-legacy=on,iommu_platform=on \
             -object memory-backend-file,id=pmem0,share=on,mem-path=/r/images/nvdimm.img,size=128M \
             -device nvdimm,memdev=pmem0,id=nvdimm0 \
             -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
             -nic none -display none -no-reboot -serial stdio \
             -kernel /k -initrd /boot.img -append 'demo batch'"
        );
    }

    #[test]
    fn the_recovery_machine_changes_only_its_two_media() {
        let std = line(&Machine::new("/r/images"));
        let rec = line(&recovery_machine(Path::new("/r/images"), Path::new("/w/nvme,1.img"), Path::new("/w/pm.img")));
        assert!(rec.contains("-drive file=/w/nvme,,1.img,format=raw,if=none,id=nvm "), "{rec}");
        assert!(rec.contains("mem-path=/w/pm.img,size=1152M "), "{rec}");
        let back = rec
            .replace(
                "file=/w/nvme,,1.img,format=raw,if=none,id=nvm",
                "file=/r/images/nvme.img,if=none,id=nvm,format=raw",
            )
            .replace("/w/pm.img,size=1152M", "/r/images/nvdimm.img,size=128M");
        assert_eq!(back, std);
    }

    #[test]
    fn kvm_uses_host_cpu_without_arch_capabilities() {
        let l = line(&Machine::new("/i").accel(Accel::Kvm));
        assert!(l.contains("-accel kvm -cpu host,-arch-capabilities"), "{l}");
        assert!(!l.contains("-cpu max"));
    }

    #[test]
    fn options_add_their_arguments() {
        let m = Machine::new("/i")
            .serial(Serial::File("/t/s.log".into()))
            .icount(true)
            .trace("pci_nvme_mmio_doorbell_sq")
            .trace("pci_nvme_flush_ns")
            .trace_file("/t/trace.log")
            .qmp("/t/qmp.sock")
            .gdb(true)
            .arg("-d")
            .arg("int");
        let l = line(&m);
        assert!(line(&Machine::new("/i").serial(Serial::StdioWithMonitor)).contains("-serial mon:stdio"));
        for want in [
            "-serial file:/t/s.log",
            "-icount shift=0",
            "-trace enable=pci_nvme_mmio_doorbell_sq -trace enable=pci_nvme_flush_ns",
            "-trace file=/t/trace.log",
            "-qmp unix:/t/qmp.sock,server=on,wait=off",
            "-s -S",
        ] {
            assert!(l.contains(want), "missing `{want}` in {l}");
        }
        assert!(l.ends_with("-d int"), "{l}");
    }

    #[test]
    fn nvme_ioeventfd_can_be_turned_off_and_nothing_else_changes() {
        let on = line(&Machine::new("/i"));
        let off = line(&Machine::new("/i").nvme_ioeventfd(false));
        assert!(off.contains("-device nvme,serial=exo0,drive=nvm,ioeventfd=off "), "{off}");
        assert_eq!(off.replace("ioeventfd=off", "ioeventfd=on"), on);
        assert_eq!(line(&Machine::new("/i").nvme_ioeventfd(true)), on);
    }

    #[test]
    fn variants_change_only_their_knob() {
        let std = line(&Machine::new("/i"));
        let names: Vec<_> = VARIANTS.iter().map(|v| v.name).collect();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "duplicate variant names");
        assert_eq!(line(&Machine::new("/i").hardware(variant_named("standard").unwrap().hardware)), std);
        let v = |n: &str| line(&Machine::new("/i").hardware(variant_named(n).unwrap().hardware));
        assert_eq!(v("ram-2g"), std.replace("-m 512M,slots=2,maxmem=4G", "-m 2048M,slots=2,maxmem=6144M"));
        assert_eq!(v("smp-4"), std.replace("-smp 1", "-smp 4"));
        assert_eq!(v("smp-4-mttcg"), std.replace("-smp 1 -accel tcg", "-smp 4 -accel tcg,thread=multi"));
        assert!(Machine::new("/i").hardware(Hardware::smp_mttcg(2)).icount(true).args().is_err());
        assert_eq!(
            v("no-1g-pages"),
            std.replace("-m 512M,slots=2,maxmem=4G", "-m 8192M,slots=2,maxmem=12288M")
                .replace("-cpu max", "-cpu max,pdpe1gb=off")
        );
        assert_eq!(v("iommu-aw48"), std.replace("caching-mode=on", "caching-mode=on,aw-bits=48"));
        assert_eq!(
            v("nvme-4kn"),
            std.replace("ioeventfd=on", "ioeventfd=on,logical_block_size=4096,physical_block_size=4096")
        );
        assert_eq!(v("nvme-1q"), std.replace("ioeventfd=on", "ioeventfd=on,max_ioqpairs=1"));
        assert_eq!(v("nvme-mdts1"), std.replace("ioeventfd=on", "ioeventfd=on,mdts=1"));
        assert!(v("two-nvme").contains(
            "-drive file=/i/nvme2.img,if=none,id=nvm2,format=raw -device nvme,serial=exo1,drive=nvm2,ioeventfd=on "
        ));
    }

    #[test]
    fn nvme_knobs_reach_the_sriov_definition() {
        let sv = |n: &str| line(&Machine::new("/i").nvme_sriov(true).hardware(variant_named(n).unwrap().hardware));
        let std = sv("standard");
        let pf = "sriov_max_vfs=4,sriov_vq_flexible=16,sriov_vi_flexible=8,max_ioqpairs=20,msix_qsize=12";
        let ns = "-device nvme-ns,drive=nvm,bus=nvme0,nsid=1,shared=true ";
        assert!(std.contains(pf) && std.contains(ns), "{std}");
        // 4Kn: the block size goes on the namespace, not the controller.
        assert_eq!(
            sv("nvme-4kn"),
            std.replace("shared=true ", "shared=true,logical_block_size=4096,physical_block_size=4096 ")
        );
        assert_eq!(sv("nvme-mdts1"), std.replace("msix_qsize=12", "msix_qsize=12,mdts=1"));
        // One queue pair: QEMU keeps the primary at >= 2 private pairs, so
        // the VFs are the controllers limited to one I/O pair.
        assert_eq!(sv("nvme-1q"), std.replace("max_ioqpairs=20", "max_ioqpairs=18,sriov_max_vq_per_vf=2"));
        // A second controller sits beside the SR-IOV one.
        let two = sv("two-nvme");
        assert!(two.contains(pf) && two.contains("-device nvme,serial=exo1,drive=nvm2"));
    }

    #[test]
    fn rejects_impossible_combinations() {
        assert!(Machine::new("/i").accel(Accel::Kvm).icount(true).args().is_err());
        assert!(Machine::new("/i").initrd("/x").args().is_err());
        assert!(Machine::new("/i").boot_disk("/d").kernel("/k").args().is_err());
        assert!(Machine::new("/i").boot_disk("/d").append("test=x").args().is_err());
    }

    #[test]
    fn boot_disk_and_ovmf_replace_kernel_loading() {
        let l = line(&Machine::new("/i").firmware(Firmware::Ovmf).boot_disk("/o/exo,1.img"));
        assert!(
            l.ends_with(
                "-bios /usr/share/ovmf/OVMF.fd -drive file=/o/exo,,1.img,if=none,id=bootdisk,format=raw \
                 -device ide-hd,drive=bootdisk,bootindex=0"
            ),
            "{l}"
        );
        assert!(!l.contains("-kernel"));
        let bios = line(&Machine::new("/i").boot_disk("/d.img"));
        assert!(!bios.contains("-bios") && bios.contains("id=bootdisk"), "{bios}");
    }

    #[test]
    fn commas_in_paths_are_escaped() {
        let l = line(&Machine::new("/a,b"));
        assert!(l.contains("file=/a,,b/nvme.img,if=none"), "{l}");
    }

    #[test]
    fn images_lock_is_exclusive_and_released_on_drop() {
        let dir = std::env::temp_dir().join(format!("xtask-lock-{}", std::process::id()));
        let held = lock_images(&dir).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let d = dir.clone();
        let waiter = std::thread::spawn(move || {
            let _second = lock_images(&d).unwrap(); // a new open file: contends
            tx.send(()).unwrap();
        });
        assert!(rx.recv_timeout(std::time::Duration::from_millis(300)).is_err(), "lock was not exclusive");
        drop(held);
        rx.recv_timeout(std::time::Duration::from_secs(5)).expect("lock not released on drop");
        waiter.join().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn images_are_sparse_and_never_shrunk() {
        let dir = std::env::temp_dir().join(format!("xtask-images-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // A pre-existing, larger image must keep its size and contents.
        std::fs::write(dir.join("virtio.img"), b"keep").unwrap();
        let f = OpenOptions::new().write(true).open(dir.join("virtio.img")).unwrap();
        f.set_len(VIRTIO_IMAGE.bytes + 4096).unwrap();
        ensure_images(&dir).unwrap();
        for img in IMAGES {
            let md = std::fs::metadata(dir.join(img.file)).unwrap();
            assert!(md.len() >= img.bytes);
            use std::os::unix::fs::MetadataExt;
            // Sparse: far fewer 512-byte blocks allocated than the size.
            assert!(md.blocks() * 512 < img.bytes / 4, "{} not sparse", img.file);
        }
        let v = std::fs::read(dir.join("virtio.img")).unwrap();
        assert_eq!(&v[..4], b"keep");
        assert_eq!(v.len() as u64, VIRTIO_IMAGE.bytes + 4096);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
