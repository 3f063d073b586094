import ArgumentParser
import Foundation
import Platform
import Replication

struct RestoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Restore a database from a replica: the latest state, a TXID or a point in time.",
        discussion: """
            With DB_PATH the replicas come from the configuration (the one with the newest TXID, \
            or --replica NAME); with REPLICA_URL that replica is read directly. The restored copy is \
            verified (LTX checksums, PRAGMA integrity_check) before it is renamed to OUT; an existing \
            OUT is never replaced without --force, and never touched when the restore fails.
            """
    )

    @Option(name: .long, help: "Configuration file (for DB_PATH).")
    var config: String = GuardianConfig.defaultPath

    @Option(name: [.short, .long], help: "Where to write the restored database.")
    var output: String

    @Option(help: "Restore the transactions committed at or before this RFC 3339 time.")
    var timestamp: String?

    @Option(help: "Restore up to this TXID (16 hex digits).")
    var txid: String?

    @Option(help: "Replica to restore from (its name in the configuration).")
    var replica: String?

    @Option(help: "Verification of the restored copy: full, quick or none.")
    var integrityCheck: IntegrityCheck = .full

    @Flag(help: "Replace an existing OUT.")
    var force = false

    @Argument(help: "DB_PATH (from the configuration) or REPLICA_URL.")
    var source: String

    func run() async throws {
        var options = RestoreOptions(force: force, integrityCheck: integrityCheck)
        if let timestamp {
            guard let date = Timestamps.parse(timestamp) else { CLI.fail("--timestamp \(timestamp) is not an RFC 3339 time (2026-11-25T10:30:00Z)", code: 2) }
            options.timestamp = date
        }
        if let txid {
            guard let v = LTXNaming.parse(txid: txid) else { CLI.fail("--txid \(txid) must be 16 hex digits", code: 2) }
            options.txid = v
        }
        let out = URL(fileURLWithPath: output).standardizedFileURL.path
        let client = try await chooseClient()
        let tty = isatty(2) != 0
        var progress: (@Sendable (RestoreProgress) -> Void)?
        if tty { progress = Self.drawProgress }
        do {
            let r = try await Restorer().restore(client: client, to: out, options: options, progress: progress)
            if tty { FileHandle.standardError.write(Data("\n".utf8)) }
            print("restored \(out) at TXID \(LTXNaming.hex(r.txid)) from \(client.target.destination): \(r.files) files, \(r.pages) pages, \(String(format: "%.2f", r.planSeconds + r.applySeconds + r.verifySeconds))s (integrity: \(integrityCheck.rawValue))")
        } catch {
            if tty { FileHandle.standardError.write(Data("\n".utf8)) }
            CLI.fail("restore failed: \(error)", code: 1)
        }
    }

    @Sendable static func drawProgress(_ p: RestoreProgress) {
        let width = 30
        let done = p.bytesTotal > 0 ? Int(Double(p.bytesDone) / Double(p.bytesTotal) * Double(width)) : width
        let bar = String(repeating: "#", count: done) + String(repeating: ".", count: max(0, width - done))
        FileHandle.standardError.write(Data("\r[\(bar)] \(p.filesDone)/\(p.filesTotal) files \(Units.formatBytes(p.bytesDone))".utf8))
    }

    func chooseClient() async throws -> any ReplicaClient {
        if source.contains("://") || !source.hasSuffix(".db") && source.hasPrefix("/") && FileManager.default.fileExists(atPath: source + "/ltx") {
            do { return try ReplicaClients.make(try ReplicaTarget.parse(url: source)) } catch { CLI.fail("\(error)", code: 2) }
        }
        let cfg: GuardianConfig
        do { cfg = try GuardianConfig.load(path: config) } catch { CLI.fail("\(error)", code: 2) }
        let path = URL(fileURLWithPath: source).standardizedFileURL.path
        guard let db = cfg.dbs.first(where: { $0.path == path }) else {
            CLI.fail("\(path) is not a database in \(config) (or give a replica URL)", code: 2)
        }
        var candidates = db.replication.replicas
        if let replica {
            candidates = candidates.filter { $0.name == replica }
            guard !candidates.isEmpty else { CLI.fail("no replica named \(replica) for \(path)", code: 2) }
        }
        var best: (client: any ReplicaClient, txid: UInt64)?
        for r in candidates {
            do {
                let client = try ReplicaClients.make(r.target)
                var top: UInt64 = 0
                for level in LTXNaming.allLevels { top = max(top, try await client.listFiles(level: level, exactTimestamps: false).map(\.maxTXID).max() ?? 0) }
                if top > (best?.txid ?? 0) || best == nil { best = (client, top) }
            } catch {
                FileHandle.standardError.write(Data("guardian: warning: replica \(r.name) is unreachable: \(error)\n".utf8))
            }
        }
        guard let best else { CLI.fail("no replica of \(path) could be read", code: 1) }
        return best.client
    }
}

extension IntegrityCheck: ExpressibleByArgument {}

struct LTXCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ltx",
        abstract: "List the restore points (LTX files) of a replica."
    )

    @Option(name: .long, help: "Configuration file (for DB_PATH).")
    var config: String = GuardianConfig.defaultPath

    @Flag(help: "Print JSON.")
    var json = false

    @Argument(help: "DB_PATH (from the configuration) or REPLICA_URL.")
    var source: String

    func run() async throws {
        var clients: [(String, any ReplicaClient)] = []
        if source.contains("://") || source.hasPrefix("/") && FileManager.default.fileExists(atPath: source + "/ltx") {
            do { clients = [("replica", try ReplicaClients.make(try ReplicaTarget.parse(url: source)))] } catch { CLI.fail("\(error)", code: 2) }
        } else {
            let cfg: GuardianConfig
            do { cfg = try GuardianConfig.load(path: config) } catch { CLI.fail("\(error)", code: 2) }
            let path = URL(fileURLWithPath: source).standardizedFileURL.path
            guard let db = cfg.dbs.first(where: { $0.path == path }) else { CLI.fail("\(path) is not a database in \(config)", code: 2) }
            for r in db.replication.replicas { clients.append((r.name, try ReplicaClients.make(r.target))) }
        }
        var rows: [[String: String]] = []
        for (name, client) in clients {
            for level in LTXNaming.allLevels {
                let files: [LTXFileInfo]
                do { files = try await client.listFiles(level: level, exactTimestamps: true) } catch { CLI.fail("\(name): \(error)", code: 1) }
                for f in files {
                    rows.append(["replica": name, "level": "\(f.level)", "min_txid": LTXNaming.hex(f.minTXID), "max_txid": LTXNaming.hex(f.maxTXID), "size": "\(f.size)", "created": Timestamps.iso8601(f.createdAt)])
                }
            }
        }
        if json {
            let data = try JSONSerialization.data(withJSONObject: rows, options: [.prettyPrinted, .sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        print("replica   level  min_txid          max_txid          size        created")
        for r in rows {
            func col(_ k: String, _ w: Int) -> String { (r[k] ?? "").padding(toLength: w, withPad: " ", startingAt: 0) }
            print("\(col("replica", 9)) \(col("level", 6)) \(col("min_txid", 16))  \(col("max_txid", 16))  \(col("size", 10))  \(col("created", 24))")
        }
    }
}
