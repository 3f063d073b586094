import DiskWatch
import Foundation
import Platform
import Remediate
import Replication

/// `guardian status` with many databases: a summary by state, the
/// unhealthy databases first, a one-line form, and `--db PATTERN`.
enum StatusOverview {
    /// Every database with its verdict, the unhealthy first (stable otherwise):
    /// a database needs a look when it is not open, a replica is not Syncing,
    /// remediation's health is not healthy, an incident is open, or its last drill failed.
    static func ranked(_ doc: StatusDocument) -> [(db: DatabaseStatus, unhealthy: Bool)] {
        let sick = Set(doc.health.filter { !["healthy", "off"].contains($0.state) || !$0.openIncidents.isEmpty }.map(\.path))
        let failedDrills = Set(doc.drills.filter { $0.last?.result == "FAILED" }.map(\.path))
        let all = doc.databases.map { db -> (db: DatabaseStatus, unhealthy: Bool) in
            let bad = db.state != "open" || db.replicas.contains { $0.state != "Syncing" } || sick.contains(db.path) || failedDrills.contains(db.path)
            return (db, bad)
        }
        return all.filter(\.unhealthy) + all.filter { !$0.unhealthy }
    }

    /// `databases 1000: 998 open, 2 missing  replicas 1996 Syncing, 4 Failing  health 1 critical`
    /// (with more than one database), then one line per directory entry and its skipped files.
    static func lines(_ doc: StatusDocument, _ p: StatusTable.Painter) -> String {
        var out = ""
        if doc.databases.count > 1 {
            func counts(_ values: [String]) -> String {
                var n: [String: Int] = [:]
                for v in values { n[v, default: 0] += 1 }
                return n.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
            }
            let unhealthy = ranked(doc).filter(\.unhealthy).count
            var line = "databases \(doc.databases.count): \(counts(doc.databases.map(\.state)))"
            let replicas = doc.databases.flatMap(\.replicas)
            if !replicas.isEmpty { line += "  replicas \(counts(replicas.map(\.state)))" }
            if !doc.health.isEmpty { line += "  health \(counts(doc.health.map(\.state)))" }
            line += "  " + (unhealthy == 0 ? p.green("all healthy") : p.red("\(unhealthy) need a look (listed first)"))
            out += line + "\n"
        }
        for d in doc.directories {
            var flags = [d.pattern]
            if d.recursive { flags.append("recursive") }
            if d.watch { flags.append("watch") }
            out += "directory \(d.dir) (\(flags.joined(separator: ", "))): \(d.databases) databases"
            if !d.skipped.isEmpty { out += ", " + p.yellow("\(d.skipped.count) files skipped") }
            out += "\n"
            for s in d.skipped.prefix(10) { out += "  " + p.yellow("skipped \(s.path): \(s.reason)") + "\n" }
            if d.skipped.count > 10 { out += "  ... \(d.skipped.count - 10) more skipped (guardian status --json lists them)\n" }
        }
        return out
    }

    /// A healthy database in one line: `ok  /data/t/a.db  txid 0000000000000004  last commit 10:30:04  2 replicas Syncing`.
    static func oneLine(_ db: DatabaseStatus, _ p: StatusTable.Painter, _ clock: StatusTable.Clock) -> String {
        var line = "  " + p.green("ok") + "  \(db.path)"
        if let txid = db.txid { line += "  txid \(txid)" }
        if let last = db.lastCommit { line += "  last commit \(clock.time(last))" }
        line += "  \(db.replicas.count) replica\(db.replicas.count == 1 ? "" : "s") Syncing"
        return line
    }

    /// Each database's health, drills and filesystem by path (one pass, so
    /// that thousands of databases do not cost a scan each).
    struct Index {
        var health: [String: HealthStatus] = [:]
        var drills: [String: DrillStatus] = [:]
        var mount: [String: MountStatus] = [:]

        init(_ doc: StatusDocument) {
            for h in doc.health { health[h.path] = health[h.path] ?? h }
            for d in doc.drills { drills[d.path] = drills[d.path] ?? d }
            for m in doc.disk { for p in m.paths where mount[p] == nil { mount[p] = m } }
        }
    }

    /// A database that needs a look, in one line: `[missing]  /data/t/a.db  no such file`,
    /// or its replicas' states and its health.
    static func troubleLine(_ db: DatabaseStatus, _ index: Index, _ p: StatusTable.Painter) -> String {
        var line = "  " + (db.state == "open" ? p.yellow("[open]") : p.red("[\(db.state)]")) + "  \(db.path)"
        if let e = db.error { line += "  " + p.red(e) }
        let bad = db.replicas.filter { $0.state != "Syncing" }
        if !bad.isEmpty { line += "  " + p.red(bad.map { "\($0.name) \($0.state)" }.joined(separator: ", ")) }
        if let h = index.health[db.path], !["healthy", "off"].contains(h.state) { line += "  health " + p.red(h.state) }
        if let d = index.drills[db.path], d.last?.result == "FAILED" { line += "  " + p.red("last drill FAILED") }
        return line
    }

    /// Keeps the databases (and their health and drills) whose path, or
    /// file name, matches the glob `pattern`.
    static func filter(_ doc: StatusDocument, pattern: String) -> StatusDocument {
        func keep(_ path: String) -> Bool {
            fnmatch(pattern, path, 0) == 0 || fnmatch(pattern, (path as NSString).lastPathComponent, 0) == 0
        }
        var d = doc
        d.databases = doc.databases.filter { keep($0.path) }
        d.health = doc.health.filter { keep($0.path) }
        d.drills = doc.drills.filter { keep($0.path) }
        return d
    }
}
