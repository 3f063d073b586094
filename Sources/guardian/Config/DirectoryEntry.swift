import Foundation
import Remediate
import Replication

/// A `dbs:` entry with `dir:` instead of `path:` (Litestream 0.5's directory
/// entry, same keys): every SQLite database in `dir` whose file name matches
/// `pattern` is replicated like a `path:` entry with the same keys, each to
/// the entry's replica path plus the database's path relative to `dir`
/// (`/backups` + `eu/acme.db` → `/backups/eu/acme.db`), as Litestream derives
/// it, so `litestream restore` finds each one.
struct DirectorySpec: Sendable, Equatable {
    var dir: String
    /// Glob on the file name (`*.db`), as Go's `filepath.Match`: `*`, `?`, `[...]`.
    var pattern: String
    var recursive = false
    /// Pick up databases created (or renamed into the directory) while guardian runs.
    var watch = false

    /// Reads `dir`, `pattern`, `recursive`, `watch` of a `dbs:` entry; nil
    /// for a `path:` entry (where `watch` and the others are refused).
    static func read(_ m: MappingReader, entry: ConfigNode) throws -> DirectorySpec? {
        let dirNode = m.optional("dir")
        if let pathNode = m.optional("path"), dirNode != nil {
            throw pathNode.error("path: and dir: exclude each other: give path: for one database or dir: + pattern: for a directory of databases")
        }
        guard let dirNode else {
            for key in ["pattern", "recursive", "watch"] {
                if let n = m.optional(key) { throw n.error("only applies to a directory entry (dir: + pattern:)") }
            }
            return nil
        }
        let dir = try dirNode.absolutePath()
        guard let patternNode = m.optional("pattern") else {
            throw entry.error("a directory entry (dir: \(dir)) needs pattern:, e.g. pattern: \"*.db\"")
        }
        let pattern = try patternNode.string()
        guard !pattern.isEmpty, !pattern.contains("/") else {
            throw patternNode.error("must be a glob on the file name, e.g. \"*.db\" (no /; recursive: true descends into subdirectories)")
        }
        guard DirectoryPattern.isValid(pattern) else { throw patternNode.error("\"\(pattern)\" is not a valid glob (an unclosed [ or a trailing \\)") }
        var spec = DirectorySpec(dir: dir, pattern: pattern)
        if let v = try m.optional("recursive", { try $0.bool() }) { spec.recursive = v }
        if let v = try m.optional("watch", { try $0.bool() }) { spec.watch = v }
        return spec
    }
}

/// Glob matching of file names (fnmatch(3), which `filepath.Match` follows
/// for these patterns).
enum DirectoryPattern {
    static func matches(_ pattern: String, name: String) -> Bool { fnmatch(pattern, name, 0) == 0 }

    static func isValid(_ pattern: String) -> Bool {
        var inClass = false
        var escaped = false
        for c in pattern {
            if escaped { escaped = false; continue }
            switch c {
            case "\\": escaped = true
            case "[": inClass = true
            case "]": inClass = false
            default: break
            }
        }
        return !inClass && !escaped
    }
}

extension GuardianConfig {
    /// A directory entry: its keys, and the entry's settings as a database
    /// (its `path` is `dir`, its replicas the base paths) from which each
    /// discovered database's configuration is derived (`database(at:)`).
    struct Directory: Sendable, Equatable {
        var spec: DirectorySpec
        var template: Database
        var dir: String { spec.dir }

        /// Databases drilled per scheduled run (a rotating sample: those
        /// whose last drill is oldest first).
        var drillSample: Int { template.drill?.sample ?? Self.defaultDrillSample }
        static let defaultDrillSample = 10

        /// `db` relative to `dir` (`eu/acme.db`), nil when it is not below it.
        func relativePath(_ db: String) -> String? {
            let prefix = dir.hasSuffix("/") ? dir : dir + "/"
            guard db.hasPrefix(prefix), db.count > prefix.count else { return nil }
            let rel = String(db.dropFirst(prefix.count))
            if !spec.recursive, rel.contains("/") { return nil }
            return rel
        }

        /// Whether `db` is a path this entry covers: below `dir` (directly
        /// unless recursive), its name matching `pattern`, not one of
        /// SQLite's companions or a hidden file (guardian's restored copies).
        func covers(_ db: String) -> Bool {
            guard let rel = relativePath(db) else { return false }
            let name = (rel as NSString).lastPathComponent
            return DirectoryEntries.isCandidateName(name) && DirectoryPattern.matches(spec.pattern, name: name)
                && !rel.split(separator: "/").contains(where: { $0 == "guardian-quarantine" })
        }

