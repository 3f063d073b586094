import ArgumentParser
import Foundation
import Platform
import Replication

/// `guardian restore [--config PATH] [-o OUT] [--timestamp T | --txid X] [--force]
/// [--if-db-not-exists] [--if-replica-exists] [--integrity-check full|quick|none]
/// [--replica NAME] (DB_PATH | REPLICA_URL)`
struct RestoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Restore a database from a replica: the latest state, a TXID or a point in time.",
        discussion: """
            With DB_PATH the replicas come from the configuration: --replica NAME, or else the one \
            holding the newest TXID (unreachable ones are skipped with a warning). With REPLICA_URL \
            (file:///path, s3://bucket/path?endpoint=..., sftp://user@host/path) that replica is \
            read directly. Every LTX file's checksum is verified and the rebuilt copy passes PRAGMA \
            integrity_check (or quick_check) before it is renamed to OUT. An existing OUT is never \
            replaced without --force and is left untouched when the restore fails. \
            --timestamp restores exactly the transactions committed at or before that instant. \
            OUT defaults to DB_PATH. For a container's start-up (Litestream's idiom): \
            --if-db-not-exists does nothing when OUT exists, --if-replica-exists does nothing when \
            the replica answers and holds no restore point (an unreachable replica is still an error). \
            Exit status: 0 restored (or nothing to do), 1 the restore failed, 2 bad arguments or configuration.
            """
    )

    @Option(name: .long, help: "Configuration file (used with DB_PATH).")
    var config: String = GuardianConfig.defaultPath

    @Option(name: [.customShort("o"), .long], help: "Where to write the restored database (default: DB_PATH).")
    var output: String?

    @Option(help: "Restore the transactions committed at or before this RFC 3339 time.")
    var timestamp: String?

    @Option(help: "Restore up to exactly this TXID (16 hex digits).")
    var txid: String?

    @Flag(help: "Replace an existing OUT (with its -wal, -shm and -journal).")
    var force = false

    @Flag(help: "Do nothing (exit 0) when OUT already exists.")
    var ifDbNotExists = false

    @Flag(help: "Do nothing (exit 0) when the replica holds no restore point.")
    var ifReplicaExists = false

    @Option(help: "Check of the restored copy: full, quick or none.")
    var integrityCheck: String = "full"

    @Option(help: "Replica to restore from (its name in the configuration; with DB_PATH).")
    var replica: String?

    @Argument(help: "DB_PATH (a database of the configuration) or REPLICA_URL.")
    var source: String

    func run() async throws {
        let options = parseOptions()
        guard let output = output ?? (RestoreCLI.isURL(source) ? nil : source) else {
            CLI.fail("-o OUT is required with a replica URL", code: 2)
        }
        let out = RestoreCLI.absolute(output)
        if ifDbNotExists, Self.exists(out) {
            print("\(out) exists: nothing restored (--if-db-not-exists)")
            return
        }
        let (client, name) = await RestoreCLI.client(
            source: source, config: config, replica: replica, purpose: "restore")
        let bar = isatty(2) != 0 ? ProgressBar() : nil
        var progress: (@Sendable (RestoreProgress) -> Void)?
        if let bar { progress = { bar.draw($0) } }
        let result: RestoreResult
        do {
            result = try await Restorer().restore(client: client, to: out, options: options, progress: progress)
            bar?.end()
        } catch let e as RestoreError where e.kind == .noFiles && ifReplicaExists {
            bar?.end()
            print("\(name) holds no restore point: nothing restored (--if-replica-exists)")
            return
        } catch {
            bar?.end()
            var message = "restore from \(name) failed: \(error)"
            if !(error is RestoreError && (error as? RestoreError)?.kind == .outputExists) {
                message += FileManager.default.fileExists(atPath: out) ? " (\(out) was not changed)" : ""
            }
            CLI.fail(message, code: 1)
        }
        let when = result.timestamp.map { " (\(Timestamps.iso8601($0)))" } ?? ""
        let check = options.integrityCheck == .none ? "no integrity check" : "\(options.integrityCheck.rawValue) integrity check ok"
        print(
            "restored \(out) from \(name): TXID \(LTXNaming.hex(result.txid))\(when), \(result.files) files, "
                + "\(Units.formatBytes(result.bytes)), \(check), \(String(format: "%.2f", result.totalSeconds)) s "
                + "(plan \(String(format: "%.2f", result.planSeconds)) s, download wait \(String(format: "%.2f", result.downloadSeconds)) s, "
                + "apply \(String(format: "%.2f", result.applySeconds)) s, check \(String(format: "%.2f", result.verifySeconds)) s)")
    }

    /// OUT counts as existing with any of its files (a -wal alone holds commits too).
    static func exists(_ out: String) -> Bool {
        ["", "-wal"].contains { suffix in
            var st = stat()
            return lstat(out + suffix, &st) == 0
        }
    }

    func parseOptions() -> RestoreOptions {
        var options = RestoreOptions(force: force)
        guard let check = IntegrityCheck(rawValue: integrityCheck) else {
            CLI.fail("--integrity-check must be full, quick or none (not \(integrityCheck))", code: 2)
        }
        options.integrityCheck = check
        if timestamp != nil, txid != nil { CLI.fail("give either --timestamp or --txid, not both", code: 2) }
        if let timestamp {
            guard let date = Timestamps.parse(timestamp) else {
                CLI.fail("--timestamp \(timestamp) is not an RFC 3339 time (e.g. 2026-11-25T10:30:00Z)", code: 2)
            }
            options.timestamp = date
        }
        if let txid {
            guard let value = LTXNaming.parse(txid: txid) else {
                CLI.fail("--txid \(txid) must be exactly 16 hex digits (e.g. 000000000000002a)", code: 2)
            }
            options.txid = value
        }
        return options
    }
}

