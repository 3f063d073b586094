import Foundation
import Platform

/// The configured cleanup paths: regular files under a rule's directory,
/// matching its pattern, older than its `max-age`, oldest first. Never
/// through a symbolic link, never onto another filesystem, never a protected
/// file, never the ballast or guardian's state, never what guardian keeps
/// (`KeptPaths`: quarantine, replicas, state directory, restored copies).
enum CleanupScanner {
    struct Candidate {
        var dir: SafeDirectory
        var name: String
        var stat: stat
        var path: String { dir.child(name) }
    }

    /// Candidates of every rule whose directory is on `device`.
    static func candidates(
        rules: [CleanupRule], device: UInt64, now: Date, protected: ProtectedFiles, excluded: Set<String>, kept: KeptPaths = KeptPaths()
    ) -> (candidates: [Candidate], problems: [DiskEvent]) {
        var out: [Candidate] = []
        let keptIDs = kept.directoryIDs()
        let resolvedKept = kept.resolved()
        var problems: [DiskEvent] = []
        for rule in rules {
            let root: SafeDirectory
            do {
                root = try SafeDirectory(rule.path)
            } catch {
                problems.append(DiskEvent(.diskConfigProblem, level: .warning, ["key": "disk.cleanup", "path": rule.path, "error": "\(error)"]))
                continue
            }
            var st = stat()
            guard fstat(root.fd, &st) == 0, UInt64(st.st_dev) == device else { continue }
            if let dir = kept.conflict(cleanupPath: rule.path, recursive: false) {
                problems.append(DiskEvent(.diskPathRefused, level: .error, ["path": rule.path, "reason": "inside \(dir), which guardian keeps (quarantine, replicas, state); never cleaned up"]))
                continue
            }
            walk(
                root, rule: rule, device: device, now: now, protected: protected, excluded: excluded, kept: resolvedKept, keptIDs: keptIDs,
                depth: 0, into: &out)
        }
        return (out.sorted { $0.stat.modificationDate < $1.stat.modificationDate }, problems)
    }

    private static func walk(
        _ dir: SafeDirectory, rule: CleanupRule, device: UInt64, now: Date, protected: ProtectedFiles,
        excluded: Set<String>, kept: KeptPaths, keptIDs: Set<FileID>, depth: Int, into out: inout [Candidate]
    ) {
        guard depth < 64, let names = try? dir.entries() else { return }
        for name in names {
            guard let st = dir.lstat(name) else { continue }
            if st.isDirectory {
                guard rule.recursive, UInt64(st.st_dev) == device else { continue }
                guard let child = try? SafeDirectory(in: dir, name: name) else { continue }
                var cst = stat()
                guard fstat(child.fd, &cst) == 0, cst.fileID == st.fileID, !keptIDs.contains(cst.fileID), !kept.contains(child.path) else { continue }
                walk(
                    child, rule: rule, device: device, now: now, protected: protected, excluded: excluded, kept: kept, keptIDs: keptIDs,
                    depth: depth + 1, into: &out)
                continue
            }
            guard st.isRegular else { continue }
            if let pattern = rule.pattern, fnmatch(pattern, name, 0) != 0 { continue }
            guard now.timeIntervalSince(st.modificationDate) > rule.maxAge.seconds else { continue }
            let path = dir.child(name)
            if excluded.contains(path) || protected.contains(path: path, stat: st) || kept.contains(path) { continue }
            out.append(Candidate(dir: dir, name: name, stat: st))
        }
    }

    /// Deletes one candidate if it is still the same file; returns its event.
    static func delete(_ c: Candidate, protected: ProtectedFiles, reason: String) -> DiskEvent? {
        guard let st = c.dir.lstat(c.name), st.isRegular, st.fileID == c.stat.fileID else { return nil }
        if protected.contains(path: c.path, stat: st) {
            return DiskEvent(.diskPathRefused, level: .error, ["path": c.path, "reason": "a database file; guardian never touches it"])
        }
        do {
            try c.dir.unlink(c.name)
        } catch {
            return DiskEvent(.diskPathRefused, level: .warning, ["path": c.path, "reason": "\(error)"])
        }
        let freed = st.st_nlink <= 1 ? st.allocatedBytes : 0
        return DiskEvent(.diskFileDeleted, ["path": c.path, "reason": reason, "bytes_freed": "\(freed)"])
    }
}

/// What cleanup rules never delete, whatever their path and pattern:
/// guardian's own evidence and copies — the state directory (state
/// database, staging, drill scratch), quarantine directories, file replicas
/// — and remediation's restored copies beside a database. Configurations
/// whose cleanup paths reach them are refused (`conflict`); the executor
/// skips them anyway (`contains`, `isKeptDirectory`).
public struct KeptPaths: Sendable, Equatable {
    /// Directories kept whole (with everything below them).
    public var directories: [String]
    /// Path prefixes of kept files (`/data/.app.db.guardian-restore-`).
    public var filePrefixes: [String]

    public init(directories: [String] = [], filePrefixes: [String] = []) {
        self.directories = directories
        self.filePrefixes = filePrefixes
    }

    /// Each path as written (normalized) and, when it exists, with its
    /// symbolic links resolved.
    static func forms(_ path: String) -> [String] {
        var out = [ProtectedFiles.normalize(path)]
        if let real = realpath(path, nil) {
            out.append(String(cString: real))
            free(real)
        }
        return out
    }

    static func isInside(_ path: String, _ dir: String) -> Bool {
        path == dir || path.hasPrefix(dir.hasSuffix("/") ? dir : dir + "/")
    }

    /// The kept directory a cleanup rule at `path` would reach: one it is
    /// in, or (recursive rules) one below it. nil when none.
    public func conflict(cleanupPath path: String, recursive: Bool) -> String? {
        let rule = Self.forms(path)
        for dir in directories {
            for d in Self.forms(dir) {
                for r in rule {
                    if Self.isInside(r, d) || (recursive && Self.isInside(d, r)) { return dir }
                }
            }
        }
        return nil
    }

    /// Every directory and prefix in each of its forms (as written and
    /// resolved), so that `contains` resolves only the path it is asked about.
    func resolved() -> KeptPaths {
        var dirs: [String] = []
        for d in directories { dirs += Self.forms(d) }
        var prefixes: [String] = []
        for p in filePrefixes {
            let dir = (p as NSString).deletingLastPathComponent, name = (p as NSString).lastPathComponent
            prefixes += Self.forms(dir).map { ($0 as NSString).appendingPathComponent(name) }
        }
        return KeptPaths(directories: Array(Set(dirs)), filePrefixes: Array(Set(prefixes)))
    }

    /// Whether a file cleanup found must be left alone (on a `resolved()` set).
    func contains(_ path: String) -> Bool {
        for f in Self.forms(path) {
            if directories.contains(where: { Self.isInside(f, $0) }) || filePrefixes.contains(where: { f.hasPrefix($0) }) { return true }
        }
        return false
    }

    /// The device and inode of every kept directory that exists (a walk
    /// never enters them, however it reaches them).
    func directoryIDs() -> Set<FileID> {
        var ids: Set<FileID> = []
        for dir in directories {
            var st = stat()
            if stat(dir, &st) == 0, st.isDirectory { ids.insert(st.fileID) }
        }
        return ids
    }
}
