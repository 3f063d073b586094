import ArgumentParser
import Foundation
import Platform
import DiskWatch
import Remediate
import Replication

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show what the running daemon is doing: databases, replicas, lag, WAL."
    )

    @Option(name: .long, help: "Configuration file (used to find the status socket).")
    var config: String?

    @Option(name: .long, help: "Status socket of the daemon (overrides the configuration).")
    var socket: String?

    @Flag(help: "Print the status document as JSON.")
    var json = false

    func run() async throws {
        let path = socketPath()
        let reply: [UInt8]
        do {
            reply = try await BlockingPool.shared.run { try UnixSocketServer.request(path: path, "status") }
        } catch {
            CLI.fail("guardian is not running (no daemon answers at \(path))", code: 3)
        }
        if json {
            FileHandle.standardOutput.write(Data(reply))
            print()
            return
        }
        do {
            let doc = try StatusDocument.decoder().decode(StatusDocument.self, from: Data(reply))
            print(StatusTable.render(doc, color: CLI.stdoutIsTTY), terminator: "")
        } catch {
            CLI.fail("the daemon at \(path) sent a reply that is not a status document: \(error)", code: 1)
        }
    }

    func socketPath() -> String {
        if let socket { return socket }
        let file = config ?? GuardianConfig.defaultPath
        if let c = try? GuardianConfig.load(path: file) { return c.status.socket }
        if config != nil {
            // An explicit but broken config is worth saying; the default one may simply not exist.
            do { _ = try GuardianConfig.load(path: file) } catch { CLI.fail("\(error)", code: 2) }
        }
        return GuardianConfig.Status().socket
    }
}

/// The readable form of the status document, shaped like the replica table
/// operators know from Litestream's docs:
/// `[Syncing] /data/app.db -> s3  Destination: s3://backup/app-db | Lag: 150ms | Last: 10:30:01`.
enum StatusTable {
    static func render(_ doc: StatusDocument, color: Bool) -> String {
        func paint(_ s: String, _ code: String) -> String { color ? "\u{1B}[\(code)m\(s)\u{1B}[0m" : s }
        var out = "guardian \(doc.version)  pid \(doc.pid)  \(doc.state)  up \(Units.formatDuration(.milliseconds(Int64(doc.uptimeSeconds * 1000))))\n"
        out += "config \(doc.config)\n"
        for db in doc.databases {
            out += "\n\(db.path)  [\(db.state)]"
            if let e = db.error { out += "  \(paint(e, "31"))" }
            out += "\n"
            if db.state == "open" {
                out += "  size \(Units.formatBytes(db.dbSize ?? 0))  WAL \(Units.formatBytes(db.walSize ?? 0))"
                if let txid = db.txid { out += "  txid \(txid)" }
                if let last = db.lastCommit { out += "  last commit \(last)" }
                out += "\n"
            }
            for r in db.replicas {
                let state: String
                switch r.state {
                case "Syncing": state = paint("[\(r.state)]", "32")
                case "Lagging": state = paint("[\(r.state)]", "33")
                case "Failing": state = paint("[\(r.state)]", "31")
                default: state = "[\(r.state)]"
                }
                out += "  \(state) \(db.path) -> \(r.type)  \(r.name)\n"
                out += "      Destination: \(r.destination) | Lag: \(r.lagMs)ms | Last: \(r.lastSync ?? "never") | Position: \(r.position ?? "-")\n"
                if let e = r.error { out += "      Error: \(paint(e, "31"))\n" }
            }
            if db.replicas.isEmpty { out += "  no replicas configured\n" }
            if let h = doc.health.first(where: { $0.path == db.path }) {
                var line = "  health: \(h.state) (\(h.mode))  integrity: \(h.integrity.state)"
                if let c = h.checkpoint { line += "  WAL \(Units.formatBytes(c.walSize))" }
                out += line + "\n"
                for i in h.openIncidents { out += "  " + paint("open incident \(i.id): \(i.cause) (\(i.phase))", "31") + "\n" }
            }
            if let d = doc.drills.first(where: { $0.path == db.path }) {
                for (line, failed) in DrillText.statusLines(d) { out += "  " + (failed ? paint(line, "31") : line) + "\n" }
            }
        }
        if doc.databases.isEmpty { out += "\nno databases configured\n" }
        if !doc.disk.isEmpty {
            out += "\ndisk\n"
            for m in doc.disk {
                let line = "  \(m.summary)"
                switch m.level {
                case .normal: out += line + "\n"
                case .warn: out += paint(line, "33") + "\n"
                default: out += paint(line, "31") + "\n"
                }
            }
        }
        return out
    }
}