/// Finding the replica a command reads: a URL, or a database of the configuration.
enum RestoreCLI {
    static func absolute(_ path: String) -> String {
        URL(fileURLWithPath: path).standardizedFileURL.path
    }

    static func isURL(_ source: String) -> Bool { source.contains("://") }

    /// Exits 2 on a bad URL, an unknown database or replica name, or a broken configuration.
    static func targets(source: String, config: String, replica: String?) -> [(name: String, target: ReplicaTarget)] {
        if isURL(source) {
            if replica != nil { CLI.fail("--replica names a replica of the configuration; it cannot be used with a replica URL", code: 2) }
            do {
                let target = try ReplicaTarget.parse(url: source)
                return [(target.destination, target)]
            } catch {
                CLI.fail("\(error)", code: 2)
            }
        }
        let loaded: GuardianConfig
        do {
            loaded = try GuardianConfig.load(path: config)
        } catch {
            CLI.fail("\(error)", code: 2)
        }
        let path = absolute(source)
        // A `path:` entry, or a database a directory entry covers (its replica path derived).
        guard let db = loaded.database(at: path) else {
            let known = loaded.dbs.map(\.path).joined(separator: ", ")
            CLI.fail("\(path) is not a database of \(config)\(known.isEmpty ? "" : " (it lists \(known))"); give a replica URL instead", code: 2)
        }
        var replicas = db.replication.replicas
        guard !replicas.isEmpty else { CLI.fail("\(path) has no replica in \(config)", code: 2) }
        if let replica {
            replicas = replicas.filter { $0.name == replica }
            guard !replicas.isEmpty else {
                CLI.fail("\(path) has no replica named \(replica) (its replicas: \(db.replication.replicas.map(\.name).joined(separator: ", ")))", code: 2)
            }
        }
        return replicas.map { ("\($0.name) (\($0.target.destination))", $0.target) }
    }

    /// The client to read: the only candidate, or the reachable one holding the newest TXID.
    static func client(source: String, config: String, replica: String?, purpose: String) async -> (any ReplicaClient, String) {
        let candidates = targets(source: source, config: config, replica: replica)
        if candidates.count == 1 {
            do {
                return (try ReplicaClients.make(candidates[0].target), candidates[0].name)
            } catch {
                CLI.fail("replica \(candidates[0].name): \(error)", code: 2)
            }
        }
        var best: (client: any ReplicaClient, name: String, txid: UInt64)?
        for candidate in candidates {
            do {
                let client = try ReplicaClients.make(candidate.target)
                let files = try await Restorer().listRestorePoints(client: client)
                let top = files.map(\.maxTXID).max() ?? 0
                if best == nil || top > (best?.txid ?? 0) { best = (client, candidate.name, top) }
            } catch {
                FileHandle.standardError.write(Data("guardian: warning: replica \(candidate.name) is unreachable, skipped: \(error)\n".utf8))
            }
        }
        guard let best else { CLI.fail("no replica could be read for the \(purpose)", code: 1) }
        return (best.client, best.name)
    }
}

/// A one-line progress bar on stderr (only when stderr is a terminal).
final class ProgressBar: @unchecked Sendable {
    private let lock = NSLock()
    private var last = ContinuousClock.now - .seconds(1)
    private var drawn = false

    func draw(_ p: RestoreProgress) {
        lock.lock()
        defer { lock.unlock() }
        let now = ContinuousClock.now
        guard now - last >= .milliseconds(100) || p.filesDone == p.filesTotal else { return }
        last = now
        let width = 30
        let fraction = p.bytesTotal > 0 ? min(1, Double(p.bytesDone) / Double(p.bytesTotal)) : 1
        let filled = Int(fraction * Double(width))
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        let line = "\r\(p.phase.rawValue) [\(bar)] \(Int(fraction * 100))%  \(p.filesDone)/\(p.filesTotal) files  "
            + "\(Units.formatBytes(p.bytesDone))/\(Units.formatBytes(p.bytesTotal))\u{1B}[K"
        FileHandle.standardError.write(Data(line.utf8))
        drawn = true
    }

    func end() {
        lock.lock()
        defer { lock.unlock() }
        if drawn { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        drawn = false
    }
}
