import Foundation
import Platform

// The SQLite write-ahead log, as guardian reads it (sqlite/src/wal.c):
//
//   WAL header, 32 bytes, big-endian fields:
//     0 magic 0x377f0682 (checksums little-endian) or 0x377f0683 (big-endian)
//     4 format version 3007000      8 page size       12 checkpoint sequence
//    16 salt-1   20 salt-2          24 checksum-1     28 checksum-2 (over bytes 0..23)
//   then frames, each a 24-byte header plus one page:
//     0 page number   4 db size in pages after commit (non-zero only on a commit frame)
//     8 salt-1       12 salt-2  (must equal the header's)
//    16 checksum-1   20 checksum-2: cumulative over the header's first 8 bytes and the
//                                    page, seeded with the previous frame's checksum
//
// The checksum is SQLite's own: for each pair of 32-bit words x0,x1 (in the byte
// order the magic names), s0 += x0 + s1; s1 += x1 + s0. A frame with the wrong
// salts or checksum ends the log: what follows it is left over from an earlier
// generation of the WAL. A writer restarts the log (after a complete checkpoint)
// by writing a new header with salt-1 incremented and a fresh salt-2.

public struct WALHeader: Sendable, Equatable {
    public static let size = 32
    public var bigEndianChecksum: Bool
    public var pageSize: UInt32
    public var checkpointSequence: UInt32
    public var salt1: UInt32
    public var salt2: UInt32
    public var checksum: (UInt32, UInt32)

    public static func == (a: WALHeader, b: WALHeader) -> Bool {
        a.bigEndianChecksum == b.bigEndianChecksum && a.pageSize == b.pageSize && a.checkpointSequence == b.checkpointSequence
            && a.salt1 == b.salt1 && a.salt2 == b.salt2 && a.checksum == b.checksum
    }

    /// Parses and validates a header; nil when the bytes are not a valid WAL header.
    public static func parse(_ b: UnsafeRawBufferPointer) -> WALHeader? {
        guard b.count >= size else { return nil }
        let magic = be32(b, 0)
        guard magic == 0x377f_0682 || magic == 0x377f_0683, be32(b, 4) == 3_007_000 else { return nil }
        let bigEndian = magic == 0x377f_0683
        var pageSize = be32(b, 8)
        if pageSize == 1 { pageSize = 65536 }
        guard pageSize >= 512, pageSize <= 65536, pageSize & (pageSize - 1) == 0 else { return nil }
        let sum = WALChecksum.compute(UnsafeRawBufferPointer(rebasing: b[0..<24]), bigEndian: bigEndian, seed: (0, 0))
        guard sum.0 == be32(b, 24), sum.1 == be32(b, 28) else { return nil }
        return WALHeader(
            bigEndianChecksum: bigEndian, pageSize: pageSize, checkpointSequence: be32(b, 12),
            salt1: be32(b, 16), salt2: be32(b, 20), checksum: sum)
    }
}

@inline(__always) func be32(_ b: UnsafeRawBufferPointer, _ o: Int) -> UInt32 {
    UInt32(b[o]) << 24 | UInt32(b[o + 1]) << 16 | UInt32(b[o + 2]) << 8 | UInt32(b[o + 3])
}

public enum WALChecksum {
    /// SQLite's WAL checksum over `data` (length a multiple of 8).
    public static func compute(_ data: UnsafeRawBufferPointer, bigEndian: Bool, seed: (UInt32, UInt32)) -> (UInt32, UInt32) {
        var s0 = seed.0
        var s1 = seed.1
        let words = data.count / 4
        guard let base = data.baseAddress else { return seed }
        let p = base.assumingMemoryBound(to: UInt32.self)
        var i = 0
        // Native order on x86_64 is little-endian.
        if bigEndian {
            while i < words {
                s0 = s0 &+ UInt32(bigEndian: p[i]) &+ s1
                s1 = s1 &+ UInt32(bigEndian: p[i + 1]) &+ s0
                i += 2
            }
        } else {
            while i < words {
                s0 = s0 &+ UInt32(littleEndian: p[i]) &+ s1
                s1 = s1 &+ UInt32(littleEndian: p[i + 1]) &+ s0
                i += 2
            }
        }
        return (s0, s1)
    }
}

/// One committed transaction found in the WAL.
public struct WALTransaction: Sendable {
    /// Offset of its first frame and the bytes its frames take.
    public var offset: Int64
    public var size: Int64
    /// Database size in pages after the commit.
    public var commit: UInt32
    /// The newest frame of each page the transaction wrote (page number → frame offset).
    public var pages: [UInt32: Int64]
}

