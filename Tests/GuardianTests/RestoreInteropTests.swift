import Foundation
import Platform
import Replication
import Testing

/// The interoperability promise, checked against the real Litestream 0.5.17
/// (`.tools/venv/bin/litestream`, installed by scripts/install-deps.sh):
/// Litestream restores what guardian's encoder writes, byte for byte, and
/// guardian restores what Litestream replicates.
@Suite struct RestoreInteropTests {
    static var litestream: String { TestSupport.venvBin + "/litestream" }

    static func requireLitestream() throws {
        guard FileManager.default.isExecutableFile(atPath: litestream) else {
            throw TestFailure("litestream not found at \(litestream); run scripts/install-deps.sh")
        }
    }

    static func rows(_ db: String) throws -> [[SQLiteValue]] {
        try SQLiteConnection(path: db, mode: .readOnly).query("SELECT id, v, hex(blob) FROM t ORDER BY id")
    }

    @Test func litestreamRestoresOurReplicaByteForByte() async throws {
        try Self.requireLitestream()
        let dir = try TestSupport.makeTempDir("interop-out")
        defer { TestSupport.cleanup(dir) }
        let b = try await ChainBuilder.standard(dir)
        // Levels as Litestream lays them out: a snapshot and a compaction too.
        try await b.snapshot(6)
        try await b.compact(level: 1, 7, 10)
        let url = "file://" + b.replicaRoot
        let latest = try await run(Self.litestream, ["restore", "-o", dir + "/latest.db", url])
        #expect(latest.status == 0, "\(latest.stderr)")
        #expect(FileManager.default.contents(atPath: dir + "/latest.db").map { [UInt8]($0) } == b.state(12))
        for txid in [UInt64(1), 5, 9] {
            let out = dir + "/tx\(txid).db"
            let r = try await run(Self.litestream, ["restore", "-txid", LTXNaming.hex(txid), "-o", out, url])
            #expect(r.status == 0, "TXID \(txid): \(r.stderr)")
            #expect(FileManager.default.contents(atPath: out).map { [UInt8]($0) } == b.state(txid), "TXID \(txid)")
        }
    }

    @Test func weRestoreWhatLitestreamReplicated() async throws {
        try Self.requireLitestream()
        let dir = try TestSupport.makeTempDir("interop-in")
        defer { TestSupport.cleanup(dir) }
        let db = dir + "/app.db"
        let replica = dir + "/replica"
        let c = try SQLiteConnection(path: db, mode: .readWriteCreate)
        try c.execute("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, blob BLOB)")
        let child = try ChildProcess.start(Self.litestream, ["replicate", db, "file://" + replica])
        defer { child.removeFiles() }
        let started = await TestSupport.waitUntil(timeout: .seconds(20)) {
            FileManager.default.fileExists(atPath: replica + "/ltx/0/0000000000000001-0000000000000001.ltx")
        }
        #expect(started, "litestream did not start replicating: \(child.stderr)")
        // Writes over a few sync intervals: small rows, multi-page rows, updates, deletes.
        for round in 0..<4 {
            for i in 0..<15 {
                let size = (round * 15 + i) % 5 == 0 ? 20_000 : 200
                try c.execute("INSERT INTO t(v, blob) VALUES ('r\(round)-\(i)', randomblob(\(size)))")
            }
            try c.execute("UPDATE t SET v = v || '+' WHERE id % 7 = \(round)")
            if round == 2 { try c.execute("DELETE FROM t WHERE id % 11 = 0") }
            try await Task.sleep(for: .milliseconds(700))
        }
        let expected = try Self.rows(db)
        try await Task.sleep(for: .milliseconds(1500))
        child.signal(SIGTERM)
        let status = await child.wait(timeout: .seconds(40))
        #expect(status != nil, "litestream did not stop")

        let client = FileReplicaClient(root: replica)
        let points = try await Restorer().listRestorePoints(client: client)
        #expect(points.contains { $0.level == 9 }, "Litestream writes a snapshot at start: \(points)")
        let out = dir + "/restored.db"
        let result = try await Restorer().restore(client: client, to: out, options: RestoreOptions())
        #expect(result.txid == points.map(\.maxTXID).max())
        #expect(try Self.rows(out) == expected)
        #expect(try SQLiteConnection(path: out, mode: .readOnly).scalar("PRAGMA integrity_check") == .text("ok"))

        // An earlier TXID is a consistent earlier state: a prefix of the inserts.
        let middle = max(1, result.txid / 2)
        let earlier = try await Restorer().restore(client: client, to: dir + "/earlier.db", options: RestoreOptions(txid: middle))
        #expect(earlier.txid == middle)
        let ids = try Self.rows(dir + "/earlier.db").compactMap { $0.first?.int64 }
        #expect(ids.count <= expected.count)
        #expect(try SQLiteConnection(path: dir + "/earlier.db", mode: .readOnly).scalar("PRAGMA integrity_check") == .text("ok"))
    }
}
