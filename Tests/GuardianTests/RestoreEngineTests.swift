import Foundation
import Platform
import Replication
import Testing

/// Builds a replica the way guardian's replicator does, with the LTX encoder,
/// from a real SQLite database: after each transaction the changed pages
/// (and any growth pages) become one L0 file; the first is a full image. The
/// database uses a rollback journal, so its file *is* the committed state and
/// every TXID's exact bytes can be kept for comparison.
final class ChainBuilder: @unchecked Sendable {
    let dir: String
    let db: String
    let replicaRoot: String
    let client: FileReplicaClient
    let pageSize: Int
    let base = Date(timeIntervalSince1970: 1_800_000_000.25)
    private(set) var txid: UInt64 = 0
    /// Database bytes after each TXID.
    private(set) var states: [UInt64: [UInt8]] = [:]
    private let connection: SQLiteConnection

    init(dir: String, pageSize: Int = 4096, name: String = "app.db") throws {
        self.dir = dir
        db = dir + "/" + name
        replicaRoot = dir + "/replica"
        client = FileReplicaClient(root: replicaRoot)
        self.pageSize = pageSize
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        connection = try SQLiteConnection(path: db, mode: .readWriteCreate)
        try connection.execute("PRAGMA page_size=\(pageSize); PRAGMA journal_mode=DELETE")
    }

    /// The instant TXID `txid` is stamped with.
    func time(_ txid: UInt64) -> Date { base.addingTimeInterval(Double(txid)) }

    func state(_ txid: UInt64) -> [UInt8] { states[txid] ?? [] }

    static func pages(_ bytes: [UInt8], _ pageSize: Int) -> [[UInt8]] {
        stride(from: 0, to: bytes.count, by: pageSize).map { Array(bytes[$0..<min(bytes.count, $0 + pageSize)]) }
    }

    /// Runs `sql` as one transaction and ships it as the next L0 file.
    @discardableResult
    func commit(_ sql: String) async throws -> UInt64 {
        try connection.execute(sql)
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: db)))
        let previous = txid == 0 ? [] : Self.pages(state(txid), pageSize)
        txid += 1
        states[txid] = bytes
        let current = Self.pages(bytes, pageSize)
        let changed = current.indices.filter { $0 >= previous.count || previous[$0] != current[$0] }
        try await write(level: 0, min: txid, max: txid, pages: changed.map { (UInt32($0 + 1), current[$0]) }, commit: current.count)
        return txid
    }

    /// A compaction of min...max into `level`: the pages that differ between
    /// the state before `min` and the state at `max`, plus growth pages.
    func compact(level: Int, _ min: UInt64, _ max: UInt64) async throws {
        let before = min == 1 ? [] : Self.pages(state(min - 1), pageSize)
        let after = Self.pages(state(max), pageSize)
        let pages = after.indices.filter { $0 >= before.count || before[$0] != after[$0] }.map { (UInt32($0 + 1), after[$0]) }
        try await write(level: level, min: min, max: max, pages: pages, commit: after.count)
    }

    /// A level-9 snapshot at `txid`.
    func snapshot(_ txid: UInt64) async throws {
        let pages = Self.pages(state(txid), pageSize)
        try await write(level: 9, min: 1, max: txid, pages: pages.indices.map { (UInt32($0 + 1), pages[$0]) }, commit: pages.count)
    }

    func write(level: Int, min: UInt64, max: UInt64, pages: [(UInt32, [UInt8])], commit: Int, pageSize override: Int? = nil) async throws {
        let header = LTXHeader(
            pageSize: UInt32(override ?? pageSize), commit: UInt32(commit), minTXID: min, maxTXID: max,
            timestamp: LTXHeader.milliseconds(time(max)))
        let sink = LTXMemorySink()
        let encoder = try LTXEncoder(header: header, sink: sink)
        for (pgno, data) in pages { try encoder.writePage(pgno: pgno, data) }
        try encoder.finish()
        _ = try await client.writeFile(level: level, minTXID: min, maxTXID: max, contents: .bytes(sink.bytes), createdAt: header.date)
    }

    func path(level: Int = 0, _ min: UInt64, _ max: UInt64? = nil) -> String {
        "\(replicaRoot)/ltx/\(level)/\(LTXNaming.fileName(minTXID: min, maxTXID: max ?? min))"
    }

    /// A small history: schema, inserts that grow the file, an update, a
    /// delete + VACUUM that shrinks it, and growth again (TXIDs 1...12).
    static func standard(_ dir: String, pageSize: Int = 4096) async throws -> ChainBuilder {
        let b = try ChainBuilder(dir: dir, pageSize: pageSize)
        try await b.commit("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, blob BLOB)")
        for i in 1...8 {
            try await b.commit("INSERT INTO t(v, blob) VALUES ('row-\(i)', randomblob(\(i % 3 == 0 ? 9000 : 300)))")
        }
        try await b.commit("UPDATE t SET v = v || '-updated' WHERE id % 2 = 0")
        try await b.commit("DELETE FROM t WHERE id > 3; VACUUM")
        try await b.commit("INSERT INTO t(v, blob) VALUES ('after-vacuum', randomblob(5000))")
        return b
    }
}

