import Foundation
import Logging
import Testing
@testable import Platform
@testable import Replication

/// Issue 14: an idle database holds one SQLite connection (the pin's); the
/// spare pin and the checkpointer open when the database is active again,
/// without ever leaving the WAL unpinned.
@Suite(.serialized) struct IdleMemoryTests {
    /// Descriptors of this process open on `db`'s `-wal`: one per SQLite
    /// connection on the database (the test's own included).
    static func walDescriptors(_ db: String) -> Int {
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        return fds.count(where: { (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\($0)")) == db + "-wal" })
    }

    static func makeApp(_ db: String) throws -> SQLiteConnection {
        let app = try SQLiteConnection(path: db, mode: .readWriteCreate)
        try app.execute("PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        return app
    }

    static func replicator(_ db: String, _ dir: String, checkpointSize: Int64) -> Replicator {
        let config = DatabaseConfig(
            path: db, replicas: [ReplicaConfig(name: "file", target: .file(path: dir + "/replica"))], checkpointSize: checkpointSize)
        return Replicator(config: config, stagingDir: dir + "/staging", logger: Logger(label: "test"))
    }

    @Test func anIdleDatabaseHoldsOnlyThePinConnection() async throws {
        let dir = try TestSupport.makeTempDir("idle-conns")
        defer { TestSupport.cleanup(dir) }
        let db = dir + "/app.db"
        let app = try Self.makeApp(db)
        let replicator = Self.replicator(db, dir, checkpointSize: 1)
        try await replicator.open()
        try await replicator.bootstrap(replicaPositions: [0], newestL0: nil)
        try await replicator.sync()
        try app.execute("INSERT INTO t(v) VALUES ('a')")
        try await replicator.sync()
        try await replicator.checkpointIfNeeded()
        // Active: both pins and the checkpointer (and the application's
        // connection, and guardian's own reader of the WAL).
        #expect(await replicator.openConnections == 3)
        #expect(Self.walDescriptors(db) == 5)
        // A tick right after a sync: the database is not idle yet.
        try await replicator.idleCheck()
        #expect(await replicator.openConnections == 3)
        // Idle: only the pin's connection stays.
        try await replicator.idleCheck(releasingAfter: .zero)
        #expect(await replicator.openConnections == 1)
        #expect(Self.walDescriptors(db) == 3)
        // A wake-up without a write (inotify reports the close as one) keeps it so.
        let opened = await replicator.connectionsOpened
        #expect(try await replicator.sync().transactions == 0)
        #expect(await replicator.connectionsOpened == opened)
        #expect(await replicator.openConnections == 1)
        // The next change opens the spare again and is replicated.
        try app.execute("INSERT INTO t(v) VALUES ('b')")
        let found = try await replicator.sync()
        #expect(found.transactions == 1)
        #expect(await replicator.connectionsOpened == opened + 1)
        #expect(await replicator.openConnections == 2)
        await replicator.closeConnections()
    }

    /// A database with nothing in its WAL gets its first full image under
    /// the pin taken at open: guardian never opens a second connection on it.
    @Test func anIdleDatabaseIsImagedUnderItsFirstPin() async throws {
        let dir = try TestSupport.makeTempDir("idle-start")
        defer { TestSupport.cleanup(dir) }
        let db = dir + "/app.db"
        do {
            let app = try Self.makeApp(db)
            try app.execute("INSERT INTO t(v) VALUES ('a'), ('b')")
            _ = try app.checkpoint(.truncate)
        }
        let replicator = Self.replicator(db, dir, checkpointSize: 1)
        try await replicator.open()
        try await replicator.bootstrap(replicaPositions: [0], newestL0: nil)
        let found = try await replicator.sync()
        #expect(found.files == 1)
        try await replicator.checkpointIfNeeded()
        try await replicator.idleCheck()
        #expect(await replicator.connectionsOpened == 1)
        #expect(await replicator.openConnections == 1)
        #expect(Self.walDescriptors(db) == 2)

        let history = await replicator.historyID
        guard case .files(let files) = try await replicator.work(after: 0, history: history), let image = files.first else {
            Issue.record("no full image")
            return
        }
        _ = try await FileReplicaClient(root: dir + "/replica").writeFile(
            level: 0, minTXID: image.info.minTXID, maxTXID: image.info.maxTXID, contents: image.payload, createdAt: image.info.createdAt)
        await replicator.closeConnections()
        let out = dir + "/restored.db"
        let r = try await guardian(["restore", "-o", out, "file://" + dir + "/replica"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try await sqlite3(out, "SELECT group_concat(v, ',') FROM t") == "a,b")
    }

    @Test func anActiveDatabaseDoesNotReopenPerCommit() async throws {
        let dir = try TestSupport.makeTempDir("active-conns")
        defer { TestSupport.cleanup(dir) }
        let db = dir + "/app.db"
        let app = try Self.makeApp(db)
        let replicator = Self.replicator(db, dir, checkpointSize: 16 << 10)
        try await replicator.open()
        try await replicator.bootstrap(replicaPositions: [0], newestL0: nil)
        try await replicator.sync()
        for i in 0..<200 {
            try app.query("INSERT INTO t(v) VALUES (?)", [.text(String(repeating: "x", count: 200) + "\(i)")])
            try await replicator.sync()
            try await replicator.checkpointIfNeeded()
            try await replicator.idleCheck()
        }
        // The pin, the spare and the checkpointer, each opened once.
        #expect(await replicator.connectionsOpened == 3)
        #expect(await replicator.snapshotOfState().checkpointCounts.ok > 0)
        await replicator.closeConnections()
    }

    /// An application commits without pause and restarts the WAL whenever it
    /// can (RESTART checkpoints from a second connection) while guardian
    /// closes its spare and checkpointer after every sync and opens them
    /// again on the next: every commit is in guardian's files, no gap forces
    /// a full image, and the restore equals the database. Each commit
    /// rewrites one row that fills a page of its own, once: a commit missing
    /// from guardian's files (frames the WAL restarted over while no pin
    /// held them) is not made good by a later file that carries the same page.
    @Test(.timeLimit(.minutes(2)))
    func commitsRacingTheSpareReopenAllRestoreExactly() async throws {
        let dir = try TestSupport.makeTempDir("idle-race")
        defer { TestSupport.cleanup(dir) }
        let db = dir + "/app.db"
        let app = try Self.makeApp(db)
        try app.execute("PRAGMA synchronous=OFF")
        let rows = 600
        let pad = String(repeating: "x", count: 3000)
        try app.execute("BEGIN")
        for i in 1...rows { try app.query("INSERT INTO t(id, v) VALUES (?, ?)", [.integer(Int64(i)), .text(String(format: "a%06d", i) + pad)]) }
        try app.execute("COMMIT")
        _ = try app.checkpoint(.truncate)
        let replicator = Self.replicator(db, dir, checkpointSize: 64 << 10)
        try await replicator.open()
        try await replicator.bootstrap(replicaPositions: [0], newestL0: nil)
        try await replicator.sync()

        let done = LockedValue(false)
        let restarts = LockedValue(0)
        let writing = Task {
            await withCheckedContinuation { (finished: CheckedContinuation<Void, Never>) in
                let thread = Thread {
                    let restarter = try? SQLiteConnection(path: db, mode: .readWrite, busyTimeout: .zero)
                    // (It checkpoints only once it has read the database.)
                    _ = try? restarter?.scalar("SELECT count(*) FROM sqlite_schema")
                    for i in 1...rows {
                        _ = try? app.query("UPDATE t SET v = ? WHERE id = ?", [.text(String(format: "u%06d", i) + pad), .integer(Int64(i))])
                        if i % 2 == 0, let r = try? restarter?.checkpoint(.restart), !r.busy { restarts.withLock { $0 += 1 } }
                        usleep(500)  // a pace that leaves the loop time for many cycles
                    }
                    done.withLock { $0 = true }
                    finished.resume()
                }
                thread.start()
            }
        }
        var cycles = 0
        while !done.withLock({ $0 }) {
            try await replicator.sync()
            try await replicator.checkpointIfNeeded()
            try await replicator.idleCheck(releasingAfter: .zero)
            #expect(await replicator.openConnections == 1)
            cycles += 1
        }
        await writing.value
        try await replicator.sync()
        #expect(try await sqlite3(db, "SELECT count(*) FROM t WHERE v LIKE 'u%'") == "\(rows)")
        #expect(cycles > 20)
        #expect(await replicator.connectionsOpened > 20)
        #expect(await replicator.snapshotOfState().checkpointCounts.ok > 0)

        let history = await replicator.historyID
        guard case .files(let files) = try await replicator.work(after: 0, history: history) else {
            Issue.record("the pending files do not follow on from TXID 0")
            return
        }
        // Only the session's first file is a full image: no WAL gap was found.
        #expect(files.count(where: { $0.isFullImage }) == 1)
        let client = FileReplicaClient(root: dir + "/replica")
        for f in files {
            _ = try await client.writeFile(level: 0, minTXID: f.info.minTXID, maxTXID: f.info.maxTXID, contents: f.payload, createdAt: f.info.createdAt)
        }
        await replicator.closeConnections()
        let out = dir + "/restored.db"
        let r = try await guardian(["restore", "-o", out, "file://" + dir + "/replica"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try await sqlite3(out, "PRAGMA integrity_check") == "ok")
        let query = "SELECT count(*), sum(id), group_concat(substr(v, 1, 7), ',') FROM (SELECT * FROM t ORDER BY id)"
        #expect(try await sqlite3(out, query) == sqlite3(db, query))
        #expect(try await sqlite3(out, "SELECT count(*) FROM t WHERE v LIKE 'u%'") == "\(rows)")
    }
}
