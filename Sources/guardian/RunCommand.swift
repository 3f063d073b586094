import ArgumentParser
import Foundation
import Logging
import Platform

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the guardian daemon (systemd Type=notify service)."
    )

    @OptionGroup var options: ConfigOptions

    @Option(help: "Where logs go: auto (journald under systemd, else stderr), journald, stderr.")
    var logTarget: LogTarget?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level?

    @Option(help: ArgumentHelp(
        "Run this application as guardian's child (overrides exec: in the configuration): it starts once replication runs, gets SIGTERM/SIGINT forwarded, and guardian exits with its status after a final sync.",
        valueName: "COMMAND"))
    var exec: String?

    @Argument(parsing: .postTerminator, help: ArgumentHelp("The application and its arguments, after --, as an argv (instead of --exec).", valueName: "COMMAND"))
    var command: [String] = []

    func run() async throws {
        let config = try options.load()
        var argv = config.exec
        if !command.isEmpty {
            if exec != nil { CLI.fail("give the application either with --exec or after --, not both", code: 2) }
            argv = command
        } else if let exec {
            do {
                argv = try ShellWords.command(exec)
            } catch {
                CLI.fail("--exec: \(error)", code: 2)
            }
        }
        GuardianLogging.bootstrap(target: logTarget ?? config.log.target, level: logLevel ?? config.log.level)
        let logger = Logger(label: "guardian")
        let child = argv.map { ExecChild(argv: $0) }
        // Absolute, so that status shows (and a reload reads) the file whatever
        // the reader's current directory.
        try await Daemon(configPath: FilePaths.absolute(options.config), logger: logger, exec: child).run(initial: config)
        if let status = child?.exitStatus, status != 0 { throw ExitCode(status) }
    }
}

extension LogTarget: ExpressibleByArgument {}
extension Logger.Level: @retroactive ExpressibleByArgument {}
