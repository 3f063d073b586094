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

/// Per-database remediation settings.
public struct RemediationConfig: Sendable, Equatable {
    public var mode: RemediationMode
    /// systemd unit of the application (`app.service`).
    public var unit: String?
    /// Commands used instead of systemd where there is none (argv, no shell).
    public var stopCommand: [String]
    public var startCommand: [String]
    public var integrityInterval: Duration
    public var integrityBudget: Duration
    public var checkpointInterval: Duration
    public var cooldown: Duration
    /// Extra verification queries run on a restored copy; each must return a non-zero first column.
    public var verifyQueries: [String]
    public var quarantineDir: String?

    public init(
        mode: RemediationMode = .auto, unit: String? = nil, stopCommand: [String] = [], startCommand: [String] = [],
        integrityInterval: Duration = .seconds(300), integrityBudget: Duration = .seconds(5),
        checkpointInterval: Duration = .seconds(10), cooldown: Duration = .seconds(600),
        verifyQueries: [String] = [], quarantineDir: String? = nil
    ) {
        self.mode = mode
        self.unit = unit
        self.stopCommand = stopCommand
        self.startCommand = startCommand
        self.integrityInterval = integrityInterval
        self.integrityBudget = integrityBudget
        self.checkpointInterval = checkpointInterval
        self.cooldown = cooldown
        self.verifyQueries = verifyQueries
        self.quarantineDir = quarantineDir
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

    public init(kind: Kind, url: Secret, key: Secret? = nil, minSeverity: String = "warning") {
        self.kind = kind
        self.url = url
        self.key = key
        self.minSeverity = minSeverity
    }
}

/// A scheduled recovery drill of one database.
public struct DrillConfig: Sendable, Equatable {
    public var interval: Duration
    public var queries: [DrillQuery]
    public var budget: Duration
    public var scratchDir: String?

    public init(interval: Duration = .seconds(7 * 86400), queries: [DrillQuery] = [], budget: Duration = .seconds(600), scratchDir: String? = nil) {
        self.interval = interval
        self.queries = queries
        self.budget = budget
        self.scratchDir = scratchDir
    }
}

/// `SELECT count(*) FROM users` with an expectation on its first column.
public struct DrillQuery: Sendable, Equatable {
    public enum Expectation: Sendable, Equatable {
        case greaterThan(Int64)
        case withinPercentOfLive(Double)
    }
    public var sql: String
    public var expect: Expectation

    public init(sql: String, expect: Expectation) {
        self.sql = sql
        self.expect = expect
    }
}
