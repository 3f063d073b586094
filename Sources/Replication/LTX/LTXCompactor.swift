import Foundation
import Platform

/// Merges a contiguous run of LTX files into one: the newest version of each
/// page wins, pages past the last file's commit size are dropped, and the
/// result spans the run's TXIDs with the newest file's timestamp (so a
/// point-in-time restore uses it only when every transaction in it qualifies).
public enum LTXCompactor {
    public static func merge(_ files: [(name: String, bytes: [UInt8])], into sink: any LTXSink) throws -> LTXHeader {
        guard let first = files.first else { throw LTXError("compaction", "nothing to merge") }
        var pages: [UInt32: [UInt8]] = [:]
        var header: LTXHeader?
        var expectedNext: UInt64?
        for file in files {
            let decoder = try LTXDecoder(source: LTXMemorySource(file.bytes), name: file.name)
            let h = decoder.header
            if let base = header, h.pageSize != base.pageSize {
                throw LTXError(file.name, "page size \(h.pageSize) differs from \(base.pageSize)")
            }
            if let next = expectedNext, h.minTXID > next {
                throw LTXError(file.name, "not contiguous: expected TXID \(LTXNaming.hex(next))")
            }
            expectedNext = h.maxTXID + 1
            while let (pgno, data) = try decoder.nextPage() { pages[pgno] = data }
            if header == nil {
                header = h
            } else {
                header?.maxTXID = h.maxTXID
                header?.commit = h.commit
                header?.timestamp = h.timestamp
            }
        }
        guard var out = header else { throw LTXError(first.name, "nothing to merge") }
        out.walOffset = 0
        out.walSize = 0
        out.walSalt1 = 0
        out.walSalt2 = 0
        out.preApplyChecksum = 0
        out.flags = LTXHeader.flagNoChecksum
        let encoder = try LTXEncoder(header: out, sink: sink)
        for pgno in pages.keys.sorted() where pgno <= out.commit {
            if let data = pages[pgno] { try encoder.writePage(pgno: pgno, data) }
        }
        _ = try encoder.finish()
        return out
    }
}
