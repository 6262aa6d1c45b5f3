//! Register access, kept behind a trait so that the transport's protocol
//! runs against a fake register window on the host: the tree's one
//! register-window trait (`drivers/regs`), shared with the NVMe driver. On
//! the exokernel the runtime's `mmio::Window` over the moved BAR
//! implements it (`exo_rt::virtio`). The transport also needs `Clone` (it
//! keeps a second handle for status checks while `virtio-drivers` owns the
//! transport) and asks for it where it does.

pub use regs::Registers;
