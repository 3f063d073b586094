import Foundation
@testable import Platform
import Testing

@testable import Replication

/// Correctness of the fast paths of the codec (issue 13): the carry-less
/// CRC-64, full images compressed on helper threads, restores written around
/// the page cache, and memory given back. Their speed is measured by
/// benchmarks/replication, not here.
@Suite struct CodecSpeedTests {
    static func randomBytes(_ count: Int) -> [UInt8] {
        var g = SystemRandomNumberGenerator()
        return (0..<count).map { _ in UInt8.random(in: 0...255, using: &g) }
    }

    // MARK: CRC-64

    @Test func carrylessCRCEqualsTheTablesOnRandomInputs() throws {
        let tables = CRC64Tables.shared
        #if arch(x86_64)
        // Every x86-64 CPU since 2010 has PCLMULQDQ; without it this test would compare the tables with themselves.
        #expect(tables.usesCarrylessMultiplication)
        #endif
        let data = Self.randomBytes(70_000)
        try data.withUnsafeBytes { raw in
            let base = try #require(raw.baseAddress)
            for length in [0, 1, 15, 16, 63, 64, 65, 127, 128, 129, 4095, 4096, 4097, 65_536, 69_000] {
                for offset in [0, 1, 7, 13] where offset + length <= raw.count {
                    for start: UInt64 in [0, ~0, 0x0123_4567_89ab_cdef, UInt64.random(in: 0...UInt64.max)] {
                        #expect(
                            tables.fold(start, base + offset, length) == tables.foldTables(start, base + offset, length),
                            "length \(length) offset \(offset) start \(start)")
                    }
                }
            }
            for _ in 0..<2_000 {
                let length = Int.random(in: 0...9_000)
                let offset = Int.random(in: 0...(raw.count - length))
                let start = UInt64.random(in: 0...UInt64.max)
                #expect(tables.fold(start, base + offset, length) == tables.foldTables(start, base + offset, length))
            }
        }
        #expect(CRC64.checksum(Array("123456789".utf8)) == 0xB909_56C7_75A4_1001)
    }

    /// Files Litestream 0.5.17 wrote: the whole file hashes the same both
    /// ways, and each decodes with its trailer checksum verified.
    @Test func carrylessCRCEqualsTheTablesOnLitestreamFiles() throws {
        let dir = TestSupport.sharedDir + "/ltx-samples"
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasSuffix(".ltx") }
        #expect(names.count == 4, "samples missing at \(dir)")
        for name in names {
            let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: "\(dir)/\(name)")))
            try bytes.withUnsafeBytes { raw in
                let base = try #require(raw.baseAddress)
                #expect(CRC64Tables.shared.fold(~0, base, raw.count) == CRC64Tables.shared.foldTables(~0, base, raw.count), "\(name)")
            }
            let decoder = try LTXDecoder(source: LTXMemorySource(bytes), name: name)
            try decoder.verifyAll()
            #expect(decoder.fileChecksum != nil)
        }
    }

    // MARK: Full images on helper threads

    @Test func imageRunsNeverSpanTheLockPage() {
        let runs = LTXImageWriter.ranges(commit: 20, lock: 9, perBatch: 4)
        #expect(runs.map { [Int($0.0), $0.1] } == [[1, 4], [5, 4], [10, 4], [14, 4], [18, 3]])
        #expect(LTXImageWriter.ranges(commit: 8, lock: 9, perBatch: 3).map { [Int($0.0), $0.1] } == [[1, 3], [4, 3], [7, 2]])
        #expect(LTXImageWriter.ranges(commit: 9, lock: 9, perBatch: 100).map { [Int($0.0), $0.1] } == [[1, 8]])
        #expect(LTXImageWriter.ranges(commit: 0, lock: 9, perBatch: 4).isEmpty)
        // Every page but the lock page, once, in order.
        let pages = LTXImageWriter.ranges(commit: 1000, lock: 513, perBatch: 7).flatMap { (first, count) in (0..<count).map { first + UInt32($0) } }
        #expect(pages == Array(1...1000).filter { $0 != 513 })
    }

    /// The same pages give the same bytes whether LZ4 runs on helper threads
    /// or inline, for any number of helpers.
    @Test(arguments: [1, 2, 3])
    func parallelImageIsByteIdenticalToTheSerialOne(workers: Int) throws {
        let pageSize = 4096
        let commit: UInt32 = 700  // several batches of 128 pages, the last one partial
        var database = [UInt8](repeating: 0, count: Int(commit) * pageSize)
        for p in 0..<Int(commit) {
            // Compressible and incompressible pages alike.
            let fill = p % 3 == 0 ? Self.randomBytes(pageSize) : [UInt8](repeating: UInt8(p & 0xff), count: pageSize)
            database.replaceSubrange((p * pageSize)..<((p + 1) * pageSize), with: fill)
        }
        let header = LTXHeader(pageSize: UInt32(pageSize), commit: commit, minTXID: 1, maxTXID: 5, timestamp: 1_800_000_000_000)
        let serial = LTXMemorySink()
        let one = try LTXEncoder(header: header, sink: serial)
        for p in 1...commit {
            try one.writePage(pgno: p, Array(database[(Int(p - 1) * pageSize)..<(Int(p) * pageSize)]))
        }
        try one.finish()

        let parallel = LTXMemorySink()
        let encoder = try LTXEncoder(header: header, sink: parallel)
        try LTXImageWriter.write(encoder: encoder, workers: workers) { first, count, into in
            database.withUnsafeBytes { raw in
                if let base = raw.baseAddress { into.copyMemory(from: base + Int(first - 1) * pageSize, byteCount: count * pageSize) }
            }
        }
        try encoder.finish()
        #expect(parallel.bytes == serial.bytes)
        let decoder = try LTXDecoder(source: LTXMemorySource(parallel.bytes), name: "image")
        var restored: [UInt8] = []
        while let page = try decoder.nextPage() { restored += page.data }
        #expect(restored == database)
    }

    /// A read error part-way stops the helpers and reaches the caller.
    @Test func aFailedReadStopsTheImage() throws {
        let header = LTXHeader(pageSize: 4096, commit: 2_000, minTXID: 1, maxTXID: 1, timestamp: 1_800_000_000_000)
        let encoder = try LTXEncoder(header: header, sink: LTXMemorySink())
        struct ReadFailed: Error {}
        #expect(throws: ReadFailed.self) {
            try LTXImageWriter.write(encoder: encoder, workers: 2) { first, count, into in
                if first > 1_000 { throw ReadFailed() }
                into.initializeMemory(as: UInt8.self, repeating: 7, count: count * 4096)
            }
        }
    }

    // MARK: Restore

    /// A database of `pages` pages of `pageSize` bytes as one snapshot in a
    /// file replica (random and repeated pages).
    static func snapshotReplica(_ dir: String, pages: Int, pageSize: Int = 4096) async throws -> (FileReplicaClient, [UInt8]) {
        var database: [UInt8] = []
        database.reserveCapacity(pages * pageSize)
        let noise = randomBytes(64 * 1024)
        for p in 0..<pages {
            if p % 2 == 0 {
                let at = (p * 977) % (noise.count - pageSize)
                database += noise[at..<(at + pageSize)]
            } else {
                database += [UInt8](repeating: UInt8(p & 0xff), count: pageSize)
            }
        }
        let header = LTXHeader(pageSize: UInt32(pageSize), commit: UInt32(pages), minTXID: 1, maxTXID: 1, timestamp: 1_800_000_000_000)
        let sink = LTXMemorySink()
        let encoder = try LTXEncoder(header: header, sink: sink)
        for p in 0..<pages {
            try encoder.writePage(pgno: UInt32(p + 1), Array(database[(p * pageSize)..<((p + 1) * pageSize)]))
        }
        try encoder.finish()
        let client = FileReplicaClient(root: dir + "/replica")
        _ = try await client.writeFile(level: 0, minTXID: 1, maxTXID: 1, contents: .bytes(sink.bytes), createdAt: header.date)
        return (client, database)
    }

    /// 40 MiB: ten 4 MiB runs through direct writes (on a file system that
    /// takes them), the same bytes as the source.
    @Test func bigRestoreIsByteIdentical() async throws {
        let dir = try TestSupport.makeTempDir("codec-restore")
        defer { TestSupport.cleanup(dir) }
        let (client, database) = try await Self.snapshotReplica(dir, pages: 10_240 + 3)
        let out = dir + "/restored.db"
        let result = try await Restorer().restore(client: client, to: out, options: RestoreOptions(integrityCheck: .none))
        #expect(result.pages == 10_243)
        let restored = try [UInt8](Data(contentsOf: URL(fileURLWithPath: out)))
        #expect(restored.count == database.count)
        #expect(restored == database)
        #expect(!FileManager.default.fileExists(atPath: out + ".tmp"))
    }

    /// One flipped byte in a page in the middle of a big snapshot: the
    /// restore fails on the checksum and the existing output stays as it was.
    @Test func aCorruptPageInTheMiddleFailsAndLeavesTheOutputUntouched() async throws {
        let dir = try TestSupport.makeTempDir("codec-corrupt")
        defer { TestSupport.cleanup(dir) }
        let (client, _) = try await Self.snapshotReplica(dir, pages: 6_000)
        let file = client.path(of: LTXFileInfo(level: 0, minTXID: 1, maxTXID: 1, size: 0, createdAt: Date()))
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: file)))
        // Page 3000 is a repeated byte: its LZ4 block ends with literal bytes of the page; flip the last one.
        let decoder = try LTXDecoder(source: LTXMemorySource(bytes), name: "scan")
        var frameEnd = 0
        for _ in 1...3_000 {
            _ = try decoder.nextPage()
            frameEnd = Int(decoder.bytesRead)
        }
        bytes[frameEnd - 1] ^= 0x01
        try Data(bytes).write(to: URL(fileURLWithPath: file))

        let out = dir + "/live.db"
        let live = Self.randomBytes(8192)
        try Data(live).write(to: URL(fileURLWithPath: out))
        await #expect(throws: (any Error).self) {
            _ = try await Restorer().restore(client: client, to: out, options: RestoreOptions(force: true, integrityCheck: .none))
        }
        #expect(try [UInt8](Data(contentsOf: URL(fileURLWithPath: out))) == live)
        #expect(!FileManager.default.fileExists(atPath: out + ".tmp"))
    }

    // MARK: Direct writes

    @Test func directWritesTakeOnlyLargeAlignedBlocks() throws {
        let dir = try TestSupport.makeTempDir("codec-direct")
        defer { TestSupport.cleanup(dir) }
        let path = dir + "/f"
        let fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0o600)
        #expect(fd >= 0)
        defer { close(fd) }
        let size = 1 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size + 4096, alignment: DirectWrites.alignment)
        defer { buffer.deallocate() }
        for i in 0..<buffer.count { buffer[i] = UInt8(truncatingIfNeeded: i * 7) }
        let base = try #require(buffer.baseAddress)
        guard let direct = DirectWrites(reopening: fd, path: path) else {
            // A file system without O_DIRECT: everything goes through the page cache, nothing to check here.
            return
        }
        #expect(try direct.write(base, size, at: 0) == size)
        // Unaligned address, offset or length, or too small: not taken.
        #expect(try direct.write(base + 1, size, at: off_t(size)) == 0)
        #expect(try direct.write(base, size - 1, at: off_t(size)) == 0)
        #expect(try direct.write(base, size, at: off_t(size) + 512) == 0)
        #expect(try direct.write(base, 4096, at: off_t(size)) == 0)
        let written = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        #expect(written == Array(UnsafeRawBufferPointer(rebasing: buffer[0..<size])))
    }

    // MARK: Memory

    @Test func finishedMemoryFilesKeepNoGrowthSlack() throws {
        let header = LTXHeader(pageSize: 4096, commit: 300, minTXID: 2, maxTXID: 2, timestamp: 1_800_000_000_000)
        let sink = LTXMemorySink()
        let encoder = try LTXEncoder(header: header, sink: sink)
        for p in 1...300 { try encoder.writePage(pgno: UInt32(p), Self.randomBytes(4096)) }
        try encoder.finish()
        #expect(sink.bytes.capacity - sink.bytes.count <= 4096)
        let decoder = try LTXDecoder(source: LTXMemorySource(sink.bytes), name: "trimmed")
        try decoder.verifyAll()
        #expect(decoder.pageCount == 300)
    }

    /// A job's captures (a payload on its way to a replica) go as soon as it
    /// has run; the pool used to keep up to 1024 run jobs, and with them about
    /// 10 MB of LTX files after a burst.
    @Test func theBlockingPoolReleasesWhatARunJobCaptured() async throws {
        final class Payload: Sendable { let bytes = [UInt8](repeating: 1, count: 1 << 20) }
        let pool = BlockingPool(name: "codec-test", threads: 1, maxThreads: 1)
        weak var watched: Payload?
        do {
            let payload = Payload()
            watched = payload
            let n = try await pool.run { payload.bytes.count }
            #expect(n == 1 << 20)
        }
        let released = await TestSupport.waitUntil(timeout: .seconds(5)) { watched == nil }
        #expect(released)
    }

    @Test func theHeapIsTrimmedAfterABurstNotDuringIt() {
        var t = MemoryPolicy.Trimmer()
        let mb = 1 << 20
        // 4 MB, growing (a burst), falling fast (still settling), settled 20 MB
        // below the peak, again (trimmed once), a small change (never).
        let samples = [4 * mb, 20 * mb, 30 * mb, 10 * mb, 10 * mb, 10 * mb, 10 * mb - 4096]
        let decisions = samples.map { t.shouldTrim(inUse: $0) }
        #expect(decisions == [false, false, false, false, true, false, false])
        // A heap at its peak is quiet (sampled every 5 s); one fallen below
        // it, with a trim pending, is sampled every second until trimmed.
        var q = MemoryPolicy.Trimmer()
        _ = q.shouldTrim(inUse: 30 * mb)
        #expect(q.quiet)
        _ = q.shouldTrim(inUse: 10 * mb)
        #expect(!q.quiet)
        let trimmed = q.shouldTrim(inUse: 10 * mb)
        #expect(trimmed)
        #expect(q.quiet)
    }
}
