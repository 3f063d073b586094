import Foundation
import Platform

/// Whether a restored copy of a database fits beside it. Remediation writes
/// the copy into the database's own directory (so that putting it in place
/// is a rename) while the quarantined files stay on the same filesystem; on
/// a full disk the restore would fail after the app was already stopped.
public struct RestoreRoom: Sendable, Equatable {
    /// About what the restored copy takes: the database's size as its header
    /// or its file says, whichever is larger.
    public var need: Int64
    public var available: Int64
    /// Kept free beyond the copy (the app writes again right after).
    public var reserve: Int64
    public var directory: String

    /// Why the copy does not fit, or nil.
    public var shortfall: String? {
        guard need + reserve > available else { return nil }
        return "the restored copy needs about \(Units.formatBytes(need)) in \(directory) and \(Units.formatBytes(reserve)) kept free,"
            + " but \(Units.formatBytes(available)) is available: free space on that filesystem first"
    }

    /// Looks at the database's files and filesystem (blocking).
    public static func check(database: String) -> RestoreRoom {
        let dir = (database as NSString).deletingLastPathComponent
        let probe = FileProbe.read(path: database)
        let headerBytes = probe.header.map { Int64($0.pageCount) * Int64($0.pageSize) } ?? 0
        var fs = statvfs()
        let ok = statvfs(dir, &fs) == 0
        let available = ok ? Int64(fs.f_bavail) * Int64(fs.f_frsize) : 0
        let total = ok ? Int64(fs.f_blocks) * Int64(fs.f_frsize) : 0
        return RestoreRoom(need: max(probe.dbSize, headerBytes), available: available, reserve: DrillRunner.reserve(totalBytes: total), directory: dir)
    }
}
