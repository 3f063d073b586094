import CSQLite
import Foundation
import Platform
import Replication

/// One health probe of a database: its files seen from outside SQLite, and
/// the result of a `PRAGMA wal_checkpoint(PASSIVE)` run by guardian.
public struct CheckpointSample: Sendable {
    public var at: Date
    public var files: FileProbe
    public var result: CheckpointResult?
    public var error: SQLiteFailure?
    /// Free bytes on the database's filesystem (for the unprivileged user).
    public var freeBytes: Int64?
    /// The database's and WAL's identity, size and modification time when
    /// the sample was taken (nil when not looked at).
    public var stamp: FileStamp?
    /// Whether this sample ran the checkpoint and read the schema through
    /// a connection of its own (false when the files were unchanged since a
    /// clean sample, see `take`).
    public var connected = false

    public init(at: Date, files: FileProbe, result: CheckpointResult?, error: SQLiteFailure?, freeBytes: Int64? = nil) {
        self.at = at
        self.files = files
        self.result = result
        self.error = error
        self.freeBytes = freeBytes
    }

    /// Takes a sample (blocking: run it on `BlockingPool`). The checkpoint is
    /// skipped when `checkpoint` is false (a suspect database is not written).
    /// guardian's replicator holds a read transaction at all times, so a
    /// PASSIVE checkpoint usually stops at its snapshot: busy or partial
    /// results are normal and are reported, not alarmed on.
    ///
    /// `last` is the previous sample: when it connected without an error and
    /// left every WAL frame checkpointed (or the WAL empty), and neither file
    /// changed since (same inode, size and modification time), the same
    /// connection would find the same: the sample is the files' probe alone
    /// (an idle database costs a few stats, no SQLite connection, and no
    /// close-after-write event that would wake its replication).
    public static func take(path: String, previous: FileProbe?, checkpoint: Bool, last: CheckpointSample? = nil) -> CheckpointSample {
        let at = Date()
        let before = FileStamp.of(path)
        let files = FileProbe.read(path: path, previous: previous)
        var fs = statvfs()
        let free = statvfs((path as NSString).deletingLastPathComponent, &fs) == 0 ? Int64(fs.f_bavail) * Int64(fs.f_frsize) : nil
        var sample = CheckpointSample(at: at, files: files, result: nil, error: nil, freeBytes: free)
        guard checkpoint, files.dbExists else { return sample }
        if let last, last.connected, last.error == nil, let stamp = last.stamp, stamp == before, files.problems.isEmpty,
            last.files.walSize == 0 || last.result.map({ !$0.busy && $0.logFrames == $0.checkpointedFrames }) == true
        {
            sample.stamp = stamp
            return sample
        }
        sample.connected = true
        do {
            let c = try SQLiteConnection(path: path, mode: .readWrite, busyTimeout: .milliseconds(100))
            // Never let this connection's close checkpoint or delete the WAL.
            c.persistWAL()
            try c.execute("PRAGMA wal_autocheckpoint=0")
            // Read first: a connection that has not read the database does not
            // know it is in WAL mode yet (the checkpoint would answer -1/-1),
            // and reading the schema is itself a check of page 1.
            _ = try c.scalar("SELECT count(*) FROM sqlite_schema")
            sample.result = try c.checkpoint(.passive)
        } catch let e as SQLiteError {
            sample.error = SQLiteFailure(e)
        } catch {
            sample.error = SQLiteFailure(code: SQLITE_ERROR, extendedCode: SQLITE_ERROR, message: "\(error)")
        }
        // The files as this connection left them (it may have made the WAL);
        // kept only when nothing else changed them meanwhile.
        let after = FileStamp.of(path)
        sample.stamp = after == before || (after.db == before.db && before.wal == FileStamp.missing) ? after : nil
        return sample
    }
}

/// Which database and WAL files are at a path, and whether they changed:
/// inode, size and modification time of each (zero for a missing file).
public struct FileStamp: Sendable, Equatable {
    var db: [Int64]
    var wal: [Int64]

    static let missing: [Int64] = [0, 0, 0, 0]

    /// Blocking (two stats).
    public static func of(_ path: String) -> FileStamp { of(db: path, wal: path + "-wal") }

