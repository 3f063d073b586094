import Foundation
import Platform
import Replication
import Testing

@testable import Remediate

/// Helpers to make real databases and damage them.
enum Damage {
    /// A WAL-mode database with `tables` small tables and one table of `rows` rows.
    static func makeDatabase(_ path: String, rows: Int = 2000, tables: Int = 0, payload: Int = 200) throws {
        let c = try SQLiteConnection(path: path, mode: .readWriteCreate)
        try c.execute("PRAGMA journal_mode=WAL")
        try c.execute("CREATE TABLE items(id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        try c.execute("CREATE INDEX items_body ON items(body)")
        try c.execute("BEGIN")
        for i in 0..<rows { try c.query("INSERT INTO items(body) VALUES (?)", [.text(String(repeating: "x", count: payload) + "\(i)")]) }
        for t in 0..<tables {
            try c.execute("CREATE TABLE t\(t)(a INTEGER, b TEXT)")
            try c.execute("WITH RECURSIVE n(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM n WHERE v < 200) INSERT INTO t\(t) SELECT v, hex(randomblob(30)) FROM n")
        }
        try c.execute("COMMIT")
        try c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    }

    static func pageSize(_ path: String) throws -> Int {
        Int(try SQLiteConnection(path: path, mode: .readOnly).scalar("PRAGMA page_size")?.int64 ?? 4096)
    }

    /// Overwrites `count` random pages in the first half of the file (past page 1) with random bytes.
    @discardableResult
    static func overwritePages(_ path: String, count: Int = 3) throws -> [Int] {
        let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int ?? 0
        let page = 4096
        let pages = size / page
        guard pages > 4 else { throw TestFailure("database too small to damage") }
        let fd = open(path, O_WRONLY)
        guard fd >= 0 else { throw TestFailure("open \(path)") }
        defer { close(fd) }
        var chosen: Set<Int> = []
        while chosen.count < count { chosen.insert(Int.random(in: 2...max(2, pages / 2))) }
        for p in chosen {
            let junk = (0..<page).map { _ in UInt8.random(in: 0...255) }
            _ = junk.withUnsafeBytes { pwrite(fd, $0.baseAddress, page, off_t((p - 1) * page)) }
        }
        fsync(fd)
        return chosen.sorted()
    }

    static func destroyHeader(_ path: String) throws {
        let fd = open(path, O_WRONLY)
        guard fd >= 0 else { throw TestFailure("open \(path)") }
        defer { close(fd) }
        let junk = (0..<100).map { _ in UInt8.random(in: 0...255) }
        _ = junk.withUnsafeBytes { pwrite(fd, $0.baseAddress, 100, 0) }
        fsync(fd)
    }
}

@Suite struct RemediationFileChecksTests {
    @Test func headerOfAHealthyDatabaseIsSane() throws {
        let dir = try TestSupport.makeTempDir("hdr")
        defer { TestSupport.cleanup(dir) }
        let db = dir + "/app.db"
        try Damage.makeDatabase(db, rows: 500)
        let probe = FileProbe.read(path: db)
        #expect(probe.dbExists)
        #expect(probe.problems.isEmpty)
        #expect(probe.header?.pageSize == 4096)
        #expect(probe.header?.writeVersion == 2, "WAL mode")
        #expect(Int64(probe.header?.trustedPageCount ?? 0) * 4096 == probe.dbSize)
    }

    @Test func destroyedHeaderIsReported() throws {
        let dir = try TestSupport.makeTempDir("hdr")
        defer { TestSupport.cleanup(dir) }
        let db = dir + "/app.db"
        try Damage.makeDatabase(db, rows: 100)
        try Damage.destroyHeader(db)
        let probe = FileProbe.read(path: db)
        #expect(probe.problems.count == 1)
        #expect(probe.problems.first?.isHeaderDestroyed == true)
        #expect(probe.problems.first == .badMagic)
    }

    @Test func truncatedDatabaseAndPartialWALAreReported() throws {
        let dir = try TestSupport.makeTempDir("hdr")
        defer { TestSupport.cleanup(dir) }
        let db = dir + "/app.db"
        try Damage.makeDatabase(db, rows: 2000)
        let size = try #require(FileManager.default.attributesOfItem(atPath: db)[.size] as? Int)
        #expect(truncate(db, off_t(size - 4096 * 3)) == 0)
        #expect(FileProbe.read(path: db).problems == [.truncated(fileSize: Int64(size - 4096 * 3), expected: Int64(size))])
        #expect(truncate(db, off_t(size - 4096 * 3 - 100)) == 0)
        if case .sizeNotPageMultiple = FileProbe.read(path: db).problems.first {} else { Issue.record("size not a page multiple not seen") }

        // A WAL left with frames (the writer keeps it), then cut mid-frame.
        let db2 = dir + "/wal.db"
        try Damage.makeDatabase(db2, rows: 10)
        let c = try SQLiteConnection(path: db2)
        c.persistWAL()
        try c.execute("PRAGMA wal_autocheckpoint=0")
        for i in 0..<20 { try c.query("INSERT INTO items(body) VALUES (?)", [.text("row \(i)")]) }
        let walSize = try #require(FileManager.default.attributesOfItem(atPath: db2 + "-wal")[.size] as? Int)
        let before = FileProbe.read(path: db2)
        #expect(before.problems.isEmpty)
        #expect(before.wal != nil)
        #expect(truncate(db2 + "-wal", off_t(walSize - 1000)) == 0)
        let after = FileProbe.read(path: db2, previous: before)
        if case .walPartialFrame = after.problems.first {} else { Issue.record("partial WAL frame not seen: \(after.problems)") }
        #expect(after.problems.first?.concernsWAL == true)
    }

