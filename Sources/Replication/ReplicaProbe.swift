import Foundation
import Platform

/// A small object `guardian doctor` writes, reads back and deletes to prove
/// that a replica accepts writes with the configured credentials. Probes live
/// beside the replica's LTX tree, never inside it:
///
///     file, sftp:  <root>/.guardian-doctor/probe-<32 hex>.txt
///     s3:          <path>/.guardian-doctor/probe-<32 hex>.txt
///
/// `LTXNaming.parse` never accepts such a name, and the directory is outside
/// `ltx/` (file, SFTP) and outside the `<path>/<level %04x>/` prefixes (S3),
/// so guardian's listings, compaction, retention and restore, and Litestream's,
/// never see a probe. A probe is deleted right after it was read back; probes
/// left by an interrupted run are swept by the next one.
public enum ReplicaProbe {
    public static let directory = ".guardian-doctor"

    /// A fresh probe name: `probe-<32 hex>.txt`.
    public static func makeName() -> String {
        var generator = SystemRandomNumberGenerator()
        let hex = (0..<2).map { _ -> String in
            let s = String(generator.next() as UInt64, radix: 16)
            return String(repeating: "0", count: 16 - s.count) + s
        }.joined()
        return "probe-\(hex).txt"
    }

    /// A probe name, or what an interrupted write of one leaves (`.tmp`).
    public static func isProbeName(_ name: String) -> Bool {
        let base = name.hasSuffix(".tmp") ? String(name.dropLast(4)) : name
        guard base.hasPrefix("probe-"), base.hasSuffix(".txt") else { return false }
        let hex = base.dropFirst(6).dropLast(4)
        return hex.count == 32 && hex.allSatisfy { $0.isHexDigit && !$0.isUppercase }
    }

    /// The bytes a probe holds: says what it is, for anyone who finds one.
    public static func contents(name: String, host: String, at date: Date = Date()) -> [UInt8] {
        Array("guardian doctor write probe \(name) from \(host) at \(RFC3339.format(date)); safe to delete\n".utf8)
    }
}

/// A probe object found in a replica's probe directory.
public struct ProbeObject: Sendable, Equatable {
    public var name: String
    public var modified: Date
}

/// What `guardian doctor` needs beyond `ReplicaClient`: the replica's root,
/// and small objects outside the LTX layout (see `ReplicaProbe`).
public protocol ReplicaProbing: ReplicaClient {
    /// Where probes go, for messages (`s3://bucket/path/.guardian-doctor/`).
    var probeLocation: String { get }
    /// The host and port requests go to (nil for a local directory), so
    /// reachability can be told apart from what happens after connecting.
    var networkEndpoint: (host: String, port: Int, tls: Bool)? { get }
    /// Whether the replica's root directory exists; nil where there is no
    /// such thing (an S3 prefix exists once an object has it).
    func rootExists() async throws -> Bool?
    /// One cheap authenticated read of the replica's root (S3: a one-key
    /// listing of the path, which needs the credentials, the bucket and
    /// s3:ListBucket), so that credentials are judged before anything is written.
    func checkAccess() async throws
    func writeProbe(name: String, bytes: [UInt8]) async throws
    func readProbe(name: String) async throws -> [UInt8]
    /// Deletes a probe (gone already is fine) and the probe directory once empty.
    func deleteProbe(name: String) async throws
    /// The probes (and interrupted probe writes) in the probe directory.
    func listProbes() async throws -> [ProbeObject]
}

// MARK: - File

extension FileReplicaClient: ReplicaProbing {
    var probeDirectory: String { "\(root)/\(ReplicaProbe.directory)" }
    public var probeLocation: String { "file://\(probeDirectory)/" }
    public var networkEndpoint: (host: String, port: Int, tls: Bool)? { nil }

    public func rootExists() async throws -> Bool? {
        let root = root
        return try await BlockingPool.shared.run {
            var st = stat()
            if stat(root, &st) != 0 {
                if errno == ENOENT { return false }
                throw Self.probeError("stat", root)
            }
            guard (st.st_mode & S_IFMT) == S_IFDIR else {
                throw ReplicaError(.permanent, "file replica \(root) is not a directory")
            }
            return true
        }
    }

    public func checkAccess() async throws {
        let root = root
        try await BlockingPool.shared.run {
            guard let d = opendir(root) else { throw Self.probeError("opendir", root) }
            closedir(d)
        }
    }

    public func writeProbe(name: String, bytes: [UInt8]) async throws {
        let dir = probeDirectory
        try await BlockingPool.shared.run {
            if mkdir(dir, 0o755) != 0, errno != EEXIST { throw Self.probeError("mkdir", dir) }
            do {
                try DurableFile.write(bytes, to: "\(dir)/\(name)", mode: 0o600)
            } catch let e as SystemError {
                unlink("\(dir)/\(name).tmp")
                throw Self.probeError(e.operation, e.path, code: e.code)
            }
        }
    }

    public func readProbe(name: String) async throws -> [UInt8] {
        let path = "\(probeDirectory)/\(name)"
        return try await BlockingPool.shared.run {
            guard let data = FileManager.default.contents(atPath: path) else { throw Self.probeError("read", path) }
            return [UInt8](data)
        }
    }

    public func deleteProbe(name: String) async throws {
        let dir = probeDirectory
        try await BlockingPool.shared.run {
            for path in ["\(dir)/\(name)", "\(dir)/\(name).tmp"] where unlink(path) != 0 && errno != ENOENT {
                throw Self.probeError("unlink", path)
            }
            // Only once empty: an old probe or someone's file stays, and so does the directory.
            if rmdir(dir) != 0, errno != ENOENT, errno != ENOTEMPTY, errno != EEXIST {
                throw Self.probeError("rmdir", dir)
            }
        }
    }

