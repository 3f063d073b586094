import DiskWatch
import Foundation
import Platform
import Remediate
import Replication

/// The readable form of the status document (`guardian status`). Per
/// database: its position, one line per replica in the replica-table format
/// operators know from Litestream's docs,
/// `[Syncing] /data/app.db -> s3  Destination: s3://backup/app-db | Lag: 150ms | Last: 10:30:01`,
/// then WAL and checkpoints, integrity, the disk holding the database, and
/// open incidents. Colour (green / yellow / red by state) only when asked.
enum StatusTable {
    struct Options {
        var color = false
        /// Times are shown as local wall-clock time relative to this instant.
        var now = Date()
        var timeZone = TimeZone.current
        /// Adds `at HH:MM:SS` to the header (`--watch`).
        var showClock = false
        /// Above this many databases, the healthy ones get one line each
        /// (the unhealthy ones always get their full block), and past it
        /// only a count.
        var detailLimit = 20
    }

    static func render(_ doc: StatusDocument, color: Bool) -> String {
        render(doc, Options(color: color))
    }

    static func render(_ doc: StatusDocument, _ o: Options) -> String {
        let p = Painter(on: o.color)
        let clock = Clock(now: o.now, timeZone: o.timeZone)
        var out = "guardian \(doc.version)  pid \(doc.pid)  \(doc.state)  up \(Units.formatDuration(.milliseconds(Int64(doc.uptimeSeconds * 1000))))"
        if o.showClock { out += "  at \(clock.time(o.now))" }
        out += "\nconfig \(doc.config)\n"
        out += StatusOverview.lines(doc, p)
        // The unhealthy first (configuration order within each group).
        let ranked = StatusOverview.ranked(doc)
        let healthy = ranked.filter { !$0.unhealthy }.map(\.db)
        let index = StatusOverview.Index(doc)
        let unhealthy = ranked.filter(\.unhealthy).map(\.db)
        for db in unhealthy.prefix(o.detailLimit) { out += "\n" + databaseBlock(db, doc, index, p, clock) }
        if unhealthy.count > o.detailLimit {
            // Thousands of databases in trouble (a lost mount): one line each past the first ones.
            out += "\n"
            for db in unhealthy.dropFirst(o.detailLimit) { out += StatusOverview.troubleLine(db, index, p) + "\n" }
        }
        if ranked.count <= o.detailLimit {
            for db in healthy { out += "\n" + databaseBlock(db, doc, index, p, clock) }
        } else if !healthy.isEmpty {
            out += "\n"
            for db in healthy.prefix(o.detailLimit) { out += StatusOverview.oneLine(db, p, clock) + "\n" }
            if healthy.count > o.detailLimit {
                out += "... \(healthy.count - o.detailLimit) more healthy databases (guardian status --db PATTERN shows them; --json has all)\n"
            }
        }
        if doc.databases.isEmpty { out += doc.directories.isEmpty ? "\nno databases configured\n" : "\nno databases found in the directory entries yet\n" }
        if !doc.disk.isEmpty {
            out += "\ndisk\n"
            for m in doc.disk { out += "  " + p.level(m.summary, m.level) + "\n" }
        }
        return out
    }

    private static func databaseBlock(_ db: DatabaseStatus, _ doc: StatusDocument, _ index: StatusOverview.Index, _ p: Painter, _ clock: Clock) -> String {
        var head = p.bold(db.path) + "  "
        switch db.state {
        case "open": head += p.green("[open]")
        case "opening", "paused": head += p.yellow("[\(db.state)]")
        default: head += p.red("[\(db.state)]")
        }
        if let txid = db.txid { head += "  txid \(txid)" }
        if let last = db.lastCommit { head += "  last commit \(clock.time(last))" }
        if let size = db.dbSize { head += "  size \(Units.formatBytes(size))" }
        var out = head + "\n"
        if let e = db.error { out += "  " + p.red(e) + "\n" }

        for r in db.replicas { out += replicaLines(r, db, p, clock) }
        if db.replicas.isEmpty { out += "  no replicas configured\n" }

        let health = index.health[db.path]
        if let line = walLine(db, health, p, clock) { out += "  " + line + "\n" }
        if let h = health {
            out += "  " + integrityLine(h, p, clock) + "\n"
        }
        if let m = index.mount[db.path] {
            var line = "disk \(m.mountPoint)  used \(String(format: "%.1f", m.usedPercent)) %"
            if let inodes = m.inodesPercent { line += "  inodes \(String(format: "%.1f", inodes)) %" }
            line += "  " + (m.forecastSecondsToFull.map { "full in \(Units.formatDuration(.seconds($0)))" } ?? "not growing")
            out += "  " + line + "  " + p.level("[\(m.level.rawValue)]", m.level) + "\n"
        }
        for i in health?.openIncidents ?? [] {
            out += "  " + p.red("incident \(i.id)  \(i.phase)  since \(clock.time(i.detectedAt))  (\(i.cause))") + "\n"
        }
        if let d = index.drills[db.path] {
            for (line, failed) in DrillText.statusLines(d, clock) { out += "  " + (failed ? p.red(line) : line) + "\n" }
        }
        return out
    }