    @Test func walScanTellsAHoleFromStaleFrames() throws {
        let dir = try TestSupport.makeTempDir("walscan")
        defer { TestSupport.cleanup(dir) }
        let db = dir + "/app.db"
        try Damage.makeDatabase(db, rows: 10)
        let c = try SQLiteConnection(path: db)
        c.persistWAL()
        try c.execute("PRAGMA wal_autocheckpoint=0")
        for i in 0..<40 { try c.query("INSERT INTO items(body) VALUES (?)", [.text(String(repeating: "w", count: 500) + "\(i)")]) }
        let wal = db + "-wal"
        #expect(WALScan.damage(walPath: wal) == nil)
        // Zero ten frames in the middle: later frames still carry the salts.
        let fd = open(wal, O_WRONLY)
        let zeros = [UInt8](repeating: 0, count: 10 * (24 + 4096))
        _ = zeros.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(32 + 5 * (24 + 4096))) }
        close(fd)
        let damage = try #require(WALScan.damage(walPath: wal))
        #expect(damage.contains("frames from 6 on"))
        #expect(WALScan.damage(walPath: dir + "/missing-wal") == nil)
    }

    /// Issue 17: on a full disk a checkpoint copies page 1 (with the new
    /// page count) and stops when the file cannot grow; the WAL still holds
    /// the pages the file lacks, and SQLite reads them from there. That is
    /// not a truncated database, and a frame cut short by ENOSPC at the
    /// WAL's end is not a damaged WAL: integrity_check says ok to both.
    @Test(.enabled(if: getuid() == 0, "mounting a tmpfs needs root"))
    func checkpointStoppedByAFullDiskIsNotDamage() throws {
        let fs = try DiskKit.Tmpfs(size: "4m")
        defer { fs.unmount() }
        let db = fs.path + "/app.db"
        try Damage.makeDatabase(db, rows: 10)
        let app = try SQLiteConnection(path: db)
        app.persistWAL()
        try app.execute("PRAGMA wal_autocheckpoint=0")
        try app.execute("BEGIN")
        for i in 0..<1500 { try app.query("INSERT INTO items(body) VALUES (?)", [.text(String(repeating: "g", count: 600) + "\(i)")]) }
        try app.execute("COMMIT")
        // Fill the filesystem to the last byte.
        let filler = open(fs.path + "/runaway.log", O_WRONLY | O_CREAT, 0o644)
        var chunk = [UInt8](repeating: 0x41, count: 1 << 16)
        while chunk.count >= 1 {
            if chunk.withUnsafeBytes({ write(filler, $0.baseAddress, $0.count) }) <= 0 { chunk = Array(chunk.prefix(chunk.count / 2)) }
        }
        close(filler)
        _ = try? app.checkpoint(.passive)
        // A commit on the full disk fails and may leave part of a frame behind.
        #expect(throws: (any Error).self) {
            try app.query("INSERT INTO items(body) VALUES (?)", [.text(String(repeating: "h", count: 3000))])
        }
        let probe = FileProbe.read(path: db)
        let header = try #require(probe.header)
        #expect(Int64(header.pageCount) * Int64(header.pageSize) > probe.dbSize, "the checkpoint stopped short (precondition)")
        #expect(!probe.problems.contains { $0.kind == "truncated" }, "\(probe.problems)")
        #expect(IntegrityChecker.confirm(path: db, budget: .seconds(10)).verdict == .ok)
        #expect(try app.scalar("SELECT count(*) FROM items") == .integer(1510))

        // Pages the WAL does not hold are missing, though.
        #expect(WALScan.holdsPages(walPath: db + "-wal", from: 1, through: UInt32(probe.dbSize / 4096) + 1))
        #expect(!WALScan.holdsPages(walPath: db + "-wal", from: 1, through: 1_000_000))
        #expect(!WALScan.holdsPages(walPath: fs.path + "/none-wal", from: 2, through: 3))
    }

    @Test func integrityChecksFindRealCorruption() throws {
        let dir = try TestSupport.makeTempDir("ic")
        defer { TestSupport.cleanup(dir) }
        let db = dir + "/app.db"
        try Damage.makeDatabase(db, rows: 3000)
        var cursor = IntegrityCursor()
        let clean = IntegrityChecker.quickCheck(path: db, budget: .seconds(10), cursor: &cursor)
        #expect(clean.verdict == .ok)
        #expect(clean.completedPass)
        #expect(IntegrityChecker.confirm(path: db, budget: .seconds(10)).verdict == .ok)

        try Damage.overwritePages(db, count: 4)
        let bad = IntegrityChecker.quickCheck(path: db, budget: .seconds(10), cursor: &cursor)
        guard case .corrupt(let lines) = bad.verdict else { Issue.record("quick_check missed the damage: \(bad.verdict)"); return }
        #expect(!lines.isEmpty)
        guard case .corrupt = IntegrityChecker.confirm(path: db, budget: .seconds(10)).verdict else { Issue.record("integrity_check missed it"); return }

        try Damage.destroyHeader(db)
        let (v, code) = IntegrityChecker.confirm(path: db, budget: .seconds(10))
        guard case .corrupt = v else { Issue.record("NOTADB not treated as corruption: \(v)"); return }
        #expect(code == 26, "SQLITE_NOTADB")
    }

    @Test func missingDatabaseIsNotCorruption() {
        let (v, _) = IntegrityChecker.confirm(path: "/nonexistent/guardian/app.db", budget: .seconds(1))
        guard case .inconclusive = v else { Issue.record("\(v)"); return }
    }

    @Test func quickCheckOnABudgetWorksTableByTable() throws {
        let dir = try TestSupport.makeTempDir("ic")
        defer { TestSupport.cleanup(dir) }
        let db = dir + "/app.db"
        try Damage.makeDatabase(db, rows: 500, tables: 4)
        var cursor = IntegrityCursor()
        // A budget nothing fits in: the whole check stops, per-table mode begins.
        let first = IntegrityChecker.quickCheck(path: db, budget: .zero, cursor: &cursor)
        #expect(first.stoppedAtBudget)
        #expect(!first.completedPass)
        #expect(cursor.perTable)
        // Each run moves past one table (none fits), so the round ends.
        var runs = 0
        var completed = false
        while !completed, runs < 20 {
            let o = IntegrityChecker.quickCheck(path: db, budget: .zero, cursor: &cursor)
            completed = o.completedPass
            runs += 1
        }
        #expect(completed)
        #expect(runs == 5, "items, t0...t3")
        // A table bigger than the budget gets twice the budget each time
        // (up to the maximum), alone, until it fits.
        var boosted = IntegrityCursor()
        boosted.perTable = true
        let tiny = Duration.microseconds(1)
        let b1 = IntegrityChecker.quickCheck(path: db, budget: tiny, maxBudget: .seconds(10), cursor: &boosted)
        #expect(b1.stoppedAtBudget)
        #expect(boosted.nextTable == "items")
        #expect(boosted.boosted["items"] == tiny * 2)
        var fitted = false
        for _ in 0..<40 where !fitted {
            let o = IntegrityChecker.quickCheck(path: db, budget: tiny, maxBudget: .seconds(10), cursor: &boosted)
            fitted = o.tablesChecked == ["items"]
        }
        #expect(fitted, "items was eventually checked on a grown budget")
        #expect(boosted.nextTable == "t0")
        // With room, one run checks every table.
        let full = IntegrityChecker.quickCheck(path: db, budget: .seconds(10), cursor: &cursor)
        #expect(full.verdict == .ok)
        #expect(full.completedPass)
        #expect(full.tablesChecked == ["items", "t0", "t1", "t2", "t3"])
    }

    @Test func restoredCopyVerification() throws {
        let dir = try TestSupport.makeTempDir("ver")
        defer { TestSupport.cleanup(dir) }
        let db = dir + "/copy.db"
        try Damage.makeDatabase(db, rows: 300)
        #expect(throws: Never.self) { try IntegrityChecker.verifyCopy(path: db, queries: ["SELECT count(*) FROM items"], budget: .seconds(5)).get() }
        if case .failure(let f) = IntegrityChecker.verifyCopy(path: db, queries: ["SELECT count(*) FROM items WHERE id < 0"], budget: .seconds(5)) {
            #expect(f.check == "SELECT count(*) FROM items WHERE id < 0")
        } else {
            Issue.record("a zero count passed verification")
        }
        if case .success = IntegrityChecker.verifyCopy(path: db, queries: ["SELECT count(*) FROM nosuchtable"], budget: .seconds(5)) {
            Issue.record("a failing query passed verification")
        }
        // Verification leaves no -wal/-shm beside the copy.
        #expect(!FileManager.default.fileExists(atPath: db + "-wal"))
        #expect(!FileManager.default.fileExists(atPath: db + "-shm"))
        try Damage.overwritePages(db, count: 3)
        if case .success = IntegrityChecker.verifyCopy(path: db, queries: [], budget: .seconds(5)) { Issue.record("a corrupt copy passed") }
    }
}

