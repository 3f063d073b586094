import Foundation
import Platform
import Synchronization

/// A check that did not finish within its time.
struct DeadlineExceeded: Error, CustomStringConvertible {
    let timeout: Duration
    var description: String { "no answer within \(Units.formatDuration(timeout))" }
}

/// Runs one check with a time limit that holds even when the work does not
/// notice cancellation (a blocking connect, a libssh2 call on its own
/// thread): at the deadline the caller gets `DeadlineExceeded` at once, the
/// work is cancelled and left to finish in the background.
enum Deadline {
    static func run<T: Sendable>(_ timeout: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let gate = Gate<T>()
        return try await withCheckedThrowingContinuation { continuation in
            gate.arm(continuation)
            let timer = Task {
                try await Task.sleep(for: timeout)
                gate.finish(.failure(DeadlineExceeded(timeout: timeout)))
            }
            let work = Task {
                let result: Result<T, any Error>
                do { result = .success(try await body()) } catch { result = .failure(error) }
                timer.cancel()
                gate.finish(result)
            }
            gate.onTimeout { work.cancel() }
        }
    }

    /// Resumes the continuation exactly once: with the work's result or the timeout.
    private final class Gate<T: Sendable>: Sendable {
        private struct State {
            var continuation: CheckedContinuation<T, any Error>?
            var done = false
            var cancelWork: (@Sendable () -> Void)?
            var timedOut = false
        }

        private let state = Mutex(State())

        func arm(_ c: CheckedContinuation<T, any Error>) {
            state.withLock { $0.continuation = c }
        }

        func onTimeout(_ cancel: @escaping @Sendable () -> Void) {
            let already = state.withLock { s -> Bool in
                s.cancelWork = cancel
                return s.timedOut
            }
            if already { cancel() }
        }

        func finish(_ result: Result<T, any Error>) {
            let (continuation, cancel) = state.withLock { s -> (CheckedContinuation<T, any Error>?, (@Sendable () -> Void)?) in
                guard !s.done else { return (nil, nil) }
                s.done = true
                let c = s.continuation
                s.continuation = nil
                if case .failure(let e) = result, e is DeadlineExceeded {
                    s.timedOut = true
                    return (c, s.cancelWork)
                }
                return (c, nil)
            }
            continuation?.resume(with: result)
            cancel?()
        }
    }
}
