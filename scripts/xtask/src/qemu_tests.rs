//! The QEMU integration tests. Each boots the standard machine with
//! `-append "test=<name>"`; the kernel/init run that test and end with
//! `EXO-TEST-PASS <name>` + isa-debug-exit 0x10 (pass), `EXO-TEST-FAIL
//! <name>: <why>` + 0x11 (fail), or `[kernel] PANIC ...` + 0x12.

use crate::bad_elf;
use crate::blkdebug::Fault;
use crate::build::Artifacts;
use crate::machine::{Chipset, Firmware, Machine};
use anyhow::{Context, Result};
use std::time::Duration;

/// Extra boot-image entries a test needs beyond the programs.
pub type ExtraEntries = fn(&Artifacts) -> Result<Vec<(String, Vec<u8>)>>;

/// A QEMU test: its name and boots from the one table
/// (`exo_testlist::TESTS`, which the test root's dispatch is checked
/// against), and what the machine needs from [`DETAILS`].
#[derive(Clone, Copy)]
pub struct QemuTest {
    pub name: &'static str,
    /// The scenario of the first (or only) boot.
    pub first: &'static str,
    /// A second boot of the same machine (same disk images) into this
    /// scenario, after the first passed: for persistence across a reboot.
    /// Both boots get the same fresh `nonce=<hex>` appended, and each must
    /// print the pass line of its own scenario.
    pub then: Option<&'static str>,
    pub details: Details,
}

/// What a test needs of the machine and the harness beyond its name.
#[derive(Clone, Copy)]
pub struct Details {
    /// Extra kernel command-line words after `test=<scenario>`.
    pub args: &'static str,
    pub timeout: Duration,
    pub extra: Option<ExtraEntries>,
    /// The machine variant this test boots (the standard machine unless
    /// said otherwise).
    pub machine: fn(Machine) -> Machine,
    /// An extra ACPI table QEMU adds (`-acpitable file=...`, the header
    /// included; QEMU fixes the checksum), listed after QEMU's own.
    pub acpi_table: Option<fn() -> Vec<u8>>,
    /// Inject NMIs through a QMP socket (`inject-nmi`, every 50 ms) while
    /// the test runs.
    pub inject_nmi: bool,
    /// Failures the NVMe device shows in each boot (by boot index), through
    /// QEMU's blkdebug (`crate::blkdebug`).
    pub nvme_faults: Option<fn(usize) -> Vec<Fault>>,
    /// How the kernel gets loaded.
    pub boot: Boot,
}

/// How a test's machine loads the kernel and the boot image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Boot {
    /// QEMU's `-kernel` (PVH) with `-initrd` and `-append`.
    Direct,
    /// The firmware boots a disk image built by `crate::image` (GRUB,
    /// multiboot2), whose menu entry carries the command line.
    Grub(Firmware),
}

impl QemuTest {
    /// The kernel command line (`-append`) of the boot running `scenario`.
    pub fn append(&self, scenario: &str) -> String {
        format!("test={scenario}{}", self.details.args)
    }

    /// The scenarios of its boots, in order.
    pub fn boots(&self) -> impl Iterator<Item = &'static str> {
        std::iter::once(self.first).chain(self.then)
    }
}

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

const DEFAULT: Details = Details {
    args: "",
    timeout: DEFAULT_TIMEOUT,
    extra: None,
    machine: standard,
    acpi_table: None,
    inject_nmi: false,
    nvme_faults: None,
    boot: Boot::Direct,
};

/// The database's first sector (NVMe MiB 192, in 512-byte sectors).
const KVDB_SECTOR: u64 = 192 << 11;

fn io_errors_faults(boot: usize) -> Vec<Fault> {
    match boot {
        0 => vec![Fault::FlushesFrom(40)],
        // Meta pages at database bytes 0 and 4096; the log from 8192 on.
        _ => vec![
            Fault::FirstReadAt(KVDB_SECTOR),
            Fault::FirstReadAt(KVDB_SECTOR + 8),
            Fault::WritesAt(KVDB_SECTOR + 16 + 48),
        ],
    }
}

/// Every QEMU test, in the table's order, with its details.
pub fn tests() -> Vec<QemuTest> {
    exo_testlist::TESTS
        .iter()
        .map(|t| QemuTest {
            name: t.name,
            first: t.first,
            then: t.then,
            details: DETAILS.iter().find(|(n, _)| *n == t.name).map_or(DEFAULT, |(_, d)| *d),
        })
        .collect()
}

