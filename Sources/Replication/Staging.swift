import Foundation
import Platform

/// The staging directory (`<state-dir>/staging/<db>`): full images,
/// snapshots and compactions on their way to the replicas, each as large as
/// the database. Nothing in it outlives its use: a replication session
/// empties it when it starts (files left by a crash or a failed upload), a
/// compaction removes its own scratch directory when it ends.
enum Staging {
    /// Empties `dir` (creating it when missing).
    static func reset(_ dir: String) throws {
        try remove(dir)
        try DurableFile.makeDirectories(dir)
    }

    /// Removes `dir` and everything in it; a missing directory is fine.
    /// Symlinks inside are removed, never followed.
    static func remove(_ dir: String) throws {
        var st = stat()
        guard lstat(dir, &st) == 0 else {
            if errno == ENOENT { return }
            throw SystemError("lstat", path: dir)
        }
        try FileManager.default.removeItem(atPath: dir)
    }
}
