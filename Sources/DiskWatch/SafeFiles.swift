import Foundation
import Platform

/// File operations confined to one directory. The directory itself is
/// opened once by its configured path; every operation on its entries goes
/// through that descriptor (`openat`, `renameat`, `unlinkat`, `fstatat` with
/// `AT_SYMLINK_NOFOLLOW`, `O_NOFOLLOW`), so a symbolic link inside it is
/// never followed out of it and a directory swapped underneath is not
/// trusted by name. Blocking: use from the disk thread or `BlockingPool`.
final class SafeDirectory {
    let path: String
    let fd: Int32

    init(_ path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open directory", path: path) }
        self.fd = fd
    }

    /// A subdirectory, opened without following a symbolic link.
    init(in parent: SafeDirectory, name: String) throws {
        path = parent.child(name)
        let fd = openat(parent.fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open directory", path: parent.child(name)) }
        self.fd = fd
    }

    deinit { close(fd) }

    func child(_ name: String) -> String { path.hasSuffix("/") ? path + name : "\(path)/\(name)" }

    /// `lstat` of an entry; nil when it does not exist (or cannot be read).
    func lstat(_ name: String) -> stat? {
        var st = stat()
        return fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 ? st : nil
    }

    /// The entry names (without `.` and `..`).
    func entries() throws -> [String] {
        let dupFD = dup(fd)
        guard dupFD >= 0 else { throw SystemError("dup", path: path) }
        guard let dir = fdopendir(dupFD) else {
            let e = SystemError("opendir", path: path)
            close(dupFD)
            throw e
        }
        defer { closedir(dir) }
        rewinddir(dir)
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: Int(NAME_MAX) + 1) { String(cString: $0) }
            }
            if name != ".", name != ".." { names.append(name) }
        }
        return names
    }

    /// Why the directory cannot be written to (EROFS, EACCES, ...), or nil.
    func writeProblem() -> SystemError? {
        if faccessat(fd, ".", W_OK, AT_EACCESS) != 0 { return SystemError("write to directory", path: path) }
        var vfs = statvfs()
        if fstatvfs(fd, &vfs) == 0, vfs.f_flag & UInt(ST_RDONLY) != 0 {
            return SystemError("write to directory", path: path, code: EROFS)
        }
        return nil
    }

    func rename(_ from: String, _ to: String) throws {
        guard renameat(fd, from, fd, to) == 0 else { throw SystemError("rename \(from) to", path: child(to)) }
    }

    /// Renames an entry into another directory (`olddir`), by both descriptors.
    func rename(_ from: String, into other: SafeDirectory, _ to: String) throws {
        guard renameat(fd, from, other.fd, to) == 0 else { throw SystemError("rename \(child(from)) to", path: other.child(to)) }
    }

    func unlink(_ name: String) throws {
        guard unlinkat(fd, name, 0) == 0 else { throw SystemError("unlink", path: child(name)) }
    }

    /// Opens a regular file without following a symbolic link; refuses anything else.
    func openRegular(_ name: String, flags: Int32) throws -> (fd: Int32, stat: stat) {
        let fd = openat(fd, name, flags | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw SystemError("open", path: child(name)) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let e = SystemError("fstat", path: child(name))
            close(fd)
            throw e
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw SystemError("open (not a regular file)", path: child(name), code: EINVAL)
        }
        // Back to blocking I/O; O_NONBLOCK was only there so that opening a FIFO cannot hang.
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        return (fd, st)
    }

    /// Creates a new file; fails if the name exists (also as a symbolic link).
    func createExclusive(_ name: String, mode: mode_t) throws -> Int32 {
        let fd = openat(fd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        guard fd >= 0 else { throw SystemError("create", path: child(name)) }
        return fd
    }

    func sync() { _ = fsync(fd) }
}

extension stat {
    var isRegular: Bool { (st_mode & S_IFMT) == S_IFREG }
    var isDirectory: Bool { (st_mode & S_IFMT) == S_IFDIR }
    var isSymlink: Bool { (st_mode & S_IFMT) == S_IFLNK }
    /// Bytes actually allocated, which is what deleting the file gives back.
    var allocatedBytes: Int64 { Int64(st_blocks) * 512 }
    var modificationDate: Date {
        Date(timeIntervalSince1970: Double(st_mtim.tv_sec) + Double(st_mtim.tv_nsec) / 1e9)
    }
    var fileID: FileID { FileID(device: UInt64(st_dev), inode: UInt64(st_ino)) }
}

struct FileID: Hashable, Sendable {
    var device: UInt64
    var inode: UInt64
}

