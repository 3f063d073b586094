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

    func run() async throws {
        let config = try options.load()
        GuardianLogging.bootstrap(target: logTarget ?? config.log.target, level: logLevel ?? config.log.level)
        let logger = Logger(label: "guardian")
        // Absolute, so that status shows (and a reload reads) the file whatever
        // the reader's current directory.
        try await Daemon(configPath: FilePaths.absolute(options.config), logger: logger).run(initial: config)
    }
}

extension LogTarget: ExpressibleByArgument {}
extension Logger.Level: @retroactive ExpressibleByArgument {}
