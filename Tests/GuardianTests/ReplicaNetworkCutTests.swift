import Foundation
import Platform
import Replication
import Testing

/// A network cut in the middle of an upload: the server runs in its own
/// network namespace behind a veth link, and the link goes down (every
/// packet silently dropped, no refusal, no reset) for several seconds while
/// a large file is on its way. The client's timeouts notice, its retries
/// span the outage, and the same write call completes once the link is
/// back, with the stored file intact. Needs root (CI runs tests as root).
@Suite("Replica network cut", .enabled(if: NetNamespace.available, "needs root and iproute2 for a network namespace"))
struct ReplicaNetworkCutTests {
    static let t0 = Date(timeIntervalSince1970: 1_714_979_289.123)

    @Test("an upload survives a 4 s network cut", arguments: [Backend.s3, Backend.sftp])
    func uploadSurvivesCut(_ backend: Backend) async throws {
        let ns = try await NetNamespace.create()
        do {
            try await exercise(backend, ns)
        } catch {
            await ns.destroy()
            throw error
        }
        await ns.destroy()
    }

    private func exercise(_ backend: Backend, _ ns: NetNamespace) async throws {
        let (logger, lines) = CapturingLogHandler.logger()
        let options = RemoteClientOptions(
            retry: RetryPolicy(maxAttempts: 30, initialDelay: .milliseconds(100), maxDelay: .milliseconds(500)),
            connectTimeout: .seconds(1), stallTimeout: .seconds(1), logger: logger)
        let dir = try TestSupport.makeTempDir("cut")
        defer { TestSupport.cleanup(dir) }
        let source = dir + "/snapshot.ltx"
        let big = ltxLikePayload(min: 1, max: 50, timestamp: Self.t0, size: 40 << 20)
        try Data(big).write(to: URL(fileURLWithPath: source))

        let client: any ReplicaClient
        let started: @Sendable () -> Bool
        var servers: [any Sendable] = []
        switch backend {
        case .s3:
            let moto = try await MotoServer.start(buckets: ["cut"], in: ns)
            servers.append(moto)
            let s3 = try S3ReplicaClient(moto.location(bucket: "cut", path: "db", partSize: 5 << 20), options: options)
            client = s3
            started = { s3.requestCount >= 3 }  // create + two parts under way
        default:
            let ssh = try await SSHServer.start(in: ns)
            servers.append(ssh)
            client = try SFTPReplicaClient(ssh.location(), options: options)
            let temp = ssh.dataDir + "/replica/ltx/9/" + LTXNaming.fileName(minTXID: 1, maxTXID: 50) + ".tmp"
            started = {
                var st = stat()
                return stat(temp, &st) == 0 && st.st_size > 0
            }
        }
        defer {
            for s in servers {
                (s as? MotoServer)?.stop()
                (s as? SSHServer)?.stop()
            }
        }

        try await client.writeFile(level: 0, minTXID: 1, maxTXID: 1, contents: .bytes([1, 2, 3]), createdAt: Self.t0)
        let upload = Task {
            try await client.writeFile(level: 9, minTXID: 1, maxTXID: 50, contents: .file(path: source), createdAt: Self.t0)
        }
        #expect(await TestSupport.waitUntil(timeout: .seconds(60)) { started() }, "the upload got going")
        try await ns.cut()
        let cutAt = ContinuousClock.now
        try await Task.sleep(for: .seconds(4))
        try await ns.heal()
        let info = try await upload.value
        #expect(ContinuousClock.now - cutAt >= .seconds(4))
        #expect(lines.all.contains { $0.contains(GuardianEvent.replicaRequestRetrying.message) }, "the cut was noticed and retried")
        let back = dir + "/back.ltx"
        try await client.downloadFile(info, to: back)
        #expect(FileManager.default.contents(atPath: back).map { [UInt8]($0) } == big)
        #expect(try await client.listFiles(level: 9, exactTimestamps: true).map(\.size) == [Int64(big.count)])
        #expect(try await client.listFiles(level: 0, exactTimestamps: false).map(\.minTXID) == [1])
    }
}
