import Foundation
import Logging
import Platform
@testable import Replication
import Testing

@testable import Remediate
@testable import guardian

/// A real database replicated by guardian's real replication (the built
/// binary, `guardian replicate --config`) to a file replica and, if asked,
/// to moto (S3) and sshd (SFTP); the configuration file the drills read;
/// guardian's state directory and a scratch directory. One temp directory.
final class DrillWorld: @unchecked Sendable {
    let dir: String
    let db: String
    let state: String
    let scratch: String
    let fileReplica: String
    let config: String
    /// YAML of the replicas besides the file replica (S3, SFTP).
    var extraReplicas = ""
    /// Top-level YAML appended to the configuration (alerts:, status:).
    var topLevel = ""
    var drill = ""
    var environment = ["GUARDIAN_LOG_TARGET": "stderr"]

    /// A WAL database with `rows` users (about 250 bytes each), checkpointed.
    init(_ label: String, rows: Int = 2000) throws {
        dir = try TestSupport.makeTempDir(label)
        db = dir + "/app.db"
        state = dir + "/state"
        scratch = dir + "/scratch"
        fileReplica = dir + "/replica"
        config = dir + "/guardian.yml"
        let c = try SQLiteConnection(path: db, mode: .readWriteCreate)
        try c.execute("PRAGMA journal_mode=WAL")
        try c.execute("CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT NOT NULL, pad TEXT NOT NULL)")
        try c.execute("""
            WITH RECURSIVE n(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM n WHERE v < \(rows))
            INSERT INTO users(name, pad) SELECT 'user' || v, hex(randomblob(120)) FROM n
            """)
        try c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        drill = """
                drill:
                  interval: 7d
                  budget: 2m
                  scratch-dir: \(scratch)
                  queries:
                    - sql: SELECT count(*) FROM users
                    - sql: SELECT count(*) FROM users
                      within-live: 5%
            """
    }

    func cleanup() { TestSupport.cleanup(dir) }

    func writeConfig(snapshotInterval: String = "24h") throws {
        try TestSupport.write("""
            state-dir: \(state)
            dbs:
              - path: \(db)
                monitor-interval: 100ms
                snapshot-interval: \(snapshotInterval)
                replicas:
                  - name: file
                    url: file://\(fileReplica)
            \(extraReplicas)
            \(drill)
            \(topLevel)
            """, to: config)
    }

    /// The application: `n` one-row transactions.
    func insert(_ n: Int) throws {
        let c = try SQLiteConnection(path: db, mode: .readWrite)
        for _ in 0..<n {
            try c.execute("INSERT INTO users(name, pad) VALUES ('late', hex(randomblob(120)))")
        }
    }

    func count() throws -> Int64 {
        try SQLiteConnection(path: db, mode: .readOnly).scalar("SELECT count(*) FROM users")?.int64 ?? -1
    }

    /// `guardian replicate --config` while the app commits `transactions`
    /// transactions, until `until` holds, then SIGTERM (final sync) → exit 0.
    func replicate(transactions: Int = 20, until: (() -> Bool)? = nil) async throws {
        let child = try ChildProcess.start(TestSupport.guardianBinary, ["replicate", "--config", config], environment: environment)
        defer { child.removeFiles() }
        try await Task.sleep(for: .milliseconds(800))
        for _ in 0..<transactions {
            try insert(1)
            try await Task.sleep(for: .milliseconds(50))
        }
        try await Task.sleep(for: .seconds(2))
        if let until {
            let ok = await TestSupport.waitUntil(timeout: .seconds(30)) { until() }
            if !ok { throw TestFailure("replication did not reach the expected state: \(child.stderr.suffix(3000))") }
        }
        child.signal(SIGTERM)
        let status = await child.wait(timeout: .seconds(40))
        guard status == 0 else { throw TestFailure("guardian replicate exited \(String(describing: status)): \(child.stderr.suffix(3000))") }
    }

    /// The database file and its WAL, byte for byte.
    func liveBytes() -> [[UInt8]] {
        ["", "-wal"].map { [UInt8](FileManager.default.contents(atPath: db + $0) ?? Data()) }
    }

    func scratchEntries() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: scratch)) ?? []).sorted()
    }

    /// L0 files of the file replica, by max TXID.
    func fileReplicaL0() -> [(path: String, max: UInt64)] {
        let dir = fileReplica + "/ltx/0"
        return ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).compactMap { name in
            guard let (_, max) = LTXNaming.parse(fileName: name) else { return nil }
            return (dir + "/" + name, max)
        }.sorted { $0.max < $1.max }
    }

    func snapshots(_ root: String) -> [UInt64] {
        ((try? FileManager.default.contentsOfDirectory(atPath: root + "/ltx/9")) ?? []).compactMap { LTXNaming.parse(fileName: $0)?.max }
    }

    var fileReplicaConfig: ReplicaConfig { ReplicaConfig(name: "file", target: .file(path: fileReplica)) }

    func runner(_ drill: DrillConfig, log: RecordingLog = RecordingLog()) -> DrillRunner {
        DrillRunner(database: db, config: drill, scratchDir: drill.scratchDir ?? scratch, logger: log.logger())
    }
}

/// A value shared with the closures a drill calls (its hooks) or with tasks.
final class Shared<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLock<R>(_ body: (inout Value) -> R) -> R { lock.withLock { body(&value) } }
}

