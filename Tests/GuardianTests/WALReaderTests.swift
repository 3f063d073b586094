import Foundation
import Replication
import Testing

/// WALFile.readTransactions on a real WAL written by SQLite: after a WAL
/// restart the file keeps its old length, so the new generation is followed
/// by frames of the old one. The reader must stop exactly at the new
/// generation's last committed frame, across its growing read sizes.
@Suite struct WALReaderTests {
    @Test func newGenerationOverAStaleTailIsReadExactly() async throws {
        let dir = try TestSupport.makeTempDir("walreader")
        defer { TestSupport.cleanup(dir) }
        let db = dir + "/app.db"
        // One connection, no autocheckpoint; os._exit leaves -wal as SQLite wrote it.
        let script = """
            import os, sqlite3, sys
            c = sqlite3.connect(sys.argv[1], isolation_level=None)
            c.execute("PRAGMA journal_mode=wal")
            c.execute("PRAGMA wal_autocheckpoint=0")
            c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
            c.execute("INSERT INTO t(v) VALUES (randomblob(900000))")   # old generation: ~220 frames
            c.execute("PRAGMA wal_checkpoint(RESTART)")
            c.execute("INSERT INTO t(v) VALUES (randomblob(300000))")   # restarts the WAL: ~75 frames
            for i in range(30):
                c.execute("INSERT INTO t(v) VALUES (?)", (b"x" * 100,))
            os._exit(0)
            """
        let r = try await run("/usr/bin/python3", ["-c", script, db])
        #expect(r.status == 0, "\(r.stderr)")

        let wal = WALFile(path: db + "-wal")
        let header = try #require(wal.header())
        let start = WALCursor(header: header)
        let (txs, end) = try wal.readTransactions(from: start)

        #expect(txs.count == 31)
        #expect((txs.first?.pages.count ?? 0) >= 70, "the big transaction spans several reads")
        // Contiguous transactions from the header to the cursor.
        var offset = Int64(32)
        for t in txs {
            #expect(t.offset == offset)
            offset += t.size
        }
        #expect(end.offset == offset)
        #expect((end.offset - 32) % start.frameSize == 0)
        // A stale tail follows: the next frame carries the old generation's salt.
        #expect(wal.size() > end.offset + start.frameSize)
        var next = [UInt8]()
        try wal.read(at: end.offset, count: 24, into: &next)
        let salt1 = next[8..<12].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        #expect(salt1 != header.salt1)
        // The last commit record is the database size in pages.
        let pages = try await sqlite3(db, "PRAGMA page_count")
        #expect(txs.last.map { "\($0.commit)" } == pages)

        // Reading again from the end finds nothing new.
        #expect(try wal.readTransactions(from: end).transactions.isEmpty)
    }
}
