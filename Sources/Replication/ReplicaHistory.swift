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
        /// The lease (absent in markers of older versions: no lease). A
        /// random id of the writing process, its host and pid, when it last
        /// renewed the marker, how long after that its lease runs, and
        /// whether it let go (a clean stop).
        var writerID: String?
        var host: String?
        var pid: Int32?
        var renewed: String?
        var leaseSeconds: Double?
        var released: Bool?

        enum CodingKeys: String, CodingKey {
            case history, writer, written, host, pid, renewed, released
            case writerID = "writer_id"
            case leaseSeconds = "lease_seconds"
        }
    }

    /// 128 random bits in hex.
    static func newID() -> String {
        var rng = SystemRandomNumberGenerator()
        return (0..<4).map { _ in
            let s = String(UInt32.random(in: .min ... .max, using: &rng), radix: 16)
            return String(repeating: "0", count: 8 - s.count) + s
        }.joined()
    }

    /// This process's writer id: a second process (here or on another host)
    /// never has the same one, a new session of this process keeps it.
    static let writerID = newID()

    /// How often a writer renews (rewrites) its marker, and how often a
    /// remote replica's marker is read back. Test runs shorten it with
    /// GUARDIAN_TEST_LEASE_INTERVAL (seconds); not a setting.
    static let leaseInterval: Duration = {
        if let v = ProcessInfo.processInfo.environment["GUARDIAN_TEST_LEASE_INTERVAL"], let s = Double(v), s > 0 {
            return .milliseconds(Int64(s * 1000))
        }
        return .seconds(30)
    }()
    /// A lease runs this long after its last renewal (three missed renewals).
    static var leaseExpiry: Duration { leaseInterval * 3 }
    /// Added before taking over an expired lease, for clocks that disagree.
    static var skewMargin: Duration { leaseInterval * 2 }
    /// The longest lease honoured (guardian writes `leaseExpiry`, 90 s).
    static let maxLease: Duration = .seconds(600)

    static func hostName() -> String {
        var u = utsname()
        guard uname(&u) == 0 else { return "unknown-host" }
        return withUnsafeBytes(of: &u.nodename) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    static func encode(id: String, released: Bool = false, now: Date = Date()) -> [UInt8] {
        let host = hostName()
        let pid = getpid()
        let time = Timestamps.iso8601(now)
        let marker = Marker(
            history: id, writer: "\(host) pid \(pid)", written: time, writerID: writerID, host: host, pid: pid, renewed: time,
            leaseSeconds: Double(leaseExpiry.milliseconds) / 1000,
            released: released ? true : nil)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Array((try? encoder.encode(marker)) ?? Data("{\"history\":\"\(id)\"}".utf8)) + [0x0A]
    }

    /// `bytes` (a marker `encode` wrote) with its `written` and `renewed`
    /// stamps set to `now`: what `encode` would write now for the same
    /// history, without a JSON encoder (a thousand databases renew about 32
    /// times a second). Nil when the stamps are not where `encode` puts them.
    static func restamp(_ bytes: [UInt8], at now: Date = Date()) -> [UInt8]? {
        let time = Array(Timestamps.iso8601(now).utf8)
        var out = bytes
        for key in ["\"renewed\":\"", "\"written\":\""] {
            let k = Array(key.utf8)
            guard let at = out.indices.first(where: { i in i + k.count + time.count < out.count && out[i..<(i + k.count)].elementsEqual(k) }),
                out[at + k.count + time.count] == UInt8(ascii: "\"")
            else { return nil }
            out.replaceSubrange((at + k.count)..<(at + k.count + time.count), with: time)
        }
        return out
    }

    /// Whether a marker is this process's, of history `id`.
    static func isOurs(_ bytes: [UInt8], history id: String) -> Bool {
        guard let m = try? JSONDecoder().decode(Marker.self, from: Data(bytes)) else { return false }
        return m.history == id && (m.writerID == nil || m.writerID == writerID)
    }

    /// Whether this process holds the lease a marker records (whatever its history).
    static func isOwnLease(_ bytes: [UInt8]) -> Bool {
        (try? JSONDecoder().decode(Marker.self, from: Data(bytes)))?.writerID == writerID
    }

    /// When another process holds a live lease on the replica whose marker
    /// this is: why guardian must not write there (nil: the replica is free —
    /// no lease, this process's own, released, expired, or its writer was
    /// on this host and is gone).
    ///
    /// `unchangedFor` is how long this process has seen exactly these bytes
    /// (by its own clock): a marker nobody rewrote for a whole lease plus the
    /// skew margin is expired whatever its time stamps say, so a writer whose
    /// clock is far ahead (or a marker naming a huge lease) cannot hold the
    /// replica forever. A lease is read as at most `maxLease`.
    static func liveForeignLease(_ bytes: [UInt8], destination: String, now: Date = Date(), unchangedFor: Duration = .zero) -> String? {
        guard let m = try? JSONDecoder().decode(Marker.self, from: Data(bytes)),
            let id = m.writerID, id != writerID, m.released != true,
            let renewedText = m.renewed, let renewed = Timestamps.parse(renewedText), let claimed = m.leaseSeconds
        else { return nil }
        if m.host == hostName(), let pid = m.pid, pid > 0, kill(pid, 0) != 0, errno == ESRCH { return nil }
        let lease = min(max(claimed, 0), maxLease.seconds)
        if unchangedFor.seconds > lease + skewMargin.seconds { return nil }
        let expires = renewed.addingTimeInterval(lease)
        let margin = Double(skewMargin.milliseconds) / 1000
        guard now < expires.addingTimeInterval(margin) else { return nil }
        return "replica \(destination) is being written by \(m.writer) (renewed at \(renewedText)); "
            + "guardian waits until its lease expires at \(Timestamps.iso8601(expires)) (plus \(Int(margin)) s for clock skew)"
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
