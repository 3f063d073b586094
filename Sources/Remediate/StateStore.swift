import Foundation
import Platform

/// guardian's own state database, `<state-dir>/guardian.db` (WAL mode):
/// incidents with their timelines, the event log, and which alerts are
/// triggered (so a resolve still follows a trigger after a restart).
///
///     incidents(id, db, detected_at, closed_at, phase, outcome, cause, data JSON)
///     incident_steps(incident_id, seq, at, ended_at, step, outcome, detail)
///     event_log(id, at, db, kind, level, incident_id, detail)
///     alert_state(dedup_key, db, severity, summary, triggered_at)
///     alert_deliveries(id, at, dedup_key, action, destination, status, attempts, detail)
///     drills(id, db, replica, destination, started_at, duration, txid, rows, integrity, result, reason, data JSON)
///
/// Times are Unix seconds (REAL, millisecond precision). Several services
/// and the CLI share the file; each opens its own connection. The actor runs
/// on its own thread, so its sqlite3 calls never block the cooperative pool.
public actor StateStore {
    public static let fileName = "guardian.db"
    static let schemaVersion: Int64 = 1
    /// Event-log rows kept (oldest trimmed).
    static let eventLogLimit = 20_000

    public nonisolated let path: String
    /// One thread serves every store of the process (they are few and brief).
    static let executor = ThreadExecutor(name: "guardian-state")
    public nonisolated var unownedExecutor: UnownedSerialExecutor { Self.executor.asUnownedSerialExecutor() }
    private var connection: SQLiteConnection?
    private let readOnly: Bool
    private var inserts = 0

    /// `stateDir/guardian.db`; created (with its directory) unless `readOnly`.
    public init(stateDir: String, readOnly: Bool = false) {
        path = (stateDir as NSString).appendingPathComponent(Self.fileName)
        self.readOnly = readOnly
    }

    func db() throws -> SQLiteConnection {
        if let connection { return connection }
        if readOnly {
            guard FileManager.default.fileExists(atPath: path) else {
                throw StateStoreError(path: path, message: "no state database (guardian has not run with this state-dir yet)")
            }
            let c = try SQLiteConnection(path: path, mode: .readOnly, busyTimeout: .seconds(5))
            connection = c
            return c
        }
        try DurableFile.makeDirectories((path as NSString).deletingLastPathComponent)
        let c = try SQLiteConnection(path: path, mode: .readWriteCreate, busyTimeout: .seconds(10))
        try c.execute("PRAGMA journal_mode=WAL")
        try c.execute("PRAGMA synchronous=FULL")
        let version = try c.scalar("PRAGMA user_version")?.int64 ?? 0
        if version < Self.schemaVersion {
            try c.execute("""
                BEGIN IMMEDIATE;
                CREATE TABLE IF NOT EXISTS incidents(
                  id INTEGER PRIMARY KEY AUTOINCREMENT, db TEXT NOT NULL, detected_at REAL NOT NULL, closed_at REAL,
                  phase TEXT NOT NULL, outcome TEXT NOT NULL, cause TEXT NOT NULL, data TEXT NOT NULL);
                CREATE INDEX IF NOT EXISTS incidents_db ON incidents(db, outcome);
                CREATE TABLE IF NOT EXISTS incident_steps(
                  incident_id INTEGER NOT NULL REFERENCES incidents(id), seq INTEGER NOT NULL, at REAL NOT NULL,
                  ended_at REAL, step TEXT NOT NULL, outcome TEXT NOT NULL, detail TEXT NOT NULL,
                  PRIMARY KEY(incident_id, seq));
                CREATE TABLE IF NOT EXISTS event_log(
                  id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, db TEXT, kind TEXT NOT NULL, level TEXT NOT NULL,
                  incident_id INTEGER, detail TEXT NOT NULL);
                CREATE TABLE IF NOT EXISTS alert_state(
                  dedup_key TEXT PRIMARY KEY, db TEXT, severity TEXT NOT NULL, summary TEXT NOT NULL, triggered_at REAL NOT NULL);
                CREATE TABLE IF NOT EXISTS alert_deliveries(
                  id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, dedup_key TEXT NOT NULL, action TEXT NOT NULL,
                  destination TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL, detail TEXT NOT NULL);
                PRAGMA user_version=\(Self.schemaVersion);
                COMMIT;
                """)
        }
        try Self.createDrillTable(c)
        connection = c
        return c
    }

    static func encoder() -> JSONEncoder {
        let e = JSONEncoder()
        e.dateEncodingStrategy = .millisecondsSince1970
        e.outputFormatting = [.sortedKeys]
        return e
    }

    static func decoder() -> JSONDecoder {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .millisecondsSince1970
        return d
    }

    static func seconds(_ d: Date) -> SQLiteValue { .real((d.timeIntervalSince1970 * 1000).rounded() / 1000) }

    // MARK: - Incidents

    /// Inserts a new incident and returns its id (the record's `id` is ignored).
    public func createIncident(_ record: IncidentRecord) throws -> Int64 {
        let c = try db()
        var r = record
        r.steps = []
        try c.execute("BEGIN IMMEDIATE")
        do {
            let data = String(decoding: try Self.encoder().encode(r), as: UTF8.self)
            try c.query(
                "INSERT INTO incidents(db, detected_at, closed_at, phase, outcome, cause, data) VALUES (?, ?, NULL, ?, ?, ?, ?)",
                [.text(r.database), Self.seconds(r.detectedAt), .text(r.phase.rawValue), .text(r.outcome.rawValue), .text(r.cause.rawValue), .text(data)])
            let id = try c.scalar("SELECT last_insert_rowid()")?.int64 ?? 0
            try c.execute("COMMIT")
            return id
        } catch {
            try? c.execute("ROLLBACK")
            throw error
        }
    }

    /// Saves the record's fields (not its steps: those are appended one by one).
    public func updateIncident(_ record: IncidentRecord) throws {
        let c = try db()
        var r = record
        r.steps = []
        let data = String(decoding: try Self.encoder().encode(r), as: UTF8.self)
        try c.query(
            "UPDATE incidents SET closed_at = ?, phase = ?, outcome = ?, cause = ?, data = ? WHERE id = ?",
            [r.closedAt.map(Self.seconds) ?? .null, .text(r.phase.rawValue), .text(r.outcome.rawValue), .text(r.cause.rawValue), .text(data), .integer(r.id)])
    }

    public func appendStep(incident: Int64, _ step: IncidentStep) throws {
        try db().query(
            "INSERT OR REPLACE INTO incident_steps(incident_id, seq, at, ended_at, step, outcome, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [.integer(incident), .integer(Int64(step.seq)), Self.seconds(step.at), step.endedAt.map(Self.seconds) ?? .null,
             .text(step.step), .text(step.outcome.rawValue), .text(step.detail)])
    }

    /// One incident with its full timeline.
    public func incident(id: Int64) throws -> IncidentRecord? {
        let c = try db()
        guard let row = try c.query("SELECT data FROM incidents WHERE id = ?", [.integer(id)]).first,
            case .text(let json) = row[0]
        else { return nil }
        var r = try Self.decoder().decode(IncidentRecord.self, from: Data(json.utf8))
        r.id = id
        r.steps = try c.query(
            "SELECT seq, at, ended_at, step, outcome, detail FROM incident_steps WHERE incident_id = ? ORDER BY seq", [.integer(id)]
        ).map { s in
            IncidentStep(
                seq: Int(s[0].int64 ?? 0), at: Self.date(s[1]) ?? Date(timeIntervalSince1970: 0), endedAt: Self.date(s[2]),
                step: "\(s[3])", outcome: IncidentStep.Outcome(rawValue: "\(s[4])") ?? .info, detail: "\(s[5])")
        }
        return r
    }

    /// Incidents, newest first, optionally of one database or only open ones.
    public func incidents(database: String? = nil, openOnly: Bool = false, limit: Int = 1000) throws -> [IncidentRecord] {
        let c = try db()
        var sql = "SELECT id FROM incidents WHERE 1"
        var args: [SQLiteValue] = []
        if let database {
            sql += " AND db = ?"
            args.append(.text(database))
        }
        if openOnly { sql += " AND outcome IN ('open', 'escalated')" }
        sql += " ORDER BY id DESC LIMIT \(max(1, limit))"
        return try c.query(sql, args).compactMap { $0.first?.int64 }.compactMap { try incident(id: $0) }
    }

    static func date(_ v: SQLiteValue) -> Date? {
        switch v {
        case .real(let d): Date(timeIntervalSince1970: d)
        case .integer(let i): Date(timeIntervalSince1970: Double(i))
        default: nil
        }
    }

    // MARK: - Event log

    public struct LoggedEvent: Sendable, Equatable {
        public var at: Date
        public var database: String?
        public var kind: String
        public var level: String
        public var incident: Int64?
        public var detail: String
    }

    public func log(_ kind: String, level: String = "info", database: String?, incident: Int64? = nil, detail: String, at: Date = Date()) throws {
        let c = try db()
        try c.query(
            "INSERT INTO event_log(at, db, kind, level, incident_id, detail) VALUES (?, ?, ?, ?, ?, ?)",
            [Self.seconds(at), database.map(SQLiteValue.text) ?? .null, .text(kind), .text(level), incident.map(SQLiteValue.integer) ?? .null, .text(detail)])
        inserts += 1
        if inserts % 500 == 0 {
            try c.query("DELETE FROM event_log WHERE id <= (SELECT max(id) FROM event_log) - ?", [.integer(Int64(Self.eventLogLimit))])
        }
    }

    public func events(database: String? = nil, limit: Int = 100) throws -> [LoggedEvent] {
        var sql = "SELECT at, db, kind, level, incident_id, detail FROM event_log"
        var args: [SQLiteValue] = []
        if let database {
            sql += " WHERE db = ?"
            args.append(.text(database))
        }
        sql += " ORDER BY id DESC LIMIT \(max(1, limit))"
        return try db().query(sql, args).map { r in
            LoggedEvent(
                at: Self.date(r[0]) ?? Date(timeIntervalSince1970: 0), database: r[1] == .null ? nil : "\(r[1])", kind: "\(r[2])",
                level: "\(r[3])", incident: r[4].int64, detail: "\(r[5])")
        }
    }

    // MARK: - Alerts

    public struct ActiveAlert: Sendable, Equatable {
        public var key: String
        public var database: String?
        public var severity: AlertSeverity
        public var summary: String
        public var triggeredAt: Date
    }

    public func setAlertActive(_ a: ActiveAlert) throws {
        try db().query(
            "INSERT OR REPLACE INTO alert_state(dedup_key, db, severity, summary, triggered_at) VALUES (?, ?, ?, ?, ?)",
            [.text(a.key), a.database.map(SQLiteValue.text) ?? .null, .text(a.severity.rawValue), .text(a.summary), Self.seconds(a.triggeredAt)])
    }

    public func clearAlert(key: String) throws {
        try db().query("DELETE FROM alert_state WHERE dedup_key = ?", [.text(key)])
    }

    public func activeAlerts() throws -> [ActiveAlert] {
        try db().query("SELECT dedup_key, db, severity, summary, triggered_at FROM alert_state ORDER BY triggered_at").map(Self.activeAlert)
    }

    /// The triggered alert with this key, if any.
    public func activeAlert(key: String) throws -> ActiveAlert? {
        try db().query("SELECT dedup_key, db, severity, summary, triggered_at FROM alert_state WHERE dedup_key = ?", [.text(key)]).first.map(Self.activeAlert)
    }

    private static func activeAlert(_ r: [SQLiteValue]) -> ActiveAlert {
        ActiveAlert(
            key: "\(r[0])", database: r[1] == .null ? nil : "\(r[1])", severity: AlertSeverity(rawValue: "\(r[2])") ?? .critical,
            summary: "\(r[3])", triggeredAt: date(r[4]) ?? Date())
    }

    public func recordDelivery(key: String, action: String, destination: String, status: String, attempts: Int, detail: String, at: Date = Date()) throws {
        try db().query(
            "INSERT INTO alert_deliveries(at, dedup_key, action, destination, status, attempts, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [Self.seconds(at), .text(key), .text(action), .text(destination), .text(status), .integer(Int64(attempts)), .text(detail)])
    }

    public struct Delivery: Sendable, Equatable {
        public var key: String
        public var action: String
        public var destination: String
        public var status: String
        public var attempts: Int
        public var detail: String
    }

    public func deliveries(limit: Int = 100) throws -> [Delivery] {
        try db().query("SELECT dedup_key, action, destination, status, attempts, detail FROM alert_deliveries ORDER BY id DESC LIMIT \(max(1, limit))").map { r in
            Delivery(key: "\(r[0])", action: "\(r[1])", destination: "\(r[2])", status: "\(r[3])", attempts: Int(r[4].int64 ?? 0), detail: "\(r[5])")
        }
    }

    public func close() { connection = nil }
}

public struct StateStoreError: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let message: String
    public var description: String { "\(path): \(message)" }
}
