import Foundation
import Logging
import Testing
@testable import Platform
@testable import Replication

/// Snapshots are built from a state consistent with the pin, never from WAL
/// frames the application has overwritten since.
@Suite(.serialized) struct ReplicatorSnapshotTests {
    static func contents(_ db: String) async throws -> String {
        try await sqlite3(db, "SELECT count(*), sum(id), group_concat(v, ',') FROM (SELECT * FROM t ORDER BY id)")
    }

    @Test(.timeLimit(.minutes(2)))
    func aSnapshotAfterACompleteCheckpointAndAWALRestartIsExact() async throws {
        let dir = try TestSupport.makeTempDir("snapshot-restart")
        defer { TestSupport.cleanup(dir) }
        let db = dir + "/app.db"
        let replica = dir + "/replica"
        // The application: one connection that never checkpoints by itself.
        let app = try SQLiteConnection(path: db, mode: .readWriteCreate)
        try app.execute("PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, pad BLOB)")
        for i in 1...200 { try app.query("INSERT INTO t(id, v, pad) VALUES (?, ?, randomblob(400))", [.integer(Int64(i)), .text("a\(i)")]) }

        let config = DatabaseConfig(
            path: db, replicas: [ReplicaConfig(name: "file", target: .file(path: replica))], checkpointSize: 1, maxWALSize: 1 << 30)
        let replicator = Replicator(config: config, stagingDir: dir + "/staging", logger: Logger(label: "test"))
        try await replicator.open()
        try await replicator.bootstrap(replicaPositions: [0], newestL0: nil)
        try await replicator.sync()
        // Updates every page of the table: the page index points into the WAL.
        try app.execute("UPDATE t SET v = 'b' || id")
        try await replicator.sync()
        // A complete PASSIVE checkpoint, then guardian re-pins at read-mark 0.
        try await replicator.checkpointIfNeeded()
        let checkpoint = await replicator.snapshotOfState().checkpoint
        #expect(checkpoint.map { !$0.busy && $0.checkpointedFrames == $0.logFrames } == true, "\(String(describing: checkpoint))")
        // The application's next writes restart the WAL over the indexed frames.
        try app.execute("UPDATE t SET v = 'c' || id WHERE id % 2 = 0")
        try app.execute("INSERT INTO t(id, v, pad) VALUES (1000, 'new', randomblob(400))")

        let snap = try await replicator.snapshot()
        await replicator.closeConnections()
        _ = try await FileReplicaClient(root: replica).writeFile(
            level: snap.info.level, minTXID: snap.info.minTXID, maxTXID: snap.info.maxTXID, contents: .file(path: snap.path), createdAt: snap.info.createdAt)
        let out = dir + "/restored.db"
        let r = try await guardian(["restore", "-o", out, "file://" + replica])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try await sqlite3(out, "PRAGMA integrity_check") == "ok")
        #expect(try await Self.contents(out) == Self.contents(db))
    }

    @Test func aFrameOverwrittenByANewGenerationIsNotReadAsThePage() throws {
        let dir = try TestSupport.makeTempDir("stale-frame")
        defer { TestSupport.cleanup(dir) }
        let db = dir + "/app.db"
        let app = try SQLiteConnection(path: db, mode: .readWriteCreate)
        try app.execute("PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE t(x)")
        let wal = WALFile(path: db + "-wal")
        guard let header = wal.header() else {
            Issue.record("no WAL header")
            return
        }
        let (txs, _) = try wal.readTransactions(from: WALCursor(header: header))
        guard let (pgno, offset) = txs.first?.pages.first else {
            Issue.record("no frame")
            return
        }
        var page: [UInt8] = []
        try wal.page(frameOffset: offset, pgno: pgno, salt1: header.salt1, salt2: header.salt2, pageSize: header.pageSize, into: &page)
        #expect(page.count == Int(header.pageSize))
        #expect(throws: WALFile.StaleFrame.self) {
            try wal.page(frameOffset: offset, pgno: pgno, salt1: header.salt1 &+ 1, salt2: header.salt2, pageSize: header.pageSize, into: &page)
        }
        #expect(throws: WALFile.StaleFrame.self) {
            try wal.page(frameOffset: offset, pgno: pgno &+ 1, salt1: header.salt1, salt2: header.salt2, pageSize: header.pageSize, into: &page)
        }
    }
}
