//! The QEMU integration tests. Each boots the standard machine with
//! `-append "test=<name>"`; the kernel/init run that test and end with
//! `EXO-TEST-PASS <name>` + isa-debug-exit 0x10 (pass), `EXO-TEST-FAIL
//! <name>: <why>` + 0x11 (fail), or `[kernel] PANIC ...` + 0x12.

use crate::bad_elf;
use crate::build::Artifacts;
use crate::machine::{Chipset, Machine};
use anyhow::{Context, Result};
use std::time::Duration;

/// Extra boot-image entries a test needs beyond the programs.
pub type ExtraEntries = fn(&Artifacts) -> Result<Vec<(String, Vec<u8>)>>;

pub struct QemuTest {
    pub name: &'static str,
    /// The kernel command line (`-append`).
    pub append: &'static str,
    pub timeout: Duration,
    pub extra: Option<ExtraEntries>,
    /// A second boot of the same machine (same disk images) with this
    /// command line, after the first passed: for persistence across a
    /// reboot. Both boots get the same fresh `nonce=<hex>` appended, and
    /// each must print the pass line of its own `test=` name.
    pub then: Option<&'static str>,
    /// The machine variant this test boots (the standard machine unless
    /// said otherwise).
    pub machine: fn(Machine) -> Machine,
    /// An extra ACPI table QEMU adds (`-acpitable file=...`, the header
    /// included; QEMU fixes the checksum), listed after QEMU's own.
    pub acpi_table: Option<fn() -> Vec<u8>>,
    /// Inject NMIs through a QMP socket (`inject-nmi`, every 50 ms) while
    /// the test runs.
    pub inject_nmi: bool,
}

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

const fn test(name: &'static str, append: &'static str) -> QemuTest {
    QemuTest {
        name,
        append,
        timeout: DEFAULT_TIMEOUT,
        extra: None,
        then: None,
        machine: standard,
        acpi_table: None,
        inject_nmi: false,
    }
}

