import CLZ4
import Foundation
import Platform

// Writing LTX files (the format is described in LTXFormat.swift). The encoder
// streams: header, then each page as it is given (LZ4-compressed into one
// reused buffer), then end marker, page index and trailer on `finish()`.
// Memory: one compression buffer plus the page index (a few bytes per page).

/// Where an encoder's bytes go.
public protocol LTXSink: AnyObject {
    func write(_ bytes: UnsafeRawBufferPointer) throws
    /// The encoder wrote the trailer: nothing more will come.
    func finished()
}

extension LTXSink {
    public func finished() {}
}

/// Collects an LTX file in memory (small files: one transaction).
public final class LTXMemorySink: LTXSink {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    public func write(_ data: UnsafeRawBufferPointer) throws {
        bytes.append(contentsOf: data)
    }

    /// Drops the growth slack (up to half the array): a finished file may
    /// wait in memory until every replica has it, and a burst holds many.
    public func finished() {
        guard bytes.capacity - bytes.count > 4096 else { return }
        bytes = [UInt8](unsafeUninitializedCapacity: bytes.count) { out, initialized in
            initialized = bytes.withUnsafeBytes { $0.copyBytes(to: UnsafeMutableRawBufferPointer(out)) }
        }
    }
}

/// Writes an LTX file to disk through a 1 MiB buffer. The file is created
/// new (mode 0600: it may hold the whole database): a leftover at its name is
/// removed first, and the creation is exclusive and never follows a symbolic
/// link. `close(sync:)` flushes (and fsyncs when asked). The caller renames it
/// into place; `discard()` removes a half-written file.
public final class LTXFileSink: LTXSink {
    public let path: String
    private var fd: Int32
    private let buffer: UnsafeMutableRawBufferPointer
    private var used = 0
    /// Bytes handed to `write` so far.
    public private(set) var bytesWritten: Int64 = 0

    public init(path: String, bufferSize: Int = 1 << 20) throws {
        self.path = path
        unlink(path)
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SystemError("open", path: path) }
        buffer = .allocate(byteCount: max(bufferSize, 4096), alignment: 16)
    }

    deinit {
        if fd >= 0 { Foundation.close(fd) }
        buffer.deallocate()
    }

    public func write(_ data: UnsafeRawBufferPointer) throws {
        guard fd >= 0 else { throw SystemError("write", path: path, code: EBADF) }
        guard let source = data.baseAddress, data.count > 0, let base = buffer.baseAddress else { return }
        bytesWritten += Int64(data.count)
        if used + data.count <= buffer.count {
            (base + used).copyMemory(from: source, byteCount: data.count)
            used += data.count
            return
        }
        try flush()
        if data.count >= buffer.count {
            try Self.writeAll(fd: fd, source, data.count, path: path)
        } else {
            base.copyMemory(from: source, byteCount: data.count)
            used = data.count
        }
    }

    private func flush() throws {
        guard used > 0, let base = buffer.baseAddress else { return }
        try Self.writeAll(fd: fd, UnsafeRawPointer(base), used, path: path)
        used = 0
    }

    /// Flushes, optionally fsyncs, and closes the file.
    public func close(sync: Bool) throws {
        guard fd >= 0 else { return }
        defer {
            Foundation.close(fd)
            fd = -1
        }
        try flush()
        if sync, fsync(fd) != 0 { throw SystemError("fsync", path: path) }
    }

    /// Closes and deletes the file (after a failed encode).
    public func discard() {
        if fd >= 0 {
            Foundation.close(fd)
            fd = -1
        }
        used = 0
        unlink(path)
    }

    static func writeAll(fd: Int32, _ base: UnsafeRawPointer, _ count: Int, path: String) throws {
        var offset = 0
        while offset < count {
            let n = Foundation.write(fd, base + offset, count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("write", path: path)
            }
            offset += n
        }
    }
}

