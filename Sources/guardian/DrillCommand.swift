import ArgumentParser
import Foundation
import Logging
import Platform
import Remediate
import Replication
import UnixSignals

/// `guardian drill` — one recovery drill now, of every replica of the
/// configured databases (or of one database / one replica): restore the
/// latest point into a scratch copy, `integrity_check`, the configured
/// queries, record the result in the history, alert on failure (and
/// resolve on recovery). Works with or without the daemon running.
/// Exit status: 0 every drill PASSED, 1 one FAILED, 2 bad configuration or
/// arguments, 130 interrupted.
struct DrillCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drill",
        abstract: "Run a recovery drill now: restore each replica's latest point into a scratch copy, verify it, record the result.",
        discussion: "Exits 0 when every drill PASSED, 1 when one FAILED. The result is added to the history (guardian drills)."
    )

    @Argument(help: "Database path (or its file name) from the configuration; default: every database with replicas.")
    var database: String?

    @Option(help: "Drill only this replica (its name: in the configuration).")
    var replica: String?

    @OptionGroup var options: ConfigOptions

    @Flag(help: "Print the results as JSON.")
    var json = false

    @Flag(name: .customLong("no-alerts"), help: "Send no alert (the result is still recorded).")
    var noAlerts = false

    func run() async throws {
        let config = try options.load()
        let plan = select(config)
        GuardianLogging.bootstrap(target: config.log.target, level: .error)
        let logger = Logger(label: "guardian")
        let store = StateStore(stateDir: config.stateDir)
        let alerter = noAlerts || config.alerts.isEmpty
            ? nil : Alerter(destinations: config.alerts, transport: HTTPAlertTransport(), store: store, logger: logger)
        let delivery = alerter.map { a in Task { await a.run() } }
        let recorder = DrillRecorder(store: store, alerter: alerter, logger: logger)
        let json = json

        // SIGINT/SIGTERM cancel the drill, which removes its copy; nothing is recorded.
        let work = Task { () -> [DrillResult] in
            var results: [DrillResult] = []
            for (db, drill, replicas) in plan {
                let runner = DrillRunner(
                    database: db, config: drill, scratchDir: drill.scratchDirectory(stateDir: config.stateDir), logger: logger)
                for r in replicas {
                    let result = await runner.run(replica: r, trigger: .manual)
                    if result.interrupted { return results + [result] }
                    let recorded = await recorder.record(result)
                    results.append(recorded)
                    if !json { print(DrillText.entry(recorded.summary, detailed: true), terminator: "") }
                }
            }
            return results
        }
        let signals = Task {
            for await _ in await UnixSignalsSequence(trapping: .sigint, .sigterm) {
                work.cancel()
                return
            }
        }
        let results = await work.value
        signals.cancel()

        if let alerter, let delivery {
            // Deliver what was triggered or resolved, for at most 30 s.
            await alerter.finishAndDrain(limit: .seconds(30))
            delivery.cancel()
        }
        if results.contains(where: \.interrupted) {
            CLI.fail("drill interrupted; its copy was removed and nothing was recorded", code: 130)
        }
        if json {
            FileHandle.standardOutput.write(try StatusDocument.encoder().encode(results.map(\.summary)))
            print()
        }
        if !results.allSatisfy(\.passed) { throw ExitCode(1) }
    }

    /// The databases and replicas to drill, or exit 2 naming what is wrong.
    func select(_ config: GuardianConfig) -> [(String, DrillConfig, [ReplicaConfig])] {
        var dbs = config.dbs.filter { !$0.replication.replicas.isEmpty }
        if let database {
            let absolute = URL(fileURLWithPath: database).standardizedFileURL.path
            guard let db = DrillText.find(database, in: config.dbs) ?? config.directories.first(where: { $0.covers(absolute) }).map({ $0.database(at: absolute) }) else {
                CLI.fail("no database \(database) in \(config.file) (its databases: \(config.dbs.map(\.path).joined(separator: ", ")))", code: 2)
            }
            guard !db.replication.replicas.isEmpty else { CLI.fail("\(db.path) has no replicas to drill", code: 2) }
            dbs = [db]
        }
        guard !dbs.isEmpty else { CLI.fail("no database in \(config.file) has replicas to drill", code: 2) }
        var plan: [(String, DrillConfig, [ReplicaConfig])] = []
        for db in dbs {
            let drill = db.drill ?? DrillConfig()
            var replicas = db.replication.replicas
            if let name = replica ?? drill.replica {
                replicas = replicas.filter { $0.name == name }
                if replicas.isEmpty, database != nil || dbs.count == 1 {
                    CLI.fail(
                        "\(db.path) has no replica named \(name) (its replicas: \(db.replication.replicas.map(\.name).joined(separator: ", ")))",
                        code: 2)
                }
            }
            if !replicas.isEmpty { plan.append((db.path, drill, replicas)) }
        }
        guard !plan.isEmpty else { CLI.fail("no database in \(config.file) has a replica named \(replica ?? "")", code: 2) }
        return plan
    }
}

