import Foundation
import Platform
import Remediate
import Replication

/// The checks of one database file, from outside SQLite (the header is read
/// directly: opening the database could create a `-wal`/`-shm` owned by the
/// user running doctor, the very problem one of these checks looks for).
/// Blocking; run on `BlockingPool`.
enum DatabaseChecks {
    /// What later checks (the replicas' lag) need to know about the file.
    struct Facts: Sendable {
        var exists = false
        /// The newest modification of the database or its WAL.
        var lastWrite: Date?
    }

    static func run(_ db: GuardianConfig.Database, group: String) -> (checks: [DoctorReport.Check], facts: Facts) {
        let path = db.path
        var out: [DoctorReport.Check] = []
        var facts = Facts()
        let me = Identity.current

        var st = stat()
        guard stat(path, &st) == 0 else {
            let e = errno
            if e == ENOENT {
                out.append(.fail(group, "db.exists", "\(path) does not exist",
                    fix: "fix dbs[].path in the configuration, or start the application so that it creates the database (in WAL mode)"))
            } else {
                out.append(.fail(group, "db.exists", "cannot stat \(path): \(String(cString: strerror(e)))",
                    fix: "make every directory on the path searchable (x) by \(me.user)"))
            }
            return (out, facts)
        }
        facts.exists = true
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            out.append(.fail(group, "db.exists", "\(path) is not a regular file", fix: "point dbs[].path at the SQLite database file itself"))
            return (out, facts)
        }
        let dir = (path as NSString).deletingLastPathComponent
        var problems: [String] = []
        if access(path, R_OK) != 0 { problems.append("not readable") }
        if access(path, W_OK) != 0 { problems.append("not writable") }
        if access(dir, W_OK | X_OK) != 0 { problems.append("its directory \(dir) is not writable (SQLite creates -wal and -shm there)") }
        if problems.isEmpty {
            out.append(.ok(group, "db.access", "exists; readable and writable by \(me.user), and so is its directory"))
        } else {
            let owner = Identity.name(uid: st.st_uid, gid: st.st_gid)
            out.append(.fail(group, "db.access", "\(path) (owner \(owner), mode \(String(st.st_mode & 0o7777, radix: 8))): \(problems.joined(separator: "; ")) for \(me.user)",
                fix: "run doctor as the user guardian runs as (sudo -u guardian guardian doctor), or give that user access: e.g. chmod g+rw \(path) and chmod g+rwx \(dir) with a group it is in"))
        }

        // Header: valid SQLite, page size, journal mode.
        var header: DatabaseHeader?
        if st.st_size == 0 {
            out.append(.warn(group, "db.header", "\(path) is empty (0 bytes): no schema yet",
                fix: "nothing to replicate until the application creates its tables; set WAL mode when it does: sqlite3 \(path) 'PRAGMA journal_mode=WAL'"))
        } else {
            switch readHeader(path) {
            case .failure(let error):
                out.append(.fail(group, "db.header", "cannot read the header: \(error)", fix: "give \(me.user) read access to the file"))
            case .success(let bytes):
                switch DatabaseHeader.parse(bytes) {
                case .failure(let problem):
                    out.append(.fail(group, "db.header", "\(path) is not a valid SQLite database: \(problem)",
                        fix: "if dbs[].path names the wrong file, fix it; if the database is damaged, restore it with the application stopped: guardian restore -o \(path).restored REPLICA_URL, check it, then move it into place"))
                case .success(let h):
                    header = h
                    let pages = Int64(st.st_size) / Int64(h.pageSize)
                    out.append(.ok(group, "db.header", "valid SQLite database: page size \(h.pageSize), \(pages) pages (\(Units.formatBytes(Int64(st.st_size))))"))
                }
            }
        }
        if let h = header {
            if h.writeVersion == 2, h.readVersion == 2 {
                out.append(.ok(group, "db.journal-mode", "WAL mode"))
            } else {
                out.append(.fail(group, "db.journal-mode", "\(path) is in rollback-journal mode, not WAL: guardian replicates WAL databases only",
                    fix: "run `sqlite3 \(path) 'PRAGMA journal_mode=WAL'` (the setting is stored in the file; with the application stopped or idle)"))
            }
        }

