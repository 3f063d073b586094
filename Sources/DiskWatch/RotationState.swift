import Foundation
import Platform

/// When each log was last rotated, kept in `<state-dir>/disk-rotation.json`
/// so that daily/weekly/... schedules survive restarts (logrotate keeps the
/// same in its status file). Written durably (temp, fsync, rename).
///
/// ```json
/// {"logs":{"/var/log/app/app.log":{"last_rotated":"2026-11-25T08:00:00.000Z","last_rotated_epoch":1795593600}},"version":1}
/// ```
struct RotationState: Codable, Equatable, Sendable {
    struct Entry: Codable, Equatable, Sendable {
        /// RFC 3339, for people reading the file.
        var lastRotated: String
        /// Seconds since the epoch, what guardian reads back.
        var lastRotatedEpoch: Double

        init(_ date: Date) {
            lastRotated = Timestamps.iso8601(date)
            lastRotatedEpoch = date.timeIntervalSince1970
        }

        var date: Date { Date(timeIntervalSince1970: lastRotatedEpoch) }
    }

    var version = 1
    var logs: [String: Entry] = [:]

    static let fileName = "disk-rotation.json"
    static let lockName = "disk-rotation.lock"

    /// Reads the state; a missing file is an empty state, an unreadable or
    /// corrupt one is an error (the caller warns and starts empty, and the
    /// bad file is kept next to it as `.bad` for inspection).
    static func load(from path: String) throws -> RotationState {
        var st = stat()
        if lstat(path, &st) != 0, errno == ENOENT { return RotationState() }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SystemError("read", path: path, code: EIO)
        }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        do {
            return try decoder.decode(RotationState.self, from: data)
        } catch {
            _ = rename(path, path + ".bad")
            throw SystemError("parse (not a rotation state file; kept as \(path).bad)", path: path, code: EINVAL)
        }
    }

    func save(to path: String) throws {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = try encoder.encode(self)
        try DurableFile.makeDirectories((path as NSString).deletingLastPathComponent)
        try DurableFile.write(Array(data), to: path, mode: 0o640)
    }
}

/// An exclusive `flock` on `<state-dir>/disk-rotation.lock`, so that
/// `guardian rotate` and the daemon never rotate the same logs at once.
final class RotationLock {
    private let fd: Int32

    /// Takes the lock, waiting up to `wait`; throws EWOULDBLOCK when another
    /// guardian holds it all that time.
    init(stateDir: String, wait: Duration = .zero) throws {
        try DurableFile.makeDirectories(stateDir)
        let path = stateDir.hasSuffix("/") ? stateDir + RotationState.lockName : "\(stateDir)/\(RotationState.lockName)"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o640)
        guard fd >= 0 else { throw SystemError("open", path: path) }
        let deadline = ContinuousClock.now + wait
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let code = errno
            if code == EINTR { continue }
            if code != EWOULDBLOCK || ContinuousClock.now >= deadline {
                close(fd)
                throw SystemError("lock (another guardian is rotating logs)", path: path, code: code)
            }
            usleep(50_000)
        }
        self.fd = fd
    }

    deinit {
        flock(fd, LOCK_UN)
        close(fd)
    }
}