    /// The same with the WAL's path given (no string made per call).
    static func of(db: String, wal: String) -> FileStamp {
        func look(_ p: String) -> [Int64] {
            var st = stat()
            guard stat(p, &st) == 0 else { return [0, 0, 0, 0] }
            return [Int64(bitPattern: UInt64(st.st_ino)), Int64(st.st_size), Int64(st.st_mtim.tv_sec), Int64(st.st_mtim.tv_nsec)]
        }
        return FileStamp(db: look(db), wal: look(wal))
    }
}

/// Whether a database's health tick may be answered on the ticker's thread
/// instead of running the probe (a hop to the remediator, another to a
/// blocking thread, and back). The remediator says so after a tick that
/// found the database quiet: healthy, no condition and no file problem, no
/// SQLite error remembered, every WAL frame checkpointed (nothing time can
/// turn into starvation), and the files' stamp known. A tick is then
/// answered only while the files' stamp (inode, size, mtime of the database
/// and its WAL) is unchanged and the filesystem has room to spare; every
/// `probeEvery`-th tick still probes (the status's times are refreshed
/// then: every 5 minutes at the default health-interval, as often as the
/// integrity check).
public final class HealthGate: @unchecked Sendable {
    static let probeEvery = 30
    private let path: String
    private let walPath: String
    private let directory: String
    private let lock = NSLock()
    private var stamp: FileStamp?
    private var ticks = QuietTicks(every: probeEvery)
    private var answeredTotal = 0

    init(path: String) {
        self.path = path
        walPath = path + "-wal"
        directory = (path as NSString).deletingLastPathComponent
    }

    /// Set by the remediator after each tick (nil: the next tick probes).
    func set(quietWith stamp: FileStamp?) {
        lock.withLock {
            self.stamp = stamp
            ticks.start(quiet: stamp != nil)
        }
    }

    /// On the ticker's thread (blocking: two stats and a statvfs): true
    /// when this tick needs no probe.
    public func mayAnswer() -> Bool {
        let known = lock.withLock { () -> FileStamp? in
            ticks.mayAnswer ? stamp : nil
        }
        guard let known, FileStamp.of(db: path, wal: walPath) == known,
            let free = Self.freeSpace.bytes(in: directory),
            free >= 4 * CheckpointAssessor.minimumFree
        else { return false }
        return lock.withLock {
            // (Cleared meanwhile: an incident, a suspicion.)
            guard stamp == known else { return false }
            ticks.answer()
            answeredTotal += 1
            return true
        }
    }

    /// Free bytes by directory, read at most once a second: the tenants of
    /// one directory share one statvfs.
    static let freeSpace = FreeSpace()

    final class FreeSpace: @unchecked Sendable {
        private let lock = NSLock()
        private var known: [String: (at: ContinuousClock.Instant, bytes: Int64)] = [:]

        func bytes(in dir: String) -> Int64? {
            let now = ContinuousClock.now
            if let k = lock.withLock({ known[dir] }), now - k.at < .seconds(1) { return k.bytes }
            var fs = statvfs()
            guard statvfs(dir, &fs) == 0 else { return nil }
            let bytes = Int64(fs.f_bavail) * Int64(fs.f_frsize)
            lock.withLock {
                if known.count > 4096 { known.removeAll() }
                known[dir] = (now, bytes)
            }
            return bytes
        }
    }

    /// Ticks answered without a probe since start (for tests and profiles).
    public var answeredCount: Int { lock.withLock { answeredTotal } }
}

/// Checkpoint and WAL health of one database, for `guardian status`.
public struct CheckpointHealth: Codable, Sendable, Equatable {
    public var walSize: Int64
    public var dbSize: Int64
    /// WAL growth since its last restart, over the recent window.
    public var walGrowthBytesPerSecond: Double?
    /// guardian's newest PASSIVE checkpoint (busy / log / checkpointed).
    public var lastResult: CheckpointStatus?
    /// Last time every WAL frame was known checkpointed (a complete
    /// checkpoint, a WAL restart, or an empty WAL).
    public var lastCompleteAt: String?
    public var secondsSinceComplete: Double?
    public var starved: Bool
    public var sqliteFullAt: String?
    public var ioErrorAt: String?
    /// Free bytes on the database's filesystem.
    public var freeBytes: Int64?
    /// ok, warning or critical.
    public var level: String
    public var reasons: [String]
}

