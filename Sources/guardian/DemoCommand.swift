import ArgumentParser
import AsyncAlgorithms
import Foundation
import Logging
import Platform
import ServiceLifecycle

/// `guardian demo`: the embedded default. Creates a demo database (WAL mode)
/// with a writer that adds a row every second, a configuration that
/// replicates it to a local file replica, and runs the daemon on it.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run guardian on a demo database replicated to a local file replica (no cloud account needed)."
    )

    @Option(help: "Directory for the demo database, replica, config and socket.")
    var dir: String = "guardian-demo"

    @Option(help: "Seconds between the demo writer's inserts (0 = no writer).")
    var writeEvery: Double = 1

    func run() async throws {
        let root = URL(fileURLWithPath: dir).standardizedFileURL.path
        try DurableFile.makeDirectories(root)
        let db = root + "/app.db"
        let configPath = root + "/guardian.yml"
        let setup = try SQLiteConnection(path: db, mode: .readWriteCreate)
        try setup.execute("""
            PRAGMA journal_mode=WAL;
            CREATE TABLE IF NOT EXISTS users(id INTEGER PRIMARY KEY, name TEXT NOT NULL, created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')));
            """)
        let text = """
            # guardian demo configuration (written by `guardian demo`)
            state-dir: \(root)/state
            status:
              socket: \(root)/guardian.sock
            log:
              target: stderr
            dbs:
              - path: \(db)
                replicas:
                  - name: local
                    url: file://\(root)/replica
                remediate: alert-only
            disk:
              paths: [\(root)]

            """
        try text.write(toFile: configPath, atomically: true, encoding: .utf8)
        let config: GuardianConfig
        do { config = try GuardianConfig.load(path: configPath) } catch { CLI.fail("\(error)", code: 2) }
        GuardianLogging.bootstrap(target: .stderr, level: .info)
        let logger = Logger(label: "guardian")
        let me = CommandLine.arguments.first ?? "guardian"
        FileHandle.standardError.write(Data("""
            guardian demo in \(root)
              database : \(db) (a row is added to `users` every \(writeEvery)s)
              replica  : \(root)/replica
              status   : \(me) status --socket \(root)/guardian.sock
              restore  : \(me) restore -o /tmp/restored.db file://\(root)/replica
              stop     : Ctrl-C

            """.utf8))
        let daemon = Daemon(configPath: configPath, logger: logger)
        try await withThrowingDiscardingTaskGroup { group in
            if writeEvery > 0 {
                group.addTask {
                    let writer = try SQLiteConnection(path: db, mode: .readWrite)
                    var n = 0
                    for await _ in AsyncTimerSequence(interval: .milliseconds(Int64(writeEvery * 1000)), clock: .continuous) {
                        n += 1
                        let name = "user-\(n)"
                        _ = try await BlockingPool.shared.run { try writer.query("INSERT INTO users(name) VALUES (?)", [.text(name)]) }
                    }
                }
            }
            try await daemon.run(initial: config)
            group.cancelAll()
        }
    }
}
