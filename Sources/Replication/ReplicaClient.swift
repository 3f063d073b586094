import Foundation
import Platform

/// One LTX file on a replica, as a listing sees it.
public struct LTXFileInfo: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// 0 = per-transaction files, 1...8 = compactions, 9 = snapshots.
    public var level: Int
    public var minTXID: UInt64
    public var maxTXID: UInt64
    public var size: Int64
    /// When the newest transaction in the file was observed committing (the
    /// LTX header Timestamp; file mtime / `litestream-timestamp` metadata).
    public var createdAt: Date

    public init(level: Int, minTXID: UInt64, maxTXID: UInt64, size: Int64, createdAt: Date) {
        self.level = level
        self.minTXID = minTXID
        self.maxTXID = maxTXID
        self.size = size
        self.createdAt = createdAt
    }

    /// `0000000000000001-0000000000000005.ltx`
    public var name: String { LTXNaming.fileName(minTXID: minTXID, maxTXID: maxTXID) }

    public static func < (a: LTXFileInfo, b: LTXFileInfo) -> Bool {
        (a.level, a.minTXID, a.maxTXID) < (b.level, b.minTXID, b.maxTXID)
    }

    public var description: String { "L\(level)/\(name)" }
}

public enum LTXNaming {
    public static let snapshotLevel = 9
    /// Levels in the order a restore considers them.
    public static let allLevels = Array(0...9)

    public static func fileName(minTXID: UInt64, maxTXID: UInt64) -> String {
        // Made once per commit: digits written into one buffer (string
        // interpolation of padded radix strings showed in the per-commit profile).
        String(unsafeUninitializedCapacity: 37) { out in
            put(minTXID, into: out, at: 0)
            out[16] = UInt8(ascii: "-")
            put(maxTXID, into: out, at: 17)
            for (i, c) in ".ltx".utf8.enumerated() { out[33 + i] = c }
            return 37
        }
    }

    /// 16 lower-case hex digits.
    public static func hex(_ txid: UInt64) -> String {
        String(unsafeUninitializedCapacity: 16) { out in
            put(txid, into: out, at: 0)
            return 16
        }
    }

    private static func put(_ value: UInt64, into out: UnsafeMutableBufferPointer<UInt8>, at start: Int) {
        let digits: StaticString = "0123456789abcdef"
        var v = value
        for i in stride(from: start + 15, through: start, by: -1) {
            out[i] = digits.utf8Start[Int(v & 0xf)]
            v >>= 4
        }
    }

    /// Parses `<16 hex>-<16 hex>.ltx` exactly as Litestream does; anything
    /// else (upper case, other widths, `.tmp`) is not an LTX file.
    public static func parse(fileName: String) -> (min: UInt64, max: UInt64)? {
        let b = Array(fileName.utf8)
        guard b.count == 37, b[16] == UInt8(ascii: "-"), fileName.hasSuffix(".ltx") else { return nil }
        func isHex(_ c: UInt8) -> Bool { (c >= 48 && c <= 57) || (c >= 97 && c <= 102) }
        guard b[0..<16].allSatisfy(isHex), b[17..<33].allSatisfy(isHex) else { return nil }
        guard let lo = UInt64(String(decoding: b[0..<16], as: UTF8.self), radix: 16),
              let hi = UInt64(String(decoding: b[17..<33], as: UTF8.self), radix: 16), lo >= 1, hi >= lo
        else { return nil }
        return (lo, hi)
    }

    /// The highest TXID a file may end at: the next transaction needs a
    /// number too. A file ending at `ffffffffffffffff` is refused, never
    /// used: numbering past it would overflow.
    public static let maxTXID: UInt64 = UInt64.max - 1

    /// A replica listing's view of `fileName` (`display`: the file as errors
    /// name it): nil when the name
    /// is not an LTX file (skipped), its TXIDs otherwise. Throws a permanent
    /// `ReplicaError` naming the file when its MaxTXID is out of range, so
    /// the replica is reported failing (status, log, restore) instead of
    /// guardian numbering past the largest TXID.
    public static func listed(fileName: String, display: String) throws -> (min: UInt64, max: UInt64)? {
        guard let (lo, hi) = parse(fileName: fileName) else { return nil }
        guard hi <= maxTXID else {
            throw ReplicaError(
                .permanent,
                "\(display): MaxTXID \(hex(hi)) is out of range (no transaction can follow it); "
                    + "neither guardian nor Litestream writes such a file: move it out of the replica")
        }
        return (lo, hi)
    }

