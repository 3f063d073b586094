import Foundation
import Platform

/// The configured cleanup paths: regular files under a rule's directory,
/// matching its pattern, older than its `max-age`, oldest first. Never
/// through a symbolic link, never onto another filesystem, never a protected
/// file, never the ballast or guardian's state.
enum CleanupScanner {
    struct Candidate {
        var dir: SafeDirectory
        var name: String
        var stat: stat
        var path: String { dir.child(name) }
    }

    /// Candidates of every rule whose directory is on `device`.
    static func candidates(
        rules: [CleanupRule], device: UInt64, now: Date, protected: ProtectedFiles, excluded: Set<String>
    ) -> (candidates: [Candidate], problems: [DiskEvent]) {
        var out: [Candidate] = []
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
            walk(root, rule: rule, device: device, now: now, protected: protected, excluded: excluded, depth: 0, into: &out)
        }
        return (out.sorted { $0.stat.modificationDate < $1.stat.modificationDate }, problems)
    }

    private static func walk(
        _ dir: SafeDirectory, rule: CleanupRule, device: UInt64, now: Date, protected: ProtectedFiles,
        excluded: Set<String>, depth: Int, into out: inout [Candidate]
    ) {
        guard depth < 64, let names = try? dir.entries() else { return }
        for name in names {
            guard let st = dir.lstat(name) else { continue }
            if st.isDirectory {
                guard rule.recursive, UInt64(st.st_dev) == device else { continue }
                guard let child = try? SafeDirectory(in: dir, name: name) else { continue }
                var cst = stat()
                guard fstat(child.fd, &cst) == 0, cst.fileID == st.fileID else { continue }
                walk(child, rule: rule, device: device, now: now, protected: protected, excluded: excluded, depth: depth + 1, into: &out)
                continue
            }
            guard st.isRegular else { continue }
            if let pattern = rule.pattern, fnmatch(pattern, name, 0) != 0 { continue }
            guard now.timeIntervalSince(st.modificationDate) > rule.maxAge.seconds else { continue }
            let path = dir.child(name)
            if excluded.contains(path) || protected.contains(path: path, stat: st) { continue }
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