/// A health condition that raises an alert while it holds.
public struct HealthCondition: Sendable, Equatable {
    /// Alert key suffix: `wal-size`, `checkpoint-starvation`, `sqlite-full`, ...
    public var kind: String
    public var severity: AlertSeverity
    public var text: String
}

/// Pure: turns a stream of samples into checkpoint health and conditions.
public struct CheckpointAssessor: Sendable {
    public var walWarnSize: Int64
    public var walCriticalSize: Int64
    public var starvation: Duration
    /// How long an SQLITE_FULL / SQLITE_IOERR keeps counting as "seen".
    public var errorMemory: Duration = .seconds(600)
    /// Growth is measured over this window.
    public var growthWindow: Duration = .seconds(300)

    public private(set) var startedAt: Date?
    public private(set) var lastComplete: Date?
    private var walSizeAtComplete: Int64 = 0
    private var lastSalts: [UInt32]?
    private var lastWALSize: Int64 = 0
    private var history: [(at: Date, size: Int64)] = []
    public private(set) var lastFull: Date?
    public private(set) var lastIOError: Date?
    public private(set) var lastResult: CheckpointStatus?
    public private(set) var current: CheckpointHealth?
    /// Below this much free space on the database's filesystem, writes are about to fail.
    public static let minimumFree: Int64 = 1 << 20
    public private(set) var lastFreeBytes: Int64?

    public init(walWarnSize: Int64, walCriticalSize: Int64, starvation: Duration) {
        self.walWarnSize = walWarnSize
        self.walCriticalSize = walCriticalSize
        self.starvation = starvation
    }

    /// Records an error seen anywhere (guardian's reads, replication).
    public mutating func note(sqliteCode code: Int32, at: Date) {
        if code == SQLITE_FULL { lastFull = at }
        if code == SQLITE_IOERR { lastIOError = at }
    }

