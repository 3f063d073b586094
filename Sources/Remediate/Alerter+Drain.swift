import Foundation
import Synchronization

extension Alerter {
    /// The end of an alerter's life, shared by the daemon's `AlertService`,
    /// a `DrillService` with an alerter of its own and `guardian drill`:
    /// accepts no new alert (`finish()`) and waits until every queued alert
    /// was delivered or given up, for at most `limit` (or until the caller is
    /// cancelled). Returns true when everything went out in time. `run()`
    /// must be running elsewhere; its owner cancels it afterwards, which stops
    /// the retries of what is still queued.
    @discardableResult
    public func finishAndDrain(limit: Duration) async -> Bool {
        finish()
        let outcome = DrainOutcome()
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Bool, Never>) in
                outcome.start(c)
                // The idle waiter outlives a drain that timed out only until
                // the alerter is idle or gone: the process is stopping then.
                let idle = Task { await self.waitUntilIdle(); outcome.end(true) }
                let timer = Task {
                    try? await Task.sleep(for: limit)
                    outcome.end(false)
                }
                outcome.onEnd { idle.cancel(); timer.cancel() }
            }
        } onCancel: {
            outcome.end(false)
        }
    }
}

/// The first of "idle", "limit reached" and "cancelled" resumes the waiting
/// `finishAndDrain`; the others find it resumed already.
private final class DrainOutcome: Sendable {
    private struct State {
        var continuation: CheckedContinuation<Bool, Never>?
        var result: Bool?
        var cleanup: (@Sendable () -> Void)?
    }

    private let state = Mutex(State())

    func start(_ c: CheckedContinuation<Bool, Never>) {
        let early = state.withLock { s -> Bool? in
            if let r = s.result { return r }
            s.continuation = c
            return nil
        }
        if let early { c.resume(returning: early) }
    }

    func end(_ result: Bool) {
        let (c, cleanup) = state.withLock { s -> (CheckedContinuation<Bool, Never>?, (@Sendable () -> Void)?) in
            guard s.result == nil else { return (nil, nil) }
            s.result = result
            defer { s.continuation = nil }
            return (s.continuation, s.cleanup)
        }
        c?.resume(returning: result)
        cleanup?()
    }

    /// Runs `cleanup` once the outcome is known (at once if it is already).
    func onEnd(_ cleanup: @escaping @Sendable () -> Void) {
        let done = state.withLock { s -> Bool in
            if s.result != nil { return true }
            s.cleanup = cleanup
            return false
        }
        if done { cleanup() }
    }
}
