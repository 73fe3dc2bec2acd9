//! How many requests this activator lets through to a revision at once
//! (spec §3.2): upstream's `calculateCapacity` in
//! `pkg/activator/net/throttler.go`.
//!
//! Pod mode counts the pods assigned to this activator (each good for `cc`).
//! ClusterIP mode cannot see pods, so it splits `cc × ready backends` evenly
//! between the activators, keeping at least one slot. Unlimited concurrency
//! (cc = 0) with any backend, and any value above `MaxInt32`, become `MaxInt32`
//! (upstream's breaker needs a finite size; nothing real reaches it).

/// The revision breaker's largest capacity (Go's `queue.MaxBreakerCapacity`).
pub const REVISION_MAX_CONCURRENCY: usize = i32::MAX as usize;

/// Waiters the revision breaker and each pod breaker admit beyond their
/// capacity (upstream's `breakerQueueDepth`).
pub const BREAKER_QUEUE_DEPTH: usize = 10_000;

/// The revision breaker's capacity for container concurrency `cc`, given the
/// pod trackers assigned to this activator (0 in ClusterIP mode or without
/// pods), the revision's backend count and the number of activators.
pub fn revision_capacity(
    cc: u32,
    assigned_trackers: usize,
    backend_count: usize,
    num_activators: u32,
) -> usize {
    let cc = cc as usize;
    let mut capacity = if assigned_trackers > 0 {
        cc.saturating_mul(assigned_trackers)
    } else {
        let total = cc.saturating_mul(backend_count);
        if total > 0 {
            (total / (num_activators.max(1) as usize)).max(1)
        } else {
            0
        }
    };
    if backend_count > 0 && (cc == 0 || capacity > REVISION_MAX_CONCURRENCY) {
        capacity = REVISION_MAX_CONCURRENCY;
    }
    capacity
}

#[cfg(test)]
mod tests {
    use super::*;

    // §10 check 26, and the rest of upstream's TestThrottlerUpdateCapacity
    // table without pod trackers (ClusterIP mode).
    #[test]
    fn clusterip_mode_splits_backends_between_activators() {
        // (backends, activators, want) at cc = 10
        for (backends, activators, want) in [
            (1, 0, 10),
            (10, 0, 100),
            (100, 0, 1000),
            (10, 5, 20),
            (10, 200, 1),
            (0, 200, 0),
            (0, 0, 0),
        ] {
            assert_eq!(
                revision_capacity(10, 0, backends, activators),
                want,
                "{backends} backends, {activators} activators"
            );
        }
    }

    // §10 checks 27 and 28: capacity counts the assigned trackers only.
    #[test]
    fn pod_mode_counts_assigned_trackers() {
        // (cc, assigned, backends, activators, want)
        for (cc, assigned, backends, activators, want) in [
            (10, 1, 1, 1, 10),
            (10, 2, 2, 1, 20),
            (10, 1, 2, 2, 10),
            (10, 2, 3, 2, 20),
            (10, 1, 3, 2, 10),
            (1, 3, 5, 2, 3),
            (1, 2, 5, 2, 2),
            (42, 2, 6, 4, 84),
        ] {
            assert_eq!(
                revision_capacity(cc, assigned, backends, activators),
                want,
                "cc {cc}, {assigned} assigned of {backends}, {activators} activators"
            );
        }
    }

    // §10 check 29 (capacity part): unlimited concurrency is all or nothing.
    #[test]
    fn unlimited_concurrency_is_max_or_zero() {
        assert_eq!(revision_capacity(0, 3, 3, 2), REVISION_MAX_CONCURRENCY);
        assert_eq!(revision_capacity(0, 0, 1, 200), REVISION_MAX_CONCURRENCY);
        assert_eq!(revision_capacity(0, 0, 0, 0), 0);
    }

    // Upstream's TestThrottlerCalculateCapacity: huge values are clamped.
    #[test]
    fn capacity_is_clamped_to_max_int32() {
        assert_eq!(
            revision_capacity(10, REVISION_MAX_CONCURRENCY, 1, 1),
            REVISION_MAX_CONCURRENCY
        );
        assert_eq!(
            revision_capacity(u32::MAX, 0, usize::MAX, 1),
            REVISION_MAX_CONCURRENCY
        );
        // Just below the clamp stays as is.
        assert_eq!(revision_capacity(1, 0, 2_000_000_000, 1), 2_000_000_000);
    }
}
