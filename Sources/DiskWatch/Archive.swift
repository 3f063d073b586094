import Foundation
import Platform

/// A rotated copy of a log: `name.N[.gz]` or `name-YYYYMMDD[HH[MMSS]][.gz]`
/// (the rule's `start`, `extension`, `dateformat` and compression
/// extension change these; see `ArchiveNaming`).
struct Archive {
    enum Kind: Equatable {
        case numbered(Int, compressed: Bool)
        case dated(String, compressed: Bool)

        var isCompressed: Bool {
            switch self {
            case .numbered(_, let c), .dated(_, let c): c
            }
        }
    }

    var name: String
    var kind: Kind
    var stat: stat
    /// With a `dateformat`, the time its date part stands for (logrotate
    /// sorts dated archives by it); nil: sorted by name.
    var time: Int?

    /// The regular-file archives of a log in `dir` (symbolic links are not archives).
    static func list(_ naming: ArchiveNaming, in dir: SafeDirectory) -> [Archive] {
        guard let entries = try? dir.entries() else { return [] }
        var out: [Archive] = []
        for entry in entries {
            guard let kind = naming.parse(entry), let st = dir.lstat(entry), st.isRegular else { continue }
            var time: Int?
            if case .dated(let stamp, _) = kind { time = naming.format.time(of: stamp) }
            out.append(Archive(name: entry, kind: kind, stat: st, time: time))
        }
        return out
    }

    static func newestFirst(_ a: Archive, _ b: Archive) -> Bool {
        switch (a.kind, b.kind) {
        case (.numbered(let x, let cx), .numbered(let y, let cy)): return x != y ? x < y : (!cx && cy)
        case (.dated(let x, _), .dated(let y, _)):
            // logrotate sorts by the time a `dateformat` stands for (not by
            // name: `-%d%m%Y` names do not sort by date), ties by name.
            if let tx = a.time, let ty = b.time, tx != ty { return tx > ty }
            return x > y
        // Left over from before `dateext` (or after it): by age, not by
        // name class, so a stale `app.log.3.gz` never counts as newer than
        // yesterday's dated archive.
        case (.numbered, .dated), (.dated, .numbered):
            let (x, y) = (a.stat.modificationDate, b.stat.modificationDate)
            if x != y { return x > y }
            if case .numbered = a.kind { return true }
            return false
        }
    }

    var isDated: Bool {
        if case .dated = kind { return true }
        return false
    }
}

/// How a rule names the archives of one log, like logrotate 3.21's
/// prerotateSingleLog: `STEM.N EXT` (N from `start`) or `STEM DATE EXT`,
/// then the compression extension (`.gz`, or the rule's `compressext`);
/// STEM is the log's name without `extension` when it ends with it
/// (`app.log` with `extension: .log` → `app.1.log`, `app.1.log.gz`).
struct ArchiveNaming {
    let stem: String
    let ext: String
    let start: Int
    let format: ArchiveDateFormat
    /// With `dateext`, a name that reads both ways (`.%Y%m%d`) is dated.
    let datedFirst: Bool
    /// What compressed archives end with: the rule's extension (`compressed`
    /// names get it) and every one guardian recognises.
    let compressExt: String
    let exts: [String]

    init(
        stem: String, ext: String = "", start: Int = 1, format: ArchiveDateFormat = .standard(hourly: false), datedFirst: Bool = false,
        compressExt: String = ".gz", exts: [String] = CompressProgram.knownExtensions
    ) {
        self.stem = stem
        self.ext = ext
        self.start = start
        self.format = format
        self.datedFirst = datedFirst
        self.compressExt = compressExt
        self.exts = exts
    }

    init(log name: String, rule: LogRotationConfig) {
        var stem = name
        var ext = ""
        if let e = rule.fileExtension, !e.isEmpty, name.count > e.count, name.hasSuffix(e) {
            stem = String(name.dropLast(e.count))
            ext = e
        }
        let format = rule.dateFormat.flatMap { try? ArchiveDateFormat(custom: $0) } ?? .standard(hourly: rule.frequency == .hourly)
        let program = CompressProgram(rule)
        self.init(stem: stem, ext: ext, start: rule.start, format: format, datedFirst: rule.dateExt, compressExt: program.ext, exts: program.recognised)
    }

    func numbered(_ i: Int, compressed: Bool = false) -> String {
        "\(stem).\(i)\(ext)" + (compressed ? compressExt : "")
    }

