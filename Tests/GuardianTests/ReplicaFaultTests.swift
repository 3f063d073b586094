import Foundation
import Platform
import Replication
import Testing

/// Faults against real servers started (and broken) by each test: a server
/// killed mid-upload and restarted, a server frozen with SIGSTOP, refused
/// connections, wrong credentials with moto enforcing signatures, a missing
/// bucket, unknown and changed SSH host keys.
@Suite("Replica faults")
struct ReplicaFaultTests {
    static let t0 = Date(timeIntervalSince1970: 1_714_979_289.123)

    static func elapsed(since start: ContinuousClock.Instant) -> Duration { ContinuousClock.now - start }

    static func expectReplicaError(
        _ kind: ReplicaError.Kind, containing parts: [String], sourceLocation: SourceLocation = #_sourceLocation,
        _ body: () async throws -> Void
    ) async -> ReplicaError? {
        do {
            try await body()
            Issue.record("expected a \(kind) error, got success", sourceLocation: sourceLocation)
            return nil
        } catch let e as ReplicaError {
            #expect(e.kind == kind, "\(e)", sourceLocation: sourceLocation)
            for part in parts { #expect(e.description.contains(part), "\(e) should mention \(part)", sourceLocation: sourceLocation) }
            return e
        } catch {
            Issue.record("expected a ReplicaError, got \(type(of: error)): \(error)", sourceLocation: sourceLocation)
            return nil
        }
    }

    // MARK: - S3

    @Test("S3 with signatures enforced: right key works, wrong secret and unknown key fail at once, clearly")
    func s3Credentials() async throws {
        let moto = try await MotoServer.start(auth: true, buckets: ["authbucket"])
        defer { moto.stop() }
        let good = try S3ReplicaClient(moto.location(bucket: "authbucket", path: "db"), options: .fastTest())
        let bytes = ltxLikePayload(min: 1, max: 1, timestamp: Self.t0)
        let info = try await good.writeFile(level: 0, minTXID: 1, maxTXID: 1, contents: .bytes(bytes), createdAt: Self.t0)
        #expect(try await good.readFile(info) == bytes)
        #expect(try await good.readPrefix(info, count: 4) == Array("LTX1".utf8))
        try await good.deleteFiles([info])
        // (moto 5.2.1 in auth mode refuses any query value with an encoded
        // slash, boto3's own listings included — test-peers.md §1 — so level
        // listings are covered by the conformance suite in default mode.)

        let wrongSecret = "wrong-\(UUID().uuidString)"
        var bad = moto.location(bucket: "authbucket", path: "db")
        bad.secretAccessKey = Secret(wrongSecret)
        let badClient = try S3ReplicaClient(bad, options: .fastTest())
        let start = ContinuousClock.now
        let e1 = await Self.expectReplicaError(.permanent, containing: ["authbucket", "SignatureDoesNotMatch", "HTTP 403", "secret-access-key"]) {
            try await badClient.writeFile(level: 0, minTXID: 2, maxTXID: 2, contents: .bytes(bytes), createdAt: Self.t0)
        }
        #expect(badClient.requestCount == 1, "a permanent error is not retried")
        #expect(Self.elapsed(since: start) < .seconds(5))
        #expect(e1.map { !$0.description.contains(wrongSecret) && !$0.description.contains(moto.secretAccessKey) } == true)

        var unknown = moto.location(bucket: "authbucket", path: "db")
        unknown.accessKeyID = "AKIAUNKNOWNKEY000000"
        let unknownClient = try S3ReplicaClient(unknown, options: .fastTest())
        _ = await Self.expectReplicaError(.permanent, containing: ["authbucket", "InvalidAccessKeyId", "access-key-id"]) {
            _ = try await unknownClient.readFile(info)
        }
    }

    @Test("S3 bucket missing: a permanent error naming the bucket")
    func s3BucketMissing() async throws {
        try await SharedPeers.withMoto { server in
            let client = try S3ReplicaClient(server.location(bucket: "no-such-bucket-\(UUID().uuidString.prefix(6).lowercased())"), options: .fastTest())
            _ = await Self.expectReplicaError(.permanent, containing: ["no-such-bucket-", "NoSuchBucket", "does not exist"]) {
                try await client.writeFile(level: 0, minTXID: 1, maxTXID: 1, contents: .bytes([1, 2, 3]), createdAt: Self.t0)
            }
            _ = await Self.expectReplicaError(.permanent, containing: ["NoSuchBucket"]) {
                _ = try await client.listFiles(level: 0, exactTimestamps: false)
            }
            #expect(client.requestCount == 2)
        }
    }

    @Test("S3 connection refused: retried with backoff, then a transient error")
    func s3Refused() async throws {
        let port = TestSupport.freePort()
        let location = S3Location(
            bucket: "b", path: "db", endpoint: "http://127.0.0.1:\(port)", accessKeyID: "k", secretAccessKey: Secret("s3cr3t-refused"))
        let (logger, lines) = CapturingLogHandler.logger()
        let client = try S3ReplicaClient(location, options: .fastTest(logger: logger))
        _ = await Self.expectReplicaError(.transient, containing: ["127.0.0.1", "\(port)"]) {
            try await client.writeFile(level: 0, minTXID: 1, maxTXID: 1, contents: .bytes([1]), createdAt: Self.t0)
        }
        #expect(client.requestCount == 4, "all attempts of the retry policy were used")
        #expect(lines.all.filter { $0.contains(GuardianEvent.replicaRequestRetrying.message) }.count == 3)
    }

    @Test("S3 server killed mid-upload, then restarted: the upload fails as transient, a later write succeeds")
    func s3KilledMidUpload() async throws {
        let moto = try await MotoServer.start(buckets: ["crash"])
        defer { moto.stop() }
        let dir = try TestSupport.makeTempDir("s3crash")
        defer { TestSupport.cleanup(dir) }
        let source = dir + "/snap.ltx"
        let big = ltxLikePayload(min: 1, max: 9, timestamp: Self.t0, size: 60 << 20)
        try Data(big).write(to: URL(fileURLWithPath: source))
        let client = try S3ReplicaClient(moto.location(bucket: "crash", path: "db", partSize: 5 << 20), options: .fastTest())
        let upload = Task {
            try await client.writeFile(level: 9, minTXID: 1, maxTXID: 9, contents: .file(path: source), createdAt: Self.t0)
        }
        // Kill once the multipart upload is under way (create + 2 parts sent).
        let started = await TestSupport.waitUntil(timeout: .seconds(60)) { client.requestCount >= 3 }
        #expect(started)
        await moto.kill()
        _ = await Self.expectReplicaError(.transient, containing: ["crash"]) { _ = try await upload.value }

        try await moto.restart()
        try await moto.createBucket("crash")
        let small = ltxLikePayload(min: 1, max: 9, timestamp: Self.t0, size: 7 << 20)
        let info = try await client.writeFile(level: 9, minTXID: 1, maxTXID: 9, contents: .bytes(small), createdAt: Self.t0)
        #expect(try await client.readFile(info) == small)
        #expect(try await client.listFiles(level: 9, exactTimestamps: true).map(\.size) == [Int64(small.count)])
    }

    @Test("S3 server frozen (SIGSTOP): requests time out and retry; after SIGCONT the write succeeds")
    func s3Hang() async throws {
        let moto = try await MotoServer.start(buckets: ["hang"])
        defer { moto.stop() }
        let (logger, lines) = CapturingLogHandler.logger()
        let options = RemoteClientOptions(
            retry: RetryPolicy(maxAttempts: 10, initialDelay: .milliseconds(100), maxDelay: .milliseconds(500)),
            connectTimeout: .seconds(1), stallTimeout: .seconds(1), logger: logger)
        let client = try S3ReplicaClient(moto.location(bucket: "hang"), options: options)
        try await client.writeFile(level: 0, minTXID: 1, maxTXID: 1, contents: .bytes([1]), createdAt: Self.t0)
        moto.pause()
        let start = ContinuousClock.now
        let write = Task {
            try await client.writeFile(level: 0, minTXID: 2, maxTXID: 2, contents: .bytes([2, 2]), createdAt: Self.t0)
        }
        try await Task.sleep(for: .seconds(5))
        moto.resume()
        let info = try await write.value
        #expect(Self.elapsed(since: start) >= .seconds(5))
        #expect(try await client.readFile(info) == [2, 2])
        #expect(lines.all.contains { $0.contains(GuardianEvent.replicaRequestRetrying.message) && $0.contains("PUT") })
    }

    // MARK: - SFTP

    @Test("SFTP unknown host key: refused with the server's SHA256 fingerprint, nothing written")
    func sftpUnknownHostKey() async throws {
        let server = try await SSHServer.start()
        defer { server.stop() }
        // known_hosts that knows another host only.
        let other = server.dir + "/other_ed25519"
        try await server.keygen(other)
        let pub = try String(contentsOfFile: other + ".pub", encoding: .utf8).split(separator: " ")
        let known = server.dir + "/known_hosts_other"
        try TestSupport.write("[127.0.0.2]:\(server.port) \(pub[0]) \(pub[1])\n", to: known)
        let client = try SFTPReplicaClient(server.location(knownHosts: known), options: .fastTest())
        let fingerprint = try await server.fingerprint(of: server.hostKey)
        let start = ContinuousClock.now
        _ = await Self.expectReplicaError(.permanent, containing: ["unknown host key", fingerprint, "ssh-ed25519", known]) {
            try await client.writeFile(level: 0, minTXID: 1, maxTXID: 1, contents: .bytes([1]), createdAt: Self.t0)
        }
        #expect(Self.elapsed(since: start) < .seconds(5))
        #expect(!FileManager.default.fileExists(atPath: server.dataDir + "/replica"))
        // A known_hosts file that does not exist is just as fatal.
        let missing = try SFTPReplicaClient(server.location(knownHosts: server.dir + "/nope"), options: .fastTest())
        _ = await Self.expectReplicaError(.permanent, containing: ["known-hosts", server.dir + "/nope"]) {
            _ = try await missing.listFiles(level: 0, exactTimestamps: false)
        }
    }

    @Test("SFTP changed host key: refused with the new fingerprint")
    func sftpChangedHostKey() async throws {
        let server = try await SSHServer.start()
        defer { server.stop() }
        let client = try SFTPReplicaClient(server.location(), options: .fastTest())
        try await client.writeFile(level: 0, minTXID: 1, maxTXID: 1, contents: .bytes([1]), createdAt: Self.t0)
        try await server.rotateHostKey()
        let fingerprint = try await server.fingerprint(of: server.hostKey)
        _ = await Self.expectReplicaError(.permanent, containing: ["HOST KEY CHANGED", fingerprint, server.knownHosts]) {
            try await client.writeFile(level: 0, minTXID: 2, maxTXID: 2, contents: .bytes([2]), createdAt: Self.t0)
        }
        #expect(!FileManager.default.fileExists(atPath: server.dataDir + "/replica/ltx/0/0000000000000002-0000000000000002.ltx"))
    }

    @Test("SFTP wrong user key: a permanent authentication error")
    func sftpWrongUserKey() async throws {
        try await SharedPeers.withSSH { server in
            let stranger = server.dir + "/stranger-\(UUID().uuidString.prefix(6))"
            try await server.keygen(stranger)
            let client = try SFTPReplicaClient(server.location(path: server.dataDir + "/wrongkey", keyPath: stranger), options: .fastTest())
            _ = await Self.expectReplicaError(.permanent, containing: ["authentication as \(server.user) failed", stranger]) {
                _ = try await client.listFiles(level: 0, exactTimestamps: false)
            }
        }
    }

    @Test("SFTP dropped session: the next call reconnects by itself")
    func sftpReconnects() async throws {
        let server = try await SSHServer.start()
        defer { server.stop() }
        let client = try SFTPReplicaClient(server.location(), options: .fastTest())
        try await client.writeFile(level: 0, minTXID: 1, maxTXID: 1, contents: .bytes([1]), createdAt: Self.t0)
        server.dropSessions()
        try await Task.sleep(for: .milliseconds(200))
        try await client.writeFile(level: 0, minTXID: 2, maxTXID: 2, contents: .bytes([2]), createdAt: Self.t0)
        #expect(try await client.listFiles(level: 0, exactTimestamps: false).map(\.minTXID) == [1, 2])
        let logins = server.log.components(separatedBy: "Accepted publickey").count - 1
        #expect(logins == 2, "\(server.log)")
    }

    @Test("SFTP server killed mid-upload, then restarted: transient error, then a later write succeeds")
    func sftpKilledMidUpload() async throws {
        let server = try await SSHServer.start()
        defer { server.stop() }
        let dir = try TestSupport.makeTempDir("sftpcrash")
        defer { TestSupport.cleanup(dir) }
        let source = dir + "/snap.ltx"
        let big = ltxLikePayload(min: 1, max: 9, timestamp: Self.t0, size: 200 << 20)
        try Data(big).write(to: URL(fileURLWithPath: source))
        let client = try SFTPReplicaClient(server.location(), options: .fastTest())
        let upload = Task {
            try await client.writeFile(level: 9, minTXID: 1, maxTXID: 9, contents: .file(path: source), createdAt: Self.t0)
        }
        let levelDir = server.dataDir + "/replica/ltx/9"
        let started = await TestSupport.waitUntil(timeout: .seconds(30)) {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: levelDir)) ?? []
            return names.contains { name in
                var st = stat()
                return name.hasSuffix(".tmp") && stat(levelDir + "/" + name, &st) == 0 && st.st_size > 0
            }
        }
        #expect(started)
        await server.kill()
        _ = await Self.expectReplicaError(.transient, containing: [server.location().host]) { _ = try await upload.value }

