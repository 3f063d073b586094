import Foundation
import Platform

/// What guardian knew about the database and its host when it confirmed
/// corruption: the material the root cause is classified from.
public struct Evidence: Sendable, Equatable, Codable {
    public var sqliteFullSeenAt: Date?
    public var ioErrorSeenAt: Date?
    public var diskFreeBytes: Int64?
    public var diskTotalBytes: Int64?
    public var diskFreeInodes: Int64?
    public var walSize: Int64?
    public var walCriticalSize: Int64?
    public var checkpointStarved: Bool
    public var secondsSinceCompleteCheckpoint: Double?
    public var headerProblem: String?
    public var walProblem: String?
    public var checkLines: [String]
    /// The disk guardian's events for the database's filesystem in the hour
    /// before detection (level changes, forecasts, ballast), oldest first.
    public var diskEvents: [DiskNote]?
    /// When the disk guardian saw that filesystem at its emergency level (or
    /// released the ballast) within that hour.
    public var diskEmergencyAt: Date?

    /// One event of the disk guardian, as logged.
    public struct DiskNote: Sendable, Equatable, Codable {
        public var at: Date
        public var level: String
        public var text: String

        public init(at: Date, level: String, text: String) {
            self.at = at
            self.level = level
            self.text = text
        }
    }

    public init(
        sqliteFullSeenAt: Date? = nil, ioErrorSeenAt: Date? = nil, diskFreeBytes: Int64? = nil, diskTotalBytes: Int64? = nil,
        diskFreeInodes: Int64? = nil, walSize: Int64? = nil, walCriticalSize: Int64? = nil, checkpointStarved: Bool = false,
        secondsSinceCompleteCheckpoint: Double? = nil, headerProblem: String? = nil, walProblem: String? = nil, checkLines: [String] = [],
        diskEvents: [DiskNote]? = nil, diskEmergencyAt: Date? = nil
    ) {
        self.diskEvents = diskEvents
        self.diskEmergencyAt = diskEmergencyAt
        self.sqliteFullSeenAt = sqliteFullSeenAt
        self.ioErrorSeenAt = ioErrorSeenAt
        self.diskFreeBytes = diskFreeBytes
        self.diskTotalBytes = diskTotalBytes
        self.diskFreeInodes = diskFreeInodes
        self.walSize = walSize
        self.walCriticalSize = walCriticalSize
        self.checkpointStarved = checkpointStarved
        self.secondsSinceCompleteCheckpoint = secondsSinceCompleteCheckpoint
        self.headerProblem = headerProblem
        self.walProblem = walProblem
        self.checkLines = checkLines
    }

    /// The filesystem was (nearly) out of space or inodes.
    public var diskWasFull: Bool {
        if sqliteFullSeenAt != nil || diskEmergencyAt != nil { return true }
        if let free = diskFreeBytes, free < CheckpointAssessor.minimumFree { return true }
        if let free = diskFreeBytes, let total = diskTotalBytes, total > 0, Double(free) / Double(total) < 0.01 { return true }
        if let inodes = diskFreeInodes, inodes == 0 { return true }
        return false
    }
}

/// The classified root cause of a corruption incident.
public enum RootCause: String, Sendable, Codable, CaseIterable {
    case diskFull = "disk-full"
    case ioError = "io-error"
    case checkpointStarvation = "checkpoint-starvation"
    case headerOverwritten = "header-overwritten"
    case walDamaged = "wal-damaged"
    case truncated = "database-truncated"
    case unknown

    public var title: String {
        switch self {
        case .diskFull: "disk full"
        case .ioError: "corruption after I/O error"
        case .checkpointStarvation: "checkpoint starvation"
        case .headerOverwritten: "database header overwritten"
        case .walDamaged: "WAL file damaged"
        case .truncated: "database file truncated"
        case .unknown: "pages overwritten outside SQLite (cause unknown)"
        }
    }

