//! The activator's load-balancing policies: which of a revision's assigned pods
//! gets the next request (spec §4).
//!
//! Mirrors upstream's `pkg/activator/net/lb_policy.go`. The policy is chosen by
//! the revision's container concurrency ([`Policy::for_container_concurrency`]):
//!
//! - **first-available** (cc 1–3): the first pod, in sorted order, with a free
//!   slot. Packs requests onto the lowest-sorted pods so the others can drain
//!   and scale down.
//! - **round-robin** (cc > 3): like first-available but starting after the pod
//!   picked last, so load spreads when every pod has room.
//! - **random choice of 2** (cc 0): two distinct random pods, the one with less
//!   in flight wins. There is no per-pod limit to respect, only load to spread.
//!
//! The policies are plain functions over a slice of [`Target`]s, so they are
//! tested here with fake pods; the throttler's pod trackers implement
//! [`Target`]. A policy returns the index it picked together with the slot it
//! reserved; `None` means "no pod can take it right now" and the throttler
//! re-enters its queue.

use parking_lot::Mutex;

/// What a policy needs from a pod.
pub trait Target {
    /// A reservation on the pod, released on drop.
    type Slot;

    /// Reserves a slot on the pod now, or fails without waiting (upstream's
    /// `Reserve`). Pods without a per-pod limit always succeed and count the
    /// reservation in [`Target::weight`].
    fn try_reserve(&self) -> Option<Self::Slot>;

    /// Requests currently sent to the pod through unlimited reservations (the
    /// random-choice-of-2 weight).
    fn weight(&self) -> usize;
}

/// One revision's policy (the round-robin one carries its position).
#[derive(Debug)]
pub enum Policy {
    FirstAvailable,
    RoundRobin(RoundRobin),
    RandomChoice2,
}

impl Policy {
    /// Upstream's default choice: random-choice-of-2 for unlimited
    /// concurrency, first-available up to 3, round-robin above.
    pub fn for_container_concurrency(cc: u32) -> Self {
        match cc {
            0 => Policy::RandomChoice2,
            1..=3 => Policy::FirstAvailable,
            _ => Policy::RoundRobin(RoundRobin::default()),
        }
    }

    /// Picks a target among `targets` (sorted by destination) and reserves a
    /// slot on it.
    pub fn pick<T: Target>(&self, targets: &[T]) -> Option<(usize, T::Slot)> {
        match self {
            Policy::FirstAvailable => first_available(targets),
            Policy::RoundRobin(rr) => rr.pick(targets),
            Policy::RandomChoice2 => random_choice_2(targets, &mut fastrand::Rng::new()),
        }
    }
}

/// The first target, in order, that can reserve a slot now.
pub fn first_available<T: Target>(targets: &[T]) -> Option<(usize, T::Slot)> {
    targets
        .iter()
        .enumerate()
        .find_map(|(i, t)| t.try_reserve().map(|slot| (i, slot)))
}

/// Round-robin over targets with free slots. One position per revision,
/// behind a mutex as upstream.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: Mutex<usize>,
}

impl RoundRobin {
    /// Tries every target once, starting at the stored position (reset to 0 if
    /// the list shrank below it). A success at `p` moves the position to
    /// `p + 1`; when every target is full the position stays where it was.
    pub fn pick<T: Target>(&self, targets: &[T]) -> Option<(usize, T::Slot)> {
        let mut next = self.next.lock();
        let len = targets.len();
        if *next >= len {
            *next = 0;
        }
        for i in 0..len {
            let p = (*next + i) % len;
            if let Some(slot) = targets[p].try_reserve() {
                *next = p + 1;
                return Some((p, slot));
            }
        }
        None
    }

    /// The position the next pick starts from (before any reset).
    pub fn position(&self) -> usize {
        *self.next.lock()
    }
}

