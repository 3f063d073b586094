import CLZ4
import Foundation
import Platform

// Reading LTX files (the format of superfly/ltx v0.5.2 as Litestream 0.5.17
// writes it; see ../shared/ltx.md §2):
//   header (100 bytes) | page frames | end marker (6 zero bytes) | page index | trailer (16 bytes)
// A frame is pgno u32, flags u16, then with flags=1 a u32 size and an LZ4 block
// decompressing to one page; with flags=0 (Litestream 0.5.0–0.5.15) a whole LZ4
// frame follows with no size. The index is uvarint triples (pgno, offset, size)
// ending with a 0 and a u64 byte count. The trailer holds the post-apply checksum
// (0 here) and the file checksum: CRC-64/ISO over every byte before it, with the
// pages *decompressed*, with bit 63 set.

public struct LTXError: Error, CustomStringConvertible, Sendable {
    public let file: String
    public let problem: String

    public init(_ file: String, _ problem: String) {
        self.file = file
        self.problem = problem
    }

    public var description: String { "\(file): \(problem)" }
}

public protocol LTXSource: AnyObject {
    /// Reads up to `buffer.count` bytes; 0 at the end.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int
}

public final class LTXMemorySource: LTXSource {
    private let bytes: [UInt8]
    private var offset = 0

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let n = min(buffer.count, bytes.count - offset)
        guard n > 0, let dst = buffer.baseAddress else { return 0 }
        bytes.withUnsafeBytes { src in
            if let base = src.baseAddress { dst.copyMemory(from: base + offset, byteCount: n) }
        }
        offset += n
        return n
    }
}

public final class LTXFileSource: LTXSource {
    private let fd: Int32
    private let path: String

    public init(path: String) throws {
        self.path = path
        fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open", path: path) }
    }

    deinit { close(fd) }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard let base = buffer.baseAddress else { return 0 }
        while true {
            let n = Foundation.read(fd, base, buffer.count)
            if n < 0, errno == EINTR { continue }
            guard n >= 0 else { throw SystemError("read", path: path) }
            return n
        }
    }
}

public final class LTXDecoder {
    public private(set) var header: LTXHeader
    public let name: String
    private let source: any LTXSource
    private var buffer: [UInt8]
    private var start = 0
    private var end = 0
    private var eof = false
    private var crc: UInt64 = 0
    private var lastPgno: UInt32 = 0
    private var finished = false
    private var page: [UInt8]
    private var compressed: [UInt8] = []
    public private(set) var pageCount = 0

    public init(source: any LTXSource, name: String) throws {
        self.source = source
        self.name = name
        buffer = [UInt8](repeating: 0, count: 1 << 20)
        page = []
        var raw = [UInt8](repeating: 0, count: LTXHeader.size)
        header = LTXHeader(pageSize: 4096, commit: 0, minTXID: 1, maxTXID: 1, timestamp: 0)
        let decoded: LTXHeader
        do {
            try Self.fill(&raw, from: self)
            decoded = try LTXHeader.decode(raw)
            try decoded.validate()
        } catch let e as LTXError {
            throw LTXError(name, e.problem)
        } catch {
            throw LTXError(name, "truncated: no complete header (\(error))")
        }
        self.header = decoded
        page = [UInt8](repeating: 0, count: Int(decoded.pageSize))
        raw.withUnsafeBytes { crc = CRC64.update(0, $0) }
    }

    private static func fill(_ out: inout [UInt8], from d: LTXDecoder) throws {
        try out.withUnsafeMutableBytes { try d.readExactly($0) }
    }

    private func refill() throws {
        if start > 0, start == end { start = 0; end = 0 }
        if end == buffer.count {
            if start > 0 {
                buffer.withUnsafeMutableBytes { raw in
                    if let b = raw.baseAddress { memmove(b, b + start, end - start) }
                }
                end -= start
                start = 0
            } else {
                buffer += [UInt8](repeating: 0, count: buffer.count)
            }
        }
        let n = try buffer.withUnsafeMutableBytes { raw in
            try source.read(into: UnsafeMutableRawBufferPointer(rebasing: raw[end...]))
        }
        if n == 0 { eof = true }
        end += n
    }

