import ArgumentParser
import Foundation
import Logging
import Platform

@main
struct GuardianCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "guardian",
        abstract: "Keeps a production SQLite database alive: replication, disk guard, remediation.",
        version: GuardianVersion.string,
        subcommands: [
            RunCommand.self, StatusCommand.self, CheckConfigCommand.self, RotateCommand.self, DiskBenchCommand.self, DemoCommand.self, ReplicateCommand.self, RestoreCommand.self, LTXCommand.self, CatalogCommand.self, SystemdPathsCommand.self, IncidentsCommand.self, DoctorCommand.self,
            DrillCommand.self, DrillsCommand.self,
        ]
    )

    static func main() async {
        // Before anything else touches OpenSSL (libcurl, libssh2): no exit-time
        // cleanup, which could free locks another thread still uses.
        _ = Crypto.disableExitCleanup
        // Before other threads allocate: bounded arenas, memory given back after bursts.
        MemoryPolicy.apply()
        // A descriptor budget for thousands of databases (systemd's soft limit is 1,024).
        ResourceLimits.raiseOpenFiles()
        do {
            var command = try parseAsRoot()
            if var async = command as? any AsyncParsableCommand {
                try await async.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}

/// Options shared by the commands that read the configuration file.
struct ConfigOptions: ParsableArguments {
    @Option(name: .long, help: "Configuration file.")
    var config: String = GuardianConfig.defaultPath

    /// Loads the configuration or exits 2 with `file:line: key: what is wrong`.
    func load() throws -> GuardianConfig {
        do {
            return try GuardianConfig.load(path: config)
        } catch let error as ConfigError {
            CLI.fail(error.description, code: 2)
        }
    }
}

enum CLI {
    /// Prints `guardian: message` on stderr and exits with `code`.
    static func fail(_ message: String, code: Int32) -> Never {
        FileHandle.standardError.write(Data("guardian: \(message)\n".utf8))
        exit(code)
    }

    static var stdoutIsTTY: Bool { isatty(1) != 0 }
}
