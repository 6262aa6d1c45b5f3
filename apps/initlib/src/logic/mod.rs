//! The decisions of init's services as pure functions, tested on the host
//! (`cargo test -p initlib`): frame accounting, spawn planning, the
//! scheduler's choice, device choice. The modules beside this one apply
//! them to the machine.

pub mod devices;
pub mod frames;
pub mod sched;
pub mod spawn;
