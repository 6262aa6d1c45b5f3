//! The block service's rings (`blockq`) over this runtime's shared memory:
//! the [`blockq::SharedRegion`] a driver and its clients both use, and the
//! client's blocking helpers (attach once the driver formatted the region,
//! wait for an answer). Shared by `nvmed` (the server and its test client)
//! and by libOSes that use the service (`kvdb`).
//!
//! A client notices a dead driver by the region's driver epoch, which init
//! (the region's owner) bumps when it kills the driver (`blockq`'s
//! `mark_driver_gone`): [`wait`] and [`submit`] then fail with
//! [`WaitError::DriverGone`] at their next poll instead of waiting out
//! their yield bound, and [`attach`] reconnects once the next driver has
//! formatted the region. Requests in flight at the death are lost.

use crate::mmio::Window;
use crate::yield_now;
use blockq::{Client, ProtocolError, Response, SharedRegion};

/// A region shared with the peer, reached through volatile accesses (the
/// peer may write any byte at any time).
#[derive(Clone, Copy, Debug)]
pub struct SharedWindow(pub Window);

impl SharedRegion for SharedWindow {
    fn len(&self) -> u64 {
        self.0.len()
    }
    fn load_acquire(&self, offset: u64) -> u32 {
        self.0.load_acquire32(offset)
    }
    fn store_release(&self, offset: u64, value: u32) {
        self.0.store_release32(offset, value)
    }
    fn read(&self, offset: u64, buf: &mut [u8]) {
        self.0.read(offset, buf)
    }
    fn write(&self, offset: u64, data: &[u8]) {
        // `Window::write` takes `&self`: the region is shared memory.
        self.0.write(offset, data)
    }
}

/// Why a client gave up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitError {
    /// The server broke the ring protocol (or never formatted the region).
    Protocol(ProtocolError),
    /// No answer after this many yields: the driver is gone or stuck.
    NoAnswer { yields: u64 },
    /// An answer for a request the client does not have in flight.
    UnexpectedAnswer { tag: u32 },
    /// The driver the client attached to is gone (init destroyed it and
    /// bumped the region's driver epoch to `epoch`, see `blockq`'s
    /// `mark_driver_gone`): requests in flight are lost; [`attach`] again,
    /// which waits for the driver init starts next.
    DriverGone { epoch: u32 },
}

/// The transport's view of a protocol error: a dead driver by its name.
fn from_protocol(e: ProtocolError) -> WaitError {
    match e {
        ProtocolError::DriverGone { now, .. } => WaitError::DriverGone { epoch: now },
        e => WaitError::Protocol(e),
    }
}

impl core::fmt::Display for WaitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WaitError::Protocol(e) => write!(f, "block service protocol error: {e:?}"),
            WaitError::NoAnswer { yields } => write!(f, "no answer from the block driver after {yields} yields"),
            WaitError::UnexpectedAnswer { tag } => {
                write!(f, "the block driver answered tag {tag:#x}, which is not in flight")
            }
            WaitError::DriverGone { epoch } => {
                write!(
                    f,
                    "DriverGone: the block driver is gone (driver epoch now {epoch}); requests in flight are lost"
                )
            }
        }
    }
}

/// Attach to the region `win`, yielding (at most `max_yields` times)
/// until the driver has formatted it (after a [`WaitError::DriverGone`]:
/// until init's next driver has). Yields are added to `yields`.
pub fn attach(win: Window, max_yields: u64, yields: &mut u64) -> Result<Client<SharedWindow>, WaitError> {
    let mut tried = 0;
    loop {
        match Client::attach(SharedWindow(win)) {
            Ok(c) => return Ok(c),
            Err(_) if tried < max_yields => {
                tried += 1;
                *yields += 1;
                yield_now();
            }
            Err(e) => return Err(WaitError::Protocol(e)),
        }
    }
}

/// The next answer, yielding the CPU (at most `max_yields` times) while
/// there is none; yields are added to `yields`. A driver that shares the
/// core runs only when we yield, so we yield after every empty poll; a
/// driver that polls on a core of its own (`blockq`'s
/// `FLAG_SERVER_POLLS`) answers while we spin, so we poll
/// `Client::polls_per_yield` times before each yield and a QD1 request
/// costs no system call.
pub fn wait(c: &mut Client<SharedWindow>, max_yields: u64, yields: &mut u64) -> Result<Response, WaitError> {
    for _ in 0..max_yields {
        for _ in 0..c.polls_per_yield() {
            // No `pause` here: under QEMU's TCG it ends the translated
            // block and returns to QEMU's CPU loop instead of resting the
            // core, and the one run with it was the slowest
            // (eval/DRIVERS.md); on hardware a `pause` would be polite.
            if let Some(r) = c.poll().map_err(from_protocol)? {
                return Ok(r);
            }
        }
        *yields += 1;
        yield_now();
    }
    c.poll().map_err(from_protocol)?.ok_or(WaitError::NoAnswer { yields: max_yields })
}

/// [`wait`] for a client whose driver's completions wake it
/// (`initlib::kvdb::BlockService::wake_on_completions`: the NVMe queue's
/// MSI-X interrupt, routed by init to this process): poll `spin_polls`
/// times, then sleep until that interrupt (`wait_for_wake`, one `yield`).
/// The interrupt says the *device* completed; the driver (polling on its
/// own core) posts the answer a moment later, so once woken the client
/// spins for it (`Client::polls_per_yield` polls) before it would sleep
/// again (then until init's next tick wakes it). At most `max_waits`
/// sleeps, added to `waits`. The sleeping client's CPU can halt (init's
/// scheduler has nothing to run) instead of spinning beside the emulated
/// device. A dead driver is still seen within one poll of the next
/// wake-up (or tick).
pub fn wait_sleeping(
    c: &mut Client<SharedWindow>,
    spin_polls: u64,
    max_waits: u64,
    waits: &mut u64,
) -> Result<Response, WaitError> {
    let mut spins = spin_polls.max(1);
    for _ in 0..max_waits {
        for _ in 0..spins {
            if let Some(r) = c.poll().map_err(from_protocol)? {
                ANSWERS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
                return Ok(r);
            }
        }
        *waits += 1;
        crate::wait_for_wake(ANSWERS.load(core::sync::atomic::Ordering::Relaxed));
        spins = c.polls_per_yield().max(spin_polls);
    }
    c.poll().map_err(from_protocol)?.ok_or(WaitError::NoAnswer { yields: max_waits })
}

/// Answers [`wait_sleeping`] has returned: each was announced by one
/// completion interrupt (one NVMe command per request at QD1), so init
/// can tell an interrupt for an answer not yet seen from a late one.
static ANSWERS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Submit `req`; a dead driver is [`WaitError::DriverGone`].
pub fn submit(c: &mut Client<SharedWindow>, req: &blockq::Request) -> Result<(), WaitError> {
    c.submit(req).map_err(from_protocol)
}