@Suite(.serialized) struct DrillTests {
    /// Flips one bit in the last literal byte of the first page's LZ4 block
    /// of an LTX file: only page data changes, so the file checksum fails.
    static func corrupt(_ path: String) throws {
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let frame = Int(bytes[106]) << 24 | Int(bytes[107]) << 16 | Int(bytes[108]) << 8 | Int(bytes[109])
        let offset = 100 + 10 + frame - 1
        guard frame > 0, offset < bytes.count - 16 else { throw TestFailure("\(path): unexpected frame size \(frame)") }
        bytes[offset] ^= 0x20
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    static func json(_ text: String) -> [[String: Any]] {
        (try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]]) ?? []
    }

    // MARK: - File, S3 and SFTP; one replica broken, then fixed

    @Test(.timeLimit(.minutes(4)))
    func threeReplicasOneBrokenFailsAlertsAndRecovers() async throws {
        let world = try DrillWorld("drill-e2e")
        defer { world.cleanup() }
        try await SharedPeers.withMoto { moto in
            try await SharedPeers.withSSH { ssh in
                let rx = try await WebhookReceiver(key: "drill-hmac-key")
                defer { rx.stop() }
                try await exercise(world, moto: moto, ssh: ssh, rx: rx)
            }
        }
    }

    private func exercise(_ world: DrillWorld, moto: MotoServer, ssh: SSHServer, rx: WebhookReceiver) async throws {
        let bucket = "drill-\(UUID().uuidString.prefix(6).lowercased())"
        try await moto.createBucket(bucket)
        let sftpPath = ssh.dataDir + "/drill-\(UUID().uuidString.prefix(6))"
        world.extraReplicas = """
                  - name: s3
                    type: s3
                    bucket: \(bucket)
                    path: app
                    endpoint: \(moto.endpoint)
                    region: us-east-1
                    access-key-id: \(moto.accessKeyID)
                    secret-access-key: \(moto.secretAccessKey)
                  - name: sftp
                    type: sftp
                    host: \(ssh.host):\(ssh.port)
                    user: \(ssh.user)
                    key-path: \(ssh.clientKey)
                    known-hosts: \(ssh.knownHosts)
                    path: \(sftpPath)
            """
        world.topLevel = """
            alerts:
              - type: webhook
                url: \(rx.url("/hook"))
                secret: drill-hmac-key
            """
        try world.writeConfig()
        try await world.replicate()
        let rows = try world.count()
        let live = world.liveBytes()

        // 1. Every replica restores, verifies and matches the live database.
        let first = try await guardian(["drill", "--config", world.config])
        #expect(first.status == 0, "guardian drill: \(first.stdout) \(first.stderr)")
        #expect(first.stdout.components(separatedBy: "[PASSED]").count - 1 == 3, "\(first.stdout)")
        for name in ["file", "s3", "sftp"] { #expect(first.stdout.contains("app.db <- \(name) ("), "\(first.stdout)") }
        #expect(first.stdout.contains("Rows: \(DrillText.rows(rows)) | Integrity: OK"), "\(first.stdout)")
        #expect(first.stdout.contains("SELECT count(*) FROM users = \(rows), live \(rows) (within 5% of live)"), "\(first.stdout)")
        #expect(world.scratchEntries().isEmpty, "copies left behind: \(world.scratchEntries())")
        #expect(rx.deliveries.isEmpty, "a passing drill alerts nobody")

        // 2. Real bytes of the newest LTX file of the file replica are overwritten.
        let newest = try #require(world.fileReplicaL0().last)
        try Self.corrupt(newest.path)
        let broken = try await guardian(["drill", "app.db", "--config", world.config, "--replica", "file"])
        #expect(broken.status == 1, "a failed drill exits 1: \(broken.stdout) \(broken.stderr)")
        #expect(broken.stdout.contains("[FAILED]") && broken.stdout.contains("app.db <- file"), "\(broken.stdout)")
        #expect(broken.stdout.contains("checksum mismatch"), "\(broken.stdout)")
        #expect(broken.stderr.contains("Z critical recovery drill failed "), "the level is spelled out on stderr: \(broken.stderr)")
        #expect(broken.stdout.contains((newest.path as NSString).lastPathComponent), "the reason names the file: \(broken.stdout)")
        #expect(world.scratchEntries().isEmpty, "the copy is removed after a failure too: \(world.scratchEntries())")
        // The alert went out (the command waits for delivery), signed.
        #expect(await rx.waitFor(1))
        let trigger = try #require(rx.deliveries.first)
        #expect(trigger.sigOK == true, "the receiver verified the HMAC")
        #expect(trigger.headers["x-guardian-event"] == "trigger")
        #expect(trigger.body["severity"] as? String == "critical")
        #expect((trigger.body["dedup_key"] as? String)?.hasSuffix("\(world.db)/drill-file") == true, "\(trigger.body)")
        #expect((trigger.body["summary"] as? String)?.contains("Recovery drill FAILED") == true, "\(trigger.body)")
        #expect((trigger.body["summary"] as? String)?.contains("checksum mismatch") == true, "\(trigger.body)")
        let text = rx.deliveries.map { "\($0.body)" }.joined()
        #expect(!text.contains(moto.secretAccessKey) && !text.contains("drill-hmac-key"), "no secret in an alert")

        // The other replicas still pass.
        let others = try await guardian(["drill", "--config", world.config, "--replica", "s3"])
        #expect(others.status == 0, "\(others.stdout + others.stderr)")

        // 3. The history shows both results, newest first.
        let history = try await guardian(["drills", "--config", world.config])
        #expect(history.status == 0, "\(history.stderr)")
        #expect(history.stdout.hasPrefix("=== Recovery Test History ===\n"), "\(history.stdout)")
        #expect(history.stdout.contains(" [PASSED] ") && history.stdout.contains(" [FAILED] "), "\(history.stdout)")
        #expect(history.stdout.contains("   Rows: \(DrillText.rows(rows)) | Integrity: OK | Duration: "), "\(history.stdout)")
        #expect(history.stdout.contains("   Reason: restore failed: "), "\(history.stdout)")
        let entries = Self.json(try await guardian(["drills", "app.db", "--json", "--config", world.config]).stdout)
        #expect(entries.count == 5, "\(entries)")
        #expect(entries.map { $0["result"] as? String ?? "" } == ["PASSED", "FAILED", "PASSED", "PASSED", "PASSED"], "\(entries)")
        #expect(entries[1]["replica"] as? String == "file" && entries[1]["failure"] as? String == "restore")
        #expect(entries[0]["rows"] as? Int == Int(rows) && entries[0]["integrity"] as? String == "ok")
        #expect((entries[0]["txid"] as? String)?.count == 16 && entries[0]["duration_seconds"] is Double)
        let limited = Self.json(try await guardian(["drills", "--json", "--limit", "2", "--config", world.config]).stdout)
        #expect(limited.count == 2)

        // The drills never wrote to the live database.
        #expect(world.liveBytes() == live, "the live database or its WAL changed")

        // 4. A new snapshot past the damaged file fixes the replica: the next drill passes and resolves the alert.
        try world.writeConfig(snapshotInterval: "1s")
        try await world.replicate(transactions: 10) { world.snapshots(world.fileReplica).contains { $0 > newest.max } }
        let fixed = try await guardian(["drill", world.db, "--config", world.config, "--replica", "file"])
        #expect(fixed.status == 0, "\(fixed.stdout) \(fixed.stderr)")
        let fixedRows = try world.count()
        #expect(fixed.stdout.contains("[PASSED]") && fixed.stdout.contains("Rows: \(DrillText.rows(fixedRows))"), "\(fixed.stdout)")
        #expect(await rx.waitFor(2))
        let resolve = try #require(rx.deliveries.last)
        #expect(resolve.headers["x-guardian-event"] == "resolve" && resolve.sigOK == true)
        #expect(resolve.body["dedup_key"] as? String == trigger.body["dedup_key"] as? String)
        #expect(world.scratchEntries().isEmpty)
        let after = Self.json(try await guardian(["drills", "--json", "--config", world.config]).stdout)
        #expect(after.first?["result"] as? String == "PASSED" && after.first?["replica"] as? String == "file")
    }

    // MARK: - In-process drills of a file replica

    @Test func aQueryBelowItsExpectationFailsTheDrill() async throws {
        let world = try DrillWorld("drill-query")
        defer { world.cleanup() }
        try world.writeConfig()
        try await world.replicate(transactions: 5)
        let rows = try world.count()
        let live = world.liveBytes()

        let log = RecordingLog()
        let tooHigh = DrillConfig(queries: [
            DrillQuery(sql: "SELECT count(*) FROM users"),
            DrillQuery(sql: "SELECT count(*) FROM users", min: rows + 1),
        ])
        let r = await world.runner(tooHigh, log: log).run(replica: world.fileReplicaConfig, trigger: .manual)
        #expect(!r.passed && r.failure == .query, "\(r)")
        #expect(r.reason == "query SELECT count(*) FROM users: returned \(rows), expected at least \(rows + 1)", "\(r.reason ?? "")")
        #expect(r.rows == rows && r.integrity == "ok" && r.txid != nil)
        #expect(r.queries.map(\.passed) == [true, false])
        #expect(log.text.contains("recovery drill failed") && log.text.contains("failure=query"), "\(log.text)")
        #expect(world.scratchEntries().isEmpty)
        #expect(world.liveBytes() == live, "the drill wrote to the live database")

        // within-live: the live database moved on by 10 % (the app wrote after the replica stopped).
        try world.insert(Int(rows / 10) + 1)
        let liveCount = try world.count()
        let near = DrillConfig(queries: [DrillQuery(sql: "SELECT count(*) FROM users", withinLivePercent: 15)])
        let ok = await world.runner(near).run(replica: world.fileReplicaConfig, trigger: .manual)
        #expect(ok.passed, "\(ok)")
        #expect(ok.queries.first?.live == liveCount && ok.queries.first?.value == rows)
        let strict = DrillConfig(queries: [DrillQuery(sql: "SELECT count(*) FROM users", withinLivePercent: 5)])
        let off = await world.runner(strict).run(replica: world.fileReplicaConfig, trigger: .manual)
        #expect(!off.passed && off.failure == .query)
        #expect(off.reason?.contains("returned \(rows) on the copy and \(liveCount) live") == true, "\(off.reason ?? "")")
        #expect(off.reason?.contains("expected within 5%") == true)

        // A query that does not run fails with SQLite's message.
        let bad = DrillConfig(queries: [DrillQuery(sql: "SELECT count(*) FROM no_such_table")])
        let broken = await world.runner(bad).run(replica: world.fileReplicaConfig, trigger: .manual)
        #expect(!broken.passed && broken.reason?.contains("no such table") == true, "\(broken.reason ?? "")")
        #expect(world.scratchEntries().isEmpty)
    }

    @Test func notEnoughRoomOnTheScratchFilesystemFailsWithoutWriting() async throws {
        let world = try DrillWorld("drill-room", rows: 12_000)
        defer { world.cleanup() }
        try world.writeConfig()
        try await world.replicate(transactions: 3)
        let live = world.liveBytes()
        let dbSize = Int64(live[0].count)
        #expect(dbSize > 3 << 20, "the database must not fit the 3 MiB filesystem: \(dbSize)")
        let fs = try DiskKit.Tmpfs(size: "3m")
        defer { fs.unmount() }
        let log = RecordingLog()
        let drill = DrillConfig(queries: [DrillQuery(sql: "SELECT count(*) FROM users")], scratchDir: fs.path)
        let r = await world.runner(drill, log: log).run(replica: world.fileReplicaConfig, trigger: .schedule)
        #expect(!r.passed && r.failure == .space, "\(r)")
        #expect(r.reason?.hasPrefix("not enough room in \(fs.path) for the restored copy: it needs about ") == true, "\(r.reason ?? "")")
        #expect(r.reason?.contains("set the drill's scratch-dir: to a larger filesystem") == true)
        #expect(r.integrity == nil && r.txid == nil, "nothing was restored or checked")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: fs.path)) ?? ["?"]).isEmpty, "nothing written to the scratch filesystem")
        
        #expect(world.liveBytes() == live)
        #expect(DrillFailure.space.severity == .warning && DrillFailure.restore.severity == .critical)
        #expect(log.text.contains("failure=space"), "\(log.text)")

        // The same drill with room passes.
        let roomy = await world.runner(DrillConfig(queries: drill.queries)).run(replica: world.fileReplicaConfig, trigger: .schedule)
        #expect(roomy.passed, "\(roomy)")
        let c = try SQLiteConnection(path: world.db, mode: .readOnly)
        let logical = (try c.scalar("PRAGMA page_count")?.int64 ?? 0) * (try c.scalar("PRAGMA page_size")?.int64 ?? 0)
        #expect(roomy.bytes == logical, "the restored copy is the database's size: \(roomy.bytes ?? 0) vs \(logical)")
    }

    @Test(.timeLimit(.minutes(2)))
    func aDrillOverItsBudgetFailsAndRemovesTheCopy() async throws {
        let world = try DrillWorld("drill-budget")
        defer { world.cleanup() }
        try world.writeConfig()
        try await world.replicate(transactions: 3)
        // The restore step outlasts the budget (the hook runs inside it, after
        // the copy directory was made): the budget, not planning, ends the drill.
        let seen = Shared<[(path: String, existed: Bool, entries: [String])]>([])
        var runner = world.runner(DrillConfig(queries: [DrillQuery(sql: "SELECT count(*) FROM users")], budget: .seconds(3)))
        runner.willRestore = { dir in
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
            seen.withLock { $0.append((dir, FileManager.default.fileExists(atPath: dir), entries)) }
            try? await Task.sleep(for: .seconds(60))
        }
        let started = ContinuousClock.now
        let r = await runner.run(replica: world.fileReplicaConfig, trigger: .manual)
        #expect(ContinuousClock.now - started < .seconds(30), "the restore was cancelled at the budget, not waited for")
        #expect(!r.passed && r.failure == .budget, "\(r)")
        #expect(r.reason == "over the budget of 3.0s: the restore did not finish in time", "\(r.reason ?? "")")
        let copy = try #require(seen.withLock { $0.first }, "the drill reached the restore")
        #expect(copy.existed && copy.entries == [DrillRunner.lockName], "the copy directory existed, locked: \(copy)")
        #expect(!FileManager.default.fileExists(atPath: copy.path), "the copy is removed")
        #expect(world.scratchEntries().isEmpty, "\(world.scratchEntries())")
    }

    @Test(.timeLimit(.minutes(2)))
    func readingTheNewestHeaderCountsAgainstTheBudget() async throws {
        /// The replica's files, but reading a header takes 30 s.
        struct SlowHeaderReplica: ReplicaClient {
            let base: FileReplicaClient
            var target: ReplicaTarget { base.target }
            func listFiles(level: Int, exactTimestamps: Bool) async throws -> [LTXFileInfo] {
                try await base.listFiles(level: level, exactTimestamps: exactTimestamps)
            }
            func writeFile(level: Int, minTXID: UInt64, maxTXID: UInt64, contents: LTXPayload, createdAt: Date) async throws -> LTXFileInfo {
                try await base.writeFile(level: level, minTXID: minTXID, maxTXID: maxTXID, contents: contents, createdAt: createdAt)
            }
            func downloadFile(_ file: LTXFileInfo, to localPath: String) async throws { try await base.downloadFile(file, to: localPath) }
            func readFile(_ file: LTXFileInfo) async throws -> [UInt8] { try await base.readFile(file) }
            func readPrefix(_ file: LTXFileInfo, count: Int) async throws -> [UInt8] {
                try await Task.sleep(for: .seconds(30))
                return try await base.readPrefix(file, count: count)
            }
            func deleteFiles(_ files: [LTXFileInfo]) async throws { try await base.deleteFiles(files) }
            func deleteAll() async throws { try await base.deleteAll() }
            func readMarker() async throws -> [UInt8]? { try await base.readMarker() }
            func writeMarker(_ bytes: [UInt8]) async throws { try await base.writeMarker(bytes) }
        }
        let world = try DrillWorld("drill-header-budget")
        defer { world.cleanup() }
        try world.writeConfig()
        try await world.replicate(transactions: 3)
        let root = world.fileReplica
        let runner = DrillRunner(
            database: world.db, config: DrillConfig(budget: .seconds(2)), scratchDir: world.scratch, logger: RecordingLog().logger(),
            makeClient: { _ in SlowHeaderReplica(base: FileReplicaClient(root: root)) })
        let started = ContinuousClock.now
        let r = await runner.run(replica: world.fileReplicaConfig, trigger: .manual)
        #expect(ContinuousClock.now - started < .seconds(15), "stopped at the budget")
        #expect(r.failure == .budget && r.reason == "over the budget of 2.0s: reading the newest LTX header did not finish in time", "\(r)")
        #expect(world.scratchEntries().isEmpty)
    }

    // MARK: - Drills side by side

    @Test func theGateGivesTurnsInOrderAndLetsAWaiterBeCancelled() async throws {
        let gate = DrillGate()
        let order = Shared<[Int]>([])
        let (release, releaser) = AsyncStream<Void>.makeStream()
        let holder = Task { try await gate.withTurn { for await _ in release {}; order.withLock { $0.append(0) } } }
        #expect(await TestSupport.waitUntil { await gate.isHeld })
        var waiters: [Task<Void, any Error>] = []
        for n in 1...3 {
            waiters.append(Task { try await gate.withTurn { order.withLock { $0.append(n) } } })
            #expect(await TestSupport.waitUntil { await gate.waiting == n })
        }
        // A waiter cancelled leaves the queue at once, while the turn is still held.
        waiters[1].cancel()
        let cancelled = await waiters[1].result
        #expect(throws: CancellationError.self) { try cancelled.get() }
        #expect(await gate.waiting == 2 && order.withLock { $0 }.isEmpty)
        releaser.finish()
        try await holder.value
        for w in [waiters[0], waiters[2]] { try await w.value }
        #expect(order.withLock { $0 } == [0, 1, 3], "first come, first served; the cancelled one never ran")
        // A turn that throws is handed back too.
        struct Boom: Error {}
        await #expect(throws: Boom.self) { try await gate.withTurn { throw Boom() } }
        #expect(await gate.isHeld == false)
        #expect(await gate.waiting == 0)
        let after = try await gate.withTurn { 42 }
        #expect(after == 42)
    }

    @Test(.timeLimit(.minutes(2)))
    func drillsOfOneProcessTakeTurns() async throws {
        let world = try DrillWorld("drill-turns")
        defer { world.cleanup() }
        try world.writeConfig()
        try await world.replicate(transactions: 3)
        let gate = DrillGate()
        // Two drills started together, each slow in its restore: never both at once.
        let active = Shared((now: 0, most: 0, dirs: [String]()))
        func runner() -> DrillRunner {
            var r = world.runner(DrillConfig(queries: [DrillQuery(sql: "SELECT count(*) FROM users")]))
            r.gate = gate
            r.willRestore = { dir in
                active.withLock {
                    $0.now += 1
                    $0.most = max($0.most, $0.now)
                    $0.dirs.append(dir)
                }
                try? await Task.sleep(for: .seconds(1))
                active.withLock { $0.now -= 1 }
            }
            return r
        }
        let replica = world.fileReplicaConfig
        async let a = runner().run(replica: replica, trigger: .schedule)
        async let b = runner().run(replica: replica, trigger: .manual)
        let (ra, rb) = await (a, b)
        #expect(ra.passed && rb.passed, "\(ra) \(rb)")
        let seen = active.withLock { $0 }
        #expect(seen.dirs.count == 2 && seen.most == 1, "the drills overlapped: \(seen)")
        let (first, second) = ra.startedAt < rb.startedAt ? (ra, rb) : (rb, ra)
        #expect(second.startedAt.timeIntervalSince(first.startedAt) >= first.durationSeconds - 0.05, "the budget starts with the turn")
        // The copy directories carry a hash of the database path.
        let prefix = DrillRunner.copyPrefix(database: world.db, replica: "file")
        #expect(seen.dirs.allSatisfy { ($0 as NSString).lastPathComponent.hasPrefix(prefix) }, "\(seen.dirs) \(prefix)")
        #expect(prefix != DrillRunner.copyPrefix(database: world.dir + "/other/app.db", replica: "file"))
        #expect(prefix.count == "drill-".count + 8 + "-file-".count)

        // A drill cancelled while it waits for its turn is interrupted and makes nothing.
        let (release, releaser) = AsyncStream<Void>.makeStream()
        let holder = Task { try await gate.withTurn { for await _ in release {} } }
        #expect(await TestSupport.waitUntil { await gate.isHeld })
        let waiting = Task { await runner().run(replica: replica, trigger: .schedule) }
        #expect(await TestSupport.waitUntil { await gate.waiting == 1 })
        waiting.cancel()
        let r = await waiting.value
        #expect(r.interrupted && !r.passed, "\(r)")
        #expect(await gate.waiting == 0 && world.scratchEntries().isEmpty)
        releaser.finish()
        try await holder.value
    }

    @Test(.timeLimit(.minutes(2)))
    func onlyCopiesWhoseLockIsFreeAreStale() async throws {
        let world = try DrillWorld("drill-stale-lock")
        defer { world.cleanup() }
        // A `guardian drill` (another process) in a minute-long query, so its copy stays.
        world.drill = """
                drill:
                  budget: 5m
                  scratch-dir: \(world.scratch)
                  queries:
                    - sql: WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) SELECT count(*) FROM c
            """
        try world.writeConfig()
        try await world.replicate(transactions: 3)
        let child = try ChildProcess.start(TestSupport.guardianBinary, ["drill", "--config", world.config], environment: world.environment)
        defer { child.removeFiles() }
        func copies() -> [String] {
            world.scratchEntries().filter { name in
                ((try? FileManager.default.contentsOfDirectory(atPath: world.scratch + "/" + name)) ?? []).contains("app.db")
            }
        }
        let copying = await TestSupport.waitUntil(timeout: .seconds(30)) { !copies().isEmpty }
        #expect(copying, "no copy appeared: \(child.stderr)")
        let running = try #require(copies().first)
        #expect(running.hasPrefix(DrillRunner.copyPrefix(database: world.db, replica: "file")), "\(running)")

        // Left by killed drills: a free lock, and (an older guardian's) no lock at all.
        let free = world.scratch + "/drill-00000000-file-Free11"
        let legacy = world.scratch + "/drill-file-Old222"
        let young = world.scratch + "/drill-00000000-file-Young3"
        let held = world.scratch + "/drill-00000000-file-Held44"
        for d in [free, legacy, young, held] { try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true) }
        for d in [free, young, held] { try TestSupport.write("", to: d + "/" + DrillRunner.lockName) }
        // Held by this process on a descriptor of its own, like a drill of the daemon.
        let fd = open(held + "/" + DrillRunner.lockName, O_RDWR)
        #expect(fd >= 0 && flock(fd, LOCK_EX) == 0)
        // Everything but `young` looks hours old, the running copy too.
        for d in [free, legacy, held, world.scratch + "/" + running] {
            var times = [timeval(tv_sec: time(nil) - 7200, tv_usec: 0), timeval(tv_sec: time(nil) - 7200, tv_usec: 0)]
            #expect(utimes(d, &times) == 0)
        }

        let log = RecordingLog()
        let runner = world.runner(DrillConfig(), log: log)
        let removed = await runner.removeStaleCopies()
        #expect(removed.sorted() == [legacy, free].sorted(), "\(removed)")
        #expect(world.scratchEntries() == ["drill-00000000-file-Held44", "drill-00000000-file-Young3", running].sorted(), "\(world.scratchEntries())")
        #expect(log.text.contains("removing a drill copy left behind by an earlier run"), "\(log.text)")
        close(fd)
        #expect(await runner.removeStaleCopies() == [held], "a lock let go of makes the copy stale")
        #expect(world.scratchEntries().contains(running), "the running drill keeps its copy")

        child.signal(SIGINT)
        #expect(await child.wait(timeout: .seconds(20)) == 130, "\(child.stdout) \(child.stderr)")
        #expect(world.scratchEntries() == ["drill-00000000-file-Young3"], "\(world.scratchEntries())")
    }

    @Test(.timeLimit(.minutes(3)))
    func aDrillOfAnSFTPReplicaHasASessionOfItsOwn() async throws {
        let world = try DrillWorld("drill-sftp-session")
        defer { world.cleanup() }
        try await SharedPeers.withSSH { ssh in
            try await sftpSession(world, ssh)
        }
    }

    private func sftpSession(_ world: DrillWorld, _ ssh: SSHServer) async throws {
        let path = ssh.dataDir + "/drill-\(UUID().uuidString.prefix(6))"
        world.extraReplicas = """
                  - name: sftp
                    type: sftp
                    host: \(ssh.host):\(ssh.port)
                    user: \(ssh.user)
                    key-path: \(ssh.clientKey)
                    known-hosts: \(ssh.knownHosts)
                    path: \(path)
            """
        try world.writeConfig()
        try await world.replicate(transactions: 3)
        let target = ReplicaTarget.sftp(SFTPLocation(host: ssh.host, port: ssh.port, user: ssh.user, path: path, keyPath: ssh.clientKey, knownHosts: ssh.knownHosts))
        // The session the shipper, status and restores of this process share, open.
        let shipper = try #require(try ReplicaClients.make(target) as? SFTPReplicaClient)
        _ = try await shipper.listFiles(level: 0, exactTimestamps: false)
        #expect(await shipper.connection.isConnected)
        let drills = try #require(try ReplicaClients.make(target, purpose: .drill) as? SFTPReplicaClient)
        let (shipperBefore, drillBefore) = (shipper.requestCount, drills.requestCount)

        let r = await world.runner(DrillConfig(queries: [DrillQuery(sql: "SELECT count(*) FROM users")]))
            .run(replica: ReplicaConfig(name: "sftp", target: target), trigger: .manual)
        let rows = try world.count()
        #expect(r.passed && r.rows == rows, "\(r)")
        #expect(shipper.requestCount == shipperBefore, "the drill's downloads went through replication's session")
        #expect(drills.requestCount > drillBefore, "the drill used a session of its own")
        #expect(await drills.connection.isConnected == false, "the drill closed its session")
        #expect(await shipper.connection.isConnected, "replication's session stays open")
        await shipper.disconnect()
    }

    @Test(.timeLimit(.minutes(2)))
    func anInterruptedDrillRemovesItsCopyAndRecordsNothing() async throws {
        let world = try DrillWorld("drill-sigint")
        defer { world.cleanup() }
        // A query that runs for about a minute: the drill is interrupted in it.
        world.drill = """
                drill:
                  budget: 5m
                  scratch-dir: \(world.scratch)
                  queries:
                    - sql: WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) SELECT count(*) FROM c
            """
        try world.writeConfig()
        try await world.replicate(transactions: 3)
        let child = try ChildProcess.start(TestSupport.guardianBinary, ["drill", "--config", world.config], environment: world.environment)
        defer { child.removeFiles() }
        let copying = await TestSupport.waitUntil(timeout: .seconds(30)) {
            world.scratchEntries().contains { name in
                ((try? FileManager.default.contentsOfDirectory(atPath: world.scratch + "/" + name)) ?? []).contains("app.db")
            }
        }
        #expect(copying, "no copy appeared: \(child.stderr)")
        try await Task.sleep(for: .milliseconds(500))
        child.signal(SIGINT)
        let started = ContinuousClock.now
        let status = await child.wait(timeout: .seconds(20))
        #expect(status == 130, "\(child.stdout) \(child.stderr)")
        #expect(ContinuousClock.now - started < .seconds(5), "the running statement was interrupted, not waited for")
        #expect(child.stderr.contains("drill interrupted; its copy was removed and nothing was recorded"), "\(child.stderr)")
        #expect(world.scratchEntries().isEmpty, "\(world.scratchEntries())")
        let history = try await guardian(["drills", "--json", "--config", world.config])
        #expect(history.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "[\n\n]" || Self.json(history.stdout).isEmpty, "\(history.stdout)")
    }

    // MARK: - Schedule, history, status

    @Test(.timeLimit(.minutes(2)))
    func theServiceSchedulesFromTheLastRecordedDrill() async throws {
        let world = try DrillWorld("drill-service")
        defer { world.cleanup() }
        try world.writeConfig()
        try await world.replicate(transactions: 3)
        let store = StateStore(stateDir: world.state)
        // A drill recorded two hours ago; the interval is one hour: overdue.
        var old = DrillResult(database: world.db, replica: "file", destination: "file://\(world.fileReplica)", startedAt: Date().addingTimeInterval(-7200), trigger: .manual)
        old.passed = true
        old.integrity = "ok"
        try await store.recordDrill(old)

        final class Published: @unchecked Sendable {
            let lock = NSLock()
            var all: [DrillStatus] = []
            func add(_ s: DrillStatus) { lock.withLock { all.append(s) } }
            var last: DrillStatus? { lock.withLock { all.last } }
        }
        let config = DrillConfig(schedule: .every(.seconds(3600)), queries: [DrillQuery(sql: "SELECT count(*) FROM users")], scratchDir: world.scratch)
        let timing = DrillService.Timing(tick: .milliseconds(50), catchUp: .milliseconds(300), timeZone: TimeZone(identifier: "UTC")!)
        func service(_ published: Published) -> DrillService {
            DrillService(
                database: world.db, replicas: [world.fileReplicaConfig], config: config, stateDir: world.state,
                alerter: Alerter(destinations: [], transport: HTTPAlertTransport(), store: nil, logger: RecordingLog().logger()),
                runsAlerter: false, logger: RecordingLog().logger(), timing: timing, onStatus: { published.add($0) })
        }

        // Copies a killed guardian left behind go at the start; a recent one (a running drill) stays.
        let stale = world.scratch + "/drill-file-AbC123"
        let recent = world.scratch + "/drill-file-XyZ789"
        for d in [stale, recent] { try FileManager.default.createDirectory(atPath: d + "/sub", withIntermediateDirectories: true) }
        try TestSupport.write("old copy", to: stale + "/app.db")
        var times = [timeval(tv_sec: time(nil) - 7200, tv_usec: 0), timeval(tv_sec: time(nil) - 7200, tv_usec: 0)]
        #expect(utimes(stale, &times) == 0)

        let first = Published()
        let a = service(first)
        let running = Task { await a.schedule() }
        let ran = await TestSupport.waitUntil(timeout: .seconds(30)) { ((try? await store.drills(database: world.db)) ?? []).count == 2 }
        #expect(ran, "the overdue drill ran")
        let done = await TestSupport.waitUntil(timeout: .seconds(10)) { first.last?.last?.trigger == "schedule" && first.last?.running == false }
        running.cancel()
        await running.value
        #expect(done)
        let newest = try #require(try await store.drills(database: world.db).first)
        let rows = try world.count()
        #expect(newest.trigger == .schedule && newest.passed && newest.rows == rows)
        #expect(first.all.contains { $0.running }, "published while running")
        let next = try #require(first.last?.nextAt.flatMap(Timestamps.parse))
        #expect(abs(next.timeIntervalSince(newest.startedAt) - 3600) < 2, "next = last drill + 1 h: \(next) vs \(newest.startedAt)")
        #expect(first.last?.last?.result == "PASSED" && first.last?.replicas.count == 1)
        #expect(world.scratchEntries() == ["drill-file-XyZ789"], "\(world.scratchEntries())")
        try FileManager.default.removeItem(atPath: recent)

        // A restart: the next drill still counts from the one recorded, not from the start.
        try await Task.sleep(for: .seconds(1))
        let second = Published()
        let b = service(second)
        let again = Task { await b.schedule() }
        _ = await TestSupport.waitUntil(timeout: .seconds(5)) { second.last != nil }
        try await Task.sleep(for: .seconds(1))
        again.cancel()
        await again.value
        #expect(((try? await store.drills(database: world.db)) ?? []).count == 2, "no drill right after a restart")
        let resumed = try #require(second.last?.nextAt.flatMap(Timestamps.parse))
        #expect(abs(resumed.timeIntervalSince(next)) < 0.01, "\(resumed) vs \(next)")
        #expect(second.last?.last?.id == newest.id, "the last drill is shown after a restart")
    }

    @Test func statusDocumentAndTextShowTheLastDrill() async throws {
        var passed = DrillResult(database: "/data/app.db", replica: "s3", destination: "s3://bucket/app", startedAt: Date(timeIntervalSince1970: 1_795_000_000), trigger: .schedule)
        passed.passed = true
        passed.rows = 150_000
        passed.integrity = "ok"
        passed.durationSeconds = 8.5
        passed.txid = 0x1234
        var failed = DrillResult(database: "/data/app.db", replica: "file", destination: "file:///backup/app", startedAt: Date(timeIntervalSince1970: 1_794_999_000), trigger: .schedule)
        failed.failure = .restore
        failed.reason = "restore failed: checksum mismatch"
        let status = DrillStatus(
            path: "/data/app.db", schedule: "weekly sun 03:00 (local time)", nextAt: "2026-11-29T03:00:00.000Z", running: false,
            last: passed.summary, replicas: [failed.summary, passed.summary])

        let board = StatusBoard(configPath: "/etc/guardian/guardian.yml", databasePaths: ["/data/app.db"])
        await board.updateDrill(status)
        let doc = await board.document()
        let data = try StatusDocument.encoder().encode(doc)
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let drills = try #require(object["drills"] as? [[String: Any]])
        #expect(drills.count == 1 && drills[0]["path"] as? String == "/data/app.db" && drills[0]["next_at"] as? String == "2026-11-29T03:00:00.000Z")
        let last = try #require(drills[0]["last"] as? [String: Any])
        for key in ["started_at", "duration_seconds", "result", "replica", "destination", "txid", "rows", "integrity", "trigger"] {
            #expect(last[key] != nil, "key \(key) in \(last)")
        }
        #expect(last["txid"] as? String == "0000000000001234" && last["result"] as? String == "PASSED")
        #expect(try StatusDocument.decoder().decode(StatusDocument.self, from: data).drills == [status], "round trip")

        // The status table's clock (its time zone and now) shows the drill lines too:
        // the drills ran 2026-11-18 11:06:40 and 10:50:00 UTC, the same day as `now` in Bangkok (+7).
        let bangkok = try #require(TimeZone(identifier: "Asia/Bangkok"))
        let text = StatusTable.render(doc, StatusTable.Options(now: Date(timeIntervalSince1970: 1_795_003_600), timeZone: bangkok))
        #expect(text.contains("  last drill: PASSED 18:06:40 app.db <- s3 | 150,000 rows | integrity ok | 8.5 s | next 2026-11-29 10:00:00\n"), "\(text)")
        #expect(text.contains("  drill of file: FAILED 17:50:00 app.db <- file | restore failed: checksum mismatch\n"), "\(text)")
        let utc = StatusTable.render(doc, StatusTable.Options(now: Date(timeIntervalSince1970: 1_795_500_000), timeZone: try #require(TimeZone(identifier: "UTC"))))
        #expect(utc.contains("  last drill: PASSED 2026-11-18 11:06:40 app.db <- s3 | "), "\(utc)")
        #expect(DrillText.rows(150_000) == "150,000" && DrillText.rows(999) == "999" && DrillText.rows(1_000) == "1,000" && DrillText.rows(nil) == "-")
        let clock = StatusTable.Clock(now: Date(), timeZone: bangkok)
        #expect(DrillText.entry(passed.summary, detailed: false, clock: clock) == " [PASSED] 2026-11-18 18:06 — app.db <- s3 (s3://bucket/app)\n   Rows: 150,000 | Integrity: OK | Duration: 8.5s\n")
        #expect(clock.stamp("2026-11-18T11:06:40.900Z", seconds: true) == "2026-11-18 18:06:40" && clock.stamp("garbage") == "garbage")
        #expect(DrillText.entry(passed.summary, detailed: false).contains(StatusTable.Clock.local.stamp(passed.summary.startedAt)), "history entries: local time")
    }

    @Test(.timeLimit(.minutes(2)))
    func theDaemonRunsScheduledDrillsAndShowsThemInStatus() async throws {
        let world = try DrillWorld("drill-daemon")
        defer { world.cleanup() }
        let socket = world.dir + "/guardian.sock"
        world.drill = """
                drill:
                  interval: 2s
                  scratch-dir: \(world.scratch)
                  queries:
                    - sql: SELECT count(*) FROM users
            """
        world.topLevel = "status:\n  socket: \(socket)\n"
        try world.writeConfig()
        let child = try ChildProcess.start(TestSupport.guardianBinary, ["run", "--config", world.config, "--log-target", "stderr"])
        defer { child.removeFiles() }
        let shown = await TestSupport.waitUntil(timeout: .seconds(40)) {
            guard let r = try? await guardian(["status", "--socket", socket, "--json"]), r.status == 0,
                let o = try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any],
                let drills = o["drills"] as? [[String: Any]], let last = drills.first?["last"] as? [String: Any]
            else { return false }
            return last["result"] as? String == "PASSED" && last["trigger"] as? String == "schedule"
        }
        #expect(shown, "no passed drill in the status: \(child.stderr.suffix(3000))")
        let table = try await guardian(["status", "--socket", socket])
        #expect(table.stdout.contains("last drill: PASSED ") && table.stdout.contains(" app.db <- file | "), "\(table.stdout)")
        child.signal(SIGTERM)
        #expect(await child.wait(timeout: .seconds(30)) == 0, "\(child.stderr.suffix(3000))")
        #expect(child.stderr.contains("recovery drill passed"), "the event is logged")
        let history = try await guardian(["drills", "--config", world.config])
        #expect(history.stdout.contains(" [PASSED] ") && history.stdout.contains("app.db <- file"), "\(history.stdout)")
        #expect(world.scratchEntries().isEmpty)
    }

    @Test func theJournalCatalogExplainsEveryDrillEvent() {
        #expect(JournalCatalog.problems(GuardianEvent.everyKind).isEmpty, "\(JournalCatalog.problems(GuardianEvent.everyKind))")
        let names = Set(GuardianEvent.everyKind.map(\.name))
        for e in ["drillStarted", "drillScheduled", "drillPassed", "drillFailed", "drillInterrupted"] {
            #expect(names.contains(e), "\(e) is not in GuardianEvent.everyKind")
        }
        let catalog = JournalCatalog.render(GuardianEvent.everyKind)
        #expect(catalog.contains("-- \(GuardianEvent.drillStarted.id)") && catalog.contains("-- \(GuardianEvent.drillInterrupted.id)"))
    }
}
