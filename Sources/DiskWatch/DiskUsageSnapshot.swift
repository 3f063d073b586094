import Foundation
import Platform

/// Filesystem usage and the ballast as they are right now, for one-shot
/// callers (`guardian doctor`). Uses the daemon's own sampling (`statvfs`,
/// mounts from /proc/self/mountinfo); there is no history, so no forecast,
/// and no hysteresis: the level is the one the usage has reached. Blocking.
public enum DiskUsageSnapshot {
    public struct Failure: Sendable, Equatable {
        public var path: String
        public var error: String
    }

    /// One `MountStatus` per filesystem holding one of `paths` (a path that
    /// does not exist yet counts on its nearest existing ancestor's filesystem).
    public static func take(paths: [String], config: DiskConfig) -> (mounts: [MountStatus], failures: [Failure]) {
        let (samples, failed) = UsageSampler.sample(paths: paths, mounts: MountTable())
        let policy = LevelPolicy(config)
        let mounts = samples.map { s in
            MountStatus(
                mountPoint: s.mountPoint, paths: s.paths, totalBytes: s.totalBytes, usedBytes: s.usedBytes,
                availableBytes: s.availableBytes, usedPercent: (s.bytesPercent * 10).rounded() / 10,
                inodesPercent: s.inodesPercent.map { ($0 * 10).rounded() / 10 }, forecastSecondsToFull: nil,
                level: policy.next(from: .normal, percent: s.percent), ballast: nil, lastRotation: nil)
        }
        return (mounts, failed.map { Failure(path: $0.path, error: $0.error.description) })
    }

    /// The ballast file as the disk guardian would judge it.
    public enum BallastState: Sendable, Equatable {
        /// guardian's ballast file, fully allocated.
        case present(allocatedBytes: Int64)
        /// Not there (not created yet, or released at the emergency level).
        case absent
        /// guardian's file, but smaller than configured (creation was interrupted or refused).
        case partial(allocatedBytes: Int64)
        /// Something else is at the path: guardian will not touch it.
        case foreign(String)
    }

    public static func ballast(_ config: BallastConfig) -> BallastState {
        var st = stat()
        guard lstat(config.path, &st) == 0 else {
            return errno == ENOENT ? .absent : .foreign(SystemError("stat", path: config.path).description)
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else { return .foreign("\(config.path) is not a regular file") }
        let fd = open(config.path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return .foreign(SystemError("open", path: config.path).description) }
        defer { close(fd) }
        guard Ballast.isBallast(fd: fd) else { return .foreign("\(config.path) is not a guardian ballast file") }
        let allocated = Int64(st.st_blocks) * 512
        return allocated >= config.size ? .present(allocatedBytes: allocated) : .partial(allocatedBytes: allocated)
    }
}