/// Encodes one LTX file. Pages must come in strictly ascending page
/// number, each exactly one page long, never the lock page, none above the
/// header's commit; a snapshot (MinTXID 1) must hold every page 1...commit.
/// Writers always use flags = 0x2 and zero database checksums (Litestream
/// 0.5.17 cannot restore files that track them, issue #1427).
public final class LTXEncoder {
    public let header: LTXHeader
    /// Used in errors: by default the file's name (`<min>-<max>.ltx`).
    public let name: String
    private let sink: any LTXSink
    private var crc = CRC64()
    private var written: Int64 = 0
    private var previousPgno: UInt32 = 0
    private var index: [UInt8] = []
    private var finished = false
    private var failed = false
    /// Frame header (10 bytes) followed by room for one compressed page.
    private let frame: UnsafeMutableRawBufferPointer
    public private(set) var pageCount = 0

    public init(header: LTXHeader, sink: any LTXSink, name: String? = nil) throws {
        let name = name ?? LTXNaming.fileName(minTXID: header.minTXID, maxTXID: header.maxTXID)
        if let problem = header.problem { throw LTXError(.invalidInput, file: name, problem) }
        guard header.flags == LTXHeader.flagNoChecksum, header.preApplyChecksum == 0 else {
            throw LTXError(.invalidInput, file: name, "writers must set flags = 0x2 (NoChecksum) and a zero pre-apply checksum")
        }
        self.header = header
        self.name = name
        self.sink = sink
        frame = .allocate(byteCount: Self.frameCapacity(pageSize: Int(header.pageSize)), alignment: 16)
        do {
            try emit(header.encode(), hash: true)
        } catch {
            frame.deallocate()
            throw error
        }
    }

    deinit { frame.deallocate() }

    /// Bytes written so far.
    public var size: Int64 { written }

    public func writePage(pgno: UInt32, _ page: [UInt8]) throws {
        try page.withUnsafeBytes { try writePage(pgno: pgno, $0) }
    }

    public func writePage(pgno: UInt32, _ page: UnsafeRawBufferPointer) throws {
        try check(pgno: pgno, page: page)
        guard let out = frame.baseAddress else { return }
        let total = Self.encodeFrame(pgno: pgno, page: page, into: out, capacity: frame.count)
        guard total > 0 else {
            failed = true
            throw LTXError(.invalidInput, file: name, "LZ4 could not compress page \(pgno)")
        }
        try append(pgno: pgno, page: page, frame: UnsafeRawBufferPointer(start: out, count: total))
    }

    /// Room for the frame of one page of `pageSize` bytes (header and LZ4 block).
    public static func frameCapacity(pageSize: Int) -> Int { 10 + Int(LZ4_compressBound(Int32(pageSize))) }

    /// Encodes one page as a frame (10-byte header, raw LZ4 block) at `out`
    /// and returns its length, 0 when LZ4 fails. Pure: full images compress
    /// batches of pages with it on helper threads, then `writeFrame` them.
    public static func encodeFrame(pgno: UInt32, page: UnsafeRawBufferPointer, into out: UnsafeMutableRawPointer, capacity: Int) -> Int {
        guard let source = page.baseAddress, capacity > 10 else { return 0 }
        let compressed = LZ4_compress_default(
            source.assumingMemoryBound(to: CChar.self), (out + 10).assumingMemoryBound(to: CChar.self),
            Int32(page.count), Int32(capacity - 10))
        guard compressed > 0 else { return 0 }
        out.storeBytes(of: pgno.bigEndian, toByteOffset: 0, as: UInt32.self)
        out.storeBytes(of: UInt16(1).bigEndian, toByteOffset: 4, as: UInt16.self)
        out.storeBytes(of: UInt32(compressed).bigEndian, toByteOffset: 6, as: UInt32.self)
        return 10 + Int(compressed)
    }

    /// Writes a frame `encodeFrame` made of `page` (the same rules as `writePage`).
    public func writeFrame(pgno: UInt32, page: UnsafeRawBufferPointer, frame: UnsafeRawBufferPointer) throws {
        try check(pgno: pgno, page: page)
        guard frame.count > 10, let f = frame.baseAddress, LTXBytes.get32(f) == pgno, LTXBytes.get16(f + 4) == 1,
            Int(LTXBytes.get32(f + 6)) == frame.count - 10
        else {
            failed = true
            throw LTXError(.invalidInput, file: name, "the frame given for page \(pgno) is not one")
        }
        try append(pgno: pgno, page: page, frame: frame)
    }