/// The tests that need more than [`DEFAULT`], by name (a host test checks
/// every name is in the table).
pub const DETAILS: &[(&str, Details)] = &[
    // SMP: every CPU of a 4-CPU (and a 2-CPU) machine under multi-threaded
    // TCG reports in to init on its own core.
    ("smp_boot", Details { machine: smp_4, ..DEFAULT }),
    ("smp_boot_2", Details { machine: smp_2, ..DEFAULT }),
    // CPU 1 reads a page in a loop while CPU 0 unmaps it (4 CPUs, truly
    // concurrent); and the same on 2 CPUs under single-threaded TCG with
    // -icount, where the TSC counts guest instructions (the shootdown's
    // cost in instructions).
    ("tlb_shootdown", Details { machine: smp_4, ..DEFAULT }),
    ("tlb_shootdown_icount", Details { machine: smp_2_icount, ..DEFAULT }),
    // All 4 CPUs make page-table calls on the same slots at once (about
    // 30 s: with 4 guest CPUs on 2 host cores every shootdown waits for
    // the host to schedule the other vCPU threads).
    ("smp_calls_race", Details { machine: smp_4, timeout: Duration::from_secs(120), ..DEFAULT }),
    // Children pinned to every CPU at once (init's scheduler on each):
    // the isolation attacks and five-syscall check against victims running
    // on the other CPUs (4 and 2 CPUs); the structure-aware fuzzer on both
    // CPUs at once, 1,000,000 calls (about 5,000 calls/s on this loaded
    // 2-core host: every call takes the one kernel lock, and a vCPU
    // spinning for it can keep its holder's host thread from running).
    ("smp_isolation", Details { machine: smp_4, timeout: Duration::from_secs(120), ..DEFAULT }),
    ("smp_isolation_2", Details { machine: smp_2, timeout: Duration::from_secs(120), ..DEFAULT }),
    // One child on both CPUs at once (a second activation on CPU 1).
    ("smp_activations", Details { machine: smp_2, ..DEFAULT }),
    ("sizeclass_smp_heap", Details { machine: smp_2, ..DEFAULT }),
    // The block service at QD1 with the driver polling on CPU 1 and its
    // client spinning on CPU 0 (after a pass with both on CPU 0): counts
    // checked, latencies printed (`eval --drivers --smp 2` boots it).
    ("qd1poll_own_core", Details { machine: smp_2, timeout: Duration::from_secs(120), ..DEFAULT }),
    // libdb readrandom: a reader on CPU 0, then readers on CPUs 0 and 1 at
    // once, on read-only shares of one database on the NVDIMM (2 CPUs,
    // truly concurrent; the speed-up is measured by `eval --readscale`).
    ("smp_readrandom", Details { machine: smp_2, timeout: Duration::from_secs(120), ..DEFAULT }),
    ("smp_fuzz", Details { machine: smp_2, timeout: Duration::from_secs(420), ..DEFAULT }),
    // Idle CPUs halt: CPU 1 with nothing to run halts (kernel counts),
    // its ticks and 50 shootdowns wake it, a child pinned to it runs.
    ("idlehalt_smp", Details { machine: smp_2, ..DEFAULT }),
    // The polling driver on CPU 1 again, its client sleeping until the
    // completion's MSI-X interrupt (routed by init) wakes it; CPU 0 halts.
    ("qd1poll_own_sleep", Details { machine: smp_2, timeout: Duration::from_secs(120), ..DEFAULT }),
    // NMIs injected from outside (QMP) land in the kernel and in processes;
    // each is taken on its own IST stack, counted and returned from.
    ("nmi", Details { inject_nmi: true, ..DEFAULT }),
    // The device fails: boot 1 every flush from the 40th on (kvdb has
    // committed a few dozen times by then); boot 2 the first reads of the
    // database's two meta pages and every write of its log's block 48
    // (the database lives at NVMe MiB 192, see initlib::kvdb).
    ("io_errors", Details { nvme_faults: Some(io_errors_faults), ..DEFAULT }),
    // 50 kills and recoveries of kvdb on the block service.
    ("kill_db", Details { timeout: Duration::from_secs(240), ..DEFAULT }),
    // 16 kills and restarts of the NVMe driver under a committing kvdb.
    ("kill_driver", Details { timeout: Duration::from_secs(120), ..DEFAULT }),
    // (syscall_fuzz: 100,000 random calls, then 1,000,000 structure-aware
    // ones, 8 probe processes with a shadow model; about 4 s under TCG.)
    ("bad_elf", Details { extra: Some(malformed_programs), ..DEFAULT }),
    // Rebootless kernel upgrade: upgrade images of build A, of build B
    // (built here, linked for the spare slot) and of B damaged.
    ("kernel_upgrade", Details { extra: Some(crate::kernel_b::entries), ..DEFAULT }),
    ("kernel_upgrade_bad", Details { extra: Some(crate::kernel_b::entries), ..DEFAULT }),
    // A->B->A->B under kvdb load with init counting on CPU 1 (16 s on a
    // quiet host, 115-175 s at host load 10: CPU 1 runs a space, so every
    // page-table edit of the kvdb loops shoots it down — ~16,000 times,
    // each waiting for the host to run CPU 1's thread; see eval/UPGRADE.md).
    (
        "kernel_upgrade_smp",
        Details { extra: Some(crate::kernel_b::entries), machine: smp_2, timeout: Duration::from_secs(300), ..DEFAULT },
    ),
    // Booted through GRUB from the BIOS disk image (the upgrade images in
    // GRUB's module), one upgrade A->B under kvdb load.
    (
        "kernel_upgrade_grub",
        Details {
            extra: Some(crate::kernel_b::entries),
            boot: Boot::Grub(Firmware::SeaBios),
            timeout: Duration::from_secs(120),
            ..DEFAULT
        },
    ),
    // The highest CPU ignores park requests (`upsmp_noprk`): refused, the
    // two that parked go back to A.
    (
        "kernel_upgrade_smp_stuck",
        Details { extra: Some(crate::kernel_b::entries), machine: smp_4, args: " upsmp_noprk", ..DEFAULT },
    ),
    // 4 CPUs, three counting in init: A->B->A, every CPU back each time.
    ("kernel_upgrade_smp4", Details { extra: Some(crate::kernel_b::entries), machine: smp_4, ..DEFAULT }),
    (
        "kernel_upgrade_nosmp",
        Details { extra: Some(crate::kernel_b::entries), machine: smp_2, args: " nosmp", ..DEFAULT },
    ),
    // (tlb_alias, ctlpage_hostile, dma_revoke: the first review's isolation
    // holes, attacked from a probe process. irq_compat_forged fails on QEMU
    // 7.2: its VT-d forwards compatibility-format MSIs with interrupt
    // remapping on, see testinit's devices.rs and the nvmed README.
    // pmem_persist: boot 1 writes a nonce pattern over 4 MiB of the NVDIMM
    // through init's mapping and flushes it, boot 2 checks every byte.)
    //
    // Two NVMe controllers driven at once by two driver processes, each
    // confirmed by serial number, each device's DMA confined to its own
    // driver's pages (the machine gets the second controller whatever
    // variant it is).
    (
        "two_nvme",
        Details {
            machine: |m| {
                let hw = m.hardware;
                m.hardware(crate::machine::Hardware { second_nvme: true, ..hw })
            },
            timeout: Duration::from_secs(240),
            ..DEFAULT
        },
    ),
    // The NVMe behind a PCIe root port as an SR-IOV physical function: the
    // kernel walks the bridge and the SR-IOV capability, and the userspace
    // driver does its read/write/verify run through the bridge.
    ("sriov_pf", Details { machine: sriov, ..DEFAULT }),
    // An application drives its own NVMe virtual function: the PF's driver
    // brings VF 1's secondary controller online (after init's FLR of the
    // PF releases the primary's flexible resources), and a separate
    // process does verified random I/O through the VF with no DMA fault.
    ("sriov_vf", Details { machine: sriov, timeout: Duration::from_secs(120), ..DEFAULT }),
    // A malformed ACPI table costs only what it describes. The board must
    // not build its own copy (the first table of a signature is the one
    // read): q35 without VT-d builds no DMAR, i440fx no MCFG. With a
    // truncated DMAR the machine boots with its devices but without DMA;
    // with a truncated MCFG, without PCI devices. Both reach init.
    (
        "acpi_bad_dmar",
        Details { machine: |m| m.chipset(Chipset::Q35NoIommu), acpi_table: Some(truncated_dmar), ..DEFAULT },
    ),
    ("acpi_bad_mcfg", Details { machine: |m| m.chipset(Chipset::I440fx), acpi_table: Some(truncated_mcfg), ..DEFAULT }),
    // The drivers benchmark's exokernel rows, short: a smoke test that the
    // `EXO-BENCH` lines come out (the eval harness boots `test=nvme_bench`).
    ("nvme_bench", Details { args: " quick", ..DEFAULT }),
    // libdb as an application libOS (`kvdb`), on the NVMe through the
    // block service and on the NVDIMM mapped into it: boot 1 creates and
    // commits, boot 2 recovers and checks.
    ("libdb_nvme", Details { timeout: Duration::from_secs(240), ..DEFAULT }),
    ("libdb_pmem", Details { timeout: Duration::from_secs(240), ..DEFAULT }),
    // libdb driving its own NVMe virtual function, the driver linked in:
    // the PF's driver brings VF 1 online (each boot: init's FLR and all),
    // kvdb gets VF 1's BAR and handle; boot 1 creates, boot 2 checks.
    ("libdb_vf", Details { machine: sriov, timeout: Duration::from_secs(240), ..DEFAULT }),
    // libfs linked into an application (`fsapp`) on NVDIMM pages init moves
    // into it: boot 1 makes a tree and stores into a file through its
    // mapped pages (persisting exactly libfs's `persist_ranges`), boot 2
    // recovers, runs fsck and verifies every byte and name.
    ("libfs_pmem", Details { timeout: Duration::from_secs(240), ..DEFAULT }),
    // libfs on NVMe MiB 256..384 through the block service, files mapped
    // by fsapp's own pager (1 MiB budget): boot 1 makes the tree and
    // stores into a file through its mapping + msync, boot 2 recovers and
    // verifies; `libfs_big` writes and reads back an 8 MiB file through
    // the mapping and checks the pager's counts.
    ("libfs_nvme", Details { timeout: Duration::from_secs(240), ..DEFAULT }),
    ("libfs_big", Details { timeout: Duration::from_secs(240), ..DEFAULT }),
    // libdb on a libfs file (kvdb with libfs linked in), on the NVDIMM and
    // on the NVMe through the block service: boot 1 makes the file system
    // and the database file and commits, boot 2 runs fsck, recovers, checks.
    ("libdb_on_libfs", Details { timeout: Duration::from_secs(240), ..DEFAULT }),
    // libfs linked into `fsbench`: the five `eval --fs` workloads, a few
    // operations each, on NVDIMM pages and on NVMe through the block
    // service; every workload's result verified, one EXO-FS line each.
    ("libfs_bench", Details { timeout: Duration::from_secs(120), ..DEFAULT }),
    // The boot media (`cargo xtask image`): the disk image booted by
    // SeaBIOS and by OVMF through GRUB, the database run on NVMe.
    ("image_bios", Details { boot: Boot::Grub(Firmware::SeaBios), timeout: Duration::from_secs(120), ..DEFAULT }),
    ("image_uefi", Details { boot: Boot::Grub(Firmware::Ovmf), timeout: Duration::from_secs(120), ..DEFAULT }),
];

