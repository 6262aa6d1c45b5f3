//! `kvdb`: libdb, the project's embedded database, as an application libOS
//! on the exokernel, on the two media the design names:
//! * `nvme`: a `libdb::BlockDevice` over the block service (`nvmed serve`,
//!   `blockq` rings in a region init links into both processes);
//! * `nvme-vf`: a `libdb::BlockDevice` on an NVMe SR-IOV virtual function
//!   this process drives itself, the `nvme` driver linked in as a library
//!   (init moved the VF's BAR and device handle into it, as it does for a
//!   driver): no driver process, no system call per I/O;
//! * `pmem`: a `libdb::PmemRegion` over a region mapped into this process
//!   (the NVDIMM, or RAM frames init gives it), persisted with
//!   clwb/clflushopt/clflush + sfence;
//! * `file-nvme`, `file-pmem`: the database as a libfs file on the block
//!   service or the pmem region (`onfile.rs`, libfs linked in).
//!
//! Arguments: `<nvme|nvme-vf|pmem|file-nvme|file-pmem> <create|check>`
//! (`nvme-vf` then the window: first MiB and length in MiB), or `nvme
//! pfload <sync|group|async> <commits>` / `nvme pfcheck` (the power-fail
//! workload, `powerfail.rs`; also on an own VF: `nvme-vf pfload <first MiB>
//! <MiB> <mode> <commits>`, `nvme-vf pfcheck <first MiB> <MiB>`), or `nvme ioerr-flush` / `nvme ioerr-check
//! <last acknowledged>` (the device-failure workload, `ioerr.rs`), or
//! `nvme killload <min|new> <limit>` (a database init kills, `killed.rs`),
//! or `nvme drvload` (a database whose block driver init kills,
//! `driverdied.rs`), or `<nvme|pmem> recover <keys> <tail records>`
//! (`eval --recovery`'s timed open of a database the host built,
//! `recovery.rs`), or `pmem rrload <keys>` / `pmem readrandom <keys> <ops>
//! <readers> <reader> <cpu>` (random reads by one reader per core, on a
//! read-only share of the database's pages, `readrandom.rs`);
//! args words 3 = the region's
//! address (`nvme-vf`: the VF's BAR), 4 = its size in bytes, 5 = TSC ticks
//! per microsecond, 6 = the run's nonce, 7 (`nvme-vf`) = where the device
//! handle is. `create` makes a database and commits the plan of
//! `workload.rs` (printing `EXO-DB` count lines), `check` reopens it and
//! verifies it holds exactly what was committed. Exit code 0 = passed;
//! see `error.rs` for the others.
#![cfg_attr(exo_user, no_std, no_main)]
#![forbid(unsafe_code)]

#[cfg(not(exo_user))]
fn main() {}

#[cfg(exo_user)]
extern crate alloc;

#[cfg(exo_user)]
mod blockdev;
#[cfg(exo_user)]
mod driverdied;
#[cfg(exo_user)]
mod error;
#[cfg(exo_user)]
mod ioerr;
#[cfg(exo_user)]
mod killed;
#[cfg(exo_user)]
mod onfile;
#[cfg(exo_user)]
mod pmemdev;
#[cfg(exo_user)]
mod powerfail;
#[cfg(exo_user)]
mod readrandom;
#[cfg(exo_user)]
mod recovery;
#[cfg(exo_user)]
mod rodev;
#[cfg(exo_user)]
mod upgload;
#[cfg(exo_user)]
mod vfdev;
#[cfg(exo_user)]
mod workload;

#[cfg(exo_user)]
exo_rt::entry!(main);

#[cfg(exo_user)]
fn main() {
    let args = exo_rt::args();
    match run(args) {
        Ok(()) => exo_rt::exit(0),
        Err(e) => {
            exo_rt::println!("kvdb {args}: FAILED: {e}");
            exo_rt::exit(e.code())
        }
    }
}

