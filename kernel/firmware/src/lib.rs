//! ACPI discovery through the `acpi` crate (work in progress).
#![cfg_attr(not(test), no_std)]
