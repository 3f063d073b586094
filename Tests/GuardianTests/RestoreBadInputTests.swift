import Foundation
import Testing
@testable import Platform
@testable import Replication

/// Bad replicas and bad arguments: each gets a clear error naming the file or
/// the point, a non-zero exit, and neither the live database nor an existing
/// OUT is touched.
@Suite struct RestoreBadInputTests {
    /// A replica of `db` written by guardian itself: a snapshot plus `count` transactions.
    static func makeReplica(_ dir: String, count: Int = 20, pageSize: Int = 4096) async throws -> (db: String, replica: String) {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let db = dir + "/app.db"
        let replica = dir + "/replica"
        let c = try SQLiteConnection(path: db, mode: .readWriteCreate)
        try c.execute("PRAGMA page_size=\(pageSize); PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        let g = try ChildProcess.start(TestSupport.guardianBinary, ["replicate", "--state-dir", dir + "/state", db, "file://" + replica])
        defer { g.removeFiles() }
        _ = await TestSupport.waitUntil { FileManager.default.fileExists(atPath: replica + "/ltx/0/0000000000000001-0000000000000001.ltx") }
        for i in 1...count { try c.query("INSERT INTO t(v) VALUES (?)", [.text("row-\(i)")]) }
        let last = LTXNaming.fileName(minTXID: UInt64(count + 1), maxTXID: UInt64(count + 1))
        _ = await TestSupport.waitUntil { FileManager.default.fileExists(atPath: replica + "/ltx/0/" + last) }
        g.signal(SIGTERM)
        await g.wait()
        return (db, replica)
    }

    static func l0(_ replica: String, _ txid: UInt64) -> String {
        "\(replica)/ltx/0/\(LTXNaming.fileName(minTXID: txid, maxTXID: txid))"
    }

    /// Runs `guardian restore` onto an existing OUT and checks the failure left it alone.
    static func expectFailure(_ args: [String], out: String, mentioning needle: String) async throws {
        try TestSupport.write("precious", to: out)
        let r = try await guardian(["restore", "--force", "-o", out] + args)
        #expect(r.status != 0)
        #expect(r.stderr.contains(needle), "stderr: \(r.stderr)")
        #expect((try? String(contentsOfFile: out, encoding: .utf8)) == "precious")
        #expect(!FileManager.default.fileExists(atPath: out + ".tmp"))
    }

    @Test func corruptAndMissingFilesAreNamed() async throws {
        let dir = try TestSupport.makeTempDir("badltx")
        defer { TestSupport.cleanup(dir) }
        let (db, replica) = try await Self.makeReplica(dir)
        let before = try Data(contentsOf: URL(fileURLWithPath: db))
        let out = dir + "/out.db"

        // A bit flipped inside a page of transaction 5.
        let five = Self.l0(replica, 5)
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: five)))
        let saved = bytes
        bytes[110] ^= 0x40
        try Data(bytes).write(to: URL(fileURLWithPath: five))
        try await Self.expectFailure(["file://" + replica], out: out, mentioning: "0000000000000005-0000000000000005.ltx")
        try Data(saved).write(to: URL(fileURLWithPath: five))

        // A truncated file.
        try Data(saved.prefix(saved.count - 20)).write(to: URL(fileURLWithPath: five))
        try await Self.expectFailure(["file://" + replica], out: out, mentioning: "truncated")
        try Data(saved).write(to: URL(fileURLWithPath: five))

        // A file missing in the middle of the chain.
        try FileManager.default.moveItem(atPath: five, toPath: dir + "/aside.ltx")
        try await Self.expectFailure(["file://" + replica], out: out, mentioning: "missing between")
        try FileManager.default.moveItem(atPath: dir + "/aside.ltx", toPath: five)

        // Timestamp before the first restore point; TXID not in the replica.
        try await Self.expectFailure(["--timestamp", "2001-01-01T00:00:00Z", "file://" + replica], out: out, mentioning: "before the earliest restore point")
        try await Self.expectFailure(["--txid", "00000000000000ff", "file://" + replica], out: out, mentioning: "cannot be reached")

        // Healthy again: it restores, and the live database was never touched.
        let ok = try await guardian(["restore", "--force", "-o", out, "file://" + replica])
        #expect(ok.status == 0, "\(ok.stderr)")
        #expect(try await sqlite3(out, "SELECT count(*) FROM t") == "20")
        #expect(try Data(contentsOf: URL(fileURLWithPath: db)) == before)
    }

    @Test func aFileFromAnotherDatabaseIsRefused() async throws {
        let dir = try TestSupport.makeTempDir("otherdb")
        defer { TestSupport.cleanup(dir) }
        let (_, replica) = try await Self.makeReplica(dir + "/a", count: 5)
        let (_, other) = try await Self.makeReplica(dir + "/b", count: 8, pageSize: 1024)
        // Transaction 4's file of database A replaced by database B's.
        try FileManager.default.removeItem(atPath: Self.l0(replica, 4))
        try FileManager.default.copyItem(atPath: Self.l0(other, 4), toPath: Self.l0(replica, 4))
        try await Self.expectFailure(["file://" + replica], out: dir + "/out.db", mentioning: "another database")
    }

    @Test func existingOutputNeedsForce() async throws {
        let dir = try TestSupport.makeTempDir("force")
        defer { TestSupport.cleanup(dir) }
        let (_, replica) = try await Self.makeReplica(dir, count: 3)
        let out = dir + "/out.db"
        try TestSupport.write("precious", to: out)
        let r = try await guardian(["restore", "-o", out, "file://" + replica])
        #expect(r.status == 1)
        #expect(r.stderr.contains("already exists; pass --force"))
        #expect((try? String(contentsOfFile: out, encoding: .utf8)) == "precious")
    }

    @Test func pointInTimeByTXIDAndTimestampIsExact() async throws {
        let dir = try TestSupport.makeTempDir("pitr")
        defer { TestSupport.cleanup(dir) }
        let (_, replica) = try await Self.makeReplica(dir, count: 10)
        // TXID 1 is the empty table; TXID n+1 holds rows 1...n.
        let out = dir + "/tx.db"
        let r = try await guardian(["restore", "--txid", "0000000000000005", "-o", out, "file://" + replica])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try await sqlite3(out, "SELECT count(*) FROM t") == "4")
        // Timestamp: exactly the transactions observed at or before it.
        let files = try await FileReplicaClient(root: replica).listFiles(level: 0, exactTimestamps: true)
        guard let seventh = files.first(where: { $0.maxTXID == 7 }) else { Issue.record("no TXID 7"); return }
        let ts = Timestamps.iso8601(seventh.createdAt)
        let out2 = dir + "/ts.db"
        let r2 = try await guardian(["restore", "--timestamp", ts, "-o", out2, "file://" + replica])
        #expect(r2.status == 0, "\(r2.stderr)")
        let expected = files.filter { $0.createdAt <= Timestamps.parse(ts)! }.map(\.maxTXID).max() ?? 0
        #expect(try await sqlite3(out2, "SELECT count(*) FROM t") == "\(expected - 1)")
    }
}
