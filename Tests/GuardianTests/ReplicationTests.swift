import Foundation
import Testing
@testable import Platform
@testable import Replication

/// End-to-end replication against real databases: the built `guardian
/// replicate` process, a writer in this process, and restores by both
/// `guardian restore` and the real `litestream restore` (0.5.17).
@Suite(.serialized) struct ReplicationTests {
    static var litestream: String { TestSupport.venvBin + "/litestream" }

    final class Fixture: @unchecked Sendable {
        let dir: String
        let db: String
        let replica: String
        var replicator: ChildProcess?

        init(_ label: String) async throws {
            dir = try TestSupport.makeTempDir(label)
            db = dir + "/app.db"
            replica = dir + "/replica"
            let c = try SQLiteConnection(path: db, mode: .readWriteCreate)
            try c.execute("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, pad BLOB)")
        }

        func startGuardian() throws {
            replicator = try ChildProcess.start(TestSupport.guardianBinary, ["replicate", "--state-dir", dir + "/state", db, "file://" + replica])
        }

        func stopGuardian(signal: Int32 = SIGTERM) async -> Int32? {
            guard let r = replicator else { return nil }
            r.signal(signal)
            let status = await r.wait(timeout: .seconds(30))
            replicator = nil
            return status
        }

        /// The newest TXID on the replica (from file names).
        func replicaTXID() -> UInt64 {
            var best: UInt64 = 0
            for level in 0...9 {
                let names = (try? FileManager.default.contentsOfDirectory(atPath: "\(replica)/ltx/\(level)")) ?? []
                for n in names { if let (_, hi) = LTXNaming.parse(fileName: n) { best = max(best, hi) } }
            }
            return best
        }

        func rows(_ path: String) async throws -> String {
            try await sqlite3(path, "SELECT count(*), coalesce(sum(id),0), coalesce(max(v),'') FROM t")
        }

        deinit {
            if let r = replicator { r.signal(SIGKILL) }
            TestSupport.cleanup(dir)
        }
    }

    /// Inserts `count` one-row transactions.
    static func write(_ db: String, from start: Int, count: Int, padding: Int = 100) throws {
        let c = try SQLiteConnection(path: db, mode: .readWrite)
        for i in start..<(start + count) {
            try c.query("INSERT INTO t(id, v, pad) VALUES (?, ?, randomblob(?))", [.integer(Int64(i)), .text("row-\(i)"), .integer(Int64(padding))])
        }
    }

    static func waitForReplica(_ f: Fixture, atLeast txid: UInt64) async -> Bool {
        await TestSupport.waitUntil(timeout: .seconds(20)) { f.replicaTXID() >= txid }
    }

    /// Until a restore of the replica holds `count` rows.
    static func waitForRestoredRows(_ f: Fixture, _ count: Int) async -> Bool {
        await TestSupport.waitUntil(timeout: .seconds(20)) {
            let out = f.dir + "/probe-\(UUID().uuidString.prefix(6)).db"
            let r = try? await guardian(["restore", "--integrity-check", "none", "-o", out, "file://" + f.replica])
            defer { unlink(out) }
            guard r?.status == 0 else { return false }
            return (try? await sqlite3(out, "SELECT count(*) FROM t")) == "\(count)"
        }
    }

