import Foundation

// The LTX file format, version 3 (magic "LTX1"), as Litestream 0.5.17 writes
// and reads it (superfly/ltx v0.5.2). One file holds the pages one or more
// transactions changed; a chain of files starting with a full image ("snapshot",
// MinTXID 1) rebuilds the database. All fixed-width integers are big-endian.
//
//   header (100 bytes)
//      0  4  magic "LTX1"
//      4  4  flags: only 0x2 (NoChecksum) is valid; writers always set it
//      8  4  page size: 512...65536, a power of two
//     12  4  commit: database size in pages after applying this file
//     16  8  MinTXID (≥ 1)          24  8  MaxTXID (≥ MinTXID)
//     32  8  timestamp, ms since the Unix epoch
//     40  8  pre-apply database checksum (0 with NoChecksum and in snapshots)
//     48  8  WAL offset   56  8  WAL size   64  4  WAL salt-1   68  4  WAL salt-2
//     72  8  node id (0)  80 20  reserved, zero
//   page block: frames in strictly ascending page number
//      0  4  pgno (1-based)      4  2  frame flags
//      flags 0x0001 (current):   6  4  compressed size N, then N bytes of one
//                                      raw LZ4 *block* decompressing to one page
//      flags 0x0000 (legacy, Litestream 0.5.0–0.5.15): a standard LZ4 *frame*
//                                      (magic 04 22 4D 18, EndMark, xxHash32
//                                      content checksum), no size field; its end
//                                      is found from its own structure
//      A snapshot holds every page 1...commit except the lock page
//      (0x40000000 / page size + 1), which is never stored.
//   end marker: 6 zero bytes (pgno 0, flags 0)
//   page index: per frame, unsigned LEB128 varints pgno, frame offset (of its
//      pgno field, from the start of the file), frame length; a varint 0;
//      then an 8-byte length of that varint section (terminator included)
//   trailer (16 bytes): post-apply checksum (0 with NoChecksum), file checksum
//
// File checksum: CRC-64/GO-ISO (CRC64.swift) over, in file order, the header,
// each frame's header and size field followed by its *decompressed* page, the
// end marker, the whole index section with its length, and the post-apply
// checksum; stored with bit 63 set. The compressed bytes are not hashed but
// their length is (size field, index), so two encoders give the same checksum
// for the same pages only when their LZ4 blocks have the same lengths.
//
// LTXEncoder.swift writes files, LTXDecoder.swift reads and verifies them.

/// The 100-byte header of an LTX file.
public struct LTXHeader: Sendable, Equatable {
    public static let size = 100
    public static let magic: [UInt8] = Array("LTX1".utf8)
    /// The only valid flag: the file carries no database checksums.
    public static let flagNoChecksum: UInt32 = 2

    public var flags: UInt32 = 2
    public var pageSize: UInt32
    /// Database size in pages after this file is applied.
    public var commit: UInt32
    public var minTXID: UInt64
    public var maxTXID: UInt64
    /// Milliseconds since the Unix epoch.
    public var timestamp: Int64
    public var preApplyChecksum: UInt64 = 0
    public var walOffset: Int64 = 0
    public var walSize: Int64 = 0
    public var walSalt1: UInt32 = 0
    public var walSalt2: UInt32 = 0
    public var nodeID: UInt64 = 0

    public init(
        pageSize: UInt32, commit: UInt32, minTXID: UInt64, maxTXID: UInt64, timestamp: Int64,
        walOffset: Int64 = 0, walSize: Int64 = 0, walSalt1: UInt32 = 0, walSalt2: UInt32 = 0
    ) {
        self.pageSize = pageSize
        self.commit = commit
        self.minTXID = minTXID
        self.maxTXID = maxTXID
        self.timestamp = timestamp
        self.walOffset = walOffset
        self.walSize = walSize
        self.walSalt1 = walSalt1
        self.walSalt2 = walSalt2
    }

    /// A full image of the database (it starts at the first transaction).
    public var isSnapshot: Bool { minTXID == 1 }

    /// The page SQLite reserves for locks; never stored in LTX files.
    public var lockPgno: UInt32 { LTXHeader.lockPgno(pageSize: pageSize) }

    public static func lockPgno(pageSize: UInt32) -> UInt32 { 0x4000_0000 / max(pageSize, 1) + 1 }