    /// Classifies from the evidence, most specific environmental cause first:
    /// a full disk or an I/O error explains the damage better than its shape.
    public static func classify(_ e: Evidence) -> (cause: RootCause, explanation: String) {
        var notes: [String] = []
        if let free = e.diskFreeBytes, let total = e.diskTotalBytes {
            notes.append("At detection the filesystem had \(Units.formatBytes(free)) free of \(Units.formatBytes(total)).")
        }
        if e.diskWasFull {
            var text = "The filesystem holding the database ran out of space"
            if let at = e.sqliteFullSeenAt { text += " (SQLITE_FULL seen at \(PostMortem.time(at)))" }
            if let at = e.diskEmergencyAt { text += " (the disk guardian reported the emergency level at \(PostMortem.time(at)))" }
            text += ". Writes to the database and its WAL failed"
            if e.checkpointStarved || (e.walSize ?? 0) >= (e.walCriticalSize ?? .max) {
                text += ", the WAL could not be checkpointed (it had grown to \(Units.formatBytes(e.walSize ?? 0)))"
            }
            text += ", and the database was left damaged."
            if let log = e.diskFillingLog { text += " The log that filled the disk: \(log)." }
            return (.diskFull, ([text] + notes).joined(separator: " "))
        }
        if let w = e.walProblem {
            // Reading a damaged (e.g. truncated) WAL itself raises SQLITE_IOERR:
            // the damage found in the WAL is the cause, the I/O error its symptom.
            var text = "The WAL file was damaged while the database was in use: \(w)."
            if let at = e.ioErrorSeenAt { text += " Reads of it failed with SQLITE_IOERR (first at \(PostMortem.time(at)))." }
            return (.walDamaged, ([text] + notes).joined(separator: " "))
        }
        if let at = e.ioErrorSeenAt {
            return (.ioError, (["An I/O error (SQLITE_IOERR) was seen at \(PostMortem.time(at)) before the corruption was found: the storage returned errors, and pages read back damaged."] + notes).joined(separator: " "))
        }
        if e.checkpointStarved {
            let since = e.secondsSinceCompleteCheckpoint.map { " for \(Units.formatDuration(.seconds($0)))" } ?? ""
            return (.checkpointStarvation, (["No checkpoint completed\(since) while the WAL grew to \(Units.formatBytes(e.walSize ?? 0)): long-running readers starved the checkpointer, and the database was found damaged."] + notes).joined(separator: " "))
        }
        if let h = e.headerProblem {
            return (.headerOverwritten, (["The first page of the database was overwritten: \(h)."] + notes).joined(separator: " "))
        }
        if e.checkLines.contains(where: { $0.contains("short read") || $0.contains("SHORT_READ") }) {
            return (.truncated, (["SQLite read past the end of a file: the database or its WAL lost bytes."] + notes).joined(separator: " "))
        }
        return (.unknown, (["Pages of the database were damaged with no disk-full, I/O error or checkpoint problem seen by guardian. Something wrote to the file outside SQLite (a copy or backup tool, another process, a storage fault)."] + notes).joined(separator: " "))
    }

    /// Follow-ups suggested for this cause, beyond what guardian already did.
    public var actionItems: [String] {
        switch self {
        case .diskFull:
            [
                "Alert on disk usage at 80% (guardian `disk: warn: 80%`) and forecast time-to-full",
                "Rotate and compress the application's logs (guardian `disk: logs:`, logrotate semantics)",
                "Keep a ballast file on the database's filesystem (guardian `disk: ballast:`) so space can be freed at once",
                "Move the database to a filesystem of its own, away from logs and temp files",
            ]
        case .ioError:
            [
                "Check the storage: `dmesg` for I/O errors, `smartctl -a` on the disk, the cloud volume's health page",
                "Move the database to healthy storage; keep the quarantined files for the vendor",
                "Schedule weekly recovery drills to prove the replica stays restorable",
            ]
        case .checkpointStarvation:
            [
                "Find the long-running read transactions (reports, backups that hold a read transaction) and shorten them",
                "Alert on WAL size (guardian `wal-warn-size`) and on checkpoint starvation",
                "Set a busy_timeout in the application so checkpoints are not refused",
            ]
        case .headerOverwritten:
            [
                "Find what writes to the database file outside SQLite (scripts that copy or truncate it, `dd`, misconfigured backups)",
                "Restrict the database directory to the application's user (mode 0700)",
            ]
        case .walDamaged:
            [
                "Never copy, truncate or delete the -wal file while the application runs; back up through guardian's replica instead",
                "Check for tools that rotate or clean files matching *-wal in the data directory",
            ]
        case .truncated:
            [
                "Check the filesystem for errors (`fsck` at the next maintenance window) and for quota limits",
                "Find tools that truncate or copy the database file while it is open",
            ]
        case .unknown:
            [
                "Find what else opens the database file: `lsof` on the data directory, backup agents, antivirus, sync tools",
                "Check the storage for silent errors (`dmesg`, `smartctl`), and the RAM for faults (ECC counters)",
                "Schedule weekly recovery drills to prove the replica stays restorable",
            ]
        }
    }
}