@Suite struct RemediationCheckpointTests {
    func sample(_ at: Double, wal: Int64, salts: (UInt32, UInt32) = (1, 2), result: CheckpointResult? = nil, error: SQLiteFailure? = nil) -> CheckpointSample {
        var probe = FileProbe(dbExists: true, dbSize: 1 << 20, header: nil, walSize: wal, wal: nil, problems: [])
        if wal > 0 { probe.wal = WALHeaderInfo(pageSize: 4096, checkpointSequence: 0, salt1: salts.0, salt2: salts.1) }
        return CheckpointSample(at: Date(timeIntervalSince1970: at), files: probe, result: result, error: error)
    }

    @Test func partialCheckpointsBehindAReaderAreNormal() {
        var a = CheckpointAssessor(walWarnSize: 64 << 20, walCriticalSize: 256 << 20, starvation: .seconds(300))
        // The replicator's read transaction: PASSIVE copies only part of the WAL.
        for i in 0..<10 {
            let (h, c) = a.record(sample(Double(i * 10), wal: 4 << 20, result: CheckpointResult(busy: false, logFrames: 1000, checkpointedFrames: 400)))
            #expect(c.isEmpty)
            #expect(h.level == "ok")
            #expect(h.lastResult?.checkpointedFrames == 400)
        }
    }

