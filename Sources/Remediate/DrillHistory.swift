import Foundation
import Platform

/// The `drills` table of guardian's state database: one row per drill of
/// one replica, newest last. Created with `CREATE TABLE IF NOT EXISTS` when
/// the store opens read-write, so an existing state database keeps its data.
///
///     drills(id, db, replica, destination, started_at, duration, txid, rows,
///            integrity, result, reason, data JSON)
extension StateStore {
    static func createDrillTable(_ c: SQLiteConnection) throws {
        try c.execute("""
            CREATE TABLE IF NOT EXISTS drills(
              id INTEGER PRIMARY KEY AUTOINCREMENT, db TEXT NOT NULL, replica TEXT NOT NULL, destination TEXT NOT NULL,
              started_at REAL NOT NULL, duration REAL NOT NULL, txid INTEGER, rows INTEGER, integrity TEXT,
              result TEXT NOT NULL, reason TEXT, data TEXT NOT NULL);
            CREATE INDEX IF NOT EXISTS drills_db ON drills(db, started_at);
            """)
    }

    /// Records a drill and returns its id.
    @discardableResult
    public func recordDrill(_ result: DrillResult) throws -> Int64 {
        let c = try db()
        var r = result
        r.id = nil
        let data = String(decoding: try Self.encoder().encode(r), as: UTF8.self)
        try c.execute("BEGIN IMMEDIATE")
        do {
            try c.query(
                """
                INSERT INTO drills(db, replica, destination, started_at, duration, txid, rows, integrity, result, reason, data)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                [
                    .text(r.database), .text(r.replica), .text(r.destination), Self.seconds(r.startedAt), .real(r.durationSeconds),
                    r.txid.map { .integer(Int64(bitPattern: $0)) } ?? .null, r.rows.map(SQLiteValue.integer) ?? .null,
                    r.integrity.map(SQLiteValue.text) ?? .null, .text(r.result), r.reason.map(SQLiteValue.text) ?? .null, .text(data),
                ])
            let id = try c.scalar("SELECT last_insert_rowid()")?.int64 ?? 0
            try c.execute("COMMIT")
            return id
        } catch {
            try? c.execute("ROLLBACK")
            throw error
        }
    }

    /// Drills, newest first, optionally of one database and/or replica.
    /// A state database without the table (never drilled) has none.
    public func drills(database: String? = nil, replica: String? = nil, limit: Int = 100) throws -> [DrillResult] {
        let c = try db()
        var sql = "SELECT id, data FROM drills WHERE 1"
        var args: [SQLiteValue] = []
        if let database {
            sql += " AND db = ?"
            args.append(.text(database))
        }
        if let replica {
            sql += " AND replica = ?"
            args.append(.text(replica))
        }
        sql += " ORDER BY started_at DESC, id DESC LIMIT \(max(1, limit))"
        let rows: [[SQLiteValue]]
        do {
            rows = try c.query(sql, args)
        } catch let e as SQLiteError where e.message.contains("no such table") {
            return []
        }
        let decoder = Self.decoder()
        return try rows.map { row in
            guard case .text(let json) = row[1] else { throw StateStoreError(path: path, message: "drill \(row[0]) has no data") }
            var r = try decoder.decode(DrillResult.self, from: Data(json.utf8))
            r.id = row[0].int64
            return r
        }
    }

    /// The newest drill of each of `replicas` (those never drilled are left out).
    public func latestDrills(database: String, replicas: [String]) throws -> [DrillResult] {
        try replicas.compactMap { try drills(database: database, replica: $0, limit: 1).first }
    }
}
