import CSQLite
import Foundation

/// A value read from or bound to SQLite.
public enum SQLiteValue: Sendable, Equatable, CustomStringConvertible {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])

    public var description: String {
        switch self {
        case .null: "NULL"
        case .integer(let v): "\(v)"
        case .real(let v): "\(v)"
        case .text(let v): v
        case .blob(let v): "<\(v.count) bytes>"
        }
    }

    public var int64: Int64? {
        switch self {
        case .integer(let v): v
        case .real(let v): Int64(v)
        case .text(let v): Int64(v)
        default: nil
        }
    }
}

public struct SQLiteError: Error, CustomStringConvertible, Sendable {
    /// The primary result code (SQLITE_BUSY, SQLITE_CORRUPT, ...).
    public let code: Int32
    public let extendedCode: Int32
    public let message: String
    public let sql: String?

    public var description: String {
        let name = String(cString: sqlite3_errstr(code))
        return sql.map { "\(message) (\(name), code \(extendedCode)) in \($0)" } ?? "\(message) (\(name), code \(extendedCode))"
    }

    public var isBusy: Bool { code == SQLITE_BUSY || code == SQLITE_LOCKED }
    public var isCorrupt: Bool { code == SQLITE_CORRUPT || code == SQLITE_NOTADB }
    public var isFull: Bool { code == SQLITE_FULL }
    public var isIOError: Bool { code == SQLITE_IOERR }
}

/// A thin wrapper over one sqlite3 connection. Debian's libsqlite3 is built
/// in serialized threading mode, so the handle is safe to share; guardian
/// still confines each connection to one actor or thread. All calls block:
/// use it from a dedicated thread (`ThreadExecutor`, `BlockingPool`), never
/// from the cooperative pool.
public final class SQLiteConnection: @unchecked Sendable {
    public let path: String
    private let handle: OpaquePointer
    /// Hands `-wal`/`-shm` this connection creates back to the database's
    /// owner (nil when this process owns the database).
    private let sidecars: SidecarOwner?
    private var sidecarsSettled = false

    public enum Mode: Sendable { case readOnly, readWrite, readWriteCreate }

