import CSQLite
import Foundation
import Platform

/// A read-only sqlite3 connection for integrity checks, with a deadline
/// enforced through `sqlite3_progress_handler`: past the deadline the
/// running statement stops with SQLITE_INTERRUPT, so a check never holds its
/// read transaction (and the disk) longer than its budget.
///
/// Blocking: use it from `BlockingPool`, never from the cooperative pool.
/// An SQLite error seen by Remediate's own connections.
public struct SQLiteFailure: Error, Sendable, Equatable, CustomStringConvertible {
    public let code: Int32
    public let extendedCode: Int32
    public let message: String

    public init(code: Int32, extendedCode: Int32, message: String) {
        self.code = code
        self.extendedCode = extendedCode
        self.message = message
    }

    public init(_ e: SQLiteError) {
        self.init(code: e.code, extendedCode: e.extendedCode, message: e.message)
    }

    /// `SQLITE_CORRUPT (code 11)`
    public var name: String { "\(String(cString: sqlite3_errstr(code))), code \(extendedCode)" }
    public var description: String { "\(message) (\(name))" }
    public var isCorrupt: Bool { code == SQLITE_CORRUPT || code == SQLITE_NOTADB }
    public var isInterrupt: Bool { code == SQLITE_INTERRUPT }
    /// `SQLITE_IOERR_SHORT_READ`: the file is shorter than SQLite expects (truncated WAL or database).
    public var isShortRead: Bool { extendedCode == 522 }
}

final class CheckConnection {
    /// The deadline, read by the C progress callback through a raw pointer.
    final class Deadline {
        var at: UInt64 = .max
    }

    let path: String
    private let handle: OpaquePointer
    private let deadline = Deadline()
    /// `-wal`/`-shm` this connection creates go back to the database's owner.
    private let sidecars: SidecarOwner?
    private var sidecarsSettled = false

    /// Opens `path` (a `file:` URI when `uri`); never creates a file.
    init(path: String, readOnly: Bool = true, uri: Bool = false) throws {
        self.path = path
        var db: OpaquePointer?
        let flags = (readOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE) | SQLITE_OPEN_NOMUTEX | (uri ? SQLITE_OPEN_URI : 0)
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            let ext = db.map { sqlite3_extended_errcode($0) } ?? rc
            if let db { sqlite3_close_v2(db) }
            throw SQLiteFailure(code: rc & 0xff, extendedCode: ext, message: "cannot open \(path): \(message)")
        }
        handle = db
        sidecars = SidecarOwner(database: path)
        sqlite3_extended_result_codes(db, 1)
        _ = csqlite_busy_timeout(db, 2000)
        // Never delete or checkpoint the WAL when this connection closes.
        _ = csqlite_persist_wal(db, 1)
        let context = Unmanaged.passUnretained(deadline).toOpaque()
        sqlite3_progress_handler(
            db, 1000,
            { ctx in
                guard let ctx else { return 0 }
                let d = Unmanaged<CheckConnection.Deadline>.fromOpaque(ctx).takeUnretainedValue()
                return DispatchTime.now().uptimeNanoseconds > d.at ? 1 : 0
            }, context)
    }

    deinit {
        sqlite3_progress_handler(handle, 0, nil, nil)
        sqlite3_close_v2(handle)
    }

    /// Stops the statement running on another thread (`sqlite3_interrupt`);
    /// the caller keeps the connection alive meanwhile.
    func interrupt() { sqlite3_interrupt(handle) }

    /// Sets (or clears, with nil) the deadline for the statements that follow.
    func setBudget(_ budget: Duration?) {
        if let budget {
            deadline.at = DispatchTime.now().uptimeNanoseconds &+ UInt64(max(0, budget.milliseconds)) * 1_000_000
        } else {
            deadline.at = .max
        }
    }

    /// Runs one statement and returns the rows' first columns as text.
    /// Rows produced before an error are returned with the error.
    func rows(_ sql: String) -> (rows: [String], error: SQLiteFailure?) {
        var statement: OpaquePointer?
        var rc = sqlite3_prepare_v2(handle, sql, -1, &statement, nil)
        guard rc == SQLITE_OK, let statement else { return ([], error(rc, sql)) }
        defer {
            sqlite3_finalize(statement)
            settleSidecars()
        }
        var out: [String] = []
        while true {
            rc = sqlite3_step(statement)
            if rc == SQLITE_DONE { return (out, nil) }
            guard rc == SQLITE_ROW else { return (out, error(rc, sql)) }
            if let text = sqlite3_column_text(statement, 0) {
                out.append(String(cString: text))
            } else {
                out.append(sqlite3_column_type(statement, 0) == SQLITE_NULL ? "NULL" : "")
            }
        }
    }

    /// The first column of the first row as an integer, or the error.
    func firstInteger(_ sql: String) -> Result<Int64?, SQLiteFailure> {
        var statement: OpaquePointer?
        var rc = sqlite3_prepare_v2(handle, sql, -1, &statement, nil)
        guard rc == SQLITE_OK, let statement else { return .failure(error(rc, sql)) }
        defer {
            sqlite3_finalize(statement)
            settleSidecars()
        }
        rc = sqlite3_step(statement)
        if rc == SQLITE_DONE { return .success(nil) }
        guard rc == SQLITE_ROW else { return .failure(error(rc, sql)) }
        if sqlite3_column_type(statement, 0) == SQLITE_NULL { return .success(nil) }
        return .success(sqlite3_column_int64(statement, 0))
    }

    private func settleSidecars() {
        guard let sidecars, !sidecarsSettled else { return }
        sidecarsSettled = sidecars.settle()
    }

    private func error(_ rc: Int32, _ sql: String) -> SQLiteFailure {
        SQLiteFailure(code: rc & 0xff, extendedCode: sqlite3_extended_errcode(handle), message: String(cString: sqlite3_errmsg(handle)))
    }
}

