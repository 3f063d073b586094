import CLZ4
import Foundation
import Platform

// Reading LTX files (the format is described in LTXFormat.swift). The decoder
// streams through one 256 KiB buffer: header, then one page per `nextPage`
// call, decompressed straight into the caller's memory; after the end marker
// it reads the page index and the trailer, checks that the index describes
// the frames it saw, that the file checksum matches and that nothing follows
// the trailer. Each failure is an `LTXError` naming the file and the offset.

/// Where a decoder's bytes come from.
public protocol LTXSource: AnyObject {
    /// Reads up to `buffer.count` bytes; 0 means end of file.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int
}

public final class LTXMemorySource: LTXSource {
    private let bytes: [UInt8]
    private var position = 0

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let n = min(buffer.count, bytes.count - position)
        guard n > 0, let destination = buffer.baseAddress else { return 0 }
        bytes.withUnsafeBytes { raw in
            if let base = raw.baseAddress { destination.copyMemory(from: base + position, byteCount: n) }
        }
        position += n
        return n
    }
}

/// Reads a local file. Large reads go straight to read(2); small ones are
/// served from a 256 KiB buffer.
public final class LTXFileSource: LTXSource {
    public let path: String
    private var fd: Int32
    private let buffer: UnsafeMutableRawBufferPointer
    private var lo = 0
    private var hi = 0

    public init(path: String) throws {
        self.path = path
        fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open", path: path) }
        _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_SEQUENTIAL))
        buffer = .allocate(byteCount: 256 * 1024, alignment: 16)
    }

    deinit {
        if fd >= 0 { close(fd) }
        buffer.deallocate()
    }

    public func read(into destination: UnsafeMutableRawBufferPointer) throws -> Int {
        guard let out = destination.baseAddress, destination.count > 0, let base = buffer.baseAddress else { return 0 }
        if hi > lo {
            let n = min(hi - lo, destination.count)
            out.copyMemory(from: base + lo, byteCount: n)
            lo += n
            return n
        }
        if destination.count >= buffer.count / 2 { return try rawRead(destination) }
        lo = 0
        hi = try rawRead(buffer)
        let n = min(hi, destination.count)
        if n > 0 { out.copyMemory(from: base, byteCount: n) }
        lo = n
        return n
    }

    private func rawRead(_ into: UnsafeMutableRawBufferPointer) throws -> Int {
        while true {
            let n = Foundation.read(fd, into.baseAddress, into.count)
            if n >= 0 { return n }
            if errno == EINTR { continue }
            throw SystemError("read", path: path)
        }
    }
}

/// Decodes one LTX file, verifying everything as it goes.
public final class LTXDecoder {
    public let header: LTXHeader
    /// The file, as errors name it.
    public let name: String
    private let source: any LTXSource
    private let buffer: UnsafeMutableRawBufferPointer
    private var lo = 0
    private var hi = 0
    /// File offset of `buffer[lo]`.
    private var offset: Int64 = 0
    private var crc = CRC64()
    private var previousPgno: UInt32 = 0
    private var expectedIndex: [UInt8] = []
    private var done = false
    private var frameContext: OpaquePointer?
    /// Pages decoded so far.
    public private(set) var pageCount = 0
    /// The verified file checksum, once the end has been reached.
    public private(set) var fileChecksum: UInt64?
    /// Bytes consumed so far (the file size once done).
    public var bytesRead: Int64 { offset }

    public init(source: any LTXSource, name: String) throws {
        self.source = source
        self.name = name
        buffer = .allocate(byteCount: 256 << 10, alignment: 16)
        do {
            try Self.fill(buffer, &lo, &hi, LTXHeader.size, source: source, name: name, offset: 0)
            let bytes = UnsafeRawBufferPointer(rebasing: buffer[lo..<(lo + LTXHeader.size)])
            header = try LTXHeader.decode(bytes, name: name)
            crc.update(bytes)
        } catch {
            buffer.deallocate()
            throw error
        }
        lo += LTXHeader.size
        offset = Int64(LTXHeader.size)
    }

    deinit {
        buffer.deallocate()
        if let frameContext { LZ4F_freeDecompressionContext(frameContext) }
    }

    /// The next page in file order, or nil after the end marker (by then the
    /// index and trailer are read and the file checksum is verified).
    public func nextPage() throws -> (pgno: UInt32, data: [UInt8])? {
        var page = [UInt8](repeating: 0, count: Int(header.pageSize))
        let pgno = try page.withUnsafeMutableBytes { try nextPage(into: $0) }
        guard let pgno else { return nil }
        return (pgno, page)
    }