#[cfg(exo_user)]
fn run(args: &str) -> Result<(), error::KvdbError> {
    use alloc::format;
    use error::KvdbError;
    use exo_rt::args_word;

    let mut words = args.split_whitespace();
    let (medium, phase) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let create = match phase {
        "create" | "pfload" | "ioerr-flush" | "upgload" | "rrload" => true,
        "check" | "pfcheck" | "ioerr-check" | "killload" | "drvload" | "recover" | "readrandom" => false,
        _ => {
            return Err(KvdbError::Usage(format!(
            "phase {phase:?}: expected create, check, pfload, pfcheck, ioerr-flush, ioerr-check, killload, drvload, upgload, recover, rrload or readrandom"
        )))
        }
    };
    // The device-failure and kill workloads run on the block service; the
    // power-fail workload also on an own VF; recovery timing on nvme or pmem.
    let nvme_only = !matches!(phase, "create" | "check" | "recover" | "upgload" | "rrload" | "readrandom");
    let powerfail_on_vf = medium == "nvme-vf" && matches!(phase, "pfload" | "pfcheck");
    if phase == "recover" && !matches!(medium, "nvme" | "pmem") {
        return Err(KvdbError::Usage(format!("recover runs on nvme or pmem, not {medium}")));
    }
    if matches!(phase, "rrload" | "readrandom") && medium != "pmem" {
        return Err(KvdbError::Usage(format!("{phase} runs on pmem, not {medium}")));
    }
    if nvme_only && medium != "nvme" && !powerfail_on_vf {
        return Err(KvdbError::Usage(format!("{phase} runs on the block service (nvme), not {medium}")));
    }
    let (va, bytes, tsc_per_us, nonce) = (args_word(3), args_word(4), args_word(5), args_word(6));
    if va == 0 || bytes == 0 {
        return Err(KvdbError::MissingRegion(format!(
            "no {medium} region was given (args words 3/4 are {va:#x}/{bytes:#x})"
        )));
    }
    if nonce == 0 {
        return Err(KvdbError::Usage("no nonce (args word 6)".into()));
    }
    match medium {
        "nvme" if phase.starts_with("ioerr") => return ioerr::run(phase, &mut words, va, bytes, nonce),
        "nvme" => {
            let storage = libdb::BlockStorage::new(attach_service(va, bytes, create && !nvme_only)?);
            let counts = |s: &libdb::BlockStorage<blockdev::BlockqDevice>| blockq_counts(s.device());
            let written = |s: &libdb::BlockStorage<blockdev::BlockqDevice>| s.device().counters.bytes_written;
            let flushes = |s: &libdb::BlockStorage<blockdev::BlockqDevice>| s.device().counters.flushes;
            let storage = match phase {
                "killload" => killed::run(storage, &mut words, nonce)?,
                "drvload" => driverdied::run(storage.into_inner(), nonce)?,
                "pfload" | "pfcheck" => match powerfail::run(phase, storage, &mut words, nonce, written, flushes)? {
                    Some(s) => s,
                    None => return Ok(()),
                },
                "create" => workload::create(storage, nonce, "nvme", tsc_per_us, counts, true)?,
                "upgload" => upgload::run(storage, nonce)?,
                "recover" => recovery::run(storage, "nvme", &mut words, tsc_per_us, |s| {
                    let c = s.device().counters;
                    Some((c.read_requests, c.bytes_read, c.write_requests, c.flushes))
                })?,
                _ => workload::check(storage, nonce, "nvme")?,
            };
            print_blockq_totals(storage.device());
        }
        "file-nvme" => {
            let storage = libdb::BlockStorage::new(attach_service(va, bytes, create)?);
            let counts = |s: &libdb::BlockStorage<blockdev::BlockqDevice>| blockq_counts(s.device());
            let storage = onfile::run(storage, create, nonce, "file-nvme", tsc_per_us, counts, true)?;
            print_blockq_totals(storage.device());
        }
        "nvme-vf" => on_vf(phase, &mut words, va, bytes, tsc_per_us, nonce)?,
        "pmem" if phase == "readrandom" => {
            // A read-only share of the pages: a store would fault.
            let region = exo_rt::region::Region::claim(va, bytes)
                .map_err(|e| KvdbError::MissingRegion(format!("the database's read-only pages: {e}")))?;
            let storage = libdb::PmemStorage::new(rodev::ReadOnlyPmem::new(region));
            let storage = readrandom::read(storage, &mut words, nonce)?;
            if storage.region().refused_writes > 0 {
                return Err(KvdbError::Mismatch(format!(
                    "libdb opened read-only tried {} writes",
                    storage.region().refused_writes
                )));
            }
        }
        "pmem" => {
            let storage = libdb::PmemStorage::new(claim_pmem(va, bytes)?);
            let storage = if phase == "recover" {
                recovery::run(storage, "pmem", &mut words, tsc_per_us, |_| None)?
            } else if phase == "upgload" {
                upgload::run(storage, nonce)?
            } else if phase == "rrload" {
                readrandom::load(storage, &mut words, nonce, tsc_per_us)?
            } else if create {
                workload::create(storage, nonce, "pmem", tsc_per_us, pmem_counts, false)?
            } else {
                workload::check(storage, nonce, "pmem")?
            };
            print_pmem_totals(storage.region());
        }
        "file-pmem" => {
            let storage = libdb::PmemStorage::new(claim_pmem(va, bytes)?);
            let storage = onfile::run(storage, create, nonce, "file-pmem", tsc_per_us, pmem_counts, false)?;
            print_pmem_totals(storage.region());
        }
        other => {
            return Err(KvdbError::Usage(format!(
                "medium {other:?}: expected nvme, nvme-vf, pmem, file-nvme or file-pmem"
            )))
        }
    }
    Ok(())
}

