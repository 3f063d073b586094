import ArgumentParser
import Foundation
import Logging
import Platform
import Replication
import ServiceLifecycle

struct ReplicateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replicate",
        abstract: "Replicate in the foreground: `guardian replicate DB_PATH REPLICA_URL...` or `guardian replicate --config PATH`.",
        discussion: "Exits cleanly on SIGTERM or SIGINT after a final sync."
    )

    @Option(name: .long, help: "Replicate every database of this configuration file.")
    var config: String?

    @Option(name: .long, help: "Directory for staging snapshots (default: the configuration's state-dir, or a new private directory under $TMPDIR or /tmp, removed on exit).")
    var stateDir: String?

    @Option(help: "Log level.")
    var logLevel: Logger.Level = .info

    @Argument(help: "DB_PATH followed by one or more replica URLs (file:///path, /path, s3://bucket/path, sftp://user@host:port/path).")
    var arguments: [String] = []

    func run() async throws {
        var dbs: [DatabaseConfig] = []
        var dir = stateDir ?? ""
        if let config {
            guard arguments.isEmpty else { CLI.fail("give either --config or DB_PATH REPLICA_URL..., not both", code: 2) }
            let c: GuardianConfig
            do { c = try GuardianConfig.load(path: config) } catch { CLI.fail("\(error)", code: 2) }
            dbs = c.dbs.map(\.replication)
            if stateDir == nil { dir = c.stateDir }
        } else {
            guard arguments.count >= 2 else { CLI.fail("usage: guardian replicate DB_PATH REPLICA_URL... (or --config PATH)", code: 2) }
            let path = URL(fileURLWithPath: arguments[0]).standardizedFileURL.path
            var replicas: [ReplicaConfig] = []
            for (i, url) in arguments.dropFirst().enumerated() {
                do {
                    let target = try ReplicaTarget.parse(url: url)
                    replicas.append(ReplicaConfig(name: i == 0 ? target.typeName : "\(target.typeName)\(i)", target: target))
                } catch {
                    CLI.fail("\(error)", code: 2)
                }
            }
            dbs = [DatabaseConfig(path: path, replicas: replicas)]
        }
        guard !dbs.isEmpty else { CLI.fail("no databases to replicate", code: 2) }
        // Staging holds copies of the whole database: never a predictable
        // shared name another user could have made first (or planted links in).
        var scratch: String?
        if dir.isEmpty {
            do { scratch = try Self.makeScratchDirectory() } catch { CLI.fail("\(error)", code: 1) }
            dir = scratch ?? ""
        }
        defer { if let scratch { try? FileManager.default.removeItem(atPath: scratch) } }
        GuardianLogging.bootstrap(target: .auto, level: logLevel)
        let logger = Logger(label: "guardian")
        let services = dbs.map { ServiceGroupConfiguration.ServiceConfiguration(service: ReplicationService(config: $0, stateDir: dir, logger: logger)) }
        var groupConfig = ServiceGroupConfiguration(services: services, gracefulShutdownSignals: [.sigterm, .sigint], cancellationSignals: [], logger: logger)
        groupConfig.maximumGracefulShutdownDuration = .seconds(20)
        try await ServiceGroup(configuration: groupConfig).run()
    }

    /// A new directory only this user can enter (`mkdtemp`, 0700) under
    /// $TMPDIR or /tmp.
    static func makeScratchDirectory() throws -> String {
        let base = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array("\(base)/guardian-replicate-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer -> String? in
            guard let base = buffer.baseAddress, let result = mkdtemp(base) else { return nil }
            return String(cString: result)
        }
        guard let made else { throw SystemError("mkdtemp", path: "\(base)/guardian-replicate-XXXXXX") }
        return made
    }
}