    /// `timestamp` as a Date.
    public var date: Date { Date(timeIntervalSince1970: Double(timestamp) / 1000) }

    /// Milliseconds since the epoch of `date`, as LTX headers store it.
    public static func milliseconds(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1000).rounded(.down)) }

    public static func isValidPageSize(_ size: UInt32) -> Bool { size >= 512 && size <= 65536 && size & (size - 1) == 0 }

    /// What is wrong with this header by the rules Litestream's decoder
    /// applies (ltx.md §2.1), or nil when it is valid.
    public var problem: String? {
        if flags & ~LTXHeader.flagNoChecksum != 0 { return "invalid header flags 0x\(String(flags, radix: 16)) (only 0x2 is allowed)" }
        if !LTXHeader.isValidPageSize(pageSize) { return "invalid page size \(pageSize)" }
        if minTXID == 0 || maxTXID == 0 { return "TXIDs must not be zero (min \(minTXID), max \(maxTXID))" }
        if maxTXID == UInt64.max { return "MaxTXID \(LTXNaming.hex(maxTXID)) is out of range (no transaction can follow it)" }
        if minTXID > maxTXID { return "MinTXID \(LTXNaming.hex(minTXID)) is above MaxTXID \(LTXNaming.hex(maxTXID))" }
        if walOffset < 0 { return "negative WAL offset \(walOffset)" }
        if walSize < 0 { return "negative WAL size \(walSize)" }
        if (walSalt1 != 0 || walSalt2 != 0) && walOffset == 0 { return "WAL salts set without a WAL offset" }
        if walOffset == 0 && walSize != 0 { return "WAL size \(walSize) without a WAL offset" }
        if isSnapshot {
            if preApplyChecksum != 0 { return "snapshot with a pre-apply checksum" }
        } else if flags & LTXHeader.flagNoChecksum != 0 {
            if preApplyChecksum != 0 { return "pre-apply checksum set together with the NoChecksum flag" }
        } else if preApplyChecksum & (1 << 63) == 0 {
            return "invalid pre-apply checksum 0x\(String(preApplyChecksum, radix: 16))"
        }
        return nil
    }

    public func encode() -> [UInt8] {
        var b = [UInt8](repeating: 0, count: LTXHeader.size)
        b.replaceSubrange(0..<4, with: LTXHeader.magic)
        LTXBytes.put32(&b, 4, flags)
        LTXBytes.put32(&b, 8, pageSize)
        LTXBytes.put32(&b, 12, commit)
        LTXBytes.put64(&b, 16, minTXID)
        LTXBytes.put64(&b, 24, maxTXID)
        LTXBytes.put64(&b, 32, UInt64(bitPattern: timestamp))
        LTXBytes.put64(&b, 40, preApplyChecksum)
        LTXBytes.put64(&b, 48, UInt64(bitPattern: walOffset))
        LTXBytes.put64(&b, 56, UInt64(bitPattern: walSize))
        LTXBytes.put32(&b, 64, walSalt1)
        LTXBytes.put32(&b, 68, walSalt2)
        LTXBytes.put64(&b, 72, nodeID)
        return b
    }

    /// Parses and validates a header (the first 100 of `bytes`). `name` (the
    /// file) appears in errors.
    public static func decode(_ bytes: [UInt8], name: String = "LTX header") throws -> LTXHeader {
        try bytes.withUnsafeBytes { try decode($0, name: name) }
    }

    public static func decode(_ b: UnsafeRawBufferPointer, name: String = "LTX header") throws -> LTXHeader {
        guard b.count >= size else {
            throw LTXError(.truncated, file: name, "truncated header: \(b.count) of \(size) bytes")
        }
        guard b[0] == magic[0], b[1] == magic[1], b[2] == magic[2], b[3] == magic[3] else {
            throw LTXError(.invalidHeader, file: name, offset: 0, "not an LTX file (the magic is not \"LTX1\")")
        }
        var h = LTXHeader(
            pageSize: LTXBytes.get32(b, 8), commit: LTXBytes.get32(b, 12),
            minTXID: LTXBytes.get64(b, 16), maxTXID: LTXBytes.get64(b, 24),
            timestamp: Int64(bitPattern: LTXBytes.get64(b, 32)),
            walOffset: Int64(bitPattern: LTXBytes.get64(b, 48)), walSize: Int64(bitPattern: LTXBytes.get64(b, 56)),
            walSalt1: LTXBytes.get32(b, 64), walSalt2: LTXBytes.get32(b, 68))
        h.flags = LTXBytes.get32(b, 4)
        h.preApplyChecksum = LTXBytes.get64(b, 40)
        h.nodeID = LTXBytes.get64(b, 72)
        if let problem = h.problem { throw LTXError(.invalidHeader, file: name, offset: 0, problem) }
        return h
    }
}

