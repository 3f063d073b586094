import Foundation
import Platform

/// Owner and permissions of the database file, restored onto the new copy.
public struct FileOwnership: Sendable, Equatable, Codable {
    public var uid: UInt32
    public var gid: UInt32
    public var mode: UInt32

    public var description: String { "owner \(uid):\(gid), mode \(String(mode & 0o7777, radix: 8))" }

    /// Blocking.
    public static func of(_ path: String) -> FileOwnership? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return FileOwnership(uid: st.st_uid, gid: st.st_gid, mode: UInt32(st.st_mode))
    }
}

/// Moving damaged files out of the way — never deleting them — and putting
/// a verified copy in their place. All functions block (rename, fsync,
/// copies across filesystems): call them through `BlockingPool`.
public enum Quarantine {
    /// The companions SQLite keeps beside a database.
    public static let suffixes = ["", "-wal", "-shm", "-journal"]

    /// Where a database's quarantine directories go: `base`, or
    /// `<db dir>/guardian-quarantine`.
    public static func root(for database: String, base: String?) -> String {
        base ?? ((database as NSString).deletingLastPathComponent as NSString).appendingPathComponent("guardian-quarantine")
    }

    /// The name prefix of remediation's restored copies beside a database
    /// (`restorePath`).
    public static func restorePrefix(for database: String) -> String {
        let dir = (database as NSString).deletingLastPathComponent
        return (dir as NSString).appendingPathComponent(".\((database as NSString).lastPathComponent).guardian-restore-")
    }

    /// `<base>/<20261125T140000Z>-incident-<id>`, base defaulting to
    /// `<db dir>/guardian-quarantine` (same filesystem: the move is a rename
    /// that needs no free space).
    public static func directory(for database: String, base: String?, incident: Int64, at: Date) -> String {
        let root = root(for: database, base: base)
        let stamp = Timestamps.iso8601(at).prefix(19).replacingOccurrences(of: "-", with: "").replacingOccurrences(of: ":", with: "")
        return (root as NSString).appendingPathComponent("\(stamp)Z-incident-\(incident)")
    }

    /// Moves the database and its -wal, -shm and -journal (those that exist)
    /// into `dir`. If any move fails, what was moved is moved back and the
    /// error is thrown: either all files are quarantined or none.
    public static func move(database: String, into dir: String, note: String) throws -> [QuarantinedFile] {
        try makeIncidentDirectory(dir)
        var moved: [QuarantinedFile] = []
        do {
            for suffix in suffixes {
                let source = database + suffix
                var st = stat()
                guard lstat(source, &st) == 0 else { continue }
                let target = (dir as NSString).appendingPathComponent((source as NSString).lastPathComponent)
                try moveFile(source, to: target)
                moved.append(QuarantinedFile(original: source, quarantined: target, size: Int64(st.st_size)))
            }
            try DurableFile.syncDirectory((database as NSString).deletingLastPathComponent)
            try DurableFile.syncDirectory(dir)
        } catch {
            for f in moved.reversed() { try? moveFile(f.quarantined, to: f.original) }
            throw error
        }
        let readme = note + "\n\nFiles:\n" + moved.map { "  \($0.quarantined)  (was \($0.original), \($0.size) bytes)" }.joined(separator: "\n")
            + "\n\nguardian never deletes these files. To put them back (app stopped):\n"
            + moved.map { "  mv '\($0.quarantined)' '\($0.original)'" }.joined(separator: "\n") + "\n"
        try? DurableFile.write(Array(readme.utf8), to: (dir as NSString).appendingPathComponent("README.txt"), mode: 0o600)
        return moved
    }

    /// Creates an incident's quarantine directory (0700, guardian's own)
    /// under its root. The root is usually in the application's writable
    /// directory: a symbolic link there (or a directory someone else made
    /// at the incident's name) is refused, never followed.
    static func makeIncidentDirectory(_ dir: String) throws {
        let root = (dir as NSString).deletingLastPathComponent
        var st = stat()
        if lstat(root, &st) == 0, (st.st_mode & S_IFMT) != S_IFDIR {
            throw SystemError("use as the quarantine directory (a symbolic link or not a directory)", path: root, code: ENOTDIR)
        }
        try DurableFile.makeDirectories(root)
        guard lstat(root, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
            throw SystemError("use as the quarantine directory (a symbolic link or not a directory)", path: root, code: ENOTDIR)
        }
        try DurableFile.makePrivateDirectory(dir)
    }