pub const TESTS: &[QemuTest] = &[
    test("boot_to_init", "test=boot_to_init"),
    // NMIs injected from outside (QMP) land in the kernel and in processes;
    // each is taken on its own IST stack, counted and returned from.
    QemuTest {
        inject_nmi: true,
        ..test("nmi", "test=nmi")
    },
    test("five_syscalls", "test=five_syscalls"),
    test("isolation", "test=isolation"),
    test("share_region", "test=share_region"),
    test("fault_upcall", "test=fault_upcall"),
    test("preemption", "test=preemption"),
    test("userspace_alloc", "test=userspace_alloc"),
    // 100,000 random calls, then 1,000,000 structure-aware ones (8 probe
    // processes with a shadow model, directed alias structures first);
    // about 4 s of QEMU time under TCG.
    test("syscall_fuzz", "test=syscall_fuzz"),
    // Every call against every kind of entry (probe `matrix`, table-driven).
    test("syscall_matrix", "test=syscall_matrix"),
    QemuTest {
        extra: Some(malformed_programs),
        ..test("bad_elf", "test=bad_elf")
    },
    // The first review's isolation holes, attacked from a probe process:
    // a stale alias after create/create_as/move/unmap must fault; a control
    // page in pmem, device registers or a lent frame kills only its owner;
    // a borrowed page cannot be given to a device.
    test("tlb_alias", "test=tlb_alias"),
    test("ctlpage_hostile", "test=ctlpage_hostile"),
    test("dma_revoke", "test=dma_revoke"),
    test("nvme_rw", "test=nvme_rw"),
    test("nvme_irq", "test=nvme_irq"),
    test("dma_attack_blocked", "test=dma_attack_blocked"),
    test(
        "irq_forged_handle_blocked",
        "test=irq_forged_handle_blocked",
    ),
    // Fails on QEMU 7.2: its VT-d forwards compatibility-format MSIs with
    // interrupt remapping on (see init's devices.rs and the nvmed README).
    test("irq_compat_forged", "test=irq_compat_forged"),
    test("device_ownership", "test=device_ownership"),
    QemuTest {
        then: Some("test=nvme_persist_check"),
        ..test("nvme_persist", "test=nvme_persist_write")
    },
    // Persistent memory: boot 1 writes a nonce pattern over 4 MiB of the
    // NVDIMM through init's mapping and flushes it (also: the kernel info
    // page describes the 128 MiB range, its pages are LENT, moved pages
    // work in a child); boot 2 checks every byte.
    QemuTest {
        then: Some("test=pmem_persist_check"),
        ..test("pmem_persist", "test=pmem_persist_write")
    },
    test("block_service", "test=block_service"),
    // Two NVMe controllers driven at once by two driver processes, each
    // confirmed by serial number, each device's DMA confined to its own
    // driver's pages (the machine gets the second controller whatever
    // variant it is).
    QemuTest {
        machine: |m| {
            let hw = m.hardware;
            m.hardware(crate::machine::Hardware {
                second_nvme: true,
                ..hw
            })
        },
        timeout: Duration::from_secs(180),
        ..test("two_nvme", "test=two_nvme")
    },
    test("virtio_blk_rw", "test=virtio_blk_rw"),
    // The NVMe behind a PCIe root port as an SR-IOV physical function: the
    // kernel walks the bridge and the SR-IOV capability, and the userspace
    // driver does its read/write/verify run through the bridge.
    QemuTest {
        machine: |m| m.nvme_sriov(true),
        ..test("sriov_pf", "test=sriov_pf")
    },
    // An application drives its own NVMe virtual function: the PF's driver
    // brings VF 1's secondary controller online (after init's FLR of the
    // PF releases the primary's flexible resources), and a separate
    // process does verified random I/O through the VF with no DMA fault.
    QemuTest {
        machine: |m| m.nvme_sriov(true),
        timeout: Duration::from_secs(120),
        ..test("sriov_vf", "test=sriov_vf")
    },
    // A malformed ACPI table costs only what it describes. The board must
    // not build its own copy (the first table of a signature is the one
    // read): q35 without VT-d builds no DMAR, i440fx no MCFG. With a
    // truncated DMAR the machine boots with its devices but without DMA;
    // with a truncated MCFG, without PCI devices. Both reach init.
    QemuTest {
        machine: |m| m.chipset(Chipset::Q35NoIommu),
        acpi_table: Some(truncated_dmar),
        ..test("acpi_bad_dmar", "test=acpi_bad_dmar")
    },
    QemuTest {
        machine: |m| m.chipset(Chipset::I440fx),
        acpi_table: Some(truncated_mcfg),
        ..test("acpi_bad_mcfg", "test=acpi_bad_mcfg")
    },
    // The drivers benchmark's exokernel rows, short: a smoke test that the
    // `EXO-BENCH` lines come out (the eval harness boots `test=nvme_bench`).
    QemuTest {
        append: "test=nvme_bench quick",
        ..test("nvme_bench", "")
    },
    // libdb as an application libOS (`kvdb`), on the NVMe through the
    // block service and on the NVDIMM mapped into it: boot 1 creates and
    // commits, boot 2 recovers and checks.
    QemuTest {
        timeout: Duration::from_secs(180),
        then: Some("test=libdb_nvme_check"),
        ..test("libdb_nvme", "test=libdb_nvme_create")
    },
    QemuTest {
        timeout: Duration::from_secs(180),
        then: Some("test=libdb_pmem_check"),
        ..test("libdb_pmem", "test=libdb_pmem_create")
    },
    // libdb driving its own NVMe virtual function, the driver linked in:
    // the PF's driver brings VF 1 online (each boot: init's FLR and all),
    // kvdb gets VF 1's BAR and handle; boot 1 creates, boot 2 checks.
    QemuTest {
        machine: |m| m.nvme_sriov(true),
        timeout: Duration::from_secs(180),
        then: Some("test=libdb_vf_check"),
        ..test("libdb_vf", "test=libdb_vf_create")
    },
];

