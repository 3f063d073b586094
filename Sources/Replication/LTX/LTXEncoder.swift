import CLZ4
import Foundation
import Platform

// Minimal LTX encoder (lead's fallback while the codec helper works).
public struct LTXHeader: Sendable, Equatable {
    public static let size = 100
    public static let flagNoChecksum: UInt32 = 2
    public var flags: UInt32 = 2
    public var pageSize: UInt32
    public var commit: UInt32
    public var minTXID: UInt64
    public var maxTXID: UInt64
    public var timestamp: Int64
    public var preApplyChecksum: UInt64 = 0
    public var walOffset: Int64 = 0
    public var walSize: Int64 = 0
    public var walSalt1: UInt32 = 0
    public var walSalt2: UInt32 = 0
    public var nodeID: UInt64 = 0

    public init(pageSize: UInt32, commit: UInt32, minTXID: UInt64, maxTXID: UInt64, timestamp: Int64, walOffset: Int64 = 0, walSize: Int64 = 0, walSalt1: UInt32 = 0, walSalt2: UInt32 = 0) {
        self.pageSize = pageSize; self.commit = commit; self.minTXID = minTXID; self.maxTXID = maxTXID
        self.timestamp = timestamp; self.walOffset = walOffset; self.walSize = walSize; self.walSalt1 = walSalt1; self.walSalt2 = walSalt2
    }

    public func encode() -> [UInt8] {
        var b = [UInt8](); b.reserveCapacity(100)
        func u32(_ v: UInt32) { for s in stride(from: 24, through: 0, by: -8) { b.append(UInt8(truncatingIfNeeded: v >> UInt32(s))) } }
        func u64(_ v: UInt64) { for s in stride(from: 56, through: 0, by: -8) { b.append(UInt8(truncatingIfNeeded: v >> UInt64(s))) } }
        b += Array("LTX1".utf8); u32(flags); u32(pageSize); u32(commit); u64(minTXID); u64(maxTXID); u64(UInt64(bitPattern: timestamp))
        u64(preApplyChecksum); u64(UInt64(bitPattern: walOffset)); u64(UInt64(bitPattern: walSize)); u32(walSalt1); u32(walSalt2); u64(nodeID)
        b += [UInt8](repeating: 0, count: 100 - b.count)
        return b
    }

    public static func decode(_ b: [UInt8]) throws -> LTXHeader {
        guard b.count >= 100, b[0..<4].elementsEqual("LTX1".utf8) else { throw SystemError("ltx header", path: "", code: EINVAL) }
        func u32(_ o: Int) -> UInt32 { (0..<4).reduce(0) { $0 << 8 | UInt32(b[o + $1]) } }
        func u64(_ o: Int) -> UInt64 { (0..<8).reduce(0) { $0 << 8 | UInt64(b[o + $1]) } }
        var h = LTXHeader(pageSize: u32(8), commit: u32(12), minTXID: u64(16), maxTXID: u64(24), timestamp: Int64(bitPattern: u64(32)),
                          walOffset: Int64(bitPattern: u64(48)), walSize: Int64(bitPattern: u64(56)), walSalt1: u32(64), walSalt2: u32(68))
        h.flags = u32(4); h.preApplyChecksum = u64(40); h.nodeID = u64(72)
        return h
    }
}

enum CRC64 {
    static let table: [[UInt64]] = {
        var t = [[UInt64]](repeating: [UInt64](repeating: 0, count: 256), count: 8)
        for i in 0..<256 {
            var c = UInt64(i)
            for _ in 0..<8 { c = c & 1 == 1 ? (c >> 1) ^ 0xD800_0000_0000_0000 : c >> 1 }
            t[0][i] = c
        }
        for i in 0..<256 { for k in 1..<8 { t[k][i] = (t[k - 1][i] >> 8) ^ t[0][Int(t[k - 1][i] & 0xff)] } }
        return t
    }()

    static func update(_ crc: UInt64, _ data: UnsafeRawBufferPointer) -> UInt64 {
        var c = ~crc
        var i = 0
        let n = data.count
        let t = table
        while i + 8 <= n {
            let w = c ^ data.loadUnaligned(fromByteOffset: i, as: UInt64.self).littleEndian
            c = t[7][Int(w & 0xff)] ^ t[6][Int((w >> 8) & 0xff)] ^ t[5][Int((w >> 16) & 0xff)] ^ t[4][Int((w >> 24) & 0xff)]
                ^ t[3][Int((w >> 32) & 0xff)] ^ t[2][Int((w >> 40) & 0xff)] ^ t[1][Int((w >> 48) & 0xff)] ^ t[0][Int(w >> 56)]
            i += 8
        }
        while i < n { c = t[0][Int((c ^ UInt64(data[i])) & 0xff)] ^ (c >> 8); i += 1 }
        return ~c
    }
}