/// The files guardian must never touch: each database and its `-wal`,
/// `-shm` and `-journal`. Checked by path and, for files that exist, by
/// device and inode (so a hard link or another path to them is caught too).
struct ProtectedFiles: Sendable {
    let paths: Set<String>
    private let ids: Set<FileID>

    init(_ databases: [String]) {
        var paths: Set<String> = []
        for db in databases where !db.isEmpty {
            for candidate in [db, db + "-wal", db + "-shm", db + "-journal"] {
                paths.insert(candidate)
                paths.insert(Self.normalize(candidate))
                if let real = realpath(candidate, nil) {
                    paths.insert(String(cString: real))
                    free(real)
                }
            }
        }
        self.paths = paths
        ids = Self.fileIDs(paths)
    }

    private init(paths: Set<String>, ids: Set<FileID>) {
        self.paths = paths
        self.ids = ids
    }

    /// A fresh copy with the device/inode set re-read (databases come and go).
    func refreshed() -> ProtectedFiles { ProtectedFiles(paths: paths, ids: Self.fileIDs(paths)) }

    private static func fileIDs(_ paths: Set<String>) -> Set<FileID> {
        var ids: Set<FileID> = []
        for p in paths {
            var st = stat()
            if stat(p, &st) == 0 { ids.insert(st.fileID) }
        }
        return ids
    }

    func contains(path: String, stat st: stat?) -> Bool {
        if paths.contains(path) || paths.contains(Self.normalize(path)) { return true }
        if let st, ids.contains(st.fileID) { return true }
        return false
    }

    /// True when `dir` holds (or is an ancestor of) a protected file.
    func anyInside(_ dir: String) -> Bool {
        let prefix = Self.normalize(dir).hasSuffix("/") ? Self.normalize(dir) : Self.normalize(dir) + "/"
        return paths.contains { $0.hasPrefix(prefix) }
    }

    /// `/a//b/./c` → `/a/b/c` (no symbolic link resolution).
    static func normalize(_ path: String) -> String {
        var parts: [Substring] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            if part == "." { continue }
            if part == "..", !parts.isEmpty { parts.removeLast(); continue }
            parts.append(part)
        }
        return "/" + parts.joined(separator: "/")
    }
}

/// Is any process holding a file open? Scans `/proc/*/fd`. Where another
/// user's processes cannot be inspected (guardian not running as root), the
/// answer is "unknown" and callers fall back to the file's quiet time.
enum OpenFileCheck {
    enum Answer: Equatable { case open, closed, unknown }

    /// Every file open in any process, on `device` (nil: all devices), and
    /// whether every process could be inspected. One scan of /proc answers
    /// for many archives.
    static func snapshot(device: UInt64? = nil) -> (ids: Set<FileID>, complete: Bool) {
        var ids: Set<FileID> = []
        let complete = scan { st in
            if device.map({ $0 == UInt64(st.st_dev) }) ?? true { ids.insert(st.fileID) }
            return true
        }
        return (ids, complete ?? false)
    }

    /// Whether one file is open somewhere (stops at the first holder).
    static func check(_ id: FileID) -> Answer {
        var found = false
        let complete = scan { st in
            found = st.fileID == id
            return !found
        }
        if found { return .open }
        return complete == true ? .closed : .unknown
    }

    /// Calls `visit` with the stat of every regular file open in any process
    /// (following `/proc/PID/fd/N` to the file itself) until it returns false.
    /// Returns whether every process could be inspected (nil: /proc unreadable).
    private static func scan(_ visit: (stat) -> Bool) -> Bool? {
        guard let proc = opendir("/proc") else { return nil }
        defer { closedir(proc) }
        var complete = true
        while let entry = readdir(proc) {
            let pidName = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: Int(NAME_MAX) + 1) { String(cString: $0) }
            }
            guard let first = pidName.utf8.first, first >= 48, first <= 57 else { continue }
            guard let fds = opendir("/proc/\(pidName)/fd") else {
                if errno == EACCES || errno == EPERM { complete = false }
                continue
            }
            defer { closedir(fds) }
            let dirFD = dirfd(fds)
            while let fdEntry = readdir(fds) {
                let name = withUnsafePointer(to: fdEntry.pointee.d_name) {
                    $0.withMemoryRebound(to: CChar.self, capacity: Int(NAME_MAX) + 1) { String(cString: $0) }
                }
                if name == "." || name == ".." { continue }
                var st = stat()
                if fstatat(dirFD, name, &st, 0) == 0, st.isRegular, !visit(st) { return complete }
            }
        }
        return complete
    }
}
