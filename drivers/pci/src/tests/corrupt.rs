//! Configuration space is device-controlled input: every malformed shape
//! here must end in a clear result, never a panic or a hang.

use super::*;
use testrng::Rng;

const NVME: Address = Address::new(0, 0, 3, 0);

fn nvme(s: &mut Space) -> &mut Dev {
    s.devs.get_mut(&(0, 3, 0)).unwrap()
}

#[test]
fn two_entry_capability_cycle_ends_as_a_loop() {
    let mut s = q35();
    // 0x40 (MSI-X) -> 0x60 (PCIe) -> back to 0x40.
    nvme(&mut s).set8(0x61, 0x40);
    let list = capabilities(&s, NVME);
    assert_eq!(list.iter().collect::<Vec<_>>(), vec![(0x11, 0x40), (0x10, 0x60)]);
    assert_eq!(list.end, ListEnd::Loop { offset: 0x40 });
    assert_eq!(find_capability(&s, NVME, cap_id::MSI), None, "search through a loop ends");
}

#[test]
fn a_loop_of_null_entries_ends() {
    // pci_types skips id-0 entries inside a single `next()`: unguarded,
    // this list would never return from it.
    let mut s = q35();
    let d = nvme(&mut s);
    d.set8(0x60, 0x00);
    d.set8(0x61, 0x80);
    d.set8(0x80, 0x00);
    d.set8(0x81, 0x60);
    let list = capabilities(&s, NVME);
    assert_eq!(list.iter().collect::<Vec<_>>(), vec![(0x11, 0x40)]);
    assert_eq!(list.end, ListEnd::Loop { offset: 0x60 });
    assert_eq!(express_port_type(&s, NVME), None);
}

#[test]
fn the_longest_possible_list_is_walked_in_full() {
    // 48 entries, every slot of 0x40..0x100, each pointing to the next.
    let mut s = q35();
    let d = nvme(&mut s);
    let list: Vec<(u8, u16, u16)> = (0..48).map(|i| (0x09, 0x40 + 4 * i, 0)).collect();
    d.capabilities(&list);
    let got = capabilities(&s, NVME);
    assert_eq!(got.len(), 48);
    assert_eq!(got.end, ListEnd::Complete);
    // The same slots in a ring: 48 entries, then the loop is named.
    nvme(&mut s).set8(0xfd, 0x40);
    let got = capabilities(&s, NVME);
    assert_eq!((got.len(), got.end), (48, ListEnd::Loop { offset: 0x40 }));
}

#[test]
fn pointers_into_the_header_end_the_walk() {
    for pointer in [0x04u8, 0x10, 0x34, 0x3c, 0x3f] {
        let mut s = q35();
        // As the first pointer ...
        nvme(&mut s).set8(0x34, pointer);
        let list = capabilities(&s, NVME);
        assert!(list.is_empty(), "pointer {pointer:#x}: {list:?}");
        assert_eq!(list.end, ListEnd::PointsIntoHeader { pointer: pointer as u16 });
        // ... and from inside the list.
        let mut s = q35();
        nvme(&mut s).set8(0x61, pointer);
        let list = capabilities(&s, NVME);
        assert_eq!(list.len(), 2);
        assert_eq!(list.end, ListEnd::PointsIntoHeader { pointer: pointer as u16 });
    }
}

#[test]
fn unaligned_pointers_use_the_containing_dword() {
    // The low two bits of a capability pointer are reserved (PCI 3.0 §6.7).
    let mut s = q35();
    nvme(&mut s).set8(0x34, 0x42);
    nvme(&mut s).set8(0x41, 0x63);
    let list = capabilities(&s, NVME);
    assert_eq!(list.iter().collect::<Vec<_>>(), vec![(0x11, 0x40), (0x10, 0x60)]);
    assert_eq!(list.end, ListEnd::Complete);
    let m = MsiX::read(&s, NVME).unwrap();
    assert_eq!((m.offset, m.table_size, m.table_offset, m.pba_offset), (0x40, 65, 0x2000, 0x3000));
}