public protocol LTXSink: AnyObject { func write(_ bytes: UnsafeRawBufferPointer) throws }
public final class LTXMemorySink: LTXSink {
    public private(set) var bytes: [UInt8] = []
    public init() {}
    public func write(_ b: UnsafeRawBufferPointer) throws { bytes.append(contentsOf: b) }
}
public final class LTXFileSink: LTXSink {
    let fd: Int32; let path: String; var buffer: [UInt8] = []
    public init(path: String) throws {
        self.path = path
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SystemError("open", path: path) }
    }
    public func write(_ b: UnsafeRawBufferPointer) throws {
        buffer.append(contentsOf: b)
        if buffer.count >= 1 << 20 { try flush() }
    }
    func flush() throws { try DurableFile.writeAll(fd: fd, buffer, path: path); buffer.removeAll(keepingCapacity: true) }
    public func close(sync: Bool) throws {
        try flush()
        if sync { fsync(fd) }
        Foundation.close(fd)
    }
}

public final class LTXEncoder {
    let header: LTXHeader; let sink: any LTXSink
    var crc: UInt64 = 0; var offset: Int64 = 0; var index: [(UInt32, Int64, Int64)] = []; var last: UInt32 = 0
    var scratch: [UInt8]
    public init(header: LTXHeader, sink: any LTXSink) throws {
        self.header = header; self.sink = sink
        scratch = [UInt8](repeating: 0, count: Int(LZ4_compressBound(Int32(header.pageSize))))
        try emit(header.encode(), hash: true)
    }
    func emit(_ b: [UInt8], hash: Bool) throws {
        try b.withUnsafeBytes { if hash { crc = CRC64.update(crc, $0) }; try sink.write($0) }
        offset += Int64(b.count)
    }
    public func writePage(pgno: UInt32, _ page: [UInt8]) throws { try page.withUnsafeBytes { try writePage(pgno: pgno, $0) } }
    public func writePage(pgno: UInt32, _ page: UnsafeRawBufferPointer) throws {
        guard pgno > last, page.count == Int(header.pageSize) else { throw SystemError("ltx page order", path: "", code: EINVAL) }
        last = pgno
        let n = scratch.withUnsafeMutableBytes { dst in
            LZ4_compress_default(page.baseAddress?.assumingMemoryBound(to: CChar.self), dst.baseAddress?.assumingMemoryBound(to: CChar.self), Int32(page.count), Int32(dst.count))
        }
        let start = offset
        var h: [UInt8] = [UInt8(pgno >> 24), UInt8((pgno >> 16) & 0xff), UInt8((pgno >> 8) & 0xff), UInt8(pgno & 0xff), 0, 1]
        let size = UInt32(n)
        h += [UInt8(size >> 24), UInt8((size >> 16) & 0xff), UInt8((size >> 8) & 0xff), UInt8(size & 0xff)]
        try emit(h, hash: true)
        crc = CRC64.update(crc, page)
        try scratch.withUnsafeBytes { try sink.write(UnsafeRawBufferPointer(rebasing: $0[0..<Int(n)])) }
        offset += Int64(n)
        index.append((pgno, start, offset - start))
    }
    public func finish() throws -> (size: Int64, checksum: UInt64) {
        try emit([0, 0, 0, 0, 0, 0], hash: true)
        var idx: [UInt8] = []
        func uvarint(_ v: UInt64) { var x = v; while x >= 0x80 { idx.append(UInt8(x & 0x7f) | 0x80); x >>= 7 }; idx.append(UInt8(x)) }
        for (p, o, s) in index { uvarint(UInt64(p)); uvarint(UInt64(o)); uvarint(UInt64(s)) }
        uvarint(0)
        let n = UInt64(idx.count)
        for s in stride(from: 56, through: 0, by: -8) { idx.append(UInt8(truncatingIfNeeded: n >> UInt64(s))) }
        try emit(idx, hash: true)
        try emit([UInt8](repeating: 0, count: 8), hash: true)
        let sum = crc | (1 << 63)
        var t: [UInt8] = []
        for s in stride(from: 56, through: 0, by: -8) { t.append(UInt8(truncatingIfNeeded: sum >> UInt64(s))) }
        try emit(t, hash: false)
        return (offset, sum)
    }
}