fn sriov(m: Machine) -> Machine {
    m.nvme_sriov(true)
}

/// The representative subset the default `cargo xtask test` also runs on
/// a few machine variants (the full matrix is `--machine-matrix`): boot
/// and RAM, the five calls, NVMe I/O through VT-d, a DMA attack, and on
/// each NVMe variant the paths that used to assume the standard disk.
pub const VARIANT_SUBSET: &[(&str, &[&str])] = &[
    ("ram-128m", &["boot_to_init", "five_syscalls", "nvme_rw"]),
    ("ram-2g", &["boot_to_init", "five_syscalls", "nvme_rw", "pmem_persist", "ctlpage_hostile"]),
    ("ram-8g", &["boot_to_init", "five_syscalls", "nvme_rw", "pmem_persist"]),
    ("no-1g-pages", &["boot_to_init", "userspace_alloc"]),
    ("smp-4", &["boot_to_init", "nmi", "five_syscalls", "nvme_rw"]),
    ("iommu-aw48", &["boot_to_init", "five_syscalls", "nvme_rw", "dma_attack_blocked", "sriov_vf"]),
    ("nvme-4kn", &["nvme_persist", "block_service", "libdb_nvme", "libdb_vf", "libdb_on_libfs"]),
    ("nvme-1q", &["nvme_rw", "block_service", "irq_compat_forged", "sriov_vf"]),
    ("nvme-mdts1", &["nvme_rw", "block_service"]),
    ("two-nvme", &["two_nvme", "sriov_vf"]),
];