    public mutating func record(_ s: CheckpointSample) -> (CheckpointHealth, [HealthCondition]) {
        if startedAt == nil { startedAt = s.at }
        lastFreeBytes = s.freeBytes
        if let e = s.error { note(sqliteCode: e.code, at: s.at) }
        let wal = s.files.walSize
        let salts = s.files.wal.map { [$0.salt1, $0.salt2] }
        // A restart (new salts, or the file shrank or emptied) means every
        // earlier frame had been checkpointed.
        let restarted = (salts != nil && lastSalts != nil && salts != lastSalts) || wal < lastWALSize
        var complete = wal == 0 || restarted
        if let r = s.result {
            lastResult = CheckpointStatus(mode: "PASSIVE", busy: r.busy, logFrames: r.logFrames, checkpointedFrames: r.checkpointedFrames, at: Timestamps.iso8601(s.at))
            if !r.busy, r.logFrames == r.checkpointedFrames { complete = true }
        }
        if complete {
            lastComplete = s.at
            walSizeAtComplete = wal
        }
        if restarted { history.removeAll() }
        history.append((s.at, wal))
        history.removeAll { s.at.timeIntervalSince($0.at) > growthWindow.seconds }
        lastSalts = salts ?? lastSalts
        lastWALSize = wal

        var growth: Double?
        if let first = history.first, let last = history.last, last.at.timeIntervalSince(first.at) >= 1 {
            growth = Double(last.size - first.size) / last.at.timeIntervalSince(first.at)
        }
        let since = lastComplete ?? startedAt ?? s.at
        let sinceSeconds = s.at.timeIntervalSince(since)
        let starved = sinceSeconds >= starvation.seconds && wal > walSizeAtComplete

        var conditions: [HealthCondition] = []
        if wal >= walCriticalSize {
            conditions.append(HealthCondition(kind: "wal-size", severity: .critical, text: "WAL is \(Units.formatBytes(wal)), above wal-critical-size \(Units.formatBytes(walCriticalSize))"))
        } else if wal >= walWarnSize {
            conditions.append(HealthCondition(kind: "wal-size", severity: .warning, text: "WAL is \(Units.formatBytes(wal)), above wal-warn-size \(Units.formatBytes(walWarnSize))"))
        }
        if starved {
            conditions.append(HealthCondition(
                kind: "checkpoint-starvation", severity: .warning,
                text: "no complete checkpoint for \(Units.formatDuration(.seconds(sinceSeconds))) while the WAL grew to \(Units.formatBytes(wal)): a long-running reader is starving checkpoints"))
        }
        if let free = s.freeBytes, free < Self.minimumFree {
            conditions.append(HealthCondition(
                kind: "db-disk-full", severity: .critical,
                text: "the filesystem holding the database has \(Units.formatBytes(free)) free: the next commit or checkpoint will fail with SQLITE_FULL"))
        }
        if let at = lastFull, s.at.timeIntervalSince(at) <= errorMemory.seconds {
            conditions.append(HealthCondition(kind: "sqlite-full", severity: .critical, text: "SQLITE_FULL at \(Timestamps.iso8601(at)): the filesystem holding the database is full"))
        }
        if let at = lastIOError, s.at.timeIntervalSince(at) <= errorMemory.seconds {
            conditions.append(HealthCondition(kind: "sqlite-ioerr", severity: .critical, text: "SQLITE_IOERR at \(Timestamps.iso8601(at)): the storage returned I/O errors"))
        }
        let level = conditions.map(\.severity).max()
        let health = CheckpointHealth(
            walSize: wal, dbSize: s.files.dbSize, walGrowthBytesPerSecond: growth, lastResult: lastResult,
            lastCompleteAt: lastComplete.map(Timestamps.iso8601), secondsSinceComplete: lastComplete.map { (s.at.timeIntervalSince($0) * 10).rounded() / 10 },
            starved: starved, sqliteFullAt: lastFull.map(Timestamps.iso8601), ioErrorAt: lastIOError.map(Timestamps.iso8601), freeBytes: s.freeBytes,
            level: level == nil ? "ok" : (level == .critical ? "critical" : "warning"), reasons: conditions.map(\.text))
        current = health
        return (health, conditions)
    }
}

/// Integrity state of one database, for `guardian status`.
public struct IntegrityHealth: Codable, Sendable, Equatable {
    /// unchecked, ok, suspect, corrupt, inconclusive, missing.
    public var state: String
    public var lastCheckAt: String?
    public var lastCheckMs: Int64?
    /// Last time a whole pass (whole database, or every table) came back ok.
    public var lastCompletePassAt: String?
    /// The database is too big for one check within the budget: checked table by table.
    public var perTable: Bool
    /// `ok` or what is wrong with the header / WAL file.
    public var files: String
    public var detail: String?

    public init(state: String = "unchecked", perTable: Bool = false, files: String = "ok") {
        self.state = state
        self.perTable = perTable
        self.files = files
    }
}

/// What `guardian status` shows about remediation for one database.
public struct HealthStatus: Codable, Sendable, Equatable {
    public var path: String
    /// The mode in force (`auto` without a way to control the app is `alert-only`).
    public var mode: String
    /// healthy, warning, critical, suspect, remediating, escalated, awaiting-operator, missing, off.
    public var state: String
    public var checkpoint: CheckpointHealth?
    public var integrity: IntegrityHealth
    public var openIncidents: [IncidentSummary]
    public var lastIncident: IncidentSummary?
    public var updatedAt: String
    /// Incidents opened since guardian started (or reloaded its configuration).
    public var incidentsOpened: Int?

    public init(path: String, mode: String, state: String, checkpoint: CheckpointHealth?, integrity: IntegrityHealth, openIncidents: [IncidentSummary], lastIncident: IncidentSummary?, updatedAt: String, incidentsOpened: Int? = nil) {
        self.incidentsOpened = incidentsOpened
        self.path = path
        self.mode = mode
        self.state = state
        self.checkpoint = checkpoint
        self.integrity = integrity
        self.openIncidents = openIncidents
        self.lastIncident = lastIncident
        self.updatedAt = updatedAt
    }
}