#[test]
fn a_next_pointer_into_the_msix_body_is_a_plain_entry() {
    // MSI-X at 0x40 whose next pointer is its own table dword (0x44):
    // the table/PBA reads are not mistaken for list steps.
    let mut s = q35();
    nvme(&mut s).set8(0x41, 0x44);
    let list = capabilities(&s, NVME);
    // 0x44 holds 0x00002000: a null entry whose next pointer is 0x20, in
    // the header. (Had the table read at 0x44 counted as a visit, this
    // would have been reported as a loop at 0x44.)
    assert_eq!(list.iter().collect::<Vec<_>>(), vec![(0x11, 0x40)]);
    assert_eq!(list.end, ListEnd::PointsIntoHeader { pointer: 0x20 });
    assert_eq!(MsiX::read(&s, NVME).map(|m| m.table_offset), Some(0x2000));
}

/// A space in which every read answers all ones (no device anywhere, or a
/// device that fell off the bus).
struct AllOnes(usize);

impl ConfigSpace for AllOnes {
    fn read32(&self, _: Address, _: u16) -> u32 {
        u32::MAX
    }
    fn write32(&mut self, _: Address, _: u16, _: u32) {
        self.0 += 1;
    }
}

#[test]
fn all_ones_reads_mean_no_function() {
    let mut s = AllOnes(0);
    assert_eq!(enumerate(&s, 0, 0, (0, 255), |_| panic!("found a function in all ones")), 0);
    assert_eq!(capabilities(&s, NVME).end, ListEnd::NoFunction);
    assert_eq!(walk_extended_capabilities(&s, NVME, |_| true), ListEnd::NoFunction);
    assert_eq!(MsiX::read(&s, NVME), None);
    assert_eq!(SrIov::read(&s, NVME), None);
    // All ones also decodes as a CardBus-or-worse header: no BARs sized,
    // and nothing is written trying.
    assert_eq!(bars(&mut s, NVME, 0), [None; 6]);
    assert_eq!(s.0, 0);
}

#[test]
fn all_ones_in_the_middle_of_a_list() {
    let mut s = q35();
    // The PCIe entry's next pointer leads to a dword reading all ones.
    nvme(&mut s).set8(0x61, 0x80);
    nvme(&mut s).set32(0x80, u32::MAX);
    let list = capabilities(&s, NVME);
    assert_eq!(list.len(), 2);
    assert_eq!(list.end, ListEnd::AllOnes { offset: 0x80 });
    // Extended space that reads all ones (conventional PCI behind ECAM).
    nvme(&mut s).set32(0x100, u32::MAX);
    assert_eq!(walk_extended_capabilities(&s, NVME, |_| true), ListEnd::AllOnes { offset: 0x100 });
}

#[test]
fn extended_list_pointing_below_0x100_ends() {
    let mut s = q35();
    let pf = Address::new(0, 1, 0, 0);
    // SR-IOV at 0x100 whose next pointer is 0x0fc (into legacy space).
    s.devs.get_mut(&(1, 0, 0)).unwrap().set32(0x100, 0x0fc1_0010);
    let mut seen = Vec::new();
    let end = walk_extended_capabilities(&s, pf, |c| {
        seen.push((c.id, c.version, c.offset));
        true
    });
    assert_eq!(seen, vec![(0x10, 1, 0x100)]);
    assert_eq!(end, ListEnd::PointsIntoHeader { pointer: 0xfc });
    // Still found, since it comes first.
    assert!(SrIov::read(&s, pf).is_some());
}

#[test]
fn extended_list_of_every_slot_terminates() {
    // 960 dwords each pointing at the next, the last back to 0x100.
    let mut s = q35();
    let d = s.devs.get_mut(&(1, 0, 0)).unwrap();
    for off in (0x100u32..0x1000).step_by(4) {
        let next = if off == 0xffc { 0x100 } else { off + 4 };
        d.set32(off as u16, next << 20 | 0x1_000b);
    }
    let mut n = 0;
    let end = walk_extended_capabilities(&s, Address::new(0, 1, 0, 0), |_| {
        n += 1;
        true
    });
    assert_eq!((n, end), (960, ListEnd::Loop { offset: 0x100 }));
}

