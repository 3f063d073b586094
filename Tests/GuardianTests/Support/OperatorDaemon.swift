import Foundation
import Testing
@testable import Platform

/// A running `guardian run` with everything the operator's view shows: a
/// database on a small tmpfs filled to the disk `warn` level, a file replica,
/// optionally an S3 replica on a real moto server (which a test may kill to
/// make the replica fail), integrity checks every second, a low
/// checkpoint threshold, and optionally the metrics endpoint.
final class OperatorDaemon: @unchecked Sendable {
    let dir: String
    let config: String
    let socket: String
    let db: String
    let replicaDir: String
    let fs: DiskKit.Tmpfs
    let moto: MotoServer?
    let metricsPort: Int?
    /// The S3 secret in the configuration: must never show up in any output.
    let secret = "opsS3cr3t-\(UUID().uuidString.prefix(8))"
    private(set) var child: ChildProcess?

    var metricsURL: String { "http://127.0.0.1:\(metricsPort ?? 0)" }

    init(s3: Bool, metrics: Bool, extraConfig: String = "") async throws {
        dir = try TestSupport.makeTempDir("ops")
        fs = try DiskKit.Tmpfs(size: "16m")
        mkdir(fs.path + "/data", 0o755)
        db = fs.path + "/data/app.db"
        socket = dir + "/guardian.sock"
        config = dir + "/guardian.yml"
        replicaDir = dir + "/replica"
        metricsPort = metrics ? TestSupport.freePort() : nil
        do {
            moto = s3 ? try await MotoServer.start(buckets: ["ops"]) : nil
        } catch {
            fs.unmount()
            TestSupport.cleanup(dir)
            throw error
        }
        // About 72 % of the filesystem: the disk guardian's warn level (50 %).
        try DiskKit.fill(fs.path + "/filler", bytes: 11_500_000)
        try await sqlite3(db, "PRAGMA journal_mode=wal; CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users(name) VALUES ('ada');")
        var text = """
            state-dir: \(dir)/state
            status:
              socket: \(socket)

            """
        if let metricsPort { text += "  metrics: 127.0.0.1:\(metricsPort)\n" }
        text += """
            dbs:
              - path: \(db)
                monitor-interval: 100ms
                checkpoint-size: 16KB
                compaction-levels: [1h]
                integrity-interval: 1s
                health-interval: 500ms
                replicas:
                  - name: local
                    url: file://\(replicaDir)

            """
        if let moto {
            text += """
                      - name: offsite
                        type: s3
                        bucket: ops
                        path: app
                        endpoint: \(moto.endpoint)
                        region: us-east-1
                        force-path-style: true
                        sync-interval: 100ms
                        access-key-id: opskey
                        secret-access-key: \(secret)

                """
        }
        text += """
            disk:
              interval: 200ms
              warn: 50%
              critical: 90%
              emergency: 95%

            """
        text += extraConfig
        try TestSupport.write(text, to: config)
    }

    func start() throws {
        child = try ChildProcess.start(TestSupport.guardianBinary, ["run", "--config", config, "--log-target", "stderr"])
    }

    var stderr: String { child?.stderr ?? "" }

    /// `guardian status --json`, parsed; nil when no daemon answers.
    func status() async throws -> [String: Any]? {
        let r = try await guardian(["status", "--socket", socket, "--json"])
        guard r.status == 0 else { return nil }
        return try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
    }

    /// Polls the status until `condition` holds; returns the last document.
    func waitForStatus(timeout: Duration = .seconds(20), _ condition: ([String: Any]) -> Bool) async throws -> [String: Any]? {
        var last: [String: Any]?
        let ok = try await TestSupport.waitUntil(timeout: timeout) {
            guard let doc = try await status() else { return false }
            last = doc
            return condition(doc)
        }
        return ok ? last : nil
    }

    /// `n` transactions, one row each, from the application's one
    /// long-lived connection, as an application writes.
    func write(_ n: Int) async throws {
        if writer == nil { writer = try AppWriter(db: db) }
        try await writer?.write(n)
    }

    private var writer: AppWriter?

    func stop() async {
        writer?.stop()
        if let child {
            child.signal(SIGTERM)
            await child.wait(timeout: .seconds(25))
            child.removeFiles()
        }
        moto?.stop()
        fs.unmount()
        TestSupport.cleanup(dir)
    }
}

/// Typed access to the parsed status JSON.
extension Dictionary where Key == String, Value == Any {
    func dict(_ key: String) -> [String: Any]? { self[key] as? [String: Any] }
    func list(_ key: String) -> [[String: Any]] { self[key] as? [[String: Any]] ?? [] }
    func string(_ key: String) -> String? { self[key] as? String }
    func int(_ key: String) -> Int? { self[key] as? Int }
    func double(_ key: String) -> Double? {
        if let d = self[key] as? Double { return d }
        return (self[key] as? Int).map { Double($0) }
    }
    func bool(_ key: String) -> Bool? { self[key] as? Bool }
    /// The key is present with JSON null, or absent.
    func isNull(_ key: String) -> Bool { self[key] == nil || self[key] is NSNull }
}

/// The application: a python3 process holding one SQLite connection, which
/// commits `n` one-row transactions each time it reads `n` on stdin and
/// then prints `done TOTAL`.
final class AppWriter: @unchecked Sendable {
    let process = Process()
    let input = Pipe()
    let outputPath: String
    private var total = 0

    static let script = """
        import sqlite3, sys
        c = sqlite3.connect(sys.argv[1], isolation_level=None)
        total = 0
        for line in sys.stdin:
            for i in range(int(line)):
                c.execute("INSERT INTO users(name) VALUES (?)", ("user %d" % total,))
                total += 1
            print("done %d" % total, flush=True)
        """

    init(db: String) throws {
        outputPath = NSTemporaryDirectory() + "guardian-writer-\(UUID().uuidString.prefix(8)).out"
        _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = ["-c", Self.script, db]
        process.standardInput = input
        process.standardOutput = FileHandle(forWritingAtPath: outputPath)
        process.standardError = FileHandle(forWritingAtPath: outputPath)
        try process.run()
    }

    func write(_ n: Int) async throws {
        total += n
        input.fileHandleForWriting.write(Data("\(n)\n".utf8))
        let expected = "done \(total)\n"
        let ok = await TestSupport.waitUntil(timeout: .seconds(20)) {
            ((try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "").contains(expected)
        }
        if !ok { throw TestFailure("the writer did not commit: \((try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "")") }
    }

    func stop() {
        try? input.fileHandleForWriting.close()
        if process.isRunning { process.terminate() }
        try? FileManager.default.removeItem(atPath: outputPath)
    }
}