    /// `[Syncing] db -> type  Destination: ... | Lag: 150ms | Last: 10:30:01`,
    /// then the replica's name, position and counters (and its error).
    private static func replicaLines(_ r: ReplicaStatus, _ db: DatabaseStatus, _ p: Painter, _ clock: Clock) -> String {
        let tag: String
        switch r.state {
        case "Syncing": tag = p.green("[Syncing]")
        case "Lagging": tag = p.yellow("[Lagging]")
        case "Failing": tag = p.red("[Failing]")
        default: tag = "[\(r.state)]"
        }
        var out = "  \(tag) \(db.path) -> \(r.type)  Destination: \(r.destination) | Lag: \(r.lagMs)ms | Last: \(r.lastSync.map(clock.time) ?? "never")\n"
        var detail = "      replica \(r.name)  position \(r.position ?? "-")  \(r.requests) requests  \(Units.formatBytes(r.bytes)) shipped"
        if let errors = r.errors, errors > 0 { detail += "  \(errors) errors" }
        out += detail + "\n"
        if let e = r.error {
            out += "      " + p.red("error (\(r.consecutiveFailures) in a row): \(e)") + "\n"
        }
        return out
    }

    /// WAL size, guardian's checkpoints, and remediation's verdict on them.
    private static func walLine(_ db: DatabaseStatus, _ h: HealthStatus?, _ p: Painter, _ clock: Clock) -> String? {
        guard let wal = db.walSize ?? h?.checkpoint?.walSize else { return nil }
        var line = "WAL \(Units.formatBytes(wal))"
        if let c = db.checkpointResults {
            line += "  checkpoints ok \(c.ok) busy \(c.busy)"
            if c.failed > 0 { line += " " + p.red("failed \(c.failed)") }
        }
        if let last = db.checkpoint {
            line += "  last \(last.mode) \(last.checkpointedFrames)/\(last.logFrames) frames"
            if !last.at.isEmpty { line += " at \(clock.time(last.at))" }
        }
        if let c = h?.checkpoint {
            if let since = c.secondsSinceComplete { line += "  complete \(Units.formatDuration(.seconds(since))) ago" }
            if c.starved { line += "  " + p.yellow("starved") }
            let tag = "[\(c.level)]"
            switch c.level {
            case "ok": line += "  " + p.green(tag)
            case "warning": line += "  " + p.yellow(tag)
            default: line += "  " + p.red(tag)
            }
            for reason in c.reasons { line += "\n      " + (c.level == "critical" ? p.red(reason) : p.yellow(reason)) }
        }
        return line
    }

    private static func integrityLine(_ h: HealthStatus, _ p: Painter, _ clock: Clock) -> String {
        let i = h.integrity
        var line = "integrity "
        switch i.state {
        case "ok": line += p.green(i.state)
        case "unchecked": line += i.state
        case "suspect", "inconclusive": line += p.yellow(i.state)
        default: line += p.red(i.state)
        }
        if let at = i.lastCheckAt {
            line += "  checked \(clock.time(at))"
            if let ms = i.lastCheckMs { line += " in \(ms)ms" }
        }
        if i.perTable { line += "  (table by table)" }
        if i.files != "ok" { line += "  " + p.red("files: \(i.files)") }
        if let d = i.detail { line += "  \(d)" }
        let state: String
        switch h.state {
        case "healthy", "off": state = p.green(h.state)
        case "warning", "suspect": state = p.yellow(h.state)
        default: state = p.red(h.state)
        }
        return line + "  health \(state) (\(h.mode))"
    }

    /// ANSI SGR colours, or plain text.
    struct Painter {
        let on: Bool
        func paint(_ s: String, _ code: String) -> String { on ? "\u{1B}[\(code)m\(s)\u{1B}[0m" : s }
        func green(_ s: String) -> String { paint(s, "32") }
        func yellow(_ s: String) -> String { paint(s, "33") }
        func red(_ s: String) -> String { paint(s, "31") }
        func bold(_ s: String) -> String { paint(s, "1") }
        func level(_ s: String, _ level: DiskLevel) -> String {
            switch level {
            case .normal: green(s)
            case .warn: yellow(s)
            case .critical, .emergency: red(s)
            }
        }
    }

    /// RFC 3339 timestamps as local wall-clock time: `10:30:01` today,
    /// `2026-11-24 10:30:01` otherwise (unparseable text is shown as is).
    /// guardian's one local-time formatter (the drill history uses `stamp`).
    struct Clock {
        let now: Date
        let timeZone: TimeZone

        /// The host's time zone, now.
        static var local: Clock { Clock(now: Date(), timeZone: .current) }

        func time(_ rfc3339: String) -> String {
            guard let d = Timestamps.parse(rfc3339) else { return rfc3339 }
            return time(d)
        }

        func time(_ d: Date) -> String {
            let hms = stamp(d, seconds: true)
            return calendar.isDate(d, inSameDayAs: now) ? String(hms.dropFirst(11)) : hms
        }

        /// Always with the date: `2026-11-25 03:00`, or `2026-11-25 03:00:07`
        /// with `seconds` (history entries; unparseable text is shown as is).
        func stamp(_ rfc3339: String, seconds: Bool = false) -> String {
            guard let d = Timestamps.parse(rfc3339) else { return rfc3339 }
            return stamp(d, seconds: seconds)
        }

        func stamp(_ d: Date, seconds: Bool = false) -> String {
            let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: d)
            let base = String(format: "%04d-%02d-%02d %02d:%02d", c.year ?? 0, c.month ?? 0, c.day ?? 0, c.hour ?? 0, c.minute ?? 0)
            return seconds ? base + String(format: ":%02d", c.second ?? 0) : base
        }

        private var calendar: Calendar {
            var calendar = Calendar(identifier: .gregorian)
            calendar.timeZone = timeZone
            return calendar
        }
    }
}
