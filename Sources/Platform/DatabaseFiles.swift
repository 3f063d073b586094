import Foundation
import Synchronization

/// Read-only descriptors of the application's databases, for the reads
/// guardian makes from outside SQLite (the replicator's page reads for a
/// snapshot, remediation's header checks).
///
/// POSIX record locks belong to a process and an inode, not to a descriptor:
/// closing *any* descriptor of the database file releases every lock this
/// process's SQLite connections hold on it. Guardian's pinned read would be
/// gone; the application's last connection to close could then take the
/// exclusive lock, checkpoint past guardian's snapshot and delete the WAL and
/// the shared memory under it — guardian would then read a database that
/// looks corrupt. SQLite avoids this for its own descriptors; these are not
/// its. So guardian opens each database file once and never closes that
/// descriptor while the file is the database: only when another file was
/// put at the path (a restore swapped a copy in) is the old one closed.
public final class DatabaseFiles: Sendable {
    public static let shared = DatabaseFiles()

    private struct Entry {
        var fd: Int32
        var device: UInt64
        var inode: UInt64
    }

    private let table = Mutex<[String: Entry]>([:])

    public init() {}

    /// A read-only descriptor of the file now at `path`. Never close it.
    public func descriptor(_ path: String) throws -> Int32 {
        var st = stat()
        guard stat(path, &st) == 0 else { throw SystemError("stat", path: path) }
        return try table.withLock { table in
            if let e = table[path], e.device == UInt64(st.st_dev), e.inode == UInt64(st.st_ino) { return e.fd }
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw SystemError("open", path: path) }
            var now = stat()
            _ = fstat(fd, &now)
            if let old = table[path], old.device != UInt64(now.st_dev) || old.inode != UInt64(now.st_ino) {
                // The old file is no longer the database: no connection of ours uses it.
                close(old.fd)
            } else if let old = table[path] {
                // Swapped back between stat and open: keep the first descriptor.
                close(fd)
                return old.fd
            }
            table[path] = Entry(fd: fd, device: UInt64(now.st_dev), inode: UInt64(now.st_ino))
            return fd
        }
    }

    /// The first `count` bytes of the file at `path` (fewer at its end; empty
    /// when it cannot be read). Blocking.
    public func prefix(_ path: String, count: Int) -> [UInt8] {
        guard let fd = try? descriptor(path) else { return [] }
        var buffer = [UInt8](repeating: 0, count: count)
        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, 0) }
        return n > 0 ? Array(buffer[0..<n]) : []
    }
}