    public init(path: String, mode: Mode = .readWrite, busyTimeout: Duration = .seconds(5)) throws {
        self.path = path
        var db: OpaquePointer?
        let flags: Int32
        switch mode {
        case .readOnly: flags = SQLITE_OPEN_READONLY
        case .readWrite: flags = SQLITE_OPEN_READWRITE
        case .readWriteCreate: flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
        }
        let rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            if let db { sqlite3_close_v2(db) }
            throw SQLiteError(code: rc & 0xff, extendedCode: rc, message: "cannot open \(path): \(message)", sql: nil)
        }
        handle = db
        sidecars = SidecarOwner(database: path)
        sqlite3_extended_result_codes(db, 1)
        _ = csqlite_busy_timeout(db, Int32(clamping: busyTimeout.milliseconds))
    }

    deinit { sqlite3_close_v2(handle) }

    public static var libraryVersion: String { String(cString: sqlite3_libversion()) }

    private func error(_ rc: Int32, sql: String?) -> SQLiteError {
        SQLiteError(
            code: rc & 0xff, extendedCode: sqlite3_extended_errcode(handle),
            message: String(cString: sqlite3_errmsg(handle)), sql: sql)
    }

    /// After a statement: once `-wal` and `-shm` exist, make sure they are the
    /// database owner's (checked until both exist, then never again).
    private func settleSidecars() {
        guard let sidecars, !sidecarsSettled else { return }
        sidecarsSettled = sidecars.settle()
    }

    /// Runs one or more statements that return no rows of interest.
    public func execute(_ sql: String) throws {
        defer { settleSidecars() }
        let rc = sqlite3_exec(handle, sql, nil, nil, nil)
        guard rc == SQLITE_OK else { throw error(rc, sql: sql) }
    }

    /// Runs one statement and returns every row.
    @discardableResult
    public func query(_ sql: String, _ arguments: [SQLiteValue] = []) throws -> [[SQLiteValue]] {
        var rows: [[SQLiteValue]] = []
        try forEachRow(sql, arguments) { rows.append($0) }
        return rows
    }

    /// Runs one statement, calling `body` for each row as it is produced.
    public func forEachRow(_ sql: String, _ arguments: [SQLiteValue] = [], _ body: ([SQLiteValue]) throws -> Void) throws {
        var statement: OpaquePointer?
        var rc = sqlite3_prepare_v2(handle, sql, -1, &statement, nil)
        guard rc == SQLITE_OK, let statement else { throw error(rc, sql: sql) }
        defer {
            sqlite3_finalize(statement)
            settleSidecars()
        }
        for (i, argument) in arguments.enumerated() {
            let index = Int32(i + 1)
            switch argument {
            case .null: rc = sqlite3_bind_null(statement, index)
            case .integer(let v): rc = sqlite3_bind_int64(statement, index, v)
            case .real(let v): rc = sqlite3_bind_double(statement, index, v)
            case .text(let v): rc = sqlite3_bind_text(statement, index, v, -1, csqlite_transient())
            case .blob(let v): rc = v.withUnsafeBytes { sqlite3_bind_blob(statement, index, $0.baseAddress, Int32($0.count), csqlite_transient()) }
            }
            guard rc == SQLITE_OK else { throw error(rc, sql: sql) }
        }
        let columns = sqlite3_column_count(statement)
        while true {
            rc = sqlite3_step(statement)
            if rc == SQLITE_DONE { return }
            guard rc == SQLITE_ROW else { throw error(rc, sql: sql) }
            var row: [SQLiteValue] = []
            row.reserveCapacity(Int(columns))
            for c in 0..<columns {
                switch sqlite3_column_type(statement, c) {
                case SQLITE_INTEGER: row.append(.integer(sqlite3_column_int64(statement, c)))
                case SQLITE_FLOAT: row.append(.real(sqlite3_column_double(statement, c)))
                case SQLITE_TEXT: row.append(.text(String(cString: sqlite3_column_text(statement, c))))
                case SQLITE_BLOB:
                    let n = Int(sqlite3_column_bytes(statement, c))
                    if n > 0, let p = sqlite3_column_blob(statement, c) {
                        row.append(.blob(Array(UnsafeRawBufferPointer(start: p, count: n))))
                    } else {
                        row.append(.blob([]))
                    }
                default: row.append(.null)
                }
            }
            try body(row)
        }
    }

    /// The first column of the first row, if any.
    public func scalar(_ sql: String, _ arguments: [SQLiteValue] = []) throws -> SQLiteValue? {
        try query(sql, arguments).first?.first
    }

    /// `PRAGMA wal_checkpoint(MODE)` → (busy, log frames, checkpointed frames).
    public func checkpoint(_ mode: CheckpointMode) throws -> CheckpointResult {
        var log: Int32 = 0
        var done: Int32 = 0
        let rc = sqlite3_wal_checkpoint_v2(handle, nil, mode.cValue, &log, &done)
        settleSidecars()
        if rc == SQLITE_BUSY { return CheckpointResult(busy: true, logFrames: Int(log), checkpointedFrames: Int(done)) }
        guard rc == SQLITE_OK else { throw error(rc, sql: "PRAGMA wal_checkpoint(\(mode))") }
        return CheckpointResult(busy: false, logFrames: Int(log), checkpointedFrames: Int(done))
    }

    /// Keep the -wal file when this connection closes (SQLITE_FCNTL_PERSIST_WAL),
    /// and do not checkpoint on close (SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE).
    public func persistWAL() {
        _ = csqlite_persist_wal(handle, 1)
        _ = csqlite_no_checkpoint_on_close(handle)
    }

    /// Retries a busy lock every 100 µs for about `limit` (instead of the
    /// busy timeout's growing sleeps): for taking the write lock between two
    /// transactions of an application that commits back to back.
    public func retryBusyQuickly(for limit: Duration) {
        _ = csqlite_spin_busy(handle, Int32(clamping: max(1, limit.milliseconds * 1000 / 150)))
    }

    public var isAutocommit: Bool { sqlite3_get_autocommit(handle) != 0 }
}