#[test]
fn bars_pci_types_would_panic_on_are_refused() {
    let mut s = q35();
    let d = s.devs.get_mut(&(0, 4, 0)).unwrap();
    // Reserved memory type 11 (pci_types: `panic!`), type 01 (below 1 MiB,
    // obsolete; the same panic), a prefetchable 32-bit BAR that implements
    // no address bits (pci_types: 1 << 32), a 64-bit one that implements
    // none (1 << 64), and a 64-bit BAR in the last slot (no upper half).
    d.space[4] = 0xfebf_0006;
    d.bar_writable[0] = 0xffff_f000;
    d.space[5] = 0xfebf_1002;
    d.bar_writable[1] = 0xffff_f000;
    d.space[6] = 0x0000_0008;
    d.bar_writable[2] = 0;
    d.space[7] = 0x0000_0004;
    d.bar_writable[3] = 0;
    d.space[8] = 0;
    d.bar_writable[4] = 0;
    d.space[9] = 0xfe00_000c;
    d.bar_writable[5] = 0xffff_f000;
    let before = d.space;
    let at = Address::new(0, 0, 4, 0);
    assert_eq!(bars(&mut s, at, 0), [None; 6]);
    for i in 0..6 {
        assert_eq!(size_bar(&mut s, at, i, 0), None, "BAR {i}");
    }
    assert_eq!(s.devs[&(0, 4, 0)].space, before, "state restored");
}

#[test]
#[should_panic(expected = "reserved")]
fn pci_types_alone_panics_on_a_reserved_bar_type() {
    // Why `bar::size_bar` checks the type first. If this stops panicking,
    // pci_types changed and the note in bar.rs should be revisited.
    let mut s = q35();
    s.devs.get_mut(&(0, 4, 0)).unwrap().space[4] = 0xfebf_0006;
    let view = access::Access(access::ReadWrite::new(&mut s));
    let pci = access::to_pci(Address::new(0, 0, 4, 0)).unwrap();
    let ep = pci_types::EndpointHeader::from_header(pci_types::PciHeader::new(pci), &view).unwrap();
    let _ = ep.bar(0, &view);
}

#[test]
fn addresses_outside_pci_are_refused_not_panicked_on() {
    // pci_types' `PciAddress::new` asserts device < 32 and function < 8.
    let mut s = q35();
    for at in [Address::new(0, 0, 32, 0), Address::new(0, 0, 3, 8), Address::new(0, 0, 255, 255)] {
        assert_eq!(bars(&mut s, at, 0), [None; 6]);
        assert_eq!(capabilities(&s, at).end, ListEnd::NoFunction);
        assert_eq!(walk_extended_capabilities(&s, at, |_| true), ListEnd::NoFunction);
        assert_eq!(MsiX::read(&s, at), None);
    }
    assert_eq!(s.writes, 0);
}

#[test]
fn wrong_header_types_are_not_misread() {
    let mut s = q35();
    // A bridge has no endpoint BARs (and pci_types exposes none for it).
    let port = Address::new(0, 0, 0x1c, 0);
    assert_eq!(bars(&mut s, port, 1), [None; 6]);
    assert_eq!(bars(&mut s, port, 0), [None; 6], "the caller's header type is checked");
    // A CardBus header keeps its capability pointer elsewhere.
    let mut cardbus = Dev::new(0x104c, 0xac50, 0x0607_0000, 2);
    cardbus.capabilities(&[(0x01, 0x80, 0)]);
    s.devs.insert((0, 5, 0), cardbus);
    assert_eq!(capabilities(&s, Address::new(0, 0, 5, 0)).end, ListEnd::UnsupportedHeader { header_type: 2 });
    let f: Vec<_> = {
        let mut v = Vec::new();
        enumerate(&s, 0, 0, (0, 255), |f| v.push(*f));
        v
    };
    let cb = f.iter().find(|f| f.address.device == 5).unwrap();
    assert_eq!((cb.header_type, cb.bridge_buses), (2, None));
}

