import Foundation
import Platform
import Synchronization

/// The ballast as `guardian status` shows it.
public struct BallastStatus: Codable, Sendable, Equatable {
    public var path: String
    public var sizeBytes: Int64
    /// `present`, `released`, `absent` (not created yet), `failed`.
    public var state: String
    public var releasedAt: String?
    public var error: String?

    public init(path: String, sizeBytes: Int64, state: String, releasedAt: String? = nil, error: String? = nil) {
        self.path = path
        self.sizeBytes = sizeBytes
        self.state = state
        self.releasedAt = releasedAt
        self.error = error
    }
}

/// A pre-allocated file on the database's filesystem, deleted at the
/// emergency level to give the database room at once, and created again
/// (fallocate) once usage is back below `warn` with room to spare: only if
/// usage *with* the ballast stays below `warn - hysteresis`, so releasing and
/// recreating it cannot flap. Its methods block (unlink, fallocate, fsync).
final class Ballast: Sendable {
    enum State: String, Sendable { case absent, present, released, failed }

    private struct Inner {
        var state: State = .absent
        var releasedAt: Date?
        var error: String?
        /// The last reported problem, so that a persisting one is reported once.
        var reported: String?
        /// When creating it last failed (monotonic seconds); retried after `retryInterval`.
        var lastFailure: Double = -.infinity
    }

    let config: BallastConfig
    private let protected: ProtectedFiles
    private let inner = Mutex(Inner())
    /// Retry a failed or refused creation at most this often.
    let retryInterval: Double

    init(config: BallastConfig, protected: ProtectedFiles, retryInterval: Duration = .seconds(30)) {
        self.config = config
        self.protected = protected
        self.retryInterval = retryInterval.seconds
    }

    var directory: String { (config.path as NSString).deletingLastPathComponent }
    var name: String { (config.path as NSString).lastPathComponent }

    var state: State { inner.withLock { $0.state } }

    var status: BallastStatus {
        inner.withLock {
            BallastStatus(
                path: config.path, sizeBytes: config.size, state: $0.state.rawValue,
                releasedAt: $0.releasedAt.map(Timestamps.iso8601), error: $0.error)
        }
    }

    /// The device the ballast lives on (of its directory).
    var device: UInt64? {
        var st = stat()
        return stat(directory.isEmpty ? "/" : directory, &st) == 0 ? UInt64(st.st_dev) : nil
    }

    private func problem(_ message: String, _ meta: [String: String] = [:]) -> [DiskEvent] {
        inner.withLock { s -> [DiskEvent] in
            s.state = s.state == .released ? .released : .failed
            s.error = message
            guard s.reported != message else { return [] }
            s.reported = message
            var m = meta
            m["path"] = config.path
            m["error"] = message
            m["size_bytes"] = "\(config.size)"
            return [DiskEvent(.ballastCreateFailed, level: .warning, m)]
        }
    }

    /// A failed attempt: reported, and not retried for `retryInterval`
    /// ("does not fit yet" is no attempt; it is rechecked every time).
    private func failure(_ message: String, now: Double) -> [DiskEvent] {
        inner.withLock { $0.lastFailure = now }
        return problem(message)
    }

    /// The first bytes of every ballast file. Only a file that starts with
    /// them is ever adopted, extended or deleted: a ballast path that points
    /// at someone else's file by mistake is refused, not destroyed.
    static let marker = Array("guardian ballast file: space held in reserve; guardian deletes it when the disk is nearly full. Safe to delete.\n".utf8)

    /// Does the open file start with the marker?
    static func isBallast(fd: Int32) -> Bool {
        var head = [UInt8](repeating: 0, count: marker.count)
        let n = head.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        return n == marker.count && head == marker
    }

    /// Is the entry `name` in `dir` a ballast file guardian made?
    func isOurs(in dir: SafeDirectory) -> Bool {
        guard let (fd, _) = try? dir.openRegular(name, flags: O_RDONLY) else { return false }
        defer { close(fd) }
        return Self.isBallast(fd: fd)
    }

