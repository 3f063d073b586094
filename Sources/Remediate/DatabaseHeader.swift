import Foundation
import Platform

/// Sanity checks of a database file's first 100 bytes and of its WAL file,
/// without SQLite: they still work when SQLite refuses the file.
///
/// Database header (all integers big-endian; sqlite.org/fileformat.html §1.3):
///
///     0   16  "SQLite format 3\0"
///     16   2  page size (power of two 512...32768, or 1 for 65536)
///     18   1  file format write version (1 legacy, 2 WAL)
///     19   1  file format read version
///     20   1  reserved bytes per page
///     21   3  payload fractions, must be 64, 32, 32
///     24   4  file change counter
///     28   4  database size in pages ("in-header size")
///     44   4  schema format number (1...4)
///     56   4  text encoding (1 UTF-8, 2 UTF-16le, 3 UTF-16be)
///     92   4  version-valid-for: the change counter when the size was stored
///
/// The in-header size is valid only when it is non-zero and the change
/// counter equals version-valid-for; a file shorter than that size has lost
/// pages. WAL header (32 bytes): magic 0x377f0682/0x377f0683, format
/// 3007000, page size, checkpoint sequence, salt-1, salt-2, checksum; then
/// frames of 24 + page-size bytes.
public struct DatabaseHeader: Sendable, Equatable {
    public static let magic: [UInt8] = Array("SQLite format 3".utf8) + [0]

    public var pageSize: Int
    public var writeVersion: UInt8
    public var readVersion: UInt8
    public var changeCounter: UInt32
    public var pageCount: UInt32
    public var versionValidFor: UInt32
    public var schemaFormat: UInt32
    public var textEncoding: UInt32

    /// The in-header page count, when SQLite would trust it.
    public var trustedPageCount: UInt32? {
        pageCount != 0 && changeCounter == versionValidFor ? pageCount : nil
    }

    /// Parses the first 100 bytes; returns the problem when they are not a sane header.
    public static func parse(_ b: [UInt8]) -> Result<DatabaseHeader, HeaderProblem> {
        guard b.count >= 100 else { return .failure(.tooShort(b.count)) }
        guard Array(b[0..<16]) == magic else { return .failure(.badMagic) }
        func u16(_ o: Int) -> Int { Int(b[o]) << 8 | Int(b[o + 1]) }
        func u32(_ o: Int) -> UInt32 { UInt32(b[o]) << 24 | UInt32(b[o + 1]) << 16 | UInt32(b[o + 2]) << 8 | UInt32(b[o + 3]) }
        let raw = u16(16)
        let pageSize = raw == 1 ? 65536 : raw
        guard pageSize >= 512, pageSize <= 65536, pageSize & (pageSize - 1) == 0 else { return .failure(.badPageSize(raw)) }
        guard (1...2).contains(b[18]), (1...2).contains(b[19]) else { return .failure(.badField("file format version", Int(b[18]) << 8 | Int(b[19]))) }
        guard b[21] == 64, b[22] == 32, b[23] == 32 else { return .failure(.badField("payload fractions", Int(b[21]))) }
        guard Int(b[20]) < pageSize - 480 else { return .failure(.badField("reserved bytes", Int(b[20]))) }
        let header = DatabaseHeader(
            pageSize: pageSize, writeVersion: b[18], readVersion: b[19], changeCounter: u32(24), pageCount: u32(28),
            versionValidFor: u32(92), schemaFormat: u32(44), textEncoding: u32(56))
        // An empty schema has format 0 and encoding 0; otherwise they are bounded.
        guard header.schemaFormat <= 4 else { return .failure(.badField("schema format", Int(header.schemaFormat))) }
        guard header.textEncoding <= 3 else { return .failure(.badField("text encoding", Int(header.textEncoding))) }
        return .success(header)
    }
}

/// What is wrong with a database or WAL file, seen from outside SQLite.
public enum HeaderProblem: Error, Sendable, Equatable, CustomStringConvertible {
    case tooShort(Int)
    case badMagic
    case badPageSize(Int)
    case badField(String, Int)
    case sizeNotPageMultiple(fileSize: Int64, pageSize: Int)
    case truncated(fileSize: Int64, expected: Int64)
    case walBadHeader
    case walPartialFrame(walSize: Int64, frameSize: Int)
    case walShrank(from: Int64, to: Int64)

    public var description: String {
        switch self {
        case .tooShort(let n): "the file is \(n) bytes, shorter than a database header"
        case .badMagic: "the header does not start with \"SQLite format 3\" (header overwritten, or not a database)"
        case .badPageSize(let v): "the header's page size (\(v)) is not a power of two within 512...65536"
        case .badField(let name, let v): "the header's \(name) (\(v)) is out of range"
        case .sizeNotPageMultiple(let size, let page): "the file size \(size) is not a multiple of the page size \(page)"
        case .truncated(let size, let expected): "the file is \(size) bytes but its header says \(expected): pages are missing"
        case .walBadHeader: "the WAL file's header is not a WAL header"
        case .walPartialFrame(let size, let frame): "the WAL file size \(size) is not a whole number of \(frame)-byte frames (WAL truncated)"
        case .walShrank(let from, let to): "the WAL file shrank from \(from) to \(to) bytes without a checkpoint restart (WAL truncated)"
        }
    }