#[test]
fn bridges_out_of_the_window_or_reused_are_not_followed() {
    let mut s = q35();
    // A second root port claiming bus 1 again, and one claiming bus 200.
    let mut again = Dev::new(0x1b36, 0x000c, 0x0604_0000, 1);
    again.set32(0x18, 0x0001_0100);
    s.devs.insert((0, 0x1d, 0), again);
    let mut far = Dev::new(0x1b36, 0x000c, 0x0604_0000, 1);
    far.set32(0x18, 0x00c8_c800);
    s.devs.insert((0, 0x1e, 0), far);
    s.devs.insert((200, 0, 0), Dev::new(0x1b36, 0x0010, 0x0108_0202, 0));
    let all = found(&s, (0, 255));
    assert_eq!(all.iter().filter(|a| a.0 == 1).count(), 1, "bus 1 scanned once");
    assert!(all.contains(&(200, 0, 0)));
    assert!(!found(&s, (0, 16)).contains(&(200, 0, 0)), "bus 200 is outside the window");
}

#[test]
fn random_configuration_spaces_never_panic_or_hang() {
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    // How often each outcome occurred, so the test shows it reached them.
    let mut ends = std::collections::BTreeMap::new();
    let (mut entries, mut sized, mut functions) = (0, 0, 0);
    for round in 0..3000 {
        let mut s = Space::default();
        // Two buses of a few random functions each; headers random but
        // with a vendor id, so they are walked.
        for n in 0..4u8 {
            let mut d = Dev::new(0x1b36, 0x0010, 0, 0);
            for w in d.space.iter_mut().take(if round % 2 == 0 { 64 } else { 1024 }) {
                *w = rng.next_u64() as u32;
            }
            d.space[0] = 0x0010_1b36 | (rng.next_u64() as u32 & 0xff) << 24;
            // Mostly endpoints (some multi-function), some bridges (whose
            // random bus numbers may send the walk anywhere), some junk.
            let header_type = match rng.next_u64() % 8 {
                0..=3 => 0x00,
                4 => 0x80,
                5 | 6 => 0x01,
                _ => rng.next_u64() as u8,
            };
            d.set8(0x0e, header_type);
            for b in d.bar_writable.iter_mut() {
                *b = rng.next_u64() as u32;
            }
            // Often point the capability list somewhere plausible.
            if rng.next_u64() & 1 == 0 {
                d.space[1] |= 1 << 20;
                d.set8(0x34, 0x40 + (rng.next_u64() % 0xc0) as u8);
            }
            let bus = n / 2;
            s.devs.insert((bus, 0, n % 2), d);
        }
        let mut funcs = Vec::new();
        enumerate(&s, 0, 0, (0, 255), |f| funcs.push(*f));
        for f in funcs {
            let at = f.address;
            functions += 1;
            let list = capabilities(&s, at);
            assert!(list.len() <= 48, "round {round}");
            entries += list.len();
            let kind = match list.end {
                ListEnd::Loop { .. } => "loop",
                ListEnd::PointsIntoHeader { .. } => "into header",
                ListEnd::AllOnes { .. } => "all ones",
                ListEnd::Complete => "complete",
                ListEnd::UnsupportedHeader { .. } => "unsupported header",
                ListEnd::NoFunction => "no function",
            };
            *ends.entry(kind).or_insert(0) += 1;
            let _ = (MsiX::read(&s, at), Msi::read(&s, at), express_port_type(&s, at));
            let _ = walk_extended_capabilities(&s, at, |_| true);
            if let Some(sr) = SrIov::read(&s, at) {
                let _ = sr.vf_bars(&mut s, at);
                let _ = sr.vf_address(at, sr.total_vfs);
            }
            for b in bars(&mut s, at, f.header_type).iter().flatten() {
                assert!(b.size.is_power_of_two(), "round {round}: {b:?}");
                sized += 1;
            }
        }
    }
    println!("{functions} functions, {entries} capabilities, {sized} BARs sized, list ends {ends:?}");
    for kind in ["loop", "into header", "complete", "unsupported header"] {
        assert!(ends.get(kind).copied().unwrap_or(0) > 10, "{kind} never happened: {ends:?}");
    }
    assert!(entries > 1000 && sized > 1000, "the walks did little: {entries} entries, {sized} BARs");
}