/// `guardian drills` — the recovery drill history from guardian's state
/// database (read-only), newest first, like the seed's "Recovery Test History".
struct DrillsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drills",
        abstract: "Print the recovery drill history, newest first."
    )

    @Argument(help: "Only this database (its path, or its file name).")
    var database: String?

    @Option(help: "Show at most this many drills.")
    var limit: Int = 20

    @OptionGroup var location: IncidentsCommand.Location

    @Flag(help: "Print the history as JSON.")
    var json = false

    func run() async throws {
        guard limit > 0 else { CLI.fail("--limit must be at least 1", code: 2) }
        let store = location.store()
        var history: [DrillResult]
        do {
            if let database, database.contains("/") {
                history = try await store.drills(database: URL(fileURLWithPath: database).standardizedFileURL.path, limit: limit)
            } else {
                history = try await store.drills(limit: database == nil ? limit : 100_000)
                if let database { history = Array(history.filter { ($0.database as NSString).lastPathComponent == database }.prefix(limit)) }
            }
        } catch let e as StateStoreError {
            if json {
                print("[]")
            } else {
                print("no recovery drills recorded (\(e.message): \(e.path))")
            }
            return
        } catch {
            CLI.fail("cannot read \(store.path): \(error)", code: 1)
        }
        if json {
            FileHandle.standardOutput.write(try StatusDocument.encoder().encode(history.map(\.summary)))
            print()
            return
        }
        if history.isEmpty {
            print("no recovery drills recorded in \(store.path)")
            return
        }
        print("=== Recovery Test History ===")
        for r in history { print(DrillText.entry(r.summary, detailed: false), terminator: "") }
    }
}

/// The text forms of drills: history entries, `guardian drill` results and
/// the `last drill:` line of `guardian status`. Times are local, through the
/// status table's `Clock` (its time zone; `guardian status` its `now` too).
enum DrillText {
    /// ` [PASSED] 2026-11-25 03:00 — app.db <- s3 (s3://bucket/app)`
    /// `   Rows: 150,000 | Integrity: OK | Duration: 8.5s`
    static func entry(_ d: DrillSummary, detailed: Bool, clock: StatusTable.Clock = .local) -> String {
        var out = " [\(d.result)] \(clock.stamp(d.startedAt)) — \(name(d.database)) <- \(d.replica) (\(d.destination))\n"
        out += "   Rows: \(rows(d.rows)) | Integrity: \(integrity(d.integrity)) | Duration: \(String(format: "%.1fs", d.durationSeconds))\n"
        if let reason = d.reason { out += "   Reason: \(reason)\n" }
        if detailed {
            if let txid = d.txid {
                out += "   TXID: \(txid)"
                if let at = d.restoredTimestamp { out += " | Restored point: \(clock.stamp(at, seconds: true))" }
                if let bytes = d.bytes { out += " | Size: \(Units.formatBytes(bytes))" }
                out += "\n"
            }
            for q in d.queries {
                var line = "   \(q.passed ? "ok  " : "FAIL") \(q.sql) = \(q.value.map(String.init) ?? "-")"
                if let live = q.live { line += ", live \(live)" }
                line += " (\(q.expectation))"
                if let detail = q.detail, !q.passed { line += ": \(detail)" }
                out += line + "\n"
            }
        }
        return out
    }

    /// `last drill: PASSED 2026-11-25 03:00:00 app.db <- s3 | 150,000 rows | integrity ok | 8.5 s | next …`
    /// (times as the status table shows them: without the date today), plus
    /// a line per other replica whose newest drill failed. The flag marks failures.
    static func statusLines(_ s: DrillStatus, _ clock: StatusTable.Clock) -> [(String, Bool)] {
        var tail = ""
        if s.running {
            tail = " | running now"
        } else if let next = s.nextAt {
            tail = " | next \(clock.time(next))"
        }
        guard let last = s.last else { return [("last drill: none yet (\(s.schedule))\(tail)", false)] }
        var lines: [(String, Bool)] = [(line(last, prefix: "last drill: ", clock) + tail, last.result != "PASSED")]
        for r in s.replicas where r.replica != last.replica && r.result != "PASSED" {
            lines.append((line(r, prefix: "drill of \(r.replica): ", clock), true))
        }
        return lines
    }

    static func line(_ d: DrillSummary, prefix: String, _ clock: StatusTable.Clock) -> String {
        var text = "\(prefix)\(d.result) \(clock.time(d.startedAt)) \(name(d.database)) <- \(d.replica)"
        if d.result == "PASSED" {
            text += " | \(rows(d.rows)) rows | integrity \(d.integrity ?? "-") | \(String(format: "%.1f s", d.durationSeconds))"
        } else {
            text += " | \(d.reason ?? "failed")"
        }
        return text
    }

    static func name(_ path: String) -> String { (path as NSString).lastPathComponent }

    static func integrity(_ value: String?) -> String {
        guard let value else { return "-" }
        return value == "ok" ? "OK" : "FAILED"
    }

    /// `150,000`
    static func rows(_ n: Int64?) -> String {
        guard let n else { return "-" }
        let digits = String(n.magnitude)
        var out = ""
        for (i, c) in digits.enumerated() {
            if i > 0, (digits.count - i) % 3 == 0 { out.append(",") }
            out.append(c)
        }
        return (n < 0 ? "-" : "") + out
    }

    /// A configured database by path, or by file name when that is unique.
    static func find(_ argument: String, in dbs: [GuardianConfig.Database]) -> GuardianConfig.Database? {
        let path = URL(fileURLWithPath: argument).standardizedFileURL.path
        if let db = dbs.first(where: { $0.path == argument || $0.path == path }) { return db }
        let byName = dbs.filter { name($0.path) == argument }
        return byName.count == 1 ? byName[0] : nil
    }
}
