import Foundation
import Platform

/// Which numbering of TXIDs a replica's files belong to.
///
/// Every replication session numbers its files under a fresh history id and
/// writes it to each replica (`guardian-history.json` in the replica's root,
/// a name Litestream ignores) once the replica holds a complete state of
/// that history (a snapshot or a full image), or before anything else when
/// the replica already holds the resumed history's states. A replica whose
/// marker names another history (or that is ahead of where the session
/// started numbering) never gets delta files on top of what it holds: it
/// gets a snapshot numbered above everything it has (`Replicator.work`), so
/// two histories are never mixed at the same TXIDs. Replicas without a
/// marker (Litestream's, older guardian's) count as the "" history.
///
/// guardian also records locally (state-dir/replicas) which history it
/// wrote to each replica: a replica that once held guardian's marker and
/// now has none (an unmounted disk whose mount point is empty, a wiped
/// bucket) is refused instead of being taken for a fresh one.
public enum ReplicaHistory {
    public static let markerName = "guardian-history.json"

    struct Marker: Codable {
        var history: String
        var writer: String
        var written: String
    }

    /// 128 random bits in hex.
    static func newID() -> String {
        var rng = SystemRandomNumberGenerator()
        return (0..<4).map { _ in
            let s = String(UInt32.random(in: .min ... .max, using: &rng), radix: 16)
            return String(repeating: "0", count: 8 - s.count) + s
        }.joined()
    }

    static func encode(id: String) -> [UInt8] {
        let marker = Marker(
            history: id, writer: "\(ProcessInfo.processInfo.hostName) pid \(getpid())", written: Timestamps.iso8601(Date()))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Array((try? encoder.encode(marker)) ?? Data("{\"history\":\"\(id)\"}".utf8)) + [0x0A]
    }

    /// The history id of a marker; an unreadable marker is a history of its
    /// own (never compatible with guardian's).
    static func id(of bytes: [UInt8]) -> String {
        (try? JSONDecoder().decode(Marker.self, from: Data(bytes)))?.history ?? "unreadable:\(Crypto.sha256Hex(bytes))"
    }

    /// "history <id>, written by <writer> at <time>" for messages.
    static func describe(_ bytes: [UInt8]) -> String {
        guard let m = try? JSONDecoder().decode(Marker.self, from: Data(bytes)) else { return "an unreadable marker" }
        return "history \(m.history), written by \(m.writer) at \(m.written)"
    }

    /// Held (flock) by the process that writes a file replica, for as long as it does.
    public static let lockName = "guardian.lock"

    /// Takes the writer's lock of a file replica; nil when another process holds it. Blocking.
    static func lockFileReplica(root: String) throws -> Int32? {
        try DurableFile.makeDirectories(root)
        let path = "\(root)/\(lockName)"
        // Read-only: flock needs no write access, and a file open for writing
        // would keep the replica's filesystem from being remounted read-only.
        let fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else { throw SystemError("open", path: path) }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let e = errno
            close(fd)
            if e == EWOULDBLOCK { return nil }
            throw SystemError("flock", path: path, code: e)
        }
        return fd
    }

    /// Where guardian notes which history it wrote to one replica of one database.
    static func recordPath(stateDir: String, database: String, replica: ReplicaConfig) -> String {
        "\(stateDir)/replicas/\(Crypto.sha256Hex("\(database)\n\(replica.target.destination)").prefix(32)).history"
    }

    static func readRecord(_ path: String) -> String? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? nil : text
    }

    static func writeRecord(_ path: String, id: String) throws {
        try DurableFile.makeDirectories((path as NSString).deletingLastPathComponent)
        try DurableFile.write(Array((id + "\n").utf8), to: path, mode: 0o600)
    }
}
