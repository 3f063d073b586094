import Foundation

/// A small pool of dedicated OS threads for blocking calls (fsync, pread on big
/// files, sqlite3, libcurl, libssh2). Swift's cooperative pool has about one
/// thread per core and must never block; code in `async` contexts hands
/// blocking work to `BlockingPool.shared.run { ... }` instead.
public final class BlockingPool: @unchecked Sendable {
    public static let shared = BlockingPool(name: "guardian-io", threads: 4)

    private let condition = NSCondition()
    private var jobs: [@Sendable () -> Void] = []
    private var head = 0

    public init(name: String, threads: Int) {
        for index in 0..<max(1, threads) {
            let thread = Thread { [unowned self] in self.loop() }
            thread.name = "\(name)-\(index)"
            thread.start()
        }
    }

    private func loop() {
        while true {
            condition.lock()
            while head == jobs.count { condition.wait() }
            let job = jobs[head]
            head += 1
            if head > 1024, head * 2 > jobs.count {
                jobs.removeFirst(head)
                head = 0
            }
            condition.unlock()
            job()
        }
    }

    private func submit(_ job: @escaping @Sendable () -> Void) {
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    /// Runs `body` on one of the pool's threads and resumes the caller with its result.
    public func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            submit {
                do { continuation.resume(returning: try body()) } catch { continuation.resume(throwing: error) }
            }
        }
    }

    /// Non-throwing variant.
    public func run<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { (continuation: CheckedContinuation<T, Never>) in
            submit { continuation.resume(returning: body()) }
        }
    }
}

/// A serial executor backed by one dedicated thread. An actor that owns a
/// SQLite connection or a blocking file descriptor uses it as its
/// `unownedExecutor`, so its methods may make blocking C calls without taking a
/// thread from the cooperative pool.
public final class ThreadExecutor: SerialExecutor, @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []

    public init(name: String) {
        let thread = Thread { [unowned self] in self.loop() }
        thread.name = name
        thread.start()
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        condition.lock()
        jobs.append(unowned)
        condition.signal()
        condition.unlock()
    }

    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    private func loop() {
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            let batch = jobs
            jobs.removeAll(keepingCapacity: true)
            condition.unlock()
            for job in batch { job.runSynchronously(on: asUnownedSerialExecutor()) }
        }
    }
}