    func dated(_ stamp: String) -> String { stem + stamp + ext }

    func parse(_ entry: String) -> Archive.Kind? {
        guard entry.hasPrefix(stem), entry.count > stem.count + 1 else { return nil }
        var rest = Substring(entry.dropFirst(stem.count))
        let compression = exts.first { !$0.isEmpty && rest.hasSuffix($0) }
        let compressed = compression != nil
        if let compression { rest = rest.dropLast(compression.count) }
        guard rest.hasSuffix(ext) else { return nil }
        rest = rest.dropLast(ext.count)
        if datedFirst, let d = format.match(rest) { return .dated(d, compressed: compressed) }
        if rest.first == ".", rest.count > 1 {
            let digits = rest.dropFirst()
            if digits.allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int(digits), n >= min(start, 1) {
                return .numbered(n, compressed: compressed)
            }
        }
        if let d = format.match(rest) { return .dated(d, compressed: compressed) }
        return nil
    }
}

/// The date part of dated archive names: logrotate's default `-%Y%m%d`
/// (`-%Y%m%d%H` when hourly; guardian also reads its own `-%Y%m%d%H%M%S`
/// of a rotation under disk pressure), or a `dateformat`, converted the
/// way logrotate 3.21 does: %Y %m %d %H %M %S %V (digits) and %s (10
/// digits) are expanded; any other `%x` is kept as the text `%x`.
struct ArchiveDateFormat: Equatable {
    enum Token: Equatable {
        /// %Y (4 digits), %s (10), %m %d %H %M %S %V (2).
        case field(Character)
        case literal(Character)

        var width: Int {
            switch self {
            case .field("Y"): 4
            case .field("s"): 10
            case .field: 2
            case .literal: 1
            }
        }
    }

    /// What strftime(3) gets.
    let strftime: String
    let tokens: [Token]
    /// A `dateformat` (archives sorted by the time they stand for) rather than the default.
    let isCustom: Bool

    private init(strftime: String, tokens: [Token], isCustom: Bool) {
        self.strftime = strftime
        self.tokens = tokens
        self.isCustom = isCustom
    }

    static func standard(hourly: Bool) -> ArchiveDateFormat {
        ArchiveDateFormat(strftime: hourly ? "-%Y%m%d%H" : "-%Y%m%d", tokens: [.literal("-")] + ["Y", "m", "d"].map(Token.field) + (hourly ? [.field("H")] : []), isCustom: false)
    }

    struct Invalid: Error, CustomStringConvertible {
        var description: String
    }

    /// The specifiers logrotate expands.
    static let specifiers: Set<Character> = ["Y", "m", "d", "H", "M", "S", "V", "s"]

    /// logrotate's conversion loop (leading spaces dropped; its limits: 127
    /// characters of glob pattern, 63 of formatted date).
    init(custom text: String) throws {
        let chars = Array(text.drop { $0 == " " })
        var dformat = ""
        var tokens: [Token] = []
        var patternLength = 0
        var i = 0
        while i < chars.count {
            if chars[i] == "%" {
                let next: Character? = i + 1 < chars.count ? chars[i + 1] : nil
                switch next {
                case .some(let c) where Self.specifiers.contains(c):
                    let token = Token.field(c)
                    tokens.append(token)
                    patternLength += token.width * 5
                    dformat += "%" + String(c)
                    i += 2
                default:
                    // Not expanded: the text "%" (the next character is read on its own).
                    tokens.append(.literal("%"))
                    patternLength += 1
                    dformat += "%%"
                    i += 1
                }
            } else {
                tokens.append(.literal(chars[i]))
                patternLength += chars[i].utf8.count
                dformat.append(chars[i])
                i += 1
            }
            if patternLength >= 127 { throw Invalid(description: "the date format \"\(text)\" is too long (logrotate's limit)") }
        }
        guard !tokens.isEmpty else { throw Invalid(description: "the date format is empty") }
        self.init(strftime: dformat, tokens: tokens, isCustom: true)
    }

