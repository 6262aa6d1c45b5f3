//! The QEMU integration tests, defined once. Each test is one boot or two
//! (a create boot and a check boot of the same machine and disks, for
//! persistence across a reboot); each boot runs one *scenario* of the test
//! root (`apps/src/bin/testinit`), named on the kernel command line as
//! `test=<scenario>`, and passes with `EXO-TEST-PASS <scenario>`.
//!
//! The harness (`scripts/xtask/src/qemu_tests.rs`) adds what the machine
//! needs (variant, timeout, extra boot-image entries, NMI injection) keyed
//! by test name; the test root dispatches on the scenario names. Host
//! tests check both against this table.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

/// One QEMU test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Test {
    /// The name `cargo xtask test <filter>` selects and reports.
    pub name: &'static str,
    /// The scenario of the first (or only) boot.
    pub first: &'static str,
    /// The scenario of the second boot of a two-boot test.
    pub then: Option<&'static str>,
}

impl Test {
    /// The scenarios of its boots, in order.
    pub fn boots(&self) -> impl Iterator<Item = &'static str> {
        core::iter::once(self.first).chain(self.then)
    }
}

/// A one-boot test: its scenario has its name.
const fn one(name: &'static str) -> Test {
    Test { name, first: name, then: None }
}

/// A two-boot test: `first`, then a reboot of the same machine into `then`.
const fn two(name: &'static str, first: &'static str, then: &'static str) -> Test {
    Test { name, first, then: Some(then) }
}

/// Every QEMU test, in the order `cargo xtask test` runs them.
pub const TESTS: &[Test] = &[
    one("boot_to_init"),
    one("nmi"),
    one("five_syscalls"),
    one("isolation"),
    one("share_region"),
    one("fault_upcall"),
    one("preemption"),
    one("userspace_alloc"),
    one("syscall_fuzz"),
    one("syscall_matrix"),
    one("bad_elf"),
    one("tlb_alias"),
    one("ctlpage_hostile"),
    one("dma_revoke"),
    one("nvme_rw"),
    one("nvme_irq"),
    one("dma_attack_blocked"),
    one("irq_forged_handle_blocked"),
    one("irq_compat_forged"),
    one("device_ownership"),
    two("nvme_persist", "nvme_persist_write", "nvme_persist_check"),
    two("pmem_persist", "pmem_persist_write", "pmem_persist_check"),
    one("block_service"),
    one("two_nvme"),
    one("virtio_blk_rw"),
    one("sriov_pf"),
    one("sriov_vf"),
    one("acpi_bad_dmar"),
    one("acpi_bad_mcfg"),
    one("nvme_bench"),
    two("libdb_nvme", "libdb_nvme_create", "libdb_nvme_check"),
    two("libdb_pmem", "libdb_pmem_create", "libdb_pmem_check"),
    two("libdb_vf", "libdb_vf_create", "libdb_vf_check"),
    two("libfs_pmem", "libfs_pmem_create", "libfs_pmem_check"),
    one("libfs_share"),
    one("shell_fs"),
    two("libfs_nvme", "libfs_nvme_create", "libfs_nvme_check"),
    one("libfs_big"),
    two("libdb_on_libfs", "libdb_on_libfs_create", "libdb_on_libfs_check"),
    two("io_errors", "io_errors_flush", "io_errors_check"),
    one("kill_db"),
    one("kill_driver"),
    one("libfs_bench"),
    one("image_bios"),
    one("image_uefi"),
    one("vector_state"),
    one("pmemsmp_memfns"),
    one("smp_boot"),
    one("smp_boot_2"),
    one("tlb_shootdown"),
    one("tlb_shootdown_icount"),
    one("smp_calls_race"),
    one("kernel_upgrade"),
    one("kernel_upgrade_bad"),
    one("kernel_upgrade_smp"),
    one("kernel_upgrade_smp_stuck"),
    one("kernel_upgrade_grub"),
    one("kernel_upgrade_smp4"),
    one("kernel_upgrade_nosmp"),
    one("smp_isolation"),
    one("smp_isolation_2"),
    one("smp_fuzz"),
    one("smp_activations"),
    one("qd1poll_shared_core"),
    one("qd1poll_own_core"),
    one("smp_readrandom"),
    one("sizeclass_smp_heap"),
    one("idlehalt_smp"),
    one("qd1poll_own_sleep"),
];

/// Scenarios the test root runs that are no test of their own: booted by
/// `cargo xtask eval` (`microbench`: kernel-crossing costs; `fsbench_eval`:
/// libfs's side of `eval --fs`) and by the
/// power-fail pass (`powerfail_load` on the logged drive, `powerfail_check`
/// on each rebuilt medium; `cargo xtask powerfail`), and `recovery_nvme` /
/// `recovery_pmem` (`eval --recovery`'s timed open, on its own machine).
pub const EXTRA_SCENARIOS: &[&str] =
    &["microbench", "fsbench_eval", "powerfail_load", "powerfail_check", "recovery_nvme", "recovery_pmem"];

/// Every scenario the test root must have: each boot of each test, and
/// the extra ones.
pub fn scenarios() -> impl Iterator<Item = &'static str> {
    TESTS.iter().flat_map(|t| t.boots()).chain(EXTRA_SCENARIOS.iter().copied())
}

/// The test with this name.
pub fn named(name: &str) -> Option<&'static Test> {
    TESTS.iter().find(|t| t.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn names_and_scenarios_are_unique_and_two_boot_tests_name_their_boots() {
        let names: BTreeSet<_> = TESTS.iter().map(|t| t.name).collect();
        assert_eq!(names.len(), TESTS.len());
        let all: Vec<_> = scenarios().collect();
        let set: BTreeSet<_> = all.iter().collect();
        assert_eq!(set.len(), all.len());
        for t in TESTS {
            if t.then.is_some() {
                assert!(t.boots().all(|b| b.starts_with(t.name) && b != t.name), "{t:?}");
            } else {
                assert_eq!(t.first, t.name);
            }
        }
        assert_eq!(named("nvme_persist").unwrap().then, Some("nvme_persist_check"));
    }

    /// The arms of the test root's dispatch (`"scenario" =>`), read from
    /// its source.
    fn dispatch_arms() -> BTreeSet<String> {
        let src = include_str!("../../src/bin/testinit/dispatch.rs");
        let start = src.find("match name {").expect("dispatch.rs has a `match name {`");
        src[start..]
            .lines()
            .filter_map(|l| {
                let l = l.trim_start();
                let rest = l.strip_prefix('"')?;
                let end = rest.find('"')?;
                rest[end + 1..].trim_start().starts_with("=>").then(|| rest[..end].to_string())
            })
            .collect()
    }

    #[test]
    fn every_scenario_has_a_dispatch_arm_and_every_arm_a_scenario() {
        let arms = dispatch_arms();
        let want: BTreeSet<String> = scenarios().map(String::from).collect();
        let missing: Vec<_> = want.difference(&arms).collect();
        let unlisted: Vec<_> = arms.difference(&want).collect();
        assert!(missing.is_empty(), "scenarios without a dispatch arm in testinit: {missing:?}");
        assert!(unlisted.is_empty(), "testinit arms not in the table: {unlisted:?}");
    }
}