public enum CheckpointMode: String, Sendable, CustomStringConvertible {
    case passive = "PASSIVE", full = "FULL", restart = "RESTART", truncate = "TRUNCATE"

    var cValue: Int32 {
        switch self {
        case .passive: SQLITE_CHECKPOINT_PASSIVE
        case .full: SQLITE_CHECKPOINT_FULL
        case .restart: SQLITE_CHECKPOINT_RESTART
        case .truncate: SQLITE_CHECKPOINT_TRUNCATE
        }
    }

    public var description: String { rawValue }
}

public struct CheckpointResult: Sendable, Equatable, Codable {
    public let busy: Bool
    public let logFrames: Int
    public let checkpointedFrames: Int

    public init(busy: Bool, logFrames: Int, checkpointedFrames: Int) {
        self.busy = busy
        self.logFrames = logFrames
        self.checkpointedFrames = checkpointedFrames
    }
}

/// The owner of a database that another user owns (guardian runs as its own
/// user beside the application's). SQLite creates `-wal` and `-shm` on a
/// connection's first read; made by guardian they would belong to guardian
/// and the application would fail with SQLITE_CANTOPEN. SQLite fixes the
/// owner itself only when it runs as root, so every guardian connection to
/// the database calls `settle()` after its statements until both exist.
public struct SidecarOwner: Sendable {
    public let database: String
    public let uid: uid_t
    public let gid: gid_t
    public let mode: mode_t

    /// nil when this process's user and group own the database (or it does
    /// not exist): then whatever SQLite creates is already right.
    public init?(database path: String) {
        var st = stat()
        // A `file:` URI names the database after the scheme, up to the query.
        let file = path.hasPrefix("file:") ? String(path.dropFirst(5).prefix { $0 != "?" }) : path
        guard stat(file, &st) == 0, st.st_uid != geteuid() || st.st_gid != getegid() else { return nil }
        self.init(database: file, uid: st.st_uid, gid: st.st_gid, mode: st.st_mode & 0o777)
    }

    public init(database: String, uid: uid_t, gid: gid_t, mode: mode_t) {
        self.database = database
        self.uid = uid
        self.gid = gid
        self.mode = mode
    }

    /// Gives `-wal` and `-shm` the database's owner, group and permission
    /// bits where they differ (needs CAP_CHOWN, which the packaged unit
    /// grants). True once both exist (nothing more to watch for).
    ///
    /// The directory belongs to the application, which could plant a
    /// symbolic or hard link named `app.db-wal` pointing at any file: each
    /// sidecar is opened with `O_NOFOLLOW` and changed through that
    /// descriptor only when it is a regular file with a single link on the
    /// database's own file system (`fchown`/`fchmod`: nothing is done by
    /// path). Anything else is left alone, and counted as present so that
    /// it is not looked at again and again.
    @discardableResult
    public func settle() -> Bool {
        var databaseStat = stat()
        guard stat(database, &databaseStat) == 0 else { return false }
        var present = 0
        for suffix in ["-wal", "-shm"] {
            let sidecar = database + suffix
            var st = stat()
            guard lstat(sidecar, &st) == 0 else { continue }
            present += 1
            let fd = open(sidecar, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
            guard fd >= 0 else { continue }
            defer { close(fd) }
            guard fstat(fd, &st) == 0, Self.isOwnSidecar(st, database: databaseStat) else { continue }
            if st.st_uid != uid || st.st_gid != gid { _ = fchown(fd, uid, gid) }
            if st.st_mode & 0o777 != mode { _ = fchmod(fd, mode) }
        }
        return present == 2
    }

    /// A file SQLite itself made beside the database: regular, one link,
    /// on the database's file system.
    static func isOwnSidecar(_ st: stat, database: stat) -> Bool {
        (st.st_mode & S_IFMT) == S_IFREG && st.st_nlink == 1 && st.st_dev == database.st_dev
    }

    /// Whether a sidecar's owner, group and mode are the database's.
    public func matches(_ st: stat) -> Bool {
        st.st_uid == uid && st.st_gid == gid && st.st_mode & 0o777 == mode
    }
}