    /// The date part for `date` (logrotate's `now`; `yesterday`: its
    /// `dateyesterday`, noon of the day before at the same minute and second).
    func stamp(_ date: Date, yesterday: Bool = false) -> String {
        var t = time_t(date.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        localtime_r(&t, &parts)
        if yesterday {
            parts.tm_hour = 12
            parts.tm_mday -= 1
            _ = mktime(&parts)
        }
        var buffer = [CChar](repeating: 0, count: 64)
        let n = Glibc.strftime(&buffer, buffer.count, strftime, &parts)
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The date part of a name (after the stem, before extension and
    /// `.gz`), or nil when it does not have this format's shape.
    func match(_ text: Substring) -> String? {
        if !isCustom {
            // The default, plus guardian's own -YYYYMMDDHHMMSS (pressure).
            guard text.first == "-" else { return nil }
            let digits = text.dropFirst()
            guard [8, 10, 14].contains(digits.count), digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
            return String(digits)
        }
        var at = text.startIndex
        for token in tokens {
            switch token {
            case .literal(let c):
                guard at < text.endIndex, text[at] == c else { return nil }
                at = text.index(after: at)
            case .field:
                for _ in 0..<token.width {
                    guard at < text.endIndex, text[at].isASCII, text[at].isNumber else { return nil }
                    at = text.index(after: at)
                }
            }
        }
        return at == text.endIndex ? String(text) : nil
    }

    /// What logrotate sorts dated archives by: strptime(3) of the date part
    /// with the format into a zeroed `tm`, then mktime(3) (nil for the
    /// default format, sorted by name). The names matched this format, so
    /// each field is its digits; like glibc's strptime, a value out of range
    /// ends the parse (the fields before it count), %V is read and ignored,
    /// and %s sets every field from the epoch seconds.
    func time(of stamp: String) -> Int? {
        guard isCustom else { return nil }
        var parts = tm()
        var rest = Substring(stamp)
        parse: for token in tokens {
            let text = rest.prefix(token.width)
            rest = rest.dropFirst(token.width)
            guard case .field(let c) = token else { continue }
            guard let v = Int(text) else { break }
            switch c {
            case "Y": parts.tm_year = Int32(v - 1900)
            case "m":
                guard (1...12).contains(v) else { break parse }
                parts.tm_mon = Int32(v - 1)
            case "d":
                guard (1...31).contains(v) else { break parse }
                parts.tm_mday = Int32(v)
            case "H":
                guard (0...23).contains(v) else { break parse }
                parts.tm_hour = Int32(v)
            case "M":
                guard (0...59).contains(v) else { break parse }
                parts.tm_min = Int32(v)
            case "S":
                guard (0...61).contains(v) else { break parse }
                parts.tm_sec = Int32(v)
            case "s":
                var t = time_t(v)
                localtime_r(&t, &parts)
            default:
                guard (0...53).contains(v) else { break parse }
            }
        }
        return Int(mktime(&parts))
    }
}

/// User and group names for `create MODE OWNER GROUP`.
enum Accounts {
    static func uid(_ name: String) -> uid_t? {
        if let n = uid_t(name) { return n }
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16 * 1024)
        guard getpwnam_r(name, &entry, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        return entry.pw_uid
    }

    /// The primary group of a user (`su USER` without a group).
    static func primaryGroup(_ uid: uid_t) -> gid_t? {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16 * 1024)
        guard getpwuid_r(uid, &entry, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        return entry.pw_gid
    }

    static func gid(_ name: String) -> gid_t? {
        if let n = gid_t(name) { return n }
        var entry = group()
        var result: UnsafeMutablePointer<group>?
        var buffer = [CChar](repeating: 0, count: 16 * 1024)
        guard getgrnam_r(name, &entry, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        return entry.gr_gid
    }
}

extension LogRotationConfig {
    /// Why `dateformat` cannot name archives, or nil: only logrotate's
    /// specifiers (%Y %m %d %H %M %S %V %s; any other is not expanded by
    /// logrotate, so it is refused here), no `/`, within logrotate's length
    /// limits.
    public static func dateFormatProblem(_ text: String) -> String? {
        let chars = Array(text)
        var i = 0
        while i < chars.count {
            if chars[i] == "%" {
                guard i + 1 < chars.count, ArchiveDateFormat.specifiers.contains(chars[i + 1]) else {
                    return "only %Y %m %d %H %M %S %V and %s may follow % (logrotate's dateformat specifiers)"
                }
                i += 2
            } else {
                if chars[i] == "/" { return "must not contain /" }
                i += 1
            }
        }
        do {
            let format = try ArchiveDateFormat(custom: text)
            if format.stamp(Date(timeIntervalSince1970: 4_102_444_799)).isEmpty { return "makes a date longer than 63 characters" }
        } catch {
            return "\(error)"
        }
        return nil
    }
}
