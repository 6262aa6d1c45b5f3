//! Reporting repeated boots: the host is shared and single runs swing by
//! 2-4x, so the exokernel benchmarks boot several rounds and report, per
//! row, the round with the median ops/s *whole* (its latencies and counts
//! stay with it, never mixed across rounds). Used by `eval --drivers` and
//! `eval --db`.

use crate::results::Row;
use std::collections::BTreeMap;

/// The reported rows with their extra records, and every round's ops/s per key.
pub type Picked<E, K> = ((Vec<Row>, Vec<E>), BTreeMap<K, Vec<f64>>);

/// For each row key (`key` of the row), the round whose row has the median
/// `ops_per_sec` (the lower middle of an even count), with the extra
/// record `E` at the same index of that round; plus every round's ops/s
/// per key, sorted. Rows come out in the order of the first round that has
/// each key.
pub fn pick_median<E: Clone, K: Ord + Clone>(rounds: &[(Vec<Row>, Vec<E>)], key: impl Fn(&Row) -> K) -> Picked<E, K> {
    let mut all: BTreeMap<K, Vec<(f64, usize, usize)>> = BTreeMap::new();
    for (ri, (rows, _)) in rounds.iter().enumerate() {
        for (i, r) in rows.iter().enumerate() {
            all.entry(key(r)).or_default().push((r.ops_per_sec, ri, i));
        }
    }
    let (mut rows, mut extras, mut rates) = (vec![], vec![], BTreeMap::new());
    for (rs, _) in rounds {
        for r in rs {
            let k = key(r);
            if rates.contains_key(&k) {
                continue;
            }
            let mut v = all[&k].clone();
            v.sort_by(|x, y| x.0.total_cmp(&y.0));
            let (_, ri, i) = v[(v.len() - 1) / 2];
            rows.push(rounds[ri].0[i].clone());
            extras.push(rounds[ri].1[i].clone());
            rates.insert(k, v.iter().map(|x| x.0).collect());
        }
    }
    ((rows, extras), rates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_choose_what_counts_as_the_same_row() {
        let row = |m: &str, v: f64| Row { system: "exo".into(), medium: m.into(), ops_per_sec: v, ..Row::default() };
        let rounds = vec![
            (vec![row("nvme", 1.0), row("pmem", 30.0)], vec!['a', 'b']),
            (vec![row("nvme", 3.0), row("pmem", 10.0)], vec!['c', 'd']),
            (vec![row("nvme", 2.0), row("pmem", 20.0)], vec!['e', 'f']),
        ];
        let ((rows, extras), rates) = pick_median(&rounds, |r| r.medium.clone());
        assert_eq!(rows.iter().map(|r| r.ops_per_sec).collect::<Vec<_>>(), vec![2.0, 20.0]);
        assert_eq!(extras, vec!['e', 'f'], "the extra record comes from the median row's round");
        assert_eq!(rates["pmem"], vec![10.0, 20.0, 30.0]);
        // One key for everything: a single median over all six rows.
        let ((rows, _), _) = pick_median(&rounds, |_| ());
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].ops_per_sec, 3.0);
    }
}