    /// `guardian replicate` without a state dir once staged in the
    /// predictable /tmp/guardian-<uid>, accepted it when another user had
    /// made it and followed links planted there: root overwrote the link's
    /// target with a copy of the database. Now it stages in a new private
    /// directory (mkdtemp, 0700) that it removes on exit.
    @Test(.enabled(if: geteuid() == 0))
    func replicateWithoutAStateDirNeverUsesAPredictableSharedDirectory() async throws {
        let f = try await Fixture("repl-tmp")
        let victim = f.dir + "/victim"
        _ = FileManager.default.createFile(atPath: victim, contents: Data("victim".utf8))
        chmod(victim, 0o600)
        // The old default, made first by another user (nobody), links planted.
        let shared = "/tmp/guardian-\(getuid())"
        let key = f.db.replacingOccurrences(of: "/", with: "_")
        var planted = false
        if access(shared, F_OK) != 0 {
            mkdir(shared, 0o777)
            mkdir(shared + "/staging", 0o777)
            mkdir(shared + "/staging/" + key, 0o777)
            for d in [shared, shared + "/staging", shared + "/staging/" + key] {
                chmod(d, 0o777)
                chown(d, 65534, 65534)
            }
            for name in ["image-0000000000000001.ltx", "snapshot-0000000000000001.ltx"] {
                symlink(victim, shared + "/staging/" + key + "/" + name)
            }
            planted = true
        }
        defer { if planted { try? FileManager.default.removeItem(atPath: shared) } }
        let tmp = f.dir + "/tmp"
        mkdir(tmp, 0o755)
        try Self.write(f.db, from: 1, count: 5)
        f.replicator = try ChildProcess.start(TestSupport.guardianBinary, ["replicate", f.db, "file://" + f.replica], environment: ["TMPDIR": tmp])
        #expect(await Self.waitForReplica(f, atLeast: 1), "no snapshot: \(f.replicator?.stderr ?? "")")
        let scratch = try FileManager.default.contentsOfDirectory(atPath: tmp)
        #expect(scratch.count == 1 && scratch.first?.hasPrefix("guardian-replicate-") == true, "\(scratch)")
        if let name = scratch.first {
            var st = stat()
            #expect(lstat(tmp + "/" + name, &st) == 0 && st.st_mode & 0o777 == 0o700 && st.st_uid == geteuid())
        }
        #expect(await f.stopGuardian() == 0)
        #expect(Self.content(victim) == "victim")
        if planted {
            let left = try FileManager.default.contentsOfDirectory(atPath: shared + "/staging/" + key).sorted()
            #expect(left == ["image-0000000000000001.ltx", "snapshot-0000000000000001.ltx"], "\(left)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: tmp).isEmpty, "the scratch directory is removed on exit")
    }

    static func content(_ path: String) -> String {
        (try? String(contentsOfFile: path, encoding: .utf8)) ?? "<unreadable>"
    }

    @Test func replicaRestoresToTheSameContentWithGuardianAndLitestream() async throws {
        let f = try await Fixture("repl")
        try f.startGuardian()
        #expect(await Self.waitForReplica(f, atLeast: 1), "no snapshot: \(f.replicator?.stderr ?? "")")
        try Self.write(f.db, from: 1, count: 200)
        // One LTX file per transaction while guardian keeps up; what queues
        // up while a file is written (more than 32 transactions) goes into
        // one file. Every transaction reaches the replica.
        #expect(await Self.waitForRestoredRows(f, 200), "replica at \(f.replicaTXID()): \(f.replicator?.stderr ?? "")")
        let level0 = try FileManager.default.contentsOfDirectory(atPath: f.replica + "/ltx/0").filter { $0.hasSuffix(".ltx") }
        #expect(level0.count >= 2, "expected the first image and the transactions' files, got \(level0.count)")
        #expect(await f.stopGuardian() == 0)

        let expected = try await f.rows(f.db)
        let mine = f.dir + "/guardian-restored.db"
        let r = try await guardian(["restore", "-o", mine, "file://" + f.replica])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try await f.rows(mine) == expected)
        #expect(try await sqlite3(mine, "PRAGMA integrity_check") == "ok")

        let theirs = f.dir + "/litestream-restored.db"
        let l = try await run(Self.litestream, ["restore", "-o", theirs, "file://" + f.replica], environment: ["AWS_CA_BUNDLE": ""])
        #expect(l.status == 0, "\(l.stderr)")
        #expect(try await f.rows(theirs) == expected)
        // guardian adds nothing to the application's database.
        #expect(try await sqlite3(f.db, "SELECT group_concat(name) FROM sqlite_schema") == "t")
        #expect(try await sqlite3(theirs, "SELECT group_concat(name) FROM sqlite_schema") == "t")
    }

