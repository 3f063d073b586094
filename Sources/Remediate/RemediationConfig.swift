import Foundation
import Platform

/// What guardian does when a database is found corrupt.
public enum RemediationMode: String, Sendable, CaseIterable {
    /// Stop the app, quarantine, restore, verify, swap, restart.
    case auto
    /// Only alert and record the incident.
    case alertOnly = "alert-only"
    /// Do not check integrity at all.
    case off
}

/// Per-database remediation settings. Every key of the `dbs:` entry that
/// feeds this type, with its default:
///
/// | key | type | default | meaning |
/// |---|---|---|---|
/// | `remediate` | auto / alert-only / off | auto | what happens on confirmed corruption |
/// | `unit` | string | – | systemd unit of the app (`app.service`) |
/// | `stop-command`, `start-command` | argv list | – | used instead of `unit:` where there is no systemd |
/// | `status-command` | argv list | – | exit 0 = the app is up (with the commands above) |
/// | `stop-timeout`, `start-timeout` | duration | 30s | how long the app may take to stop / become active |
/// | `integrity-interval` | duration | 5m | how often `quick_check` runs |
/// | `integrity-budget` | duration | 5s | longest a scheduled `quick_check` may run |
/// | `confirm-budget` | duration | 120s | longest the confirming `integrity_check` may run |
/// | `health-interval` | duration | 10s | checkpoint health and header checks |
/// | `wal-warn-size`, `wal-critical-size` | bytes | 64MB, 256MB | WAL size thresholds |
/// | `checkpoint-starvation` | duration | 5m | WAL growing with no complete checkpoint this long |
/// | `lag-alert` | duration | 60s | replication lag that raises an alert |
/// | `restore-attempts` | int | 3 | restore points tried before escalating |
/// | `cooldown` | duration | 10m | a second corruption within this time is escalated, not remediated |
/// | `verify` | SQL list | – | queries run on a restored copy; each must return a non-zero first column |
/// | `quarantine-dir` | path | `<db dir>/guardian-quarantine` | where bad files are moved (never deleted) |
public struct RemediationConfig: Sendable, Equatable {
    public var mode: RemediationMode
    /// systemd unit of the application (`app.service`).
    public var unit: String?
    /// Commands used instead of systemd where there is none (argv, no shell).
    public var stopCommand: [String]
    public var startCommand: [String]
    /// Optional: exit status 0 means the app is up. Used with the commands.
    public var statusCommand: [String]
    public var stopTimeout: Duration
    public var startTimeout: Duration
    public var integrityInterval: Duration
    public var integrityBudget: Duration
    /// Budget of the `integrity_check` that confirms a suspicion.
    public var confirmBudget: Duration
    public var checkpointInterval: Duration
    public var walWarnSize: Int64
    public var walCriticalSize: Int64
    public var checkpointStarvation: Duration
    /// Replication lag above which an alert is raised (nil: never).
    public var lagAlert: Duration?
    public var maxRestoreAttempts: Int
    public var cooldown: Duration
    /// Extra verification queries run on a restored copy; each must return a non-zero first column.
    public var verifyQueries: [String]
    public var quarantineDir: String?
    /// D-Bus address of systemd's bus (`unix:path=...`); nil = the system bus.
    /// Not a configuration key: for tests and containers.
    public var systemdBusAddress: String?
    /// How long an incident waits for room to restore (the disk guardian may
    /// be freeing space) before it is escalated with the app left running.
    /// Not a configuration key.
    public var roomWait: Duration = .seconds(60)

    public init(
        mode: RemediationMode = .auto, unit: String? = nil, stopCommand: [String] = [], startCommand: [String] = [],
        statusCommand: [String] = [], stopTimeout: Duration = .seconds(30), startTimeout: Duration = .seconds(30),
        integrityInterval: Duration = .seconds(300), integrityBudget: Duration = .seconds(5),
        confirmBudget: Duration = .seconds(120),
        checkpointInterval: Duration = .seconds(10),
        walWarnSize: Int64 = 64_000_000, walCriticalSize: Int64 = 256_000_000,
        checkpointStarvation: Duration = .seconds(300), lagAlert: Duration? = .seconds(60),
        maxRestoreAttempts: Int = 3, cooldown: Duration = .seconds(600),
        verifyQueries: [String] = [], quarantineDir: String? = nil, systemdBusAddress: String? = nil
    ) {
        self.mode = mode
        self.unit = unit
        self.stopCommand = stopCommand
        self.startCommand = startCommand
        self.statusCommand = statusCommand
        self.stopTimeout = stopTimeout
        self.startTimeout = startTimeout
        self.integrityInterval = integrityInterval
        self.integrityBudget = integrityBudget
        self.confirmBudget = confirmBudget
        self.checkpointInterval = checkpointInterval
        self.walWarnSize = walWarnSize
        self.walCriticalSize = walCriticalSize
        self.checkpointStarvation = checkpointStarvation
        self.lagAlert = lagAlert
        self.maxRestoreAttempts = maxRestoreAttempts
        self.cooldown = cooldown
        self.verifyQueries = verifyQueries
        self.quarantineDir = quarantineDir
        self.systemdBusAddress = systemdBusAddress
    }

    /// How the application is stopped and started, if guardian can at all.
    public enum AppControl: Sendable, Equatable {
        case systemd(unit: String)
        case commands(stop: [String], start: [String], status: [String])
        case none
    }

    public var appControl: AppControl {
        if !stopCommand.isEmpty, !startCommand.isEmpty {
            return .commands(stop: stopCommand, start: startCommand, status: statusCommand)
        }
        if let unit, !unit.isEmpty { return .systemd(unit: unit) }
        return .none
    }

