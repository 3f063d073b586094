import ArgumentParser
import Foundation
import Platform
import Remediate

/// `guardian incidents` — the incidents recorded in guardian's state
/// database, and their post-mortems. Reads `<state-dir>/guardian.db`
/// directly (read-only), so it works with or without the daemon.
struct IncidentsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "incidents",
        abstract: "List recorded incidents, or print one's post-mortem (guardian incidents show ID).",
        subcommands: [List.self, Show.self],
        defaultSubcommand: List.self
    )

    struct Location: ParsableArguments {
        @Option(name: .long, help: "Configuration file (used to find the state directory).")
        var config: String?

        @Option(name: .long, help: "guardian's state directory (overrides the configuration).")
        var stateDir: String?

        func store() -> StateStore {
            if let stateDir { return StateStore(stateDir: stateDir, readOnly: true) }
            let file = config ?? GuardianConfig.defaultPath
            do {
                return StateStore(stateDir: try GuardianConfig.load(path: file).stateDir, readOnly: true)
            } catch let error as ConfigError {
                // An explicit but broken config is worth saying; a missing default one is not.
                if config != nil || FileManager.default.fileExists(atPath: file) { CLI.fail(error.description, code: 2) }
            } catch {
                CLI.fail("\(error)", code: 2)
            }
            return StateStore(stateDir: GuardianConfig(file: file).stateDir, readOnly: true)
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "List incidents, newest first.")

        @OptionGroup var location: Location

        @Flag(help: "Print the list as JSON.")
        var json = false

        @Flag(help: "Only incidents not yet closed.")
        var open = false

        func run() async throws {
            let store = location.store()
            let records: [IncidentRecord]
            do {
                records = try await store.incidents(openOnly: open)
            } catch let e as StateStoreError {
                if json {
                    print("[]")
                } else {
                    print("no incidents recorded (\(e.message): \(e.path))")
                }
                return
            } catch {
                CLI.fail("cannot read \(store.path): \(error)", code: 1)
            }
            let rows = records.map(IncidentSummary.init)
            if json {
                let data = try IncidentsCommand.encoder().encode(rows)
                FileHandle.standardOutput.write(data)
                print()
                return
            }
            if rows.isEmpty {
                print("no incidents recorded in \(store.path)")
                return
            }
            print(IncidentsCommand.table(rows), terminator: "")
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "show", abstract: "Print an incident's post-mortem (Markdown).")

        @Argument(help: "Incident ID (from guardian incidents).")
        var id: Int64

        @OptionGroup var location: Location

        @Flag(help: "Print the full record, timeline included, as JSON instead.")
        var json = false

        func run() async throws {
            let store = location.store()
            let record: IncidentRecord?
            do {
                record = try await store.incident(id: id)
            } catch {
                CLI.fail("cannot read \(store.path): \(error)", code: 1)
            }
            guard let record else { CLI.fail("no incident \(id) in \(store.path) (see guardian incidents)", code: 1) }
            if json {
                let data = try IncidentsCommand.encoder().encode(record)
                FileHandle.standardOutput.write(data)
                print()
            } else {
                print(PostMortem.render(record), terminator: "")
            }
        }
    }

    static func encoder() -> JSONEncoder {
        let e = JSONEncoder()
        e.keyEncodingStrategy = .convertToSnakeCase
        e.dateEncodingStrategy = .custom { date, encoder in
            var c = encoder.singleValueContainer()
            try c.encode(Timestamps.iso8601(date))
        }
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return e
    }

    /// `ID  DATABASE  DETECTED (UTC)  OUTCOME  CAUSE  DOWNTIME  LOST`
    static func table(_ rows: [IncidentSummary]) -> String {
        let header = ["ID", "DATABASE", "DETECTED (UTC)", "OUTCOME", "CAUSE", "DOWNTIME", "TX LOST"]
        let body = rows.map { r -> [String] in
            [
                "\(r.id)", r.database, String(r.detectedAt.prefix(19)).replacingOccurrences(of: "T", with: " "),
                r.outcome, r.cause, r.downtimeMs.map { Units.formatDuration(.milliseconds($0)) } ?? "-",
                r.transactionsLost.map { "\($0)" } ?? "-",
            ]
        }
        var widths = header.map(\.count)
        for row in body { for (i, c) in row.enumerated() { widths[i] = max(widths[i], c.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, c in i == cells.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  ") + "\n"
        }
        return line(header) + body.map(line).joined()
    }
}