    /// Creates (or completes) the ballast when `sample` — its filesystem —
    /// leaves room for it. `now` is monotonic seconds, for the retry limit.
    func ensure(sample: UsageSample, policy: LevelPolicy, now: Double, force: Bool = false) -> [DiskEvent] {
        let (current, due) = inner.withLock { s -> (State, Bool) in
            (s.state, force || now - s.lastFailure >= retryInterval)
        }
        if current == .present {
            // Still there? Someone may have deleted it.
            if let dir = try? SafeDirectory(directory.isEmpty ? "/" : directory), let st = dir.lstat(name), st.isRegular,
                st.allocatedBytes >= config.size
            {
                return []
            }
            inner.withLock { $0.state = .absent }
        }
        guard due else { return [] }
        if protected.contains(path: config.path, stat: nil) {
            return problem("the ballast path is a database file; refusing to create it")
        }
        let dir: SafeDirectory
        do {
            dir = try SafeDirectory(directory.isEmpty ? "/" : directory)
        } catch {
            return problem("\(error)")
        }
        var existing: Int64 = 0
        if let st = dir.lstat(name) {
            guard st.isRegular else { return problem("\(config.path) exists and is not a regular file (a symbolic link?); refusing to touch it") }
            if protected.contains(path: config.path, stat: st) {
                return problem("the ballast path is a database file; refusing to create it")
            }
            guard isOurs(in: dir) else {
                return problem("\(config.path) exists and is not a guardian ballast file; refusing to touch it (choose another ballast path)")
            }
            existing = st.allocatedBytes
            if existing >= config.size {
                return adopt()
            }
        }
        let needed = config.size - existing
        let denominator = Double(sample.usedBytes + sample.availableBytes)
        let projected = denominator > 0 ? Double(sample.usedBytes + needed) * 100 / denominator : 100
        let limit = policy.warn - policy.hysteresis
        guard needed <= sample.availableBytes, projected < limit else {
            return problem(
                "the ballast (\(Units.formatBytes(config.size))) does not fit: usage would be \(String(format: "%.1f", projected))% with it, the limit is \(String(format: "%.1f", limit))% (warn minus hysteresis); waiting for space",
                ["available_bytes": "\(sample.availableBytes)", "projected_percent": String(format: "%.1f", projected)])
        }
        if let e = dir.writeProblem() { return failure("\(e)", now: now) }
        let created = existing == 0 && dir.lstat(name) == nil
        let fd = openat(dir.fd, name, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return failure("\(SystemError("create", path: config.path))", now: now) }
        func undo(_ message: String) -> [DiskEvent] {
            if created { _ = ftruncate(fd, 0) }
            close(fd)
            if created { try? dir.unlink(name) }
            return failure(message, now: now)
        }
        if created {
            let written = Self.marker.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
            guard written == Self.marker.count else { return undo("\(SystemError("write", path: config.path))") }
        }
        let rc = posix_fallocate(fd, 0, off_t(config.size))
        guard rc == 0 else { return undo("\(SystemError("fallocate", path: config.path, code: rc))") }
        _ = fsync(fd)
        close(fd)
        dir.sync()
        let wasReleased = inner.withLock { s -> Bool in
            let was = s.state == .released
            s.state = .present
            s.error = nil
            s.reported = nil
            return was
        }
        return [DiskEvent(.ballastRecreated, ["path": config.path, "size_bytes": "\(config.size)", "reason": wasReleased ? "space returned" : "initial"])]
    }

    private func adopt() -> [DiskEvent] {
        inner.withLock {
            $0.state = .present
            $0.error = nil
            $0.reported = nil
        }
        return []
    }

    /// Deletes the ballast; returns the event (nil when it was not there).
    func release(reason: String, mount: String) -> DiskEvent? {
        inner.withLock { s -> DiskEvent? in
            guard s.state == .present else { return nil }
            guard let dir = try? SafeDirectory(directory.isEmpty ? "/" : directory), let st = dir.lstat(name) else {
                s.state = .absent
                return nil
            }
            guard st.isRegular, !protected.contains(path: config.path, stat: st), isOurs(in: dir) else {
                s.state = .failed
                s.error = "\(config.path) is no longer guardian's ballast file; not deleted"
                return DiskEvent(.diskPathRefused, level: .error, ["path": config.path, "reason": "no longer guardian's ballast file (a regular file starting with its marker)"])
            }
            do {
                try dir.unlink(name)
            } catch {
                s.error = "\(error)"
                return DiskEvent(.diskPathRefused, level: .error, ["path": config.path, "reason": "\(error)"])
            }
            dir.sync()
            s.state = .released
            s.releasedAt = Date()
            return DiskEvent(.ballastReleased, level: .critical, [
                "path": config.path, "mount": mount, "reason": reason,
                "bytes_freed": "\(st.st_nlink <= 1 ? st.allocatedBytes : 0)",
            ])
        }
    }
}
