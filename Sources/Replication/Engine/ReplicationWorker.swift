import Foundation
import Platform
import Synchronization

/// The threads every database's replication runs on: a fixed set (one per
/// core, at most four) shared by all replicators, whatever the number of
/// databases. Each worker is a serial executor on one thread that waits in
/// poll(2) on two descriptors: an eventfd that says "jobs queued" and one
/// inotify descriptor watching the directories of the databases it serves.
///
/// A database's `Replicator` (and its replicas' shippers) use their worker as
/// their actor executor, so a change to a `-wal` is read, encoded and written
/// to a file replica on the thread that noticed it: no hand-over between
/// threads on the per-commit path (a job enqueued from the worker's own
/// thread costs no wake-up). Several actors share one worker; it runs their
/// jobs one at a time, in order.
public final class ReplicationWorker: SerialExecutor, @unchecked Sendable {
    /// The shared workers: as many as cores, at most four.
    public static let pool: [ReplicationWorker] = {
        let n = min(4, max(1, ProcessInfo.processInfo.activeProcessorCount))
        return (0..<n).map { ReplicationWorker(name: "guardian-repl-\($0 + 1)") }
    }()

    private static let nextLock = NSLock()
    nonisolated(unsafe) private static var assigned: [Int] = []

    /// The worker with the fewest databases; `release` gives the slot back.
    public static func acquire() -> ReplicationWorker {
        nextLock.withLock {
            if assigned.count != pool.count { assigned = Array(repeating: 0, count: pool.count) }
            let i = assigned.indices.min { assigned[$0] < assigned[$1] } ?? 0
            assigned[i] += 1
            return pool[i]
        }
    }

    public static func release(_ worker: ReplicationWorker) {
        nextLock.withLock {
            if let i = pool.firstIndex(where: { $0 === worker }), i < assigned.count, assigned[i] > 0 { assigned[i] -= 1 }
        }
    }

    /// A registered interest in one file name of one directory.
    public struct Watch: Sendable, Hashable {
        fileprivate let wd: Int32
        fileprivate let name: String
        fileprivate let id: Int
    }

    /// Called on the worker's thread: `lost` is true when the kernel dropped
    /// the watch (the directory was removed), false for a change to the name
    /// (or a queue overflow, when every watcher is told).
    public typealias Handler = @Sendable (_ lost: Bool) -> Void

    private let lock = NSLock()
    private var jobs: [UnownedJob] = []
    /// Plain calls to run on the thread between jobs (`perform`).
    private var calls: [@Sendable () -> Void] = []
    /// The thread is in (or about to enter) poll(2): an enqueue must write the eventfd.
    private var sleeping = false
    private let eventFD: Int32
    private let wakeFD: Int32
    private let inotifyFD: Int32
    /// By watch descriptor (directory), then file name: an event in a
    /// directory of thousands of databases finds its watchers at once.
    private var handlers: [Int32: [String: [Int: Handler]]] = [:]
    /// The watched directories by watch descriptor, and those whose
    /// modify events are stopped for a burst (`setModifyEvents`).
    private var directories: [Int32: String] = [:]
    private var muted: Set<Int32> = []
    private static let mask = UInt32(IN_MODIFY | IN_CREATE | IN_MOVED_TO | IN_DELETE | IN_CLOSE_WRITE)
    private var nextID = 0
    private let name: String
    /// The kernel id of the worker's own thread (set once, as its loop starts).
    private let threadID = Atomic<UInt>(0)

    private init(name: String) {
        self.name = name
        (eventFD, wakeFD) = Self.makeWakePipe()
        inotifyFD = inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
        let thread = Thread { [unowned self] in self.loop() }
        thread.name = name
        thread.start()
    }

    /// Whether the caller runs on this worker's thread.
    public var isCurrentThread: Bool {
        let id = threadID.load(ordering: .acquiring)
        return id != 0 && id == UInt(bitPattern: Int(bitPattern: pthread_self()))
    }

    /// The worker's thread is isolated to every actor it serves whenever it
    /// is not inside a job of another executor: it runs their jobs one at a
    /// time, and code it calls between jobs (a file event's handler) is one
    /// more turn of the same serial executor. This lets that code call the
    /// actors synchronously (`assumeIsolated`) instead of enqueueing a job.
    public func isIsolatingCurrentContext() -> Bool? { isCurrentThread }

