import Foundation

/// A pool of dedicated OS threads for blocking calls (fsync, pread on big
/// files, sqlite3, libcurl, libssh2). Swift's cooperative pool has about one
/// thread per core and must never block; code in `async` contexts hands
/// blocking work to `BlockingPool.shared.run { ... }` instead. The pool
/// starts small and adds a thread whenever every thread is busy (up to
/// `maxThreads`), so a slow network call never starves a quick file operation.
/// Threads beyond the first `threads` end after `idleExit` (1 s) without work (a
/// burst of start-up work for many databases does not leave them behind).
public final class BlockingPool: @unchecked Sendable {
    public static let shared = BlockingPool(name: "guardian-io", threads: 2, maxThreads: 64)

    private let condition = NSCondition()
    private var jobs: [@Sendable () -> Void] = []
    private var head = 0
    private let name: String
    private let maxThreads: Int
    private var threads = 0
    private var idle = 0
    private static let released: @Sendable () -> Void = {}
    private let baseThreads: Int
    /// (A second: the threads a burst of start-up work for a thousand
    /// databases adds are gone a second after it, not five.)
    static let idleExit: TimeInterval = 1

    public init(name: String, threads: Int, maxThreads: Int = 64) {
        self.name = name
        self.maxThreads = max(threads, maxThreads)
        baseThreads = max(1, threads)
        condition.lock()
        for _ in 0..<max(1, threads) { spawn() }
        condition.unlock()
    }

    /// Called with the lock held.
    private func spawn() {
        threads += 1
        let label = "\(name)-\(threads)"
        let thread = Thread { [unowned self] in
            // (Named from the thread itself: on Linux that names the OS
            // thread; otherwise it keeps the name of the thread that spawned it.)
            Thread.current.name = label
            self.loop()
        }
        thread.start()
    }

    private func loop() {
        while true {
            condition.lock()
            idle += 1
            while head == jobs.count {
                if threads > baseThreads {
                    if !condition.wait(until: Date(timeIntervalSinceNow: Self.idleExit)), head == jobs.count, threads > baseThreads {
                        idle -= 1
                        threads -= 1
                        condition.unlock()
                        return
                    }
                } else {
                    condition.wait()
                }
            }
            idle -= 1
            let job = jobs[head]
            // Release the slot's closure now: it holds what it captured (an
            // LTX file of megabytes on its way to a replica) until then, and
            // the array keeps up to 1024 run jobs before compacting.
            jobs[head] = Self.released
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
        if jobs.count - head > idle, threads < maxThreads { spawn() }
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
    /// What the thread shares with the executor; the thread holds it, not the
    /// executor, so that it can end once the executor is released (an actor
    /// made per session or per client must not leave its thread behind).
    private final class Queue: @unchecked Sendable {
        let condition = NSCondition()
        var jobs: [UnownedJob] = []
        var stopped = false
    }

    private let queue = Queue()

    public init(name: String) {
        let queue = queue
        // Jobs only exist while their actor, and so this executor, is alive.
        let executor = UnownedSerialExecutor(ordinary: self)
        let thread = Thread { Self.loop(queue, executor) }
        thread.name = name
        thread.start()
    }

    deinit {
        queue.condition.lock()
        queue.stopped = true
        queue.condition.signal()
        queue.condition.unlock()
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        queue.condition.lock()
        queue.jobs.append(unowned)
        queue.condition.signal()
        queue.condition.unlock()
    }

    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    /// Runs jobs until the executor is released and nothing is left to run.
    private static func loop(_ queue: Queue, _ executor: UnownedSerialExecutor) {
        while true {
            queue.condition.lock()
            while queue.jobs.isEmpty, !queue.stopped { queue.condition.wait() }
            if queue.jobs.isEmpty, queue.stopped {
                queue.condition.unlock()
                return
            }
            let batch = queue.jobs
            queue.jobs.removeAll(keepingCapacity: true)
            queue.condition.unlock()
            for job in batch { job.runSynchronously(on: executor) }
        }
    }
}
