import Foundation

/// Process limits guardian raises for itself at start-up.
public enum ResourceLimits {
    /// Raises the soft limit on open files to the hard limit. Each database
    /// takes about a dozen descriptors (SQLite's connections, the WAL and
    /// database files guardian reads, inotify), and systemd starts services
    /// with a soft limit of 1,024 (its hard limit is far higher: programs
    /// that need more are expected to raise it themselves, as guardian does;
    /// guardian waits with poll(2), never select(2)). Returns the (soft,
    /// hard) limits now in force.
    @discardableResult
    public static func raiseOpenFiles() -> (soft: UInt64, hard: UInt64) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return (0, 0) }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        return (UInt64(limit.rlim_cur), UInt64(limit.rlim_max))
    }
}

/// Keeps guardian's databases within its open-file limit. A database's
/// session holds a slot from before it opens its files until it has closed
/// them; a database that finds none free waits (its status says why)
/// instead of opening files the rest of the process needs. Running out
/// outright is not an error guardian could report: libdispatch's own
/// thread monitor crashes the process when it cannot open /proc (seen at
/// 10,000 databases under a limit of 20,000). A tenth of the limit (at
/// least 256) is kept for everything else: HTTP and SFTP connections,
/// status clients, a restore's files, compaction.
public final class DatabaseSlots: @unchecked Sendable {
    public static let shared = DatabaseSlots(limit: Int(min(ResourceLimits.openFilesNow(), UInt64(Int.max))))
    /// Descriptors one database may hold: its pin's connection (database,
    /// WAL, shared memory), the spare pin's or the checkpointer's while it
    /// is active, guardian's own readers of the database and the WAL, a
    /// file replica's lock (an idle database holds about 7).
    public static let perDatabase = 8
    private let lock = NSLock()
    private var used = 0
    public let capacity: Int
    public let limit: Int

    public init(limit: Int) {
        self.limit = limit
        capacity = max(1, (limit - max(256, limit / 10)) / Self.perDatabase)
    }

    /// Takes a slot; false when every one is taken.
    public func take() -> Bool {
        lock.withLock {
            guard used < capacity else { return false }
            used += 1
            return true
        }
    }

    public func give() {
        lock.withLock { used = max(0, used - 1) }
    }

    public var inUse: Int { lock.withLock { used } }

    private var refusalsLogged = 0
    /// The first few databases left waiting log it as an error, the rest
    /// at debug level (ten thousand lines would say nothing more).
    public func logsRefusal() -> Bool {
        lock.withLock {
            refusalsLogged += 1
            return refusalsLogged <= 5
        }
    }

    /// Why a database waits for a slot, for its status and log.
    public var refusal: String {
        "guardian's open-file limit (\(limit)) leaves room for \(capacity) databases at about \(Self.perDatabase) descriptors each; "
            + "this one waits for a free slot (raise LimitNOFILE in guardian's unit, or `ulimit -n` where it is started)"
    }
}

extension ResourceLimits {
    /// The soft limit on open files in force now.
    public static func openFilesNow() -> UInt64 {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1024 }
        return UInt64(limit.rlim_cur)
    }
}