    public func listProbes() async throws -> [ProbeObject] {
        let dir = probeDirectory
        return await BlockingPool.shared.run {
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return [] }
            return names.filter(ReplicaProbe.isProbeName).compactMap { name in
                var st = stat()
                guard stat("\(dir)/\(name)", &st) == 0 else { return nil }
                return ProbeObject(name: name, modified: Date(timeIntervalSince1970: Double(st.st_mtim.tv_sec)))
            }.sorted { $0.name < $1.name }
        }
    }

    /// Permission problems are `.accessDenied` (a read-only replica).
    static func probeError(_ operation: String, _ path: String, code: Int32 = errno) -> ReplicaError {
        let denied = code == EACCES || code == EPERM || code == EROFS
        return ReplicaError(
            code == ENOENT ? .notFound : .permanent, SystemError(operation, path: path, code: code).description,
            cause: denied ? .accessDenied : nil)
    }
}

// MARK: - S3

extension S3ReplicaClient: ReplicaProbing {
    var probePrefix: String { "\(location.path)/\(ReplicaProbe.directory)/" }
    public var probeLocation: String { "s3://\(location.bucket)/\(probePrefix)" }

    public var networkEndpoint: (host: String, port: Int, tls: Bool)? {
        guard let e = try? Endpoint(location) else { return nil }
        let tls = e.scheme == "https"
        var host = e.host
        var port = tls ? 443 : 80
        // host[:port], [v6][:port]
        if let colon = host.lastIndex(of: ":"), !host[host.index(after: colon)...].contains("]"),
           let p = Int(host[host.index(after: colon)...]) {
            port = p
            host = String(host[..<colon])
        }
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (e.pathStyle ? host : "\(location.bucket).\(host)", port, tls)
    }

    public func rootExists() async throws -> Bool? { nil }

    public func checkAccess() async throws {
        // (The path without a trailing slash: a query value with an encoded
        // slash is refused by some S3-compatible servers' signature checks.)
        _ = try await send(
            "GET", key: nil, query: [("list-type", "2"), ("max-keys", "1"), ("prefix", location.path)], operation: "LIST \(location.path)")
    }

    public func writeProbe(name: String, bytes: [UInt8]) async throws {
        try await putObject(
            key: probePrefix + name, body: .bytes(bytes), sha256: Crypto.sha256(bytes), md5: Crypto.md5(bytes), extraHeaders: [])
    }

    public func readProbe(name: String) async throws -> [UInt8] {
        try await send("GET", key: probePrefix + name, operation: "GET", response: .memory(limit: 1 << 20)).body
    }

    public func deleteProbe(name: String) async throws {
        // A single DELETE: its 403 says "not allowed to delete" plainly (DeleteObjects answers 200 with per-key errors).
        _ = try await send("DELETE", key: probePrefix + name, operation: "DELETE", accept: [404])
    }

    public func listProbes() async throws -> [ProbeObject] {
        let prefix = probePrefix
        return try await listObjects(prefix: prefix).compactMap { object in
            let name = String(object.key.dropFirst(prefix.count))
            return ReplicaProbe.isProbeName(name) ? ProbeObject(name: name, modified: object.lastModified) : nil
        }.sorted { $0.name < $1.name }
    }
}

// MARK: - SFTP

extension SFTPReplicaClient: ReplicaProbing {
    var probeDirectory: String { "\(root)/\(ReplicaProbe.directory)" }
    public var probeLocation: String { "\(ReplicaTarget.sftp(location).destination)/\(ReplicaProbe.directory)/" }
    public var networkEndpoint: (host: String, port: Int, tls: Bool)? { (location.host, location.port, false) }

    public func rootExists() async throws -> Bool? {
        let root = root
        return try await connection.directoryExists(root)
    }

    public func checkAccess() async throws {
        let root = root
        _ = try await connection.list(root)
    }

    public func writeProbe(name: String, bytes: [UInt8]) async throws {
        let stored = try await connection.write(dir: probeDirectory, name: name, contents: .bytes(bytes), mtime: Date())
        guard stored == Int64(bytes.count) else {
            throw ReplicaError(.transient, "sftp replica \(target.destination): \(probeDirectory)/\(name): wrote \(stored) of \(bytes.count) bytes")
        }
    }

    public func readProbe(name: String) async throws -> [UInt8] {
        try await connection.read("\(probeDirectory)/\(name)", limit: 1 << 20)
    }

    public func deleteProbe(name: String) async throws {
        try await connection.removeProbe(dir: probeDirectory, name: name)
    }

    public func listProbes() async throws -> [ProbeObject] {
        try await connection.list(probeDirectory).filter { ReplicaProbe.isProbeName($0.name) }
            .map { ProbeObject(name: $0.name, modified: Date(timeIntervalSince1970: Double($0.mtime))) }
            .sorted { $0.name < $1.name }
    }
}

extension SFTPConnection {
    /// Whether `path` is a directory on the server (connecting first, so a
    /// refused host key or login is thrown here).
    func directoryExists(_ path: String) throws -> Bool {
        defer { resetIfBroken() }
        _ = try connected()
        requests.add(1, ordering: .relaxed)
        return isDirectory(path)
    }

    /// Removes a probe, a leftover of its temporary file, and the emptied directory.
    func removeProbe(dir: String, name: String) throws {
        defer { resetIfBroken() }
        try remove("\(dir)/\(name)")
        try remove("\(dir)/\(name).tmp")
        try removeDirectoryIfEmpty(dir)
    }
}