        try await server.restart()
        let small = ltxLikePayload(min: 1, max: 9, timestamp: Self.t0, size: 3 << 20)
        let info = try await client.writeFile(level: 9, minTXID: 1, maxTXID: 9, contents: .bytes(small), createdAt: Self.t0)
        #expect(try await client.readFile(info) == small)
        #expect(try await client.listFiles(level: 9, exactTimestamps: true).map(\.size) == [Int64(small.count)])
        // The retry reused the interrupted attempt's temporary name: nothing is left over.
        #expect(try FileManager.default.contentsOfDirectory(atPath: levelDir) == [info.name])
    }

    @Test("SFTP server frozen (SIGSTOP): calls time out and retry; after SIGCONT the write succeeds")
    func sftpHang() async throws {
        let server = try await SSHServer.start()
        defer { server.stop() }
        let (logger, lines) = CapturingLogHandler.logger()
        let options = RemoteClientOptions(
            retry: RetryPolicy(maxAttempts: 10, initialDelay: .milliseconds(100), maxDelay: .milliseconds(500)),
            connectTimeout: .seconds(1), stallTimeout: .seconds(1), logger: logger)
        let client = try SFTPReplicaClient(server.location(), options: options)
        try await client.writeFile(level: 0, minTXID: 1, maxTXID: 1, contents: .bytes([1]), createdAt: Self.t0)
        server.pause()
        let start = ContinuousClock.now
        let write = Task {
            try await client.writeFile(level: 0, minTXID: 2, maxTXID: 2, contents: .bytes([2, 2]), createdAt: Self.t0)
        }
        try await Task.sleep(for: .seconds(5))
        server.resume()
        let info = try await write.value
        #expect(Self.elapsed(since: start) >= .seconds(5))
        #expect(try await client.readFile(info) == [2, 2])
        #expect(lines.all.contains { $0.contains(GuardianEvent.replicaRequestRetrying.message) })
    }
}