    public func checkIsolated() {
        precondition(isCurrentThread, "not on replication worker \(name)'s thread")
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        let wake = lock.withLock { () -> Bool in
            jobs.append(unowned)
            defer { sleeping = false }
            return sleeping
        }
        if wake { Self.signal(wakeFD) }
    }

    /// Runs `call` on the worker's thread, between jobs, where it may use
    /// the actors this worker serves synchronously (`assumeIsolated`), as a
    /// file event's handler does: a timer's work with no task created and
    /// no other thread woken.
    public func perform(_ call: @escaping @Sendable () -> Void) {
        let wake = lock.withLock { () -> Bool in
            calls.append(call)
            defer { sleeping = false }
            return sleeping
        }
        if wake { Self.signal(wakeFD) }
    }

    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    /// A non-blocking close-on-exec pipe (read end, write end): a job
    /// queued from another thread writes a byte to wake the worker's poll.
    private static func makeWakePipe() -> (Int32, Int32) {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { return (-1, -1) }
        for fd in fds {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        }
        return (fds[0], fds[1])
    }

    private static func signal(_ fd: Int32) {
        var one: UInt8 = 1
        if fd >= 0 { _ = write(fd, &one, 1) }
    }

    /// Whether inotify is available on this worker.
    public var watchesFiles: Bool { inotifyFD >= 0 }

    /// Calls `handler` on the worker's thread whenever `name` in `directory`
    /// is modified, created, moved in or removed. Nil when inotify cannot
    /// watch the directory (the caller then has to poll).
    public func watch(directory: String, name: String, _ handler: @escaping Handler) -> Watch? {
        guard inotifyFD >= 0 else { return nil }
        return lock.withLock {
            // The same directory gives the same descriptor: one watch serves
            // every database in it (with every event: a burst's stop is undone).
            let wd = inotify_add_watch(inotifyFD, directory, Self.mask)
            guard wd >= 0 else { return nil }
            directories[wd] = directory
            muted.remove(wd)
            nextID += 1
            handlers[wd, default: [:]][name, default: [:]][nextID] = handler
            return Watch(wd: wd, name: name, id: nextID)
        }
    }

    public func unwatch(_ watch: Watch) {
        lock.withLock {
            handlers[watch.wd]?[watch.name]?[watch.id] = nil
            if handlers[watch.wd]?[watch.name]?.isEmpty == true { handlers[watch.wd]?[watch.name] = nil }
            if handlers[watch.wd]?.isEmpty == true {
                handlers[watch.wd] = nil
                directories[watch.wd] = nil
                muted.remove(watch.wd)
                inotify_rm_watch(inotifyFD, watch.wd)
            } else if muted.contains(watch.wd) {
                _ = changeMask(watch.wd, modify: true)
            }
        }
    }

    /// Stops or resumes the modify events of the directory of `watches`
    /// (one database's). Every write of the application to its WAL goes
    /// through the kernel's notification path while the directory is
    /// watched for modifications, a tenth of the application's CPU in a
    /// write burst; while a burst is read by passes back to back the events
    /// are not needed. Stopped only when these are the directory's only
    /// watchers (other databases there still need their events); creations,
    /// renames and removals are reported throughout. True when the
    /// directory's events are as asked.
    public func setModifyEvents(_ on: Bool, for watches: [Watch]) -> Bool {
        guard let wd = watches.first?.wd else { return false }
        return lock.withLock {
            guard let byName = handlers[wd] else { return false }
            if on { return !muted.contains(wd) || changeMask(wd, modify: true) }
            let mine = Set(watches.map(\.id))
            guard byName.values.allSatisfy({ $0.keys.allSatisfy(mine.contains) }) else { return false }
            return muted.contains(wd) || changeMask(wd, modify: false)
        }
    }

    /// (Under the lock.) Replaces the directory's watch mask.
    private func changeMask(_ wd: Int32, modify: Bool) -> Bool {
        guard let directory = directories[wd] else { return false }
        let now = inotify_add_watch(inotifyFD, directory, modify ? Self.mask : Self.mask & ~UInt32(IN_MODIFY))
        guard now == wd else {
            // The path is another directory now: not the watch's to change.
            if now >= 0, handlers[now] == nil { inotify_rm_watch(inotifyFD, now) }
            return false
        }
        if modify { muted.remove(wd) } else { muted.insert(wd) }
        return true
    }