/// Where reading the WAL continues: the next frame offset within a generation
/// (identified by its salts) and the cumulative checksum up to there.
public struct WALCursor: Sendable, Equatable {
    public var salt1: UInt32
    public var salt2: UInt32
    public var pageSize: UInt32
    public var bigEndian: Bool
    public var offset: Int64
    public var checksum0: UInt32
    public var checksum1: UInt32

    public init(header: WALHeader) {
        salt1 = header.salt1
        salt2 = header.salt2
        pageSize = header.pageSize
        bigEndian = header.bigEndianChecksum
        offset = Int64(WALHeader.size)
        checksum0 = header.checksum.0
        checksum1 = header.checksum.1
    }

    public var frameSize: Int64 { 24 + Int64(pageSize) }
}

/// Reads a WAL file through a file descriptor with large preads. Not
/// thread-safe; owned by one replicator. All calls block.
public final class WALFile {
    public let path: String
    private var fd: Int32 = -1
    private var inode: ino_t = 0

    public init(path: String) { self.path = path }

    deinit { if fd >= 0 { close(fd) } }

    /// Opens the file when it is not open yet. Returns false when there is
    /// no WAL file. Whether the open file is still the one at the path is
    /// `currentInode`'s question (asked at the start of every pass), not
    /// every read's.
    private func ensureOpen() -> Bool {
        fd >= 0 || reopen()
    }

    /// (Re)opens the file when it appeared, was replaced or is not open yet.
    private func reopen() -> Bool {
        var st = stat()
        guard stat(path, &st) == 0 else {
            if fd >= 0 { close(fd); fd = -1 }
            return false
        }
        if fd >= 0, st.st_ino == inode { return true }
        if fd >= 0 { close(fd) }
        fd = open(path, O_RDONLY | O_CLOEXEC)
        inode = st.st_ino
        return fd >= 0
    }

    /// The inode of the WAL file now at the path (0 when there is none).
    public func currentInode() -> UInt64 {
        guard reopen() else { return 0 }
        return UInt64(inode)
    }

    public func size() -> Int64 {
        guard ensureOpen() else { return 0 }
        var st = stat()
        return fstat(fd, &st) == 0 ? Int64(st.st_size) : 0
    }

    public func header() -> WALHeader? {
        guard ensureOpen() else { return nil }
        var buf = [UInt8](repeating: 0, count: WALHeader.size)
        let n = pread(fd, &buf, buf.count, 0)
        guard n == WALHeader.size else { return nil }
        return buf.withUnsafeBytes { WALHeader.parse($0) }
    }

    /// Reads exactly `count` bytes at `offset` into `buffer` (which is resized).
    public func read(at offset: Int64, count: Int, into buffer: inout [UInt8]) throws {
        guard ensureOpen() else { throw SystemError("open", path: path, code: ENOENT) }
        if buffer.count < count { buffer = [UInt8](repeating: 0, count: count) }
        var done = 0
        try buffer.withUnsafeMutableBytes { raw in
            guard let base = raw.baseAddress else { return }
            while done < count {
                let n = pread(fd, base + done, count - done, off_t(offset) + off_t(done))
                if n < 0 { if errno == EINTR { continue }; throw SystemError("pread", path: path) }
                if n == 0 { throw SystemError("pread (short read)", path: path, code: EIO) }
                done += n
            }
        }
    }

    /// Whether a commit frame of the cursor's generation follows the cursor,
    /// judged by frame headers alone (no checksums: the pass that reads the
    /// frames checks them). False when the frames there belong to an older
    /// generation or end before a commit frame: a transaction still being
    /// written makes another file event when its commit frame is written.
    /// True, to be safe, past `scanLimit` frames.
    public func commitFrameFollows(_ cursor: WALCursor, scanLimit: Int = 64) -> Bool {
        guard ensureOpen() else { return false }
        var h = (UInt64(0), UInt64(0), UInt64(0))
        var offset = cursor.offset
        for _ in 0..<scanLimit {
            let n = withUnsafeMutableBytes(of: &h) { pread(fd, $0.baseAddress, 24, off_t(offset)) }
            guard n == 24 else { return false }
            let (commit, salt1, salt2) = withUnsafeBytes(of: &h) { (be32($0, 4), be32($0, 8), be32($0, 12)) }
            guard salt1 == cursor.salt1, salt2 == cursor.salt2 else { return false }
            if commit != 0 { return true }
            offset += cursor.frameSize
        }
        return true
    }

    /// A frame no longer holds what guardian indexed: the WAL restarted and
    /// the application's writes overwrote it.
    public struct StaleFrame: Error, CustomStringConvertible {
        public let path: String
        public let offset: Int64
        public let pgno: UInt32
        public var description: String {
            "\(path): the WAL frame at offset \(offset) no longer holds page \(pgno) of the indexed WAL generation (the WAL restarted)"
        }
    }