    /// The kind of problem, without its numbers (to compare two probes).
    public var kind: String {
        switch self {
        case .tooShort: "too-short"
        case .badMagic: "bad-magic"
        case .badPageSize: "bad-page-size"
        case .badField(let name, _): "bad-field-\(name)"
        case .sizeNotPageMultiple: "size-not-page-multiple"
        case .truncated: "truncated"
        case .walBadHeader: "wal-bad-header"
        case .walPartialFrame: "wal-partial-frame"
        case .walShrank: "wal-shrank"
        }
    }

    /// The header itself is unusable (SQLite will answer SQLITE_NOTADB).
    public var isHeaderDestroyed: Bool {
        switch self {
        case .badMagic, .tooShort, .badPageSize, .badField: true
        default: false
        }
    }

    public var concernsWAL: Bool {
        switch self {
        case .walBadHeader, .walPartialFrame, .walShrank: true
        default: false
        }
    }
}

/// The first 32 bytes of a WAL file.
public struct WALHeaderInfo: Sendable, Equatable {
    public var pageSize: Int
    public var checkpointSequence: UInt32
    public var salt1: UInt32
    public var salt2: UInt32

    public static func parse(_ b: [UInt8]) -> WALHeaderInfo? {
        guard b.count >= 32 else { return nil }
        func u32(_ o: Int) -> UInt32 { UInt32(b[o]) << 24 | UInt32(b[o + 1]) << 16 | UInt32(b[o + 2]) << 8 | UInt32(b[o + 3]) }
        let magic = u32(0)
        guard magic == 0x377f_0682 || magic == 0x377f_0683, u32(4) == 3_007_000 else { return nil }
        let raw = Int(u32(8))
        let pageSize = raw == 1 ? 65536 : raw
        guard pageSize >= 512, pageSize <= 65536, pageSize & (pageSize - 1) == 0 else { return nil }
        return WALHeaderInfo(pageSize: pageSize, checkpointSequence: u32(12), salt1: u32(16), salt2: u32(20))
    }
}

/// One look at a database's files from outside SQLite.
public struct FileProbe: Sendable, Equatable {
    public var dbExists: Bool
    public var dbSize: Int64
    public var header: DatabaseHeader?
    public var walSize: Int64
    public var wal: WALHeaderInfo?
    public var problems: [HeaderProblem]

    /// Reads the header and sizes (blocking). `previous` lets a WAL that
    /// shrank without a restart be noticed.
    public static func read(path: String, previous: FileProbe? = nil) -> FileProbe {
        var probe = FileProbe(dbExists: false, dbSize: 0, header: nil, walSize: 0, wal: nil, problems: [])
        var st = stat()
        guard stat(path, &st) == 0 else { return probe }
        probe.dbExists = true
        probe.dbSize = Int64(st.st_size)
        if probe.dbSize > 0 {
            // (Never open and close the database file itself: that would drop
            // the locks of guardian's own SQLite connections. See DatabaseFiles.)
            let bytes = DatabaseFiles.shared.prefix(path, count: 100)
            switch DatabaseHeader.parse(bytes) {
            case .success(let h):
                probe.header = h
                if probe.dbSize % Int64(h.pageSize) != 0 {
                    probe.problems.append(.sizeNotPageMultiple(fileSize: probe.dbSize, pageSize: h.pageSize))
                } else if let pages = h.trustedPageCount, Int64(pages) * Int64(h.pageSize) > probe.dbSize,
                    !WALScan.holdsPages(walPath: path + "-wal", from: UInt32(probe.dbSize / Int64(h.pageSize)) + 1, through: pages)
                {
                    // (A checkpoint copies page 1 first and grows the file as it
                    // goes: one stopped short, e.g. by a full disk, leaves a file
                    // shorter than its header while the WAL still holds the rest.
                    // SQLite reads those pages from the WAL; only pages neither
                    // the file nor the WAL has are missing.)
                    probe.problems.append(.truncated(fileSize: probe.dbSize, expected: Int64(pages) * Int64(h.pageSize)))
                }
            case .failure(let p):
                probe.problems.append(p)
            }
        }
        let walPath = path + "-wal"
        var ws = stat()
        if stat(walPath, &ws) == 0 {
            probe.walSize = Int64(ws.st_size)
            if probe.walSize >= 32 {
                probe.wal = WALHeaderInfo.parse(readPrefix(path: walPath, count: 32))
                if let wal = probe.wal {
                    let frame = 24 + wal.pageSize
                    if (probe.walSize - 32) % Int64(frame) != 0 {
                        probe.problems.append(.walPartialFrame(walSize: probe.walSize, frameSize: frame))
                    } else if let prev = previous, let pw = prev.wal, pw.salt1 == wal.salt1, pw.salt2 == wal.salt2,
                        probe.walSize < prev.walSize
                    {
                        probe.problems.append(.walShrank(from: prev.walSize, to: probe.walSize))
                    }
                } else if !readPrefix(path: walPath, count: 32).allSatisfy({ $0 == 0 }) {
                    probe.problems.append(.walBadHeader)
                }
            } else if probe.walSize > 0 {
                probe.problems.append(.walPartialFrame(walSize: probe.walSize, frameSize: 0))
            }
        }
        return probe
    }