/// A file moved into quarantine.
public struct QuarantinedFile: Sendable, Equatable, Codable {
    public var original: String
    public var quarantined: String
    public var size: Int64

    public init(original: String, quarantined: String, size: Int64) {
        self.original = original
        self.quarantined = quarantined
        self.size = size
    }
}

/// One timestamped step of an incident's timeline.
public struct IncidentStep: Sendable, Equatable, Codable {
    public enum Outcome: String, Sendable, Codable { case ok, failed, info }
    public var seq: Int
    public var at: Date
    public var endedAt: Date?
    public var step: String
    public var outcome: Outcome
    public var detail: String

    public init(seq: Int, at: Date, endedAt: Date?, step: String, outcome: Outcome, detail: String) {
        self.seq = seq
        self.at = at
        self.endedAt = endedAt
        self.step = step
        self.outcome = outcome
        self.detail = detail
    }

    public var duration: Duration? {
        endedAt.map { .milliseconds(Int64(($0.timeIntervalSince(at) * 1000).rounded())) }
    }
}

/// Everything recorded about one incident; stored as JSON in guardian's
/// state database and rendered into the post-mortem.
///
/// Impact is measured, not estimated:
/// - **Downtime (measured RTO)** = `appActiveAt − detectedAt`: from the
///   first evidence of corruption (the app is presumed failing from then on)
///   until the app was confirmed active on the verified copy. The
///   corruption itself may predate detection by up to one check interval;
///   the post-mortem states that bound. `appActiveAt − appStoppedAt` is the
///   part during which guardian had the app stopped.
/// - **Data lost (measured RPO)**, in transactions = `lastLocalTXID −
///   restoredTXID`: `lastLocalTXID` is the newest transaction guardian's
///   replicator had read from the app's WAL when the incident was confirmed
///   (the app's last commit as guardian saw it); `restoredTXID` is the
///   newest transaction in the restored copy. In time: `detectedAt −
///   restoredAt`, the age of the restored copy's newest transaction at
///   detection, an upper bound on the window of lost writes.
public struct IncidentRecord: Sendable, Equatable, Codable {
    public enum Outcome: String, Sendable, Codable {
        case open
        case resolvedAutomatically = "resolved-automatically"
        case resolvedByOperator = "resolved-by-operator"
        case escalated
    }

    public var id: Int64
    public var database: String
    public var host: String
    public var mode: String
    public var phase: IncidentPhase
    public var outcome: Outcome
    public var detectedAt: Date
    public var confirmedAt: Date
    public var closedAt: Date?
    public var suspicion: Suspicion
    public var confirmation: [String]
    public var cause: RootCause
    public var causeExplanation: String
    public var evidence: Evidence
    public var escalation: String?
    /// Interval of the scheduled checks in force (bounds how long the
    /// corruption may have gone unseen).
    public var checkIntervalSeconds: Double

