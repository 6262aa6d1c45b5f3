//! `eval-bench kernel`: Linux's counterparts of the exokernel's classic
//! crossings (`eval --kernel`, eval/README.md): `getpid`, `mmap`+`munmap`
//! of one page, a pipe and a futex ping-pong between two processes, and a
//! fault resolved by a `userfaultfd` thread. Each is timed as init's
//! `microbench` times the exokernel's: the best of 5 batches of 2000, an
//! empty batch subtracted, in TSC ticks (guest instructions under
//! `-icount shift=0`) and in `CLOCK_MONOTONIC` ns (TCG time). One
//! [`eval::kernel::LinuxLine`] per operation on stdout.

use eval::kernel::{LinuxLine, LinuxOp};
use std::time::Instant;

const N: u64 = 2000;
const BATCHES: usize = 5;
const PAGE: usize = 4096;

fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no memory effects; every x86_64 CPU has it.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Best batch of `N` calls of `f`: (ticks, ns).
fn best(f: &mut dyn FnMut()) -> (u64, u64) {
    let (mut ticks, mut ns) = (u64::MAX, u64::MAX);
    for _ in 0..BATCHES {
        let (t0, i0) = (rdtsc(), Instant::now());
        for _ in 0..N {
            f();
        }
        let (t1, i1) = (rdtsc(), Instant::now());
        ticks = ticks.min(t1 - t0);
        ns = ns.min(i1.duration_since(i0).as_nanos() as u64);
    }
    (ticks, ns)
}

fn errno(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

pub fn run() -> Result<(), String> {
    let empty = best(&mut || {});
    let per_op = |(t, n): (u64, u64)| (t.saturating_sub(empty.0) / N, n.saturating_sub(empty.1) / N);
    let print = |op: LinuxOp, v: (u64, u64)| println!("{}", LinuxLine { op, ticks: v.0, ns: v.1 });

    // The raw system call: glibc's getpid() is not cached today, but say so
    // in code rather than trust it.
    // SAFETY: getpid takes no arguments and cannot fail.
    print(
        LinuxOp::Getpid,
        per_op(best(&mut || unsafe {
            std::hint::black_box(libc::syscall(libc::SYS_getpid));
        })),
    );

    let mut failed = false;
    print(LinuxOp::MmapMunmap, per_op(best(&mut || failed |= mmap_munmap(false).is_err())));
    print(LinuxOp::MmapTouchMunmap, per_op(best(&mut || failed |= mmap_munmap(true).is_err())));
    if failed {
        return Err(errno("mmap/munmap"));
    }
    print(LinuxOp::PipePingpong, per_op(pipe_pingpong()?));
    print(LinuxOp::FutexPingpong, per_op(futex_pingpong()?));
    let (fault, extra) = uffd_fault()?;
    print(LinuxOp::UffdFault, per_op(fault));
    if extra != 0 {
        return Err(format!("userfaultfd: {extra} faults more or fewer than touches"));
    }
    Ok(())
}

fn mmap_munmap(touch: bool) -> Result<(), ()> {
    // SAFETY: a fresh private anonymous page, unmapped before returning;
    // the touch writes inside it.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            return Err(());
        }
        if touch {
            std::ptr::write_volatile(p as *mut u8, 1);
        }
        if libc::munmap(p, PAGE) != 0 {
            return Err(());
        }
    }
    Ok(())
}

/// Fork a child running `child` (which loops until killed; it exits if it
/// returns), run `parent`, then kill and reap the child.
fn with_child(child: impl FnOnce(), parent: impl FnOnce() -> (u64, u64)) -> Result<(u64, u64), String> {
    // SAFETY: the process is single-threaded here; the child runs only
    // `child`, which ends in `_exit`.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(errno("fork"));
    }
    if pid == 0 {
        child();
        // SAFETY: ends the forked child without running the parent's exit handlers.
        unsafe { libc::_exit(0) }
    }
    let r = parent();
    // SAFETY: our own child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
    Ok(r)
}

/// One byte A→B over one pipe and back over another: a round trip.
fn pipe_pingpong() -> Result<(u64, u64), String> {
    let (mut ab, mut ba) = ([0i32; 2], [0i32; 2]);
    // SAFETY: pipe fills the two-element arrays.
    if unsafe { libc::pipe(ab.as_mut_ptr()) } != 0 || unsafe { libc::pipe(ba.as_mut_ptr()) } != 0 {
        return Err(errno("pipe"));
    }
    let mut b = [0u8; 1];
    with_child(
        // SAFETY: reads and writes of one byte into a local buffer.
        || unsafe {
            let mut c = [0u8; 1];
            while libc::read(ab[0], c.as_mut_ptr().cast(), 1) == 1 {
                libc::write(ba[1], c.as_ptr().cast(), 1);
            }
            libc::_exit(0)
        },
        || {
            // SAFETY: as in the child.
            best(&mut || unsafe {
                libc::write(ab[1], b.as_ptr().cast(), 1);
                libc::read(ba[0], b.as_mut_ptr().cast(), 1);
            })
        },
    )
}

fn futex(word: *const u32, op: i32, val: u32) {
    // SAFETY: `word` points into a live shared mapping.
    unsafe {
        libc::syscall(libc::SYS_futex, word, op, val, std::ptr::null::<libc::timespec>(), 0usize, 0u32);
    }
}