/// A spy that wraps the real file client so restore takes the download path
/// (it is not a FileReplicaClient), recording which files it fetched.
struct DownloadingClient: ReplicaClient {
    let inner: FileReplicaClient
    let log: DownloadLog
    var target: ReplicaTarget { inner.target }

    func listFiles(level: Int, exactTimestamps: Bool) async throws -> [LTXFileInfo] {
        try await inner.listFiles(level: level, exactTimestamps: exactTimestamps)
    }

    func writeFile(level: Int, minTXID: UInt64, maxTXID: UInt64, contents: LTXPayload, createdAt: Date) async throws -> LTXFileInfo {
        try await inner.writeFile(level: level, minTXID: minTXID, maxTXID: maxTXID, contents: contents, createdAt: createdAt)
    }

    func downloadFile(_ file: LTXFileInfo, to localPath: String) async throws {
        log.add(file, localPath)
        try await inner.downloadFile(file, to: localPath)
    }

    func readFile(_ file: LTXFileInfo) async throws -> [UInt8] { try await inner.readFile(file) }
    func deleteFiles(_ files: [LTXFileInfo]) async throws { try await inner.deleteFiles(files) }
    func deleteAll() async throws { try await inner.deleteAll() }
    func readMarker() async throws -> [UInt8]? { try await inner.readMarker() }
    func writeMarker(_ bytes: [UInt8]) async throws { try await inner.writeMarker(bytes) }
}

final class DownloadLog: @unchecked Sendable {
    private let lock = NSLock()
    private var entries: [(LTXFileInfo, String)] = []
    func add(_ f: LTXFileInfo, _ p: String) { lock.withLock { entries.append((f, p)) } }
    var files: [LTXFileInfo] { lock.withLock { entries.map(\.0) } }
    var paths: [String] { lock.withLock { entries.map(\.1) } }
}

final class ProgressLog: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [RestoreProgress] = []
    func add(_ p: RestoreProgress) { lock.withLock { items.append(p) } }
    var all: [RestoreProgress] { lock.withLock { items } }
}

@Suite struct RestoreEngineTests {
    static func bytes(_ path: String) -> [UInt8]? { FileManager.default.contents(atPath: path).map { [UInt8]($0) } }

    static func integrity(_ path: String) throws -> String {
        let c = try SQLiteConnection(path: path, mode: .readOnly)
        return try c.query("PRAGMA integrity_check").map { "\($0.first ?? .null)" }.joined(separator: ";")
    }