    /// Decodes the next page into `page` (at least one page long) and returns
    /// its number, or nil after the end marker and a verified trailer. No
    /// allocation per page: restore decodes straight into its write buffer.
    public func nextPage(into page: UnsafeMutableRawBufferPointer) throws -> UInt32? {
        guard !done else { return nil }
        let pageSize = Int(header.pageSize)
        guard page.count >= pageSize, let destination = page.baseAddress else {
            throw LTXError(.invalidInput, file: name, "page buffer of \(page.count) bytes is smaller than the page size \(pageSize)")
        }
        let frameStart = offset
        try ensure(6)
        let pgno = LTXBytes.get32(pointer)
        let flags = LTXBytes.get16(pointer + 4)
        if pgno == 0 {
            guard flags == 0 else { throw corrupt("end marker with flags 0x\(String(flags, radix: 16))") }
            hashAndConsume(6)
            try finishFile()
            return nil
        }
        try checkOrder(pgno)
        let frameSize: Int64
        switch flags {
        case 1:
            try ensure(10)
            let n = Int(LTXBytes.get32(pointer + 6))
            guard n > 0, n <= 2 * pageSize + 1024 else { throw corrupt("page \(pgno): invalid compressed size \(n)") }
            hashAndConsume(10)
            try ensure(n)
            let produced = LZ4_decompress_safe(
                pointer.assumingMemoryBound(to: CChar.self), destination.assumingMemoryBound(to: CChar.self),
                Int32(n), Int32(pageSize))
            guard produced == Int32(pageSize) else {
                throw corrupt("page \(pgno): the LZ4 block does not decompress to one page (\(produced < 0 ? "invalid data" : "\(produced) bytes"))")
            }
            consume(n)
            frameSize = Int64(10 + n)
        case 0:
            hashAndConsume(6)
            try decodeFrame(pgno: pgno, into: destination, pageSize: pageSize)
            frameSize = offset - frameStart
        default:
            throw corrupt("page \(pgno): invalid frame flags 0x\(String(flags, radix: 16))")
        }
        crc.update(UnsafeRawBufferPointer(start: destination, count: pageSize))
        LTXBytes.appendUvarint(&expectedIndex, UInt64(pgno))
        LTXBytes.appendUvarint(&expectedIndex, UInt64(frameStart))
        LTXBytes.appendUvarint(&expectedIndex, UInt64(frameSize))
        previousPgno = pgno
        pageCount += 1
        return pgno
    }