    @Test func survivesKillNineAndResumesWithoutAGap() async throws {
        let f = try await Fixture("crash")
        try f.startGuardian()
        #expect(await Self.waitForReplica(f, atLeast: 1))
        try Self.write(f.db, from: 1, count: 100)
        #expect(await Self.waitForRestoredRows(f, 100))
        _ = await f.stopGuardian(signal: SIGKILL)
        // Written while guardian is dead; the WAL still holds it.
        try Self.write(f.db, from: 101, count: 50)
        try f.startGuardian()
        try Self.write(f.db, from: 151, count: 50)
        let caughtUp = await TestSupport.waitUntil(timeout: .seconds(20)) {
            let out = f.dir + "/probe-\(UUID().uuidString.prefix(6)).db"
            let r = try? await guardian(["restore", "--integrity-check", "none", "-o", out, "file://" + f.replica])
            defer { unlink(out) }
            guard r?.status == 0 else { return false }
            return (try? await sqlite3(out, "SELECT count(*) FROM t")) == "200"
        }
        #expect(caughtUp, "replica did not catch up: \(f.replicator?.stderr ?? "")")
        #expect(await f.stopGuardian() == 0)
        let out = f.dir + "/final.db"
        let r = try await run(Self.litestream, ["restore", "-o", out, "file://" + f.replica])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try await f.rows(out) == f.rows(f.db))
    }

    @Test func outsideCheckpointWhileGuardianIsDownForcesAFullImage() async throws {
        let f = try await Fixture("restart")
        try f.startGuardian()
        #expect(await Self.waitForReplica(f, atLeast: 1))
        try Self.write(f.db, from: 1, count: 20)
        #expect(await Self.waitForReplica(f, atLeast: 21))
        _ = await f.stopGuardian(signal: SIGKILL)
        // The application writes, checkpoints with TRUNCATE and writes again:
        // frames guardian never saw are gone from the WAL.
        try Self.write(f.db, from: 21, count: 30)
        let c = try SQLiteConnection(path: f.db, mode: .readWrite)
        let result = try c.checkpoint(.truncate)
        #expect(!result.busy)
        try Self.write(f.db, from: 51, count: 10)
        try f.startGuardian()
        #expect(await Self.waitForReplica(f, atLeast: 22))
        try Self.write(f.db, from: 61, count: 5)
        #expect(await Self.waitForReplica(f, atLeast: 27))
        #expect(await f.stopGuardian() == 0)
        let out = f.dir + "/out.db"
        let r = try await guardian(["restore", "-o", out, "file://" + f.replica])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try await f.rows(out) == f.rows(f.db))
        #expect(try await sqlite3(out, "SELECT count(*) FROM t") == "65")
    }

    @Test func applicationCheckpointsWhileReplicatingLoseNothingAndTheWALStaysSmall() async throws {
        let f = try await Fixture("ckpt")
        try f.startGuardian()
        #expect(await Self.waitForReplica(f, atLeast: 1))
        // 3000 transactions of ~2 KiB with the app checkpointing on its own
        // (RESTART and TRUNCATE too, as some apps do).
        let c = try SQLiteConnection(path: f.db, mode: .readWrite)
        var peakWAL: Int64 = 0
        for i in 1...3000 {
            try c.query("INSERT INTO t(id, v, pad) VALUES (?, ?, randomblob(2000))", [.integer(Int64(i)), .text("row-\(i)")])
            if i % 500 == 0 { _ = try c.checkpoint(i % 1000 == 0 ? .truncate : .restart) }
            var st = stat()
            if stat(f.db + "-wal", &st) == 0 { peakWAL = max(peakWAL, Int64(st.st_size)) }
        }
        #expect(peakWAL < 16 << 20, "peak WAL \(peakWAL) bytes")
        let settled = await TestSupport.waitUntil(timeout: .seconds(30)) {
            let out = f.dir + "/probe-\(UUID().uuidString.prefix(6)).db"
            defer { unlink(out) }
            let r = try? await run(Self.litestream, ["restore", "-o", out, "file://" + f.replica])
            guard r?.status == 0 else { return false }
            return (try? await sqlite3(out, "SELECT count(*) FROM t")) == "3000"
        }
        #expect(settled, "\(f.replicator?.stderr ?? "")")
        #expect(await f.stopGuardian() == 0)
        let out = f.dir + "/out.db"
        let r = try await guardian(["restore", "-o", out, "file://" + f.replica])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try await f.rows(out) == f.rows(f.db))
    }

    @Test func compactionAndRetentionKeepTheReplicaSmallAndRestorable() async throws {
        let f = try await Fixture("compact")
        let config = f.dir + "/g.yml"
        try TestSupport.write("""
            dbs:
              - path: \(f.db)
                compaction-levels: [1s, 3s]
                l0-retention: 1s
                snapshot-interval: 2s
                replicas:
                  - url: file://\(f.replica)
                    retention: 2s
            """, to: config)
        f.replicator = try ChildProcess.start(TestSupport.guardianBinary, ["replicate", "--config", config, "--state-dir", f.dir + "/state"])
        #expect(await Self.waitForReplica(f, atLeast: 1))
        let c = try SQLiteConnection(path: f.db, mode: .readWrite)
        for round in 0..<8 {
            for i in 1...25 {
                let id = round * 25 + i
                try c.query("INSERT INTO t(id, v, pad) VALUES (?, ?, randomblob(300))", [.integer(Int64(id)), .text("row-\(id)")])
            }
            try await Task.sleep(for: .milliseconds(700))
        }
        let files = { (level: Int) in ((try? FileManager.default.contentsOfDirectory(atPath: "\(f.replica)/ltx/\(level)")) ?? []).filter { $0.hasSuffix(".ltx") } }
        let compacted = await TestSupport.waitUntil(timeout: .seconds(20)) { !files(1).isEmpty && !files(9).isEmpty && files(0).count < 50 }
        #expect(compacted, "L0 \(files(0).count), L1 \(files(1).count), L9 \(files(9).count): \(f.replicator?.stderr ?? "")")
        #expect(await f.stopGuardian() == 0)
        let expected = try await f.rows(f.db)
        let mine = f.dir + "/g.db"
        let r = try await guardian(["restore", "-o", mine, "file://" + f.replica])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try await f.rows(mine) == expected)
        let theirs = f.dir + "/l.db"
        let l = try await run(Self.litestream, ["restore", "-o", theirs, "file://" + f.replica])
        #expect(l.status == 0, "\(l.stderr)")
        #expect(try await f.rows(theirs) == expected)
    }
}