    /// The rules every page must follow.
    private func check(pgno: UInt32, page: UnsafeRawBufferPointer) throws {
        guard !finished else { throw LTXError(.invalidInput, file: name, "page \(pgno) written after finish()") }
        guard !failed else { throw LTXError(.invalidInput, file: name, "the encoder is unusable after an earlier error") }
        guard page.count == Int(header.pageSize), page.baseAddress != nil else {
            throw LTXError(.invalidInput, file: name, "page \(pgno) is \(page.count) bytes; the page size is \(header.pageSize)")
        }
        guard pgno != 0 else { throw LTXError(.invalidInput, file: name, "page number 0 is invalid") }
        guard pgno <= header.commit else {
            throw LTXError(.invalidInput, file: name, "page \(pgno) is beyond the commit size of \(header.commit) pages")
        }
        let lock = header.lockPgno
        guard pgno != lock else { throw LTXError(.invalidInput, file: name, "page \(pgno) is the lock page and cannot be stored") }
        guard pgno > previousPgno else {
            throw LTXError(.invalidInput, file: name, "page \(pgno) after page \(previousPgno): pages must be in ascending order")
        }
        if header.isSnapshot {
            let expected = previousPgno + 1 == lock ? previousPgno + 2 : previousPgno + 1
            guard pgno == expected else {
                throw LTXError(.invalidInput, file: name, "a snapshot must hold every page: page \(pgno) after page \(previousPgno)")
            }
        }
    }

    private func append(pgno: UInt32, page: UnsafeRawBufferPointer, frame: UnsafeRawBufferPointer) throws {
        let frameStart = written
        do {
            try sink.write(frame)
        } catch {
            failed = true
            throw error
        }
        crc.update(UnsafeRawBufferPointer(rebasing: frame[0..<10]))
        crc.update(page)
        written += Int64(frame.count)
        LTXBytes.appendUvarint(&index, UInt64(pgno))
        LTXBytes.appendUvarint(&index, UInt64(frameStart))
        LTXBytes.appendUvarint(&index, UInt64(frame.count))
        previousPgno = pgno
        pageCount += 1
    }

    /// Writes the end marker, page index and trailer. Returns the file's size
    /// and its checksum (as stored, bit 63 set). The sink stays open.
    @discardableResult
    public func finish() throws -> (size: Int64, checksum: UInt64) {
        guard !finished else { throw LTXError(.invalidInput, file: name, "finish() called twice") }
        guard !failed else { throw LTXError(.invalidInput, file: name, "the encoder is unusable after an earlier error") }
        if header.isSnapshot, header.commit > 0 {
            let last = header.commit == header.lockPgno ? header.commit - 1 : header.commit
            guard previousPgno == last else {
                throw LTXError(.invalidInput, file: name, "the snapshot ends at page \(previousPgno) but the database has \(header.commit) pages")
            }
        }
        finished = true
        var tail = [UInt8](repeating: 0, count: 6)  // end marker
        index.append(0)
        tail.append(contentsOf: index)
        var length = [UInt8](repeating: 0, count: 8)
        LTXBytes.put64(&length, 0, UInt64(index.count))
        tail.append(contentsOf: length)
        tail.append(contentsOf: [UInt8](repeating: 0, count: 8))  // post-apply checksum
        index = []
        crc.update(tail)
        let checksum = crc.value | (1 << 63)
        var stored = [UInt8](repeating: 0, count: 8)
        LTXBytes.put64(&stored, 0, checksum)
        tail.append(contentsOf: stored)
        try emit(tail, hash: false)
        sink.finished()
        return (written, checksum)
    }

    private func emit(_ bytes: [UInt8], hash: Bool) throws {
        do {
            try bytes.withUnsafeBytes { try sink.write($0) }
        } catch {
            failed = true
            throw error
        }
        if hash { crc.update(bytes) }
        written += Int64(bytes.count)
    }
}