/// The power of two random choices: with one target, that one; with two,
/// both; otherwise two distinct uniformly random ones. The lighter one wins,
/// a tie is a coin flip, and the winner's weight goes up until its slot is
/// dropped.
pub fn random_choice_2<T: Target>(
    targets: &[T],
    rng: &mut fastrand::Rng,
) -> Option<(usize, T::Slot)> {
    let pick = match targets.len() {
        0 => return None,
        1 => 0,
        len => {
            let (a, b) = if len == 2 {
                (0, 1)
            } else {
                // A second index drawn from the other len - 1 positions.
                let a = rng.usize(..len);
                let b = rng.usize(..len - 1);
                (a, if b >= a { b + 1 } else { b })
            };
            let (wa, wb) = (targets[a].weight(), targets[b].weight());
            if wa < wb || (wa == wb && rng.bool()) {
                a
            } else {
                b
            }
        }
    };
    targets[pick].try_reserve().map(|slot| (pick, slot))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    /// A pod with `limit` slots (`None`: unlimited, weighted).
    struct Fake {
        limit: Option<usize>,
        used: Rc<Cell<usize>>,
    }

    struct FakeSlot(Rc<Cell<usize>>);

    impl Drop for FakeSlot {
        fn drop(&mut self) {
            self.0.set(self.0.get() - 1);
        }
    }

    impl Target for Fake {
        type Slot = FakeSlot;
        fn try_reserve(&self) -> Option<FakeSlot> {
            if self.limit.is_some_and(|l| self.used.get() >= l) {
                return None;
            }
            self.used.set(self.used.get() + 1);
            Some(FakeSlot(self.used.clone()))
        }
        fn weight(&self) -> usize {
            self.used.get()
        }
    }

    fn fakes(n: usize, limit: Option<usize>) -> Vec<Fake> {
        (0..n)
            .map(|_| Fake {
                limit,
                used: Rc::new(Cell::new(0)),
            })
            .collect()
    }

    fn picked<S>(p: Option<(usize, S)>) -> (usize, S) {
        p.expect("a target was picked")
    }

    #[test]
    fn policy_follows_container_concurrency() {
        assert!(matches!(
            Policy::for_container_concurrency(0),
            Policy::RandomChoice2
        ));
        for cc in 1..=3 {
            assert!(matches!(
                Policy::for_container_concurrency(cc),
                Policy::FirstAvailable
            ));
        }
        assert!(matches!(
            Policy::for_container_concurrency(4),
            Policy::RoundRobin(_)
        ));
    }

    // §10 check 32 (policy level): requests pack onto the first pod.
    #[test]
    fn first_available_packs_onto_the_first_pod_with_room() {
        let pods = fakes(5, Some(3));
        let slots: Vec<_> = (0..3).map(|_| picked(first_available(&pods))).collect();
        assert!(slots.iter().all(|(i, _)| *i == 0));
        // The fourth spills to the next pod.
        let (i, _s) = picked(first_available(&pods));
        assert_eq!(i, 1);
    }

    #[test]
    fn first_available_finds_nothing_when_all_are_full() {
        let pods = fakes(2, Some(1));
        let _a = picked(first_available(&pods));
        let (i, b) = picked(first_available(&pods));
        assert_eq!(i, 1);
        assert!(first_available(&pods).is_none());
        drop(b);
        assert_eq!(picked(first_available(&pods)).0, 1);
        assert!(first_available::<Fake>(&[]).is_none());
    }

    // Upstream's TestRoundRobin "with cc=1": index moves past each pick,
    // resets when the list shrinks, and stays put when all are full.
    #[test]
    fn round_robin_index_with_one_slot_per_pod() {
        let rr = RoundRobin::default();
        let pods = fakes(3, Some(1));
        let (i0, _s0) = picked(rr.pick(&pods));
        let (i1, _s1) = picked(rr.pick(&pods));
        assert_eq!((i0, i1), (0, 1));
        // A shorter list: the position (2) resets to 0, which is taken.
        assert!(rr.pick(&pods[..1]).is_none());
        assert_eq!(rr.position(), 0);
        let (i2, s2) = picked(rr.pick(&pods));
        assert_eq!(i2, 2);
        assert_eq!(rr.position(), 3);
        // All full: nothing (the position past the end was reset to 0 first).
        assert!(rr.pick(&pods).is_none());
        assert_eq!(rr.position(), 0);
        drop(s2);
        assert_eq!(picked(rr.pick(&pods)).0, 2);
    }

    // Spec §4: when every target is full the position does not move.
    #[test]
    fn round_robin_keeps_its_position_when_all_are_full() {
        let rr = RoundRobin::default();
        let pods = fakes(3, Some(1));
        let (i0, _s0) = picked(rr.pick(&pods));
        assert_eq!((i0, rr.position()), (0, 1));
        let _s1 = pods[1].try_reserve().unwrap();
        let s2 = pods[2].try_reserve().unwrap();
        assert!(rr.pick(&pods).is_none());
        assert_eq!(rr.position(), 1);
        // Still starts at 1: pod 1 is busy, pod 2 (freed) is next.
        drop(s2);
        assert_eq!(picked(rr.pick(&pods)).0, 2);
        assert_eq!(rr.position(), 3);
    }

    // Upstream's TestRoundRobin "with cc=2".
    #[test]
    fn round_robin_index_with_two_slots_per_pod() {
        let rr = RoundRobin::default();
        let pods = fakes(3, Some(2));
        let mut held = Vec::new();
        let mut order = Vec::new();
        for targets in [
            &pods[..],
            &pods[..],
            &pods[..1],
            &pods[..],
            &pods[..],
            &pods[..],
        ] {
            let (i, s) = picked(rr.pick(targets));
            order.push(i);
            held.push(s);
        }
        // After 0, 1 the short list restarts at 0; then 1 and 2; pods 0 and 1
        // are full, so 2 again.
        assert_eq!(order, vec![0, 1, 0, 1, 2, 2]);
    }

    // §10 check 33 (policy level): with room everywhere each pod gets one.
    #[test]
    fn round_robin_spreads_over_pods_with_room() {
        let rr = RoundRobin::default();
        let pods = fakes(3, Some(5));
        let order: Vec<_> = (0..6)
            .map(|_| picked(rr.pick(&pods)))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(order, vec![0, 1, 2, 0, 1, 2]);
    }

    // Upstream's TestRandomChoice2: one, two and three trackers.
    #[test]
    fn random_choice_2_with_one_and_two_targets() {
        let mut rng = fastrand::Rng::with_seed(7);
        let one = fakes(1, None);
        let a = picked(random_choice_2(&one, &mut rng));
        let b = picked(random_choice_2(&one, &mut rng));
        assert_eq!((a.0, b.0), (0, 0));
        assert_eq!(one[0].weight(), 2);
        drop(b);
        assert_eq!(one[0].weight(), 1);

        let two = fakes(2, None);
        let (first, _f) = picked(random_choice_2(&two, &mut rng));
        // The other one is lighter now.
        let (second, s) = picked(random_choice_2(&two, &mut rng));
        assert_ne!(first, second);
        drop(s);
        let (third, _t) = picked(random_choice_2(&two, &mut rng));
        assert_eq!(third, second);
        assert!(random_choice_2::<Fake>(&[], &mut rng).is_none());
    }

    #[test]
    fn random_choice_2_prefers_the_lighter_of_the_two() {
        let mut rng = fastrand::Rng::with_seed(42);
        let pods = fakes(2, None);
        let _busy: Vec<_> = (0..3).map(|_| pods[1].try_reserve().unwrap()).collect();
        for _ in 0..100 {
            let (i, _s) = picked(random_choice_2(&pods, &mut rng));
            assert_eq!(i, 0, "pod 0 (weight 0..1) is always lighter than pod 1 (3)");
        }
    }

    #[test]
    fn random_choice_2_breaks_ties_both_ways() {
        let mut rng = fastrand::Rng::with_seed(1);
        let pods = fakes(2, None);
        let mut wins = [0; 2];
        for _ in 0..200 {
            // Dropped at once: both stay at weight 0.
            wins[picked(random_choice_2(&pods, &mut rng)).0] += 1;
        }
        assert!(wins[0] > 50 && wins[1] > 50, "{wins:?}");
    }

    #[test]
    fn random_choice_2_spreads_held_load_evenly() {
        let mut rng = fastrand::Rng::with_seed(3);
        let pods = fakes(10, None);
        let held: Vec<_> = (0..1000)
            .map(|_| picked(random_choice_2(&pods, &mut rng)))
            .collect();
        let weights: Vec<_> = pods.iter().map(Target::weight).collect();
        assert_eq!(weights.iter().sum::<usize>(), held.len());
        // Two choices keep the spread tight (uniform random would not).
        let (min, max) = (weights.iter().min().unwrap(), weights.iter().max().unwrap());
        assert!(max - min <= 5, "{weights:?}");
    }

    #[test]
    fn random_choice_2_picks_two_distinct_targets() {
        // With three targets of which two are loaded, an equal pair never
        // comes up: whenever the idle one is drawn it wins, otherwise one of
        // the loaded ones does. Over many draws all three get picked, and the
        // idle one most often.
        let mut rng = fastrand::Rng::with_seed(9);
        let pods = fakes(3, None);
        let _load1: Vec<_> = (0..5).map(|_| pods[1].try_reserve().unwrap()).collect();
        let _load2: Vec<_> = (0..5).map(|_| pods[2].try_reserve().unwrap()).collect();
        let mut wins = [0; 3];
        for _ in 0..3000 {
            wins[picked(random_choice_2(&pods, &mut rng)).0] += 1;
        }
        // Pod 0 is in 2 of the 3 distinct pairs: ~2/3 of the picks.
        assert!((1800..2200).contains(&wins[0]), "{wins:?}");
        assert!(wins[1] > 300 && wins[2] > 300, "{wins:?}");
    }
}