/// A shared word, 0 = A's turn is over (B's turn), 1 = B done (A's turn):
/// each side waits on the futex until it is its turn, flips and wakes.
fn futex_pingpong() -> Result<(u64, u64), String> {
    use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
    // SAFETY: a fresh shared anonymous page, inherited by the child.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(errno("mmap shared"));
    }
    // SAFETY: the page is mapped, aligned and zeroed; only atomics touch it.
    let turn: &AtomicU32 = unsafe { &*(p as *const AtomicU32) };
    let w = turn as *const AtomicU32 as *const u32;
    // A's turn = 1.
    turn.store(1, SeqCst);
    let wait_for = |v: u32| {
        while turn.load(SeqCst) != v {
            // Sleeps only while the word still says the other side's turn.
            futex(w, libc::FUTEX_WAIT, v ^ 1);
        }
    };
    let pass = |v: u32| {
        turn.store(v, SeqCst);
        futex(w, libc::FUTEX_WAKE, 1);
    };
    with_child(
        || loop {
            wait_for(0);
            pass(1);
        },
        || {
            best(&mut || {
                pass(0);
                wait_for(1);
            })
        },
    )
}

/// `struct uffdio_api`, `uffdio_register`, `uffdio_copy` and `uffd_msg`
/// (linux/userfaultfd.h): the libc crate has no bindings for them.
#[repr(C)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}
#[repr(C)]
struct UffdioRegister {
    start: u64,
    len: u64,
    mode: u64,
    ioctls: u64,
}
#[repr(C)]
struct UffdioCopy {
    dst: u64,
    src: u64,
    len: u64,
    mode: u64,
    copy: i64,
}
const UFFD_API: u64 = 0xAA;
/// `_IOWR(0xAA, nr, size)`.
const fn iowr(nr: u64, size: usize) -> u64 {
    (3 << 30) | ((size as u64) << 16) | (0xAA << 8) | nr
}
const UFFDIO_API: u64 = iowr(0x3F, std::mem::size_of::<UffdioApi>());
const UFFDIO_REGISTER: u64 = iowr(0x00, std::mem::size_of::<UffdioRegister>());
const UFFDIO_COPY: u64 = iowr(0x03, std::mem::size_of::<UffdioCopy>());
const UFFDIO_REGISTER_MODE_MISSING: u64 = 1;
const UFFD_EVENT_PAGEFAULT: u8 = 0x12;

/// `madvise(MADV_DONTNEED)` a registered page, touch it: the fault goes to
/// a handler thread that reads the `userfaultfd` message and fills the
/// page with `UFFDIO_COPY` (which wakes the faulting thread). Returns the
/// best batch and touches minus faults handled (0 when every touch faulted).
fn uffd_fault() -> Result<((u64, u64), i64), String> {
    // SAFETY: plain system calls on memory this function maps and owns;
    // the structs are the kernel's layouts above.
    unsafe {
        let fd = libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC) as i32;
        if fd < 0 {
            return Err(errno("userfaultfd (CONFIG_USERFAULTFD, vm.unprivileged_userfaultfd or root)"));
        }
        let mut api = UffdioApi { api: UFFD_API, features: 0, ioctls: 0 };
        if libc::ioctl(fd, UFFDIO_API as _, &mut api) != 0 {
            return Err(errno("UFFDIO_API"));
        }
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
        let page = libc::mmap(std::ptr::null_mut(), PAGE, prot, flags, -1, 0);
        let src = libc::mmap(std::ptr::null_mut(), PAGE, prot, flags, -1, 0);
        if page == libc::MAP_FAILED || src == libc::MAP_FAILED {
            return Err(errno("mmap"));
        }
        std::ptr::write_bytes(src as *mut u8, 0x5a, PAGE);
        let mut reg =
            UffdioRegister { start: page as u64, len: PAGE as u64, mode: UFFDIO_REGISTER_MODE_MISSING, ioctls: 0 };
        if libc::ioctl(fd, UFFDIO_REGISTER as _, &mut reg) != 0 {
            return Err(errno("UFFDIO_REGISTER"));
        }
        let (page_a, src_a) = (page as u64, src as u64);
        let handled = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
        let count = handled.clone();
        // Left running when we return: a read blocked on a userfaultfd
        // does not end when the descriptor is closed, and the process
        // exits soon after.
        std::thread::spawn(move || {
            let mut msg = [0u8; 32];
            while libc::read(fd, msg.as_mut_ptr().cast(), msg.len()) == msg.len() as isize {
                if msg[0] != UFFD_EVENT_PAGEFAULT {
                    continue;
                }
                let addr = u64::from_ne_bytes(msg[16..24].try_into().unwrap()) & !(PAGE as u64 - 1);
                let mut copy = UffdioCopy { dst: addr, src: src_a, len: PAGE as u64, mode: 0, copy: 0 };
                if addr != page_a || libc::ioctl(fd, UFFDIO_COPY as _, &mut copy) != 0 {
                    // The toucher would wait forever: end the process.
                    eprintln!("{}", errno("UFFDIO_COPY"));
                    libc::_exit(3);
                }
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        let mut touches = 0i64;
        let r = best(&mut || {
            libc::madvise(page, PAGE, libc::MADV_DONTNEED);
            std::hint::black_box(std::ptr::read_volatile(page as *const u8));
            touches += 1;
        });
        // UFFDIO_COPY wakes the toucher before the handler counts the
        // fault, so the last count may still be on its way.
        let deadline = Instant::now() + std::time::Duration::from_secs(2);
        while handled.load(std::sync::atomic::Ordering::SeqCst) < touches && Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let handled = handled.load(std::sync::atomic::Ordering::SeqCst);
        Ok((r, touches - handled))
    }
}