    private var frameBuffer: [UInt8] = []
    private var scanBuffer: [UInt8] = []

    /// Reads one page (the data of the frame at `frameOffset`), after checking
    /// that the frame header still names `pgno` and the generation's salts.
    public func page(frameOffset: Int64, pgno: UInt32, salt1: UInt32, salt2: UInt32, pageSize: UInt32, into buffer: inout [UInt8]) throws {
        let size = Int(pageSize)
        try read(at: frameOffset, count: 24 + size, into: &frameBuffer)
        func u32(_ at: Int) -> UInt32 {
            UInt32(frameBuffer[at]) << 24 | UInt32(frameBuffer[at + 1]) << 16 | UInt32(frameBuffer[at + 2]) << 8 | UInt32(frameBuffer[at + 3])
        }
        guard u32(0) == pgno, u32(8) == salt1, u32(12) == salt2 else { throw StaleFrame(path: path, offset: frameOffset, pgno: pgno) }
        if buffer.count < size { buffer = [UInt8](repeating: 0, count: size) }
        buffer.withUnsafeMutableBytes { dst in
            frameBuffer.withUnsafeBytes { src in
                if let d = dst.baseAddress, let s = src.baseAddress { d.copyMemory(from: s + 24, byteCount: size) }
            }
        }
    }

    /// Scans forward from `cursor` and returns every committed transaction
    /// whose frames are all valid, plus the cursor after the last commit.
    /// Frames after the last commit (a transaction still being written) are
    /// left for the next call. `limit` caps how many bytes are scanned.
    public func readTransactions(from cursor: WALCursor, limit: Int64 = .max) throws -> (transactions: [WALTransaction], cursor: WALCursor) {
        let fileSize = size()
        var committed: [WALTransaction] = []
        var result = cursor
        var running = cursor
        var pending: [UInt32: Int64] = [:]
        var txStart = cursor.offset
        let frameSize = Int(cursor.frameSize)
        // Reads start small and grow while the frames stay valid: after a WAL
        // restart the file keeps its old length, and everything past the new
        // generation's last frame is stale. Reading 4 MiB of it on every commit
        // cost a quarter of a core at 100 tx/s; a commit is usually a few frames.
        // The first read is two frames (a one-row commit is one or two):
        // sixteen copied 64 KiB per commit, a tenth of the per-commit profile.
        let maxChunkFrames = max(1, (4 << 20) / frameSize)
        var chunkFrames = min(2, maxChunkFrames)
        // (The scan buffer is kept between calls: a zeroed allocation per
        // pass showed in the per-commit profile.)
        var chunk = scanBuffer
        scanBuffer = []
        defer { if chunk.count <= 1 << 20 { scanBuffer = chunk } }
        var offset = cursor.offset
        while offset + Int64(frameSize) <= fileSize, offset - cursor.offset < limit {
            let frames = Int(min(Int64(chunkFrames), (fileSize - offset) / Int64(frameSize)))
            chunkFrames = min(chunkFrames * 8, maxChunkFrames)
            try read(at: offset, count: frames * frameSize, into: &chunk)
            var stop = false
            chunk.withUnsafeBytes { raw in
                for f in 0..<frames {
                    let base = f * frameSize
                    let h = UnsafeRawBufferPointer(rebasing: raw[base..<(base + 24)])
                    let pgno = be32(h, 0)
                    let commit = be32(h, 4)
                    guard be32(h, 8) == running.salt1, be32(h, 12) == running.salt2, pgno != 0 else { stop = true; return }
                    var sum = WALChecksum.compute(UnsafeRawBufferPointer(rebasing: raw[base..<(base + 8)]), bigEndian: running.bigEndian, seed: (running.checksum0, running.checksum1))
                    sum = WALChecksum.compute(UnsafeRawBufferPointer(rebasing: raw[(base + 24)..<(base + frameSize)]), bigEndian: running.bigEndian, seed: sum)
                    guard sum.0 == be32(h, 16), sum.1 == be32(h, 20) else { stop = true; return }
                    let frameOffset = offset + Int64(base)
                    pending[pgno] = frameOffset
                    running.checksum0 = sum.0
                    running.checksum1 = sum.1
                    running.offset = frameOffset + Int64(frameSize)
                    if commit != 0 {
                        committed.append(WALTransaction(offset: txStart, size: running.offset - txStart, commit: commit, pages: pending))
                        pending.removeAll(keepingCapacity: true)
                        txStart = running.offset
                        result = running
                    }
                }
            }
            if stop { break }
            offset += Int64(frames * frameSize)
        }
        return (committed, result)
    }
}