/// A malformed, corrupt or truncated LTX file (or a misuse of the encoder).
/// The description names the file and what is wrong.
public struct LTXError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case invalidHeader
        /// A frame, the index or the trailer does not parse.
        case corrupt
        /// The contents do not hash to the checksum in the trailer.
        case checksumMismatch
        /// The file ends early.
        case truncated
        /// Bytes after the trailer.
        case trailingData
        /// The caller broke a rule of the format (encoder).
        case invalidInput
    }

    public let kind: Kind
    /// The file (or object name) concerned.
    public let file: String
    /// Byte offset in the file where the problem was found, when known.
    public let offset: Int64?
    public let message: String

    public init(_ kind: Kind, file: String, offset: Int64? = nil, _ message: String) {
        self.kind = kind
        self.file = file
        self.offset = offset
        self.message = message
    }

    public var description: String {
        if let offset { return "\(file): \(message) (at byte \(offset))" }
        return "\(file): \(message)"
    }
}

/// Big-endian integers and unsigned LEB128 varints.
enum LTXBytes {
    static func put32(_ b: inout [UInt8], _ o: Int, _ v: UInt32) {
        b[o] = UInt8(truncatingIfNeeded: v >> 24)
        b[o + 1] = UInt8(truncatingIfNeeded: v >> 16)
        b[o + 2] = UInt8(truncatingIfNeeded: v >> 8)
        b[o + 3] = UInt8(truncatingIfNeeded: v)
    }

    static func put64(_ b: inout [UInt8], _ o: Int, _ v: UInt64) {
        put32(&b, o, UInt32(truncatingIfNeeded: v >> 32))
        put32(&b, o + 4, UInt32(truncatingIfNeeded: v))
    }

    @inline(__always) static func get16(_ p: UnsafeRawPointer) -> UInt16 {
        UInt16(bigEndian: p.loadUnaligned(as: UInt16.self))
    }

    @inline(__always) static func get32(_ p: UnsafeRawPointer) -> UInt32 {
        UInt32(bigEndian: p.loadUnaligned(as: UInt32.self))
    }

    @inline(__always) static func get64(_ p: UnsafeRawPointer) -> UInt64 {
        UInt64(bigEndian: p.loadUnaligned(as: UInt64.self))
    }

    static func get32(_ b: UnsafeRawBufferPointer, _ o: Int) -> UInt32 {
        UInt32(b[o]) << 24 | UInt32(b[o + 1]) << 16 | UInt32(b[o + 2]) << 8 | UInt32(b[o + 3])
    }

    static func get64(_ b: UnsafeRawBufferPointer, _ o: Int) -> UInt64 {
        UInt64(get32(b, o)) << 32 | UInt64(get32(b, o + 4))
    }

    static func appendUvarint(_ out: inout [UInt8], _ value: UInt64) {
        var v = value
        while v >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }
}

// MARK: - Spellings used by the replicator's code

extension LTXError {
    /// A corrupt-file error from a file name and a description.
    public init(_ file: String, _ problem: String) {
        self.init(.corrupt, file: file, problem)
    }

    public var problem: String { message }
}

extension LTXHeader {
    /// Throws when the header breaks a rule of ltx.md §2.1 (`problem`).
    public func validate(name: String = "LTX header") throws {
        if let problem { throw LTXError(.invalidHeader, file: name, problem) }
    }
}

extension CRC64 {
    /// Go's `crc64.Update`: continues the checksum `crc` over `data`.
    public static func update(_ crc: UInt64, _ data: UnsafeRawBufferPointer) -> UInt64 {
        guard let base = data.baseAddress, data.count > 0 else { return crc }
        return ~CRC64Tables.shared.fold(~crc, base, data.count)
    }
}