    /// How many directories this worker watches (for tests and status).
    public var watchedDirectories: Int { lock.withLock { handlers.count } }

    private func loop() {
        Thread.current.name = name  // (set from the thread itself: on Linux that names the OS thread)
        threadID.store(UInt(bitPattern: Int(bitPattern: pthread_self())), ordering: .releasing)
        let executor = asUnownedSerialExecutor()
        var fds = [pollfd(fd: eventFD, events: Int16(POLLIN), revents: 0), pollfd(fd: inotifyFD, events: Int16(POLLIN), revents: 0)]
        let count = nfds_t(inotifyFD >= 0 ? 2 : 1)
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        var quietUntil: UInt64 = 0
        while true {
            let (batch, called) = lock.withLock { () -> ([UnownedJob], [@Sendable () -> Void]) in
                let b = jobs, c = calls
                jobs.removeAll(keepingCapacity: true)
                calls.removeAll(keepingCapacity: true)
                if b.isEmpty, c.isEmpty { sleeping = true }
                return (b, c)
            }
            for job in batch { job.runSynchronously(on: executor) }
            for call in called { call() }
            let idle = batch.isEmpty && called.isEmpty
            // File events are read at most once a millisecond: an application
            // writing its WAL back to back makes an event per write, and the
            // kernel merges identical events queued meanwhile (one wake-up
            // instead of thousands a second; at most 1 ms later).
            let now = Self.monotonicNanoseconds()
            let watching = count > 1 && now >= quietUntil
            fds[0].revents = 0
            fds[1].revents = 0
            // With jobs run, only look (timeout 0); otherwise wait.
            let ready = poll(&fds, watching ? count : 1, !idle ? 0 : (watching || count < 2 ? -1 : 1))
            if idle { lock.withLock { sleeping = false } }
            guard ready > 0 else { continue }
            if fds[0].revents != 0 {
                var drain = [UInt8](repeating: 0, count: 64)
                _ = read(eventFD, &drain, drain.count)
            }
            if watching, fds[1].revents != 0 {
                readEvents(&buffer)
                quietUntil = Self.monotonicNanoseconds() + 1_000_000
            }
        }
    }

    static func monotonicNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// Reads every queued inotify event and calls the handlers of the names they concern.
    private func readEvents(_ buffer: inout [UInt8]) {
        var calls: [(Handler, Bool)] = []
        while true {
            let n = buffer.withUnsafeMutableBytes { read(inotifyFD, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { break }
            let headerSize = MemoryLayout<inotify_event>.size
            var offset = 0
            lock.lock()
            while offset + headerSize <= n {
                let (wd, mask, len) = buffer.withUnsafeBytes {
                    ($0.load(fromByteOffset: offset, as: Int32.self), $0.load(fromByteOffset: offset + 4, as: UInt32.self), Int($0.load(fromByteOffset: offset + 12, as: UInt32.self)))
                }
                let nameBytes = buffer[(offset + headerSize)..<min(n, offset + headerSize + len)]
                offset += headerSize + len
                if mask & UInt32(IN_Q_OVERFLOW) != 0 {
                    // Events were dropped: everyone looks.
                    for (_, byName) in handlers { for (_, byID) in byName { for (_, h) in byID { calls.append((h, false)) } } }
                    continue
                }
                guard let byName = handlers[wd] else { continue }
                if mask & UInt32(IN_IGNORED) != 0 {
                    // The directory is gone: its watchers fall back to polling.
                    for (_, byID) in byName { for (_, h) in byID { calls.append((h, true)) } }
                    handlers[wd] = nil
                    directories[wd] = nil
                    muted.remove(wd)
                    continue
                }
                let eventName = String(decoding: nameBytes.prefix(while: { $0 != 0 }), as: UTF8.self)
                for (_, h) in byName[eventName] ?? [:] { calls.append((h, false)) }
            }
            lock.unlock()
        }
        for (handler, lost) in calls { handler(lost) }
    }
}
