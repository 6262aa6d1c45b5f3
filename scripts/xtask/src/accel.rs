//! Choosing the accelerator. TCG is the default (DESIGN.md section 5: KVM
//! here is nested and paravirtual, slow to start and fragile), so KVM is
//! only used when asked for, and `auto` proves it works before using it.

use crate::cli::AccelChoice;
use crate::machine::{Accel, Machine};
use crate::runner::KillOnDrop;
use anyhow::{bail, Result};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// How long a KVM QEMU must stay up (halted by `-S`) to count as working;
/// failures (no KVM, rejected CPU model, MSR aborts) show within this.
const PROBE_WINDOW: Duration = Duration::from_secs(4);

pub fn resolve(choice: AccelChoice, images_dir: &Path) -> Result<Accel> {
    match choice {
        AccelChoice::Tcg => Ok(Accel::Tcg),
        AccelChoice::Kvm => {
            if !Path::new("/dev/kvm").exists() {
                bail!("--accel kvm: /dev/kvm does not exist on this host (use --accel tcg)");
            }
            Ok(Accel::Kvm)
        }
        AccelChoice::Auto => match probe_kvm(images_dir) {
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

/// Start the standard machine under KVM with the CPU stopped (`-S`), no
/// kernel, and check QEMU is still alive after the probe window.
pub fn probe_kvm(images_dir: &Path) -> Result<(), String> {
    if !Path::new("/dev/kvm").exists() {
        return Err("/dev/kvm does not exist".into());
    }
    let mut cmd = Machine::new(images_dir).accel(Accel::Kvm).arg("-S").command().map_err(|e| e.to_string())?;
    crate::cmd::announce(&cmd);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = KillOnDrop(cmd.spawn().map_err(|e| format!("could not start QEMU: {e}"))?);
    let start = Instant::now();
    while start.elapsed() < PROBE_WINDOW {
        match child.0.try_wait() {
            Ok(Some(status)) => {
                let mut err = String::new();
                if let Some(mut e) = child.0.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message");
                return Err(format!("QEMU exited ({status}): {last}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("waiting for QEMU: {e}")),
        }
    }
    Ok(()) // still running: KVM accepted the machine; the guard kills it
}