    /// Leftovers of a restore next to OUT (temp file, download directories).
    static func leftovers(_ dir: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasSuffix(".tmp") || $0.contains(".restore-") }
    }

    @Test func latestRestoreIsByteIdentical() async throws {
        let dir = try TestSupport.makeTempDir("restore")
        defer { TestSupport.cleanup(dir) }
        let b = try await ChainBuilder.standard(dir)
        let out = dir + "/out.db"
        let progress = ProgressLog()
        let result = try await Restorer().restore(client: b.client, to: out, options: RestoreOptions(), progress: { progress.add($0) })
        #expect(result.txid == 12 && result.files == 12)
        #expect(Self.bytes(out) == b.state(12))
        #expect(result.bytes == Int64(b.state(12).count) && result.pageSize == 4096)
        #expect(result.timestamp == b.time(12))
        #expect(result.integrityCheck == .full)
        #expect(try Self.integrity(out) == "ok")
        #expect(Self.leftovers(dir).isEmpty)
        let seen = progress.all
        #expect(seen.last?.phase == .verifying && seen.last?.filesDone == 12)
        #expect(zip(seen, seen.dropFirst()).allSatisfy { $0.bytesDone <= $1.bytesDone && $0.filesDone <= $1.filesDone })
    }

    @Test func everyTXIDRestoresExactly() async throws {
        let dir = try TestSupport.makeTempDir("pitr")
        defer { TestSupport.cleanup(dir) }
        let b = try await ChainBuilder.standard(dir)
        for txid in UInt64(1)...12 {
            let out = dir + "/tx\(txid).db"
            let r = try await Restorer().restore(client: b.client, to: out, options: RestoreOptions(txid: txid, integrityCheck: .quick))
            #expect(r.txid == txid && r.files == Int(txid))
            #expect(Self.bytes(out) == b.state(txid), "TXID \(txid)")
        }
    }

    @Test func timestampRestoresExactlyWhatWasCommittedAtOrBefore() async throws {
        let dir = try TestSupport.makeTempDir("ts")
        defer { TestSupport.cleanup(dir) }
        let b = try await ChainBuilder.standard(dir)
        for (instant, expected) in [(b.time(5), UInt64(5)), (b.time(5).addingTimeInterval(-0.001), 4), (b.time(1), 1), (b.time(12).addingTimeInterval(3600), 12)] {
            let out = dir + "/ts-\(expected)-\(UUID().uuidString.prefix(4)).db"
            let r = try await Restorer().restore(client: b.client, to: out, options: RestoreOptions(timestamp: instant))
            #expect(r.txid == expected)
            #expect(Self.bytes(out) == b.state(expected))
        }
        do {
            _ = try await Restorer().restore(client: b.client, to: dir + "/early.db", options: RestoreOptions(timestamp: b.time(1).addingTimeInterval(-0.001)))
            Issue.record("a timestamp before the first restore point was accepted")
        } catch let e as RestoreError {
            #expect(e.kind == .timestampTooEarly)
            #expect(e.description.contains("earliest restore point \(Timestamps.iso8601(b.time(1)))"))
        }
        #expect(!FileManager.default.fileExists(atPath: dir + "/early.db"))
    }

    @Test func compactionsAndSnapshotsAreUsedAndGiveTheSameBytes() async throws {
        let dir = try TestSupport.makeTempDir("levels")
        defer { TestSupport.cleanup(dir) }
        let b = try await ChainBuilder.standard(dir)
        try await b.compact(level: 1, 2, 6)
        try await b.compact(level: 2, 9, 11)
        try await b.snapshot(8)
        let latest = try await Restorer().restore(client: b.client, to: dir + "/latest.db", options: RestoreOptions())
        #expect(latest.plan.map(\.description) == [
            "L9/0000000000000001-0000000000000008.ltx", "L2/0000000000000009-000000000000000b.ltx", "L0/000000000000000c-000000000000000c.ltx",
        ])
        #expect(Self.bytes(dir + "/latest.db") == b.state(12))
        let six = try await Restorer().restore(client: b.client, to: dir + "/six.db", options: RestoreOptions(txid: 6))
        #expect(six.plan.map(\.description) == ["L0/0000000000000001-0000000000000001.ltx", "L1/0000000000000002-0000000000000006.ltx"])
        #expect(Self.bytes(dir + "/six.db") == b.state(6))
        // TXID 11 (DELETE + VACUUM) shrank the file; "latest" above went through L2 9-11,
        // which contains the shrink, and was truncated correctly. TXID 10 is before it.
        let ten = try await Restorer().restore(client: b.client, to: dir + "/ten.db", options: RestoreOptions(txid: 10))
        #expect(ten.plan.map(\.description) == ["L9/0000000000000001-0000000000000008.ltx", "L0/0000000000000009-0000000000000009.ltx", "L0/000000000000000a-000000000000000a.ltx"])
        #expect(Self.bytes(dir + "/ten.db") == b.state(10))
        #expect(b.state(11).count < b.state(10).count)
    }

    @Test func remoteReplicasAreDownloadedBesideTheOutputAndCleanedUp() async throws {
        let dir = try TestSupport.makeTempDir("download")
        defer { TestSupport.cleanup(dir) }
        let b = try await ChainBuilder.standard(dir)
        try await b.snapshot(6)
        let log = DownloadLog()
        let client = DownloadingClient(inner: b.client, log: log)
        let outDir = dir + "/out"
        try FileManager.default.createDirectory(atPath: outDir, withIntermediateDirectories: true)
        let r = try await Restorer().restore(client: client, to: outDir + "/app.db", options: RestoreOptions(downloadAhead: 2))
        #expect(Self.bytes(outDir + "/app.db") == b.state(12))
        #expect(log.files == r.plan)
        #expect(log.paths.allSatisfy { $0.hasPrefix(outDir + "/.app.db.restore-") })
        #expect(try FileManager.default.contentsOfDirectory(atPath: outDir) == ["app.db"])
    }

    // MARK: Refusals and bad replicas: clear errors, OUT untouched

    /// Restores with `force` onto an existing OUT and checks the failure left it alone.
    static func expectFailure(
        _ client: any ReplicaClient, _ dir: String, options: RestoreOptions = RestoreOptions(force: true)
    ) async -> (any Error)? {
        let out = dir + "/precious.db"
        let precious = Array("precious contents".utf8)
        _ = FileManager.default.createFile(atPath: out, contents: Data(precious))
        _ = FileManager.default.createFile(atPath: out + "-wal", contents: Data("wal".utf8))
        defer {
            unlink(out)
            unlink(out + "-wal")
        }
        do {
            _ = try await Restorer().restore(client: client, to: out, options: options)
            Issue.record("the restore succeeded")
            return nil
        } catch {
            #expect(bytes(out) == precious, "OUT was changed by a failed restore")
            #expect(bytes(out + "-wal") == Array("wal".utf8), "OUT-wal was changed by a failed restore")
            #expect(leftovers(dir).isEmpty, "left behind: \(leftovers(dir))")
            return error
        }
    }

    @Test func corruptTruncatedAndMissingFilesAreNamed() async throws {
        let dir = try TestSupport.makeTempDir("bad")
        defer { TestSupport.cleanup(dir) }
        let b = try await ChainBuilder.standard(dir)
        let five = b.path(5)
        let saved = try #require(Self.bytes(five))
        func put(_ bytes: [UInt8]) throws { try Data(bytes).write(to: URL(fileURLWithPath: five)) }

        // A bit flipped in page data (the last literal byte of the first page's LZ4 block).
        var flipped = saved
        let frame = Int(LTXReference.be32(saved, 106))
        flipped[100 + 10 + frame - 1] ^= 0x20
        try put(flipped)
        let e1 = await Self.expectFailure(b.client, dir) as? LTXError
        #expect(e1?.kind == .checksumMismatch && e1?.file == five, "\(String(describing: e1))")
        // Downloaded files are named by replica and level.
        let e1r = await Self.expectFailure(DownloadingClient(inner: b.client, log: DownloadLog()), dir) as? LTXError
        #expect(e1r?.file == "file://\(b.replicaRoot) L0/0000000000000005-0000000000000005.ltx", "\(String(describing: e1r))")

        try put(Array(saved.prefix(saved.count - 30)))
        let e2 = await Self.expectFailure(b.client, dir) as? LTXError
        #expect(e2?.kind == .truncated && e2?.description.contains("0000000000000005-0000000000000005.ltx") == true)

        try FileManager.default.removeItem(atPath: five)
        let e3 = await Self.expectFailure(b.client, dir) as? RestoreError
        #expect(e3?.kind == .gap)
        #expect(e3?.description == "non-contiguous chain: TXIDs 0000000000000005-0000000000000005 are missing between "
            + "L0/0000000000000004-0000000000000004.ltx and L0/0000000000000006-0000000000000006.ltx")
        try put(saved)

        // Beyond the newest TXID, and before the first restore point.
        let e4 = await Self.expectFailure(b.client, dir, options: RestoreOptions(txid: 99, force: true)) as? RestoreError
        #expect(e4?.kind == .txidUnreachable && e4?.description.contains("TXID 0000000000000063 cannot be reached") == true)
        let e5 = await Self.expectFailure(b.client, dir, options: RestoreOptions(timestamp: b.base, force: true)) as? RestoreError
        #expect(e5?.kind == .timestampTooEarly)

        // Healthy again.
        let r = try await Restorer().restore(client: b.client, to: dir + "/ok.db", options: RestoreOptions())
        #expect(r.txid == 12 && Self.bytes(dir + "/ok.db") == b.state(12))
    }

    @Test func aReplicaOfAnotherDatabaseIsRefused() async throws {
        let dir = try TestSupport.makeTempDir("other")
        defer { TestSupport.cleanup(dir) }
        let a = try await ChainBuilder.standard(dir + "/a")
        let other = try await ChainBuilder.standard(dir + "/b", pageSize: 1024)
        // A file of database B (page size 1024) in A's chain.
        try FileManager.default.removeItem(atPath: a.path(4))
        try FileManager.default.copyItem(atPath: other.path(4), toPath: a.path(4))
        let e1 = await Self.expectFailure(a.client, dir) as? RestoreError
        #expect(e1?.kind == .mismatch)
        #expect(e1?.description.contains("0000000000000004-0000000000000004.ltx: page size 1024 differs from the 4096") == true)
        #expect(e1?.description.contains("another database") == true)

        // A chain that does not start with a full image (only B's tail).
        let tail = dir + "/tail"
        try FileManager.default.createDirectory(atPath: tail + "/ltx/0", withIntermediateDirectories: true)
        for t in UInt64(6)...9 {
            try FileManager.default.copyItem(atPath: other.path(t), toPath: tail + "/ltx/0/" + LTXNaming.fileName(minTXID: t, maxTXID: t))
        }
        let e2 = await Self.expectFailure(FileReplicaClient(root: tail), dir) as? RestoreError
        #expect(e2?.kind == .noSnapshot && e2?.description.contains("L0/0000000000000006-0000000000000006.ltx") == true)

        // A file whose header disagrees with its name.
        try FileManager.default.removeItem(atPath: a.path(4))
        try FileManager.default.copyItem(atPath: a.path(3), toPath: a.path(4))
        let e3 = await Self.expectFailure(a.client, dir) as? RestoreError
        #expect(e3?.kind == .mismatch && e3?.description.contains("its name says 0000000000000004-0000000000000004.ltx") == true)

        // An empty replica.
        let e4 = await Self.expectFailure(FileReplicaClient(root: dir + "/nothing"), dir) as? RestoreError
        #expect(e4?.kind == .noFiles)
    }

    @Test func missingGrowthPageIsReported() async throws {
        let dir = try TestSupport.makeTempDir("growth")
        defer { TestSupport.cleanup(dir) }
        let b = try ChainBuilder(dir: dir)
        try await b.commit("CREATE TABLE t(x)")
        let pages = ChainBuilder.pages(b.state(1), 4096)
        // TXID 2 claims 5 pages but carries only pages 1 and 5.
        try await b.write(level: 0, min: 2, max: 2, pages: [(1, pages[0]), (5, [UInt8](repeating: 0, count: 4096))], commit: 5)
        let e = await Self.expectFailure(b.client, dir) as? RestoreError
        #expect(e?.kind == .incomplete)
        #expect(e?.description.hasPrefix("page \(pages.count + 1) of 5 is in no file of the chain") == true, "\(String(describing: e))")
    }

    @Test func integrityFailureKeepsOutputAndRemovesTheCopy() async throws {
        let dir = try TestSupport.makeTempDir("integrity")
        defer { TestSupport.cleanup(dir) }
        let b = try ChainBuilder(dir: dir)
        try await b.commit("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); CREATE INDEX tv ON t(v)")
        try await b.commit("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 400) INSERT INTO t(v) SELECT 'value-' || i FROM n")
        // TXID 3: a valid LTX file whose page 3 is garbage (a b-tree page scribbled over).
        var garbage = ChainBuilder.pages(b.state(2), 4096)[2]
        for i in stride(from: 8, to: garbage.count, by: 3) { garbage[i] ^= 0x5a }
        try await b.write(level: 0, min: 3, max: 3, pages: [(3, garbage)], commit: ChainBuilder.pages(b.state(2), 4096).count)
        for check in [IntegrityCheck.full, .quick] {
            let e = await Self.expectFailure(b.client, dir, options: RestoreOptions(force: true, integrityCheck: check)) as? RestoreError
            #expect(e?.kind == .integrity, "\(check): \(String(describing: e))")
            #expect(e?.description.contains(check == .full ? "integrity_check" : "quick_check") == true)
        }
        // Without a check the damaged copy is restored as asked.
        let r = try await Restorer().restore(client: b.client, to: dir + "/unchecked.db", options: RestoreOptions(integrityCheck: .none))
        #expect(r.txid == 3 && r.integrityCheck == .none)
    }

    @Test func existingOutputIsRefusedBeforeAnythingElse() async throws {
        let dir = try TestSupport.makeTempDir("exists")
        defer { TestSupport.cleanup(dir) }
        let out = dir + "/out.db"
        try TestSupport.write("precious", to: out)
        // The replica does not even exist: the output check comes first.
        let nowhere = FileReplicaClient(root: dir + "/nowhere")
        do {
            _ = try await Restorer().restore(client: nowhere, to: out, options: RestoreOptions())
            Issue.record("an existing OUT was replaced without force")
        } catch let e as RestoreError {
            #expect(e.kind == .outputExists && e.description.contains("already exists; pass --force"))
        }
        #expect(try String(contentsOfFile: out, encoding: .utf8) == "precious")
        // A WAL beside an absent OUT would be replayed into the restored file.
        unlink(out)
        try TestSupport.write("old wal", to: out + "-wal")
        do {
            _ = try await Restorer().restore(client: nowhere, to: out, options: RestoreOptions())
            Issue.record("a stray -wal was accepted")
        } catch let e as RestoreError {
            #expect(e.kind == .outputExists && e.description.contains("-wal"))
        }
        #expect(!FileManager.default.fileExists(atPath: out))
        do {
            _ = try await Restorer().restore(client: nowhere, to: dir + "/missing-dir/out.db", options: RestoreOptions())
            Issue.record("a missing output directory was accepted")
        } catch let e as RestoreError {
            #expect(e.kind == .invalidOptions)
        }
    }

    @Test func forceReplacesOutputAndItsSideFiles() async throws {
        let dir = try TestSupport.makeTempDir("force")
        defer { TestSupport.cleanup(dir) }
        let b = try await ChainBuilder.standard(dir)
        let out = dir + "/out.db"
        for suffix in ["", "-wal", "-shm", "-journal"] { try TestSupport.write("old", to: out + suffix) }
        _ = try await Restorer().restore(client: b.client, to: out, options: RestoreOptions(force: true))
        #expect(Self.bytes(out) == b.state(12))
        for suffix in ["-wal", "-shm", "-journal"] { #expect(!FileManager.default.fileExists(atPath: out + suffix)) }
        // An empty OUT needs no force.
        let empty = dir + "/empty.db"
        _ = FileManager.default.createFile(atPath: empty, contents: Data())
        _ = try await Restorer().restore(client: b.client, to: empty, options: RestoreOptions(txid: 3))
        #expect(Self.bytes(empty) == b.state(3))
    }

    @Test func restorePointsListEveryLevel() async throws {
        let dir = try TestSupport.makeTempDir("points")
        defer { TestSupport.cleanup(dir) }
        let b = try await ChainBuilder.standard(dir)
        try await b.snapshot(4)
        try await b.compact(level: 1, 2, 5)
        let points = try await Restorer().listRestorePoints(client: b.client)
        #expect(points.count == 14)
        #expect(points.map(\.level) == Array(repeating: 0, count: 12) + [1, 9])
        #expect(points.first { $0.level == 9 }?.createdAt == b.time(4))
    }
}
