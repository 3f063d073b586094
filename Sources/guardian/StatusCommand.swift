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

    @Flag(help: "Print the status document as JSON (with --watch: one compact document per line).")
    var json = false

    @Flag(help: "Refresh every SECONDS (default 2) until Ctrl-C: in place on a terminal, else successive snapshots separated by a blank line.")
    var watch = false

    @Argument(help: ArgumentHelp("Seconds between refreshes with --watch (at least 0.1).", valueName: "seconds"))
    var seconds: Double?

    @Option(help: "Colour: auto (when stdout is a terminal and NO_COLOR is unset), always, never.")
    var color: ColorChoice = .auto

    @Option(name: .customLong("db"), help: ArgumentHelp("Only the databases whose path or file name matches this glob (e.g. '*/tenants/acme*').", valueName: "pattern"))
    var dbPattern: String?

    func validate() throws {
        if let seconds {
            guard watch else { throw ValidationError("a number of seconds only goes with --watch (guardian status --watch \(seconds))") }
            guard seconds.isFinite, seconds >= 0.1 else { throw ValidationError("--watch needs at least 0.1 seconds between refreshes") }
        }
    }

    func run() async throws {
        let path = socketPath()
        if watch {
            await StatusWatch(socket: path, interval: seconds ?? 2, json: json, color: color.enabled(isTTY: CLI.stdoutIsTTY), dbPattern: dbPattern).run()
            return
        }
        let reply: [UInt8]
        do {
            reply = try await Self.fetch(path)
        } catch {
            CLI.fail(Self.notRunning(path), code: 3)
        }
        if json, dbPattern == nil {
            FileHandle.standardOutput.write(Data(reply))
            print()
            return
        }
        do {
            var doc = try StatusDocument.decoder().decode(StatusDocument.self, from: Data(reply))
            if let dbPattern { doc = StatusOverview.filter(doc, pattern: dbPattern) }
            if json {
                FileHandle.standardOutput.write(try StatusDocument.encoder().encode(doc))
                print()
                return
            }
            print(StatusTable.render(doc, color: color.enabled(isTTY: CLI.stdoutIsTTY)), terminator: "")
        } catch {
            CLI.fail("the daemon at \(path) sent a reply that is not a status document: \(error)", code: 1)
        }
    }

    static func fetch(_ path: String) async throws -> [UInt8] {
        try await BlockingPool.shared.run { try UnixSocketServer.request(path: path, "status") }
    }

    static func notRunning(_ path: String) -> String { "guardian is not running (no daemon answers at \(path))" }

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

/// `--color`: whether the readable status is painted.
enum ColorChoice: String, ExpressibleByArgument, CaseIterable {
    case auto, always, never

    /// `auto` paints only a terminal, and never when NO_COLOR is set to
    /// anything but the empty string (https://no-color.org).
    func enabled(isTTY: Bool, environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        switch self {
        case .always: true
        case .never: false
        case .auto: isTTY && (environment["NO_COLOR"] ?? "").isEmpty
        }
    }
}
