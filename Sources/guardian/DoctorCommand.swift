import ArgumentParser
import Foundation
import Platform

/// `guardian doctor`: the checks live in `Doctor` (Sources/guardian/Doctor/);
/// this reads the options and the configuration, prints, and sets the exit status.
struct DoctorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check this host end to end and print what to fix.",
        discussion: """
            Checks the configuration; guardian on this host (daemon, state directory, status socket, \
            systemd); each database (exists, access, SQLite header, WAL mode, WAL size, owners of the \
            -wal and -shm, the application's unit or stop/start commands); each replica (reachable, TLS \
            or SSH host key, credentials, bucket or directory, a probe object written, read back and \
            deleted under .guardian-doctor/, what it holds and how far it is behind); the disks and \
            the ballast; the alert destinations (URL, DNS, TCP: nothing is sent without \
            --send-test-alert). Prints one line per check, [ ok ], [warn] or [FAIL], with a fix for the \
            last two. Exit status 0 when nothing failed, 1 otherwise. Secrets are never printed.
            """
    )

    static let defaultEnvironmentFile = "/etc/default/guardian"

    @Option(name: .long, help: "Configuration file.")
    var config: String = GuardianConfig.defaultPath

    @Option(name: .long, help: ArgumentHelp(
        "KEY=VALUE file for ${VAR} in the configuration; repeatable.",
        discussion: "Default: /etc/default/guardian when it is readable (where the service keeps its secrets)."))
    var environmentFile: [String] = []

    @Option(name: .long, help: "Time limit of each check, e.g. 10s, 500ms.")
    var timeout: String = "10s"

    @Flag(name: .long, help: "Send one test alert (trigger, then resolve) to every alert destination.")
    var sendTestAlert = false

    @Flag(help: "Print the report as JSON.")
    var json = false

    func validate() throws {
        guard parsedTimeout != nil else {
            throw ValidationError("--timeout \(timeout): give a positive duration, e.g. 10s or 500ms")
        }
    }

    private var parsedTimeout: Duration? {
        let d = Units.duration(timeout)
            ?? Double(timeout).flatMap { $0.isFinite && abs($0) <= Units.maxDuration.seconds ? Duration.milliseconds(Int64($0 * 1000)) : nil }
        guard let d, d > .zero else { return nil }
        return d
    }

    func run() async throws {
        var environment = ProcessInfo.processInfo.environment
        var files = environmentFile
        if files.isEmpty, access(Self.defaultEnvironmentFile, R_OK) == 0 { files = [Self.defaultEnvironmentFile] }
        for file in files {
            // (FileHandle rather than FileManager.contents: /dev/null and pipes work too.)
            guard let handle = FileHandle(forReadingAtPath: file), let data = try? handle.readToEnd() ?? Data(),
                  let text = String(data: data, encoding: .utf8)
            else {
                CLI.fail("\(file): cannot read the environment file", code: 2)
            }
            environment.merge(EnvironmentFile.parse(text)) { _, new in new }
        }
        let report: DoctorReport
        do {
            let loaded = try GuardianConfig.load(path: config, environment: environment)
            var options = Doctor.Options()
            options.timeout = parsedTimeout ?? .seconds(10)
            options.sendTestAlert = sendTestAlert
            report = await Doctor(config: loaded, options: options).run()
        } catch let error as ConfigError {
            let text = FileManager.default.contents(atPath: config).map { String(decoding: $0, as: UTF8.self) } ?? ""
            report = Doctor.configFailure(
                path: config, message: error.description, redactor: Doctor.redactor(unloadedText: text, environment: environment))
        }
        let text = json ? report.json() : report.text(color: CLI.stdoutIsTTY)
        FileHandle.standardOutput.write(Data(text.utf8))
        throw ExitCode(report.exitCode)
    }
}
