import Foundation
import Platform

/// A rotated copy of a log: `name.N[.gz]` or `name-YYYYMMDD[HH[MMSS]][.gz]`
/// (compressed with any extension of `CompressProgram.recognised`).
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

    static func parse(_ entry: String, base: String, exts: [String] = CompressProgram.knownExtensions) -> Kind? {
        guard entry.hasPrefix(base), entry.count > base.count + 1 else { return nil }
        var rest = Substring(entry.dropFirst(base.count))
        let ext = exts.first { !$0.isEmpty && rest.hasSuffix($0) }
        let compressed = ext != nil
        if let ext { rest = rest.dropLast(ext.count) }
        guard let first = rest.first else { return nil }
        let digits = rest.dropFirst()
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        if first == ".", let n = Int(digits), n > 0 { return .numbered(n, compressed: compressed) }
        if first == "-", [8, 10, 14].contains(digits.count) { return .dated(String(digits), compressed: compressed) }
        return nil
    }

    /// The regular-file archives of `base` in `dir` (symbolic links are not archives).
    static func list(of base: String, in dir: SafeDirectory, exts: [String] = CompressProgram.knownExtensions) -> [Archive] {
        guard let entries = try? dir.entries() else { return [] }
        var out: [Archive] = []
        for entry in entries {
            guard let kind = parse(entry, base: base, exts: exts), let st = dir.lstat(entry), st.isRegular else { continue }
            out.append(Archive(name: entry, kind: kind, stat: st))
        }
        return out
    }

    static func newestFirst(_ a: Archive, _ b: Archive) -> Bool {
        switch (a.kind, b.kind) {
        case (.numbered(let x, let cx), .numbered(let y, let cy)): return x != y ? x < y : (!cx && cy)
        case (.dated(let x, _), .dated(let y, _)): return x > y
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
