import Foundation

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
        return await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await self.waitUntilIdle()
                return !Task.isCancelled
            }
            group.addTask {
                try? await Task.sleep(for: limit)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
    }
}
