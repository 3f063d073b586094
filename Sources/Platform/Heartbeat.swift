import Foundation

/// Keeps a watched loop's heartbeat going while it does known long work
/// (a snapshot, a full image, waiting out a remediation pause), so that
/// systemd's watchdog does not kill guardian in the middle of it — but only
/// for `limit`: work that runs longer than that stops beating, and a loop
/// that hangs there is caught as before.
///
/// The beats come from a task of their own, every `every`, starting one
/// interval after the work began (a quick piece of work costs no beat).
public enum Heartbeat {
    public static func whileWorking<T>(
        isolation: isolated (any Actor)? = #isolation,
        every: Duration = .seconds(1), limit: Duration,
        beat: @escaping @Sendable () async -> Void,
        _ work: () async throws -> T
    ) async rethrows -> T {
        let beater = start(every: every, limit: limit, beat: beat)
        defer { beater.cancel() }
        return try await work()
    }

    /// The same for work that is not one closure: beats until the returned
    /// task is cancelled, or for `limit` at most.
    public static func start(every: Duration = .seconds(1), limit: Duration, beat: @escaping @Sendable () async -> Void) -> Task<Void, Never> {
        let deadline = ContinuousClock.now + limit
        return Task {
            while true {
                try? await Task.sleep(for: every)
                if Task.isCancelled || ContinuousClock.now >= deadline { return }
                await beat()
            }
        }
    }
}
