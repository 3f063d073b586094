import ArgumentParser
import Foundation
import Platform
import Replication

/// `guardian ltx (DB_PATH | REPLICA_URL) [--config PATH] [--replica NAME] [--json]`:
/// the restore points (LTX files) of a replica, as `litestream ltx` lists them.
struct LTXCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ltx",
        abstract: "List the restore points (LTX files) of a replica.",
        discussion: """
            Columns: level (0 = one transaction, 1-8 = compactions, 9 = snapshots), min_txid, \
            max_txid, size in bytes, created (RFC 3339, ms). With DB_PATH every replica of that \
            database in the configuration is listed (or only --replica NAME).
            """
    )

    @Option(name: .long, help: "Configuration file (used with DB_PATH).")
    var config: String = GuardianConfig.defaultPath

    @Option(help: "Only this replica of the configuration (with DB_PATH).")
    var replica: String?

    @Flag(help: "Print JSON: [{replica, level, min_txid, max_txid, size, created}].")
    var json = false

    @Argument(help: "DB_PATH (a database of the configuration) or REPLICA_URL.")
    var source: String

    struct Row: Codable, Equatable {
        var replica: String
        var level: Int
        var minTXID: String
        var maxTXID: String
        var size: Int64
        var created: String

        enum CodingKeys: String, CodingKey {
            case replica, level, size, created
            case minTXID = "min_txid"
            case maxTXID = "max_txid"
        }
    }

    func run() async throws {
        let targets = RestoreCLI.targets(source: source, config: config, replica: replica)
        var rows: [Row] = []
        var failed = false
        var sections: [(String, [LTXFileInfo])] = []
        for (name, target) in targets {
            do {
                let client = try ReplicaClients.make(target)
                let files = try await Restorer().listRestorePoints(client: client)
                sections.append((name, files))
                rows += files.map {
                    Row(replica: name, level: $0.level, minTXID: LTXNaming.hex($0.minTXID), maxTXID: LTXNaming.hex($0.maxTXID),
                        size: $0.size, created: Timestamps.iso8601($0.createdAt))
                }
            } catch {
                failed = true
                FileHandle.standardError.write(Data("guardian: replica \(name) cannot be listed: \(error)\n".utf8))
            }
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            let data = (try? encoder.encode(rows)) ?? Data("[]".utf8)
            FileHandle.standardOutput.write(data)
            print()
        } else {
            for (index, (name, files)) in sections.enumerated() {
                if targets.count > 1 || !RestoreCLI.isURL(source) { print("\(index > 0 ? "\n" : "")replica \(name)") }
                print(Self.table(files))
            }
        }
        if failed { throw ExitCode(1) }
    }

    static func table(_ files: [LTXFileInfo]) -> String {
        var lines = ["level  min_txid          max_txid          size        created"]
        for f in files {
            let size = String(f.size)
            lines.append(
                "\(String(f.level).padding(toLength: 7, withPad: " ", startingAt: 0))\(LTXNaming.hex(f.minTXID))  \(LTXNaming.hex(f.maxTXID))  "
                    + "\(size.padding(toLength: max(12, size.count + 1), withPad: " ", startingAt: 0))\(Timestamps.iso8601(f.createdAt))")
        }
        if files.isEmpty { lines.append("(no LTX files)") }
        return lines.joined(separator: "\n")
    }
}