/// Attach to the block service in `va..va+bytes` (`create`: first check
/// that a read one block past its window is refused).
#[cfg(exo_user)]
fn attach_service(va: u64, bytes: u64, create: bool) -> Result<blockdev::BlockqDevice, error::KvdbError> {
    use alloc::format;
    use error::KvdbError;
    use exo_rt::println;
    let win = exo_rt::mmio::Window::new(va, bytes).ok_or_else(|| {
        KvdbError::MissingRegion(format!("block-service region {va:#x}+{bytes:#x} is not a valid window"))
    })?;
    let mut dev = blockdev::BlockqDevice::attach(win).map_err(|e| KvdbError::Service(format!("{e}")))?;
    let geo = dev.geometry();
    println!(
        "kvdb: block service attached: {} blocks of {} bytes ({} MiB), {}-entry rings, {} KiB data area",
        geo.capacity_blocks,
        geo.block_size,
        (geo.capacity_blocks * geo.block_size as u64) >> 20,
        geo.entries,
        geo.data_len / 1024
    );
    if create {
        // The service exposes only its window: one block past it is refused.
        let mut one = alloc::vec![0u8; geo.block_size as usize];
        match libdb::BlockDevice::read(&mut dev, geo.capacity_blocks, &mut one) {
            Err(libdb::IoError::OutOfRange) => {
                println!("kvdb: a read one block past the service's window was refused (out of range)")
            }
            other => return Err(KvdbError::Mismatch(format!("a read past the window answered {other:?}"))),
        }
    }
    Ok(dev)
}

/// What the block service was asked, for the per-op counts.
#[cfg(exo_user)]
fn blockq_counts(d: &blockdev::BlockqDevice) -> workload::MediumCounts {
    let c = d.counters;
    workload::MediumCounts {
        device_writes: c.write_requests,
        device_flushes: c.flushes,
        device_bytes: c.bytes_written,
        requests: c.requests(),
        bytes_copied: c.bytes_copied,
        yields: c.yields,
        lines_flushed: 0,
        doorbells: 0,
    }
}

#[cfg(exo_user)]
fn print_blockq_totals(d: &blockdev::BlockqDevice) {
    let c = d.counters;
    exo_rt::println!(
        "kvdb: block service totals: {} writes ({} KiB), {} reads ({} KiB), {} flushes, {} KiB copied to/from the shared area, {} yields",
        c.write_requests,
        c.bytes_written / 1024,
        c.read_requests,
        c.bytes_read / 1024,
        c.flushes,
        c.bytes_copied / 1024,
        c.yields
    );
}

/// The persistent-memory region init moved to `va`.
#[cfg(exo_user)]
fn claim_pmem(va: u64, bytes: u64) -> Result<pmemdev::MappedPmem, error::KvdbError> {
    let region =
        exo_rt::region::Region::claim(va, bytes).map_err(|e| error::KvdbError::MissingRegion(alloc::format!("{e}")))?;
    exo_rt::println!(
        "kvdb: persistent-memory region at {va:#x}, {} KiB, cache-line write-back by {:?}",
        bytes >> 10,
        region.flush_method()
    );
    Ok(pmemdev::MappedPmem::new(region))
}

#[cfg(exo_user)]
fn pmem_counts(s: &libdb::PmemStorage<pmemdev::MappedPmem>) -> workload::MediumCounts {
    workload::MediumCounts { device_flushes: s.region().fences, lines_flushed: s.region().lines, ..Default::default() }
}

#[cfg(exo_user)]
fn print_pmem_totals(r: &pmemdev::MappedPmem) {
    exo_rt::println!(
        "kvdb: pmem totals: {} persist calls, {} cache lines written back, {} fences",
        r.persists,
        r.lines,
        r.fences
    );
}