/// The verdict of one integrity check.
public enum IntegrityVerdict: Sendable, Equatable {
    /// Every page that was checked is fine.
    case ok
    /// SQLite reported corruption; the lines say where.
    case corrupt([String])
    /// The check could not run to a verdict (busy, I/O error, interrupted).
    case inconclusive(String)
}

/// The result of one scheduled `quick_check` run.
public struct QuickCheckOutcome: Sendable, Equatable {
    public var verdict: IntegrityVerdict
    /// The whole database was covered by this run, or this run finished a
    /// round of per-table checks.
    public var completedPass: Bool
    /// This run stopped at its budget.
    public var stoppedAtBudget: Bool
    public var tablesChecked: [String]
    /// The error code SQLite reported, if any (for root-cause evidence).
    public var sqliteCode: Int32?
    public var duration: Duration
}

/// Where the scheduled checks of a big database stand between runs.
public struct IntegrityCursor: Sendable, Equatable {
    /// A whole-database `quick_check` did not fit the budget: check table by table.
    public var perTable = false
    /// Next table (by name order) to check in per-table mode.
    public var nextTable: String?
    /// Tables that alone did not fit the budget, with the larger budget
    /// (doubled each time, up to the maximum) their next check gets.
    public var boosted: [String: Duration] = [:]
    public init() {}
}

/// Remediate's own threads for long blocking work — integrity checks (up to
/// their budget), app commands, systemd waits — so that they never hold up
/// the replication and file I/O on `BlockingPool.shared`.
enum RemediatePool {
    static let shared = BlockingPool(name: "guardian-check", threads: 2)
}