/// The representative subset the default `cargo xtask test` also runs on
/// a few machine variants (the full matrix is `--machine-matrix`): boot
/// and RAM, the five calls, NVMe I/O through VT-d, a DMA attack.
pub const VARIANT_SUBSET: &[(&str, &[&str])] = &[
    ("ram-128m", &["boot_to_init", "five_syscalls", "nvme_rw"]),
    (
        "ram-2g",
        &["boot_to_init", "five_syscalls", "nvme_rw", "pmem_persist"],
    ),
    (
        "ram-8g",
        &["boot_to_init", "five_syscalls", "nvme_rw", "pmem_persist"],
    ),
    ("no-1g-pages", &["boot_to_init", "userspace_alloc"]),
    (
        "smp-4",
        &["boot_to_init", "nmi", "five_syscalls", "nvme_rw"],
    ),
    (
        "iommu-aw48",
        &[
            "boot_to_init",
            "five_syscalls",
            "nvme_rw",
            "dma_attack_blocked",
            "sriov_vf",
        ],
    ),
];

/// The `test=` name of a command line (what its pass line names).
pub fn pass_name(append: &str) -> Option<&str> {
    append
        .split_whitespace()
        .find_map(|w| w.strip_prefix("test="))
}

fn standard(m: Machine) -> Machine {
    m
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
    let init = arts
        .program(crate::build::INIT)
        .context("no init program to derive malformed ELFs from")?;
    let bytes = std::fs::read(init).with_context(|| format!("reading {}", init.display()))?;
    bad_elf::variants(&bytes).context("making malformed ELFs from init")
}

/// Tests whose name contains any filter (all tests when no filter).
pub fn select<'a>(tests: &'a [QemuTest], filters: &[String]) -> Vec<&'a QemuTest> {
    tests
        .iter()
        .filter(|t| filters.is_empty() || filters.iter().any(|f| t.name.contains(f.as_str())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        let names: Vec<_> = TESTS.iter().map(|t| t.name).collect();
        assert_eq!(
            names,
            [
                "boot_to_init",
                "nmi",
                "five_syscalls",
                "isolation",
                "share_region",
                "fault_upcall",
                "preemption",
                "userspace_alloc",
                "syscall_fuzz",
                "syscall_matrix",
                "bad_elf",
                "tlb_alias",
                "ctlpage_hostile",
                "dma_revoke",
                "nvme_rw",
                "nvme_irq",
                "dma_attack_blocked",
                "irq_forged_handle_blocked",
                "irq_compat_forged",
                "device_ownership",
                "nvme_persist",
                "pmem_persist",
                "block_service",
                "two_nvme",
                "virtio_blk_rw",
                "sriov_pf",
                "sriov_vf",
                "acpi_bad_dmar",
                "acpi_bad_mcfg",
                "nvme_bench",
                "libdb_nvme",
                "libdb_pmem",
                "libdb_vf"
            ]
        );
        for t in TESTS {
            if let Some(then) = t.then {
                // A two-boot test: each boot names its own phase.
                assert!(pass_name(t.append).unwrap().starts_with(t.name));
                assert!(pass_name(then).unwrap().starts_with(t.name));
                continue;
            }
            // `test=<name>`, possibly with more words (e.g. `quick`).
            assert_eq!(pass_name(t.append), Some(t.name));
            assert!(t.timeout >= DEFAULT_TIMEOUT);
        }
        assert!(TESTS
            .iter()
            .find(|t| t.name == "bad_elf")
            .unwrap()
            .extra
            .is_some());
    }

    #[test]
    fn variant_subset_names_real_variants_and_tests() {
        for (v, tests) in VARIANT_SUBSET {
            assert!(crate::machine::variant_named(v).is_some(), "{v}");
            for t in *tests {
                assert!(TESTS.iter().any(|x| x.name == *t), "{t}");
            }
        }
    }

    #[test]
    fn filters_select_by_substring() {
        let f = |s: &[&str]| {
            select(TESTS, &s.iter().map(|x| x.to_string()).collect::<Vec<_>>())
                .iter()
                .map(|t| t.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(f(&[]).len(), TESTS.len());
        assert_eq!(f(&["share"]), ["share_region"]);
        assert!(TESTS
            .iter()
            .filter(|t| t.inject_nmi)
            .map(|t| t.name)
            .eq(["nmi"]));
        assert_eq!(f(&["bad_elf", "isolation"]), ["isolation", "bad_elf"]);
        assert!(f(&["nothing-matches"]).is_empty());
    }
}