    @Test func growingWALWithoutCompleteCheckpointIsStarvation() {
        var a = CheckpointAssessor(walWarnSize: 64 << 20, walCriticalSize: 256 << 20, starvation: .seconds(60))
        _ = a.record(sample(0, wal: 1 << 20, result: CheckpointResult(busy: false, logFrames: 10, checkpointedFrames: 10)))
        var last: [HealthCondition] = []
        for i in 1...10 {
            (_, last) = a.record(sample(Double(i * 10), wal: Int64(1 + i) << 20, result: CheckpointResult(busy: false, logFrames: 100 * i, checkpointedFrames: 5)))
        }
        #expect(last.map(\.kind) == ["checkpoint-starvation"])
        // A WAL restart (new salts, smaller file) ends it.
        let (h, c) = a.record(sample(110, wal: 8192, salts: (2, 3)))
        #expect(c.isEmpty)
        #expect(!h.starved)
        #expect(h.lastCompleteAt != nil)
    }

    @Test func walSizeThresholdsAndErrorsRaiseConditions() {
        var a = CheckpointAssessor(walWarnSize: 10 << 20, walCriticalSize: 20 << 20, starvation: .seconds(600))
        #expect(a.record(sample(0, wal: 11 << 20)).1.map(\.severity) == [.warning])
        #expect(a.record(sample(10, wal: 21 << 20)).1.map(\.severity) == [.critical])
        let full = SQLiteFailure(code: 13, extendedCode: 13, message: "database or disk is full")
        let (h, c) = a.record(sample(20, wal: 1 << 20, salts: (5, 6), error: full))
        #expect(c.map(\.kind) == ["sqlite-full"])
        #expect(h.level == "critical")
        // Remembered for errorMemory, then forgotten.
        #expect(a.record(sample(20 + 599, wal: 1 << 20, salts: (5, 6))).1.map(\.kind) == ["sqlite-full"])
        #expect(a.record(sample(20 + 601, wal: 1 << 20, salts: (5, 6))).1.isEmpty)
        var nearlyFull = sample(700, wal: 1 << 20, salts: (5, 6))
        nearlyFull.freeBytes = 12_000
        #expect(a.record(nearlyFull).1.map(\.kind) == ["db-disk-full"])
    }

    @Test func realPassiveCheckpointWithAReaderHeld() async throws {
        let dir = try TestSupport.makeTempDir("ckpt")
        defer { TestSupport.cleanup(dir) }
        let db = dir + "/app.db"
        try Damage.makeDatabase(db, rows: 10)
        let writer = try SQLiteConnection(path: db)
        writer.persistWAL()
        try writer.execute("PRAGMA wal_autocheckpoint=0")
        let reader = try SQLiteConnection(path: db)
        try reader.execute("BEGIN")
        _ = try reader.scalar("SELECT count(*) FROM items")
        for i in 0..<50 { try writer.query("INSERT INTO items(body) VALUES (?)", [.text("late \(i)")]) }
        let s = await BlockingPool.shared.run { CheckpointSample.take(path: db, previous: nil, checkpoint: true) }
        let r = try #require(s.result)
        #expect(r.logFrames > 0)
        #expect(r.checkpointedFrames == 0, "nothing past the reader's snapshot can be copied")
        #expect(FileManager.default.fileExists(atPath: db + "-wal"), "guardian's probe never deletes the WAL")
        try reader.execute("ROLLBACK")
        let s2 = await BlockingPool.shared.run { CheckpointSample.take(path: db, previous: s.files, checkpoint: true) }
        #expect(s2.result?.checkpointedFrames == s2.result?.logFrames)
    }
}

@Suite struct RemediationPlanningTests {
    let t = Date(timeIntervalSince1970: 1_800_000_000)

    @Test func restoreCandidatesAreLatestFirstThenEarlierSnapshots() {
        let a = ReplicaHoldings(name: "s3", destination: "s3://b/app", position: 90, positionTime: t, earlierPoints: [(50, t), (10, t)])
        let b = ReplicaHoldings(name: "file", destination: "file:///r", position: 100, positionTime: t, earlierPoints: [(100, t), (60, t)])
        let c = CandidatePlanner.candidates(from: [a, b], max: 10)
        #expect(c.map(\.replica) == ["file", "s3", "file", "s3", "s3"])
        #expect(c.map(\.txid) == [100, 90, 60, 50, 10])
        #expect(c.map(\.latest) == [true, true, false, false, false])
        #expect(CandidatePlanner.candidates(from: [a, b], max: 3).count == 3)
        #expect(CandidatePlanner.candidates(from: [], max: 3).isEmpty)
    }