fn standard(m: Machine) -> Machine {
    m
}

fn smp_2(m: Machine) -> Machine {
    m.hardware(crate::machine::Hardware::smp_mttcg(2))
}

fn smp_2_icount(m: Machine) -> Machine {
    m.hardware(crate::machine::Hardware { cpus: 2, ..crate::machine::Hardware::STANDARD }).icount(true)
}

fn smp_4(m: Machine) -> Machine {
    m.hardware(crate::machine::Hardware::smp_mttcg(4))
}

/// An ACPI table of `len` bytes: a header declaring that length (QEMU
/// recomputes the checksum) and zeros.
fn acpi_table(signature: &[u8; 4], len: u32) -> Vec<u8> {
    let mut t = vec![0u8; len as usize];
    t[..4].copy_from_slice(signature);
    t[4..8].copy_from_slice(&len.to_le_bytes());
    t[8] = 1; // revision
    t[10..16].copy_from_slice(b"EXOBAD");
    t
}

/// A DMAR cut off inside its fixed part (which is 48 bytes).
fn truncated_dmar() -> Vec<u8> {
    acpi_table(b"DMAR", 40)
}

/// An MCFG cut off before its first allocation entry (the fixed part is
/// 44 bytes).
fn truncated_mcfg() -> Vec<u8> {
    acpi_table(b"MCFG", 40)
}

