import CLZ4
import Foundation
import Replication
import Testing

/// Independent helpers for LTX tests: a bit-by-bit CRC-64/GO-ISO, seeded
/// pages, and a structural walk of a file that recomputes its checksum
/// without the codec (so the codec is checked against a second reading of
/// ltx.md §2, not against itself).
enum LTXReference {
    static func crc(_ bytes: [UInt8]) -> UInt64 {
        var r: UInt64 = ~0
        for b in bytes {
            r ^= UInt64(b)
            for _ in 0..<8 { r = r & 1 == 1 ? (r >> 1) ^ 0xD800_0000_0000_0000 : r >> 1 }
        }
        return ~r
    }

    static func be32(_ b: [UInt8], _ o: Int) -> UInt32 { b[o..<(o + 4)].reduce(0) { $0 << 8 | UInt32($1) } }
    static func be64(_ b: [UInt8], _ o: Int) -> UInt64 { b[o..<(o + 8)].reduce(0) { $0 << 8 | UInt64($1) } }

    /// The §2.5 checksum of a current-format (flag 1) file, from its bytes.
    static func fileChecksum(_ f: [UInt8]) -> UInt64 {
        let pageSize = Int(be32(f, 8))
        var hashed = Array(f[0..<100])
        var p = 100
        while be32(f, p) != 0 {
            let n = Int(be32(f, p + 6))
            hashed += f[p..<(p + 10)]
            var page = [UInt8](repeating: 0, count: pageSize)
            let got = f.withUnsafeBytes { src in
                page.withUnsafeMutableBytes { dst in
                    LZ4_decompress_safe(
                        (src.baseAddress! + p + 10).assumingMemoryBound(to: CChar.self),
                        dst.baseAddress!.assumingMemoryBound(to: CChar.self), Int32(n), Int32(pageSize))
                }
            }
            precondition(got == Int32(pageSize))
            hashed += page
            p += 10 + n
        }
        hashed += f[p..<(f.count - 8)]  // end marker, index, its length, post-apply checksum
        return crc(hashed) | (1 << 63)
    }

    /// Deterministic pages: half compressible text, half noise.
    static func page(_ seed: UInt64, size: Int = 4096) -> [UInt8] {
        var x = seed &+ 0x9E37_79B9_7F4A_7C15
        var out = [UInt8](repeating: 0, count: size)
        for i in 0..<size {
            if i < size / 2 {
                out[i] = UInt8(ascii: "a") + UInt8((UInt64(i / 7) &+ seed) % 26)
            } else {
                x ^= x << 13
                x ^= x >> 7
                x ^= x << 17
                out[i] = UInt8(truncatingIfNeeded: x)
            }
        }
        return out
    }

    static func encode(_ header: LTXHeader, _ pages: [(UInt32, [UInt8])]) throws -> [UInt8] {
        let sink = LTXMemorySink()
        let encoder = try LTXEncoder(header: header, sink: sink)
        for (pgno, data) in pages { try encoder.writePage(pgno: pgno, data) }
        try encoder.finish()
        return sink.bytes
    }

    static func decodeAll(_ bytes: [UInt8], name: String = "test.ltx") throws -> (LTXHeader, [(UInt32, [UInt8])]) {
        let decoder = try LTXDecoder(source: LTXMemorySource(bytes), name: name)
        var pages: [(UInt32, [UInt8])] = []
        while let p = try decoder.nextPage() { pages.append((p.pgno, p.data)) }
        return (decoder.header, pages)
    }

    static func ltxError(_ body: () throws -> Void) -> LTXError? {
        do {
            try body()
            return nil
        } catch let e as LTXError {
            return e
        } catch {
            Issue.record("expected an LTXError, got \(error)")
            return nil
        }
    }
}

@Suite struct LTXFormatTests {
    static var samplesDirectory: String { TestSupport.sharedDir + "/ltx-samples" }

