//! The test root's dispatch: scenario name → scenario. The scenario names
//! are `exo_testlist::scenarios()` (a host test in `apps/testlist` checks
//! that this `match` has exactly those arms).

use crate::{adversarial, attacks, basic, db, devices, fs, fsbench, fsshare, pmem, sriov};
use alloc::format;
use alloc::string::String;

type Outcome = Result<(), String>;

pub fn run(name: &str) -> Outcome {
    match name {
        "boot_to_init" => basic::boot_to_init(),
        "nmi" => basic::nmi(),
        "five_syscalls" => basic::expect_exit("probe", "syscalls", 64, 0),
        "isolation" => basic::isolation(),
        "share_region" => basic::share_region(),
        "fault_upcall" => basic::expect_exit("probe", "pager 40", 160, 0),
        "preemption" => basic::preemption(),
        "userspace_alloc" => basic::userspace_alloc(),
        "syscall_fuzz" => adversarial::syscall_fuzz(),
        "syscall_matrix" => adversarial::syscall_matrix(),
        "bad_elf" => basic::bad_elf(),
        "tlb_alias" => attacks::tlb_alias(),
        "ctlpage_hostile" => attacks::ctlpage_hostile(),
        "dma_revoke" => attacks::dma_revoke(),
        "nvme_rw" => devices::nvme_rw(),
        "sriov_pf" => devices::sriov_pf(),
        "sriov_vf" => sriov::sriov_vf(),
        "nvme_irq" => devices::nvme_irq(),
        "irq_forged_handle_blocked" => devices::irq_attack(false),
        "irq_compat_forged" => devices::irq_attack(true),
        "nvme_bench" => devices::nvme_bench(),
        "virtio_blk_rw" => devices::virtio_blk_rw(),
        "dma_attack_blocked" => devices::dma_attack_blocked(),
        "device_ownership" => devices::device_ownership(),
        "nvme_persist_write" => devices::nvme_persist(false),
        "nvme_persist_check" => devices::nvme_persist(true),
        "pmem_persist_write" => pmem::persist_write(),
        "pmem_persist_check" => pmem::persist_check(),
        "block_service" => devices::block_service(),
        "two_nvme" => devices::two_nvme(),
        "acpi_bad_dmar" => devices::acpi_bad_dmar(),
        "acpi_bad_mcfg" => devices::acpi_bad_mcfg(),
        "libdb_nvme_create" => db::libdb_nvme(false),
        "libdb_nvme_check" => db::libdb_nvme(true),
        "kill_db" => db::kill_db(),
        "io_errors_flush" => db::io_errors_flush(),
        "io_errors_check" => db::io_errors_check(),
        "powerfail_load" => db::powerfail_load(),
        "powerfail_check" => db::powerfail_check(),
        "libdb_pmem_create" => db::libdb_pmem(false),
        "libdb_pmem_check" => db::libdb_pmem(true),
        "libdb_vf_create" => db::libdb_vf(false),
        "libdb_vf_check" => db::libdb_vf(true),
        "libfs_pmem_create" => fs::libfs_pmem(false),
        "libfs_pmem_check" => fs::libfs_pmem(true),
        "libfs_nvme_create" => fs::libfs_nvme("create"),
        "libfs_nvme_check" => fs::libfs_nvme("check"),
        "libfs_big" => fs::libfs_nvme("big"),
        "libdb_on_libfs_create" => db::libdb_on_libfs(false),
        "libdb_on_libfs_check" => db::libdb_on_libfs(true),
        "libfs_share" => fsshare::libfs_share(),
        "shell_fs" => fsshare::shell_fs(),
        "microbench" => basic::microbench(),
        "libfs_bench" => fsbench::libfs_bench(),
        "fsbench_eval" => fsbench::fsbench_eval(),
        "vector_state" => basic::vector_state(),
        other => Err(format!("no test named {other:?}")),
    }
}