/// `PRAGMA quick_check` on a budget and `PRAGMA integrity_check` to confirm.
/// All functions block; call them through `BlockingPool`.
public enum IntegrityChecker {
    /// One scheduled run. A database whose whole check fits the budget is
    /// checked whole each time; a bigger one is checked table by table
    /// (`quick_check(TABLE)`, SQLite ≥ 3.33), continuing where the last run
    /// stopped, so each run costs at most `budget` and every table is
    /// covered in turn. A table that alone does not fit is retried alone
    /// with twice the budget, up to `maxBudget` (so even one huge table is
    /// eventually checked); past that it is skipped for the round.
    public static func quickCheck(path: String, budget: Duration, maxBudget: Duration? = nil, cursor: inout IntegrityCursor) -> QuickCheckOutcome {
        let start = ContinuousClock.now
        func outcome(_ v: IntegrityVerdict, complete: Bool, budgetHit: Bool = false, tables: [String] = [], code: Int32? = nil) -> QuickCheckOutcome {
            QuickCheckOutcome(
                verdict: v, completedPass: complete, stoppedAtBudget: budgetHit, tablesChecked: tables, sqliteCode: code,
                duration: ContinuousClock.now - start)
        }
        let conn: CheckConnection
        do {
            conn = try CheckConnection(path: path)
        } catch let e as SQLiteFailure {
            return outcome(classify(e, rows: []), complete: false, code: e.code)
        } catch {
            return outcome(.inconclusive("\(error)"), complete: false)
        }
        if !cursor.perTable {
            conn.setBudget(budget)
            let (rows, err) = conn.rows("PRAGMA quick_check(100)")
            if let err, err.isInterrupt {
                cursor.perTable = true
                cursor.nextTable = nil
                return outcome(verdictFrom(rows: rows, interrupted: true), complete: false, budgetHit: true)
            }
            if let err { return outcome(classify(err, rows: rows), complete: false, code: err.code) }
            return outcome(verdictFrom(rows: rows, interrupted: false), complete: true)
        }

        // Per-table round.
        conn.setBudget(budget)
        let (names, listError) = conn.rows("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        if let listError { return outcome(classify(listError, rows: []), complete: false, code: listError.code) }
        let resumeAt = cursor.nextTable
        let pending = names.filter { name in resumeAt.map { name >= $0 } ?? true }
        var checked: [String] = []
        for (i, table) in pending.enumerated() {
            let boost = i == 0 ? cursor.boosted[table] : nil
            if let boost { conn.setBudget(boost) }
            let quoted = "'" + table.replacingOccurrences(of: "'", with: "''") + "'"
            let (rows, err) = conn.rows("PRAGMA quick_check(\(quoted))")
            if let err, err.isInterrupt {
                let problems = rows.filter { $0 != "ok" }
                if !problems.isEmpty { return outcome(.corrupt(problems), complete: false, budgetHit: true, tables: checked) }
                guard i == 0 else {
                    // What was left of the budget did not fit it: next run starts with it.
                    cursor.nextTable = table
                    return outcome(.ok, complete: false, budgetHit: true, tables: checked)
                }
                // This table alone is bigger than the budget.
                let tried = boost ?? budget
                if let maxBudget, tried < maxBudget {
                    let next = min(maxBudget, tried * 2)
                    cursor.boosted[table] = next
                    cursor.nextTable = table
                    return outcome(.inconclusive("table \(table) does not fit \(Units.formatDuration(tried)); its next check gets \(Units.formatDuration(next))"), complete: false, budgetHit: true, tables: checked)
                }
                cursor.nextTable = pending.count > 1 ? pending[1] : nil
                return outcome(.inconclusive("table \(table) alone does not fit the \(Units.formatDuration(tried)) budget"), complete: pending.count == 1, budgetHit: true, tables: checked)
            }
            if let err { return outcome(classify(err, rows: rows), complete: false, tables: checked, code: err.code) }
            let verdict = verdictFrom(rows: rows, interrupted: false)
            if verdict != .ok { return outcome(verdict, complete: false, tables: checked + [table]) }
            checked.append(table)
            if boost != nil {
                // A boosted table runs alone; the others wait for the next run.
                cursor.nextTable = pending.count > 1 ? pending[1] : nil
                return outcome(.ok, complete: pending.count == 1, tables: checked)
            }
        }
        cursor.nextTable = nil
        return outcome(.ok, complete: true, tables: checked)
    }

    /// The confirming check: `PRAGMA integrity_check` over the whole
    /// database, within `budget`.
    public static func confirm(path: String, budget: Duration) -> (verdict: IntegrityVerdict, code: Int32?) {
        let conn: CheckConnection
        do {
            conn = try CheckConnection(path: path)
        } catch let e as SQLiteFailure {
            return (classify(e, rows: []), e.code)
        } catch {
            return (.inconclusive("\(error)"), nil)
        }
        conn.setBudget(budget)
        let (rows, err) = conn.rows("PRAGMA integrity_check(100)")
        if let err {
            if err.isInterrupt {
                let problems = rows.filter { $0 != "ok" }
                if !problems.isEmpty { return (.corrupt(problems), nil) }
                return (.inconclusive("integrity_check did not finish within \(Units.formatDuration(budget))"), err.code)
            }
            return (classify(err, rows: rows), err.code)
        }
        return (verdictFrom(rows: rows, interrupted: false), nil)
    }

    /// Verifies a restored copy: `integrity_check`, then each query's first
    /// column must be non-zero. The file is opened `immutable` so that no
    /// -wal or -shm appears beside it.
    public static func verifyCopy(path: String, queries: [String], budget: Duration) -> Result<Void, VerificationFailure> {
        let uri = "file:" + (path.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? path) + "?immutable=1"
        let conn: CheckConnection
        do {
            conn = try CheckConnection(path: uri, readOnly: true, uri: true)
        } catch {
            return .failure(VerificationFailure(check: "open", detail: "\(error)"))
        }
        conn.setBudget(budget)
        let (rows, err) = conn.rows("PRAGMA integrity_check(20)")
        if let err {
            // Stopped at the budget with nothing found: no verdict, not corruption.
            let stopped = err.isInterrupt && rows.allSatisfy { $0 == "ok" }
            return .failure(VerificationFailure(check: "integrity_check", detail: stopped ? "stopped at the time budget (\(Units.formatDuration(budget)))" : "\(err)", inconclusive: stopped))
        }
        if rows != ["ok"] { return .failure(VerificationFailure(check: "integrity_check", detail: rows.prefix(5).joined(separator: "; "))) }
        for q in queries {
            switch conn.firstInteger(q) {
            case .failure(let e):
                if e.isInterrupt { return .failure(VerificationFailure(check: q, detail: "stopped at the time budget (\(Units.formatDuration(budget)))", inconclusive: true)) }
                return .failure(VerificationFailure(check: q, detail: "\(e)"))
            case .success(let v):
                guard let v, v != 0 else {
                    return .failure(VerificationFailure(check: q, detail: "returned \(v.map(String.init) ?? "no row"), expected a non-zero first column"))
                }
            }
        }
        return .success(())
    }

    static func verdictFrom(rows: [String], interrupted: Bool) -> IntegrityVerdict {
        let problems = rows.filter { $0 != "ok" }
        if !problems.isEmpty { return .corrupt(problems) }
        if interrupted { return .inconclusive("stopped at the time budget") }
        return rows.isEmpty ? .inconclusive("the check returned nothing") : .ok
    }

    /// SQLITE_CORRUPT, SQLITE_NOTADB and a short read are corruption; the
    /// rest (busy, locked, cannot open, other I/O errors) is not a verdict.
    static func classify(_ e: SQLiteFailure, rows: [String]) -> IntegrityVerdict {
        let problems = rows.filter { $0 != "ok" }
        if e.isCorrupt || e.isShortRead { return .corrupt(problems + ["\(e.message) (\(e.name))"]) }
        if !problems.isEmpty { return .corrupt(problems) }
        return .inconclusive("\(e.message) (\(e.name))")
    }
}

/// Why a restored copy was rejected.
public struct VerificationFailure: Error, Sendable, Equatable, CustomStringConvertible {
    public var check: String
    public var detail: String
    /// The check ran out of time: the copy is not known to be bad.
    public var inconclusive = false
    public var description: String { "\(check): \(detail)" }
}