/// `bad_elf/*` entries derived from init (always present).
fn malformed_programs(arts: &Artifacts) -> Result<Vec<(String, Vec<u8>)>> {
    let init = arts.program(crate::build::INIT).context("no init program to derive malformed ELFs from")?;
    let bytes = std::fs::read(init).with_context(|| format!("reading {}", init.display()))?;
    bad_elf::variants(&bytes).context("making malformed ELFs from init")
}

/// Tests whose name contains any filter (all tests when no filter).
pub fn select<'a>(tests: &'a [QemuTest], filters: &[String]) -> Vec<&'a QemuTest> {
    tests.iter().filter(|t| filters.is_empty() || filters.iter().any(|f| t.name.contains(f.as_str()))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_test_of_the_table_is_here_and_details_name_real_tests() {
        let all = tests();
        assert_eq!(all.len(), exo_testlist::TESTS.len());
        assert_eq!(all.len(), 69, "a test was added or lost: update this count");
        for (name, _) in DETAILS {
            assert!(exo_testlist::named(name).is_some(), "details for {name}, which is no test");
        }
        for t in &all {
            assert!(t.details.timeout >= DEFAULT_TIMEOUT);
            for b in t.boots() {
                assert!(t.append(b).starts_with(&format!("test={b}")));
            }
        }
        let bad_elf = all.iter().find(|t| t.name == "bad_elf").unwrap();
        assert!(bad_elf.details.extra.is_some());
        let bench = all.iter().find(|t| t.name == "nvme_bench").unwrap();
        assert_eq!(bench.append(bench.first), "test=nvme_bench quick");
        let grub: Vec<_> = all.iter().filter(|t| t.details.boot != Boot::Direct).map(|t| t.name).collect();
        assert_eq!(grub, ["image_bios", "image_uefi", "kernel_upgrade_grub"]);
        let persist = all.iter().find(|t| t.name == "nvme_persist").unwrap();
        assert!(persist.boots().eq(["nvme_persist_write", "nvme_persist_check"]));
    }

    #[test]
    fn variant_subset_names_real_variants_and_tests() {
        let all = tests();
        for (v, names) in VARIANT_SUBSET {
            assert!(crate::machine::variant_named(v).is_some(), "{v}");
            for t in *names {
                assert!(all.iter().any(|x| x.name == *t), "{t}");
            }
        }
    }

    #[test]
    fn filters_select_by_substring() {
        let all = tests();
        let f = |s: &[&str]| {
            select(&all, &s.iter().map(|x| x.to_string()).collect::<Vec<_>>())
                .iter()
                .map(|t| t.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(f(&[]).len(), all.len());
        assert_eq!(f(&["share_reg"]), ["share_region"]);
        assert!(all.iter().filter(|t| t.details.inject_nmi).map(|t| t.name).eq(["nmi"]));
        assert_eq!(f(&["bad_elf", "isolation"]), ["isolation", "bad_elf", "smp_isolation", "smp_isolation_2"]);
        assert!(f(&["nothing-matches"]).is_empty());
    }
}