    @Test func holdingsOfAReplicaComeFromItsListing() async throws {
        let dir = try TestSupport.makeTempDir("hold")
        defer { TestSupport.cleanup(dir) }
        for (level, names) in [(0, ["0000000000000011-0000000000000011.ltx", "0000000000000012-0000000000000012.ltx"]),
                               (1, ["0000000000000001-0000000000000009.ltx", "000000000000000a-0000000000000010.ltx"]),
                               (9, ["0000000000000001-0000000000000005.ltx", "0000000000000001-000000000000000c.ltx"])] {
            try FileManager.default.createDirectory(atPath: dir + "/ltx/\(level)", withIntermediateDirectories: true)
            for n in names { try TestSupport.write("x", to: dir + "/ltx/\(level)/\(n)") }
        }
        let replica = ReplicaConfig(name: "file", target: .file(path: dir))
        let h = try await CandidatePlanner.holdings(of: replica, client: FileReplicaClient(root: dir))
        #expect(h.position == 0x12)
        #expect(h.earlierPoints.map(\.txid) == [0x10, 0x0c, 0x0b, 0x05, 0x04], "newest L1 file, both snapshots and the points just before them")
        let empty = try await CandidatePlanner.holdings(of: replica, client: FileReplicaClient(root: dir + "/none"))
        #expect(empty.position == 0)
        let plan = await ReplicaRestoreSource(replicas: [ReplicaConfig(name: "gone", target: .file(path: dir + "/none"))]).plan(maxCandidates: 3)
        #expect(plan.candidates.isEmpty)
        #expect(plan.problems == ["gone (file://\(dir)/none): empty, no LTX files"])
    }

    @Test func rootCauseClassification() {
        let at = Date(timeIntervalSince1970: 1_800_000_000)
        #expect(RootCause.classify(Evidence(sqliteFullSeenAt: at, checkpointStarved: true)).cause == .diskFull)
        #expect(RootCause.classify(Evidence(diskFreeBytes: 1000, diskTotalBytes: 10_000_000)).cause == .diskFull)
        #expect(RootCause.classify(Evidence(ioErrorSeenAt: at)).cause == .ioError)
        #expect(RootCause.classify(Evidence(walSize: 300 << 20, checkpointStarved: true)).cause == .checkpointStarvation)
        #expect(RootCause.classify(Evidence(headerProblem: "bad magic")).cause == .headerOverwritten)
        #expect(RootCause.classify(Evidence(walProblem: "partial frame")).cause == .walDamaged)
        #expect(RootCause.classify(Evidence(checkLines: ["disk I/O error (SQLITE_IOERR_SHORT_READ, code 522)"])).cause == .truncated)
        #expect(RootCause.classify(Evidence(diskFreeBytes: 5 << 30, diskTotalBytes: 10 << 30)).cause == .unknown)
        for c in RootCause.allCases { #expect(!c.actionItems.isEmpty) }
        let text = RootCause.classify(Evidence(sqliteFullSeenAt: at, diskFreeBytes: 0, diskTotalBytes: 20 << 20, walSize: 300 << 20, walCriticalSize: 256 << 20)).explanation
        #expect(text.contains("ran out of space"))
        #expect(text.contains("could not be checkpointed"))
    }

    @Test func configProblemsAreNamed() {
        #expect(RemediationConfig().problems().isEmpty)
        #expect(RemediationConfig().effectiveMode == .alertOnly, "auto without any app control only alerts")
        #expect(RemediationConfig(unit: "app.service").effectiveMode == .auto)
        #expect(RemediationConfig(stopCommand: ["/bin/true"]).problems().contains { $0.hasPrefix("stop-command:") })
        #expect(RemediationConfig(unit: "app.service", stopCommand: ["/a"], startCommand: ["/b"]).problems().contains { $0.hasPrefix("unit:") })
        #expect(RemediationConfig(unit: "app").problems().contains { $0.contains("not a systemd unit name") })
        #expect(RemediationConfig(walWarnSize: 10, walCriticalSize: 5).problems().contains { $0.hasPrefix("wal-warn-size") })
        let c = RemediationConfig(stopCommand: ["/s"], startCommand: ["/t"], statusCommand: ["/u"])
        #expect(c.appControl == .commands(stop: ["/s"], start: ["/t"], status: ["/u"]))
    }
}

@Suite struct RemediationPostMortemTests {
    static func sampleRecord(resolved: Bool = true) -> IncidentRecord {
        let t0 = Date(timeIntervalSince1970: 1_800_000_000.25)
        var r = IncidentRecord(
            id: 7, database: "/data/app.db", host: "web-1", mode: "auto", detectedAt: t0, confirmedAt: t0.addingTimeInterval(0.4),
            suspicion: Suspicion(source: .quickCheck, detail: "Page 11: btreeInitPage() returns error code 11", at: t0),
            confirmation: ["*** in database main ***", "Page 11: btreeInitPage() returns error code 11"],
            evidence: Evidence(sqliteFullSeenAt: t0.addingTimeInterval(-30), diskFreeBytes: 0, diskTotalBytes: 20_000_000, walSize: 300_000_000, walCriticalSize: 256_000_000),
            checkIntervalSeconds: 10)
        r.steps = [
            IncidentStep(seq: 1, at: t0, endedAt: nil, step: IncidentStepName.detected, outcome: .info, detail: "quick_check: Page 11"),
            IncidentStep(seq: 2, at: t0.addingTimeInterval(0.4), endedAt: nil, step: IncidentStepName.confirmed, outcome: .info, detail: "integrity_check"),
            IncidentStep(seq: 3, at: t0.addingTimeInterval(0.5), endedAt: t0.addingTimeInterval(0.9), step: IncidentStepName.stopApp, outcome: .ok, detail: "systemd unit app.service"),
            IncidentStep(seq: 4, at: t0.addingTimeInterval(1.0), endedAt: t0.addingTimeInterval(1.5), step: IncidentStepName.restore, outcome: .ok, detail: "replica file"),
        ]
        r.appStoppedAt = t0.addingTimeInterval(0.9)
        r.restoredTXID = 0x41
        r.restoredAt = t0.addingTimeInterval(-0.8)
        r.lastLocalTXID = 0x43
        r.quarantineDir = "/data/guardian-quarantine/x"
        r.quarantined = [QuarantinedFile(original: "/data/app.db", quarantined: "/data/guardian-quarantine/x/app.db", size: 4096)]
        r.restoreAttempts = 1
        if resolved {
            r.appActiveAt = t0.addingTimeInterval(2.3)
            r.closedAt = t0.addingTimeInterval(2.3)
            r.outcome = .resolvedAutomatically
            r.phase = .resolved
        } else {
            r.outcome = .escalated
            r.phase = .escalated
            r.escalation = "no replica has a restore point: file: empty"
        }
        return r
    }

