//! Two things the system shows and checks in one go, used by init's
//! demonstration and by the test root's scenarios alike (a scenario calls
//! them; they know nothing of scenarios).

use crate::regions::{make_region, start_linked};
use crate::sched::{self, state_name, RUNNABLE};
use crate::spawn::{finish, start};
use alloc::format;
use alloc::string::String;
use core::sync::atomic::Ordering::SeqCst;
use exo_abi::{Rights, PAGE_SIZE};
use exo_rt::{mem, println};

/// A region of init's linked into three `probe`s (XOmB's page-table
/// subtree): two write it, the read-only one must fault on its write, and
/// init sees both writes through its own link.
pub fn share_a_region() -> Result<(), String> {
    let region = make_region(4)?;
    let writer = start_linked("probe", "share-writer", region, Rights::WRITE)?;
    let reader = start_linked("probe", "share-reader", region, Rights::WRITE)?;
    let ro = start_linked("probe", "share-ro", region, Rights::NONE)?;
    for (c, what) in [(&writer, "writer"), (&reader, "reader")] {
        let code = finish(c, what)?;
        if code != 0 {
            return Err(format!("share {what} exited with {code}"));
        }
    }
    let code = finish(&ro, "read-only sharer")?;
    if code != 42 {
        return Err(format!("read-only sharer exited with {code}, expected a write fault (42)"));
    }
    if mem::read(region) != 0xa000_0000 || mem::read(region + PAGE_SIZE) != 0xb000_0000 {
        return Err("init does not see the processes' writes".into());
    }
    println!("init: both writes seen through init's own link; the read-only sharer's write faulted");
    Ok(())
}

/// A process that spins forever is preempted by the root scheduler while
/// another one counts to the end; then it is stopped.
pub fn preempt_a_spinner() -> Result<(), String> {
    let spinner = start("spin", "", 0, &[])?;
    let counter = start("probe", "count 2000000", 0, &[])?;
    let code = finish(&counter, "counter")?;
    let s = sched::slot(spinner.slot);
    let pre = s.preemptions.load(SeqCst);
    println!("init: counter finished while spin kept spinning; spin was preempted {pre} times");
    if s.state.load(SeqCst) != RUNNABLE || pre == 0 || code != 0 {
        return Err(format!("spin state {}, preemptions {pre}, counter exit {code}", state_name(s.state.load(SeqCst))));
    }
    sched::stop(spinner.slot);
    Ok(())
}
