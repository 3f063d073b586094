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

        // The owners of -wal / -shm, by guardian's own rule
        // (Platform.SidecarOwner): the database's uid, gid and
        // permission bits. A -wal with the right user but another group, or a
        // mode the application's user or group cannot write, is refused too.
        let dbMode = st.st_mode & 0o777
        var wrongOwner: [(String, stat)] = []
        var wrongMode: [(String, stat)] = []
        var present = ["database"]
        for (name, file) in [("-wal", wal), ("-shm", shm)] {
            var fs = stat()
            guard stat(file, &fs) == 0 else { continue }
            present.append(name)
            if fs.st_uid != st.st_uid || fs.st_gid != st.st_gid { wrongOwner.append((file, fs)) }
            if fs.st_mode & 0o777 != dbMode { wrongMode.append((file, fs)) }
        }
        let dbOwner = Identity.name(uid: st.st_uid, gid: st.st_gid)
        let modeText = String(dbMode, radix: 8)
        if wrongOwner.isEmpty && wrongMode.isEmpty {
            out.append(.ok(group, "db.owner", "\(present.joined(separator: ", ")) owned by \(dbOwner), mode \(modeText)"))
        } else {
            var items: [String] = []
            for file in [wal, shm] {
                let owner = wrongOwner.first { $0.0 == file }
                let mode = wrongMode.first { $0.0 == file }
                guard let fs = owner?.1 ?? mode?.1 else { continue }
                var item = owner != nil ? "\(file) is owned by \(Identity.name(uid: fs.st_uid, gid: fs.st_gid))" : "\(file) has mode \(String(fs.st_mode & 0o777, radix: 8))"
                if owner != nil, mode != nil { item += " with mode \(String(fs.st_mode & 0o777, radix: 8))" }
                items.append(item)
            }
            let user = Identity.userName(st.st_uid) ?? "\(st.st_uid)"
            let ownerGroup = Identity.groupName(st.st_gid) ?? "\(st.st_gid)"
            var commands: [String] = []
            if !wrongOwner.isEmpty { commands.append("chown \(user):\(ownerGroup) \(wrongOwner.map(\.0).joined(separator: " "))") }
            if !wrongMode.isEmpty { commands.append("chmod \(modeText) \(wrongMode.map(\.0).joined(separator: " "))") }
            let what: String
            switch (wrongOwner.isEmpty, wrongMode.isEmpty) {
            case (false, true): what = "give them back to the database's owner"
            case (true, false): what = "give them the database's permissions"
            default: what = "give them back to the database's owner and permissions"
            }
            let fix = "\(what): \(commands.joined(separator: " && ")) (SQLite created them as the user of the process that opened the database, e.g. sqlite3 run by another user; guardian itself gives them the database's owner, group and mode)"
            // A mode that only adds permissions locks nobody out.
            let restricts = !wrongOwner.isEmpty || wrongMode.contains { dbMode & ~($0.1.st_mode & 0o777) != 0 }
            if restricts {
                out.append(.fail(
                    group, "db.owner",
                    "\(items.joined(separator: ", ")), but the database by \(dbOwner) with mode \(modeText): the application, or guardian, running as \(user) or in group \(ownerGroup) cannot open it (SQLITE_CANTOPEN)",
                    fix: fix))
            } else {
                out.append(.warn(
                    group, "db.owner", "\(items.joined(separator: ", ")), more open than the database (\(dbOwner) with mode \(modeText))", fix: fix))
            }
        }
        return (out, facts)
    }

    static func groupName(_ path: String) -> String { "database \(path)" }

    private static func modificationTime(_ st: stat) -> Date {
        Date(timeIntervalSince1970: Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9)
    }

    /// The database's first 100 bytes, read with a descriptor of its own
    /// that is closed again. Closing a descriptor of the database releases
    /// every POSIX lock the *same process* holds on it (see
    /// Platform.DatabaseFiles, which the daemon uses for that reason); doctor
    /// is a process of its own that opens no SQLite connection to the
    /// database, so it holds no lock to lose and this is safe. (Unlike
    /// `DatabaseFiles.prefix`, it says why a read failed.)
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
