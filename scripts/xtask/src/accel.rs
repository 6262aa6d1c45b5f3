//! Choosing the accelerator. TCG is the default (KVM on these machines is
//! nested and paravirtual: `-cpu max` and plain `-cpu host` abort on MSR
//! 0x10a, a small kernel took 3-7 s to start and a stock Linux stalled —
//! checked by hand on QEMU 7.2), so KVM is
//! only used when asked for, and `auto` proves it works (by booting a
//! dummy guest under it) before using it.

use crate::cli::AccelChoice;
use crate::dummy_guest;
use crate::machine::{self, Accel, Machine};
use crate::outcome::{Expect, Outcome};
use crate::runner::{self, RunOptions};
use anyhow::{bail, Result};
use std::path::Path;
use std::time::Duration;

/// Generous: nested KVM here takes 3-8 s just to start QEMU.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// `log_dir` receives the probe guest and its log.
pub fn resolve(choice: AccelChoice, images_dir: &Path, log_dir: &Path) -> Result<Accel> {
    match choice {
        AccelChoice::Tcg => Ok(Accel::Tcg),
        AccelChoice::Kvm => {
            if !Path::new("/dev/kvm").exists() {
                bail!("--accel kvm: /dev/kvm does not exist on this host (use --accel tcg)");
            }
            Ok(Accel::Kvm)
        }
        AccelChoice::Auto => match probe_kvm(images_dir, log_dir) {
            Ok(()) => {
                println!("accel auto: KVM works here, using kvm");
                Ok(Accel::Kvm)
            }
            Err(why) => {
                println!("accel auto: KVM unusable ({why}); falling back to tcg");
                Ok(Accel::Tcg)
            }
        },
    }
}

/// Boot a generated dummy guest (prints a line, exits through
/// isa-debug-exit) on the standard machine under KVM. Stronger than only
/// starting QEMU halted with `-S`: on this nested KVM some CPU models pass
/// start-up and abort once the vCPU runs (MSR 0x10a), and that must count
/// as "KVM unusable".
pub fn probe_kvm(images_dir: &Path, log_dir: &Path) -> Result<(), String> {
    if !Path::new("/dev/kvm").exists() {
        return Err("/dev/kvm does not exist".into());
    }
    let run = || -> anyhow::Result<Outcome> {
        std::fs::create_dir_all(log_dir)?;
        let kernel = log_dir.join("kvm-probe.elf");
        std::fs::write(&kernel, dummy_guest::elf("EXO-TEST-PASS kvm-probe\n", Some(0x10)))?;
        let cmd = Machine::new(images_dir).accel(Accel::Kvm).kernel(&kernel).command()?;
        let _images = machine::lock_images(images_dir)?;
        let opts = RunOptions {
            name: "kvm-probe".into(),
            log_dir: log_dir.to_path_buf(),
            timeout: Some(PROBE_TIMEOUT),
            echo: false,
            interactive: false,
        };
        Ok(runner::run(cmd, &opts, Expect::PassLine("kvm-probe"))?.outcome)
    };
    match run() {
        Ok(Outcome::Passed) => Ok(()),
        Ok(other) => Err(other.to_string()),
        Err(e) => Err(format!("{e:#}")),
    }
}
