import Foundation

/// One thread that fires every periodic timer of the process's per-database
/// work (a replication loop's idle tick, a remediation's health and
/// integrity ticks, a replica's lease renewal) instead of a sleeping task
/// and a dispatch timer per database and per tick. Due times are rounded up
/// to `resolution`, so timers due close together fire in one wake-up: with
/// thousands of idle databases the thread wakes a few times a second at
/// most, whatever their number.
///
/// A timer's closure runs on the ticker's thread and must return at once:
/// it hands the work over (yields a continuation, enqueues a job) and
/// returns when it fires next, or nil to stop.
public final class Ticker: @unchecked Sendable {
    /// (50 ms: a thousand idle databases' ticks come a few hundred times a
    /// second, spread at random; in 50 ms slots they cost the thread at
    /// most 20 wake-ups a second. Nothing on it needs finer timing.)
    public static let shared = Ticker(name: "guardian-tick", resolution: .milliseconds(50))

    /// A scheduled timer, for `cancel`.
    public struct Token: Sendable, Hashable {
        fileprivate let id: Int
    }

    private let lock = NSLock()
    private var heap: [(due: UInt64, id: Int)] = []
    private var timers: [Int: @Sendable () -> Duration?] = [:]
    private var nextID = 0
    /// The time the thread sleeps until (0 while it runs the due timers).
    private var sleepingUntil: UInt64 = 0
    private var wakeups = 0
    private var fired = 0
    private let resolution: UInt64
    private let readFD: Int32
    private let writeFD: Int32
    private let name: String

    public init(name: String, resolution: Duration) {
        self.name = name
        self.resolution = max(1, UInt64(resolution.components.seconds) * 1_000_000_000 + UInt64(resolution.components.attoseconds / 1_000_000_000))
        var fds: [Int32] = [-1, -1]
        if pipe(&fds) == 0 {
            for fd in fds {
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            }
        }
        (readFD, writeFD) = (fds[0], fds[1])
        let thread = Thread { [unowned self] in self.loop() }
        thread.start()
    }

    /// Calls `fire` after `first`, then after each duration it returns,
    /// until it returns nil or the timer is cancelled.
    @discardableResult
    public func schedule(after first: Duration, _ fire: @escaping @Sendable () -> Duration?) -> Token {
        let due = Self.now() &+ Self.nanoseconds(first)
        let (id, wake) = lock.withLock { () -> (Int, Bool) in
            nextID += 1
            timers[nextID] = fire
            push(due, nextID)
            // The thread sleeps past this timer's slot: it must look again.
            return (nextID, sleepingUntil != 0 && slot(due) < sleepingUntil)
        }
        if wake {
            var one: UInt8 = 1
            _ = write(writeFD, &one, 1)
        }
        return Token(id: id)
    }

    public func cancel(_ token: Token) {
        lock.withLock { _ = timers.removeValue(forKey: token.id) }
    }

    /// A stream that yields every `interval` (the first after `first`, by
    /// default one interval) until the consumer ends it. Ticks not taken
    /// yet are merged into one.
    public func ticks(every interval: Duration, first: Duration? = nil) -> AsyncStream<Void> {
        let (stream, continuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        let token = schedule(after: first ?? interval) {
            if case .terminated = continuation.yield(()) { return nil }
            return interval
        }
        continuation.onTermination = { [weak self] _ in self?.cancel(token) }
        return stream
    }

    /// How many timers are scheduled now.
    public var count: Int { lock.withLock { timers.count } }

    /// How often the thread woke up and how many timers fired (for tests and status).
    public var counters: (wakeups: Int, fired: Int) { lock.withLock { (wakeups, fired) } }

    // MARK: - The thread

    private func loop() {
        Thread.current.name = name  // (set from the thread itself: on Linux that names the OS thread)
        var pfd = pollfd(fd: readFD, events: Int16(POLLIN), revents: 0)
        var drain = [UInt8](repeating: 0, count: 64)
        while true {
            let now = Self.now()
            let due = lock.withLock { () -> [(Int, UInt64, @Sendable () -> Duration?)] in
                var due: [(Int, UInt64, @Sendable () -> Duration?)] = []
                let limit = slot(now)
                while let top = heap.first, top.due <= limit {
                    popTop()
                    if let fire = timers[top.id] { due.append((top.id, top.due, fire)) }
                }
                if !due.isEmpty {
                    wakeups += 1
                    fired += due.count
                }
                return due
            }
            for (id, was, fire) in due {
                let next = fire()
                lock.withLock {
                    guard timers[id] != nil else { return }
                    if let next {
                        // From the time it was due (no drift by the slot's rounding),
                        // but never in the past (a late tick is not made up for).
                        push(max(was &+ Self.nanoseconds(next), now &+ 1), id)
                    } else {
                        timers[id] = nil
                    }
                }
            }
            let until = lock.withLock { () -> UInt64 in
                sleepingUntil = heap.first.map { slot($0.due) } ?? UInt64.max
                return sleepingUntil
            }
            let later = Self.now()
            let timeout: Int32 = until == UInt64.max ? -1 : (until <= later ? 0 : Int32(clamping: (until - later + 999_999) / 1_000_000))
            pfd.revents = 0
            if poll(&pfd, 1, timeout) > 0 { _ = read(readFD, &drain, drain.count) }
            lock.withLock { sleepingUntil = 0 }
        }
    }

    /// The end of the resolution slot `t` falls in: timers due within one slot fire together.
    private func slot(_ t: UInt64) -> UInt64 {
        let r = t % resolution
        return r == 0 ? t : t &+ (resolution - r)
    }

    // A binary min-heap on `due` (cancelled timers are dropped when they come up).
    private func push(_ due: UInt64, _ id: Int) {
        heap.append((due, id))
        var i = heap.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard heap[i].due < heap[parent].due else { break }
            heap.swapAt(i, parent)
            i = parent
        }
    }

    private func popTop() {
        let last = heap.removeLast()
        guard !heap.isEmpty else { return }
        heap[0] = last
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < heap.count, heap[l].due < heap[m].due { m = l }
            if r < heap.count, heap[r].due < heap[m].due { m = r }
            if m == i { return }
            heap.swapAt(i, m)
            i = m
        }
    }

    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    static func nanoseconds(_ d: Duration) -> UInt64 {
        let (s, a) = d.components
        guard s >= 0 else { return 0 }
        return UInt64(s) * 1_000_000_000 + UInt64(max(0, a) / 1_000_000_000)
    }
}

/// The ticks of a quiet stretch that may be answered without the work they
/// stand for: all but every `every`-th, counted from the stretch's start.
/// The first stretch is cut short at random, so that the many gates started
/// together (a thousand databases opened at once) do not all come due in the
/// same few seconds of every cycle from then on. Not locked: its owner's lock
/// guards it.
public struct QuietTicks: Sendable {
    public let every: Int
    private var answered = 0
    private var spread = false

    public init(every: Int) { self.every = every }

    /// A stretch begins (quiet) or is broken (not quiet).
    public mutating func start(quiet: Bool) {
        answered = quiet && !spread ? Int.random(in: 0..<every) : 0
        if quiet { spread = true }
    }

    /// Whether the next tick may be answered (the stretch has room left).
    public var mayAnswer: Bool { answered < every - 1 }

    /// Counts a tick answered.
    public mutating func answer() { answered += 1 }
}