    /// Reads exactly `out.count` bytes or throws "truncated".
    private func readExactly(_ out: UnsafeMutableRawBufferPointer) throws {
        var filled = 0
        while filled < out.count {
            if start == end {
                if eof { throw LTXError(name, "truncated: the file ends early") }
                try refill()
                continue
            }
            let n = min(out.count - filled, end - start)
            buffer.withUnsafeBytes { src in
                if let s = src.baseAddress, let d = out.baseAddress { (d + filled).copyMemory(from: s + start, byteCount: n) }
            }
            start += n
            filled += n
        }
    }

    private func bytes(_ n: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: n)
        try out.withUnsafeMutableBytes { try readExactly($0) }
        return out
    }

    private func hash(_ b: [UInt8]) { b.withUnsafeBytes { crc = CRC64.update(crc, $0) } }

    /// The next page in file order, or nil after the last one (by then the
    /// index and trailer are read and the file checksum is verified).
    public func nextPage() throws -> (pgno: UInt32, data: [UInt8])? {
        guard !finished else { return nil }
        let h = try bytes(6)
        hash(h)
        let pgno = UInt32(h[0]) << 24 | UInt32(h[1]) << 16 | UInt32(h[2]) << 8 | UInt32(h[3])
        let flags = UInt16(h[4]) << 8 | UInt16(h[5])
        if pgno == 0 {
            guard flags == 0 else { throw LTXError(name, "corrupt: bad end marker") }
            try finish()
            return nil
        }
        guard pgno > lastPgno else { throw LTXError(name, "corrupt: page \(pgno) out of order after \(lastPgno)") }
        guard pgno <= header.commit else { throw LTXError(name, "corrupt: page \(pgno) beyond the commit size \(header.commit)") }
        lastPgno = pgno
        let pageSize = Int(header.pageSize)
        switch flags {
        case 1:
            let s = try bytes(4)
            hash(s)
            let size = Int(UInt32(s[0]) << 24 | UInt32(s[1]) << 16 | UInt32(s[2]) << 8 | UInt32(s[3]))
            guard size > 0, size <= pageSize + pageSize / 255 + 16 else { throw LTXError(name, "corrupt: page \(pgno) has compressed size \(size)") }
            if compressed.count < size { compressed = [UInt8](repeating: 0, count: size) }
            try compressed.withUnsafeMutableBytes { try readExactly(UnsafeMutableRawBufferPointer(rebasing: $0[0..<size])) }
            let n = compressed.withUnsafeBytes { src in
                page.withUnsafeMutableBytes { dst in
                    LZ4_decompress_safe(
                        src.baseAddress?.assumingMemoryBound(to: CChar.self), dst.baseAddress?.assumingMemoryBound(to: CChar.self),
                        Int32(size), Int32(pageSize))
                }
            }
            guard n == Int32(pageSize) else { throw LTXError(name, "corrupt: page \(pgno) does not decompress to \(pageSize) bytes") }
        case 0:
            try decodeLegacyFrame(pgno: pgno)
        default:
            throw LTXError(name, "corrupt: page \(pgno) has unknown flags \(flags)")
        }
        hash(page)
        pageCount += 1
        return (pgno, page)
    }

    /// Litestream 0.5.0–0.5.15: the page is a whole LZ4 frame with no length
    /// prefix; feed LZ4F until it reports the frame complete.
    private func decodeLegacyFrame(pgno: UInt32) throws {
        var ctx: OpaquePointer?
        guard LZ4F_isError(LZ4F_createDecompressionContext(&ctx, UInt32(LZ4F_VERSION))) == 0, let ctx else {
            throw LTXError(name, "cannot create an LZ4 decoder")
        }
        defer { LZ4F_freeDecompressionContext(ctx) }
        var produced = 0
        while true {
            if start == end {
                if eof { throw LTXError(name, "truncated inside page \(pgno)") }
                try refill()
                continue
            }
            var srcSize = end - start
            var dstSize = page.count - produced
            let hint = buffer.withUnsafeBytes { src in
                page.withUnsafeMutableBytes { dst in
                    LZ4F_decompress(ctx, dst.baseAddress.map { $0 + produced }, &dstSize, src.baseAddress.map { $0 + start }, &srcSize, nil)
                }
            }
            guard LZ4F_isError(hint) == 0 else { throw LTXError(name, "corrupt: page \(pgno) is not a valid LZ4 frame") }
            start += srcSize
            produced += dstSize
            if hint == 0 { break }
        }
        guard produced == page.count else { throw LTXError(name, "corrupt: page \(pgno) decompressed to \(produced) bytes") }
    }

    private func uvarint() throws -> (UInt64, [UInt8]) {
        var v: UInt64 = 0
        var shift: UInt64 = 0
        var raw: [UInt8] = []
        while true {
            let b = try bytes(1)[0]
            raw.append(b)
            v |= UInt64(b & 0x7f) << shift
            if b & 0x80 == 0 { return (v, raw) }
            shift += 7
            guard shift < 64 else { throw LTXError(name, "corrupt: bad page index") }
        }
    }

    private func finish() throws {
        var indexBytes: [UInt8] = []
        var entries = 0
        while true {
            let (pgno, raw) = try uvarint()
            indexBytes += raw
            if pgno == 0 { break }
            let (_, r1) = try uvarint()
            let (_, r2) = try uvarint()
            indexBytes += r1 + r2
            entries += 1
        }
        guard entries == pageCount else { throw LTXError(name, "corrupt: page index lists \(entries) pages, the file holds \(pageCount)") }
        let sizeField = try bytes(8)
        let indexSize = sizeField.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        guard indexSize == UInt64(indexBytes.count) else { throw LTXError(name, "corrupt: page index size field") }
        hash(indexBytes)
        hash(sizeField)
        let post = try bytes(8)
        hash(post)
        let stored = try bytes(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        // Nothing may follow the trailer.
        if start == end, !eof { try refill() }
        guard start == end, eof else { throw LTXError(name, "corrupt: bytes after the trailer") }
        let computed = crc | (1 << 63)
        guard stored == computed else {
            throw LTXError(name, "checksum mismatch: the trailer says \(String(stored, radix: 16)), the content gives \(String(computed, radix: 16))")
        }
        finished = true
    }

    /// Reads to the end, verifying everything.
    public func verifyAll() throws {
        while try nextPage() != nil {}
    }
}

extension LTXHeader {
    /// The decoder's rules (ltx.md §2.1); a file breaking any is refused.
    public func validate() throws {
        let n = "header"
        guard flags & ~Self.flagNoChecksum == 0 else { throw LTXError(n, "unsupported flags \(flags)") }
        guard pageSize >= 512, pageSize <= 65536, pageSize & (pageSize - 1) == 0 else { throw LTXError(n, "invalid page size \(pageSize)") }
        guard minTXID >= 1, maxTXID >= minTXID else { throw LTXError(n, "invalid TXID range \(minTXID)-\(maxTXID)") }
        guard walOffset >= 0, walSize >= 0 else { throw LTXError(n, "negative WAL offset or size") }
        if walOffset == 0 { guard walSize == 0, walSalt1 == 0, walSalt2 == 0 else { throw LTXError(n, "WAL fields without an offset") } }
        if minTXID == 1 || flags & Self.flagNoChecksum != 0 {
            guard preApplyChecksum == 0 else { throw LTXError(n, "unexpected pre-apply checksum") }
        }
    }
}
