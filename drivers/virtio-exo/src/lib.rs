//! virtio-drivers on the exokernel (work in progress).
#![cfg_attr(not(test), no_std)]