        /// The configuration of the database at `path` (below `dir`).
        func database(at path: String) -> Database {
            let rel = relativePath(path) ?? (path as NSString).lastPathComponent
            var db = template
            db.replication.path = path
            db.replication.replicas = template.replication.replicas.map { r in
                var r = r
                r.target = Self.target(r.target, appending: rel)
                return r
            }
            db.remediation = DirectoryTemplate.substitute(template.remediation, path: path, relative: rel)
            return db
        }

        /// The replica path plus `rel` (Litestream's `cloneReplicaConfigWithRelativePath`).
        static func target(_ t: ReplicaTarget, appending rel: String) -> ReplicaTarget {
            func join(_ base: String) -> String {
                if base.isEmpty { return rel }
                return base.hasSuffix("/") ? base + rel : base + "/" + rel
            }
            switch t {
            case .file(let p): return .file(path: join(p))
            case .s3(var s3):
                s3.path = join(s3.path)
                return .s3(s3)
            case .sftp(var sftp):
                sftp.path = join(sftp.path)
                return .sftp(sftp)
            }
        }
    }

    /// The configuration of `path`: its `path:` entry, or the one derived
    /// from the directory entry that covers it (whether or not the file exists).
    func database(at path: String) -> Database? {
        if let db = dbs.first(where: { $0.path == path }) { return db }
        return directories.first { $0.covers(path) }?.database(at: path)
    }
}

/// Placeholders in a directory entry's remediation settings (`unit:`,
/// `stop-command:`, `start-command:`, `status-command:`):
/// `{name}` — the database's path relative to `dir` without its extension
/// (`eu/acme.db` → `eu/acme`; in `unit:` escaped as `systemd-escape` does →
/// `eu-acme`); `{path}` — the database's absolute path.
enum DirectoryTemplate {
    static let placeholders = ["{name}", "{path}"]

    static func substitute(_ r: RemediationConfig, path: String, relative: String) -> RemediationConfig {
        var r = r
        let name = (relative as NSString).deletingPathExtension
        func fill(_ s: String, escape: Bool) -> String {
            s.replacingOccurrences(of: "{name}", with: escape ? systemdEscape(name) : name)
                .replacingOccurrences(of: "{path}", with: escape ? systemdEscape(path) : path)
        }
        r.unit = r.unit.map { fill($0, escape: true) }
        r.stopCommand = r.stopCommand.map { fill($0, escape: false) }
        r.startCommand = r.startCommand.map { fill($0, escape: false) }
        r.statusCommand = r.statusCommand.map { fill($0, escape: false) }
        return r
    }

    /// Unknown `{...}` placeholders in a template, for a configuration error.
    static func unknownPlaceholders(_ s: String) -> [String] {
        var out: [String] = []
        var rest = Substring(s)
        while let open = rest.firstIndex(of: "{"), let close = rest[open...].firstIndex(of: "}") {
            let p = String(rest[open...close])
            if !placeholders.contains(p) { out.append(p) }
            rest = rest[rest.index(after: close)...]
        }
        return out
    }

    /// `systemd-escape`: `/` → `-`, a leading `.` and bytes outside
    /// `[A-Za-z0-9:_.]` → `\xNN`.
    static func systemdEscape(_ s: String) -> String {
        var out = ""
        let trimmed = s.hasPrefix("/") ? String(s.drop(while: { $0 == "/" })) : s
        for (i, b) in trimmed.utf8.enumerated() {
            let c = Character(UnicodeScalar(b))
            if b == UInt8(ascii: "/") {
                out += "-"
            } else if (c.isASCII && (c.isLetter || c.isNumber)) || c == ":" || c == "_" || (c == "." && i > 0) {
                out.append(c)
            } else {
                out += String(format: "\\x%02x", b)
            }
        }
        return out
    }
}

/// Which directory entries' names are databases at all.
enum DirectoryEntries {
    /// Not SQLite's companions, not hidden (guardian's restored copies are
    /// `.NAME.guardian-restore-*`).
    static func isCandidateName(_ name: String) -> Bool {
        !name.hasPrefix(".") && !name.hasSuffix("-wal") && !name.hasSuffix("-shm") && !name.hasSuffix("-journal")
    }
}