    /// Parses a 16-hex-digit TXID (`--txid`).
    public static func parse(txid: String) -> UInt64? {
        guard txid.count == 16, txid.allSatisfy(\.isHexDigit) else { return nil }
        return UInt64(txid.lowercased(), radix: 16)
    }
}

/// The seam between guardian and a place that stores replicas. One file per
/// backend (`FileReplicaClient`, `S3ReplicaClient`, `SFTPReplicaClient`);
/// every backend passes the same conformance suite. The layout is Litestream
/// 0.5's, so either tool can restore what the other wrote.
///
/// Implementations do their blocking I/O off the cooperative pool.
public protocol ReplicaClient: Sendable {
    var target: ReplicaTarget { get }

    /// The LTX files at `level`, ascending by TXID. With `exactTimestamps`,
    /// `createdAt` is the file's LTX timestamp (for S3 this costs a HEAD per
    /// object; without it LastModified is used).
    func listFiles(level: Int, exactTimestamps: Bool) async throws -> [LTXFileInfo]

    /// Writes one LTX file so that it appears whole or not at all, and sets
    /// its timestamp (mtime or metadata) to `createdAt`. Returns what was stored.
    @discardableResult
    func writeFile(level: Int, minTXID: UInt64, maxTXID: UInt64, contents: LTXPayload, createdAt: Date) async throws -> LTXFileInfo

    /// Copies one LTX file into a local file (created or truncated).
    func downloadFile(_ file: LTXFileInfo, to localPath: String) async throws

    /// Reads one LTX file fully into memory (small files: L0, compactions).
    func readFile(_ file: LTXFileInfo) async throws -> [UInt8]

    /// Reads the first `count` bytes of one LTX file (its header).
    func readPrefix(_ file: LTXFileInfo, count: Int) async throws -> [UInt8]

    /// Deletes the given files; files already gone are not an error.
    func deleteFiles(_ files: [LTXFileInfo]) async throws

    /// Deletes every LTX file of this replica.
    func deleteAll() async throws

    /// guardian's history marker (`ReplicaHistory.markerName` in the
    /// replica's root), or nil when there is none. Litestream ignores it.
    func readMarker() async throws -> [UInt8]?

    /// Writes the history marker so that it appears whole or not at all.
    func writeMarker(_ bytes: [UInt8]) async throws
}

extension ReplicaClient {
    /// Backends without ranged reads fall back to reading the whole file.
    public func readPrefix(_ file: LTXFileInfo, count: Int) async throws -> [UInt8] {
        Array(try await readFile(file).prefix(count))
    }
}

/// The bytes of an LTX file to store: in memory, or in a local file (large snapshots).
public enum LTXPayload: Sendable {
    case bytes([UInt8])
    case file(path: String)

    public func size() throws -> Int64 {
        switch self {
        case .bytes(let b): return Int64(b.count)
        case .file(let path):
            var st = stat()
            guard stat(path, &st) == 0 else { throw SystemError("stat", path: path) }
            return Int64(st.st_size)
        }
    }
}

/// A replica that failed in a way worth telling an operator about.
public struct ReplicaError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable { case notFound, transient, permanent }

    /// Why, when the client knows (`guardian doctor` turns it into a fix).
    public enum Cause: String, Sendable {
        /// DNS, connection refused, network unreachable, a cut handshake.
        case unreachable
        /// The peer accepted the connection but did not answer in time.
        case timeout
        /// The server's TLS certificate could not be verified.
        case tls
        /// The SSH host key is not in known-hosts, or does not match it.
        case hostKey
        /// Wrong credentials: unknown access key, bad signature, SSH login refused.
        case authentication
        /// Authenticated, but this operation is not allowed (read-only, policy).
        case accessDenied
        /// The bucket does not exist.
        case missingBucket
        /// Another region or endpoint serves the bucket.
        case wrongRegion
        /// The local clock is too far off for request signatures.
        case clockSkew
    }

    public let kind: Kind
    public let description: String
    public let cause: Cause?

    public init(_ kind: Kind, _ description: String, cause: Cause? = nil) {
        self.kind = kind
        self.description = description
        self.cause = cause
    }
}

public enum ReplicaClients {
    /// Builds the client for a replica target.
    public static func make(_ target: ReplicaTarget) throws -> any ReplicaClient {
        switch target {
        case .file(let path): return FileReplicaClient(root: path)
        case .s3, .sftp:
            return try makeRemote(target)
        }
    }
}