    /// Reads the whole file and verifies it (pages, index, checksum, end).
    public func verifyAll() throws {
        let page = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(header.pageSize), alignment: 16)
        defer { page.deallocate() }
        while try nextPage(into: page) != nil {}
    }

    // MARK: - Frames

    private func checkOrder(_ pgno: UInt32) throws {
        guard pgno > previousPgno else { throw corrupt("page \(pgno) follows page \(previousPgno): pages out of order") }
        guard pgno <= header.commit else { throw corrupt("page \(pgno) is beyond the commit size of \(header.commit) pages") }
        let lock = header.lockPgno
        guard pgno != lock else { throw corrupt("frame for the lock page \(pgno)") }
        if header.isSnapshot {
            let expected = previousPgno + 1 == lock ? previousPgno + 2 : previousPgno + 1
            guard pgno == expected else { throw corrupt("the snapshot skips from page \(previousPgno) to page \(pgno)") }
        }
    }

    /// A legacy frame: one standard LZ4 frame, whose end the LZ4F decoder
    /// finds (it stops after the EndMark and the content checksum).
    private func decodeFrame(pgno: UInt32, into destination: UnsafeMutableRawPointer, pageSize: Int) throws {
        if let frameContext {
            LZ4F_resetDecompressionContext(frameContext)
        } else {
            var context: OpaquePointer?
            let rc = LZ4F_createDecompressionContext(&context, UInt32(LZ4F_VERSION))
            guard LZ4F_isError(rc) == 0, let context else { throw corrupt("cannot create an LZ4 frame decoder") }
            frameContext = context
        }
        guard let context = frameContext else { return }
        var produced = 0
        while true {
            if hi == lo { try ensure(1) }
            var sourceSize = hi - lo
            var outputSize = pageSize - produced
            let hint = LZ4F_decompress(context, destination + produced, &outputSize, pointer, &sourceSize, nil)
            if LZ4F_isError(hint) != 0 {
                throw corrupt("page \(pgno): invalid LZ4 frame (\(String(cString: LZ4F_getErrorName(hint))))")
            }
            consume(sourceSize)
            produced += outputSize
            if hint == 0 { break }
            if sourceSize == 0 && outputSize == 0 {
                throw corrupt("page \(pgno): the LZ4 frame holds more than one page")
            }
        }
        guard produced == pageSize else { throw corrupt("page \(pgno): the LZ4 frame decompresses to \(produced) bytes, not one page") }
    }

    // MARK: - Index and trailer

    private func finishFile() throws {
        if header.isSnapshot, header.commit > 0 {
            let last = header.commit == header.lockPgno ? header.commit - 1 : header.commit
            guard previousPgno == last else {
                throw corrupt("the snapshot ends at page \(previousPgno) but the database has \(header.commit) pages")
            }
        }
        let indexStart = offset
        var actual: [UInt8] = []
        actual.reserveCapacity(expectedIndex.count + 1)
        while true {
            let pgno = try readUvarint(into: &actual)
            if pgno == 0 { break }
            _ = try readUvarint(into: &actual)
            _ = try readUvarint(into: &actual)
            if actual.count > expectedIndex.count { break }
        }
        guard actual.count == expectedIndex.count + 1, actual.dropLast().elementsEqual(expectedIndex) else {
            throw LTXError(.corrupt, file: name, offset: indexStart, "the page index does not match the \(pageCount) page frames")
        }
        expectedIndex = []
        try ensure(8)
        let length = LTXBytes.get64(pointer)
        guard length == UInt64(actual.count) else {
            throw corrupt("the page index length field says \(length) bytes, the index has \(actual.count)")
        }
        hashAndConsume(8)
        try ensure(16)
        let postApply = LTXBytes.get64(pointer)
        let stored = LTXBytes.get64(pointer + 8)
        if header.flags & LTXHeader.flagNoChecksum != 0 {
            guard postApply == 0 else { throw corrupt("post-apply checksum set together with the NoChecksum flag") }
        } else {
            guard postApply & (1 << 63) != 0 else { throw corrupt("invalid post-apply checksum 0x\(String(postApply, radix: 16))") }
        }
        hashAndConsume(8)
        let computed = crc.value | (1 << 63)
        guard computed == stored else {
            throw LTXError(
                .checksumMismatch, file: name,
                "checksum mismatch: the trailer says \(LTXNaming.hex(stored)) but the contents hash to \(LTXNaming.hex(computed)); the file is corrupt")
        }
        consume(8)
        // Nothing may follow the trailer.
        if hi > lo { throw LTXError(.trailingData, file: name, offset: offset, "unexpected bytes after the trailer") }
        lo = 0
        hi = 0
        let extra = try source.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<4096]))
        if extra > 0 { throw LTXError(.trailingData, file: name, offset: offset, "unexpected bytes after the trailer") }
        fileChecksum = stored
        done = true
    }

    private func readUvarint(into bytes: inout [UInt8]) throws -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        for _ in 0..<10 {
            try ensure(1)
            let b = pointer.load(as: UInt8.self)
            bytes.append(b)
            hashAndConsume(1)
            value |= UInt64(b & 0x7f) << shift
            if b < 0x80 { return value }
            shift += 7
        }
        throw corrupt("malformed varint in the page index")
    }

    // MARK: - Buffer

    private var pointer: UnsafeRawPointer { UnsafeRawPointer(buffer.baseAddress.unsafelyUnwrapped + lo) }

    @inline(__always)
    private func ensure(_ n: Int) throws {
        if hi - lo >= n { return }
        try Self.fill(buffer, &lo, &hi, n, source: source, name: name, offset: offset)
    }

    /// Makes `n` bytes available at `lo`, compacting the buffer and reading more.
    private static func fill(
        _ buffer: UnsafeMutableRawBufferPointer, _ lo: inout Int, _ hi: inout Int, _ n: Int,
        source: any LTXSource, name: String, offset: Int64
    ) throws {
        if hi - lo >= n { return }
        guard let base = buffer.baseAddress else { return }
        if lo > 0 {
            if hi > lo { memmove(base, base + lo, hi - lo) }
            hi -= lo
            lo = 0
        }
        while hi < n {
            let got = try source.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[hi..<buffer.count]))
            if got == 0 {
                throw LTXError(.truncated, file: name, offset: offset + Int64(hi), "truncated: the file ends \(n - hi) bytes early")
            }
            hi += got
        }
    }

    @inline(__always)
    private func consume(_ n: Int) {
        lo += n
        offset += Int64(n)
    }

    private func hashAndConsume(_ n: Int) {
        crc.update(UnsafeRawBufferPointer(start: pointer, count: n))
        consume(n)
    }

    private func corrupt(_ message: String) -> LTXError {
        LTXError(.corrupt, file: name, offset: offset, message)
    }
}
