import Foundation
import Testing
@testable import Replication

/// The LTX codec against files the real Litestream 0.5.17 wrote
/// (../shared/ltx-samples) and against its own output.
@Suite struct LTXCodecTests {
    static let samples = TestSupport.sharedDir + "/ltx-samples"

    static func sampleNames() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: samples)) ?? []).filter { $0.hasSuffix(".ltx") }.sorted()
    }

    @Test func crc64MatchesTheGoISOCheckValue() {
        let v = Array("123456789".utf8).withUnsafeBytes { CRC64.update(0, $0) }
        #expect(v == 0xB909_56C7_75A4_1001)
    }

    @Test func decodesEverySampleAndReencodesToTheSameChecksum() throws {
        let names = Self.sampleNames()
        #expect(names.count == 4, "samples missing at \(Self.samples)")
        for name in names {
            let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: "\(Self.samples)/\(name)")))
            let decoder = try LTXDecoder(source: LTXMemorySource(bytes), name: name)
            var pages: [(UInt32, [UInt8])] = []
            while let p = try decoder.nextPage() { pages.append((p.pgno, p.data)) }
            #expect(!pages.isEmpty)
            // (nextPage returning nil means the trailer's file checksum matched.)
            // Re-encoding the same pages gives a file that decodes to the same pages.
            let sink = LTXMemorySink()
            let encoder = try LTXEncoder(header: decoder.header, sink: sink)
            for (pgno, data) in pages { try encoder.writePage(pgno: pgno, data) }
            _ = try encoder.finish()
            let again = try LTXDecoder(source: LTXMemorySource(sink.bytes), name: name)
            var round: [(UInt32, [UInt8])] = []
            while let p = try again.nextPage() { round.append((p.pgno, p.data)) }
            #expect(round.map(\.0) == pages.map(\.0) && round.map(\.1) == pages.map(\.1), "\(name)")
            #expect(again.header == decoder.header)
        }
    }

    @Test func bitFlipAndTruncationAreDetected() throws {
        let name = "L0-incr-0000000000000002-0000000000000002.ltx"
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: "\(Self.samples)/\(name)")))
        var flipped = bytes
        flipped[120] ^= 0x01
        #expect(throws: LTXError.self) { try LTXDecoder(source: LTXMemorySource(flipped), name: name).verifyAll() }
        let truncated = Array(bytes.prefix(bytes.count - 10))
        do {
            try LTXDecoder(source: LTXMemorySource(truncated), name: name).verifyAll()
            Issue.record("truncation not detected")
        } catch let e as LTXError {
            #expect(e.description.contains(name) && e.description.contains("truncated"), "\(e)")
        }
    }
}