    @Test func postMortemFollowsTheTemplate() {
        let text = PostMortem.render(Self.sampleRecord())
        for heading in ["# Post-mortem: Database Corruption Incident", "## Incident 7:", "**Date:** 2027-01-15", "**Duration:**", "**Severity:** P1 - Critical",
                        "### Timeline", "### Root Cause", "### Impact", "### What guardian did", "### Action Items"] {
            #expect(text.contains(heading), "missing \(heading)")
        }
        #expect(text.contains("- 08:00:00.250 — Detected: quick_check: Page 11"))
        #expect(text.contains("**Disk full.**"))
        #expect(text.contains("Downtime (measured RTO): 2.3s"))
        #expect(text.contains("guardian had the app stopped for 1.4s"))
        #expect(text.contains("Data lost (measured RPO): 2 transactions"))
        #expect(text.contains("[DONE] Restore the database from the replica"))
        #expect(text.contains("[TODO] Alert on disk usage at 80%"))
        #expect(text.contains("1. Stopped the app: systemd unit app.service (400ms)"))
        #expect(!text.contains("Escalated"))
    }

    @Test func escalatedPostMortemSaysWhatToDoNow() {
        let text = PostMortem.render(Self.sampleRecord(resolved: false), now: Date(timeIntervalSince1970: 1_800_000_100))
        #expect(text.contains("Escalated to a human — no replica has a restore point"))
        #expect(text.contains("not ended by guardian"))
        #expect(text.contains("`mv /data/guardian-quarantine/x/app.db /data/app.db`"))
        #expect(text.contains("ongoing"))
    }

    @Test func measuredFigures() {
        let r = Self.sampleRecord()
        #expect(r.downtime == .milliseconds(2300))
        #expect(r.appStoppedFor == .milliseconds(1400))
        #expect(r.transactionsLost == 2)
        #expect(r.dataWindowLost == .milliseconds(800))
    }
}

@Suite struct RemediationHostTests {
    @Test func commandsRunWithoutAShellWithTimeouts() async throws {
        let ok = try await CommandRunner.run(["/bin/echo", "hello; rm -rf /"], timeout: .seconds(5))
        #expect(ok.succeeded)
        #expect(ok.output == "hello; rm -rf /", "arguments are not interpreted by a shell")
        let fail = try await CommandRunner.run(["/bin/sh", "-c", "echo boom >&2; exit 3"], timeout: .seconds(5))
        #expect(fail.exitCode == 3)
        #expect(fail.summary == "exit 3: boom")
        let start = ContinuousClock.now
        let slow = try await CommandRunner.run(["/bin/sleep", "30"], timeout: .milliseconds(300))
        #expect(slow.timedOut)
        #expect(!slow.succeeded)
        #expect(ContinuousClock.now - start < .seconds(5))
        await #expect(throws: SystemError.self) { try await CommandRunner.run(["/nonexistent/app-start"], timeout: .seconds(1)) }
        await #expect(throws: SystemError.self) { try await CommandRunner.run([], timeout: .seconds(1)) }
    }

