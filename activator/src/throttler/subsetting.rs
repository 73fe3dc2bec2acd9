//! Which of a revision's pods this activator sends to when several activators
//! front it (spec §3.3): upstream's `inferIndex`, `pickIndices` and
//! `assignSlice` in `pkg/activator/net/throttler.go`.
//!
//! Every activator sorts the same two lists the same way (activator IPs and pod
//! `ip:port`s, both as byte-wise string order like Go's `sort.Strings`), finds
//! its own position among the activators and takes its share of the pods.
//! Without any coordination each pod then belongs to exactly one activator
//! when there are at least as many pods as activators, so per-pod concurrency
//! limits hold across activators.

/// This activator's place among those fronting a revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subset {
    /// How many activators front the revision (0 until known).
    pub num_activators: u32,
    /// This activator's position in their sorted IPs; −1 until this activator
    /// appears among them, which means "use all pods".
    pub index: i32,
}

impl Default for Subset {
    fn default() -> Self {
        Subset {
            num_activators: 0,
            index: -1,
        }
    }
}

impl Subset {
    /// The subset described by the activator IPs fronting a revision, or
    /// `None` when `self_ip` is not among them (the caller then keeps its old
    /// values). Duplicates count once; order is byte-wise lexicographic, so
    /// `10.0.0.10` sorts before `10.0.0.9` exactly as in Go.
    pub fn from_activators(activator_ips: &[String], self_ip: &str) -> Option<Subset> {
        let mut ips: Vec<&str> = activator_ips.iter().map(String::as_str).collect();
        ips.sort_unstable();
        ips.dedup();
        let index = ips.binary_search(&self_ip).ok()?;
        Some(Subset {
            num_activators: u32::try_from(ips.len()).unwrap_or(u32::MAX),
            index: i32::try_from(index).unwrap_or(i32::MAX),
        })
    }
}