    /// The mode in force: `auto` without any way to stop and start the app
    /// only alerts (guardian never swaps a database under a running app).
    public var effectiveMode: RemediationMode {
        if mode == .auto, appControl == .none { return .alertOnly }
        return mode
    }

    /// Problems with this configuration, each as `key: what is wrong`.
    public func problems() -> [String] {
        var out: [String] = []
        if stopCommand.isEmpty != startCommand.isEmpty {
            out.append("stop-command: and start-command: go together; give both or neither")
        }
        if !stopCommand.isEmpty, unit != nil {
            out.append("unit: and stop-command:/start-command: exclude each other; give one way to control the app")
        }
        if !statusCommand.isEmpty, stopCommand.isEmpty {
            out.append("status-command: needs stop-command: and start-command:")
        }
        if let unit, !unit.isEmpty, !Self.isValidUnitName(unit) {
            out.append("unit: \"\(unit)\" is not a systemd unit name (e.g. app.service)")
        }
        if walWarnSize >= walCriticalSize {
            out.append("wal-warn-size: must be below wal-critical-size:")
        }
        if maxRestoreAttempts < 1 || maxRestoreAttempts > 20 {
            out.append("restore-attempts: must be within 1...20")
        }
        if integrityBudget <= .zero { out.append("integrity-budget: must be above zero") }
        if confirmBudget <= .zero { out.append("confirm-budget: must be above zero") }
        if checkpointInterval <= .zero { out.append("health-interval: must be above zero") }
        if integrityInterval <= .zero { out.append("integrity-interval: must be above zero") }
        for (i, q) in verifyQueries.enumerated() where q.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            out.append("verify[\(i)]: empty query")
        }
        return out
    }

    /// `name.service`, `name@inst.service`, ... : systemd's unit name alphabet with a type suffix.
    static func isValidUnitName(_ name: String) -> Bool {
        let suffixes = [".service", ".socket", ".target", ".mount", ".timer", ".path", ".scope", ".slice"]
        guard suffixes.contains(where: { name.hasSuffix($0) }), name.count <= 255 else { return false }
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:-_.\\@")
        return name.allSatisfy { allowed.contains($0) } && !name.hasPrefix(".")
    }
}

/// A webhook alert destination.
public struct AlertConfig: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable { case slack, pagerduty, webhook }
    public var kind: Kind
    /// The URL may itself be a secret (Slack webhook URLs are); it is never logged.
    public var url: Secret
    /// PagerDuty routing key, or the HMAC-SHA256 key of a generic webhook.
    public var key: Secret?
    public var minSeverity: String
    /// Optional display name used in logs instead of the URL (`name:`).
    public var name: String?

    public init(kind: Kind, url: Secret, key: Secret? = nil, minSeverity: String = "warning", name: String? = nil) {
        self.kind = kind
        self.url = url
        self.key = key
        self.minSeverity = minSeverity
        self.name = name
    }
}

/// A scheduled recovery drill of one database: restore the latest point of
/// each replica (or of `replica`) into a scratch directory, run
/// `integrity_check` and the queries, record the result, alert on failure.
///
/// | key | type | default | meaning |
/// |---|---|---|---|
/// | `interval` | duration | 7d | time between drills (from the last recorded one) |
/// | `weekly` | `"DAY HH:MM"` | – | instead of `interval`: a weekly slot in local time (`"sun 03:00"`) |
/// | `budget` | duration | 10m | longest a drill may take; over it the drill fails |
/// | `scratch-dir` | path | `<state-dir>/drills` | where the temporary copy is restored (removed afterwards) |
/// | `replica` | name | every replica | drill only this replica (per database only) |
/// | `queries` | list of `{sql, min, within-live}` | – | checks on the restored copy |
public struct DrillConfig: Sendable, Equatable {
    public var schedule: DrillSchedule
    public var queries: [DrillQuery]
    public var budget: Duration
    public var scratchDir: String?
    /// Drill only this replica (nil: every replica of the database).
    public var replica: String?
    /// Directory entries: databases drilled per scheduled run (a rotating sample).
    public var sample: Int?

    public init(
        schedule: DrillSchedule = .every(.seconds(7 * 86400)), queries: [DrillQuery] = [], budget: Duration = .seconds(600),
        scratchDir: String? = nil, replica: String? = nil
    ) {
        self.schedule = schedule
        self.queries = queries
        self.budget = budget
        self.scratchDir = scratchDir
        self.replica = replica
    }

    /// `scratch-dir`, or `<state-dir>/drills`.
    public func scratchDirectory(stateDir: String) -> String {
        scratchDir ?? (stateDir as NSString).appendingPathComponent("drills")
    }
}

/// `SELECT count(*) FROM users` with expectations on its first column
/// (an integer): at least `min`, and/or within `withinLivePercent` % of the
/// same query on the live database. With neither, the value must be at
/// least 1 (the seed's `ROW_COUNT -gt 0`).
public struct DrillQuery: Sendable, Equatable {
    public var sql: String
    public var min: Int64?
    public var withinLivePercent: Double?

    public init(sql: String, min: Int64? = nil, withinLivePercent: Double? = nil) {
        self.sql = sql
        self.min = min
        self.withinLivePercent = withinLivePercent
    }

    /// The lower bound in force (`min`, or 1 when nothing else is expected).
    public var effectiveMin: Int64? { min ?? (withinLivePercent == nil ? 1 : nil) }
}
