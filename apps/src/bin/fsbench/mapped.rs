//! `mmap-overwrite` on NVMe: the file mapped by libfs's pager
//! (`libfs::pager`, bound to this machine by fsapp's `paging.rs`, shared
//! as a source file), as Linux maps it `MAP_SHARED`. One operation is a
//! 64-byte store into the mapping (a write fault: every page was faulted
//! in and written back before the phase, as on Linux, so it is resident
//! and mapped read-only; the pager maps it writable) and `msync` of
//! exactly those 64 bytes: the dirty page written back,
//! `Fs::sync` (one flush, no metadata commit: the file was allocated
//! before), the page mapped read-only again, so the next store to it
//! faults again, as `msync` write-protects on Linux.

use alloc::format;
use alloc::vec::Vec;
use exo_rt::mmio::Window;
use exo_rt::println;
use exo_rt::time::rdtsc;
use libfs::pager::Pager;
use libfs::Handle;

use crate::paging::{self, NvmeFs, Paged, SpareMmu, MAP_VA};
use crate::workloads::{mismatch, sample_of, Bench, Failure, Phase, FS_ERROR, MAPPED_BYTES, MISSING_REGION};

type NvmeStorage = libdb::BlockStorage<crate::blockdev::BlockqDevice>;

/// The pager's frame budget: the whole 1 MiB file fits, as it does in
/// Linux's page cache (testinit gives `BUDGET` + table frames as spares).
const BUDGET: usize = 256;
/// Where the file is mapped: the window's second 2 MiB (init shares the
/// kernel info page at its first address, `SCRATCH_VA`).
const FILE_VA: u64 = MAP_VA + (2 << 20);

fn pager_err(what: &'static str) -> impl FnOnce(libfs::pager::PagerError) -> Failure {
    move |e| (FS_ERROR, format!("{what}: {e}"))
}

/// The pager's state, or a failure naming that it is gone.
fn with<T>(f: impl FnOnce(&mut Paged) -> Result<T, Failure>) -> Result<T, Failure> {
    paging::with(f).unwrap_or_else(|| Err((FS_ERROR, "the pager is not installed".into())))
}

pub fn nvme_mapped<'a>(
    b: Bench<'a, NvmeStorage>,
    h: &Handle,
    data: &[(u64, Vec<u8>)],
) -> Result<(Bench<'a, NvmeStorage>, Phase), Failure> {
    let Bench { fs, medium, tsc_per_us, counts } = b;
    let mut mmu = SpareMmu::new(BUDGET).map_err(|e| (MISSING_REGION, e))?;
    mmu.prepare(FILE_VA, MAPPED_BYTES).map_err(|e| (MISSING_REGION, e))?;
    paging::install(Paged { fs, pager: Pager::new(BUDGET), mmu, fault_syscalls: 0 });
    let id = with(|p| p.pager.map_file(*h, FILE_VA, MAPPED_BYTES).map_err(pager_err("map_file")))?;
    let win = Window::new(FILE_VA, MAPPED_BYTES)
        .ok_or_else(|| (FS_ERROR, format!("no window of {MAPPED_BYTES} bytes at {FILE_VA:#x}")))?;
    // Fault every page in writable and write it back before the phase,
    // as the Linux side does (`eval/src/fsbench.rs`): the timed stores
    // find their page resident, mapped read-only since the `msync`.
    for page in (0..MAPPED_BYTES).step_by(libfs::PAGE_SIZE) {
        win.write(page, &[0]);
    }
    with(|p| p.pager.msync(&mut p.fs, &mut p.mmu, FILE_VA, MAPPED_BYTES).map_err(pager_err("msync")))?;
    let sample = || with(|p| Ok(sample_of(&p.fs, counts)));
    let mut lat = Vec::with_capacity(data.len());
    let s0 = sample()?;
    let (stats0, handler0) = with(|p| Ok((p.pager.stats, p.fault_syscalls)))?;
    for (off, d) in data {
        let t = rdtsc();
        win.write(*off, d);
        with(|p| p.pager.msync(&mut p.fs, &mut p.mmu, FILE_VA + off, d.len() as u64).map_err(pager_err("msync")))?;
        lat.push(rdtsc() - t);
    }
    let s1 = sample()?;
    let mut p = paging::PAGED.lock().take().ok_or((FS_ERROR, "the pager state is gone".into()))?;
    let st = p.pager.stats;
    println!(
        "fsbench: nvme mmap-overwrite through the pager: {} ops, {} write faults ({} page reads), {} write-backs, {} msyncs ({} with a metadata commit), {} maps, {} unmaps, {} system calls in the fault handler",
        data.len(),
        st.write_faults - stats0.write_faults,
        st.reads - stats0.reads,
        st.writebacks - stats0.writebacks,
        st.msyncs - stats0.msyncs,
        st.metadata_commits - stats0.metadata_commits,
        st.maps - stats0.maps,
        st.unmaps - stats0.unmaps,
        p.fault_syscalls - handler0
    );
    // Every store found its page resident and read-only (one write fault,
    // no read), and every msync wrote back exactly that page, with no
    // metadata commit: what the row claims to measure.
    let ops = data.len() as u64;
    let got = (st.write_faults - stats0.write_faults, st.reads - stats0.reads, st.writebacks - stats0.writebacks);
    if got != (ops, 0, ops) || st.metadata_commits != stats0.metadata_commits {
        return Err(mismatch(format!(
            "{ops} mapped overwrites: expected {ops} write faults, 0 page reads, {ops} write-backs and no metadata commit, got {:?}",
            st
        )));
    }
    p.pager.unmap_file(&mut p.fs, &mut p.mmu, id).map_err(pager_err("unmap_file"))?;
    let fs: NvmeFs = p.fs;
    Ok((Bench { fs, medium, tsc_per_us, counts }, Phase { method: "msync", s0, s1, lat }))
}