    static var samples: [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: samplesDirectory)) ?? []
        return names.filter { $0.hasSuffix(".ltx") }.sorted()
    }

    static func sample(_ name: String) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: samplesDirectory + "/" + name) else {
            throw TestFailure("cannot read \(samplesDirectory)/\(name)")
        }
        return [UInt8](data)
    }

    // MARK: CRC

    @Test func crcCheckValueAndIncrementalUpdates() {
        #expect(CRC64.checksum(Array("123456789".utf8)) == 0xB909_56C7_75A4_1001)
        #expect(CRC64.checksum([]) == 0)
        let data = LTXReference.page(7, size: 10_000)
        let reference = LTXReference.crc(data)
        #expect(CRC64.checksum(data) == reference)
        for split in [0, 1, 7, 15, 16, 17, 33, 4095, 9_999, 10_000] {
            var crc = CRC64()
            crc.update(Array(data[..<split]))
            crc.update(Array(data[split...]))
            #expect(crc.value == reference, "split at \(split)")
            let chained = Array(data[split...]).withUnsafeBytes { CRC64.update(CRC64.checksum(Array(data[..<split])), $0) }
            #expect(chained == reference, "Go-style update, split at \(split)")
        }
    }

    // MARK: Samples written by Litestream 0.5.17

    @Test func allFourSamplesArePresent() {
        #expect(Self.samples.count == 4, "samples missing in \(Self.samplesDirectory)")
    }

    @Test(arguments: samples)
    func decodesSampleAndVerifiesItsChecksum(name: String) throws {
        let bytes = try Self.sample(name)
        let decoder = try LTXDecoder(source: try LTXFileSource(path: Self.samplesDirectory + "/" + name), name: name)
        var pages: [(UInt32, [UInt8])] = []
        while let p = try decoder.nextPage() { pages.append((p.pgno, p.data)) }
        #expect(decoder.fileChecksum == LTXReference.be64(bytes, bytes.count - 8))
        #expect(decoder.fileChecksum == LTXReference.fileChecksum(bytes))
        #expect(decoder.bytesRead == Int64(bytes.count))
        let h = decoder.header
        #expect(h.pageSize == 4096 && h.flags == LTXHeader.flagNoChecksum && h.preApplyChecksum == 0)
        #expect(name.hasSuffix(LTXNaming.fileName(minTXID: h.minTXID, maxTXID: h.maxTXID)))
        if h.isSnapshot { #expect(pages.map(\.0) == Array(1...h.commit)) }
        #expect(!pages.isEmpty && pages.allSatisfy { $0.1.count == 4096 && $0.0 <= h.commit })
        #expect(h.encode() == Array(bytes[0..<100]))
        #expect(try LTXHeader.decode(Array(bytes[0..<100])) == h)
    }

    @Test func incrementalSampleMatchesTheAnnotatedDump() throws {
        let name = "L0-incr-0000000000000002-0000000000000002.ltx"
        let decoder = try LTXDecoder(source: LTXMemorySource(try Self.sample(name)), name: name)
        let h = decoder.header
        #expect(h.commit == 4 && h.minTXID == 2 && h.maxTXID == 2 && h.timestamp == 1_795_553_336_470)
        #expect(h.walOffset == 16512 && h.walSize == 4120 && h.walSalt1 == 0x4031_e0f1 && h.walSalt2 == 0x8164_02a0)
        #expect(try decoder.nextPage()?.pgno == 2)
        #expect(try decoder.nextPage() == nil)
        #expect(decoder.fileChecksum == 0xff4d_b692_ab26_2987)
    }

    /// Re-encoding a sample's pages under the same header. liblz4 and Go's
    /// LZ4 emit blocks of different lengths for these pages (e.g. 138 vs 139
    /// bytes), and the size fields are hashed (§2.5), so the file checksum
    /// cannot equal the sample's; what must hold is that the pages and header
    /// survive and that the trailer is the §2.5 checksum of the new bytes.
    /// (That Litestream accepts the result is RestoreInteropTests' job.)
    @Test(arguments: samples)
    func reencodesSample(name: String) throws {
        let (header, pages) = try LTXReference.decodeAll(try Self.sample(name), name: name)
        let bytes = try LTXReference.encode(header, pages)
        #expect(LTXReference.be64(bytes, bytes.count - 8) == LTXReference.fileChecksum(bytes))
        let (header2, pages2) = try LTXReference.decodeAll(bytes)
        #expect(header2 == header)
        #expect(pages2.map(\.0) == pages.map(\.0) && pages2.map(\.1) == pages.map(\.1))
    }

    // MARK: Round trips

    @Test(arguments: [512, 4096, 65536] as [UInt32])
    func roundTripsThroughFile(pageSize: UInt32) throws {
        let dir = try TestSupport.makeTempDir("ltx")
        defer { TestSupport.cleanup(dir) }
        let path = dir + "/0000000000000001-0000000000000001.ltx"
        let pages = (1...9).map { (UInt32($0), LTXReference.page(UInt64($0), size: Int(pageSize))) }
        let header = LTXHeader(pageSize: pageSize, commit: 9, minTXID: 1, maxTXID: 1, timestamp: 1_700_000_000_123)
        let sink = try LTXFileSink(path: path)
        let encoder = try LTXEncoder(header: header, sink: sink)
        for (pgno, data) in pages { try encoder.writePage(pgno: pgno, data) }
        let (size, checksum) = try encoder.finish()
        try sink.close(sync: true)
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        #expect(Int64(bytes.count) == size)
        #expect(LTXReference.be64(bytes, bytes.count - 8) == checksum)
        #expect(checksum == LTXReference.fileChecksum(bytes))
        let decoder = try LTXDecoder(source: LTXFileSource(path: path), name: path)
        var i = 0
        while let p = try decoder.nextPage() {
            #expect(p.pgno == pages[i].0 && p.data == pages[i].1)
            i += 1
        }
        #expect(i == pages.count && decoder.fileChecksum == checksum && decoder.header == header)
    }

    @Test func incrementalFileWithSparsePagesAndWALFields() throws {
        var header = LTXHeader(
            pageSize: 4096, commit: 40, minTXID: 7, maxTXID: 9, timestamp: 1_700_000_000_000,
            walOffset: 32, walSize: 4120 * 3, walSalt1: 0xdead_beef, walSalt2: 0x0102_0304)
        header.nodeID = 0
        let pages = [3, 4, 17, 40].map { (UInt32($0), LTXReference.page(UInt64($0))) }
        let (h, decoded) = try LTXReference.decodeAll(try LTXReference.encode(header, pages))
        #expect(h == header)
        #expect(decoded.map(\.0) == [3, 4, 17, 40] && decoded.map(\.1) == pages.map(\.1))
    }

    @Test func verifyAllAndThePageIntoBufferAPI() throws {
        let pages = (1...3).map { (UInt32($0), LTXReference.page(UInt64($0))) }
        let bytes = try LTXReference.encode(LTXHeader(pageSize: 4096, commit: 3, minTXID: 1, maxTXID: 1, timestamp: 0), pages)
        let all = try LTXDecoder(source: LTXMemorySource(bytes), name: "a")
        try all.verifyAll()
        #expect(all.pageCount == 3 && all.fileChecksum != nil)
        let d = try LTXDecoder(source: LTXMemorySource(bytes), name: "b")
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
        defer { buffer.deallocate() }
        #expect(try d.nextPage(into: buffer) == 1)
        #expect(Array(buffer) == pages[0].1)
        let small = UnsafeMutableRawBufferPointer.allocate(byteCount: 100, alignment: 16)
        defer { small.deallocate() }
        #expect(LTXReference.ltxError { _ = try d.nextPage(into: small) }?.kind == .invalidInput)
    }

    // MARK: Corruption is detected and names the file

    @Test func bitFlipsAreDetected() throws {
        let name = "0000000000000005-0000000000000005.ltx"
        let pages = [2, 3, 9].map { (UInt32($0), LTXReference.page(UInt64($0))) }
        let good = try LTXReference.encode(LTXHeader(pageSize: 4096, commit: 9, minTXID: 5, maxTXID: 5, timestamp: 1), pages)
        // Every byte position: a flipped bit never goes unnoticed.
        var kinds: [LTXError.Kind: Int] = [:]
        for position in stride(from: 0, to: good.count, by: 1) {
            var bad = good
            bad[position] ^= 0x10
            guard let e = LTXReference.ltxError({ try LTXDecoder(source: LTXMemorySource(bad), name: name).verifyAll() }) else {
                Issue.record("flip at byte \(position) of \(good.count) was not detected")
                continue
            }
            #expect(e.file == name && e.description.hasPrefix(name + ": "))
            kinds[e.kind, default: 0] += 1
        }
        #expect((kinds[.checksumMismatch] ?? 0) > 0 && (kinds[.corrupt] ?? 0) > 0 && (kinds[.invalidHeader] ?? 0) > 0)
        // A flip in the last literal bytes of a page's LZ4 block changes only page data.
        var bad = good
        let firstFrameSize = Int(LTXReference.be32(good, 106))
        bad[100 + 10 + firstFrameSize - 2] ^= 0x01
        let e = LTXReference.ltxError { try LTXDecoder(source: LTXMemorySource(bad), name: name).verifyAll() }
        #expect(e?.kind == .checksumMismatch)
        #expect(e?.description.contains("checksum mismatch") == true)
    }

    @Test func truncationAnywhereIsDetected() throws {
        let name = "0000000000000001-0000000000000001.ltx"
        let pages = (1...3).map { (UInt32($0), LTXReference.page(UInt64($0))) }
        let good = try LTXReference.encode(LTXHeader(pageSize: 4096, commit: 3, minTXID: 1, maxTXID: 1, timestamp: 1), pages)
        for length in [0, 50, 99, 100, 105, 109, 500, good.count - 40, good.count - 16, good.count - 8, good.count - 1] {
            let e = LTXReference.ltxError { try LTXDecoder(source: LTXMemorySource(Array(good.prefix(length))), name: name).verifyAll() }
            #expect(e?.kind == .truncated, "cut at \(length): \(String(describing: e))")
            #expect(e?.description.contains(name) == true && e?.description.contains("truncated") == true)
        }
    }

    @Test func trailingBytesAreRejected() throws {
        let good = try LTXReference.encode(
            LTXHeader(pageSize: 4096, commit: 1, minTXID: 1, maxTXID: 1, timestamp: 1), [(1, LTXReference.page(1))])
        for extra in [[UInt8(0)], [UInt8](repeating: 7, count: 5000)] {
            let e = LTXReference.ltxError { try LTXDecoder(source: LTXMemorySource(good + extra), name: "x.ltx").verifyAll() }
            #expect(e?.kind == .trailingData)
        }
    }

    // MARK: Header rules (ltx.md §2.1)

    @Test func headerValidationRules() throws {
        let valid = LTXHeader(pageSize: 4096, commit: 2, minTXID: 3, maxTXID: 4, timestamp: 5, walOffset: 32, walSize: 10, walSalt1: 1, walSalt2: 2)
        #expect(valid.problem == nil)
        #expect(try LTXHeader.decode(valid.encode()) == valid)
        var cases: [(String, LTXHeader)] = []
        var h = valid; h.flags = 3; cases.append(("flags", h))
        h = valid; h.flags = 1; cases.append(("flags", h))
        h = valid; h.pageSize = 1000; cases.append(("page size", h))
        h = valid; h.pageSize = 256; cases.append(("page size", h))
        h = valid; h.pageSize = 131_072; cases.append(("page size", h))
        h = valid; h.minTXID = 0; cases.append(("zero", h))
        h = valid; h.maxTXID = 2; cases.append(("above", h))
        h = valid; h.walOffset = -1; cases.append(("negative", h))
        h = valid; h.walSize = -1; cases.append(("negative", h))
        h = valid; h.walOffset = 0; h.walSize = 0; cases.append(("salts", h))
        h = valid; h.walOffset = 0; h.walSalt1 = 0; h.walSalt2 = 0; cases.append(("WAL size", h))
        h = valid; h.minTXID = 1; h.preApplyChecksum = 1 << 63 | 5; cases.append(("snapshot", h))
        h = valid; h.preApplyChecksum = 1 << 63 | 5; cases.append(("NoChecksum", h))
        h = valid; h.flags = 0; h.preApplyChecksum = 5; cases.append(("pre-apply", h))
        for (needle, bad) in cases {
            let e = LTXReference.ltxError { _ = try LTXHeader.decode(bad.encode(), name: "h.ltx") }
            #expect(e?.kind == .invalidHeader, "\(needle)")
            #expect(e?.description.contains(needle) == true, "\(String(describing: e)) should mention \(needle)")
        }
        // Checksum-tracking headers are valid to read (bit 63 set) but never written.
        h = valid; h.flags = 0; h.preApplyChecksum = 1 << 63 | 5
        #expect(h.problem == nil)
        #expect(LTXReference.ltxError { _ = try LTXEncoder(header: h, sink: LTXMemorySink()) }?.kind == .invalidInput)
        var notLTX = valid.encode()
        notLTX[0] = UInt8(ascii: "X")
        #expect(LTXReference.ltxError { _ = try LTXHeader.decode(notLTX) }?.kind == .invalidHeader)
        #expect(LTXReference.ltxError { _ = try LTXHeader.decode(Array(notLTX.prefix(99))) }?.kind == .truncated)
    }

    @Test func pageSize65536IsStoredAsItsValue() throws {
        let h = LTXHeader(pageSize: 65536, commit: 1, minTXID: 1, maxTXID: 1, timestamp: 0)
        #expect(Array(h.encode()[8..<12]) == [0, 1, 0, 0])
        #expect(h.lockPgno == 0x4000_0000 / 65536 + 1)
    }

    // MARK: Encoder rules

    @Test func encoderRefusesWhatTheFormatForbids() throws {
        let page = LTXReference.page(1)
        func attempt(_ header: LTXHeader, _ pgnos: [UInt32], size: Int = 4096, finish: Bool = false) -> LTXError? {
            LTXReference.ltxError {
                let encoder = try LTXEncoder(header: header, sink: LTXMemorySink())
                for p in pgnos { try encoder.writePage(pgno: p, Array(page.prefix(size)) + [UInt8](repeating: 0, count: max(0, size - 4096))) }
                if finish { try encoder.finish() }
            }
        }
        let incr = LTXHeader(pageSize: 4096, commit: 10, minTXID: 2, maxTXID: 2, timestamp: 0)
        #expect(attempt(incr, [3, 3])?.message.contains("ascending") == true)
        #expect(attempt(incr, [5, 4])?.message.contains("ascending") == true)
        #expect(attempt(incr, [11])?.message.contains("commit") == true)
        #expect(attempt(incr, [0])?.kind == .invalidInput)
        #expect(attempt(incr, [1], size: 1024)?.message.contains("page size") == true)
        let big = LTXHeader(pageSize: 4096, commit: 300_000, minTXID: 2, maxTXID: 2, timestamp: 0)
        #expect(attempt(big, [262_145])?.message.contains("lock page") == true)
        let snap = LTXHeader(pageSize: 4096, commit: 4, minTXID: 1, maxTXID: 1, timestamp: 0)
        #expect(attempt(snap, [2])?.message.contains("every page") == true)
        #expect(attempt(snap, [1, 3])?.message.contains("every page") == true)
        #expect(attempt(snap, [1, 2, 3], finish: true)?.message.contains("4 pages") == true)
        #expect(attempt(snap, [1, 2, 3, 4], finish: true) == nil)
        var bad = incr
        bad.minTXID = 0
        #expect(attempt(bad, [])?.kind == .invalidInput)
    }

    @Test func encoderAndDecoderRejectPagesOutOfOrder() throws {
        // Swap two frames of a valid file: the decoder refuses the order.
        let pages = [2, 5].map { (UInt32($0), [UInt8](repeating: UInt8($0), count: 4096)) }
        let good = try LTXReference.encode(LTXHeader(pageSize: 4096, commit: 5, minTXID: 3, maxTXID: 3, timestamp: 0), pages)
        let frame1 = Array(good[100..<(110 + Int(LTXReference.be32(good, 106)))])
        let start2 = 100 + frame1.count
        let frame2 = Array(good[start2..<(start2 + 10 + Int(LTXReference.be32(good, start2 + 6)))])
        let swapped = Array(good[0..<100]) + frame2 + frame1 + Array(good[(start2 + frame2.count)...])
        let e = LTXReference.ltxError { try LTXDecoder(source: LTXMemorySource(swapped), name: "s.ltx").verifyAll() }
        #expect(e?.kind == .corrupt && e?.message.contains("out of order") == true)
    }

    // MARK: Legacy frames (Litestream 0.5.0–0.5.15)

    /// Builds a legacy file: each page as a standard LZ4 frame with no size field.
    static func legacyFile(_ header: LTXHeader, _ pages: [(UInt32, [UInt8])]) -> [UInt8] {
        var file = header.encode()
        var hashed = file
        var index: [UInt8] = []
        func uvarint(_ v: UInt64) {
            var x = v
            while x >= 0x80 { index.append(UInt8(x & 0x7f) | 0x80); x >>= 7 }
            index.append(UInt8(x))
        }
        func be(_ v: UInt64, _ n: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: v >> UInt64(8 * (n - 1 - $0))) } }
        for (pgno, page) in pages {
            var prefs = LZ4F_preferences_t()
            prefs.frameInfo.blockSizeID = LZ4F_max64KB
            prefs.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled
            var out = [UInt8](repeating: 0, count: LZ4F_compressFrameBound(page.count, &prefs))
            let n = out.withUnsafeMutableBytes { dst in
                page.withUnsafeBytes { src in LZ4F_compressFrame(dst.baseAddress, dst.count, src.baseAddress, src.count, &prefs) }
            }
            let frameHeader = be(UInt64(pgno), 4) + [0, 0]
            uvarint(UInt64(pgno))
            uvarint(UInt64(file.count))
            uvarint(UInt64(6 + n))
            file += frameHeader + out.prefix(n)
            hashed += frameHeader + page
        }
        index.append(0)
        let tail = [UInt8](repeating: 0, count: 6) + index + be(UInt64(index.count), 8) + [UInt8](repeating: 0, count: 8)
        file += tail
        hashed += tail
        return file + be(LTXReference.crc(hashed) | (1 << 63), 8)
    }

    @Test func decodesLegacyLZ4FrameFiles() throws {
        let pages = (1...5).map { (UInt32($0), LTXReference.page(UInt64($0 * 3))) }
        let header = LTXHeader(pageSize: 4096, commit: 5, minTXID: 1, maxTXID: 3, timestamp: 42)
        let file = Self.legacyFile(header, pages)
        let (h, decoded) = try LTXReference.decodeAll(file, name: "legacy.ltx")
        #expect(h == header)
        #expect(decoded.map(\.0) == pages.map(\.0) && decoded.map(\.1) == pages.map(\.1))
        // The frame's own checksum and the file checksum both catch damage.
        var bad = file
        bad[100 + 6 + 20] ^= 0x04
        let e = LTXReference.ltxError { try LTXDecoder(source: LTXMemorySource(bad), name: "legacy.ltx").verifyAll() }
        #expect(e != nil && e?.file == "legacy.ltx")
        #expect(LTXReference.ltxError { try LTXDecoder(source: LTXMemorySource(Array(file.prefix(300))), name: "l").verifyAll() }?.kind == .truncated)
    }

    @Test func indexMustDescribeTheFrames() throws {
        let pages = [1, 2].map { (UInt32($0), LTXReference.page(UInt64($0))) }
        var file = try LTXReference.encode(LTXHeader(pageSize: 4096, commit: 2, minTXID: 1, maxTXID: 1, timestamp: 0), pages)
        // The index starts after the end marker; its first varint is pgno 1: make it 2.
        let frames = 100 + 10 + Int(LTXReference.be32(file, 106))
        let second = frames + 10 + Int(LTXReference.be32(file, frames + 6))
        let indexStart = second + 6
        #expect(file[indexStart] == 1)
        file[indexStart] = 2
        let e = LTXReference.ltxError { try LTXDecoder(source: LTXMemorySource(file), name: "i.ltx").verifyAll() }
        #expect(e?.kind == .corrupt && e?.message.contains("page index") == true)
    }
}