/// This activator's share of `sorted` pods.
///
/// All of them while the index is unknown (−1), with at most one pod or with a
/// single activator. With more activators than pods, the one pod at
/// `index mod pods` (shared: each sharer assumes the pod's full concurrency).
/// Otherwise an even slice, and the first `pods mod activators` activators
/// each also take one pod of the remainder at the end.
pub fn assign_slice<T: Clone>(sorted: &[T], index: i32, num_activators: u32) -> Vec<T> {
    let n = sorted.len();
    let (Ok(index), Ok(na)) = (usize::try_from(index), usize::try_from(num_activators)) else {
        return sorted.to_vec();
    };
    if n <= 1 || na <= 1 {
        return sorted.to_vec();
    }
    if na > n {
        return vec![sorted[index % n].clone()];
    }
    let size = n / na;
    let remnants = n % na;
    let begin = (index * size).min(n);
    let end = (begin + size).min(n);
    let mut assigned = sorted[begin..end].to_vec();
    if index < remnants {
        assigned.push(sorted[n - remnants + index].clone());
    }
    assigned
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn numbered(n: usize) -> Vec<usize> {
        (0..n).collect()
    }

    // §10 check 31 (upstream's TestInferIndex).
    #[test]
    fn index_is_the_position_among_sorted_activators() {
        const ME: &str = "10.10.10.3";
        for (list, want) in [
            (vec![], None),
            (vec!["11.11.11.11", "11.11.11.12"], None),
            (vec!["10.10.10.3", "11.11.11.11"], Some(0)),
            (
                vec!["10.10.10.1", "10.10.10.2", "10.10.10.3", "11.11.11.11"],
                Some(2),
            ),
            (vec!["10.10.10.1", "10.10.10.2", "10.10.10.3"], Some(2)),
            // Unsorted input with duplicates: a set, then sorted.
            (
                vec!["11.11.11.11", "10.10.10.3", "10.10.10.1", "10.10.10.1"],
                Some(1),
            ),
        ] {
            let got = Subset::from_activators(&ips(&list), ME).map(|s| s.index);
            assert_eq!(got, want, "{list:?}");
        }
        let s = Subset::from_activators(&ips(&["10.10.10.3", "11.11.11.11"]), ME).unwrap();
        assert_eq!(s.num_activators, 2);
    }

    // Go compares strings byte by byte, not as addresses.
    #[test]
    fn activators_sort_as_strings_like_go() {
        let list = ips(&["10.0.0.9", "10.0.0.10"]);
        assert_eq!(
            Subset::from_activators(&list, "10.0.0.10").map(|s| s.index),
            Some(0)
        );
        assert_eq!(
            Subset::from_activators(&list, "10.0.0.9").map(|s| s.index),
            Some(1)
        );
        assert!("10.0.0.10" < "10.0.0.9");
    }

    #[test]
    fn unknown_index_and_single_activator_take_everything() {
        let pods = numbered(3);
        assert_eq!(assign_slice(&pods, -1, 1), pods);
        assert_eq!(assign_slice(&pods, -1, 5), pods);
        assert_eq!(assign_slice(&pods, 1, 1), pods);
        assert_eq!(assign_slice(&pods[..1], 1, 3), vec![0]);
        assert!(assign_slice::<usize>(&[], 0, 1).is_empty());
        assert!(assign_slice::<usize>(&[], 1, 3).is_empty());
    }

    // Upstream's TestPickIndices, first half: more activators than pods.
    #[test]
    fn more_activators_than_pods_share_one_pod_each() {
        for (pods, acts, idx, want) in [
            (2, 3, 1, 1),
            (2, 3, 2, 0),
            (2, 3, 0, 0),
            (3, 5, 3, 0),
            (3, 5, 4, 1),
        ] {
            assert_eq!(
                assign_slice(&numbered(pods), idx, acts),
                vec![want],
                "{pods} pods, {acts} activators, index {idx}"
            );
        }
        // 1 pod: everyone takes it.
        assert_eq!(assign_slice(&numbered(1), 1, 2), vec![0]);
    }

    // Upstream's TestPickIndices / spec §3.3 examples.
    #[test]
    fn pods_are_sliced_evenly_and_the_remainder_goes_to_the_first_activators() {
        let ten = numbered(10);
        assert_eq!(assign_slice(&ten, 0, 3), vec![0, 1, 2, 9]);
        assert_eq!(assign_slice(&ten, 1, 3), vec![3, 4, 5]);
        assert_eq!(assign_slice(&ten, 2, 3), vec![6, 7, 8]);

        let many = numbered(150);
        assert_eq!(assign_slice(&many, 0, 5), (0..30).collect::<Vec<_>>());
        assert_eq!(assign_slice(&many, 1, 5), (30..60).collect::<Vec<_>>());
        assert_eq!(assign_slice(&many, 4, 5), (120..150).collect::<Vec<_>>());

        assert_eq!(assign_slice(&numbered(3), 2, 3), vec![2]);
    }

    // §10 checks 27 and 28: the assignments behind the pinned capacities.
    #[test]
    fn pinned_assignments() {
        let five = numbered(5);
        assert_eq!(assign_slice(&five, 0, 2), vec![0, 1, 4]);
        assert_eq!(assign_slice(&five, 1, 2), vec![2, 3]);
        let three = numbered(3);
        assert_eq!(assign_slice(&three, 0, 2), vec![0, 2]);
        assert_eq!(assign_slice(&three, 1, 2), vec![1]);
        let six: Vec<String> = (0..6).map(|i| format!("ip{i}")).collect();
        assert_eq!(assign_slice(&six, 0, 4), vec!["ip0", "ip4"]);
    }

    #[test]
    fn every_pod_belongs_to_exactly_one_activator_when_pods_outnumber_them() {
        for pods in 1..40usize {
            for acts in 1..=pods as u32 {
                let mut owners = vec![0; pods];
                for idx in 0..acts as i32 {
                    for p in assign_slice(&numbered(pods), idx, acts) {
                        owners[p] += 1;
                    }
                }
                assert!(
                    owners.iter().all(|&o| o == 1),
                    "{pods} pods, {acts} activators"
                );
            }
        }
    }
}