    /// rename(2), or on another filesystem a durable copy checked by size,
    /// then the source is unlinked (only once the copy is safe).
    static func moveFile(_ source: String, to target: String) throws {
        if FileManager.default.fileExists(atPath: target) {
            throw SystemError("move (target exists)", path: target, code: EEXIST)
        }
        if rename(source, target) == 0 { return }
        guard errno == EXDEV else { throw SystemError("rename", path: source) }
        try copyDurably(source, to: target)
        var a = stat(), b = stat()
        guard stat(source, &a) == 0, stat(target, &b) == 0, a.st_size == b.st_size else {
            unlink(target)
            throw SystemError("copy (size differs)", path: target, code: EIO)
        }
        guard unlink(source) == 0 else { throw SystemError("unlink", path: source) }
    }

    static func copyDurably(_ source: String, to target: String) throws {
        let input = open(source, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard input >= 0 else { throw SystemError("open", path: source) }
        defer { close(input) }
        let output = open(target, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard output >= 0 else { throw SystemError("open", path: target) }
        var ok = false
        defer {
            close(output)
            if !ok { unlink(target) }
        }
        try DurableFile.copyAll(from: input, source: source, to: output, target: target)
        guard fsync(output) == 0 else { throw SystemError("fsync", path: target) }
        ok = true
    }

    /// Puts the verified copy at `database`: anything that appeared there
    /// meanwhile (and stray -wal/-shm) is quarantined first, the copy gets
    /// the original owner and mode and is fsynced, then renamed into place
    /// and the directory fsynced. Returns the extra files quarantined.
    public static func swap(restored: String, into database: String, ownership: FileOwnership?, quarantineDir: String) throws -> [QuarantinedFile] {
        var extra: [QuarantinedFile] = []
        for suffix in suffixes {
            let path = database + suffix
            var st = stat()
            guard lstat(path, &st) == 0 else { continue }
            let target = (quarantineDir as NSString).appendingPathComponent((path as NSString).lastPathComponent + ".appeared")
            var existing = stat()
            if lstat(quarantineDir, &existing) != 0 { try makeIncidentDirectory(quarantineDir) }
            try moveFile(path, to: target)
            extra.append(QuarantinedFile(original: path, quarantined: target, size: Int64(st.st_size)))
        }
        // The copy sits in the application's directory: never through a
        // link, and only the very file that is renamed into place.
        let fd = open(restored, O_RDWR | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open", path: restored) }
        defer { close(fd) }
        var opened = stat()
        guard fstat(fd, &opened) == 0, (opened.st_mode & S_IFMT) == S_IFREG, opened.st_nlink == 1 else {
            throw SystemError("swap in (not a regular file with one link)", path: restored, code: EINVAL)
        }
        if let o = ownership {
            guard fchown(fd, o.uid, o.gid) == 0 else { throw SystemError("chown", path: restored) }
            guard fchmod(fd, mode_t(o.mode & 0o7777)) == 0 else { throw SystemError("chmod", path: restored) }
        }
        guard fsync(fd) == 0 else { throw SystemError("fsync", path: restored) }
        var named = stat()
        guard lstat(restored, &named) == 0, named.st_dev == opened.st_dev, named.st_ino == opened.st_ino else {
            throw SystemError("swap in (replaced meanwhile)", path: restored, code: EINVAL)
        }
        guard rename(restored, database) == 0 else { throw SystemError("rename", path: database) }
        try DurableFile.syncDirectory((database as NSString).deletingLastPathComponent)
        return extra
    }

    /// The temp file a restore writes, beside the database (same filesystem,
    /// so the swap is an atomic rename).
    public static func restorePath(for database: String, incident: Int64, attempt: Int) -> String {
        restorePrefix(for: database) + "\(incident)-\(attempt)"
    }

    /// Removes a rejected restored copy and any -wal/-shm SQLite left beside it
    /// (it was made by guardian from a replica that still has it).
    public static func discard(_ path: String) {
        for suffix in ["", "-wal", "-shm", "-journal", ".tmp"] { unlink(path + suffix) }
    }
}
