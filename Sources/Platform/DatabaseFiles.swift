import Foundation
import Synchronization

/// Read-only descriptors of the application's databases, for the reads
/// guardian makes from outside SQLite (the replicator's page reads, the
/// header probe of remediation).
///
/// POSIX record locks belong to a process and an inode, not to a descriptor:
/// closing *any* descriptor of the database file releases every lock this
/// process's SQLite connections hold on it. Guardian's pinned read would be
/// gone; the application's last connection to close could then take the
/// exclusive lock, checkpoint past guardian's snapshot and delete the WAL and
/// the shared memory under it — guardian would then read a database that
/// looks corrupt. SQLite avoids this for its own descriptors; these are not
/// its. So guardian opens each database file once and keeps that descriptor
/// while the file is the database at its path: a `DatabaseFile` is shared,
/// and its descriptor is closed only when the file was replaced (a restore
/// swapped a copy in, the path was removed) *and* no holder uses it any more.
public final class DatabaseFiles: Sendable {
    public static let shared = DatabaseFiles()

    private let table = Mutex<[String: DatabaseFile]>([:])

    public init() {}

    /// The file now at `path`, opened read-only; the same object for as long
    /// as that file is at the path. Keep it while reading through it.
    public func file(_ path: String) throws -> DatabaseFile {
        var st = stat()
        guard stat(path, &st) == 0 else {
            let error = SystemError("stat", path: path)
            // Gone: forget it (closed once its last holder lets go).
            _ = table.withLock { $0.removeValue(forKey: path) }
            throw error
        }
        if let known = table.withLock({ $0[path] }), known.device == UInt64(st.st_dev), known.inode == UInt64(st.st_ino) {
            return known
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open", path: path) }
        var now = stat()
        _ = fstat(fd, &now)
        let opened = DatabaseFile(fd: fd, device: UInt64(now.st_dev), inode: UInt64(now.st_ino))
        return table.withLock { table in
            // Another thread may have opened the same file meanwhile: keep one.
            if let known = table[path], known.device == opened.device, known.inode == opened.inode { return known }
            table[path] = opened
            return opened
        }
    }

    /// Drops the entry of `path` once guardian has stopped using it (a
    /// directory entry's database was deleted or renamed and its session has
    /// closed its connections): the descriptor is closed when its last
    /// holder lets go, so a deleted file's space is given back. Only call it
    /// when no SQLite connection of this process is open on that file.
    public func forget(_ path: String) {
        _ = table.withLock { $0.removeValue(forKey: path) }
    }

    /// The first `count` bytes of the file at `path` (fewer at its end; empty
    /// when it cannot be read). Blocking.
    public func prefix(_ path: String, count: Int) -> [UInt8] {
        guard let file = try? file(path) else { return [] }
        return file.read(count: count, at: 0)
    }
}

/// One open database file (see `DatabaseFiles`). Its descriptor is closed
/// when the last reference goes, which happens only after the file stopped
/// being the database at its path.
public final class DatabaseFile: Sendable {
    public let fd: Int32
    let device: UInt64
    let inode: UInt64

    init(fd: Int32, device: UInt64, inode: UInt64) {
        self.fd = fd
        self.device = device
        self.inode = inode
    }

    deinit { close(fd) }

    /// Whether this is still the file at `path` (false when the path is gone
    /// or another file was put there). Blocking.
    public func isCurrent(at path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && UInt64(st.st_dev) == device && UInt64(st.st_ino) == inode
    }

    /// Up to `count` bytes at `offset` (fewer at the end of the file). Blocking.
    public func read(count: Int, at offset: Int64) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: count)
        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
        return n > 0 ? Array(buffer[0..<n]) : []
    }
}