    // Measurements.
    public var appStoppedAt: Date?
    public var appActiveAt: Date?
    public var restoreStartedAt: Date?
    public var restoreFinishedAt: Date?
    public var verifyFinishedAt: Date?
    public var restoredTXID: UInt64?
    public var restoredAt: Date?
    public var restoredFrom: String?
    public var restoredBytes: Int64?
    public var restoreAttempts: Int
    public var lastLocalTXID: UInt64?
    public var lastLocalCommitAt: Date?
    public var quarantineDir: String?
    public var quarantined: [QuarantinedFile]
    public var steps: [IncidentStep]

    public init(
        id: Int64, database: String, host: String, mode: String, detectedAt: Date, confirmedAt: Date, suspicion: Suspicion,
        confirmation: [String], evidence: Evidence, checkIntervalSeconds: Double
    ) {
        self.id = id
        self.database = database
        self.host = host
        self.mode = mode
        phase = .confirmed
        outcome = .open
        self.detectedAt = detectedAt
        self.confirmedAt = confirmedAt
        self.suspicion = suspicion
        self.confirmation = confirmation
        let (cause, text) = RootCause.classify(evidence)
        self.cause = cause
        causeExplanation = text
        self.evidence = evidence
        self.checkIntervalSeconds = checkIntervalSeconds
        restoreAttempts = 0
        quarantined = []
        steps = []
    }

    /// Measured RTO: detection → app active on the verified copy.
    public var downtime: Duration? {
        appActiveAt.map { .milliseconds(Int64(($0.timeIntervalSince(detectedAt) * 1000).rounded())) }
    }

    /// Part of the downtime with the app stopped by guardian.
    public var appStoppedFor: Duration? {
        guard let a = appStoppedAt, let b = appActiveAt else { return nil }
        return .milliseconds(Int64((b.timeIntervalSince(a) * 1000).rounded()))
    }

    /// Measured RPO in transactions, when guardian knew the app's last commit.
    public var transactionsLost: UInt64? {
        guard let local = lastLocalTXID, let restored = restoredTXID else { return nil }
        return local > restored ? local - restored : 0
    }

    /// Measured RPO in time: age of the restored copy's newest transaction at detection.
    public var dataWindowLost: Duration? {
        guard let r = restoredAt else { return nil }
        return .milliseconds(max(0, Int64((detectedAt.timeIntervalSince(r) * 1000).rounded())))
    }

    public var duration: Duration {
        let end = closedAt ?? Date()
        return .milliseconds(Int64((end.timeIntervalSince(detectedAt) * 1000).rounded()))
    }

    /// One line for lists and alerts.
    public var headline: String {
        "SQLite database corruption in \(database) (\(cause.title))"
    }
}

/// One row of `guardian incidents`.
public struct IncidentSummary: Sendable, Equatable, Codable {
    public var id: Int64
    public var database: String
    public var phase: String
    public var outcome: String
    public var cause: String
    public var detectedAt: String
    public var closedAt: String?
    public var downtimeMs: Int64?
    public var transactionsLost: UInt64?

    public init(_ r: IncidentRecord) {
        id = r.id
        database = r.database
        phase = r.phase.rawValue
        outcome = r.outcome.rawValue
        cause = r.cause.rawValue
        detectedAt = Timestamps.iso8601(r.detectedAt)
        closedAt = r.closedAt.map(Timestamps.iso8601)
        downtimeMs = r.downtime?.milliseconds
        transactionsLost = r.transactionsLost
    }
}

extension Evidence {
    /// The log the disk guardian saw growing fastest (or truncated in an
    /// emergency) on the database's filesystem, from its notes: the newest
    /// `growing_log=` / `log=` of a disk event.
    public var diskFillingLog: String? {
        for note in (diskEvents ?? []).reversed() {
            for key in ["growing_log=", "truncated to its tail"] where note.text.contains(key) {
                let field = key == "growing_log=" ? "growing_log=" : " log="
                guard let range = note.text.range(of: field) else { continue }
                let path = note.text[range.upperBound...].prefix { $0 != " " }
                if !path.isEmpty { return String(path) }
            }
        }
        return nil
    }
}
