import Foundation
import Platform
import Replication

/// Why a drill was started.
public enum DrillTrigger: String, Sendable, Codable {
    /// By the daemon's schedule.
    case schedule
    /// By `guardian drill`.
    case manual
}

/// Which step of a drill failed; decides the alert's severity.
public enum DrillFailure: String, Sendable, Codable {
    /// The scratch filesystem has no room for the copy: nothing was tested.
    case space
    /// The replica could not be read, planned or restored.
    case restore
    /// The restored copy fails `PRAGMA integrity_check`.
    case integrity
    /// A verification query failed or did not meet its expectation.
    case query
    /// The drill did not finish within its budget.
    case budget

    /// Critical (the seed's PagerDuty page) when the replica was tested and
    /// failed; a warning when the drill could not run at all.
    public var severity: AlertSeverity { self == .space ? .warning : .critical }
}

/// The outcome of one verification query of a drill.
public struct DrillQueryOutcome: Sendable, Codable, Equatable {
    public var sql: String
    /// First column on the restored copy (nil: no row, NULL, or an error).
    public var value: Int64?
    /// First column on the live database (only for `within-live`).
    public var live: Int64?
    /// What was expected, as text: `>= 1`, `within 5% of live`.
    public var expectation: String
    public var passed: Bool
    /// Why it failed.
    public var detail: String?

    public init(sql: String, value: Int64?, live: Int64?, expectation: String, passed: Bool, detail: String?) {
        self.sql = sql
        self.value = value
        self.live = live
        self.expectation = expectation
        self.passed = passed
        self.detail = detail
    }
}

/// One recovery drill of one replica of one database: what was restored,
/// what the checks found, how long it took, and the verdict. Recorded in
/// the `drills` table of guardian's state database.
public struct DrillResult: Sendable, Codable, Equatable {
    /// Row id in the history (nil until recorded).
    public var id: Int64?
    public var database: String
    public var replica: String
    /// Where the replica is (`s3://bucket/path`), never with secrets.
    public var destination: String
    public var startedAt: Date
    public var durationSeconds: Double
    public var trigger: DrillTrigger
    /// The TXID the restored copy was at.
    public var txid: UInt64?
    /// When that transaction was recorded on the replica.
    public var restoredTimestamp: Date?
    /// Size of the restored copy.
    public var bytes: Int64?
    /// The first query's value on the restored copy (the seed's `rows`).
    public var rows: Int64?
    /// `ok`, the first problems `integrity_check` reported, or nil when it did not run.
    public var integrity: String?
    public var passed: Bool
    public var failure: DrillFailure?
    /// Why it failed (nil when it passed).
    public var reason: String?
    public var queries: [DrillQueryOutcome]
    /// The drill was cut short by a shutdown: not a verdict, not recorded.
    public var interrupted: Bool

    public init(database: String, replica: String, destination: String, startedAt: Date, trigger: DrillTrigger) {
        self.database = database
        self.replica = replica
        self.destination = destination
        self.startedAt = startedAt
        self.trigger = trigger
        durationSeconds = 0
        passed = false
        queries = []
        interrupted = false
    }

    /// `PASSED` or `FAILED`.
    public var result: String { passed ? "PASSED" : "FAILED" }

    /// The form of `guardian status --json` and `guardian drill(s) --json`.
    public var summary: DrillSummary {
        DrillSummary(
            id: id, database: database, replica: replica, destination: destination, startedAt: Timestamps.iso8601(startedAt),
            result: result, reason: reason, failure: failure?.rawValue, txid: txid.map(LTXNaming.hex),
            restoredTimestamp: restoredTimestamp.map(Timestamps.iso8601), bytes: bytes, rows: rows, integrity: integrity,
            durationSeconds: (durationSeconds * 1000).rounded() / 1000, trigger: trigger.rawValue, queries: queries)
    }
}

/// A drill as JSON (snake_case keys once encoded): RFC 3339 times, the
/// TXID as 16 hex digits, `result` PASSED or FAILED.
public struct DrillSummary: Sendable, Codable, Equatable {
    public var id: Int64?
    public var database: String
    public var replica: String
    public var destination: String
    public var startedAt: String
    public var result: String
    public var reason: String?
    /// space, restore, integrity, query, budget.
    public var failure: String?
    public var txid: String?
    public var restoredTimestamp: String?
    public var bytes: Int64?
    public var rows: Int64?
    public var integrity: String?
    public var durationSeconds: Double
    public var trigger: String
    public var queries: [DrillQueryOutcome]
}

/// The drills of one database, as the daemon's status document shows them.
public struct DrillStatus: Sendable, Codable, Equatable {
    public var path: String
    /// `every 7d`, `weekly sun 03:00 (local time)`.
    public var schedule: String
    /// When the next scheduled drill starts (RFC 3339).
    public var nextAt: String?
    /// A drill is running now.
    public var running: Bool
    /// The newest drill of any replica.
    public var last: DrillSummary?
    /// The newest drill of each replica, in configuration order.
    public var replicas: [DrillSummary]

    public init(path: String, schedule: String, nextAt: String?, running: Bool, last: DrillSummary?, replicas: [DrillSummary]) {
        self.path = path
        self.schedule = schedule
        self.nextAt = nextAt
        self.running = running
        self.last = last
        self.replicas = replicas
    }
}
