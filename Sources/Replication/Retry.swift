import Foundation
import Logging
import Platform

/// Capped exponential backoff with jitter, for one request to a remote
/// replica. The delay before retry n (n = 1, 2, ...) is drawn uniformly from
/// [d/2, d] where d = min(maxDelay, initialDelay * 2^(n-1)): it grows, never
/// exceeds the cap, and clients that failed together do not retry together.
///
/// The client retries a few times within one call; when the attempts are used
/// up the call throws a `.transient` `ReplicaError`, and the replicator keeps
/// the replica's position where it is and tries again later (nothing is skipped).
public struct RetryPolicy: Sendable, Equatable {
    public var maxAttempts: Int
    public var initialDelay: Duration
    public var maxDelay: Duration

    public init(maxAttempts: Int, initialDelay: Duration, maxDelay: Duration) {
        self.maxAttempts = max(1, maxAttempts)
        self.initialDelay = initialDelay
        self.maxDelay = max(initialDelay, maxDelay)
    }

    /// About 10 s of trying in the worst case.
    public static let standard = RetryPolicy(maxAttempts: 5, initialDelay: .milliseconds(250), maxDelay: .seconds(4))
    /// For tests and one-shot commands that must not wait.
    public static let none = RetryPolicy(maxAttempts: 1, initialDelay: .zero, maxDelay: .zero)

    /// The upper bound of the delay before retry `retry` (1-based), before jitter.
    public func ceiling(beforeRetry retry: Int) -> Duration {
        var d = initialDelay
        var n = 1
        while n < retry, d < maxDelay {
            d = d * 2
            n += 1
        }
        return min(d, maxDelay)
    }

    /// The delay before retry `retry` (1-based), jittered into [ceiling/2, ceiling].
    public func delay(beforeRetry retry: Int, using generator: inout some RandomNumberGenerator) -> Duration {
        let ceiling = ceiling(beforeRetry: retry)
        let fraction = Double.random(in: 0.5...1.0, using: &generator)
        return ceiling * fraction
    }
}

public enum Retry {
    /// Runs `body` until it succeeds, fails permanently, or the policy's
    /// attempts are used up; then rethrows the last error. `onRetry` sees
    /// each transient failure and the delay before the next attempt.
    public static func run<T: Sendable>(
        _ policy: RetryPolicy,
        isTransient: (any Error) -> Bool = Retry.isTransient,
        onRetry: (_ attempt: Int, _ error: any Error, _ delay: Duration) async -> Void = { _, _, _ in },
        _ body: (_ attempt: Int) async throws -> T
    ) async throws -> T {
        var generator = SystemRandomNumberGenerator()
        var attempt = 1
        while true {
            do {
                return try await body(attempt)
            } catch {
                guard attempt < policy.maxAttempts, isTransient(error), !Task.isCancelled else { throw error }
                let delay = policy.delay(beforeRetry: attempt, using: &generator)
                await onRetry(attempt, error, delay)
                try await Task.sleep(for: delay)
                attempt += 1
            }
        }
    }

    /// Transient: worth retrying (the peer may recover). Permanent: retrying
    /// cannot help (bad credentials, missing bucket, refused host key, local
    /// file errors, cancellation).
    public static func isTransient(_ error: any Error) -> Bool {
        switch error {
        case let e as ReplicaError: return e.kind == .transient
        case let e as HTTPError: return e.isTransient
        default: return false
        }
    }
}

extension GuardianEvent {
    /// One request to a remote replica failed transiently and will be retried.
    public static let replicaRequestRetrying = GuardianEvent(
        name: "replicaRequestRetrying", id: "abe76b075d9007ac2d5de73d8bc95114",
        message: "replica request failed; retrying")
}
