import Foundation
import Logging
import Platform
import Replication
import Testing

/// The replica backends every conformance test runs against.
enum Backend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case file, s3, sftp
    var testDescription: String { rawValue }
}

/// Servers shared by the conformance tests of one test process: started on
/// first use, stopped when the last test using them is done. Tests keep to
/// their own bucket or directory, so they can share. Fault tests start
/// private servers instead (they kill them).
actor SharedPeers {
    static let shared = SharedPeers()

    private var moto: Task<MotoServer, any Error>?
    private var motoUsers = 0
    private var ssh: Task<SSHServer, any Error>?
    private var sshUsers = 0

    func acquireMoto() async throws -> MotoServer {
        motoUsers += 1
        let task = moto ?? Task { try await MotoServer.start() }
        moto = task
        do { return try await task.value } catch {
            motoUsers -= 1
            if motoUsers == 0 { moto = nil }
            throw error
        }
    }

    func releaseMoto() async {
        motoUsers -= 1
        guard motoUsers == 0, let task = moto else { return }
        moto = nil
        (try? await task.value)?.stop()
    }

    func acquireSSH() async throws -> SSHServer {
        sshUsers += 1
        let task = ssh ?? Task { try await SSHServer.start() }
        ssh = task
        do { return try await task.value } catch {
            sshUsers -= 1
            if sshUsers == 0 { ssh = nil }
            throw error
        }
    }

    func releaseSSH() async {
        sshUsers -= 1
        guard sshUsers == 0, let task = ssh else { return }
        ssh = nil
        (try? await task.value)?.stop()
    }
}

extension RemoteClientOptions {
    /// Quick retries and short timeouts, so fault tests finish fast.
    static func fastTest(logger: Logger? = nil, stall: Duration = .seconds(5)) -> RemoteClientOptions {
        RemoteClientOptions(
            retry: RetryPolicy(maxAttempts: 4, initialDelay: .milliseconds(50), maxDelay: .milliseconds(400)),
            connectTimeout: .seconds(3), stallTimeout: stall, logger: logger)
    }
}

/// One replica under test plus an independent view of what it stored.
struct ReplicaUnderTest: Sendable {
    struct Stored: Sendable, Equatable {
        var size: Int64
        /// mtime (file, sftp) or the `litestream-timestamp` metadata parsed (s3).
        var timestamp: Date?
        var rawTimestamp: String?
        /// S3 only.
        var etag: String?
    }

    let backend: Backend
    let client: any ReplicaClient
    /// Writes bytes at a path relative to the replica root, bypassing the client.
    let putRaw: @Sendable (_ relative: String, _ bytes: [UInt8]) async throws -> Void
    /// Reads bytes at a path relative to the replica root, bypassing the client (nil: absent).
    let getRaw: @Sendable (_ relative: String) async throws -> [UInt8]?
    /// What is stored at one level's location, read without the client
    /// (the file system for file and sftp, boto3 for s3). Keys are file names.
    let inspect: @Sendable (_ level: Int) async throws -> [String: Stored]
    /// Where level `level` lives relative to the root, per Litestream's layout.
    let levelDirectory: @Sendable (_ level: Int) -> String
}

/// Runs `body` against a fresh, empty replica of `backend`.
func withReplica(
    _ backend: Backend, options: RemoteClientOptions = .fastTest(), partSize: Int64 = 5 << 20,
    _ body: (ReplicaUnderTest) async throws -> Void
) async throws {
    let id = UUID().uuidString.prefix(8).lowercased()
    switch backend {
    case .file:
        let dir = try TestSupport.makeTempDir("file-replica")
        defer { TestSupport.cleanup(dir) }
        let root = dir + "/replica"
        try await body(ReplicaUnderTest(
            backend: backend, client: FileReplicaClient(root: root),
            putRaw: { rel, bytes in try localPut(root + "/" + rel, bytes) },
            getRaw: { rel in FileManager.default.contents(atPath: root + "/" + rel).map { [UInt8]($0) } },
            inspect: { level in localInspect(root + "/ltx/\(level)") },
            levelDirectory: { "ltx/\($0)" }))
    case .sftp:
        let server = try await SharedPeers.shared.acquireSSH()
        let root = server.dataDir + "/r-\(id)"
        do {
            let client = try SFTPReplicaClient(server.location(path: root), options: options)
            try await body(ReplicaUnderTest(
                backend: backend, client: client,
                putRaw: { rel, bytes in try localPut(root + "/" + rel, bytes) },
                getRaw: { rel in FileManager.default.contents(atPath: root + "/" + rel).map { [UInt8]($0) } },
                inspect: { level in localInspect(root + "/ltx/\(level)") },
                levelDirectory: { "ltx/\($0)" }))
        } catch {
            await SharedPeers.shared.releaseSSH()
            throw error
        }
        await SharedPeers.shared.releaseSSH()
    case .s3:
        let server = try await SharedPeers.shared.acquireMoto()
        let bucket = "b-\(id)"
        do {
            try await server.createBucket(bucket)
            let location = server.location(bucket: bucket, path: "dbs/app", partSize: partSize)
            let client = try S3ReplicaClient(location, options: options)
            try await body(ReplicaUnderTest(
                backend: backend, client: client,
                putRaw: { rel, bytes in
                    let r = try await server.raw("PUT", "/\(bucket)/dbs/app/\(rel)", body: bytes)
                    guard r.status == 200 else { throw TestFailure("raw PUT \(rel): \(r.status)") }
                },
                getRaw: { rel in
                    let r = try await server.raw("GET", "/\(bucket)/dbs/app/\(rel)")
                    return r.status == 200 ? r.body : nil
                },
                inspect: { level in
                    let prefix = "dbs/app/" + String(format: "%04x", level) + "/"
                    var out: [String: ReplicaUnderTest.Stored] = [:]
                    for (key, v) in try await server.listKeys(bucket: bucket, prefix: prefix) {
                        out[String(key.dropFirst(prefix.count))] = .init(size: v.size, timestamp: v.timestamp.flatMap(RFC3339.parse), rawTimestamp: v.timestamp, etag: v.etag)
                    }
                    return out
                },
                levelDirectory: { String(format: "%04x", $0) }))
        } catch {
            await SharedPeers.shared.releaseMoto()
            throw error
        }
        await SharedPeers.shared.releaseMoto()
    }
}

