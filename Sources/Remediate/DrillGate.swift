import Foundation

/// Lets the recovery drills of one guardian process run one at a time. Each
/// database has its own `DrillService` and the `drills:` defaults give them
/// all the same slot; run at once, their copies could fill the scratch
/// filesystem that each drill checked alone. An async mutex: turns are given
/// in the order they were asked for (FIFO), a drill waiting for its turn can
/// be cancelled (it leaves the queue at once and gets `CancellationError`),
/// and a turn is always handed back, whatever the drill did.
public actor DrillGate {
    /// The gate of every drill of this process (the daemon's services and `guardian drill`).
    public static let shared = DrillGate()

    private var held = false
    private var waiters: [(id: UInt64, continuation: CheckedContinuation<Void, any Error>)] = []
    private var nextID: UInt64 = 0

    public init() {}

    /// Runs `body` in this gate's next turn. Throws `CancellationError` if
    /// cancelled before the turn came (`body` did not run).
    public nonisolated func withTurn<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        try await acquire()
        do {
            let value = try await body()
            await release()
            return value
        } catch {
            await release()
            throw error
        }
    }

    /// Drills waiting for their turn (not counting the one running).
    public var waiting: Int { waiters.count }

    /// Whether a drill has the turn.
    public var isHeld: Bool { held }

    func acquire() async throws {
        if !held {
            try Task.checkCancellation()
            held = true
            return
        }
        let id = nextID
        nextID += 1
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
                if Task.isCancelled {
                    c.resume(throwing: CancellationError())
                } else {
                    waiters.append((id, c))
                }
            }
        } onCancel: {
            Task { await self.leave(id) }
        }
    }

    /// A cancelled waiter leaves the queue (if its turn has not come yet:
    /// then it keeps the turn and hands it back when done).
    private func leave(_ id: UInt64) {
        guard let i = waiters.firstIndex(where: { $0.id == id }) else { return }
        waiters.remove(at: i).continuation.resume(throwing: CancellationError())
    }

    /// Hands the turn to the longest waiter, or frees the gate.
    func release() {
        if waiters.isEmpty {
            held = false
        } else {
            waiters.removeFirst().continuation.resume()
        }
    }
}