    /// For the WAL only (SQLite takes no record locks on it).
    static func readPrefix(path: String, count: Int) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: count)
        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, 0) }
        return n > 0 ? Array(buffer[0..<n]) : []
    }
}

/// Reads a WAL's frame headers (24 bytes each) to tell damage from a normal
/// WAL. After a restart SQLite writes frames sequentially from the start, so
/// a healthy WAL is a run of frames carrying the header's salts, possibly
/// followed by stale frames of an older generation. A frame that does not
/// carry the salts *followed later by frames that do* means bytes in the
/// middle were lost or overwritten (a truncated WAL that the app kept
/// appending to leaves a hole of zeros exactly like that).
public enum WALScan {
    /// Whether the WAL's current generation (the frames carrying its
    /// header's salts, from the start) has a frame for every page in
    /// `first...last`. Reads frame headers only. Blocking.
    public static func holdsPages(walPath: String, from first: UInt32, through last: UInt32) -> Bool {
        guard first <= last else { return true }
        var missing: Set<UInt32> = [first]
        let walked = walk(walPath: walPath) { header, frames in
            // Fewer frames than missing pages cannot hold them all.
            guard frames >= Int64(last - first) + 1 else { return false }
            missing = Set(first...last)
            return true
        } frame: { _, pgno, current in
            guard current else { return false }
            missing.remove(pgno)
            return !missing.isEmpty
        }
        return walked == .valid && missing.isEmpty
    }

    /// A description of the damage, or nil when the WAL looks sound. Blocking.
    public static func damage(walPath: String) -> String? {
        var firstBad: Int64?
        var found: String?
        var frameSize: Int64 = 0
        var tail: Int64 = 0
        let walked = walk(walPath: walPath) { header, _ in
            frameSize = Int64(24 + header.pageSize)
            return true
        } frame: { i, _, current in
            if !current, firstBad == nil { firstBad = i + 1 }
            if current, let bad = firstBad {
                found = "WAL frames from \(bad) on do not belong to the WAL, yet frame \(i + 1) does: \(Units.formatBytes((i + 1 - bad) * frameSize)) in the middle of the WAL were lost or overwritten"
                return false
            }
            return true
        } size: { tail = ($0 - 32) % max(1, frameSize) }
        switch walked {
        case .absent: return nil
        case .badHeader: return "the WAL header is not valid"
        case .valid:
            if let found { return found }
            return tail != 0 ? "the WAL ends with a partial frame (\(tail) bytes)" : nil
        }
    }

    enum Walk { case absent, badHeader, valid }

    /// Reads the WAL's header, then each whole frame's header in order:
    /// `frame(index, pgno, carriesTheHeaderSalts)` until it returns false.
    /// `start(header, wholeFrames)` may refuse the walk (returns false).
    private static func walk(
        walPath: String, start: (WALHeaderInfo, Int64) -> Bool, frame: (Int64, UInt32, Bool) -> Bool, size: (Int64) -> Void = { _ in }
    ) -> Walk {
        let fd = open(walPath, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return .absent }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_size >= 32 else { return .absent }
        var head = [UInt8](repeating: 0, count: 32)
        guard head.withUnsafeMutableBytes({ pread(fd, $0.baseAddress, 32, 0) }) == 32, let h = WALHeaderInfo.parse(head) else {
            return .badHeader
        }
        let frameSize = Int64(24 + h.pageSize)
        let frames = (Int64(st.st_size) - 32) / frameSize
        size(Int64(st.st_size))
        guard start(h, frames) else { return .valid }
        var bytes = [UInt8](repeating: 0, count: 24)
        func u32(_ o: Int) -> UInt32 { UInt32(bytes[o]) << 24 | UInt32(bytes[o + 1]) << 16 | UInt32(bytes[o + 2]) << 8 | UInt32(bytes[o + 3]) }
        for i in 0..<frames {
            guard bytes.withUnsafeMutableBytes({ pread(fd, $0.baseAddress, 24, off_t(32 + i * frameSize)) }) == 24 else { break }
            guard frame(i, u32(0), u32(8) == h.salt1 && u32(12) == h.salt2) else { break }
        }
        return .valid
    }
}