/// `nvme-vf`: bring up the VF's controller in the BAR init moved here and
/// run `phase` (the plan's create or check, or the power-fail load or
/// check) on the window named by the next two arguments (MiB).
#[cfg(exo_user)]
fn on_vf(
    phase: &str,
    words: &mut core::str::SplitWhitespace,
    bar_va: u64,
    bar_bytes: u64,
    tsc_per_us: u64,
    nonce: u64,
) -> Result<(), error::KvdbError> {
    use alloc::format;
    use error::KvdbError;
    use exo_rt::println;
    let create = matches!(phase, "create" | "pfload");
    let mut mib = || words.next().and_then(|w| w.parse::<u64>().ok());
    let window = match (mib(), mib()) {
        (Some(first), Some(len)) if len > 0 => (first, len),
        _ => return Err(KvdbError::Usage("nvme-vf needs its window: <first MiB> <length in MiB>".into())),
    };
    let handle = exo_rt::args_word(7);
    if handle == 0 {
        return Err(KvdbError::MissingRegion("no device handle for the VF (args word 7 is 0)".into()));
    }
    let bar = exo_rt::mmio::Window::new(bar_va, bar_bytes).ok_or_else(|| {
        KvdbError::MissingRegion(format!("the VF's BAR {bar_va:#x}+{bar_bytes:#x} is not a valid window"))
    })?;
    let dma =
        exo_rt::nvme::spare_dma(handle).map_err(|e| KvdbError::MissingRegion(format!("DMA memory for the VF: {e}")))?;
    let calls0 = exo_rt::sys::calls();
    let mut dev = vfdev::VfDevice::bring_up(bar, dma, window).map_err(KvdbError::Controller)?;
    println!(
        "kvdb: driving the VF itself: NVMe MiB {}..{} ({} blocks of {} bytes from LBA {}), QD1 polled, max transfer {} KiB; bring-up took {} system calls",
        window.0,
        window.0 + window.1,
        libdb::BlockDevice::blocks(&dev),
        libdb::BlockDevice::block_size(&dev),
        dev.first_lba(),
        dev.max_transfer_bytes() / 1024,
        exo_rt::sys::calls() - calls0
    );
    if create {
        // The VF sees the whole shared namespace: the device refuses what
        // lies past its window before the controller sees it.
        let mut one = alloc::vec![0u8; libdb::BlockDevice::block_size(&dev)];
        let past = libdb::BlockDevice::blocks(&dev);
        match libdb::BlockDevice::read(&mut dev, past, &mut one) {
            Err(libdb::IoError::OutOfRange) => {
                println!("kvdb: a read one block past the window was refused (out of range)")
            }
            other => return Err(KvdbError::Mismatch(format!("a read past the window answered {other:?}"))),
        }
    }
    let storage = libdb::BlockStorage::new(dev);
    let counts = |s: &libdb::BlockStorage<vfdev::VfDevice>| {
        let d = s.device();
        let c = d.counters;
        workload::MediumCounts {
            device_writes: c.write_cmds,
            device_flushes: c.flushes,
            device_bytes: c.bytes_written,
            requests: c.commands(),
            bytes_copied: c.bytes_copied,
            yields: 0,
            lines_flushed: 0,
            doorbells: d.doorbells(),
        }
    };
    let written = |s: &libdb::BlockStorage<vfdev::VfDevice>| s.device().counters.bytes_written;
    let flushes = |s: &libdb::BlockStorage<vfdev::VfDevice>| s.device().counters.flushes;
    let storage = match phase {
        "pfload" | "pfcheck" => match powerfail::run(phase, storage, words, nonce, written, flushes)? {
            Some(s) => s,
            None => return Ok(()),
        },
        "create" => workload::create(storage, nonce, "nvme-vf", tsc_per_us, counts, true)?,
        _ => workload::check(storage, nonce, "nvme-vf")?,
    };
    let d = storage.device();
    let c = d.counters;
    println!(
        "kvdb: own NVMe totals: {} write commands ({} KiB), {} read commands ({} KiB), {} flushes, {} KiB bounced, {} doorbells",
        c.write_cmds,
        c.bytes_written / 1024,
        c.read_cmds,
        c.bytes_read / 1024,
        c.flushes,
        c.bytes_copied / 1024,
        d.doorbells()
    );
    Ok(())
}
