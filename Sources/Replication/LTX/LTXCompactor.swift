import Foundation
import Platform

/// Merges a contiguous run of LTX files into one: the newest version of each
/// page wins, pages past the last file's commit size are dropped, and the
/// result spans the run's TXIDs with the newest file's timestamp (so a
/// point-in-time restore uses it only when every transaction in it qualifies).
public enum LTXCompactor {
    /// `keepWALRange`: the inputs are consecutive per-transaction files cut
    /// from one WAL (a batch of L0 files shipped as one): the result records
    /// the WAL range they span, like an L0 file guardian cuts itself, so a
    /// restart can resume from it. Otherwise (or when the inputs do not form
    /// one contiguous range of one WAL generation) the WAL fields are zero.
    public static func merge(_ files: [(name: String, bytes: [UInt8])], into sink: any LTXSink, keepWALRange: Bool = false) throws -> LTXHeader {
        guard let first = files.first else { throw LTXError("compaction", "nothing to merge") }
        var pages: [UInt32: [UInt8]] = [:]
        var header: LTXHeader?
        var expectedNext: UInt64?
        // The WAL range of the inputs so far, while they are contiguous in one WAL.
        var wal: (offset: Int64, end: Int64, salt1: UInt32, salt2: UInt32)?
        var walContiguous = keepWALRange
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
            if walContiguous {
                if h.walSize <= 0 {
                    walContiguous = false
                } else if let w = wal {
                    if h.walSalt1 == w.salt1, h.walSalt2 == w.salt2, h.walOffset == w.end {
                        wal?.end = h.walOffset + h.walSize
                    } else {
                        walContiguous = false
                    }
                } else {
                    wal = (h.walOffset, h.walOffset + h.walSize, h.walSalt1, h.walSalt2)
                }
            }
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
        if walContiguous, let w = wal {
            out.walOffset = w.offset
            out.walSize = w.end - w.offset
            out.walSalt1 = w.salt1
            out.walSalt2 = w.salt2
        } else {
            out.walOffset = 0
            out.walSize = 0
            out.walSalt1 = 0
            out.walSalt2 = 0
        }
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
