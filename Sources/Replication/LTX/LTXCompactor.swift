import Foundation
import Platform

/// Merges a contiguous run of LTX files into one: the newest version of each
/// page wins, pages past the last file's commit size are dropped, and the
/// result spans the run's TXIDs with the newest file's timestamp (so a
/// point-in-time restore uses it only when every transaction in it qualifies).
///
/// Streaming: the inputs are decoded side by side, page by page in ascending
/// page number (a k-way merge), and the output is encoded as it goes, so
/// memory is one decoder and one page per input, whatever the files' sizes.
/// At most `fanIn` inputs are open at once; longer runs merge in passes
/// through intermediate files (in memory for in-memory inputs, in the
/// scratch directory for files on disk).
public enum LTXCompactor {
    /// Inputs decoded at once.
    public static let fanIn = 16

    /// Merges files held in memory (a batch of L0 files shipped as one).
    ///
    /// `keepWALRange`: the inputs are consecutive per-transaction files cut
    /// from one WAL: the result records the WAL range they span, like an L0
    /// file guardian cuts itself, so a restart can resume from it. Otherwise
    /// (or when the inputs do not form one contiguous range of one WAL
    /// generation) the WAL fields are zero.
    public static func merge(_ files: [(name: String, bytes: [UInt8])], into sink: any LTXSink, keepWALRange: Bool = false) throws -> LTXHeader {
        guard !files.isEmpty else { throw LTXError("compaction", "nothing to merge") }
        if files.count <= fanIn {
            return try mergeStreams(files.map { ($0.name, LTXMemorySource($0.bytes)) }, into: sink, keepWALRange: keepWALRange)
        }
        var next: [(name: String, bytes: [UInt8])] = []
        for chunk in chunks(files) {
            let out = LTXMemorySink()
            try mergeStreams(chunk.map { ($0.name, LTXMemorySource($0.bytes)) }, into: out, keepWALRange: keepWALRange)
            next.append((passName(chunk.map(\.name)), out.bytes))
        }
        return try merge(next, into: sink, keepWALRange: keepWALRange)
    }

    /// Merges LTX files on disk into `sink`; intermediate passes (more than
    /// `fanIn` inputs) go to files in `scratch`, removed before returning.
    public static func merge(files: [(name: String, path: String)], into sink: any LTXSink, scratch: String) throws -> LTXHeader {
        guard !files.isEmpty else { throw LTXError("compaction", "nothing to merge") }
        var inputs = files
        var intermediates: [String] = []
        defer { for p in intermediates { unlink(p) } }
        var pass = 0
        while inputs.count > fanIn {
            pass += 1
            var next: [(name: String, path: String)] = []
            for (i, chunk) in chunks(inputs).enumerated() {
                let path = "\(scratch)/pass\(pass)-\(i).ltx"
                intermediates.append(path)
                let out = try LTXFileSink(path: path)
                do {
                    try mergeStreams(try chunk.map { ($0.name, try LTXFileSource(path: $0.path)) }, into: out, keepWALRange: false)
                    try out.close(sync: false)
                } catch {
                    out.discard()
                    throw error
                }
                next.append((passName(chunk.map(\.name)), path))
            }
            // The previous pass's intermediates are read: drop them now.
            for old in inputs.map(\.path) where intermediates.contains(old) { unlink(old) }
            inputs = next
        }
        return try mergeStreams(try inputs.map { ($0.name, try LTXFileSource(path: $0.path)) }, into: sink, keepWALRange: false)
    }

    private static func chunks<T>(_ items: [T]) -> [ArraySlice<T>] {
        stride(from: 0, to: items.count, by: fanIn).map { items[$0..<min($0 + fanIn, items.count)] }
    }

    private static func passName(_ names: [String]) -> String {
        "\(names.first ?? "?")…\(names.last ?? "?") (merged)"
    }

    /// One k-way merge of at most `fanIn` inputs, oldest first.
    @discardableResult
    static func mergeStreams(_ inputs: [(name: String, source: any LTXSource)], into sink: any LTXSink, keepWALRange: Bool) throws -> LTXHeader {
        guard let first = inputs.first else { throw LTXError("compaction", "nothing to merge") }
        let decoders = try inputs.map { try LTXDecoder(source: $0.source, name: $0.name) }
        var header: LTXHeader?
        var expectedNext: UInt64?
        // The WAL range of the inputs so far, while they are contiguous in one WAL.
        var wal: (offset: Int64, end: Int64, salt1: UInt32, salt2: UInt32)?
        var walContiguous = keepWALRange
        for decoder in decoders {
            let h = decoder.header
            if let base = header, h.pageSize != base.pageSize {
                throw LTXError(decoder.name, "page size \(h.pageSize) differs from \(base.pageSize)")
            }
            if let next = expectedNext, h.minTXID > next {
                throw LTXError(decoder.name, "not contiguous: expected TXID \(LTXNaming.hex(next))")
            }
            // (Decoded headers never end at UInt64.max: see LTXHeader.problem.)
            expectedNext = max(expectedNext ?? 0, h.maxTXID &+ 1)
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
            if var merged = header {
                merged.maxTXID = max(merged.maxTXID, h.maxTXID)
                merged.commit = h.commit
                merged.timestamp = h.timestamp
                header = merged
            } else {
                header = h
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

        // One page buffer and the current page number per input.
        let pageSize = Int(out.pageSize)
        let buffers = decoders.map { _ in UnsafeMutableRawBufferPointer.allocate(byteCount: pageSize, alignment: 16) }
        defer { for b in buffers { b.deallocate() } }
        var heads: [UInt32?] = []
        for (i, d) in decoders.enumerated() { heads.append(try d.nextPage(into: buffers[i])) }
        while let pgno = heads.compactMap({ $0 }).min() {
            // The newest input holding the page wins.
            if let winner = heads.lastIndex(of: pgno), pgno <= out.commit {
                try encoder.writePage(pgno: pgno, UnsafeRawBufferPointer(buffers[winner]))
            }
            for i in heads.indices where heads[i] == pgno {
                heads[i] = try decoders[i].nextPage(into: buffers[i])
            }
        }
        _ = try encoder.finish()
        return out
    }
}