    @Test func startScriptLeavingABackgroundChildReturnsAtOnce() async throws {
        let dir = try TestSupport.makeTempDir("cmd")
        defer { TestSupport.cleanup(dir) }
        let start = ContinuousClock.now
        let r = try await CommandRunner.run(["/bin/sh", "-c", "sleep 20 & echo $! > \(dir)/pid; echo started"], timeout: .seconds(10))
        #expect(r.succeeded)
        #expect(ContinuousClock.now - start < .seconds(3))
        if let pid = Int32((try? String(contentsOfFile: dir + "/pid", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") {
            kill(pid, SIGKILL)
        }
    }

    @Test func quarantineMovesEverythingOrNothing() throws {
        let dir = try TestSupport.makeTempDir("quar")
        defer { TestSupport.cleanup(dir) }
        let db = dir + "/app.db"
        for s in ["", "-wal", "-shm"] { try TestSupport.write("content\(s)", to: db + s) }
        // A failure half-way (the -wal's target already exists) puts back what moved.
        let qdir = dir + "/q1"
        try FileManager.default.createDirectory(atPath: qdir, withIntermediateDirectories: true)
        try TestSupport.write("occupied", to: qdir + "/app.db-wal")
        #expect(throws: SystemError.self) { try Quarantine.move(database: db, into: qdir, note: "test") }
        for s in ["", "-wal", "-shm"] { #expect(FileManager.default.fileExists(atPath: db + s), "\(s) not put back") }
        #expect(!FileManager.default.fileExists(atPath: qdir + "/app.db"))

        let q2 = dir + "/q2"
        let moved = try Quarantine.move(database: db, into: q2, note: "incident 1")
        #expect(moved.map { ($0.original as NSString).lastPathComponent } == ["app.db", "app.db-wal", "app.db-shm"])
        for f in moved {
            #expect(!FileManager.default.fileExists(atPath: f.original))
            #expect(try String(contentsOfFile: f.quarantined, encoding: .utf8).hasPrefix("content"))
        }
        let readme = try String(contentsOfFile: q2 + "/README.txt", encoding: .utf8)
        #expect(readme.contains("mv '\(q2)/app.db' '\(db)'"))
    }

    @Test func swapKeepsOwnerAndModeAndQuarantinesNewcomers() throws {
        let dir = try TestSupport.makeTempDir("swap")
        defer { TestSupport.cleanup(dir) }
        let db = dir + "/app.db"
        let restored = Quarantine.restorePath(for: db, incident: 3, attempt: 0)
        #expect((restored as NSString).deletingLastPathComponent == dir)
        try TestSupport.write("restored", to: restored)
        try TestSupport.write("appeared", to: db)  // e.g. an app restarted by a supervisor created it
        let own = FileOwnership(uid: 4321, gid: 4322, mode: 0o100640)
        let extra = try Quarantine.swap(restored: restored, into: db, ownership: own, quarantineDir: dir + "/q")
        #expect(try String(contentsOfFile: db, encoding: .utf8) == "restored")
        #expect(extra.count == 1)
        #expect(try String(contentsOfFile: dir + "/q/app.db.appeared", encoding: .utf8) == "appeared")
        let now = try #require(FileOwnership.of(db))
        #expect(now.uid == 4321)
        #expect(now.gid == 4322)
        #expect(now.mode & 0o777 == 0o640)
        #expect(!FileManager.default.fileExists(atPath: restored))
    }

    @Test func openFileHoldersAreFound() async throws {
        let dir = try TestSupport.makeTempDir("open")
        defer { TestSupport.cleanup(dir) }
        try TestSupport.write("x", to: dir + "/app.db")
        let child = try ChildProcess.start("/bin/sh", ["-c", "exec 3<\(dir)/app.db; sleep 30"])
        defer { child.signal(SIGKILL) }
        let found = await TestSupport.waitUntil(timeout: .seconds(5)) {
            OpenFiles.holders(of: [dir + "/app.db"]).contains { $0.pid == child.pid }
        }
        #expect(found)
        #expect(OpenFiles.holders(of: [dir + "/nothing"]).isEmpty)
    }

    /// Run as a child under setpriv by the next test: the scan as a user
    /// that cannot read other users' /proc/<pid>/fd (the packaged unit).
    @Test(.enabled(if: ProcessInfo.processInfo.environment["GUARDIAN_OPENFILES_PROBE"] != nil))
    func openFilesProbe() throws {
        let env = ProcessInfo.processInfo.environment
        let db = env["GUARDIAN_OPENFILES_PROBE"] ?? ""
        let scan = OpenFiles.scan(of: Quarantine.suffixes.map { db + $0 })
        let text = "uid=\(geteuid()) holders=\(scan.holders.map { "\($0.pid)" }.joined(separator: ",")) uninspected=\(scan.uninspected) locks=\(scan.locksRead)"
        try text.write(toFile: env["GUARDIAN_OPENFILES_OUT"] ?? "/dev/null", atomically: false, encoding: .utf8)
    }

    /// The check before a quarantine, as the packaged unit runs it (its own
    /// user, CAP_CHOWN/FOWNER/DAC_OVERRIDE, no CAP_SYS_PTRACE): another
    /// user's process with an open SQLite connection is found through
    /// /proc/locks; one with a plain open is not visible, and the scan says
    /// so (not complete) instead of "no process". Real users via setpriv.
    @Test(.enabled(if: geteuid() == 0), .timeLimit(.minutes(1)))
    func holdersOfOtherUsersAreFoundOrReportedAsUninspected() async throws {
        let dir = try TestSupport.makeTempDir("open-users")
        defer { TestSupport.cleanup(dir) }
        chmod(dir, 0o777)
        let db = dir + "/app.db"
        try Damage.makeDatabase(db, rows: 10)
        for p in [db, db + "-wal", db + "-shm"] { chown(p, 65534, 65534) }
        let asApp = ["/usr/bin/setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
        let exe = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        func probe() async throws -> String {
            let out = dir + "/probe.txt"
            unlink(out)
            let caps = "+chown,+dac_override,+fowner"
            let r = try await run(
                "/usr/bin/setpriv",
                ["--reuid", "4242", "--regid", "4242", "--clear-groups", "--inh-caps", caps, "--ambient-caps", caps,
                 exe, "--testing-library", "swift-testing", "--filter", "openFilesProbe"],
                environment: ["GUARDIAN_OPENFILES_PROBE": db, "GUARDIAN_OPENFILES_OUT": out, "HOME": dir])
            let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
            if text.isEmpty { throw TestFailure("probe did not run: \(r.stdout) \(r.stderr)") }
            return text
        }
        // An open SQLite connection of the application's user.
        let app = try ChildProcess.start(asApp[0], Array(asApp.dropFirst()) + [
            "/usr/bin/python3", "-c",
            "import sqlite3,sys,time; c=sqlite3.connect(sys.argv[1]); c.execute('SELECT count(*) FROM items').fetchall(); print('ready', flush=True); time.sleep(60)",
            db,
        ])
        defer { app.signal(SIGKILL) }
        #expect(await TestSupport.waitUntil(timeout: .seconds(10)) { app.stdout.contains("ready") }, "\(app.stderr)")
        let seen = try await probe()
        #expect(seen.hasPrefix("uid=4242 "), "\(seen)")
        #expect(seen.contains("holders=\(app.pid)") || seen.contains(",\(app.pid)"), "the connection was not found: \(seen)")
        #expect(seen.contains("locks=true"))
        app.signal(SIGKILL)
        _ = await app.wait(timeout: .seconds(5))
        // A plain open of another user's process: not visible, and said so.
        let plain = try ChildProcess.start(asApp[0], Array(asApp.dropFirst()) + ["/bin/sh", "-c", "exec 3<\(db); echo ready; exec sleep 60"])
        defer { plain.signal(SIGKILL) }
        #expect(await TestSupport.waitUntil(timeout: .seconds(10)) { plain.stdout.contains("ready") })
        let blind = try await probe()
        #expect(blind.contains("holders= "), "\(blind)")
        #expect(!blind.contains("uninspected=0"), "processes it could not inspect must be counted: \(blind)")
    }

    @Test func procMountedWithHidepidIsNotTakenForComplete() {
        let plain = "22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw\n"
        let hidden = "22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw,hidepid=invisible\n"
        let numeric = "30 22 0:5 / /proc rw,relatime - proc proc rw,hidepid=2,subset=pid\n"
        #expect(!OpenFiles.procHidesProcesses(mountinfo: plain))
        #expect(OpenFiles.procHidesProcesses(mountinfo: hidden))
        #expect(OpenFiles.procHidesProcesses(mountinfo: numeric))
        #expect(OpenFiles.procHidesProcesses(mountinfo: nil), "unknown counts as hidden")
        #expect(!OpenFiles.Scan(holders: [], uninspected: 0, locksRead: true, processesHidden: true).isComplete)
    }

    @Test func lockTableLinesAreMatchedByDeviceAndInode() {
        let dev = UInt64(8 << 8 | 1)  // 08:01
        let text = """
            1: POSIX  ADVISORY  READ 1234 08:01:5678 128 128
            1: -> POSIX  ADVISORY  WRITE 1240 08:01:5678 128 128
            2: POSIX  ADVISORY  READ 999 08:02:5678 0 EOF
            3: OFDLCK ADVISORY  READ -1 08:01:5678 0 0
            4: FLOCK  ADVISORY  WRITE 77 08:01:9999 0 EOF
            """
        #expect(OpenFiles.lockHolders(in: text, targets: [[dev, 5678]]) == [1234, 1240, -1])
        #expect(OpenFiles.lockHolders(in: text, targets: [[dev, 1]]).isEmpty)
    }

    @Test func stateStoreKeepsIncidentsStepsAndAlerts() async throws {
        let dir = try TestSupport.makeTempDir("state")
        defer { TestSupport.cleanup(dir) }
        let store = StateStore(stateDir: dir + "/state")
        var r = RemediationPostMortemTests.sampleRecord()
        let steps = r.steps
        r.outcome = .open
        r.closedAt = nil
        let id = try await store.createIncident(r)
        for s in steps { try await store.appendStep(incident: id, s) }
        r.id = id
        r.outcome = .resolvedAutomatically
        r.closedAt = Date(timeIntervalSince1970: 1_800_000_002.5)
        try await store.updateIncident(r)
        try await store.setAlertActive(.init(key: "guardian/h/db/incident-\(id)", database: "/data/app.db", severity: .critical, summary: "s", triggeredAt: Date()))

        let reader = StateStore(stateDir: dir + "/state", readOnly: true)
        let back = try #require(try await reader.incident(id: id))
        func text(_ s: [IncidentStep]) -> [String] {
            s.map { "\($0.seq) \(Timestamps.iso8601($0.at)) \($0.endedAt.map(Timestamps.iso8601) ?? "-") \($0.step) \($0.outcome) \($0.detail)" }
        }
        #expect(text(back.steps) == text(steps))
        #expect(back.outcome == .resolvedAutomatically)
        #expect(back.restoredTXID == 0x41)
        #expect(back.evidence.walSize == r.evidence.walSize)
        #expect(back.cause == .diskFull)
        #expect(try await reader.incidents().map(\.id) == [id])
        #expect(try await reader.incidents(openOnly: true).isEmpty)
        #expect(try await reader.activeAlerts().map(\.key) == ["guardian/h/db/incident-\(id)"])
        let missing = StateStore(stateDir: dir + "/none", readOnly: true)
        await #expect(throws: StateStoreError.self) { try await missing.incidents() }
        #expect(!FileManager.default.fileExists(atPath: dir + "/none"), "reading never creates the state directory")
    }
}
