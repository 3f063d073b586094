import CLinux
import Foundation
import Logging
import Testing
@testable import Platform
@testable import Replication

/// Compaction, staging and TXID bounds against real files: LTX files on a
/// real file replica, the built `guardian` process, restores by guardian and
/// by the real Litestream.
@Suite(.serialized) struct CompactionTests {
    static let logger = Logger(label: "guardian.test.compaction", factory: { _ in SwiftLogNoOpLogHandler() })

    // MARK: - Helpers

    /// A page whose bytes say which page and which version it is.
    static func page(_ pgno: UInt32, version: UInt32, size: Int = 4096) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: size)
        for i in stride(from: 0, to: size, by: 8) {
            LTXBytes.put32(&b, i, pgno)
            LTXBytes.put32(&b, i + 4, version)
        }
        return b
    }

    /// An LTX file with `pages` (ascending) at TXIDs min...max.
    static func ltx(min: UInt64, max: UInt64, commit: UInt32, pages: [UInt32], version: UInt32, timestamp: Int64 = 1_700_000_000_000) throws -> [UInt8] {
        let sink = LTXMemorySink()
        let encoder = try LTXEncoder(header: LTXHeader(pageSize: 4096, commit: commit, minTXID: min, maxTXID: max, timestamp: timestamp + Int64(max)), sink: sink)
        for p in pages { try encoder.writePage(pgno: p, page(p, version: version)) }
        try encoder.finish()
        return sink.bytes
    }

    /// Every page of an LTX file.
    static func decode(_ bytes: [UInt8]) throws -> (LTXHeader, [UInt32: [UInt8]]) {
        let d = try LTXDecoder(source: LTXMemorySource(bytes), name: "out")
        var pages: [UInt32: [UInt8]] = [:]
        while let (p, data) = try d.nextPage() { pages[p] = data }
        return (d.header, pages)
    }

    /// Bytes the C heap holds now (glibc: small blocks in use plus mmapped blocks).
    static func heapInUse() -> Int {
        let m = mallinfo2()
        return Int(m.uordblks) + Int(m.hblkhd)
    }

    /// Records the peak heap growth over `baseline` each time the encoder writes.
    final class PeakHeapSink: LTXSink {
        let baseline: Int
        var peak = 0
        var bytes: Int64 = 0
        init() { baseline = CompactionTests.heapInUse() }
        func write(_ data: UnsafeRawBufferPointer) throws {
            bytes += Int64(data.count)
            peak = max(peak, CompactionTests.heapInUse() - baseline)
        }
    }

    /// The replicators behind the tests' shippers, kept alive: a
    /// `ThreadExecutor` released before its thread starts traps on its
    /// `unowned self` (its thread never ends either: the per-session thread
    /// leak of issue 18, not this suite's subject).
    nonisolated(unsafe) static var keepAlive: [Replicator] = []
    static let keepAliveLock = NSLock()

    static func shipper(db: String, replica: String, staging: String) -> ReplicaShipper {
        let config = ReplicaConfig(name: "file", target: .file(path: replica))
        let replicator = Replicator(config: DatabaseConfig(path: db, replicas: [config]), stagingDir: staging, logger: logger)
        keepAliveLock.withLock { keepAlive.append(replicator) }
        return ReplicaShipper(config: config, client: FileReplicaClient(root: replica), replicator: replicator, positions: PositionBook(), logger: logger)
    }

    static func files(_ replica: String, level: Int) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "\(replica)/ltx/\(level)")) ?? []).filter { $0.hasSuffix(".ltx") }.sorted()
    }

    /// Every regular file under `dir` (recursively).
    static func leftovers(_ dir: String) -> [String] {
        (FileManager.default.enumerator(atPath: dir)?.allObjects as? [String] ?? []).filter {
            var isDir: ObjCBool = false
            return FileManager.default.fileExists(atPath: "\(dir)/\($0)", isDirectory: &isDir) && !isDir.boolValue
        }
    }

    // MARK: - Item: MaxTXID ffffffffffffffff

    /// A file named with MaxTXID ffffffffffffffff (anyone who can write to the
    /// bucket can put one there) used to crash `guardian restore` and the
    /// replicator (numbering past it overflowed): now every path refuses it
    /// with an error naming the file.
    @Test func aFileEndingAtTheLargestTXIDIsRefusedNotACrash() async throws {
        let dir = try TestSupport.makeTempDir("maxtxid")
        defer { TestSupport.cleanup(dir) }
        let db = dir + "/app.db"
        let replica = dir + "/replica"
        try await sqlite3(db, "PRAGMA journal_mode=wal; CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        let bad = "0000000000000001-ffffffffffffffff.ltx"
        try FileManager.default.createDirectory(atPath: replica + "/ltx/0", withIntermediateDirectories: true)
        try TestSupport.write("not really an LTX file", to: "\(replica)/ltx/0/\(bad)")

        let restore = try await guardian(["restore", "-o", dir + "/out.db", "file://" + replica])
        #expect(restore.status != 0 && restore.status < 128, "\(restore.status) \(restore.stderr)")
        #expect(restore.stderr.contains(bad) && restore.stderr.contains("out of range"), "\(restore.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/out.db"))

        let ltx = try await guardian(["ltx", "file://" + replica])
        #expect(ltx.status != 0 && ltx.status < 128, "\(ltx.status) \(ltx.stderr)")
        #expect(ltx.stderr.contains(bad) && ltx.stderr.contains("out of range"), "\(ltx.stderr)")

        // The daemon keeps running, logs the file and shows it in its status, and stops cleanly.
        let config = dir + "/guardian.yml"
        let socket = dir + "/guardian.sock"
        try TestSupport.write(
            "status:\n  socket: \(socket)\nstate-dir: \(dir)/state\ndbs:\n  - path: \(db)\n    monitor-interval: 100ms\n    replicas:\n      - url: file://\(replica)\n",
            to: config)
        let child = try ChildProcess.start(TestSupport.guardianBinary, ["run", "--config", config, "--log-target", "stderr"])
        defer { child.removeFiles(); child.signal(SIGKILL) }
        let reported = await TestSupport.waitUntil { child.stderr.contains(bad) && child.stderr.contains("out of range") }
        #expect(reported, "\(child.stderr)")
        var shown = ""
        let inStatus = try await TestSupport.waitUntil {
            let r = try await guardian(["status", "--socket", socket, "--json"])
            shown = r.stdout
            return r.status == 0 && r.stdout.contains(bad) && r.stdout.contains("Failing")
        }
        #expect(inStatus, "status: \(shown)")
        #expect(child.process.isRunning, "the daemon died: \(child.stderr)")
        // Nothing was numbered past the bad file.
        #expect(Self.files(replica, level: 0) == [bad])
        child.signal(SIGTERM)
        let status = await child.wait()
        #expect(status == 0, "\(child.stderr)")

        // The planner refuses such a file too, whoever lists it.
        let info = LTXFileInfo(level: 0, minTXID: 1, maxTXID: .max, size: 1, createdAt: Date())
        #expect(throws: RestoreError.self) { try RestorePlanner.plan(files: [info]) }
        // And no header may claim it.
        var header = LTXHeader(pageSize: 4096, commit: 1, minTXID: 1, maxTXID: .max, timestamp: 0)
        #expect(header.problem?.contains("out of range") == true)
        header.maxTXID = LTXNaming.maxTXID
        #expect(header.problem == nil)
    }

    // MARK: - Item: streaming compaction

    /// The merge streams: memory while merging a 32 MiB database image with
    /// an update of half of it stays far below the image's size (the old
    /// merge held every page in a dictionary until the end: 32 MiB and more).
    /// Measured with glibc's heap counters each time the encoder writes.
    @Test func mergingALargeImageKeepsMemoryBounded() throws {
        let pages: UInt32 = 8192  // 32 MiB of 4 KiB pages
        let image = try Self.ltx(min: 1, max: 1, commit: pages, pages: Array(1...pages), version: 1)
        let update = try Self.ltx(min: 2, max: 2, commit: pages, pages: Array(stride(from: 1, through: pages, by: 2)), version: 2)
        let sink = PeakHeapSink()
        let header = try LTXCompactor.merge([("image", image), ("update", update)], into: sink)
        #expect(header.minTXID == 1 && header.maxTXID == 2 && header.commit == pages)
        #expect(sink.bytes > 0)
        #expect(sink.peak < 8 << 20, "peak heap growth while merging: \(sink.peak) bytes")

        // The same from files on disk, as compaction runs it.
        let dir = try TestSupport.makeTempDir("merge-mem")
        defer { TestSupport.cleanup(dir) }
        try Data(image).write(to: URL(fileURLWithPath: dir + "/a.ltx"))
        try Data(update).write(to: URL(fileURLWithPath: dir + "/b.ltx"))
        let fileSink = PeakHeapSink()
        _ = try LTXCompactor.merge(files: [("a", dir + "/a.ltx"), ("b", dir + "/b.ltx")], into: fileSink, scratch: dir)
        #expect(fileSink.peak < 8 << 20, "peak heap growth while merging files: \(fileSink.peak) bytes")
    }

    /// More inputs than are decoded at once merge in passes; the result is
    /// the newest version of every page, as a one-pass merge gives.
    @Test func longRunsMergeInPassesToTheSameResult() throws {
        let count = LTXCompactor.fanIn * 2 + 7
        var inputs: [(name: String, bytes: [UInt8])] = [("1", try Self.ltx(min: 1, max: 1, commit: 8, pages: Array(1...8), version: 1))]
        var expected: [UInt32: [UInt8]] = [:]
        for p: UInt32 in 1...8 { expected[p] = Self.page(p, version: 1) }
        var commit: UInt32 = 8
        for t in 2...count {
            // Each transaction changes one page; every fifth grows the database by one.
            var changed: [UInt32] = [UInt32(t % 8) + 1]
            if t % 5 == 0 {
                commit += 1
                changed.append(commit)
            }
            inputs.append(("\(t)", try Self.ltx(min: UInt64(t), max: UInt64(t), commit: commit, pages: changed, version: UInt32(t))))
            for p in changed { expected[p] = Self.page(p, version: UInt32(t)) }
        }
        let sink = LTXMemorySink()
        let header = try LTXCompactor.merge(inputs, into: sink)
        #expect(header.minTXID == 1 && header.maxTXID == UInt64(count) && header.commit == commit)
        let (decoded, pages) = try Self.decode(sink.bytes)
        #expect(decoded.maxTXID == UInt64(count))
        #expect(pages == expected)

        // From files, with intermediate passes in a scratch directory that ends empty.
        let dir = try TestSupport.makeTempDir("merge-pass")
        defer { TestSupport.cleanup(dir) }
        try FileManager.default.createDirectory(atPath: dir + "/scratch", withIntermediateDirectories: true)
        var paths: [(name: String, path: String)] = []
        for (i, input) in inputs.enumerated() {
            let path = "\(dir)/in-\(i).ltx"
            try Data(input.bytes).write(to: URL(fileURLWithPath: path))
            paths.append((input.name, path))
        }
        let fileSink = LTXMemorySink()
        _ = try LTXCompactor.merge(files: paths, into: fileSink, scratch: dir + "/scratch")
        #expect(try Self.decode(fileSink.bytes).1 == expected)
        #expect(Self.leftovers(dir + "/scratch").isEmpty)
    }

    // MARK: - Items: overlapping L0 files, staging

    /// A retried upload merged as one file (5-9) lies next to the
    /// single-transaction files it covers (5-5 ... 9-9). Compaction used to
    /// stop at the first file that did not follow the previous one exactly
    /// and, with L1 ending at 4, never made progress again. Now it merges a
    /// contiguous cover (the widest file wins) into L1, and both guardian and
    /// Litestream restore from L1 alone to the database's contents. Also:
    /// files an earlier session left in staging are gone once a new session
    /// starts, and a compaction leaves nothing in staging.
    @Test func overlappingL0FilesCompactAndRestoreWithGuardianAndLitestream() async throws {
        let dir = try TestSupport.makeTempDir("overlap")
        defer { TestSupport.cleanup(dir) }
        let db = dir + "/app.db"
        let replica = dir + "/replica"
        let state = dir + "/state"
        try await sqlite3(db, "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, pad BLOB);")
        // What a crashed session left in staging.
        let staging = "\(state)/staging/\(db.replacingOccurrences(of: "/", with: "_"))"
        try FileManager.default.createDirectory(atPath: staging + "/compact-file", withIntermediateDirectories: true)
        try TestSupport.write(String(repeating: "x", count: 1 << 20), to: staging + "/image-0000000000000007.ltx")
        try TestSupport.write(String(repeating: "y", count: 1 << 20), to: staging + "/compact-file/in-0.ltx")

        let child = try ChildProcess.start(TestSupport.guardianBinary, ["replicate", "--state-dir", state, db, "file://" + replica])
        defer { child.removeFiles(); child.signal(SIGKILL) }
        #expect(await TestSupport.waitUntil { Self.files(replica, level: 0).count >= 1 }, "\(child.stderr)")
        // (The session's own full image may still be on its way out; what an earlier one left is gone.)
        let planted = ["image-0000000000000007.ltx", "compact-file/in-0.ltx"]
        #expect(Set(Self.leftovers(staging)).isDisjoint(with: planted), "staging still holds \(Self.leftovers(staging))")
        let c = try SQLiteConnection(path: db, mode: .readWrite)
        for i in 1...9 {
            try c.query("INSERT INTO t(id, v, pad) VALUES (?, ?, randomblob(500))", [.integer(Int64(i)), .text("row-\(i)")])
            let txid = UInt64(i + 1)
            #expect(await TestSupport.waitUntil { Self.files(replica, level: 0).contains(LTXNaming.fileName(minTXID: txid, maxTXID: txid)) }, "\(child.stderr)")
        }
        child.signal(SIGTERM)
        #expect(await child.wait() == 0, "\(child.stderr)")
        #expect(Self.leftovers(staging).isEmpty, "staging still holds \(Self.leftovers(staging))")

        let client = FileReplicaClient(root: replica)
        let l0 = try await client.listFiles(level: 0, exactTimestamps: false)
        #expect(l0.map(\.maxTXID) == Array(1...10), "\(l0)")
        func read(_ range: ClosedRange<UInt64>) async throws -> [(name: String, bytes: [UInt8])] {
            var out: [(name: String, bytes: [UInt8])] = []
            for f in l0 where range.contains(f.minTXID) { out.append(("\(f)", try await client.readFile(f))) }
            return out
        }
        // L1 already covers 1-4; a retried upload left 5-9 beside 5-5 ... 9-9.
        let l1 = LTXMemorySink()
        let h1 = try LTXCompactor.merge(try await read(1...4), into: l1)
        try await client.writeFile(level: 1, minTXID: 1, maxTXID: 4, contents: .bytes(l1.bytes), createdAt: h1.date)
        let retried = LTXMemorySink()
        let h2 = try LTXCompactor.merge(try await read(5...9), into: retried, keepWALRange: true)
        try await client.writeFile(level: 0, minTXID: 5, maxTXID: 9, contents: .bytes(retried.bytes), createdAt: h2.date)

        let shipper = Self.shipper(db: db, replica: replica, staging: staging)
        try await shipper.compact(into: 1)
        #expect(Self.files(replica, level: 1) == [LTXNaming.fileName(minTXID: 1, maxTXID: 4), LTXNaming.fileName(minTXID: 5, maxTXID: 10)])
        #expect(Self.leftovers(staging).isEmpty, "staging still holds \(Self.leftovers(staging))")

        // L1 alone restores the database, with guardian and with Litestream.
        try FileManager.default.moveItem(atPath: replica + "/ltx/0", toPath: dir + "/l0-away")
        let expected = try await sqlite3(db, "SELECT count(*), sum(id), max(v) FROM t")
        let mine = dir + "/g.db"
        let r = try await guardian(["restore", "-o", mine, "file://" + replica])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try await sqlite3(mine, "SELECT count(*), sum(id), max(v) FROM t") == expected)
        let theirs = dir + "/l.db"
        let l = try await run(TestSupport.venvBin + "/litestream", ["restore", "-o", theirs, "file://" + replica])
        #expect(l.status == 0, "\(l.stderr)")
        #expect(try await sqlite3(theirs, "SELECT count(*), sum(id), max(v) FROM t") == expected)
    }

    /// A compaction that fails (a corrupt input) leaves nothing in staging.
    @Test func aFailedCompactionLeavesNothingInStaging() async throws {
        let dir = try TestSupport.makeTempDir("compact-fail")
        defer { TestSupport.cleanup(dir) }
        let replica = dir + "/replica"
        let staging = dir + "/staging"
        let client = FileReplicaClient(root: replica)
        try await client.writeFile(level: 0, minTXID: 1, maxTXID: 1, contents: .bytes(try Self.ltx(min: 1, max: 1, commit: 4, pages: [1, 2, 3, 4], version: 1)), createdAt: Date())
        var corrupt = try Self.ltx(min: 2, max: 2, commit: 4, pages: [2], version: 2)
        corrupt[corrupt.count - 1] ^= 0xff
        try await client.writeFile(level: 0, minTXID: 2, maxTXID: 2, contents: .bytes(corrupt), createdAt: Date())
        let shipper = Self.shipper(db: dir + "/app.db", replica: replica, staging: staging)
        await #expect(throws: LTXError.self) { try await shipper.compact(into: 1) }
        #expect(Self.files(replica, level: 1).isEmpty)
        #expect(Self.leftovers(staging).isEmpty, "staging still holds \(Self.leftovers(staging))")
        // A level beyond L8 would be the snapshots' level: refused.
        await #expect(throws: LTXError.self) { try await shipper.compact(into: LTXNaming.snapshotLevel) }
    }
}