private func localPut(_ path: String, _ bytes: [UInt8]) throws {
    try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

private func localInspect(_ dir: String) -> [String: ReplicaUnderTest.Stored] {
    var out: [String: ReplicaUnderTest.Stored] = [:]
    for name in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
        var st = stat()
        guard stat(dir + "/" + name, &st) == 0 else { continue }
        let mtime = Date(timeIntervalSince1970: Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9)
        out[name] = .init(size: Int64(st.st_size), timestamp: mtime, rawTimestamp: nil)
    }
    return out
}

/// Bytes that look like an LTX file to a reader of headers: the `LTX1`
/// magic, the TXID range and the timestamp (ms) at their offsets, then
/// pseudo-random content (unique per call).
func ltxLikePayload(min: UInt64, max: UInt64, timestamp: Date, size: Int = 300) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: Swift.max(size, 100))
    bytes.replaceSubrange(0..<4, with: Array("LTX1".utf8))
    func put(_ value: UInt64, at offset: Int) {
        for i in 0..<8 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (56 - 8 * UInt64(i))) }
    }
    bytes[7] = 2
    put(min, at: 16)
    put(max, at: 24)
    put(UInt64(bitPattern: Int64((timestamp.timeIntervalSince1970 * 1000).rounded())), at: 32)
    // Random content, fast even for hundreds of MiB in a debug build: one
    // random 64 KiB block, tiled, with a random word stamped every 4 KiB.
    var rng = SystemRandomNumberGenerator()
    var block = [UInt64](repeating: 0, count: 8192)
    for i in block.indices { block[i] = rng.next() }
    bytes.withUnsafeMutableBytes { out in
        block.withUnsafeBytes { tile in
            guard let dst = out.baseAddress, let src = tile.baseAddress else { return }
            var offset = 100
            while offset < out.count {
                let n = Swift.min(tile.count, out.count - offset)
                memcpy(dst + offset, src, n)
                offset += n
            }
        }
        var offset = 4096
        while offset + 8 <= out.count {
            out.storeBytes(of: rng.next() as UInt64, toByteOffset: offset, as: UInt64.self)
            offset += 4096
        }
    }
    return bytes
}

/// A log handler that keeps every line (message and metadata) for inspection.
final class CapturingLogHandler: LogHandler, @unchecked Sendable {
    final class Store: @unchecked Sendable {
        private let lock = NSLock()
        private var lines: [String] = []
        func append(_ line: String) { lock.withLock { lines.append(line) } }
        var all: [String] { lock.withLock { lines } }
    }

    let store: Store
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    init(store: Store) { self.store = store }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { $1 } }
        if let error = event.error { all["error"] = .string("\(error)") }
        store.append("\(event.level) \(event.message) \(all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))")
    }

    static func logger() -> (Logger, Store) {
        let store = Store()
        return (Logger(label: "guardian.test.replica", factory: { _ in CapturingLogHandler(store: store) }), store)
    }
}

extension SharedPeers {
    /// Runs `body` with the shared moto server and releases it however `body` ends.
    static func withMoto<T>(
        isolation: isolated (any Actor)? = #isolation, _ body: (MotoServer) async throws -> T
    ) async throws -> T {
        try await using(try await shared.acquireMoto(), release: { await shared.releaseMoto() }, body)
    }

    /// Runs `body` with the shared sshd and releases it however `body` ends.
    static func withSSH<T>(
        isolation: isolated (any Actor)? = #isolation, _ body: (SSHServer) async throws -> T
    ) async throws -> T {
        try await using(try await shared.acquireSSH(), release: { await shared.releaseSSH() }, body)
    }

    private static func using<P: Sendable, T>(
        isolation: isolated (any Actor)? = #isolation,
        _ peer: P, release: () async -> Void, _ body: (P) async throws -> T
    ) async throws -> T {
        do {
            let result = try await body(peer)
            await release()
            return result
        } catch {
            await release()
            throw error
        }
    }
}

/// A Litestream 0.5 `replicas:` entry for a loopback peer, indented to sit
/// under `dbs: - path: …` (`replicas:` at 4 spaces).
enum LitestreamReplicaYAML {
    static func s3(_ moto: MotoServer, bucket: String, path: String) -> String {
        """
              - type: s3
                bucket: \(bucket)
                path: \(path)
                endpoint: \(moto.endpoint)
                region: us-east-1
                force-path-style: true
                access-key-id: \(moto.accessKeyID)
                secret-access-key: \(moto.secretAccessKey)
        """
    }

    static func sftp(_ ssh: SSHServer, path: String) -> String {
        """
              - type: sftp
                host: \(ssh.host):\(ssh.port)
                user: \(ssh.user)
                key-path: \(ssh.clientKey)
                path: \(path)
        """
    }

    /// A whole Litestream config: one database, one replica entry.
    static func config(db: String, replica: String) -> String {
        "dbs:\n  - path: \(db)\n    replicas:\n\(replica)\n"
    }
}