        // WAL size against max-wal-size, and the owners of -wal / -shm.
        var lastWrite = modificationTime(st)
        let wal = path + "-wal", shm = path + "-shm"
        var walStat = stat()
        let hasWAL = stat(wal, &walStat) == 0
        if hasWAL {
            lastWrite = max(lastWrite, modificationTime(walStat))
            let size = Int64(walStat.st_size)
            let limit = db.replication.maxWALSize
            if size > limit {
                out.append(.warn(group, "db.wal-size", "WAL is \(Units.formatBytes(size)), above max-wal-size \(Units.formatBytes(limit))",
                    fix: "a long read transaction in the application blocks checkpoints, or guardian is not running (it keeps the WAL below max-wal-size): check `guardian status` and the application's open transactions"))
            } else {
                out.append(.ok(group, "db.wal-size", "WAL \(Units.formatBytes(size)) (max-wal-size \(Units.formatBytes(limit)))"))
            }
        } else if header != nil {
            out.append(.ok(group, "db.wal-size", "no -wal file (no connection open)"))
        }
        facts.lastWrite = lastWrite

        var mismatched: [(String, stat)] = []
        var present = ["database"]
        for (name, file) in [("-wal", wal), ("-shm", shm)] {
            var fs = stat()
            guard stat(file, &fs) == 0 else { continue }
            present.append(name)
            if fs.st_uid != st.st_uid { mismatched.append((file, fs)) }
        }
        let dbOwner = Identity.name(uid: st.st_uid, gid: st.st_gid)
        if mismatched.isEmpty {
            out.append(.ok(group, "db.owner", "\(present.joined(separator: ", ")) owned by \(dbOwner)"))
        } else {
            let list = mismatched.map { "\($0.0) is owned by \(Identity.name(uid: $0.1.st_uid, gid: $0.1.st_gid))" }.joined(separator: ", ")
            let user = Identity.userName(st.st_uid) ?? "\(st.st_uid)"
            let ownerGroup = Identity.groupName(st.st_gid) ?? "\(st.st_gid)"
            out.append(.fail(
                group, "db.owner",
                "\(list), but the database by \(dbOwner): the application, or guardian, running as \(user) cannot open it (SQLITE_CANTOPEN)",
                fix: "give them back to the database's owner: chown \(user):\(ownerGroup) \(mismatched.map(\.0).joined(separator: " ")) (SQLite created them as the user of the process that opened the database, e.g. sqlite3 run by another user)"))
        }
        return (out, facts)
    }

    static func groupName(_ path: String) -> String { "database \(path)" }

    private static func modificationTime(_ st: stat) -> Date {
        Date(timeIntervalSince1970: Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9)
    }

    private static func readHeader(_ path: String) -> Result<[UInt8], SystemError> {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return .failure(SystemError("open", path: path)) }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 100)
        let n = pread(fd, &bytes, 100, 0)
        guard n >= 0 else { return .failure(SystemError("read", path: path)) }
        return .success(Array(bytes[0..<n]))
    }
}

/// User and group names for messages.
enum Identity {
    struct Current {
        var uid: uid_t
        var user: String
    }

    static var current: Current {
        let uid = geteuid()
        return Current(uid: uid, user: "\(userName(uid) ?? "uid \(uid)") (uid \(uid))")
    }

    static func userName(_ uid: uid_t) -> String? {
        var pw = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 4096)
        guard getpwuid_r(uid, &pw, &buffer, buffer.count, &result) == 0, result != nil, let name = pw.pw_name else { return nil }
        return String(cString: name)
    }

    static func groupName(_ gid: gid_t) -> String? {
        var gr = group()
        var result: UnsafeMutablePointer<group>?
        var buffer = [CChar](repeating: 0, count: 4096)
        guard getgrgid_r(gid, &gr, &buffer, buffer.count, &result) == 0, result != nil, let name = gr.gr_name else { return nil }
        return String(cString: name)
    }

    /// `root:root (uid 0)`, `nobody:nogroup (uid 65534)`.
    static func name(uid: uid_t, gid: gid_t) -> String {
        "\(userName(uid) ?? "\(uid)"):\(groupName(gid) ?? "\(gid)") (uid \(uid))"
    }
}
